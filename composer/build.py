"""load -> scan -> rules -> route -> plan -> check all -> write all -> publish atomically.

Nothing is written before every check of every partition has passed, and outputs go to a
staging folder inside the output folder that is published atomically only when all succeeded.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from composer.check.planted import stamp_wallclock
from composer.check.provenance import provenance
from composer.content import ContentStore
from composer.disk.compose import (
    DiskBuild,
    flashing_outputs,
    plan_layout_disk,
    sfdisk_file,
    write_layout_disk,
)
from composer.errors import ComposerError, Loc, raise_all
from composer.fs.base import FsWriter, Reserve, WriteRequest, WriteResult
from composer.layout.load import epoch_problem, load_layout
from composer.layout.model import Layout, Output, Partition, output_names
from composer.outputs.follow import ImageDigests
from composer.outputs.manifest import (
    DiskRecord,
    EntryRecords,
    EpochOrigin,
    HashingStore,
    Manifest,
    PartitionRecord,
    image_sha256,
    write_sha256sums,
)
from composer.outputs.prehash import Prehash
from composer.parallel import ENTRY_WEIGHT, Forked, cpus, split
from composer.publish import check_names, publish, staging
from composer.registry import WRITERS, scan_source
from composer.report import Report
from composer.route import for_writer, route
from composer.rules.assembly import Assembly
from composer.rules.docker import DockerRule
from composer.rules.files import FilesRule
from composer.rules.greengrass import GreengrassRule
from composer.rules.personal import personal_room
from composer.rules.systemd import SystemdRule
from composer.sources import Scanned
from composer.tree import DeviceTree, canonical_hardlinks, is_under, relative
from composer.units import human_size

log = logging.getLogger(__name__)

# Every derived ID is uuid5(COMPOSER_NS, "<layout name>/<partition>/<purpose>")
COMPOSER_NS = uuid.UUID("6f1c3b1e-6a0e-5c8e-9a57-0c0a1d5e7c11")


def derived_uuid(layout: str, partition: str, purpose: str) -> uuid.UUID:
    return uuid.uuid5(COMPOSER_NS, f"{layout}/{partition}/{purpose}")


@dataclass(frozen=True, slots=True)
class PlannedPartition:
    writer: FsWriter
    request: WriteRequest
    size: int | None  # resolved image size; None for tar

    @property
    def name(self) -> str:
        return self.request.name


@dataclass(slots=True)
class Plan:
    layout: Layout
    epoch: int
    tree: DeviceTree
    partitions: list[PlannedPartition]
    report: Report
    store: ContentStore
    disk: DiskBuild | None = None
    scanned: dict[str, Scanned] | None = None  # for the manifest's provenance
    epoch_origin: EpochOrigin = EpochOrigin.LAYOUT
    prehash: Prehash | None = None  # the sources' files being hashed meanwhile


class Tailor(Protocol):
    """A change of the whole build for one device (composer/personalize/device.py): the layout
    before anything is read, and the device tree once the rules made it."""

    def layout(self, layout: Layout) -> Layout: ...

    def tree(self, asm: Assembly, layout: Layout) -> None: ...


class Events:
    """Progress hooks; the CLI draws them, tests ignore them."""

    def step(self, message: str) -> None:
        pass

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass(slots=True)
class Assembled:
    """A plan up to the device tree the rules made: what every device's build shares."""

    layout: Layout
    epoch: int
    origin: EpochOrigin
    scanned: dict[str, Scanned]
    store: ContentStore
    asm: Assembly
    room: dict[str, int]  # what the golden plan reserves for personalization
    prehash: Prehash | None = None


def plan(layout_path: Path, epoch_override: int | None = None,
         events: Events | None = None,
         override_origin: EpochOrigin = EpochOrigin.OPTION,
         tailor: Tailor | None = None, prehash: bool = False) -> Plan:
    """Everything up to writing: validate, scan sources, apply rules, route, check.

    Reads the layout and the sources (metadata, and the few small files the rules edit); writes
    nothing and changes nothing outside the Plan it returns, so a plan can be thrown away.
    `prehash`: the plan is to be built, so the sources' files are hashed on another core while
    it is made (composer/outputs/prehash.py; `build` takes the digests or stops the child)."""
    done = assemble(layout_path, epoch_override, events, override_origin, prehash)
    try:
        return plan_assembled(done, tailor, events)
    except BaseException:
        if done.prehash is not None:
            done.prehash.stop()
        raise


