"""Superblock and group descriptors (docs/ext4.md §2, §4.3)."""

from __future__ import annotations

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
    INCOMPAT_CSUM_SEED,
    INODE_SIZE,
    JNL_BACKUP_BLOCKS,
    JOURNAL_INO,
    LOG_GROUPS_PER_FLEX,
    REV_DYNAMIC,
    STATE_VALID,
)
from composer.fs.ext4.csum import crc
from composer.fs.ext4.layouts import GROUP_DESC, SUPERBLOCK

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
    checksum_seed: int | None = None  # metadata_csum_seed: stored, not derived from uuid


def _le32(*words: int) -> bytes:
    """Little-endian u32 words, for the byte-array fields that hold them (s_hash_seed)."""
    return b"".join(w.to_bytes(4, "little") for w in words)


def pack_superblock(f: SuperFields, group: int = 0) -> bytes:
    """The 1024-byte superblock; backups (group > 0) have s_state 0 like mke2fs writes them."""
    t = f.time & _M
    hi = (f.time >> 32) & 0xFF
    journal = f.journal_i_block is not None
    log_block = f.block_size.bit_length() - 11  # s_log_block_size: 1024 << log
    per_group = 8 * f.block_size
    sb = bytearray(SUPERBLOCK.pack(
        s_inodes_count=f.inodes_count,
        s_blocks_count_lo=f.blocks_count & _M,
        s_r_blocks_count_lo=f.r_blocks_count & _M,
        s_free_blocks_count_lo=f.free_blocks & _M,
        s_free_inodes_count=f.free_inodes,
        s_first_data_block=f.first_data_block,
        s_log_block_size=log_block,
        s_log_cluster_size=log_block,
        s_blocks_per_group=per_group,
        s_clusters_per_group=per_group,
        s_inodes_per_group=f.ipg,
        s_mtime=0,  # never mounted
        s_wtime=t,
        s_mnt_count=0,
        s_max_mnt_count=0xFFFF,
        s_magic=EXT4_MAGIC,
        s_state=STATE_VALID if group == 0 else 0,
        s_errors=ERRORS_CONTINUE,
        s_lastcheck=t,
        s_checkinterval=0,
        s_creator_os=0,  # Linux
        s_rev_level=REV_DYNAMIC,
        s_def_resuid=0,
        s_def_resgid=0,
        s_first_ino=FIRST_INO,
        s_inode_size=INODE_SIZE,
        s_block_group_nr=group,
        s_feature_compat=FEATURE_COMPAT | (COMPAT_HAS_JOURNAL if journal else 0),
        s_feature_incompat=FEATURE_INCOMPAT | (INCOMPAT_CSUM_SEED if f.checksum_seed is not None
                                              else 0),
        s_feature_ro_compat=FEATURE_RO_COMPAT,
        s_uuid=f.uuid,
        s_volume_name=f.label,  # zero-padded to 16 bytes
        s_journal_inum=JOURNAL_INO if journal else 0,
        s_hash_seed=_le32(*f.hash_seed),
        s_def_hash_version=HASH_HALF_MD4,
        s_jnl_backup_type=JNL_BACKUP_BLOCKS if journal else 0,
        s_desc_size=DESC_SIZE,
        s_default_mount_opts=DEFAULT_MOUNT_OPTS,
        s_first_meta_bg=0,
        s_mkfs_time=t,
        # the journal inode's i_block[0..14], then its i_size_high and i_size
        s_jnl_blocks=(f.journal_i_block + _le32(f.journal_size >> 32, f.journal_size & _M)
                      if f.journal_i_block is not None else b""),
        s_blocks_count_hi=f.blocks_count >> 32,
        s_r_blocks_count_hi=f.r_blocks_count >> 32,
        s_free_blocks_hi=f.free_blocks >> 32,
        s_min_extra_isize=EXTRA_ISIZE,
        s_want_extra_isize=EXTRA_ISIZE,
        s_flags=FLAG_SIGNED_HASH,
        s_log_groups_per_flex=LOG_GROUPS_PER_FLEX,
        s_checksum_type=CHECKSUM_TYPE_CRC32C,
        s_checksum_seed=f.checksum_seed or 0,
        s_wtime_hi=hi,
        s_mtime_hi=0,
        s_mkfs_time_hi=hi,
        s_lastcheck_hi=hi,
    ))
    at = SUPERBLOCK.offset("s_checksum")
    SUPERBLOCK.patch(sb, 0, "s_checksum", crc(_M, memoryview(sb)[:at]))
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


# every field but the reserved ones and bg_checksum (patched in after the crc over the rest)
_DESC = GROUP_DESC.packer(
    "bg_block_bitmap_lo", "bg_inode_bitmap_lo", "bg_inode_table_lo",
    "bg_free_blocks_count_lo", "bg_free_inodes_count_lo", "bg_used_dirs_count_lo", "bg_flags",
    "bg_block_bitmap_csum_lo", "bg_inode_bitmap_csum_lo", "bg_itable_unused_lo",
    "bg_block_bitmap_hi", "bg_inode_bitmap_hi", "bg_inode_table_hi",
    "bg_free_blocks_count_hi", "bg_free_inodes_count_hi", "bg_used_dirs_count_hi",
    "bg_itable_unused_hi", "bg_block_bitmap_csum_hi", "bg_inode_bitmap_csum_hi")


def pack_desc(buf: bytearray, off: int, group: int, d: GroupDesc, csum_seed: int) -> None:
    _DESC.pack_into(
        buf, off,
        d.block_bitmap & _M, d.inode_bitmap & _M, d.inode_table & _M,
        d.free_blocks & 0xFFFF, d.free_inodes & 0xFFFF, d.used_dirs & 0xFFFF, BG_ITABLE_ZEROED,
        d.block_bitmap_csum & 0xFFFF, d.inode_bitmap_csum & 0xFFFF, d.itable_unused & 0xFFFF,
        d.block_bitmap >> 32, d.inode_bitmap >> 32, d.inode_table >> 32,
        d.free_blocks >> 16, d.free_inodes >> 16, d.used_dirs >> 16,
        d.itable_unused >> 16, d.block_bitmap_csum >> 16, d.inode_bitmap_csum >> 16)
    c = crc(crc(csum_seed, group.to_bytes(4, "little")), memoryview(buf)[off:off + DESC_SIZE])
    GROUP_DESC.patch(buf, off, "bg_checksum", c & 0xFFFF)
