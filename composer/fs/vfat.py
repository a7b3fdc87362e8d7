"""FAT12/16/32 images (`fs: vfat`), written directly: boot sector, FSInfo, both FATs and every
directory entry are packed from the declarations in composer/fs/fat_layouts.py.

What a FAT image can and cannot carry:

- Only directories and regular files. Symlinks, hard links, device nodes, FIFOs and sockets are
  `check()` errors naming the path (put them on an ext4 partition).
- Owners, groups, permission bits and xattrs have no place in FAT; they are ignored without a
  message, because an ESP or boot partition legitimately comes from a tree owned by root with
  ordinary modes. Files get the archive attribute, directories the directory attribute.
- Names: one that is already an upper-case 8.3 name ("BOOTAA64.EFI") is stored as it is;
  every other name gets VFAT long-name entries (up to 255 UTF-16 units) and a generated 8.3
  name "BASIS~N.EXT" (see `short_names`). Dotfiles are kept (not hidden).
- Timestamps: FAT stores a local date and time with no zone and 2-second resolution. Every
  timestamp (created, modified, accessed, and the volume-label entry) is written from the UTC
  fields of the entry's mtime (the build epoch for the label), clamped to 1980-01-01..2107-12-31
  and to the build epoch. Nothing reads the clock, TZ or locale.
- The volume ID is the first 4 bytes of `req.uuid` unless the option `volume_id` pins it; the
  label is `req.label` upper-cased (at most 11 characters of A-Z, 0-9, `_` and `-`).

Layout: the geometry (sectors per cluster, reserved sectors, FAT size, fixed root entries) is the
table pyfatfs 1.1.0's mkfs used when it was composer's writer, kept so that every size a layout
could give still gives the same file-system shape. Entries are taken in sorted order; clusters
are handed out in that order (the FAT32 root directory first), each directory and file one
contiguous run, so the image depends on the content only, every chain is a run, and the used
clusters are 2..N: the block map is the metadata area plus that one range. Cost is linear in
the entries: 8.3 names are found with one set per directory, never by rescanning it.

Why not pyfatfs any more (issue 15): it looks names up by rescanning the directory, so N files
in one folder cost N^2 (4,000 files took 409 s) and it stamps entries with the wall clock.
pyfatfs stays as a reader only (composer/fs/vfat_reader.py, for `verify --deep`); the tests
judge images with fsck.vfat and mtools, never with composer's own code.
"""

from __future__ import annotations

import calendar
import logging
import math
import os
import re
import sys
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from composer.content import ContentStore, read_full
from composer.errors import ComposerError, shown
from composer.fs.base import (
    FsWriter,
    OptionSpec,
    OptionType,
    Progress,
    WriteRequest,
    WriteResult,
    no_progress,
)
from composer.fs.fat_layouts import (
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_LONG_NAME,
    ATTR_VOLUME_ID,
    BOOT_SIGNATURE,
    BOOT_SIGNATURE_OFFSET,
    BOOT_SIGNATURE_VALUE,
    BPB,
    BPB_FAT16,
    BPB_FAT32,
    EXT_BOOT_SIG,
    FSINFO,
    FSINFO_LEAD_SIG,
    FSINFO_STRUC_SIG,
    FSINFO_TRAIL_SIG,
    FSINFO_UNKNOWN,
    LAST_LONG_ENTRY,
    LFN_ENTRY,
)
from composer.fs.fat_layouts import DIR_ENTRY as DIR_STRUCT
from composer.tree import Content, Entry, Kind, parent, sorted_entries
from composer.units import align_up

log = logging.getLogger(__name__)

SECTOR = 512
MIB = 1 << 20
CHUNK = 1 << 20  # file data is copied in pieces of this size

# FAT dates count years from 1980 in 7 bits (Microsoft FAT spec, "Date Format")
DOS_EPOCH = calendar.timegm((1980, 1, 1, 0, 0, 0))  # 315532800
DOS_LAST = calendar.timegm((2107, 12, 31, 23, 59, 58))

