"""Publishing under faults: the output folder always holds one complete build.

Judged by `sha256sum -c` (GNU coreutils) in the folder and by comparing the folder with builds
made undisturbed into other folders, after SIGKILL at every file-system call of publishing
(a forked build that dies with os._exit at call N, as abruptly as SIGKILL) and after real
SIGKILLs at a spread of times; plus concurrent builds, stale and foreign files, SIGINT/SIGTERM.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import compose
from tests.readback import published

FULL = "outputs: [simg, zst, sfdisk]\n"


def _project(folder: Path, extra: str = "", data_mib: int = 0) -> Path:
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "hello.txt").write_text("hello\n")
    if data_mib:  # random, so neither compression nor holes make writing it cheap
        (folder / "src" / "big.bin").write_bytes(os.urandom(data_mib << 20))
    (folder / "layout.yaml").write_text(
        "version: 1\nname: publish-test\nsources:\n  src: src/\n"
        "partitions:\n"
        "  - {name: boot, fs: vfat, size: 4MiB, mount: /boot}\n"
        "  - {name: rootfs.a, fs: ext4, size: auto, mount: /}\n"
        "  - {name: app, fs: tar, mount: /opt}\n"
        "files:\n  - {to: /etc/hostname, content: \"pub\\n\"}\n"
        "  - {to: /opt/data, from: \"src:/\"}\n"
        "  - {to: /boot/cmdline.txt, content: \"root=/dev/mmcblk0p2\\n\"}\n"
        "disk: {table: gpt}\n" + extra)
    return folder / "layout.yaml"


def _sums(folder: Path) -> str:
    return (folder / "SHA256SUMS").read_text()


def _check_folder(out: Path, references: list[str], foreign: set[str]) -> str:
    """The folder invariant: SHA256SUMS verifies, it is one reference build's, and the names
    that resolve are exactly that build's and the foreign files. Returns the SHA256SUMS."""
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    sums = _sums(out)
    assert sums in references
    listed = {line.split("  ", 1)[1] for line in sums.splitlines()}
    # a killed build's staging folder may remain until the next build (checked by _check_clean)
    resolving = {p.name for p in published(out) if p.exists()
                 and not p.name.startswith(".compose-")}
    assert resolving == listed | {"SHA256SUMS"} | foreign
    return sums


def _check_clean(out: Path) -> None:
    """After a completed build: no dangling link, one generation, no staging leftovers."""
    assert all(p.exists() for p in published(out))
    internal = sorted(p.name for p in (out / ".compose").iterdir())
    assert len(internal) == 3 and internal[0] == "current" and internal[2] == "lock", internal
    assert os.readlink(out / ".compose" / "current") == internal[1]
    assert not [p for p in out.iterdir() if p.name.startswith(".compose-")]


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two different builds (other epoch, other outputs) made undisturbed."""
    base = tmp_path_factory.mktemp("pub")
    old = _project(base / "old", FULL)
    new = _project(base / "new")
    for layout, epoch in ((old, "1700000000"), (new, "1800000000")):
        result = compose("build", str(layout), "-o", str(layout.parent / "ref"),
                         "--source-date-epoch", epoch)
        assert result.returncode == 0, result.stderr
    return {"old": old, "new": new, "sums": [_sums(old.parent / "ref"),
                                              _sums(new.parent / "ref")]}


def _fresh_old_build(out: Path, refs: dict[str, Any]) -> None:
    shutil.rmtree(out, ignore_errors=True)
    result = compose("build", str(refs["old"]), "-o", str(out), "--source-date-epoch",
                     "1700000000")
    assert result.returncode == 0, result.stderr
    (out / "notes.txt").write_text("mine, not composer's\n")


WATCHED = ("rename", "symlink", "unlink", "link", "rmdir", "fsync", "mkdir", "open")


def _die_at_call(n: int) -> Iterator[None]:
    """In a forked child: make the n-th watched os call that composer/publish.py makes end the
    process on the spot (the write phase before it is covered by the timed SIGKILLs below)."""
    count = [0]

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if not sys._getframe(1).f_code.co_filename.endswith("publish.py"):
                return original(*args, **kwargs)
            count[0] += 1
            if count[0] == n:
                os._exit(99)  # no cleanup, no finally: what SIGKILL leaves
            return original(*args, **kwargs)
        return call

    for name in WATCHED:
        setattr(os, name, wrap(getattr(os, name)))
    yield


def _forked_build(the_plan: Any, out: Path, n: int) -> int:
    """Build in a child that dies at watched call n (0: never); returns its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 98
        try:
            from composer.build import build
            for _ in _die_at_call(n):
                build(the_plan, out)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_death_at_every_publishing_call_leaves_one_complete_build(
        references: dict[str, Any], tmp_path: Path) -> None:
    from composer.build import plan

    the_plan = plan(references["new"], 1800000000)
    template = references["old"].parent / "ref"
    out = tmp_path / "out"
    n, deaths = 1, 0
    seen: set[str] = set()
    while True:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(template, out, symlinks=True)  # the old build, as published
        (out / "notes.txt").write_text("mine, not composer's\n")
        (out / ".compose-deadbeef").mkdir()  # a staging folder of a build from before
        code = _forked_build(the_plan, out, n)
        seen.add(_check_folder(out, references["sums"], {"notes.txt"}))
        if code == 0:
            break
        assert code == 99, code
        deaths += 1
        # the next build finishes the job and clears what the dead one left
        assert _forked_build(the_plan, out, 0) == 0
        assert _check_folder(out, references["sums"], {"notes.txt"}) == references["sums"][1]
        _check_clean(out)
        n += 1
    assert deaths > 30  # publishing took that many calls, and each one was a death point
    assert seen == set(references["sums"])  # some deaths left the old build, some the new
    _check_clean(out)
    assert _check_folder(out, references["sums"], {"notes.txt"}) == references["sums"][1]


