"""The on-disk structures of FAT that composer touches, declared once (composer/structs.py).

Field names and sizes are those of the Microsoft "FAT: General Overview of On-Disk Format"
specification (version 1.03, 2000; the "Microsoft Extensible Firmware Initiative FAT32 File
System Specification"): §3.1 the BPB common to FAT12/16/32, §3.3 the FAT32 extension, §5 the
FSInfo sector, §6 the 32-byte directory entry, §7 the long-name entry. composer/fs/vfat.py writes
every one of them through these declarations, and readers use the same ones.
"""

from __future__ import annotations

from composer.structs import Struct

_SPEC = "Microsoft FAT specification 1.03"

BPB = Struct("FAT boot sector and BPB", f"{_SPEC} §3.1", 36, "<", (
    ("BS_jmpBoot", "3s"),
    ("BS_OEMName", "8s"),
    ("BPB_BytsPerSec", "H"),
    ("BPB_SecPerClus", "B"),
    ("BPB_RsvdSecCnt", "H"),
    ("BPB_NumFATs", "B"),
    ("BPB_RootEntCnt", "H"),
    ("BPB_TotSec16", "H"),
    ("BPB_Media", "B"),
    ("BPB_FATSz16", "H"),
    ("BPB_SecPerTrk", "H"),
    ("BPB_NumHeads", "H"),
    ("BPB_HiddSec", "I"),
    ("BPB_TotSec32", "I"),
))

# the FAT12/16 part of the boot sector, right after BPB (offset 36)
BPB_FAT16 = Struct("FAT12/16 BPB extension", f"{_SPEC} §3.2", 26, "<", (
    ("BS_DrvNum", "B"),
    ("BS_Reserved1", "B"),
    ("BS_BootSig", "B"),
    ("BS_VolID", "I"),
    ("BS_VolLab", "11s"),
    ("BS_FilSysType", "8s"),
))

# the FAT32 part of the boot sector, right after BPB (offset 36)
BPB_FAT32 = Struct("FAT32 BPB extension", f"{_SPEC} §3.3", 54, "<", (
    ("BPB_FATSz32", "I"),
    ("BPB_ExtFlags", "H"),
    ("BPB_FSVer", "H"),
    ("BPB_RootClus", "I"),
    ("BPB_FSInfo", "H"),
    ("BPB_BkBootSec", "H"),
    ("BPB_Reserved", "12s"),
    ("BS_DrvNum", "B"),
    ("BS_Reserved1", "B"),
    ("BS_BootSig", "B"),
    ("BS_VolID", "I"),
    ("BS_VolLab", "11s"),
    ("BS_FilSysType", "8s"),
))

FSINFO = Struct("FAT32 FSInfo sector", f"{_SPEC} §5", 512, "<", (
    ("FSI_LeadSig", "I"),
    ("FSI_Reserved1", "480s"),
    ("FSI_StrucSig", "I"),
    ("FSI_Free_Count", "I"),
    ("FSI_Nxt_Free", "I"),
    ("FSI_Reserved2", "12s"),
    ("FSI_TrailSig", "I"),
))
FSINFO_LEAD_SIG = 0x41615252
FSINFO_STRUC_SIG = 0x61417272
FSINFO_TRAIL_SIG = 0xAA550000
FSINFO_UNKNOWN = 0xFFFFFFFF  # FSI_Free_Count / FSI_Nxt_Free: "not known"

# the last two bytes of a boot sector (§3.1, offset 510), 0x55 0xAA on disk
BOOT_SIGNATURE = Struct("boot sector signature", f"{_SPEC} §3.1", 2, "<", (
    ("Signature_word", "H"),
))
BOOT_SIGNATURE_OFFSET = 510
BOOT_SIGNATURE_VALUE = 0xAA55
EXT_BOOT_SIG = 0x29  # BS_BootSig: the three fields after it (ID, label, type) are present

DIR_ENTRY = Struct("FAT directory entry", f"{_SPEC} §6", 32, "<", (
    ("DIR_Name", "11s"),
    ("DIR_Attr", "B"),
    ("DIR_NTRes", "B"),
    ("DIR_CrtTimeTenth", "B"),
    ("DIR_CrtTime", "H"),
    ("DIR_CrtDate", "H"),
    ("DIR_LstAccDate", "H"),
    ("DIR_FstClusHI", "H"),
    ("DIR_WrtTime", "H"),
    ("DIR_WrtDate", "H"),
    ("DIR_FstClusLO", "H"),
    ("DIR_FileSize", "I"),
))
ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LONG_NAME = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID

# one slot of a long name: 13 UTF-16 code units in three pieces, stored before its 8.3 entry
# in reverse order (the last piece first, its LDIR_Ord or'ed with LAST_LONG_ENTRY)
LFN_ENTRY = Struct("FAT long directory entry", f"{_SPEC} §7", 32, "<", (
    ("LDIR_Ord", "B"),
    ("LDIR_Name1", "10s"),
    ("LDIR_Attr", "B"),
    ("LDIR_Type", "B"),
    ("LDIR_Chksum", "B"),
    ("LDIR_Name2", "12s"),
    ("LDIR_FstClusLO", "H"),
    ("LDIR_Name3", "4s"),
))
LAST_LONG_ENTRY = 0x40
LFN_UNITS = (5, 6, 2)  # UTF-16 units in LDIR_Name1, LDIR_Name2, LDIR_Name3
