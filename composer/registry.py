"""The file-system formats and source kinds composer knows, each in one table keyed by an enum.

This is where the build is wired (as genimage lists its image handlers in its driver, and mkosi
keys its registries by an enum): nothing registers itself on import, the interface modules
(fs/base.py, sources/__init__.py) know no implementation, and adding a format or a source kind
is one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from composer.errors import ComposerError, Loc
from composer.fs.base import FsWriter
from composer.fs.ext4 import Ext4Writer
from composer.fs.tar import TarWriter
from composer.fs.vfat import VfatWriter
from composer.sources import Scanned
from composer.sources.archive import scan_archive
from composer.sources.directory import scan_directory


class Format(StrEnum):
    """A partition's `fs:` in the layout."""

    EXT4 = "ext4"
    VFAT = "vfat"
    TAR = "tar"


WRITERS: Mapping[Format, type[FsWriter]] = MappingProxyType({
    Format.EXT4: Ext4Writer,
    Format.VFAT: VfatWriter,
    Format.TAR: TarWriter,
})


class SourceKind(StrEnum):
    """What a path under `sources:` names."""

    FOLDER = "folder"
    ARCHIVE = "archive"  # any archive libarchive reads: tar (compressed or not), zip, cpio, …


SCANNERS: Mapping[SourceKind, Callable[[str, Path], Scanned]] = MappingProxyType({
    SourceKind.FOLDER: scan_directory,
    SourceKind.ARCHIVE: scan_archive,
})


def source_kind(name: str, path: Path, loc: Loc | None = None) -> SourceKind:
    """The kind of source at `path`, or a located error when there is none to read."""
    if path.is_dir():
        return SourceKind.FOLDER
    if path.is_file():
        return SourceKind.ARCHIVE
    if not path.exists():
        raise ComposerError(f"source {name!r}: {path.name} does not exist", loc,
                            hint="paths under 'sources:' are relative to the layout file")
    raise ComposerError(f"source {name!r}: {path.name} is neither a folder nor an archive file",
                        loc)


def scan_source(name: str, path: Path, loc: Loc | None = None) -> Scanned:
    """The metadata pass over one source, by its kind."""
    return SCANNERS[source_kind(name, path, loc)](name, path)
