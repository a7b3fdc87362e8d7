"""tar partitions: pax, sorted, numeric owners, xattrs kept, no atime or ctime.

Sockets are left out: no tar format holds them, and a socket only means something while the
program that made it runs. pax rather than ustar because ustar cannot hold xattrs, long names,
large ids or nanosecond times; libarchive writes a plain ustar header when an entry needs none
of them. Entries carry no
user or group names: names on the golden device mean nothing on another rootfs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from libarchive import ffi
from libarchive.exception import ArchiveError
from libarchive.write import new_archive_write

from composer import archive_ffi
from composer.acl import ACCESS_XATTR, DEFAULT_XATTR, acl_entries
from composer.content import CHUNK, ContentStore
from composer.errors import ComposerError
from composer.fs.base import FsWriter, Progress, WriteRequest, WriteResult, no_progress
from composer.sources import name_to_bytes
from composer.tree import Entry, Kind


def tar_name(path: str) -> str:
    """Member names are relative ('./etc/x'); the partition root itself is './'."""
    return "./" if path == "/" else "." + path


class TarWriter(FsWriter):
    fs = "tar"
    fixed_size = False

    def check(self, req: WriteRequest) -> list[ComposerError]:
        return []

    def volume_id(self, req: WriteRequest) -> str | None:
        return None  # an archive has no file-system ID

    def write(self, req: WriteRequest, out: Path, store: ContentStore,
              progress: Progress = no_progress) -> WriteResult:
        files = [e.content for e in req.entries if e.kind is Kind.FILE and e.content is not None]
        data = store.stream_sorted(files)

        def items() -> Iterator[tuple[Entry, BinaryIO | None]]:
            for entry in req.entries:
                if entry.kind is Kind.SOCKET:
                    continue  # tar cannot hold sockets; they mean nothing in an image anyway
                has_data = entry.kind is Kind.FILE and entry.content is not None
                yield entry, (next(data)[1] if has_data else None)

        try:
            write_tar(out, items(), progress=progress)
        except ArchiveError as exc:  # how libarchive-c reports a failed write(2): ENOSPC, EIO
            reason = os.strerror(exc.errno) if exc.errno else exc.msg
            raise ComposerError(f"{req.name}: writing {out.name} failed: {reason}",
                                loc=req.loc, hint="check free space in the output folder's "
                                "file system; the output folder was left as it was") from None
        size = out.stat().st_size
        return WriteResult(size, ((0, size),) if size else ())


def write_tar(out: Path, items: Iterable[tuple[Entry, BinaryIO | None]],
              filter_name: str | None = None, progress: Progress = no_progress) -> None:
    """A pax archive of `items` in the order given (callers sort); `filter_name` compresses."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        # the pax writer converts names to the locale's charset for its ustar header: pinned
        # (archive_ffi.utf8_locale), so the bytes do not depend on LC_ALL
        with archive_ffi.utf8_locale(), new_archive_write("pax", filter_name) as archive_p:
            if filter_name == "gzip":
                # gzip stores the time and file name in its header unless told not to
                ffi.write_set_options(archive_p, b"gzip:!timestamp")
            # libarchive writes each xattr twice (SCHILY.xattr.* and LIBARCHIVE.xattr.*) by
            # default; GNU tar warns about every LIBARCHIVE record. SCHILY is the one record
            # both GNU tar and bsdtar read (libarchive's archive_write_set_format_pax.c).
            ffi.write_set_options(archive_p, b"pax:xattrheader=SCHILY")
            ffi.write_open_fd(archive_p, fd)
            for entry, stream in items:
                _write_entry(archive_p, entry, stream, progress)
    finally:
        os.close(fd)


def _write_entry(archive_p: int, entry: Entry, stream: BinaryIO | None,
                 progress: Progress) -> None:
    entry_p = ffi.entry_new()
    try:
        _fill(entry_p, entry)
        ffi.write_header(archive_p, entry_p)
        if stream is not None:
            while chunk := stream.read(CHUNK):
                ffi.write_data(archive_p, chunk, len(chunk))
                progress(len(chunk))
        ffi.write_finish_entry(archive_p)
    finally:
        ffi.entry_free(entry_p)


def _fill(entry_p: int, entry: Entry) -> None:
    archive_ffi.copy_pathname(entry_p, name_to_bytes(tar_name(entry.path)))
    ffi.entry_set_filetype(entry_p, entry.kind.ifmt)
    ffi.entry_set_perm(entry_p, entry.mode)
    ffi.entry_set_uid(entry_p, entry.uid)
    ffi.entry_set_gid(entry_p, entry.gid)
    seconds, nanos = divmod(entry.mtime_ns, 1_000_000_000)
    ffi.entry_set_mtime(entry_p, seconds, nanos)
    ffi.entry_set_size(entry_p, entry.size)
    if entry.kind is Kind.SYMLINK and entry.target is not None:
        archive_ffi.copy_symlink(entry_p, name_to_bytes(entry.target))
    elif entry.kind is Kind.HARDLINK and entry.target is not None:
        archive_ffi.copy_hardlink(entry_p, name_to_bytes(tar_name(entry.target)))
    elif entry.kind in (Kind.CHAR, Kind.BLOCK):
        ffi.entry_set_rdevmajor(entry_p, entry.rdev[0])
        ffi.entry_set_rdevminor(entry_p, entry.rdev[1])
    # tar readers restore ACLs from SCHILY.acl.* records, not from system.posix_acl_* xattrs
    acls = {ACCESS_XATTR: archive_ffi.ACL_TYPE_ACCESS, DEFAULT_XATTR: archive_ffi.ACL_TYPE_DEFAULT}
    for name, value in entry.xattrs:
        if name in acls:
            archive_ffi.add_acl(entry_p, acls[name], acl_entries(value))
    archive_ffi.add_xattrs(entry_p, tuple(x for x in entry.xattrs if x[0] not in acls))
