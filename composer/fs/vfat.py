"""FAT12/16/32 images (`fs: vfat`), written through pyfatfs with every input pinned.

What a FAT image can and cannot carry:

- Only directories and regular files. Symlinks, hard links, device nodes, FIFOs and sockets are
  `check()` errors naming the path (put them on an ext4 partition).
- Owners, groups, permission bits and xattrs have no place in FAT; they are ignored without a
  message, because an ESP or boot partition legitimately comes from a tree owned by root with
  ordinary modes. Long names (VFAT LFN entries) and dotfiles are kept.
- Timestamps: FAT stores a local date and time with no zone and 2-second resolution. Every
  timestamp (created, modified, accessed, and the volume-label entry) is written from the UTC
  fields of the entry's mtime (the build epoch for the label), clamped to 1980-01-01..2107-12-31
  and to the build epoch. The clock and TZ never reach the image: see "Why pyfatfs" below.
- The volume ID is the first 4 bytes of `req.uuid` unless the option `volume_id` pins it; the
  label is `req.label` upper-cased (at most 11 characters of A-Z, 0-9, `_` and `-`).

Entries are written in sorted order, so the directory entry order and cluster allocation depend
on the content only.

Why pyfatfs, and how its clock is kept out (decided once, for issue 10): pyfatfs stays the
writer; composer does not carry a second FAT implementation. pyfatfs stamps every entry it creates
with the wall clock (`DosDateTime.now()`) and has no parameter for it, so after all entries exist
`_stamp_times()` rewrites the times of every directory entry -- each named entry, each "." and
"..", the volume label -- through pyfatfs's own public directory-entry objects and
`update_directory_entry()`, before the image is closed. Nothing of pyfatfs is patched and no
private attribute is read, so any number of vfat writes may run at once in one process. The
outputs of pyfatfs that the rest of this module relies on (geometry, the volume-label entry, the
FSInfo sector) are checked and fail as `ComposerError`s, not asserts. The tests judge the result
with fsck.vfat and mtools, never with pyfatfs.

Block map: pyfatfs does not report what it wrote, so `write()` computes the extents from the
finished file system instead of scanning for non-zero blocks: the whole metadata area (reserved
sectors, both FATs and the FAT12/16 root directory, mapped even where zero) plus every cluster
the FAT marks as allocated (whole clusters, so zero-filled file data and directory slack are
mapped too). Free clusters are holes.
"""

from __future__ import annotations

import calendar
import logging
import math
import re
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from composer.content import ContentStore, read_full
from composer.errors import ComposerError, shown
from composer.fs.base import (
    FsWriter,
    OptionSpec,
    OptionType,
    Progress,
    WriteRequest,
    WriteResult,
    merge_extents,
    no_progress,
)
from composer.fs.fat_layouts import (
    ATTR_VOLUME_ID,
    BPB,
    BPB_FAT32,
    FSINFO,
    FSINFO_LEAD_SIG,
)
from composer.fs.fat_layouts import DIR_ENTRY as DIR_STRUCT
from composer.structs import Struct
from composer.tree import Content, Entry, Kind, parent, sorted_entries
from composer.units import align_up

log = logging.getLogger(__name__)

SECTOR = 512
MIB = 1 << 20
CHUNK = 1 << 20  # a multiple of every cluster size, so pyfatfs never rewrites a partial cluster

# FAT dates count years from 1980 in 7 bits (Microsoft FAT spec, "Date Format")
DOS_EPOCH = calendar.timegm((1980, 1, 1, 0, 0, 0))  # 315532800
DOS_LAST = calendar.timegm((2107, 12, 31, 23, 59, 58))

