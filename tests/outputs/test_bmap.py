"""bmap files: judged by bmaptool 3.x (copy, checksum checks) and an independent parse."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from imagekit import BS, MIB, make_image, sha256

from composer.fs.base import WriteResult
from composer.outputs.bmap import bmap_text, write_bmap
from composer.outputs.compress import compress_zstd
from tests.conftest import env_skip, need

needs_bmaptool = pytest.mark.skipif(not shutil.which("bmaptool"), reason="needs bmap-tools")


def bmaptool_copy(bmap: Path, image: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bmaptool", "copy", "--bmap", str(bmap), str(image), str(dest)],
                          capture_output=True, text=True)


def test_format(image: tuple[Path, WriteResult]) -> None:
    path, result = image
    text = bmap_text(path, result)
    root = ET.fromstring(text)
    assert root.tag == "bmap" and root.get("version") == "2.0"
    field = {child.tag: (child.text or "").strip() for child in root}
    assert field["ImageSize"] == str(8 * MIB)
    assert field["BlockSize"] == "4096"
    assert field["BlocksCount"] == str(8 * MIB // BS)
    assert field["ChecksumType"] == "sha256"
    blockmap = root.find("BlockMap")
    assert blockmap is not None
    ranges = [(r.text or "").strip() for r in blockmap]
    assert ranges == ["0", "256-258", "300-301", "400", "512", "2047"]
    assert field["MappedBlocksCount"] == "9"
    data = path.read_bytes()
    for r in blockmap:
        first, _, last = (r.text or "").strip().partition("-")
        lo, hi = int(first), int(last or first)
        assert r.get("chksum") == hashlib.sha256(data[lo * BS:(hi + 1) * BS]).hexdigest()
    # the file checksum is over the file with its own value written as 64 zeros
    digest = field["BmapFileChecksum"]
    assert hashlib.sha256(text.replace(digest, "0" * 64).encode()).hexdigest() == digest


def test_partial_last_block_hashed_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "odd.img"
    path.write_bytes(b"\x01" * 5000)
    text = bmap_text(path, WriteResult(5000, ((0, 5000),)))
    assert "<BlocksCount> 2 </BlocksCount>" in text
    # one range 0-1, hashed over the 5000 bytes that exist, not 8192
    digest = hashlib.sha256(b"\x01" * 5000).hexdigest()
    assert f'chksum="{digest}"> 0-1 </Range>' in text
    need("bmaptool")  # the independent judge: a skip naming it, a failure in CI
    bmap = tmp_path / "odd.bmap"
    bmap.write_text(text)
    done = bmaptool_copy(bmap, path, tmp_path / "copy.img")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "copy.img").read_bytes() == path.read_bytes()


@needs_bmaptool
def test_bmaptool_copy_reproduces_the_image(tmp_path: Path,
                                            image: tuple[Path, WriteResult]) -> None:
    path, result = image
    bmap = tmp_path / "image.bmap"
    write_bmap(path, result, bmap)
    dest = tmp_path / "copy.img"
    done = bmaptool_copy(bmap, path, dest)
    assert done.returncode == 0, done.stderr
    assert sha256(dest) == sha256(path)


@needs_bmaptool
def test_tampered_mapped_block_fails(tmp_path: Path, image: tuple[Path, WriteResult]) -> None:
    path, result = image
    bmap = tmp_path / "image.bmap"
    write_bmap(path, result, bmap)
    tampered = tmp_path / "tampered.img"
    shutil.copyfile(path, tampered)
    with tampered.open("r+b") as f:
        f.seek(257 * BS + 10)
        f.write(b"\xff")
    done = bmaptool_copy(bmap, tampered, tmp_path / "out.img")
    assert done.returncode != 0
    assert "checksum mismatch for blocks range 256-258" in done.stderr


@needs_bmaptool
def test_tampered_bmap_fails(tmp_path: Path, image: tuple[Path, WriteResult]) -> None:
    path, result = image
    bmap = tmp_path / "image.bmap"
    bmap.write_text(bmap_text(path, result).replace("<MappedBlocksCount> 9",
                                                    "<MappedBlocksCount> 8"))
    done = bmaptool_copy(bmap, path, tmp_path / "out.img")
    assert done.returncode != 0


@needs_bmaptool
@pytest.mark.skipif(not shutil.which("zstd"), reason="needs zstd")
def test_bmaptool_copy_from_zstd(tmp_path: Path, image: tuple[Path, WriteResult]) -> None:
    path, result = image
    bmap = tmp_path / "image.bmap"
    write_bmap(path, result, bmap)
    zst = tmp_path / "image.img.zst"
    compress_zstd(path, zst)
    again = tmp_path / "again.img.zst"
    compress_zstd(path, again)
    assert zst.read_bytes() == again.read_bytes()
    dest = tmp_path / "copy.img"
    done = bmaptool_copy(bmap, zst, dest)
    assert done.returncode == 0, done.stderr
    assert sha256(dest) == sha256(path)


@needs_bmaptool
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or not Path("/dev/loop-control").exists(),
                    reason="needs root and loop devices")
def test_written_zeros_overwrite_a_dirty_device(tmp_path: Path) -> None:
    """On a block device unmapped blocks keep old data; mapped zeros must not."""
    path = tmp_path / "image.img"
    result = make_image(path, size=4 * MIB)
    bmap = tmp_path / "image.bmap"
    write_bmap(path, result, bmap)
    backing = tmp_path / "device.img"
    backing.write_bytes(b"\xff" * (4 * MIB))
    dev = subprocess.run(["losetup", "--show", "-f", str(backing)], capture_output=True,
                         text=True).stdout.strip()
    if not dev:
        env_skip("no-loop-devices", "losetup failed")
    try:
        done = bmaptool_copy(bmap, path, Path(dev))
        assert done.returncode == 0, done.stderr
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)
    data = backing.read_bytes()
    assert data[300 * BS:302 * BS] == bytes(2 * BS)  # mapped zeros arrived
    assert data[10 * BS:11 * BS] == b"\xff" * BS  # an unmapped block kept the old bytes
