"""Reading file contents for writers: each content is read once, from its source, when written.

Sources are either random access (folders, inline bytes) or sequential (archives, which may be
compressed). `stream()` hands contents over in whatever order is cheapest, for writers that place
data at planned offsets (ext4). `stream_sorted()` hands them over in the order asked for, for
writers that must emit in order (tar, vfat); out-of-order members of a sequential source are
spilled to one temporary file instead of staying in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

from composer.errors import ComposerError, shown
from composer.tree import Content

CHUNK = 1 << 20


class DataSource(ABC):
    """The data side of a source: how to get at the bytes of the members it listed."""

    name: str
    sequential: bool  # True when members can only be read in the source's own order

    @abstractmethod
    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        """Yield each wanted content once, in the source's natural order.

        A yielded stream is only valid until the next item is requested.
        """


class ContentStore:
    """All the data sources of one build, by name."""

    def __init__(self, sources: Mapping[str, DataSource] | None = None,
                 spill_dir: Path | None = None) -> None:
        self._sources = dict(sources or {})
        self._spill_dir = spill_dir

    @property
    def sources(self) -> Mapping[str, DataSource]:
        return MappingProxyType(self._sources)

    @property
    def spill_dir(self) -> Path | None:
        """Where stream_sorted() keeps members it read ahead (None: the system's temp folder)."""
        return self._spill_dir

    def add(self, source: DataSource) -> None:
        """A data source found while the rules run (a layer of a preloaded image)."""
        if source.name in self._sources:
            raise ComposerError(f"two data sources named {source.name!r}")
        self._sources[source.name] = source

    def spilling_into(self, folder: Path) -> ContentStore:
        """The same sources, spilling out-of-order archive members into `folder`."""
        return ContentStore(self._sources, folder)

    def stream(self, contents: Iterable[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        """Yield every distinct content once, in the cheapest order (source order)."""
        by_source = _group(contents)
        for source_name in sorted(by_source):
            wanted = by_source[source_name]
            if source_name == "":
                for content in wanted:
                    yield content, _inline_stream(content)
            else:
                yield from self._checked(self._source(source_name).iter_data(wanted))

    def stream_sorted(self, contents: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        """Yield contents in exactly the given order (repeats allowed)."""
        uses = Counter(contents)
        with tempfile.TemporaryFile(dir=self._spill_dir) as spill:
            spilled: dict[Content, tuple[int, int]] = {}
            pending: dict[str, Iterator[tuple[Content, BinaryIO]]] = {}
            for content in contents:
                uses[content] -= 1
                if content.is_inline:
                    yield content, _inline_stream(content)
                elif content in spilled:
                    yield content, _spilled_stream(spill, *spilled[content])
                elif not self._source(content.source).sequential:
                    yield from self._checked(self._source(content.source).iter_data([content]))
                else:
                    if content.source not in pending:
                        wanted = _unique(c for c in contents if c.source == content.source)
                        source = self._source(content.source)
                        pending[content.source] = self._checked(source.iter_data(wanted))
                    it = pending[content.source]
                    yield content, self._advance_to(content, it, spill, spilled, uses)

    @staticmethod
    def _advance_to(content: Content, it: Iterator[tuple[Content, BinaryIO]], spill: BinaryIO,
                    spilled: dict[Content, tuple[int, int]], uses: Counter[Content]) -> BinaryIO:
        """Read a sequential source up to `content`, spilling members that are needed later."""
        for got, stream in it:
            if got == content and uses[got] == 0:
                return stream  # in order and not needed again: no copy at all
            start = spill.seek(0, io.SEEK_END)
            shutil.copyfileobj(stream, spill, CHUNK)
            spilled[got] = (start, spill.tell() - start)
            if got == content:
                return _spilled_stream(spill, start, got.size)
        raise ComposerError(f"{content.source}:{content.member}: member vanished from the source")

    def _source(self, name: str) -> DataSource:
        try:
            return self._sources[name]
        except KeyError:
            raise ComposerError(f"no data source named {name!r}") from None

    @staticmethod
    def _checked(it: Iterator[tuple[Content, BinaryIO]]) -> Iterator[tuple[Content, BinaryIO]]:
        for content, stream in it:
            # a stream that hands over exactly the planned size or fails needs no second check
            # (a layer of Python per read: most files are read in one call)
            yield content, stream if getattr(stream, "checks_its_size", False) else \
                _SizeCheckedStream(content, stream)


def read_full(stream: BinaryIO, view: memoryview) -> int:
    """Fill `view` from `stream`; short only at the end (raw streams may return less per read).
    Returns the number of bytes read."""
    got = 0
    readinto = getattr(stream, "readinto", None)
    while got < len(view):
        if readinto is not None:
            n = readinto(view[got:]) or 0
        else:
            data = stream.read(len(view) - got)
            n = len(data)
            view[got:got + n] = data
        if not n:
            break
        got += n
    return got


def stream_sha256(stream: BinaryIO) -> bytes:
    """The raw sha256 of what `stream` holds from here to its end (the store's streams raise
    when a content ends before its planned size)."""
    h = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        h.update(chunk)
    return h.digest()


class _SizeCheckedStream(io.RawIOBase):
    """Refuses to hand over more or fewer bytes than the plan measured (the input changed).

    Once the planned size is read, the source must be at its end: a folder file that grew since
    the plan is an error, not silently cut, and an archive member's end is where libarchive
    checks its CRC."""

    def __init__(self, content: Content, inner: BinaryIO) -> None:
        self._content = content
        self._inner = inner
        self._done = 0
        # a stream that checks its own end (an archive member's) needs no probe from us
        self._probe_end = not getattr(inner, "checks_its_end", False)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._content.size - self._done)
        if want <= 0:
            return 0
        readinto = getattr(self._inner, "readinto", None)
        if readinto is not None:  # straight into the caller's buffer: no copy of our own
            n = readinto(memoryview(buffer)[:want]) or 0
        else:
            data = self._inner.read(want)
            n = len(data)
            buffer[:n] = data
        if not n:
            raise ComposerError(
                f"{self._where()}: ended after {self._done} of {self._content.size} bytes",
                hint="the input changed or is truncated")
        self._done += n
        if self._done == self._content.size and self._probe_end:
            self._check_end()
        return n

    def _where(self) -> str:
        return f"{self._content.source}:{shown(self._content.member)}"

    def _check_end(self) -> None:
        if self._inner.read(1):
            raise ComposerError(f"{self._where()}: holds more than the {self._content.size} "
                                "bytes it had when the build was planned",
                                hint="the input changed during the build; do not change the "
                                "sources while composer runs")


def _inline_stream(content: Content) -> BinaryIO:
    assert content.inline is not None
    return io.BytesIO(content.inline)


def _spilled_stream(spill: BinaryIO, start: int, length: int) -> BinaryIO:
    spill.seek(start)  # and so out of the write buffer into the file
    return io.BytesIO(spill.read(length)) if length <= CHUNK else \
        FileWindow(spill.fileno(), start, length)


class FileWindow(io.RawIOBase):
    """A read-only view of `length` bytes of the open file `fd` from `start`, read with pread
    (the file may be shared: no position of its own to keep). Reads 0 at the window's end, or
    at the file's end when it is shorter."""

    def __init__(self, fd: int, start: int, length: int) -> None:
        self._fd, self._pos, self._end = fd, start, start + length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._end - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [memoryview(buffer).cast("B")[:n]], self._pos)
        self._pos += got
        return got


def _unique(contents: Iterable[Content]) -> list[Content]:
    return list(dict.fromkeys(contents))


def _group(contents: Iterable[Content]) -> dict[str, list[Content]]:
    groups: dict[str, list[Content]] = {}
    for content in _unique(contents):
        groups.setdefault(content.source, []).append(content)
    return groups
