"""Bad input: one clear message with its location and a hint, exit code 1, nothing written."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, compose, copy_layouts, need

INVALID = REPO / "tests" / "layouts" / "invalid"


@pytest.mark.parametrize("layout", sorted(p.name for p in INVALID.glob("*.yaml")))
def test_invalid_layout_gets_its_exact_message(layout: str, tmp_path: Path) -> None:
    expected = (INVALID / layout).with_suffix(".err").read_text()
    result = compose("validate", layout, cwd=INVALID)
    assert result.returncode == 1
    assert result.stderr == expected
    assert result.stdout == ""
    out = tmp_path / "out"
    built = compose("-q", "build", layout, "-o", str(out), cwd=INVALID)
    assert built.returncode == 1 and built.stderr == expected
    assert not out.exists(), "a failed build must leave nothing behind"


def test_every_shipped_layout_validates(golden: Path, tmp_path: Path) -> None:
    copy_layouts(tmp_path / "l", golden)
    # docker-preload.yaml's archives, as its first comment says to make them
    subprocess.run([sys.executable, str(REPO / "tools" / "make_docker_images.py"),
                    str(tmp_path / "l" / "images")], check=True)
    for layout in sorted((tmp_path / "l").glob("*.yaml")):
        result = compose("validate", str(layout))
        assert result.returncode == 0, result.stderr


def _layout(folder: Path, archive: str) -> Path:
    (folder / "layout.yaml").write_text(
        f"version: 1\nname: t\nepoch: 1\nsources:\n  golden: {archive}\npartitions:\n"
        "  - {name: root, fs: tar, mount: /}\nfiles:\n  - {from: \"golden:/\", to: /srv}\n")
    return folder / "layout.yaml"


def _tar(path: Path, members: list[tuple[str, bytes | None, str | None]]) -> None:
    """A pax archive written by Python's tarfile (not by composer's tar writer, under test)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1
            if link is not None:
                info.type, info.linkname = tarfile.LNKTYPE, link
            else:
                info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(path: str, data: bytes) -> tuple[str, bytes, None]:
    return "." + path, data, None


def _run_failing(folder: Path, expected: list[str]) -> None:
    out = folder / "out"
    out.mkdir()
    (out / "keep.txt").write_text("from before")
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(expected), result.stderr
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want), (line, want)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "from before"


def test_truncated_archive(tmp_path: Path) -> None:
    _tar(tmp_path / "full.tar", [_file(f"/f{i}", bytes(range(256)) * 400) for i in range(8)])
    data = (tmp_path / "full.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    _layout(tmp_path, "cut.tar")
    _run_failing(tmp_path, [
        "error: layout.yaml:5:11: source 'golden': cut.tar is truncated or corrupt at member "
        "'./f4' (libarchive: ",
        "  hint: check the archive with 'tar -tvf', or capture it again"])


def test_corrupt_compressed_archive(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(b"\x00" * 512 + b"garbage" * 1000)
    blob = bytearray(raw.getvalue())
    blob[30:60] = b"\xff" * 30
    (tmp_path / "bad.tar.gz").write_bytes(bytes(blob))
    _layout(tmp_path, "bad.tar.gz")
    _run_failing(tmp_path, [
        "error: layout.yaml:5:11: source 'golden': bad.tar.gz is truncated or corrupt at member "
        "'(header)' (libarchive: ",
        "  hint: check the archive with 'tar -tvf', or capture it again"])


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("just text\n" * 100)
    _layout(tmp_path, "notes.txt")
    _run_failing(tmp_path, [
        "error: layout.yaml:5:11: source 'golden': notes.txt is truncated or corrupt at member "
        "'(header)' (libarchive: ",
        "  hint: check the archive with 'tar -tvf', or capture it again"])


def test_hard_link_to_a_missing_member(tmp_path: Path) -> None:
    _tar(tmp_path / "links.tar", [_file("/a", b"a"), ("./b", None, "./nowhere")])
    _layout(tmp_path, "links.tar")
    _run_failing(tmp_path, [
        "error: layout.yaml:5:11: source 'golden': member './b' is a hard link to './nowhere', "
        "which is not an earlier file in the archive",
        "  hint: the archive is damaged or was cut short"])


def test_hard_link_to_a_symlink_is_refused_by_name(tmp_path: Path) -> None:
    """GNU tar stores a second name of a symlink inode as a hard link member (extraction gives
    the symlink two names); composer refuses it with its own reason, not as damage."""
    need("tar")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "s").symlink_to("/etc/hostname")
    os.link(tree / "s", tree / "h", follow_symlinks=False)
    subprocess.run(["tar", "-cf", str(tmp_path / "links.tar"), "-C", str(tree), "s", "h"],
                   check=True)
    _layout(tmp_path, "links.tar")
    _run_failing(tmp_path, [
        "error: layout.yaml:5:11: source 'golden': member 'h' is a hard link to 's', a symlink: "
        "composer gives only regular files a second name",
        "  hint: in the snapshot, replace the hard link with a copy (a second symlink to the "
        "same target, or a second device node)"])


def test_secrets_fail_policy_lists_each_file_and_key(tmp_path: Path, golden: Path) -> None:
    shutil.copy(golden, tmp_path / "golden.tar.gz")
    (tmp_path / "layout.yaml").write_text(
        "version: 1\nname: t\nsources:\n  golden: golden.tar.gz\npartitions:\n"
        "  - {name: root, fs: tar, mount: /}\ngreengrass:\n  from: golden:/greengrass/v2\n"
        "  secrets: fail\n")
    result = compose("build", "layout.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: layout.yaml:8:3: greengrass.secrets: the snapshot holds the golden " \
        "device's secrets: " in result.stderr
    for name in ("config.tlog", "config.tlog~", "bootstrap.tlog", "bootstrap.tlog~",
                 "effectiveConfig.yaml", "effectiveConfig.yaml~"):
        assert f"/greengrass/v2/config/{name}: services.aws.greengrass.SecretManager.runtime." \
            "secretResponse" in result.stderr
    assert not (tmp_path / "out").exists()


def test_usage_error_exits_2() -> None:
    assert compose("build").returncode == 2
    assert compose("frobnicate").returncode == 2


def test_output_folder_that_is_a_file(demo: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("a file")
    result = compose("-q", "build", str(demo), "-o", str(target))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot write into the output folder {target}")
    assert target.read_text() == "a file"


def test_failed_build_removes_the_folders_it_made(demo: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from composer import build as build_module
    from composer.errors import ComposerError
    from composer.fs.tar import TarWriter

    def broken(*_: object, **__: object) -> None:
        raise ComposerError("the disk is on fire")

    monkeypatch.setattr(TarWriter, "write", broken)
    the_plan = build_module.plan(demo)
    with pytest.raises(ComposerError):
        build_module.build(the_plan, tmp_path / "a" / "b" / "c")
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("old")
    with pytest.raises(ComposerError):
        build_module.build(the_plan, tmp_path / "kept")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["old.txt"]


def test_negative_epoch(demo: Path) -> None:
    result = compose("validate", str(demo), "--source-date-epoch", "-5")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --source-date-epoch -5 is before 1970")
