"""Where a sparse file holds data: its extents from lseek(2) SEEK_DATA/SEEK_HOLE.

Readers of images (verify, diff, personalize patches) read only these extents, so a 10 GiB
image that is mostly holes costs its data, not its size.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator


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
