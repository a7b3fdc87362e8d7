"""`compose personalize BUILD_DIR --devices FILE -o OUT`: per device, a complete build with that
device's inputs (composer.personalize.device.Tailor on the golden layout and sources) and the
patch of every image against the golden build (composer.personalize.patch).

Every device record is checked, and OUT checked for collisions, before anything is written. The
golden build must come from this layout and these sources: the layout's sha256 is compared
before, each device build's source digests after, with the golden manifest's provenance.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import glob
import hashlib
import heapq
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from composer.build import (
    COMPOSER_NS,
    Assembled,
    Events,
    Plan,
    assemble,
    build,
    plan_assembled,
)
from composer.check.provenance import layout_sha256
from composer.check.reproduce import check_inputs
from composer.check.verify import load_manifest
from composer.errors import ComposerError, raise_all
from composer.layout.load import load_layout
from composer.outputs.bmap_reader import read_bmap
from composer.outputs.manifest import EpochOrigin, Manifest
from composer.parallel import Forked, can_fork
from composer.personalize.delta import DeviceDelta, GoldenDelta
from composer.personalize.device import ConfigPath, Tailor
from composer.personalize.patch import (
    BLOCK,
    BlockRanges,
    GoldenBlocks,
    PatchHeader,
    make_patch,
    patch_runs,
    write_patch,
    write_patch_sha,
)
from composer.personalize.records import Device, check_devices, iter_devices
from composer.personalize.secrets import LineSecrets, PlaintextSecret
from composer.rules.personal import golden_config

RUN_MANIFEST = "personalize.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Shard:
    """Share K of N (1-based) of a device list: a device belongs to the share its id hashes to,
    `int(sha256(id)[:8 bytes], big-endian) % N == K - 1`, whatever the order of the records,
    so N independent jobs with the same records do every device once."""

    k: int
    n: int

    def holds(self, device_id: str) -> bool:
        digest = hashlib.sha256(device_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.n == self.k - 1

    @property
    def manifest(self) -> str:
        return f"personalize.shard-{self.k}-of-{self.n}.json"
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
    keys: tuple[str, ...] = ()  # the configuration keys set (never their values)
    files: tuple[str, ...] = ()  # the identity files written, with their modes
    rebuilt: str | None = None  # why the images were built rather than patched from golden

    def to_json(self) -> dict[str, Any]:
        """The device's entry of the run manifest."""
        return {"id": self.device, "full": self.full, "set": list(self.keys),
                "files": list(self.files), "rebuilt": self.rebuilt,
                "patches": [{"image": p.image, "file": p.file, "sha256": p.sha256,
                             "runs": p.runs, "blocks": p.blocks} for p in self.patches]}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> DeviceResult:
        return DeviceResult(obj["id"], tuple(PatchFile(**p) for p in obj["patches"]),
                            obj["full"], tuple(obj["set"]), tuple(obj["files"]), obj["rebuilt"])


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


@dataclass(frozen=True, slots=True)
class RunSummary:
    devices: int  # the devices done, as the run manifest lists them
    rebuilt: int  # of them, those whose images were built rather than patched from golden
    manifest: Path


OnResult = Callable[[DeviceResult], None]


