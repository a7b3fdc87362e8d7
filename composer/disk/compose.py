"""The layout's `disk:` section turned into a disk plan, and the flashing outputs of a build.

Every partition with an image (not tar) goes into the disk, in declaration order. Types default
by file system: GPT `linux` for ext4 and `microsoft-basic-data` for vfat (what boards' boot ROMs
and U-Boot look for; set `type: esp` for UEFI), MBR 0x83 and 0x0c.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from composer.content import ContentStore
from composer.disk.assemble import (
    DiskPartitionSpec,
    DiskPlan,
    RawBlobSpec,
    plan_disk,
    write_disk,
)
from composer.disk.sfdisk import sfdisk_script
from composer.errors import ComposerError, raise_all
from composer.layout.model import Disk, Output, Partition, RawBlob, flashing_names
from composer.outputs.bmap import write_bmap
from composer.outputs.compress import compress_zstd
from composer.outputs.simg import write_simg
from composer.sources import Scanned
from composer.tree import Content, Kind
from composer.types import TableType, WriteResult
from composer.units import human_size

DEFAULT_TYPES = {
    TableType.GPT: {"ext4": "linux", "vfat": "microsoft-basic-data"},
    TableType.MBR: {"ext4": "linux", "vfat": "vfat"},
}


@dataclass(frozen=True, slots=True)
class DiskBuild:
    plan: DiskPlan
    blobs: Mapping[str, Content]  # raw blob name -> its data


def blob_name(index: int, blob: RawBlob) -> str:
    return f"raw[{index}] {blob.src}"


def plan_layout_disk(disk: Disk, partitions: Sequence[Partition], sizes: Mapping[str, int],
                     scanned: Mapping[str, Scanned], seed: str,
                     namespace: uuid.UUID, max_size: int | None = None) -> DiskBuild:
    """Place every image partition and raw blob; raises every problem at once."""
    errors: list[ComposerError] = []
    blobs: dict[str, Content] = {}
    blob_specs = []
    for index, blob in enumerate(disk.raw):
        entry = scanned[blob.src.source].entries.get(blob.src.path)
        if entry is None or entry.kind is not Kind.FILE or entry.content is None:
            errors.append(ComposerError(f"{blob.src} is not a file in source "
                                        f"{blob.src.source!r}", blob.loc,
                                        path=f"disk.raw[{index}].from"))
            continue
        name = blob_name(index, blob)
        blobs[name] = entry.content
        blob_specs.append(RawBlobSpec(name, blob.offset, entry.size, blob.loc))
    specs = [_spec(disk, part, sizes[part.name]) for part in partitions if part.name in sizes]
    if not specs:
        errors.append(ComposerError("the disk has no partitions", disk.loc, path="disk",
                                    hint="a disk holds every partition that is not fs: tar"))
    raise_all(errors)
    plan = plan_disk(disk.table, specs, seed=seed, disk_size=disk.size, align=disk.align,
                     raw_blobs=blob_specs, disk_guid=disk.guid, mbr_signature=disk.signature,
                     gpt_entry_lba=disk.entry_lba, namespace=namespace, loc=disk.loc)
    if max_size is not None and plan.disk_size > max_size:
        # the layout's sizes were each within the bound, but offsets and alignment add up
        raise ComposerError(f"the disk would be {human_size(plan.disk_size)} "
                            f"({plan.disk_size} bytes), over {human_size(max_size)}, the image "
                            "size bound (hashing it for SHA256SUMS reads every byte: about 1 s "
                            "per GiB)", disk.loc, path="disk",
                            hint="check offsets and align; if you mean it, raise "
                            "'max_image_size' at the top of the layout")
    return DiskBuild(plan, blobs)


def _spec(disk: Disk, part: Partition, size: int) -> DiskPartitionSpec:
    place = part.disk
    kind = place.type if place is not None and place.type is not None else \
        DEFAULT_TYPES[disk.table].get(part.fs, "linux")
    return DiskPartitionSpec(
        name=part.name, size=size, type=kind,
        offset=place.offset if place is not None else None,
        uuid=place.partuuid if place is not None else None,
        attributes=place.attributes if place is not None else (),
        bootable=place.bootable if place is not None else False,
        loc=place.loc if place is not None and place.loc is not None else part.loc)


def write_layout_disk(build: DiskBuild, images: Mapping[str, tuple[Path, WriteResult]],
                      out: Path, store: ContentStore) -> WriteResult:
    data = {c: stream.read() for c, stream in store.stream(build.blobs.values())}
    blobs = {name: data[content] for name, content in build.blobs.items()}
    return write_disk(build.plan, images, out, raw_blobs=blobs)


def flashing_outputs(image: Path, result: WriteResult, outputs: Sequence[Output],
                     bmap_digests: Future[list[str]] | None = None) -> list[str]:
    """Write NAME.bmap and whatever `outputs` asks for next to `image`; returns the file names
    (layout.model.flashing_names decides them, so the loader could check them).
    `bmap_digests`: the bmap ranges' digests, made while the image was written."""
    names = flashing_names(image.name, tuple(outputs))
    for name in names:
        target = image.with_name(name)
        if name.endswith(".bmap"):
            write_bmap(image, result, target, digests=None if bmap_digests is None
                       else bmap_digests.result())
        elif name.endswith(".simg"):
            write_simg(image, result, target)
        else:
            compress_zstd(image, target)
    return list(names)


def sfdisk_file(plan: DiskPlan, out: Path) -> str:
    out.write_text(sfdisk_script(plan), encoding="utf-8")
    return out.name
