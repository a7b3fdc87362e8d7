"""Reading a bmap file (the format composer/outputs/bmap.py writes and bmaptool reads).

The file is checked against its own BmapFileChecksum, so a damaged bmap is an error here and
not a device blamed for it.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ComposerError
from composer.outputs.bmap import CHECKSUM_PLACEHOLDER

_SPAN = re.compile(r"\s*([0-9]{1,20})(?:-([0-9]{1,20}))?\s*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BmapRange:
    first: int  # block numbers, inclusive
    last: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Bmap:
    image_size: int
    block_size: int
    ranges: tuple[BmapRange, ...]

    def byte_span(self, r: BmapRange) -> tuple[int, int]:
        """(start, end) in bytes; the last block stops at the image's end."""
        return r.first * self.block_size, min((r.last + 1) * self.block_size, self.image_size)


def read_bmap(path: Path) -> Bmap:
    try:
        text = path.read_text(encoding="ascii")
        root = ET.fromstring(text)
    except (OSError, UnicodeDecodeError, ET.ParseError) as exc:
        raise ComposerError(f"{path.name} is not a readable bmap file ({exc})") from None
    if root.tag != "bmap" or root.findtext("ChecksumType", "").strip() != "sha256":
        raise ComposerError(f"{path.name} is not a bmap file with sha256 checksums")
    recorded = root.findtext("BmapFileChecksum", "").strip()
    own = hashlib.sha256(text.replace(recorded, CHECKSUM_PLACEHOLDER, 1).encode()).hexdigest()
    if not _HEX64.fullmatch(recorded) or own != recorded:
        raise ComposerError(f"{path.name} does not match its own BmapFileChecksum: the bmap "
                            "file is damaged", hint="take the bmap from the build folder again")
    try:
        image_size = int(root.findtext("ImageSize", "").strip())
        block_size = int(root.findtext("BlockSize", "").strip())
    except ValueError:
        raise ComposerError(f"{path.name}: ImageSize or BlockSize is not a number") from None
    ranges = []
    for element in root.iterfind("BlockMap/Range"):
        span = _SPAN.fullmatch(element.text or "")
        digest = element.get("chksum", "")
        if span is None or not _HEX64.fullmatch(digest):
            raise ComposerError(f"{path.name}: a Range is not 'first-last' with a sha256")
        first = int(span.group(1))
        last = int(span.group(2) or first)
        if last < first or first * block_size >= image_size:
            raise ComposerError(f"{path.name}: Range {first}-{last} is outside the image")
        ranges.append(BmapRange(first, last, digest))
    return Bmap(image_size, block_size, tuple(ranges))