# Cluster-count limits that decide the FAT type (Microsoft FAT spec, "FAT Type Determination")
FAT12_MAX_CLUSTERS = 4084
FAT16_MAX_CLUSTERS = 65524
MAX_FILE_SIZE = (1 << 32) - 1
NUM_FATS = 2
MEDIA_FIXED = 0xF8  # BPB_Media: a fixed disk; FAT[0] repeats it
FAT_MEDIA_ENTRY = {12: 0xF00 | MEDIA_FIXED, 16: 0xFF00 | MEDIA_FIXED, 32: 0x0FFFFF00 | MEDIA_FIXED}
FAT_EOC = {12: 0xFFF, 16: 0xFFFF, 32: 0x0FFFFFFF}  # end of chain (also FAT[1]: clean, no errors)
DRIVE_HARD_DISK = 0x80  # BS_DrvNum
NO_LABEL = "NO NAME"  # BS_VolLab without a label, as mkfs.fat writes it
BOOT_CODE_AT = {12: 62, 16: 62, 32: 90}  # the first byte after the BPB and its extension
HALT_CODE = b"\xfa\xf4\xeb\xfd"  # cli; hlt; jmp -3: not bootable, and never runs wild
DOT = b".".ljust(11)
DOTDOT = b"..".ljust(11)
MAX_DIR_SLOTS = 65536  # a directory holds at most 2 MiB of entries (FAT spec §6)
DIR_ENTRY = DIR_STRUCT.size  # bytes per directory entry
LFN_CHARS = 13  # UTF-16 code units per long-name entry
MAX_NAME_UNITS = 255
LABEL_LEN = 11
LABEL_RE = re.compile(r"[A-Z0-9_-]{1,11}")
# characters a long name may not hold (Microsoft FAT spec, "Long Directory Entries")
BAD_NAME_CHARS = frozenset('"*/:<>?\\|') | frozenset(chr(c) for c in range(0x20))
_BAD_NAME = re.compile("[" + re.escape("".join(sorted(BAD_NAME_CHARS))) + "]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# valid 8.3 characters besides A-Z and 0-9 (FAT spec §6.1; lower case is not among them)
_SHORT_SPECIAL = "$%'-_@~`!(){}^#&"
_LITERAL_83 = re.compile(
    rf"([A-Z0-9{re.escape(_SHORT_SPECIAL)}]{{1,8}})(?:\.([A-Z0-9{re.escape(_SHORT_SPECIAL)}]{{1,3}}))?")
# dropped from an 8.3 basis: " ." ; valid in a long name only, "_" in an 8.3 name: "+,;=[]"
_SHORT_TRANSLATION = str.maketrans({" ": None, ".": None, **dict.fromkeys("+,;=[]", "_")})
_DIR_PACK = DIR_STRUCT.compiled.pack
_LFN_PACK = LFN_ENTRY.compiled.pack

# sectors per cluster by size (pyfatfs 1.1.0's mkfs table, see "Layout" above): (largest sector
# count, sectors per cluster); 0 means "too small for this type".
_SPC_TABLE: dict[int, tuple[tuple[int, int], ...]] = {
    12: ((4084, 1), (8168, 2), (16336, 4), (32672, 8), (65344, 16), (130688, 32),
         (261376, 64), (522752, 128)),
    16: ((8400, 0), (32680, 2), (262144, 4), (524288, 8), (1048576, 16), (2097152, 32),
         (4194304, 64)),
    32: ((66600, 0), (532480, 1), (16777216, 8), (33554432, 16), (67108864, 32)),
}
ROOT_ENTRIES = {12: 224, 16: 512, 32: 0}  # fixed root directory entries (FAT12/16)
FAT16_MIN_SIZE = (8400 + 1) * SECTOR  # the smallest FAT16 of the table
FAT32_MIN_SIZE = (66600 + 1) * SECTOR
FAT32_AUTO_FROM = 512 * MIB  # like mkfs.fat: FAT32 from 512 MiB up, FAT16 below
AUTO_SLACK = 0.10  # auto size: content + metadata + 10%

# BPB_SecPerTrk and BPB_NumHeads: mtools refuses 0 ("zero number of heads or sectors")
SECTORS_PER_TRACK = 63  # the 255x63 geometry sfdisk uses for images (docs/flashing.md §6)
HEADS = 255
FAT32_BACKUP_BOOT_SECTOR = 6
# FSInfo sector (FAT32) and its copy after the backup boot sector
FSINFO_SECTORS = (1, 7)


@dataclass(frozen=True, slots=True)
class Geometry:
    """The layout of a FAT of one type and size."""

    fat: int  # 12, 16 or 32
    sectors: int
    sectors_per_cluster: int
    reserved_sectors: int
    fat_sectors: int  # per FAT; there are two
    root_entries: int  # fixed root directory (FAT12/16); 0 on FAT32
    clusters: int

    @property
    def cluster_size(self) -> int:
        return self.sectors_per_cluster * SECTOR

    @property
    def root_dir_sectors(self) -> int:
        return (self.root_entries * DIR_ENTRY + SECTOR - 1) // SECTOR

    @property
    def metadata_bytes(self) -> int:
        """Reserved sectors, both FATs and the fixed root directory: everything before data."""
        return (self.reserved_sectors + 2 * self.fat_sectors + self.root_dir_sectors) * SECTOR


def geometry(fat: int, size: int) -> Geometry | None:
    """The layout for a type and size, or None when this type cannot have this size."""
    sectors = size // SECTOR
    spc = next((spc for limit, spc in _SPC_TABLE[fat] if sectors <= limit), 0)
    if spc == 0:
        return None
    reserved = 32 if fat == 32 else 1
    root_entries = ROOT_ENTRIES[fat]
    root_sectors = (root_entries * DIR_ENTRY + SECTOR - 1) // SECTOR
    # mirrors mkfs, which mixes bytes and sectors here (the result over-sizes the FAT a little)
    tmp1 = size - (reserved + root_sectors)
    tmp2 = 256 * spc + 2
    if fat == 32:
        tmp2 //= 2
    fat_sectors = math.ceil(((tmp1 + tmp2 - 1) // tmp2) / SECTOR)
    data = sectors - reserved - 2 * fat_sectors - root_sectors
    clusters = data // spc
    if not _clusters_fit_type(fat, clusters):
        return None  # a reader would take it for another FAT type
    return Geometry(fat, sectors, spc, reserved, fat_sectors, root_entries, clusters)


def _clusters_fit_type(fat: int, clusters: int) -> bool:
    if fat == 12:
        return 0 < clusters <= FAT12_MAX_CLUSTERS
    if fat == 16:
        return FAT12_MAX_CLUSTERS < clusters <= FAT16_MAX_CLUSTERS
    return clusters > FAT16_MAX_CLUSTERS


def auto_fat(size: int) -> int:
    """The FAT type for a size when the layout does not set one."""
    if size < FAT16_MIN_SIZE:
        return 12
    return 32 if size >= FAT32_AUTO_FROM else 16


DosTime = tuple[int, int, int, int, int, int]  # (Y, M, D, h, m, s)


def dos_time(seconds: int, epoch: int) -> DosTime:
    """(Y, M, D, h, m, s) of a Unix time as FAT stores it: UTC fields, clamped, 2 s steps."""
    t = max(DOS_EPOCH, min(seconds, epoch, DOS_LAST))
    tm = time.gmtime(t)
    return (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec - tm.tm_sec % 2)


def volume_serial(req: WriteRequest) -> int:
    """The 32-bit serial: option `volume_id` ("1234ABCD" or "1234-ABCD"), else from the UUID."""
    pinned = req.options.get("volume_id")
    if pinned is not None:
        return int(str(pinned).replace("-", ""), 16)
    return int.from_bytes(req.uuid.bytes[:4], "big")


def _name_units(name: str) -> int:
    if name.isascii():
        return len(name)
    # surrogatepass: the census counts slots before check() refuses a name that is not UTF-8
    # (carried as lone surrogates), and counting must not raise on it
    return len(name.encode("utf-16-le", "surrogatepass")) // 2


def _dir_slots(name: str) -> int:
    """Directory entries a name takes: the 8.3 entry plus its long-name entries, if any."""
    if literal_short_name(name) is not None:
        return 1
    return 1 + math.ceil(_name_units(name) / LFN_CHARS)


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# the writer


class VfatWriter(FsWriter):
    fs = "vfat"
    options = {
        "fat": OptionSpec(OptionType.INT, choices=(12, 16, 32)),
        "volume_id": OptionSpec(OptionType.STR),
    }

    def volume_id(self, req: WriteRequest) -> str | None:
        serial = volume_serial(req)
        return f"{serial >> 16:04X}-{serial & 0xFFFF:04X}"  # as blkid and /dev/disk/by-uuid

    def check(self, req: WriteRequest) -> list[ComposerError]:
        errors = (self._check_options(req) + self._check_label(req)
                  + self._check_entries(req, self._census(req)))
        if errors:
            return errors
        if req.size is None:
            try:
                self.resolve_size(req)
            except ComposerError as exc:
                return [exc]
            return []
        return self._check_size(req, req.size, self._census(req))

    def resolve_size(self, req: WriteRequest) -> int:
        if req.size is not None:
            return req.size
        fat = req.options.get("fat")
        size = {None: FAT16_MIN_SIZE, 12: 0, 16: FAT16_MIN_SIZE, 32: FAT32_MIN_SIZE}[fat]
        size = max(MIB, align_up(size, MIB))
        c = self._census(req)
        root_slots = c.slots["/"]
        root_type = fat if fat in (12, 16) else 16 if fat is None else None
        if root_type is not None and root_slots > ROOT_ENTRIES[root_type]:
            # growing does not help: FAT12/16 have a fixed root directory
            raise ComposerError(
                f"{req.name}: the root directory needs {root_slots} entries, more than the "
                f"{ROOT_ENTRIES[root_type]} FAT{root_type} has room for", loc=req.loc,
                hint="use `fat: 32`, or move files into a subdirectory")
        for _ in range(64):  # each pass grows the size; a few passes always suffice
            geo = geometry(fat or auto_fat(size), size)
            if geo is not None:
                need = _clusters_needed(c, geo)
                if need * (1 + AUTO_SLACK) <= geo.clusters and _root_fits(c, geo):
                    return size
                data = need * geo.cluster_size * (1 + AUTO_SLACK)
                size = max(size + MIB, align_up(int(data) + geo.metadata_bytes, MIB))
            else:
                size += MIB
        raise ComposerError(f"{req.name}: no FAT size fits this content", loc=req.loc,
                            hint="give the partition an explicit size and `fat:` type")

    def write(self, req: WriteRequest, out: Path, store: ContentStore,
              progress: Progress = no_progress) -> WriteResult:
        size = self.resolve_size(req)
        geo = self._geometry_or_raise(req, size)
        log.debug("%s: FAT%d, %d clusters of %d bytes, %d sectors per FAT", req.name, geo.fat,
                  geo.clusters, geo.cluster_size, geo.fat_sectors)
        p = _write_image(out, geo, req, self._census(req), store, progress)
        return WriteResult(size, _extents(p, geo))

    def _census(self, req: WriteRequest) -> Census:
        """The census of the request's entries, made once: check, resolve_size and write all
        need it (the build hands write() a new request with the size filled in, with the same
        entries)."""
        key = (req.entries, req.epoch)
        cached: tuple[tuple[tuple[Entry, ...], int], Census] | None = getattr(
            self, "_cached", None)
        if cached is None or cached[0][0] is not key[0] or cached[0][1] != key[1]:
            cached = (key, census(*key))
            self._cached = cached
        return cached[1]

    # -- checks ---------------------------------------------------------------------------

    def _geometry_or_raise(self, req: WriteRequest, size: int) -> Geometry:
        errors = self._check_size(req, size, self._census(req))
        if errors:
            raise errors[0]
        geo = geometry(req.options.get("fat") or auto_fat(size), size)
        if geo is None:  # _check_size said it fits: the two disagree
            raise ComposerError(f"{req.name}: no FAT{req.options.get('fat')} geometry for "
                                f"{size} bytes although the size check passed",
                                hint="this is a bug in composer; please report it")
        return geo

    @staticmethod
    def _check_options(req: WriteRequest) -> list[ComposerError]:
        pinned = req.options.get("volume_id")
        if pinned is None:
            return []
        if not re.fullmatch(r"[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}", str(pinned)):
            return [ComposerError(f"{req.name}: volume_id {pinned!r} is not 8 hex digits",
                                  loc=req.loc, hint='write it like "1234ABCD" or "1234-ABCD"')]
        return []

    @staticmethod
    def _check_label(req: WriteRequest) -> list[ComposerError]:
        if req.label is None or LABEL_RE.fullmatch(req.label):
            return []
        if LABEL_RE.fullmatch(req.label.upper()):
            # DOS stores labels in capitals; changing the user's text silently would make a
            # `LABEL=boot` in fstab or cmdline.txt miss
            return [ComposerError(
                f"{req.name}: FAT label {req.label!r} has lowercase letters", loc=req.loc,
                hint=f"FAT labels are capitals: write label: {req.label.upper()}")]
        return [ComposerError(
            f"{req.name}: FAT label {req.label!r} must be 1 to {LABEL_LEN} characters of "
            "A-Z, 0-9, '_' and '-'", loc=req.loc, hint="shorten or simplify the label")]

    @staticmethod
    def _check_entries(req: WriteRequest, c: Census) -> list[ComposerError]:
        errors: list[ComposerError] = []
        seen: dict[tuple[str, str], str] = {}
        # with_parents: a folder only implied by a path needs a name FAT can hold too
        for entry, up in zip(c.entries, c.parents, strict=True):
            problem = _entry_problem(entry)
            if problem is None:
                # FAT compares names case-insensitively: "A" and "a" would be one file
                key = (up.upper(), _basename(entry.path).upper())
                other = seen.setdefault(key, entry.path)
                if other != entry.path:
                    problem = f"{entry.path} and {other} differ only in case, which FAT ignores"
            if problem is not None:
                hint = ("put it on an ext4 partition" if entry.kind not in (Kind.FILE, Kind.DIR)
                        else None)
                errors.append(ComposerError(f"{req.name}: {problem}", loc=req.loc, hint=hint))
        if errors:
            return errors
        for path, slots in c.slots.items():
            if slots > MAX_DIR_SLOTS:
                errors.append(ComposerError(
                    f"{req.name}: the directory {shown(path)} needs {slots} entries; FAT allows "
                    f"{MAX_DIR_SLOTS} (long names take one entry per 13 characters)",
                    loc=req.loc, hint="spread the files over subdirectories, or shorten names"))
        return errors

    @staticmethod
    def _check_size(req: WriteRequest, size: int, c: Census) -> list[ComposerError]:
        fat = req.options.get("fat") or auto_fat(size)

        def err(message: str, hint: str) -> list[ComposerError]:
            return [ComposerError(f"{req.name}: {message}", loc=req.loc, hint=hint)]

        if size % SECTOR:
            return err(f"size {size} is not a multiple of {SECTOR} bytes",
                       "use a size in MiB")
        geo = geometry(fat, size)
        if geo is None:
            low, high = _size_range(fat)
            return err(f"composer cannot format FAT{fat} at {size} bytes; FAT{fat} needs "
                       f"{low} to {high} bytes",
                       "change the size, or the `fat:` option (12, 16 or 32)")
        need = _clusters_needed(c, geo)
        if need > geo.clusters:
            return err(f"content needs {need} clusters of {geo.cluster_size} bytes but the "
                       f"FAT{fat} file system has {geo.clusters}",
                       "make the partition bigger, or use size: auto")
        if not _root_fits(c, geo):
            return err(f"the root directory needs more than the {geo.root_entries} entries "
                       f"FAT{fat} has room for",
                       "use `fat: 32`, or move files into a subdirectory")
        return []


def _size_range(fat: int) -> tuple[int, int]:
    """The smallest and largest sizes (bytes) composer can format as this FAT type."""
    table = _SPC_TABLE[fat]
    low = next((limit + 1 for limit, spc in table if spc == 0), 1) * SECTOR
    while geometry(fat, low) is None:  # FAT12: the first size with any data cluster
        low += SECTOR
    high = table[-1][0] * SECTOR
    while geometry(fat, high) is None:  # FAT16: the top row gives too many clusters
        high -= SECTOR
    return low, high


def _entry_problem(entry: Entry) -> str | None:
    """Why an entry cannot go into a FAT file system, or None."""
    if entry.kind is Kind.HARDLINK:
        return f"{entry.path} is a hard link; FAT has no hard links"
    if entry.kind not in (Kind.FILE, Kind.DIR):
        return f"{entry.path} is a {entry.kind.value}; FAT holds only files and directories"
    name = _basename(entry.path)
    if _SURROGATE.search(name):
        # bytes that are not UTF-8 (carried as lone surrogates: composer/sources) have no
        # UTF-16 form for a long-name entry
        return (f"{shown(entry.path)}: the name is not valid UTF-8, and FAT stores names as "
                "UTF-16 text")
    if _BAD_NAME.search(name):
        return f"{entry.path}: the name holds a character FAT forbids (\"*/:<>?\\| or control)"
    if name.endswith((".", " ")):
        return f"{entry.path}: FAT names cannot end with a dot or a space"
    if _name_units(name) > MAX_NAME_UNITS:
        return (f"{entry.path}: the name is {_name_units(name)} UTF-16 units long; FAT allows "
                f"{MAX_NAME_UNITS}")
    if entry.size > MAX_FILE_SIZE:
        return f"{entry.path}: {entry.size} bytes is over the FAT file size limit (4 GiB - 1)"
    return None


def with_parents(entries: Sequence[Entry], epoch: int) -> list[Entry]:
    """The entries minus the root, plus any missing ancestor directory (stamped at the epoch)."""
    present = {e.path for e in entries}
    extra: dict[str, Entry] = {}
    for entry in entries:
        up = parent(entry.path)
        while up != "/" and up not in present and up not in extra:
            extra[up] = Entry(up, Kind.DIR, 0o755, 0, 0, epoch * 1_000_000_000)
            up = parent(up)
    return sorted_entries([e for e in entries if e.path != "/"] + list(extra.values()))


def _children_slots(entries: Sequence[Entry], parents: Sequence[str]) -> dict[str, int]:
    """Directory entries each directory needs, by directory path (including '.' and '..')."""
    slots: dict[str, int] = {"/": 1}  # the root holds the volume-label entry
    for entry, up in zip(entries, parents, strict=True):
        slots[up] = slots.get(up, 2) + _dir_slots(_basename(entry.path))
        if entry.kind is Kind.DIR:
            slots.setdefault(entry.path, 2)
    return slots


@dataclass(frozen=True, slots=True)
class Census:
    """What every step needs to know of a request's entries, counted once."""

    entries: tuple[Entry, ...]  # with_parents(): sorted, the root left out
    parents: tuple[str, ...]  # the folder of each entry
    slots: Mapping[str, int]  # directory path -> directory entries it holds
    file_sizes: tuple[int, ...]  # of the non-empty files


def census(entries: Sequence[Entry], epoch: int) -> Census:
    complete = tuple(with_parents(entries, epoch))
    parents = tuple(parent(e.path) for e in complete)
    sizes = tuple(e.size for e in complete if e.kind is Kind.FILE and e.size)
    return Census(complete, parents, _children_slots(complete, parents), sizes)


def _clusters_needed(c: Census, geo: Geometry) -> int:
    """Clusters the entries take: file data plus directories."""
    cs = geo.cluster_size
    need = sum(-(-size // cs) for size in c.file_sizes)
    for path, count in c.slots.items():
        if path == "/" and geo.fat != 32:
            continue  # FAT12/16 keep the root directory in the metadata area
        need += max(1, -(-count * DIR_ENTRY // cs))
    return need


def _root_fits(c: Census, geo: Geometry) -> bool:
    return geo.fat == 32 or c.slots["/"] <= geo.root_entries


# ---------------------------------------------------------------------------------------------
# short (8.3) names


def literal_short_name(name: str) -> bytes | None:
    """The 11-byte 8.3 entry name when `name` is already a valid upper-case 8.3 name (then it
    needs no long-name entries), else None."""
    match = _LITERAL_83.fullmatch(name)
    if match is None:
        return None
    base, ext = match[1], match[2] or ""
    return (base.ljust(8) + ext.ljust(3)).encode("ascii")


def _short_chars(text: str) -> str:
    """`text` as 8.3 characters, as Linux's vfat does: dots and spaces dropped, `+,;=[]` and
    every non-ASCII character made `_` (a reader's code page must not change the name), the
    rest upper-cased."""
    if not text.isascii():
        text = "".join(c if c.isascii() else "_" for c in text)
    return text.translate(_SHORT_TRANSLATION).upper()


def _basis(name: str) -> tuple[str, str]:
    """(base, extension) of the 8.3 basis name of a long name (Linux fs/fat/namei_vfat.c,
    vfat_create_shortname): the extension follows the last dot, unless that dot ends the name
    or only dots and spaces precede it (".hidden" has the base "HIDDEN")."""
    dot = name.rfind(".")
    if dot > 0 and dot < len(name) - 1 and name[:dot].strip(" ."):
        base, ext = _short_chars(name[:dot]), _short_chars(name[dot + 1:])
    else:
        base, ext = _short_chars(name), ""
    return (base[:8] or "_"), ext[:3]


def _free_tail(base: str, ext: str, taken: set[bytes], next_n: dict[tuple[str, str, int], int]
               ) -> bytes:
    """The first free "base~N.ext" in the order ~1..~9, ~10..~99 (base cut to 5), ... .

    `next_n` remembers, per cut base, extension and tail length, where the search stopped: a
    name once taken stays taken, so each candidate is tried once per directory and N files
    cost N lookups, not N^2 (20,000 files named "file-00001.txt" ... share "FILE-0").
    """
    for digits in range(1, 7):
        prefix = base[:7 - digits]
        key = (prefix, ext, digits)
        n = next_n.get(key, 1 if digits == 1 else 10 ** (digits - 1))
        while n < 10 ** digits:
            short = (f"{prefix}~{n}".ljust(8) + ext.ljust(3)).encode("ascii")
            n += 1
            if short not in taken:
                next_n[key] = n
                return short
        next_n[key] = n
    raise ValueError(f"no free 8.3 name for {base}.{ext}")  # > 10^6 names: check() refuses


def short_names(names: Sequence[str]) -> list[tuple[bytes, bool]]:
    """The 8.3 name of each of the names of one directory, and whether it needs long-name
    entries.

    A name that is itself a valid upper-case 8.3 name is stored as it is, alone. Every other
    name gets long-name entries and a short name "BASIS~N.EXT" (Linux's default, and Windows'
    first choices): N counts up from 1 and skips any name already taken, the literal ones
    first, so a file called "FILE~1.TXT" keeps its name whatever sorts before it. Where
    Windows and Linux switch to a hash or a random number after ~4 or ~9, N keeps counting
    (~10, ~100, ... with the base shortened): the same names give the same entries.
    """
    result: list[tuple[bytes, bool] | None] = [None] * len(names)
    taken: set[bytes] = set()
    for i, name in enumerate(names):
        literal = literal_short_name(name)
        if literal is not None:
            taken.add(literal)
            result[i] = (literal, False)
    next_n: dict[tuple[str, str, int], int] = {}
    for i, name in enumerate(names):
        if result[i] is None:
            short = _free_tail(*_basis(name), taken, next_n)
            taken.add(short)
            result[i] = (short, True)
    return result  # type: ignore[return-value]  # every slot was filled above


def lfn_checksum(short: bytes) -> int:
    """The checksum every long-name entry carries of its 8.3 name (FAT spec §7)."""
    total = 0
    for byte in short:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def long_name_entries(name: str, checksum: int) -> bytes:
    """The long-name entries of `name`, in the order they are stored (last piece first)."""
    units = name.encode("utf-16-le")
    if len(units) % (2 * LFN_CHARS):
        # a NUL unit ends a name that does not fill its last entry; 0xFFFF pads the rest
        units += b"\0\0"
        units += b"\xff" * (-len(units) % (2 * LFN_CHARS))
    count = len(units) // (2 * LFN_CHARS)
    out = []
    for k in range(count, 0, -1):
        piece = units[(k - 1) * 2 * LFN_CHARS:k * 2 * LFN_CHARS]
        out.append(_LFN_PACK(k | (LAST_LONG_ENTRY if k == count else 0), piece[:10],
                             ATTR_LONG_NAME, 0, checksum, piece[10:22], 0, piece[22:26]))
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# the plan: names, slots and clusters of every entry, before a byte is written


@dataclass(frozen=True, slots=True)
class Plan:
    """Where everything goes. Clusters are handed out in entry order (the FAT32 root first),
    each directory and file one contiguous run, so every chain is a run and the used clusters
    are 2 .. last_cluster."""

    entries: tuple[Entry, ...]
    first_cluster: tuple[int, ...]  # by entry index; 0 for an empty file
    children: Mapping[str, tuple[int, ...]]  # directory path -> child entry indexes, in order
    dir_index: Mapping[str, int]  # directory path -> its entry index ("/" has none)
    root_cluster: int  # FAT32; 0 on FAT12/16 (fixed root directory)
    run_ends: tuple[int, ...]  # the last cluster of every run: end-of-chain marks
    last_cluster: int  # 1 when nothing is allocated


def plan(c: Census, geo: Geometry, name: str) -> Plan:
    entries, slots = c.entries, c.slots
    children: dict[str, list[int]] = {"/": []}
    dir_index: dict[str, int] = {}
    for i, (entry, up) in enumerate(zip(entries, c.parents, strict=True)):
        children[up].append(i)
        if entry.kind is Kind.DIR:
            children[entry.path] = []
            dir_index[entry.path] = i
    cs = geo.cluster_size
    next_free = 2
    run_ends: list[int] = []

    def take(count: int) -> int:
        nonlocal next_free
        start = next_free
        next_free += count
        run_ends.append(next_free - 1)
        return start

    root_cluster = take(_dir_clusters(slots["/"], cs)) if geo.fat == 32 else 0
    first: list[int] = []
    for entry in entries:
        if entry.kind is Kind.DIR:
            first.append(take(_dir_clusters(slots[entry.path], cs)))
        elif entry.size:
            first.append(take(-(-entry.size // cs)))
        else:
            first.append(0)
    if next_free - 2 > geo.clusters:  # check() counts the same clusters: they disagree
        raise ComposerError(f"{name}: content needs {next_free - 2} clusters of {cs} bytes but "
                            f"the FAT{geo.fat} file system has {geo.clusters}",
                            hint="make the partition bigger, or use size: auto")
    return Plan(tuple(entries), tuple(first), {k: tuple(v) for k, v in children.items()},
                dir_index, root_cluster, tuple(run_ends), next_free - 1)


def _dir_clusters(slots: int, cluster_size: int) -> int:
    return max(1, -(-slots * DIR_ENTRY // cluster_size))


# ---------------------------------------------------------------------------------------------
# writing


def _pack_time(when: DosTime | None) -> tuple[int, int]:
    """(date, time) words of a FAT timestamp (FAT spec §6.1); None gives (0, 0)."""
    if when is None:
        return 0, 0
    year, month, day, hour, minute, second = when
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


def _short_entry(name11: bytes, attr: int, cluster: int, size: int,
                 when: tuple[int, int]) -> bytes:
    date, clock = when
    return _DIR_PACK(name11, attr, 0, 0, clock, date, date, cluster >> 16, clock, date,
                     cluster & 0xFFFF, size)


def directory_bytes(p: Plan, path: str, times: Sequence[tuple[int, int]],
                    label: tuple[bytes, tuple[int, int]] | None) -> bytes:
    """Every entry of one directory: the label (root) or "." and "..", then each child's
    long-name entries and 8.3 entry. "." and ".." carry their directory's and its parent's
    time and cluster (0 for the root, which has no entry of its own)."""
    out: list[bytes] = []
    if path == "/":
        if label is not None:
            out.append(_short_entry(label[0], ATTR_VOLUME_ID, 0, 0, label[1]))
    else:
        me = p.dir_index[path]
        up = p.dir_index.get(parent(path))
        out.append(_short_entry(DOT, ATTR_DIRECTORY, p.first_cluster[me], 0, times[me]))
        out.append(_short_entry(DOTDOT, ATTR_DIRECTORY, 0 if up is None else p.first_cluster[up],
                                0, (0, 0) if up is None else times[up]))
    kids = p.children[path]
    names = [_basename(p.entries[i].path) for i in kids]
    for i, name, (short, needs_lfn) in zip(kids, names, short_names(names), strict=True):
        entry = p.entries[i]
        if needs_lfn:
            out.append(long_name_entries(name, lfn_checksum(short)))
        is_dir = entry.kind is Kind.DIR
        out.append(_short_entry(short, ATTR_DIRECTORY if is_dir else ATTR_ARCHIVE,
                                p.first_cluster[i], 0 if is_dir else entry.size, times[i]))
    return b"".join(out)


def fat_bytes(p: Plan, geo: Geometry) -> bytes:
    """One FAT: entries 0 and 1, every run chained cluster to next cluster, each run's last
    cluster an end-of-chain mark, the rest free; padded to the FAT's sectors."""
    eoc = FAT_EOC[geo.fat]
    table = [0] * (geo.clusters + 2)
    table[0] = FAT_MEDIA_ENTRY[geo.fat]
    table[1] = eoc
    table[2:p.last_cluster + 1] = range(3, p.last_cluster + 2)
    for end in p.run_ends:
        table[end] = eoc
    if geo.fat == 12:
        if len(table) % 2:
            table.append(0)
        raw = bytearray()
        for a, b in zip(table[0::2], table[1::2], strict=True):
            # two 12-bit entries in three bytes (FAT spec §4)
            raw += bytes((a & 0xFF, a >> 8 | (b & 0xF) << 4, b >> 4))
    else:
        raw = bytearray(array("H" if geo.fat == 16 else "I", table).tobytes())
        if sys.byteorder == "big":  # FAT entries are little-endian on every machine
            swapped = array("H" if geo.fat == 16 else "I", table)
            swapped.byteswap()
            raw = bytearray(swapped.tobytes())
    return bytes(raw.ljust(geo.fat_sectors * SECTOR, b"\0"))


def boot_sector(geo: Geometry, serial: int, label: str | None) -> bytes:
    """Sector 0 (and the FAT32 backup at sector 6): BPB, the type's extension, a boot stub
    that halts, and the 0x55AA signature."""
    sector = bytearray(SECTOR)
    small = geo.fat != 32 and geo.sectors < 0x10000
    BPB.pack_into(sector, 0, BS_jmpBoot=bytes((0xEB, BOOT_CODE_AT[geo.fat] - 2, 0x90)),
                  BS_OEMName=b"MSWIN4.1", BPB_BytsPerSec=SECTOR,
                  BPB_SecPerClus=geo.sectors_per_cluster, BPB_RsvdSecCnt=geo.reserved_sectors,
                  BPB_NumFATs=NUM_FATS, BPB_RootEntCnt=geo.root_entries,
                  BPB_TotSec16=geo.sectors if small else 0, BPB_Media=MEDIA_FIXED,
                  BPB_FATSz16=0 if geo.fat == 32 else geo.fat_sectors,
                  BPB_SecPerTrk=SECTORS_PER_TRACK, BPB_NumHeads=HEADS,
                  BPB_TotSec32=0 if small else geo.sectors)
    common = {"BS_DrvNum": DRIVE_HARD_DISK, "BS_BootSig": EXT_BOOT_SIG, "BS_VolID": serial,
              "BS_VolLab": (label or NO_LABEL).encode("ascii").ljust(LABEL_LEN),
              "BS_FilSysType": f"FAT{geo.fat}".encode("ascii").ljust(8)}
    if geo.fat == 32:
        BPB_FAT32.pack_into(sector, BPB.size, BPB_FATSz32=geo.fat_sectors, BPB_RootClus=2,
                            BPB_FSInfo=FSINFO_SECTORS[0], BPB_BkBootSec=FAT32_BACKUP_BOOT_SECTOR,
                            **common)
    else:
        BPB_FAT16.pack_into(sector, BPB.size, **common)
    at = BOOT_CODE_AT[geo.fat]
    sector[at:at + len(HALT_CODE)] = HALT_CODE
    BOOT_SIGNATURE.pack_into(sector, BOOT_SIGNATURE_OFFSET, Signature_word=BOOT_SIGNATURE_VALUE)
    return bytes(sector)


def fsinfo_sector(geo: Geometry, p: Plan) -> bytes:
    free = geo.clusters - (p.last_cluster - 1)
    next_free = p.last_cluster + 1 if free else FSINFO_UNKNOWN
    return FSINFO.pack(FSI_LeadSig=FSINFO_LEAD_SIG, FSI_StrucSig=FSINFO_STRUC_SIG,
                       FSI_Free_Count=free, FSI_Nxt_Free=next_free,
                       FSI_TrailSig=FSINFO_TRAIL_SIG)


def _write_image(out: Path, geo: Geometry, req: WriteRequest, c: Census,
                 store: ContentStore, progress: Progress) -> Plan:
    p = plan(c, geo, req.name)
    dos: dict[int, tuple[int, int]] = {}  # many entries share a time: convert each once
    times = []
    for entry in p.entries:
        seconds = entry.mtime_ns // 1_000_000_000
        if seconds not in dos:
            dos[seconds] = _pack_time(dos_time(seconds, req.epoch))
        times.append(dos[seconds])
    label = None if req.label is None else (
        req.label.upper().encode("ascii").ljust(LABEL_LEN),
        _pack_time(dos_time(req.epoch, req.epoch)))
    data_start = geo.metadata_bytes
    cs = geo.cluster_size

    def at_cluster(cluster: int) -> int:
        return data_start + (cluster - 2) * cs

    # unbuffered, every piece written where it goes with one pwrite: no seek, no flush
    with out.open("xb", buffering=0) as f:  # a new file, never an existing one
        fd = f.fileno()
        os.ftruncate(fd, geo.sectors * SECTOR)  # holes read as zeros: free space, slack
        boot = boot_sector(geo, volume_serial(req), req.label)
        _put(fd, 0, boot)
        if geo.fat == 32:
            info = fsinfo_sector(geo, p)
            _put(fd, FSINFO_SECTORS[0] * SECTOR, info)
            _put(fd, FAT32_BACKUP_BOOT_SECTOR * SECTOR, boot)
            _put(fd, FSINFO_SECTORS[1] * SECTOR, info)
        fat = fat_bytes(p, geo)
        for n in range(NUM_FATS):
            _put(fd, (geo.reserved_sectors + n * geo.fat_sectors) * SECTOR, fat)
        fixed_root = (geo.reserved_sectors + NUM_FATS * geo.fat_sectors) * SECTOR
        _put(fd, at_cluster(p.root_cluster) if geo.fat == 32 else fixed_root,
             directory_bytes(p, "/", times, label))
        for path, i in p.dir_index.items():
            _put(fd, at_cluster(p.first_cluster[i]), directory_bytes(p, path, times, label))
        _write_files(fd, p, store, progress, at_cluster, req.name)
    return p


def _put(fd: int, offset: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _write_files(fd: int, p: Plan, store: ContentStore, progress: Progress,
                 at_cluster: Callable[[int], int], name: str) -> None:
    """Each file's bytes at its first cluster, in entry order: one pass from start to end."""
    files = [i for i, e in enumerate(p.entries) if e.kind is Kind.FILE and e.size > 0]
    contents: list[Content] = [p.entries[i].content for i in files]  # type: ignore[misc]
    buffer = memoryview(bytearray(CHUNK))
    for i, (_, stream) in zip(files, store.stream_sorted(contents), strict=True):
        entry = p.entries[i]
        offset = at_cluster(p.first_cluster[i])
        left = entry.size
        while left:
            n = read_full(stream, buffer[:min(left, CHUNK)])
            if n == 0:
                raise ComposerError(f"{name}: {shown(entry.path)} ended {left} bytes before "
                                    f"its {entry.size}", hint="did the input change while "
                                    "the build ran? build again")
            _put(fd, offset, buffer[:n])
            offset += n
            left -= n
            progress(n)


def _extents(p: Plan, geo: Geometry) -> tuple[tuple[int, int], ...]:
    """The metadata area plus every allocated cluster: one range, as allocation is dense."""
    return ((0, geo.metadata_bytes + (p.last_cluster - 1) * geo.cluster_size),)
