"""Block-group geometry and the fixed metadata positions (docs/ext4.md §4.1, §12b)."""

from __future__ import annotations

from dataclasses import dataclass

from composer.fs.ext4.constants import BLOCK_SIZE as BS
from composer.fs.ext4.constants import (
    BLOCKS_PER_GROUP,
    DESCS_PER_BLOCK,
    INODE_SIZE,
    INODES_PER_BLOCK,
    MAX_INODES_PER_GROUP,
)


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
    nblocks: int  # blocks in the file system (may be less than the image when a tail is dropped)
    groups: int
    ipg: int  # inodes per group
    gdt_blocks: int

    @property
    def itable_blocks(self) -> int:
        return self.ipg * INODE_SIZE // BS

    @property
    def inodes_count(self) -> int:
        return self.ipg * self.groups

    def group_blocks(self, group: int) -> int:
        return min(BLOCKS_PER_GROUP, self.nblocks - group * BLOCKS_PER_GROUP)

    @property
    def blocks_per_group(self) -> int:
        return BLOCKS_PER_GROUP

    @property
    def first_data_block(self) -> int:
        return 0

    def group_first(self, group: int) -> int:
        return group * BLOCKS_PER_GROUP

    def group_last(self, group: int) -> int:
        return min(self.group_first(group) + BLOCKS_PER_GROUP, self.nblocks) - 1

    @property
    def super_groups(self) -> tuple[int, ...]:
        return tuple(g for g in range(self.groups) if has_super(g))

    def reserved_runs(self) -> list[tuple[int, int]]:
        """Superblock + GDT copies: (first block, count), sorted."""
        return [(g * BLOCKS_PER_GROUP, 1 + self.gdt_blocks) for g in self.super_groups]


def _ipg(inodes: int, groups: int) -> int:
    per = -(-inodes // groups)
    # a multiple of the inodes per block (16, hence also of 8) so the table fills whole blocks
    per = max(INODES_PER_BLOCK, -(-per // INODES_PER_BLOCK) * INODES_PER_BLOCK)
    if per > MAX_INODES_PER_GROUP:
        raise GeometryError(f"{inodes} inodes need more than {MAX_INODES_PER_GROUP} per group")
    return per


def make_geometry(nblocks: int, inodes: int) -> Geometry:
    """Groups for `nblocks` blocks and at least `inodes` inodes.

    Like mke2fs, a last group too small to be worth its metadata is dropped (the image keeps
    its size; the file system just ends earlier).
    """
    if nblocks < 64:
        raise GeometryError("too few blocks")
    groups = -(-nblocks // BLOCKS_PER_GROUP)
    ipg = _ipg(inodes, groups)
    gdt = -(-groups // DESCS_PER_BLOCK)
    if groups > 1:
        last = nblocks - (groups - 1) * BLOCKS_PER_GROUP
        overhead = 2 + ipg * INODE_SIZE // BS + (1 + gdt if has_super(groups - 1) else 0)
        if last < overhead + 50:
            return make_geometry((groups - 1) * BLOCKS_PER_GROUP, inodes)
    return Geometry(nblocks, groups, ipg, gdt)
