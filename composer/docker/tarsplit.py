"""tar-split metadata (github.com/vbatts/tar-split), as Docker keeps it for each layer in
`layerdb/sha256/<chainID>/tar-split.json.gz`.

`docker save` and `docker push` rebuild a layer's tar from it: the stored header bytes
("segments") in order, with each regular file's data read back from the layer's diff folder by
name and checked against a CRC-64. Written from the layer's own tar, it makes the rebuilt tar
equal to the original byte for byte, so the layer keeps its diffID.

JSON lines, one per entry (tar-split's `storage.Entry`; type 1 is a file, 2 a segment):
  {"type":2,"payload":"<base64 of raw bytes>","position":0}
  {"type":1,"name":"etc/passwd","size":1234,"payload":"<base64 of the CRC-64>","position":1}
An entry without data has neither size nor payload, as tar-split writes it.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Iterator
from typing import Protocol

import crcmod

from composer.errors import ComposerError

FILE_TYPE = 1  # storage.FileType
SEGMENT_TYPE = 2  # storage.SegmentType
BLOCK = 512

# Go's archive/tar: these types never carry data, whatever their size field says
_HEADER_ONLY = frozenset(b"123456")
_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK = ord("x"), ord("g"), ord("L"), ord("K")

# Go's crc64.ISO as crcmod states it: x^64 + x^4 + x^3 + x + 1, reflected, register and output
# inverted (crcmod's initCrc is the start register xor the final xor: all ones xor all ones)
_CRC64_ISO = crcmod.Crc(0x1000000000000001B, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)


def crc64_iso(chunks: Iterable[bytes]) -> bytes:
    """CRC-64/ISO as Go's hash/crc64 computes it, big-endian: tar-split's file checksum."""
    crc = _CRC64_ISO.new()
    for chunk in chunks:
        crc.update(chunk)
    return crc.digest()


class Reader(Protocol):
    def read(self, n: int) -> bytes: ...


class TarFormatError(ComposerError):
    pass


def tar_split(stream: Reader, where: str) -> bytes:
    """The gzipped tar-split of the tar read from `stream` (read to its end)."""
    writer = _Writer()
    pending = bytearray()  # raw bytes since the last file entry: the next segment
    extended: dict[str, bytes] = {}  # what pax and GNU long-name headers say of the next member
    while True:
        block = stream.read(BLOCK)
        pending += block
        if len(block) < BLOCK:
            raise TarFormatError(f"{where}: the tar ends inside a header",
                                 hint="the layer is truncated")
        if block == bytes(BLOCK):  # the end: whatever follows is kept as it is
            pending += _read_rest(stream)
            break
        _check_sum(block, where)
        typeflag = block[156]
        size = extended.pop("size", None)
        size_value = int(size) if size is not None else _number(block[124:136], where)
        if typeflag in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
            data = _read_exact(stream, _padded(size_value), where)
            pending += data
            if typeflag == _PAX:
                extended.update(_pax_records(data[:size_value], where))
            elif typeflag == _GNU_LONGNAME:
                extended["path"] = data[:size_value].split(b"\0", 1)[0]
            continue
        name = extended.pop("path", None) or _ustar_name(block)
        extended.clear()
        data_size = 0 if typeflag in _HEADER_ONLY else size_value
        writer.segment(bytes(pending))
        pending.clear()
        if data_size:
            crc = crc64_iso(_chunks(stream, data_size, where))
            writer.file(name, data_size, crc)
            pending += _read_exact(stream, _padded(data_size) - data_size, where)
        else:
            writer.file(name, 0, None)
    writer.segment(bytes(pending))
    return writer.finish()


class _Writer:
    def __init__(self) -> None:
        self._lines: list[bytes] = []

    def segment(self, raw: bytes) -> None:
        if raw:
            self._add({"type": SEGMENT_TYPE, "payload": base64.b64encode(raw).decode()})

    def file(self, name: bytes, size: int, crc: bytes | None) -> None:
        entry: dict[str, object] = {"type": FILE_TYPE}
        try:
            entry["name"] = name.decode("utf-8")
        except UnicodeDecodeError:
            entry["name_raw"] = base64.b64encode(name).decode()
        if size:
            entry["size"] = size
        entry["payload"] = base64.b64encode(crc).decode() if crc is not None else None
        self._add(entry)

    def _add(self, entry: dict[str, object]) -> None:
        entry["position"] = len(self._lines)
        self._lines.append(json.dumps(entry, separators=(",", ":")).encode() + b"\n")

    def finish(self) -> bytes:
        # mtime 0 and no name: the same layer gives the same bytes on every build
        return gzip.compress(b"".join(self._lines), compresslevel=9, mtime=0)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _read_exact(stream: Reader, n: int, where: str) -> bytes:
    data = b""
    while len(data) < n:
        got = stream.read(n - len(data))
        if not got:
            raise TarFormatError(f"{where}: the tar ends inside a member's data",
                                 hint="the layer is truncated")
        data += got
    return data


def _chunks(stream: Reader, n: int, where: str) -> Iterator[bytes]:
    left = n
    while left:
        got = stream.read(min(left, 1 << 20))
        if not got:
            raise TarFormatError(f"{where}: the tar ends inside a member's data",
                                 hint="the layer is truncated")
        left -= len(got)
        yield got


def _read_rest(stream: Reader) -> bytes:
    parts = []
    while chunk := stream.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _check_sum(block: bytes, where: str) -> None:
    stored = _number(block[148:156], where)
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored != unsigned:
        raise TarFormatError(f"{where}: a tar header has a bad checksum",
                             hint="the layer is corrupt")


def _number(field: bytes, where: str) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(f"{where}: a tar header holds {field!r} where a number belongs",
                             hint="the layer is corrupt") from None


def _ustar_name(block: bytes) -> bytes:
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:265] == b"ustar\x0000":  # POSIX: a prefix field; GNU's magic has none
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            return prefix + b"/" + name
    return name


def _pax_records(data: bytes, where: str) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    rest = data
    while rest:
        length_text, _, _ = rest.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise TarFormatError(f"{where}: a pax header is malformed",
                                 hint="the layer is corrupt") from None
        record, rest = rest[:length], rest[length:]
        key, _, value = record[len(length_text) + 1:].rstrip(b"\n").partition(b"=")
        if key in (b"path", b"size"):
            records[key.decode()] = value
    return records
