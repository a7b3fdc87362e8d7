"""Validate a layout file whole: every error at once, each with file:line:col, path and hint."""

from __future__ import annotations

import difflib
import os
import re
import stat
import uuid
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from composer import tools
from composer.docker.reference import BadReference, familiar
from composer.errors import ComposerError, Loc, raise_all
from composer.fs.base import FsWriter, OptionType
from composer.fs.ext4.inode import TIME_MAX
from composer.layout.model import (
    KNOWN_DIRS,
    MANIFEST,
    REPORT,
    RESERVED_STEMS,
    SUMS,
    Disk,
    DiskPlacement,
    Docker,
    DockerImage,
    FileAction,
    FileRule,
    Greengrass,
    IdentityPolicy,
    Layout,
    Output,
    Partition,
    Personalize,
    RawBlob,
    SecretsPolicy,
    Source,
    SourceRef,
    Systemd,
    TableType,
    Vary,
    disk_outputs,
    partition_outputs,
)
from composer.layout.settings import Section, Setting, default, keys, required, writer_settings
from composer.layout.yamlload import Node, load_yaml
from composer.registry import WRITERS
from composer.tree import norm
from composer.units import GiB, MiB, SizeError, TiB, human_size, parse_size

E = TypeVar("E", bound=StrEnum)

# the keys each mapping allows, from the declarations in settings.py
TOP_KEYS = keys(Section.TOP)
PARTITION_KEYS = keys(Section.PARTITION)
DISK_PARTITION_KEYS = keys(Section.PARTITION_DISK)
DISK_KEYS = keys(Section.DISK)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MODE = re.compile(r"^0?[0-7]{3,4}$")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")


MAX_LAYOUT_BYTES = 1 * MiB  # the demo layout is 2 KiB; more is a mistake (or /dev/zero)
# SHA256SUMS hashes every byte of every image, holes included (~1 s per GiB on one core), so a
# declared size is a promise of work: above this bound a layout must say `max_image_size:`
DEFAULT_MAX_IMAGE: int = default(Section.TOP, "max_image_size")
HARD_MAX_IMAGE = 16 * TiB  # no eMMC, SD card or SSD a device image is made for comes near it
MAX_ALIGN = 1 * GiB
ID_MAX = (1 << 32) - 1  # uid/gid: 32 bits in ext4 (i_uid + i_uid_high) and in Linux
# the last second ext4 can store: signed 32-bit seconds plus two epoch bits (kernel
# ext4_encode_extra_time, Documentation/filesystems/ext4/inodes.rst), 2446-05-10 22:38:55 UTC
EPOCH_MAX = TIME_MAX


def epoch_problem(value: int) -> str | None:
    """Why `value` cannot be a build's epoch, or None. Checked once here, not per entry."""
    if value < 0:
        return f"{value} is before 1970"
    if value > EPOCH_MAX:
        return (f"{value} is after {EPOCH_MAX} (2446-05-10 22:38:55 UTC), the last second ext4 "
                "can store")
    return None


# outputs made by an external command: the loader checks it is there
_NEEDS_TOOL = {Output.ZST: tools.ZSTD}


