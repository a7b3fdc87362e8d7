"""manifest.json (what every image holds) and SHA256SUMS (what `sha256sum -c` reads).

The manifest is a tree of frozen records (`Manifest` down to `EntryRecord`), built once at the end
of a build and written by `Manifest.write()` (piece by piece: the same text as `to_json()`);
`Manifest.from_json()` reads one back. File hashes are taken while the writers read the data,
so no byte is read twice for them.
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, overload

from composer import __version__
from composer.content import ContentStore, stream_sha256
from composer.disk.assemble import DiskPlan, PlannedPartition, TableType
from composer.errors import shown
from composer.tree import Content, Entry, Kind

if TYPE_CHECKING:
    from composer.outputs.prehash import Prehash

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# Contents at least this big are hashed on a helper thread: hashlib releases the GIL for big
# buffers, so their sha256 runs on the other core while the writer goes on. Smaller ones are
# hashed in place, where a queue hop would cost more than the hash.
BACKGROUND_MIN = 256 * 1024
QUEUE_CHUNKS = 16  # bounds the copies in flight (the writer's chunks are 1 MiB)
POLL_EVERY = 256  # files written between two looks at whether the prehash child is done


class HashingStore(ContentStore):
    """A content store that remembers the sha256 of every content a writer read in full."""

    def __init__(self, store: ContentStore, prehash: Prehash | None = None) -> None:
        """The same sources as `store`, read with hashing; `prehash`: a child hashing the
        sources' files meanwhile (composer/outputs/prehash.py), whose digests are taken once
        it is done and spare the writers that work."""
        super().__init__(store.sources, store.spill_dir)
        # raw digests (32 bytes; a hex string would take 113): one per file of the build
        self.hashes: dict[Content, bytes] = {}
        self._prehash = prehash
        self._until_poll = 0
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
        if self._prehash is not None:
            self._until_poll -= 1
            if self._until_poll < 0:  # a poll(2) per file would cost more than it saves
                self._until_poll = POLL_EVERY
                self.take_prehash(wait=False)
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
                self.hashes.setdefault(content, h.digest())
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
                    self.hashes.setdefault(content, h.digest())
                else:
                    h.update(data)
            except BaseException as exc:  # noqa: BLE001 - re-raised in finish()
                self._failure = exc

    def take_prehash(self, wait: bool) -> None:
        """Keep the digests the sources' hashing child made, once it is done (`wait`: until
        it is)."""
        if self._prehash is None:
            return
        got = self._prehash.take(wait)
        if got is not None or wait:
            self._prehash = None
        if got is not None:
            for content, digest in got:
                self.hashes.setdefault(content, digest)

    def finish(self) -> None:
        """Wait until every content read so far is hashed."""
        if self._prehash is not None:
            self.take_prehash(wait=True)
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
        known = self.hashes.get(content)
        if known is not None:
            return known.hex()
        if content not in self.hashes:
            self.finish()
        if content not in self.hashes:
            for got, stream in super().stream([content]):
                self.hashes[got] = stream_sha256(stream)
        return self.hashes[content].hex()


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


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return stream_sha256(f).hex()



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
    elif kind is _Records:
        # a list of records, each turned into its object only when its line is written
        if not obj.records:
            out.append("[]")
            return
        inner = indent + "  "
        sep = "[\n" + inner
        records = obj.records
        lines = records.lines() if isinstance(records, EntryRecords) else \
            (record.to_line() for record in records)
        for line in lines:
            out.append(sep + line)
            sep = ",\n" + inner
        out.append("\n" + indent + "]")
    else:  # None, bools, floats, subclasses: json's own spelling
        out.append(json.dumps(obj, ensure_ascii=False))


@dataclass(frozen=True, slots=True)
class _Records:
    """Stands for `[r.to_obj() for r in records]` in what `_encode` writes, without making all
    those objects at once (a manifest of 500,000 entries would hold 500,000 dicts)."""

    records: Sequence[EntryRecord]


class _FileSink:
    """`out` for `_encode` that writes to a file every few thousand pieces."""

    def __init__(self, f: Any, batch: int = 4096) -> None:
        self._f, self._batch, self._pieces = f, batch, []

    def append(self, piece: str) -> None:
        self._pieces.append(piece)
        if len(self._pieces) >= self._batch:
            self.flush()

    def flush(self) -> None:
        self._f.write("".join(self._pieces))
        self._pieces = []


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


# ---------------------------------------------------------------------------------------------
# The records of manifest.json. Each has to_obj() (the JSON object, keys sorted by dumps) and
# from_obj() (its inverse, for readers of a manifest). A field that is None is left out of the
# object, except the disk's `guid` and `signature`, which have always been shown as null for the
# other table type.


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One file, folder, link or node of a partition, as its image holds it."""

    path: str  # shown(): valid UTF-8, undecodable bytes and controls as \xNN (README "Names")
    kind: str  # Kind.value
    mode: str  # four octal digits
    uid: int
    gid: int
    mtime: int  # seconds, the clamped time the image stores
    mtime_ns: int
    size: int | None = None  # regular files with data, with sha256
    sha256: str | None = None
    target: str | None = None  # symlinks and hard links
    rdev: tuple[int, int] | None = None  # character and block devices: (major, minor)
    xattrs: tuple[str, ...] = ()  # names only: values may be secrets or binary

    @classmethod
    def of(cls, entry: Entry, store: HashingStore) -> EntryRecord:
        return cls(*_record_fields(entry, store))

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"path": self.path, "kind": self.kind, "mode": self.mode,
                               "uid": self.uid, "gid": self.gid, "mtime": self.mtime,
                               "mtime_ns": self.mtime_ns}
        if self.size is not None:
            obj["size"] = self.size
        if self.sha256 is not None:
            obj["sha256"] = self.sha256
        if self.target is not None:
            obj["target"] = self.target
        if self.rdev is not None:
            obj["rdev"] = list(self.rdev)
        if self.xattrs:
            obj["xattrs"] = list(self.xattrs)
        return obj

    def to_line(self) -> str:
        """The entry's line of manifest.json: exactly what json writes for `to_obj()` with
        sorted keys and ", "/": " separators."""
        return _record_line(self.path, self.kind, self.mode, self.uid, self.gid, self.mtime,
                            self.mtime_ns, self.size, self.sha256, self.target, self.rdev,
                            self.xattrs)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> EntryRecord:
        rdev = obj.get("rdev")
        return cls(path=obj["path"], kind=obj["kind"], mode=obj["mode"], uid=obj["uid"],
                   gid=obj["gid"], mtime=obj["mtime"], mtime_ns=obj["mtime_ns"],
                   size=obj.get("size"), sha256=obj.get("sha256"), target=obj.get("target"),
                   rdev=(rdev[0], rdev[1]) if rdev is not None else None,
                   xattrs=tuple(obj.get("xattrs", ())))


