"""Issue 8, points 1 and 2: images flashed onto used storage read back exactly.

A folder holding zero-filled files, files with zero blocks inside and sparse files (holes made
with truncate and seek-written data) is composed into an ext4 and a vfat partition and a GPT
disk. Each image is flashed with `bmaptool copy` (.img + .bmap) and with `simg2img` (.simg) onto
a loop device over a file of 0xAA bytes (tests/flashkit.py says why a plain file would not do),
then judged by e2fsck -fn, debugfs, mtools, sfdisk and the kernel: every file must read back the
source's bytes, never the stale 0xAA.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import compose
from tests.flashkit import Tool, debugfs_dump, e2fsck_clean, flash, flash_reason

BS = 4096
MIB = 1 << 20

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(flash_reason() is not None, reason=flash_reason() or ""),
]

LAYOUT = """\
version: 1
name: flash
epoch: 1700000000
sources:
  src: src
partitions:
  - {name: boot, fs: vfat, size: 8MiB, mount: /boot}
  - {name: rootfs, fs: ext4, size: 32MiB, mount: /}
files:
  - {from: "src:/", to: /}
disk:
  table: gpt
outputs: [simg]
"""


def _sparse(path: Path, size: int, writes: list[tuple[int, bytes]]) -> None:
    """A file of `size` bytes that is a hole except where `writes` put bytes (zeros too)."""
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)


def make_source(root: Path) -> None:
    (root / "boot").mkdir(parents=True)
    dense = {
        "zeros-1m": bytes(MIB),
        "one-zero-block": bytes(BS),
        "zero-block-inside": b"A" * BS + bytes(BS) + b"B" * BS + bytes(3 * BS) + b"tail",
        "text": b"hello\n",
        "boot/zeros.bin": bytes(64 * 1024),
        "boot/mixed.bin": b"C" * 5000 + bytes(3 * BS) + b"D" * 100,
    }
    for name, data in dense.items():
        (root / name).write_bytes(data)
    # holes: data, a hole, written zeros (allocated on the host: not a hole), data, a hole to
    # the end; a file that is all hole; one that starts with a hole
    _sparse(root / "sparse", 5 * MIB, [(0, b"S" * BS), (2 * MIB, bytes(2 * BS)),
                                       (3 * MIB + 100, b"T" * 3000)])
    _sparse(root / "all-hole", 3 * MIB, [])
    _sparse(root / "hole-first", MIB + BS, [(MIB + 5, b"E" * 10)])


def source_files(root: Path, under: str = "") -> dict[str, bytes]:
    """Path on the file system (relative to its mount) -> bytes, for files below `under`."""
    out: dict[str, bytes] = {}
    for dirpath, _, names in os.walk(root / under):
        for name in names:
            full = Path(dirpath) / name
            out["/" + str(full.relative_to(root / under))] = full.read_bytes()
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("flash")
    make_source(folder / "src")
    (folder / "layout.yaml").write_text(LAYOUT)
    done = compose("build", "layout.yaml", "-o", "out", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def _rootfs_files(folder: Path) -> dict[str, bytes]:
    files = source_files(folder / "src")
    return {p: d for p, d in files.items() if not p.startswith("/boot/")}


def assert_ext4_reads_source(img: Path, files: dict[str, bytes], scratch: Path) -> None:
    e2fsck_clean(img)
    for path, data in sorted(files.items()):
        got = debugfs_dump(img, path, scratch / "dumped")
        assert len(got) == len(data), path
        if got != data:
            first = next(i for i, (a, b) in enumerate(zip(got, data, strict=True)) if a != b)
            pytest.fail(f"{path}: differs from byte {first} on (read {got[first]:#x}, "
                        f"source {data[first]:#x})")


def assert_vfat_reads_source(img: Path, files: dict[str, bytes]) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", TZ="UTC")
    for path, data in sorted(files.items()):
        done = subprocess.run(["mcopy", "-n", "-i", str(img), "::" + path, "-"],
                              capture_output=True, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout == data, f"{path}: mtools reads other bytes than the source's"


@pytest.mark.parametrize("tool", list(Tool))
def test_ext4_partition_flashed_onto_used_storage(built: Path, tool: Tool,
                                                  tmp_path: Path) -> None:
    img = built / "out" / "rootfs.img"
    target = flash(tool, img, img.stat().st_size, tmp_path / "device")
    assert_ext4_reads_source(target, _rootfs_files(built), tmp_path)


def test_ext4_flashed_read_by_the_kernel(built: Path, tmp_path: Path) -> None:
    img = built / "out" / "rootfs.img"
    target = flash(Tool.BMAPTOOL, img, img.stat().st_size, tmp_path / "device")
    mnt = Path(tempfile.mkdtemp(dir=tmp_path))
    subprocess.run(["mount", "-o", "loop,ro", str(target), str(mnt)], check=True,
                   capture_output=True)
    try:
        got = {p: d for p, d in source_files(mnt).items() if not p.startswith("/boot/")}
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    want = _rootfs_files(built)
    assert sorted(got) == sorted(want)
    for path in want:
        assert got[path] == want[path], f"{path}: the kernel reads other bytes"


@pytest.mark.parametrize("tool", list(Tool))
def test_vfat_partition_flashed_onto_used_storage(built: Path, tool: Tool,
                                                  tmp_path: Path) -> None:
    img = built / "out" / "boot.img"
    target = flash(tool, img, img.stat().st_size, tmp_path / "device")
    subprocess.run(["fsck.vfat", "-n", str(target)], check=True, capture_output=True)
    assert_vfat_reads_source(target, source_files(built / "src", "boot"))


@pytest.mark.parametrize("tool", list(Tool))
def test_gpt_disk_flashed_onto_used_storage(built: Path, tool: Tool, tmp_path: Path) -> None:
    img = built / "out" / "disk.img"
    target = flash(tool, img, img.stat().st_size, tmp_path / "device")
    table = json.loads(subprocess.run(["sfdisk", "-J", str(target)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    sector = table.get("sectorsize", 512)
    parts = {p["name"]: p for p in table["partitions"]}
    images = {}
    with target.open("rb") as disk:
        for name in ("boot", "rootfs"):
            disk.seek(parts[name]["start"] * sector)
            images[name] = tmp_path / f"{name}.part"
            images[name].write_bytes(disk.read(parts[name]["size"] * sector))
    assert_ext4_reads_source(images["rootfs"], _rootfs_files(built), tmp_path)
    assert_vfat_reads_source(images["boot"], source_files(built / "src", "boot"))
