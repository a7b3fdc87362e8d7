"""Field-level differences between two ext4 file systems (`compose diff` on images).

Both are compared block by block; a block that differs is named by what A's metadata says it
is: the superblock or a backup of it, a group descriptor block, a bitmap, an inode table block
(each differing inode decoded field by field), or a block some inode owns (a directory block,
an extent tree block, an xattr block, the journal, file data), else an unallocated block. Which
inode owns what is learnt, only when a differing block needs it, from one walk of the tree
(composer/fs/ext4/reader.py): memory grows with the number of extents, not the image's size.
"""

from __future__ import annotations

import struct
import uuid
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from composer.check.fielddiff import (
    FieldChange,
    Progress,
    Region,
    byte_range,
    decode_runs,
    differing_runs,
    mark_following,
    narrowed,
    struct_changes,
    text_field,
    uuid_be,
)
from composer.errors import ComposerError, shown
from composer.fs.ext4 import constants as c
from composer.fs.ext4.geometry import has_super
from composer.fs.ext4.layouts import (
    DIR_ENTRY,
    DIR_TAIL,
    DX_ENTRY,
    DX_NODE,
    DX_ROOT,
    DX_TAIL,
    EXTENT,
    EXTENT_HEADER,
    EXTENT_INDEX,
    EXTENT_TAIL,
    GROUP_DESC,
    INODE,
    JOURNAL_SUPERBLOCK,
    SUPERBLOCK,
    XATTR_BLOCK_HEADER,
)
from composer.fs.ext4.planner import hash_seed_of
from composer.fs.ext4.reader import Ext4Reader
from composer.tree import Kind

SUPERBLOCK_NAME = "ext4 superblock"
DIR_TAIL_FT = 0xDE  # det_reserved_ft of the checksum tail
INCOMPAT_CSUM_SEED = 0x2000  # metadata_csum_seed: the seed is s_checksum_seed, not the UUID
# the fields that are checksums over other bytes: they change when those do
CHECKSUM_FIELDS = frozenset({
    "s_checksum", "bg_checksum", "bg_block_bitmap_csum_lo", "bg_block_bitmap_csum_hi",
    "bg_inode_bitmap_csum_lo", "bg_inode_bitmap_csum_hi", "l_i_checksum_lo", "i_checksum_hi",
    "det_checksum", "dt_checksum", "et_checksum", "h_checksum"})
_SHOW = {"s_uuid": uuid_be, "s_journal_uuid": uuid_be, "s_volume_name": text_field,
         "s_last_mounted": text_field}


@dataclass(frozen=True, slots=True)
class _Area:
    """A run of blocks [start, end) with one meaning."""

    start: int
    end: int
    kind: str  # "superblock", "gdt", "reserved gdt", "block bitmap", "inode bitmap",
    #            "inode table", "data", "dir", "extent", "xattr", "journal"
    group: int = 0  # the group (metadata) or the owning inode (owned blocks)
    logical: int = 0  # the first block's number inside its owner (file, directory, table)


def diff_ext4(a: Region, b: Region, name: str,
              progress: Progress | None = None, base: int = 0,
              total: int | None = None) -> list[FieldChange]:
    """What differs between the ext4 file systems in a and b, by structure and field."""
    ra = Ext4Reader(a.f, f"{name} (A)", a.offset, a.length)
    rb = Ext4Reader(b.f, f"{name} (B)", b.offset, b.length)
    differ = _Ext4Differ(ra, rb, a, b)
    changes = decode_runs(differing_runs(a, b, ra.block_size, progress, base, total),
                          ra.block_size, differ.run)
    return mark_following(changes, differ.cause_of)


