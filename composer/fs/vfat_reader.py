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
    """The entries under `folder`, read through pyfatfs's directory-entry objects.

    Not through its path API: each path pyfatfs opens is looked up by listing and sorting the
    whole folder again, so reading N files of one folder cost N^2 (2,000 files: 9 minutes).
    Walking the entries and following each file's cluster chain reads every folder once."""
    pf = fs.fs  # type: ignore[attr-defined]  # the PyFat under the PyFatFS front end
    pending = [(folder, pf.root_dir)]
    found: list[FatEntry] = []
    while pending:
        path, dentry = pending.pop()
        dirs, files, _ = dentry.get_entries()  # the third: ".", "..", the volume label
        for child in files:
            found.append(FatEntry(_join(path, child), False, child.filesize,
                                  _sha256(pf, child.get_cluster(), child.filesize)))
        for child in dirs:
            found.append(FatEntry(_join(path, child), True))
            pending.append((_join(path, child), child))
    yield from sorted(found, key=lambda e: e.path.split("/"))


def _join(folder: str, dentry: object) -> str:
    return folder.rstrip("/") + "/" + repr(dentry)  # repr: the long name, else the 8.3 name


def _sha256(pf: object, first_cluster: int, size: int) -> str:
    """The sha256 of a file's `size` bytes, read along its cluster chain."""
    h = hashlib.sha256()
    left = size
    if left:
        for cluster in pf.get_cluster_chain(first_cluster):  # type: ignore[attr-defined]
            data = pf.read_cluster_contents(cluster)  # type: ignore[attr-defined]
            h.update(data[:left])
            left -= min(left, len(data))
            if not left:
                break
    if left:
        raise ComposerError(f"a file's cluster chain ends {left} bytes before its size")
    return h.hexdigest()