def assemble(layout_path: Path, epoch_override: int | None = None,
             events: Events | None = None,
             override_origin: EpochOrigin = EpochOrigin.OPTION,
             prehash: bool = False) -> Assembled:
    events = events or Events()
    start = time.monotonic()
    layout = load_layout(layout_path)
    log.debug("loaded %s: %d partitions, outputs %s", layout_path, len(layout.partitions),
              ", ".join(layout.outputs) or "none")
    events.step("scanning sources")
    scanned = _scan(layout)
    store = ContentStore({name: s.data for name, s in scanned.items()})
    hashing = Prehash.start(store, scanned.values()) if prehash else None
    try:
        epoch, origin = _epoch(layout, scanned, epoch_override, override_origin)
        log.debug("epoch %d, from %s", epoch, _ORIGIN_WORDS[origin])
        events.step("applying rules")
        asm = Assembly(scanned, store, epoch)
        for source in scanned.values():
            for warning in source.warnings:
                asm.report.warn(warning)
        _assemble(layout, asm)
        log.debug("assembled in %.2f s", time.monotonic() - start)
        # from the golden tree, before any device's input, so every device keeps the same room
        return Assembled(layout, epoch, origin, scanned, store, asm, personal_room(layout, asm),
                         hashing)
    except BaseException:
        if hashing is not None:
            hashing.stop()
        raise


def plan_assembled(done: Assembled, tailor: Tailor | None = None,
                   events: Events | None = None, like: Plan | None = None) -> Plan:
    """Route, plan and check the partitions of an assembled tree; with `tailor`, of one
    device's copy of it (`done` stays as it was), reusing what equals `like`'s."""
    start = time.monotonic()
    layout, asm = done.layout, done.asm
    if tailor is not None:
        layout = tailor.layout(layout)
        asm = asm.fork()
        tailor.tree(asm, layout)
        raise_all(asm.errors)
    routing = route(asm.tree, layout.partitions, asm.epoch_ns, asm.claims)
    raise_all(list(routing.errors))
    for name, entries in routing.partitions.items():
        log.debug("routed %d entries to %s", len(entries), name)
    planned = _plan_partitions(layout, routing.partitions, done.epoch, done.room, like)
    disk = None
    if layout.disk is not None:
        sizes = {p.name: p.size for p in planned if p.size is not None}
        disk = plan_layout_disk(layout.disk, layout.partitions, sizes, done.scanned, layout.name,
                                COMPOSER_NS, max_size=layout.max_image_size)
    log.debug("planned in %.2f s", time.monotonic() - start)
    return Plan(layout, done.epoch, routing.tree, planned, asm.report, done.store, disk,
                done.scanned, done.origin, done.prehash if tailor is None else None)


def _scan(layout: Layout) -> dict[str, Scanned]:
    used = _used_sources(layout)
    scanned: dict[str, Scanned] = {}
    errors: list[ComposerError] = []
    for name in sorted(used):
        source = layout.sources[name]
        try:
            start = time.monotonic()
            scanned[name] = scan_source(name, source.path, source.loc)
            log.debug("scanned source %s (%s): %d entries in %.2f s", name, source.path,
                      len(scanned[name].entries), time.monotonic() - start)
        except ComposerError as exc:
            if exc.loc is None:
                exc.loc = source.loc
            errors.append(exc)
    raise_all(errors)
    return scanned


def _used_sources(layout: Layout) -> set[str]:
    refs = [s.src for s in (layout.greengrass, layout.systemd, layout.docker)
            if s is not None and s.src is not None]
    refs += [f.src for f in layout.files if f.src is not None]
    refs += [blob.src for blob in layout.disk.raw] if layout.disk is not None else []
    return {ref.source for ref in refs}


