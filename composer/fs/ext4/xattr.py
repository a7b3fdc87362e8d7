"""Extended attributes: name prefixes, POSIX ACL conversion, in-inode and block layouts (§5.9)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from composer.fs.ext4.constants import EXTRA_ISIZE, GOOD_OLD_INODE_SIZE, INODE_SIZE
from composer.fs.ext4.csum import crc

_M = 0xFFFFFFFF
XATTR_MAGIC = 0xEA020000
ENTRY_HEADER = 16  # e_name_len, e_name_index, e_value_offs, e_value_inum, e_value_size, e_hash
BLOCK_HEADER = 32  # h_magic, h_refcount, h_blocks, h_hash, h_checksum, h_reserved[3]
TERMINATOR = 4  # the entry list ends with a zero u32
# in-inode area: after the 128-byte base inode and i_extra_isize, minus the 4-byte magic
IBODY_SPACE = INODE_SIZE - GOOD_OLD_INODE_SIZE - EXTRA_ISIZE - 4  # 92
IBODY_OFFSET = GOOD_OLD_INODE_SIZE + EXTRA_ISIZE  # 0xA0

# Exact names first (the ACLs are stored with an empty name), then prefixes. Other system.*
# names have no kernel handler (system.data is the inline-data marker), so they are refused.
_EXACT = {"system.posix_acl_access": 2, "system.posix_acl_default": 3}
_PREFIXES = (("user.", 1), ("trusted.", 4), ("security.", 6))

# POSIX ACL tags (linux/posix_acl.h): entries of these tags carry no id on disk
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 0x10, 0x20
_ACL_SHORT_TAGS = (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER)
_ACL_XATTR_VERSION = 2  # the form getxattr/setxattr use
_ACL_EXT4_VERSION = 1  # the ext4 on-disk form


class XattrError(ValueError):
    """An attribute that cannot be stored; the message is for the user."""


@dataclass(frozen=True, slots=True)
class Xattr:
    index: int  # e_name_index
    name: bytes  # the name after the prefix
    value: bytes  # as stored on disk (ACLs converted)

    @property
    def entry_size(self) -> int:
        return (ENTRY_HEADER + len(self.name) + 3) & ~3

    @property
    def value_size(self) -> int:
        return (len(self.value) + 3) & ~3

    @property
    def size(self) -> int:
        return self.entry_size + self.value_size

    @property
    def sort_key(self) -> tuple[int, int, bytes]:
        # the order the kernel's sorted block lookup relies on (xattr_find_entry sorted=1)
        return (self.index, len(self.name), self.name)


def acl_to_disk(value: bytes) -> bytes:
    """Convert a POSIX ACL from the xattr form (v2, 8-byte entries) to the ext4 form (v1)."""
    if len(value) < 4 or (len(value) - 4) % 8:
        raise XattrError("is not a POSIX ACL (bad length)")
    (version,) = struct.unpack_from("<I", value, 0)
    if version != _ACL_XATTR_VERSION:
        raise XattrError(f"is not a POSIX ACL (version {version}, expected 2)")
    out = bytearray(struct.pack("<I", _ACL_EXT4_VERSION))
    for off in range(4, len(value), 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, off)
        if tag in _ACL_SHORT_TAGS:
            out += struct.pack("<HH", tag, perm)
        elif tag in (ACL_USER, ACL_GROUP):
            out += struct.pack("<HHI", tag, perm, ident)
        else:
            raise XattrError(f"is not a POSIX ACL (unknown tag {tag:#x})")
    return bytes(out)


def encode(name: str, value: bytes) -> Xattr:
    """Split a full attribute name into (index, suffix) and convert the value if needed."""
    if name in _EXACT:
        return Xattr(_EXACT[name], b"", acl_to_disk(value))
    for prefix, index in _PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            suffix = name[len(prefix):].encode("utf-8", "surrogateescape")
            if len(suffix) > 255:
                raise XattrError("name is longer than 255 bytes")
            return Xattr(index, suffix, value)
    raise XattrError("namespace is not supported (user., trusted., security., POSIX ACLs)")


@dataclass(frozen=True, slots=True)
class XattrSplit:
    ibody: tuple[Xattr, ...]
    block: tuple[Xattr, ...]  # sorted by Xattr.sort_key


def split(xattrs: list[Xattr]) -> XattrSplit:
    """Fill the inode first (in the given order), overflow goes to one block, like the kernel."""
    ibody: list[Xattr] = []
    block: list[Xattr] = []
    used = TERMINATOR
    for x in xattrs:
        if used + x.size <= IBODY_SPACE:
            ibody.append(x)
            used += x.size
        else:
            block.append(x)
    block.sort(key=lambda x: x.sort_key)
    return XattrSplit(tuple(ibody), tuple(block))


def block_space(block_size: int) -> int:
    """Room for entries and values in one xattr block (4064 bytes at 4 KiB)."""
    return block_size - BLOCK_HEADER


def block_fits(xattrs: tuple[Xattr, ...], block_size: int) -> bool:
    return sum(x.size for x in xattrs) + TERMINATOR <= block_space(block_size)


def entry_hash(x: Xattr) -> int:
    """ext2fs_ext_attr_hash_entry (unsigned-char variant, what the kernel writes)."""
    h = 0
    for c in x.name:
        h = ((h << 5) ^ (h >> 27) ^ c) & _M
    if x.value:
        padded = x.value + b"\0" * (x.value_size - len(x.value))
        for (w,) in struct.iter_unpack("<I", padded):
            h = ((h << 16) ^ (h >> 16) ^ w) & _M
    return h


def _pack_entries(xattrs: tuple[Xattr, ...], area: bytearray, entries_at: int, end: int,
                  offs_base: int, with_hash: bool) -> list[int]:
    """Write entries from `entries_at` and values downward from `end`; returns the e_hashes."""
    pos = entries_at
    value_end = end
    hashes = []
    for x in xattrs:
        if x.value:
            value_end -= x.value_size
            area[value_end:value_end + len(x.value)] = x.value
            offs = value_end - offs_base
        else:
            offs = 0
        h = entry_hash(x) if with_hash else 0
        hashes.append(h)
        struct.pack_into("<BBHIII", area, pos, len(x.name), x.index, offs, 0, len(x.value), h)
        area[pos + ENTRY_HEADER:pos + ENTRY_HEADER + len(x.name)] = x.name
        pos += x.entry_size
    return hashes


def ibody_area(xattrs: tuple[Xattr, ...]) -> bytes:
    """The 96 bytes at inode offset 0xA0; e_value_offs count from the first entry (0xA4)."""
    area = bytearray(INODE_SIZE - IBODY_OFFSET)
    if not xattrs:
        return bytes(area)
    struct.pack_into("<I", area, 0, XATTR_MAGIC)
    # e_hash 0 in the inode body: what both the kernel and e2fsprogs write
    _pack_entries(xattrs, area, 4, len(area), 4, with_hash=False)
    return bytes(area)


def xattr_block(xattrs: tuple[Xattr, ...], block_nr: int, csum_seed: int,
                block_size: int) -> bytes:
    """A whole xattr block with its header hash and checksum (refcount 1, not shared)."""
    blk = bytearray(block_size)
    hashes = _pack_entries(xattrs, blk, BLOCK_HEADER, block_size, 0, with_hash=True)
    h = 0
    for eh in hashes:
        if eh == 0:  # the kernel's ext4_xattr_rehash: a zero entry hash zeroes the block hash
            h = 0
            break
        h = ((h << 16) ^ (h >> 16) ^ eh) & _M
    struct.pack_into("<IIII", blk, 0, XATTR_MAGIC, 1, 1, h)
    # the checksum is keyed by the physical block number, not by the inode (§3)
    struct.pack_into("<I", blk, 0x10, crc(crc(csum_seed, struct.pack("<Q", block_nr)), blk))
    return bytes(blk)
