"""`compose reproduce`: build twice under different conditions and compare every output byte.

Each build runs as its own `compose build` process, so that TZ, umask, locale and working
directory are really the process's own. The second build also reads its tar sources with the
members in reversed order (composer/check/reorder.py) from a mirror of the layout's folder:
the layout copied byte for byte, archives reordered, every other source a symlink to the
original (load_layout resolves symlinks, so a folder source is the same folder).

`reproduce DIR` first checks that the layout and every source are the inputs DIR's manifest
records (a full read of each source), then rebuilds once and compares with DIR.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from composer.check.compare import Side, diff_sides
from composer.check.diff import Change, read_sha256sums
from composer.check.provenance import current_record, layout_sha256
from composer.check.reorder import reversed_tar
from composer.check.verify import load_manifest, sparse_sha256
from composer.errors import ComposerError
from composer.layout.load import load_layout
from composer.outputs.manifest import EpochOrigin, Manifest


@dataclass(frozen=True, slots=True)
class Conditions:
    """What a build process runs under."""

    tz: str
    locale: str
    umask: int
    cwd: str  # shown relative to the temporary folder
    out: str

    def describe(self) -> str:
        return (f"TZ={self.tz} LC_ALL={self.locale} umask {self.umask:03o} cwd {self.cwd} "
                f"-o {self.out}")


REFERENCE_TZ, VARIED_TZ = "UTC", "Pacific/Chatham"  # +12:45/+13:45: no whole-hour offset
REFERENCE_UMASK, VARIED_UMASK = 0o022, 0o077


@dataclass(slots=True)
class ReproduceReport:
    identical: bool = True
    compared: list[str] = field(default_factory=list)  # output names compared
    differing: list[str] = field(default_factory=list)  # same name, other bytes
    missing: list[tuple[str, str]] = field(default_factory=list)  # (name, "first"|"second")
    changes: list[Change] = field(default_factory=list)  # manifest-level, from diff
    conditions: list[str] = field(default_factory=list)  # what each build ran under
    notes: list[str] = field(default_factory=list)  # what could not be varied, and why

    def to_obj(self) -> dict[str, object]:
        return {"identical": self.identical, "compared": self.compared,
                "differing": self.differing,
                "missing": [{"output": n, "in": s} for n, s in self.missing],
                "changes": [c.to_obj() for c in self.changes],
                "conditions": self.conditions, "notes": self.notes}


def varied_locale() -> str:
    """de_DE.ISO-8859-1 (another charset and decimal comma) if installed, else another."""
    try:
        listed = subprocess.run(["locale", "-a"], capture_output=True, text=True,
                                check=False).stdout.split()
    except OSError:
        listed = []
    norm = {name.lower().replace("-", ""): name for name in listed}
    for wanted in ("de_DE.iso88591", "de_DE.utf8", "en_US.iso88591", "POSIX"):
        if wanted.lower() in norm:
            return norm[wanted.lower()]
    return "POSIX"


def reproduce_layout(layout: Path, epoch_args: tuple[str, ...] = (),
                     keep: Path | None = None) -> ReproduceReport:
    """Build `layout` twice, the second time with everything varied that must not matter."""
    report = ReproduceReport()
    with _workspace(keep) as tmp:
        first = Conditions(REFERENCE_TZ, "C.UTF-8", REFERENCE_UMASK, "a", "a/out")
        second = Conditions(VARIED_TZ, varied_locale(), VARIED_UMASK, "b/cwd",
                            "b/elsewhere/deeper/out")
        mirrored = _mirror(layout.resolve(), tmp / "b" / "inputs", tmp / "b", report)
        _run_build(layout.resolve(), tmp, first, epoch_args, os.environ)
        _run_build(mirrored, tmp, second, epoch_args, os.environ)
        report.conditions = [f"first:  {first.describe()}",
                             f"second: {second.describe()}, tar sources in reversed member "
                             "order"]
        _compare(tmp / first.out, tmp / second.out, report)
    return report


def reproduce_folder(folder: Path, layout: Path | None,
                     keep: Path | None = None) -> ReproduceReport:
    """Check that the inputs are the ones `folder` was built from, rebuild, compare."""
    manifest = load_manifest(folder)
    prov = manifest.provenance
    if prov is None:
        raise ComposerError(f"{folder}/manifest.json records no provenance (a build by a "
                            "composer older than `reproduce`)", hint="build it again first")
    layout = layout if layout is not None else Path(prov.layout_file)
    check_inputs(manifest, layout)
    report = ReproduceReport()
    epoch_args, env = _recorded_epoch(manifest)
    with _workspace(keep) as tmp:
        again = Conditions(VARIED_TZ, varied_locale(), VARIED_UMASK, "cwd", "rebuilt/out")
        _run_build(layout.resolve(), tmp, again, epoch_args, env)
        report.conditions = [f"recorded: {folder}", f"rebuilt: {again.describe()}"]
        _compare(folder, tmp / again.out, report)
    return report


def check_inputs(manifest: Manifest, layout: Path) -> None:
    """ComposerError unless `layout` and its sources are those `manifest` records."""
    prov = manifest.provenance
    assert prov is not None
    if not layout.is_file():
        raise ComposerError(f"the build used the layout {prov.layout_file!r} (sha256 "
                            f"{prov.layout_sha256}); {layout} is not a file",
                            hint="give the layout's path with --layout")
    actual = layout_sha256(layout)
    if actual != prov.layout_sha256:
        raise ComposerError(f"{layout} is not the input the build used: its sha256 is {actual}, "
                            f"the build's layout had {prov.layout_sha256}")
    sources = load_layout(layout).sources
    for name, recorded in sorted(prov.sources.items()):
        now = current_record(name, sources[name].path)
        if now != recorded:
            raise ComposerError(
                f"source {name!r} ({sources[name].path}) is not the input the build used: its "
                f"tree digest is {now.tree_sha256}, the build's was {recorded.tree_sha256}",
                hint="restore the source the build read, or build anew")


def _recorded_epoch(manifest: Manifest) -> tuple[tuple[str, ...], Mapping[str, str]]:
    """The arguments and environment that give the rebuild the recorded epoch the way the build
    got it (its origin is part of the manifest)."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    origin = manifest.provenance.epoch_origin if manifest.provenance else None
    if origin == EpochOrigin.OPTION.value:
        return ("--source-date-epoch", str(manifest.epoch)), env
    if origin == EpochOrigin.ENVIRONMENT.value:
        env["SOURCE_DATE_EPOCH"] = str(manifest.epoch)
    return (), env


