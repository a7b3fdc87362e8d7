"""The external commands composer runs, and how: found on PATH when the layout is loaded (so
`compose validate` fails before anything is written), then run with a pinned environment.

A command gets only PATH (the caller's, where it was found) and LC_ALL=C: no locale, no TZ and
none of its own variables (ZSTD_CLEVEL, ZSTD_NBTHREADS, …) from the caller's environment, and
/dev/null as stdin, so it can never wait for input or read the build's terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tool:
    command: str
    package: str  # the Debian/Ubuntu package that has it, for hints

    @property
    def install_hint(self) -> str:
        return f"install it (Debian/Ubuntu package: {self.package})"


ZSTD = Tool("zstd", "zstd")


def find(tool: Tool) -> str | None:
    """The command's path on PATH, or None."""
    return shutil.which(tool.command)


def pinned_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}


def run(exe: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `exe args` to completion with the pinned environment; output captured as text."""
    cmd = [exe, *args]
    start = time.monotonic()
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, env=pinned_env())
    log.debug("ran %s: exit %d in %.2f s", " ".join(cmd), done.returncode,
              time.monotonic() - start)
    return done
