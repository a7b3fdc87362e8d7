"""The validated layout: frozen values, every one with the Loc it was declared at."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from composer.errors import Loc
from composer.types import TableType as TableType  # the layout's `disk.table` names


class SecretsPolicy(StrEnum):
    STRIP = "strip"
    FAIL = "fail"
    KEEP = "keep"


class IdentityPolicy(StrEnum):
    STRIP = "strip"
    FAIL = "fail"  # any trace of the golden device's identity is an error listing each
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """`name:/path` inside a named source."""

    source: str
    path: str  # absolute inside the source, "/" for its root
    loc: Loc

    def __str__(self) -> str:
        return f"{self.source}:{self.path}"


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    path: Path  # absolute, resolved against the layout file's folder
    loc: Loc


@dataclass(frozen=True, slots=True)
class DiskPlacement:
    """A partition's keys that only a disk reads (all optional in the layout)."""

    type: str | int | None = None  # GPT short name or GUID; MBR short name or type byte
    offset: int | None = None  # bytes from the start of the disk
    attributes: tuple[str, ...] = ()  # GPT attribute names
    bootable: bool = False  # MBR active flag / GPT legacy-BIOS-bootable
    partuuid: uuid.UUID | None = None  # GPT partition GUID
    loc: Loc | None = None


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    fs: str
    size: int | None  # bytes; None for auto (and for tar, which has no size)
    mount: str
    label: str | None
    uuid: uuid.UUID | None  # pinned; derived at plan time when None
    options: Mapping[str, Any]  # file-system options, parsed as layout/settings.py declares
    disk: DiskPlacement | None  # where the partition goes in the disk (None: defaults)
    loc: Loc
    index: int  # declaration order = disk order


# the folders of a Greengrass root that `greengrass.keep` may name, and what it keeps by default
KNOWN_DIRS = ("alts", "bin", "cli_ipc_info", "config", "deployments", "logs", "packages",
              "plugins", "telemetry", "work")
DEFAULT_KEEP = ("alts", "config", "packages")


@dataclass(frozen=True, slots=True)
class Greengrass:
    src: SourceRef
    to: str
    keep: tuple[str, ...]
    keep_given: bool  # plugins joins the default set only when `keep` was not written
    secrets: SecretsPolicy
    identity: IdentityPolicy
    loc: Loc


class Vary(StrEnum):
    """What a device record may set (README "Personalizing devices")."""

    THING_NAME = "thing_name"
    CERTIFICATE = "certificate"
    PRIVATE_KEY = "private_key"
    ENDPOINTS = "endpoints"  # iotDataEndpoint, iotCredEndpoint, awsRegion, iotRoleAlias
    TEMPLATE_PARAMETERS = "template_parameters"


@dataclass(frozen=True, slots=True)
class Personalize:
    """What may vary per device, so the golden build can prepare for it."""

    vary: tuple[Vary, ...]
    uuids: tuple[str, ...]  # partitions whose UUID and partition GUID derive from the device id
    slack: int  # bytes kept free after each configuration file a device changes
    loc: Loc


@dataclass(frozen=True, slots=True)
class Systemd:
    src: SourceRef
    units: tuple[str, ...]
    loc: Loc


@dataclass(frozen=True, slots=True)
class DockerImage:
    """An image archive to preload (`docker.images[]`)."""

    archive: Path  # a `docker save` tar, an oci-archive tar, or an OCI layout folder
    tags: tuple[str, ...]  # empty: the names the archive records
    platform: str | None  # "os/arch[/variant]": which image of a multi-platform index
    loc: Loc


@dataclass(frozen=True, slots=True)
class Docker:
    src: SourceRef | None  # a snapshot's store, or None when only images are preloaded
    to: str
    keep: tuple[str, ...]  # ephemeral parts to keep after all
    loc: Loc
    images: tuple[DockerImage, ...] = ()


class FileAction(StrEnum):
    COPY = "copy"
    CONTENT = "content"
    DIR = "dir"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class FileRule:
    action: FileAction
    to: str
    loc: Loc
    src: SourceRef | None = None
    exclude: tuple[str, ...] = ()
    content: bytes | None = None
    symlink: str | None = None
    mode: int | None = None
    owner: tuple[int, int] | None = None


class Output(StrEnum):
    """Extra outputs on request (`outputs:`); .bmap files are always written."""

    SIMG = "simg"  # Android sparse image of every raw image, for fastboot/uuu
    ZST = "zst"  # zstd-compressed images, which bmaptool reads directly
    SFDISK = "sfdisk"  # an sfdisk script of the disk's table


@dataclass(frozen=True, slots=True)
class RawBlob:
    """Bytes written at a fixed disk offset, outside any partition (a bootloader)."""

    src: SourceRef
    offset: int
    loc: Loc


@dataclass(frozen=True, slots=True)
class Disk:
    table: TableType
    align: int
    size: int | None  # None: just big enough
    guid: uuid.UUID | None  # GPT disk GUID, pinned
    signature: int | None  # MBR disk signature, pinned
    entry_lba: int | None  # GPT: where the primary entry array starts (default LBA 2)
    raw: tuple[RawBlob, ...]
    loc: Loc


@dataclass(frozen=True, slots=True)
class Layout:
    path: Path
    version: int
    name: str
    epoch: int | None
    sources: Mapping[str, Source]
    partitions: tuple[Partition, ...]
    greengrass: Greengrass | None
    systemd: Systemd | None
    docker: Docker | None
    files: tuple[FileRule, ...]
    disk: Disk | None
    outputs: tuple[Output, ...] = field(default=())
    max_image_size: int = 64 << 30  # the largest image a build may make (load.py explains)
    personalize: Personalize | None = None


# Output names are decided here, once, from the layout alone: the loader checks them for
# collisions and reserved names, the build writes exactly these, and publishing knows them
# before anything is written.
MANIFEST = "manifest.json"
REPORT = "report.txt"
SUMS = "SHA256SUMS"
DISK_IMAGE = "disk.img"
SFDISK = "disk.sfdisk"
RESERVED_STEMS = ("disk", "manifest", "report", "SHA256SUMS")  # what the build itself names


def image_name(part: Partition) -> str:
    return f"{part.name}.tar" if part.fs == "tar" else f"{part.name}.img"


def flashing_names(image: str, outputs: tuple[Output, ...]) -> tuple[str, ...]:
    """The files made beside a raw image: NAME.bmap always, NAME.simg and NAME.img.zst on request.

    NAME is the whole partition name: `rootfs.a` gives rootfs.a.bmap (never rootfs.bmap).
    """
    stem = image.removesuffix(".img")
    names = [f"{stem}.bmap"]
    if Output.SIMG in outputs:
        names.append(f"{stem}.simg")
    if Output.ZST in outputs:
        names.append(f"{image}.zst")
    return tuple(names)


def partition_outputs(part: Partition, outputs: tuple[Output, ...]) -> tuple[str, ...]:
    image = image_name(part)
    return (image,) if part.fs == "tar" else (image, *flashing_names(image, outputs))


def disk_outputs(outputs: tuple[Output, ...]) -> tuple[str, ...]:
    return (DISK_IMAGE, *flashing_names(DISK_IMAGE, outputs),
            *((SFDISK,) if Output.SFDISK in outputs else ()))


def output_names(layout: Layout) -> tuple[str, ...]:
    """Every file a build of `layout` publishes, sorted."""
    names = [name for part in layout.partitions for name in partition_outputs(part, layout.outputs)]
    if layout.disk is not None:
        names += disk_outputs(layout.outputs)
    return tuple(sorted([*names, MANIFEST, REPORT, SUMS]))