@contextmanager
def _workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=False)
        yield keep
        return
    tmp = Path(tempfile.mkdtemp(prefix="compose-reproduce-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mirror(layout: Path, root: Path, work: Path, report: ReproduceReport) -> Path:
    """The layout copied to `root` + its absolute path, each source beside it where the layout's
    relative paths look: tar archives reversed, everything else a symlink to the original."""
    sources = sorted(load_layout(layout).sources.values(), key=lambda s: len(s.path.parts))
    holding = [s.name for s in sources if layout.is_relative_to(s.path)]
    if holding:
        report.notes.append(f"source {holding[0]!r} holds the layout file: no source's member "
                            "order varied")
        return layout
    copy = root / layout.relative_to("/")
    copy.parent.mkdir(parents=True)
    shutil.copyfile(layout, copy)
    for source in sources:  # parents first: a source inside another is not made twice
        target = root / source.path.relative_to("/")
        if target.exists() or target.is_symlink():
            continue  # inside a source already mirrored
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.path.is_file():
            try:
                reversed_tar(source.path, target, work)
                continue
            except ComposerError as exc:
                report.notes.append(f"source {source.name!r}: member order not varied: "
                                    f"{exc.message}")
        target.symlink_to(source.path)
    # a source the layout names by an absolute path is read from where it is
    for source in load_layout(copy).sources.values():
        if source.path.is_file() and not source.path.is_relative_to(root):
            report.notes.append(f"source {source.name!r}: member order not varied: the "
                                "layout names it by an absolute path")
    return copy


def _run_build(layout: Path, tmp: Path, how: Conditions, epoch_args: tuple[str, ...],
               env: Mapping[str, str]) -> None:
    cwd = tmp / how.cwd
    cwd.mkdir(parents=True, exist_ok=True)
    (tmp / how.out).parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(env, TZ=how.tz, LC_ALL=how.locale, LANG=how.locale)

    def umask() -> None:
        os.umask(how.umask)

    done = subprocess.run([sys.executable, "-m", "composer", "-q", "build", str(layout), "-o",
                           str(tmp / how.out), *epoch_args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, preexec_fn=umask, check=False)
    if done.returncode != 0:
        raise ComposerError(f"the build under {how.describe()} failed:\n"
                            f"{done.stderr.strip()}")


def _compare(first: Path, second: Path, report: ReproduceReport) -> None:
    names_a = {p.name for p in first.iterdir() if p.name != ".compose"}
    names_b = {p.name for p in second.iterdir() if p.name != ".compose"}
    report.missing = [(n, "first") for n in sorted(names_b - names_a)] + \
        [(n, "second") for n in sorted(names_a - names_b)]
    for name in sorted(names_a & names_b):
        report.compared.append(name)
        if sparse_sha256(first / name) != sparse_sha256(second / name):
            report.differing.append(name)
    report.identical = not report.differing and not report.missing
    if not report.identical:
        sides = []
        for folder in (first, second):
            try:
                sides.append(Side(load_manifest(folder), read_sha256sums(folder / "SHA256SUMS"),
                                  folder))
            except (ComposerError, OSError):
                return  # no manifest to name entries with: the file names have to do
        report.changes = diff_sides(*sides)
