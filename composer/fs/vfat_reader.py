"""Reading a FAT image back (for `compose verify --deep`): every folder and file with its size
and the sha256 of its bytes, through pyfatfs opened read-only.

FAT holds no owner, mode, xattr or link (composer/fs/vfat.py), so that is all there is to
compare; its times are local, 2-second and clamped, and are not read here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ComposerError

READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FatEntry:
    path: str  # "/" for the root
    is_dir: bool
    size: int | None = None  # files only
    sha256: str | None = None


def read_vfat(image: Path) -> list[FatEntry]:
    """Every entry of the FAT file system in `image`, parents first, names sorted."""
    from pyfatfs.PyFatFS import PyFatFS

    try:
        fs = PyFatFS(str(image), read_only=True)
    except Exception as exc:  # noqa: BLE001 - pyfatfs raises many kinds on a damaged image
        raise ComposerError(f"{image.name} is not a FAT file system pyfatfs can read "
                            f"({type(exc).__name__}: {exc})") from None
    try:
        return [FatEntry("/", True), *_walk(fs, "/")]
    except ComposerError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ComposerError(f"{image.name} cannot be read ({type(exc).__name__}: {exc})") \
            from None
    finally:
        fs.close()


def _walk(fs: object, folder: str) -> Iterator[FatEntry]:
    for info in sorted(fs.scandir(folder), key=lambda i: i.name):  # type: ignore[attr-defined]
        path = folder.rstrip("/") + "/" + info.name
        if info.is_dir:
            yield FatEntry(path, True)
            yield from _walk(fs, path)
        else:
            yield FatEntry(path, False, info.size, _sha256(fs, path))


def _sha256(fs: object, path: str) -> str:
    h = hashlib.sha256()
    with fs.openbin(path) as f:  # type: ignore[attr-defined]
        while chunk := f.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()
