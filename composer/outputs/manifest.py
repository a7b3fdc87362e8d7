"""manifest.json (what every image holds) and SHA256SUMS (what `sha256sum -c` reads).

File hashes are taken while the writers read the data, so no byte is read twice for them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from composer import __version__
from composer.content import ContentStore
from composer.tree import Content, Entry, Kind

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class HashingStore(ContentStore):
    """A content store that remembers the sha256 of every content a writer read in full."""

    def __init__(self, inner: ContentStore) -> None:
        self._inner = inner
        self.hashes: dict[Content, str] = {}

    def stream(self, contents: Iterable[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        for content, stream in self._inner.stream(contents):
            yield content, self._wrap(content, stream)

    def stream_sorted(self, contents: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        for content, stream in self._inner.stream_sorted(contents):
            yield content, self._wrap(content, stream)

    def _wrap(self, content: Content, stream: BinaryIO) -> BinaryIO:
        if content in self.hashes:
            return stream
        return _Hashing(content, stream, self.hashes)  # type: ignore[return-value]

    def digest(self, content: Content) -> str:
        if content.size == 0:
            return EMPTY_SHA256
        if content.inline is not None:
            return hashlib.sha256(content.inline).hexdigest()
        if content not in self.hashes:
            for got, stream in self._inner.stream([content]):
                h = hashlib.sha256()
                while chunk := stream.read(1 << 20):
                    h.update(chunk)
                self.hashes[got] = h.hexdigest()
        return self.hashes[content]


class _Hashing(io.RawIOBase):
    def __init__(self, content: Content, inner: BinaryIO, sink: dict[Content, str]) -> None:
        self._content, self._inner, self._sink = content, inner, sink
        self._hash = hashlib.sha256()
        self._done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._hash.update(data)
        self._done += n
        if self._done == self._content.size and self._content not in self._sink:
            self._sink[self._content] = self._hash.hexdigest()
        return n


def entry_record(entry: Entry, store: HashingStore) -> dict[str, Any]:
    record: dict[str, Any] = {
        "path": entry.path,
        "kind": entry.kind.value,
        "mode": f"{entry.mode:04o}",
        "uid": entry.uid,
        "gid": entry.gid,
        "mtime": entry.mtime_ns // 1_000_000_000,
        "mtime_ns": entry.mtime_ns,
    }
    if entry.kind is Kind.FILE and entry.content is not None:
        record["size"] = entry.size
        record["sha256"] = store.digest(entry.content)
    if entry.target is not None:
        record["target"] = entry.target
    if entry.kind in (Kind.CHAR, Kind.BLOCK):
        record["rdev"] = list(entry.rdev)
    if entry.xattrs:
        record["xattrs"] = [name for name, _ in entry.xattrs]
    return record


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def write_sha256sums(folder: Path, names: Iterable[str]) -> None:
    lines = [f"{file_sha256(folder / name)}  {name}\n" for name in sorted(names)]
    (folder / "SHA256SUMS").write_text("".join(lines), encoding="utf-8")


def manifest_header(layout_name: str, epoch: int) -> dict[str, Any]:
    return {"composer": __version__, "layout": layout_name, "epoch": epoch, "partitions": {}}
