"""A device's changed blocks computed from the golden plan, without building its images.

The golden plan keeps room for everything a device changes (composer/rules/personal.py): its
configuration files and identity files go into reserved inodes and blocks, and its ext4 UUID
touches only the superblocks (metadata_csum_seed). So a device's ext4 image differs from the
golden one only in those inodes, their blocks, the parent folder of a new file, the bitmaps,
group descriptors and superblocks, and the journal superblock. `GoldenDelta` plans once what
every device shares; `GoldenDelta.device` then replans only the changed inodes
(composer.fs.ext4.planner.replan), has the ext4 writer pack only those structures
(composer.fs.ext4.writer.write_delta) over the golden image's bytes, and keeps the 4 KiB
blocks whose bytes differ. The writer's own packing functions make every byte, so the blocks
are those a complete build of the device writes.

When a device does not fit that shortcut (a file outgrows its room, a value lands on another
partition, a new file's folder needs another block, a YAML edit the fast path cannot make),
`device` returns the reason and the caller builds that device's images the exact, slow way.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from composer.build import COMPOSER_NS, Assembled, Plan
from composer.check.planted import ENV as PLANTED_ENV
from composer.fs.base import WriteRequest
from composer.fs.ext4 import Ext4Writer
from composer.fs.ext4.planner import Numbered, replan
from composer.fs.ext4.planner import Plan as Ext4Plan
from composer.fs.ext4.writer import block_map, write_delta
from composer.personalize.device import ConfigPath, config_bytes, device_inputs, device_uuids
from composer.personalize.patch import BLOCK, BlockRanges, GoldenBlocks
from composer.personalize.records import Device
from composer.route import owner_of
from composer.rules.greengrass import EFFECTIVE, INIT_CONFIGS, TLOGS
from composer.rules.personal import golden_config, identity_paths
from composer.rules.yamlcut import YamlCutError
from composer.tree import Content, Entry, Kind, relative


@dataclass(frozen=True, slots=True)
class _Ext4Golden:
    """One golden ext4 partition a device may change."""

    request: WriteRequest
    plan: Ext4Plan
    numbered: Numbered
    image: Path


@dataclass(frozen=True, slots=True)
class ImageDelta:
    """A device's changed 4 KiB blocks of one partition image, and its block map."""

    image: str
    blocks: Mapping[int, bytes]
    device_map: BlockRanges


@dataclass(frozen=True, slots=True)
class DeviceDelta:
    images: tuple[ImageDelta, ...]  # the partitions that differ from golden (others do not)
    table: list[tuple[int, bytes]]  # the device's partition table: (disk offset, bytes)
    keys: tuple[str, ...]
    files: tuple[str, ...]