# Cluster-count limits that decide the FAT type (Microsoft FAT spec, "FAT Type Determination")
FAT12_MAX_CLUSTERS = 4084
FAT16_MAX_CLUSTERS = 65524
MAX_FILE_SIZE = (1 << 32) - 1
NUM_FATS = 2
# FAT12 entries 0 and 1 share bytes 0-2; bytes 1-2 = FF FF make FAT[1] = 0xFFF (end of chain)
FAT12_ENTRY1_EOC = b"\xff\xff"
DIR_ENTRY = DIR_STRUCT.size  # bytes per directory entry
LFN_CHARS = 13  # UTF-16 code units per long-name entry
MAX_NAME_UNITS = 255
# pyfatfs (FATDirectoryEntry.make_lfn_entry) refuses an encoded UTF-16 name over 255 *bytes*
PYFATFS_NAME_UNITS = 127
LABEL_LEN = 11
LABEL_RE = re.compile(r"[A-Z0-9_-]{1,11}")
# characters a long name may not hold (Microsoft FAT spec, "Long Directory Entries")
BAD_NAME_CHARS = frozenset('"*/:<>?\\|') | frozenset(chr(c) for c in range(0x20))

# pyfatfs 1.1.0 `PyFat.mkfs` sectors-per-cluster table: (largest sector count, sectors per
# cluster); 0 means "too small for this type". Mirrored so check() can refuse what mkfs would.
_SPC_TABLE: dict[int, tuple[tuple[int, int], ...]] = {
    12: ((4084, 1), (8168, 2), (16336, 4), (32672, 8), (65344, 16), (130688, 32),
         (261376, 64), (522752, 128)),
    16: ((8400, 0), (32680, 2), (262144, 4), (524288, 8), (1048576, 16), (2097152, 32),
         (4194304, 64)),
    32: ((66600, 0), (532480, 1), (16777216, 8), (33554432, 16), (67108864, 32)),
}
ROOT_ENTRIES = {12: 224, 16: 512, 32: 0}  # pyfatfs mkfs: fixed root directory entries
FAT16_MIN_SIZE = (8400 + 1) * SECTOR  # the smallest FAT16 pyfatfs formats
FAT32_MIN_SIZE = (66600 + 1) * SECTOR
FAT32_AUTO_FROM = 512 * MIB  # like mkfs.fat: FAT32 from 512 MiB up, FAT16 below
AUTO_SLACK = 0.10  # auto size: content + metadata + 10%

# BPB_SecPerTrk and BPB_NumHeads: pyfatfs leaves them at 0, which mtools refuses ("zero number
# of heads or sectors")
SECTORS_PER_TRACK = 63  # the 255x63 geometry sfdisk uses for images (docs/flashing.md §6)
HEADS = 255
FAT32_BACKUP_BOOT_SECTOR = 6
# FSInfo sector (FAT32): free count and next-free hint, which pyfatfs never updates
FSINFO_SECTORS = (1, 7)


@dataclass(frozen=True, slots=True)
class Geometry:
    """The layout pyfatfs's mkfs gives a FAT of one type and size."""

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
    """What pyfatfs 1.1.0 would lay out, or None when it cannot format this type at this size."""
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
    return len(name.encode("utf-16-le")) // 2


