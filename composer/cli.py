"""The `compose` command: the only place that prints and picks exit codes.

Exit codes: 0 ok, 1 layout/input/build error, 2 usage, 3 internal error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from composer import __version__
from composer.build import Events, Plan, build, plan
from composer.errors import ComposerError
from composer.layout.load import epoch_problem
from composer.outputs.manifest import DiskRecord, EpochOrigin
from composer.units import human_size

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Deterministic partition and disk images from a Greengrass golden device.")


class _State:
    quiet = False
    debug = False


STATE = _State()

LayoutArg = Annotated[Path, typer.Argument(help="the layout file", show_default=False,
                                           metavar="LAYOUT")]
# -q and --debug are accepted before and after the command (`compose build x.yaml -q`)
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="print errors only")]
DebugOpt = Annotated[bool, typer.Option(
    "--debug", help="show tracebacks, and log decisions and timings on stderr")]
EpochOpt = Annotated[str | None, typer.Option(
    "--source-date-epoch", help="the build's epoch (else $SOURCE_DATE_EPOCH, the layout's "
    "epoch, or the newest input mtime)", show_default=False)]


def _say(message: str) -> None:
    if not STATE.quiet:
        typer.echo(message, err=True)


class _CliEvents(Events):
    """Plain lines when stderr is not a terminal; a rich progress bar when it is."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None
        if not STATE.quiet and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      DownloadColumn(), TimeRemainingColumn(), transient=True,
                                      console=_stderr_console())

    def step(self, message: str) -> None:
        _say(f"compose: {message}")

    def start(self, label: str, total: int) -> None:
        _say(f"compose: writing {label}, {human_size(total)} of data")
        if self._progress is not None:
            if self._task is None:
                self._progress.start()
            else:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(label, total=max(total, 1))

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _epoch(option: str | None) -> int | None:
    """--source-date-epoch, else SOURCE_DATE_EPOCH: ASCII digits only (int() would also take
    "١٢" and choke on "²"), within what ext4 can store (layout.load.epoch_problem)."""
    if option is not None:
        return _epoch_value("--source-date-epoch ", option)
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is None or env == "":
        return None
    return _epoch_value("SOURCE_DATE_EPOCH=", env)


def _epoch_origin(option: str | None) -> EpochOrigin:
    """Which of the two overrides _epoch took (when it took one)."""
    return EpochOrigin.OPTION if option is not None else EpochOrigin.ENVIRONMENT


def _epoch_value(name: str, text: str) -> int:
    if re.fullmatch(r"-[0-9]{1,30}", text):
        raise ComposerError(f"{name}{text} is before 1970",
                            hint="give seconds since 1970, such as 1718878001")
    if not re.fullmatch(r"[0-9]{1,30}", text):
        raise ComposerError(f"{name}{text!r} is not a number of seconds",
                            hint="give seconds since 1970 in ASCII digits, such as 1718878001")
    problem = epoch_problem(int(text))
    if problem is not None:
        raise ComposerError(f"{name}{problem}",
                            hint="give seconds since 1970, such as 1718878001")
    return int(text)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"compose {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: Annotated[bool, typer.Option("--version", help="print the version and exit",
                                          is_eager=True, callback=_print_version)] = False,
) -> None:
    _set_globals(quiet, debug)


def _set_globals(quiet: bool, debug: bool) -> None:
    STATE.quiet = STATE.quiet or quiet
    if debug and not STATE.debug:
        _log_to_stderr()
    STATE.debug = STATE.debug or debug


def _log_to_stderr() -> None:
    """--debug: the library's log records (composer.*) on stderr, with the time since start."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("debug: %(relativeCreated)6.0f ms %(name)s: "
                                           "%(message)s"))
    logger = logging.getLogger("composer")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


@contextlib.contextmanager
def _no_cycle_collector() -> Iterator[None]:
    """A build keeps a few records per entry alive until it ends and makes almost no reference
    cycles, so Python's cycle collector only rescans them, again and again (a fifth of the CPU
    time at 200,000 entries, growing with them): it is off while the build runs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@app.command("build")