def load_layout(path: Path) -> Layout:
    """Read and validate `path`; raise ComposerError(s) describing everything wrong with it."""
    data = _read_layout(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = data[: exc.start]
        line = raw.count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n") + 1) + 1
        raise ComposerError(f"the layout file is not UTF-8 (byte 0x{exc.object[exc.start]:02x})",
                            Loc(str(path), line, col),
                            hint="save the layout file as UTF-8") from None
    root = load_yaml(text, str(path))
    checker = _Checker(path)
    layout = checker.layout(root)
    raise_all(checker.errors)
    assert layout is not None
    return layout


def _read_layout(path: Path) -> bytes:
    """The file's bytes: a regular file of at most MAX_LAYOUT_BYTES (never /dev/zero, a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ComposerError(f"layout file {path} does not exist") from None
    except OSError as exc:
        raise ComposerError(f"cannot read layout file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ComposerError("the layout file is not a regular file", Loc(str(path)),
                                hint="give the path of a .yaml file")
        data = f.read(MAX_LAYOUT_BYTES + 1)
    if len(data) > MAX_LAYOUT_BYTES:
        raise ComposerError(f"the layout file is over {MAX_LAYOUT_BYTES} bytes, the limit",
                            Loc(str(path)), hint="a layout is a short file")
    return data


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.errors: list[ComposerError] = []
        self.source_names: set[str] = set()
        self.max_image = DEFAULT_MAX_IMAGE

    def fail(self, node: Node | Loc, path: str, message: str, hint: str | None = None) -> None:
        loc = node if isinstance(node, Loc) else node.loc
        self.errors.append(ComposerError(message, loc, hint, path=path))

    # --- structure -----------------------------------------------------------------------

    def fields(self, node: Node, path: str, allowed: Iterable[str],
               required: Iterable[str] = ()) -> dict[str, Node] | None:
        """The keys of a mapping, after rejecting unknown keys and reporting missing ones."""
        if not node.is_map:
            self.fail(node, path, f"expected a mapping, got {_kind(node)}")
            return None
        allowed = tuple(allowed)
        for key, value in node.value.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else \
                    f"valid keys here: {', '.join(allowed)}"
                self.fail(_key_loc(value, node, key), _join(path, key), f"unknown key {key!r}",
                          hint)
        for key in required:
            if key not in node.value:
                self.fail(node, path or "(top level)", f"missing required key {key!r}")
        return {k: v for k, v in node.value.items() if k in allowed}

    def string(self, node: Node | None, path: str, pattern: re.Pattern[str] | None = None,
               what: str = "", allow_nul: bool = False) -> str | None:
        if node is None:
            return None
        if not isinstance(node.value, str):
            self.fail(node, path, f"expected a string, got {_kind(node)}",
                      "quote the value" if node.value is not None else None)
            return None
        if not allow_nul and "\0" in node.value:
            self.fail(node, path, f"{node.value!r} contains a NUL character",
                      "names, paths, labels and link targets cannot hold NUL (\\0)")
            return None
        try:
            node.value.encode("utf-8")
        except UnicodeEncodeError as exc:
            self.fail(node, path, f"{node.value!r} is not valid Unicode (a lone surrogate "
                      f"{node.value[exc.start]!r})", "a \\uD800-\\uDFFF escape must be half of "
                      "a pair; write the character itself")
            return None
        if pattern is not None and not pattern.match(node.value):
            self.fail(node, path, f"{node.value!r} is not a valid {what}")
            return None
        return node.value

    def integer(self, node: Node | None, path: str, minimum: int = 0) -> int | None:
        if node is None:
            return None
        if isinstance(node.value, bool) or not isinstance(node.value, int):
            self.fail(node, path, f"expected an integer, got {_kind(node)}")
            return None
        if node.value < minimum:
            self.fail(node, path, f"{node.value} is below the minimum {minimum}")
            return None
        return int(node.value)

    def number(self, node: Node, path: str, low: float, high: float) -> float | None:
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            self.fail(node, path, f"expected a number, got {_kind(node)}")
            return None
        if not low <= node.value <= high:
            self.fail(node, path, f"{node.value} is outside {low:g}..{high:g}")
            return None
        return node.value

    def enum(self, node: Node | None, path: str, enum: type[E], default: E) -> E:
        if node is None:
            return default
        values = [e.value for e in enum]
        if isinstance(node.value, str) and node.value in values:
            return enum(node.value)
        close = difflib.get_close_matches(str(node.value), values, n=1)
        hint = f"did you mean {close[0]!r}?" if close else None
        self.fail(node, path, f"{node.value!r} is not one of {', '.join(values)}", hint)
        return default

    def size(self, node: Node, path: str, allow_auto: bool) -> int | None:
        if allow_auto and node.value == "auto":
            return None
        try:
            value = parse_size(node.value) if isinstance(node.value, str | int) else None
        except SizeError as exc:
            self.fail(node, path, str(exc), "sizes look like 64MiB, 512KiB, 1GiB or 'auto'")
            return None
        if value is None:
            self.fail(node, path, f"expected a size, got {_kind(node)}")
        elif value > HARD_MAX_IMAGE:
            self.fail(node, path, f"{node.value} is over {human_size(HARD_MAX_IMAGE)}, the "
                      "largest size composer accepts", "sizes look like 64MiB, 512KiB, 1GiB")
            return None
        return value

    def image_size(self, node: Node, path: str, value: int | None, limit: int) -> None:
        """A declared image size is work: SHA256SUMS reads every byte of it, holes included."""
        if value is not None and value > limit:
            self.fail(node, path, f"{node.value} is over {human_size(limit)}, the image size "
                      "bound (hashing it for SHA256SUMS reads every byte: about 1 s per GiB)",
                      f"if you mean it, set 'max_image_size: {human_size(value).replace(' ', '')}"
                      "' at the top of the layout")

    def mode(self, node: Node | None, path: str) -> int | None:
        if node is None:
            return None
        if not isinstance(node.value, str):
            written = f"{node.value:o}" if isinstance(node.value, int) else node.value
            self.fail(node, path, f"mode must be a quoted octal string, got {_kind(node)} "
                      f"{node.value!r}", f'write it as "0{written}" (YAML reads an unquoted '
                      f'0755 as the decimal number 493)' if isinstance(node.value, int) else
                      'write it as "0644"')
            return None
        if not _MODE.match(node.value):
            self.fail(node, path, f"{node.value!r} is not an octal mode", 'such as "0644"')
            return None
        return int(node.value, 8)

    def owner(self, node: Node | None, path: str) -> tuple[int, int] | None:
        if node is None:
            return None
        text = str(node.value) if isinstance(node.value, str | int) else ""
        match = re.fullmatch(r"([0-9]+):([0-9]+)", text)  # ASCII digits only, not \\d
        if not isinstance(node.value, str) or not match:
            self.fail(node, path, f"owner must be a quoted \"UID:GID\" string, got {node.value!r}",
                      'numeric ids, such as "998:998" (the names on the device may differ)')
            return None
        uid, gid = int(match.group(1)), int(match.group(2))
        if max(uid, gid) > ID_MAX:
            self.fail(node, path, f"owner {text} is over {ID_MAX}, the largest id",
                      "user and group ids are 32-bit numbers")
            return None
        return uid, gid

    def device_path(self, node: Node | None, path: str) -> str | None:
        text = self.string(node, path)
        if text is None:
            return None
        assert node is not None
        if not text.startswith("/"):
            self.fail(node, path, f"{text!r} is not an absolute path on the device",
                      f"write it as '/{text}'")
            return None
        if ".." in text.split("/"):
            self.fail(node, path, f"{text!r} contains '..'")
            return None
        return norm(text)

    def source_ref(self, node: Node | None, path: str) -> SourceRef | None:
        text = self.string(node, path)
        if text is None:
            return None
        assert node is not None
        name, sep, inner = text.partition(":")
        if not sep or not inner.startswith("/"):
            self.fail(node, path, f"{text!r} is not a source reference",
                      "write SOURCE:/path, such as golden:/greengrass/v2")
            return None
        if name not in self.source_names:
            close = difflib.get_close_matches(name, sorted(self.source_names), n=1)
            hint = f"did you mean {close[0]!r}?" if close else \
                "declare it under 'sources:'"
            self.fail(node, path, f"unknown source {name!r}", hint)
            return None
        return SourceRef(name, norm(inner), node.loc)

    def string_list(self, node: Node | None, path: str) -> tuple[str, ...]:
        if node is None:
            return ()
        if not node.is_list:
            self.fail(node, path, f"expected a list, got {_kind(node)}")
            return ()
        items = (self.string(item, f"{path}[{i}]") for i, item in enumerate(node.value))
        return tuple(item for item in items if item is not None)

    # --- sections ------------------------------------------------------------------------

    def layout(self, root: Node) -> Layout | None:
        top = self.fields(root, "", TOP_KEYS, required=required(Section.TOP))
        if top is None:
            return None
        version = self.integer(top.get("version"), "version")
        if version is not None and version != 1:
            self.fail(top["version"], "version", f"layout version {version} is not supported",
                      "this composer reads version 1")
        name = self.string(top.get("name"), "name", _NAME, "name (letters, digits, . _ -)")
        epoch = self.integer(top.get("epoch"), "epoch")
        if epoch is not None and epoch_problem(epoch):
            self.fail(top["epoch"], "epoch", f"epoch {epoch_problem(epoch)}",
                      "give seconds since 1970, such as 1718878001")
            epoch = None
        self.max_image = DEFAULT_MAX_IMAGE
        if "max_image_size" in top:
            self.max_image = self.size(top["max_image_size"], "max_image_size",
                                       allow_auto=False) or DEFAULT_MAX_IMAGE
        sources = self.sources(top.get("sources"))
        partitions = self.partitions(top.get("partitions"))
        greengrass = self.greengrass(top["greengrass"]) if "greengrass" in top else None
        systemd = self.systemd(top["systemd"]) if "systemd" in top else None
        docker = self.docker(top["docker"]) if "docker" in top else None
        files = self.files(top.get("files"))
        disk = self.disk(top["disk"]) if "disk" in top else None
        self.disk_partitions(partitions, "disk" in top, available=WRITERS)
        outputs = self.outputs(top.get("outputs"), has_disk="disk" in top)
        self.output_names(partitions, "disk" in top, outputs)
        personalize = self.personalize(top["personalize"], partitions, "greengrass" in top) \
            if "personalize" in top else None
        return Layout(self.path, version or 1, name or "", epoch, sources, tuple(partitions),
                      greengrass, systemd, docker, tuple(files), disk, outputs, self.max_image,
                      personalize)

    def disk_partitions(self, partitions: list[Partition], has_disk: bool,
                        available: Mapping[str, type[FsWriter]]) -> None:
        for part in partitions:
            if part.disk is None:
                continue
            assert part.disk.loc is not None
            path = f"partitions[{part.index}]"
            if not has_disk:
                self.fail(part.disk.loc, path, "type, offset, attributes, bootable and partuuid "
                          "only apply to partitions of a disk",
                          "add a 'disk:' section, or remove them")
            elif not available[part.fs].fixed_size:
                self.fail(part.disk.loc, path, f"a {part.fs} partition cannot be in a disk",
                          "a disk holds every partition with a file system image; remove the "
                          "disk keys from this one")

    def output_names(self, partitions: list[Partition], has_disk: bool,
                     outputs: tuple[Output, ...]) -> None:
        """Every output file name is known now; refuse reserved names and names that only
        differ in case (they collide on case-insensitive file systems a folder is copied to)."""
        seen: dict[str, tuple[str, str]] = {}
        for name in (disk_outputs(outputs) if has_disk else ()) + (MANIFEST, REPORT, SUMS):
            seen[name.casefold()] = (name, "the build itself")
        for part in partitions:
            path = f"partitions[{part.index}].name"
            if part.name.casefold() in {stem.casefold() for stem in RESERVED_STEMS}:
                self.fail(part.loc, path, f"partition name {part.name!r} is reserved",
                          f"composer names its own outputs {', '.join(RESERVED_STEMS)}.*; "
                          "choose another name")
                continue
            for name in partition_outputs(part, outputs):
                first = seen.get(name.casefold())
                if first is not None:
                    self.fail(part.loc, path, f"partition {part.name!r} would write {name}, "
                              f"which {first[1]} already writes as {first[0]}",
                              "output names must differ in more than letter case; rename "
                              "the partition")
                    break
                seen[name.casefold()] = (name, f"partition {part.name!r}")

    def outputs(self, node: Node | None, has_disk: bool) -> tuple[Output, ...]:
        result: list[Output] = []
        for i, name in enumerate(self.string_list(node, "outputs")):
            assert node is not None
            item = node.value[i]
            value = self.enum(item, f"outputs[{i}]", Output, Output.SIMG)
            if value.value != name:
                continue
            if value in result:
                self.fail(item, f"outputs[{i}]", f"{name!r} is listed twice")
            if value is Output.SFDISK and not has_disk:
                self.fail(item, f"outputs[{i}]", "an sfdisk script needs a 'disk:' section")
            tool = _NEEDS_TOOL.get(value)
            if tool is not None and tools.find(tool) is None:
                # checked here, so that validate fails too and build before writing anything
                self.fail(item, f"outputs[{i}]", f"{name} needs the `{tool.command}` command, "
                          "which is not on PATH", f"{tool.install_hint}, or drop {name}")
            result.append(value)
        return tuple(dict.fromkeys(result))

    def sources(self, node: Node | None) -> dict[str, Source]:
        result: dict[str, Source] = {}
        if node is None:
            return result
        if not node.is_map:
            self.fail(node, "sources", f"expected a mapping of name: path, got {_kind(node)}")
            return result
        for name, value in node.value.items():
            path = f"sources.{name}"
            if not _NAME.match(name):
                self.fail(value, path, f"{name!r} is not a valid source name",
                          "letters, digits, . _ - (and no ':')")
                continue
            text = self.string(value, path)
            self.source_names.add(name)
            if text is not None:
                result[name] = Source(name, (self.base / text).resolve(), value.loc)
        return result

    def partitions(self, node: Node | None) -> list[Partition]:
        if node is None:
            return []
        if not node.is_list or not node.value:
            self.fail(node, "partitions", "expected a non-empty list of partitions")
            return []
        available = WRITERS
        result: list[Partition] = []
        names: dict[str, Loc] = {}
        mounts: dict[str, Loc] = {}
        for index, item in enumerate(node.value):
            part = self.partition(item, f"partitions[{index}]", index, available)
            if part is None:
                continue
            for key, seen, value in (("name", names, part.name), ("mount", mounts, part.mount)):
                if value in seen:
                    self.fail(part.loc, f"partitions[{index}].{key}",
                              f"{key} {value!r} is already used at line {seen[value].line}")
                seen[value] = part.loc
            result.append(part)
        return result

    def partition(self, node: Node, path: str, index: int,
                  available: Mapping[str, type[FsWriter]]) -> Partition | None:
        fs_node = node.value.get("fs") if node.is_map else None
        fs = fs_node.value if fs_node is not None else None
        writer = available.get(fs) if isinstance(fs, str) else None
        # the options declared for this file system that its writer implements
        option_specs = {s.key: s for s in writer_settings(fs)
                        if writer is not None and s.key in writer.options}
        allowed = PARTITION_KEYS + DISK_PARTITION_KEYS + tuple(option_specs)
        raw = self.fields(node, path, allowed, required=required(Section.PARTITION))
        if raw is None:
            return None
        name = self.string(raw.get("name"), f"{path}.name", _NAME, "partition name")
        mount = self.device_path(raw.get("mount"), f"{path}.mount")
        if fs_node is not None and writer is None:
            self._unknown_fs(fs_node, f"{path}.fs", available)
        size: int | None = None
        if "size" in raw:
            size = self.size(raw["size"], f"{path}.size", allow_auto=True)
            if writer is not None and not writer.fixed_size and size is not None:
                self.fail(raw["size"], f"{path}.size", f"a {fs} partition has no size",
                          "remove 'size' (a tar archive is as big as its content)")
            elif size is not None and (size <= 0 or size % 4096):
                self.fail(raw["size"], f"{path}.size", f"{size} bytes is not a positive "
                          "multiple of 4 KiB", "file systems, bmap and sparse images count "
                          "4 KiB blocks; 1 MiB steps are best")
            else:
                self.image_size(raw["size"], f"{path}.size", size, self.max_image)
        label = self.string(raw.get("label"), f"{path}.label")
        pinned = self.uuid(raw.get("uuid"), f"{path}.uuid")
        options = {key: self.option(raw[key], f"{path}.{key}", spec)
                   for key, spec in option_specs.items() if key in raw}
        if "headroom" in raw and size is not None:
            self.fail(raw["headroom"], f"{path}.headroom", "headroom only applies to size: auto",
                      "remove headroom, or the fixed size")
        placement = self.placement(raw, path, node.loc)
        if name is None or mount is None or writer is None:
            return None
        return Partition(name, fs, size, mount, label, pinned, options, placement, node.loc,
                         index)

    def placement(self, raw: dict[str, Node], path: str, loc: Loc) -> DiskPlacement | None:
        keys = [k for k in DISK_PARTITION_KEYS if k in raw]
        if not keys:
            return None
        kind: str | int | None = None
        if "type" in raw:
            value = raw["type"].value
            if isinstance(value, bool) or not isinstance(value, str | int):
                self.fail(raw["type"], f"{path}.type", f"expected a type name, GUID or number, "
                          f"got {_kind(raw['type'])}")
            else:
                kind = value
        offset = self.size(raw["offset"], f"{path}.offset", allow_auto=False) \
            if "offset" in raw else None
        attributes = self.string_list(raw.get("attributes"), f"{path}.attributes")
        bootable: bool = default(Section.PARTITION_DISK, "bootable")
        if "bootable" in raw:
            if not isinstance(raw["bootable"].value, bool):
                self.fail(raw["bootable"], f"{path}.bootable", "expected true or false")
            else:
                bootable = raw["bootable"].value
        partuuid = self.uuid(raw.get("partuuid"), f"{path}.partuuid")
        return DiskPlacement(kind, offset, attributes, bootable, partuuid, raw[keys[0]].loc)

    def _unknown_fs(self, node: Node, path: str, available: Mapping[str, type[FsWriter]]) -> None:
        names = sorted(str(fs) for fs in available)  # the enum's values, not its members
        close = difflib.get_close_matches(str(node.value), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(names)}"
        self.fail(node, path, f"unknown file system {node.value!r}", hint)

    def uuid(self, node: Node | None, path: str) -> uuid.UUID | None:
        text = self.string(node, path)
        if text is None:
            return None
        try:
            return uuid.UUID(text)
        except ValueError:
            assert node is not None
            self.fail(node, path, f"{text!r} is not a UUID",
                      "such as 2f5a9c1e-7b44-4c1e-9d0a-3f1b6c8e2a10, or remove it to derive one")
            return None

    def option(self, node: Node, path: str, spec: Setting) -> Any:
        value: Any
        if spec.option is OptionType.INT:
            value = self.integer(node, path)
        elif spec.option is OptionType.STR:
            value = self.string(node, path)
        elif spec.option is OptionType.SIZE:
            value = self.size(node, path, allow_auto=False)
        elif spec.option is OptionType.SIZE_OR_NONE:
            value = "none" if node.value == "none" else self.size(node, path, allow_auto=False)
        elif spec.option is OptionType.PERCENT:
            value = self.number(node, path, 0, 50)
        else:
            value = self.uuid(node, path)
        if spec.choices and value is not None and value not in spec.choices:
            self.fail(node, path, f"{value!r} is not one of {', '.join(map(str, spec.choices))}",
                      f"{spec.help}")
        return value

    def greengrass(self, node: Node) -> Greengrass | None:
        path = "greengrass"
        raw = self.fields(node, path, keys(Section.GREENGRASS),
                          required=required(Section.GREENGRASS))
        if raw is None:
            return None
        src = self.source_ref(raw.get("from"), f"{path}.from")
        to = self.device_path(raw.get("to"), f"{path}.to") if "to" in raw else None
        keep = self.string_list(raw.get("keep"), f"{path}.keep")
        for i, item in enumerate(keep):
            if item not in KNOWN_DIRS:
                close = difflib.get_close_matches(item, KNOWN_DIRS, n=1)
                self.fail(raw["keep"].value[i], f"{path}.keep[{i}]",
                          f"{item!r} is not a Greengrass root directory",
                          f"did you mean {close[0]!r}?" if close else
                          f"one of: {', '.join(KNOWN_DIRS)}")
        secrets = self.enum(raw.get("secrets"), f"{path}.secrets", SecretsPolicy,
                            default(Section.GREENGRASS, "secrets"))
        identity = self.enum(raw.get("identity"), f"{path}.identity", IdentityPolicy,
                             default(Section.GREENGRASS, "identity"))
        if src is None:
            return None
        return Greengrass(src, to or src.path,
                          keep if "keep" in raw else default(Section.GREENGRASS, "keep"),
                          "keep" in raw, secrets, identity, node.loc)

    def systemd(self, node: Node) -> Systemd | None:
        raw = self.fields(node, "systemd", keys(Section.SYSTEMD),
                          required=required(Section.SYSTEMD))
        if raw is None:
            return None
        src = self.source_ref(raw.get("from"), "systemd.from")
        units = self.string_list(raw.get("units"), "systemd.units")
        for i, unit in enumerate(units):
            if "/" in unit or not re.match(r"^[\w@.:-]+\.(service|socket|timer|target|path|mount)$",
                                           unit):
                self.fail(raw["units"].value[i], f"systemd.units[{i}]",
                          f"{unit!r} is not a systemd unit file name", "such as greengrass.service")
        return Systemd(src, units, node.loc) if src is not None else None

    def docker(self, node: Node) -> Docker | None:
        raw = self.fields(node, "docker", keys(Section.DOCKER), required=required(Section.DOCKER))
        if raw is None:
            return None
        src = self.source_ref(raw.get("from"), "docker.from")
        default_to: str = default(Section.DOCKER, "to")
        to = self.device_path(raw.get("to"), "docker.to") if "to" in raw else default_to
        keep = self.string_list(raw.get("keep"), "docker.keep")
        images = self.docker_images(raw.get("images"))
        if "from" not in raw and "images" not in raw:
            self.fail(node, "docker", "nothing to install: give `from` (a snapshot's store), "
                      "`images` (image archives) or both")
        if src is None and not images:
            return None
        return Docker(src, to or default_to, keep, node.loc, images)

    def docker_images(self, node: Node | None) -> tuple[DockerImage, ...]:
        if node is None:
            return ()
        if not node.is_list or not node.value:
            self.fail(node, "docker.images", "expected a non-empty list of image archives")
            return ()
        images = []
        for i, item in enumerate(node.value):
            path = f"docker.images[{i}]"
            raw = self.fields(item, path, keys(Section.DOCKER_IMAGES),
                              required=required(Section.DOCKER_IMAGES))
            if raw is None:
                continue
            archive = self.string(raw.get("archive"), f"{path}.archive")
            tags = self.string_list(raw.get("tags"), f"{path}.tags")
            tag_nodes = raw["tags"].value if tags else []
            for t, tag_node in enumerate(tag_nodes):
                try:
                    if isinstance(tag_node.value, str):
                        familiar(tag_node.value)
                except BadReference as exc:
                    self.fail(tag_node, f"{path}.tags[{t}]", str(exc),
                              "such as app:1.0 or registry.example.com/team/app:1.0")
            platform = self.string(raw.get("platform"), f"{path}.platform", _PLATFORM,
                                   "platform (os/arch[/variant], such as linux/arm64)")
            if archive is not None:
                images.append(DockerImage((self.base / archive).resolve(), tags, platform,
                                          item.loc))
        return tuple(images)

    def personalize(self, node: Node, partitions: list[Partition],
                    has_greengrass: bool) -> Personalize | None:
        raw = self.fields(node, "personalize", keys(Section.PERSONALIZE))
        if raw is None:
            return None
        vary: list[Vary] = []
        if "vary" in raw and not raw["vary"].is_list:
            self.fail(raw["vary"], "personalize.vary", f"expected a list, got {_kind(raw['vary'])}")
        elif "vary" in raw:
            for i, item in enumerate(raw["vary"].value):
                value = self.enum(item, f"personalize.vary[{i}]", Vary, Vary.THING_NAME)
                if value.value == item.value and value not in vary:
                    vary.append(value)
        if not has_greengrass:
            self.fail(node, "personalize", "personalize needs a greengrass: section",
                      "a device's identity is written into the Greengrass configuration")
        by_name = {p.name: p for p in partitions}
        uuids = self.string_list(raw.get("uuids"), "personalize.uuids")
        for i, name in enumerate(uuids):
            part = by_name.get(name)
            if part is None or part.fs != "ext4":
                close = difflib.get_close_matches(name, list(by_name), n=1)
                self.fail(raw["uuids"].value[i], f"personalize.uuids[{i}]",
                          f"{name!r} is not an ext4 partition of this layout",
                          f"did you mean {close[0]!r}?" if close and close[0] != name else
                          "name an ext4 partition (vfat and tar have no UUID to vary)")
            elif part.uuid is not None:
                self.fail(raw["uuids"].value[i], f"personalize.uuids[{i}]",
                          f"partition {name!r} pins its uuid, so it cannot vary per device",
                          "remove the partition's uuid: or this entry")
        slack = default(Section.PERSONALIZE, "slack")
        if "slack" in raw:
            slack = self.size(raw["slack"], "personalize.slack", allow_auto=False)
            if slack is not None and slack > MiB:
                self.fail(raw["slack"], "personalize.slack", "slack is over 1MiB",
                          "a device's configuration lines take a few KiB")
        return Personalize(tuple(vary) if "vary" in raw else default(Section.PERSONALIZE,
                                                                     "vary"),
                           uuids, slack if slack is not None else 0, node.loc)

    def files(self, node: Node | None) -> list[FileRule]:
        if node is None:
            return []
        if not node.is_list:
            self.fail(node, "files", f"expected a list, got {_kind(node)}")
            return []
        rules = (self.file_rule(item, f"files[{i}]") for i, item in enumerate(node.value))
        return [rule for rule in rules if rule is not None]

    def file_rule(self, node: Node, path: str) -> FileRule | None:
        raw = self.fields(node, path, keys(Section.FILES), required=required(Section.FILES))
        if raw is None:
            return None
        actions = [key for key in ("from", "content", "dir", "symlink") if key in raw]
        if len(actions) != 1:
            self.fail(node, path, "an entry needs exactly one of from, content, dir, symlink"
                      + (f" (it has {', '.join(actions)})" if actions else ""))
            return None
        to = self.device_path(raw.get("to"), f"{path}.to")
        mode = self.mode(raw.get("mode"), f"{path}.mode")
        owner = self.owner(raw.get("owner"), f"{path}.owner")
        if "exclude" in raw and actions[0] != "from":
            self.fail(raw["exclude"], f"{path}.exclude", "'exclude' only applies to 'from'")
        common: dict[str, Any] = {"mode": mode, "owner": owner}
        rule: FileRule | None = None
        if actions[0] == "from":
            src = self.source_ref(raw["from"], f"{path}.from")
            exclude = self.string_list(raw.get("exclude"), f"{path}.exclude")
            if src is not None and to is not None:
                rule = FileRule(FileAction.COPY, to, node.loc, src=src, exclude=exclude, **common)
        elif actions[0] == "content":
            text = self.string(raw["content"], f"{path}.content", allow_nul=True)
            if text is not None and to is not None:
                rule = FileRule(FileAction.CONTENT, to, node.loc, content=text.encode(), **common)
        elif actions[0] == "dir":
            if raw["dir"].value is not True:
                self.fail(raw["dir"], f"{path}.dir", "'dir' must be true")
            elif to is not None:
                rule = FileRule(FileAction.DIR, to, node.loc, **common)
        else:
            target = self.string(raw["symlink"], f"{path}.symlink")
            if target is not None and to is not None:
                rule = FileRule(FileAction.SYMLINK, to, node.loc, symlink=target, **common)
        return rule

    def disk(self, node: Node) -> Disk | None:
        raw = self.fields(node, "disk", DISK_KEYS)
        if raw is None:
            return None
        table = self.enum(raw.get("table"), "disk.table", TableType, default(Section.DISK, "table"))
        default_align: int = default(Section.DISK, "align")
        align = self.size(raw["align"], "disk.align", allow_auto=False) if "align" in raw \
            else default_align
        if align is not None and (align <= 0 or align % 4096):
            self.fail(raw["align"], "disk.align", f"alignment {align} is not a positive "
                      "multiple of 4 KiB", "1MiB suits every flash medium")
        elif align is not None and align > MAX_ALIGN:
            self.fail(raw["align"], "disk.align", f"alignment {raw['align'].value} is over "
                      f"{human_size(MAX_ALIGN)}, the limit", "1MiB suits every flash medium")
            align = None
        size = self.size(raw["size"], "disk.size", allow_auto=True) if "size" in raw else None
        if size is not None and (size <= 0 or size % 4096):
            self.fail(raw["size"], "disk.size", f"{size} bytes is not a positive multiple of "
                      "4 KiB", "bmap and sparse images count 4 KiB blocks; 1 MiB steps are best")
        elif size is not None:
            self.image_size(raw["size"], "disk.size", size, self.max_image)
        guid = self.uuid(raw.get("guid"), "disk.guid")
        signature = None
        if "signature" in raw:
            text = self.string(raw["signature"], "disk.signature")
            if text is not None and re.fullmatch(r"(0[xX])?[0-9a-fA-F]{1,8}", text):
                signature = int(text, 16)
            elif text is not None:
                self.fail(raw["signature"], "disk.signature", f"{text!r} is not 32-bit "
                          "hexadecimal", 'write it as "0x1a2b3c4d"')
        entry_lba = self.integer(raw.get("entry_lba"), "disk.entry_lba", minimum=2)
        blobs = self.raw_blobs(raw.get("raw"))
        if table is TableType.MBR:
            for key in ("guid", "entry_lba"):
                if key in raw:
                    self.fail(raw[key], f"disk.{key}", f"{key!r} is for GPT disks, not MBR")
        elif "signature" in raw:
            self.fail(raw["signature"], "disk.signature", "'signature' is for MBR disks",
                      "a GPT disk is named by 'guid'")
        return Disk(table, align or default_align, size, guid, signature, entry_lba, blobs,
                    node.loc)

    def raw_blobs(self, node: Node | None) -> tuple[RawBlob, ...]:
        if node is None:
            return ()
        if not node.is_list:
            self.fail(node, "disk.raw", f"expected a list, got {_kind(node)}")
            return ()
        blobs = []
        for i, item in enumerate(node.value):
            path = f"disk.raw[{i}]"
            raw = self.fields(item, path, keys(Section.DISK_RAW),
                              required=required(Section.DISK_RAW))
            if raw is None or "from" not in raw or "offset" not in raw:
                continue
            src = self.source_ref(raw["from"], f"{path}.from")
            offset = self.size(raw["offset"], f"{path}.offset", allow_auto=False)
            if src is not None and offset is not None:
                blobs.append(RawBlob(src, offset, item.loc))
        return tuple(blobs)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _key_loc(value: Node, parent: Node, key: str) -> Loc:
    return parent.key_locs[key] if parent.key_locs and key in parent.key_locs else value.loc


def _kind(node: Node) -> str:
    value = node.value
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return {int: "an integer", float: "a number", str: "a string"}.get(type(value),
                                                                      type(value).__name__)
