"""GUID Partition Table bytes: protective MBR, primary and backup headers and entry arrays.

Reference: UEFI Specification, chapter 5 "GUID Partition Table (GPT) Disk Struct" (header and
entry tables, protective MBR); the attribute bits and type GUIDs below are from the UEFI spec, the
UAPI Discoverable Partitions Specification (DPS) and man sfdisk (see docs/flashing.md §2-4).
Only 512-byte logical sectors are supported.

The encoder is pure: `GptTable` in, `(byte offset, bytes)` regions out. Placement, overlap
checks and GUID derivation live in `composer.disk.assemble`.
"""

from __future__ import annotations

import difflib
import enum
import uuid
import zlib
from dataclasses import dataclass

from composer.disk import mbr
from composer.errors import ComposerError
from composer.structs import Struct

SECTOR = 512

GPT_SIGNATURE = b"EFI PART"
GPT_REVISION = 0x00010000
GPT_HEADER = Struct("GPT header", "UEFI 2.10 §5.3.2, table GPT Header", 92, "<", (
    ("signature", "8s"),
    ("revision", "I"),
    ("header_size", "I"),
    ("header_crc32", "I"),  # over header_size bytes, computed with this field zero
    ("reserved", "I"),
    ("my_lba", "Q"),
    ("alternate_lba", "Q"),
    ("first_usable_lba", "Q"),
    ("last_usable_lba", "Q"),
    ("disk_guid", "16s"),  # mixed endian: uuid.bytes_le
    ("partition_entry_lba", "Q"),
    ("number_of_partition_entries", "I"),
    ("size_of_partition_entry", "I"),
    ("partition_entry_array_crc32", "I"),
))
GPT_HEADER_SIZE = GPT_HEADER.size

GPT_ENTRY = Struct("GPT partition entry", "UEFI 2.10 §5.3.3, table GPT Partition Entry", 128, "<", (
    ("partition_type_guid", "16s"),
    ("unique_partition_guid", "16s"),
    ("starting_lba", "Q"),
    ("ending_lba", "Q"),  # inclusive
    ("attributes", "Q"),
    ("partition_name", "72s"),  # UTF-16LE, zero padded
))
ENTRY_SIZE = GPT_ENTRY.size
ENTRY_COUNT = 128
ENTRY_ARRAY_BYTES = ENTRY_SIZE * ENTRY_COUNT  # 16,384: the UEFI minimum array size
ENTRY_ARRAY_SECTORS = ENTRY_ARRAY_BYTES // SECTOR  # 32
NAME_UNITS = 36  # PartitionName: 72 bytes of UTF-16LE

PRIMARY_HEADER_LBA = 1
DEFAULT_ENTRY_LBA = 2
# LBA 0 (protective MBR) + LBA 1 (header) + the array: the default FirstUsableLBA
DEFAULT_FIRST_USABLE = DEFAULT_ENTRY_LBA + ENTRY_ARRAY_SECTORS  # 34
BACKUP_SECTORS = ENTRY_ARRAY_SECTORS + 1  # backup array + backup header at the disk's end

# UEFI 5.2.3 protective MBR: one partition of type 0xEE from LBA 1 over the whole disk
PROTECTIVE_TYPE = 0xEE
# UEFI allows 0xFFFFFF as EndingCHS; sfdisk always writes it (sgdisk computes one), and matching
# sfdisk makes `sfdisk < disk.sfdisk` reproduce these tables byte for byte
PROTECTIVE_END_CHS = b"\xff\xff\xff"


class Attr(enum.IntFlag):
    """GPT partition attribute bits (entry offset 48, u64 LE)."""

    REQUIRED = 1 << 0  # UEFI: platform required
    NO_BLOCK_IO = 1 << 1  # UEFI: firmware must not read it
    LEGACY_BIOS_BOOTABLE = 1 << 2  # UEFI; genimage `bootable`
    GROW_FILE_SYSTEM = 1 << 59  # DPS SD_GPT_FLAG_GROWFS
    READ_ONLY = 1 << 60  # Microsoft basic data; DPS SD_GPT_FLAG_READ_ONLY
    HIDDEN = 1 << 62  # Microsoft
    NO_AUTOMOUNT = 1 << 63  # Microsoft "no drive letter"; DPS SD_GPT_FLAG_NO_AUTO