class _Owners:
    """Which inode owns which block of one file system, and each inode's first path: learnt
    from one walk of its tree, made the first time a block outside the fixed metadata is
    looked up."""

    def __init__(self, reader: Ext4Reader) -> None:
        self.reader = reader

    @cached_property
    def owned(self) -> list[_Area]:
        """The blocks each inode in use owns, from one walk of the tree."""
        areas: list[_Area] = []
        for number in self._inodes_in_use():
            inode = self.reader.inode(number)
            kind = "journal" if number == self.reader.sb["s_journal_inum"] else \
                "dir" if inode.kind is Kind.DIR else "data"
            if inode.file_acl:
                areas.append(_Area(inode.file_acl, inode.file_acl + 1, "xattr", number))
            if inode.kind is Kind.SYMLINK and inode.size < 60 and \
                    not inode.flags & c.EXTENTS_FL:
                continue  # a fast symlink: its target is in i_block
            tree: set[int] = set()
            for logical, length, start in self.reader.extents(inode, tree):
                if start is not None:
                    areas.append(_Area(start, start + length, kind, number, logical))
            areas += [_Area(t, t + 1, "extent", number) for t in tree]
        return sorted(areas, key=lambda x: x.start)

    @cached_property
    def paths(self) -> dict[int, str]:
        """inode number -> its first path (hard links: the first in walk order)."""
        found: dict[int, str] = {}
        for entry in self.reader.entries():
            # shown as the entries are (composer/check/verify.py ext4_records)
            found.setdefault(entry.number, shown(entry.path.decode("utf-8", "surrogateescape")))
        return found

    def _inodes_in_use(self) -> Iterator[int]:
        reserved = range(1, min(self.reader.sb["s_first_ino"], self.reader.inodes_count + 1))
        for number in reserved:
            if number in self.paths:
                continue
            inode = self.reader.inode(number)
            if inode.links and inode.flags & c.EXTENTS_FL:
                yield number
        yield from self.paths

    @cached_property
    def starts(self) -> list[int]:
        return [x.start for x in self.owned]

    def find(self, block: int) -> _Area | None:
        i = bisect_right(self.starts, block) - 1
        if i >= 0 and block < self.owned[i].end:
            return self.owned[i]
        return None


_OWNED_AS = {"data": "file data", "dir": "a directory block", "extent": "an extent tree block",
             "xattr": "an xattr block", "journal": "the journal"}


