"""The internal jbd2 journal (docs/ext4.md §9): default size and its (big-endian) superblock."""

from __future__ import annotations

import struct

from composer.fs.ext4.constants import JBD2_MAGIC, JBD2_SUPERBLOCK_V2, NO_JOURNAL_BELOW_BLOCKS

# ext2fs_default_journal_size: (fs blocks below, journal blocks)
_DEFAULT_SIZES = (
    (32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192), (4096 * 1024, 16384),
    (8192 * 1024, 32768), (16384 * 1024, 65536), (32768 * 1024, 131072),
)


def default_journal_blocks(fs_blocks: int) -> int:
    """Journal blocks mke2fs gives a file system of `fs_blocks` blocks (any block size);
    0: none, below 2048 blocks."""
    if fs_blocks < NO_JOURNAL_BELOW_BLOCKS:
        return 0
    for below, size in _DEFAULT_SIZES:
        if fs_blocks < below:
            return size
    return 262144


def journal_superblock(nblocks: int, uuid_bytes: bytes, block_size: int) -> bytes:
    """The first journal block: a clean, empty V2 journal (s_start 0: nothing to replay)."""
    blk = bytearray(block_size)
    # h_magic, h_blocktype, h_sequence, s_blocksize, s_maxlen, s_first, s_sequence, s_start
    struct.pack_into(">8I", blk, 0, JBD2_MAGIC, JBD2_SUPERBLOCK_V2, 0, block_size, nblocks, 1, 1,
                     0)
    blk[0x30:0x40] = uuid_bytes  # mke2fs copies the file system UUID
    struct.pack_into(">I", blk, 0x40, 1)  # s_nr_users
    return bytes(blk)
