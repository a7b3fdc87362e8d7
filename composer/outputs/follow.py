"""The image's sha256 and its bmap range digests, made while the image is written.

A writer that knows its block map before it writes (ext4 plans every block first) reports,
as it goes, how many of the image's first bytes are final (`advance`). Two helper threads
read the mapped ranges up to that mark, one for the whole image's sha256 (SHA256SUMS, the
manifest), one for each bmap range's (`composer/outputs/bmap.py`); bytes outside the ranges
are zero (holes), hashed from a shared zero buffer without being read. When the data comes
in block order (a folder source: it is read in the order the blocks were allocated), the
digests are done soon after the image; when it does not (an archive in its own order), they
are made after the write, as before, on the two threads side by side.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from composer.outputs.bmap import BLOCK_SIZE, block_ranges

READ_CHUNK = 1 << 20
# the writer's reports wake the reader only when they moved the mark this far: a report per
# file (tens of thousands) would cost a lock and a thread switch each
WAKE_STEP = 4 << 20
_ZEROS = bytes(READ_CHUNK)


class Cancelled(Exception):
    """The write failed or was interrupted: the digests will never be complete."""


class ImageDigests:
    """Follows the writing of `path`, whose mapped bytes will be `extents` ((offset, length)
    pairs) of an image of `size` bytes. `image` gets the sha256 of the whole image, `ranges`
    the sha256 of each bmap range (`block_ranges(extents, size)`), both as hex."""

    def __init__(self, path: Path, extents: Iterable[tuple[int, int]], size: int) -> None:
        self.extents = tuple(extents)
        self.size = size
        self.image: Future[str] = Future()
        self.ranges: Future[list[str]] = Future()
        self._path = path
        self._mark = 0  # bytes [0, _mark) are final
        self._reported = 0
        self._cancelled = False
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._run, args=(whole,), daemon=True,
                                          name=f"{'sha256' if whole else 'bmap'} {path.name}")
                         for whole in (True, False)]
        for thread in self._threads:
            thread.start()

    def advance(self, final: int) -> None:
        """The image's first `final` bytes will not change any more (called by the writer)."""
        final = min(final, self.size)
        if final >= self._reported + WAKE_STEP or final == self.size > self._reported:
            self._reported = final
            with self._cond:
                self._mark = final
                self._cond.notify_all()

    def finish(self) -> None:
        """The image is complete."""
        self._reported = self.size
        with self._cond:
            self._mark = self.size
            self._cond.notify_all()

    def cancel(self) -> None:
        """The image will not be completed: stop reading (the futures raise Cancelled)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _wait_for(self, offset: int) -> int:
        """Block until the byte at `offset` is final; returns the mark."""
        with self._cond:
            while self._mark <= offset and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                raise Cancelled
            return self._mark

    def _run(self, whole: bool) -> None:
        result = self.image if whole else self.ranges
        try:
            digests = self._digests(whole)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            result.set_exception(exc)
            return
        if whole:
            self.image.set_result(digests[0])
        else:
            self.ranges.set_result(digests)

    def _digests(self, whole: bool) -> list[str]:
        """[the image's digest] (`whole`), else each bmap range's digest."""
        image = hashlib.sha256()
        digests: list[str] = []
        view = memoryview(b"")  # the read buffer, made at the first read (for an archive
        pos = 0                 # source, after the write and its memory peak)
        fd = -1
        try:
            for first, last in block_ranges(self.extents, self.size, BLOCK_SIZE):
                start, end = first * BLOCK_SIZE, min((last + 1) * BLOCK_SIZE, self.size)
                if whole:
                    _zeros(image, start - pos)
                h = image if whole else hashlib.sha256()
                while start < end:
                    mark = self._wait_for(start)
                    if fd < 0:  # the writer made the file before its first report
                        fd = os.open(self._path, os.O_RDONLY)
                        view = memoryview(bytearray(READ_CHUNK))
                    n = _read(fd, view[:min(end, mark, start + READ_CHUNK) - start], start)
                    h.update(view[:n])
                    start += n
                if not whole:
                    digests.append(h.hexdigest())
                pos = end
        finally:
            if fd >= 0:
                os.close(fd)
        if whole:
            _zeros(image, self.size - pos)
            digests.append(image.hexdigest())
        return digests


def _read(fd: int, view: memoryview, offset: int) -> int:
    """Fill `view` from `offset`; bytes past the file's end read as zeros (a hole at its end
    that bmaptool would read the same way)."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            view[got:] = _ZEROS[:len(view) - got]
            break
        got += n
    return len(view)


def _zeros(h: Any, n: int) -> None:
    while n > 0:
        step = min(n, READ_CHUNK)
        h.update(_ZEROS if step == READ_CHUNK else memoryview(_ZEROS)[:step])
        n -= step
