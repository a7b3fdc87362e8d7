"""Stopping a compose process at a chosen moment, and checking that nothing of it lives on.

The process runs in a session of its own, so that "the whole process group" (what Ctrl-C
reaches) and "every process it forked" can be told apart from the test's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def session_members(sid: int) -> list[int]:
    """The processes still alive in session `sid` (the command and any child it forked); not
    zombies: they are dead, waiting for a reaper (a container's PID 1 may never reap)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            # pid (comm) state ppid pgrp session ...: comm may hold spaces and parentheses
            state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
            if int(session) == sid and state != "Z":
                alive.append(int(entry.name))
    return alive


def start(args: list[str], cwd: Path | None = None) -> subprocess.Popen[str]:
    """`python -m composer ARGS` in a new session, stderr piped, SOURCE_DATE_EPOCH unset."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    return subprocess.Popen([sys.executable, "-m", "composer", *args], env=env, cwd=cwd,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def read_until(child: subprocess.Popen[str], marker: str) -> list[str]:
    """stderr's lines up to and including the first that holds `marker`."""
    assert child.stderr is not None
    said = []
    for line in child.stderr:
        said.append(line)
        if marker in line:
            break
    return said


def stop_at(args: list[str], marker: str, signum: int, whole_group: bool,
            cwd: Path | None = None) -> tuple[int, str, int]:
    """Start compose, send `signum` once stderr shows `marker` (to the whole process group, as
    Ctrl-C does, or to compose alone); (exit code, all of stderr, session id)."""
    child = start(args, cwd)
    said = read_until(child, marker)
    if whole_group:
        os.killpg(child.pid, signum)
    else:
        child.send_signal(signum)
    assert child.stderr is not None
    rest = child.stderr.read()
    return child.wait(), "".join(said) + rest, child.pid


def assert_stopped_cleanly(code: int, text: str, signum: int) -> None:
    """Exit 128 + N, no traceback, and compose's one message as the last line."""
    assert code == 128 + signum, text
    assert "Traceback" not in text
    assert text.splitlines()[-1] == f"compose: stopped by {signal.Signals(signum).name}, " \
        "cleaned up", text[-2000:]


def assert_session_ends(sid: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_members(sid) == []
