"""Independent judges of composer's outputs: GNU tar, bsdtar, a pax header parser written here
from POSIX.1-2008 (not libarchive, not composer.fs.tar), debugfs, sfdisk and mtools. Each runs
the real tool and parses its output (several exit 0 when they complain)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import need

BLOCK = 512


@dataclass(frozen=True)
class PaxMember:
    """One member as its raw headers say: the ustar fields and the pax records that apply."""

    name: str
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    size: int
    uname: str
    gname: str
    linkname: str
    magic: bytes
    mtime: int = 0
    rdev: tuple[int, int] = (0, 0)
    records: dict[str, bytes] = field(default_factory=dict)
    data: bytes = b""


def _octal(field_bytes: bytes) -> int:
    text = field_bytes.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _pax_records(data: bytes) -> dict[str, bytes]:
    """'<len> <key>=<value>\\n' records (POSIX pax, "pax Extended Header")."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        record = data[space + 1:pos + length]
        assert record.endswith(b"\n"), record
        key, _, value = record[:-1].partition(b"=")
        records[key.decode()] = value
        pos += length
    return records


def pax_members(path: Path) -> list[PaxMember]:
    """Every member of a pax/ustar archive, its 'x' records merged in; asserts the checksums and
    the two zero blocks at the end."""
    raw = path.read_bytes()
    members: list[PaxMember] = []
    pending: dict[str, bytes] = {}
    pos = 0
    while True:
        header = raw[pos:pos + BLOCK]
        assert len(header) == BLOCK, "archive ends without the two zero blocks"
        if header == bytes(BLOCK):
            assert raw[pos + BLOCK:pos + 2 * BLOCK] == bytes(BLOCK), "one zero block only"
            return members
        checksum = sum(header[:148]) + 8 * 32 + sum(header[156:])
        assert checksum == _octal(header[148:156]), f"bad header checksum at {pos}"
        size = _octal(header[124:136])
        data = raw[pos + BLOCK:pos + BLOCK + size]
        pos += BLOCK + -(-size // BLOCK) * BLOCK
        typeflag = header[156:157]
        if typeflag in (b"x", b"g"):
            assert typeflag == b"x", "a global pax header applies to every later member"
            pending.update(_pax_records(data))
            continue
        name = header[:100].rstrip(b"\0")
        prefix = header[345:500].rstrip(b"\0")
        full = (prefix + b"/" + name) if prefix else name
        records, pending = pending, {}
        text_of = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
        members.append(PaxMember(
            name=text_of(records.get("path", full)), typeflag=typeflag,
            mode=_octal(header[100:108]),
            uid=int(records["uid"]) if "uid" in records else _octal(header[108:116]),
            gid=int(records["gid"]) if "gid" in records else _octal(header[116:124]),
            size=int(records["size"]) if "size" in records else size,
            uname=text_of(header[265:297].rstrip(b"\0")),
            gname=text_of(header[297:329].rstrip(b"\0")),
            linkname=text_of(records.get("linkpath", header[157:257].rstrip(b"\0"))),
            magic=header[257:265], mtime=_octal(header[136:148]),
            rdev=(_octal(header[329:337]), _octal(header[337:345])), records=records,
            data=data))


@dataclass(frozen=True)
class Listed:
    """One line of `tar --numeric-owner -tv`: mode string, owner, size, name, link."""

    mode: str
    uid: int
    gid: int
    size: int
    name: str
    link: str | None


_GNU_LINE = re.compile(r"^(\S{10})\S? (\d+)/(\d+) +(\d+|\d+,\s*\d+) (\S+ \S+) +(.*)$")


def gnu_tar_list(path: Path) -> list[Listed]:
    """GNU tar's verbose listing with numeric ids; fails on any warning it prints."""
    need("tar")
    done = subprocess.run(["tar", "--numeric-owner", "--full-time", "-tvf", str(path)],
                          capture_output=True, env=dict(os.environ, TZ="UTC", LC_ALL="C"))
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    return [_listed(line, "gnu") for line in done.stdout.decode("utf-8", "surrogateescape")
            .splitlines()]


_BSD_LINE = re.compile(r"^(\S{10})\S? +\d+ (\d+) +(\d+) +(\d+|\d+,\s*\d+) (\S+ +\S+ +\S+) +(.*)$")


def bsdtar_list(path: Path) -> list[Listed]:
    """bsdtar's verbose listing with numeric ids; fails on any warning it prints."""
    need("bsdtar")
    done = subprocess.run(["bsdtar", "--numeric-owner", "-tvf", str(path)], capture_output=True,
                          env=dict(os.environ, TZ="UTC", LC_ALL="C.UTF-8"))
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    return [_listed(line, "bsd") for line in done.stdout.decode("utf-8", "surrogateescape")
            .splitlines()]


def _listed(line: str, flavour: str) -> Listed:
    m = (_GNU_LINE if flavour == "gnu" else _BSD_LINE).match(line)
    assert m, f"{flavour} tar line not understood: {line!r}"
    mode, uid, gid, size, _, rest = m.groups()
    link = None
    if mode.startswith("l") and " -> " in rest:
        rest, link = rest.split(" -> ", 1)
    elif mode.startswith("h") and " link to " in rest:
        rest, link = rest.split(" link to ", 1)
    elif flavour == "bsd" and " link to " in rest:
        rest, link = rest.split(" link to ", 1)
    return Listed(mode, int(uid), int(gid), 0 if "," in size else int(size), rest, link)


def gnu_extract(path: Path, dest: Path) -> Path:
    """The archive unpacked by GNU tar, xattrs included, owners not (a test may not be root)."""
    need("tar")
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["tar", "--no-same-owner", "-xf", str(path), "-C", str(dest)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return dest


def sfdisk_json(image: Path) -> dict[str, object]:
    need("sfdisk")
    done = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["partitiontable"]  # type: ignore[no-any-return]


def gpt_free(table: dict[str, object]) -> list[tuple[int, int]]:
    """(first sector, sectors) of every gap between firstlba and lastlba that no partition of
    `sfdisk --json` covers (sfdisk -F hides gaps smaller than its 1 MiB grain)."""
    spans = sorted((int(p["start"]), int(p["size"]))  # type: ignore[index]
                   for p in table["partitions"])  # type: ignore[attr-defined]
    gaps, at = [], int(table["firstlba"])  # type: ignore[call-overload]
    for start, size in spans:
        if start > at:
            gaps.append((at, start - at))
        at = max(at, start + size)
    last = int(table["lastlba"])  # type: ignore[call-overload]
    if last + 1 > at:
        gaps.append((at, last + 1 - at))
    return gaps
