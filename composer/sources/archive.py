"""Archive sources through libarchive: tar (any compression), cpio, zip, …

Members are data: a path with '..' is clamped inside the source (as GNU tar strips leading
'../'), links are never followed, devices and sockets are never opened. A member repeated in the
archive is taken from its last copy, and hard links share what they would share, as extraction
would (_Found). Names are read as the bytes the archive stores (archive_ffi.utf8_locale), and a
header or data block that libarchive finds inconsistent (a zip whose local header disagrees with
its central directory, a bad CRC) is an error, not half a file.
"""

from __future__ import annotations

import array
import ctypes
import io
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, NamedTuple

from libarchive import ffi
from libarchive.exception import ArchiveError

from composer import archive_ffi
from composer.acl import ACCESS_XATTR, DEFAULT_XATTR, UnresolvedName, acl_xattr, mask_bits
from composer.archive_ffi import ACL_TYPE_ACCESS, ACL_TYPE_DEFAULT, read_acl, read_xattrs
from composer.archive_ffi import read_data as _read_data
from composer.content import DataSource, FileWindow
from composer.errors import ComposerError, shown
from composer.sources import Scanned, name_from_bytes
from composer.tree import ROOTED_BARE, ROOTED_DOT, Content, Entry, Kind

READ_BLOCK = 1 << 20

_KINDS = {
    0o100000: Kind.FILE,
    0o040000: Kind.DIR,
    0o120000: Kind.SYMLINK,
    0o020000: Kind.CHAR,
    0o060000: Kind.BLOCK,
    0o010000: Kind.FIFO,
    0o140000: Kind.SOCKET,
}


def member_path(raw: str) -> tuple[str, bool]:
    """The member's path inside the source, and whether '..' had to be clamped."""
    name = raw[2:] if raw.startswith("./") else raw
    # most names (`tar -C dir .` writes ./a/b) have no empty, "." or ".." part to drop: the
    # split and join below cost more than the whole rest of a member's path handling
    if name and "//" not in name and "/./" not in name and ".." not in name and \
            name[0] != "/" and not name.startswith("./") and not name.endswith(("/", "/.")) \
            and name != ".":
        return "/" + name, False
    parts: list[str] = []
    clamped = False
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            else:
                clamped = True
            continue
        parts.append(part)
    return "/" + "/".join(parts), clamped


def scan_archive(name: str, path: Path) -> Scanned:
    with archive_ffi.utf8_locale():  # names as stored, whatever the locale (archive_ffi)
        return _scan(name, path)


def _scan(name: str, path: Path) -> Scanned:
    found = _Found(name)
    current = "(header)"
    offsets: array.array[int] | None = array.array("q")
    try:
        st = os.stat(path)
        with archive_ffi.open_archive(str(path)) as archive_p:
            for index, entry_p in enumerate(_members(archive_p)):
                raw = name_from_bytes(archive_ffi.raw_pathname(entry_p))
                current = raw or "(unnamed)"
                if offsets is not None and (index or archive_ffi.plain_tar(archive_p)):
                    offsets.append(archive_ffi.data_offset(archive_p))
                else:
                    offsets = None
                found.add(entry_p, raw, index)
    except (ArchiveError, archive_ffi.ReadFailure) as exc:
        current = _member_of(exc, current)
        raise ComposerError(f"source {name!r}: {path.name} is truncated or corrupt at member "
                            f"'{shown(current)}' (libarchive: {_why(exc)})",
                            hint="check the archive with 'tar -tvf', or capture it again") \
            from None
    except OSError as exc:
        raise ComposerError(f"source {name!r}: cannot read {path.name}: {exc.strerror}") \
            from None
    if not found.entries:
        raise ComposerError(f"source {name!r}: {path.name} is an empty archive",
                            hint="the capture probably failed; capture the golden device again")
    _add_missing_dirs(found.entries)
    if offsets is not None and not _readable_at_offsets(found.entries, st):
        offsets = None
    return Scanned(name, found.entries, ArchiveData(name, path, offsets, _stamp(st)), found.newest,
                   tuple(found.warnings))


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What says an archive file is still the one scanned."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _readable_at_offsets(entries: dict[str, Entry], st: os.stat_result) -> bool:
    """Data can be read at its offsets in the file: a regular file (pread works), and no member
    stored sparse (its data is then not the file's bytes as they are)."""
    return stat.S_ISREG(st.st_mode) and \
        all(not e.content.holes for e in entries.values() if e.content is not None)


