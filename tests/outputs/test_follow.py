"""The image and bmap range digests made while an image is written (composer/outputs/follow.py),
judged by sha256sum and bmaptool on the finished image."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from imagekit import BS, MIB

from composer.fs.base import WriteResult, merge_extents
from composer.outputs.bmap import write_bmap
from composer.outputs.follow import WAKE_STEP, Cancelled, ImageDigests
from tests.conftest import need

SIZE = 24 * MIB


def _pieces() -> list[tuple[int, bytes]]:
    """Data pieces in image order: several wake steps of data, written zeros, a fill block,
    a partial block, gaps between them, and the last block."""
    pieces = []
    for i, offset in enumerate(range(BS, SIZE - 2 * BS, 3 * MIB + 5 * BS)):
        pieces.append((offset, bytes([(i * 37 + 1) & 0xFF]) * (2 * MIB + BS) +
                       os.urandom(3 * BS)))
    pieces.append((SIZE - 2 * BS + 100, b"partial"))
    pieces.append((SIZE - BS, b"\xaa" * BS))
    return pieces


def _sha256sum(path: Path) -> str:
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[0]


def _write_following(path: Path, pieces: list[tuple[int, bytes]], digests: ImageDigests,
                     pause: threading.Event | None = None) -> None:
    """Write the pieces in order, reporting after each how much of the image is final."""
    with path.open("r+b") as f:
        for i, (offset, data) in enumerate(pieces):
            f.seek(offset)
            f.write(data)
            f.flush()
            nxt = pieces[i + 1][0] if i + 1 < len(pieces) else SIZE
            digests.advance(nxt)  # everything before the next piece is final
            if pause is not None:
                pause.wait(0.01)


def _image(tmp_path: Path) -> tuple[Path, list[tuple[int, bytes]], WriteResult]:
    path = tmp_path / "image.img"
    with path.open("wb") as f:
        f.truncate(SIZE)
    pieces = _pieces()
    return path, pieces, WriteResult(SIZE, merge_extents([(o, len(d)) for o, d in pieces]))


def test_digests_made_while_writing_match_the_finished_image(tmp_path: Path) -> None:
    need("sha256sum")
    path, pieces, result = _image(tmp_path)
    digests = ImageDigests(path, result.extents, result.size)
    # slow writes: the helper threads wait at the mark again and again; a read past it would
    # hash bytes that are still zero and give a wrong digest
    _write_following(path, pieces, digests, threading.Event())
    digests.finish()
    assert digests.image.result(timeout=60) == _sha256sum(path)
    need("bmaptool")
    bmap = tmp_path / "image.bmap"
    write_bmap(path, result, bmap, digests=digests.ranges.result(timeout=60))
    dest = tmp_path / "copy.img"
    done = subprocess.run(["bmaptool", "copy", "--bmap", str(bmap), str(path), str(dest)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # bmaptool checks every range's sha256
    assert _sha256sum(dest) == _sha256sum(path)


def test_cancel_stops_the_threads(tmp_path: Path) -> None:
    path, _, result = _image(tmp_path)
    digests = ImageDigests(path, result.extents, result.size)
    digests.advance(WAKE_STEP)
    digests.cancel()  # returns only once both threads ended
    with pytest.raises(Cancelled):
        digests.image.result(timeout=10)
    with pytest.raises(Cancelled):
        digests.ranges.result(timeout=10)
