"""Entry-level differences between two images (`compose diff A.img B.img`): the entries of each
file system, read with the readers `verify --deep` uses (composer/check/verify.py), compared as
two build folders' manifests are (composer/check/diff.py entry_changes); a disk image's file
systems partition by partition.

The field-level changes of the same images (composer/check/imagediff.py) are then sorted into
those the entry changes explain and the rest. An entry change explains
- every field and byte named after its path (its inode, its data, its directory entry, its tar
  member) and, for an entry added or removed, after its folder;
- when it may move allocation (an entry added or removed, new content, xattrs, link target or
  kind): the allocation records (bitmaps, free counts, FAT chains, unallocated blocks);
- when it may move what follows it (all of the above but new content of the same size: an
  entry added or removed, a hard link made or broken, new sizes, xattrs or link targets shift
  inode numbers and places): every entry-holding structure of that file system (inodes,
  directory and data blocks, tar members), but not its identity (UUID, label, volume ID,
  creation times) nor its journal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from composer.check.diff import NOT_COMPARED, Change, Scope, entry_changes
from composer.check.expand import ImageKind
from composer.check.fielddiff import FieldChange, Progress
from composer.check.inspect import fs_at
from composer.check.verify import ext4_records, fat_records, tar_records
from composer.disk.table_reader import read_table
from composer.errors import ComposerError
from composer.outputs.manifest import EntryRecord


@dataclass(frozen=True, slots=True)
class FileSystem:
    """One file system of an image: where it is and what it is."""

    label: str  # "" for an image that is one file system; "partition 2 (rootfs)" in a disk
    kind: ImageKind
    offset: int
    length: int


def file_systems(path: Path, kind: ImageKind) -> list[FileSystem]:
    """The file systems composer reads in the raw image at `path` of `kind` (from detect):
    the image itself, or each partition of a disk image whose file system is ext4 or FAT."""
    size = path.stat().st_size
    if kind is not ImageKind.DISK:
        return [FileSystem("", kind, 0, size)]
    found = []
    with path.open("rb") as f:
        for p in read_table(path).partitions:
            inner = fs_at(f, p.offset)
            if inner is not None:
                # named as composer/check/fielddiff_disk.py names the partition
                label = f"partition {p.number}" + (f" ({p.name})" if p.name else "")
                found.append(FileSystem(label, inner, p.offset, p.size))
    return found


def read_entries(path: Path, fs: FileSystem, progress: Progress | None = None
                 ) -> list[EntryRecord]:
    """The records of every entry of file system `fs` of the image at `path`."""
    if fs.kind is ImageKind.EXT4:
        return ext4_records(path, progress, fs.offset, fs.length)
    if fs.kind is ImageKind.VFAT:
        return fat_records(path, progress, fs.offset, fs.length)
    return tar_records(path, progress)


def _place(fs: FileSystem) -> tuple[str, ImageKind, int, int]:
    """What must match for two file systems to be compared: a disk's partition keeps its
    place and size; an image that is one file system is compared whatever its length."""
    return fs.label, fs.kind, fs.offset, fs.length if fs.label else 0


def image_entry_changes(name: str, path_a: Path, path_b: Path, kind: ImageKind,
                        progress: Progress | None = None
                        ) -> dict[str, tuple[ImageKind, list[Change]]]:
    """label -> (its kind, the entry changes) of each file system both raw images (of one
    `kind`) hold at the same place; `name` starts each change's `where`."""
    try:
        systems_a, systems_b = file_systems(path_a, kind), set(map(_place, file_systems(path_b,
                                                                                     kind)))
    except ComposerError as exc:  # a damaged partition table: its fields say what differs
        return {"": (kind, [Change(Scope.ENTRY, name, NOT_COMPARED, None, exc.message)])}
    found: dict[str, tuple[ImageKind, list[Change]]] = {}
    for fs in systems_a:
        if _place(fs) not in systems_b:
            continue  # moved or another file system: the table's fields say so
        where = f"{name}: {fs.label}" if fs.label else name
        try:
            changes = entry_changes(where, read_entries(path_a, fs, progress),
                                    read_entries(path_b, fs, progress))
        except ComposerError as exc:
            # a damaged side: its fields still say what differs, so they are all reported
            changes = [Change(Scope.ENTRY, where, NOT_COMPARED, None, exc.message)]
        found[fs.label] = (fs.kind, changes)
    return found


# ------------------------------------------------------------------------------ explaining

_INODE_PATH = re.compile(r"inode \d+ \((/.*)\)")  # greedy: a path may hold ")"
_FAT_PATH = re.compile(r"(?:directory entry |file data of |free directory slot \d+ of )(/.*?)"
                       r"(?: \(cluster \d+\)| \(long name\))?$")
