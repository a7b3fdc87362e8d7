"""Field-level differences between two images: which structure and which field of it differ,
named through the structures' one declaration (composer/structs.py and the layouts modules).

The interface every format module (fielddiff_ext4, fielddiff_disk, fielddiff_fat, fielddiff_tar)
keeps: a function of two open images (each with the offset and length of the file system in it)
returning FieldChanges. They stream: both images are compared in CHUNK-sized reads (holes both
sides share are skipped unread), and only the units that differ are decoded. A change that
follows from another (a checksum over a changed field, a backup copy of a changed primary) is
kept with `follows` set to the change it follows, so people see where a difference starts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from composer.sparse import data_extents
from composer.structs import Struct

# progress(bytes done, bytes total): called with non-decreasing values, last with done == total
Progress = Callable[[int, int], None]
CHUNK = 1 << 20
MAX_CHANGES = 10000  # beyond this a format module stops decoding (a wholly other image)
MAX_SHOWN_BYTES = 32  # a longer bytes value is shown as its first bytes and its length


@dataclass(frozen=True, slots=True)
class FieldChange:
    """`field` of `structure` is `a` in A and `b` in B; a byte range no structure explains has
    structure "bytes X-Y" and, as field, what holds those bytes ("file data of inode 12")."""

    structure: str  # "ext4 superblock", "inode 12 (/etc/hostname)", "GPT entry 2", "bytes 0-9"
    field: str
    a: Any = None
    b: Any = None
    follows: str | None = None  # "ext4 superblock s_uuid": the change this one follows from

    @property
    def is_bytes(self) -> bool:
        return self.structure.startswith("bytes ")

    @property
    def key(self) -> str:
        return f"{self.structure} {self.field}"

    def within(self, prefix: str, offset: int = 0) -> FieldChange:
        """The same change inside a bigger whole (a partition at byte `offset` of a disk
        image): a byte range moves by the offset and names the part in its holder."""
        follows = f"{prefix}: {self.follows}" if self.follows else None
        if self.is_bytes:
            first, last = (int(n) for n in self.structure.removeprefix("bytes ").split("-"))
            return replace(self, structure=f"bytes {first + offset}-{last + offset}",
                           field=f"{prefix}: {self.field}", follows=follows)
        return replace(self, structure=f"{prefix}: {self.structure}", follows=follows)


@dataclass(frozen=True, slots=True)
class Region:
    """Where one side's file system lies in its image file."""

    f: BinaryIO
    offset: int
    length: int

    def read(self, at: int, size: int) -> bytes:
        size = max(0, min(size, self.length - at))
        self.f.seek(self.offset + at)
        return self.f.read(size).ljust(size, b"\0")  # a sparse file's short tail reads as zeros


def monotone(progress: Progress | None) -> Progress | None:
    """`progress` never told a smaller number than before (parts read out of order)."""
    if progress is None:
        return None
    best = 0

    def tell(done: int, total: int) -> None:
        nonlocal best
        best = max(best, min(done, total))
        progress(best, total)

    return tell


def byte_range(start: int, end: int, holder: str, follows: str | None = None) -> FieldChange:
    """Bytes [start, end) that differ, held by `holder`."""
    return FieldChange(f"bytes {start}-{end - 1}", holder, follows=follows)


def narrowed(a: Region, b: Region, start: int, end: int, holder: str) -> FieldChange:
    """The byte range from the first to the last byte of [start, end) that differs (read
    again in CHUNK pieces: only ranges already known to differ are narrowed)."""
    first = last = None
    pos = start
    while pos < end:
        n = min(CHUNK, end - pos)
        x, y = a.read(pos, n), b.read(pos, n)
        if x != y:
            hits = [i for i in range(n) if x[i] != y[i]] if n <= 4096 else None
            if hits is None:
                lo = next(i for i in range(n) if x[i] != y[i])
                hi = next(i for i in range(n - 1, -1, -1) if x[i] != y[i])
            else:
                lo, hi = hits[0], hits[-1]
            first = pos + lo if first is None else first
            last = pos + hi
        pos += n
    if first is None or last is None:
        return byte_range(start, end, holder)
    return byte_range(first, last + 1, holder)


def struct_changes(decl: Struct, structure: str, a: bytes, b: bytes, at: int = 0,
                   show: Callable[[str, Any], Any] | None = None) -> list[FieldChange]:
    """The fields of `decl` (at byte `at` of a and b) whose values differ."""
    fa = decl.unpack(a[at:at + decl.size].ljust(decl.size, b"\0"))
    fb = decl.unpack(b[at:at + decl.size].ljust(decl.size, b"\0"))
    look = show or (lambda _name, value: value)
    return [FieldChange(structure, name, shown_value(look(name, fa[name])),
                        shown_value(look(name, fb[name])))
            for name, _ in decl.fields if fa[name] != fb[name]]


