"""Every key of a layout file, declared once: where it lives, its type, default, example and
meaning (in the manner of mkosi's `ConfigSetting` table).

The loader (load.py) takes from here the keys each mapping allows, which of them are required,
the defaults it fills in and how a file-system option is parsed; `python3 -m
composer.layout.reference` renders the README's reference table from it, and a test keeps the
README equal to that rendering.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from composer.disk.gpt import ATTRIBUTE_NAMES
from composer.disk.mbr import TYPE_BYTES
from composer.fs.base import OptionType
from composer.layout.model import (
    DEFAULT_KEEP,
    KNOWN_DIRS,
    IdentityPolicy,
    Output,
    SecretsPolicy,
    TableType,
    Vary,
)
from composer.units import GiB, MiB


class Section(enum.Enum):
    """Where a key lives in the layout file; the value is (path prefix, heading)."""

    TOP = ("", "Top level")
    SOURCES = ("sources.", "`sources:`")
    PARTITION = ("partitions[].", "`partitions[]`: every partition")
    EXT4 = ("partitions[].", "`partitions[]`: ext4 partitions only")
    VFAT = ("partitions[].", "`partitions[]`: vfat partitions only")
    PARTITION_DISK = ("partitions[].", "`partitions[]`: partitions of a disk (with `disk:`)")
    DISK = ("disk.", "`disk:`")
    DISK_RAW = ("disk.raw[].", "`disk.raw[]`")
    GREENGRASS = ("greengrass.", "`greengrass:`")
    SYSTEMD = ("systemd.", "`systemd:`")
    DOCKER = ("docker.", "`docker:`")
    DOCKER_IMAGES = ("docker.images[].", "`docker.images[]`")
    FILES = ("files[].", "`files[]`")
    PERSONALIZE = ("personalize.", "`personalize:`")

    @property
    def prefix(self) -> str:
        return self.value[0]

    @property
    def heading(self) -> str:
        return self.value[1]


# the file-system options a writer receives in WriteRequest.options, by file system
WRITER_SECTIONS = {"ext4": Section.EXT4, "vfat": Section.VFAT}


@dataclass(frozen=True, slots=True)
class Setting:
    section: Section
    key: str
    type: str  # as the reference shows it
    help: str  # one line of Markdown
    default: str = ""  # as the reference shows it; "" for required keys and keys without one
    example: str = ""  # YAML, as written after `key: `
    required: bool = False
    value: Any = None  # the default the loader fills in, where it fills one in
    option: OptionType | None = None  # file-system options: how the loader parses the value
    choices: tuple[Any, ...] = ()  # the values allowed, where the list is closed

    @property
    def path(self) -> str:
        return self.section.prefix + self.key


def _list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


_S = Section
SETTINGS: tuple[Setting, ...] = (
    # --- top level -----------------------------------------------------------------------
    Setting(_S.TOP, "version", "integer", "the layout format; `1` is the only one",
            example="1", required=True, choices=(1,)),
    Setting(_S.TOP, "name", "string", "letters, digits, `.`, `_`, `-`; seeds every derived ID",
            example="gg-demo", required=True),
    Setting(_S.TOP, "epoch", "integer", "seconds since 1970: the build's time (see \"Time, IDs "
            "and determinism\")",
            default="`--source-date-epoch`, `$SOURCE_DATE_EPOCH`, else the newest input mtime",
            example="1718878001"),
    Setting(_S.TOP, "sources", "mapping", "named inputs (below)", example="{golden: g.tar.gz}"),
    Setting(_S.TOP, "partitions", "list", "the partitions, in disk order (below)",
            example="[{name: root, fs: ext4, mount: /}]", required=True),
    Setting(_S.TOP, "greengrass", "mapping", "the Greengrass root to install (below)"),
    Setting(_S.TOP, "systemd", "mapping", "systemd units to install and enable (below)"),
    Setting(_S.TOP, "docker", "mapping", "a Docker image store to install (below)"),
    Setting(_S.TOP, "files", "list", "files, folders and links to place (below)"),
    Setting(_S.TOP, "disk", "mapping", "make `disk.img` holding every non-tar partition "
            "(below)", default="no disk image", example="{table: gpt}"),
    Setting(_S.TOP, "outputs", "list", "extra outputs: `simg` (Android sparse image of each raw "
            "image and the disk, for fastboot/uuu), `zst` (zstd-compressed images, which "
            "bmaptool reads), `sfdisk` (`disk.sfdisk`, the table as an sfdisk script, needs "
            "`disk:`); `.bmap` files are always written", default="`[]`",
            example="[simg, zst, sfdisk]", choices=tuple(o.value for o in Output)),
    Setting(_S.TOP, "personalize", "mapping", "what may vary per device; `compose personalize` "
            "then makes each device's image or patch (below, and \"Personalizing devices\")",
            default="no personalization", example="{uuids: [rootfs]}"),
    Setting(_S.TOP, "max_image_size", "size", "the largest image size the layout may declare "
            "or a disk may come to, at most 16TiB (see \"Limits\")", default="64GiB",
            example="128GiB", value=64 * GiB),
    # --- sources ------------------------------------------------------------------------
    Setting(_S.SOURCES, "NAME", "path", "a folder, or an archive libarchive reads (tar, "
            "tar.gz/.xz/.zst, cpio, zip), relative to the layout file; `NAME` is letters, "
            "digits, `.`, `_`, `-`", example="golden-device.tar.gz"),
    # --- partitions[] ---------------------------------------------------------------------
    Setting(_S.PARTITION, "name", "string", "unique, also when letter case is ignored; not "
            "`disk`, `manifest`, `report` or `SHA256SUMS`; the image is `NAME.img` (`NAME.tar`)",
            example="rootfs", required=True),
    Setting(_S.PARTITION, "fs", "string", "the file system", example="ext4", required=True,
            choices=("ext4", "vfat", "tar")),
    Setting(_S.PARTITION, "size", "size or `auto`", "the image size, a multiple of 4 KiB "
            "(`K`/`M`/`G` are binary too); `auto` is the smallest that fits plus headroom, "
            "rounded up to 1 MiB; a size too small is an error naming what it needs; not for tar",
            default="`auto`", example="1GiB"),
    Setting(_S.PARTITION, "mount", "path", "absolute path on the device, unique; entries go to "
            "the partition with the longest mount prefix", example="/", required=True),
    Setting(_S.PARTITION, "label", "string", "file-system label: ext4 at most 16 bytes; vfat "
            "at most 11 of `A-Z 0-9 _ -` (a lowercase letter is an error whose hint gives the "
            "label in capitals, never changed silently); tar has none", default="none",
            example="rootfs"),
    Setting(_S.PARTITION, "uuid", "UUID", "the ext4 file-system UUID (vfat: seeds the volume "
            "ID, see `volume_id`; tar has none)", default="derived from `name`",
            example="2f5a9c1e-7b44-4c1e-9d0a-3f1b6c8e2a10"),
    Setting(_S.EXT4, "inodes", "integer", "number of inodes",
            default="mke2fs's inode ratio for the size type (one per 8 KiB below 3 MiB, per 4 KiB "
            "below 512 MiB, per 16 KiB up to 4 TiB, then 32/64 KiB), at least the entries plus "
            "headroom", example="65536",
            option=OptionType.INT),
    Setting(_S.EXT4, "reserved", "number 0-50", "percent of blocks reserved for root",
            default="5 (as mke2fs)", example="0", option=OptionType.PERCENT),
    Setting(_S.EXT4, "journal", "size or `none`", "journal size (at least 1024 blocks), or no "
            "journal", default="mke2fs's size for the block count: none below 2048 blocks, 1024 "
            "blocks below 32768, … up to 1 GiB", example="16MiB",
            option=OptionType.SIZE_OR_NONE),
    Setting(_S.EXT4, "headroom", "number 0-50", "percent of free space added to an `auto` "
            "size; even at 0 an `auto` size keeps free blocks above the `reserved` ones and the "
            "kernel's own reserve (2 %, at most 4096 blocks) plus 16, so the mounted image stays "
            "writable", default="10", example="20", option=OptionType.PERCENT),
    Setting(_S.EXT4, "block_size", "integer", "file-system block size in bytes: 1024, 2048 or "
            "4096",
            default="as mke2fs for the size type (/etc/mke2fs.conf): 1024 below 512 MiB, else "
            "4096; 4096 also when the content needs it (a symlink target or xattrs longer than a "
            "1 KiB block holds); for `size: auto`, the type of the size the image comes out at",
            example="4096", option=OptionType.INT, choices=(1024, 2048, 4096)),
    Setting(_S.VFAT, "fat", "integer", "FAT type; a size composer cannot format with it is an "
            "error", default="12 below 4.1 MiB, 32 from 512 MiB, else 16", example="32",
            option=OptionType.INT, choices=(12, 16, 32)),
    Setting(_S.VFAT, "volume_id", "string", "volume serial as 8 hex digits (shown as "
            "`XXXX-XXXX` by blkid)", default="derived from the partition UUID",
            example='"1234ABCD"', option=OptionType.STR),
    Setting(_S.PARTITION_DISK, "type", "string or number", "GPT: a GUID or a short name ("
            "`linux`, `esp`, `swap`, `home`, `srv`, `var`, `tmp`, `xbootldr`, "
            "`microsoft-basic-data`, the Discoverable Partitions names such as `root-arm64`, "
            f"`usr-arm64`, …); MBR: {_list(sorted(TYPE_BYTES))} or a type byte",
            default="`linux` (MBR 0x83) for ext4, `microsoft-basic-data` (MBR 0x0c) for vfat",
            example="esp"),
    Setting(_S.PARTITION_DISK, "offset", "size", "a fixed byte offset in the disk",
            default="after the previous partition, aligned", example="8MiB"),
    Setting(_S.PARTITION_DISK, "attributes", "list", "GPT attribute bits: "
            f"{_list(sorted(ATTRIBUTE_NAMES))}, `bit:N` (N = 0-2 or 48-63)", default="`[]`",
            example="[read-only, no-automount]"),
    Setting(_S.PARTITION_DISK, "bootable", "boolean", "the MBR active flag (GPT: "
            "legacy-BIOS-bootable)", default="false", example="true", value=False),
    Setting(_S.PARTITION_DISK, "partuuid", "UUID", "the GPT partition GUID (MBR PARTUUIDs "
            "are `<signature>-<number>`)", default="derived from `name`",
            example="0d194b8f-a62c-5f0a-85bb-59ba9fbddbb0"),
    # --- disk ---------------------------------------------------------------------------
    Setting(_S.DISK, "table", "string", "the partition table; MBR holds 4 primary partitions "
            "at most", default="`gpt`", example="mbr", value=TableType.GPT,
            choices=tuple(t.value for t in TableType)),
    Setting(_S.DISK, "align", "size", "partition alignment, a multiple of 4 KiB, at most "
            "1GiB", default="1MiB", example="4MiB", value=MiB),
    Setting(_S.DISK, "size", "size or `auto`", "the disk size, a multiple of 4 KiB",
            default="`auto`: just big enough", example="4GiB"),
    Setting(_S.DISK, "guid", "UUID", "pin the GPT disk GUID", default="derived from `name`",
            example="1c633939-d7ed-524a-9ad7-8d10ead06536"),
    Setting(_S.DISK, "signature", "string", "pin the MBR disk signature, 32-bit hexadecimal",
            default="derived from `name`", example='"0x1a2b3c4d"'),
    Setting(_S.DISK, "entry_lba", "integer", "GPT: the LBA of the primary entry array; move it "
            "(e.g. to 2016) when a boot ROM reads a bootloader where the array would be, such "
            "as i.MX at 1 KiB", default="2", example="2016"),
    Setting(_S.DISK, "raw", "list", "bytes written at fixed offsets outside the partitions "
            "(bootloaders); overlaps with the table or a partition are errors that say how to "
            "fix them", default="`[]`", example='[{from: "boot:/spl.bin", offset: 33KiB}]'),
    Setting(_S.DISK_RAW, "from", "source ref", "`SOURCE:/path` of the bytes",
            example='"boot:/spl.bin"', required=True),
    Setting(_S.DISK_RAW, "offset", "size", "byte offset in the disk", example="33KiB",
            required=True),
    # --- greengrass -------------------------------------------------------------------------
    Setting(_S.GREENGRASS, "from", "source ref", "`SOURCE:/path` of the Greengrass root",
            example="golden:/greengrass/v2", required=True),
    Setting(_S.GREENGRASS, "to", "path", "its path on the device", default="the same path",
            example="/greengrass/v2"),
    Setting(_S.GREENGRASS, "keep", "list", f"root folders to keep: any of {_list(KNOWN_DIRS)}",
            default=f"{_list(DEFAULT_KEEP)}, plus `plugins` when it holds a file",
            example="[alts, config, packages]", value=DEFAULT_KEEP, choices=KNOWN_DIRS),
    Setting(_S.GREENGRASS, "secrets", "string", "`strip` the secrets; `fail`: any secret is "
            "an error listing file and key; `keep` them, with a warning each",
            default="`strip`", example="fail", value=SecretsPolicy.STRIP,
            choices=tuple(p.value for p in SecretsPolicy)),
    Setting(_S.GREENGRASS, "identity", "string", "`strip` the golden device's identity; "
            "`fail`: any trace of it is an error listing file and key; `keep` it",
            default="`strip`", example="fail", value=IdentityPolicy.STRIP,
            choices=tuple(p.value for p in IdentityPolicy)),
    # --- systemd --------------------------------------------------------------------------
    Setting(_S.SYSTEMD, "from", "source ref", "the snapshot's root or a unit folder",
            example="golden:/etc/systemd/system", required=True),
    Setting(_S.SYSTEMD, "units", "list", "the units to install and enable, looked up in "
            "`etc/systemd/system`, `lib/systemd/system`, `usr/lib/systemd/system` below `from`",
            example="[greengrass.service]", required=True),
    # --- docker ---------------------------------------------------------------------------
    Setting(_S.DOCKER, "from", "source ref", "the Docker image store (`from`, `images` or "
            "both)", example="golden:/var/lib/docker"),
    Setting(_S.DOCKER, "to", "path", "where it goes on the device", default="/var/lib/docker",
            example="/data/docker", value="/var/lib/docker"),
    Setting(_S.DOCKER, "keep", "list", "ephemeral parts to keep after all (see \"The rules\")",
            default="`[]`", example="[]"),
    Setting(_S.DOCKER, "images", "list", "image archives to preload into the store without a "
            "daemon (see \"Preloading Docker images\")", default="`[]`",
            example='[{archive: app.tar, tags: ["app:1.0"]}]'),
    Setting(_S.DOCKER_IMAGES, "archive", "path", "a `docker save` tar, an OCI image layout "
            "folder or its tar (`oci-archive`), relative to the layout file",
            example="images/app.tar", required=True),
    Setting(_S.DOCKER_IMAGES, "tags", "list", "the names to give the image (`name:tag`; "
            "`name` alone means `name:latest`); only for an archive of one image",
            default="the names the archive records", example='["registry.example.com/app:1.0"]'),
    Setting(_S.DOCKER_IMAGES, "platform", "string", "`os/arch[/variant]` of the device: picks "
            "one image of a multi-platform archive; any other platform is an error",
            default="the archive's only platform", example="linux/arm64"),
    # --- files[] --------------------------------------------------------------------------
    Setting(_S.FILES, "from", "source ref", "copy a file or a folder (one of `from`, "
            "`content`, `dir`, `symlink`)", example='"golden:/opt/app"'),
    Setting(_S.FILES, "to", "path", "the path on the device", example="/etc/hostname",
            required=True),
    Setting(_S.FILES, "exclude", "list", "with `from`: lines like .gitignore's: `*.log` "
            "matches a name at any depth, `a/b` a path from the copy's root, `cache/` folders "
            "only", default="`[]`", example='["*.log", "cache/"]'),
    Setting(_S.FILES, "content", "string", "a file with this text", example='"gg-device\\n"'),
    Setting(_S.FILES, "dir", "`true`", "a folder", example="true"),
    Setting(_S.FILES, "symlink", "string", "a symbolic link to this target",
            example="/opt/app/releases/1"),
    Setting(_S.FILES, "mode", "octal string", "quoted (an unquoted 0640 is an error: YAML reads "
            "it as a number); on a copy it applies to the entry at `to`",
            default="0644 for content, 0755 for dir, else as the source", example='"0640"'),
    Setting(_S.FILES, "owner", "string", "`\"UID:GID\"`, numeric; on a copy it applies to "
            "everything copied", default="`0:0`, or as the source", example='"998:998"'),
    # --- personalize ----------------------------------------------------------------------
    Setting(_S.PERSONALIZE, "vary", "list", "the device record fields that may be set: "
            "`thing_name` (system.thingName), `certificate` and `private_key` (files at "
            "system.certificateFilePath and system.privateKeyPath; a key may be a `pkcs11:` URI), "
            "`endpoints` (the Nucleus's iotDataEndpoint, iotCredEndpoint, awsRegion, "
            "iotRoleAlias), `template_parameters` (fleet provisioning's templateParameters)",
            default=_list(tuple(v.value for v in Vary)), example="[thing_name, certificate, "
            "private_key]", value=tuple(Vary), choices=tuple(v.value for v in Vary)),
    Setting(_S.PERSONALIZE, "uuids", "list", "partitions whose ext4 UUID and GPT partition "
            "GUID are derived from the device id: `uuid5(composer namespace, \"<layout "
            "name>/<partition>/fs/<device id>\")` (`/part/` for the GUID)", default="`[]`",
            example="[rootfs]"),
    Setting(_S.PERSONALIZE, "slack", "size", "free space the golden plan keeps after each "
            "configuration file a device changes, so a device's lines fit without moving "
            "other files", default="4KiB", example="8KiB", value=4096),
)


def settings(section: Section) -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if s.section is section)


def keys(section: Section) -> tuple[str, ...]:
    """The keys a mapping of this section allows, in declaration order."""
    return tuple(s.key for s in settings(section))


def required(section: Section) -> tuple[str, ...]:
    return tuple(s.key for s in settings(section) if s.required)


def setting(section: Section, key: str) -> Setting:
    for s in settings(section):
        if s.key == key:
            return s
    raise KeyError(f"{section.prefix}{key}")


def default(section: Section, key: str) -> Any:
    """The value the loader fills in when the key is absent."""
    return setting(section, key).value


def writer_settings(fs: str) -> Iterator[Setting]:
    """The file-system options of `fs` (nothing for a format without options)."""
    section = WRITER_SECTIONS.get(fs)
    return iter(settings(section) if section is not None else ())
