"""Folder sources: walked with lstat, never following a symlink, never opening a device."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from composer.content import DataSource
from composer.errors import ComposerError
from composer.sources import Scanned
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
    newest = 0
    for rel, st in _walk(name, root):
        entry = _entry(name, root, rel, st, inodes)
        entries[rel] = entry
        newest = max(newest, entry.mtime_ns)
    return Scanned(name, entries, DirectoryData(name, root), newest)


def _walk(name: str, root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(path inside the source, lstat) for every object, parents first, names sorted."""
    yield "/", os.lstat(root)
    stack = ["/"]
    while stack:
        rel = stack.pop()
        host = os.path.join(root, rel.lstrip("/"))
        try:
            names = sorted(os.listdir(host))
        except OSError as exc:
            raise ComposerError(f"source {name!r}: cannot list {rel}: {exc.strerror}") from None
        subdirs = []
        for child in names:
            child_rel = rel.rstrip("/") + "/" + child
            try:
                st = os.lstat(os.path.join(host, child))
            except OSError as exc:  # a folder that can be listed but not searched (r without x)
                raise ComposerError(f"source {name!r}: cannot read {child_rel}: {exc.strerror}",
                                    hint="make the folder searchable (x) by the user who "
                                    "builds") from None
            yield child_rel, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(child_rel)
        stack.extend(reversed(subdirs))


def _entry(name: str, root: Path, rel: str, st: os.stat_result,
           inodes: dict[tuple[int, int], Entry]) -> Entry:
    host = os.path.join(root, rel.lstrip("/"))
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
        return Entry(kind=kind, target=os.readlink(host), **common)  # type: ignore[arg-type]
    if kind in (Kind.CHAR, Kind.BLOCK):
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        return Entry(kind=kind, rdev=rdev, **common)  # type: ignore[arg-type]
    return Entry(kind=kind, **common)  # type: ignore[arg-type]


def _xattrs(name: str, host: str, rel: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(host, follow_symlinks=False)
        return tuple(sorted((x, os.getxattr(host, x, follow_symlinks=False)) for x in names))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise ComposerError(f"source {name!r}: cannot read xattrs of {rel}: {exc.strerror}") \
            from None


def _holes(host: str, st: os.stat_result) -> tuple[tuple[int, int], ...]:
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


def _check_readable(name: str, host: str, rel: str) -> None:
    try:
        os.close(os.open(host, os.O_RDONLY | os.O_NOFOLLOW))
    except OSError as exc:
        raise ComposerError(f"source {name!r}: cannot read {rel}: {exc.strerror}",
                            hint="make the file readable by the user who builds") from None


class DirectoryData(DataSource):
    sequential = False

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root

    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        for content in wanted:
            host = os.path.join(self.root, content.member)
            try:
                fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                raise ComposerError(f"source {self.name!r}: cannot read {content.member}: "
                                    f"{exc.strerror}") from None
            with os.fdopen(fd, "rb") as stream:
                yield content, stream
