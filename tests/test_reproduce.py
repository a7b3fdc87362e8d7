"""`compose reproduce`: two builds under other TZ, umask, locale, paths and archive member order
give the same bytes; a planted nondeterminism is caught and named; a build folder is rebuilt
only from the inputs its manifest records."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import compose
from tests.readback import published


def _members(archive: Path) -> list[str]:
    return subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_the_demo_layout_reproduces(demo: Path, tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    done = compose("reproduce", str(demo), "--keep", str(keep), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["identical"] and report["notes"] == [] and report["differing"] == []
    first, second = keep / "a" / "out", keep / "b" / "elsewhere" / "deeper" / "out"
    assert report["compared"] == [p.name for p in published(first)]
    assert (first / "SHA256SUMS").read_bytes() == (second / "SHA256SUMS").read_bytes()
    # the second build really read the snapshot in another member order (GNU tar lists it)
    mirrored = keep / "b" / "inputs" / demo.parent.relative_to("/") / "golden-device.tar.gz"
    original = _members(demo.parent / "golden-device.tar.gz")
    again = _members(mirrored)
    assert sorted(again) == sorted(original) and again != original
    assert again[0] == original[-1]
    assert (keep / "b" / "inputs" / demo.parent.relative_to("/") / "boot").is_symlink()


def test_a_planted_wall_clock_is_caught_and_named(demo: Path) -> None:
    done = compose("reproduce", str(demo), env={"COMPOSER_TEST_WALLCLOCK": "app:/run.sh"})
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert "DIFFERS app.tar" in lines
    assert [line for line in lines if line.startswith("  ")] == \
        [line for line in lines if line.startswith("  entry: app:/run.sh mtime: ")]
    assert len([line for line in lines if line.startswith("  ")]) == 1
    # the other images are the same: only the tar and the files that list its digest differ
    assert sorted(line for line in lines if line.startswith("DIFFERS")) == \
        ["DIFFERS SHA256SUMS", "DIFFERS app.tar", "DIFFERS manifest.json"]


def test_a_build_folder_is_rebuilt_from_its_recorded_inputs(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # the epoch from the environment: the rebuild must take it the same way, or the manifest
    # (which records the epoch's origin) would differ
    built = compose("build", str(demo), "-o", str(out), env={"SOURCE_DATE_EPOCH": "1600000000"})
    assert built.returncode == 0, built.stderr
    done = compose("reproduce", str(out), cwd=demo.parent)  # the recorded name, found here
    assert done.returncode == 0, done.stderr + done.stdout
    # another source: refused before building
    other = shutil.copytree(demo.parent, tmp_path / "other")
    (other / "boot" / "config.txt").write_text("changed\n")
    done = compose("reproduce", str(out), "--layout", str(other / "demo.yaml"))
    assert done.returncode == 1
    assert "source 'boot'" in done.stderr and "is not the input the build used" in done.stderr
    (other / "demo.yaml").write_text(demo.read_text().replace("gg-device", "gg-other"))
    done = compose("reproduce", str(out), "--layout", str(other / "demo.yaml"))
    assert done.returncode == 1 and "is not the input the build used" in done.stderr
    assert "demo.yaml" in done.stderr


def test_bad_arguments_exit_2(demo: Path, tmp_path: Path) -> None:
    assert compose("reproduce", str(tmp_path / "nowhere")).returncode == 2
    assert compose("reproduce", str(demo), "--layout", str(demo)).returncode == 2
    assert compose("reproduce", str(tmp_path), "--source-date-epoch", "5").returncode == 2
