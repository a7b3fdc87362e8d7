"""`compose diff` of two bare images reports entries first: images made by other tools
(`mke2fs -d`, GNU tar, mkfs.vfat + mcopy, sgdisk disks, img2simg and zstd containers) from two
folders that differ by one edit are reported as exactly that entry change and nothing else at
entry level, in text and JSON alike; the field-level bytes the change explains follow it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.checkkit import compose_json
from tests.conftest import compose, need, need_root

STAMP = 1700000000  # every entry's mtime in both folders: the edit is the only difference
UUID = "01234567-89ab-cdef-0123-456789abcdef"
BIG = bytes(range(256)) * 200  # 50 KiB: the file takes more blocks, the next file moves


def _base(folder: Path) -> Path:
    """f, g with its hard link h, a symlink l -> f, and d/x, all 0644/0755."""
    folder.mkdir()
    (folder / "f").write_text("hello\n")
    (folder / "g").write_text("world\n")
    os.link(folder / "g", folder / "h")
    os.symlink("f", folder / "l")
    (folder / "d").mkdir()
    (folder / "d" / "x").write_text("x\n")
    for path in (folder / "f", folder / "g", folder / "d" / "x"):
        path.chmod(0o644)
    for path in (folder, folder / "d"):
        path.chmod(0o755)
    return folder


def _stamped(folder: Path) -> Path:
    subprocess.run(["find", str(folder), "-exec", "touch", "-h", "-d", f"@{STAMP}", "{}", "+"],
                   check=True)
    return folder


def _add(f: Path) -> None:
    (f / "n").write_text("new\n")
    (f / "n").chmod(0o644)


def _chown(f: Path) -> None:
    need_root("chown to another user")
    os.chown(f / "f", 1000, 1001)


def _xattr(f: Path) -> None:
    need("setfattr")
    done = subprocess.run(["setfattr", "-n", "user.test", "-v", "hi", str(f / "f")],
                          capture_output=True, text=True)
    if done.returncode != 0:
        # no environment fact: CI's temporary folder takes user xattrs, so this fails there
        pytest.skip(f"the temporary folder takes no user xattrs: {done.stderr.strip()}")


def _retarget(f: Path) -> None:
    (f / "l").unlink()
    os.symlink("g", f / "l")


def _break_link(f: Path) -> None:
    (f / "h").unlink()
    shutil.copy2(f / "g", f / "h")


def _owner() -> list[int]:
    return [os.getuid(), os.getgid()]


# name -> (the edit, the entry change it must give: path, field, a, b as JSON has them)
EDITS: dict[str, tuple[Callable[[Path], None], tuple[str, str, object, object]]] = {
    "added": (_add, ("/n", "added", None, "file")),
    "removed": (lambda f: (f / "d" / "x").unlink(), ("/d/x", "removed", "file", None)),
    "chmod": (lambda f: (f / "f").chmod(0o600), ("/f", "mode", "0644", "0600")),
    "chown": (_chown, ("/f", "owner", "OWNER", [1000, 1001])),
    "xattr": (_xattr, ("/f", "xattrs", [], ["user.test"])),
    "symlink retarget": (_retarget, ("/l", "link target", "f", "g")),
    "hard link broken": (_break_link, ("/h", "hardlink group", "/g", None)),
    "content resized": (lambda f: (f / "f").write_bytes(BIG), ("/f", "content", [
        6, hashlib.sha256(b"hello\n").hexdigest()], [len(BIG), hashlib.sha256(BIG).hexdigest()])),
}


def _expected(name: str) -> tuple[str, str, object, object]:
    path, field, a, b = EDITS[name][1]
    return path, field, _owner() if a == "OWNER" else a, b


def _text(where: str, field: str, a: object, b: object) -> str:
    """The line `compose diff` prints for an entry change (composer/check/diff.py Change)."""
    if field in ("added", "removed"):
        return f"entry: {where} {field}"
    show = {"owner": lambda v: f"[{v[0]}, {v[1]}]", "xattrs": lambda v: repr(tuple(v))}
    shown = show.get(field, lambda v: "-" if v is None else str(v))
    return f"entry: {where} {field}: {shown(a)} -> {shown(b)}"


def _folders(tmp_path: Path, edit: str) -> tuple[Path, Path]:
    one = _stamped(_base(tmp_path / "one"))
    two = tmp_path / "two"
    shutil.copytree(one, two, symlinks=True)
    if (two / "h").stat().st_ino != (two / "g").stat().st_ino:  # copytree breaks links
        (two / "h").unlink()
        os.link(two / "g", two / "h")
    EDITS[edit][0](two)
    return one, _stamped(two)


def _mke2fs(folder: Path, image: Path) -> Path:
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-U", UUID, "-E", f"hash_seed={UUID}",
                    "-d", str(folder), str(image), "8M"], check=True, capture_output=True,
                   env={**os.environ, "E2FSPROGS_FAKE_TIME": str(STAMP)})
    done = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    return image


def _gnu_tar(folder: Path, archive: Path, *compress: str) -> Path:
    # pax keeps atime and ctime unless told not to: times no entry records, and reading the
    # folder moves the first; GNU tar leaves them out on request
    subprocess.run(["tar", "--sort=name", "--format=pax", "--xattrs", "--numeric-owner",
                    "--pax-option=delete=atime,delete=ctime",
                    *compress, "-cf", str(archive), "-C", str(folder), "."], check=True)
    return archive


def _entries(a: Path, b: Path) -> tuple[list[str], list[tuple], dict]:
    """The entry lines of `compose diff a b`, the entry changes of its --json, and the JSON."""
    done = compose("diff", str(a), str(b))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    code, data = compose_json("diff", str(a), str(b))
    assert code == 1
    lines = [line for line in done.stdout.splitlines() if line.startswith("entry:")]
    # entries first, then the fields they leave unexplained
    assert done.stdout.splitlines()[:len(lines)] == lines
    changes = [(c["where"], c["field"], c["a"], c["b"]) for c in data["changes"]
               if c["scope"] == "entry"]
    return lines, changes, data


def _exactly(a: Path, b: Path, where: str, change: tuple[str, str, object, object]) -> dict:
    path, field, x, y = change
    lines, changes, data = _entries(a, b)
    assert changes == [(f"{where}:{path}", field, x, y)]
    assert lines == [_text(f"{where}:{path}", field, x, y)]
    return data


@pytest.mark.parametrize("edit", list(EDITS))
def test_mke2fs_images_of_two_folders(edit: str, tmp_path: Path) -> None:
    need("mke2fs", "e2fsck", "debugfs")
    one, two = _folders(tmp_path, edit)
    a, b = _mke2fs(one, tmp_path / "a.img"), _mke2fs(two, tmp_path / "b.img")
    data = _exactly(a, b, "a.img", _expected(edit))
    # what the entry explains follows it; all that is left is what two mke2fs runs differ in
    # besides the edit: inode change and access times (the real ctime of each source file,
    # which no one can set, and the atime reading it moved), on inodes the edit does not
    # explain
    path = _expected(edit)[0]
    left = [c for c in data["changes"] if c["scope"] != "entry"]
    assert {c["field"] for c in left} <= {"i_ctime", "i_ctime_extra", "i_atime",
                                          "i_atime_extra"}, left
    assert not [c for c in left if f"({path})" in c["where"]]
    assert data["following"], "the image's own bytes follow the entry change"


@pytest.mark.parametrize("edit", list(EDITS))
def test_gnu_tar_archives_of_two_folders(edit: str, tmp_path: Path) -> None:
    need("tar")
    one, two = _folders(tmp_path, edit)
    a, b = _gnu_tar(one, tmp_path / "a.tar"), _gnu_tar(two, tmp_path / "b.tar")
    data = _exactly(a, b, "a.tar", _expected(edit))
    # a tar holds members alone: all it differs in is explained by the entries
    assert [c for c in data["changes"] if c["scope"] != "entry"] == []


def _vfat(folder: Path, image: Path) -> Path:
    # --invariant: the volume label entry's times are not the wall clock's (two images made
    # in different seconds would differ in them)
    subprocess.run(["mkfs.vfat", "--invariant", "-C", "-i", "12345678", "-n", "BOOT",
                    str(image), "4096"], check=True, capture_output=True)
    subprocess.run(["mcopy", "-s", "-m", "-i", str(image), *[str(p) for p in
                                                             sorted(folder.iterdir())], "::/"],
                   check=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(STAMP), "TZ": "UTC"})
    return image


def _listing(image: Path) -> set[str]:
    """The paths mtools lists (mdir -/ -b: one path a line, recursively)."""
    out = subprocess.run(["mdir", "-/", "-b", "-i", str(image), "::/"], capture_output=True,
                         text=True, check=True).stdout
    return {line.strip().removeprefix("::") for line in out.splitlines() if line.strip()}


@pytest.mark.parametrize(("edit", "change"), [
    ("added", ("/n", "added", None, "file")),
    ("removed", ("/d/x", "removed", "file", None)),
    ("content", ("/f", "content", [6, hashlib.sha256(b"hello\n").hexdigest()],
                 [6, hashlib.sha256(b"HELLO\n").hexdigest()])),
])
def test_mkfs_vfat_images_of_two_folders(edit: str, change: tuple, tmp_path: Path) -> None:
    need("mkfs.vfat", "mcopy", "mdir")
    one = _stamped(_base(tmp_path / "one"))
    for link in ("h", "l"):  # FAT holds neither
        (one / link).unlink()
    two = tmp_path / "two"
    shutil.copytree(one, two)
    {"added": _add, "removed": lambda f: (f / "d" / "x").unlink(),
     "content": lambda f: (f / "f").write_text("HELLO\n")}[edit](two)
    a, b = _vfat(one, tmp_path / "a.img"), _vfat(_stamped(two), tmp_path / "b.img")
    # mtools agrees on what each image holds
    assert _listing(a) ^ _listing(b) == ({change[0]} if edit != "content" else set())
    data = _exactly(a, b, "a.img", change)
    # its directory entry (or the slot it takes), data and clusters follow the entry change
    # (both images share the volume ID, label and times): no field is left over
    assert [c for c in data["changes"] if c["scope"] != "entry"] == []
    folder = change[0].rsplit("/", 1)[0] or "/"
    named = re.compile(rf"(directory entry |file data of ){re.escape(change[0])}( |$)|"
                       rf"free directory slot \d+ of {re.escape(folder)}$")
    assert any(named.search(f["where"]) or named.search(f["field"])
               for f in data["following"]), data["following"]


def test_disk_images_per_partition_and_in_containers(tmp_path: Path) -> None:
    need("mke2fs", "e2fsck", "sgdisk", "img2simg", "zstd", "mkfs.vfat", "mcopy", "mdir")
    one, two = _folders(tmp_path, "chmod")
    vfat_one = tmp_path / "vone"
    shutil.copytree(one, vfat_one, ignore=shutil.ignore_patterns("h", "l"))
    vfat_two = tmp_path / "vtwo"
    shutil.copytree(vfat_one, vfat_two)
    _add(vfat_two)
    disks = []
    for name, root, boot in (("one", one, vfat_one), ("two", two, vfat_two)):
        disk = tmp_path / f"{name}.img"
        with disk.open("wb") as f:
            f.truncate(16 << 20)
        subprocess.run(["sgdisk", "-U", UUID, "-n", "1:2048:+8M", "-c", "1:root",
                        "-u", f"1:{UUID}", "-n", "2:0:+4M", "-c", "2:boot", "-u",
                        "2:11111111-2222-3333-4444-555555555555", str(disk)],
                       check=True, capture_output=True)
        for number, image in ((1, _mke2fs(root, tmp_path / f"{name}-root.img")),
                              (2, _vfat(_stamped(boot), tmp_path / f"{name}-boot.img"))):
            start = int(subprocess.run(["sgdisk", "-i", str(number), str(disk)],
                                       capture_output=True, text=True, check=True)
                        .stdout.split("First sector: ")[1].split()[0])
            subprocess.run(["dd", f"if={image}", f"of={disk}", "bs=512", f"seek={start}",
                            "conv=notrunc,sparse", "status=none"], check=True)
        disks.append(disk)
    expected = [("one.img: partition 1 (root):/f", "mode", "0644", "0600"),
                ("one.img: partition 2 (boot):/n", "added", None, "file")]
    lines, changes, _ = _entries(*disks)
    assert changes == expected
    assert lines == [_text(*c) for c in expected]
    # the same images in containers: the same entries, named after A's file name
    simg = tmp_path / "two.simg"
    subprocess.run(["img2simg", str(disks[1]), str(simg)], check=True)
    zst = tmp_path / "one.img.zst"
    subprocess.run(["zstd", "-q", str(disks[0]), "-o", str(zst)], check=True)
    assert _entries(disks[0], simg)[1] == expected
    assert _entries(zst, simg)[1] == [(f"one.img.zst{w.removeprefix('one.img')}", f, x, y)
                                      for w, f, x, y in expected]


@pytest.mark.parametrize("compress", ["--gzip", "--xz", "--bzip2", "--zstd"])
def test_compressed_gnu_tar_archives(compress: str, tmp_path: Path) -> None:
    need("tar", "zstd", "gzip", "xz", "bzip2")
    one, two = _folders(tmp_path, "chmod")
    plain = _gnu_tar(one, tmp_path / "a.tar")
    packed = _gnu_tar(two, tmp_path / f"b.tar.{compress[2:]}", compress)
    _exactly(plain, packed, "a.tar", _expected("chmod"))
    same = _gnu_tar(one, tmp_path / f"c.tar.{compress[2:]}", compress)
    done = compose("diff", str(plain), str(same))
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    # inspect and verify's readers list what GNU tar lists
    listed = subprocess.run(["tar", "-tf", str(packed)], capture_output=True, text=True,
                            check=True).stdout.split()
    seen = json.loads(compose("inspect", str(packed), "--json").stdout)
    assert sorted(e["path"] for e in seen["entries"]) == \
        sorted({"/" + p.removeprefix("./").rstrip("/") if p != "./" else "/" for p in listed})
