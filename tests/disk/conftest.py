from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from composer.content import ContentStore
from composer.fs.base import WriteRequest, WriteResult
from composer.fs.vfat import VfatWriter
from composer.tree import Content, Entry, Kind

MIB = 1 << 20
NS = 1_000_000_000


@pytest.fixture(scope="session")
def vfat_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WriteResult]:
    """A small FAT16 ESP-like image (6 MiB) with a few files."""
    t = 1_600_000_000 * NS
    entries = (
        Entry("/", Kind.DIR, 0o755, 0, 0, t),
        Entry("/EFI", Kind.DIR, 0o755, 0, 0, t),
        Entry("/EFI/BOOT", Kind.DIR, 0o755, 0, 0, t),
        Entry("/EFI/BOOT/BOOTAA64.EFI", Kind.FILE, 0o644, 0, 0, t,
              content=Content.of_bytes(b"MZ" + bytes(range(256)) * 400)),
        Entry("/boot.scr", Kind.FILE, 0o644, 0, 0, t, content=Content.of_bytes(b"echo hi\n")),
    )
    req = WriteRequest("efi", entries, 6 * MIB, "EFI", uuid.UUID(int=7), 1_700_000_000)
    out = tmp_path_factory.mktemp("vfat") / "efi.vfat"
    return out, VfatWriter().write(req, out, ContentStore())
