"""Block-group geometry and the fixed metadata positions (docs/ext4.md §4.1, §12b)."""

from __future__ import annotations

from dataclasses import dataclass

from composer.fs.ext4.constants import DESC_SIZE, INODE_SIZE


def has_super(group: int) -> bool:
    """sparse_super: backups of the superblock and GDT live in groups 0, 1 and powers of 3, 5, 7."""
    if group <= 1:
        return True
    for base in (3, 5, 7):
        n = base
        while n < group:
            n *= base
        if n == group:
            return True
    return False


class GeometryError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Geometry:
    block_size: int  # 1024, 2048 or 4096
    nblocks: int  # blocks in the file system (may be less than the image when a tail is dropped)
    groups: int
    ipg: int  # inodes per group
    gdt_blocks: int

    @property
    def first_data_block(self) -> int:
        """s_first_data_block: with 1 KiB blocks block 0 is the boot block, outside any group."""
        return 1 if self.block_size == 1024 else 0

    @property
    def blocks_per_group(self) -> int:
        return 8 * self.block_size  # one bitmap block covers the group

    @property
    def inodes_per_block(self) -> int:
        return self.block_size // INODE_SIZE

    @property
    def itable_blocks(self) -> int:
        return self.ipg * INODE_SIZE // self.block_size

    @property
    def inodes_count(self) -> int:
        return self.ipg * self.groups

    @property
    def sectors_per_block(self) -> int:
        return self.block_size // 512  # i_blocks counts 512-byte sectors (§5.5)

    def group_first(self, group: int) -> int:
        return self.first_data_block + group * self.blocks_per_group

    def group_last(self, group: int) -> int:
        return min(self.group_first(group) + self.blocks_per_group, self.nblocks) - 1

    @property
    def super_groups(self) -> tuple[int, ...]:
        return tuple(g for g in range(self.groups) if has_super(g))

    def reserved_runs(self) -> list[tuple[int, int]]:
        """Superblock + GDT copies: (first block, count), sorted."""
        return [(self.group_first(g), 1 + self.gdt_blocks) for g in self.super_groups]


def _ipg(inodes: int, groups: int, block_size: int) -> int:
    """Inodes per group as ext2fs_initialize rounds them: up to whole inode-table blocks,
    then down to a multiple of 8 (with 1 KiB blocks that can drop 4)."""
    per = -(-inodes // groups)
    if per > 8 * block_size:  # the inode bitmap is one block
        raise GeometryError(f"{inodes} inodes need more than {8 * block_size} per group")
    table_blocks = -(-per * INODE_SIZE // block_size)
    per = (table_blocks * block_size // INODE_SIZE) & ~7
    return max(per, 8, block_size // INODE_SIZE)


def make_geometry(nblocks: int, inodes: int, block_size: int) -> Geometry:
    """Groups for `nblocks` blocks of `block_size` bytes and at least `inodes` inodes.

    Like mke2fs (ext2fs_initialize), a last group too small to be worth its metadata is
    dropped (the image keeps its size; the file system just ends earlier).
    """
    if nblocks < 64:
        raise GeometryError("too few blocks")
    first = 1 if block_size == 1024 else 0
    bpg = 8 * block_size
    groups = -(-(nblocks - first) // bpg)
    ipg = _ipg(inodes, groups, block_size)
    gdt = -(-groups // (block_size // DESC_SIZE))
    itable = ipg * INODE_SIZE // block_size
    if 3 + itable > bpg:
        raise GeometryError(f"{inodes} inodes do not fit the groups")
    last = (nblocks - first) % bpg
    overhead = 2 + itable + (1 + gdt if has_super(groups - 1) else 0)
    if last and last < overhead + 50:
        if groups == 1:
            raise GeometryError("too few blocks")
        return make_geometry(nblocks - last, inodes, block_size)
    return Geometry(block_size, nblocks, groups, ipg, gdt)
