"""A whole GPT disk through every flashing output: bmaptool copy and simg2img give it back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from imagekit import MIB, make_image, sha256

from composer.disk.assemble import DiskPartitionSpec as P
from composer.disk.assemble import plan_disk, write_disk
from composer.fs.base import WriteResult
from composer.outputs.bmap import write_bmap
from composer.outputs.simg import write_simg


@pytest.fixture
def disk(tmp_path: Path) -> tuple[Path, WriteResult]:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    images = {"a": (a, make_image(a, 8 * MIB)), "b": (b, make_image(b, 4 * MIB))}
    plan = plan_disk("gpt", [P("a", 8 * MIB, "linux"), P("b", 6 * MIB, "linux"),
                             P("empty", 4 * MIB, "linux")], seed="outputs")
    out = tmp_path / "disk.img"
    return out, write_disk(plan, images, out)


@pytest.mark.skipif(not shutil.which("bmaptool"), reason="needs bmap-tools")
def test_bmap_round_trip(tmp_path: Path, disk: tuple[Path, WriteResult]) -> None:
    img, result = disk
    write_bmap(img, result, tmp_path / "disk.bmap")
    dest = tmp_path / "copy.img"
    done = subprocess.run(["bmaptool", "copy", "--bmap", str(tmp_path / "disk.bmap"), str(img),
                           str(dest)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sha256(dest) == sha256(img)


@pytest.mark.skipif(not shutil.which("simg2img"), reason="needs simg2img")
def test_simg_round_trip(tmp_path: Path, disk: tuple[Path, WriteResult]) -> None:
    img, result = disk
    write_simg(img, result, tmp_path / "disk.simg")
    raw = tmp_path / "raw.img"
    done = subprocess.run(["simg2img", str(tmp_path / "disk.simg"), str(raw)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sha256(raw) == sha256(img)
