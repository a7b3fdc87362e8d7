"""The writer interface every file-system format implements (the formats are listed in
composer/registry.py, where the build is wired).

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
from composer.types import WriteResult as WriteResult  # what write() returns: part of the interface
from composer.types import merge_extents as merge_extents  # block maps, for the writers

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
    """What a writer implements of an option: the type and values it accepts. Its meaning,
    default and example are documented once, in composer/layout/settings.py."""

    type: OptionType
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Reserve:
    """Room the golden build keeps so that one device's build changes only a few blocks
    (layout `personalize:`; composer/rules/personal.py decides it). Writers without the notion
    ignore it."""

    # fs path -> bytes its inode may come to hold: a file is given that much space (the rest
    # left free after it), and a path not in the tree still gets its inode number
    room: tuple[tuple[str, int], ...] = ()
    # checksums and directory hashes derive from this UUID (ext4 metadata_csum_seed), so a
    # device's own file-system UUID changes only the superblocks
    seed_uuid: uuid.UUID | None = None


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
    reserve: Reserve | None = None  # room for per-device changes (personalization)


class FsWriter(ABC):
    """One file-system format.

    An instance serves one partition of one build: the build calls `check`, `resolve_size`
    and `write` on it with the same request, in that order, and a writer may keep what it
    computed for that request in between (ext4 keeps its prepared entries and plans). Nothing
    is shared between instances, so partitions and builds may run side by side."""

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

    def release(self) -> None:
        """Drop what was kept for the request between the calls: another process writes it
        (composer/parallel.py)."""
        return None

    @abstractmethod
    def write(self, req: WriteRequest, out: Path, store: ContentStore,
              progress: Progress = no_progress) -> WriteResult:
        """Write the image at `out` (a new file); never read the clock, TZ, umask or locale."""

    def planned_extents(self, req: WriteRequest) -> tuple[tuple[int, int], ...] | None:
        """The block map `write` will return, when it is known before writing (ext4 plans
        every block first); None when only the write tells."""
        return None

    def write_following(self, req: WriteRequest, out: Path, store: ContentStore,
                        progress: Progress, final: Progress) -> WriteResult:
        """`write`, calling `final(n)` whenever the image's first n bytes reached the value
        they end with, so its digests can be made while it is written
        (composer/outputs/follow.py). Here: once, at the end."""
        result = self.write(req, out, store, progress)
        final(result.size)
        return result