_MODES = [f"{mode:04o}" for mode in range(0o10000)]  # the record's mode, one string per value


def _record_fields(entry: Entry, store: HashingStore) -> tuple[Any, ...]:
    """EntryRecord's fields for an entry, in their order."""
    # once per entry of every image (hundreds of thousands): positional, no generator unless
    # the entry has xattrs
    kind = entry.kind
    content = entry.content
    has_data = kind is Kind.FILE and content is not None
    return (shown(entry.path), kind.value, _MODES[entry.mode], entry.uid, entry.gid,
            entry.mtime_ns // 1_000_000_000, entry.mtime_ns,
            content.size if has_data else None,  # type: ignore[union-attr]
            store.digest(content) if has_data else None,  # type: ignore[arg-type]
            shown(entry.target) if entry.target is not None else None,
            tuple(entry.rdev) if kind is Kind.CHAR or kind is Kind.BLOCK else None,
            tuple([shown(name) for name, _ in entry.xattrs]) if entry.xattrs else ())


def _record_line(path: str, kind: str, mode: str, uid: int, gid: int, mtime: int,
                 mtime_ns: int, size: int | None, sha256: str | None, target: str | None,
                 rdev: tuple[int, int] | None, xattrs: tuple[str, ...]) -> str:
    """An EntryRecord's line (EntryRecord.to_line), from its fields: what json writes for its
    object, without a dict and an encoder per entry (the keys below are in sorted order)."""
    line = (f'{{"gid": {int.__repr__(gid)}, "kind": {_str(kind)}, '
            f'"mode": {_str(mode)}, "mtime": {int.__repr__(mtime)}, '
            f'"mtime_ns": {int.__repr__(mtime_ns)}, "path": {_str(path)}')
    if rdev is not None:
        line += f', "rdev": [{int.__repr__(rdev[0])}, {int.__repr__(rdev[1])}]'
    if sha256 is not None:
        line += f', "sha256": {_str(sha256)}'
    if size is not None:
        line += f', "size": {int.__repr__(size)}'
    if target is not None:
        line += f', "target": {_str(target)}'
    line += f', "uid": {int.__repr__(uid)}'
    if xattrs:
        line += ', "xattrs": [' + ", ".join([_str(name) for name in xattrs]) + "]"
    return line + "}"


