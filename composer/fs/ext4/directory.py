"""Directories: linear blocks and htree (hashed) directories (docs/ext4.md §7).

A directory that fits in LINEAR_DIR_MAX_BLOCKS blocks is linear; a bigger one is an htree:
block 0 is the dx_root, then the leaves in hash order, then (only when there are more leaves
than the root can index) the interior nodes, like e2fsck's rehash lays them out.
"""

from __future__ import annotations

import struct
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

_DIRENT = struct.Struct("<IHBB")
# Index blocks are never written full (count == limit): tune2fs, which rewrites every checksum
# when it changes the UUID, takes a full index block for one without room for its dx_tail and
# leaves it to `e2fsck -D` (stale checksum, EBADMSG from the kernel). One free slot, as the
# kernel leaves after a split, keeps every index block "not full".


def dx_root_limit(block_size: int) -> int:
    return (block_size - 32 - 8) // 8  # after ".", "..", dx_root_info; 8-byte dx_tail: 507


def dx_node_limit(block_size: int) -> int:
    return (block_size - 8 - 8) // 8  # after the fake dirent; 8-byte dx_tail: 510


def dx_root_fill(block_size: int) -> int:
    return dx_root_limit(block_size) - 1


def dx_node_fill(block_size: int) -> int:
    return dx_node_limit(block_size) - 1
DOT_SIZE = 12  # "." and ".." entries, each 8 + 4


@dataclass(frozen=True, slots=True)
class Dirent:
    name: bytes
    ino: int
    ftype: int

    @property
    def size(self) -> int:
        return (8 + len(self.name) + 3) & ~3


@dataclass(frozen=True, slots=True)
class DirLayout:
    """Where every entry of a directory goes. Leaves are index ranges into `entries`."""

    entries: tuple[Dirent, ...]  # linear: name order; htree: hash order
    leaves: tuple[tuple[int, int], ...]  # (start, end) of each leaf / linear block
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
        return DirLayout(tuple(entries), tuple(linear), False, min_blocks=min_blocks,
                         block_size=block_size)
    keyed = sorted((dx_hash(e.name, hash_seed), e.name, e) for e in entries)
    ordered = tuple(e for _, _, e in keyed)
    leaves = _pack(ordered, 0, space)
    if len(leaves) > dx_root_fill(block_size) * dx_node_fill(block_size):
        raise DirTooBig(f"{len(entries)} entries need more than two htree levels")
    hashes = []
    for start, _ in leaves:
        h = keyed[start][0][0]
        if start and keyed[start - 1][0][0] == h:
            h |= 1  # a hash run continues from the previous leaf (e2fsck rehash rule)
        hashes.append(h)
    return DirLayout(ordered, tuple(leaves), True, tuple(hashes), block_size=block_size)


def _dirent(blk: bytearray, off: int, ino: int, rec_len: int, name: bytes, ftype: int) -> None:
    _DIRENT.pack_into(blk, off, ino, rec_len, len(name), ftype)
    blk[off + 8:off + 8 + len(name)] = name


def _leaf_block(entries: Sequence[Dirent], dots: tuple[int, int] | None, seed: int,
                block_size: int) -> bytes:
    """One linear block: optional ./.., entries, last rec_len stretched, checksum tail."""
    space = block_size - DIRENT_TAIL_SIZE
    blk = bytearray(block_size)
    pos = 0
    last = -1
    if dots is not None:
        _dirent(blk, 0, dots[0], DOT_SIZE, b".", FT_DIR)
        _dirent(blk, DOT_SIZE, dots[1], DOT_SIZE, b"..", FT_DIR)
        last = DOT_SIZE
        pos = 2 * DOT_SIZE
    for e in entries:
        _dirent(blk, pos, e.ino, e.size, e.name, e.ftype)
        last = pos
        pos += e.size
    if last < 0:  # an empty block: one unused entry spanning it
        _DIRENT.pack_into(blk, 0, 0, space, 0, 0)
    else:
        struct.pack_into("<H", blk, last + 4, space - last)
    # ext2_dir_entry_tail: inode 0, rec_len 12, name_len 0, type 0xDE, crc of the block before
    _DIRENT.pack_into(blk, space, 0, DIRENT_TAIL_SIZE, 0, 0xDE)
    struct.pack_into("<I", blk, block_size - 4, crc(seed, memoryview(blk)[:space]))
    return bytes(blk)


def _dx_csum(blk: bytearray, count_off: int, limit: int, seed: int) -> None:
    """dx_tail checksum: crc over the header+entries in use, dt_reserved, then 4 zero bytes."""
    (count,) = struct.unpack_from("<H", blk, count_off + 2)
    tail = count_off + 8 * limit
    c = crc(seed, memoryview(blk)[:count_off + 8 * count])
    c = crc(c, memoryview(blk)[tail:tail + 4])
    c = crc(c, b"\0\0\0\0")
    struct.pack_into("<I", blk, tail + 4, c)


def _dx_entries(blk: bytearray, at: int, limit: int, targets: Sequence[tuple[int, int]]) -> None:
    """limit/count/block header then (hash, block) pairs; targets = (hash, logical block)."""
    struct.pack_into("<HHI", blk, at, limit, len(targets), targets[0][1])
    for i, (h, b) in enumerate(targets[1:], 1):
        struct.pack_into("<II", blk, at + 8 * i, h, b)


def build_blocks(layout: DirLayout, ino: int, parent: int, seed: int) -> bytes:
    """All blocks of the directory, logical block 0 first. `seed` is the inode's csum seed."""
    out = []
    bs = layout.block_size
    if not layout.htree:
        for i, (start, end) in enumerate(layout.leaves):
            dots = (ino, parent) if i == 0 else None
            out.append(_leaf_block(layout.entries[start:end], dots, seed, bs))
        for _ in range(len(layout.leaves), layout.min_blocks):
            out.append(_leaf_block((), None, seed, bs))
        return b"".join(out)

    n_leaves = len(layout.leaves)
    leaf_targets = [(layout.leaf_hashes[i], 1 + i) for i in range(n_leaves)]
    nodes = layout.nodes
    root = bytearray(bs)
    _dirent(root, 0, ino, DOT_SIZE, b".", FT_DIR)
    _dirent(root, DOT_SIZE, parent, bs - DOT_SIZE, b"..", FT_DIR)
    # dx_root_info: reserved_zero, hash_version, info_length 8, indirect_levels, unused_flags
    struct.pack_into("<IBBBB", root, 0x18, 0, HASH_HALF_MD4, 8, 1 if nodes else 0, 0)
    node_blocks = []
    if nodes:
        root_targets = []
        fill, limit = dx_node_fill(bs), dx_node_limit(bs)
        for n in range(nodes):
            chunk = leaf_targets[n * fill:(n + 1) * fill]
            node = bytearray(bs)
            # fake dirent covering the block: inode 0, rec_len = block size
            _DIRENT.pack_into(node, 0, 0, bs, 0, 0)
            _dx_entries(node, 8, limit, chunk)
            _dx_csum(node, 8, limit, seed)
            node_blocks.append(bytes(node))
            root_targets.append((chunk[0][0], 1 + n_leaves + n))
        _dx_entries(root, 0x20, dx_root_limit(bs), root_targets)
    else:
        _dx_entries(root, 0x20, dx_root_limit(bs), leaf_targets)
    _dx_csum(root, 0x20, dx_root_limit(bs), seed)
    out.append(bytes(root))
    for start, end in layout.leaves:
        out.append(_leaf_block(layout.entries[start:end], None, seed, bs))
    out.extend(node_blocks)
    return b"".join(out)
