"""bmap 2.0 files for `bmaptool copy`, from the writer's own block map (never from host holes).

Format: bmaptool's `BmapCreate.py` (format 2.0, identical to 1.4), as summarised in
docs/flashing.md §8: ImageSize, BlockSize, BlocksCount = ceil(ImageSize / BlockSize),
MappedBlocksCount = the exact sum of the ranges, ChecksumType sha256, one `Range` per run of
mapped blocks with the sha256 of its bytes (a partial last block hashed only up to the image's
end), and BmapFileChecksum = sha256 of the whole file with that checksum written as 64 '0's.

Every block that holds a written byte is mapped, including written zeros: unmapped blocks are
"don't care" to bmaptool and keep stale data on a block device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from composer.types import WriteResult

BMAP_VERSION = "2.0"
BLOCK_SIZE = 4096
CHECKSUM_TYPE = "sha256"
CHECKSUM_PLACEHOLDER = "0" * 64  # BmapCopy._verify_bmap_checksum substitutes this
READ_CHUNK = 1 << 20


def block_ranges(extents: Iterable[tuple[int, int]], image_size: int,
                 block_size: int = BLOCK_SIZE) -> list[tuple[int, int]]:
    """Inclusive (first, last) block runs that cover every byte of `extents`."""
    runs: list[tuple[int, int]] = []
    for offset, length in sorted(extents):
        end = min(offset + length, image_size)
        if end <= offset:
            continue
        first, last = offset // block_size, (end - 1) // block_size
        if runs and first <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], last))
        else:
            runs.append((first, last))
    return runs


def bmap_text(image: Path, result: WriteResult, block_size: int = BLOCK_SIZE,
              digests: Sequence[str] | None = None) -> str:
    """The bmap file's text for `image`, whose mapped bytes are `result.extents`; `digests`:
    each range's sha256 when already known (composer/outputs/follow.py), else read here."""
    runs = block_ranges(result.extents, result.size, block_size)
    if digests is not None and len(digests) != len(runs):
        raise ValueError(f"{len(digests)} range digests for {len(runs)} ranges")
    mapped = sum(last - first + 1 for first, last in runs)
    lines = [
        '<?xml version="1.0" ?>',
        f'<bmap version="{BMAP_VERSION}">',
        f"    <ImageSize> {result.size} </ImageSize>",
        f"    <BlockSize> {block_size} </BlockSize>",
        f"    <BlocksCount> {-(-result.size // block_size)} </BlocksCount>",
        f"    <MappedBlocksCount> {mapped} </MappedBlocksCount>",
        f"    <ChecksumType> {CHECKSUM_TYPE} </ChecksumType>",
        f"    <BmapFileChecksum> {CHECKSUM_PLACEHOLDER} </BmapFileChecksum>",
        "    <BlockMap>",
    ]
    with image.open("rb") as f:
        for i, (first, last) in enumerate(runs):
            digest = digests[i] if digests is not None else \
                _range_digest(f, first * block_size, min((last + 1) * block_size, result.size))
            span = f"{first}" if first == last else f"{first}-{last}"
            lines.append(f'        <Range chksum="{digest}"> {span} </Range>')
    lines += ["    </BlockMap>", "</bmap>", ""]
    text = "\n".join(lines)
    # hash with the placeholder in place, then patch the real value into that same spot
    file_digest = hashlib.sha256(text.encode("ascii")).hexdigest()
    return text.replace(CHECKSUM_PLACEHOLDER, file_digest, 1)


def write_bmap(image: Path, result: WriteResult, out: Path, block_size: int = BLOCK_SIZE,
               digests: Sequence[str] | None = None) -> None:
    out.write_text(bmap_text(image, result, block_size, digests), encoding="ascii")


def _range_digest(f: BinaryIO, start: int, end: int) -> str:
    h = hashlib.sha256()
    f.seek(start)
    left = end - start
    while left:
        chunk = f.read(min(READ_CHUNK, left))
        if not chunk:  # past the file's end: a hole bmaptool would read as zeros
            chunk = bytes(min(READ_CHUNK, left))
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()
