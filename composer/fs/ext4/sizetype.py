"""mke2fs's defaults by file-system size (misc/mke2fs.c `parse_fs_type`, /etc/mke2fs.conf).

mke2fs names a size type from the size and takes the block size and inode ratio of that
type's [fs_types] stanza, falling back to [defaults]. Debian 12's mke2fs.conf (e2fsprogs
1.47.0) sets no inode_size for small or floppy (since 1.46.4 every type gets 256-byte inodes,
which y2038-safe times need), so only these two values vary.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20
TIB = 1 << 40


@dataclass(frozen=True, slots=True)
class SizeType:
    name: str
    block_size: int
    inode_ratio: int  # bytes per inode


FLOPPY = SizeType("floppy", 1024, 8192)  # below 3 MiB
SMALL = SizeType("small", 1024, 4096)  # below 512 MiB
DEFAULT = SizeType("default", 4096, 16384)
BIG = SizeType("big", 4096, 32768)  # from 4 TiB
HUGE = SizeType("huge", 4096, 65536)  # from 16 TiB


SMALL_TYPE_LIMIT = 512 * MIB  # the first size of the default type (4 KiB blocks)


def size_type(size: int) -> SizeType:
    """The type mke2fs picks for a file system of `size` bytes."""
    if size < 3 * MIB:
        return FLOPPY
    if size < SMALL_TYPE_LIMIT:
        return SMALL
    if size < 4 * TIB:
        return DEFAULT
    if size < 16 * TIB:
        return BIG
    return HUGE