def _members(archive_p: int) -> Iterator[int]:
    """The entry pointer of each member in turn (libarchive-c's iterator drops warnings that we
    must see: archive_ffi.next_header)."""
    entry_p = ffi.entry_new()
    try:
        while archive_ffi.next_header(archive_p, entry_p):
            yield entry_p
    finally:
        ffi.entry_free(entry_p)


class _Found:
    """The entries of one archive as extraction would leave them, built member by member.

    Hard links follow what GNU tar and bsdtar do when they extract:
    - a link shares the inode its target has at that point of the archive; a member that later
      replaces the target makes a new inode and leaves the earlier links on the old one;
    - a link member that carries data (cpio newc stores a group's data with its LAST link; odc,
      bin and pax may carry it on every link) writes that data into the shared inode.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.entries: dict[str, Entry] = {}
        self.links: dict[str, list[str]] = {}  # path holding an inode's data -> its other paths
        self.warnings: list[str] = []
        self.newest = 0
        # mode, uid, gid and mtime take few values (a layer's files share their times): one
        # int object each, not four per entry; dropped with the scan
        self._ints: dict[int, int] = {}

    def add(self, entry_p: int, raw: str, index: int) -> None:
        path, clamped = member_path(raw)
        if clamped:
            self.warnings.append(f"source {self.source!r}: member '{shown(raw)}' escapes the "
                                 f"source; taken as '{shown(path)}'")
        common = _common(self.source, entry_p, raw, path, self._ints)
        if archive_ffi.raw_hardlink(entry_p) is not None:
            self._add_link(entry_p, raw, index, common)
        else:
            entry = _entry(self.source, entry_p, raw, index, common)
            if entry is None:
                self.warnings.append(f"source {self.source!r}: member '{shown(raw)}' has an "
                                     "empty name; skipped")
                return
            self._replace(entry)
        if common.mtime_ns > self.newest:
            self.newest = common.mtime_ns

    def _replace(self, entry: Entry) -> None:
        """Put `entry` at its path, unlinking what was there (as extraction does)."""
        old = self.entries.get(entry.path)
        if old is not None and old.kind is Kind.HARDLINK and old.target is not None:
            self.links[old.target].remove(old.path)
        elif old is not None and self.links.get(old.path):
            # the old inode lives on under its other names: the first of them now holds it
            heir, *others = self.links.pop(old.path)
            self.entries[heir] = replace(old, path=heir)
            for other in others:
                self.entries[other] = replace(self.entries[other], target=heir)
            self.links[heir] = others
        self.entries[entry.path] = entry

    def _add_link(self, entry_p: int, raw: str, index: int, common: _Common) -> None:
        link = name_from_bytes(archive_ffi.raw_hardlink(entry_p) or b"")
        target, _ = member_path(link)
        found = self.entries.get(target)
        if found is not None and found.kind not in (Kind.FILE, Kind.HARDLINK):
            # GNU tar and bsdtar extract this as a second name of a symlink, device or FIFO
            # inode; the writers give only regular files more than one name
            raise ComposerError(
                f"source {self.source!r}: member '{shown(raw)}' is a hard link to "
                f"'{shown(link)}', a {found.kind.value}: composer gives only regular files a "
                "second name", hint="in the snapshot, replace the hard link with a copy (a "
                "second symlink to the same target, or a second device node)")
        if found is None:
            raise ComposerError(
                f"source {self.source!r}: member '{shown(raw)}' is a hard link to "
                f"'{shown(link)}', which is not an earlier file in the archive",
                hint="the archive is damaged or was cut short")
        primary = found.target if found.kind is Kind.HARDLINK and found.target else target
        if ffi.entry_size(entry_p) > 0:  # the link carries the inode's data
            self._set_data(primary, _content(self.source, entry_p, raw, index, common.path))
        here = self.entries.get(common.path)
        if common.path == primary or (here is not None and here.kind is Kind.HARDLINK
                                         and here.target == primary):
            return  # already a name of this inode: linking it again changes nothing
        self._replace(common.entry(Kind.HARDLINK, self.entries[primary].content, primary))
        self.links.setdefault(primary, []).append(common.path)

    def _set_data(self, primary: str, content: Content) -> None:
        for path in (primary, *self.links.get(primary, ())):
            self.entries[path] = replace(self.entries[path], content=content)


class _Common(NamedTuple):
    """The metadata every kind of member has."""

    path: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: tuple[tuple[str, bytes], ...]

    def entry(self, kind: Kind, content: Content | None = None, target: str | None = None,
              rdev: tuple[int, int] = (0, 0)) -> Entry:
        return Entry(self.path, kind, self.mode, self.uid, self.gid, self.mtime_ns, content,
                     target, rdev, self.xattrs)


def _common(source: str, entry_p: int, raw: str, path: str, ints: dict[int, int]) -> _Common:
    """The metadata every kind of member has; its ints shared through `ints`."""
    # pre-1970 times are negative seconds; kept (ext4 stores them, tar writes them)
    mtime_ns = ffi.entry_mtime(entry_p) * 1_000_000_000 + ffi.entry_mtime_nsec(entry_p)
    try:
        mode, xattrs = _with_acls(entry_p, ffi.entry_mode(entry_p) & 0o7777,
                                  read_xattrs(entry_p))
    except UnresolvedName as exc:
        raise ComposerError(
            f"source {source!r}: member '{shown(raw)}' has an ACL that names {exc.args[0]!r} "
            "without a numeric id", hint="capture with tar --xattrs --acls (as "
            "tools/capture-golden.sh does), which also stores the numeric form") from None
    uid, gid = ffi.entry_uid(entry_p), ffi.entry_gid(entry_p)
    return _Common(path, ints.setdefault(mode, mode), ints.setdefault(uid, uid),
                   ints.setdefault(gid, gid), ints.setdefault(mtime_ns, mtime_ns), xattrs)


def _content(source: str, entry_p: int, raw: str, index: int, path: str) -> Content:
    """`path`: the member's path in the source; the member name shares its string when it is
    that path without its leading "/", or with a "." before it (most members:
    Content.rooted)."""
    size = ffi.entry_size(entry_p)
    holes = _holes(archive_ffi.data_regions(entry_p), size)
    if len(path) == len(raw) + 1 and path.endswith(raw):
        return Content(size, source, path, index, None, holes, rooted=ROOTED_BARE)
    if len(raw) == len(path) + 1 and raw.endswith(path) and raw[0] == ".":
        return Content(size, source, path, index, None, holes, rooted=ROOTED_DOT)
    return Content(size, source, raw, index, None, holes)


def _holes(regions: list[tuple[int, int]], size: int) -> tuple[tuple[int, int], ...]:
    """The gaps between a sparse member's data regions (GNU tar --sparse, pax 0.x/1.0): the
    ranges its archive stores as holes. No regions: not sparse, no holes."""
    if not regions:
        return ()
    holes: list[tuple[int, int]] = []
    pos = 0
    for offset, length in sorted(regions):
        offset, end = max(offset, pos), min(offset + length, size)
        if offset > pos:
            holes.append((pos, min(offset, size) - pos))
        pos = max(pos, end)
    if pos < size:
        holes.append((pos, size - pos))
    return tuple(h for h in holes if h[1] > 0)


def _entry(source: str, entry_p: int, raw: str, index: int,
           common: _Common) -> Entry | None:
    filetype = ffi.entry_filetype(entry_p)
    kind = _KINDS.get(filetype)
    if kind is None:
        raise ComposerError(f"source {source!r}: member '{shown(raw)}' has an unknown file "
                            f"type {filetype:o}")
    if common.path == "/" and kind is not Kind.DIR:
        return None
    if kind is Kind.FILE:
        return common.entry(kind, _content(source, entry_p, raw, index, common.path))
    if kind is Kind.SYMLINK:
        # a C string: a NUL in a pax linkpath record ends the target here, as it does for GNU
        # tar and bsdtar
        target = name_from_bytes(archive_ffi.raw_symlink(entry_p) or b"")
        return common.entry(kind, target=target)
    if kind in (Kind.CHAR, Kind.BLOCK):
        rdev = (ffi.entry_rdevmajor(entry_p), ffi.entry_rdevminor(entry_p))
        return common.entry(kind, rdev=rdev)
    return common.entry(kind)


def _with_acls(entry_p: int, mode: int, xattrs: tuple[tuple[str, bytes], ...]
               ) -> tuple[int, tuple[tuple[str, bytes], ...]]:
    """Fold the member's POSIX ACLs into its xattrs, as a folder on Linux shows them.

    With a mask, Linux keeps the mask in the mode's group bits; libarchive puts the owning
    group's entry there instead, so it is put back (the same file then reads the same from a
    folder and from its archive)."""
    if not archive_ffi.acl_types(entry_p) & (ACL_TYPE_ACCESS | ACL_TYPE_DEFAULT):
        return mode, xattrs  # the common case: no ACL
    found = dict(xattrs)
    for name, kind in ((ACCESS_XATTR, ACL_TYPE_ACCESS), (DEFAULT_XATTR, ACL_TYPE_DEFAULT)):
        if name not in found:
            value = acl_xattr(read_acl(entry_p, kind))
            if value is not None:
                found[name] = value
    access = found.get(ACCESS_XATTR)
    mask = mask_bits(access) if access is not None else None
    if mask is not None:
        mode = (mode & ~0o070) | (mask << 3)
    return mode, tuple(sorted(found.items()))


def _add_missing_dirs(entries: dict[str, Entry]) -> None:
    """Archives may omit parent directories; make them as extraction would (0755, root)."""
    newest = max((e.mtime_ns for e in entries.values()), default=0)
    for path in list(entries):
        parent = path.rsplit("/", 1)[0] or "/"
        while parent not in entries:
            entries[parent] = Entry(parent, Kind.DIR, 0o755, 0, 0, newest)
            parent = parent.rsplit("/", 1)[0] or "/"


def _member_of(exc: Exception, current: str) -> str:
    """The member a failure is about: the one whose header failed, else the last one read."""
    member = getattr(exc, "member", None)
    return name_from_bytes(member) if member else current


def _why(exc: Exception) -> str:
    msg = getattr(exc, "msg", None) or (exc.args[0] if exc.args else str(exc))
    return str(msg).strip().rstrip(".")


def _index_of(content: Content) -> int:
    return content.index


class ArchiveData(DataSource):
    """An archive's members' data: read through libarchive in member order, or, for an
    uncompressed tar whose data offsets the scan noted, with pread in any order (the writer's:
    ext4 data then goes out in block order, and no header is parsed a second time)."""

    def __init__(self, name: str, path: Path, offsets: array.array[int] | None = None,
                 stamp: tuple[int, int, int, int] | None = None) -> None:
        self.name = name
        self.path = path
        self._offsets = offsets  # by member index: 8 bytes a member
        self._stamp = stamp
        self.sequential = offsets is None

    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        if self._offsets is not None:
            yield from self._iter_at_offsets(wanted, self._offsets)
        else:
            yield from self._iter_in_member_order(wanted)

    def _iter_at_offsets(self, wanted: Sequence[Content], offsets: array.array[int]
                         ) -> Iterator[tuple[Content, BinaryIO]]:
        """Each wanted content in the order given, read where the scan saw its data start."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise ComposerError(f"source {self.name!r}: cannot read {self.path.name}: "
                                f"{exc.strerror}") from None
        try:
            if _stamp(os.fstat(fd)) != self._stamp:
                raise ComposerError(f"source {self.name!r}: {self.path.name} changed since it "
                                    "was scanned", hint="do not change the sources while "
                                    "composer runs; build again")
            for content in wanted:
                yield content, _PreadStream(fd, offsets[content.index], content.size, self,
                                            content)
        finally:
            os.close(fd)

    def _iter_in_member_order(self, wanted: Sequence[Content]
                              ) -> Iterator[tuple[Content, BinaryIO]]:
        # in member order; a list rather than a dict by index: 8 bytes a member, not ~80
        ordered = sorted(wanted, key=_index_of)
        if not ordered:
            return
        last = ordered[-1].index
        at = 0  # the next wanted content in `ordered`
        entry_p = ffi.entry_new()
        read_any = False
        try:
            # big reads: libarchive's default is one read() per 4 KiB page
            with archive_ffi.open_archive(str(self.path), block_size=READ_BLOCK) as archive_p:
                for index in range(last + 1):
                    # headers are read under the pinned locale; the consumer runs outside it
                    if not archive_ffi.next_header_as_stored(archive_p, entry_p):
                        break
                    read_any = True
                    content = None
                    while at < len(ordered) and ordered[at].index <= index:
                        content = ordered[at]  # of repeats, the last one given (as a dict)
                        at += 1
                    if content is not None and content.index == index:
                        yield content, _BlockStream(archive_p, self, content)
                    if index >= last:
                        return
        except (ArchiveError, archive_ffi.ReadFailure) as exc:
            # the member is named only now: the loop above runs once per member
            current = name_from_bytes(archive_ffi.raw_pathname(entry_p)) if read_any \
                else "(header)"
            current = _member_of(exc, current)
            raise ComposerError(f"source {self.name!r}: {self.path.name} is truncated or corrupt "
                                f"at member '{shown(current)}' (libarchive: {_why(exc)})",
                                hint="check the archive with 'tar -tvf', or capture it "
                                "again") from None
        finally:
            ffi.entry_free(entry_p)
        raise ComposerError(f"source {self.name!r}: {self.path.name} ended before member "
                            f"'{shown(ordered[-1].member)}'",
                            hint="the archive changed during the build")