_TAR_DATA = "data of member "
_ALLOCATING = frozenset({"added", "removed", "kind", "content", "xattrs", "link target",
                         "hardlink group"})
# ext4 fields that count what is allocated
_EXT4_COUNTS = re.compile(r"^(s_free_blocks_count|s_free_inodes_count|s_kbytes_written|"
                          r"bg_free_|bg_used_dirs|bg_itable_unused|bg_flags|bits set)")


def _same_size(change: Change) -> bool:
    """A content change that keeps the size: its blocks are rewritten in place."""
    return change.field == "content" and isinstance(change.a, list) and \
        isinstance(change.b, list) and change.a[0] == change.b[0]


@dataclass(frozen=True, slots=True)
class Explainer:
    """Which field changes of one file system its entry changes explain (module docstring)."""

    kind: ImageKind
    by_path: dict[str, str]  # path -> key of the entry change that explains what names it
    allocating: str | None  # key of the first change that may move allocation
    relaying: str | None  # key of the first change that may shift inode numbers and places

    @classmethod
    def of(cls, kind: ImageKind, prefix: str, changes: list[Change]) -> Explainer:
        by_path: dict[str, str] = {}
        allocating = relaying = None
        for change in changes:
            if change.field == NOT_COMPARED:
                continue  # explains nothing: every field is reported
            key = f"{change.where} {change.field}"
            path = change.where.removeprefix(prefix).removeprefix(":")
            by_path.setdefault(path, key)
            if change.field in ("added", "removed"):
                by_path.setdefault(path.rsplit("/", 1)[0] or "/", key)
            if change.field == "hardlink group":
                for target in (change.a, change.b):
                    if target:
                        by_path.setdefault(target, key)
            if change.field in _ALLOCATING and allocating is None:
                allocating = key
            if relaying is None and change.field in _ALLOCATING and not _same_size(change):
                relaying = key
        return cls(kind, by_path, allocating, relaying)

    def cause(self, fc: FieldChange) -> str | None:
        """The key of the entry change that explains `fc` (its label taken off), or None."""
        text = fc.field if fc.is_bytes else fc.structure
        path = self._path(fc, text)
        if path is not None and path in self.by_path:
            return self.by_path[path]
        if self.allocating is not None and self._allocation(fc, text):
            return self.allocating
        if self.relaying is not None and self._layout(text, path):
            return self.relaying
        return None

    def _path(self, fc: FieldChange, text: str) -> str | None:
        if self.kind is ImageKind.EXT4:
            match = _INODE_PATH.search(text)
            return match.group(1) if match else None
        if self.kind is ImageKind.VFAT:
            match = _FAT_PATH.search(text)
            return match.group(1) if match else None
        if fc.is_bytes:
            return "/" + text.removeprefix(_TAR_DATA) if text.startswith(_TAR_DATA) else None
        return "/" + fc.structure if fc.structure != "." else "/"

    def _allocation(self, fc: FieldChange, text: str) -> bool:
        if self.kind is ImageKind.EXT4:
            return text.startswith("unallocated") or bool(_EXT4_COUNTS.match(fc.field))
        if self.kind is ImageKind.VFAT:
            return text.startswith(("FAT ", "FSInfo", "unallocated cluster"))
        return fc.is_bytes  # the blocks after the members move with their sizes

    def _layout(self, text: str, path: str | None) -> bool:
        if self.kind is ImageKind.EXT4:
            if path == "journal":  # inode 8 (journal): written by the file system, not entries
                return False
            return path is not None or text.startswith(
                ("inode ", "group ", "unallocated", "file data", "a directory block"))
        if self.kind is ImageKind.VFAT:
            return path is not None or text.startswith(("FAT ", "FSInfo", "unallocated",
                                                        "file data", "directory"))
        return True  # a tar holds members alone; paired in order, all shift together


def explainers(name: str, entries: dict[str, tuple[ImageKind, list[Change]]]
               ) -> Callable[[FieldChange], str | None]:
    """A function naming the entry change that explains a field change of image `name` (its
    structure prefixed by the partition label in a disk image), or None."""
    by_label = {label: Explainer.of(kind, f"{name}: {label}" if label else name, found)
                for label, (kind, found) in entries.items() if found}

    def cause(fc: FieldChange) -> str | None:
        for label, explainer in by_label.items():
            if not label:
                return explainer.cause(fc)
            prefix = f"{label}: "
            text = fc.field if fc.is_bytes else fc.structure
            if text.startswith(prefix):
                inner = FieldChange(fc.structure.removeprefix(prefix), fc.field) \
                    if not fc.is_bytes else FieldChange(fc.structure,
                                                        fc.field.removeprefix(prefix))
                return explainer.cause(inner)
        return None

    return cause
