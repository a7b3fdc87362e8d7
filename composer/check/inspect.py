"""`compose inspect IMAGE`: what a disk, tar or vfat image holds, read without root or mount,
whoever wrote it: the partition table (and the file system each partition starts with), or every
entry of an archive or FAT file system in manifest terms.

ext4 images are read by composer/fs/ext4/reader.py (superblock facts, then every entry);
Android sparse and .zst images are read as the image they hold (composer/check/expand.py).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from composer.check.expand import CONTAINERS, ImageKind, expanded
from composer.check.fielddiff import Progress
from composer.check.verify import ext4_records, fat_records, tar_records
from composer.disk.table_reader import has_partition_table, read_table
from composer.errors import ComposerError
from composer.fs.ext4.reader import Ext4Reader

EXT4_MAGIC_OFFSET = 1024 + 0x38  # s_magic in the superblock (ext4 docs, "The Super Block")
EXT4_MAGIC = b"\x53\xef"
SIMG_MAGIC = b"\x3a\xff\x26\xed"  # sparse_header_t.magic 0xed26ff3a, little endian
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# compressed archives (app.tar.gz), expanded like .zst (composer/check/expand.py)
COMPRESSED_MAGIC = ((b"\x1f\x8b", ImageKind.GZIP), (b"\xfd7zXZ\x00", ImageKind.XZ),
                    (b"BZh", ImageKind.BZIP2))


def detect(path: Path) -> ImageKind:
    """What the image is, from its magic numbers; an archive is whatever is left."""
    with path.open("rb") as f:
        kind = fs_at(f, 0)
        if kind is not None:
            return kind
        f.seek(0)
        head = f.read(6)
    if head[:4] == SIMG_MAGIC:
        return ImageKind.SIMG
    if head[:4] == ZSTD_MAGIC:
        return ImageKind.ZSTD
    for magic, kind in COMPRESSED_MAGIC:
        if head.startswith(magic):
            return kind
    if has_partition_table(path):
        return ImageKind.DISK
    return ImageKind.TAR


def fs_at(f: BinaryIO, offset: int) -> ImageKind | None:
    """The file system starting at `offset`, by its magic, or None (also for composer/check/
    imagediff.py, which compares each partition of two disk images by its file system)."""
    f.seek(offset)
    boot = f.read(0x5A)
    # a FAT boot sector names its type at 0x36 (FAT12/16) or 0x52 (FAT32) (Microsoft FAT spec)
    if boot[0x36:0x39] == b"FAT" or boot[0x52:0x55] == b"FAT":
        return ImageKind.VFAT
    f.seek(offset + EXT4_MAGIC_OFFSET)
    if f.read(2) == EXT4_MAGIC:
        return ImageKind.EXT4
    return None


def inspect(path: Path, progress: Progress | None = None) -> dict[str, Any]:
    """What the image at `path` holds; `progress` follows the reading of the files of an ext4,
    FAT or tar image (composer/check/verify.py ext4_records, fat_records, tar_records), the
    long read of inspect."""
    kind = detect(path)
    if kind in CONTAINERS:
        # the image inside, expanded into a temporary folder (composer/check/expand.py)
        with expanded(path, kind) as raw:
            inner = detect(raw)
            if inner in CONTAINERS:
                raise ComposerError(f"{path.name}: a {kind.value} image holding another "
                                    f"{inner.value} image is not read")
            return {**_inspect(raw, inner, progress), "image": path.name,
                    "container": kind.value}
    return _inspect(path, kind, progress)


def _inspect(path: Path, kind: ImageKind, progress: Progress | None) -> dict[str, Any]:
    data: dict[str, Any] = {"image": path.name, "kind": kind.value, "size": path.stat().st_size}
    if kind is ImageKind.DISK:
        table = read_table(path)
        data["table"] = {k: v for k, v in asdict(table).items() if k != "partitions"}
        with path.open("rb") as f:
            data["partitions"] = [
                {**{k: v for k, v in asdict(p).items() if v is not None},
                 "fs": (fs_at(f, p.offset) or "unknown")} for p in table.partitions]
    elif kind is ImageKind.TAR:
        try:
            data["entries"] = [r.to_obj() for r in tar_records(path, progress)]
        except ComposerError as exc:
            raise ComposerError(f"{path.name} is no disk image (no MBR boot signature), FAT or "
                                f"ext4 file system, and not an archive libarchive reads: "
                                f"{exc.message}") from None
    elif kind is ImageKind.VFAT:
        data["entries"] = [{k: v for k, v in r.to_obj().items() if k in
                            ("path", "kind", "size", "sha256")}
                           for r in fat_records(path, progress)]
    elif kind is ImageKind.EXT4:
        with path.open("rb") as f:
            data["ext4"] = asdict(Ext4Reader(f, path.name, checksums=True).facts())
        data["entries"] = [r.to_obj() for r in ext4_records(path, progress)]
    return data
