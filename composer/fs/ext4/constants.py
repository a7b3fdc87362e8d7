"""On-disk constants of the ext4 profile we write (docs/ext4.md §0, §1.2, §2, §5, §6, §7).

The profile is Debian 12's `mke2fs -t ext4 -O ^resize_inode` with 256-byte inodes. The block
size is 1, 2 or 4 KiB, chosen like mke2fs does (`size_type`); everything that depends on it is
computed from `Geometry.block_size`, never from a constant.
"""

from __future__ import annotations

BLOCK_SIZES = (1024, 2048, 4096)
DEFAULT_BLOCK_SIZE = 4096
INODE_SIZE = 256
EXTRA_ISIZE = 32  # i_extra_isize: room for checksum_hi, *_extra times and crtime (§5.1)
GOOD_OLD_INODE_SIZE = 128
DESC_SIZE = 64  # 64bit feature: 64-byte group descriptors
LOG_GROUPS_PER_FLEX = 4  # 16 groups per flex group, like mke2fs: their tables sit together

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
EXT4_MAGIC = 0xEF53

# reserved inodes (§5.2)
BAD_BLOCKS_INO = 1
ROOT_INO = 2
JOURNAL_INO = 8
FIRST_INO = 11  # s_first_ino; mke2fs puts lost+found here
LOST_FOUND = "/lost+found"
# mke2fs makes lost+found 16 KiB, so e2fsck can reconnect files without allocating
LOST_FOUND_BYTES = 16384

# feature bits (§1.2)
COMPAT_HAS_JOURNAL = 0x4
COMPAT_EXT_ATTR = 0x8
COMPAT_DIR_INDEX = 0x20
INCOMPAT_FILETYPE = 0x2
INCOMPAT_EXTENTS = 0x40
INCOMPAT_64BIT = 0x80
INCOMPAT_FLEX_BG = 0x200
INCOMPAT_CSUM_SEED = 0x2000  # personalization only (docs/ext4.md §1: old GRUB refuses it)
RO_COMPAT_SPARSE_SUPER = 0x1
RO_COMPAT_LARGE_FILE = 0x2
RO_COMPAT_HUGE_FILE = 0x8
RO_COMPAT_DIR_NLINK = 0x20
RO_COMPAT_EXTRA_ISIZE = 0x40
RO_COMPAT_METADATA_CSUM = 0x400

FEATURE_COMPAT = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX  # | HAS_JOURNAL when there is a journal
FEATURE_INCOMPAT = INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG
FEATURE_RO_COMPAT = (RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_HUGE_FILE
                     | RO_COMPAT_DIR_NLINK | RO_COMPAT_EXTRA_ISIZE | RO_COMPAT_METADATA_CSUM)

# superblock values (§2)
STATE_VALID = 1
ERRORS_CONTINUE = 1
REV_DYNAMIC = 1
HASH_HALF_MD4 = 1
FLAG_SIGNED_HASH = 0x1  # exactly one of signed/unsigned must be set (§0)
JNL_BACKUP_BLOCKS = 1
DEFAULT_MOUNT_OPTS = 0x000C  # user_xattr | acl, as mke2fs.conf default_mntopts
CHECKSUM_TYPE_CRC32C = 1

# group descriptor flags (§4.3): inode tables are holes, i.e. really zero
BG_ITABLE_ZEROED = 0x4

# inode flags (§5.1)
INDEX_FL = 0x1000
EXTENTS_FL = 0x80000

# link counts (§5.3)
LINK_MAX = 65000

# extents (§6)
EXTENT_MAGIC = 0xF30A
EXTENT_MAX_LEN = 32768  # longest initialized extent (EXT_INIT_MAX_LEN)
EXTENTS_IN_INODE = 4  # (60 - 12) / 12

# symlinks (§5.7)
FAST_SYMLINK_MAX = 59  # targets < 60 bytes live in i_block

# directories (§7)
DIRENT_TAIL_SIZE = 12
LINEAR_DIR_MAX_BLOCKS = 2  # bigger directories get an htree (e2fsck -fy rehashes >= 3 blocks)
NAME_MAX = 255

# file types in directory entries (§7.1)
FT_REG_FILE = 1
FT_DIR = 2
FT_CHRDEV = 3
FT_BLKDEV = 4
FT_FIFO = 5
FT_SOCK = 6
FT_SYMLINK = 7

# journal (§9, mke2fs ext2fs_default_journal_size)
JOURNAL_MIN_BLOCKS = 1024
NO_JOURNAL_BELOW_BLOCKS = 2048  # mke2fs makes no journal for smaller file systems
JBD2_MAGIC = 0xC03B3998
JBD2_SUPERBLOCK_V2 = 4
