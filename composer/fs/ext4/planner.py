"""The plan: inode numbers, directory layouts and the block address of everything.

Planning reads metadata only (sizes, names), so the write phase can stream file data in any
order into places fixed here. Two stages:

* `prepare()` does everything that does not depend on the image size: validation, inode
  numbers, link counts, xattr placement, directory layouts (htree hashing included);
* `allocate()` places the group tables where mke2fs's flex_bg allocator puts them, then lays
  the prepared inodes out with one forward cursor: journal, then every inode in inode order
  (data, extent-tree blocks, xattr block). Files are contiguous except where a backup
  superblock/GDT or a flex group's tables are in the way.
"""

from __future__ import annotations

import bisect
import math
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from composer.fs.base import WriteRequest, merge_extents
from composer.fs.ext4 import xattr as xa
from composer.fs.ext4.constants import (
    EXTENT_MAX_LEN,
    EXTENTS_IN_INODE,
    FAST_SYMLINK_MAX,
    FIRST_INO,
    FT_BLKDEV,
    FT_CHRDEV,
    FT_DIR,
    FT_FIFO,
    FT_REG_FILE,
    FT_SOCK,
    FT_SYMLINK,
    LINK_MAX,
    LOG_GROUPS_PER_FLEX,
    LOST_FOUND,
    LOST_FOUND_BYTES,
    NAME_MAX,
    ROOT_INO,
)
from composer.fs.ext4.directory import Dirent, DirLayout, DirTooBig, plan_dir
from composer.fs.ext4.extents import Extent, extents_of, tree_block_count
from composer.fs.ext4.geometry import Geometry, GeometryError, make_geometry
from composer.fs.ext4.inode import TIME_MAX, TIME_MIN
from composer.fs.ext4.journal import default_journal_blocks
from composer.fs.ext4.sizetype import size_type
from composer.tree import Content, Entry, Kind, sort_key

MIB = 1 << 20
_NS = 1_000_000_000
_U32 = 0xFFFFFFFF
# Linux dev_t: 12-bit major, 20-bit minor (the "new" ext4 device encoding, §5.8)
MAX_MAJOR = (1 << 12) - 1
MAX_MINOR = (1 << 20) - 1

_FTYPE = {
    Kind.FILE: FT_REG_FILE, Kind.HARDLINK: FT_REG_FILE, Kind.DIR: FT_DIR,
    Kind.SYMLINK: FT_SYMLINK, Kind.CHAR: FT_CHRDEV, Kind.BLOCK: FT_BLKDEV, Kind.FIFO: FT_FIFO,
    Kind.SOCKET: FT_SOCK,
}

Run = tuple[int, int]


