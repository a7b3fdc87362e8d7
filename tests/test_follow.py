"""The image and bmap range digests made by a child process while the image is written
(composer/outputs/follow.py): equal to hashlib over the finished file, whatever the steps the
writer reports in; a cancelled or killed child leaves no process and no hang."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.outputs.bmap import BLOCK_SIZE, block_ranges
from composer.outputs.follow import WAKE_STEP, Cancelled, ImageDigests

SIZE = 3 * WAKE_STEP + 12345
EXTENTS = ((0, 8192), (WAKE_STEP - 4096, WAKE_STEP + 70000), (3 * WAKE_STEP, 12345))


def _expected(path: Path) -> tuple[str, list[str]]:
    data = path.read_bytes().ljust(SIZE, b"\0")
    ranges = [hashlib.sha256(data[a * BLOCK_SIZE:min((b + 1) * BLOCK_SIZE, SIZE)]).hexdigest()
              for a, b in block_ranges(EXTENTS, SIZE, BLOCK_SIZE)]
    return hashlib.sha256(data).hexdigest(), ranges


def _write(path: Path, follower: ImageDigests, step: int) -> None:
    """Mapped bytes of a pseudo-random image, written front to back in `step`-byte pieces,
    each reported final once written; the rest stays a hole (zeros)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, SIZE)
        seed = hashlib.sha256(b"image").digest()
        for offset, length in EXTENTS:
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
    follower = ImageDigests(path, EXTENTS, SIZE)
    _write(path, follower, step)
    follower.finish()
    image, ranges = _expected(path)
    assert follower.ranges.result() == ranges  # the bmap asks first, from another thread
    assert follower.image.result() == image


def test_cancel_stops_the_child_and_the_futures_say_so(tmp_path: Path) -> None:
    path = tmp_path / "img"
    follower = ImageDigests(path, EXTENTS, SIZE)
    follower.advance(8192)  # the child now waits for a mark it will never get
    follower.cancel()
    assert multiprocessing.active_children() == []
    with pytest.raises(Cancelled):
        follower.image.result()
    with pytest.raises(Cancelled):
        follower.ranges.result()


def test_a_killed_child_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "img"
    follower = ImageDigests(path, EXTENTS, SIZE)
    [child] = multiprocessing.active_children()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    _write(path, follower, 1 << 20)  # reports to a dead child do not fail the writer
    follower.finish()
    with pytest.raises(ComposerError, match="hashing img stopped"):
        follower.image.result()
