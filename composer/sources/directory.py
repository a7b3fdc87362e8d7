"""Folder sources: walked with lstat, never following a symlink, never opening a device.

Names are listed as bytes and carried as sources.name_from_bytes makes them, so the locale
cannot change them (os.listdir on a str decodes with the locale's charset). A file whose size or
mtime changed between the plan and the write is an error that names it.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from composer.content import DataSource
from composer.errors import ComposerError, shown
from composer.sources import Scanned, name_from_bytes, name_to_bytes
from composer.tree import Content, Entry, Kind

_KINDS = {
    stat.S_IFREG: Kind.FILE,
    stat.S_IFDIR: Kind.DIR,
    stat.S_IFLNK: Kind.SYMLINK,
    stat.S_IFCHR: Kind.CHAR,
    stat.S_IFBLK: Kind.BLOCK,
    stat.S_IFIFO: Kind.FIFO,
    stat.S_IFSOCK: Kind.SOCKET,
}


def scan_directory(name: str, root: Path) -> Scanned:
    scan = _Scan(name, root)
    for host, rel, st in _walk(name, root):
        scan.add(host, rel, st)
    return Scanned(name, scan.entries, DirectoryData(name, root, scan.stamps), scan.newest)


class _Scan:
    """The entries of one folder, built object by object (a hundred thousand of them: one
    positional Entry each, the host path made once, mode and owner ints shared)."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.entries: dict[str, Entry] = {}
        self.stamps: dict[str, int] = {}  # member -> mtime_ns (DirectoryData)
        self.newest = 0
        self._inodes: dict[tuple[int, int], Entry] = {}
        # mode, uid and gid take few values: one int object each, not three per entry
        self._ints: dict[int, int] = {}

    def add(self, host: bytes, rel: str, st: os.stat_result) -> None:
        ints = self._ints
        mode = stat.S_IMODE(st.st_mode)
        mode = ints.setdefault(mode, mode)
        uid = ints.setdefault(st.st_uid, st.st_uid)
        gid = ints.setdefault(st.st_gid, st.st_gid)
        mtime_ns = st.st_mtime_ns
        xattrs = _xattrs(self.name, host, rel)
        kind = _KINDS[stat.S_IFMT(st.st_mode)]
        if kind is Kind.FILE:
            entry = self._file(host, rel, st, mode, uid, gid, mtime_ns, xattrs)
        elif kind is Kind.SYMLINK:
            entry = Entry(rel, kind, mode, uid, gid, mtime_ns, None,
                          name_from_bytes(os.readlink(host)), (0, 0), xattrs)
        elif kind is Kind.CHAR or kind is Kind.BLOCK:
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            entry = Entry(rel, kind, mode, uid, gid, mtime_ns, None, None, rdev, xattrs)
        else:
            entry = Entry(rel, kind, mode, uid, gid, mtime_ns, None, None, (0, 0), xattrs)
        self.entries[rel] = entry
        if mtime_ns > self.newest:
            self.newest = mtime_ns

    def _file(self, host: bytes, rel: str, st: os.stat_result, mode: int, uid: int, gid: int,
              mtime_ns: int, xattrs: tuple[tuple[str, bytes], ...]) -> Entry:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            first = self._inodes.get(key)
            if first is not None:
                return Entry(rel, Kind.HARDLINK, mode, uid, gid, mtime_ns, first.content,
                             first.path, (0, 0), xattrs)
        _check_readable(self.name, host, rel)
        member = rel[1:]
        # st_blocks counts 512-byte units (stat(2)): only a file with fewer allocated bytes
        # than its size can have holes, so dense files cost no extra system call
        holes = _holes(host, st) if st.st_blocks * 512 < st.st_size else ()
        entry = Entry(rel, Kind.FILE, mode, uid, gid, mtime_ns,
                      Content(st.st_size, self.name, member, -1, None, holes), None, (0, 0),
                      xattrs)
        if st.st_nlink > 1:
            self._inodes[key] = entry
        self.stamps[member] = mtime_ns
        return entry


