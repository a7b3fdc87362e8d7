"""Directories: linear blocks and htree (hashed) directories (docs/ext4.md §7).

A directory that fits in LINEAR_DIR_MAX_BLOCKS blocks is linear; a bigger one is an htree:
block 0 is the dx_root, then the leaves in hash order, then (only when there are more leaves
than the root can index) the interior nodes, like e2fsck's rehash lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from composer.fs.ext4.constants import (
    DIRENT_TAIL_SIZE,
    FT_DIR,
    HASH_HALF_MD4,
    LINEAR_DIR_MAX_BLOCKS,
)
from composer.fs.ext4.csum import crc
from composer.fs.ext4.dirhash import dx_hash
from composer.fs.ext4.layouts import (
    DIR_ENTRY,
    DIR_TAIL,
    DX_ENTRY,
    DX_NODE,
    DX_ROOT,
    DX_TAIL,
)
from composer.structs import Struct

_DIRENT = DIR_ENTRY.packer("inode", "rec_len", "name_len", "file_type")
# the tail ends every leaf block: an unused entry of 12 bytes, "file type" 0xDE, the checksum
_TAIL = DIR_TAIL.packer("det_rec_len", "det_reserved_ft", "det_checksum")
_DX_ENTRY = DX_ENTRY.packer("hash", "block")
_NAME_AT = DIR_ENTRY.size  # the name follows the fixed part
# Index blocks are never written full (count == limit): tune2fs, which rewrites every checksum
# when it changes the UUID, takes a full index block for one without room for its dx_tail and
# leaves it to `e2fsck -D` (stale checksum, EBADMSG from the kernel). One free slot, as the
# kernel leaves after a split, keeps every index block "not full".


def dx_root_limit(block_size: int) -> int:
    # dx_entries from the count/limit pair (after ".", ".." and dx_root_info) up to the dx_tail
    return (block_size - DX_ROOT.offset("limit") - DX_TAIL.size) // DX_ENTRY.size  # 507


def dx_node_limit(block_size: int) -> int:
    # dx_entries from the count/limit pair (after the fake dirent) up to the dx_tail
    return (block_size - DX_NODE.offset("limit") - DX_TAIL.size) // DX_ENTRY.size  # 510


def dx_root_fill(block_size: int) -> int:
    return dx_root_limit(block_size) - 1


def dx_node_fill(block_size: int) -> int:
    return dx_node_limit(block_size) - 1
DOT_SIZE = DIR_ENTRY.size + 4  # "." and "..": the entry and its name padded to 4 bytes


@dataclass(frozen=True, slots=True)
class Dirent:
    name: bytes
    ino: int
    ftype: int

    @property
    def size(self) -> int:
        return (_NAME_AT + len(self.name) + 3) & ~3


@dataclass(frozen=True, slots=True)
class DirLayout:
    """Where every entry of a directory goes. The entries are kept as their on-disk records,
    packed one after the other (each with its own size as rec_len) in block order: one bytes
    object a directory, about 20 bytes an entry, where Dirent objects and their names would
    take over 100 (a build holds the layouts of all its directories until they are written)."""

    records: bytes  # linear: name order; htree: hash order
    # (start, end, last) byte offsets into `records` of each leaf / linear block: its records
    # and where its last one starts (-1: none), whose rec_len is stretched to the block's end
    leaves: tuple[tuple[int, int, int], ...]
    htree: bool
    leaf_hashes: tuple[int, ...] = ()  # htree: the index hash of each leaf (first is unused)
    min_blocks: int = 1  # linear: pad with empty blocks up to this many (lost+found)
    block_size: int = 4096

    @property
    def nodes(self) -> int:
        """Interior htree blocks (0 when the root indexes every leaf)."""
        if not self.htree or len(self.leaves) <= dx_root_fill(self.block_size):
            return 0
        return -(-len(self.leaves) // dx_node_fill(self.block_size))

    @property
    def nblocks(self) -> int:
        if self.htree:
            return 1 + len(self.leaves) + self.nodes
        return max(len(self.leaves), self.min_blocks)


class DirTooBig(ValueError):
    pass


def _pack(entries: Sequence[Dirent], first_used: int, space: int) -> list[tuple[int, int]]:
    """Greedy split of entries into blocks of `space` bytes (a block without its checksum
    tail); the first block already holds `first_used` bytes."""
    leaves = []
    start = 0
    used = first_used
    for i, e in enumerate(entries):
        if used + e.size > space:
            leaves.append((start, i))
            start = i
            used = 0
        used += e.size
    leaves.append((start, len(entries)))
    return leaves


def plan_dir(entries: Sequence[Dirent], hash_seed: tuple[int, int, int, int],
             block_size: int, min_blocks: int = 1, allow_htree: bool = True) -> DirLayout:
    space = block_size - DIRENT_TAIL_SIZE
    linear = _pack(entries, 2 * DOT_SIZE, space)
    if len(linear) <= max(LINEAR_DIR_MAX_BLOCKS, min_blocks) or not allow_htree:
        records, leaves = _records(entries, linear)
        return DirLayout(records, leaves, False, min_blocks=min_blocks, block_size=block_size)
    keyed = sorted((dx_hash(e.name, hash_seed), e.name, e) for e in entries)
    ordered = tuple(e for _, _, e in keyed)
    by_index = _pack(ordered, 0, space)
    if len(by_index) > dx_root_fill(block_size) * dx_node_fill(block_size):
        raise DirTooBig(f"{len(entries)} entries need more than two htree levels")
    hashes = []
    for start, _ in by_index:
        h = keyed[start][0][0]
        if start and keyed[start - 1][0][0] == h:
            h |= 1  # a hash run continues from the previous leaf (e2fsck rehash rule)
        hashes.append(h)
    records, leaves = _records(ordered, by_index)
    return DirLayout(records, leaves, True, tuple(hashes), block_size=block_size)


def _records(entries: Sequence[Dirent], leaves: list[tuple[int, int]]
             ) -> tuple[bytes, tuple[tuple[int, int, int], ...]]:
    """The entries' records packed in order, and the leaves' index ranges as (start, end, last)
    byte ranges (see DirLayout)."""
    out = bytearray()
    starts = []
    for e in entries:
        starts.append(len(out))
        name = e.name
        # a name over 255 bytes is refused by the planner; its record is never written
        out += _DIRENT.pack(e.ino, e.size, min(len(name), 255), e.ftype)
        out += name
        out += bytes(-len(out) % 4)
    starts.append(len(out))
    return bytes(out), tuple((starts[a], starts[b], starts[b - 1] if b > a else -1)
                             for a, b in leaves)


def _dirent(blk: bytearray, off: int, ino: int, rec_len: int, name: bytes, ftype: int) -> None:
    _DIRENT.pack_into(blk, off, ino, rec_len, len(name), ftype)
    blk[off + _NAME_AT:off + _NAME_AT + len(name)] = name


def _leaf_block(records: bytes, leaf: tuple[int, int, int], dots: tuple[int, int] | None,
                seed: int, block_size: int) -> bytes:
    """One linear block: optional ./.., the leaf's records, last rec_len stretched, checksum
    tail."""
    space = block_size - DIRENT_TAIL_SIZE
    blk = bytearray(block_size)
    pos = 0
    last = -1
    if dots is not None:
        _dirent(blk, 0, dots[0], DOT_SIZE, b".", FT_DIR)
        _dirent(blk, DOT_SIZE, dots[1], DOT_SIZE, b"..", FT_DIR)
        last = DOT_SIZE
        pos = 2 * DOT_SIZE
    start, end, last_record = leaf
    blk[pos:pos + end - start] = records[start:end]
    if last_record >= 0:
        last = pos + last_record - start
    # the last entry (or, in an empty block, one unused entry) spans the rest of the block
    DIR_ENTRY.patch(blk, max(last, 0), "rec_len", space - max(last, 0))
    _TAIL.pack_into(blk, space, DIRENT_TAIL_SIZE, 0xDE, crc(seed, memoryview(blk)[:space]))
    return bytes(blk)


_NO_LEAF = (0, 0, -1)


def _dx_csum(blk: bytearray, limit_at: int, limit: int, count: int, seed: int) -> None:
    """dx_tail checksum: crc over the header and the entries in use (the count/limit pair
    takes the place of the first entry's hash), dt_reserved, then a zero dt_checksum."""
    tail = limit_at + DX_ENTRY.size * limit
    c = crc(seed, memoryview(blk)[:limit_at + DX_ENTRY.size * count])
    c = crc(c, memoryview(blk)[tail:tail + DX_TAIL.offset("dt_checksum")])
    c = crc(c, b"\0\0\0\0")
    DX_TAIL.patch(blk, tail, "dt_checksum", c)


def _dx_entries(blk: bytearray, layout: Struct, targets: Sequence[tuple[int, int]]) -> None:
    """The (hash, block) pairs after the first target (whose block the fixed part holds);
    targets = (hash, logical block)."""
    for i, (h, b) in enumerate(targets[1:]):
        _DX_ENTRY.pack_into(blk, layout.size + DX_ENTRY.size * i, h, b)


def build_blocks(layout: DirLayout, ino: int, parent: int, seed: int) -> bytes:
    """All blocks of the directory, logical block 0 first. `seed` is the inode's csum seed."""
    out = []
    bs = layout.block_size
    if not layout.htree:
        for i, leaf in enumerate(layout.leaves):
            dots = (ino, parent) if i == 0 else None
            out.append(_leaf_block(layout.records, leaf, dots, seed, bs))
        for _ in range(len(layout.leaves), layout.min_blocks):
            out.append(_leaf_block(b"", _NO_LEAF, None, seed, bs))
        return b"".join(out)

    n_leaves = len(layout.leaves)
    leaf_targets = [(layout.leaf_hashes[i], 1 + i) for i in range(n_leaves)]
    nodes = layout.nodes
    node_blocks = []
    root_targets = leaf_targets
    if nodes:
        root_targets = []
        fill, limit = dx_node_fill(bs), dx_node_limit(bs)
        for n in range(nodes):
            chunk = leaf_targets[n * fill:(n + 1) * fill]
            node = bytearray(bs)
            # the fake dirent: inode 0 over the whole block, so linear readers skip it
            DX_NODE.pack_into(node, 0, fake_rec_len=bs, limit=limit, count=len(chunk),
                              block=chunk[0][1])
            _dx_entries(node, DX_NODE, chunk)
            _dx_csum(node, DX_NODE.offset("limit"), limit, len(chunk), seed)
            node_blocks.append(bytes(node))
            root_targets.append((chunk[0][0], 1 + n_leaves + n))
    root = bytearray(bs)
    limit = dx_root_limit(bs)
    DX_ROOT.pack_into(
        root, 0,
        dot_inode=ino, dot_rec_len=DOT_SIZE, dot_name_len=1, dot_file_type=FT_DIR,
        dot_name=b".",
        # ".." spans the rest of the block: to a linear reader the index is free space
        dotdot_inode=parent, dotdot_rec_len=bs - DOT_SIZE, dotdot_name_len=2,
        dotdot_file_type=FT_DIR, dotdot_name=b"..",
        hash_version=HASH_HALF_MD4, info_length=8, indirect_levels=1 if nodes else 0,
        limit=limit, count=len(root_targets), block=root_targets[0][1])
    _dx_entries(root, DX_ROOT, root_targets)
    _dx_csum(root, DX_ROOT.offset("limit"), limit, len(root_targets), seed)
    out.append(bytes(root))
    for leaf in layout.leaves:
        out.append(_leaf_block(layout.records, leaf, None, seed, bs))
    out.extend(node_blocks)
    return b"".join(out)
