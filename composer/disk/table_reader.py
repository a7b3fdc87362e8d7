"""Reading a partition table back: MBR ("dos") or GPT, with the declarations the writers use
(mbr.MBR_SECTOR, mbr.MBR_ENTRY, gpt.GPT_HEADER, gpt.GPT_ENTRY), from any disk image, composer's
or another tool's.

Every count and size a table states is checked before it is used, so a hostile image costs at
most MAX_ENTRY_ARRAY bytes of memory and an error names the structure and field that is wrong.
Only 512-byte logical sectors, as the writers.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from composer.disk.gpt import GPT_ENTRY, GPT_HEADER, GPT_SIGNATURE, PROTECTIVE_TYPE, SECTOR
from composer.disk.mbr import BOOT_SIGNATURE, MAX_PRIMARY, MBR_ENTRY, MBR_SECTOR, STATUS_BOOTABLE
from composer.errors import ComposerError

MAX_ENTRY_ARRAY = 1 << 20  # bytes: 8192 entries of 128 bytes, far more than any tool writes


@dataclass(frozen=True, slots=True)
class TableEntry:
    number: int  # as Linux numbers it
    offset: int  # bytes
    size: int
    type: str  # GPT: the type GUID; MBR: 0xNN
    partuuid: str  # GPT: the partition GUID; MBR: <signature>-<number> in hex
    name: str | None = None  # GPT only
    attributes: str | None = None  # GPT only, 0x + 16 hex digits
    bootable: bool | None = None  # MBR only


@dataclass(frozen=True, slots=True)
class DiskTable:
    table: str  # "gpt" or "dos", as sfdisk names them
    size: int  # the image's size in bytes
    guid: str | None  # GPT disk GUID
    signature: str | None  # MBR disk signature, 0xNNNNNNNN
    partitions: tuple[TableEntry, ...]
    first_usable: int | None = None  # GPT: bytes
    last_usable: int | None = None  # GPT: bytes, inclusive end of the last usable sector


def has_partition_table(path: Path) -> bool:
    """Whether the image's first sector ends with the MBR boot signature (55 AA)."""
    with path.open("rb") as f:
        sector = f.read(SECTOR)
    return len(sector) == SECTOR and MBR_SECTOR.unpack(sector)["signature"] == BOOT_SIGNATURE


def read_table(path: Path) -> DiskTable:
    size = path.stat().st_size
    with path.open("rb") as f:
        sector = _read(f, 0, SECTOR, "MBR")
        mbr = MBR_SECTOR.unpack(sector)
        if mbr["signature"] != BOOT_SIGNATURE:
            raise ComposerError(f"{path.name}: MBR signature is 0x{mbr['signature']:04x}, not "
                                "0xaa55: no partition table")
        records = [MBR_ENTRY.unpack(mbr["partition_records"], i * MBR_ENTRY.size)
                   for i in range(MAX_PRIMARY)]
        if any(r["os_type"] == PROTECTIVE_TYPE for r in records):
            return _gpt(f, path.name, size)
        return _mbr(path.name, size, mbr["unique_mbr_disk_signature"], records)


def _read(f: BinaryIO, offset: int, n: int, what: str) -> bytes:
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:
        raise ComposerError(f"the image ends inside the {what} (at byte {offset + len(data)})")
    return data


def _mbr(name: str, size: int, signature: int, records: list[dict[str, Any]]) -> DiskTable:
    entries = []
    for number, r in enumerate(records, 1):
        if r["os_type"] == 0 or r["size_in_lba"] == 0:
            continue
        offset, length = r["starting_lba"] * SECTOR, r["size_in_lba"] * SECTOR
        if offset + length > size:
            raise ComposerError(f"{name}: MBR partition record {number} ends at byte "
                                f"{offset + length}, past the image's end ({size})")
        entries.append(TableEntry(number, offset, length, f"0x{r['os_type']:02x}",
                                  f"{signature:08x}-{number:02x}",
                                  bootable=r["boot_indicator"] == STATUS_BOOTABLE))
    return DiskTable("dos", size, None, f"0x{signature:08x}", tuple(entries))


def _gpt(f: BinaryIO, name: str, size: int) -> DiskTable:
    raw = _read(f, SECTOR, SECTOR, "GPT header")
    header = GPT_HEADER.unpack(raw)
    if header["signature"] != GPT_SIGNATURE:
        raise ComposerError(f"{name}: GPT header signature is {header['signature']!r}, not "
                            f"{GPT_SIGNATURE!r}")
    if not GPT_HEADER.size <= header["header_size"] <= SECTOR:
        raise ComposerError(f"{name}: GPT header header_size {header['header_size']} is not "
                            f"{GPT_HEADER.size}..{SECTOR}")
    zeroed = bytearray(raw[:header["header_size"]])
    zeroed[GPT_HEADER.offset("header_crc32"):GPT_HEADER.offset("header_crc32") + 4] = bytes(4)
    crc = zlib.crc32(zeroed)
    if crc != header["header_crc32"]:
        raise ComposerError(f"{name}: GPT header header_crc32 is 0x{header['header_crc32']:08x}"
                            f", its bytes give 0x{crc:08x}: the header is damaged")
    count, entry_size = header["number_of_partition_entries"], header["size_of_partition_entry"]
    if entry_size < GPT_ENTRY.size or entry_size % 8 or count * entry_size > MAX_ENTRY_ARRAY:
        raise ComposerError(f"{name}: GPT header states {count} entries of {entry_size} bytes, "
                            f"not a table this reader takes (entries of at least "
                            f"{GPT_ENTRY.size} bytes, a multiple of 8, at most "
                            f"{MAX_ENTRY_ARRAY} bytes in all)")
    array = _read(f, header["partition_entry_lba"] * SECTOR, count * entry_size,
                  "GPT partition entry array")
    crc = zlib.crc32(array)
    if crc != header["partition_entry_array_crc32"]:
        raise ComposerError(f"{name}: GPT header partition_entry_array_crc32 is "
                            f"0x{header['partition_entry_array_crc32']:08x}, the entry array "
                            f"gives 0x{crc:08x}: the entry array is damaged")
    entries = []
    for index in range(count):
        e = GPT_ENTRY.unpack(array, index * entry_size)
        if e["partition_type_guid"] == bytes(16):
            continue  # an unused entry
        first, last = e["starting_lba"], e["ending_lba"]
        if last < first or (last + 1) * SECTOR > size:
            raise ComposerError(f"{name}: GPT partition entry {index + 1} spans LBA {first}-"
                                f"{last}, outside the image ({size // SECTOR} sectors)")
        entries.append(TableEntry(
            index + 1, first * SECTOR, (last - first + 1) * SECTOR,
            str(uuid.UUID(bytes_le=e["partition_type_guid"])),
            str(uuid.UUID(bytes_le=e["unique_partition_guid"])),
            name=e["partition_name"].decode("utf-16-le", "replace").split("\0", 1)[0],
            attributes=f"0x{e['attributes']:016x}"))
    return DiskTable("gpt", size, str(uuid.UUID(bytes_le=header["disk_guid"])), None,
                     tuple(entries), first_usable=header["first_usable_lba"] * SECTOR,
                     last_usable=(header["last_usable_lba"] + 1) * SECTOR - 1)
