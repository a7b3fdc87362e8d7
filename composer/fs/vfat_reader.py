"""Reading a FAT image back (for `compose verify --deep`): every folder and file with its size
and the sha256 of its bytes, through pyfatfs opened read-only.

FAT holds no owner, mode, xattr or link (composer/fs/vfat.py), so that is all there is to
compare; its times are local, 2-second and clamped, and are not read here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.errors import ComposerError
from composer.fs.fat_layouts import BPB, BPB_FAT32


@dataclass(frozen=True, slots=True)
class FatEntry:
    path: str  # "/" for the root
    is_dir: bool
    size: int | None = None  # files only
    sha256: str | None = None


def read_vfat(image: Path, offset: int = 0,
              progress: Callable[[int, int], None] | None = None,
              length: int | None = None) -> list[FatEntry]:
    """Every entry of the FAT file system at byte `offset` of `image` (`length` bytes long;
    by default to the end of the file), parents first, names sorted. `progress(bytes hashed,
    bytes to hash)` follows the reading of the files' data (their sizes summed once the
    folders are walked) and ends at that total."""
    from pyfatfs.PyFatFS import PyFatFS

    _check_size(image, offset, image.stat().st_size - offset if length is None else length)
    try:
        fs = PyFatFS(str(image), offset=offset, read_only=True)
    except Exception as exc:  # noqa: BLE001 - pyfatfs raises many kinds on a damaged image
        raise ComposerError(f"{image.name} is not a FAT file system pyfatfs can read "
                            f"({type(exc).__name__}: {exc})") from None
    try:
        pf = fs.fs  # type: ignore[attr-defined]  # the PyFat under the PyFatFS front end
        found = _walk(pf)
        total = sum(child.filesize for _, child in found if child is not None)
        done = 0
        entries = [FatEntry("/", True)]
        for path, child in found:
            if child is None:
                entries.append(FatEntry(path, True))
                continue
            entries.append(FatEntry(path, False, child.filesize,
                                    _sha256(pf, path, child.get_cluster(), child.filesize)))
            done += child.filesize
            if progress is not None:
                progress(done, total)
        if progress is not None:
            progress(total, total)
        return entries
    except ComposerError as exc:
        raise ComposerError(f"{image.name}: {exc.message}", hint="fsck.vfat -n IMAGE names "
                            "what is wrong") from None
    except Exception as exc:  # noqa: BLE001
        raise ComposerError(f"{image.name} cannot be read ({type(exc).__name__}: {exc})") \
            from None
    finally:
        fs.close()


def _check_size(image: Path, offset: int, length: int) -> None:
    """The boot sector's counts fit in the bytes there are: pyfatfs would read a truncated
    image's missing clusters as if they were empty, and load a FAT of any size it is told."""
    with image.open("rb") as f:
        f.seek(offset)
        raw = f.read(BPB.size + BPB_FAT32.size).ljust(BPB.size + BPB_FAT32.size, b"\0")
    bpb, ext = BPB.unpack(raw[:BPB.size]), BPB_FAT32.unpack(raw[BPB.size:])
    sector = bpb["BPB_BytsPerSec"]
    total = (bpb["BPB_TotSec16"] or bpb["BPB_TotSec32"]) * sector
    fat_sectors = bpb["BPB_FATSz16"] or ext["BPB_FATSz32"]
    metadata = (bpb["BPB_RsvdSecCnt"] + bpb["BPB_NumFATs"] * fat_sectors) * sector + \
        bpb["BPB_RootEntCnt"] * 32
    for what, size, limit, room in (
            ("BPB_TotSec16/BPB_TotSec32 x BPB_BytsPerSec", total, length,
             f"the {length} bytes there are (truncated image?)"),
            ("reserved sectors, FATs (BPB_NumFATs x BPB_FATSz) and root folder", metadata,
             total, "the file system's size")):
        if size > limit:
            raise ComposerError(f"{image.name}: FAT boot sector says {size} bytes ({what}), "
                                f"more than {room}",
                                hint="fsck.vfat -n IMAGE names what is wrong")


def _walk(pf: Any) -> list[tuple[str, Any]]:
    """(path, directory entry) of every file, and (path, None) of every folder, sorted.

    Read through pyfatfs's directory-entry objects, not its path API: each path pyfatfs opens
    is looked up by listing and sorting the whole folder again, so reading N files of one
    folder cost N^2 (2,000 files: 9 minutes). Walking the entries reads every folder once.
    A folder met twice (a cycle a hostile image makes through cluster numbers) is an error."""
    pending = [("/", pf.root_dir)]
    seen: set[int] = set()
    found: list[tuple[str, Any]] = []
    while pending:
        path, dentry = pending.pop()
        cluster = dentry.get_cluster() if path != "/" else 0
        if path != "/" and cluster in seen:
            raise ComposerError(f"FAT directory {path} starts at cluster {cluster}, a folder "
                                "already read: the directory tree loops")
        seen.add(cluster)
        dirs, files, _ = dentry.get_entries()  # the third: ".", "..", the volume label
        for child in files:
            found.append((_join(path, child), child))
        for child in dirs:
            found.append((_join(path, child), None))
            pending.append((_join(path, child), child))
    return sorted(found, key=lambda e: e[0].split("/"))


def _join(folder: str, dentry: Any) -> str:
    name = _name(dentry)
    if "/" in name or name in (".", ".."):
        raise ComposerError(f"FAT directory {folder} holds an entry named {name!r}, which no "
                            "file name can be")
    return folder.rstrip("/") + "/" + name


# DIR_NTRes bits Windows NT, Linux and mtools set for an 8.3 name whose base or extension is
# all lower case (a name such as "n" then needs no long-name entry)
NTRES_LOWER_BASE = 0x08
NTRES_LOWER_EXT = 0x10


def _name(dentry: Any) -> str:
    """The entry's long name, else its 8.3 name in the case DIR_NTRes gives it."""
    if dentry.lfn_entry is not None:  # what get_long_name() reads, without its exception
        return str(dentry.get_long_name())
    base, _, ext = str(dentry.get_short_name()).partition(".")
    return cased_short_name(base, ext, dentry.ntres)


def cased_short_name(base: str, ext: str, ntres: int) -> str:
    """An 8.3 name ("BASE", "EXT") as DIR_NTRes's case bits show it: "base.ext"."""
    if ntres & NTRES_LOWER_BASE:
        base = base.lower()
    if ntres & NTRES_LOWER_EXT:
        ext = ext.lower()
    return base + ("." + ext if ext else "")


def _sha256(pf: Any, path: str, first_cluster: int, size: int) -> str:
    """The sha256 of a file's `size` bytes, read along its cluster chain."""
    h = hashlib.sha256()
    left = size
    if left:
        for cluster in pf.get_cluster_chain(first_cluster):
            data = pf.read_cluster_contents(cluster)
            h.update(data[:left])
            left -= min(left, len(data))
            if not left:
                break
    if left:
        raise ComposerError(f"FAT file {path}: its cluster chain ends {left} bytes before its "
                            "size")
    return h.hexdigest()
