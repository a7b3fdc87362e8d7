"""Folder sources: walked with lstat, never following a symlink, never opening a device.

Names are listed as bytes and carried as sources.name_from_bytes makes them, so the locale
cannot change them (os.listdir on a str decodes with the locale's charset). A file whose size or
mtime changed between the plan and the write is an error that names it.
"""

from __future__ import annotations

import errno
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
    entries: dict[str, Entry] = {}
    inodes: dict[tuple[int, int], Entry] = {}
    stamps: dict[str, tuple[int, int]] = {}
    newest = 0
    for rel, st in _walk(name, root):
        entry = _entry(name, root, rel, st, inodes)
        entries[rel] = entry
        newest = max(newest, entry.mtime_ns)
        if entry.kind is Kind.FILE:
            stamps[rel.lstrip("/")] = (st.st_size, st.st_mtime_ns)
    return Scanned(name, entries, DirectoryData(name, root, stamps), newest)


def _host(root: Path | bytes, rel: str) -> bytes:
    """The host path of `rel` (a path inside the source) as bytes."""
    return os.path.join(os.fsencode(root), name_to_bytes(rel.lstrip("/")))


def _walk(name: str, root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(path inside the source, lstat) for every object, parents first, names sorted."""
    yield "/", os.lstat(root)
    stack = ["/"]
    while stack:
        rel = stack.pop()
        host = _host(root, rel)
        try:
            names = sorted(os.listdir(host))
        except OSError as exc:
            raise ComposerError(f"source {name!r}: cannot list {shown(rel)}: "
                                f"{exc.strerror}") from None
        subdirs = []
        for child in names:
            child_rel = rel.rstrip("/") + "/" + name_from_bytes(child)
            try:
                st = os.lstat(os.path.join(host, child))
            except OSError as exc:  # a folder that can be listed but not searched (r without x)
                raise ComposerError(f"source {name!r}: cannot read {shown(child_rel)}: "
                                    f"{exc.strerror}",
                                    hint="make the folder searchable (x) by the user who "
                                    "builds") from None
            yield child_rel, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(child_rel)
        stack.extend(reversed(subdirs))


def _entry(name: str, root: Path, rel: str, st: os.stat_result,
           inodes: dict[tuple[int, int], Entry]) -> Entry:
    host = _host(root, rel)
    kind = _KINDS[stat.S_IFMT(st.st_mode)]
    common = dict(path=rel, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                  mtime_ns=st.st_mtime_ns, xattrs=_xattrs(name, host, rel))
    if kind is Kind.FILE:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in inodes:
            first = inodes[key]
            return Entry(kind=Kind.HARDLINK, target=first.path, content=first.content,
                         **common)  # type: ignore[arg-type]
        _check_readable(name, host, rel)
        content = Content(size=st.st_size, source=name, member=rel.lstrip("/"),
                          holes=_holes(host, st))
        entry = Entry(kind=kind, content=content, **common)  # type: ignore[arg-type]
        inodes[key] = entry
        return entry
    if kind is Kind.SYMLINK:
        target = name_from_bytes(os.readlink(host))
        return Entry(kind=kind, target=target, **common)  # type: ignore[arg-type]
    if kind in (Kind.CHAR, Kind.BLOCK):
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        return Entry(kind=kind, rdev=rdev, **common)  # type: ignore[arg-type]
    return Entry(kind=kind, **common)  # type: ignore[arg-type]


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

    Only asked of files with fewer allocated bytes than their size (st_blocks counts 512-byte
    units, stat(2)), so dense files cost no extra system call. A file system without hole
    reporting answers as if the file had none (lseek(2): "the whole file is data"), and so does
    one that refuses the whence values: the file is then copied dense, which is still correct.
    """
    if st.st_blocks * 512 >= st.st_size:
        return ()
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


def _check_readable(name: str, host: bytes, rel: str) -> None:
    try:
        os.close(os.open(host, os.O_RDONLY | os.O_NOFOLLOW))
    except OSError as exc:
        raise ComposerError(f"source {name!r}: cannot read {shown(rel)}: {exc.strerror}",
                            hint="make the file readable by the user who builds") from None


class DirectoryData(DataSource):
    sequential = False

    def __init__(self, name: str, root: Path,
                 stamps: dict[str, tuple[int, int]] | None = None) -> None:
        self.name = name
        self.root = root
        self._stamps = stamps or {}  # member -> (size, mtime_ns) when the plan was made

    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        for content in wanted:
            host = _host(self.root, content.member)
            try:
                fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                raise ComposerError(f"source {self.name!r}: cannot read "
                                    f"{shown(content.member)}: {exc.strerror}") from None
            with os.fdopen(fd, "rb") as stream:
                self._check_unchanged(content, os.fstat(fd))
                yield content, stream

    def _check_unchanged(self, content: Content, st: os.stat_result) -> None:
        planned = self._stamps.get(content.member)
        if planned is None or planned == (st.st_size, st.st_mtime_ns):
            return
        size, mtime_ns = planned
        raise ComposerError(
            f"source {self.name!r}: {shown(content.member)} changed during the build (size "
            f"{size} -> {st.st_size}, mtime_ns {mtime_ns} -> {st.st_mtime_ns})",
            hint="do not change the sources while composer runs; build again")