class EntryRecords(Sequence[EntryRecord]):
    """A written partition's entry records, each made from its entry when it is read.

    The build holds the entries anyway (its write requests) and the store holds their digests:
    records made up front, a dozen fields and their strings per entry, held about 350 bytes an
    entry until manifest.json was written. Reads like the tuple it stands for."""

    __slots__ = ("_entries", "_store")

    def __init__(self, entries: Sequence[Entry], store: HashingStore) -> None:
        self._entries = entries
        self._store = store

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> EntryRecord: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[EntryRecord, ...]: ...

    def __getitem__(self, index: int | slice) -> EntryRecord | tuple[EntryRecord, ...]:
        if isinstance(index, slice):
            return tuple(EntryRecord.of(e, self._store) for e in self._entries[index])
        return EntryRecord.of(self._entries[index], self._store)

    def __iter__(self) -> Iterator[EntryRecord]:
        store = self._store
        for entry in self._entries:
            yield EntryRecord.of(entry, store)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def lines(self) -> Iterator[str]:
        """Each record's manifest line (EntryRecord.to_line), without the record objects."""
        store = self._store
        for entry in self._entries:
            yield _record_line(*_record_fields(entry, store))

    def digests(self) -> tuple[str | None, ...]:
        """The sha256 of each entry's data (None: no data of its own), in entry order."""
        return tuple(r.sha256 for r in self)


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    """One partition's image: its file, its size and digest, its volume ID and what it holds."""

    fs: str
    image: str  # the file name in the output folder
    size: int
    sha256: str
    uuid: str | None  # the volume ID in its format's spelling; None for tar
    entries: Sequence[EntryRecord]  # a tuple, or EntryRecords in the build that wrote them

    def to_obj(self, lazy: bool = False) -> dict[str, Any]:
        """`lazy`: the entries as a stand-in that the manifest's encoder turns into their
        objects one at a time (Manifest.write)."""
        entries: Any = _Records(self.entries) if lazy else [e.to_obj() for e in self.entries]
        obj: dict[str, Any] = {"fs": self.fs, "image": self.image, "size": self.size,
                               "sha256": self.sha256, "entries": entries}
        if self.uuid is not None:
            obj["uuid"] = self.uuid
        return obj

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> PartitionRecord:
        return cls(fs=obj["fs"], image=obj["image"], size=obj["size"], sha256=obj["sha256"],
                   uuid=obj.get("uuid"),
                   entries=tuple(EntryRecord.from_obj(e) for e in obj["entries"]))


