"""`compose verify`: a build folder against SHA256SUMS and its manifest, tar partitions file by
file (--deep), and a bmap-flashed device over the mapped ranges only (--device)."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.checkkit import build_demo, compose_json, copy_build, flip_byte
from tests.conftest import compose
from tests.flashkit import STALE, Tool, flash, flash_reason, stale_file


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    return build_demo(tmp_path_factory.mktemp("verify"), golden)


def test_a_fresh_build_verifies(built: Path) -> None:
    code, report = compose_json("verify", str(built), "--deep")
    assert code == 0 and report["ok"] and report["differences"] == []
    # every listed output was hashed, and sha256sum agrees that they are the listed ones
    listed = [line.split("  ", 1)[1] for line in
              (built / "SHA256SUMS").read_text().splitlines()]
    assert set(listed) <= set(report["checked"])
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=built).returncode == 0
    # tar, vfat and ext4 partitions were read file by file
    assert any(c.startswith("app.tar: ") for c in report["checked"])
    assert any(c.startswith("boot.img: ") for c in report["checked"])
    assert any(c.startswith("rootfs.img: ") for c in report["checked"])
    assert report["not_checked"] == []


def test_one_flipped_byte_in_an_image(built: Path, tmp_path: Path) -> None:
    out = copy_build(built, tmp_path / "out")
    flip_byte(out / "rootfs.img", 1024 + 0x78)  # the ext4 superblock's volume name
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out,
                          capture_output=True).returncode != 0
    code, report = compose_json("verify", str(out))
    assert code == 1
    assert [d["where"] for d in report["differences"]] == ["rootfs.img"]


def test_a_missing_output(built: Path, tmp_path: Path) -> None:
    out = copy_build(built, tmp_path / "out")
    (out / "docker.simg").unlink()
    done = compose("verify", str(out))
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["DIFFERS docker.simg: is missing"]


def _member_data_offset(tar: Path, wanted: str) -> tuple[str, int]:
    """(member name, offset of its first data byte) of a regular member, by Python's tarfile."""
    with tarfile.open(tar) as t:
        for m in t.getmembers():
            if m.isfile() and m.size > 4 and wanted in m.name:
                return m.name, m.offset_data
    raise AssertionError(f"no member like {wanted} in {tar}")


def test_one_flipped_byte_in_a_file_inside_a_tar_partition(built: Path, tmp_path: Path) -> None:
    out = copy_build(built, tmp_path / "out")
    name, offset = _member_data_offset(out / "app.tar", "")
    flip_byte(out / "app.tar", offset + 2)
    assert subprocess.run(["tar", "-tf", str(out / "app.tar")], capture_output=True).returncode == 0
    code, shallow = compose_json("verify", str(out))
    assert code == 1 and [d["where"] for d in shallow["differences"]] == ["app.tar"]
    code, deep = compose_json("verify", str(out), "--deep")
    assert code == 1
    path = "/" + name.removeprefix("./")
    # the image, then the one file inside it, and nothing else
    assert [d["where"] for d in deep["differences"]] == ["app.tar", f"app:{path}"]
    assert deep["differences"][1]["what"].startswith("content: the manifest says [")


def test_one_flipped_byte_in_a_file_inside_a_vfat_partition(built: Path, tmp_path: Path) -> None:
    out = copy_build(built, tmp_path / "out")
    image = out / "boot.img"
    original = subprocess.run(["mtype", "-i", str(image), "::config.txt"], capture_output=True,
                              check=True).stdout
    data = image.read_bytes()
    assert data.count(original) == 1
    flip_byte(image, data.index(original) + 3)
    damaged = subprocess.run(["mtype", "-i", str(image), "::config.txt"], capture_output=True,
                             check=True).stdout
    assert damaged != original and len(damaged) == len(original)  # mtools sees it too
    code, deep = compose_json("verify", str(out), "--deep")
    assert code == 1
    assert [d["where"] for d in deep["differences"]] == ["boot.img", "boot:/config.txt"]
    assert deep["differences"][1]["what"].startswith("content: the manifest says [26, ")


def _bmap_ranges(bmap: Path) -> list[tuple[int, int]]:
    """(first, last) block of every mapped range, read with a regex (not composer's reader)."""
    return [(int(a), int(b or a)) for a, b in
            re.findall(r"<Range chksum=\"[0-9a-f]+\">\s*(\d+)(?:-(\d+))?\s*</Range>",
                       bmap.read_text())]


def _partition_start(disk: Path, name: str) -> int:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    part = next(p for p in table["partitions"] if p.get("name") == name)
    return part["start"] * table.get("sectorsize", 512)


def _flashed(kind: str, out: Path, target: Path) -> Path:
    size = (out / "disk.img").stat().st_size
    if kind == "loop":  # a used device: unmapped blocks keep the stale 0xAA
        reason = flash_reason()
        if reason is not None:
            pytest.skip(reason)
        return flash(Tool.BMAPTOOL, out / "disk.img", size, target)
    stale_file(target, size)  # a plain file: bmaptool truncates it, unmapped blocks read 0
    subprocess.run(["bmaptool", "-q", "copy", "--bmap", str(out / "disk.bmap"),
                    str(out / "disk.img"), str(target)], check=True)
    return target


@pytest.mark.parametrize("kind", ["loop", "file"])
def test_a_bmap_flashed_device(kind: str, built: Path, tmp_path: Path) -> None:
    device = _flashed(kind, built, tmp_path / "device.bin")
    assert compose("verify", str(built), "--device", str(device)).returncode == 0
    ranges = _bmap_ranges(built / "disk.bmap")
    mapped = {b for first, last in ranges for b in range(first, last + 1)}
    # one flipped byte in the unmapped free space: what the bmap leaves out is not compared
    free = next(b for b in range(ranges[0][1] + 1, ranges[-1][0]) if b not in mapped)
    with device.open("rb") as f:
        f.seek(free * 4096)
        assert f.read(1)[0] == (STALE if kind == "loop" else 0)
    flip_byte(device, free * 4096 + 7)
    assert compose("verify", str(built), "--device", str(device)).returncode == 0
    # one flipped byte inside the range holding rootfs's superblock
    at = _partition_start(built / "disk.img", "rootfs") + 1024 + 0x78
    first, last = next(r for r in ranges if r[0] * 4096 <= at < (r[1] + 1) * 4096)
    flip_byte(device, at)
    done = compose("verify", str(built), "--device", str(device))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"DIFFERS device: mapped range blocks {first}-{last} (bytes {first * 4096}-"
        f"{(last + 1) * 4096 - 1}) differs, first at byte {at} (in partition rootfs, byte "
        f"{1024 + 0x78} of it)"]


def test_bad_arguments_exit_2(built: Path, tmp_path: Path) -> None:
    assert compose("verify", str(tmp_path / "nowhere")).returncode == 2
    assert compose("verify", str(built), "--device", str(tmp_path / "nodev")).returncode == 2
    done = compose("verify", str(tmp_path))  # a folder, but no build in it
    assert done.returncode == 1 and "manifest.json" in done.stderr
