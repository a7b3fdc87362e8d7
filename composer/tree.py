"""The device tree: every entry under its path on the device, one sorted tree for the whole device.

Paths are absolute POSIX paths ("/" is the root). Entries carry metadata only; a regular file's
bytes are described by a Content and read from its source when a writer needs them.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"  # shares the inode of `target`, an earlier FILE entry of the same tree
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    SOCKET = "socket"

    @property
    def ifmt(self) -> int:
        """The S_IFMT bits of this kind (a hard link has those of a regular file)."""
        return _IFMT[self]


_IFMT = {
    Kind.FILE: stat.S_IFREG,
    Kind.HARDLINK: stat.S_IFREG,
    Kind.DIR: stat.S_IFDIR,
    Kind.SYMLINK: stat.S_IFLNK,
    Kind.CHAR: stat.S_IFCHR,
    Kind.BLOCK: stat.S_IFBLK,
    Kind.FIFO: stat.S_IFIFO,
    Kind.SOCKET: stat.S_IFSOCK,
}


ROOTED_BARE = 1  # Content.rooted: the member name is the entry's path without its "/"
ROOTED_DOT = 2  # ... or the entry's path with a "." before it


@dataclass(frozen=True, slots=True, init=False)
class Content:
    """Where a regular file's bytes come from: a member of a named source, or bytes held inline."""

    size: int
    source: str  # source name; "" for inline content
    # the member path inside the source (archive path or path relative to a folder): `member`.
    # With `rooted`, this is the very string of the entry's path instead, from which the member
    # name is made when asked (a string an entry less): ROOTED_BARE for a member "etc/x" of the
    # entry "/etc/x", ROOTED_DOT for "./etc/x" (what `tar -C dir .` writes)
    stored_member: str
    index: int  # position of the member in an archive (archives may repeat a path)
    inline: bytes | None = field(repr=False)
    # Byte ranges (offset, length), sorted and disjoint, that the source stores as holes (a
    # folder's SEEK_HOLE ranges, an archive's sparse map). The data stream still yields `size`
    # bytes, zeros in the holes; a writer that can keep holes leaves those blocks unallocated.
    holes: tuple[tuple[int, int], ...]
    rooted: int

    def __init__(self, size: int, source: str = "", member: str = "", index: int = -1,
                 inline: bytes | None = None, holes: tuple[tuple[int, int], ...] = (),
                 rooted: int = 0) -> None:
        """`rooted`: `member` is the entry's path, the member name being that path without its
        "/" (ROOTED_BARE) or with a "." before it (ROOTED_DOT); see `stored_member`."""
        setattr_ = object.__setattr__
        setattr_(self, "size", size)
        setattr_(self, "source", source)
        setattr_(self, "stored_member", member)
        setattr_(self, "index", index)
        setattr_(self, "inline", inline)
        setattr_(self, "holes", holes)
        setattr_(self, "rooted", rooted)

    @property
    def member(self) -> str:
        """The member path inside the source (archive path or path relative to a folder)."""
        rooted = self.rooted
        if rooted == ROOTED_BARE:
            return self.stored_member[1:]
        return "." + self.stored_member if rooted == ROOTED_DOT else self.stored_member

    @staticmethod
    def of_bytes(data: bytes) -> Content:
        return Content(size=len(data), inline=data)

    @property
    def is_inline(self) -> bool:
        return self.inline is not None


@dataclass(frozen=True, slots=True)
class Entry:
    """One file-system object. Mode, owner and time have no defaults: writers get them explicit."""

    path: str
    kind: Kind
    mode: int  # permission bits only, including setuid/setgid/sticky (0o7777)
    uid: int
    gid: int
    mtime_ns: int
    content: Content | None = None  # FILE, and HARDLINK (the data of the file it links to)
    target: str | None = None  # SYMLINK: the link text; HARDLINK: the path it shares data with
    rdev: tuple[int, int] = (0, 0)  # CHAR/BLOCK: (major, minor)
    xattrs: tuple[tuple[str, bytes], ...] = ()  # sorted by name

    @property
    def size(self) -> int:
        """Bytes of data this entry stores (a hard link stores none of its own)."""
        return self.content.size if self.content is not None and self.kind is Kind.FILE else 0

    @property
    def st_mode(self) -> int:
        return self.kind.ifmt | self.mode

    def at_time(self, mtime_ns: int) -> Entry:
        """The same entry with another mtime (the constructor: dataclasses.replace costs
        several times more, and rules clamp every entry newer than the epoch)."""
        return Entry(self.path, self.kind, self.mode, self.uid, self.gid, mtime_ns, self.content,
                     self.target, self.rdev, self.xattrs)

    def moved(self, path: str) -> Entry:
        if path == self.path:
            return self
        # the constructor, not dataclasses.replace: this runs once per copied entry
        return Entry(path, self.kind, self.mode, self.uid, self.gid, self.mtime_ns, self.content,
                     self.target, self.rdev, self.xattrs)