@dataclass(frozen=True, slots=True)
class DiskPartitionRecord:
    """One partition table entry, with the fields its table type has."""

    name: str
    number: int  # the Linux partition number
    offset: int
    size: int
    type: str  # a GPT type GUID, or an MBR type byte as 0xNN
    # GPT: the partition GUID; MBR: "<signature>-<number>" in hex, as Linux names it
    # (block/partitions/msdos.c) and root=PARTUUID= in a Raspberry Pi cmdline.txt uses it
    partuuid: str
    # a hex string: these 64-bit values lose precision as JSON numbers in JavaScript
    attributes: str | None = None  # GPT only
    bootable: bool | None = None  # MBR only

    @classmethod
    def of(cls, plan: DiskPlan, p: PlannedPartition) -> DiskPartitionRecord:
        if plan.table is TableType.GPT:
            return cls(name=p.name, number=p.number, offset=p.offset, size=p.size,
                       type=str(p.type_guid), partuuid=str(p.uuid),
                       attributes=f"0x{p.attributes:016x}")
        return cls(name=p.name, number=p.number, offset=p.offset, size=p.size,
                   type=f"0x{p.mbr_type or 0:02x}",
                   partuuid=f"{plan.mbr_signature or 0:08x}-{p.number:02x}",
                   bootable=p.bootable)

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"name": self.name, "number": self.number, "offset": self.offset,
                               "size": self.size, "type": self.type, "partuuid": self.partuuid}
        if self.attributes is not None:
            obj["attributes"] = self.attributes
        if self.bootable is not None:
            obj["bootable"] = self.bootable
        return obj

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> DiskPartitionRecord:
        return cls(name=obj["name"], number=obj["number"], offset=obj["offset"],
                   size=obj["size"], type=obj["type"], partuuid=obj["partuuid"],
                   attributes=obj.get("attributes"), bootable=obj.get("bootable"))


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A raw blob (a bootloader) written at a fixed offset of the disk."""

    name: str
    offset: int
    size: int

    def to_obj(self) -> dict[str, Any]:
        return {"name": self.name, "offset": self.offset, "size": self.size}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> RawRecord:
        return cls(name=obj["name"], offset=obj["offset"], size=obj["size"])


@dataclass(frozen=True, slots=True)
class FreeRecord:
    """A gap of the disk's usable area that no partition or blob covers."""

    offset: int
    size: int

    def to_obj(self) -> dict[str, Any]:
        return {"offset": self.offset, "size": self.size}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> FreeRecord:
        return cls(offset=obj["offset"], size=obj["size"])


@dataclass(frozen=True, slots=True)
class DiskRecord:
    """The disk image: its table and layout; `image` and `sha256` once it is written (`compose
    plan --json` shows the record without them)."""

    table: str  # TableType.value
    size: int
    guid: str | None  # GPT disk GUID (null on MBR)
    signature: str | None  # MBR disk signature as 0xNNNNNNNN (null on GPT)
    partitions: tuple[DiskPartitionRecord, ...]
    raw: tuple[RawRecord, ...]
    free: tuple[FreeRecord, ...]
    image: str | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, plan: DiskPlan) -> DiskRecord:
        return cls(
            table=plan.table.value, size=plan.disk_size,
            guid=str(plan.disk_guid) if plan.disk_guid else None,
            signature=f"0x{plan.mbr_signature:08x}" if plan.mbr_signature is not None else None,
            partitions=tuple(DiskPartitionRecord.of(plan, p) for p in plan.partitions),
            raw=tuple(RawRecord(b.name, b.offset, b.size) for b in plan.raw_blobs),
            free=tuple(FreeRecord(o, s) for o, s in plan.free))

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "table": self.table, "size": self.size, "guid": self.guid,
            "signature": self.signature,
            "partitions": [p.to_obj() for p in self.partitions],
            "raw": [b.to_obj() for b in self.raw], "free": [f.to_obj() for f in self.free]}
        if self.image is not None:
            obj["image"] = self.image
        if self.sha256 is not None:
            obj["sha256"] = self.sha256
        return obj

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> DiskRecord:
        return cls(table=obj["table"], size=obj["size"], guid=obj["guid"],
                   signature=obj["signature"],
                   partitions=tuple(DiskPartitionRecord.from_obj(p) for p in obj["partitions"]),
                   raw=tuple(RawRecord.from_obj(b) for b in obj["raw"]),
                   free=tuple(FreeRecord.from_obj(f) for f in obj["free"]),
                   image=obj.get("image"), sha256=obj.get("sha256"))


