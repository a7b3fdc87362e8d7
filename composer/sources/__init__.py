"""Sources: named inputs (a folder or an archive) scanned into entries plus a way to read data.
The kinds of source and their scanners are listed in composer/registry.py.

Names are bytes on Linux. Inside composer a name is a str made from those bytes by UTF-8 with
surrogateescape (PEP 383): valid UTF-8 reads as itself, every other byte 0xNN as the lone
surrogate U+DCNN. The mapping is one-to-one, whatever the locale (os.fsdecode would follow the
locale's charset, so it is not used), and the writers turn a name back into the same bytes with
`name_to_bytes`. Where a name is shown to people it goes through errors.shown().
"""

from __future__ import annotations

from dataclasses import dataclass, field

from composer.content import DataSource
from composer.tree import Entry


@dataclass(frozen=True, slots=True)
class Scanned:
    """One source after its metadata pass: entries keyed by path inside the source ("/" = root)."""

    name: str
    entries: dict[str, Entry]
    data: DataSource
    newest_mtime_ns: int
    warnings: tuple[str, ...] = field(default=())


def name_from_bytes(raw: bytes) -> str:
    """A name as composer carries it (see the module docstring)."""
    return raw.decode("utf-8", "surrogateescape")


def name_to_bytes(name: str) -> bytes:
    """The bytes a name stands for: the inverse of name_from_bytes."""
    return name.encode("utf-8", "surrogateescape")
