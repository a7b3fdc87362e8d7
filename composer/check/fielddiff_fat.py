"""Field-level differences between two FAT file systems: the boot sector's BPB (and its FAT12/16
or FAT32 extension, the FAT32 FSInfo and backup boot sector), the FATs by cluster, directory
entries by path, and file data by path, through the declarations in composer/fs/fat_layouts.py.

Where each sector lies is A's boot sector's geometry; which file or folder owns a cluster is
learnt, only when a differing cluster needs it, from one walk of A's folders and FAT chains.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

from composer.check.fielddiff import (
    MAX_CHANGES,
    FieldChange,
    Progress,
    Region,
    byte_range,
    decode_runs,
    differing_runs,
    mark_following,
    struct_changes,
    text_field,
)
from composer.errors import ComposerError
from composer.fs.fat_layouts import (
    ATTR_DIRECTORY,
    ATTR_LONG_NAME,
    ATTR_VOLUME_ID,
    BPB,
    BPB_FAT16,
    BPB_FAT32,
    DIR_ENTRY,
    FSINFO,
    LFN_ENTRY,
)
from composer.fs.vfat_reader import cased_short_name

FAT12_MAX_CLUSTERS = 4084  # Microsoft FAT specification §3.5: the type follows the count
FAT16_MAX_CLUSTERS = 65524
SLOT = DIR_ENTRY.size
FREE_SLOT, DELETED_SLOT = 0x00, 0xE5
MAX_CHAIN = 1 << 24  # clusters a chain may have before it is taken for a loop
_SHOW = {"BS_VolID": lambda v: f"{v >> 16:04X}-{v & 0xFFFF:04X}", "BS_VolLab": text_field,
         "BS_OEMName": text_field, "BS_FilSysType": text_field, "DIR_Name": text_field}


def diff_fat(a: Region, b: Region, name: str, progress: Progress | None = None,
             base: int = 0, total: int | None = None) -> list[FieldChange]:
    differ = _FatDiffer(a, b, name)
    changes = decode_runs(differing_runs(a, b, differ.bps, progress, base, total),
                          differ.bps, differ.run)
    return mark_following(changes, _cause_of)


class _FatDiffer:
    def __init__(self, a: Region, b: Region, name: str) -> None:
        self.a, self.b, self.name = a, b, name
        boot = a.read(0, BPB.size + BPB_FAT32.size)
        bpb = BPB.unpack(boot)
        self.bps = bpb["BPB_BytsPerSec"]
        if self.bps not in (512, 1024, 2048, 4096) or not bpb["BPB_SecPerClus"]:
            raise ComposerError(f"{name}: FAT boot sector BPB_BytsPerSec {self.bps} or "
                                f"BPB_SecPerClus {bpb['BPB_SecPerClus']} is not FAT's")
        self.fat32 = bpb["BPB_FATSz16"] == 0
        ext = BPB_FAT32.unpack(boot, BPB.size) if self.fat32 else None
        self.fat_sectors = ext["BPB_FATSz32"] if ext else bpb["BPB_FATSz16"]
        self.fat_start = bpb["BPB_RsvdSecCnt"]
        self.fats = bpb["BPB_NumFATs"]
        self.root_start = self.fat_start + self.fats * self.fat_sectors
        root_sectors = -(-bpb["BPB_RootEntCnt"] * SLOT // self.bps)
        self.data_start = self.root_start + root_sectors
        self.spc = bpb["BPB_SecPerClus"]
        total = bpb["BPB_TotSec16"] or bpb["BPB_TotSec32"]
        clusters = max(0, (total - self.data_start) // self.spc)
        self.width = 4 if clusters > FAT16_MAX_CLUSTERS else 2 if \
            clusters > FAT12_MAX_CLUSTERS else 1.5
        self.root_cluster = ext["BPB_RootClus"] if ext else 0
        self.fsinfo = ext["BPB_FSInfo"] if ext else None
        self.backup = ext["BPB_BkBootSec"] if ext else None

    # --------------------------------------------------------------------------- areas

    def run(self, first: int, last: int) -> list[FieldChange]:
        changes: list[FieldChange] = []
        sector = first
        while sector <= last:
            end, found = self._area(sector, last + 1)
            changes += found
            sector = end
        return changes

    def _area(self, sector: int, stop: int) -> tuple[int, list[FieldChange]]:
        """(the first sector after the area `sector` is in, the changes there up to stop)."""
        if sector < self.fat_start:
            return sector + 1, self._reserved(sector)
        if sector < self.root_start:
            fat, index = divmod(sector - self.fat_start, self.fat_sectors)
            end = min(stop, self.fat_start + (fat + 1) * self.fat_sectors)
            return end, self._fat(fat, index, index + end - sector)
        if sector < self.data_start:
            end = min(stop, self.data_start)
            return end, self._dir_slots("/", sector * self.bps, end * self.bps)
        cluster = (sector - self.data_start) // self.spc + 2
        end = min(stop, self.data_start + (cluster - 1) * self.spc)
        owner = self.owners.get(cluster)
        span = (sector * self.bps, end * self.bps)
        if owner is None:
            return end, [byte_range(*span, f"unallocated cluster {cluster}")]
        path, is_dir = owner
        if is_dir:
            return end, self._dir_slots(path, *span)
        return end, [byte_range(*span, f"file data of {path} (cluster {cluster})")]

    def _sector(self, sector: int) -> tuple[bytes, bytes]:
        return self.a.read(sector * self.bps, self.bps), self.b.read(sector * self.bps, self.bps)

    def _reserved(self, sector: int) -> list[FieldChange]:
        x, y = self._sector(sector)
        if sector in (0, self.backup):
            label = "boot sector" if sector == 0 else "backup boot sector"
            ext = BPB_FAT32 if self.fat32 else BPB_FAT16
            found = struct_changes(BPB, label, x, y, 0, _show) + \
                struct_changes(ext, label, x, y, BPB.size, _show)
            rest = BPB.size + ext.size
            if x[rest:] != y[rest:]:
                found.append(byte_range(sector * self.bps + rest, (sector + 1) * self.bps,
                                        f"boot code and signature of the {label}"))
            return found
        if self.fsinfo and sector in (self.fsinfo, (self.backup or 0) + self.fsinfo):
            label = "FSInfo" if sector == self.fsinfo else "backup FSInfo"
            return struct_changes(FSINFO, label, x, y)
        return [byte_range(sector * self.bps, (sector + 1) * self.bps, "reserved sectors")]

    def _fat(self, fat: int, first: int, end: int) -> list[FieldChange]:
        """FAT number `fat` (0-based), its sectors first..end-1: the cluster entries that
        differ, each with its value in A and B."""
        at = (self.fat_start + fat * self.fat_sectors) * self.bps
        x = self.a.read(at + first * self.bps, (end - first) * self.bps)
        y = self.b.read(at + first * self.bps, (end - first) * self.bps)
        found = []
        lo = int(first * self.bps / self.width)
        hi = int(end * self.bps / self.width)
        for cluster in range(lo, hi + 1):
            va = self._entry(self.a, at, cluster)
            vb = self._entry(self.b, at, cluster)
            if va != vb:
                found.append(FieldChange(f"FAT {fat + 1}", f"cluster {cluster}", va, vb))
                if len(found) >= MAX_CHANGES:
                    break
        if not found and x != y:
            found.append(byte_range(at + first * self.bps, at + end * self.bps,
                                    f"FAT {fat + 1}: bytes in no cluster's entry"))
        return found

    def _entry(self, r: Region, fat_at: int, cluster: int) -> int:
        if self.width == 1.5:
            raw = int.from_bytes(r.read(fat_at + cluster * 3 // 2, 2), "little")
            return raw >> 4 if cluster & 1 else raw & 0xFFF
        width = int(self.width)
        value = int.from_bytes(r.read(fat_at + cluster * width, width), "little")
        return value & 0x0FFFFFFF if width == 4 else value

    # ----------------------------------------------------------------------- directories

    @cached_property
    def owners(self) -> dict[int, tuple[str, bool]]:
        """cluster -> (path, is a folder) for every cluster A's files and folders hold."""
        found: dict[int, tuple[str, bool]] = {}
        stack: list[tuple[str, list[int] | None]] = [
            ("/", self._chain(self.root_cluster) if self.fat32 else None)]
        while stack:
            path, chain = stack.pop()
            if chain is not None:
                for cluster in chain:
                    found[cluster] = (path, True)
            for name, entry in self._entries(path, chain):
                start = entry["DIR_FstClusLO"] | entry["DIR_FstClusHI"] << 16
                if start < 2 or start in found:
                    continue
                child = (path.rstrip("/") + "/" + name)
                if entry["DIR_Attr"] & ATTR_DIRECTORY:
                    stack.append((child, self._chain(start)))
                else:
                    for cluster in self._chain(start):
                        found[cluster] = (child, False)
        return found

    def _chain(self, start: int) -> list[int]:
        fat_at = self.fat_start * self.bps
        end_mark = {1.5: 0xFF8, 2: 0xFFF8, 4: 0x0FFFFFF8}[self.width]
        chain, cluster, seen = [], start, set()
        while 2 <= cluster < end_mark and cluster not in seen and len(chain) < MAX_CHAIN:
            seen.add(cluster)
            chain.append(cluster)
            cluster = self._entry(self.a, fat_at, cluster)
        return chain

    def _entries(self, path: str, chain: list[int] | None) -> Iterator[tuple[str, dict]]:
        """(name, short entry fields) of each live entry of A's folder, but . and .."""
        spans = [(self.root_start * self.bps, self.data_start * self.bps)] if chain is None \
            else [self._cluster_span(c) for c in chain]
        for start, end in spans:
            data = self.a.read(start, end - start)
            for _slot, name, entry in _named_slots(data):
                if entry is not None and name not in (".", "..") and \
                        not entry["DIR_Attr"] & ATTR_VOLUME_ID:
                    yield name, entry

    def _cluster_span(self, cluster: int) -> tuple[int, int]:
        start = (self.data_start + (cluster - 2) * self.spc) * self.bps
        return start, start + self.spc * self.bps

    def _dir_slots(self, folder: str, start: int, end: int) -> list[FieldChange]:
        """The 32-byte entries of a folder's bytes [start, end) that differ, by path."""
        x, y = self.a.read(start, end - start), self.b.read(start, end - start)
        names = {slot: name for slot, name, _ in _named_slots(x)}
        found = []
        for slot in range(len(x) // SLOT):
            sx, sy = x[slot * SLOT:(slot + 1) * SLOT], y[slot * SLOT:(slot + 1) * SLOT]
            if sx == sy:
                continue
            long_name = sx[11] == ATTR_LONG_NAME or sy[11] == ATTR_LONG_NAME
            name = names.get(slot)
            where = (f"directory entry {folder.rstrip('/')}/{name}" if name else
                     f"free directory slot {slot} of {folder}")
            if sx[11] & ATTR_VOLUME_ID and not long_name and sx[0] not in (FREE_SLOT,
                                                                         DELETED_SLOT):
                where = "volume label entry"
            if long_name:
                found += struct_changes(LFN_ENTRY, f"{where} (long name)", sx, sy)
            else:
                found += struct_changes(DIR_ENTRY, where, sx, sy, 0, _show)
        return found


def _named_slots(data: bytes) -> Iterator[tuple[int, str, dict | None]]:
    """(slot, name, short entry or None for a long-name slot) of each used slot: a long
    name's slots carry the name of the short entry they end at."""
    pending: list[int] = []
    parts: list[str] = []
    for slot in range(len(data) // SLOT):
        raw = data[slot * SLOT:(slot + 1) * SLOT]
        if raw[0] == FREE_SLOT:
            return
        if raw[0] == DELETED_SLOT:
            pending, parts = [], []
            continue
        if raw[11] == ATTR_LONG_NAME:
            e = LFN_ENTRY.unpack(raw)
            text = (e["LDIR_Name1"] + e["LDIR_Name2"] + e["LDIR_Name3"]).decode(
                "utf-16-le", "replace")
            parts.insert(0, text.split("\0", 1)[0])
            pending.append(slot)
            continue
        entry = DIR_ENTRY.unpack(raw)
        name = "".join(parts) if parts else _short_name(entry["DIR_Name"], entry["DIR_NTRes"])
        for p in pending:
            yield p, name, None
        pending, parts = [], []
        yield slot, name, entry


def _short_name(raw: bytes, ntres: int) -> str:
    """As the entries are read (composer/fs/vfat_reader.py): in the case DIR_NTRes gives."""
    base, ext = raw[:8].rstrip(b" "), raw[8:].rstrip(b" ")
    return cased_short_name(base.decode("latin-1"), ext.decode("latin-1"), ntres)


def _show(name: str, value: object) -> object:
    look = _SHOW.get(name)
    return look(value) if look is not None else value


def _cause_of(change: FieldChange, by_key: dict[str, FieldChange]) -> str | None:
    structure, field = change.structure, change.field
    for backup, primary in (("backup boot sector", "boot sector"), ("backup FSInfo", "FSInfo")):
        if structure == backup and f"{primary} {field}" in by_key:
            return f"{primary} {field}"
    if structure.startswith("FAT ") and structure != "FAT 1" and \
            f"FAT 1 {field}" in by_key:
        return f"FAT 1 {field}"
    return None