_PROBE = (ctypes.c_char * 1)()


class _PreadStream(FileWindow):
    """A member's data read with pread from where it lies in an uncompressed tar."""

    checks_its_end = True  # its size is the header's: nothing past it belongs to the member
    checks_its_size = True  # and a short read is an error here (content._checked)

    def __init__(self, fd: int, offset: int, size: int, source: ArchiveData,
                 content: Content) -> None:
        super().__init__(fd, offset, size)
        self._source = source
        self._content = content
        self._left = size

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._left or not len(buffer):
            return 0
        try:
            got = super().readinto(buffer)
        except OSError as exc:
            raise ComposerError(f"{self._where()} cannot be read: {exc.strerror}") from None
        if not got:  # cut short since the scan, with the same stamp (rare, but not silent)
            size = self._content.size
            raise ComposerError(f"{self._where()} ended after {size - self._left} of {size} "
                                "bytes", hint="the input changed or is truncated")
        self._left -= got
        return got

    def _where(self) -> str:
        return f"source {self._source.name!r}: {self._source.path.name} member " \
            f"'{shown(self._content.member)}'"


class _BlockStream(io.RawIOBase):
    """A file-like view of the current member's data: archive_read_data straight into the
    caller's buffer (one memcpy out of libarchive's read buffer, no Python bytes in between).
    Holes of a sparse member read as zeros. Once the member's size is read, libarchive is asked
    once more, which is where it checks a zip member's CRC."""

    checks_its_end = True  # content._SizeCheckedStream need not probe for more

    def __init__(self, archive_p: int, source: ArchiveData, content: Content) -> None:
        self._archive_p = archive_p
        self._source = source
        self._content = content
        self._pos = 0
        # libarchive (3.6, 3.7) ends a sparse member with no data region at all without the
        # zeros of its hole; the zeros owed at the end are then ours to give
        last = content.holes[-1] if content.holes else (0, 0)
        self._tail_hole = last[0] if sum(last) == content.size and last[1] else content.size
        self._size = content.size
        self._padded = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = 0
        if not self._padded:
            try:
                n = self._readinto(buffer)
                if n and self._pos + n == self._size and _read_data(self._archive_p, _PROBE, 1):
                    raise archive_ffi.ReadFailure("more data than its header says")
            except archive_ffi.ReadFailure as exc:  # raised in the writer's loop
                raise ComposerError(f"source {self._source.name!r}: {self._source.path.name} "
                                    f"member '{shown(self._content.member)}' cannot be read "
                                    f"(libarchive: {_why(exc)})",
                                    hint="check the archive with 'bsdtar -tvf', or capture it "
                                    "again") from None
        if not n and self._tail_hole <= self._pos < self._size:
            self._padded = True  # libarchive would give zeros after its EOF: no more calls
            n = min(len(buffer), self._size - self._pos)
            memoryview(buffer).cast("B")[:n] = bytes(n)
        self._pos += n
        return n

    def _readinto(self, buffer: memoryview) -> int:
        view = memoryview(buffer).cast("B")
        n = len(view)
        if not n:
            return 0
        try:
            # the address of the first byte: a ctypes array type per length (`c_char * n`) would
            # cost a new type object for every distinct member size
            target = ctypes.addressof(ctypes.c_char.from_buffer(view))
        except TypeError:  # a read-only or non-contiguous buffer: go through our own
            tmp = bytearray(n)
            got = archive_ffi.read_data(self._archive_p,
                                        ctypes.addressof(ctypes.c_char.from_buffer(tmp)), n)
            view[:got] = tmp[:got]
            return got
        return archive_ffi.read_data(self._archive_p, target, n)
