"""manifest.json (what every image holds) and SHA256SUMS (what `sha256sum -c` reads).

File hashes are taken while the writers read the data, so no byte is read twice for them.
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from composer import __version__
from composer.content import ContentStore
from composer.errors import shown
from composer.tree import Content, Entry, Kind

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# Contents at least this big are hashed on a helper thread: hashlib releases the GIL for big
# buffers, so their sha256 runs on the other core while the writer goes on. Smaller ones are
# hashed in place, where a queue hop would cost more than the hash.
BACKGROUND_MIN = 256 * 1024
QUEUE_CHUNKS = 16  # bounds the copies in flight (the writer's chunks are 1 MiB)


class HashingStore(ContentStore):
    """A content store that remembers the sha256 of every content a writer read in full."""

    def __init__(self, store: ContentStore) -> None:
        """The same sources as `store`, read with hashing."""
        super().__init__(store.sources, store.spill_dir)
        self.hashes: dict[Content, str] = {}
        self._queue: queue.Queue[tuple[Content, Any, bytes | None] | None] = \
            queue.Queue(QUEUE_CHUNKS)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def stream(self, contents: Iterable[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        for content, stream in super().stream(contents):
            yield content, self._wrap(content, stream)

    def stream_sorted(self, contents: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        for content, stream in super().stream_sorted(contents):
            yield content, self._wrap(content, stream)

    def _wrap(self, content: Content, stream: BinaryIO) -> BinaryIO:
        if content in self.hashes:
            return stream
        if content.size >= BACKGROUND_MIN:
            self._start()
            return _Hashing(content, stream, self._background(content))  # type: ignore
        return _Hashing(content, stream, self._inline(content))  # type: ignore[return-value]

    def _inline(self, content: Content) -> _Sink:
        h = hashlib.sha256()

        def sink(data: bytes | memoryview | None) -> None:
            if data is None:
                self.hashes.setdefault(content, h.hexdigest())
            else:
                h.update(data)
        return sink

    def _background(self, content: Content) -> _Sink:
        h = hashlib.sha256()

        def sink(data: bytes | memoryview | None) -> None:
            # the writer reuses its buffer: hand over a copy
            self._queue.put((content, h, None if data is None else bytes(data)))
        return sink

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="sha256", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            content, h, data = item
            try:
                if data is None:
                    self.hashes.setdefault(content, h.hexdigest())
                else:
                    h.update(data)
            except BaseException as exc:  # noqa: BLE001 - re-raised in finish()
                self._failure = exc

    def finish(self) -> None:
        """Wait until every content read so far is hashed."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._failure is not None:
            raise self._failure

    def digest(self, content: Content) -> str:
        if content.size == 0:
            return EMPTY_SHA256
        if content.inline is not None:
            return hashlib.sha256(content.inline).hexdigest()
        if content not in self.hashes:
            self.finish()
        if content not in self.hashes:
            for got, stream in super().stream([content]):
                h = hashlib.sha256()
                while chunk := stream.read(1 << 20):
                    h.update(chunk)
                self.hashes[got] = h.hexdigest()
        return self.hashes[content]


_Sink = Callable[[bytes | memoryview | None], None]


class _Hashing(io.RawIOBase):
    """Hands what the writer reads to a hash sink, then None once the content is complete."""

    def __init__(self, content: Content, inner: BinaryIO, sink: _Sink) -> None:
        self._content, self._inner, self._sink = content, inner, sink
        self._done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        readinto = getattr(self._inner, "readinto", None)
        if readinto is not None:
            view = memoryview(buffer)
            n = readinto(view) or 0
            if n:
                self._sink(view[:n])
        else:
            data = self._inner.read(len(buffer))
            n = len(data)
            buffer[:n] = data
            if n:
                self._sink(data)
        self._done += n
        if n and self._done == self._content.size:
            self._sink(None)
        return n


