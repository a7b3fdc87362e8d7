"""Publishing a build folder: staging, a lock, one atomic switch, and cleanup of dead builds.

The guarantee: at every instant, even after SIGKILL at any system call, `DIR/` shows either the
previous complete build or the new complete build, and `DIR/SHA256SUMS` matches what is there.

A set of files cannot be replaced atomically on Linux (rename(2) moves one name), so the bytes
live in a generation folder and one symlink says which generation is current:

    DIR/.compose/lock              flock(2)ed for the whole build: one build per folder at a time
    DIR/.compose/gen-XXXXXXXX/     one build's outputs, written here (the staging folder)
    DIR/.compose/current           symlink -> gen-XXXXXXXX: the published build
    DIR/NAME                       symlink -> .compose/current/NAME, one per output

The switch is rename(2) of a fresh symlink over `.compose/current`, which POSIX makes atomic
("If newpath already exists, it will be atomically replaced", rename(2)). The per-output links
never change their target; a link for a name only the new build has dangles until the switch,
and a stale name's link dangles from the switch until it is removed, so at no instant does a
name resolve to a file of the other build, and SHA256SUMS (itself such a link) always lists
exactly the files that resolve. Dangling links and generation folders left by a killed build
are removed by the next build, under the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ComposerError
from composer.layout.model import MANIFEST, REPORT, SUMS

INTERNAL = ".compose"  # composer's own folder inside DIR
CURRENT = "current"
LOCK = "lock"
GENERATION = "gen-"
NEXT = "next-"
LEGACY_STAGING = ".compose-"  # what builds before the generation scheme left when killed
LINK_PREFIX = f"{INTERNAL}/{CURRENT}/"


@dataclass(frozen=True, slots=True)
class Staging:
    """The folder a build writes its outputs into, inside DIR (so rename and link stay on one
    file system)."""

    out: Path
    folder: Path


def _fail(out: Path, what: str, exc: OSError) -> ComposerError:
    return ComposerError(f"cannot write into the output folder {out}: {exc.strerror or exc} "
                         f"(while trying to {what})",
                         hint="-o must name a folder (or a path to make one) on a local file "
                         "system that this user can write to")


@contextlib.contextmanager
def staging(out: Path, wait: Callable[[], None] = lambda: None) -> Iterator[Staging]:
    """Lock `out`, clear what dead builds left, and give a fresh staging folder.

    `wait` is called once when another build holds the lock (this one then waits for it).
    On any exception (including KeyboardInterrupt) the staging folder is removed, and `out`
    too when this build created it and nothing was ever published into it.
    """
    created = _first_missing(out)
    lock_fd = _lock(out, wait)
    folder: Path | None = None
    try:
        _sweep(out)
        try:
            folder = Path(_make_generation(out / INTERNAL))
        except OSError as exc:
            raise _fail(out, "make a staging folder", exc) from None
        yield Staging(out, folder)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        _sweep_links(out)
        if not (out / INTERNAL / CURRENT).is_symlink():  # nothing was ever published here
            _remove_created(out, created)
        raise
    finally:
        os.close(lock_fd)


def _make_generation(internal: Path) -> str:
    while True:
        path = internal / f"{GENERATION}{secrets.token_hex(8)}"
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            continue
        os.chmod(path, 0o755)  # whatever the umask: the published files are for everyone
        return str(path)


def _lock(out: Path, wait: Callable[[], None]) -> int:
    """An exclusive flock on DIR/.compose/lock, taken on the file the path names now.

    A failing build that made DIR removes it again; a build that was waiting then holds a lock
    on a removed file, so it checks that its file is still the one at the path and retries.
    """
    waited = False
    while True:
        try:
            (out / INTERNAL).mkdir(parents=True, exist_ok=True)
            fd = os.open(out / INTERNAL / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _fail(out, "take the build lock", exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    wait()
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            same = os.fstat(fd).st_ino == os.stat(out / INTERNAL / LOCK).st_ino
        except FileNotFoundError:
            same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)


def previous_outputs(out: Path) -> frozenset[str]:
    """The names the published build (or a build from before generations) put into DIR."""
    sums = out / INTERNAL / CURRENT / SUMS
    if sums.exists():
        return frozenset({SUMS, *_listed(sums)})
    return _legacy_outputs(out)


def _legacy_outputs(out: Path) -> frozenset[str]:
    """A build from before generations: real files in DIR. Only a real SHA256SUMS *and* a real
    manifest.json that composer wrote count, and only names both list: a SHA256SUMS of the
    user's own must never make their files look like ours (stale outputs get removed)."""
    sums, manifest = out / SUMS, out / MANIFEST
    if any(p.is_symlink() or not p.is_file() for p in (sums, manifest)):
        return frozenset()
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(record, dict) or "composer" not in record or \
            not isinstance(record.get("outputs"), list):
        return frozenset()
    made = {n for n in record["outputs"] if isinstance(n, str)} | {MANIFEST, REPORT}
    return frozenset({SUMS, *(_listed(sums) & made)})


