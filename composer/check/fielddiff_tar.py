"""Field-level differences between two tar archives: member by member, in archive order, each
header's fields (as Python's tarfile parses ustar, pax and GNU headers) and each member's data;
then the bytes no member explains (padding, the end-of-archive blocks) as byte ranges.

Both archives are read as streams, one member at a time (tarfile's member list is emptied as it
goes), and member data is compared in CHUNK-sized reads.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from composer.check.fielddiff import (
    CHUNK,
    MAX_CHANGES,
    FieldChange,
    Progress,
    Region,
    byte_range,
    differing_runs,
    mark_following,
)
from composer.errors import ComposerError, shown

BLOCK = tarfile.BLOCKSIZE
# the TarInfo attributes a header holds, in the order the ustar header stores them
HEADER_FIELDS = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname",
                 "uname", "gname", "devmajor", "devminor")


def diff_tar(path_a: Path, path_b: Path, progress: Progress | None = None
             ) -> list[FieldChange]:
    changes: list[FieldChange] = []
    explained: list[tuple[int, int]] = []  # A's byte spans of the members named above
    try:
        # names as UTF-8 whatever the locale; bytes that are not stay as surrogates (shown())
        with tarfile.open(path_a, "r:", encoding="utf-8", errors="surrogateescape") as ta, \
                tarfile.open(path_b, "r:", encoding="utf-8", errors="surrogateescape") as tb:
            for ma, mb in _pairs(ta, tb):
                if len(changes) >= MAX_CHANGES:
                    break
                found = _member(ta, tb, ma, mb)
                if found and ma is not None:
                    explained.append((ma.offset, ma.offset_data + _padded(ma.size)))
                changes += found
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ComposerError(f"{path_a.name} or {path_b.name} is not a tar archive Python's "
                            f"tarfile reads ({exc})") from None
    with path_a.open("rb") as fa, path_b.open("rb") as fb:
        a = Region(fa, 0, path_a.stat().st_size)
        b = Region(fb, 0, path_b.stat().st_size)
        for first, last in differing_runs(a, b, BLOCK, progress):
            start, end = first * BLOCK, (last + 1) * BLOCK
            for lo, hi in _unexplained(start, end, explained):
                changes.append(byte_range(lo, hi, "tar blocks no differing member explains "
                                                  "(padding, end-of-archive blocks)"))
    return mark_following(changes, _cause_of)


def _pairs(ta: tarfile.TarFile, tb: tarfile.TarFile
           ) -> Iterator[tuple[tarfile.TarInfo | None, tarfile.TarInfo | None]]:
    while True:
        ma, mb = ta.next(), tb.next()
        ta.members, tb.members = [], []  # streamed: memory for one member, not the archive
        if ma is None and mb is None:
            return
        yield ma, mb


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _member(ta: tarfile.TarFile, tb: tarfile.TarFile, ma: tarfile.TarInfo | None,
            mb: tarfile.TarInfo | None) -> list[FieldChange]:
    if ma is None or mb is None:
        m = ma or mb
        assert m is not None
        return [FieldChange(_name(m), "added" if ma is None else "removed",
                            None if ma is None else _name(ma),
                            None if mb is None else _name(mb))]
    where = _name(ma)
    found = [FieldChange(where, f, _value(getattr(ma, f)), _value(getattr(mb, f)))
             for f in HEADER_FIELDS if getattr(ma, f) != getattr(mb, f)]
    for key in sorted(ma.pax_headers.keys() | mb.pax_headers.keys()):
        x, y = ma.pax_headers.get(key), mb.pax_headers.get(key)
        if x != y:
            found.append(FieldChange(where, f"pax {key}", x, y))
    if ma.isreg() and mb.isreg() and ma.size == mb.size and not _same_data(ta, tb, ma, mb):
        found.append(byte_range(ma.offset_data, ma.offset_data + ma.size,
                                f"data of member {where}"))
    return found


def _name(m: tarfile.TarInfo) -> str:
    """The member's name as entries are shown (README "Names"): undecodable bytes as \\xNN."""
    return shown(m.name.removeprefix("./")) or "."


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return shown(value) if isinstance(value, str) else value


def _same_data(ta: tarfile.TarFile, tb: tarfile.TarFile, ma: tarfile.TarInfo,
               mb: tarfile.TarInfo) -> bool:
    fa, fb = ta.fileobj, tb.fileobj
    assert fa is not None and fb is not None
    done = 0
    while done < ma.size:
        n = min(CHUNK, ma.size - done)
        fa.seek(ma.offset_data + done)
        fb.seek(mb.offset_data + done)
        if fa.read(n) != fb.read(n):
            return False
        done += n
    return True


def _unexplained(start: int, end: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces = [(start, end)]
    for lo, hi in spans:
        pieces = [p for s, e in pieces for p in ((s, min(e, lo)), (max(s, hi), e)) if p[0] < p[1]]
    return pieces


def _cause_of(change: FieldChange, by_key: dict[str, FieldChange]) -> str | None:
    """A header's checksum follows its other fields; pax records follow the fields they set."""
    if change.field == "chksum" or change.field.startswith("pax "):
        named = change.field.removeprefix("pax ")
        if named != change.field and f"{change.structure} {named}" in by_key:
            return f"{change.structure} {named}"
        return next((k for k, c in by_key.items() if c.structure == change.structure
                     and c.field not in ("chksum",) and not c.field.startswith("pax ")
                     and c is not change), None)
    return None
