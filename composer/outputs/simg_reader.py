"""Expanding an Android sparse image (`.simg`) back into the raw image, with the declarations
the writer uses (simg.SPARSE_HEADER, simg.CHUNK_HEADER): RAW chunks copied in bounded pieces,
FILL chunks repeated, DONT_CARE chunks left as holes. Every count is checked against the file
before it is used; a damaged file is one ComposerError naming the chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.outputs.simg import (
    CHUNK_HEADER,
    FILL_SIZE,
    SPARSE_HEADER,
    SPARSE_MAGIC,
    ChunkType,
)

COPY = 1 << 20
MAX_BLOCK_SIZE = 1 << 26


def expand_simg(src: Path, out: Path) -> None:
    """Write `out`, the raw image `src` stands for (sparse where src has DONT_CARE)."""
    size = src.stat().st_size
    with src.open("rb") as f, out.open("wb") as o:
        head = _read(f, SPARSE_HEADER.size, src, "sparse header")
        h = SPARSE_HEADER.unpack(head)
        bs = h["blk_sz"]
        if h["magic"] != SPARSE_MAGIC or not 0 < bs <= MAX_BLOCK_SIZE or bs % 4 or \
                h["file_hdr_sz"] < SPARSE_HEADER.size or h["chunk_hdr_sz"] < CHUNK_HEADER.size:
            raise ComposerError(f"{src.name}: not an Android sparse image this reader takes "
                                f"(sparse header magic 0x{h['magic']:08x}, blk_sz {bs})")
        f.seek(h["file_hdr_sz"])
        written = 0
        for number in range(h["total_chunks"]):
            c = CHUNK_HEADER.unpack(_read(f, CHUNK_HEADER.size, src, f"chunk {number} header"))
            f.seek(h["chunk_hdr_sz"] - CHUNK_HEADER.size, 1)
            body = c["total_sz"] - h["chunk_hdr_sz"]
            length = c["chunk_sz"] * bs
            if body < 0 or f.tell() + body > size or written + length > h["total_blks"] * bs:
                raise ComposerError(f"{src.name}: chunk {number} (type 0x{c['chunk_type']:04x})"
                                    " runs past the file or the image it describes")
            _chunk(f, o, c["chunk_type"], body, length, src, number)
            written += length
        o.truncate(h["total_blks"] * bs)


def _chunk(f: BinaryIO, o: BinaryIO, kind: int, body: int, length: int, src: Path,
           number: int) -> None:
    if kind == ChunkType.RAW:
        if body != length:
            raise ComposerError(f"{src.name}: RAW chunk {number} holds {body} bytes, not "
                                f"{length}")
        while body:
            data = _read(f, min(COPY, body), src, f"chunk {number} data")
            o.write(data)
            body -= len(data)
    elif kind == ChunkType.FILL:
        if body != FILL_SIZE:
            raise ComposerError(f"{src.name}: FILL chunk {number} holds {body} bytes, not 4")
        pattern = _read(f, FILL_SIZE, src, f"chunk {number} fill value")
        if pattern == bytes(FILL_SIZE):
            o.seek(length, 1)  # zeros: a hole reads as them
        else:
            piece = pattern * (COPY // FILL_SIZE)
            while length:
                n = min(length, len(piece))
                o.write(piece[:n])
                length -= n
    elif kind == ChunkType.DONT_CARE:
        o.seek(length, 1)
    elif kind == ChunkType.CRC32:
        f.seek(body, 1)
    else:
        raise ComposerError(f"{src.name}: chunk {number} has the unknown type 0x{kind:04x}")


def _read(f: BinaryIO, n: int, src: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ComposerError(f"{src.name}: the file ends inside the {what} (truncated?)")
    return data
