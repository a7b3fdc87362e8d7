"""Superblock and group descriptors (docs/ext4.md §2, §4.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from composer.fs.ext4.constants import (
    BG_ITABLE_ZEROED,
    CHECKSUM_TYPE_CRC32C,
    COMPAT_HAS_JOURNAL,
    DEFAULT_MOUNT_OPTS,
    DESC_SIZE,
    ERRORS_CONTINUE,
    EXT4_MAGIC,
    EXTRA_ISIZE,
    FEATURE_COMPAT,
    FEATURE_INCOMPAT,
    FEATURE_RO_COMPAT,
    FIRST_INO,
    FLAG_SIGNED_HASH,
    HASH_HALF_MD4,
    INODE_SIZE,
    JNL_BACKUP_BLOCKS,
    JOURNAL_INO,
    LOG_GROUPS_PER_FLEX,
    REV_DYNAMIC,
    STATE_VALID,
    SUPERBLOCK_SIZE,
)
from composer.fs.ext4.csum import crc

_M = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class SuperFields:
    block_size: int
    first_data_block: int
    inodes_count: int
    blocks_count: int
    r_blocks_count: int
    free_blocks: int
    free_inodes: int
    ipg: int
    time: int  # mkfs_time = wtime = lastcheck
    uuid: bytes
    label: bytes
    hash_seed: tuple[int, int, int, int]
    journal_i_block: bytes | None  # the journal inode's i_block (backup), None: no journal
    journal_size: int


def pack_superblock(f: SuperFields, group: int = 0) -> bytes:
    """The 1024-byte superblock; backups (group > 0) have s_state 0 like mke2fs writes them."""
    sb = bytearray(SUPERBLOCK_SIZE)
    t = f.time & _M
    compat = FEATURE_COMPAT | (COMPAT_HAS_JOURNAL if f.journal_i_block is not None else 0)
    log_block = f.block_size.bit_length() - 11  # s_log_block_size: 1024 << log
    per_group = 8 * f.block_size
    struct.pack_into(
        "<IIIIIIIIIIIIIHHHHHHIIIIHHIHHIII", sb, 0,
        f.inodes_count, f.blocks_count & _M, f.r_blocks_count & _M, f.free_blocks & _M,
        f.free_inodes, f.first_data_block, log_block, log_block, per_group, per_group,
        f.ipg, 0, t,  # s_mtime 0 (never mounted), s_wtime
        0, 0xFFFF, EXT4_MAGIC, STATE_VALID if group == 0 else 0, ERRORS_CONTINUE, 0,
        t, 0, 0, REV_DYNAMIC,  # lastcheck, checkinterval, creator_os Linux, rev
        0, 0, FIRST_INO, INODE_SIZE, group, compat, FEATURE_INCOMPAT, FEATURE_RO_COMPAT)
    sb[0x68:0x78] = f.uuid
    sb[0x78:0x88] = f.label.ljust(16, b"\0")
    if f.journal_i_block is not None:
        struct.pack_into("<I", sb, 0xE0, JOURNAL_INO)
    struct.pack_into("<4IBBH", sb, 0xEC, *f.hash_seed, HASH_HALF_MD4,
                     JNL_BACKUP_BLOCKS if f.journal_i_block is not None else 0, DESC_SIZE)
    struct.pack_into("<II", sb, 0x100, DEFAULT_MOUNT_OPTS, 0)
    struct.pack_into("<I", sb, 0x108, t)  # s_mkfs_time
    if f.journal_i_block is not None:
        # s_jnl_blocks: i_block[0..14], then i_size_high, i_size
        sb[0x10C:0x148] = f.journal_i_block
        struct.pack_into("<II", sb, 0x148, f.journal_size >> 32, f.journal_size & _M)
    struct.pack_into("<IIIHHI", sb, 0x150, f.blocks_count >> 32, f.r_blocks_count >> 32,
                     f.free_blocks >> 32, EXTRA_ISIZE, EXTRA_ISIZE, FLAG_SIGNED_HASH)
    struct.pack_into("<BB", sb, 0x174, LOG_GROUPS_PER_FLEX, CHECKSUM_TYPE_CRC32C)
    hi = (f.time >> 32) & 0xFF
    struct.pack_into("<BBBB", sb, 0x274, hi, 0, hi, hi)  # wtime_hi, mtime_hi, mkfs_hi, lastcheck
    struct.pack_into("<I", sb, 0x3FC, crc(_M, memoryview(sb)[:0x3FC]))
    return bytes(sb)


@dataclass(frozen=True, slots=True)
class GroupDesc:
    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    free_blocks: int
    free_inodes: int
    used_dirs: int
    itable_unused: int
    block_bitmap_csum: int
    inode_bitmap_csum: int


def pack_desc(buf: bytearray, off: int, group: int, d: GroupDesc, csum_seed: int) -> None:
    struct.pack_into(
        "<IIIHHHHIHHHHIIIHHHHIHHI", buf, off,
        d.block_bitmap & _M, d.inode_bitmap & _M, d.inode_table & _M,
        d.free_blocks & 0xFFFF, d.free_inodes & 0xFFFF, d.used_dirs & 0xFFFF, BG_ITABLE_ZEROED,
        0, d.block_bitmap_csum & 0xFFFF, d.inode_bitmap_csum & 0xFFFF,
        d.itable_unused & 0xFFFF, 0,
        d.block_bitmap >> 32, d.inode_bitmap >> 32, d.inode_table >> 32,
        d.free_blocks >> 16, d.free_inodes >> 16, d.used_dirs >> 16, d.itable_unused >> 16,
        0, d.block_bitmap_csum >> 16, d.inode_bitmap_csum >> 16, 0)
    c = crc(crc(csum_seed, struct.pack("<I", group)), memoryview(buf)[off:off + DESC_SIZE])
    struct.pack_into("<H", buf, off + 0x1E, c & 0xFFFF)
