"""The files of an image archive (a tar, maybe compressed) or of an image-layout folder.

An archive is unpacked once into a private temporary folder, regular files only: every blob of
an image is read several times (digest, diffID, tar-split, entries, data), and a compressed
archive can only be read from its start. The folder lives as long as the Bundle that owns it
(and the data sources that read layers from it), and goes at the latest when the process ends.
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from pathlib import Path

from composer.docker.model import ImageFormatError
from composer.sources.archive import scan_archive
from composer.tree import Content, Entry, Kind


class Bundle:
    def __init__(self, label: str, files: dict[str, Path],
                 keep: tempfile.TemporaryDirectory[str] | None = None) -> None:
        self.label = label  # the archive's name, for messages
        self._files = files  # path relative to the root, without "./" -> host file
        self._keep = keep  # the unpacked copy, removed when the last user lets go

    def has(self, name: str) -> bool:
        return _clean(name) in self._files

    def file(self, name: str) -> Path:
        path = self._files.get(_clean(name))
        if path is None:
            raise ImageFormatError(f"{name} is missing from the archive",
                                   hint="the archive is incomplete; save or copy it again")
        return path

    def read(self, name: str) -> bytes:
        return self.file(name).read_bytes()


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def open_bundle(path: Path) -> Bundle:
    if path.is_dir():
        return _folder(path)
    return _unpacked(path)


def _folder(root: Path) -> Bundle:
    files: dict[str, Path] = {}
    real_root = root.resolve()
    for path in sorted(root.rglob("*")):
        if not path.is_file():  # follows symlinks: a link to a file inside the layout counts
            continue
        if not path.resolve().is_relative_to(real_root):
            continue  # a link out of the layout is not part of it
        files[path.relative_to(root).as_posix()] = path
    return Bundle(root.name, files)


def _unpacked(archive: Path) -> Bundle:
    scanned = scan_archive(archive.name, archive)  # errors name the archive and the member
    entries = scanned.entries
    keep = tempfile.TemporaryDirectory(prefix="composer-images-")
    try:
        files: dict[str, Path] = {}
        by_content: dict[Content, Path] = {}
        wanted = [e.content for e in entries.values()
                  if e.kind is Kind.FILE and e.content is not None]
        for number, (content, stream) in enumerate(scanned.data.iter_data(wanted)):
            out = Path(keep.name) / str(number)
            with out.open("wb") as f:
                shutil.copyfileobj(stream, f, 1 << 20)
            by_content[content] = out
        for path in entries:
            target = _resolve(entries, path)
            found = entries.get(target) if target is not None else None
            if found is not None and found.kind in (Kind.FILE, Kind.HARDLINK) \
                    and found.content is not None and found.content in by_content:
                files[path.lstrip("/")] = by_content[found.content]
    except BaseException:
        keep.cleanup()
        raise
    return Bundle(archive.name, files, keep)


def _resolve(entries: dict[str, Entry], path: str, hops: int = 8) -> str | None:
    """Follow symlinks inside the archive (old `docker save` links a repeated layer.tar to its
    first copy); None when a link leaves the archive or loops."""
    for _ in range(hops):
        entry = entries.get(path)
        if entry is None or entry.kind is not Kind.SYMLINK:
            return path
        target = entry.target or ""
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if not path.startswith("/"):
            return None
    return None
