"""Partitions written side by side in child processes (composer/parallel.py) give the same bytes
as one process writing them in turn, and a failure in a child fails the build cleanly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from composer.build import build, plan
from composer.errors import ComposerError
from composer.fs.tar import TarWriter
from composer.parallel import can_fork, split
from tests.conftest import compose, copy_layouts
from tests.readback import published, sha256_of
from tests.stopkit import (
    assert_session_ends,
    assert_stopped_cleanly,
    read_until,
    session_members,
    start,
    stop_at,
)

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs fork(2)")

# the demo's partitions and inputs, smaller images, a GPT disk and every flashing output, so
# that a child makes bmap, simg and zst files too
LAYOUT = """version: 1
name: par
epoch: 1718878001
sources:
  golden: golden-device.tar.gz
  boot: boot/
partitions:
  - {name: boot,   fs: vfat, size: 64MiB, mount: /boot, label: BOOT}
  - {name: rootfs, fs: ext4, size: auto,  mount: /}
  - {name: docker, fs: ext4, size: auto,  mount: /var/lib/docker}
  - {name: app,    fs: tar,               mount: /opt/app}
docker:
  from: golden:/var/lib/docker
files:
  - {from: "boot:/", to: /boot}
  - {from: "golden:/opt/app", to: /opt/app}
  - {from: "golden:/etc", to: /etc}
disk:
  table: gpt
outputs: [simg, zst, sfdisk]
"""


def _project(folder: Path, golden: Path) -> Path:
    copy_layouts(folder, golden)
    (folder / "par.yaml").write_text(LAYOUT, encoding="utf-8")
    return folder / "par.yaml"


def _outputs(folder: Path) -> dict[str, str]:
    return {path.name: sha256_of(path) for path in published(folder)}


def test_parallel_build_equals_sequential_build(tmp_path: Path, golden: Path) -> None:
    layout = _project(tmp_path / "p", golden)
    one = compose("--debug", "build", str(layout), "-o", str(tmp_path / "one"), "--jobs", "1")
    assert one.returncode == 0, one.stderr
    assert "in a child process" not in one.stderr
    many = {}
    for jobs in (2, 4):
        out = tmp_path / f"jobs{jobs}"
        result = compose("--debug", "build", str(layout), "-o", str(out), "--jobs", str(jobs))
        assert result.returncode == 0, result.stderr
        # the parent keeps the heaviest partition; the others went to children
        children = [line for line in result.stderr.splitlines()
                    if line.startswith("debug:") and "in a child process" in line]
        assert len(children) == min(jobs, 4) - 1, result.stderr
        # and the progress says which partitions a child writes (it draws no bar of its own)
        said = [line for line in result.stderr.splitlines()
                if line.startswith("compose: writing") and "in a child process" in line]
        assert len(said) == 3, result.stderr
        many[jobs] = _outputs(out)
    first = _outputs(tmp_path / "one")
    assert {"boot.img", "rootfs.img", "docker.img", "app.tar", "disk.img", "manifest.json",
            "rootfs.img.zst", "boot.simg", "SHA256SUMS"} <= set(first)
    for jobs, outputs in many.items():
        assert outputs == first, f"--jobs {jobs} changed " + ", ".join(
            sorted(n for n in first if outputs.get(n) != first[n]))


def test_a_failing_child_fails_the_build_and_leaves_nothing(
        tmp_path: Path, golden: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = _project(tmp_path / "p", golden)
    the_plan = plan(layout)

    def broken(*_: object, **__: object) -> None:
        raise ComposerError("app: the disk is on fire", hint="call the fire brigade")

    monkeypatch.setattr(TarWriter, "write", broken)  # the forked child inherits it
    parent = os.getpid()
    out = tmp_path / "out"
    with pytest.raises(ComposerError) as caught:
        build(the_plan, out, jobs=2)
    assert caught.value.message == "app: the disk is on fire"
    assert caught.value.hint == "call the fire brigade"
    assert os.getpid() == parent
    assert not out.exists()  # made by this build, removed again


@pytest.mark.parametrize(("signum", "whole_group", "after"), [
    (signal.SIGINT, True, "in a child process"),    # Ctrl-C just after a fork
    (signal.SIGINT, False, "in a child process"),
    (signal.SIGTERM, False, "in a child process"),
    (signal.SIGINT, True, "compose: writing rootfs"),  # the parent writes, children too
    (signal.SIGTERM, False, "compose: writing rootfs"),
])
def test_a_stopped_parallel_build_ends_with_one_message_and_no_process_left(
        tmp_path: Path, golden: Path, signum: int, whole_group: bool, after: str) -> None:
    """The parent alone reports a stop: its children die of its SIGTERM without a word (they
    used to inherit its handler and print a traceback after its last line), and none is left."""
    layout = _project(tmp_path / "p", golden)
    out = tmp_path / "out"
    code, text, sid = stop_at(["build", str(layout), "-o", str(out), "--jobs", "4"], after,
                              signum, whole_group)
    assert_stopped_cleanly(code, text, signum)
    assert_session_ends(sid, 5)  # the parent joined its children before it exited
    assert not out.exists()


def test_children_of_a_killed_build_die_with_it(tmp_path: Path, golden: Path) -> None:
    """SIGKILL leaves the parent no cleanup; its children must not live on as orphans, writing
    into a staging folder and holding the output folder's lock so that the next build waits."""
    layout = _project(tmp_path / "p", golden)
    # 192 MiB more in rootfs and in app: the parent keeps the heavier, rootfs; a child writes
    # app, with seconds of work left to it when the parent is killed
    (tmp_path / "p" / "big").mkdir()
    with (tmp_path / "p" / "big" / "blob").open("wb") as f:
        for i in range(192):
            f.write(i.to_bytes(4, "big") * (1 << 18))
    layout.write_text(layout.read_text(encoding="utf-8").replace(
        "  boot: boot/\n", "  boot: boot/\n  big: big/\n").replace(
        "files:\n", "files:\n  - {from: \"big:/\", to: /opt/app/big}\n"
        "  - {from: \"big:/\", to: /etc/big}\n"), encoding="utf-8")
    out = tmp_path / "out"
    child = start(["build", str(layout), "-o", str(out), "--jobs", "4"])
    read_until(child, "compose: writing app (tar)")  # a child's line: "... in a child process"
    assert session_members(child.pid), "the build ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert_session_ends(child.pid, 1)  # the kernel ends them at once; their work takes longer
    again = compose("build", str(layout), "-o", str(out), "--jobs", "4")
    assert again.returncode == 0, again.stderr
    assert "waiting for the build" not in again.stderr


def test_split_keeps_the_heaviest_and_balances_the_rest() -> None:
    assert split([5, 100, 7, 1], 1) == ([0, 1, 2, 3], [])
    assert split([5, 100, 7, 1], 2) == ([1], [[0, 2, 3]])
    mine, groups = split([5, 100, 7, 1], 3)
    assert mine == [1] and sorted(groups) == [[0, 3], [2]]
    assert split([3], 8) == ([0], [])
