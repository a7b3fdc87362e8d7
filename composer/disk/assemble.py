"""Whole-disk images: plan where everything goes (pure), then write a sparse disk.img.

`plan_disk()` places partitions and raw blobs (bootloaders at fixed offsets), derives GUIDs and
the MBR signature, and checks everything: overlaps between partitions, raw blobs and the
partition tables, sizes beyond the disk, unknown types and attributes. All problems come back at
once as ComposerErrors. `write_disk()` then copies only the mapped extents of each partition
image (never the holes) and the table sectors, and returns the disk's own block map.

Offsets and sizes are bytes; every one is a whole number of 512-byte sectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer.disk import gpt, mbr
from composer.errors import ComposerError, Loc, raise_all
from composer.types import TableType, WriteResult, merge_extents
from composer.units import align_up

SECTOR = 512
KIB = 1 << 10
MIB = 1 << 20
DEFAULT_ALIGN = MIB  # docs/flashing.md §1: 1 MiB, a multiple of 4 KiB blocks and erase groups
COPY_CHUNK = 4 * MIB
# the namespace of derived disk GUIDs; callers should pass the project-wide one when it exists
DISK_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "composer:disk")


@dataclass(frozen=True, slots=True)
class DiskPartitionSpec:
    """One partition as the layout asks for it."""

    name: str
    size: int  # bytes
    type: str | int  # GPT: short name or GUID; MBR: short name or type byte
    offset: int | None = None  # bytes; None: after the previous partition, aligned
    uuid: uuid.UUID | None = None  # GPT partition GUID; None: derived from the seed
    attributes: tuple[str, ...] = ()  # GPT attribute names (gpt.ATTRIBUTE_NAMES)
    bootable: bool = False  # MBR active flag; on GPT, the legacy-BIOS-bootable attribute
    loc: Loc | None = None


@dataclass(frozen=True, slots=True)
class RawBlobSpec:
    """Bytes outside any partition at a fixed offset (a bootloader the boot ROM reads)."""

    name: str
    offset: int
    size: int
    loc: Loc | None = None


@dataclass(frozen=True, slots=True)
class PlannedPartition:
    name: str
    number: int  # 1-based; the Linux partition number
    offset: int
    size: int
    type_guid: uuid.UUID | None  # GPT
    mbr_type: int | None  # MBR
    uuid: uuid.UUID | None  # GPT partition GUID
    attributes: int  # GPT attribute bits
    bootable: bool

    @property
    def start_lba(self) -> int:
        return self.offset // SECTOR

    @property
    def sectors(self) -> int:
        return self.size // SECTOR

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class PlannedBlob:
    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Region:
    """A byte range of the disk with a name, for messages and maps."""

    what: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class DiskPlan:
    table: TableType
    disk_size: int
    align: int
    partitions: tuple[PlannedPartition, ...]
    raw_blobs: tuple[PlannedBlob, ...]
    table_regions: tuple[Region, ...]  # what the partition table occupies
    free: tuple[tuple[int, int], ...]  # (offset, size) gaps in the usable area
    disk_guid: uuid.UUID | None = None  # GPT
    gpt_entry_lba: int | None = None  # GPT: primary entry array
    mbr_signature: int | None = None  # MBR

    @property
    def disk_sectors(self) -> int:
        return self.disk_size // SECTOR

    def gpt_table(self) -> gpt.GptTable:
        assert self.table is TableType.GPT and self.disk_guid and self.gpt_entry_lba
        entries = tuple(
            gpt.GptEntry(p.type_guid or uuid.UUID(int=0), p.uuid or uuid.UUID(int=0),
                         p.start_lba, p.start_lba + p.sectors - 1, p.attributes, p.name)
            for p in self.partitions)
        return gpt.GptTable(self.disk_guid, self.disk_sectors, entries, self.gpt_entry_lba)

    def mbr_table(self) -> mbr.MbrTable:
        assert self.table is TableType.MBR and self.mbr_signature is not None
        entries = tuple(mbr.MbrEntry(p.bootable, p.mbr_type or 0, p.start_lba, p.sectors)
                        for p in self.partitions)
        return mbr.MbrTable(self.mbr_signature, entries)

    def table_bytes(self) -> list[tuple[int, bytes]]:
        """The partition table sectors, as (byte offset, data)."""
        if self.table is TableType.GPT:
            return gpt.regions(self.gpt_table())
        return mbr.regions(self.mbr_table())


# ---------------------------------------------------------------------------------------------
# planning


def derive_guid(seed: str, purpose: str, namespace: uuid.UUID = DISK_NAMESPACE) -> uuid.UUID:
    """uuid5 of "<seed>/<purpose>": stable across builds, different per layout and purpose."""
    return uuid.uuid5(namespace, f"{seed}/{purpose}")


def plan_disk(table: TableType | str, partitions: Sequence[DiskPartitionSpec], *,
              seed: str, disk_size: int | None = None, align: int = DEFAULT_ALIGN,
              raw_blobs: Sequence[RawBlobSpec] = (), disk_guid: uuid.UUID | None = None,
              mbr_signature: int | None = None, gpt_entry_lba: int | None = None,
              namespace: uuid.UUID = DISK_NAMESPACE, loc: Loc | None = None) -> DiskPlan:
    """Place and check everything; raises ComposerError(s) listing every problem found.

    `seed` (e.g. the layout name) derives the disk GUID, the partition GUIDs and the MBR
    signature unless they are pinned. `gpt_entry_lba` moves the primary entry array (default
    LBA 2), for boot ROMs that read a bootloader where the array would be.
    """
    table = TableType(table)
    errors: list[ComposerError] = []
    errors += _check_basics(table, partitions, raw_blobs, align, disk_size, gpt_entry_lba, loc)
    if table is TableType.GPT:
        errors += _check_guids(partitions, disk_guid, loc)
    if mbr_signature is not None and not 0 <= mbr_signature <= 0xFFFFFFFF:
        errors.append(ComposerError(f"MBR disk signature {mbr_signature:#x} is not 32 bits",
                                    loc=loc, hint="write it as 8 hex digits"))
    if errors:
        raise_all(errors)
    entry_lba = (gpt_entry_lba or gpt.DEFAULT_ENTRY_LBA) if table is TableType.GPT else None
    blobs = tuple(PlannedBlob(b.name, b.offset, b.size) for b in raw_blobs)
    head = _head_regions(table, entry_lba)
    first_usable = max(r.end for r in head)
    placed = _place(partitions, blobs, head, first_usable, align)
    size = disk_size if disk_size is not None else _auto_size(table, partitions, placed, blobs,
                                                               head, align)
    tail = _tail_regions(table, size)
    regions = tuple(head + tail)

    planned = [_planned(table, spec, number, offset, seed, namespace)
               for number, (spec, offset) in enumerate(zip(partitions, placed, strict=True), 1)]
    errors += _check_layout(table, partitions, placed, blobs, regions, size, loc)
    raise_all(errors)

    usable_end = min((r.offset for r in tail), default=size)
    return DiskPlan(
        table=table, disk_size=size, align=align, partitions=tuple(planned), raw_blobs=blobs,
        table_regions=regions,
        free=_free(first_usable, usable_end, [(p.offset, p.size) for p in planned]
                   + [(b.offset, b.size) for b in blobs]),
        disk_guid=(disk_guid or derive_guid(seed, "disk", namespace))
        if table is TableType.GPT else None,
        gpt_entry_lba=entry_lba,
        mbr_signature=(mbr_signature if mbr_signature is not None else _signature(seed, namespace))
        if table is TableType.MBR else None,
    )


def _at(exc: ComposerError, loc: Loc | None) -> ComposerError:
    return ComposerError(exc.message, loc=exc.loc or loc, hint=exc.hint, path=exc.path)


def _signature(seed: str, namespace: uuid.UUID) -> int:
    # 0 is genimage's default and makes PARTUUIDs collide between layouts: never derive it
    return int.from_bytes(derive_guid(seed, "mbr-signature", namespace).bytes[:4], "big") or 1


def _check_basics(table: TableType, partitions: Sequence[DiskPartitionSpec],
                  blobs: Sequence[RawBlobSpec], align: int, disk_size: int | None,
                  entry_lba: int | None, loc: Loc | None) -> list[ComposerError]:
    """Problems that make placement meaningless: counts, units, names."""
    errors: list[ComposerError] = []
    limit = mbr.MAX_PRIMARY if table is TableType.MBR else gpt.ENTRY_COUNT
    if len(partitions) > limit:
        errors.append(ComposerError(
            f"{len(partitions)} partitions do not fit in {table.value.upper()}, which holds "
            f"{limit}", loc=loc,
            hint="use gpt" if table is TableType.MBR else "merge partitions"))
    if align < SECTOR or align % SECTOR:
        errors.append(ComposerError(
            f"alignment {align} is not a positive multiple of {SECTOR} bytes", loc=loc,
            hint="use a power of two such as 1MiB (the default) or 4MiB"))
    if disk_size is not None and (disk_size <= 0 or disk_size % SECTOR):
        errors.append(ComposerError(
            f"disk size {disk_size} is not a positive multiple of {SECTOR} bytes", loc=loc,
            hint="use a size in MiB, or drop disk.size to make the disk just big enough"))
    if entry_lba is not None and table is TableType.MBR:
        errors.append(ComposerError("a GPT entry array location was given for an MBR disk",
                                    loc=loc))
    elif entry_lba is not None and entry_lba < gpt.DEFAULT_ENTRY_LBA:
        errors.append(ComposerError(f"the GPT entry array cannot start at LBA {entry_lba}",
                                    loc=loc, hint="use LBA 2 or later"))
    seen: set[str] = set()
    for p in partitions:
        errors += _check_spec(table, p, seen)
    for b in blobs:
        if b.offset % SECTOR or b.size <= 0:
            errors.append(ComposerError(
                f"raw blob {b.name!r}: offset {b.offset} is not a multiple of {SECTOR} bytes"
                if b.offset % SECTOR else f"raw blob {b.name!r} is empty", loc=b.loc or loc))
    return errors


def _check_guids(partitions: Sequence[DiskPartitionSpec], disk_guid: uuid.UUID | None,
                 loc: Loc | None) -> list[ComposerError]:
    """Pinned GUIDs must be unique and not nil: PARTUUID= and udev's by-partuuid links pick one
    partition per GUID, and UEFI reads a nil GUID as "none"."""
    errors: list[ComposerError] = []
    if disk_guid is not None and disk_guid.int == 0:
        errors.append(ComposerError("the disk GUID cannot be the nil GUID", loc=loc,
                                    hint="pin another GUID, or drop disk.guid to derive one"))
    seen: dict[uuid.UUID, str] = {}
    if disk_guid is not None:
        seen[disk_guid] = "the disk's own GUID (disk.guid)"
    for p in partitions:
        if p.uuid is None:
            continue
        if p.uuid.int == 0:
            errors.append(ComposerError(f"partition {p.name!r}: partuuid cannot be the nil GUID",
                                        loc=p.loc, hint="pin another GUID, or drop partuuid"))
            continue
        other = seen.setdefault(p.uuid, f"the partuuid of partition {p.name!r}")
        if other != f"the partuuid of partition {p.name!r}":
            errors.append(ComposerError(
                f"partition {p.name!r}: partuuid {p.uuid} is already {other}", loc=p.loc,
                hint="every GUID on a disk must be unique; drop partuuid to derive one"))
    return errors


def _check_spec(table: TableType, p: DiskPartitionSpec, seen: set[str]) -> list[ComposerError]:
    errors: list[ComposerError] = []
    if p.name in seen:
        errors.append(ComposerError(f"two partitions are named {p.name!r}", loc=p.loc))
    seen.add(p.name)
    if p.size <= 0 or p.size % SECTOR:
        errors.append(ComposerError(
            f"partition {p.name!r}: size {p.size} is not a positive multiple of {SECTOR} bytes",
            loc=p.loc))
    if p.offset is not None and (p.offset < 0 or p.offset % SECTOR):
        errors.append(ComposerError(
            f"partition {p.name!r}: offset {p.offset} is not a multiple of {SECTOR} bytes",
            loc=p.loc))
    if table is TableType.GPT and len(p.name.encode("utf-16-le")) > gpt.NAME_UNITS * 2:
        errors.append(ComposerError(
            f"partition {p.name!r}: GPT names hold at most {gpt.NAME_UNITS} UTF-16 characters",
            loc=p.loc, hint="sfdisk would silently truncate it; shorten the name"))
    for resolve in (_type_of, _attributes_of):
        try:
            resolve(table, p)
        except ComposerError as exc:
            errors.append(_at(exc, p.loc))
    if table is TableType.MBR and (p.attributes or p.uuid is not None):
        errors.append(ComposerError(
            f"partition {p.name!r}: MBR partitions have no GUID and no attributes", loc=p.loc,
            hint="use gpt, or drop them"))
    return errors


def _head_regions(table: TableType, entry_lba: int | None) -> list[Region]:
    if table is TableType.MBR:
        return [Region("the MBR", 0, SECTOR)]
    assert entry_lba is not None
    return [Region("the protective MBR", 0, SECTOR),
            Region("the primary GPT header", gpt.PRIMARY_HEADER_LBA * SECTOR, SECTOR),
            Region("the primary GPT partition entry array", entry_lba * SECTOR,
                   gpt.ENTRY_ARRAY_BYTES)]


def _tail_regions(table: TableType, size: int) -> list[Region]:
    if table is TableType.MBR:
        return []
    start = size - gpt.BACKUP_SECTORS * SECTOR
    return [Region("the backup GPT partition entry array", start, gpt.ENTRY_ARRAY_BYTES),
            Region("the backup GPT header", size - SECTOR, SECTOR)]


def _place(partitions: Sequence[DiskPartitionSpec], blobs: Sequence[PlannedBlob],
           head: list[Region], first_usable: int, align: int) -> list[int]:
    """Offsets: explicit ones as given; others after the previous partition, aligned, moved
    past any raw blob or table region they would overlap (explicit ones are checked later)."""
    taken = [(r.offset, r.end) for r in head] + [(b.offset, b.offset + b.size) for b in blobs]
    cursor = first_usable
    offsets: list[int] = []
    for p in partitions:
        if p.offset is not None:
            offset = p.offset
        else:
            offset = align_up(cursor, align)
            moved = True
            while moved:
                moved = False
                for start, end in taken:
                    if offset < end and start < offset + p.size:
                        offset = align_up(end, align)
                        moved = True
        offsets.append(offset)
        cursor = offset + p.size
    return offsets


def _auto_size(table: TableType, partitions: Sequence[DiskPartitionSpec], offsets: list[int],
               blobs: Sequence[PlannedBlob], head: list[Region], align: int) -> int:
    """The end of the last partition or blob, plus the backup GPT, rounded up to `align`."""
    ends = [off + p.size for p, off in zip(partitions, offsets, strict=True)]
    ends += [b.offset + b.size for b in blobs] + [r.end for r in head]
    backup = gpt.BACKUP_SECTORS * SECTOR if table is TableType.GPT else 0
    return align_up(max(ends) + backup, align)


def _type_of(table: TableType, spec: DiskPartitionSpec) -> uuid.UUID | int:
    if table is TableType.GPT:
        return gpt.type_guid(str(spec.type))
    return mbr.type_byte(spec.type)


def _attributes_of(table: TableType, spec: DiskPartitionSpec) -> int:
    if table is TableType.MBR:
        return 0
    bits = gpt.attributes(spec.attributes)
    if spec.bootable:
        bits |= gpt.Attr.LEGACY_BIOS_BOOTABLE
    return int(bits)


def _planned(table: TableType, spec: DiskPartitionSpec, number: int, offset: int, seed: str,
             namespace: uuid.UUID) -> PlannedPartition:
    kind = _type_of(table, spec)
    if isinstance(kind, uuid.UUID):
        return PlannedPartition(
            spec.name, number, offset, spec.size, type_guid=kind, mbr_type=None,
            uuid=spec.uuid or derive_guid(seed, f"partition/{spec.name}", namespace),
            attributes=_attributes_of(table, spec), bootable=spec.bootable)
    return PlannedPartition(spec.name, number, offset, spec.size, type_guid=None, mbr_type=kind,
                            uuid=None, attributes=0, bootable=spec.bootable)


def _span(offset: int, size: int) -> str:
    return f"bytes {offset}-{offset + size - 1}"


def _check_layout(table: TableType, partitions: Sequence[DiskPartitionSpec], offsets: list[int],
                  blobs: Sequence[PlannedBlob], regions: tuple[Region, ...], disk_size: int,
                  loc: Loc | None) -> list[ComposerError]:
    """Overlaps and bounds, each reported once with both parties named."""
    parts = [_Thing(f"partition {p.name!r}", off, p.size, p.loc, is_blob=False)
             for p, off in zip(partitions, offsets, strict=True)]
    things = parts + [_Thing(f"raw blob {b.name!r}", b.offset, b.size, None, is_blob=True)
                      for b in blobs]
    errors: list[ComposerError] = []
    for i, a in enumerate(things):
        for b in things[i + 1:]:
            if a.offset < b.end and b.offset < a.end:
                errors.append(ComposerError(
                    f"{a.what} ({_span(a.offset, a.size)}) overlaps {b.what} "
                    f"({_span(b.offset, b.size)})", loc=a.loc or b.loc or loc,
                    hint=_overlap_hint(a, b)))
    for thing in things:
        error = _bounds_error(table, thing, regions, parts, blobs, disk_size)
        if error is not None:
            errors.append(_at(error, thing.loc or loc))
    return errors


@dataclass(frozen=True, slots=True)
class _Thing:
    """A partition or raw blob, as the overlap checks see it."""

    what: str
    offset: int
    size: int
    loc: Loc | None
    is_blob: bool

    @property
    def end(self) -> int:
        return self.offset + self.size


def _overlap_hint(a: _Thing, b: _Thing) -> str:
    if a.is_blob and b.is_blob:
        return "move one of the raw blobs"
    if a.is_blob or b.is_blob:
        return "move the raw blob, or the partition (drop its `offset:` to place it after the blob)"
    return ("give one of them another offset, or drop `offset:` to let the partition follow the "
            "previous one")


def _bounds_error(table: TableType, thing: _Thing, regions: tuple[Region, ...],
                  parts: list[_Thing], blobs: Sequence[PlannedBlob],
                  disk_size: int) -> ComposerError | None:
    """The end of the disk, the 2 TiB MBR limit, then the table sectors: the first that bites."""
    span = _span(thing.offset, thing.size)
    if thing.end > disk_size:
        return ComposerError(f"{thing.what} ({span}) ends beyond the end of the disk "
                             f"({disk_size} bytes)",
                             hint="make the disk bigger, or move the raw blob" if thing.is_blob
                             else "make the disk bigger, or the partition smaller")
    if table is TableType.MBR and thing.end // SECTOR - 1 > mbr.MAX_LBA:
        return ComposerError(f"{thing.what} ({span}) ends beyond the 2 TiB an MBR can address",
                             hint="use gpt")
    hit = [r for r in regions if thing.offset < r.end and r.offset < thing.end]
    if not hit:
        return None
    start, end = min(r.offset for r in hit), max(r.end for r in hit)
    names = [r.what for r in hit]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return ComposerError(f"{thing.what} ({span}) overlaps {listed} ({_span(start, end - start)})",
                         hint=_table_hint(table, thing, hit, parts, blobs))


def _table_hint(table: TableType, thing: _Thing, hit: list[Region], parts: list[_Thing],
                blobs: Sequence[PlannedBlob]) -> str:
    if any("backup" in r.what for r in hit):
        return "the last 33 sectors hold the backup GPT; make the disk bigger"
    head_end = max(r.end for r in hit)
    if table is TableType.MBR or not thing.is_blob:
        return (f"start it at byte {head_end} or later, or drop `offset:` to place it "
                "automatically")
    if not any("entry array" in r.what for r in hit):
        return "LBA 0 and 1 hold the protective MBR and the GPT header"
    # a boot-ROM blob where the entry array is: offer the sectors before the first partition
    first = min((p.offset for p in parts), default=None)
    blob_end = max((b.offset + b.size for b in blobs), default=0)
    if first is not None and first - gpt.ENTRY_ARRAY_BYTES >= max(blob_end, 2 * SECTOR):
        lba = (first - gpt.ENTRY_ARRAY_BYTES) // SECTOR
        return (f"move the GPT entry array out of the way (disk.entry_lba: {lba} puts it just "
                "before the first partition), or use an MBR partition table")
    return ("move the GPT entry array (gpt_entry_lba) past the raw blobs and start the first "
            "partition after it, or use an MBR partition table")


def _free(start: int, end: int, used: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    gaps: list[tuple[int, int]] = []
    cursor = start
    for offset, size in merge_extents(used):
        if offset > cursor:
            gaps.append((cursor, min(offset, end) - cursor))
        cursor = max(cursor, offset + size)
    if end > cursor:
        gaps.append((cursor, end - cursor))
    return tuple(g for g in gaps if g[1] > 0)


# ---------------------------------------------------------------------------------------------
# writing


def write_disk(plan: DiskPlan, partition_images: Mapping[str, tuple[Path, WriteResult]],
               out: Path, raw_blobs: Mapping[str, bytes | Path] | None = None) -> WriteResult:
    """Write `out` (a new sparse file): tables, raw blobs, and each image's mapped extents.

    A partition with no image is left as a hole except its first and last MiB, which are
    mapped as zeros so stale file-system signatures on a reused device are wiped.
    """
    raw_blobs = raw_blobs or {}
    _check_inputs(plan, partition_images, raw_blobs)
    extents: list[tuple[int, int]] = []
    with out.open("xb") as disk:
        disk.truncate(plan.disk_size)
        for part in plan.partitions:
            if part.name in partition_images:
                path, result = partition_images[part.name]
                extents += _copy_extents(path, result, disk, part.offset)
            else:
                extents += _wipe_ends(disk, part)
        for blob in plan.raw_blobs:
            data = raw_blobs[blob.name]
            payload = data if isinstance(data, bytes) else data.read_bytes()
            extents.append(_write_at(disk, blob.offset, payload))
        for offset, data in plan.table_bytes():
            extents.append(_write_at(disk, offset, data))
    return WriteResult(plan.disk_size, merge_extents(extents))


def _check_inputs(plan: DiskPlan, images: Mapping[str, tuple[Path, WriteResult]],
                  blobs: Mapping[str, bytes | Path]) -> None:
    errors: list[ComposerError] = []
    names = {p.name: p for p in plan.partitions}
    for name, (_, result) in sorted(images.items()):
        part = names.get(name)
        if part is None:
            errors.append(ComposerError(f"no partition named {name!r} in the disk plan"))
        elif result.size > part.size:
            errors.append(ComposerError(
                f"partition {name!r}: the image is {result.size} bytes but the partition only "
                f"{part.size}", hint="make the partition at least as big as its file system"))
    for blob in plan.raw_blobs:
        data = blobs.get(blob.name)
        if data is None:
            errors.append(ComposerError(f"raw blob {blob.name!r}: no data given"))
            continue
        length = len(data) if isinstance(data, bytes) else data.stat().st_size
        if length > blob.size:
            errors.append(ComposerError(
                f"raw blob {blob.name!r} is {length} bytes but its area only {blob.size}"))
    raise_all(errors)


def _copy_extents(path: Path, result: WriteResult, disk: BinaryIO,
                  base: int) -> list[tuple[int, int]]:
    """Copy the image's mapped ranges to `base` in the disk; returns the disk ranges."""
    copied: list[tuple[int, int]] = []
    with path.open("rb") as image:
        for offset, length in result.extents:
            length = min(length, result.size - offset)
            if length <= 0:
                continue
            image.seek(offset)
            disk.seek(base + offset)
            left = length
            while left:
                chunk = image.read(min(COPY_CHUNK, left))
                if not chunk:  # a short image reads as zeros, like its holes
                    chunk = bytes(min(COPY_CHUNK, left))
                disk.write(chunk)
                left -= len(chunk)
            copied.append((base + offset, length))
    return copied


def _wipe_ends(disk: BinaryIO, part: PlannedPartition) -> list[tuple[int, int]]:
    length = min(MIB, part.size)
    head = _write_at(disk, part.offset, bytes(length))
    tail = _write_at(disk, part.end - length, bytes(length))
    return [head, tail]


def _write_at(disk: BinaryIO, offset: int, data: bytes) -> tuple[int, int]:
    disk.seek(offset)
    disk.write(data)
    return (offset, len(data))