def build_command(
    layout: LayoutArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")] = Path("out"),
    source_date_epoch: EpochOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    jobs: Annotated[int | None, typer.Option(
        "-j", "--jobs", min=1, help="partitions written at once (default: one per CPU); "
        "the bytes are the same for any number")] = None,
) -> None:
    """Build every image of LAYOUT into the output folder."""
    _set_globals(quiet, debug)
    events = _CliEvents()
    try:
        with _no_cycle_collector():
            the_plan = plan(layout, _epoch(source_date_epoch), events,
                            _epoch_origin(source_date_epoch), prehash=True)
            result = build(the_plan, out, events, jobs)
    finally:
        events.close()
    for line in result.report:
        _say(line)
    for name in result.files:
        _say(f"wrote {result.out / name}")


@app.command("validate")
def validate_command(layout: LayoutArg, source_date_epoch: EpochOpt = None,
                     quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Run every check of LAYOUT and its sources; write nothing."""
    _set_globals(quiet, debug)
    the_plan = plan(layout, _epoch(source_date_epoch))
    for line in the_plan.report.lines():
        _say(line)
    _say(f"{layout}: ok ({len(the_plan.partitions)} partitions, {len(the_plan.tree)} entries)")


@app.command("plan")
def plan_command(
    layout: LayoutArg,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable, on stdout")] = False,
    source_date_epoch: EpochOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show partitions, mounts, entry counts and sizes, and the derived IDs."""
    _set_globals(quiet, debug)
    the_plan = plan(layout, _epoch(source_date_epoch))
    data = _plan_data(the_plan)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    typer.echo(f"layout {data['layout']}  epoch {data['epoch']}")
    for part in data["partitions"]:
        size = human_size(part["size"]) if part["size"] is not None else "-"
        typer.echo(f"  {part['name']:<12} {part['fs']:<5} {part['mount']:<20} size {size:<10} "
                   f"{part['entries']:>6} entries  {human_size(part['bytes']):>10}  "
                   f"uuid {part['uuid'] or '-'}")
    if "disk" in data:
        _print_disk(data["disk"])


def _print_disk(disk: dict[str, Any]) -> None:
    ident = disk["guid"] or disk["signature"]
    typer.echo(f"disk {disk['table']}  {human_size(disk['size'])} ({disk['size']} bytes)  "
               f"id {ident}")
    rows = [(p["offset"], f"  {p['number']:>2} {p['name']:<12} offset {p['offset']:>12}  "
             f"size {p['size']:>12}  type {p['type']}  partuuid {p['partuuid']}"
             + (f"  attributes {p['attributes']}" if int(p.get("attributes", "0"), 16) else "")
             + ("  bootable" if p.get("bootable") else "")) for p in disk["partitions"]]
    rows += [(b["offset"], f"     raw {b['name']:<8} offset {b['offset']:>12}  size "
              f"{b['size']:>12}") for b in disk["raw"]]
    rows += [(f["offset"], f"     free         offset {f['offset']:>12}  size {f['size']:>12}")
             for f in disk["free"]]
    for _, row in sorted(rows):
        typer.echo(row)


def _plan_data(the_plan: Plan) -> dict[str, Any]:
    mounts = {p.name: p.mount for p in the_plan.layout.partitions}
    data: dict[str, Any] = {
        "layout": the_plan.layout.name,
        "epoch": the_plan.epoch,
        "partitions": [{
            "name": p.name,
            "fs": p.writer.fs,
            "mount": mounts[p.name],
            "size": p.size,
            "entries": len(p.request.entries),
            "bytes": sum(e.size for e in p.request.entries),
            "uuid": p.writer.volume_id(p.request),
            "label": p.request.label,
        } for p in the_plan.partitions],
    }
    if the_plan.disk is not None:
        data["disk"] = DiskRecord.of(the_plan.disk.plan).to_obj()
    return data


# ------------------------------------------------------------------ checks of finished builds
# (composer/check; README "Checking builds"). Exit codes: 0 same/ok, 1 differences, 2 bad
# arguments.

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable, on stdout")]


def _bad_argument(message: str) -> typer.Exit:
    typer.echo(f"compose: error: {message}", err=True)
    return typer.Exit(2)


@app.command("verify")
def verify_command(
    folder: Annotated[Path, typer.Argument(help="a build folder", metavar="DIR")],
    deep: Annotated[bool, typer.Option("--deep", help="also every file inside the images")] =
    False,
    device: Annotated[Path | None, typer.Option(
        "--device", help="a flashed block device or a dump of one, compared over the mapped "
        "ranges of disk.bmap", show_default=False)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check DIR against its SHA256SUMS and manifest (and a flashed device)."""
    from composer.check.verify import verify

    _set_globals(quiet, debug)
    if not folder.is_dir():
        raise _bad_argument(f"{folder} is not a folder")
    if device is not None and not device.exists():
        raise _bad_argument(f"--device {device} does not exist")
    with _ReadProgress("verifying") as progress:
        report = verify(folder, deep, device, progress)
    if as_json:
        typer.echo(json.dumps(report.to_obj(), indent=2, sort_keys=True))
    else:
        for image, why in report.not_checked:
            typer.echo(f"not checked: {image}: {why}")
        for finding in report.findings:
            typer.echo(f"DIFFERS {finding}")
        if report.more:
            typer.echo(f"... and {report.more} more differences")
        _say(f"{folder}: {'ok' if report.ok else 'DIFFERS'} ({len(report.checked)} checked"
             f"{f', {len(report.not_checked)} not checked' if report.not_checked else ''})")
    raise typer.Exit(0 if report.ok else 1)


@app.command("diff")
def diff_command(
    a: Annotated[Path, typer.Argument(help="a build folder, manifest.json or image",
                                      metavar="A")],
    b: Annotated[Path, typer.Argument(help="a build folder, manifest.json or image",
                                      metavar="B")],
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """What differs between two builds or images: inputs, partitions, entries, disk, and each
    structure and field inside the images."""
    from composer.check.compare import diff_all, load_side

    _set_globals(quiet, debug)
    for side in (a, b):
        if not side.exists():
            raise _bad_argument(f"{side} does not exist")
    try:
        sides = load_side(a), load_side(b)
        with _ReadProgress("comparing") as progress:
            result = diff_all(*sides, progress)
    except ComposerError as exc:
        typer.echo(exc.render(), err=True)  # "error: ...", as main() prints errors
        raise typer.Exit(2) from None
    changes = result.changes
    if as_json:
        typer.echo(json.dumps(result.to_obj(), indent=2, sort_keys=True))
    else:
        for change in changes:
            typer.echo(str(change))
        follow = f"; {len(result.following)} more follow from them (--json lists them)" \
            if result.following else ""
        same = not changes and not result.following
        _say(f"{a} and {b}: {'identical' if same else f'{len(changes)} difference(s)'}{follow}")
    raise typer.Exit(1 if changes or result.following else 0)


class _ReadProgress:
    """A progress bar over a long read (verify --deep/--device, diff of images): a callback
    (bytes done, bytes total) for the library, drawn with rich only when stderr is a terminal
    and not under -q; None otherwise, so nothing is drawn or computed."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._progress: Any = None
        self._task: Any = None
        self._total = -1

    def __enter__(self) -> Any:
        if STATE.quiet or not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        self._progress = Progress(*Progress.get_default_columns()[:1], BarColumn(),
                                  DownloadColumn(), TimeRemainingColumn(), transient=True,
                                  console=_stderr_console())
        self._progress.start()
        return self.update

    def update(self, done: int, total: int) -> None:
        if self._task is None or total != self._total:  # a new image: a new bar
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(self.label, total=max(total, 1))
            self._total = total
        self._progress.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@app.command("reproduce")
def reproduce_command(
    target: Annotated[Path, typer.Argument(
        help="a layout file (build it twice) or a build folder (rebuild it from its recorded "
        "inputs)", metavar="LAYOUT|DIR")],
    layout: Annotated[Path | None, typer.Option(
        "--layout", help="with DIR: the layout it was built from (default: the recorded file "
        "name, in the current folder)", show_default=False)] = None,
    keep: Annotated[Path | None, typer.Option(
        "--keep", help="build in this new folder and leave the builds there",
        show_default=False)] = None,
    source_date_epoch: EpochOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Build twice under other TZ, umask, locale, paths and member order; compare every byte."""
    from composer.check.reproduce import reproduce_folder, reproduce_layout

    _set_globals(quiet, debug)
    if keep is not None and keep.exists():
        raise _bad_argument(f"--keep {keep} exists already; give a new folder")
    if target.is_dir():
        if source_date_epoch is not None:
            raise _bad_argument("--source-date-epoch goes with a LAYOUT; a build folder "
                                "records its epoch")
        report = reproduce_folder(target, layout, keep)
    elif target.is_file():
        if layout is not None:
            raise _bad_argument("--layout goes with a build folder DIR")
        _epoch(source_date_epoch)  # a bad value is an error before two builds fail on it
        epoch_args = ("--source-date-epoch", source_date_epoch) if source_date_epoch else ()
        report = reproduce_layout(target, epoch_args, keep)
    else:
        raise _bad_argument(f"{target} is neither a layout file nor a build folder")
    if as_json:
        typer.echo(json.dumps(report.to_obj(), indent=2, sort_keys=True))
    else:
        for line in report.conditions + report.notes:
            _say(f"compose: {line}")
        for name, side in report.missing:
            typer.echo(f"DIFFERS {name}: missing from the {side} build")
        for name in report.differing:
            typer.echo(f"DIFFERS {name}")
        for change in report.changes:
            typer.echo(f"  {change}")
        _say(f"{target}: {'reproducible' if report.identical else 'NOT reproducible'} "
             f"({len(report.compared)} outputs compared)")
    raise typer.Exit(0 if report.identical else 1)


@app.command("personalize")
def personalize_command(
    target: Annotated[Path, typer.Argument(
        help="the golden build folder; with --apply, the image or device to patch",
        metavar="BUILD_DIR|TARGET", show_default=False)],
    devices: Annotated[Path | None, typer.Option(
        "--devices", help="device records: CSV with a header row, or JSON lines",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="output folder",
                                             show_default=False)] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="keep each device's complete build (OUT/ID/full) beside its patches")
    ] = False,
    layout: Annotated[Path | None, typer.Option(
        "--layout", help="the golden build's layout (default: the recorded file name, in the "
        "current folder)", show_default=False)] = None,
    apply: Annotated[Path | None, typer.Option(
        "--apply", help="write this patch onto TARGET, after checking it holds the golden "
        "bytes", metavar="PATCH", show_default=False)] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="do only share K of N of the devices (by a hash of the id), for N "
        "parallel jobs", metavar="K/N", show_default=False)] = None,
    secrets: Annotated[str | None, typer.Option(
        "--secrets", help="plaintext secrets as GetSecretValue returns them, re-encrypted for "
        "each device's certificate into SecretManager's store; - reads standard input",
        metavar="FILE|-", show_default=False)] = None,
    jobs: Annotated[int | None, typer.Option(
        "-j", "--jobs", min=1, help="devices made at once, in forked processes (default: one "
        "per CPU)", show_default=False)] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Make each device's images and block patches from a golden build, or apply a patch."""
    from composer.parallel import cpus
    from composer.personalize.patch import apply_patch
    from composer.personalize.run import DeviceResult, Shard, open_golden, personalize
    from composer.personalize.secrets import read_secrets

    _set_globals(quiet, debug)
    if apply is not None:
        if (devices is not None or out is not None or full or layout is not None or shard
                or secrets is not None or jobs is not None):
            raise _bad_argument("--apply takes only PATCH and TARGET")
        header = apply_patch(apply, target)
        _say(f"{target}: applied {apply} ({len(header.runs)} runs, "
             f"{human_size(header.payload_bytes)}) for device {header.device}")
        return
    if devices is None or out is None:
        raise _bad_argument("personalize needs --devices FILE and -o OUT")
    if not target.is_dir():
        raise _bad_argument(f"{target} is not a build folder")
    share = None
    if shard is not None:
        k, _, n = shard.partition("/")
        if not (k.isascii() and k.isdigit() and n.isascii() and n.isdigit()
                and 1 <= int(k) <= int(n)):
            raise _bad_argument(f"--shard {shard!r} is not K/N with 1 <= K <= N, such as 2/8")
        share = Shard(int(k), int(n))
    golden = open_golden(target, layout)
    # read before anything else is done: a bad secrets file is refused with nothing written
    plaintext = read_secrets(secrets, sys.stdin.buffer) if secrets is not None else None
    events = _CliEvents()

    def said(result: DeviceResult) -> None:
        size = sum(p.blocks for p in result.patches) * 4096
        _say(f"device {result.device}: {len(result.patches)} patches, {human_size(size)} of "
             f"blocks{', full build in ' + str(out / result.full) if result.full else ''}"
             f"{f' (images built in full: {result.rebuilt})' if result.rebuilt else ''}")

    try:
        personalize(golden, devices, out, full, events=events, shard=share,
                    secrets=plaintext, jobs=jobs or cpus(), on_result=said)
    finally:
        events.close()


@app.command("inspect")
def inspect_command(
    image: Annotated[Path, typer.Argument(help="a disk, tar, ext4 or vfat image", metavar="IMAGE")],
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """What IMAGE holds: a disk's partition table, or an archive's, ext4's or FAT's every entry."""
    from composer.check.inspect import inspect

    _set_globals(quiet, debug)
    if not image.is_file():
        raise _bad_argument(f"{image} is not a file")
    with _ReadProgress("reading") as progress:
        data = inspect(image, progress)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if "table" in data:
        table = data["table"]
        typer.echo(f"{data['image']}: {table['table']} disk, {data['size']} bytes, id "
                   f"{table['guid'] or table['signature']}")
        for p in data["partitions"]:
            typer.echo(f"  {p['number']:>2} {p.get('name') or '-':<12} offset {p['offset']:>12}"
                       f"  size {p['size']:>12}  type {p['type']}  partuuid {p['partuuid']}  "
                       f"fs {p['fs']}")
        return
    typer.echo(f"{data['image']}: {data['kind']}, {data['size']} bytes, "
               f"{len(data['entries'])} entries")
    if "ext4" in data:
        fs = data["ext4"]
        typer.echo(f"  ext4 uuid {fs['uuid']} label {fs['volume_name']!r}: {fs['blocks_count']}"
                   f" blocks of {fs['block_size']} ({fs['free_blocks']} free), "
                   f"{fs['inodes_count']} inodes of {fs['inode_size']} ({fs['free_inodes']} "
                   f"free), {fs['groups']} groups")
    for e in data["entries"]:
        owner = f"{e['uid']}:{e['gid']}" if "uid" in e else "-"
        link = f" -> {e['target']}" if "target" in e else ""
        typer.echo(f"  {e['kind']:<8} {e.get('mode', '-'):>4} {owner:>9} {e.get('size', ''):>10}"
                   f" {e.get('sha256', '')[:16]:<16} {e['path']}{link}")


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread so every `finally` and cleanup runs.

    A BaseException of our own, not KeyboardInterrupt: click turns KeyboardInterrupt into Abort
    and prints a blank line of its own.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # the first signal stops the build; more while it cleans up would only cut the cleanup short
    # (the next build would finish it), so they are ignored. SIGKILL still works.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def main() -> None:
    """Run the app; map errors to exit codes 1 (ours), 3 (a bug) and 128+N (signal N)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    try:
        code = app(standalone_mode=False)
    except ComposerError as exc:
        if STATE.debug:
            traceback.print_exc()
        typer.echo(exc.render(), err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        # the folder holds one complete build either way (composer/publish.py)
        typer.echo(f"compose: stopped by {name}, cleaned up", err=True)
        sys.exit(128 + exc.signum)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except typer.Abort:  # click's answer to EOF on a prompt
        typer.echo("compose: aborted", err=True)
        sys.exit(1)
    except _click_errors() as exc:
        exc.show()
        sys.exit(2)  # every click error that reaches here is about the command line
    except Exception:  # noqa: BLE001 - the last line of defence
        traceback.print_exc()
        typer.echo("compose: internal error; please report it with the traceback above",
                   err=True)
        sys.exit(3)
    # without standalone mode click returns the code of a typer.Exit instead of raising it
    sys.exit(code if isinstance(code, int) else 0)


def _click_errors() -> type[Exception]:
    """click's base class of command-line errors (usage, bad option, no such file).

    typer re-exports only some of click's exceptions; `BadParameter` is one, and it derives from
    click's `ClickException` whichever click typer uses (its own copy since typer 0.16, the click
    package before), so the base class is found through it rather than through a private module.
    """
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


if __name__ == "__main__":
    main()
