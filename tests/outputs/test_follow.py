"""The image and bmap range digests made while an image is written (composer/outputs/follow.py),
judged by sha256sum and bmaptool on the finished image, and by hashlib whatever the steps the
writer reports in; a cancelled or killed hashing child leaves no process and no hang."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from imagekit import BS, MIB

from composer.errors import ComposerError
from composer.fs.base import WriteResult, merge_extents
from composer.outputs.bmap import BLOCK_SIZE, block_ranges, write_bmap
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


def test_cancel_stops_the_child(tmp_path: Path) -> None:
    path, _, result = _image(tmp_path)
    digests = ImageDigests(path, result.extents, result.size)
    digests.advance(WAKE_STEP)
    digests.cancel()  # returns only once the hashing child has ended
    assert multiprocessing.active_children() == []
    with pytest.raises(Cancelled):
        digests.image.result(timeout=10)
    with pytest.raises(Cancelled):
        digests.ranges.result(timeout=10)


STEPPED_SIZE = 3 * WAKE_STEP + 12345
STEPPED_EXTENTS = ((0, 8192), (WAKE_STEP - 4096, WAKE_STEP + 70000), (3 * WAKE_STEP, 12345))


def _stepped_expected(path: Path) -> tuple[str, list[str]]:
    data = path.read_bytes().ljust(STEPPED_SIZE, b"\0")
    ranges = [hashlib.sha256(data[a * BLOCK_SIZE:min((b + 1) * BLOCK_SIZE, STEPPED_SIZE)])
              .hexdigest() for a, b in block_ranges(STEPPED_EXTENTS, STEPPED_SIZE, BLOCK_SIZE)]
    return hashlib.sha256(data).hexdigest(), ranges


def _write_stepped(path: Path, follower: ImageDigests, step: int) -> None:
    """Mapped bytes of a pseudo-random image, written front to back in `step`-byte pieces,
    each reported final once written; the rest stays a hole (zeros)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, STEPPED_SIZE)
        seed = hashlib.sha256(b"image").digest()
        for offset, length in STEPPED_EXTENTS:
            pos = offset
            while pos < offset + length:
                n = min(step, offset + length - pos)
                os.pwrite(fd, (seed * (n // 32 + 1))[:n], pos)
                pos += n
                follower.advance(pos)
    finally:
        os.close(fd)


@pytest.mark.parametrize("step", [4096, 1 << 20, 5 << 20])
def test_digests_equal_those_of_the_finished_file(tmp_path: Path, step: int) -> None:
    path = tmp_path / "img"
    follower = ImageDigests(path, STEPPED_EXTENTS, STEPPED_SIZE)
    _write_stepped(path, follower, step)
    follower.finish()
    image, ranges = _stepped_expected(path)
    assert follower.ranges.result() == ranges  # the bmap asks first, from another thread
    assert follower.image.result() == image


def test_cancel_before_the_image_is_done_stops_the_child(tmp_path: Path) -> None:
    path = tmp_path / "img"
    follower = ImageDigests(path, STEPPED_EXTENTS, STEPPED_SIZE)
    follower.advance(8192)  # the child now waits for a mark it will never get
    follower.cancel()
    assert multiprocessing.active_children() == []
    with pytest.raises(Cancelled):
        follower.image.result()
    with pytest.raises(Cancelled):
        follower.ranges.result()


def test_a_killed_child_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "img"
    follower = ImageDigests(path, STEPPED_EXTENTS, STEPPED_SIZE)
    [child] = multiprocessing.active_children()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    _write_stepped(path, follower, 1 << 20)  # reports to a dead child do not fail the writer
    follower.finish()
    with pytest.raises(ComposerError, match="hashing img stopped"):
        follower.image.result()
