"""Field-level differences between two disk images: the MBR, the GPT headers and entry arrays
(primary and backup) field by field through their declarations (composer/disk/mbr.py, gpt.py),
each partition's file system by its own module, and the bytes outside every partition.

Partitions are those of A's table; one that B places elsewhere is named and its contents are
not compared (its entry's fields already say how it moved).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from composer.check.fielddiff import (
    FieldChange,
    Progress,
    Region,
    byte_range,
    differing_runs,
    guid_le,
    mark_following,
    monotone,
    struct_changes,
)
from composer.disk.gpt import GPT_ENTRY, GPT_HEADER, GPT_SIGNATURE, PROTECTIVE_TYPE, SECTOR
from composer.disk.mbr import MAX_PRIMARY, MBR_ENTRY, MBR_SECTOR

# a file system's diff: (A, B, name, progress, base, total) -> changes
FsDiff = Callable[[Region, Region, str, Progress | None, int, int | None], list[FieldChange]]
MAX_ENTRY_BYTES = 1 << 20  # as composer/disk/table_reader.py: a bigger array is not read
_GPT_SHOW = {"disk_guid": guid_le, "partition_type_guid": guid_le,
             "unique_partition_guid": guid_le}


@dataclass(frozen=True, slots=True)
class _Part:
    number: int
    offset: int
    size: int
    name: str


def diff_disk(a: Region, b: Region, name: str, fs_diffs: dict[str, FsDiff],
              detect: Callable[[Region], str | None], progress: Progress | None = None
              ) -> list[FieldChange]:
    """What differs between the disk images in a and b. `fs_diffs` maps a file system name to
    its module's diff, `detect` names the file system a region starts with."""
    total = max(a.length, b.length)
    progress = monotone(progress)
    changes = _mbr(a, b)
    header_a, header_b = _header(a, 1), _header(b, 1)
    tables = header_a is not None and header_b is not None
    if tables:
        changes += _gpt(a, b, 1, "GPT header", "GPT entry")
        alternate = GPT_HEADER.unpack(header_a)["alternate_lba"]
        if alternate * SECTOR + SECTOR <= min(a.length, b.length):
            changes += _gpt(a, b, alternate, "GPT backup header", "GPT backup entry")
    parts_a, parts_b = _partitions(a, header_a), _partitions(b, header_b)
    covered = [(0, SECTOR)] + _table_spans(a, header_a)
    for part in parts_a:
        label = f"partition {part.number}" + (f" ({part.name})" if part.name else "")
        other = next((p for p in parts_b if p.number == part.number), None)
        covered.append((part.offset, part.offset + part.size))
        if other is None or (other.offset, other.size) != (part.offset, part.size):
            changes.append(FieldChange(label, "contents not compared: B places it elsewhere"))
            continue
        ra, rb = (Region(r.f, r.offset + part.offset, part.size) for r in (a, b))
        fs_a, fs_b = detect(ra), detect(rb)
        if fs_a is not None and fs_a == fs_b and fs_a in fs_diffs:
            found = fs_diffs[fs_a](ra, rb, label, progress, part.offset, total)
        else:
            found = [byte_range(first * SECTOR, (last + 1) * SECTOR, "data")
                     for first, last in differing_runs(ra, rb, SECTOR, progress, part.offset,
                                                       total)]
        changes += [c.within(label, part.offset) for c in found]
    for start, end in _gaps(sorted(covered), total):
        ra, rb = (Region(r.f, r.offset + start, min(end, r.length) - start) for r in (a, b))
        changes += [byte_range(start + first * SECTOR, start + (last + 1) * SECTOR,
                               "outside every partition and table")
                    for first, last in differing_runs(ra, rb, SECTOR, progress, start, total)]
    if progress is not None:
        progress(total, total)
    return mark_following(changes, _cause_of)


def _mbr(a: Region, b: Region) -> list[FieldChange]:
    x, y = a.read(0, SECTOR), b.read(0, SECTOR)
    if x == y:
        return []
    found = [f for f in struct_changes(MBR_SECTOR, "MBR", x, y, 0, _mbr_show)
             if f.field != "partition_records"]
    records_at = MBR_SECTOR.offset("partition_records")
    for i in range(MAX_PRIMARY):
        found += struct_changes(MBR_ENTRY, f"MBR partition record {i + 1}", x, y,
                                records_at + i * MBR_ENTRY.size, _mbr_show)
    return found


def _mbr_show(name: str, value: Any) -> Any:
    """The disk signature and type byte in hex, as sfdisk and `compose plan` show them."""
    if name == "unique_mbr_disk_signature":
        return f"0x{value:08x}"
    if name in ("os_type", "boot_indicator"):
        return f"0x{value:02x}"
    return value


