"""Sources: named inputs (a folder or an archive) scanned into entries plus a way to read data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from composer.content import DataSource
from composer.errors import ComposerError, Loc
from composer.tree import Entry


@dataclass(frozen=True, slots=True)
class Scanned:
    """One source after its metadata pass: entries keyed by path inside the source ("/" = root)."""

    name: str
    entries: dict[str, Entry]
    data: DataSource
    newest_mtime_ns: int
    warnings: tuple[str, ...] = field(default=())


def scan_source(name: str, path: Path, loc: Loc | None = None) -> Scanned:
    from composer.sources.archive import scan_archive
    from composer.sources.directory import scan_directory

    if path.is_dir():
        return scan_directory(name, path)
    if path.is_file():
        return scan_archive(name, path)
    if not path.exists():
        raise ComposerError(f"source {name!r}: {path.name} does not exist", loc,
                            hint="paths under 'sources:' are relative to the layout file")
    raise ComposerError(f"source {name!r}: {path.name} is neither a folder nor an archive file",
                        loc)
