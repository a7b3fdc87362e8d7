"""Flashing as a device's life does it: onto storage that held other bytes before.

`bmaptool copy` and `simg2img` truncate a regular output file, which turns every block they skip
into zeros and hides a block map that leaves data out. A loop device over a file filled with
0xAA does not: every block the tool skips keeps 0xAA, as a used eMMC keeps its old contents.
Needs root and loop devices; `flash_reason()` says why not when they are missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

STALE = 0xAA  # the byte the "used device" holds before flashing
_FILL_CHUNK = 1 << 20

_E2FSCK_OK = (
    re.compile(r"^e2fsck \d"),
    re.compile(r"^Pass \d[A-Z]?: "),
    re.compile(r"^\S.*: \d+/\d+ files \(.*\), \d+/\d+ blocks$"),
)


class Tool(StrEnum):
    BMAPTOOL = "bmaptool"  # from NAME.img + NAME.bmap
    SIMG2IMG = "simg2img"  # from NAME.simg


def flash_reason() -> str | None:
    """None when flashing onto a loop device works here, else the reason to skip."""
    if os.geteuid() != 0:
        return "flashing onto a stale device needs root for losetup"
    for tool in ("losetup", "bmaptool", "simg2img", "e2fsck", "debugfs"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if not Path("/dev/loop-control").exists():
        return "environment fact [no-loop-devices]: no /dev/loop-control"
    return None


def stale_file(path: Path, size: int) -> Path:
    """A file of `size` bytes of STALE (dense: every byte really is there)."""
    chunk = bytes([STALE]) * _FILL_CHUNK
    with path.open("wb") as f:
        left = size
        while left:
            n = f.write(chunk[:min(left, _FILL_CHUNK)])
            left -= n
    return path


@contextmanager
def loop_device(backing: Path) -> Iterator[str]:
    dev = subprocess.run(["losetup", "--show", "-f", str(backing)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def flash(tool: Tool, image: Path, size: int, target: Path) -> Path:
    """Write `image` (NAME.img; its .bmap / .simg beside it) with `tool` onto a stale device
    whose backing file is `target`; returns `target`."""
    stale_file(target, size)
    with loop_device(target) as dev:
        if tool is Tool.BMAPTOOL:
            argv = ["bmaptool", "copy", "--bmap", str(image.with_suffix(".bmap")), str(image),
                    dev]
        else:
            argv = ["simg2img", str(image.with_suffix(".simg")), dev]
        done = subprocess.run(argv, capture_output=True, text=True)
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return target


def e2fsck_clean(img: Path) -> None:
    """e2fsck -fn exits 0 and prints nothing but its pass lines and the summary."""
    env = dict(os.environ, E2FSCK_CONFIG="/dev/null")
    proc = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True, env=env,
                          errors="replace")
    lines = (proc.stdout + proc.stderr).splitlines()
    problems = [ln for ln in lines if ln.strip() and not any(r.match(ln) for r in _E2FSCK_OK)]
    assert proc.returncode == 0 and not problems, \
        f"e2fsck -fn {img.name}: exit {proc.returncode}:\n" + "\n".join(lines)


def debugfs_dump(img: Path, path: str, dest: Path) -> bytes:
    """The bytes of `path` in the ext4 image, as debugfs reads them."""
    done = subprocess.run(["debugfs", "-R", f'dump "{path}" {dest}', str(img)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and dest.exists(), done.stderr
    data = dest.read_bytes()
    dest.unlink()
    return data


def used_blocks(img: Path) -> set[int]:
    """Blocks the ext4 block bitmaps mark in use, as dumpe2fs reads them."""
    out = subprocess.run(["dumpe2fs", str(img)], capture_output=True, text=True,
                         check=True).stdout
    used: set[int] = set()
    for m in re.finditer(r"^Group \d+: \(Blocks (\d+)-(\d+)\).*?^  Free blocks: ?([^\n]*)$", out,
                         re.M | re.S):
        first, last, free_list = int(m.group(1)), int(m.group(2)), m.group(3).strip()
        group = set(range(first, last + 1))
        for item in filter(None, (s.strip() for s in free_list.split(","))):
            lo, _, hi = item.partition("-")
            group -= set(range(int(lo), int(hi or lo) + 1))
        used |= group
    return used


def mapped_blocks(extents: tuple[tuple[int, int], ...], block_size: int = 4096) -> set[int]:
    """Blocks touched by a WriteResult's (offset, length) ranges."""
    blocks: set[int] = set()
    for offset, length in extents:
        blocks |= set(range(offset // block_size, -(-(offset + length) // block_size)))
    return blocks


def fs_block_size(img: Path) -> int:
    """The ext4 block size, as dumpe2fs reads it from the superblock."""
    out = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"^Block size:\s+(\d+)$", out, re.M)
    assert m, out
    return int(m.group(1))