class GoldenDelta:
    """What every device's delta is made from: the golden plan and its images, opened once."""

    def __init__(self, done: Assembled, base: Plan, parts: Mapping[str, _Ext4Golden],
                 configs: tuple[tuple[str, Entry, bytes], ...],
                 paths: Mapping[ConfigPath, str]) -> None:
        self.done = done
        self.base = base
        self.parts = parts
        self.configs = configs  # (file name, golden entry, golden bytes)
        self.paths = paths
        self.blocks = GoldenBlocks()  # the golden images' bytes, read once per run

    @staticmethod
    def open(done: Assembled, base: Plan, folder: Path) -> GoldenDelta | str:
        """The golden side, or why no device of this build can take the shortcut."""
        layout = done.layout
        if layout.personalize is None or layout.greengrass is None:
            return "the layout has no personalize: or greengrass: section"
        if os.environ.get(PLANTED_ENV):
            return f"{PLANTED_ENV} is set"
        parts: dict[str, _Ext4Golden] = {}
        for part in base.partitions:
            if isinstance(part.writer, Ext4Writer) and part.request.reserve is not None:
                request = replace(part.request, size=part.size)  # as the image was written
                plan, numbered = part.writer.planned(request)
                parts[part.name] = _Ext4Golden(request, plan, numbered,
                                               folder / f"{part.name}.img")
        for name in layout.personalize.uuids:
            golden = parts.get(name)
            if golden is None or golden.request.reserve is None or \
                    golden.request.reserve.seed_uuid is None:
                return f"partition {name!r} of personalize.uuids is not ext4 with room"
        root = layout.greengrass.to
        asm = done.asm
        configs = []
        for name in TLOGS + EFFECTIVE + INIT_CONFIGS:
            entry = asm.tree.get(posixpath.join(root, "config", name))
            if entry is not None and entry.kind is Kind.FILE and entry.content is not None:
                configs.append((name, entry, asm.read_small([entry.content])[entry.content]))
        paths = identity_paths(golden_config(asm, root), root)
        return GoldenDelta(done, base, parts, tuple(configs), paths)

    def close(self) -> None:
        self.blocks.close()

    def device(self, device: Device, extra: Mapping[ConfigPath, Any]) -> DeviceDelta | str:
        """The device's changed blocks, or why they cannot be found this way."""
        done = self.done
        layout = done.layout
        inputs = device_inputs(device, layout, COMPOSER_NS, self.paths)
        values = {**inputs.values, **extra}
        files: dict[str, Entry] = {}
        for name, entry, data in self.configs:
            try:
                new = config_bytes(name, data, values)
            except (YamlCutError, yaml.YAMLError, UnicodeDecodeError):
                return f"{entry.path} cannot be edited in place"
            files[entry.path] = replace(entry, content=Content.of_bytes(new))
        for file in inputs.files:
            if done.asm.tree.get(file.path) is not None:
                return f"{file.path} is in the golden tree"
            files[file.path] = Entry(file.path, Kind.FILE, file.mode, 0, 0, done.asm.epoch_ns,
                                     Content.of_bytes(file.data))
        by_part: dict[str, dict[str, Entry]] = {}
        for path, entry in files.items():
            owner = owner_of(path, layout.partitions)
            if owner is None or owner.name not in self.parts:
                return f"{path} is not on an ext4 partition with room"
            rel = relative(path, owner.mount)
            by_part.setdefault(owner.name, {})[rel] = entry.moved(rel)
        fs_uuids, _ = device_uuids(device, layout, COMPOSER_NS)
        images = []
        for name in sorted(set(by_part) | set(fs_uuids)):
            image = self._image(self.parts[name], by_part.get(name, {}), fs_uuids.get(name))
            if isinstance(image, str):
                return image
            images.append(image)
        table = self._table(device)
        return DeviceDelta(tuple(images), table,
                           tuple(".".join(path) for path in values),
                           tuple(f"{f.path} ({f.mode:04o})" for f in inputs.files))

    def _image(self, golden: _Ext4Golden, files: Mapping[str, Entry],
               fs_uuid: uuid.UUID | None) -> ImageDelta | str:
        planned = replan(golden.plan, golden.numbered, files)
        if planned is None:
            return f"the device's files do not fit the room kept in {golden.image.name}"
        request = golden.request if fs_uuid is None else replace(golden.request, uuid=fs_uuid)
        pieces = write_delta(request, planned.plan, planned.changed, planned.freed)
        device_map = tuple((off // BLOCK, (off + n - 1) // BLOCK)
                           for off, n in block_map(planned.plan))
        return ImageDelta(golden.image.name, self._changed_blocks(golden.image, pieces),
                          device_map)

    def _changed_blocks(self, image: Path, pieces: list[tuple[int, bytes]]) -> dict[int, bytes]:
        """The pieces laid over the golden image's blocks: the blocks whose bytes differ."""
        blocks: dict[int, bytearray] = {}
        for offset, data in pieces:
            end = offset + len(data)
            for block in range(offset // BLOCK, (end - 1) // BLOCK + 1):
                current = blocks.get(block)
                if current is None:
                    current = blocks[block] = bytearray(self.blocks.read(image, block))
                lo, hi = max(offset, block * BLOCK), min(end, (block + 1) * BLOCK)
                current[lo - block * BLOCK:hi - block * BLOCK] = data[lo - offset:hi - offset]
        return {block: bytes(data) for block, data in sorted(blocks.items())
                if data != self.blocks.read(image, block)}

    def _table(self, device: Device) -> list[tuple[int, bytes]]:
        """The device's partition table bytes (its GPT partition GUIDs)."""
        layout = self.done.layout
        if layout.disk is None or self.base.disk is None:
            return []
        _, part_uuids = device_uuids(device, layout, COMPOSER_NS)
        if not part_uuids:
            return self.base.disk.plan.table_bytes()
        from composer.disk.compose import plan_layout_disk  # noqa: PLC0415 - only with a disk
        from composer.layout.model import DiskPlacement  # noqa: PLC0415
        parts = []
        for part in layout.partitions:
            if part.name in part_uuids:
                placement = part.disk or DiskPlacement()
                part = replace(part, disk=replace(placement, partuuid=part_uuids[part.name]))
            parts.append(part)
        sizes = {p.name: p.size for p in self.base.partitions if p.size is not None}
        disk = plan_layout_disk(layout.disk, parts, sizes, self.done.scanned, layout.name,
                                COMPOSER_NS, max_size=layout.max_image_size)
        return disk.plan.table_bytes()