def _header(r: Region, lba: int) -> bytes | None:
    raw = r.read(lba * SECTOR, SECTOR)
    return raw if GPT_HEADER.unpack(raw)["signature"] == GPT_SIGNATURE else None


def _entry_array(r: Region, header: bytes) -> tuple[int, int, int]:
    """(byte offset, entry count, entry size) of a header's entry array, bounded."""
    h = GPT_HEADER.unpack(header)
    size = max(h["size_of_partition_entry"], GPT_ENTRY.size)
    count = min(h["number_of_partition_entries"], MAX_ENTRY_BYTES // size)
    return h["partition_entry_lba"] * SECTOR, count, size


def _gpt(a: Region, b: Region, lba: int, header_name: str, entry_name: str
         ) -> list[FieldChange]:
    x, y = a.read(lba * SECTOR, SECTOR), b.read(lba * SECTOR, SECTOR)
    found = struct_changes(GPT_HEADER, header_name, x, y, 0, _show)
    if x[GPT_HEADER.size:] != y[GPT_HEADER.size:]:
        found.append(byte_range(lba * SECTOR + GPT_HEADER.size, (lba + 1) * SECTOR,
                                f"the reserved rest of the {header_name}'s sector"))
    at, count, size = _entry_array(a, x)
    ex, ey = a.read(at, count * size), b.read(at, count * size)
    if ex != ey:
        for i in range(count):
            if ex[i * size:(i + 1) * size] != ey[i * size:(i + 1) * size]:
                found += struct_changes(GPT_ENTRY, f"{entry_name} {i + 1}", ex, ey, i * size,
                                        _show)
    return found


def _show(name: str, value: Any) -> Any:
    if name == "partition_name" and isinstance(value, bytes):
        return value.decode("utf-16-le", "replace").split("\0", 1)[0]
    look = _GPT_SHOW.get(name)
    return look(value) if look is not None else value


def _partitions(r: Region, header: bytes | None) -> list[_Part]:
    if header is None:
        x = r.read(0, SECTOR)
        records_at = MBR_SECTOR.offset("partition_records")
        parts = []
        for i in range(MAX_PRIMARY):
            e = MBR_ENTRY.unpack(x, records_at + i * MBR_ENTRY.size)
            if e["os_type"] not in (0, PROTECTIVE_TYPE) and e["size_in_lba"]:
                parts.append(_Part(i + 1, e["starting_lba"] * SECTOR, e["size_in_lba"] * SECTOR,
                                   ""))
        return parts
    at, count, size = _entry_array(r, header)
    array = r.read(at, count * size)
    parts = []
    for i in range(count):
        e = GPT_ENTRY.unpack(array, i * size)
        if e["partition_type_guid"] == bytes(16) or e["ending_lba"] < e["starting_lba"]:
            continue
        parts.append(_Part(i + 1, e["starting_lba"] * SECTOR,
                           (e["ending_lba"] - e["starting_lba"] + 1) * SECTOR,
                           _show("partition_name", e["partition_name"])))
    return parts


def _table_spans(r: Region, header: bytes | None) -> list[tuple[int, int]]:
    """The byte spans the GPT headers and entry arrays take (compared field by field)."""
    if header is None:
        return []
    spans = [(SECTOR, 2 * SECTOR)]
    at, count, size = _entry_array(r, header)
    spans.append((at, at + count * size))
    alternate = GPT_HEADER.unpack(header)["alternate_lba"]
    backup = _header(r, alternate) if (alternate + 1) * SECTOR <= r.length else None
    if backup is not None:
        spans.append((alternate * SECTOR, (alternate + 1) * SECTOR))
        at, count, size = _entry_array(r, backup)
        spans.append((at, at + count * size))
    return spans


def _gaps(spans: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    gaps, pos = [], 0
    for start, end in spans:
        if start > pos:
            gaps.append((pos, min(start, total)))
        pos = max(pos, end)
    if pos < total:
        gaps.append((pos, total))
    return [(s, e) for s, e in gaps if s < e]


def _cause_of(change: FieldChange, by_key: dict[str, FieldChange]) -> str | None:
    structure, field = change.structure, change.field
    if structure.startswith("GPT backup "):
        primary = f"{structure.replace('GPT backup ', 'GPT ', 1)} {field}"
        if primary in by_key:
            return primary
    if structure in ("GPT header", "GPT backup header"):
        if field == "partition_entry_array_crc32":
            entry = "GPT entry" if structure == "GPT header" else "GPT backup entry"
            return next((k for k, c in by_key.items() if c.structure.startswith(entry + " ")),
                        None)
        if field == "header_crc32":
            return next((k for k, c in by_key.items()
                         if c.structure == structure and c.field != "header_crc32"), None)
    return None
