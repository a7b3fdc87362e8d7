"""Reading an ext4 image back without root or mount: its superblock facts, every entry, and each
file's bytes as a stream (for `compose inspect` and `compose verify --deep`).

It reads composer's images and those of `mke2fs -d`: 1, 2 and 4 KiB blocks, 32- and 64-byte
group descriptors, extent trees of any depth the kernel allows, unwritten extents and holes (read
as zeros), inline and extent symlinks, linear and htree directories, in-inode and block xattrs,
old and new device numbers. Every structure is unpacked through the one declaration of it in
layouts.py. The image is hostile until proven otherwise: every count, offset and block number is
range-checked before use and every failure is one ComposerError naming the structure; memory is
bounded by one directory's entries and one extent-tree path, never by a file's or image's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO

from composer.errors import ComposerError
from composer.fs.ext4 import constants as c
from composer.fs.ext4.csum import crc, fs_seed, inode_seed
from composer.fs.ext4.layouts import (
    DIR_ENTRY,
    EXTENT,
    EXTENT_HEADER,
    EXTENT_INDEX,
    GROUP_DESC,
    INODE,
    SUPERBLOCK,
    XATTR_BLOCK_HEADER,
    XATTR_ENTRY,
    XATTR_IBODY_HEADER,
)
from composer.tree import Kind

MAX_EXTENT_DEPTH = 5  # the kernel's EXT4_MAX_EXTENT_DEPTH
XATTR_MAGIC = 0xEA020000
INLINE_DATA_FL = 0x10000000
UNWRITTEN_LEN = 32768  # ee_len above this: unwritten (read as zeros), length ee_len - 32768
ZERO_CHUNK = bytes(1 << 16)
DESC_SIZE_32 = 32  # group descriptors without the 64bit feature

_KIND_OF_IFMT = {0o100000: Kind.FILE, 0o040000: Kind.DIR, 0o120000: Kind.SYMLINK,
                 0o020000: Kind.CHAR, 0o060000: Kind.BLOCK, 0o010000: Kind.FIFO,
                 0o140000: Kind.SOCKET}
# e_name_index -> the prefix of the name (kernel fs/ext4/xattr.c ext4_xattr_handler_map)
_XATTR_PREFIX = {1: b"user.", 2: b"system.posix_acl_access", 3: b"system.posix_acl_default",
                 4: b"trusted.", 6: b"security.", 7: b"system.", 8: b"system.richacl"}


@dataclass(frozen=True, slots=True)
class Ext4Facts:
    """The superblock-level facts `compose inspect` shows."""

    block_size: int
    blocks_count: int
    free_blocks: int
    inodes_count: int
    free_inodes: int
    inode_size: int
    groups: int
    desc_size: int
    uuid: str
    volume_name: str
    features_compat: int
    features_incompat: int
    features_ro_compat: int
    mkfs_time: int
    has_journal: bool


@dataclass(frozen=True, slots=True)
class Inode:
    number: int
    mode: int  # st_mode, type bits included
    uid: int
    gid: int
    mtime: int
    mtime_ns: int  # the nanoseconds part
    size: int
    flags: int
    links: int
    i_block: bytes
    file_acl: int
    ibody: bytes  # the bytes after i_extra_isize (in-inode xattrs)

    @property
    def kind(self) -> Kind | None:
        return _KIND_OF_IFMT.get(self.mode & 0o170000)


@dataclass(frozen=True, slots=True)
class Ext4Entry:
    path: bytes  # b"/" for the root
    kind: Kind
    inode: Inode
    target: bytes | None = None  # symlinks
    rdev: tuple[int, int] | None = None

    @property
    def number(self) -> int:
        return self.inode.number


class Ext4Reader:
    """One ext4 file system in `f`, starting at byte `offset`, `length` bytes long."""

    def __init__(self, f: BinaryIO, name: str, offset: int = 0, length: int | None = None,
                 checksums: bool = False):
        """With `checksums`, the superblock's and each inode's metadata_csum checksum is
        checked (a reader of entries wants that; composer/check/fielddiff_ext4.py reads images
        a changed byte made wrong, and names that byte instead)."""
        self.f, self.name, self.offset = f, name, offset
        if length is None:
            length = f.seek(0, 2) - offset
        self.length = length
        raw = self._read(c.SUPERBLOCK_OFFSET, c.SUPERBLOCK_SIZE, "superblock")
        sb = SUPERBLOCK.unpack(raw)
        if sb["s_magic"] != c.EXT4_MAGIC:
            self._fail(f"superblock magic 0x{sb['s_magic']:04X}, not 0x{c.EXT4_MAGIC:04X}")
        if not 0 <= sb["s_log_block_size"] <= 6:
            self._fail(f"superblock s_log_block_size {sb['s_log_block_size']} is out of range")
        self.block_size = 1024 << sb["s_log_block_size"]
        incompat = sb["s_feature_incompat"]
        self.blocks_count = sb["s_blocks_count_lo"] | (
            sb["s_blocks_count_hi"] << 32 if incompat & c.INCOMPAT_64BIT else 0)
        self.desc_size = sb["s_desc_size"] if incompat & c.INCOMPAT_64BIT else DESC_SIZE_32
        self.inode_size = sb["s_inode_size"] if sb["s_rev_level"] else c.GOOD_OLD_INODE_SIZE
        self.inodes_count = sb["s_inodes_count"]
        self.inodes_per_group = sb["s_inodes_per_group"]
        blocks_per_group = sb["s_blocks_per_group"]
        first = sb["s_first_data_block"]
        checks = (
            (self.blocks_count * self.block_size <= self.length,
             f"superblock says {self.blocks_count} blocks of {self.block_size} bytes, more than "
             f"the {self.length} bytes there are (truncated image?)"),
            (self.desc_size in (DESC_SIZE_32, c.DESC_SIZE) or
             (self.desc_size > c.DESC_SIZE and self.desc_size & (self.desc_size - 1) == 0
              and self.desc_size <= self.block_size),
             f"superblock s_desc_size {self.desc_size} is not a group descriptor size"),
            (c.GOOD_OLD_INODE_SIZE <= self.inode_size <= self.block_size and
             self.inode_size & (self.inode_size - 1) == 0,
             f"superblock s_inode_size {self.inode_size} is out of range"),
            (0 < blocks_per_group <= 8 * self.block_size and
             0 < self.inodes_per_group <= 8 * self.block_size,
             "superblock s_blocks_per_group / s_inodes_per_group is out of range"),
            (first < max(self.blocks_count, 1),
             f"superblock s_first_data_block {first} is out of range"),
        )
        for ok, message in checks:
            if not ok:
                self._fail(message)
        self.groups = -(-(self.blocks_count - first) // blocks_per_group)
        if self.inodes_count > self.groups * self.inodes_per_group:
            self._fail(f"superblock s_inodes_count {self.inodes_count} is more than "
                       f"{self.groups} groups of {self.inodes_per_group} inodes")
        self.gdt_block = first + 1
        self.sb = sb
        self.csum_seed: int | None = None  # None: checksums not checked
        if checksums and sb["s_feature_ro_compat"] & c.RO_COMPAT_METADATA_CSUM:
            self._check_superblock_csum(raw)
            self.csum_seed = sb["s_checksum_seed"] if incompat & c.INCOMPAT_CSUM_SEED else \
                fs_seed(sb["s_uuid"])
        self._desc = lru_cache(maxsize=256)(self._group_inode_table)

    # ------------------------------------------------------------------------------ basics

    def _check_superblock_csum(self, raw: bytes) -> None:
        at = SUPERBLOCK.offset("s_checksum")
        stored, computed = self.sb["s_checksum"], crc(0xFFFFFFFF, raw[:at])
        if stored != computed:
            self._fail(f"superblock s_checksum is 0x{stored:08x}, its bytes give "
                       f"0x{computed:08x}")

    def _check_inode_csum(self, number: int, raw: bytes, fields: dict[str, int],
                          extra: int) -> None:
        """The inode's crc32c over its bytes with both checksum halves zeroed (the high half
        only where i_extra_isize reaches it), seeded by its number and generation."""
        assert self.csum_seed is not None
        data = bytearray(raw)
        lo, hi = INODE.offset("l_i_checksum_lo"), INODE.offset("i_checksum_hi")
        has_hi = c.GOOD_OLD_INODE_SIZE + extra >= hi + 2
        data[lo:lo + 2] = bytes(2)
        if has_hi:
            data[hi:hi + 2] = bytes(2)
        computed = crc(inode_seed(self.csum_seed, number, fields["i_generation"]), data)
        stored = fields["l_i_checksum_lo"] | (fields["i_checksum_hi"] << 16 if has_hi else 0)
        if not has_hi:
            computed &= 0xFFFF
        if stored != computed:
            self._fail(f"inode {number}: checksum (l_i_checksum_lo, i_checksum_hi) is "
                       f"0x{stored:08x}, its bytes give 0x{computed:08x}")

    def _fail(self, message: str) -> None:
        raise ComposerError(f"{self.name}: ext4 {message}",
                            hint="the image is damaged, truncated or not ext4; "
                                 "e2fsck -fn IMAGE names what is wrong")

    def _read(self, at: int, size: int, what: str) -> bytes:
        if at < 0 or at + size > self.length:
            self._fail(f"{what}: bytes {at}-{at + size - 1} lie past the end of the "
                       f"{self.length}-byte file system (truncated image?)")
        self.f.seek(self.offset + at)
        data = self.f.read(size)
        if len(data) != size:
            self._fail(f"{what}: the image ends at byte {self.offset + at + len(data)} "
                       "(truncated image?)")
        return data

    def block(self, number: int, what: str, count: int = 1) -> bytes:
        if not 0 < number or number + count > self.blocks_count:
            self._fail(f"{what}: block {number} is outside the file system's "
                       f"{self.blocks_count} blocks")
        return self._read(number * self.block_size, count * self.block_size, what)

    def facts(self) -> Ext4Facts:
        sb = self.sb
        uuid = sb["s_uuid"].hex()
        return Ext4Facts(
            block_size=self.block_size, blocks_count=self.blocks_count,
            free_blocks=sb["s_free_blocks_count_lo"] | (sb["s_free_blocks_hi"] << 32
                                                        if self.desc_size > 32 else 0),
            inodes_count=self.inodes_count, free_inodes=sb["s_free_inodes_count"],
            inode_size=self.inode_size, groups=self.groups, desc_size=self.desc_size,
            uuid=f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}",
            volume_name=sb["s_volume_name"].rstrip(b"\0").decode("utf-8", "backslashreplace"),
            features_compat=sb["s_feature_compat"], features_incompat=sb["s_feature_incompat"],
            features_ro_compat=sb["s_feature_ro_compat"], mkfs_time=sb["s_mkfs_time"],
            has_journal=bool(sb["s_feature_compat"] & c.COMPAT_HAS_JOURNAL))

    # ------------------------------------------------------------------------------ inodes

    def group_desc(self, group: int) -> dict[str, int]:
        """Group `group`'s descriptor (a 32-byte one with its 64bit halves zero)."""
        raw = self._read(self.gdt_block * self.block_size + group * self.desc_size,
                         self.desc_size, f"group {group} descriptor")
        return GROUP_DESC.unpack(raw[:GROUP_DESC.size].ljust(GROUP_DESC.size, b"\0"))

    def _group_inode_table(self, group: int) -> int:
        desc = self.group_desc(group)
        table = desc["bg_inode_table_lo"] | (
            desc["bg_inode_table_hi"] << 32 if self.desc_size > DESC_SIZE_32 else 0)
        last = table + -(-self.inodes_per_group * self.inode_size // self.block_size)
        if not 0 < table or last > self.blocks_count:
            self._fail(f"group {group} descriptor: inode table at block {table} is outside the "
                       f"file system's {self.blocks_count} blocks")
        return table

    def inode(self, number: int) -> Inode:
        if not 0 < number <= self.inodes_count:
            self._fail(f"inode {number} is out of range (the file system has "
                       f"{self.inodes_count})")
        group, index = divmod(number - 1, self.inodes_per_group)
        table = self._desc(group)
        raw = self._read(table * self.block_size + index * self.inode_size, self.inode_size,
                         f"inode {number}")
        fields = INODE.unpack(raw[:INODE.size].ljust(INODE.size, b"\0"))
        extra = fields["i_extra_isize"] if self.inode_size > c.GOOD_OLD_INODE_SIZE else 0
        if extra % 4 or c.GOOD_OLD_INODE_SIZE + extra > self.inode_size:
            self._fail(f"inode {number}: i_extra_isize {extra} is out of range")
        if self.csum_seed is not None:
            self._check_inode_csum(number, raw, fields, extra)
        has_mtime_extra = extra >= INODE.offset("i_mtime_extra") + 4 - c.GOOD_OLD_INODE_SIZE
        mtime_extra = fields["i_mtime_extra"] if has_mtime_extra else 0
        seconds = fields["i_mtime"] - (1 << 32 if fields["i_mtime"] & 0x80000000 else 0)
        return Inode(
            number=number, mode=fields["i_mode"],
            uid=fields["i_uid"] | fields["l_i_uid_high"] << 16,
            gid=fields["i_gid"] | fields["l_i_gid_high"] << 16,
            mtime=seconds + ((mtime_extra & 3) << 32), mtime_ns=mtime_extra >> 2,
            size=fields["i_size_lo"] | fields["i_size_high"] << 32, flags=fields["i_flags"],
            links=fields["i_links_count"], i_block=fields["i_block"],
            file_acl=fields["i_file_acl_lo"] | fields["l_i_file_acl_high"] << 32,
            ibody=raw[c.GOOD_OLD_INODE_SIZE + extra:])

    # ----------------------------------------------------------------------------- extents

    def extents(self, inode: Inode, tree_blocks: set[int] | None = None
                ) -> Iterator[tuple[int, int, int | None]]:
        """(first logical block, length, first physical block or None when unwritten), in
        logical order, each checked to lie inside the file system; the numbers of the extent
        tree's own blocks (index and leaf blocks below the inode) are added to `tree_blocks`."""
        if inode.flags & INLINE_DATA_FL:
            self._fail(f"inode {inode.number}: inline data (the inline_data feature) is not "
                       "read by composer")
        if not inode.flags & c.EXTENTS_FL:
            if inode.size == 0 or not any(inode.i_block):
                return
            self._fail(f"inode {inode.number}: block maps (no extents flag) are not read by "
                       "composer; ext4 images use extents")
        visited: set[int] = set() if tree_blocks is None else tree_blocks
        yield from self._extent_node(inode.number, inode.i_block, None, 0, visited)

    def _extent_node(self, ino: int, node: bytes, depth: int | None, level: int,
                     visited: set[int]) -> Iterator[tuple[int, int, int | None]]:
        where = f"inode {ino}: extent " + ("header in the inode" if level == 0 else
                                           f"tree block at level {level}")
        h = EXTENT_HEADER.unpack(node)
        if h["eh_magic"] != c.EXTENT_MAGIC:
            self._fail(f"inode {ino}: extent header magic 0x{h['eh_magic']:04X}, "
                       f"not 0x{c.EXTENT_MAGIC:04X}")
        room = (len(node) - EXTENT_HEADER.size) // EXTENT.size
        if h["eh_depth"] > MAX_EXTENT_DEPTH or (depth is not None and h["eh_depth"] != depth):
            self._fail(f"{where}: depth {h['eh_depth']}, "
                       + (f"not {depth}" if depth is not None and h["eh_depth"] <= 5
                          else f"more than {MAX_EXTENT_DEPTH}"))
        if h["eh_entries"] > min(h["eh_max"], room):
            self._fail(f"{where}: {h['eh_entries']} entries, more than fit "
                       f"({min(h['eh_max'], room)})")
        for i in range(h["eh_entries"]):
            at = EXTENT_HEADER.size + i * EXTENT.size
            if h["eh_depth"] == 0:
                e = EXTENT.unpack(node, at)
                length, unwritten = e["ee_len"], e["ee_len"] > UNWRITTEN_LEN
                if unwritten:
                    length -= UNWRITTEN_LEN
                start = e["ee_start_lo"] | e["ee_start_hi"] << 32
                if length == 0 or not 0 < start or start + length > self.blocks_count:
                    self._fail(f"{where}: extent {i} (blocks {start}+{length}) points outside "
                               f"the file system's {self.blocks_count} blocks")
                yield e["ee_block"], length, None if unwritten else start
                continue
            idx = EXTENT_INDEX.unpack(node, at)
            leaf = idx["ei_leaf_lo"] | idx["ei_leaf_hi"] << 32
            if leaf in visited or len(visited) >= self.blocks_count:
                self._fail(f"{where}: index {i} points to block {leaf} again (a loop)")
            visited.add(leaf)
            child = self.block(leaf, f"inode {ino}: extent index {i} at level {level}")
            yield from self._extent_node(ino, child, h["eh_depth"] - 1, level + 1, visited)

    def chunks(self, inode: Inode) -> Iterator[bytes]:
        """The file's bytes up to i_size, holes and unwritten extents as zeros, in pieces of
        at most one extent run's worth of reads (bounded by READ_BLOCKS)."""
        size, bs, pos = inode.size, self.block_size, 0
        for first, length, start in self.extents(inode):
            at = first * bs
            if at < pos:
                self._fail(f"inode {inode.number}: extents overlap or are out of order at "
                           f"logical block {first}")
            if at >= size:
                break
            yield from _zeros(at - pos)
            end = min(at + length * bs, size)
            if start is None:
                yield from _zeros(end - at)
            else:
                done = 0
                while at + done < end:
                    n = min(READ_BLOCKS, -(-(end - at - done) // bs))
                    data = self.block(start + done // bs, f"inode {inode.number}: data", n)
                    data = data[:end - at - done]
                    done += len(data)
                    yield data
            pos = end
        yield from _zeros(size - pos)

    def read_all(self, inode: Inode, limit: int) -> bytes:
        """A small file's bytes (a symlink target), refused above `limit`."""
        if inode.size > limit:
            self._fail(f"inode {inode.number}: size {inode.size} is more than {limit}")
        return b"".join(self.chunks(inode))

    # ------------------------------------------------------------------------- directories

    def dir_entries(self, inode: Inode) -> Iterator[tuple[bytes, int]]:
        """(name, inode number) of each live entry but . and .., read as linear leaf blocks:
        an htree's root is "." and a ".." whose rec_len spans the block, its nodes one empty
        entry (inode 0) over the whole block, so neither yields a name."""
        bs = self.block_size
        if inode.size % bs:
            self._fail(f"inode {inode.number}: directory size {inode.size} is not a multiple "
                       f"of the block size")
        for first, length, start in self.extents(inode):
            for k in range(length):
                if (first + k) * bs >= inode.size:
                    return
                if start is None:
                    continue
                block = self.block(start + k, f"inode {inode.number}: directory block")
                yield from self._block_entries(inode.number, first + k, block)

    def _block_entries(self, ino: int, lblk: int, block: bytes) -> Iterator[tuple[bytes, int]]:
        at = 0
        while at < len(block):
            if at + DIR_ENTRY.size > len(block):
                self._fail(f"inode {ino}: directory block {lblk}: an entry at byte {at} runs "
                           "past the block")
            d = DIR_ENTRY.unpack(block, at)
            rec_len, name_len = d["rec_len"], d["name_len"]
            if rec_len < DIR_ENTRY.size or rec_len % 4 or at + rec_len > len(block) or \
                    DIR_ENTRY.size + name_len > rec_len:
                self._fail(f"inode {ino}: directory block {lblk}: entry at byte {at} has "
                           f"rec_len {rec_len} and name_len {name_len}, which do not fit")
            if d["inode"]:
                name = block[at + DIR_ENTRY.size:at + DIR_ENTRY.size + name_len]
                if name not in (b".", b".."):
                    if not name or b"/" in name or b"\0" in name:
                        self._fail(f"inode {ino}: directory block {lblk}: entry at byte {at} "
                                   f"has the name {name!r}")
                    yield name, d["inode"]
            at += rec_len

    # ------------------------------------------------------------------------------ xattrs

    def xattrs(self, inode: Inode) -> list[tuple[bytes, bytes]]:
        """(full name, value) of every extended attribute, in-inode then block, sorted."""
        found: list[tuple[bytes, bytes]] = []
        body = inode.ibody
        if len(body) >= 4 and XATTR_IBODY_HEADER.unpack(body)["h_magic"] == XATTR_MAGIC:
            region = body[XATTR_IBODY_HEADER.size:]
            found += self._xattr_entries(f"inode {inode.number}: in-inode xattrs", region, 0,
                                         region)
        if inode.file_acl:
            block = self.block(inode.file_acl, f"inode {inode.number}: xattr block")
            h = XATTR_BLOCK_HEADER.unpack(block)
            if h["h_magic"] != XATTR_MAGIC:
                self._fail(f"inode {inode.number}: xattr block {inode.file_acl} magic "
                           f"0x{h['h_magic']:08X}, not 0x{XATTR_MAGIC:08X}")
            found += self._xattr_entries(f"inode {inode.number}: xattr block", block,
                                         XATTR_BLOCK_HEADER.size, block)
        return sorted(found)

    def _xattr_entries(self, where: str, table: bytes, at: int,
                       values: bytes) -> list[tuple[bytes, bytes]]:
        found = []
        while at + 4 <= len(table) and table[at:at + 4] != b"\0\0\0\0":
            if at + XATTR_ENTRY.size > len(table):
                self._fail(f"{where}: entry at byte {at} runs past the end")
            e = XATTR_ENTRY.unpack(table, at)
            name_at = at + XATTR_ENTRY.size
            name = table[name_at:name_at + e["e_name_len"]]
            offs, size = e["e_value_offs"], e["e_value_size"]
            if len(name) != e["e_name_len"] or e["e_value_inum"] or offs + size > len(values):
                self._fail(f"{where}: entry at byte {at} ({name!r}) lies outside its table "
                           "or keeps its value in an inode (ea_inode), which is not read")
            prefix = _XATTR_PREFIX.get(e["e_name_index"], b"")
            found.append((prefix + name, values[offs:offs + size]))
            at = name_at + (e["e_name_len"] + 3) // 4 * 4
        return found

    # ------------------------------------------------------------------------------- walk

    def entries(self) -> Iterator[Ext4Entry]:
        """Every entry from the root down, a directory's children sorted by name and each
        followed by what is below it. Hard links show as the same inode number twice."""
        root = self.inode(c.ROOT_INO)
        if root.kind is not Kind.DIR:
            self._fail(f"inode {c.ROOT_INO} (the root) is not a directory (mode 0o{root.mode:o})")
        yield Ext4Entry(b"/", Kind.DIR, root)
        # a stack of (path, directory inode number); directories already read are refused, so
        # a directory loop ends rather than recursing forever
        seen_dirs = {c.ROOT_INO}
        stack = [(b"", root)]
        while stack:
            folder, inode = stack.pop()
            children = sorted(self.dir_entries(inode))
            below = []
            for name, number in children:
                entry = self._entry(folder + b"/" + name, self.inode(number))
                yield entry
                if entry.kind is Kind.DIR:
                    if number in seen_dirs:
                        self._fail(f"inode {number}: directory {entry.path!r} appears twice "
                                   "(a directory loop or hard-linked directory)")
                    seen_dirs.add(number)
                    below.append((entry.path, entry.inode))
            # children come before their subtrees here; sorting of a whole tree is the
            # caller's (composer.tree.sort_key)
            stack.extend(reversed(below))

    def _entry(self, path: bytes, inode: Inode) -> Ext4Entry:
        kind = inode.kind
        if kind is None:
            self._fail(f"inode {inode.number} ({path!r}): mode 0o{inode.mode:o} is no file type")
        assert kind is not None
        if kind is Kind.SYMLINK:
            if inode.size < len(inode.i_block) and not inode.flags & (c.EXTENTS_FL |
                                                                        INLINE_DATA_FL):
                return Ext4Entry(path, kind, inode, target=inode.i_block[:inode.size])
            return Ext4Entry(path, kind, inode, target=self.read_all(inode, self.block_size))
        if kind in (Kind.CHAR, Kind.BLOCK):
            return Ext4Entry(path, kind, inode, rdev=_rdev(inode.i_block))
        return Ext4Entry(path, kind, inode)


READ_BLOCKS = 256  # blocks per read of file data: 1 MiB at 4 KiB


def _zeros(count: int) -> Iterator[bytes]:
    while count > 0:
        n = min(count, len(ZERO_CHUNK))
        yield ZERO_CHUNK[:n]
        count -= n


def _rdev(i_block: bytes) -> tuple[int, int]:
    """A device number from i_block: the old 16-bit form in word 0, else the new in word 1
    (kernel fs/ext4/inode.c ext4_inode_blocks / old_decode_dev, new_decode_dev)."""
    old = int.from_bytes(i_block[0:4], "little")
    if old:
        return (old >> 8) & 0xFF, old & 0xFF
    new = int.from_bytes(i_block[4:8], "little")
    return (new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00)