def _walk(name: str, root: Path) -> Iterator[tuple[bytes, str, os.stat_result]]:
    """(host path, path inside the source, lstat) for every object, parents first, names
    sorted."""
    top = os.fsencode(root)
    yield top, "/", os.lstat(top)
    stack: list[tuple[bytes, str]] = [(top, "")]
    while stack:
        host, rel = stack.pop()
        try:
            names = sorted(os.listdir(host))
        except OSError as exc:
            raise ComposerError(f"source {name!r}: cannot list {shown(rel or '/')}: "
                                f"{exc.strerror}") from None
        subdirs = []
        folder = host + b"/"
        prefix = rel + "/"
        for child in names:
            child_host = folder + child
            child_rel = prefix + name_from_bytes(child)
            try:
                st = os.lstat(child_host)
            except OSError as exc:  # a folder that can be listed but not searched (r without x)
                raise ComposerError(f"source {name!r}: cannot read {shown(child_rel)}: "
                                    f"{exc.strerror}",
                                    hint="make the folder searchable (x) by the user who "
                                    "builds") from None
            yield child_host, child_rel, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((child_host, child_rel))
        stack.extend(reversed(subdirs))


def _xattrs(name: str, host: bytes, rel: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(host, follow_symlinks=False)
        # Python decodes xattr names with the locale's charset: back to bytes, then composer's
        # own decoding (as for file names)
        return tuple(sorted((name_from_bytes(os.fsencode(x)),
                             os.getxattr(host, x, follow_symlinks=False)) for x in names))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise ComposerError(f"source {name!r}: cannot read xattrs of {shown(rel)}: "
                            f"{exc.strerror}") from None


def _holes(host: bytes, st: os.stat_result) -> tuple[tuple[int, int], ...]:
    """The file's holes as (offset, length), from SEEK_DATA/SEEK_HOLE (lseek(2)).

    Only asked of files with fewer allocated bytes than their size (the caller checks). A file
    system without hole reporting answers as if the file had none (lseek(2): "the whole file
    is data"), and so does one that refuses the whence values: the file is then copied dense,
    which is still correct.
    """
    holes: list[tuple[int, int]] = []
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ()  # _check_readable reported what it could not open
    try:
        pos = 0
        while pos < st.st_size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no data after pos, a hole to the end
                    return ()
                data = st.st_size
            data = min(data, st.st_size)
            if data > pos:
                holes.append((pos, data - pos))
            if data >= st.st_size:
                break
            pos = os.lseek(fd, data, os.SEEK_HOLE)
    except OSError:
        return ()
    finally:
        os.close(fd)
    return tuple(holes)


# access(2) with the effective ids answers what open(2) would for permissions, at half the
# cost of an open and a close (once per file of a folder); open tells why when it says no
_EFFECTIVE = os.access in os.supports_effective_ids


def _check_readable(name: str, host: bytes, rel: str) -> None:
    if os.access(host, os.R_OK, effective_ids=_EFFECTIVE):
        return
    try:
        os.close(os.open(host, os.O_RDONLY | os.O_NOFOLLOW))
    except OSError as exc:
        raise ComposerError(f"source {name!r}: cannot read {shown(rel)}: {exc.strerror}",
                            hint="make the file readable by the user who builds") from None


class DirectoryData(DataSource):
    sequential = False

    def __init__(self, name: str, root: Path,
                 stamps: dict[str, int] | None = None) -> None:
        self.name = name
        self.root = root
        # member -> its mtime_ns when the plan was made (its size is the content's)
        self._stamps = stamps or {}

    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        root = os.fsencode(self.root) + b"/"
        for content in wanted:
            try:
                fd = os.open(root + name_to_bytes(content.member), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                raise ComposerError(f"source {self.name!r}: cannot read "
                                    f"{shown(content.member)}: {exc.strerror}") from None
            # unbuffered: readers fill their own buffers (a BufferedReader per file cost more
            # than reading a small file)
            with io.FileIO(fd, "rb") as stream:
                self._check_unchanged(content, os.fstat(fd))
                yield content, stream  # type: ignore[misc]

    def _check_unchanged(self, content: Content, st: os.stat_result) -> None:
        planned = self._stamps.get(content.member)
        if planned is None or (planned == st.st_mtime_ns and content.size == st.st_size):
            return
        raise ComposerError(
            f"source {self.name!r}: {shown(content.member)} changed during the build (size "
            f"{content.size} -> {st.st_size}, mtime_ns {planned} -> {st.st_mtime_ns})",
            hint="do not change the sources while composer runs; build again")