def _dir_slots(name: str) -> int:
    """Directory entries a name takes: the 8.3 entry plus (at most) its long-name entries."""
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
        errors = self._check_options(req) + self._check_label(req) + self._check_entries(req)
        if errors:
            return errors
        if req.size is None:
            try:
                self.resolve_size(req)
            except ComposerError as exc:
                return [exc]
            return []
        return self._check_size(req, req.size)

    def resolve_size(self, req: WriteRequest) -> int:
        if req.size is not None:
            return req.size
        fat = req.options.get("fat")
        size = {None: FAT16_MIN_SIZE, 12: 0, 16: FAT16_MIN_SIZE, 32: FAT32_MIN_SIZE}[fat]
        size = max(MIB, align_up(size, MIB))
        entries = with_parents(req.entries, req.epoch)
        root_slots = _children_slots(entries)["/"]
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
                need = _clusters_needed(entries, geo)
                if need * (1 + AUTO_SLACK) <= geo.clusters and _root_fits(entries, geo):
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
        out.touch(exist_ok=False)  # mkfs opens with "rb+": the file must exist
        _mkfs(out, geo, size, req)
        _fix_label_entry(out, geo, req)
        extents = _fill(out, geo, req, store, progress)
        _patch_metadata(out, geo, req.name)
        return WriteResult(size, extents)

    # -- checks ---------------------------------------------------------------------------

    def _geometry_or_raise(self, req: WriteRequest, size: int) -> Geometry:
        errors = self._check_size(req, size)
        if errors:
            raise errors[0]
        geo = geometry(req.options.get("fat") or auto_fat(size), size)
        if geo is None:  # _check_size said it fits: the two disagree
            raise _pyfatfs_broke(req.name, f"no FAT{req.options.get('fat')} geometry for {size} "
                                 "bytes")
        return geo

    @staticmethod
    def _check_options(req: WriteRequest) -> list[ComposerError]:
        pinned = req.options.get("volume_id")
        if pinned is None:
            return []
        if not re.fullmatch(r"[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}", str(pinned)):
            return [ComposerError(f"{req.name}: volume_id {pinned!r} is not 8 hex digits",
                                  loc=req.loc, hint='write it like "1234ABCD" or "1234-ABCD"')]
        if volume_serial(req) == 0:
            # pyfatfs takes 0 as "not given" and derives one from the clock
            return [ComposerError(f"{req.name}: volume_id 00000000 cannot be used", loc=req.loc,
                                  hint="pick any other value")]
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
    def _check_entries(req: WriteRequest) -> list[ComposerError]:
        errors: list[ComposerError] = []
        seen: dict[tuple[str, str], str] = {}
        # with_parents: a folder only implied by a path needs a name FAT can hold too
        for entry in with_parents(req.entries, req.epoch):
            if entry.path == "/":
                continue
            problem = _entry_problem(entry)
            if problem is None:
                # FAT compares names case-insensitively: "A" and "a" would be one file
                key = (parent(entry.path).upper(), _basename(entry.path).upper())
                other = seen.setdefault(key, entry.path)
                if other != entry.path:
                    problem = f"{entry.path} and {other} differ only in case, which FAT ignores"
            if problem is not None:
                hint = ("put it on an ext4 partition" if entry.kind not in (Kind.FILE, Kind.DIR)
                        else None)
                errors.append(ComposerError(f"{req.name}: {problem}", loc=req.loc, hint=hint))
        return errors

    @staticmethod
    def _check_size(req: WriteRequest, size: int) -> list[ComposerError]:
        fat = req.options.get("fat") or auto_fat(size)

        def err(message: str, hint: str) -> list[ComposerError]:
            return [ComposerError(f"{req.name}: {message}", loc=req.loc, hint=hint)]

        if size % SECTOR:
            return err(f"size {size} is not a multiple of {SECTOR} bytes",
                       "use a size in MiB")
        geo = geometry(fat, size)
        if geo is None:
            low, high = _size_range(fat)
            return err(f"pyfatfs cannot format FAT{fat} at {size} bytes; FAT{fat} needs "
                       f"{low} to {high} bytes",
                       "change the size, or the `fat:` option (12, 16 or 32)")
        entries = with_parents(req.entries, req.epoch)
        need = _clusters_needed(entries, geo)
        if need > geo.clusters:
            return err(f"content needs {need} clusters of {geo.cluster_size} bytes but the "
                       f"FAT{fat} file system has {geo.clusters}",
                       "make the partition bigger, or use size: auto")
        if not _root_fits(entries, geo):
            return err(f"the root directory needs more than the {geo.root_entries} entries "
                       f"FAT{fat} has room for",
                       "use `fat: 32`, or move files into a subdirectory")
        return []


