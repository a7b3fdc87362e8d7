"""Archive sources through libarchive: tar (any compression), cpio, zip, …

Members are data: a path with '..' is clamped inside the source (as GNU tar strips leading
'../'), links are never followed, devices and sockets are never opened. A member repeated in the
archive is taken from its last copy, as extraction would.
"""

from __future__ import annotations

import ctypes
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import libarchive
from libarchive import ffi
from libarchive.exception import ArchiveError

from composer import archive_ffi
from composer.acl import ACCESS_XATTR, DEFAULT_XATTR, UnresolvedName, acl_xattr, mask_bits
from composer.archive_ffi import ACL_TYPE_ACCESS, ACL_TYPE_DEFAULT, read_acl, read_xattrs
from composer.content import DataSource
from composer.errors import ComposerError
from composer.sources import Scanned
from composer.tree import Content, Entry, Kind

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
    entries: dict[str, Entry] = {}
    warnings: list[str] = []
    newest = 0
    current = "(header)"
    try:
        with libarchive.file_reader(str(path)) as archive:
            for index, member in enumerate(archive):
                raw = member.pathname  # one decode per member: this loop runs per entry
                current = raw or "(unnamed)"
                entry = _entry(name, member, raw, index, warnings, entries)
                if entry is None:
                    continue
                entries[entry.path] = entry
                newest = max(newest, entry.mtime_ns)
    except ArchiveError as exc:
        raise ComposerError(f"source {name!r}: {path.name} is truncated or corrupt at member "
                            f"{current!r} (libarchive: {_why(exc)})",
                            hint="check the archive with 'tar -tvf', or capture it again") \
            from None
    except OSError as exc:
        raise ComposerError(f"source {name!r}: cannot read {path.name}: {exc.strerror}") \
            from None
    if not entries:
        raise ComposerError(f"source {name!r}: {path.name} is an empty archive",
                            hint="the capture probably failed; capture the golden device again")
    _add_missing_dirs(entries)
    return Scanned(name, entries, ArchiveData(name, path), newest, tuple(warnings))


def _entry(source: str, member: libarchive.ArchiveEntry, raw: str, index: int,
           warnings: list[str], seen: dict[str, Entry]) -> Entry | None:
    path, clamped = member_path(raw)
    if clamped:
        warnings.append(f"source {source!r}: member {raw!r} escapes the source; "
                        f"taken as {path!r}")
    entry_p = member._entry_p
    mtime_ns = ffi.entry_mtime(entry_p) * 1_000_000_000 + ffi.entry_mtime_nsec(entry_p)
    try:
        mode, xattrs = _with_acls(entry_p, member.mode & 0o7777, read_xattrs(entry_p))
    except UnresolvedName as exc:
        raise ComposerError(
            f"source {source!r}: member {raw!r} has an ACL that names {exc.args[0]!r} without "
            "a numeric id", hint="capture with tar --xattrs --acls (as tools/capture-golden.sh "
            "does), which also stores the numeric form") from None
    common = dict(path=path, mode=mode, uid=member.uid, gid=member.gid,
                  mtime_ns=max(0, mtime_ns), xattrs=xattrs)
    if member.islnk:
        target, _ = member_path(member.linkpath)
        found = seen.get(target)
        if found is None or found.kind not in (Kind.FILE, Kind.HARDLINK):
            raise ComposerError(f"source {source!r}: member {raw!r} is a hard link to "
                                f"{member.linkpath!r}, which is not an earlier file in the archive",
                                hint="the archive is damaged or was cut short")
        primary = found.target if found.kind is Kind.HARDLINK and found.target else target
        return Entry(kind=Kind.HARDLINK, target=primary, content=found.content,
                     **common)  # type: ignore[arg-type]
    kind = _KINDS.get(member.filetype)
    if kind is None:
        raise ComposerError(f"source {source!r}: member {raw!r} has an unknown file type "
                            f"{member.filetype:o}")
    if path == "/" and kind is not Kind.DIR:
        warnings.append(f"source {source!r}: member {raw!r} has an empty name; skipped")
        return None
    if kind is Kind.FILE:
        content = Content(size=member.size, source=source, member=raw, index=index)
        return Entry(kind=kind, content=content, **common)  # type: ignore[arg-type]
    if kind is Kind.SYMLINK:
        return Entry(kind=kind, target=member.linkpath, **common)  # type: ignore[arg-type]
    if kind in (Kind.CHAR, Kind.BLOCK):
        rdev = (member.rdevmajor, member.rdevminor)
        return Entry(kind=kind, rdev=rdev, **common)  # type: ignore[arg-type]
    return Entry(kind=kind, **common)  # type: ignore[arg-type]


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


def _why(exc: ArchiveError) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    return str(msg).strip().rstrip(".")


class ArchiveData(DataSource):
    sequential = True

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        by_index = {c.index: c for c in wanted}
        if not by_index:
            return
        last = max(by_index)
        current = "(header)"
        try:
            # big reads: libarchive's default is one read() per 4 KiB page
            with libarchive.file_reader(str(self.path), block_size=READ_BLOCK) as archive:
                for index, member in enumerate(archive):
                    current = member.pathname
                    content = by_index.get(index)
                    if content is not None:
                        yield content, _BlockStream(member._archive_p)
                    if index >= last:
                        return
        except ArchiveError as exc:
            raise ComposerError(f"source {self.name!r}: {self.path.name} is truncated or corrupt "
                                f"at member {current!r} (libarchive: {_why(exc)})",
                                hint="check the archive with 'tar -tvf', or capture it "
                                "again") from None
        raise ComposerError(f"source {self.name!r}: {self.path.name} ended before member "
                            f"{by_index[last].member!r}",
                            hint="the archive changed during the build")


class _BlockStream(io.RawIOBase):
    """A file-like view of the current member's data: archive_read_data straight into the
    caller's buffer (one memcpy out of libarchive's read buffer, no Python bytes in between)."""

    def __init__(self, archive_p: int) -> None:
        self._archive_p = archive_p

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = len(view)
        if not n:
            return 0
        try:
            target = (ctypes.c_char * n).from_buffer(view)
        except TypeError:  # a read-only or non-contiguous buffer: go through our own
            tmp = bytearray(n)
            got = ffi.read_data(self._archive_p, (ctypes.c_char * n).from_buffer(tmp), n)
            view[:got] = tmp[:got]
            return got
        return ffi.read_data(self._archive_p, target, n)