def encode_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Options:
    inodes: int | None
    reserved_pct: float
    journal_bytes: int | None  # None: no journal; else bytes (resolved default when not given)
    journal_default: bool
    headroom_pct: float
    block_size: int | None = None  # None: mke2fs's for the size type

    @staticmethod
    def of(req: WriteRequest) -> Options:
        o = req.options
        journal = o.get("journal")
        return Options(
            inodes=o.get("inodes"),
            reserved_pct=float(o.get("reserved", 5)),
            journal_bytes=None if journal == "none" else journal,
            journal_default=journal is None,
            headroom_pct=float(o.get("headroom", 10)),
            block_size=o.get("block_size"),
        )

    def journal_blocks(self, fs_blocks: int, block_size: int) -> int:
        if self.journal_default:
            return default_journal_blocks(fs_blocks)
        if self.journal_bytes is None:
            return 0
        return -(-self.journal_bytes // block_size)


@dataclass(frozen=True, slots=True)
class Node:
    """One inode to write, before block allocation."""

    ino: int
    entry: Entry  # for a HARDLINK's inode this is the FILE entry
    links: int
    parent: int  # the parent directory's inode (".." of a directory)
    xattrs: xa.XattrSplit
    dir: DirLayout | None = None
    data_blocks: int = 0  # data, directory or slow-symlink blocks (allocated ones only)
    # (first logical block, count) of the blocks that hold data, when the file has holes;
    # empty: the `data_blocks` blocks from logical block 0 on (no holes)
    data_runs: tuple[Run, ...] = ()

    # what follows from the fields above is not kept (8 bytes a field and inode)
    @property
    def link_target(self) -> bytes:
        """A symlink's target as stored; b"" for other kinds."""
        return encode_name(self.entry.target or "") if self.entry.kind is Kind.SYMLINK else b""

    @property
    def uses_extents(self) -> bool:
        """Fast symlinks and special files keep other things in i_block."""
        kind = self.entry.kind
        return kind is Kind.FILE or kind is Kind.DIR or self.data_blocks > 0


def data_runs(content: Content, block_size: int) -> tuple[Run, ...]:
    """The logical block runs of a file that hold source bytes (zero bytes included).

    A block stays a hole, with no extent and no allocation, only when the source's holes cover
    all of its bytes inside the file (the part before i_size, for the last block), as the kernel
    and `mke2fs -d` leave them. Empty when every block is a hole.
    """
    nblocks = -(-content.size // block_size)
    hole_runs: list[Run] = []
    for offset, length in merge_extents(list(content.holes)):  # touching holes join
        end = min(offset + length, content.size)
        first = -(-offset // block_size)
        last = nblocks if end >= content.size else end // block_size
        if first < last:
            hole_runs.append((first, last - first))
    runs: list[Run] = []
    cursor = 0
    for first, count in hole_runs:
        if first > cursor:
            runs.append((cursor, first - cursor))
        cursor = first + count
    if cursor < nblocks:
        runs.append((cursor, nblocks - cursor))
    return tuple(runs)


def _data_blocks(entry: Entry, layout: DirLayout | None, link_target: bytes,
                 runs: tuple[Run, ...] | None, block_size: int) -> int:
    kind = entry.kind
    if kind is Kind.FILE:
        if runs is not None:
            return sum(n for _, n in runs)
        return -(-entry.size // block_size)
    if kind is Kind.DIR:
        assert layout is not None
        return layout.nblocks
    if kind is Kind.SYMLINK and len(link_target) > FAST_SYMLINK_MAX:
        return 1
    return 0


def _tree_bound(nblocks: int, runs_between_holes: int, block_size: int) -> int:
    """Upper bound of extent-tree blocks: one extent per 32768 blocks, one more for each
    group start the file may cross (a superblock/GDT copy or a flex group's tables may be in
    the way there), plus one more per run of data between holes (an extent never spans a
    hole)."""
    if not nblocks:
        return 0
    crossings = -(-nblocks // (8 * block_size))  # group starts a run of nblocks may cross
    extents = -(-nblocks // EXTENT_MAX_LEN) + crossings + 2 * max(runs_between_holes, 1) - 1
    return tree_block_count(extents, block_size)


@dataclass(frozen=True, slots=True)
class Prepared:
    block_size: int
    nodes: tuple[Node, ...]  # inode order
    last_ino: int
    hash_seed: tuple[int, int, int, int]
    blocks: int  # data + dir + symlink + xattr blocks of all nodes
    tree_bound: int  # at most this many extent-tree blocks
    # (inode, blocks) kept for per-device builds (WriteRequest.reserve): the inode's blocks
    # are followed by free ones up to this many; an inode with no node stays free
    room: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Placed:
    node: Node
    # Most files are one extent from logical block 0 over all their `node.data_blocks`: that
    # extent is kept as its first block `start` alone, and `extents` makes it when asked (a
    # tuple and an Extent a file less: ~100 bytes). Otherwise `more` holds the extents.
    start: int
    more: tuple[Extent, ...]
    tree: tuple[int, ...]  # extent tree blocks
    xattr_block: int  # 0 when none

    @property
    def extents(self) -> tuple[Extent, ...]:
        if self.more or not self.node.data_blocks:
            return self.more
        return (Extent(0, self.start, self.node.data_blocks),)

    @property
    def lowest(self) -> int:
        """The first block of its data, -1 when it has none."""
        if self.more:
            return min(e.pblk for e in self.more)
        return self.start if self.node.data_blocks else -1


@dataclass(frozen=True, slots=True)
class Plan:
    geometry: Geometry
    image_size: int
    prepared: Prepared
    block_bitmaps: tuple[int, ...]
    inode_bitmaps: tuple[int, ...]
    inode_tables: tuple[int, ...]
    journal_extents: tuple[Extent, ...]
    journal_tree: tuple[int, ...]
    journal_blocks: int
    placed: tuple[Placed, ...]
    used: tuple[Run, ...]  # every allocated run except the sb/GDT copies
    reserved_blocks: int  # s_r_blocks_count
    # (inode, allocator cursor) where each personalization reserve's blocks start, so that a
    # device's file can be placed in its room without planning the whole image again (`replan`)
    room_at: tuple[tuple[int, int], ...] = ()

    @property
    def used_blocks(self) -> int:
        fixed = sum(n for _, n in self.geometry.reserved_runs())
        return fixed + sum(n for _, n in self.used)


class NoSpace(Exception):
    pass


def hash_seed_of(fs_uuid: uuid.UUID) -> tuple[int, int, int, int]:
    """Deterministic htree hash seed derived from the file-system UUID (never all zero)."""
    words = struct.unpack("<4I", uuid.uuid5(fs_uuid, "hash_seed").bytes)
    return words if any(words) else (1, 0, 0, 0)


# ------------------------------------------------------------------------------ prepare


@dataclass(frozen=True, slots=True)
class Numbered:
    """What `prepare` finds whatever the block size: the entries in path order, their inode
    numbers and link counts, each directory's entries, and the problems found on the way
    (message, hint). Made once when an auto size plans with 4 KiB blocks and then 1 KiB."""

    ordered: list[Entry]
    ino_of: dict[str, int]
    file_links: dict[str, int]
    children: dict[str, list[Entry]]  # the entries of each directory (Dirents: `dirents`)
    subdirs: dict[str, int]
    next_ino: int
    problems: tuple[tuple[str, str], ...]
    room: tuple[tuple[int, int], ...]  # (inode, bytes) each personalization reserve holds
    absent: tuple[tuple[str, int], ...] = ()  # reserved paths the tree lacks, with their inode


def number(req: WriteRequest) -> Numbered:
    problems: list[tuple[str, str]] = []

    def fail(message: str, hint: str) -> None:
        problems.append((message, hint))

    by_path = _index(req, fail)
    ordered = sorted(by_path.values(), key=lambda e: sort_key(e.path))
    room_bytes = dict(req.reserve.room) if req.reserve is not None else {}
    # a reserved path the tree lacks still takes its inode number, so later ones keep theirs
    absent = [p for p in room_bytes if p not in by_path and
              (parent := by_path.get(p.rpartition("/")[0] or "/")) is not None
              and parent.kind is Kind.DIR]
    ino_of, file_links, next_ino = _number_inodes(ordered, by_path, fail, absent)
    room = tuple(sorted((ino_of[p], n) for p, n in room_bytes.items() if p in ino_of))
    kept = tuple((p, ino_of.pop(p)) for p in absent)
    children, subdirs = _children(ordered, by_path, ino_of, fail)
    return Numbered(ordered, ino_of, file_links, children, subdirs, next_ino, tuple(problems),
                    room, kept)


def prepare(req: WriteRequest, err: Callable[[str, str], None],
            block_size: int, numbered: Numbered | None = None) -> Prepared | None:
    """Validate entries and build the size-independent part of the plan for `block_size`
    (`numbered`: what `number(req)` gave, when it was already made).

    `err(message, hint)` collects problems; returns None when there were any.
    """
    failures = [0]

    def fail(message: str, hint: str) -> None:
        failures[0] += 1
        err(message, hint)

    tree = numbered if numbered is not None else number(req)
    for message, hint in tree.problems:
        fail(message, hint)
    ino_of, file_links, children, subdirs = tree.ino_of, tree.file_links, tree.children, \
        tree.subdirs
    room = tuple((ino, -(-n // block_size)) for ino, n in tree.room)
    seed = hash_seed_of(req.reserve.seed_uuid if req.reserve is not None
                        and req.reserve.seed_uuid is not None else req.uuid)
    nodes: list[Node] = []
    total_blocks = tree_bound = 0
    for e in tree.ordered:
        if e.kind is Kind.HARDLINK or e.path not in ino_of:
            continue
        links = (file_links[e.path] if e.kind is Kind.FILE else
                 2 + subdirs.get(e.path, 0) if e.kind is Kind.DIR else 1)
        kids = dirents(children.get(e.path, []), ino_of) if e.kind is Kind.DIR else []
        node = _node(e, ino_of, links, kids, seed, fail, block_size)
        if node is None:
            continue
        total_blocks += node.data_blocks + (1 if node.xattrs.block else 0)
        if node.data_blocks > EXTENTS_IN_INODE:
            tree_bound += _tree_bound(node.data_blocks, len(node.data_runs), block_size)
        nodes.append(node)
    if failures[0]:
        return None
    nodes.sort(key=lambda n: n.ino)
    total_blocks += sum(n for _, n in room)  # at most this much more
    return Prepared(block_size, tuple(nodes), tree.next_ino - 1, seed, total_blocks, tree_bound,
                    room)


def _index(req: WriteRequest, fail: Callable[[str, str], None]) -> dict[str, Entry]:
    """Entries by path, with the root and lost+found made when the tree has none."""
    epoch_ns = req.epoch * _NS
    by_path: dict[str, Entry] = {}
    for e in req.entries:
        if e.path in by_path:
            fail(f"{e.path}: listed twice", "each path may appear once in a partition")
        by_path[e.path] = e
    root = by_path.setdefault("/", Entry("/", Kind.DIR, 0o755, 0, 0, epoch_ns))
    if root.kind is not Kind.DIR:
        fail("/: the root of an ext4 file system must be a directory", "make / a directory")
    by_path.setdefault(LOST_FOUND, Entry(LOST_FOUND, Kind.DIR, 0o700, 0, 0, epoch_ns))
    return by_path


def _number_inodes(ordered: list[Entry], by_path: dict[str, Entry],
                   fail: Callable[[str, str], None], absent: list[str]
                   ) -> tuple[dict[str, int], dict[str, int], int]:
    """Inode numbers: root 2, lost+found 11 (when a directory), then the rest in path order
    (the `absent` paths numbered too, in their place); a hard link shares its file's number.
    Returns (numbers, link counts of files, next)."""
    ino_of: dict[str, int] = {"/": ROOT_INO}
    next_ino = FIRST_INO
    if by_path[LOST_FOUND].kind is Kind.DIR:
        ino_of[LOST_FOUND] = FIRST_INO
        next_ino += 1
    file_links: dict[str, int] = {}
    numbered = ordered
    if absent:
        placeholders = [Entry(p, Kind.DIR, 0, 0, 0, 0) for p in absent]  # numbered only
        numbered = sorted([*ordered, *placeholders], key=lambda e: sort_key(e.path))
    for e in numbered:
        if e.path in ino_of or e.kind is Kind.HARDLINK:
            continue
        ino_of[e.path] = next_ino
        next_ino += 1
        if e.kind is Kind.FILE:
            file_links[e.path] = 1
    for e in ordered:
        if e.kind is not Kind.HARDLINK:
            continue
        target = by_path.get(e.target or "")
        if target is None or target.kind is not Kind.FILE:
            fail(f"{e.path}: hard link to {e.target!r}, which is not a regular file in "
                 "this partition", "hard links must point to a file of the same partition")
            continue
        ino_of[e.path] = ino_of[target.path]
        file_links[target.path] += 1
    return ino_of, file_links, next_ino


def _children(ordered: list[Entry], by_path: dict[str, Entry], ino_of: dict[str, int],
              fail: Callable[[str, str], None]
              ) -> tuple[dict[str, list[Entry]], dict[str, int]]:
    """Each directory's entries, and how many subdirectories it has (for its link count)."""
    children: dict[str, list[Entry]] = {}
    subdirs: dict[str, int] = {}
    for e in ordered:
        if e.path == "/":
            continue
        head, _, tail = e.path.rpartition("/")
        p = head or "/"
        name = encode_name(tail)
        if len(name) > NAME_MAX:
            fail(f"{e.path}: name is {len(name)} bytes long, ext4 allows {NAME_MAX}",
                 "shorten the file name")
        if not name or b"\0" in name:
            fail(f"{e.path}: invalid file name", "names must be non-empty and contain no NUL")
        pe = by_path.get(p)
        if pe is None or pe.kind is not Kind.DIR:
            fail(f"{e.path}: parent {p} is not a directory of this partition",
                 "every path needs its parent directory in the tree")
            continue
        if e.path not in ino_of:
            continue  # a broken hard link, reported above
        children.setdefault(p, []).append(e)
        if e.kind is Kind.DIR:
            subdirs[p] = subdirs.get(p, 0) + 1
    return children, subdirs


def dirents(kids: list[Entry], ino_of: dict[str, int]) -> list[Dirent]:
    """A directory's entries as Dirents. Made for one directory at a time, as it is planned:
    the Dirents and names of every directory at once would cost ~100 bytes an entry."""
    return [Dirent(encode_name(e.path.rpartition("/")[2]), ino_of[e.path], _FTYPE[e.kind])
            for e in kids]


def _node(e: Entry, ino_of: dict[str, int], links: int, kids: list[Dirent],
          seed: tuple[int, int, int, int],
          fail: Callable[[str, str], None], block_size: int) -> Node | None:
    """One inode's plan, after checking what ext4 can hold; None for a directory too big."""
    xattrs = _xattrs(e, fail, block_size)
    if not (0 <= e.uid <= _U32 and 0 <= e.gid <= _U32):
        fail(f"{e.path}: owner {e.uid}:{e.gid} does not fit 32 bits", "use ids below 4294967296")
    secs = e.mtime_ns // _NS
    if not TIME_MIN <= secs <= TIME_MAX:
        fail(f"{e.path}: time {secs} is outside the ext4 range (1901..2446)",
             "clamp times to the build epoch")
    target = b""
    layout = None
    if e.kind is Kind.FILE and links > LINK_MAX:
        fail(f"{e.path}: {links} hard links, ext4 allows {LINK_MAX}",
             "use fewer hard links to one file")
    elif e.kind is Kind.DIR:
        if links > LINK_MAX:
            links = 1  # dir_nlink: "many" (§5.3)
        blocks = LOST_FOUND_BYTES // block_size if e.path == LOST_FOUND else 1
        try:
            layout = plan_dir(sorted(kids, key=lambda d: d.name), seed, block_size, blocks)
        except DirTooBig as exc:
            fail(f"{e.path}: directory too big ({exc})", "split the directory")
            return None
    elif e.kind is Kind.SYMLINK:
        target = encode_name(e.target or "")
        if not 0 < len(target) < block_size:
            fail(f"{e.path}: symlink target is {len(target)} bytes, ext4 with "
                 f"{block_size}-byte blocks allows 1..{block_size - 1}",
                 "shorten the link target" + _bigger_blocks_hint(block_size))
    elif e.kind in (Kind.CHAR, Kind.BLOCK):
        major, minor = e.rdev
        if not (0 <= major <= MAX_MAJOR and 0 <= minor <= MAX_MINOR):
            fail(f"{e.path}: device number {major}:{minor} does not fit Linux dev_t",
                 f"major must be <= {MAX_MAJOR}, minor <= {MAX_MINOR}")
    parent_ino = ROOT_INO if e.path == "/" else ino_of.get(
        e.path.rpartition("/")[0] or "/", ROOT_INO)
    runs = data_runs(e.content, block_size) if e.kind is Kind.FILE and e.content is not None \
        and e.content.holes else None
    nblocks = _data_blocks(e, layout, target, runs, block_size)
    # Node.data_runs stays empty for a file without holes (most files): no tuple to keep
    holey = runs if runs is not None and runs != ((0, nblocks),) else ()
    return Node(ino_of[e.path], e, links, parent_ino, xattrs, layout, nblocks, holey)


_NO_XATTRS = xa.XattrSplit((), ())


def _bigger_blocks_hint(block_size: int) -> str:
    return ", or set block_size: 4096" if block_size < 4096 else ""


def _xattrs(e: Entry, fail: Callable[[str, str], None], block_size: int) -> xa.XattrSplit:
    if not e.xattrs:
        return _NO_XATTRS
    encoded = []
    for name, value in e.xattrs:
        try:
            encoded.append(xa.encode(name, value))
        except xa.XattrError as exc:
            fail(f"{e.path}: xattr {name!r} {exc}", "drop or fix the attribute")
    parts = xa.split(encoded)
    if not xa.block_fits(parts.block, block_size):
        total = sum(x.size for x in parts.block) + xa.TERMINATOR
        fail(f"{e.path}: extended attributes need {total} bytes outside the inode, one ext4 "
             f"xattr block of {block_size} bytes holds {xa.block_space(block_size)}",
             "make the attributes smaller" + _bigger_blocks_hint(block_size))
    return parts


# ----------------------------------------------------------------------------- allocate


class _BlockSet:
    """Allocated runs, for mke2fs's first-fit searches (ext2fs_get_free_blocks2)."""

    def __init__(self, nblocks: int, runs: list[Run]) -> None:
        self.nblocks = nblocks
        self.starts: list[int] = []
        self.ends: list[int] = []
        for start, n in runs:
            self.add(start, n)

    def add(self, start: int, n: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, start + n)

    def first_free(self, start: int, finish: int, n: int) -> int | None:
        """The first b in [start, finish) with blocks b .. b+n-1 free and inside the file
        system; None when there is none."""
        b = start
        while b < finish and b + n <= self.nblocks:
            i = bisect.bisect_left(self.starts, b + n) - 1  # the last run starting before b+n
            if i < 0 or self.ends[i] <= b:
                return b
            b = self.ends[i]
        return None


def _flex_offset(used: _BlockSet, geo: Geometry, group: int, start: int, rem: int,
                 elem: int) -> int:
    """mke2fs's flexbg_offset (lib/ext2fs/alloc_tables.c): where the `elem`-block table of
    `group` goes, given the previous table's end `start` (0: none) and the `rem` groups left in
    the flex group."""
    flex = 1 << LOG_GROUPS_PER_FLEX
    size = min(rem * elem, geo.blocks_per_group // 4)
    if start and start < geo.nblocks:
        b = used.first_free(start, start + size, elem)
        if b is not None:
            return b
    first = geo.group_first(group - group % flex)
    last = geo.group_last(min(group | (flex - 1), geo.groups - 1))
    for lo, n in ((first, size), (first, elem), (geo.first_data_block, elem)):
        b = used.first_free(lo, last, n)
        if b is not None:
            return b
    raise NoSpace


def place_group_tables(geo: Geometry
                       ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Block bitmaps, inode bitmaps and inode tables of every group, where mke2fs puts them
    with flex_bg (ext2fs_allocate_group_table): per flex group of 16, at its start, the 16
    block bitmaps, then the 16 inode bitmaps, then the 16 inode tables, each kind contiguous.
    Spreading them keeps the file system shrinkable and growable like mke2fs's
    (`resize2fs -M` moves nothing it cannot)."""
    flex = 1 << LOG_GROUPS_PER_FLEX
    used = _BlockSet(geo.nblocks, geo.reserved_runs())
    bbm: list[int] = []
    ibm: list[int] = []
    itb: list[int] = []
    itable = geo.itable_blocks
    for g in range(geo.groups):
        last_grp = min(g | (flex - 1), geo.groups - 1)
        rem = last_grp - g + 1
        last_blk = geo.group_last(last_grp)
        offset = flex
        if g % flex == 0 and last_grp == geo.groups - 1:
            # the last flex group keeps its tables contiguous: room for its groups only
            offset = (last_grp & (flex - 1)) + 1 if last_grp & (flex - 1) else flex
        for kind, out, n in ((0, bbm, 1), (1, ibm, 1), (2, itb, itable)):
            if g % flex:
                prev = out[-1] + n
            else:
                prev = 0 if kind == 0 else (bbm if kind == 1 else ibm)[-1] + offset
            b = _flex_offset(used, geo, g, prev, rem, n)
            found = used.first_free(b, last_blk, n)
            if found is None:
                found = used.first_free(geo.group_first(g), last_blk, n)
            if found is None:
                raise NoSpace
            used.add(found, n)
            out.append(found)
    return tuple(bbm), tuple(ibm), tuple(itb)


class _Allocator:
    """One forward cursor over the blocks, skipping superblock/GDT copies and group tables."""

    def __init__(self, nblocks: int, reserved: list[Run], first: int) -> None:
        self.nblocks = nblocks
        self.reserved = reserved
        self.ri = 0
        self.cursor = first  # s_first_data_block: block 0 of a 1 KiB file system is no one's
        self.used: list[Run] = []

    def _skip(self) -> int:
        """Move past reserved areas at the cursor; returns where the next one starts."""
        res = self.reserved
        while self.ri < len(res) and self.cursor >= res[self.ri][0]:
            self.cursor = max(self.cursor, res[self.ri][0] + res[self.ri][1])
            self.ri += 1
        return res[self.ri][0] if self.ri < len(res) else 1 << 62

    def _check(self) -> None:
        if self.cursor > self.nblocks:
            raise NoSpace

    def take(self, n: int) -> list[Run]:
        runs = self._advance(n)
        used = self.used
        for start, k in runs:
            # files follow each other: one growing run rather than a tuple per file (only
            # the bitmap and the block map read `used`, as a set of blocks)
            if used and used[-1][0] + used[-1][1] == start:
                used[-1] = (used[-1][0], used[-1][1] + k)
            else:
                used.append((start, k))
        return runs

    def _advance(self, n: int) -> list[Run]:
        """The next `n` allocatable blocks as runs, the cursor moved past them."""
        runs: list[Run] = []
        while n > 0:
            limit = self._skip()
            k = limit - self.cursor
            if n < k:
                k = n
            runs.append((self.cursor, k))
            self.cursor += k
            n -= k
        self._check()
        return runs

    def blocks(self, n: int) -> tuple[int, ...]:
        return tuple(b for s, k in self.take(n) for b in range(s, s + k))

    def keep_free(self, n: int) -> None:
        """Move past `n` allocatable blocks without using them (room for a device's build)."""
        if n > 0:
            self._advance(n)  # not recorded in `used`: these blocks stay free in the bitmap


def allocate(prep: Prepared, geo: Geometry, opts: Options, image_size: int) -> Plan:
    bbm, ibm, itb = place_group_tables(geo)
    tables = _table_runs(geo, bbm, ibm, itb)
    alloc = _Allocator(geo.nblocks, merge_runs(geo.reserved_runs() + tables),
                       geo.first_data_block)
    bs = geo.block_size
    jblocks = opts.journal_blocks(geo.nblocks, bs)
    jext: tuple[Extent, ...] = ()
    jtree: tuple[int, ...] = ()
    if jblocks:
        jext = extents_of(alloc.take(jblocks))
        jtree = alloc.blocks(tree_block_count(len(jext), bs))
    placed = []
    room = dict(prep.room)
    room_at: list[tuple[int, int]] = []
    free_inos = sorted(set(room) - {node.ino for node in prep.nodes})  # reserved, no node yet
    for node in prep.nodes:
        while free_inos and free_inos[0] < node.ino:
            room_at.append((free_inos[0], alloc.cursor))
            alloc.keep_free(room[free_inos.pop(0)])
        if node.ino in room:
            room_at.append((node.ino, alloc.cursor))
        p = _place(alloc, node, bs)
        placed.append(p)
        if node.ino in room:
            alloc.keep_free(room[node.ino] - _blocks_of(p))
    for ino in free_inos:
        room_at.append((ino, alloc.cursor))
        alloc.keep_free(room[ino])
    reserved = int(geo.nblocks * opts.reserved_pct / 100)
    return Plan(geo, image_size, prep, bbm, ibm, itb, jext, jtree, jblocks, tuple(placed),
                (*tables, *alloc.used), reserved, tuple(sorted(room_at)))


def _place(alloc: _Allocator, node: Node, block_size: int) -> Placed:
    """The node's data, extent-tree and xattr blocks, taken at the allocator's cursor."""
    start = 0
    ext: tuple[Extent, ...] = ()
    tree: tuple[int, ...] = ()
    n = node.data_blocks
    if n:
        runs = alloc.take(n)
        if not node.data_runs and len(runs) == 1 and n <= EXTENT_MAX_LEN:
            start = runs[0][0]  # one extent from block 0: kept as its start (Placed)
        else:
            ext = extents_of(runs, node.data_runs)
            if len(ext) > EXTENTS_IN_INODE:
                tree = alloc.blocks(tree_block_count(len(ext), block_size))
    xblock = alloc.take(1)[0][0] if node.xattrs.block else 0
    return Placed(node, start, ext, tree, xblock)


def _blocks_of(p: Placed) -> int:
    return p.node.data_blocks + len(p.tree) + (1 if p.xattr_block else 0)


def _table_runs(geo: Geometry, bbm: tuple[int, ...], ibm: tuple[int, ...],
                itb: tuple[int, ...]) -> list[Run]:
    return [(b, 1) for b in bbm] + [(b, 1) for b in ibm] + [(b, geo.itable_blocks) for b in itb]


# --------------------------------------------------------------- a device's files in the room


@dataclass(frozen=True, slots=True)
class Replanned:
    """A device's plan made from the golden one (`replan`), and what differs."""

    plan: Plan
    changed: tuple[Placed, ...]  # inodes whose inode, blocks or data may differ from golden
    freed: tuple[Run, ...]  # golden blocks of those inodes the device's plan leaves free


def replan(plan: Plan, numbered: Numbered, files: Mapping[str, Entry]) -> Replanned | None:
    """The plan of the golden request with the regular files `files` (paths relative to the
    partition) replacing or adding entries at paths the golden plan keeps room for: what
    `prepare` and `allocate` would give for that request, without planning every inode again.

    A reserve's blocks start where the golden allocator's cursor stood (`Plan.room_at`), and a
    file that fits its room leaves the cursor, and so every later inode, where it was. None when
    that does not hold (a path without room, a file outgrowing it, a directory that needs
    another block, an entry the planner would refuse): plan the request in full then."""
    prep, geo = plan.prepared, plan.geometry
    bs = prep.block_size
    room, room_at, absent = dict(prep.room), dict(plan.room_at), dict(numbered.absent)
    ino_of = {**numbered.ino_of, **absent}
    problems: list[str] = []

    def fail(message: str, _hint: str) -> None:
        problems.append(message)

    reserved = merge_runs(geo.reserved_runs() + _table_runs(
        geo, plan.block_bitmaps, plan.inode_bitmaps, plan.inode_tables))
    new: dict[int, Placed] = {}
    added: dict[str, list[Dirent]] = {}  # parent path -> entries of files the golden lacks
    for path, entry in sorted(files.items()):
        ino = ino_of.get(path)
        if entry.kind is not Kind.FILE or ino is None or ino not in room_at or \
                numbered.file_links.get(path, 1) != 1 or entry.path != path:
            return None
        node = _node(entry, ino_of, 1, [], prep.hash_seed, fail, bs)
        if node is None:
            return None
        alloc = _Allocator(geo.nblocks, reserved, room_at[ino])
        placed = _place(alloc, node, bs)
        if _blocks_of(placed) > room[ino]:
            return None  # it would push every later inode's blocks
        new[ino] = placed
        if path in absent:
            parent_path = path.rpartition("/")[0] or "/"
            added.setdefault(parent_path, []).append(
                Dirent(encode_name(path.rpartition("/")[2]), ino, FT_REG_FILE))
    for parent_path, added_here in added.items():
        golden_dir = _placed_at(plan, ino_of.get(parent_path, 0))
        if golden_dir is None or golden_dir.node.entry.kind is not Kind.DIR:
            return None
        kids = [*dirents(numbered.children.get(parent_path, []), ino_of), *added_here]
        node = _node(golden_dir.node.entry, ino_of, 2 + numbered.subdirs.get(parent_path, 0),
                     kids, prep.hash_seed, fail, bs)
        if node is None or node.data_blocks != golden_dir.node.data_blocks:
            return None
        new[node.ino] = Placed(node, golden_dir.start, golden_dir.more, golden_dir.tree,
                               golden_dir.xattr_block)
    if problems:
        return None
    old = [p for ino in new if (p := _placed_at(plan, ino)) is not None]
    old_runs = merge_runs([r for p in old for r in _runs_of(p)])
    new_runs = merge_runs([r for p in new.values() for r in _runs_of(p)])
    used = merge_runs([*_subtract_runs(list(plan.used), old_runs), *new_runs])
    placed = {p.node.ino: p for p in plan.placed}
    placed.update(new)
    device = replace(plan, placed=tuple(placed[ino] for ino in sorted(placed)),
                     used=tuple(used))
    return Replanned(device, tuple(new[ino] for ino in sorted(new)),
                     tuple(_subtract_runs(old_runs, new_runs)))


def _placed_at(plan: Plan, ino: int) -> Placed | None:
    i = bisect.bisect_left(plan.placed, ino, key=lambda p: p.node.ino)
    return plan.placed[i] if i < len(plan.placed) and plan.placed[i].node.ino == ino else None


def _runs_of(p: Placed) -> list[Run]:
    runs = [(e.pblk, e.length) for e in p.extents] + [(b, 1) for b in p.tree]
    return runs + [(p.xattr_block, 1)] if p.xattr_block else runs


def _subtract_runs(runs: list[Run], minus: list[Run]) -> list[Run]:
    """The blocks of `runs` outside `minus` (both sorted and merged)."""
    out: list[Run] = []
    for start, n in runs:
        end = start + n
        for m_start, m_n in minus:
            m_end = m_start + m_n
            if m_end <= start or m_start >= end:
                continue
            if m_start > start:
                out.append((start, m_start - start))
            start = max(start, m_end)
        if start < end:
            out.append((start, end - start))
    return out


def merge_runs(runs: list[Run]) -> list[Run]:
    """Sorted runs with touching ones joined."""
    out: list[Run] = []
    for start, n in sorted(runs):
        if out and out[-1][0] + out[-1][1] >= start:
            last_start, last_n = out[-1]
            out[-1] = (last_start, max(last_n, start + n - last_start))
        else:
            out.append((start, n))
    return out


def estimate_used(prep: Prepared, geo: Geometry, opts: Options) -> int:
    """Blocks `allocate` will use on `geo`, never less (gaps left by tables aside)."""
    fixed = sum(n for _, n in geo.reserved_runs()) + geo.groups * (2 + geo.itable_blocks)
    journal = opts.journal_blocks(geo.nblocks, geo.block_size)
    return fixed + journal + _tree_bound(journal, 1, geo.block_size) + prep.blocks + \
        prep.tree_bound


def inodes_for(prep: Prepared, opts: Options, nblocks: int) -> int:
    """The inodes option, else mke2fs's count for the size type (one per inode_ratio bytes),
    but at least the entries plus headroom."""
    if opts.inodes is not None:
        return opts.inodes
    wanted = math.ceil(prep.last_ino * (1 + opts.headroom_pct / 100))
    size = nblocks * prep.block_size
    return max(size // size_type(size).inode_ratio, wanted)


# blocks root needs to create and write a small file: a data block, a directory leaf and an
# htree index block, an extent block, an xattr block, with room to spare
WRITE_MARGIN_BLOCKS = 16


def kernel_reserved_blocks(nblocks: int) -> int:
    """Blocks the kernel keeps back even from root (ext4_calculate_resv_clusters: 2 % of
    the file system, at most 4096), for unwritten-extent conversion."""
    return min(nblocks // 50, 4096)


def writable_minimum(geo: Geometry, opts: Options) -> int:
    """Free blocks an auto-sized image keeps whatever the headroom, so the kernel lets even a
    non-root user write a little (free above s_r_blocks_count and the kernel's own reserve)."""
    reserved = int(geo.nblocks * opts.reserved_pct / 100)
    return reserved + kernel_reserved_blocks(geo.nblocks) + WRITE_MARGIN_BLOCKS


def block_size_for(opts: Options, size: int) -> int:
    """The block size option, else mke2fs's for a file system of `size` bytes."""
    return opts.block_size or size_type(size).block_size


def plan_fixed(prep: Prepared, opts: Options, size: int) -> Plan:
    """Plan an image of `size` bytes; NoSpace when it does not fit."""
    nblocks = size // prep.block_size
    try:
        geo = make_geometry(nblocks, inodes_for(prep, opts, nblocks), prep.block_size)
    except GeometryError:
        raise NoSpace from None
    if geo.inodes_count < prep.last_ino:
        raise NoSpace
    return allocate(prep, geo, opts, size)


def plan_auto(prep: Prepared, opts: Options, headroom_pct: float | None = None) -> Plan:
    """The smallest MiB-aligned image whose used blocks plus headroom fit."""
    headroom = opts.headroom_pct if headroom_pct is None else headroom_pct
    mib_blocks = MIB // prep.block_size

    def round_mib(blocks: float) -> int:
        return max(mib_blocks, math.ceil(blocks / mib_blocks) * mib_blocks)

    # lower bound: the data alone (plus enough groups for the inodes)
    n = round_mib(max(prep.blocks, 64))
    for _ in range(100):
        try:
            geo = make_geometry(n, inodes_for(prep, opts, n), prep.block_size)
        except GeometryError:
            n = round_mib(n * 1.5)
            continue
        if geo.nblocks != n or geo.inodes_count < prep.last_ino:
            n += mib_blocks  # a dropped tail group or too few inodes: grow and retry
            continue
        used = estimate_used(prep, geo, opts)
        want = round_mib(max(used * (1 + headroom / 100), used + writable_minimum(geo, opts)))
        if want > n:
            n = want
            continue
        try:
            return allocate(prep, geo, opts, n * prep.block_size)
        except NoSpace:  # gaps left by contiguous tables: one more MiB
            n += mib_blocks
    raise NoSpace