# bits 3-47 are reserved and must be zero (UEFI 5.3.3); 48-63 are type-specific
SETTABLE_BITS = frozenset(range(0, 3)) | frozenset(range(48, 64))

ATTRIBUTE_NAMES: dict[str, Attr] = {
    "required": Attr.REQUIRED,
    "no-block-io": Attr.NO_BLOCK_IO,
    "bootable": Attr.LEGACY_BIOS_BOOTABLE,
    "legacy-bios-bootable": Attr.LEGACY_BIOS_BOOTABLE,
    "grow-file-system": Attr.GROW_FILE_SYSTEM,
    "read-only": Attr.READ_ONLY,
    "hidden": Attr.HIDDEN,
    "no-automount": Attr.NO_AUTOMOUNT,
}

# Partition type GUIDs by short name (docs/flashing.md §3; UAPI DPS; genimage shortcuts)
_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
TYPE_GUIDS: dict[str, uuid.UUID] = {name: uuid.UUID(guid) for name, guid in {
    "linux": _LINUX,
    "linux-generic": _LINUX,
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "xbootldr": "BC13C2FF-59E6-4262-A352-B275FD6F7172",
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "home": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
    "srv": "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
    "var": "4D21B016-B534-45C2-A9FB-5C16E091FD2D",
    "tmp": "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1",
    "root-x86-64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "root-arm64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
    "root-arm": "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3",
    "root-riscv64": "72EC70A6-CF74-40E6-BD49-4BDA08E8F224",
    "root-x86": "44479540-F297-41B2-9AF7-D131D5F0458A",
    "usr-x86-64": "8484680C-9521-48C6-9C11-B0720656F69E",
    "usr-arm64": "B0E01050-EE5F-4390-949A-9101B17104E9",
    "usr-arm": "7D0359A3-02B3-4F0A-865C-654403E70625",
    "root-x86-64-verity": "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
    "root-arm64-verity": "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
    "root-arm64-verity-sig": "6DB69DE6-29F4-4758-A7A5-962190F00CE3",
    "microsoft-basic-data": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
    "linux-raid": "A19D880F-05FC-4D3B-A006-743F0F84911E",
    "linux-lvm": "E6D6D379-F507-44C2-A23C-238F2A3DF928",
    "u-boot-env": "3DE21764-95BD-54BD-A5C3-4ABE786F38A8",
    "barebox-state": "4778ED65-BF42-45FA-9C5B-287A1DC4AAB1",
}.items()}


def type_guid(value: str | uuid.UUID) -> uuid.UUID:
    """A type GUID from a short name (`TYPE_GUIDS`) or a literal GUID; ComposerError otherwise."""
    if isinstance(value, uuid.UUID):
        value = str(value)
    if value in TYPE_GUIDS:
        return TYPE_GUIDS[value]
    try:
        guid = uuid.UUID(value)
    except ValueError:
        close = difflib.get_close_matches(value, sorted(TYPE_GUIDS), n=1)
        raise ComposerError(
            f"unknown GPT partition type {value!r}",
            hint=f"did you mean {close[0]!r}?" if close else
            "use a GUID or one of: " + ", ".join(sorted(TYPE_GUIDS))) from None
    if guid.int == 0:
        # UEFI: an entry whose type is the nil GUID is unused; readers would skip the partition
        raise ComposerError("the GPT partition type cannot be the nil GUID, which marks an "
                            "unused entry", hint="use linux or another type")
    return guid


def attributes(names: tuple[str, ...]) -> int:
    """The attribute bits for names such as ("read-only", "no-automount") or ("bit:48",)."""
    bits = 0
    for name in names:
        if name in ATTRIBUTE_NAMES:
            bits |= ATTRIBUTE_NAMES[name]
        elif name.startswith("bit:") and name[4:].isdigit() and int(name[4:]) in SETTABLE_BITS:
            bits |= 1 << int(name[4:])
        else:
            raise ComposerError(
                f"unknown GPT attribute {name!r}",
                hint="use one of: " + ", ".join(sorted(ATTRIBUTE_NAMES))
                + ", or bit:N (N = 0-2 or 48-63; 3-47 are reserved)")
    return bits


