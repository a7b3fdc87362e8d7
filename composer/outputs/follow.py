"""The image's sha256 and its bmap range digests, made while the image is written.

A writer that knows its block map before it writes (ext4 plans every block first) reports,
as it goes, how many of the image's first bytes are final (`advance`). A forked child process
reads the mapped ranges up to that mark once, feeding both the whole image's sha256
(SHA256SUMS, the manifest) and each bmap range's (`composer/outputs/bmap.py`); bytes outside
the ranges are zero (holes), hashed from a shared zero buffer without being read.

A process rather than threads: the writer is Python, and hashing threads beside it took the
interpreter lock from it at every read and every hash call (the writer's data pass of the
bench snapshot took 2.0 s with them, 1.4 s without). The child runs on the other core and
shares nothing with the writer but the image file and a pipe of marks. When the data comes in
block order (a folder, or an uncompressed tar read at its offsets) the digests are done soon
after the image; when it does not (a compressed archive, in its own order), they are made
after the write, as before.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from composer.outputs.bmap import BLOCK_SIZE, block_ranges
from composer.parallel import Forked, can_fork

READ_CHUNK = 1 << 20
# the writer's reports go to the child only when they moved the mark this far: a report per
# file (tens of thousands) would cost a system call each
WAKE_STEP = 4 << 20
_ZEROS = bytes(READ_CHUNK)
_MARK = struct.Struct("<q")  # one report on the pipe: the new mark, or -1 (cancelled)
_CANCEL = -1


class Cancelled(Exception):
    """The write failed or was interrupted: the digests will never be complete."""


class _Collected(Future):  # type: ignore[type-arg]
    """A digest future that, asked for its result, first collects the child's answer."""

    def __init__(self, collect: Any) -> None:
        super().__init__()
        self._collect = collect

    def result(self, timeout: float | None = None) -> Any:
        self._collect()
        return super().result(timeout)


class ImageDigests:
    """Follows the writing of `path`, whose mapped bytes will be `extents` ((offset, length)
    pairs) of an image of `size` bytes. `image` gets the sha256 of the whole image, `ranges`
    the sha256 of each bmap range (`block_ranges(extents, size)`), both as hex."""

    def __init__(self, path: Path, extents: Iterable[tuple[int, int]], size: int) -> None:
        self.extents = tuple(extents)
        self.size = size
        self.image: Future[str] = _Collected(self._collect)
        self.ranges: Future[list[str]] = _Collected(self._collect)
        self._reported = 0
        self._lock = threading.Lock()  # the image and the bmap may ask from two threads
        self._marks_r, self._marks_w = os.pipe()
        work = _Digests(path, self.extents, size, self._marks_r)
        self._child: Forked[tuple[str, list[str]]] | None = None
        self._thread: threading.Thread | None = None
        if can_fork():
            self._child = Forked(functools.partial(work.run, self._marks_w),
                                 f"the process hashing {path.name}")
            try:
                self._child.start()
            finally:
                os.close(self._marks_r)  # the child's end
        else:  # no fork (not Linux): a thread does the same work, sharing the interpreter
            self._thread = threading.Thread(target=self._run_here, args=(work,), daemon=True,
                                            name=f"digests {path.name}")
            self._thread.start()

    def advance(self, final: int) -> None:
        """The image's first `final` bytes will not change any more (called by the writer)."""
        final = min(final, self.size)
        if final >= self._reported + WAKE_STEP or final == self.size > self._reported:
            self._reported = final
            self._tell(final)

    def finish(self) -> None:
        """The image is complete."""
        if self._reported < self.size:
            self._reported = self.size
            self._tell(self.size)
        self._close()

    def cancel(self) -> None:
        """The image will not be completed: stop reading (the futures raise Cancelled)."""
        self._tell(_CANCEL)
        self._close()
        if self._child is not None:
            self._child.stop()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for future in (self.image, self.ranges):
                if not future.done():
                    future.set_exception(Cancelled())

    def _tell(self, mark: int) -> None:
        if self._marks_w >= 0:
            try:
                os.write(self._marks_w, _MARK.pack(mark))
            except OSError:  # the child has died: collecting its answer says how
                pass

    def _close(self) -> None:
        if self._marks_w >= 0:
            os.close(self._marks_w)
            self._marks_w = -1

    def _collect(self) -> None:
        with self._lock:
            if self.image.done():
                return
            if self._child is None:  # the thread sets them
                assert self._thread is not None
                self._thread.join()
                return
            self._settle(self._child.result)

    def _run_here(self, work: _Digests) -> None:
        self._settle(work.run)

    def _settle(self, answer: Callable[[], tuple[str, list[str]]]) -> None:
        """Both futures from `answer()`: its digests, or what it raised."""
        try:
            image, ranges = answer()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the futures
            self.image.set_exception(exc)
            self.ranges.set_exception(exc)
            return
        self.image.set_result(image)
        self.ranges.set_result(ranges)


class _Digests:
    """What the child does: read the image up to each mark it is sent, hash as it reads."""

    def __init__(self, path: Path, extents: tuple[tuple[int, int], ...], size: int,
                 marks: int) -> None:
        self._path, self._extents, self._size, self._marks = path, extents, size, marks
        self._mark = 0
        self._pending = b""

    def _wait_for(self, offset: int) -> int:
        """Block until the byte at `offset` is final; returns the mark."""
        while self._mark <= offset:
            got = os.read(self._marks, 4096)
            if not got:  # the writer closed its end before the image was complete
                raise Cancelled
            self._pending += got
            whole = len(self._pending) - len(self._pending) % _MARK.size
            for (mark,) in _MARK.iter_unpack(self._pending[:whole]):
                if mark == _CANCEL:
                    raise Cancelled
                self._mark = max(self._mark, mark)
            self._pending = self._pending[whole:]
        return self._mark

    def run(self, writers_end: int = -1) -> tuple[str, list[str]]:
        """(the image's digest, each bmap range's digest). In a forked child, `writers_end` is
        the pipe's other end, inherited: closed, so that the writer's close reads as the end."""
        if writers_end >= 0:
            os.close(writers_end)
        image = hashlib.sha256()
        digests: list[str] = []
        view = memoryview(b"")  # the read buffer, made at the first read
        pos = 0
        fd = -1
        try:
            for first, last in block_ranges(self._extents, self._size, BLOCK_SIZE):
                start, end = first * BLOCK_SIZE, min((last + 1) * BLOCK_SIZE, self._size)
                _zeros(image, start - pos)
                h = hashlib.sha256()
                while start < end:
                    mark = self._wait_for(start)
                    if fd < 0:  # the writer made the file before its first report
                        fd = os.open(self._path, os.O_RDONLY)
                        view = memoryview(bytearray(READ_CHUNK))
                    n = _read(fd, view[:min(end, mark, start + READ_CHUNK) - start], start)
                    image.update(view[:n])
                    h.update(view[:n])
                    start += n
                digests.append(h.hexdigest())
                pos = end
        finally:
            if fd >= 0:
                os.close(fd)
            os.close(self._marks)
        _zeros(image, self._size - pos)
        return image.hexdigest(), digests


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
