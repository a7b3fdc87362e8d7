"""The values the image formats hand to the store writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One layer as an archive lists it."""

    member: str  # its path in the archive, for messages
    blob: Path  # the file holding its bytes (compressed or not)
    diff_id: str  # "sha256:<hex>" of the uncompressed tar, from the image config
    digest: str | None  # "sha256:<hex>" of the stored bytes, where the format names it


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One image of an archive: its config (whose sha256 is the image ID) and layers."""

    config: bytes
    image_id: str  # "sha256:<hex>"
    layers: tuple[LayerRef, ...]
    names: tuple[str, ...]  # the references the archive records for it ("name:tag")
    platform: str  # "os/architecture[/variant]", from the config


class ImageFormatError(Exception):
    """A problem with an archive's content; the caller adds where (layout item, archive)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
