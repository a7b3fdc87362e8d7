"""The write phase: metadata from the plan, then file data streamed into planned blocks.

The image is created at full size and only blocks holding non-zero bytes are written, so free
space (and zero data) stays as holes on the host. The block map is not what was written but
what the file system allocated: every block the block bitmap marks in use (superblock and GDT
copies, bitmaps, inode tables, journal, extent-tree, directory, symlink, xattr and file data
blocks), whatever its bytes. A block left out of the map is "don't care" to bmaptool and
fastboot and keeps whatever the device held before; an allocated block of zeros left out would
read back as stale bytes inside a file or as garbage metadata.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import os
import stat
import struct
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from composer.content import CHUNK, ContentStore, read_full
from composer.errors import ComposerError
from composer.fs.base import Progress, WriteRequest, WriteResult, merge_extents, no_progress
from composer.fs.ext4 import xattr as xa
from composer.fs.ext4.constants import (
    DESC_SIZE,
    EXTENTS_FL,
    INDEX_FL,
    INODE_SIZE,
    JOURNAL_INO,
    SUPERBLOCK_OFFSET,
)
from composer.fs.ext4.csum import crc, fs_seed, inode_seed
from composer.fs.ext4.directory import build_blocks
from composer.fs.ext4.extents import Extent, build_tree, inode_root
from composer.fs.ext4.inode import InodeData, pack_inode, pack_inode_values
from composer.fs.ext4.journal import journal_superblock
from composer.fs.ext4.planner import Placed, Plan, Run
from composer.fs.ext4.superblock import GroupDesc, SuperFields, pack_desc, pack_superblock
from composer.tree import Content, Kind

_NS = 1_000_000_000
_ZERO_CHUNK = bytes(CHUNK)
_NO_ROOT = bytes(60)  # i_block of an inode that holds nothing there


class _Out:
    """pwrite with progress reports.

    Small writes that follow each other (a run of small files allocated back to back) are
    gathered into one buffer; the bytes between the end of one piece and the next block
    boundary are zero anyway (the unused tail of a file's last block), so they are written
    as zeros to keep the run contiguous. This saves tens of thousands of syscalls.
    """

    GATHER_MAX = 4 << 20
    DIRECT_MIN = 256 << 10

    def __init__(self, fd: int, progress: Progress, block_size: int) -> None:
        self.fd = fd
        self.progress = progress
        self.block_size = block_size
        self._buf = bytearray()
        self._start = 0
        self._pending = 0  # piece bytes in _buf (without the zero gaps)

    def put(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        gap = offset - (self._start + len(self._buf))
        bs = self.block_size
        if self._buf and 0 <= gap < bs and offset % bs == 0 and \
                n < self.DIRECT_MIN and len(self._buf) + gap + n <= self.GATHER_MAX:
            if gap:
                self._buf += bytes(gap)
            self._buf += data
            self._pending += n
            return
        self.flush()
        if n >= self.DIRECT_MIN:  # big pieces go straight out, without a copy
            self._pwrite(offset, data)
            self.progress(n)
        else:
            self._start = offset
            self._buf += data
            self._pending = n

    def unwritten_from(self, offset: int) -> int:
        """`offset`, or where the bytes still gathered here start when that is lower."""
        return min(offset, self._start) if self._buf else offset

    def put_block(self, block: int, data: bytes | bytearray | memoryview) -> None:
        self.put(block * self.block_size, data)

    def flush(self) -> None:
        if self._buf:
            self._pwrite(self._start, self._buf)
            self._buf = bytearray()
            self.progress(self._pending)
            self._pending = 0

    def _pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        done = 0
        view = memoryview(data)
        while done < len(view):  # pwrite may write less than asked for
            done += os.pwrite(self.fd, view[done:], offset + done)


def _set_bits(bm: bytearray, start: int, n: int) -> None:
    """Set bits start .. start+n-1 (LSB first within a byte)."""
    end = start + n
    while start < end and start & 7:
        bm[start >> 3] |= 1 << (start & 7)
        start += 1
    full = (end - start) >> 3
    if full:
        bm[start >> 3:(start >> 3) + full] = b"\xff" * full
        start += full << 3
    while start < end:
        bm[start >> 3] |= 1 << (start & 7)
        start += 1


def _device_i_block(major: int, minor: int) -> bytes:
    """Old encoding for small numbers, new (Linux huge dev_t) encoding otherwise (§5.8)."""
    if major < 256 and minor < 256:
        return struct.pack("<II", (major << 8) | minor, 0).ljust(60, b"\0")
    new = (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)
    return struct.pack("<II", 0, new).ljust(60, b"\0")


def _pack_node(buf: bytearray, off: int, p: Placed, tree_root: bytes, block_size: int,
               iseed: int) -> None:
    """The inode of a placed node, packed at buf[off:]."""
    node = p.node
    e = node.entry
    flags = 0
    size = 0
    i_block = tree_root
    if node.uses_extents:
        flags = EXTENTS_FL
    if e.kind is Kind.FILE:
        size = e.size
    elif e.kind is Kind.DIR:
        assert node.dir is not None
        size = node.dir.nblocks * block_size
        if node.dir.htree:
            flags |= INDEX_FL
    elif e.kind is Kind.SYMLINK:
        size = len(node.link_target)
        if not node.uses_extents:
            i_block = node.link_target.ljust(60, b"\0")
    elif e.kind in (Kind.CHAR, Kind.BLOCK):
        i_block = _device_i_block(*e.rdev)
    else:
        i_block = _NO_ROOT
    blocks = node.data_blocks + len(p.tree) + (1 if p.xattr_block else 0)
    pack_inode_values(
        buf, off, iseed, e.kind.ifmt | (e.mode & 0o7777), e.uid, e.gid, size, node.links,
        blocks * (block_size // 512), flags, i_block, e.mtime_ns, p.xattr_block,
        xa.ibody_area(node.xattrs.ibody) if node.xattrs.ibody else b"")


def _extent_blocks(extents: tuple[Extent, ...]) -> Iterator[tuple[int, int, int]]:
    """(first logical block, first physical block, length) of each extent."""
    for e in extents:
        yield e.lblk, e.pblk, e.length


def write_image(req: WriteRequest, plan: Plan, out_path: Path, store: ContentStore,
                progress: Progress, final: Progress = no_progress) -> WriteResult:
    """Write the image; `final(n)` whenever its first n bytes have their final value (the
    data of files comes last, mostly in block order: see `_Watermark`)."""
    # A fresh file rather than O_TRUNC: ext4 hosts (auto_da_alloc) flush a file truncated to 0
    # when it is closed, which would make us wait for the whole image to reach the disk.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out_path)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.ftruncate(fd, plan.image_size)
        out = _Out(fd, progress, plan.geometry.block_size)
        _write_metadata(req, plan, out)
        _write_data(plan, out, store, final)
        out.flush()
        final(plan.image_size)
    except BaseException:
        os.close(fd)
        os.unlink(out_path)  # never leave a half-written image behind
        raise
    os.close(fd)
    return WriteResult(plan.image_size, block_map(plan))


def block_map(plan: Plan) -> tuple[tuple[int, int], ...]:
    """(offset, length) byte ranges of every allocated block: the runs the block bitmap marks
    in use, taken from the same plan the bitmap is built from (`_write_groups`)."""
    runs: list[Run] = [*plan.geometry.reserved_runs(), *plan.used]
    bs = plan.geometry.block_size
    return merge_extents([(start * bs, n * bs) for start, n in runs])


class _InodeTables:
    """Each group's inode table, grown by whole blocks as inodes land in it."""

    def __init__(self, groups: int, ipg: int, block_size: int) -> None:
        self.ipg = ipg
        self.block_size = block_size
        self.per_block = block_size // INODE_SIZE
        self.tables = [bytearray() for _ in range(groups)]

    def slot(self, ino: int) -> tuple[bytearray, int]:
        g, idx = divmod(ino - 1, self.ipg)
        buf = self.tables[g]
        need = (idx // self.per_block + 1) * self.block_size
        if len(buf) < need:
            buf.extend(bytes(need - len(buf)))
        return buf, idx * INODE_SIZE

    def flush(self, group: int, plan: Plan, out: _Out) -> None:
        if self.tables[group]:
            out.put_block(plan.inode_tables[group], self.tables[group])
            self.tables[group] = bytearray()


def _csum_uuid(req: WriteRequest) -> uuid.UUID | None:
    """The UUID the checksums derive from when it is not the file system's own (the
    metadata_csum_seed feature: a device's UUID then changes only the superblocks)."""
    return req.reserve.seed_uuid if req.reserve is not None else None


def _write_metadata(req: WriteRequest, plan: Plan, out: _Out) -> None:
    seed = fs_seed((_csum_uuid(req) or req.uuid).bytes)
    geo = plan.geometry
    itables = _InodeTables(geo.groups, geo.ipg, geo.block_size)
    journal_root = _write_journal(req, plan, out, itables, seed) if plan.journal_blocks else None
    dirs_per_group = _write_inodes(plan, out, itables, seed)
    free_blocks, free_inodes, descs = _write_groups(plan, out, itables, dirs_per_group, seed)
    _write_superblocks(req, plan, out, free_blocks, free_inodes, descs, journal_root)


def _write_journal(req: WriteRequest, plan: Plan, out: _Out, itables: _InodeTables,
                   seed: int) -> bytes:
    """The journal inode, its extent tree and the jbd2 superblock; returns its i_block."""
    bs = plan.geometry.block_size
    tree = build_tree(plan.journal_extents, plan.journal_tree, inode_seed(seed, JOURNAL_INO),
                      bs)
    for blk, data in tree.blocks:
        out.put_block(blk, data)
    buf, off = itables.slot(JOURNAL_INO)
    pack_inode(buf, off, JOURNAL_INO, InodeData(
        st_mode=stat.S_IFREG | 0o600, uid=0, gid=0, size=plan.journal_blocks * bs,
        links=1, sectors=(plan.journal_blocks + len(plan.journal_tree)) * (bs // 512),
        flags=EXTENTS_FL, i_block=tree.root, time_ns=req.epoch * _NS), seed)
    out.put_block(plan.journal_extents[0].pblk,
                  journal_superblock(plan.journal_blocks, req.uuid.bytes, bs))
    return tree.root


def _write_inodes(plan: Plan, out: _Out, itables: _InodeTables, seed: int) -> list[int]:
    """Every inode with its extent tree, directory blocks, slow symlink and xattr block;
    returns the number of directories per group."""
    ipg = itables.ipg
    bs = plan.geometry.block_size
    dirs_per_group = [0] * plan.geometry.groups
    current = 0  # inodes come in ascending order: finished groups' tables can go out early
    for p in plan.placed:
        node = p.node
        ino = node.ino
        group = (ino - 1) // ipg
        if group != current:
            itables.flush(current, plan, out)
            current = group
        if node.entry.kind is Kind.DIR:
            dirs_per_group[group] += 1
        buf, off = itables.slot(ino)
        _write_node(p, out, buf, off, seed, bs)
    return dirs_per_group


def _write_node(p: Placed, out: _Out, buf: bytearray, off: int, seed: int, bs: int) -> None:
    """One inode, packed at buf[off:], with its extent tree, directory blocks, slow symlink
    and xattr block written out."""
    node = p.node
    ino = node.ino
    iseed = inode_seed(seed, ino)
    root = _NO_ROOT
    if node.uses_extents and not p.tree:
        root = inode_root(p.extents)
    elif node.uses_extents:
        tree = build_tree(p.extents, p.tree, iseed, bs)
        root = tree.root
        for blk, data in tree.blocks:
            out.put_block(blk, data)
    kind = node.entry.kind
    if kind is Kind.DIR:
        assert node.dir is not None
        _put_mapped(out, p.extents, build_blocks(node.dir, ino, node.parent, iseed))
    elif kind is Kind.SYMLINK and node.uses_extents:
        out.put_block(p.extents[0].pblk, node.link_target)
    if p.xattr_block:
        out.put_block(p.xattr_block,
                      xa.xattr_block(node.xattrs.block, p.xattr_block, seed, bs))
    _pack_node(buf, off, p, root, bs, iseed)


def _write_groups(plan: Plan, out: _Out, itables: _InodeTables, dirs_per_group: list[int],
                  seed: int) -> tuple[int, int, bytearray]:
    """Bitmaps, the remaining inode tables and the group descriptors; returns the free block
    and inode counts and the descriptor table."""
    geo = plan.geometry
    ipg = geo.ipg
    bs = geo.block_size
    bpg = geo.blocks_per_group
    # block bitmap of the whole file system (bit 0: s_first_data_block), padded with ones
    # past the last block
    first = geo.first_data_block
    nbits = geo.groups * bpg
    bbm = bytearray(nbits // 8)
    for start, n in geo.reserved_runs():
        _set_bits(bbm, start - first, n)
    for start, n in plan.used:
        _set_bits(bbm, start - first, n)
    if geo.nblocks - first < nbits:
        _set_bits(bbm, geo.nblocks - first, nbits - (geo.nblocks - first))
    last = plan.prepared.last_ino
    # inode numbers kept for a device's build that this build leaves unused
    have = {p.node.ino for p in plan.placed}
    unused = [ino for ino, _ in plan.prepared.room if ino not in have]
    descs = bytearray(geo.gdt_blocks * bs)
    free_blocks = free_inodes = 0
    gbytes = bpg // 8
    for g in range(geo.groups):
        bm = memoryview(bbm)[g * gbytes:(g + 1) * gbytes]
        gfree = bpg - int.from_bytes(bm, "little").bit_count()
        used_inodes = max(0, min(ipg, last - g * ipg))
        ibm = bytearray(bs)
        _set_bits(ibm, 0, used_inodes)
        for ino in unused:
            if g * ipg < ino <= g * ipg + used_inodes:
                ibm[(ino - 1 - g * ipg) // 8] &= ~(1 << ((ino - 1 - g * ipg) % 8)) & 0xFF
        in_use = used_inodes - sum(1 for ino in unused if g * ipg < ino <= g * ipg + used_inodes)
        _set_bits(ibm, ipg, bs * 8 - ipg)  # padding past the group's inodes: ones
        out.put_block(plan.block_bitmaps[g], bm)
        out.put_block(plan.inode_bitmaps[g], ibm)
        itables.flush(g, plan, out)
        free_blocks += gfree
        free_inodes += ipg - in_use
        pack_desc(descs, g * DESC_SIZE, g, GroupDesc(
            block_bitmap=plan.block_bitmaps[g], inode_bitmap=plan.inode_bitmaps[g],
            inode_table=plan.inode_tables[g], free_blocks=gfree,
            free_inodes=ipg - in_use, used_dirs=dirs_per_group[g],
            itable_unused=ipg - used_inodes,
            block_bitmap_csum=crc(seed, bm), inode_bitmap_csum=crc(seed, ibm[:ipg // 8])), seed)
    return free_blocks, free_inodes, descs


def _write_superblocks(req: WriteRequest, plan: Plan, out: _Out, free_blocks: int,
                       free_inodes: int, descs: bytearray, journal_root: bytes | None) -> None:
    """The superblock and descriptor table at the start of every sparse_super group."""
    geo = plan.geometry
    bs = geo.block_size
    fields = SuperFields(
        block_size=bs, first_data_block=geo.first_data_block,
        inodes_count=geo.inodes_count, blocks_count=geo.nblocks,
        r_blocks_count=plan.reserved_blocks, free_blocks=free_blocks, free_inodes=free_inodes,
        ipg=geo.ipg, time=req.epoch, uuid=req.uuid.bytes,
        label=(req.label or "").encode("utf-8"), hash_seed=plan.prepared.hash_seed,
        checksum_seed=fs_seed(seed.bytes) if (seed := _csum_uuid(req)) is not None else None,
        journal_i_block=journal_root, journal_size=plan.journal_blocks * bs)
    for g in geo.super_groups:
        sb = pack_superblock(fields, g)
        start = geo.group_first(g)
        if g == 0:  # the first 1024 bytes (boot area) stay a hole
            out.put(SUPERBLOCK_OFFSET, sb)
        else:
            out.put_block(start, sb)
        out.put_block(start + 1, descs)


class _Pieces(_Out):
    """Keeps what is written, (byte offset, bytes) in order, instead of writing a file."""

    def __init__(self, block_size: int) -> None:
        super().__init__(-1, lambda _n: None, block_size)
        self.pieces: list[tuple[int, bytes]] = []

    def put(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.pieces.append((offset, bytes(data)))

    def flush(self) -> None:
        pass


class _Slots(_InodeTables):
    """Inodes packed one by one, each at its own place; the rest of the inode table is the
    other image's."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(0, plan.geometry.ipg, plan.geometry.block_size)
        self.plan = plan
        self.packed: list[tuple[int, bytearray]] = []

    def slot(self, ino: int) -> tuple[bytearray, int]:
        g, idx = divmod(ino - 1, self.ipg)
        buf = bytearray(INODE_SIZE)
        self.packed.append((self.plan.inode_tables[g] * self.block_size + idx * INODE_SIZE, buf))
        return buf, 0

    def flush(self, group: int, plan: Plan, out: _Out) -> None:
        pass


def write_delta(req: WriteRequest, plan: Plan, changed: tuple[Placed, ...],
                freed: tuple[Run, ...]) -> list[tuple[int, bytes]]:
    """The writes, (byte offset, bytes) to apply in order, that turn the image of another plan
    into `plan`'s when the two differ only in the inodes `changed` (with inline content), the
    blocks `freed` and the UUID (composer.fs.ext4.planner.replan): zeros over the freed blocks,
    the changed inodes with their blocks and data, then what `write_image` writes of the
    journal, bitmaps, descriptors and superblocks. Everything else the other image holds is
    what `write_image` would write for `plan`."""
    geo = plan.geometry
    bs = geo.block_size
    seed = fs_seed((_csum_uuid(req) or req.uuid).bytes)
    out = _Pieces(bs)
    slots = _Slots(plan)
    for start, n in freed:
        out.put_block(start, bytes(n * bs))
    journal_root = _write_journal(req, plan, out, slots, seed) if plan.journal_blocks else None
    for p in changed:
        buf, off = slots.slot(p.node.ino)
        _write_node(p, out, buf, off, seed, bs)
        content = p.node.entry.content
        if p.node.entry.kind is Kind.FILE and content is not None and content.size:
            if content.inline is None:
                raise ValueError(f"{p.node.entry.path}: write_delta needs inline content")
            _put_mapped(out, p.extents, content.inline + bytes(-content.size % bs))
    dirs_per_group = [0] * geo.groups
    for p in plan.placed:
        if p.node.entry.kind is Kind.DIR:
            dirs_per_group[(p.node.ino - 1) // geo.ipg] += 1
    free_blocks, free_inodes, descs = _write_groups(plan, out, slots, dirs_per_group, seed)
    _write_superblocks(req, plan, out, free_blocks, free_inodes, descs, journal_root)
    return out.pieces + [(offset, bytes(buf)) for offset, buf in slots.packed]


def _put_mapped(out: _Out, extents: tuple[Extent, ...], data: bytes) -> None:
    """Write `data` (logical block 0 onward) through the extent map."""
    bs = out.block_size
    for lblk, pblk, length in _extent_blocks(extents):
        piece = memoryview(data)[lblk * bs:(lblk + length) * bs]
        if piece:
            out.put_block(pblk, piece)


def _write_data(plan: Plan, out: _Out, store: ContentStore, final: Progress) -> None:
    # the placed inode of each content's file (a list of them for a content that two files
    # hold, which is rare: no list per file); a file map is made only when its data comes
    targets: dict[Content, Placed | list[Placed]] = {}
    for p in plan.placed:
        content = p.node.entry.content
        if p.node.entry.kind is Kind.FILE and content is not None and content.size:
            known = targets.setdefault(content, p)
            if known is not p:
                targets[content] = [*known, p] if type(known) is list else \
                    [known, p]  # type: ignore[list-item]
    if not targets:
        return
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    bs = out.block_size
    zero_block = bytes(bs)
    mark = _Watermark(targets.values(), out, final)
    wanted = list(targets)  # in inode order: a folder is read in the order of its blocks
    by_id = _ById(targets)
    del targets
    for content, stream in store.stream(wanted):
        held = by_id.pop(content)
        if held is None:
            continue
        if type(held) is list:
            holders = held
        else:
            holders = [held]  # type: ignore[list-item]
            if not held.more and content.size <= CHUNK and \
                    held.node.data_blocks * bs >= content.size:  # type: ignore[union-attr]
                # most files: one read into one extent from block 0 that holds all of it (no
                # holes), no file map to look places up in
                _put_small(out, content, stream, buf, held.start, zero_block)  # type: ignore
                mark.written(holders)
                continue
        places = [_FileMap.of(p.extents, bs) for p in holders]
        pos = 0
        while pos < content.size:
            want = min(CHUNK, content.size - pos)
            got = read_full(stream, view[:want])
            if got < want:
                raise ComposerError(
                    f"{content.source or 'inline'}:{content.member}: ended after {pos + got} of "
                    f"{content.size} bytes", hint="the input changed or is truncated")
            chunk = view[:want]
            for start, end in _nonzero_spans(buf, want, zero_block):
                for place in places:
                    if place.put(out, pos + start, chunk[start:end]) < end - start:
                        raise _data_in_hole(content, pos + start, pos + end)
            pos += want
        mark.written(holders)
    missing = by_id.left()
    if missing is not None:
        raise ComposerError(f"{missing.source}:{missing.member}: the source did not provide it")


class _ById:
    """The placed inode(s) of each content, found by the identity of the content a store hands
    back (stores yield the very objects they were given): the contents' ids sorted in an
    array beside their holders, 24 bytes a content for the whole data pass where the dict
    they are made from takes about 60."""

    __slots__ = ("_ids", "_contents", "_held")

    def __init__(self, targets: dict[Content, Placed | list[Placed]]) -> None:
        order = sorted(targets, key=id)
        self._ids = array.array("Q", map(id, order))
        self._contents = order  # holds the objects, so their ids stay theirs
        self._held: list[Placed | list[Placed] | None] = [targets[c] for c in order]

    def pop(self, content: Content) -> Placed | list[Placed] | None:
        """The holders of `content`, once; None when it was not wanted or already given."""
        ids = self._ids
        i = bisect.bisect_left(ids, id(content))
        if i == len(ids) or ids[i] != id(content):
            # an equal content that is another object: not what stores do, but allowed
            i = next((j for j, c in enumerate(self._contents) if c == content), -1)
            if i < 0:
                return None
        held = self._held[i]
        self._held[i] = None
        return held

    def left(self) -> Content | None:
        """A content that was not given, if any."""
        pairs = zip(self._contents, self._held, strict=True)
        return next((c for c, held in pairs if held is not None), None)


def _put_small(out: _Out, content: Content, stream: BinaryIO, buf: bytearray, first_block: int,
               zero_block: bytes) -> None:
    """A file of at most CHUNK bytes held whole by one extent from logical block 0."""
    size = content.size
    view = memoryview(buf)
    got = read_full(stream, view[:size])
    if got < size:
        raise ComposerError(
            f"{content.source or 'inline'}:{content.member}: ended after {got} of {size} bytes",
            hint="the input changed or is truncated")
    base = first_block * out.block_size
    for start, end in _nonzero_spans(buf, size, zero_block):
        out.put(base + start, view[start:end])


class _Watermark:
    """Tells `final` how many of the image's first bytes are final while file data is written.

    Metadata is all written before any file data, so the lowest block of the files whose data
    has not come yet (or the start of what `_Out` still gathers) is the mark. Data comes in
    block order from a folder (read in the order its blocks were allocated), so the mark then
    follows the writer closely; an archive comes in its own order, and the mark may stay
    behind until the end."""

    __slots__ = ("_lows", "_done", "_next", "_out", "_final", "_bs")

    def __init__(self, files: Iterable[Placed | list[Placed]], out: _Out,
                 final: Progress) -> None:
        # each file's lowest block, ascending: blocks are never shared between files, so they
        # are distinct (a file that is one hole has none: nothing of it is written); 9 bytes
        # a file (an array and a flag), not a heap of int objects
        lowest = [_lowest(holders if type(holders) is list else [holders])  # type: ignore
                  for holders in files]
        lowest.sort()
        self._lows = array.array("q", lowest[bisect.bisect_left(lowest, 0):])
        del lowest
        self._done = bytearray(len(self._lows))
        self._next = 0  # index of the lowest file not written yet
        self._out, self._final, self._bs = out, final, out.block_size
        self._report()

    def written(self, holders: list[Placed]) -> None:
        lowest = _lowest(holders)
        if lowest < 0:
            return
        lows, done = self._lows, self._done
        done[bisect.bisect_left(lows, lowest)] = 1
        i = self._next
        while i < len(done) and done[i]:
            i += 1
        self._next = i
        self._report()

    def _report(self) -> None:
        i = self._next
        mark = self._lows[i] * self._bs if i < len(self._lows) else 1 << 63
        self._final(self._out.unwritten_from(mark))


def _lowest(holders: list[Placed]) -> int:
    """The lowest block of a file's holders, -1 when they have none (all holes)."""
    return min((low for p in holders if (low := p.lowest) >= 0), default=-1)


def _nonzero_spans(buf: bytearray, n: int, zero_block: bytes) -> Iterator[tuple[int, int]]:
    """Spans of buf[:n] to write: zero blocks are not written (the image file is created sparse,
    so they already read as zero); they stay allocated and in the block map (`block_map`).

    Every test is a C scan of `buf` in place (`find`, `count`): slicing a bytearray copies it,
    and most files are small, so a copy per file cost more than the scan. Data without a whole
    zero block costs one `find` (a short file's zeros are written: the same bytes either way).
    """
    if n == CHUNK and buf == _ZERO_CHUNK:
        return
    if buf.find(zero_block, 0, n) < 0:
        yield 0, n
        return
    start = -1
    step = len(zero_block)  # the block size: a span never covers part of a hole
    for off in range(0, n, step):
        end = min(off + step, n)
        zero = buf.find(zero_block, off, end) == off if end - off == step else \
            buf.count(0, off, end) == end - off
        if zero:
            if start >= 0:
                yield start, off
                start = -1
        elif start < 0:
            start = off
    if start >= 0:
        yield start, n


class _FileMap:
    """A file's extents with the byte offset each one ends at, so the extents a range of the
    file touches are found by bisection (a file with many holes has many extents)."""

    __slots__ = ("extents", "ends", "block_size")

    def __init__(self, extents: tuple[Extent, ...], ends: list[int], block_size: int) -> None:
        self.extents = extents
        self.ends = ends
        self.block_size = block_size

    @staticmethod
    def of(extents: tuple[Extent, ...], block_size: int) -> _FileMap:
        return _FileMap(extents, [(e.lblk + e.length) * block_size for e in extents],
                        block_size)

    def put(self, out: _Out, pos: int, chunk: memoryview) -> int:
        """Write the bytes at file offset `pos` to wherever the extents put them; returns how
        many had a place (fewer when part of the range lies in a hole, which has no blocks)."""
        end = pos + len(chunk)
        placed = 0
        extents, ends = self.extents, self.ends
        bs = self.block_size
        i = bisect.bisect_right(ends, pos)  # the first extent that ends after pos
        while i < len(extents):
            e = extents[i]
            e_start = e.lblk * bs
            if e_start >= end:
                break
            lo = max(pos, e_start)
            hi = min(end, ends[i])
            out.put(e.pblk * bs + (lo - e_start), chunk[lo - pos:hi - pos])
            placed += hi - lo
            i += 1
        return placed


def _data_in_hole(content: Content, start: int, end: int) -> ComposerError:
    """Non-zero bytes where the scan saw a hole: the file changed between scan and write."""
    return ComposerError(
        f"{content.source or 'inline'}:{content.member}: non-zero bytes between offsets {start} "
        f"and {end}, where the source had a hole when it was scanned",
        hint="the input changed during the build; build again from an input that stays still")
