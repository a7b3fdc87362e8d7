"""Source archives made by Python's tarfile, GNU tar, GNU cpio and zip (never by composer's own
tar writer), built without root, and the outputs judged by GNU tar, debugfs and the manifest's
JSON: the last copy of a repeated member wins, hard links do not depend on member order, every
time is clamped to the epoch (ext4 too, compared with literal values), the epoch falls back to
the newest mtime, a member that climbs out is clamped and reported.

Each of the first two tests was seen failing against a mutant of the code under test: the first
copy of a repeated member kept (composer/sources/archive.py), the sort of each hard-link group
removed (composer/tree.py canonical_hardlinks)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import compose, need
from tests.judges import gnu_extract, gnu_tar_list
from tests.readback import published, sha256_of

EPOCH = 1718878001


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o644,
         mtime: str = "1700000000", link: str | None = None, kind: bytes = tarfile.REGTYPE,
         uid: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if name.endswith("/") else kind
    if link is not None:
        info.type, info.linkname = tarfile.LNKTYPE, link
    info.mode, info.uid, info.gid = mode, uid, uid
    info.mtime = int(mtime.split(".")[0])
    info.pax_headers = {"mtime": mtime} if "." in mtime else {}
    info.size = len(data) if data is not None else 0
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _layout(folder: Path, archive: str, partitions: str, epoch: str = f"epoch: {EPOCH}\n",
            files: str = "") -> Path:
    (folder / "layout.yaml").write_text(
        f"version: 1\nname: pinned\n{epoch}sources:\n  s: {archive}\npartitions:\n{partitions}"
        f"files:\n  - {{from: \"s:/\", to: /}}\n{files}")
    return folder / "layout.yaml"


def _build(folder: Path) -> Path:
    result = compose("build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "out"


def _debugfs(image: Path, command: str) -> str:
    need("debugfs")
    done = subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True,
                          text=True, errors="replace")
    assert done.returncode == 0, done.stderr
    return done.stdout


def _ext4_time(image: Path, path: str, which: str = "mtime") -> tuple[int, int]:
    """(seconds, ns) of an inode time, decoded from debugfs's 'secs:extra' hex as the kernel
    does (signed seconds, two epoch bits, 30 bits of ns)."""
    body = _debugfs(image, f"stat {path}")
    m = re.search(rf"\b{which}: 0x([0-9a-f]+):([0-9a-f]+)", body)
    assert m, body
    secs, extra = int(m.group(1), 16), int(m.group(2), 16)
    secs = secs - (1 << 32) if secs >= 1 << 31 else secs
    return secs + ((extra & 3) << 32), extra >> 2


# --- a member repeated in the archive: its last copy, as GNU tar and bsdtar extract ---------

def test_last_copy_of_a_repeated_member_wins(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for top in ("./t/", "./e/"):
            _add(tar, top, mode=0o755)
            _add(tar, f"{top}conf", b"first copy\n", mode=0o644, mtime="1600000000")
            _add(tar, f"{top}other", b"other\n")
            _add(tar, f"{top}conf", b"the last copy wins\n", mode=0o600, mtime="1650000000")
    want = gnu_extract(tmp_path / "s.tar", tmp_path / "want")  # GNU tar: the authority
    assert (want / "t/conf").read_bytes() == b"the last copy wins\n"
    _layout(tmp_path, "s.tar", "  - {name: e, fs: ext4, size: 8MiB, mount: /}\n"
            "  - {name: t, fs: tar, mount: /t}\n")
    out = _build(tmp_path)
    got = gnu_extract(out / "t.tar", tmp_path / "got")
    assert (got / "conf").read_bytes() == b"the last copy wins\n"
    assert (got / "conf").stat().st_mode & 0o7777 == 0o600
    listed = {m.name: m for m in gnu_tar_list(out / "t.tar")}
    assert sum(1 for m in gnu_tar_list(out / "t.tar") if m.name == "./conf") == 1
    assert listed["./conf"].size == len(b"the last copy wins\n")
    assert _debugfs(out / "e.img", "cat /e/conf") == "the last copy wins\n"
    assert "Mode:  0600" in _debugfs(out / "e.img", "stat /e/conf")
    assert _ext4_time(out / "e.img", "/e/conf") == (1650000000, 0)


# --- hard links: the same tree whichever name the archive gave the data to -----------------

def _linked_archive(path: Path, holder: str, order: list[str]) -> None:
    """./t/{a,b,c} and ./e/{a,b,c}, one inode each folder; `holder` carries the data and the
    others link to it, in `order`."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for top in ("./t/", "./e/"):
            _add(tar, top, mode=0o755)
            _add(tar, f"{top}{holder}", b"shared inode\n" * 100, mode=0o4755, uid=7)
            for name in order:
                if name != holder:
                    _add(tar, f"{top}{name}", link=f"{top}{holder}", mode=0o4755, uid=7)


