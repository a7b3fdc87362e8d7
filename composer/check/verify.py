"""`compose verify`: a build folder against its SHA256SUMS and manifest, a flashed device against
the disk's bmap, and (deep) every file inside the images against the manifest's entries.

Nothing here claims a check it did not make: an image no reader exists for is listed as not
checked, with the reason.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from composer.check.diff import entry_changes, read_sha256sums
from composer.check.fielddiff import Progress
from composer.check.provenance import hash_contents
from composer.content import ContentStore
from composer.errors import ComposerError, shown
from composer.fs.ext4.constants import LOST_FOUND
from composer.fs.ext4.reader import Ext4Entry, Ext4Reader
from composer.fs.vfat_reader import read_vfat
from composer.outputs.bmap_reader import Bmap, BmapRange, read_bmap
from composer.outputs.manifest import (
    EntryRecord,
    HashingStore,
    Manifest,
    PartitionRecord,
    image_sha256,
)
from composer.sources.archive import scan_archive
from composer.sparse import data_extents, paired_chunks
from composer.tree import Kind, sort_key

MAX_FINDINGS = 20  # the first ones are named; a damaged image would give thousands
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Finding:
    where: str  # an output file name, "device", or "<partition>:<path>"
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(slots=True)
class VerifyReport:
    checked: list[str] = field(default_factory=list)  # what was compared, in order
    not_checked: list[tuple[str, str]] = field(default_factory=list)  # (image, why)
    findings: list[Finding] = field(default_factory=list)
    more: int = 0  # findings past MAX_FINDINGS, counted only

    def add(self, where: str, what: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(where, what))
        else:
            self.more += 1

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_obj(self) -> dict[str, object]:
        return {"ok": self.ok, "checked": self.checked,
                "not_checked": [{"image": i, "reason": r} for i, r in self.not_checked],
                "differences": [{"where": f.where, "what": f.what} for f in self.findings],
                "more_differences": self.more}


def load_manifest(folder: Path) -> Manifest:
    path = folder / "manifest.json"
    try:
        return Manifest.from_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ComposerError(f"{folder}: cannot read manifest.json: {exc.strerror}",
                            hint="give the folder `compose build -o` wrote") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ComposerError(f"{path} is not a composer manifest ({exc})") from None


def verify(folder: Path, deep: bool = False, device: Path | None = None,
           progress: Progress | None = None) -> VerifyReport:
    """Every check asked for; a folder that is not a build at all is a ComposerError.
    `progress(bytes done, bytes total)` follows the long reads: the device's mapped ranges,
    then (deep) the images read file by file."""
    report = VerifyReport()
    manifest = load_manifest(folder)
    try:
        sums = read_sha256sums(folder / "SHA256SUMS")
    except OSError as exc:
        report.add("SHA256SUMS", f"cannot be read: {exc.strerror}")
        return report
    except ComposerError as exc:
        report.add("SHA256SUMS", exc.message)
        return report
    _check_outputs(folder, manifest, sums, report)
    if device is not None:
        check_device(folder, manifest, device, report, progress)
    if deep:
        _check_deep(folder, manifest, report, progress)
    return report


def _check_outputs(folder: Path, manifest: Manifest, sums: dict[str, str],
                   report: VerifyReport) -> None:
    expected = {*manifest.outputs, "manifest.json", "report.txt"}
    for name in sorted(expected - sums.keys()):
        report.add(name, "is an output of the build but not listed in SHA256SUMS")
    for name in sorted(sums.keys() - expected):
        report.add(name, "is listed in SHA256SUMS but is no output of the build")
    recorded = {p.image: p.sha256 for p in manifest.partitions.values()}
    if manifest.disk is not None and manifest.disk.image and manifest.disk.sha256:
        recorded[manifest.disk.image] = manifest.disk.sha256
    for name, digest in sorted(sums.items()):
        if name in recorded and recorded[name] != digest:
            report.add(name, f"the manifest says sha256 {recorded[name]}, SHA256SUMS {digest}")
        if "/" in name or name.startswith("."):
            report.add(name, "is not a file name of a build folder")
            continue
        path = folder / name
        if not path.is_file():
            report.add(name, "is missing")
            continue
        actual = sparse_sha256(path)
        report.checked.append(name)
        if actual != digest:
            report.add(name, f"sha256 is {actual}, SHA256SUMS says {digest}")


def sparse_sha256(path: Path) -> str:
    """A file's sha256, its holes hashed as zeros without reading them (images are GiB-sized
    sparse files; the kernel would hand over every zero of a hole)."""
    size = path.stat().st_size
    return image_sha256(path, list(_data_extents(path, size)), size)


def _data_extents(path: Path, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each data extent of the file at `path`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for first, stop in data_extents(fd, 0, size):
            yield first, stop - first
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------- device


def check_device(folder: Path, manifest: Manifest, device: Path, report: VerifyReport,
                 progress: Progress | None = None) -> None:
    """The device's bytes over every range disk.bmap maps, against the range's sha256; a range
    that differs is narrowed, with disk.img, to its first differing byte."""
    if manifest.disk is None or manifest.disk.image is None:
        raise ComposerError(f"{folder} has no disk image, so there is nothing to compare "
                            f"{device} with", hint="--device needs a layout with `disk:`")
    bmap = read_bmap(folder / "disk.bmap")
    image = folder / manifest.disk.image
    mapped = sum(end - start for start, end in map(bmap.byte_span, bmap.ranges))
    done = 0
    with device.open("rb") as dev, image.open("rb") as img:
        for r in bmap.ranges:
            if progress is not None:
                progress(done, mapped)
            done += bmap.byte_span(r)[1] - bmap.byte_span(r)[0]
            start, end = bmap.byte_span(r)
            got = _range_sha256(dev, start, end)
            if got is None:
                report.add("device", f"ends before mapped range {_span(bmap, r)}")
                return
            if got != r.sha256:
                first = _first_difference(dev, img, start, end)
                at = f", first at byte {first}" if first is not None else ""
                report.add("device", f"mapped range {_span(bmap, r)} differs{at} "
                           f"(in {_place(manifest, first if first is not None else start)})")
    if progress is not None:
        progress(mapped, mapped)
    report.checked.append(f"device {device}: {len(bmap.ranges)} mapped ranges, {mapped} bytes")


def _span(bmap: Bmap, r: BmapRange) -> str:
    start, end = bmap.byte_span(r)
    return f"blocks {r.first}-{r.last} (bytes {start}-{end - 1})"


def _range_sha256(f: BinaryIO, start: int, end: int) -> str | None:
    h = hashlib.sha256()
    f.seek(start)
    left = end - start
    while left:
        chunk = f.read(min(READ_CHUNK, left))
        if not chunk:
            return None
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def _first_difference(dev: BinaryIO, img: BinaryIO, start: int, end: int) -> int | None:
    for pos, a, b in paired_chunks(dev, img, start, end, READ_CHUNK):
        if a != b:
            b = b.ljust(len(a), b"\0")  # a sparse image's tail reads short: zeros
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                if x != y:
                    return pos + i
            return pos + min(len(a), len(b))
    return None


def _place(manifest: Manifest, offset: int) -> str:
    """What of the disk holds byte `offset`: a partition, a raw blob or the table."""
    disk = manifest.disk
    assert disk is not None
    for p in disk.partitions:
        if p.offset <= offset < p.offset + p.size:
            return f"partition {p.name}, byte {offset - p.offset} of it"
    for b in disk.raw:
        if b.offset <= offset < b.offset + b.size:
            return f"raw blob {b.name}, byte {offset - b.offset} of it"
    return f"the {disk.table} partition table area, outside every partition"


# ----------------------------------------------------------------------------------- deep


def _check_deep(folder: Path, manifest: Manifest, report: VerifyReport,
                progress: Progress | None = None) -> None:
    total = sum(part.size for part in manifest.partitions.values())
    done = 0
    for name, part in manifest.partitions.items():
        if progress is not None:
            progress(done, total)
        done += part.size
        if part.fs not in DEEP_READERS:
            report.not_checked.append((part.image, f"{part.fs}: composer has no reader for "
                                       f"{part.fs} images yet; only the image's sha256 was "
                                       "checked"))
            continue
        try:
            expected, records = recorded_and_held(part, folder / part.image)
        except ComposerError as exc:
            report.add(part.image, exc.message)
            continue
        for change in entry_changes(name, expected, records):
            what = (f"{change.field}: the manifest says {change.a}, the image holds {change.b}"
                    if change.field not in ("added", "removed") else
                    "is in the image but not in the manifest" if change.field == "added" else
                    "is in the manifest but not in the image")
            report.add(change.where, what)
        report.checked.append(f"{part.image}: {len(records)} entries")
    if progress is not None:
        progress(total, total)


def recorded_and_held(part: PartitionRecord, image: Path
                      ) -> tuple[list[EntryRecord], list[EntryRecord]]:
    """What the manifest records of a partition (as far as its file system holds it) and what
    `image` holds, read back (DEEP_READERS: the partition's fs must have a reader)."""
    wanted, read = DEEP_READERS[part.fs]
    records = read(image)
    expected = [view for view in map(wanted, part.entries) if view is not None]
    if part.fs == "ext4" and not any(e.path == LOST_FOUND for e in expected):
        # the writer adds lost+found (as mke2fs does) when the tree has none
        records = [r for r in records if r.path != LOST_FOUND]
    return expected, records


def _tar_view(record: EntryRecord) -> EntryRecord | None:
    """What a tar partition holds of a manifest entry: all of it, but sockets (README
    "Outputs": no tar format holds them)."""
    return None if record.kind == Kind.SOCKET.value else record


def _fat_view(record: EntryRecord) -> EntryRecord | None:
    """What FAT holds of a manifest entry: path, kind and content (composer/fs/vfat.py)."""
    return EntryRecord(path=record.path, kind=record.kind, mode="", uid=0, gid=0, mtime=0,
                       mtime_ns=0, size=record.size, sha256=record.sha256)


def fat_records(path: Path, progress: Progress | None = None, offset: int = 0,
                length: int | None = None) -> list[EntryRecord]:
    """The manifest records of what a FAT image (or the FAT file system at byte `offset`,
    `length` bytes long, of a disk image) holds, as _fat_view shows them. `progress` counts
    the file bytes hashed against the sum of the files' sizes, and ends at that total."""
    return [EntryRecord(path=shown(e.path), kind=Kind.DIR.value if e.is_dir else
                        Kind.FILE.value, mode="", uid=0, gid=0, mtime=0, mtime_ns=0,
                        size=e.size, sha256=e.sha256)
            for e in read_vfat(path, offset, progress, length)]


def tar_records(path: Path, progress: Progress | None = None) -> list[EntryRecord]:
    """The manifest records of what a tar image (compressed or not) holds, read as a source is
    (libarchive). `progress` counts the member bytes hashed against the sum of the members'
    sizes, and ends at that total."""
    scanned = scan_archive(path.name, path)
    store = HashingStore(ContentStore({scanned.name: scanned.data}))
    hash_contents([scanned], store, progress)
    return [EntryRecord.of(e, store) for e in scanned.entries.values()]


def ext4_records(path: Path, progress: Progress | None = None, offset: int = 0,
                 length: int | None = None) -> list[EntryRecord]:
    """The manifest records of what an ext4 image (or the file system at `offset`, `length`
    bytes long, of a disk image) holds (composer/fs/ext4/reader.py): a file's second and
    later paths, in the tree's sorted order, are hard links to its first.
    `progress` counts the file bytes hashed against the blocks the superblock says are used
    (an upper bound: metadata blocks are never hashed), and ends at that total."""
    with path.open("rb") as f:
        reader = Ext4Reader(f, path.name, offset, length, checksums=True)
        entries = sorted(reader.entries(),
                         key=lambda e: sort_key(e.path.decode("utf-8", "surrogateescape")))
        first_path: dict[int, str] = {}
        facts = reader.facts()
        total = max(facts.blocks_count - facts.free_blocks, 0) * facts.block_size
        done = [0]

        def hashed(n: int) -> None:
            done[0] = min(done[0] + n, total)
            if progress is not None:
                progress(done[0], total)

        records = [_ext4_record(reader, e, first_path, hashed) for e in entries]
        if progress is not None:
            progress(total, total)
        return records


def _ext4_record(reader: Ext4Reader, e: Ext4Entry, first_path: dict[int, str],
                 hashed: Callable[[int], None]) -> EntryRecord:
    path = shown(e.path.decode("utf-8", "surrogateescape"))
    node = e.inode
    kind, target, size, digest = e.kind, None, None, None
    if kind is Kind.FILE and node.number in first_path:
        kind, target = Kind.HARDLINK, first_path[node.number]
    elif kind is Kind.FILE:
        first_path[node.number] = path
        h = hashlib.sha256()
        for chunk in reader.chunks(node):
            h.update(chunk)
            hashed(len(chunk))
        size, digest = node.size, h.hexdigest()
    elif e.target is not None:
        target = shown(e.target.decode("utf-8", "surrogateescape"))
    return EntryRecord(path, kind.value, f"{node.mode & 0o7777:04o}", node.uid, node.gid,
                       node.mtime, node.mtime * 1_000_000_000 + node.mtime_ns, size, digest,
                       target, e.rdev,
                       tuple(shown(n.decode("utf-8", "surrogateescape"))
                             for n, _ in reader.xattrs(node)))


# The file systems --deep reads: how a manifest entry looks in one, and the reader.
DEEP_READERS: dict[str, tuple[Callable[[EntryRecord], EntryRecord | None],
                              Callable[[Path], list[EntryRecord]]]] = {
    "tar": (_tar_view, tar_records),
    "vfat": (_fat_view, fat_records),
    "ext4": (_tar_view, ext4_records),
}