def _size_range(fat: int) -> tuple[int, int]:
    """The smallest and largest sizes (bytes) pyfatfs can format as this FAT type."""
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
    if any(0xD800 <= ord(c) < 0xE000 for c in name):
        # bytes that are not UTF-8 (carried as lone surrogates: composer/sources) have no
        # UTF-16 form for a long-name entry
        return (f"{shown(entry.path)}: the name is not valid UTF-8, and FAT stores names as "
                "UTF-16 text")
    if any(c in BAD_NAME_CHARS for c in name):
        return f"{entry.path}: the name holds a character FAT forbids (\"*/:<>?\\| or control)"
    if name.endswith((".", " ")):
        return f"{entry.path}: FAT names cannot end with a dot or a space"
    if _name_units(name) > PYFATFS_NAME_UNITS:
        return (f"{entry.path}: the name is {_name_units(name)} UTF-16 units long; FAT allows "
                f"{MAX_NAME_UNITS} but pyfatfs, which writes it, at most {PYFATFS_NAME_UNITS}")
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


def _children_slots(entries: Sequence[Entry]) -> dict[str, int]:
    """Directory entries each directory needs, by directory path (including '.' and '..')."""
    slots: dict[str, int] = {"/": 1}  # the root holds the volume-label entry
    for entry in entries:
        if entry.path == "/":
            continue
        slots[parent(entry.path)] = slots.get(parent(entry.path), 2) + _dir_slots(
            _basename(entry.path))
        if entry.kind is Kind.DIR:
            slots.setdefault(entry.path, 2)
    return slots


