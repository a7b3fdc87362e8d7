"""Reading outputs back for the tests with readers that share no code with composer: tar
partitions through the raw pax header parser of tests/judges.py (not libarchive, which composer
writes with, and not composer's own xattr reader)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


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


_KINDS = {b"0": "file", b"\0": "file", b"5": "dir", b"2": "symlink", b"1": "hardlink",
          b"3": "char", b"4": "block", b"6": "fifo"}


def read_tar(path: Path) -> dict[str, Member]:
    from tests.judges import pax_members

    members: dict[str, Member] = {}
    for m in pax_members(path):
        kind = _KINDS[m.typeflag]
        mtime = m.records.get("mtime", str(m.mtime).encode()).decode()
        seconds, _, fraction = mtime.partition(".")
        mtime_ns = int(seconds) * 10**9 + int((fraction + "0" * 9)[:9])
        raw = m.name[2:] if m.name.startswith("./") else m.name
        name = "/" + raw.rstrip("/")
        xattrs = {k[len("SCHILY.xattr."):]: v for k, v in m.records.items()
                  if k.startswith("SCHILY.xattr.")}
        members[name] = Member(name, kind, m.mode & 0o7777, m.uid, m.gid, mtime_ns,
                               m.data if kind == "file" else b"",
                               m.linkname if kind in ("symlink", "hardlink") else None,
                               m.rdev, xattrs)
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