def test_sigkill_at_a_spread_of_times(references: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    _fresh_old_build(out, references)
    started = time.monotonic()
    assert compose("-q", "build", str(references["new"]), "-o", str(tmp_path / "timing"),
                   "--source-date-epoch", "1800000000").returncode == 0
    duration = time.monotonic() - started
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    for step in range(12):
        epoch = ("1700000000", "1800000000")[step % 2]
        layout = references["old" if step % 2 == 0 else "new"]
        child = subprocess.Popen([sys.executable, "-m", "composer", "-q", "build", str(layout),
                                  "-o", str(out), "--source-date-epoch", epoch], env=env,
                                 stderr=subprocess.DEVNULL)
        time.sleep(duration * (0.3 + 0.7 * step / 11))
        child.send_signal(signal.SIGKILL)
        child.wait()
        _check_folder(out, references["sums"], {"notes.txt"})
    result = compose("build", str(references["new"]), "-o", str(out), "--source-date-epoch",
                     "1800000000")
    assert result.returncode == 0, result.stderr
    _check_clean(out)


def test_concurrent_builds_into_one_folder(references: dict[str, Any], tmp_path: Path) -> None:
    """Four builds meet at the lock: the test holds it until each says it waits (how long a
    build takes must not decide whether they overlap), then lets them race for it."""
    out = tmp_path / "out"
    (out / ".compose").mkdir(parents=True)
    held = os.open(out / ".compose" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(held, fcntl.LOCK_EX)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    children = [subprocess.Popen(
        [sys.executable, "-m", "composer", "build", str(references[which]), "-o", str(out),
         "--source-date-epoch", epoch], env=env, stderr=subprocess.PIPE, text=True)
        for which, epoch in (("old", "1700000000"), ("new", "1800000000"),
                             ("old", "1700000000"), ("new", "1800000000"))]
    errors = [""] * len(children)
    waiting = [threading.Event() for _ in children]

    def read(i: int) -> None:
        stream = children[i].stderr
        assert stream is not None
        for line in stream:
            errors[i] += line
            if "waiting for the build already writing into" in line:
                waiting[i].set()

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(children))]
    for reader in readers:
        reader.start()
    try:
        for i, event in enumerate(waiting):
            assert event.wait(120) or children[i].poll() is not None, errors[i]
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    for child, reader in zip(children, readers, strict=True):
        child.wait()
        reader.join()
    assert [child.returncode for child in children] == [0, 0, 0, 0], errors
    assert all(event.is_set() for event in waiting), errors
    _check_folder(out, references["sums"], set())
    _check_clean(out)


def test_rebuild_removes_stale_outputs_and_keeps_foreign_files(
        references: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    _fresh_old_build(out, references)
    assert {"disk.simg", "disk.img.zst", "disk.sfdisk", "rootfs.a.simg"} <= \
        {p.name for p in published(out)}
    (out / ".compose-0a1b2c3d").mkdir()  # a temp folder a killed older composer left
    (out / ".compose-0a1b2c3d" / "disk.img").write_bytes(b"\0" * 4096)
    result = compose("build", str(references["new"]), "-o", str(out), "--source-date-epoch",
                     "1800000000")
    assert result.returncode == 0, result.stderr
    names = {p.name for p in published(out)}
    assert not {n for n in names if n.endswith((".simg", ".zst", ".sfdisk"))}
    assert (out / "notes.txt").read_text() == "mine, not composer's\n"
    assert "notes.txt" not in _sums(out)
    assert _check_folder(out, references["sums"], {"notes.txt"}) == references["sums"][1]
    _check_clean(out)


def test_a_foreign_file_in_the_way_is_an_error(references: dict[str, Any],
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "rootfs.a.img").write_text("my own image\n")
    result = compose("-q", "build", str(references["new"]), "-o", str(out))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {out}/rootfs.a.img would be replaced by this build but no composer build made "
        "them\n  hint: move them away, or build into another folder (-o); composer leaves files "
        "it did not make alone\n")
    assert sorted(p.name for p in out.iterdir()) == ["rootfs.a.img"]
    assert (out / "rootfs.a.img").read_text() == "my own image\n"


