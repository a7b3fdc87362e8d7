"""Extended attributes: name prefixes, POSIX ACL conversion, in-inode and block layouts (§5.9)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from composer import acl
from composer.fs.ext4.constants import EXTRA_ISIZE, GOOD_OLD_INODE_SIZE, INODE_SIZE
from composer.fs.ext4.csum import crc
from composer.fs.ext4.layouts import (
    EXT4_ACL_ENTRY,
    EXT4_ACL_ENTRY_SHORT,
    EXT4_ACL_HEADER,
    INODE,
    XATTR_BLOCK_HEADER,
    XATTR_ENTRY,
    XATTR_IBODY_HEADER,
)

_M = 0xFFFFFFFF
XATTR_MAGIC = 0xEA020000
ENTRY_HEADER = XATTR_ENTRY.size  # the entry before its name
BLOCK_HEADER = XATTR_BLOCK_HEADER.size
TERMINATOR = 4  # the entry list ends with a zero u32
# in-inode area: after the 128-byte base inode and i_extra_isize, minus the 4-byte magic
IBODY_SPACE = INODE_SIZE - GOOD_OLD_INODE_SIZE - EXTRA_ISIZE - XATTR_IBODY_HEADER.size  # 92
IBODY_OFFSET = INODE.offset("ibody_xattrs")  # 0xA0: GOOD_OLD_INODE_SIZE + EXTRA_ISIZE
if IBODY_OFFSET != GOOD_OLD_INODE_SIZE + EXTRA_ISIZE:
    raise ValueError("the INODE declaration disagrees with i_extra_isize")
# packed per inode or per entry: compiled once for the fields composer sets (the rest are zero)
_ENTRY = XATTR_ENTRY.packer("e_name_len", "e_name_index", "e_value_offs", "e_value_size",
                            "e_hash")
_IBODY_HEADER = XATTR_IBODY_HEADER.packer("h_magic")
_BLOCK_HEADER = XATTR_BLOCK_HEADER.packer("h_magic", "h_refcount", "h_blocks", "h_hash")
_ACL_HEADER = EXT4_ACL_HEADER.packer("a_version")
_ACL_ENTRY = EXT4_ACL_ENTRY.packer("e_tag", "e_perm", "e_id")
_ACL_ENTRY_SHORT = EXT4_ACL_ENTRY_SHORT.packer("e_tag", "e_perm")
# the xattr form, read per entry (every field: compiled as declared)
_ACL_XATTR_HEADER = acl.ACL_HEADER.packer("a_version")
_ACL_XATTR_ENTRY = acl.ACL_ENTRY.packer("e_tag", "e_perm", "e_id")
_ACL_ID_TAGS = (acl.USER, acl.GROUP)

# Exact names first (the ACLs are stored with an empty name), then prefixes. Other system.*
# names have no kernel handler (system.data is the inline-data marker), so they are refused.
_EXACT = {acl.ACCESS_XATTR: 2, acl.DEFAULT_XATTR: 3}
_PREFIXES = (("user.", 1), ("trusted.", 4), ("security.", 6))

# POSIX ACL entries of these tags carry no id on disk (kernel fs/ext4/acl.c ext4_acl_to_disk)
_ACL_SHORT_TAGS = (acl.USER_OBJ, acl.GROUP_OBJ, acl.MASK, acl.OTHER)
_ACL_EXT4_VERSION = 1  # the ext4 on-disk form; the xattr form is acl.XATTR_VERSION


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
    first, step = _ACL_XATTR_HEADER.size, _ACL_XATTR_ENTRY.size
    if len(value) < first or (len(value) - first) % step:
        raise XattrError("is not a POSIX ACL (bad length)")
    (version,) = _ACL_XATTR_HEADER.unpack_from(value)
    if version != acl.XATTR_VERSION:
        raise XattrError(f"is not a POSIX ACL (version {version}, expected {acl.XATTR_VERSION})")
    out = bytearray(_ACL_HEADER.pack(_ACL_EXT4_VERSION))
    for off in range(first, len(value), step):
        tag, perm, ident = _ACL_XATTR_ENTRY.unpack_from(value, off)
        if tag in _ACL_SHORT_TAGS:
            out += _ACL_ENTRY_SHORT.pack(tag, perm)
        elif tag in _ACL_ID_TAGS:
            out += _ACL_ENTRY.pack(tag, perm, ident)
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
        _ENTRY.pack_into(area, pos, len(x.name), x.index, offs, len(x.value), h)
        area[pos + ENTRY_HEADER:pos + ENTRY_HEADER + len(x.name)] = x.name
        pos += x.entry_size
    return hashes


def ibody_area(xattrs: tuple[Xattr, ...]) -> bytes:
    """The 96 bytes at inode offset 0xA0; e_value_offs count from the first entry (0xA4)."""
    area = bytearray(INODE_SIZE - IBODY_OFFSET)
    if not xattrs:
        return bytes(area)
    _IBODY_HEADER.pack_into(area, 0, XATTR_MAGIC)
    # e_hash 0 in the inode body: what both the kernel and e2fsprogs write
    first = XATTR_IBODY_HEADER.size
    _pack_entries(xattrs, area, first, len(area), first, with_hash=False)
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
    _BLOCK_HEADER.pack_into(blk, 0, XATTR_MAGIC, 1, 1, h)  # refcount 1, one block
    # the checksum is keyed by the physical block number, not by the inode (§3); it covers
    # the whole block with a zero h_checksum
    c = crc(crc(csum_seed, block_nr.to_bytes(8, "little")), blk)
    XATTR_BLOCK_HEADER.patch(blk, 0, "h_checksum", c)
    return bytes(blk)