def personalize(golden: Golden, devices_file: Path, out: Path, full: bool,
                extra_values: ExtraValues | None = None,
                events: Events | None = None, shard: Shard | None = None,
                secrets: tuple[PlaintextSecret, ...] | None = None,
                jobs: int = 1, on_result: OnResult | None = None) -> RunSummary:
    """Every device of the records (of `shard`'s share): patches in OUT/ID/, a complete build
    in OUT/ID/full/ with `full`, and the run's manifest; `on_result` sees each device's result
    in the records' order once all are done. All records are checked first; with `secrets`,
    each device also gets SecretManager's store made for its certificate. Whatever the number
    of devices, only one device's data is in memory at a time (per job): the records are read
    again as the devices are made, and results go through files in OUT to the manifest."""
    layout = load_layout(golden.layout)
    if layout.personalize is None:
        raise ComposerError(f"{golden.layout} has no personalize: section",
                            hint="declare what may vary per device (README \"Personalizing "
                            "devices\") and build the golden image again")
    spec = layout.personalize
    manifest = shard.manifest if shard is not None else RUN_MANIFEST
    taken: list[str] = []

    def check(device: Device) -> None:
        if (shard is None or shard.holds(device.id)) and not taken and \
                (out / device.id).exists():
            taken.append(device.id)

    check_devices(devices_file, spec, check)  # all of them: duplicates too

    def records() -> Iterator[Device]:
        return (d for d in iter_devices(devices_file, spec) if shard is None or shard.holds(d.id))

    if taken:
        raise ComposerError(f"{out / taken[0]} exists already; nothing was written",
                            hint="personalize into a new folder, or remove the old outputs")
    if (out / manifest).exists():
        raise ComposerError(f"{out / manifest} exists already; nothing was written",
                            hint="personalize into a new folder")
    prov = golden.manifest.provenance
    assert prov is not None
    started = time.monotonic()
    check_inputs(golden.manifest, golden.layout)  # the sources are those the golden build read
    done = assemble(golden.layout, golden.manifest.epoch, events,
                    EpochOrigin(prov.epoch_origin))
    base = None if full else plan_assembled(done)
    if secrets is not None:
        extra_values = _with_secrets(extra_values, _line_secrets(secrets, done, records()))
    out.mkdir(parents=True, exist_ok=True)
    spill = _Spill(out, manifest)
    fast = None
    ready = time.monotonic()
    try:  # from here on, however the run ends, the manifest lists what is in OUT
        block_map.cache_clear()  # the golden build may have been made again since the last run
        fast = _open_fast(done, base, golden)
        # what every device shares is made: the cycle collector need not rescan it for each
        # device, and forked processes then leave its memory pages shared
        gc.freeze()
        maker = _Maker(golden, done, base, fast, extra_values, events, out)
        ready = time.monotonic()
        log.debug("golden ready in %.3f s (sources checked, tree assembled, plan made)",
                  ready - started)
        # --full builds write a device's partitions in forked processes already
        if jobs > 1 and base is not None and can_fork():
            _forked(maker, records, jobs, spill)
        else:
            _make_share(maker, records(), 0, 1, spill)
    finally:
        if fast is not None:
            fast.close()
        count, rebuilt = _write_run_manifest(out / manifest, golden, spill.merged(), on_result)
        spill.remove()
    log.debug("%d devices in %.3f s, %d of them built in full", count,
              time.monotonic() - ready, rebuilt)
    return RunSummary(count, rebuilt, out / manifest)


def _open_fast(done: Assembled, base: Plan | None, golden: Golden) -> GoldenDelta | None:
    if base is None:
        return None
    opened = GoldenDelta.open(done, base, golden.folder)
    if isinstance(opened, str):
        log.info("every device's images are built in full: %s", opened)
        return None
    return opened


@dataclass(frozen=True, slots=True)
class _Maker:
    """Makes one device's outputs: its changed blocks straight from the golden plan when they
    fit the room it keeps (`fast`), else its images built and diffed (or kept, with --full)."""

    golden: Golden
    done: Assembled
    base: Plan | None
    fast: GoldenDelta | None
    extra_values: ExtraValues | None
    events: Events | None
    out: Path

    def one(self, device: Device) -> DeviceResult:
        extra = self.extra_values(device) if self.extra_values is not None else {}
        folder = self.out / device.id
        folder.mkdir(mode=0o700)
        try:
            why = None if self.base is None else "the golden build allows no shortcut"
            if self.fast is not None:
                delta = self.fast.device(device, extra)
                if not isinstance(delta, str):
                    return _from_delta(self.golden, device, self.base, delta, folder,
                                       self.fast.blocks)
                why = delta
                log.info("device %s is built in full: %s", device.id, why)
            tailor = Tailor(device, COMPOSER_NS, extra, images_only=self.base is not None)
            the_plan = plan_assembled(self.done, tailor, self.events, like=self.base)
            if self.base is None:
                result = _full(self.golden, device, the_plan, folder, self.events)
            else:
                result = _lean(self.golden, device, the_plan, self.base, folder)
            return replace(result, rebuilt=why, **_what_was_set(tailor))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise


def _forked(maker: _Maker, records: Callable[[], Iterator[Device]], jobs: int,
            spill: _Spill) -> None:
    """The devices dealt round-robin to `jobs` forked processes (the golden plan is already in
    their memory; each reads the records itself). Whatever fails, the folders of devices
    without a result are removed, so OUT holds exactly what the run manifest lists."""
    children = [Forked(lambda k=k: _make_share(maker, records(), k, jobs, spill),
                       f"personalizing process {k + 1} of {jobs}") for k in range(jobs)]
    error: BaseException | None = None
    try:
        for child in children:
            child.start()
        for child in children:
            failed = child.result()
            error = error or failed
    except BaseException as exc:
        error = exc
    finally:
        for child in children:
            child.stop()
    if error is not None:
        made = (index for index, _ in spill.merged())
        next_made = next(made, None)
        for index, device in enumerate(records()):
            if index == next_made:
                next_made = next(made, None)
            else:
                shutil.rmtree(maker.out / device.id, ignore_errors=True)
        raise error


