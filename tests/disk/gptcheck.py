"""An independent GPT/MBR decoder for tests, written from the UEFI spec, not from composer.disk.

It checks what a firmware or kernel would check (signatures, both CRCs, self and alternate
pointers, backup at the last LBA, identical arrays, the protective MBR) and returns the decoded
table for comparison with the plan.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

LBA = 512


@dataclass(frozen=True)
class Part:
    type: uuid.UUID
    guid: uuid.UUID
    first: int
    last: int
    attrs: int
    name: str


@dataclass(frozen=True)
class Gpt:
    disk_guid: uuid.UUID
    first_usable: int
    last_usable: int
    entry_lba: int
    parts: tuple[Part, ...]


def _header(raw: bytes, my_lba: int) -> dict[str, object]:
    sig, rev, size, crc, reserved = struct.unpack_from("<8sIIII", raw, 0)
    assert sig == b"EFI PART", f"no GPT signature at LBA {my_lba}"
    assert rev == 0x00010000 and size == 92 and reserved == 0
    zeroed = raw[:16] + b"\0\0\0\0" + raw[20:92]
    assert zlib.crc32(zeroed) == crc, f"header CRC wrong at LBA {my_lba}"
    assert not any(raw[92:LBA]), "header sector tail not zero"
    me, alt, first, last = struct.unpack_from("<QQQQ", raw, 24)
    guid = uuid.UUID(bytes_le=raw[56:72])
    entry_lba, count, entry_size, array_crc = struct.unpack_from("<QIII", raw, 72)
    assert me == my_lba
    return {"alt": alt, "first": first, "last": last, "guid": guid, "entry_lba": entry_lba,
            "count": count, "entry_size": entry_size, "array_crc": array_crc}


def decode_gpt(path: Path) -> Gpt:
    data = path.read_bytes()
    assert len(data) % LBA == 0
    n = len(data) // LBA
    check_protective_mbr(data[:LBA], n)
    primary = _header(data[LBA:2 * LBA], 1)
    backup = _header(data[(n - 1) * LBA:n * LBA], n - 1)
    assert primary["alt"] == n - 1 and backup["alt"] == 1, "alternate LBAs wrong"
    for key in ("first", "last", "guid", "count", "entry_size", "array_crc"):
        assert primary[key] == backup[key], key
    count, size = int(primary["count"]), int(primary["entry_size"])  # type: ignore[arg-type]
    assert size == 128 and count * size >= 16384
    array_len = count * size
    array_sectors = -(-array_len // LBA)
    assert backup["entry_lba"] == n - 1 - array_sectors, "backup array not just before header"
    p_at = int(primary["entry_lba"]) * LBA  # type: ignore[arg-type]
    b_at = int(backup["entry_lba"]) * LBA  # type: ignore[arg-type]
    array = data[p_at:p_at + array_len]
    assert zlib.crc32(array) == primary["array_crc"], "primary array CRC wrong"
    assert data[b_at:b_at + array_len] == array, "backup array differs from the primary"
    first, last = int(primary["first"]), int(primary["last"])  # type: ignore[arg-type]
    assert first >= int(primary["entry_lba"]) + array_sectors  # type: ignore[arg-type]
    assert last < int(backup["entry_lba"])  # type: ignore[arg-type]
    parts = []
    for i in range(count):
        raw = array[i * size:(i + 1) * size]
        if not any(raw[:16]):
            assert not any(raw), f"unused entry {i} not zero"
            continue
        t, g = uuid.UUID(bytes_le=raw[:16]), uuid.UUID(bytes_le=raw[16:32])
        lo, hi, attrs = struct.unpack_from("<QQQ", raw, 32)
        name = raw[56:128].decode("utf-16-le").rstrip("\0")
        assert first <= lo <= hi <= last, f"entry {i} outside the usable area"
        parts.append(Part(t, g, lo, hi, attrs, name))
    return Gpt(primary["guid"], first, last, int(primary["entry_lba"]),  # type: ignore[arg-type]
               tuple(parts))


def check_protective_mbr(sector: bytes, n: int) -> None:
    assert sector[510:512] == b"\x55\xaa"
    status, chs_start, ptype, _chs_end, start, count = struct.unpack_from("<B3sB3sII",
                                                                          sector, 446)
    assert (status, chs_start, ptype, start) == (0, b"\x00\x02\x00", 0xEE, 1)
    assert count == min(n - 1, 0xFFFFFFFF)
    assert not any(sector[462:510]), "protective MBR has more than one entry"


@dataclass(frozen=True)
class MbrPart:
    bootable: bool
    type: int
    start: int
    sectors: int


def decode_mbr(path: Path) -> tuple[int, tuple[MbrPart, ...]]:
    sector = path.read_bytes()[:LBA]
    assert sector[510:512] == b"\x55\xaa"
    signature = struct.unpack_from("<I", sector, 440)[0]
    parts = []
    for i in range(4):
        status, _, ptype, _, start, count = struct.unpack_from("<B3sB3sII", sector, 446 + 16 * i)
        assert status in (0, 0x80)
        if ptype:
            parts.append(MbrPart(status == 0x80, ptype, start, count))
    return signature, tuple(parts)
