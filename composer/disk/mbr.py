"""MBR ("dos") partition table bytes: four primary entries in LBA 0.

Reference: the classic IBM PC MBR layout as sfdisk writes it (docs/flashing.md §6): boot code
0-439, disk signature at 440 (u32 LE), four 16-byte entries from 446, `55 AA` at 510. CHS fields
use the 255-head, 63-sector geometry sfdisk uses for image files, so tables match sfdisk's byte
for byte; boot ROMs and Linux read only the LBA fields. Extended partitions are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass

from composer.errors import ComposerError
from composer.structs import Struct

SECTOR = 512
MAX_PRIMARY = 4
MAX_LBA = 0xFFFFFFFF  # u32 LBA fields: the 2 TiB limit

MBR_ENTRY = Struct("MBR partition record", "UEFI 2.10 §5.2.1, table Legacy MBR Partition "
                   "Record", 16, "<", (
                       ("boot_indicator", "B"),  # 0x80: bootable
                       ("starting_chs", "3s"),
                       ("os_type", "B"),
                       ("ending_chs", "3s"),
                       ("starting_lba", "I"),
                       ("size_in_lba", "I"),
                   ))
MBR_SECTOR = Struct("MBR", "UEFI 2.10 §5.2.1, table Legacy MBR", SECTOR, "<", (
    ("boot_code", "440s"),
    ("unique_mbr_disk_signature", "I"),
    ("unknown", "H"),
    ("partition_records", f"{MAX_PRIMARY * MBR_ENTRY.size}s"),
    ("signature", "H"),  # 0xAA55: the bytes 55 AA
))
BOOT_SIGNATURE = 0xAA55

STATUS_BOOTABLE = 0x80

# CHS geometry for images (sfdisk): 255 heads x 63 sectors per track
HEADS = 255
SECTORS_PER_TRACK = 63
MAX_CYLINDER = 1023
CHS_TOO_BIG = b"\xfe\xff\xff"  # what sfdisk writes past cylinder 1023 (1023/254/63)

# partition type bytes by short name
TYPE_BYTES: dict[str, int] = {
    "linux": 0x83,
    "vfat": 0x0C,
    "fat32": 0x0C,
    "fat16": 0x0E,
    "esp": 0xEF,
    "swap": 0x82,
}


# types a primary entry holding a file system must not have: readers take 0x05/0x0f/0x85 for an
# extended partition (and look for a chain of EBRs in it) and 0xee for a GPT's protective entry
RESERVED_TYPES = {0x05: "an extended partition", 0x0F: "an extended partition",
                  0x85: "an extended partition", 0xEE: "the protective entry of a GPT disk"}


def type_byte(value: str | int) -> int:
    """An MBR type from a short name, an int, or a hex string ("0x83", "83")."""
    number = _type_byte(value)
    if number in RESERVED_TYPES:
        raise ComposerError(
            f"MBR partition type {number:#04x} marks {RESERVED_TYPES[number]}, not a partition "
            "that holds a file system", hint="use linux (0x83), vfat (0x0c) or another type")
    return number


def _type_byte(value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 < value <= 0xFF:
            return value
    elif isinstance(value, str) and value in TYPE_BYTES:
        return TYPE_BYTES[value]
    elif isinstance(value, str):
        try:
            number = int(value, 16)
        except ValueError:
            number = 0
        if 0 < number <= 0xFF:
            return number
    raise ComposerError(
        f"unknown MBR partition type {value!r}",
        hint="use a number 0x01-0xff or one of: " + ", ".join(sorted(TYPE_BYTES)))


def chs(lba: int, too_big: bytes = CHS_TOO_BIG) -> bytes:
    """The 3-byte CHS address of an LBA, or `too_big` past cylinder 1023."""
    cylinder = lba // (HEADS * SECTORS_PER_TRACK)
    if cylinder > MAX_CYLINDER:
        return too_big
    head = (lba // SECTORS_PER_TRACK) % HEADS
    sector = lba % SECTORS_PER_TRACK + 1
    return bytes([head, sector | ((cylinder >> 2) & 0xC0), cylinder & 0xFF])


@dataclass(frozen=True, slots=True)
class MbrEntry:
    bootable: bool
    type: int
    first_lba: int
    sectors: int


@dataclass(frozen=True, slots=True)
class MbrTable:
    signature: int  # the disk signature; Linux PARTUUIDs are "<signature:08x>-<number:02x>"
    entries: tuple[MbrEntry, ...]


def encode(table: MbrTable, end_chs: bytes | None = None) -> bytes:
    """LBA 0 with zero boot code; `end_chs` replaces every computed ending CHS."""
    assert len(table.entries) <= MAX_PRIMARY, "checked when planning"
    records = b"".join(
        MBR_ENTRY.pack(boot_indicator=STATUS_BOOTABLE if e.bootable else 0,
                       starting_chs=chs(e.first_lba), os_type=e.type,
                       ending_chs=end_chs or chs(e.first_lba + e.sectors - 1),
                       starting_lba=e.first_lba, size_in_lba=e.sectors)
        for e in table.entries)
    return MBR_SECTOR.pack(unique_mbr_disk_signature=table.signature,
                           partition_records=records, signature=BOOT_SIGNATURE)


def regions(table: MbrTable) -> list[tuple[int, bytes]]:
    return [(0, encode(table))]
