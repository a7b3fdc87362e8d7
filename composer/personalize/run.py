"""`compose personalize BUILD_DIR --devices FILE -o OUT`: per device, a complete build with that
device's inputs (composer.personalize.device.Tailor on the golden layout and sources) and the
patch of every image against the golden build (composer.personalize.patch).

Every device record is checked, and OUT checked for collisions, before anything is written. The
golden build must come from this layout and these sources: the layout's sha256 is compared
before, each device build's source digests after, with the golden manifest's provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.build import COMPOSER_NS, Events, build, plan
from composer.check.provenance import layout_sha256
from composer.check.verify import load_manifest
from composer.errors import ComposerError
from composer.layout.load import load_layout
from composer.outputs.bmap_reader import read_bmap
from composer.outputs.manifest import EpochOrigin, Manifest
from composer.personalize.device import ConfigPath, Tailor
from composer.personalize.patch import BLOCK, BlockRanges, PatchHeader, make_patch
from composer.personalize.records import Device, load_devices

RUN_MANIFEST = "personalize.json"
ExtraValues = Callable[[Device], Mapping[ConfigPath, Any]]


@dataclass(frozen=True, slots=True)
class PatchFile:
    image: str
    file: str  # relative to OUT
    sha256: str
    runs: int
    blocks: int


@dataclass(frozen=True, slots=True)
class DeviceResult:
    device: str
    patches: tuple[PatchFile, ...]
    full: str | None  # the complete build's folder, relative to OUT


@dataclass(frozen=True, slots=True)
class Golden:
    folder: Path
    layout: Path
    manifest: Manifest

    def images(self) -> dict[str, str]:
        """Image file name -> golden sha256, for the raw images (tar partitions are not
        block devices: a device build's tar is in its full build only)."""
        found = {p.image: p.sha256 for p in self.manifest.partitions.values()
                 if p.image.endswith(".img")}
        disk = self.manifest.disk
        if disk is not None and disk.image is not None and disk.sha256 is not None:
            found[disk.image] = disk.sha256
        return found


def open_golden(folder: Path, layout: Path | None) -> Golden:
    manifest = load_manifest(folder)
    prov = manifest.provenance
    if prov is None:
        raise ComposerError(f"{folder}/manifest.json records no provenance",
                            hint="build the golden image again with this composer")
    layout = layout if layout is not None else Path(prov.layout_file)
    if not layout.is_file():
        raise ComposerError(f"the golden build used the layout {prov.layout_file!r}; {layout} "
                            "is not a file", hint="give the layout's path with --layout")
    if layout_sha256(layout) != prov.layout_sha256:
        raise ComposerError(f"{layout} is not the layout {folder} was built from (sha256 "
                            f"{layout_sha256(layout)}, the build's {prov.layout_sha256})",
                            hint="personalize the build of this layout, or build it again")
    return Golden(folder, layout, manifest)


def personalize(golden: Golden, devices_file: Path, out: Path, full: bool,
                extra_values: ExtraValues | None = None,
                events: Events | None = None) -> list[DeviceResult]:
    layout = load_layout(golden.layout)
    if layout.personalize is None:
        raise ComposerError(f"{golden.layout} has no personalize: section",
                            hint="declare what may vary per device (README \"Personalizing "
                            "devices\") and build the golden image again")
    devices = load_devices(devices_file, layout.personalize)
    taken = [d.id for d in devices if (out / d.id).exists()]
    if taken:
        raise ComposerError(f"{out / taken[0]} exists already; nothing was written",
                            hint="personalize into a new folder, or remove the old outputs")
    if (out / RUN_MANIFEST).exists():
        raise ComposerError(f"{out / RUN_MANIFEST} exists already; nothing was written",
                            hint="personalize into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for device in devices:
            extra = extra_values(device) if extra_values is not None else {}
            results.append(_one(golden, device, out, full, extra, events))
    finally:
        _write_run_manifest(out, golden, results)
    return results


def _one(golden: Golden, device: Device, out: Path, full: bool,
         extra: Mapping[ConfigPath, Any], events: Events | None) -> DeviceResult:
    folder = out / device.id
    folder.mkdir(mode=0o700)
    built = folder / "full"
    try:
        prov = golden.manifest.provenance
        assert prov is not None
        the_plan = plan(golden.layout, golden.manifest.epoch, events,
                        EpochOrigin(prov.epoch_origin),
                        tailor=Tailor(device, COMPOSER_NS, extra, images_only=not full))
        result = build(the_plan, built, events)
        _same_sources(golden, result.manifest)
        device_images = _image_digests(result.manifest)
        patches = []
        for image, golden_sha in sorted(golden.images().items()):
            name = f"{image}.patch"
            header = make_patch(golden.folder / image, built / image, folder / name, device.id,
                                golden_sha, device_images[image],
                                block_map(golden.folder / image), block_map(built / image))
            patches.append(_patch_file(folder / name, f"{device.id}/{name}", header))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if full:
        _private(built)
    else:
        shutil.rmtree(built)
    return DeviceResult(device.id, tuple(patches), f"{device.id}/full" if full else None)


def block_map(image: Path) -> BlockRanges:
    """The 4 KiB block ranges the image's .bmap maps (what bmaptool writes when flashing)."""
    bmap = read_bmap(image.with_suffix(".bmap"))
    if bmap.block_size != BLOCK:
        raise ComposerError(f"{image.with_suffix('.bmap')} has {bmap.block_size}-byte blocks, "
                            f"not {BLOCK}", hint="build the golden image again")
    return tuple((r.first, r.last) for r in bmap.ranges)


def _same_sources(golden: Golden, device: Manifest) -> None:
    before = golden.manifest.provenance
    after = device.provenance
    assert before is not None and after is not None
    for name, record in sorted(before.sources.items()):
        now = after.sources.get(name)
        if now != record:
            raise ComposerError(f"source {name!r} is not the input the golden build used (tree "
                                f"digest {now.tree_sha256 if now else 'missing'}, the golden "
                                f"build's {record.tree_sha256})",
                                hint="personalize with the sources the golden image was built "
                                "from, or build the golden image again")


def _image_digests(manifest: Manifest) -> dict[str, str]:
    found = {p.image: p.sha256 for p in manifest.partitions.values()}
    if manifest.disk is not None and manifest.disk.image and manifest.disk.sha256:
        found[manifest.disk.image] = manifest.disk.sha256
    return found


def _patch_file(path: Path, rel: str, header: PatchHeader) -> PatchFile:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return PatchFile(header.image, rel, digest.hexdigest(), len(header.runs),
                     sum(r.count for r in header.runs))


def _private(folder: Path) -> None:
    """A device's outputs hold its private key: readable by the owner only."""
    for dirpath, _dirs, filenames in os.walk(folder):
        os.chmod(dirpath, 0o700)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def _write_run_manifest(out: Path, golden: Golden, results: list[DeviceResult]) -> None:
    obj = {"format": 1, "golden": {name: sha for name, sha in sorted(golden.images().items())},
           "devices": [{"id": r.device, "full": r.full,
                        "patches": [{"image": p.image, "file": p.file, "sha256": p.sha256,
                                     "runs": p.runs, "blocks": p.blocks} for p in r.patches]}
                       for r in results]}
    tmp = out / f".{RUN_MANIFEST}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / RUN_MANIFEST)

