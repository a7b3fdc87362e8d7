"""A tar archive with its members in reversed order and nothing else changed, for `compose
reproduce`: the same input to composer, other bytes on disk.

Each member is moved as the bytes the archive stores for it (its pax or GNU extended headers,
its header, its data, sparse maps included), so no field can be lost in a rewrite. Only the
order changes, and only where extraction would not notice: every member that touches a path (as
its own path or as a hard link's target) stays after the earlier members that touch that path,
so a hard link still follows its target and the last copy of a repeated path is still the last.
"""

from __future__ import annotations

import heapq
import tarfile
from pathlib import Path
from typing import BinaryIO

import libarchive

from composer.errors import ComposerError
from composer.sources.archive import member_path

_EOF = bytes(1024)  # two zero blocks end a tar archive


def reversed_tar(source: Path, out: Path, work: Path) -> None:
    """Write `out`: `source` (any compression libarchive reads) uncompressed, members in
    reversed order. ComposerError (with the reason) when it is not a tar archive this can
    reorder faithfully."""
    plain = work / "decompressed.tar"
    _decompress(source, plain)
    try:
        spans, paths = _member_spans(plain)
        order = _reversed_order(paths)
        with plain.open("rb") as src, out.open("wb") as dst:
            for index in order:
                start, end = spans[index]
                src.seek(start)
                _copy(src, dst, end - start)
            dst.write(_EOF)
    finally:
        plain.unlink(missing_ok=True)


def _decompress(source: Path, out: Path) -> None:
    try:
        with libarchive.file_reader(str(source), "raw") as archive, out.open("wb") as f:
            for entry in archive:
                for block in entry.get_blocks():
                    f.write(block)
    except libarchive.ArchiveError as exc:
        raise ComposerError(f"{source.name} cannot be decompressed ({exc})") from None


def _member_spans(plain: Path) -> tuple[list[tuple[int, int]], list[tuple[str, ...]]]:
    """Each member's byte span and the paths it touches."""
    try:
        with tarfile.open(plain, "r:") as tar:
            members = tar.getmembers()
            end = tar.offset
            if tar.pax_headers:
                raise ComposerError(f"{plain.name} has pax global headers, which apply to the "
                                    "members after them: reordering would change them")
    except tarfile.TarError as exc:
        raise ComposerError(f"not a tar archive Python's tarfile reads ({exc})") from None
    if not members:
        raise ComposerError("an empty archive")
    starts = [m.offset for m in members] + [end]
    spans = [(starts[i], starts[i + 1]) for i in range(len(members))]
    paths = []
    for m in members:
        touched = [member_path(m.name)[0]]
        if m.islnk():
            touched.append(member_path(m.linkname)[0])
        paths.append(tuple(touched))
    return spans, paths


def _reversed_order(paths: list[tuple[str, ...]]) -> list[int]:
    """Indexes from last to first, but each member after every earlier one touching one of
    its paths (Kahn's algorithm, taking the highest ready index first)."""
    last_touch: dict[str, int] = {}
    waiting_on = [0] * len(paths)
    unblocks: list[list[int]] = [[] for _ in paths]
    for index, touched in enumerate(paths):
        before = {last_touch[p] for p in touched if p in last_touch}
        waiting_on[index] = len(before)
        for earlier in before:
            unblocks[earlier].append(index)
        for p in touched:
            last_touch[p] = index
    ready = [-i for i, n in enumerate(waiting_on) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = -heapq.heappop(ready)
        order.append(index)
        for later in unblocks[index]:
            waiting_on[later] -= 1
            if waiting_on[later] == 0:
                heapq.heappush(ready, -later)
    return order


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    left = n
    while left:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            raise ComposerError("the archive ended inside a member")
        dst.write(chunk)
        left -= len(chunk)