def test_hard_links_do_not_depend_on_member_order(tmp_path: Path) -> None:
    builds = []
    for holder, order in (("a", ["b", "c"]), ("c", ["b", "a"]), ("b", ["c", "a"])):
        folder = tmp_path / holder
        folder.mkdir()
        _linked_archive(folder / "s.tar", holder, order)
        _layout(folder, "s.tar", "  - {name: e, fs: ext4, size: 8MiB, mount: /}\n"
                "  - {name: t, fs: tar, mount: /t}\n")
        builds.append(_build(folder))
    first = {p.name: sha256_of(p) for p in published(builds[0])}
    for other in builds[1:]:
        assert {p.name: sha256_of(p) for p in published(other)} == first
    # the first path in sorted order holds the data (README "Time, IDs and determinism")
    listed = {m.name: m for m in gnu_tar_list(builds[1] / "t.tar")}
    assert listed["./a"].mode.startswith("-") and listed["./a"].size == 1300
    assert listed["./b"].mode.startswith("h") and listed["./b"].link == "./a"
    assert listed["./c"].mode.startswith("h") and listed["./c"].link == "./a"
    assert (listed["./a"].uid, listed["./a"].gid) == (7, 7)
    image = builds[1] / "e.img"
    inodes = {n: re.search(r"Inode: (\d+)", _debugfs(image, f"stat /e/{n}")).group(1)  # type: ignore[union-attr]
              for n in "abc"}
    assert len(set(inodes.values())) == 1
    assert "Links: 3" in _debugfs(image, "stat /e/b")
    manifest = json.loads((builds[1] / "manifest.json").read_text())
    entries = {e["path"]: e for p in manifest["partitions"].values()
               for e in p["entries"]}
    assert entries["/e/a"]["kind"] == "file"
    assert entries["/e/b"]["kind"] == entries["/e/c"]["kind"] == "hardlink"
    assert entries["/e/b"]["target"] == "/e/a"


# --- time: every mtime clamped to the epoch, in ext4 as in tar -------------------------------

def _timed_archive(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "./d/", mode=0o755, mtime="2000000000")
        _add(tar, "./d/old", b"old\n", mtime="1000000000.250000000")
        _add(tar, "./d/future", b"future\n", mtime="2000000000.5")
        _add(tar, "./d/just", b"epoch\n", mtime=f"{EPOCH}")


def test_ext4_and_tar_times_are_clamped_to_the_epoch(tmp_path: Path) -> None:
    _timed_archive(tmp_path / "s.tar")
    _layout(tmp_path, "s.tar", "  - {name: e, fs: ext4, size: 8MiB, mount: /}\n"
            "  - {name: t, fs: tar, mount: /d}\n",
            files="  - {to: /made, content: \"x\\n\"}\n")
    out = _build(tmp_path)
    # ext4 via debugfs: literal values, the source's on one side only
    image = out / "e.img"
    assert _ext4_time(image, "/made") == (EPOCH, 0)  # what the rules make gets the epoch
    assert _ext4_time(image, "/d") == (EPOCH, 0)  # a mount point stays as a folder
    for which in ("mtime", "atime", "ctime"):
        assert _ext4_time(image, "/made", which) == (EPOCH, 0), which
    # tar via GNU tar --full-time (UTC): the source's 2033 and 2001 times
    listed = {m.name: m for m in gnu_tar_list(out / "t.tar")}
    assert set(listed) >= {"./", "./old", "./future", "./just"}
    raw = subprocess.run(["tar", "--full-time", "-tvf", str(out / "t.tar")], capture_output=True,
                         text=True, env=dict(os.environ, TZ="UTC")).stdout
    times = {line.split()[-1]: " ".join(line.split()[3:5]) for line in raw.splitlines()}
    assert times["./old"] == "2001-09-09 01:46:40.25"  # before: kept, with its ns
    assert times["./future"] == "2024-06-20 10:06:41"  # EPOCH, not 2033
    assert times["./just"] == "2024-06-20 10:06:41"