def _make_share(maker: _Maker, devices: Iterator[Device], k: int, jobs: int,
                spill: _Spill) -> BaseException | None:
    """Devices k, k + jobs, k + 2 jobs... of `devices`, each result written to spill part k;
    returns the error that stopped them in a forked process (raises it in this one)."""
    try:
        with spill.part(k) as part:
            for index, device in enumerate(devices):
                if index % jobs == k:
                    part.add(index, maker.one(device))
    except Exception as exc:
        if jobs == 1:
            raise
        return exc  # handed to the parent, which raises it
    finally:
        if jobs > 1 and maker.fast is not None:
            maker.fast.close()
    return None


def _line_secrets(secrets: tuple[PlaintextSecret, ...], done: Assembled,
                  devices: Iterable[Device]) -> LineSecrets:
    """The secrets bound to the golden SecretManager, every device checked: all refusals come
    before anything is written."""
    greengrass = done.layout.greengrass
    if greengrass is None:
        raise ComposerError("--secrets needs the layout's greengrass: section (SecretManager's "
                            "store is in the Greengrass configuration)")
    line = LineSecrets.for_golden(secrets, golden_config(done.asm, greengrass.to))
    errors = []
    for device in devices:
        try:
            line.check_device(device.id, device.certificate(), device.loc)
        except ComposerError as error:
            errors.append(error)
    raise_all(errors)
    return line


def _with_secrets(extra_values: ExtraValues | None, line: LineSecrets) -> ExtraValues:
    """`extra_values` and the device's secretResponse, made once per device (in its Tailor)."""
    def values(device: Device) -> Mapping[ConfigPath, Any]:
        more = extra_values(device) if extra_values is not None else {}
        return {**more, **line.values_for(device.id, device.certificate(), device.loc)}
    return values


def _what_was_set(tailor: Tailor) -> dict[str, tuple[str, ...]]:
    inputs = tailor.inputs
    if inputs is None:
        return {}
    return {"keys": tuple(".".join(path) for path in inputs.values),
            "files": tuple(f"{f.path} ({f.mode:04o})" for f in inputs.files)}


def _full(golden: Golden, device: Device, the_plan: Plan, folder: Path,
          events: Events | None) -> DeviceResult:
    """The device's complete build in folder/full, and each image's patch diffed from it."""
    built = folder / "full"
    build(the_plan, built, events)
    patches = []
    for image, golden_sha in sorted(golden.images().items()):
        name = f"{image}.patch"
        header = make_patch(golden.folder / image, built / image, folder / name, device.id,
                            golden_sha, block_map(golden.folder / image),
                            block_map(built / image))
        patches.append(_patch_file(folder / name, f"{device.id}/{name}", header))
    _private(built)
    return DeviceResult(device.id, tuple(patches), f"{device.id}/full")


def _lean(golden: Golden, device: Device, the_plan: Plan, base: Plan,
          folder: Path) -> DeviceResult:
    """The same patches without the complete build: only the partitions whose write request
    differs from the golden one are written (equal requests give equal bytes), and the disk's
    patch is theirs moved to their offsets plus the table's changed blocks."""
    work = folder / ".work"
    work.mkdir(mode=0o700)
    try:
        moved: dict[int, bytes] = {}  # disk block -> new bytes
        moved_mapped: list[tuple[int, int]] = []  # disk block ranges the device maps
        patches = []
        store = the_plan.store.spilling_into(work)
        offsets = {p.name: p.offset for p in the_plan.disk.plan.partitions} \
            if the_plan.disk is not None else {}
        for part, golden_part in zip(the_plan.partitions, base.partitions, strict=True):
            if not part.writer.fixed_size:
                continue
            image = f"{part.name}.img"
            request = replace(part.request, size=part.size)
            golden_request = replace(golden_part.request, size=golden_part.size)
            name = f"{image}.patch"
            if part is golden_part or request == golden_request:
                runs: list[tuple[int, int, bool]] = []
                header = write_patch(folder / name, golden.folder / image, device.id,
                                     golden.images()[image], runs, lambda b: b"")
            else:
                result = part.writer.write(request, work / image, store, lambda _n: None)
                device_map = _ranges(result.extents)
                header = make_patch(golden.folder / image, work / image, folder / name,
                                    device.id, golden.images()[image],
                                    block_map(golden.folder / image), device_map)
                if part.name in offsets:
                    _move(folder / name, header, offsets[part.name], moved)
                    moved_mapped += _shifted(device_map, offsets[part.name])
                (work / image).unlink()
            patches.append(_patch_file(folder / name, f"{device.id}/{name}", header))
        if the_plan.disk is not None and base.disk is not None:
            patches.append(_disk_patch(golden, device, the_plan.disk.plan.table_bytes(),
                                       moved, moved_mapped, folder))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return DeviceResult(device.id, tuple(sorted(patches, key=lambda p: p.image)), None)


