"""Extent trees (docs/ext4.md §6): splitting runs into extents and building tight trees.

Trees are built bottom-up with every node full except the last one of its level and the
depth only as large as needed, which is what e2fsck's "could be narrower/shorter" test wants.
"""

from __future__ import annotations

from dataclasses import dataclass

from composer.fs.ext4.constants import EXTENT_MAGIC, EXTENT_MAX_LEN, EXTENTS_IN_INODE
from composer.fs.ext4.csum import crc
from composer.fs.ext4.layouts import EXTENT, EXTENT_HEADER, EXTENT_INDEX, EXTENT_TAIL

Run = tuple[int, int]  # (first physical block, number of blocks)


def extents_per_block(block_size: int) -> int:
    # a header, then entries, then a tail: 340 at 4 KiB
    return (block_size - EXTENT_HEADER.size - EXTENT_TAIL.size) // EXTENT.size


@dataclass(frozen=True, slots=True)
class Extent:
    lblk: int  # first logical block
    pblk: int  # first physical block
    length: int  # 1 .. EXTENT_MAX_LEN


def extents_of(runs: tuple[Run, ...] | list[Run],
               logical: tuple[Run, ...] = ()) -> tuple[Extent, ...]:
    """Map physical runs onto logical runs as extents of at most 32768 blocks each.

    `logical` lists the (first logical block, count) runs that hold data, in order; empty means
    one run from block 0 (a file without holes). Both lists cover the same number of blocks.
    Logical gaps between runs are holes: no extent covers them (kernel ext4 docs, "Extent Tree":
    a block not covered by any extent reads as zeros).
    """
    if not logical and len(runs) == 1 and runs[0][1] <= EXTENT_MAX_LEN:
        return (Extent(0, runs[0][0], runs[0][1]),)  # the common case: one small dense run
    if not logical:
        logical = ((0, sum(n for _, n in runs)),)
    out: list[Extent] = []
    li = 0
    lblk, lleft = logical[0]
    for pblk, plen in runs:
        while plen > 0:
            while lleft == 0:
                li += 1
                lblk, lleft = logical[li]
            n = min(plen, lleft, EXTENT_MAX_LEN)
            last = out[-1] if out else None
            if last is not None and last.pblk + last.length == pblk and \
                    last.lblk + last.length == lblk and last.length + n <= EXTENT_MAX_LEN:
                # contiguous on disk and in the file (e.g. two allocations in a row): one extent
                out[-1] = Extent(last.lblk, last.pblk, last.length + n)
            else:
                out.append(Extent(lblk, pblk, n))
            lblk += n
            lleft -= n
            pblk += n
            plen -= n
    return tuple(out)


def tree_block_count(n_extents: int, block_size: int) -> int:
    """Number of leaf + index blocks a tree over `n_extents` extents needs."""
    total = 0
    level = n_extents
    per_block = extents_per_block(block_size)
    while level > EXTENTS_IN_INODE:
        level = -(-level // per_block)
        total += level
    return total


# headers, extents and index entries are packed per file and per entry: compiled once, with
# every field but eh_generation and ei_unused (zero), in declaration order
_HEADER = EXTENT_HEADER.packer("eh_magic", "eh_entries", "eh_max", "eh_depth")
_EXTENT = EXTENT.packer("ee_block", "ee_len", "ee_start_hi", "ee_start_lo")
_INDEX = EXTENT_INDEX.packer("ei_block", "ei_leaf_lo", "ei_leaf_hi")


def _header(entries: int, maximum: int, depth: int) -> bytes:
    return _HEADER.pack(EXTENT_MAGIC, entries, maximum, depth)


def _leaf_entry(e: Extent) -> bytes:
    return _EXTENT.pack(e.lblk, e.length, e.pblk >> 32, e.pblk & 0xFFFFFFFF)


def _index_entry(lblk: int, child: int) -> bytes:
    return _INDEX.pack(lblk, child & 0xFFFFFFFF, child >> 32)


@dataclass(frozen=True, slots=True)
class ExtentTree:
    root: bytes  # the 60 bytes of i_block
    blocks: tuple[tuple[int, bytes], ...]  # (physical block, content) of leaf/index blocks


def inode_root(extents: tuple[Extent, ...]) -> bytes:
    """The 60 bytes of i_block for at most EXTENTS_IN_INODE extents: the whole tree, no block
    of its own (most files: build_tree without the tree's checks and objects)."""
    assert len(extents) <= EXTENTS_IN_INODE
    return (_header(len(extents), EXTENTS_IN_INODE, 0) +
            b"".join(map(_leaf_entry, extents))).ljust(60, b"\0")


def build_tree(extents: tuple[Extent, ...], tree_blocks: tuple[int, ...],
               ino_seed: int, block_size: int) -> ExtentTree:
    """Build the tree; `tree_blocks` are the physical blocks reserved for it (leaves first)."""
    assert len(tree_blocks) == tree_block_count(len(extents), block_size)
    if len(extents) <= EXTENTS_IN_INODE:
        return ExtentTree(inode_root(extents), ())
    blocks: list[tuple[int, bytes]] = []
    free = iter(tree_blocks)
    # level items: (first logical block, serialized entry) of the level being packed
    items = [(e.lblk, _leaf_entry(e)) for e in extents]
    depth = 0
    per_block = extents_per_block(block_size)
    tail = EXTENT_HEADER.size + EXTENT.size * per_block
    while len(items) > EXTENTS_IN_INODE:
        parents = []
        for i in range(0, len(items), per_block):
            chunk = items[i:i + per_block]
            blk = bytearray(block_size)
            blk[:EXTENT_HEADER.size] = _header(len(chunk), per_block, depth)
            entries = b"".join(entry for _, entry in chunk)
            blk[EXTENT_HEADER.size:EXTENT_HEADER.size + len(entries)] = entries
            EXTENT_TAIL.patch(blk, tail, "et_checksum", crc(ino_seed, memoryview(blk)[:tail]))
            pblk = next(free)
            blocks.append((pblk, bytes(blk)))
            # an index entry's ei_block must equal its child's first logical block
            parents.append((chunk[0][0], _index_entry(chunk[0][0], pblk)))
        items = parents
        depth += 1
    root = _header(len(items), EXTENTS_IN_INODE, depth) + b"".join(e for _, e in items)
    return ExtentTree(root.ljust(60, b"\0"), tuple(blocks))
