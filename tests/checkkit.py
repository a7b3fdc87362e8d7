"""Shared by the tests of `compose verify`, `diff` and `reproduce`: a demo build made once, and
sparse copies of it to damage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import compose, copy_layouts
from tests.readback import published


def build_demo(folder: Path, golden: Path, *args: str) -> Path:
    layout = copy_layouts(folder / "project", golden) / "demo.yaml"
    out = folder / "out"
    done = compose("build", str(layout), "-o", str(out), *args)
    assert done.returncode == 0, done.stderr
    return out


def copy_build(src: Path, dst: Path) -> Path:
    """A copy of a build folder's outputs as plain sparse files (the originals are links into
    .compose, which must not be damaged)."""
    dst.mkdir(parents=True)
    for path in published(src):
        subprocess.run(["cp", "--sparse=always", "-L", str(path), str(dst / path.name)],
                       check=True)
    return dst


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))


def compose_json(*args: str) -> tuple[int, dict]:
    done = compose(*args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)