def _from_delta(golden: Golden, device: Device, base: Plan | None, delta: DeviceDelta,
                folder: Path, blocks: GoldenBlocks) -> DeviceResult:
    """The patches of a device whose changed blocks came from the golden plan: a partition's
    patch holds its changed blocks and those only the device maps, and the disk's holds them
    moved to the partition's offset plus the table's changed blocks."""
    assert base is not None
    images = {d.image: d for d in delta.images}
    offsets = {p.name: p.offset for p in base.disk.plan.partitions} \
        if base.disk is not None else {}
    moved: dict[int, bytes] = {}
    moved_mapped: list[tuple[int, int]] = []
    patches = []
    shas = golden.images()
    for part in base.partitions:
        if not part.writer.fixed_size:
            continue
        image = f"{part.name}.img"
        name = f"{image}.patch"
        changed = images.get(image)
        runs: list[tuple[int, int, bool]] = []
        new: dict[int, bytes] = {}
        if changed is not None:
            new = dict(changed.blocks)
            runs = patch_runs(set(new), block_map(golden.folder / image), changed.device_map)
            for first, count, _ in runs:
                for block in range(first, first + count):
                    if block not in new:  # mapped by the device only, equal bytes
                        new[block] = blocks.read(golden.folder / image, block)
        header, sha = write_patch_sha(folder / name, golden.folder / image, device.id,
                                      shas[image], runs, new.__getitem__, blocks)
        if changed is not None and part.name in offsets:
            if offsets[part.name] % BLOCK:
                raise ComposerError(f"partition {part.name} starts at byte {offsets[part.name]},"
                                    f" not on a {BLOCK}-byte block", hint="personalize with "
                                    "--full")
            first_block = offsets[part.name] // BLOCK
            moved.update((first_block + b, data) for b, data in new.items())
            moved_mapped += _shifted(changed.device_map, offsets[part.name])
        patches.append(_patch_file(folder / name, f"{device.id}/{name}", header, sha))
    if base.disk is not None:
        patches.append(_disk_patch(golden, device, delta.table, moved, moved_mapped, folder,
                                   blocks))
    return DeviceResult(device.id, tuple(sorted(patches, key=lambda p: p.image)), None,
                        delta.keys, delta.files)


