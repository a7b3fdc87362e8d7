"""The ext4 writer's reports of how much of the image is final (`write_following`, which the
build's image and bmap digests follow: composer/outputs/follow.py): every byte below a report
must already hold its final value, whatever order the file data arrives in."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from composer.content import ContentStore
from composer.fs.base import WriteRequest, no_progress
from composer.fs.ext4 import Ext4Writer
from composer.tree import Content, Entry, Kind
from tests.fs.conftest import EXT4_EPOCH, EXT4_UUID, NS

MIB = 1 << 20


class _OrderedStore(ContentStore):
    """Inline contents handed over in a chosen order (an archive's own order, say)."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self._order = order

    def stream(self, contents: Iterable[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        items = list(super().stream(contents))
        if self._order == "reversed":
            items.reverse()
        elif self._order == "shuffled":
            random.Random(7).shuffle(items)
        yield from items


def _request() -> WriteRequest:
    rng = random.Random(3)
    entries = [Entry("/", Kind.DIR, 0o755, 0, 0, EXT4_EPOCH * NS)]
    for d in range(3):
        entries.append(Entry(f"/d{d}", Kind.DIR, 0o755, 0, 0, EXT4_EPOCH * NS))
        for f in range(30):
            # small files that _Out gathers, and some of several chunks with a zero block
            size = rng.choice([100, 5000, 30_000, 70_000]) if f % 13 else 2 * MIB + 4096
            data = bytearray(rng.randbytes(size))
            if size > MIB:
                data[MIB:MIB + 8192] = bytes(8192)
            entries.append(Entry(f"/d{d}/f{f:02d}", Kind.FILE, 0o644, 0, 0, EXT4_EPOCH * NS,
                                 content=Content(size=size, inline=bytes(data))))
    return WriteRequest(name="root", entries=tuple(entries), size=32 * MIB, label=None,
                        uuid=EXT4_UUID, epoch=EXT4_EPOCH)


@pytest.mark.parametrize("order", ["block", "reversed", "shuffled"])
def test_reported_bytes_are_final(tmp_path: Path, order: str) -> None:
    image = tmp_path / "root.img"
    seen: list[tuple[int, str]] = []  # (report, sha256 of the image's first bytes then)

    def final(n: int) -> None:
        if seen and seen[-1][0] == n:
            return
        with image.open("rb") as f:
            seen.append((n, hashlib.sha256(f.read(n)).hexdigest()))

    req = _request()
    result = Ext4Writer().write_following(req, image, _OrderedStore(order), no_progress, final)
    assert seen[-1][0] == result.size == os.path.getsize(image)
    marks = [n for n, _ in seen]
    assert marks == sorted(marks), "the mark never moves back"
    data = image.read_bytes()
    for n, digest in seen:
        assert hashlib.sha256(data[:n]).hexdigest() == digest, f"bytes below {n} changed later"
    if order == "block":  # data in block order: the mark follows the writer (a step per 4 MiB
        assert len(seen) > 4  # gathered, or per file of several chunks)
