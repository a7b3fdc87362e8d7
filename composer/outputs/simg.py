"""Android sparse images (`.simg`) for fastboot, U-Boot fastboot and uuu.

Format: AOSP `libsparse/sparse_format.h` (docs/flashing.md §9): a 28-byte file header, then
chunks with a 12-byte header each. Chunking policy, fixed so output depends on the bytes only:
blocks outside the writer's extents become DONT_CARE; mapped blocks become RAW, or FILL when
the whole block repeats one 4-byte value (if `fill` is on, the default). Mapped zeros stay
written (FILL 0), because DONT_CARE keeps stale data on the device. No CRC32 chunk is written
(U-Boot mishandles one that is not last, and simg2img does not check it); image_checksum is 0,
as libsparse writes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.outputs.bmap import block_ranges
from composer.structs import Struct
from composer.types import WriteResult

SPARSE_MAGIC = 0xED26FF3A
MAJOR_VERSION = 1
MINOR_VERSION = 0
SPARSE_HEADER = Struct("sparse_header_t", "AOSP system/core/libsparse/sparse_format.h", 28,
                       "<", (
                           ("magic", "I"),
                           ("major_version", "H"),
                           ("minor_version", "H"),
                           ("file_hdr_sz", "H"),
                           ("chunk_hdr_sz", "H"),
                           ("blk_sz", "I"),
                           ("total_blks", "I"),
                           ("total_chunks", "I"),
                           ("image_checksum", "I"),  # CRC32 of the image; 0: not given
                       ))
CHUNK_HEADER = Struct("chunk_header_t", "AOSP system/core/libsparse/sparse_format.h", 12, "<", (
    ("chunk_type", "H"),
    ("reserved1", "H"),
    ("chunk_sz", "I"),  # in blocks of the output image
    ("total_sz", "I"),  # in bytes of the chunk, header and data included
))
FILE_HEADER_SIZE = SPARSE_HEADER.size
CHUNK_HEADER_SIZE = CHUNK_HEADER.size
BLOCK_SIZE = 4096
FILL_SIZE = 4
# a RAW chunk's total_sz is a u32; keep chunks far below that and bounded in memory
MAX_RAW_BLOCKS = 4096  # 16 MiB


class ChunkType(IntEnum):
    RAW = 0xCAC1
    FILL = 0xCAC2
    DONT_CARE = 0xCAC3
    CRC32 = 0xCAC4


@dataclass(frozen=True, slots=True)
class _Run:
    """Consecutive blocks that become one chunk."""

    type: ChunkType
    blocks: int
    data: bytes = b""  # RAW: the blocks; FILL: the 4-byte pattern


def write_simg(image: Path, result: WriteResult, out: Path, *, block_size: int = BLOCK_SIZE,
               fill: bool = True) -> None:
    """Write the sparse form of `image` (whose mapped bytes are `result.extents`) to `out`."""
    if result.size % block_size:
        raise ComposerError(
            f"{image.name}: {result.size} bytes is not a whole number of {block_size}-byte "
            "blocks, so a sparse image would not give it back exactly",
            hint="make partition and disk sizes multiples of 4 KiB (1 MiB is best)")
    total_blocks = result.size // block_size
    with image.open("rb") as src, out.open("wb") as dst:
        header = dict(magic=SPARSE_MAGIC, major_version=MAJOR_VERSION,
                      minor_version=MINOR_VERSION, file_hdr_sz=FILE_HEADER_SIZE,
                      chunk_hdr_sz=CHUNK_HEADER_SIZE, blk_sz=block_size,
                      total_blks=total_blocks, image_checksum=0)
        dst.write(SPARSE_HEADER.pack(**header, total_chunks=0))
        chunks = 0
        for run in _runs(src, result, block_size, fill):
            dst.write(_chunk(run, block_size))
            chunks += 1
        dst.seek(0)  # the chunk count is known only now
        dst.write(SPARSE_HEADER.pack(**header, total_chunks=chunks))


def _chunk(run: _Run, block_size: int) -> bytes:
    # once per chunk: the positional form (chunk_type, reserved1, chunk_sz, total_sz)
    if run.type is ChunkType.RAW:
        head = CHUNK_HEADER.pack_values(run.type, 0, run.blocks,
                                        CHUNK_HEADER_SIZE + run.blocks * block_size)
        return head + run.data
    if run.type is ChunkType.FILL:
        return CHUNK_HEADER.pack_values(run.type, 0, run.blocks,
                                        CHUNK_HEADER_SIZE + FILL_SIZE) + run.data
    return CHUNK_HEADER.pack_values(run.type, 0, run.blocks, CHUNK_HEADER_SIZE)


def _runs(src: BinaryIO, result: WriteResult, block_size: int, fill: bool) -> Iterator[_Run]:
    """Chunks in block order: DONT_CARE for gaps, then the mapped runs split by content."""
    total = result.size // block_size
    cursor = 0
    for first, last in block_ranges(result.extents, result.size, block_size):
        if first > cursor:
            yield _Run(ChunkType.DONT_CARE, first - cursor)
        yield from _mapped(src, first, last + 1, block_size, fill)
        cursor = last + 1
    if total > cursor:
        yield _Run(ChunkType.DONT_CARE, total - cursor)


def _mapped(src: BinaryIO, first: int, end: int, block_size: int, fill: bool) -> Iterator[_Run]:
    raw: list[bytes] = []
    pattern: bytes | None = None
    fill_blocks = 0
    src.seek(first * block_size)
    for _ in range(first, end):
        block = src.read(block_size).ljust(block_size, b"\0")
        this = _fill_pattern(block) if fill else None
        if this is not None and this == pattern:
            fill_blocks += 1
            continue
        if fill_blocks:
            yield _Run(ChunkType.FILL, fill_blocks, pattern or b"")
            fill_blocks, pattern = 0, None
        if this is not None:
            if raw:
                yield _Run(ChunkType.RAW, len(raw), b"".join(raw))
                raw = []
            pattern, fill_blocks = this, 1
            continue
        raw.append(block)
        if len(raw) == MAX_RAW_BLOCKS:
            yield _Run(ChunkType.RAW, len(raw), b"".join(raw))
            raw = []
    if fill_blocks:
        yield _Run(ChunkType.FILL, fill_blocks, pattern or b"")
    if raw:
        yield _Run(ChunkType.RAW, len(raw), b"".join(raw))


def _fill_pattern(block: bytes) -> bytes | None:
    """The 4-byte value the block repeats, or None."""
    pattern = block[:FILL_SIZE]
    return pattern if block == pattern * (len(block) // FILL_SIZE) else None