@dataclass(frozen=True, slots=True)
class GptEntry:
    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int  # inclusive
    attributes: int
    name: str

    def encode(self) -> bytes:
        name = self.name.encode("utf-16-le")
        assert len(name) <= NAME_UNITS * 2, "checked when planning"
        return GPT_ENTRY.pack(
            partition_type_guid=self.type_guid.bytes_le,
            unique_partition_guid=self.unique_guid.bytes_le, starting_lba=self.first_lba,
            ending_lba=self.last_lba, attributes=self.attributes, partition_name=name)


@dataclass(frozen=True, slots=True)
class GptTable:
    disk_guid: uuid.UUID
    disk_sectors: int
    entries: tuple[GptEntry, ...]  # packed from index 0: entry i is Linux partition i + 1
    entry_lba: int = DEFAULT_ENTRY_LBA  # primary array; movable away from boot-ROM areas

    @property
    def first_usable_lba(self) -> int:
        return max(DEFAULT_FIRST_USABLE, self.entry_lba + ENTRY_ARRAY_SECTORS)

    @property
    def last_usable_lba(self) -> int:
        return self.backup_entry_lba - 1

    @property
    def backup_header_lba(self) -> int:
        return self.disk_sectors - 1

    @property
    def backup_entry_lba(self) -> int:
        return self.disk_sectors - BACKUP_SECTORS


def entry_array(table: GptTable) -> bytes:
    """The 128-entry array; unused entries stay zero (and count in the CRC)."""
    assert len(table.entries) <= ENTRY_COUNT
    data = b"".join(e.encode() for e in table.entries)
    return data.ljust(ENTRY_ARRAY_BYTES, b"\0")


def header(table: GptTable, array_crc: int, *, backup: bool) -> bytes:
    """One header sector; the backup swaps MyLBA/AlternateLBA and points at the backup array."""
    my_lba, alternate = PRIMARY_HEADER_LBA, table.backup_header_lba
    entry_lba = table.entry_lba
    if backup:
        my_lba, alternate, entry_lba = alternate, my_lba, table.backup_entry_lba
    fields = dict(
        signature=GPT_SIGNATURE, revision=GPT_REVISION, header_size=GPT_HEADER_SIZE,
        my_lba=my_lba, alternate_lba=alternate, first_usable_lba=table.first_usable_lba,
        last_usable_lba=table.last_usable_lba, disk_guid=table.disk_guid.bytes_le,
        partition_entry_lba=entry_lba, number_of_partition_entries=ENTRY_COUNT,
        size_of_partition_entry=ENTRY_SIZE, partition_entry_array_crc32=array_crc)
    crc = zlib.crc32(GPT_HEADER.pack(**fields))  # with header_crc32 zero, as UEFI says
    return GPT_HEADER.pack(**fields, header_crc32=crc).ljust(SECTOR, b"\0")


def protective_mbr(disk_sectors: int) -> bytes:
    """LBA 0: one 0xEE partition from LBA 1 covering the disk (capped at 2^32 - 1 sectors)."""
    sectors = min(disk_sectors - 1, 0xFFFFFFFF)
    entry = mbr.MbrEntry(bootable=False, type=PROTECTIVE_TYPE, first_lba=1, sectors=sectors)
    return mbr.encode(mbr.MbrTable(signature=0, entries=(entry,)), end_chs=PROTECTIVE_END_CHS)


def regions(table: GptTable) -> list[tuple[int, bytes]]:
    """Everything the table writes, as (byte offset, data), in offset order."""
    array = entry_array(table)
    crc = zlib.crc32(array)
    return [
        (0, protective_mbr(table.disk_sectors)),
        (PRIMARY_HEADER_LBA * SECTOR, header(table, crc, backup=False)),
        (table.entry_lba * SECTOR, array),
        (table.backup_entry_lba * SECTOR, array),
        (table.backup_header_lba * SECTOR, header(table, crc, backup=True)),
    ]