def test_a_build_from_before_generations_is_taken_over(references: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """Real files and a real SHA256SUMS, as composer wrote them before this scheme."""
    out = tmp_path / "out"
    shutil.copytree(references["old"].parent / "ref", out, symlinks=False,
                    ignore=shutil.ignore_patterns(".compose"))
    assert not (out / "SHA256SUMS").is_symlink()
    (out / "notes.txt").write_text("mine\n")
    result = compose("build", str(references["new"]), "-o", str(out), "--source-date-epoch",
                     "1800000000")
    assert result.returncode == 0, result.stderr
    assert _check_folder(out, references["sums"], {"notes.txt"}) == references["sums"][1]
    _check_clean(out)


def test_a_sha256sums_of_the_users_own_does_not_make_their_files_ours(
        references: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    sums = subprocess.run(["sha256sum", "notes.txt"], cwd=out, capture_output=True, text=True)
    (out / "SHA256SUMS").write_text(sums.stdout)
    result = compose("-q", "build", str(references["new"]), "-o", str(out))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {out}/SHA256SUMS would be replaced by this build "
                                    "but no composer build made them\n")
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_build_exits_128_plus_signal_and_cleans_up(
        references: dict[str, Any], tmp_path: Path, signum: int, code: int) -> None:
    layout = _project(tmp_path / "p", data_mib=96)
    out = tmp_path / "out"
    _fresh_old_build(out, references)
    before = _sums(out)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    child = subprocess.Popen([sys.executable, "-m", "composer", "build", str(layout), "-o",
                              str(out), "--source-date-epoch", "1800000000"], env=env,
                             stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    for line in child.stderr:  # signal it once it writes into the staging folder
        if line.startswith("compose: writing rootfs.a"):
            break
    child.send_signal(signum)
    rest = child.stderr.read()
    assert child.wait() == code, rest
    assert rest.splitlines()[-1] == f"compose: stopped by {signal.Signals(signum).name}, " \
        "cleaned up"
    assert _sums(out) == before  # the old build is still what the folder shows
    _check_folder(out, references["sums"], {"notes.txt"})
    _check_clean(out)  # and the staging folder is gone


def test_interrupted_first_build_leaves_no_folder(tmp_path: Path) -> None:
    layout = _project(tmp_path / "p", data_mib=96)
    out = tmp_path / "new" / "out"
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    child = subprocess.Popen([sys.executable, "-m", "composer", "build", str(layout), "-o",
                              str(out), "--source-date-epoch", "1800000000"], env=env,
                             stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    for line in child.stderr:
        if line.startswith("compose: writing rootfs.a"):
            break
    child.send_signal(signal.SIGINT)
    child.stderr.read()
    assert child.wait() == 130
    assert not (tmp_path / "new").exists()


def test_a_failing_build_that_made_the_folder_spares_the_build_waiting_for_it(
        tmp_path: Path) -> None:
    """The first build makes DIR and fails while a second one waits for the lock: the first
    removes the folder it made, the second notices its lock file is gone, starts over, and
    publishes; nothing it publishes is removed."""
    from composer.publish import publish, staging

    out = tmp_path / "new" / "out"
    waiting = threading.Event()
    done: list[bool] = []

    def second() -> None:
        with staging(out, waiting.set) as stage:
            (stage.folder / "a.txt").write_text("second\n")
            sums = subprocess.run(["sha256sum", "a.txt"], cwd=stage.folder, capture_output=True,
                                  text=True, check=True).stdout
            (stage.folder / "SHA256SUMS").write_text(sums)
            publish(stage, ["a.txt", "SHA256SUMS"])
        done.append(True)

    thread = threading.Thread(target=second)
    with pytest.raises(RuntimeError), staging(out):
        thread.start()
        assert waiting.wait(10)
        raise RuntimeError("the first build fails")
    thread.join(10)
    assert done == [True]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True,
                           text=True)
    assert check.returncode == 0 and check.stdout == "a.txt: OK\n", check.stdout + check.stderr
    _check_clean(out)