_ORIGIN_WORDS = {EpochOrigin.OPTION: "--source-date-epoch",
                 EpochOrigin.ENVIRONMENT: "SOURCE_DATE_EPOCH",
                 EpochOrigin.LAYOUT: "the layout",
                 EpochOrigin.NEWEST_MTIME: "the newest input mtime"}


def _epoch(layout: Layout, scanned: dict[str, Scanned], override: int | None,
           override_origin: EpochOrigin) -> tuple[int, EpochOrigin]:
    """The build's epoch, checked once here: every time in the images is clamped to it, so an
    epoch ext4 can store means no entry needs its own out-of-range error."""
    if override is not None:
        problem = epoch_problem(override)
        if problem is not None:
            raise ComposerError(f"the build's epoch {problem}",
                                hint="give seconds since 1970, such as 1718878001")
        return override, override_origin
    if layout.epoch is not None:
        return layout.epoch, EpochOrigin.LAYOUT
    newest = max((s.newest_mtime_ns for s in scanned.values()), default=0)
    if newest == 0:
        raise ComposerError("the build has no epoch: no source has a timestamp (image archives "
                            "of docker.images do not set it)", Loc(str(layout.path)),
                            hint="set 'epoch:' in the layout or SOURCE_DATE_EPOCH")
    problem = epoch_problem(newest // 1_000_000_000)
    if problem is not None:
        raise ComposerError(f"the newest input time, the build's epoch, {problem}",
                            hint="set 'epoch:' in the layout or SOURCE_DATE_EPOCH")
    return newest // 1_000_000_000, EpochOrigin.NEWEST_MTIME


def _assemble(layout: Layout, asm: Assembly) -> DeviceTree:
    gg = GreengrassRule(layout.greengrass, asm) if layout.greengrass else None
    systemd = SystemdRule(layout.systemd, asm) if layout.systemd else None
    _prefetch(layout, asm)
    if gg is not None:
        gg.apply()
    if systemd is not None:
        systemd.apply()
    docker = DockerRule(layout.docker, asm) if layout.docker else None
    if docker is not None:
        docker.apply()
    FilesRule(layout.files, asm).apply()
    raise_all(asm.errors)  # checks below need a complete tree
    canonical_hardlinks(asm.tree)
    if docker is not None:
        docker.check()
    if systemd is not None:
        systemd.check(gg.root if gg is not None else None)
    if gg is not None:
        gg.check()
    raise_all(asm.errors)
    return asm.tree


def _prefetch(layout: Layout, asm: Assembly) -> None:
    """The small files the rules read, in one pass over each source (see read_small)."""
    wanted = []
    if layout.greengrass is not None:
        wanted += asm.small_files(layout.greengrass.src, (
            "config/*", "deployments/*/*.tlog", "packages/recipes/*.recipe.yaml"))
    if layout.systemd is not None:
        wanted += asm.small_files(layout.systemd.src, layout.systemd.units)
    asm.read_small(wanted)


def _reserve(layout: Layout, part: Partition, room: Mapping[str, int]) -> Reserve | None:
    """What partition `part` keeps for per-device builds (composer/rules/personal.py)."""
    if layout.personalize is None:
        return None
    mounts = [p.mount for p in layout.partitions]

    def holder(path: str) -> str:
        return max((m for m in mounts if is_under(path, m)), key=len, default="")

    mine = tuple(sorted((relative(path, part.mount), n) for path, n in room.items()
                        if holder(path) == part.mount))
    seed = derived_uuid(layout.name, part.name, "fs") \
        if part.name in layout.personalize.uuids else None
    return Reserve(mine, seed)


def _plan_partitions(layout: Layout, routed: Mapping[str, tuple[Any, ...]],
                     epoch: int, room: Mapping[str, int],
                     like: Plan | None = None) -> list[PlannedPartition]:
    """Each partition's writer, request and size; a partition whose request equals the one
    in `like` (the golden plan, for a device's) takes that plan's, already checked."""
    available = WRITERS
    planned: list[PlannedPartition] = []
    errors: list[ComposerError] = []
    known = {p.name: p for p in like.partitions} if like is not None else {}
    for part in layout.partitions:
        writer = available[part.fs]()
        request = WriteRequest(
            name=part.name, size=part.size,
            entries=stamp_wallclock(part.name, for_writer(routed[part.name])),
            label=part.label, uuid=part.uuid or derived_uuid(layout.name, part.name, "fs"),
            epoch=epoch, options=dict(part.options), loc=part.loc,
            reserve=_reserve(layout, part, room))
        same = known.get(part.name)
        if same is not None and same.request == request:
            planned.append(same)
            continue
        problems = writer.check(request)
        errors += problems
        size = None
        if not problems and writer.fixed_size:
            size = writer.resolve_size(request)
            log.debug("%s: %s, %d bytes (%s)", part.name, part.fs, size,
                      "given" if part.size is not None else "auto")
        planned.append(PlannedPartition(writer, request, size))
    raise_all(errors)
    return planned


@dataclass(frozen=True, slots=True)
class BuildResult:
    out: Path
    files: tuple[str, ...]
    manifest: Manifest
    report: tuple[str, ...]


def build(the_plan: Plan, out: Path, events: Events | None = None,
          jobs: int | None = None) -> BuildResult:
    """Write every output into a staging folder inside `out`, then publish them atomically
    (composer/publish.py: at every instant `out` shows the old or the new complete build).
    `jobs`: how many partitions may be written at once (default: one per CPU)."""
    events = events or Events()
    try:
        return _build(the_plan, out, events, jobs)
    finally:
        if the_plan.prehash is not None:  # taken by then, unless the build failed
            the_plan.prehash.stop()


def _build(the_plan: Plan, out: Path, events: Events, jobs: int | None) -> BuildResult:
    names = output_names(the_plan.layout)
    with staging(out, lambda: events.step(f"waiting for the build already writing into {out}")) \
            as stage:
        check_names(out, names)
        try:
            files, manifest = _write_all(the_plan, stage.folder, events, jobs or cpus())
        except OSError as exc:
            raise ComposerError(f"writing into {out} failed: {exc.strerror or exc}",
                                hint="check free space and permissions; the output folder "
                                "was left as it was") from None
        # the names were decided when the layout was loaded; a writer may not invent others
        assert sorted(files) == sorted(names), (sorted(files), sorted(names))
        publish(stage, files)
    return BuildResult(out, tuple(files), manifest, tuple(the_plan.report.lines()))


@dataclass(frozen=True, slots=True)
class _Image:
    """A partition written: its file name, block map, volume ID, digest and flashing outputs
    (bmap, simg, zst; futures while this process is still making them), and its entries'
    records."""

    name: str
    result: WriteResult
    volume_id: str | None
    digest: Future[str]
    extras: Future[list[str]] | None
    records: EntryRecords


@dataclass(frozen=True, slots=True)
class _Aside:
    """What a child process sends back for a partition it wrote (see composer/parallel.py)."""

    name: str
    result: WriteResult
    volume_id: str | None
    digest: str
    extras: list[str] | None
    hashes: tuple[str | None, ...]  # sha256 of each entry's content, in request order


def _write_all(the_plan: Plan, tmp: Path, events: Events,
               jobs: int) -> tuple[list[str], Manifest]:
    store = HashingStore(the_plan.store.spilling_into(tmp), the_plan.prehash)
    parts = the_plan.partitions
    mine, groups = split([_cost(p) for p in parts], jobs)
    if groups:  # what the sources' hashing child has done by now, children inherit
        store.take_prehash(wait=False)
    children = [(group, Forked(lambda group=group: _write_aside(the_plan, store, tmp, group),
                               f"the process writing {', '.join(parts[i].name for i in group)}"))
                for group in groups]
    written: dict[int, _Image] = {}
    try:
        # forked before this process starts any thread (the digest pool, the sha256 helper)
        for group, child in children:
            child.start()
            log.debug("writing %s in a child process", ", ".join(parts[i].name for i in group))
            for i in group:  # the child draws no progress: say what it does, once
                data = sum(e.size for e in parts[i].request.entries)
                events.step(f"writing {parts[i].name} ({parts[i].writer.fs}), "
                            f"{human_size(data)} of data, in a child process")
                parts[i].writer.release()  # the child has its own copy of the plan
        # hashing a whole image takes as long as writing it; hashlib and file reads release the
        # GIL, so the image digests run on other cores while bmaps and the manifest are made
        with ThreadPoolExecutor(max_workers=2) as pool, _cancel_pending_on_error(pool):
            for i in mine:
                written[i] = _write_here(parts[i], tmp, store, events, pool,
                                         the_plan.layout.outputs)
            for group, child in children:
                for i, aside in zip(group, child.result(), strict=True):
                    written[i] = _adopt(parts[i], aside, store)
            return _finish(the_plan, tmp, store, events, pool, written)
    finally:
        for _, child in children:
            child.stop()


def _cost(part: PlannedPartition) -> int:
    return sum(e.size for e in part.request.entries) + \
        ENTRY_WEIGHT * len(part.request.entries)


def _write_here(part: PlannedPartition, tmp: Path, store: HashingStore, events: Events,
                pool: ThreadPoolExecutor, outputs: tuple[Output, ...]) -> _Image:
    name, result, request, follower = _write_partition(part, tmp, store, events)
    ranges = None
    if follower is not None:  # the image was hashed while it was written
        digest, ranges = follower.image, follower.ranges
    else:
        digest = pool.submit(image_sha256, tmp / name, result.extents, result.size)
    # bmap, simg, zst: they only read the finished image
    extras = pool.submit(flashing_outputs, tmp / name, result, outputs, ranges) \
        if part.writer.fixed_size else None
    return _Image(name, result, part.writer.volume_id(request), digest, extras,
                  EntryRecords(request.entries, store))


def _write_aside(the_plan: Plan, store: HashingStore, tmp: Path,
                 group: list[int]) -> list[_Aside]:
    """In a child process: write these partitions with their digests and flashing outputs
    (`store`: the parent's, as it was when this child was forked)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        images = [_write_here(the_plan.partitions[i], tmp, store, Events(), pool,
                              the_plan.layout.outputs) for i in group]
        return [_Aside(image.name, image.result, image.volume_id, image.digest.result(),
                       image.extras.result() if image.extras is not None else None,
                       image.records.digests()) for image in images]


def _adopt(part: PlannedPartition, aside: _Aside, store: HashingStore) -> _Image:
    """A partition a child wrote, as if written here: its files' digests join the store."""
    for entry, sha256 in zip(part.request.entries, aside.hashes, strict=True):
        if sha256 is not None and entry.content is not None and entry.content.size \
                and entry.content.inline is None:
            store.hashes.setdefault(entry.content, bytes.fromhex(sha256))
    digest: Future[str] = Future()
    digest.set_result(aside.digest)
    extras: Future[list[str]] | None = None
    if aside.extras is not None:
        extras = Future()
        extras.set_result(aside.extras)
    return _Image(aside.name, aside.result, aside.volume_id, digest, extras,
                  EntryRecords(part.request.entries, store))


def _finish(the_plan: Plan, tmp: Path, store: HashingStore, events: Events,
            pool: ThreadPoolExecutor, written: dict[int, _Image]) -> tuple[list[str], Manifest]:
    """The disk image, the digests, manifest.json, report.txt and SHA256SUMS."""
    parts = the_plan.partitions
    files = [written[i].name for i in range(len(parts))]
    digests = {written[i].name: written[i].digest for i in range(len(parts))}
    extras = [written[i].extras for i in range(len(parts))]
    if the_plan.disk is not None:
        images = {p.name: (tmp / written[i].name, written[i].result)
                  for i, p in enumerate(parts) if p.writer.fixed_size}
        result = _write_disk(the_plan.disk, images, tmp, store, events)
        files.append("disk.img")
        digests["disk.img"] = pool.submit(image_sha256, tmp / "disk.img", result.extents,
                                          result.size)
        extras.append(pool.submit(flashing_outputs, tmp / "disk.img", result,
                                  the_plan.layout.outputs))
        if Output.SFDISK in the_plan.layout.outputs:
            files.append(sfdisk_file(the_plan.disk.plan, tmp / "disk.sfdisk"))
    # the provenance first: the image digests may still be on their way from the other core
    origin = provenance(the_plan.layout.path, the_plan.scanned or {}, store,
                        the_plan.epoch_origin)
    done = {name: future.result() for name, future in digests.items()}
    for extra in extras:
        if extra is not None:
            files += extra.result()
    manifest = Manifest(
        layout=the_plan.layout.name, epoch=the_plan.epoch,
        partitions={p.name: _Written(p.name, p.writer.fs, written[i].name,
                                     written[i].result.size, written[i].volume_id,
                                     written[i].records).record(done[written[i].name])
                    for i, p in enumerate(parts)},
        outputs=tuple(sorted(files)),
        disk=_disk_record(the_plan.disk, done["disk.img"]) if the_plan.disk else None,
        provenance=origin)
    manifest.write(tmp / "manifest.json")
    (tmp / "report.txt").write_text("".join(f"{line}\n" for line in the_plan.report.lines()),
                                    encoding="utf-8")
    files += ["manifest.json", "report.txt"]
    write_sha256sums(tmp, files, done)
    files.append("SHA256SUMS")
    return files, manifest


@contextlib.contextmanager
def _cancel_pending_on_error(pool: ThreadPoolExecutor) -> Iterator[None]:
    """After an error or a signal, drop the queued digests and compressions: leaving the `with`
    would otherwise run every one of them before the cleanup could start."""
    try:
        yield
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise


def _write_partition(part: PlannedPartition, tmp: Path, store: HashingStore, events: Events
                     ) -> tuple[str, WriteResult, WriteRequest, ImageDigests | None]:
    """Write one partition's image; with the digests of its image and bmap ranges, made
    while it was written, when the writer knows its block map beforehand."""
    name = f"{part.name}.{'tar' if part.writer.fs == 'tar' else 'img'}"
    request = part.request
    if part.size is not None and request.size is None:
        request = replace(request, size=part.size)
    events.start(f"{part.name} ({part.writer.fs})", sum(e.size for e in request.entries))
    start = time.monotonic()
    planned = part.writer.planned_extents(request) if part.size is not None else None
    if planned is None:
        result = part.writer.write(request, tmp / name, store, events.advance)
        follower = None
    else:
        follower = ImageDigests(tmp / name, planned, part.size)
        try:
            result = part.writer.write_following(request, tmp / name, store, events.advance,
                                                 follower.advance)
        except BaseException:
            follower.cancel()
            raise
        follower.finish()
        assert (result.size, tuple(result.extents)) == (follower.size, follower.extents)
    log.debug("wrote %s: %d bytes, %d extents in %.2f s", name, result.size,
              len(result.extents), time.monotonic() - start)
    return name, result, request, follower


@dataclass(frozen=True, slots=True)
class _Written:
    """A partition image written, waiting for its digest to become a manifest record."""

    name: str
    fs: str
    image: str
    size: int
    uuid: str | None
    entries: EntryRecords

    def record(self, sha256: str) -> PartitionRecord:
        return PartitionRecord(fs=self.fs, image=self.image, size=self.size, sha256=sha256,
                               uuid=self.uuid, entries=self.entries)


def _write_disk(disk: DiskBuild, images: dict[str, tuple[Path, WriteResult]], tmp: Path,
                store: HashingStore, events: Events) -> WriteResult:
    events.step(f"writing disk.img ({disk.plan.table.value})")
    start = time.monotonic()
    result = write_layout_disk(disk, images, tmp / "disk.img", store)
    log.debug("wrote disk.img: %d bytes in %.2f s", result.size, time.monotonic() - start)
    return result


def _disk_record(disk: DiskBuild, sha256: str) -> DiskRecord:
    return replace(DiskRecord.of(disk.plan), image="disk.img", sha256=sha256)