def norm(path: str) -> str:
    """Normalise a device path: absolute, no trailing slash, no '.' components."""
    path = posixpath.normpath("/" + path.lstrip("/"))
    # normpath keeps a leading '//' (POSIX allows it to mean something else); we never want it
    return "/" + path.lstrip("/")


def parent(path: str) -> str:
    """The folder holding a device path (normalised, as norm() makes them); "/" for "/"."""
    # not posixpath.dirname: called a few times per entry, and the paths are normalised
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


def is_under(path: str, root: str) -> bool:
    """True when `path` is `root` or lies below it."""
    return root == "/" or path == root or path.startswith(root + "/")


def relative(path: str, root: str) -> str:
    """The path of `path` seen from a file system mounted at `root` ("/" for the root itself)."""
    if root == "/":
        return path
    return "/" + path[len(root):].lstrip("/") if path != root else "/"


def sort_key(path: str) -> str:
    """Sort by components so that a directory's children follow it directly ('a/b' < 'a.b').

    The path with each '/' made NUL, the lowest character, which no name can hold: strings
    compare as the tuples of their components would, and one string per path is all a sort
    holds (a tuple of components took about 350 bytes a path, and every path's key lives for
    the whole sort: the memory peak of a build of many files)."""
    return path.replace("/", "\0")


def sorted_entries(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: sort_key(e.path))


class DeviceTree:
    """A mutable map path -> Entry used while rules run; `entries()` is always sorted."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._by_path: dict[str, Entry] = {}
        self._order: list[str] | None = None  # sorted paths; None after a path came or went
        for entry in entries:
            self._by_path[entry.path] = entry

    def __contains__(self, path: object) -> bool:
        return path in self._by_path

    def __len__(self) -> int:
        return len(self._by_path)

    def get(self, path: str) -> Entry | None:
        return self._by_path.get(path)

    def put(self, entry: Entry) -> None:
        if self._order is not None and entry.path not in self._by_path:
            self._order = None
        self._by_path[entry.path] = entry

    def remove(self, path: str) -> Entry | None:
        if self._order is not None and path in self._by_path:
            self._order = None
        return self._by_path.pop(path, None)

    def remove_tree(self, root: str) -> list[Entry]:
        """Remove `root` and everything below it; returns what was removed, sorted."""
        gone = [p for p in self._by_path if is_under(p, root)]
        if gone:
            self._order = None
        return sorted_entries(self._by_path.pop(p) for p in gone)

    def below(self, root: str) -> Iterator[Entry]:
        """Entries strictly below `root`, sorted."""
        # filter first: sorting the whole tree on every call made rules quadratic
        yield from sorted_entries(e for p, e in self._by_path.items()
                                  if p != root and is_under(p, root))

    def children(self, root: str) -> list[Entry]:
        return [e for e in self.below(root) if parent(e.path) == root]

    def entries(self) -> list[Entry]:
        """All entries, sorted. The order is kept until a path is added or removed, so replacing
        entries (canonical_hardlinks) and asking again costs no new sort."""
        if self._order is None:
            self._order = sorted(self._by_path, key=sort_key)
        by_path = self._by_path
        return [by_path[p] for p in self._order]

    def as_mapping(self) -> Mapping[str, Entry]:
        return self._by_path

    def resolve(self, path: str, max_links: int = 40) -> str | None:
        """Resolve symlinks inside the device tree (not the host's); None if dangling or looping."""
        parts = [p for p in path.split("/") if p]
        current = "/"
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                current = parent(current)
                continue
            candidate = posixpath.join(current, name)
            entry = self._by_path.get(candidate)
            if entry is None:
                return None
            if entry.kind is Kind.SYMLINK and entry.target is not None:
                hops += 1
                if hops > max_links:
                    return None
                target = entry.target
                base = "/" if target.startswith("/") else current
                parts = [p for p in target.split("/") if p] + parts
                current = base
                continue
            current = candidate
        return current


def canonical_hardlinks(tree: DeviceTree) -> None:
    """Make hard links independent of input order: in each group the first path in sorted order
    holds the data and the others link to it. A group whose file was removed by a rule keeps its
    data in the first remaining link. The inode's metadata (mode, owner, time, xattrs) is that of
    the original file when it is still there."""
    groups: dict[str, list[Entry]] = {}
    for entry in tree.as_mapping().values():
        if entry.kind is Kind.HARDLINK and entry.target is not None:
            groups.setdefault(entry.target, []).append(entry)
    for target in sorted(groups, key=sort_key):
        links = sorted(groups[target], key=lambda e: sort_key(e.path))
        original = tree.get(target)
        members = list(links)
        if original is not None and original.kind is Kind.FILE:
            members.append(original)
        template = original if original is not None and original.kind is Kind.FILE else links[0]
        members.sort(key=lambda e: sort_key(e.path))
        primary = members[0]
        tree.put(replace(template, path=primary.path, kind=Kind.FILE, target=None))
        for member in members[1:]:
            tree.put(replace(template, path=member.path, kind=Kind.HARDLINK, target=primary.path))
