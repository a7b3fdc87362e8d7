"""Where a sparse file holds data: its extents from lseek(2) SEEK_DATA/SEEK_HOLE.

Readers of images (verify, diff, personalize patches) read only these extents, so a 10 GiB
image that is mostly holes costs its data, not its size.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import BinaryIO


def data_extents(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(first, stop) byte ranges of `fd` between `start` and `end` that may hold data; the
    rest is holes. A file system without hole reporting answers as if it were all data."""
    pos = start
    while pos < end:
        try:
            first = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: only a hole after pos
                yield pos, end
            return
        if first >= end:
            return
        stop = min(os.lseek(fd, first, os.SEEK_HOLE), end)
        yield first, stop
        pos = stop


def paired_chunks(a: BinaryIO, b: BinaryIO, start: int, end: int,
                  chunk: int) -> Iterator[tuple[int, bytes, bytes]]:
    """(offset, a's bytes, b's bytes) of [start, end) in pieces of up to `chunk` bytes, read
    from both at the same offsets; it ends early where `a` ends."""
    a.seek(start)
    b.seek(start)
    pos = start
    while pos < end:
        n = min(chunk, end - pos)
        x = a.read(n)
        if not x:
            return
        yield pos, x, b.read(n)
        pos += n
