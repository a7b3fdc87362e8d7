"""Values shared by several layers, kept here so that imports point one way (tests/test_imports.py):
what a file-system writer returns and its block map (fs → disk, outputs), the partition table
types (layout → disk), and a claim on a device path (rules → route).

This module imports nothing of composer but errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from composer.errors import Loc


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a writer produced: the image size and its block map.

    `extents` are the byte ranges the file system uses, whatever their bytes: every block its
    allocation says holds something (file data with its zero blocks, metadata, directories,
    journal). Flashing tools write exactly these ranges and skip the rest ("don't care" in
    bmap and Android sparse images), so a used block left out keeps the device's old bytes.
    Everything outside `extents` is free space and reads as zero in the image (holes on the
    host); inside them, zero blocks may be host holes too. The bmap and sparse outputs come
    from this list, never from asking the host file system where its holes are.
    """

    size: int
    extents: tuple[tuple[int, int], ...]  # (offset, length) in bytes, sorted, non-overlapping


def merge_extents(extents: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and coalesce (offset, length) ranges; drops empty ones."""
    merged: list[tuple[int, int]] = []
    for start, length in sorted(e for e in extents if e[1] > 0):
        if merged and start <= merged[-1][0] + merged[-1][1]:
            last_start, last_len = merged[-1]
            merged[-1] = (last_start, max(last_len, start + length - last_start))
        else:
            merged.append((start, length))
    return tuple(merged)


class TableType(StrEnum):
    """A disk's partition table; the values are the layout's `disk.table` names."""

    GPT = "gpt"
    MBR = "mbr"


@dataclass(frozen=True, slots=True)
class Claim:
    """Which rule placed a device path, for messages about it."""

    what: str  # "greengrass", "files[2]", …
    loc: Loc
    from_source: bool  # placed by copying from a source (may be overridden explicitly)