def entry_record(entry: Entry, store: HashingStore) -> dict[str, Any]:
    # names are bytes: shown() writes any of them as valid UTF-8 (undecodable bytes and control
    # characters as \xNN, a backslash as \\), the escaping the README documents
    record: dict[str, Any] = {
        "path": shown(entry.path),
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
        record["target"] = shown(entry.target)
    if entry.kind in (Kind.CHAR, Kind.BLOCK):
        record["rdev"] = list(entry.rdev)
    if entry.xattrs:
        record["xattrs"] = [shown(name) for name, _ in entry.xattrs]
    return record


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    path.write_text(dumps(data) + "\n", encoding="utf-8")


def dumps(data: Any) -> str:
    """JSON with sorted keys, mappings indented, and each mapping inside a list on one line (an
    entry per line: a manifest has tens of thousands, and one line each keeps `diff` readable).
    Those lines come from json's C encoder; json.dumps with an indent is pure Python and slow."""
    out: list[str] = []
    try:
        _encode(data, "", out)
    except _Unusual:
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    return "".join(out)


class _Unusual(Exception):
    """Something the fast path does not do the way json does (non-string keys)."""


_str = json.encoder.encode_basestring  # type: ignore[attr-defined]
_compact = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(", ", ": ")).encode


def _encode(obj: Any, indent: str, out: list[str]) -> None:
    kind = type(obj)
    if kind is str:
        out.append(_str(obj))
    elif kind is int:
        out.append(int.__repr__(obj))
    elif kind is dict:
        if not obj:
            out.append("{}")
            return
        inner = indent + "  "
        sep = "{\n" + inner
        for key in sorted(obj):
            if type(key) is not str:
                raise _Unusual
            value = obj[key]
            vkind = type(value)
            if vkind is str:
                out.append(sep + _str(key) + ": " + _str(value))
            elif vkind is int:
                out.append(sep + _str(key) + ": " + int.__repr__(value))
            else:
                out.append(sep + _str(key) + ": ")
                _encode(value, inner, out)
            sep = ",\n" + inner
        out.append("\n" + indent + "}")
    elif kind is list or kind is tuple:
        if not obj:
            out.append("[]")
            return
        inner = indent + "  "
        sep = "[\n" + inner
        for value in obj:
            out.append(sep)
            if type(value) is dict:
                out.append(_compact(value))
            else:
                _encode(value, inner, out)
            sep = ",\n" + inner
        out.append("\n" + indent + "]")
    else:  # None, bools, floats, subclasses: json's own spelling
        out.append(json.dumps(obj, ensure_ascii=False))


_ZEROS = bytes(1 << 20)


def image_sha256(path: Path, extents: Iterable[tuple[int, int]], size: int) -> str:
    """sha256 of a sparse image whose bytes outside `extents` are zero, without reading holes
    (reading a 1 GiB hole costs the kernel as much as reading data)."""
    h = hashlib.sha256()
    pos = 0
    with path.open("rb") as f:
        for start, length in extents:
            _zeros(h, start - pos)
            f.seek(start)
            left = length
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    raise OSError(f"{path} is shorter than its block map says")
                h.update(chunk)
                left -= len(chunk)
            pos = start + length
    _zeros(h, size - pos)
    return h.hexdigest()


def _zeros(h: Any, n: int) -> None:
    while n > 0:
        step = min(n, len(_ZEROS))
        h.update(_ZEROS[:step] if step < len(_ZEROS) else _ZEROS)
        n -= step


def write_sha256sums(folder: Path, names: Iterable[str],
                     known: dict[str, str] | None = None) -> None:
    """SHA256SUMS for `names`; `known` holds digests already computed (big images)."""
    known = known or {}
    lines = [f"{known.get(name) or file_sha256(folder / name)}  {name}\n"
             for name in sorted(names)]
    (folder / "SHA256SUMS").write_text("".join(lines), encoding="utf-8")


def manifest_header(layout_name: str, epoch: int) -> dict[str, Any]:
    return {"composer": __version__, "layout": layout_name, "epoch": epoch, "partitions": {}}
