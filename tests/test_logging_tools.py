"""Logging and external commands: `--debug` logs decisions and timings on stderr (and nothing
changes without it); zstd runs with a pinned environment and /dev/null as stdin; a missing zstd
fails `validate` (and `build`, before anything is written) with a located message and a hint."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from composer.outputs.compress import compress_zstd
from tests.conftest import compose

LAYOUT = """\
version: 1
name: small
epoch: 1700000000
sources:
  files: files/
partitions:
  - {name: boot, fs: vfat, size: 8MiB, mount: /}
files:
  - {from: "files:/", to: /}
outputs: [zst]
"""

needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd command")


def _project(folder: Path) -> Path:
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "hello.txt").write_text("hello\n")
    layout = folder / "small.yaml"
    layout.write_text(LAYOUT)
    return layout


@needs_zstd
def test_debug_logs_decisions_and_timings(tmp_path: Path) -> None:
    layout = _project(tmp_path)
    quiet = compose("build", str(layout), "-o", str(tmp_path / "a"))
    loud = compose("build", str(layout), "-o", str(tmp_path / "b"), "--debug")
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "debug:" not in quiet.stderr  # nothing changes at the default verbosity
    debug = [ln for ln in loud.stderr.splitlines() if ln.startswith("debug:")]
    text = "\n".join(debug)
    assert "composer.build: epoch 1700000000, from the layout" in text
    assert "composer.build: boot: vfat, 8388608 bytes (given)" in text
    assert "composer.fs.vfat: boot: FAT16, 8143 clusters" in text
    assert "composer.build: wrote boot.img: 8388608 bytes" in text
    assert "composer.tools: ran " in text and "zstd" in text
    others = [ln for ln in loud.stderr.splitlines() if not ln.startswith("debug:")]
    assert "\n".join(others).replace(f"{tmp_path}/b/", f"{tmp_path}/a/") == \
        quiet.stderr.rstrip("\n")  # the same messages, plus the log
    assert (tmp_path / "a" / "boot.img.zst").read_bytes() == \
        (tmp_path / "b" / "boot.img.zst").read_bytes()


def test_missing_zstd_fails_validate_and_build_before_writing(tmp_path: Path) -> None:
    layout = _project(tmp_path)
    no_tools = {"PATH": str(tmp_path / "empty-bin")}
    checked = compose("validate", str(layout), env=no_tools)
    assert checked.returncode == 1, checked.stderr
    assert checked.stderr == (
        f"error: {layout}:10:11: outputs[0]: zst needs the `zstd` command, which is not on "
        "PATH\n  hint: install it (Debian/Ubuntu package: zstd), or drop zst\n")
    built = compose("build", str(layout), "-o", str(tmp_path / "out"), env=no_tools)
    assert built.returncode == 1 and built.stderr == checked.stderr
    assert not (tmp_path / "out").exists()


@needs_zstd
def test_zstd_runs_with_a_pinned_environment_and_no_stdin(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which("zstd")
    log = tmp_path / "seen"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "zstd"
    fake.write_text(f"#!/bin/sh\nenv > {log}\nreadlink /proc/self/fd/0 >> {log}\n"
                    f'exec {real} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    monkeypatch.setenv("ZSTD_CLEVEL", "19")  # zstd's own knobs must not reach it
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    image = tmp_path / "x.img"
    image.write_bytes(b"composer" * 1000)
    read, write = os.pipe()  # a stdin the command could block on, unlike the test's own
    saved = os.dup(0)
    os.dup2(read, 0)
    try:
        compress_zstd(image, tmp_path / "x.img.zst")
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read, write):
            os.close(fd)
    *env_lines, stdin = log.read_text().splitlines()
    env = dict(line.split("=", 1) for line in env_lines)
    assert stdin == "/dev/null"
    assert env["LC_ALL"] == "C" and env["PATH"].startswith(str(fake_bin))
    assert "ZSTD_CLEVEL" not in env and "TZ" not in env
    done = subprocess.run([real, "-dc", str(tmp_path / "x.img.zst")], capture_output=True,
                          check=True)
    assert done.stdout == image.read_bytes()