def test_ext4_times_of_source_files_are_clamped(tmp_path: Path) -> None:
    _timed_archive(tmp_path / "s.tar")
    _layout(tmp_path, "s.tar", "  - {name: e, fs: ext4, size: 8MiB, mount: /}\n")
    image = _build(tmp_path) / "e.img"
    assert _ext4_time(image, "/d/old") == (1000000000, 250000000)  # before: kept, ns too
    assert _ext4_time(image, "/d/future") == (EPOCH, 0)  # after: the epoch
    assert _ext4_time(image, "/d/just") == (EPOCH, 0)
    assert _ext4_time(image, "/d") == (EPOCH, 0)


def test_epoch_falls_back_to_the_newest_input_mtime(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "./a", b"a\n", mtime="1500000000")
        _add(tar, "./b", b"b\n", mtime="1600000007")
        _add(tar, "./c", b"c\n", mtime="1200000000")
    _layout(tmp_path, "s.tar", "  - {name: e, fs: ext4, size: 8MiB, mount: /}\n", epoch="",
            files="  - {to: /made, content: \"x\\n\"}\n")
    out = _build(tmp_path)
    assert json.loads((out / "manifest.json").read_text())["epoch"] == 1600000007
    assert _ext4_time(out / "e.img", "/made") == (1600000007, 0)
    assert _ext4_time(out / "e.img", "/a") == (1500000000, 0)
    # SOURCE_DATE_EPOCH wins over the fall-back, --source-date-epoch over both
    result = compose("build", "layout.yaml", "-o", "o2", "--source-date-epoch", "1400000000",
                     cwd=tmp_path, env={"SOURCE_DATE_EPOCH": "1300000000"})
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "o2/manifest.json").read_text())["epoch"] == 1400000000
    assert _ext4_time(tmp_path / "o2/e.img", "/b") == (1400000000, 0)
    result = compose("build", "layout.yaml", "-o", "o3", cwd=tmp_path,
                     env={"SOURCE_DATE_EPOCH": "1300000000"})
    assert json.loads((tmp_path / "o3/manifest.json").read_text())["epoch"] == 1300000000


# --- a member that climbs out of the source ---------------------------------------------------

def test_member_climbing_out_is_clamped_and_reported(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "../../etc/evil", b"evil\n")
        _add(tar, "./ok", b"ok\n")
    (tmp_path / "layout.yaml").write_text(
        f"version: 1\nname: t\nepoch: {EPOCH}\nsources:\n  s: s.tar\npartitions:\n"
        "  - {name: root, fs: tar, mount: /}\nfiles:\n  - {from: \"s:/\", to: /srv}\n")
    result = compose("build", "layout.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = "source 's': member '../../etc/evil' escapes the source; taken as '/etc/evil'"
    assert line in (tmp_path / "out/report.txt").read_text()
    assert line in result.stderr
    names = [m.name for m in gnu_tar_list(tmp_path / "out/root.tar")]
    assert "./srv/etc/evil" in names and "./srv/ok" in names
    assert not [n for n in names if ".." in n.split("/")]


# --- every archive kind the README names, made by its own tool --------------------------------

def _tree(root: Path) -> None:
    (root / "dir/sub").mkdir(parents=True)
    (root / "dir/sub/file.txt").write_bytes(b"text\n" * 50)
    (root / "dir/run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "dir/run.sh", 0o755)
    (root / "dir/link").symlink_to("sub/file.txt")


@pytest.mark.parametrize("kind", ["tar.gz", "tar.xz", "tar.zst", "cpio", "zip"])
def test_archive_kinds_from_their_own_tools(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    _tree(src)
    archive = tmp_path / f"s.{kind}"
    commands = {
        "tar.gz": ["tar", "-czf", str(archive), "."],
        "tar.xz": ["tar", "-cJf", str(archive), "."],
        "tar.zst": ["tar", "--zstd", "-cf", str(archive), "."],
        "cpio": ["sh", "-c", f"find . | sort | cpio -o -H newc --quiet > '{archive}'"],
        "zip": ["zip", "-qry", str(archive), "."],
    }
    need({"tar.gz": "gzip", "tar.xz": "xz", "tar.zst": "zstd", "cpio": "cpio",
          "zip": "zip"}[kind], "tar")
    subprocess.run(commands[kind], cwd=src, check=True)
    _layout(tmp_path, archive.name, "  - {name: t, fs: tar, mount: /}\n")
    got = gnu_extract(_build(tmp_path) / "t.tar", tmp_path / "got")
    assert (got / "dir/sub/file.txt").read_bytes() == b"text\n" * 50
    assert (got / "dir/run.sh").stat().st_mode & 0o777 == 0o755
    assert os.readlink(got / "dir/link") == "sub/file.txt"
