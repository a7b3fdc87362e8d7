"""The provenance record of a build: which layout, sources and epoch it was made from.

Each source is recorded by the digest of its tree (composer/sources/digest.py), archives as
well as folders: an archive's file hash would change with its member order or compression,
which change no image byte, and the manifest must not change with them either. The trees come
from the scan the build already made, and the contents the writers read were hashed as they
were read (HashingStore): only the files that no image holds are read again, in one pass per
source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from composer.content import ContentStore
from composer.errors import ComposerError
from composer.outputs.manifest import (
    EpochOrigin,
    HashingStore,
    ProvenanceRecord,
    SourceRecord,
    file_sha256,
)
from composer.registry import SourceKind, scan_source
from composer.sources import Scanned
from composer.sources.digest import tree_digest
from composer.sources.directory import DirectoryData
from composer.tree import Content, Kind


def provenance(layout_path: Path, scanned: Mapping[str, Scanned], store: HashingStore,
               origin: EpochOrigin) -> ProvenanceRecord:
    """`store` is the build's HashingStore, holding the digests of what the writers read."""
    hash_contents(scanned.values(), store)
    return ProvenanceRecord(
        layout_file=layout_path.name, layout_sha256=layout_sha256(layout_path),
        sources={name: _record(s, store) for name, s in sorted(scanned.items())},
        epoch_origin=origin.value)


def current_record(name: str, path: Path) -> SourceRecord:
    """What a source holds now, to compare with a recorded build (reads it in full)."""
    scanned = scan_source(name, path)
    store = HashingStore(ContentStore({name: scanned.data}))
    hash_contents([scanned], store)
    return _record(scanned, store)


def layout_sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise ComposerError(f"cannot read the layout {path}: {exc.strerror}") from None


def _record(scanned: Scanned, store: HashingStore) -> SourceRecord:
    kind = SourceKind.FOLDER if isinstance(scanned.data, DirectoryData) else SourceKind.ARCHIVE
    return SourceRecord(kind.value, tree_digest(scanned.entries.values(), store.digest))


def hash_contents(sources: Iterable[Scanned], store: HashingStore,
                  progress: Callable[[int, int], None] | None = None) -> None:
    """Hash every content no writer read, in one stream (one pass over each archive);
    `progress(bytes hashed, bytes to hash)` follows the stream and ends at its total."""
    wanted: dict[Content, None] = {}
    for scanned in sources:
        for entry in scanned.entries.values():
            content = entry.content
            if entry.kind is Kind.FILE and content is not None and content.size \
                    and content.inline is None and content not in store.hashes:
                wanted[content] = None
    store.finish()
    todo = [c for c in wanted if c not in store.hashes]
    total, done = sum(c.size for c in todo), 0
    for _, stream in store.stream(todo):
        while chunk := stream.read(1 << 20):
            done = min(done + len(chunk), total)
            if progress is not None:
                progress(done, total)
    store.finish()
    if progress is not None:
        progress(total, total)
