"""One layer: its digests checked, its tar-split written, its entries read and its whiteouts
turned into what overlayfs reads (as Docker's overlay2 driver applies a layer)."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

import libarchive
from libarchive.exception import ArchiveError

from composer.content import DataSource
from composer.docker.model import ImageFormatError, LayerRef
from composer.docker.tarsplit import tar_split
from composer.errors import ComposerError
from composer.sources.archive import scan_archive
from composer.tree import Content, Entry, Kind

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"  # the folder hides what lower layers have in it
OPAQUE_XATTR = ("trusted.overlay.opaque", b"y")


@dataclass(frozen=True, slots=True)
class Layer:
    diff_id: str
    entries: tuple[Entry, ...]  # paths inside the layer ("/" is its root), whiteouts converted
    tar_split: bytes  # gzipped
    size: int  # bytes of regular files, as Docker's layerdb `size`
    data: DataSource  # reads the entries' contents


def source_name(diff_id: str) -> str:
    """The data source name of a layer: a ':' keeps it apart from any layout source name."""
    return f"layer:{diff_id.removeprefix('sha256:')[:16]}"


def read_layer(ref: LayerRef, owner: object) -> Layer:
    """`owner` holds the blob's file (a Bundle): the layer's data source keeps it alive."""
    if ref.digest is not None:
        found = _file_digest(ref)
        if found != ref.digest:
            raise ImageFormatError(f"layer {ref.member} does not match its digest: its sha256 "
                                   f"is {found}, the manifest says {ref.digest}",
                                   hint="the archive is corrupt or was changed; save or copy "
                                   "it again")
    stream = _Decompressed(ref)
    try:
        split = tar_split(stream, f"layer {ref.member}")
    except ComposerError as exc:
        raise ImageFormatError(exc.message, exc.hint) from None
    if stream.diff_id() != ref.diff_id:
        raise ImageFormatError(f"layer {ref.member} does not match the image config: its "
                               f"content is {stream.diff_id()}, the config's rootfs.diff_ids "
                               f"says {ref.diff_id}",
                               hint="the archive is corrupt or its layers were swapped; save "
                               "or copy it again")
    name = source_name(ref.diff_id)
    try:
        scanned = scan_archive(name, ref.blob)
    except ComposerError as exc:
        raise ImageFormatError(f"layer {ref.member}: {exc.message}", exc.hint) from None
    entries = convert_whiteouts(scanned.entries)
    size = sum(e.size for e in entries)
    return Layer(ref.diff_id, entries, split, size, LayerData(name, scanned.data, owner))


def _file_digest(ref: LayerRef) -> str:
    h = hashlib.sha256()
    with ref.blob.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class _Decompressed:
    """The layer's tar, uncompressed by libarchive whatever the compression (none, gzip, zstd,
    xz, …), hashed as it is read: its sha256 is the diffID."""

    def __init__(self, ref: LayerRef) -> None:
        self._ref = ref
        self._hash = hashlib.sha256()
        self._blocks = self._read()
        self._buffer = bytearray()
        self._pos = 0  # of the next byte to hand out, in _buffer

    def _read(self) -> Iterator[bytes]:
        try:
            with libarchive.file_reader(str(self._ref.blob), format_name="raw") as archive:
                for entry in archive:
                    for block in entry.get_blocks():
                        self._hash.update(block)
                        yield block
        except ArchiveError as exc:
            raise ImageFormatError(f"layer {self._ref.member} cannot be decompressed "
                                   f"(libarchive: {exc})",
                                   hint="the layer is corrupt; save or copy it again") from None

    def read(self, n: int) -> bytes:
        while len(self._buffer) - self._pos < n:
            block = next(self._blocks, None)
            if block is None:
                break
            del self._buffer[:self._pos]  # keep only what is still to be read
            self._pos = 0
            self._buffer += block
        data = bytes(self._buffer[self._pos:self._pos + n])
        self._pos += len(data)
        return data

    def diff_id(self) -> str:
        for block in self._blocks:  # anything after the end of the tar is part of it too
            del block
        return "sha256:" + self._hash.hexdigest()


def convert_whiteouts(entries: dict[str, Entry]) -> tuple[Entry, ...]:
    """`.wh.NAME` becomes a character device 0:0 named NAME (owner kept, mode 0, as mknod leaves
    it), `.wh..wh..opq` the xattr trusted.overlay.opaque=y on its folder; other `.wh..wh.`
    names (AUFS bookkeeping) are dropped, as Docker drops them."""
    result: dict[str, Entry] = {}
    opaque: set[str] = set()
    whiteouts: list[Entry] = []
    for path, entry in entries.items():
        folder, name = posixpath.split(path)
        if name == OPAQUE:
            opaque.add(folder)
        elif name.startswith(WHITEOUT + WHITEOUT):
            continue
        elif name.startswith(WHITEOUT):
            whiteouts.append(Entry(posixpath.join(folder, name[len(WHITEOUT):]), Kind.CHAR, 0,
                                   entry.uid, entry.gid, entry.mtime_ns, rdev=(0, 0)))
        else:
            result[path] = entry
    for whiteout in whiteouts:
        result.setdefault(whiteout.path, whiteout)  # a member of the same name wins
    for folder in opaque:
        entry = result[folder]  # scan_archive made every missing parent folder
        xattrs = dict(entry.xattrs)
        xattrs[OPAQUE_XATTR[0]] = OPAQUE_XATTR[1]
        result[folder] = replace(entry, xattrs=tuple(sorted(xattrs.items())))
    return tuple(result[p] for p in sorted(result))


class LayerData(DataSource):
    """A layer's data source, keeping alive what holds its blob (an unpacked archive)."""

    sequential = True

    def __init__(self, name: str, inner: DataSource, owner: object) -> None:
        self.name = name
        self._inner = inner
        self._owner = owner

    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        return self._inner.iter_data(wanted)