class EpochOrigin(StrEnum):
    """Where the build's epoch came from (README "Time, IDs and determinism")."""

    OPTION = "--source-date-epoch"
    ENVIRONMENT = "SOURCE_DATE_EPOCH"
    LAYOUT = "layout"
    NEWEST_MTIME = "newest input mtime"


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One source the build read, by the digest of its tree (composer/sources/digest.py), not
    by its path (the layout's hash pins that) nor, for an archive, by its file's bytes (member
    order and compression change those, and no image byte)."""

    kind: str  # registry.SourceKind.value
    tree_sha256: str

    def to_obj(self) -> dict[str, Any]:
        return {"kind": self.kind, "tree_sha256": self.tree_sha256}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> SourceRecord:
        return cls(kind=obj["kind"], tree_sha256=obj["tree_sha256"])


@dataclass(frozen=True, slots=True)
class ProvenanceRecord:
    """The inputs of a build: enough for `compose reproduce DIR` to tell, before it builds,
    whether it has the inputs the build used. The layout by file name only: its folder, like
    the output folder, must not change the manifest."""

    layout_file: str
    layout_sha256: str
    sources: Mapping[str, SourceRecord]  # by source name, the sources the build read
    epoch_origin: str  # EpochOrigin.value

    def to_obj(self) -> dict[str, Any]:
        return {"layout": {"file": self.layout_file, "sha256": self.layout_sha256},
                "sources": {name: s.to_obj() for name, s in self.sources.items()},
                "epoch_origin": self.epoch_origin}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> ProvenanceRecord:
        return cls(layout_file=obj["layout"]["file"], layout_sha256=obj["layout"]["sha256"],
                   sources={name: SourceRecord.from_obj(s) for name, s in obj["sources"].items()},
                   epoch_origin=obj["epoch_origin"])


@dataclass(frozen=True, slots=True)
class Manifest:
    """manifest.json: what a build wrote and what every image holds."""

    layout: str
    epoch: int
    partitions: Mapping[str, PartitionRecord]  # by partition name
    outputs: tuple[str, ...]  # every output file but manifest.json, report.txt, SHA256SUMS
    disk: DiskRecord | None = None
    composer: str = field(default=__version__)  # the version that wrote it
    provenance: ProvenanceRecord | None = None  # None in manifests older than provenance

    def to_json(self) -> str:
        out: list[str] = []
        self._encode_into(out)
        return "".join(out)

    def write(self, path: Path) -> None:
        """manifest.json as `to_json()` spells it, written piece by piece (a manifest of many
        entries is never held whole in memory)."""
        with path.open("w", encoding="utf-8") as f:
            sink = _FileSink(f)
            self._encode_into(sink)  # type: ignore[arg-type]
            sink.flush()

    def _encode_into(self, out: list[str]) -> None:
        _encode(self._obj(lazy=True), "", out)  # every key of a manifest is a string
        out.append("\n")

    def to_obj(self) -> dict[str, Any]:
        return self._obj(lazy=False)

    def _obj(self, lazy: bool) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "composer": self.composer, "layout": self.layout, "epoch": self.epoch,
            "partitions": {name: p.to_obj(lazy) for name, p in self.partitions.items()},
            "outputs": list(self.outputs)}
        if self.disk is not None:
            obj["disk"] = self.disk.to_obj()
        if self.provenance is not None:
            obj["provenance"] = self.provenance.to_obj()
        return obj

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> Manifest:
        return cls(
            composer=obj["composer"], layout=obj["layout"], epoch=obj["epoch"],
            partitions={name: PartitionRecord.from_obj(p)
                        for name, p in obj["partitions"].items()},
            outputs=tuple(obj["outputs"]),
            disk=DiskRecord.from_obj(obj["disk"]) if "disk" in obj else None,
            provenance=ProvenanceRecord.from_obj(obj["provenance"])
            if "provenance" in obj else None)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.from_obj(json.loads(text))