class _Ext4Differ:
    def __init__(self, ra: Ext4Reader, rb: Ext4Reader, a: Region, b: Region) -> None:
        self.ra, self.rb, self.a, self.b = ra, rb, a, b
        self.bs = ra.block_size
        sb = ra.sb
        self.bpg = sb["s_blocks_per_group"]
        self.first = sb["s_first_data_block"]
        self.seeded = bool(sb["s_feature_incompat"] & INCOMPAT_CSUM_SEED)
        self.own_a, self.own_b = _Owners(ra), _Owners(rb)

    # -------------------------------------------------------------------------- block map

    @cached_property
    def fixed(self) -> list[_Area]:
        """The metadata every group's place fixes: superblocks, descriptors, bitmaps, tables."""
        ra, areas = self.ra, []
        gdt_blocks = -(-ra.groups * ra.desc_size // self.bs)
        reserved = ra.sb["s_reserved_gdt_blocks"]
        sparse = bool(ra.sb["s_feature_ro_compat"] & c.RO_COMPAT_SPARSE_SUPER)
        table_blocks = -(-ra.inodes_per_group * ra.inode_size // self.bs)
        for g in range(ra.groups):
            if _has_super(g, sparse):
                at = g * self.bpg + self.first
                areas += [_Area(at, at + 1, "superblock", g),
                          _Area(at + 1, at + 1 + gdt_blocks, "gdt", g),
                          _Area(at + 1 + gdt_blocks, at + 1 + gdt_blocks + reserved,
                                "reserved gdt", g)]
            d = ra.group_desc(g)
            wide = ra.desc_size > 32
            block_bitmap = d["bg_block_bitmap_lo"] | (d["bg_block_bitmap_hi"] << 32 if wide else 0)
            inode_bitmap = d["bg_inode_bitmap_lo"] | (d["bg_inode_bitmap_hi"] << 32 if wide else 0)
            table = d["bg_inode_table_lo"] | (d["bg_inode_table_hi"] << 32 if wide else 0)
            areas += [_Area(block_bitmap, block_bitmap + 1, "block bitmap", g),
                      _Area(inode_bitmap, inode_bitmap + 1, "inode bitmap", g),
                      _Area(table, table + table_blocks, "inode table", g)]
        return sorted(areas, key=lambda x: x.start)

    @cached_property
    def _fixed_starts(self) -> list[int]:
        return [x.start for x in self.fixed]

    def _area(self, block: int) -> _Area | None:
        """The area holding `block` in A: fixed metadata first (the owner walk is only made
        for a block that is none of it)."""
        i = bisect_right(self._fixed_starts, block) - 1
        if i >= 0 and block < self.fixed[i].end:
            return self.fixed[i]
        return self.own_a.find(block)

    # ------------------------------------------------------------------------- decoding

    def inode_name(self, number: int) -> str:
        """'inode 14 (/etc/hostname)': its path in A, else in B (a new file), if any."""
        path = self.own_a.paths.get(number) or self.own_b.paths.get(number)
        if path is None and number == self.ra.sb["s_journal_inum"]:
            path = "journal"
        return f"inode {number}" + (f" ({path})" if path else "")

    def run(self, first: int, last: int) -> list[FieldChange]:
        """The changes in blocks first..last, grouped by the area each block is in."""
        changes: list[FieldChange] = []
        block = first
        while block <= last:
            area = self._area(block)
            end = min(last + 1, area.end if area is not None else self._next_area(block, last))
            changes += self._decode(area, block, end)
            block = end
        return changes

    def _next_area(self, block: int, last: int) -> int:
        """The first block after `block` (up to last + 1) that lies in some area."""
        nxt = last + 1
        for areas, starts in ((self.fixed, self._fixed_starts),
                              (self.own_a.owned, self.own_a.starts)):
            i = bisect_right(starts, block)
            if i < len(areas):
                nxt = min(nxt, areas[i].start)
        return max(nxt, block + 1)

    def _blocks(self, start: int, end: int) -> tuple[bytes, bytes]:
        at, n = start * self.bs, (end - start) * self.bs
        return self.a.read(at, n), self.b.read(at, n)

    def _decode(self, area: _Area | None, start: int, end: int) -> list[FieldChange]:
        span = (start * self.bs, end * self.bs)
        if area is None:
            in_b = self.own_b.find(start)
            holder = "unallocated" if in_b is None else (
                f"unallocated in A; {_OWNED_AS[in_b.kind]} of {self.inode_name(in_b.group)} in B")
            return [narrowed(self.a, self.b, *span, holder)]
        kind = area.kind
        if kind == "superblock":
            return self._superblock(area, start)
        if kind == "gdt":
            return self._descriptors(area, start, end)
        if kind in ("block bitmap", "inode bitmap"):
            x, y = self._blocks(start, end)
            return [FieldChange(f"group {area.group} {kind}", "bits set",
                                _bits(x), _bits(y))]
        if kind == "reserved gdt":
            return [byte_range(*span, f"reserved GDT blocks of group {area.group}")]
        if kind == "inode table":
            return self._inodes(area, start, end)
        owner = self.inode_name(area.group)
        if kind == "data":
            return [narrowed(self.a, self.b, *span, f"file data of {owner}")]
        if kind == "journal":
            return self._journal(area, start, end)
        changes: list[FieldChange] = []
        for block in range(start, end):
            x, y = self._blocks(block, block + 1)
            if x == y:
                continue
            if kind == "extent":
                changes += _extent_node(f"{owner} extent tree block {block}", x, y, tail=True)
            elif kind == "xattr":
                changes += _with_rest(struct_changes(XATTR_BLOCK_HEADER,
                                                     f"{owner} xattr block {block}", x, y),
                                      x, y, block * self.bs, f"xattr entries of {owner}",
                                      XATTR_BLOCK_HEADER.size)
            else:
                lblk = area.logical + block - area.start
                changes += _dir_block(f"{owner} directory block {lblk}", x, y,
                                      block * self.bs)
        return changes

    def _superblock(self, area: _Area, block: int) -> list[FieldChange]:
        x, y = self._blocks(block, block + 1)
        if area.group == 0:
            at = c.SUPERBLOCK_OFFSET - block * self.bs  # 1024 in block 0, or 0 in block 1
            found = struct_changes(SUPERBLOCK, SUPERBLOCK_NAME, x, y, at, _show)
            if block == 0 and x[:at] != y[:at]:
                found.append(byte_range(0, at, "boot sector (before the superblock)"))
            tail = at + SUPERBLOCK.size
            if x[tail:] != y[tail:]:
                found.append(byte_range(block * self.bs + tail, (block + 1) * self.bs,
                                        "the rest of the superblock's block"))
            return found
        return _with_rest(struct_changes(SUPERBLOCK, f"group {area.group} backup superblock",
                                         x, y, 0, _show), x, y, block * self.bs,
                          "the rest of a backup superblock's block", SUPERBLOCK.size)

    def _descriptors(self, area: _Area, start: int, end: int) -> list[FieldChange]:
        size, per_block = self.ra.desc_size, self.bs // self.ra.desc_size
        first_gdt = area.group * self.bpg + self.first + 1
        changes = []
        for block in range(start, end):
            x, y = self._blocks(block, block + 1)
            for k in range(per_block):
                dx, dy = x[k * size:(k + 1) * size], y[k * size:(k + 1) * size]
                if dx == dy:
                    continue
                number = (block - first_gdt) * per_block + k
                name = f"group {number} descriptor" + (
                    f" (backup in group {area.group})" if area.group else "")
                changes += struct_changes(GROUP_DESC, name, dx[:GROUP_DESC.size],
                                          dy[:GROUP_DESC.size])
        return changes

    def _inodes(self, area: _Area, start: int, end: int) -> list[FieldChange]:
        size = self.ra.inode_size
        changes = []
        for block in range(start, end):
            x, y = self._blocks(block, block + 1)
            for k in range(self.bs // size):
                ix, iy = x[k * size:(k + 1) * size], y[k * size:(k + 1) * size]
                if ix == iy:
                    continue
                index = (block - area.start) * (self.bs // size) + k
                if index >= self.ra.inodes_per_group:
                    continue
                number = area.group * self.ra.inodes_per_group + index + 1
                changes += _inode(self.inode_name(number), ix, iy,
                                  block * self.bs + k * size)
        return changes

    def _journal(self, area: _Area, start: int, end: int) -> list[FieldChange]:
        owner = self.inode_name(area.group)
        changes = []
        if area.logical == 0 and start == area.start:
            x, y = self._blocks(start, start + 1)
            changes += struct_changes(JOURNAL_SUPERBLOCK, "journal superblock", x, y, 0,
                                      lambda n, v: uuid_be(v) if n == "s_uuid" else v)
            start += 1
        if start < end:
            changes.append(narrowed(self.a, self.b, start * self.bs, end * self.bs,
                                    f"journal of {owner}"))
        return changes

    # -------------------------------------------------------------------------- following

    def cause_of(self, change: FieldChange, by_key: dict[str, FieldChange]) -> str | None:
        """The change `change` follows from, if any (module docstring of fielddiff)."""
        structure, field = change.structure, change.field
        if structure == SUPERBLOCK_NAME and field == "s_hash_seed" and \
                f"{SUPERBLOCK_NAME} s_uuid" in by_key and self._seeds_follow_uuids():
            return f"{SUPERBLOCK_NAME} s_uuid"
        if field in CHECKSUM_FIELDS:
            for seed in ("s_checksum_seed",) if self.seeded else ("s_uuid", "s_checksum_seed"):
                if f"{SUPERBLOCK_NAME} {seed}" in by_key:
                    return f"{SUPERBLOCK_NAME} {seed}"
            group = _group_of(structure)
            if group is not None and "bitmap_csum" in field:
                kind = "block bitmap" if "block_bitmap" in field else "inode bitmap"
                key = f"group {group} {kind} bits set"
                if key in by_key:
                    return key
            owner = _owner_prefix(structure)
            for other in by_key.values():
                if other.field not in CHECKSUM_FIELDS and other is not change and (
                        other.structure == structure or
                        (owner and other.structure.startswith(owner))):
                    return other.key
        if " backup superblock" in structure:
            primary = f"{SUPERBLOCK_NAME} {field}"
            return primary if primary in by_key else None
        if "(backup in group" in structure:
            primary = f"{structure.split(' (backup', 1)[0]} {field}"
            return primary if primary in by_key else None
        return None


    def _seeds_follow_uuids(self) -> bool:
        """Whether each side's directory hash seed is the one composer derives from its UUID
        (composer/fs/ext4/planner.py): then a new UUID explains a new seed."""
        return all(sb["s_hash_seed"] == struct.pack("<4I", *hash_seed_of(
            uuid.UUID(bytes=sb["s_uuid"]))) for sb in (self.ra.sb, self.rb.sb))


def _has_super(group: int, sparse: bool) -> bool:
    """Whether `group` holds a superblock backup: every group without sparse_super."""
    return not sparse or has_super(group)


def _bits(data: bytes) -> int:
    return sum(bin(byte).count("1") for byte in data)


def _show(name: str, value: object) -> object:
    look = _SHOW.get(name)
    return look(value) if look is not None else value


def _group_of(structure: str) -> int | None:
    words = structure.split()
    if len(words) >= 3 and words[0] == "group" and words[2] == "descriptor":
        return int(words[1])
    return None


def _owner_prefix(structure: str) -> str | None:
    """'inode 12 (/x) directory block 0' -> the block's own name, for its tail's checksum."""
    return structure if structure.startswith("inode ") and " block " in structure else None


def _with_rest(found: list[FieldChange], x: bytes, y: bytes, at: int, holder: str,
               skip: int) -> list[FieldChange]:
    """`found` in a block's fixed part, and the block's other differing bytes as one range."""
    rest = [i for i in range(skip, len(x)) if x[i] != y[i]]
    if rest:
        found.append(byte_range(at + rest[0], at + rest[-1] + 1, holder))
    return found


def _inode(name: str, x: bytes, y: bytes, at: int) -> list[FieldChange]:
    found = [f for f in struct_changes(INODE, name, x, y) if f.field != "i_block"]
    # a 128-byte inode (no extra fields) reads as a 256-byte one whose extra part is zero
    ax, ay = (INODE.unpack(v[:INODE.size].ljust(INODE.size, b"\0")) for v in (x, y))
    if ax["i_block"] != ay["i_block"]:
        if (ax["i_flags"] | ay["i_flags"]) & c.EXTENTS_FL:
            found += _extent_node(f"{name} i_block", ax["i_block"], ay["i_block"], tail=False)
        else:
            found.append(FieldChange(name, "i_block", ax["i_block"].hex(),
                                     ay["i_block"].hex()))
    if x[INODE.size:] != y[INODE.size:]:
        found += _with_rest([], x, y, at, f"the extra bytes of {name}", INODE.size)
    return found


def _extent_node(name: str, x: bytes, y: bytes, tail: bool) -> list[FieldChange]:
    found = struct_changes(EXTENT_HEADER, name, x, y)
    hx, hy = EXTENT_HEADER.unpack(x), EXTENT_HEADER.unpack(y)
    count = min(max(hx["eh_entries"], hy["eh_entries"]),
                (len(x) - EXTENT_HEADER.size) // EXTENT.size)
    entry = EXTENT if hx["eh_depth"] == 0 else EXTENT_INDEX
    for i in range(count):
        at = EXTENT_HEADER.size + i * entry.size
        found += struct_changes(entry, f"{name} {'extent' if entry is EXTENT else 'index'} {i}",
                                x, y, at)
    if tail:
        at = EXTENT_HEADER.size + hx["eh_max"] * EXTENT.size
        if at + EXTENT_TAIL.size <= len(x):
            found += struct_changes(EXTENT_TAIL, name, x, y, at)
    return found


def _dir_block(name: str, x: bytes, y: bytes, at: int) -> list[FieldChange]:
    """A directory block's differences: an htree node's fields and hash entries, or each
    named entry's fields, and the checksum tail."""
    size = len(x)
    try:
        kind = _dx_kind(x)
        if kind is not None and kind == _dx_kind(y):
            return _dx_block(name, kind, x, y)
        tail = size - DIR_TAIL.size if DIR_TAIL.unpack(x, size - DIR_TAIL.size)[
            "det_reserved_ft"] == DIR_TAIL_FT else size
        ex, ey = _dir_entries(x[:tail]), _dir_entries(y[:tail])
    except (ComposerError, ValueError, IndexError):
        return [byte_range(at, at + size, f"{name} (not a readable directory block)")]
    found = []
    for entry_name in sorted(ex.keys() | ey.keys()):
        fx, fy = ex.get(entry_name), ey.get(entry_name)
        where = f"{name} entry {entry_name}"
        if fx is None or fy is None:
            found.append(FieldChange(where, "added" if fx is None else "removed",
                                     fx and fx["inode"], fy and fy["inode"]))
            continue
        found += [FieldChange(where, f, fx[f], fy[f]) for f in ("inode", "rec_len",
                                                                "name_len", "file_type")
                  if fx[f] != fy[f]]
    if tail < size:
        found += struct_changes(DIR_TAIL, name, x, y, tail)
    if not found:
        found.append(byte_range(at, at + size, f"unused bytes of {name}"))
    return found


def _dir_entries(block: bytes) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    pos = 0
    while pos + DIR_ENTRY.size <= len(block):
        d = DIR_ENTRY.unpack(block, pos)
        if d["rec_len"] < DIR_ENTRY.size or pos + d["rec_len"] > len(block):
            raise ValueError("rec_len")
        if d["inode"]:
            raw = block[pos + DIR_ENTRY.size:pos + DIR_ENTRY.size + d["name_len"]]
            out.setdefault(raw.decode("utf-8", "backslashreplace"), d)
        pos += d["rec_len"]
    return out


def _dx_kind(block: bytes) -> str | None:
    """'root' or 'node' for an htree block, None for a leaf."""
    root = DX_ROOT.unpack(block)
    if root["dot_name"][:1] == b"." and root["dotdot_name"][:2] == b".." and \
            root["dot_rec_len"] == 12 and root["dotdot_rec_len"] == len(block) - 12 and \
            root["info_length"] == 8:
        return "root"
    node = DX_NODE.unpack(block)
    if node["fake_inode"] == 0 and node["fake_rec_len"] == len(block) and \
            node["fake_name_len"] == 0:
        return "node"
    return None


def _dx_block(name: str, kind: str, x: bytes, y: bytes) -> list[FieldChange]:
    decl = DX_ROOT if kind == "root" else DX_NODE
    label = f"{name} htree {kind}"
    found = struct_changes(decl, label, x, y)
    fx, fy = decl.unpack(x), decl.unpack(y)
    entries_at = decl.size - DX_ENTRY.size  # the first dx_entry is count/limit and block
    for i in range(1, min(max(fx["count"], fy["count"]), fx["limit"])):
        found += struct_changes(DX_ENTRY, f"{label} entry {i}", x, y,
                                entries_at + i * DX_ENTRY.size)
    tail = entries_at + fx["limit"] * DX_ENTRY.size
    if tail + DX_TAIL.size <= len(x):
        found += struct_changes(DX_TAIL, label, x, y, tail)
    return found
