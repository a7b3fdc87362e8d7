"""The writer interface every file-system format implements, and the registry of formats.

A writer is asked three things, in this order, for every partition of a build:
`check()` (pure validation, run for every partition before anything is written),
`resolve_size()` (the image size, when the layout says `auto`), and `write()`.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from composer.content import ContentStore
from composer.errors import ComposerError, Loc
from composer.tree import Entry

Progress = Callable[[int], None]  # called with a number of bytes just written


def no_progress(_: int) -> None:
    return None


class OptionType(StrEnum):
    """The YAML types a writer option may take (checked by the layout loader)."""

    INT = "int"
    STR = "str"
    SIZE = "size"  # "16MiB" or an int of bytes
    SIZE_OR_NONE = "size-or-none"  # a size, or the string "none"
    PERCENT = "percent"  # a number 0..50
    UUID = "uuid"


@dataclass(frozen=True, slots=True)
class OptionSpec:
    type: OptionType
    help: str
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Everything a writer needs for one partition; equal requests give equal bytes."""

    name: str
    entries: tuple[Entry, ...]  # sorted; paths relative to the fs root, which is "/"
    size: int | None  # bytes; None when the layout says auto
    label: str | None
    uuid: uuid.UUID  # derived from the layout name unless pinned
    epoch: int  # seconds; no timestamp in the image is later than this
    options: Mapping[str, Any] = field(default_factory=dict)  # validated writer options
    loc: Loc | None = None  # where the partition is declared, for error messages


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


class FsWriter(ABC):
    """One file-system format."""

    fs: ClassVar[str]
    options: ClassVar[Mapping[str, OptionSpec]] = {}
    fixed_size: ClassVar[bool] = True  # False for formats with no image size (tar)

    @abstractmethod
    def check(self, req: WriteRequest) -> list[ComposerError]:
        """Pure validation of the request; must not write anything."""

    def resolve_size(self, req: WriteRequest) -> int:
        """The image size in bytes: `req.size`, or the smallest that fits when it is None."""
        if req.size is None:
            raise NotImplementedError(f"{self.fs} has no automatic size")
        return req.size

    def volume_id(self, req: WriteRequest) -> str | None:
        """The file system's ID as blkid and /dev/disk/by-uuid show it; None for formats
        without one (tar)."""
        return str(req.uuid)

    @abstractmethod
    def write(self, req: WriteRequest, out: Path, store: ContentStore,
              progress: Progress = no_progress) -> WriteResult:
        """Write the image at `out` (a new file); never read the clock, TZ, umask or locale."""


_REGISTRY: dict[str, type[FsWriter]] = {}


def register(cls: type[FsWriter]) -> type[FsWriter]:
    _REGISTRY[cls.fs] = cls
    return cls


def writers() -> Mapping[str, type[FsWriter]]:
    # importing the modules registers them; explicit so the list of formats is in one place
    from composer.fs import ext4, tar, vfat  # noqa: F401

    return dict(_REGISTRY)


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
