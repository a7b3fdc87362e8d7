"""Synthetic sparse images for the output tests (imported by name: keep it unique)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from composer.fs.base import WriteResult, merge_extents

BS = 4096
MIB = 1 << 20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_image(path: Path, size: int = 8 * MIB) -> WriteResult:
    """A sparse image with data, written zeros, a fill pattern and a partial block mapped."""
    writes: list[tuple[int, bytes]] = [
        (0, bytes((i * 7) & 0xFF for i in range(BS))),  # block 0
        (256 * BS, b"".join(bytes([i]) * BS for i in (1, 2, 3))),  # blocks 256-258
        (300 * BS, bytes(2 * BS)),  # blocks 300-301: zeros that were written
        (400 * BS, b"\xef\xbe\xad\xde" * (BS // 4)),  # block 400: a 4-byte fill pattern
        (512 * BS + 100, b"partial"),  # inside block 512
        (size - BS, b"\xaa" * BS),  # the last block
    ]
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return WriteResult(size, merge_extents([(o, len(d)) for o, d in writes]))