def _ranges(extents: tuple[tuple[int, int], ...]) -> BlockRanges:
    return tuple((off // BLOCK, (off + n - 1) // BLOCK) for off, n in extents if n > 0)


def _shifted(ranges: BlockRanges, offset: int) -> list[tuple[int, int]]:
    base = offset // BLOCK
    return [(base + first, base + last) for first, last in ranges]


def _move(patch: Path, header: PatchHeader, offset: int, into: dict[int, bytes]) -> None:
    """The new blocks of a partition's patch, at their disk block numbers."""
    if offset % BLOCK:
        raise ComposerError(f"partition {header.image} starts at byte {offset}, not on a "
                            f"{BLOCK}-byte block", hint="personalize with --full")
    base = offset // BLOCK
    with patch.open("rb") as f:
        f.readline()
        f.readline()
        for run in header.runs:
            for b in range(run.block, run.block + run.count):
                into[base + b] = f.read(BLOCK)


def _disk_patch(golden: Golden, device: Device, table: list[tuple[int, bytes]],
                moved: dict[int, bytes], moved_mapped: list[tuple[int, int]],
                folder: Path, blocks: GoldenBlocks | None = None) -> PatchFile:
    disk = golden.folder / "disk.img"
    reader = blocks or GoldenBlocks()
    try:
        new = dict(moved)
        touched = sorted({b for off, data in table
                          for b in range(off // BLOCK, (off + len(data) - 1) // BLOCK + 1)})
        for block in touched:
            current = bytearray(new.get(block) or reader.read(disk, block))
            for off, data in table:
                lo, hi = max(off, block * BLOCK), min(off + len(data), (block + 1) * BLOCK)
                if lo < hi:
                    current[lo - block * BLOCK:hi - block * BLOCK] = data[lo - off:hi - off]
            if bytes(current) != reader.read(disk, block) or block in new:
                new[block] = bytes(current)
        golden_map = block_map(disk)
        # blocks only the device maps were moved in; the table's blocks are mapped in both
        runs = patch_runs(set(new), golden_map, tuple(sorted(moved_mapped)))
        missing = {b for first, count, _ in runs for b in range(first, first + count)} - set(new)
        for block in missing:  # mapped by the device only, equal bytes: written all the same
            new[block] = reader.read(disk, block)
        name = "disk.img.patch"
        header, sha = write_patch_sha(folder / name, disk, device.id,
                                      golden.images()["disk.img"], runs, new.__getitem__, reader)
    finally:
        if blocks is None:
            reader.close()
    return _patch_file(folder / name, f"{device.id}/{name}", header, sha)


@functools.lru_cache(maxsize=16)
def block_map(image: Path) -> BlockRanges:
    """The 4 KiB block ranges the image's .bmap maps (what bmaptool writes when flashing)."""
    bmap = read_bmap(image.with_suffix(".bmap"))
    if bmap.block_size != BLOCK:
        raise ComposerError(f"{image.with_suffix('.bmap')} has {bmap.block_size}-byte blocks, "
                            f"not {BLOCK}", hint="build the golden image again")
    return tuple((r.first, r.last) for r in bmap.ranges)


def _patch_file(path: Path, rel: str, header: PatchHeader, sha: str | None = None) -> PatchFile:
    """The manifest's record of a patch file (`sha`: its sha256, when known already)."""
    if sha is None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
    return PatchFile(header.image, rel, sha, len(header.runs),
                     sum(r.count for r in header.runs))


def _private(folder: Path) -> None:
    """A device's outputs hold its private key: readable by the owner only."""
    for dirpath, _dirs, filenames in os.walk(folder):
        os.chmod(dirpath, 0o700)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def _write_run_manifest(path: Path, golden: Golden, results: Iterator[tuple[int, DeviceResult]],
                        on_result: OnResult | None) -> tuple[int, int]:
    """The run manifest, written as the results stream in (the text `json.dumps(obj, indent=1,
    sort_keys=True)` gives for the whole object); returns (devices, rebuilt)."""
    rest = json.dumps({"format": 1, "golden": dict(sorted(golden.images().items()))}, indent=1,
                      sort_keys=True)[2:]  # after "{\n": the keys that sort after "devices"
    count = rebuilt = 0
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write('{\n "devices": [')
        for _, result in results:
            text = json.dumps(result.to_json(), indent=1, sort_keys=True)
            f.write(("\n" if count == 0 else ",\n") + "\n".join("  " + line
                                                                for line in text.split("\n")))
            count += 1
            rebuilt += result.rebuilt is not None
            if on_result is not None:
                on_result(result)
        f.write("\n ],\n" if count else "],\n")
        f.write(rest + "\n")
    os.replace(tmp, path)
    return count, rebuilt


class _Spill:
    """Each process's results, a JSON line each, in files next to the run manifest; merged in
    the records' order when the run ends, then removed."""

    def __init__(self, out: Path, manifest: str) -> None:
        self.out = out
        self.stem = f".{manifest}.part"
        self.remove()

    def _path(self, k: int) -> Path:
        return self.out / f"{self.stem}{k}"

    @contextlib.contextmanager
    def part(self, k: int) -> Iterator[_SpillPart]:
        fd = os.open(self._path(k), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield _SpillPart(f)

    def merged(self) -> Iterator[tuple[int, DeviceResult]]:
        parts = sorted(self.out.glob(f"{glob.escape(self.stem)}*"))
        return heapq.merge(*(_read_part(p) for p in parts), key=lambda item: item[0])

    def remove(self) -> None:
        for path in self.out.glob(f"{glob.escape(self.stem)}*"):
            path.unlink()


@dataclass(frozen=True, slots=True)
class _SpillPart:
    file: TextIO

    def add(self, index: int, result: DeviceResult) -> None:
        self.file.write(json.dumps([index, result.to_json()], sort_keys=True) + "\n")
        self.file.flush()  # a process stopped later still leaves this line whole


def _read_part(path: Path) -> Iterator[tuple[int, DeviceResult]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):  # a process stopped while writing leaves a partial line
                index, obj = json.loads(line)
                yield index, DeviceResult.from_json(obj)