def _clusters_needed(entries: Sequence[Entry], geo: Geometry) -> int:
    """Clusters the entries take: file data plus directories (upper bound on long names)."""
    cs = geo.cluster_size
    need = sum(-(-e.size // cs) for e in entries if e.kind is Kind.FILE)
    for path, count in _children_slots(entries).items():
        if path == "/" and geo.fat != 32:
            continue  # FAT12/16 keep the root directory in the metadata area
        need += max(1, -(-count * DIR_ENTRY // cs))
    return need


def _root_fits(entries: Sequence[Entry], geo: Geometry) -> bool:
    return geo.fat == 32 or _children_slots(entries)["/"] <= geo.root_entries


# ---------------------------------------------------------------------------------------------
# pyfatfs, then its times replaced


def _pyfatfs_broke(name: str, what: str) -> ComposerError:
    """pyfatfs did something this module does not expect: never ship that image."""
    return ComposerError(f"{name}: pyfatfs wrote an unexpected FAT ({what})",
                         hint="this pyfatfs version is not supported; report it with the "
                         "pyfatfs version (`pip show pyfatfs`)")


def _mkfs(out: Path, geo: Geometry, size: int, req: WriteRequest) -> None:
    from pyfatfs.PyFat import PyFat

    fat_type = {12: PyFat.FAT_TYPE_FAT12, 16: PyFat.FAT_TYPE_FAT16,
                32: PyFat.FAT_TYPE_FAT32}[geo.fat]
    pf = PyFat()
    try:
        pf.mkfs(str(out), fat_type, size=size, label=(req.label or "NO NAME").upper(),
                volume_id=volume_serial(req) or 1)  # 1: pyfatfs would read the clock for 0
    finally:
        pf.close()


def _fix_label_entry(out: Path, geo: Geometry, req: WriteRequest) -> None:
    """Make the root directory's volume-label entry agree with the boot sector, as fsck.fat wants.

    pyfatfs names that entry through its 8.3 short-name generator, which cuts a label to 8
    characters ("BOOT-PART1" becomes "BOOT-PAR") and makes "NO NAME" into "NONAME"; fsck.fat then
    reports the two labels as different. With a label the entry gets the label's 11 bytes; without
    one it is removed (mkfs.fat writes no entry), before any file takes a slot after it.
    """
    with out.open("r+b") as f:
        if geo.fat == 32:
            f.seek(BPB.size)
            cluster = BPB_FAT32.unpack(f.read(BPB_FAT32.size))["BPB_RootClus"]
            root = geo.metadata_bytes + (cluster - 2) * geo.cluster_size
        else:
            root = (geo.reserved_sectors + NUM_FATS * geo.fat_sectors) * SECTOR
        f.seek(root)
        entry = DIR_STRUCT.unpack(f.read(DIR_ENTRY))
        if entry["DIR_Attr"] != ATTR_VOLUME_ID:
            raise _pyfatfs_broke(req.name, "no volume-label entry first in the root directory")
        f.seek(root)
        if req.label is None:
            f.write(bytes(DIR_ENTRY))  # a free slot that ends the directory
        else:
            f.write(req.label.upper().encode("ascii").ljust(LABEL_LEN))


def _fill(out: Path, geo: Geometry, req: WriteRequest, store: ContentStore,
          progress: Progress) -> tuple[tuple[int, int], ...]:
    """Create every entry in sorted order, set its times, and return the extents of the
    finished image."""
    from pyfatfs.PyFatFS import PyFatFS

    entries = with_parents(req.entries, req.epoch)
    files = [e for e in entries if e.kind is Kind.FILE and e.size > 0]
    contents: list[Content] = [e.content for e in files if e.content is not None]
    data = iter(store.stream_sorted(contents))
    fs = PyFatFS(str(out), utc=True, preserve_case=True, lazy_load=False)
    try:
        for entry in entries:
            if entry.kind is Kind.DIR:
                fs.makedir(entry.path)
            else:
                stream = next(data)[1] if entry.size > 0 else None
                _write_file(fs, entry.path, stream, progress)
        times = {e.path: dos_time(e.mtime_ns // 1_000_000_000, req.epoch) for e in entries}
        _stamp_times(fs.fs, times, dos_time(req.epoch, req.epoch), req.name)
        _same_geometry(fs.fs, geo, req.name)
        return _extents(fs.fs, geo)
    finally:
        fs.close()


def _write_file(fs: object, path: str, stream: BinaryIO | None, progress: Progress) -> None:
    with fs.openbin(path, "w") as f:  # type: ignore[attr-defined]
        if stream is None:
            return
        buffer = memoryview(bytearray(CHUNK))
        while n := read_full(stream, buffer):
            f.write(bytes(buffer[:n]))  # whole CHUNKs but the last: see CHUNK
            progress(n)


def _stamp_times(pf: Any, times: Mapping[str, DosTime], label_time: DosTime, name: str) -> None:
    """Give every directory entry pyfatfs wrote its pinned time instead of the wall clock's.

    Named entries get their own time; "." its directory's; ".." its parent's, or zero when the
    parent is the root, which has no entry of its own (what pyfatfs copies there); the volume
    label the build epoch's. Each directory is then written once more, through pyfatfs.
    """
    pending = [("/", pf.root_dir)]
    while pending:
        path, dentry = pending.pop()
        dirs, files, specials = dentry.get_entries()
        for child in specials:
            if child.is_volume_id():
                _stamp(child, label_time)
            elif child.get_short_name() == ".":
                _stamp(child, times[path])
            else:  # ".."
                _stamp(child, times.get(parent(path)))
        for child in (*files, *dirs):
            child_path = _child_path(path, child)
            if child_path not in times:
                raise _pyfatfs_broke(name, f"an entry {shown(child_path)} that was not written")
            _stamp(child, times[child_path])
            if child.is_directory():
                pending.append((child_path, child))
        pf.update_directory_entry(dentry)


def _child_path(folder: str, dentry: Any) -> str:
    name = dentry.get_long_name() if dentry.lfn_entry is not None else dentry.get_short_name()
    return f"{folder.rstrip('/')}/{name}"


def _stamp(dentry: Any, when: DosTime | None) -> None:
    """Set created, modified and accessed of one pyfatfs directory entry (None: all zero)."""
    if when is None:
        date = clock = 0
    else:
        year, month, day, hour, minute, second = when
        date = (year - 1980) << 9 | month << 5 | day  # Microsoft FAT spec, "Date Format"
        clock = hour << 11 | minute << 5 | second // 2  # "Time Format": 2-second units
    dentry.crtdate = dentry.wrtdate = dentry.lstaccessdate = date
    dentry.crttime = dentry.wrttime = clock


def _same_geometry(pf: Any, geo: Geometry, name: str) -> None:
    """Fail loudly if pyfatfs laid the file system out otherwise than `geometry()` predicted."""
    bpb = pf.bpb_header
    fat_sectors = bpb["BPB_FATSz16"] or bpb["BPB_FATSz32"]  # FAT12/16, else FAT32
    got = (bpb["BPB_SecPerClus"], bpb["BPB_RsvdSecCnt"], fat_sectors, bpb["BPB_RootEntCnt"])
    want = (geo.sectors_per_cluster, geo.reserved_sectors, geo.fat_sectors, geo.root_entries)
    if got != want:
        raise _pyfatfs_broke(name, f"geometry {got} differs from the predicted {want}")


def _extents(pf: object, geo: Geometry) -> tuple[tuple[int, int], ...]:
    """Metadata area plus every allocated cluster, read from pyfatfs's own FAT."""
    fat: list[int] = pf.fat  # type: ignore[attr-defined]
    last = geo.clusters + 1  # data clusters are numbered 2 .. clusters + 1
    used = [i for i in range(2, len(fat)) if fat[i] != 0]
    if used and used[-1] > last:
        # pyfatfs bounds allocation by the FAT's length, not the data area's: never ship that
        raise ComposerError(f"the FAT file system overflowed (cluster {used[-1]} > {last})",
                            hint="make the partition bigger")
    extents = [(0, geo.metadata_bytes)]
    extents += [(geo.metadata_bytes + (i - 2) * geo.cluster_size, geo.cluster_size) for i in used]
    return merge_extents(extents)


def _patch_metadata(out: Path, geo: Geometry, name: str) -> None:
    """Fix what pyfatfs leaves wrong: CHS geometry, the FAT12 FAT[1] and the FAT32 FSInfo."""
    with out.open("r+b") as f:
        if geo.fat == 12:
            for n in range(NUM_FATS):
                # FAT[1] must be an end-of-chain mark: mtools refuses pyfatfs's 0xFF0
                f.seek((geo.reserved_sectors + n * geo.fat_sectors) * SECTOR + 1)
                f.write(FAT12_ENTRY1_EOC)
        boot_sectors = [0] + ([FAT32_BACKUP_BOOT_SECTOR] if geo.fat == 32 else [])
        for sector in boot_sectors:
            _patch_sector(f, sector, BPB, BPB_SecPerTrk=SECTORS_PER_TRACK, BPB_NumHeads=HEADS)
        if geo.fat == 32:
            free, next_free = _fat32_free(f, geo)
            for sector in FSINFO_SECTORS:
                f.seek(sector * SECTOR)
                if FSINFO.unpack(f.read(FSINFO.size))["FSI_LeadSig"] != FSINFO_LEAD_SIG:
                    raise _pyfatfs_broke(name, f"no FSInfo sector at sector {sector}")
                _patch_sector(f, sector, FSINFO, FSI_Free_Count=free, FSI_Nxt_Free=next_free)


def _patch_sector(f: BinaryIO, sector: int, layout: Struct, **fields: int) -> None:
    """Set the named fields of the structure at the start of `sector`, and nothing else."""
    f.seek(sector * SECTOR)
    data = bytearray(f.read(layout.size))
    for field, value in fields.items():
        layout.patch(data, 0, field, value)
    f.seek(sector * SECTOR)
    f.write(data)


def _fat32_free(f: BinaryIO, geo: Geometry) -> tuple[int, int]:
    """(free clusters, first free cluster) read from the first FAT."""
    f.seek(geo.reserved_sectors * SECTOR)
    raw = f.read((geo.clusters + 2) * 4)
    entries = struct.unpack(f"<{geo.clusters + 2}I", raw)
    free = [i for i in range(2, geo.clusters + 2) if entries[i] & 0x0FFFFFFF == 0]
    return len(free), (free[0] if free else 0xFFFFFFFF)
