"""CRC32C as ext4 uses it (docs/ext4.md §3).

ext4 feeds a raw CRC32C: no pre- or post-inversion, the previous raw value is the next seed.
The `crc32c` package computes the standard CRC (inverted in and out) and continues from a
previous *final* value, so raw(seed, d) = ~std_continue(d, ~seed).
"""

from __future__ import annotations

import struct

import crc32c as _crc32c

_MASK = 0xFFFFFFFF


def crc(seed: int, data: bytes | bytearray | memoryview) -> int:
    """Raw CRC32C of `data` continuing from `seed` (kernel crc32c_le / ext2fs_crc32c_le)."""
    return _crc32c.crc32c(data, seed ^ _MASK) ^ _MASK


def fs_seed(uuid_bytes: bytes) -> int:
    """The seed of every metadata checksum: crc(~0, s_uuid) (no metadata_csum_seed feature)."""
    return crc(_MASK, uuid_bytes)


_INO_GEN = struct.Struct("<II")  # the inode number, then its generation


def inode_seed(seed: int, ino: int, generation: int = 0) -> int:
    """Per-inode seed for inode, extent-block and directory-block checksums: the raw CRC over
    the number and then the generation, in one call (a raw CRC continues across pieces)."""
    return crc(seed, _INO_GEN.pack(ino, generation))
