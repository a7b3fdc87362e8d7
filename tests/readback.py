"""Reading outputs back with libarchive (not with our own code) for the tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import libarchive
from libarchive import ffi

from composer.archive_ffi import read_xattrs


@dataclass(frozen=True)
class Member:
    path: str
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    data: bytes
    link: str | None
    rdev: tuple[int, int]
    xattrs: dict[str, bytes]


def read_tar(path: Path) -> dict[str, Member]:
    members: dict[str, Member] = {}
    with libarchive.file_reader(str(path)) as archive:
        for m in archive:
            kind = ("hardlink" if m.islnk else "dir" if m.isdir else "symlink" if m.issym else
                    "char" if m.ischr else "block" if m.isblk else "fifo" if m.isfifo else "file")
            data = b"".join(bytes(b) for b in m.get_blocks()) if kind == "file" else b""
            p = m._entry_p
            mtime = ffi.entry_mtime(p) * 10**9 + ffi.entry_mtime_nsec(p)
            raw = m.pathname[2:] if m.pathname.startswith("./") else m.pathname
            name = "/" + raw.rstrip("/")
            members[name] = Member(name, kind, m.mode & 0o7777, m.uid, m.gid, mtime, data,
                                   m.linkpath, (m.rdevmajor, m.rdevminor),
                                   dict(read_xattrs(p)))
    return members


def sha256_of(path: Path) -> str:
    """A file's sha256, read in chunks (images are GiB-sized sparse files)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def published(folder: Path) -> list[Path]:
    """The outputs in a build folder, sorted: its entries but composer's own `.compose` folder
    (each output is a link into it, see composer/publish.py)."""
    return sorted(p for p in folder.iterdir() if p.name != ".compose")