def shown_value(value: Any) -> Any:
    """A field value as JSON and people take it: bytes as hex (long ones cut short)."""
    if isinstance(value, bytes | bytearray):
        if len(value) > MAX_SHOWN_BYTES:
            return f"{bytes(value[:MAX_SHOWN_BYTES]).hex()}… ({len(value)} bytes)"
        return bytes(value).hex()
    return value


def guid_le(value: Any) -> Any:
    """A GUID stored mixed-endian (GPT, uuid.bytes_le) as its text form."""
    return str(uuid.UUID(bytes_le=bytes(value))) if isinstance(value, bytes) else value


def uuid_be(value: Any) -> Any:
    """A UUID stored in network order (ext4, jbd2) as its text form."""
    return str(uuid.UUID(bytes=bytes(value))) if isinstance(value, bytes) else value


def text_field(value: Any) -> Any:
    """A NUL-padded name field as text."""
    if isinstance(value, bytes):
        return value.rstrip(b"\0").decode("utf-8", "backslashreplace")
    return value


def differing_runs(a: Region, b: Region, unit: int, progress: Progress | None = None,
                   base: int = 0, total: int | None = None) -> Iterator[tuple[int, int]]:
    """(first, last) numbers of runs of `unit`-byte units whose bytes differ between a and b,
    over the longer of the two lengths (past one side's end its bytes are missing: they
    differ). Holes both files have at the same place are skipped without reading."""
    length = max(a.length, b.length)
    whole = length if total is None else total  # the whole read `base` is a part of
    run: list[int] | None = None
    for start, end in _data_spans(a, b, length):
        pos = start
        while pos < end:
            n = min(CHUNK, end - pos)
            x, y = a.read(pos, n), b.read(pos, n)
            if x != y or (pos + n > min(a.length, b.length)):
                for i in range(0, n, unit):
                    if x[i:i + unit] != y[i:i + unit] or pos + i + unit > min(a.length,
                                                                               b.length):
                        number = (pos + i) // unit
                        if run is not None and run[1] == number - 1:
                            run[1] = number
                        else:
                            if run is not None:
                                yield run[0], run[1]
                            run = [number, number]
            pos += n
            if progress is not None:
                progress(base + pos, whole)
    if run is not None:
        yield run[0], run[1]
    if progress is not None:
        progress(base + length, whole)


def _data_spans(a: Region, b: Region, length: int) -> Iterator[tuple[int, int]]:
    """[start, end) spans of the region where either side may hold data, unit-aligned to
    CHUNK; the rest is a hole in both files."""
    spans = sorted([*_file_data(a), *_file_data(b)])
    pos = 0
    for start, end in spans:
        start = max(start - start % CHUNK, pos)
        end = min(length, -(-end // CHUNK) * CHUNK)
        if start < end:
            yield start, end
            pos = end
    # past a side's end its bytes are missing: always compared
    short = min(a.length, b.length)
    if pos < length and short < length:
        yield max(pos, short - short % CHUNK), length


def _file_data(r: Region) -> Iterator[tuple[int, int]]:
    """The data extents of a region's file, relative to the region (SEEK_DATA/SEEK_HOLE)."""
    try:
        fd = r.f.fileno()
    except (AttributeError, OSError):
        yield 0, r.length
        return
    # the buffered file object keeps its own idea of the descriptor's position: put it back
    saved = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        yield from _extents(fd, r.offset, r.offset + r.length)
    finally:
        os.lseek(fd, saved, os.SEEK_SET)


def _extents(fd: int, pos: int, end: int) -> Iterator[tuple[int, int]]:
    """data_extents relative to `pos`."""
    for first, stop in data_extents(fd, pos, end):
        yield first - pos, stop - pos


def decode_runs(runs: Iterable[tuple[int, int]], unit: int,
                decode: Callable[[int, int], list[FieldChange]]) -> list[FieldChange]:
    """Each run of differing units decoded, until MAX_CHANGES are found (a wholly other image);
    the runs after that are read to the end (progress, and their extent) but only counted."""
    changes: list[FieldChange] = []
    skipped, first_skipped, last_skipped = 0, 0, 0
    for first, last in runs:
        if len(changes) < MAX_CHANGES:
            changes += decode(first, last)
            continue
        first_skipped = first if not skipped else first_skipped
        last_skipped = last
        skipped += 1
    if skipped:
        changes.append(byte_range(first_skipped * unit, (last_skipped + 1) * unit,
                                  f"{skipped} more runs of differing bytes, not decoded "
                                  f"({MAX_CHANGES} changes were named before them)"))
    return changes


def mark_following(changes: list[FieldChange],
                   cause_of: Callable[[FieldChange, dict[str, FieldChange]], str | None]
                   ) -> list[FieldChange]:
    """Each change with `follows` set where `cause_of` (given every change by key) names
    another change it follows from."""
    by_key = {c.key: c for c in changes}
    out = []
    for change in changes:
        cause = change.follows or cause_of(change, by_key)
        out.append(replace(change, follows=cause) if cause and cause != change.key else change)
    return out