def _listed(sums: Path) -> set[str]:
    try:
        text = sums.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    names = {line.split("  ", 1)[1] for line in text.splitlines() if "  " in line}
    return {n for n in names if _plain_name(n)}


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name


def is_ours(out: Path, name: str) -> bool:
    path = out / name
    return path.is_symlink() and os.readlink(path) == LINK_PREFIX + name


def check_names(out: Path, names: Iterable[str]) -> None:
    """Refuse to publish over files in DIR that no composer build made (before any writing)."""
    previous = previous_outputs(out)
    foreign = sorted(name for name in names if os.path.lexists(out / name)
                     and not is_ours(out, name) and name not in previous)
    if foreign:
        listed = ", ".join(str(out / name) for name in foreign)
        raise ComposerError(f"{listed} would be replaced by this build but no composer build "
                            "made them", hint="move them away, or build into another folder "
                            "(-o); composer leaves files it did not make alone")


def publish(stage: Staging, names: list[str]) -> None:
    """Make `names` in the staging folder the published build, atomically (see the module)."""
    out = stage.out
    previous = previous_outputs(out)
    try:
        _fsync_files(stage.folder, names)
        _adopt_legacy(out, previous)
        check_names(out, names)  # again: a file may have appeared while we wrote
        for name in names:
            if not is_ours(out, name):
                _link(out, name)
        _fsync_dir(out)
        _switch(out, stage.folder.name)
    except OSError as exc:
        raise _fail(out, "publish the build", exc) from None
    # from here on the new build is published; what follows only tidies up
    for name in sorted(previous - set(names)):
        if is_ours(out, name):
            with contextlib.suppress(OSError):
                os.unlink(out / name)
    _sweep(out)
    with contextlib.suppress(OSError):
        _fsync_dir(out)


def _link(out: Path, name: str) -> None:
    """DIR/name -> .compose/current/name, replacing a composer output of an older build."""
    tmp = out / INTERNAL / f"{NEXT}{secrets.token_hex(8)}"
    os.symlink(LINK_PREFIX + name, tmp)
    os.rename(tmp, out / name)


def _switch(out: Path, generation: str) -> None:
    internal = out / INTERNAL
    tmp = internal / f"{NEXT}{secrets.token_hex(8)}"
    os.symlink(generation, tmp)
    os.rename(tmp, internal / CURRENT)
    _fsync_dir(internal)


def _adopt_legacy(out: Path, previous: frozenset[str]) -> None:
    """Turn a build from before generations (real files in DIR) into a generation, without a
    moment where a name shows other bytes: hard link the files into a generation, make it
    current, then replace each real file by a link to the same bytes."""
    if (out / INTERNAL / CURRENT).is_symlink():
        return
    legacy = [n for n in sorted(previous) if (out / n).is_file() and not (out / n).is_symlink()]
    if not legacy:
        return
    folder = Path(_make_generation(out / INTERNAL))
    for name in legacy:
        try:
            os.link(out / name, folder / name)
        except OSError:
            shutil.copy2(out / name, folder / name)
    _fsync_files(folder, legacy)
    _switch(out, folder.name)
    for name in legacy:
        _link(out, name)


def _sweep(out: Path) -> None:
    """Remove what dead builds left: generation folders that are not current, temporary
    links, dangling output links, and staging folders of builds from before generations."""
    internal = out / INTERNAL
    current = os.readlink(internal / CURRENT) if (internal / CURRENT).is_symlink() else None
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(internal):
            if entry.name.startswith(GENERATION) and entry.name != current:
                shutil.rmtree(entry.path, ignore_errors=True)
            elif entry.name.startswith(NEXT):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    _sweep_links(out)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(out):
            # mkdtemp(prefix=".compose-") staging folders of builds before generations
            if entry.name.startswith(LEGACY_STAGING) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def _sweep_links(out: Path) -> None:
    """Output links that resolve to nothing: left by a build killed around its switch."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(out):
            if is_ours(out, entry.name) and not os.path.exists(entry.path):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _fsync_files(folder: Path, names: Iterable[str]) -> None:
    """Bytes on disk before the switch points at them: after a power cut, current is complete."""
    for name in names:
        fd = os.open(folder / name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS):  # some file systems cannot
            raise
    finally:
        os.close(fd)


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None when it all exists)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_created(out: Path, created: Path | None) -> None:
    """Leave DIR as it was: remove composer's own folder, and the folders this build made, but
    only while they hold nothing else (another build or a user may have put something there)."""
    internal = out / INTERNAL
    with contextlib.suppress(OSError):
        if {entry.name for entry in os.scandir(internal)} <= {LOCK}:
            os.unlink(internal / LOCK)
            os.rmdir(internal)
    if created is None:
        return
    path = out
    while True:
        try:
            os.rmdir(path)  # only succeeds on an empty folder
        except OSError:
            return
        if path == created:
            return
        path = path.parent
