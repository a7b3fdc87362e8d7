"""POSIX ACLs: from a folder (xattrs) and from a `tar --acls` archive (libarchive's ACL entries)
they end up the same, and the kernel reads them back from the ext4 image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from composer.acl import ACCESS_XATTR, DEFAULT_XATTR, acl_xattr, mask_bits
from tests.conftest import compose, env_skip

NEEDS = [t for t in ("setfacl", "getfacl", "tar") if shutil.which(t) is None]


def test_acl_xattr_form() -> None:
    # user::rw- user:1000:rw- group::r-- group:2000:r-- mask::rw- other::--- (libarchive tags)
    value = acl_xattr([(10002, 6, -1), (10001, 6, 1000), (10004, 4, -1), (10003, 4, 2000),
                       (10005, 6, -1), (10006, 0, -1)])
    assert value is not None
    assert value.hex() == ("02000000" "01000600ffffffff" "02000600e8030000" "04000400ffffffff"
                           "08000400d0070000" "10000600ffffffff" "20000000ffffffff")
    assert mask_bits(value) == 6
    assert acl_xattr([(10002, 6, -1), (10004, 4, -1), (10006, 4, -1)]) is None  # trivial


def _tree(root: Path) -> bool:
    (root / "d").mkdir(parents=True)
    (root / "f").write_text("hi\n")
    os.chmod(root / "f", 0o640)
    os.utime(root / "f", (1_700_000_000, 1_700_000_000))
    os.utime(root / "d", (1_700_000_000, 1_700_000_000))
    os.utime(root, (1_700_000_000, 1_700_000_000))
    ok = subprocess.run(["setfacl", "-m", "u:1000:rw,g:2000:r", str(root / "f")],
                        capture_output=True).returncode == 0
    ok = ok and subprocess.run(["setfacl", "-d", "-m", "u:1000:rwx", str(root / "d")],
                               capture_output=True).returncode == 0
    return ok


@pytest.mark.skipif(bool(NEEDS), reason=f"needs {NEEDS}")
def test_folder_and_archive_give_the_same_image(tmp_path: Path) -> None:
    src = tmp_path / "src"
    if not _tree(src):
        env_skip("no-acls", "this file system does not take ACLs")
    assert os.getxattr(src / "f", ACCESS_XATTR)
    subprocess.run(["tar", "--acls", "--xattrs", "--numeric-owner", "-cf",
                    str(tmp_path / "src.tar"), "-C", str(src), "."], check=True)
    outputs = {}
    for name, where in (("folder", "src/"), ("archive", "src.tar")):
        (tmp_path / f"{name}.yaml").write_text(
            f"version: 1\nname: acl\nepoch: 1700000000\nsources:\n  s: {where}\npartitions:\n"
            "  - {name: root, fs: ext4, mount: /}\nfiles:\n  - {from: \"s:/\", to: /}\n")
        result = compose("-q", "build", f"{name}.yaml", "-o", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        outputs[name] = (tmp_path / name / "root.img").read_bytes()
    assert outputs["folder"] == outputs["archive"]
    stat = subprocess.run(["debugfs", "-R", "stat /f", str(tmp_path / "archive" / "root.img")],
                          capture_output=True, text=True).stdout
    assert "Mode:  0660" in stat  # the mask, as Linux shows it
    eas = subprocess.run(["debugfs", "-R", "ea_list /d", str(tmp_path / "archive" / "root.img")],
                         capture_output=True, text=True).stdout
    assert DEFAULT_XATTR in eas


@pytest.mark.skipif(bool(NEEDS) or os.geteuid() != 0, reason="needs root, setfacl and getfacl")
def test_kernel_reads_the_acls(tmp_path: Path) -> None:
    src = tmp_path / "src"
    if not _tree(src):
        env_skip("no-acls", "this file system does not take ACLs")
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "-cf",
                    str(tmp_path / "src.tar"), "-C", str(src), "."], check=True)
    (tmp_path / "l.yaml").write_text(
        "version: 1\nname: acl\nepoch: 1700000000\nsources:\n  s: src.tar\npartitions:\n"
        "  - {name: root, fs: ext4, mount: /}\nfiles:\n  - {from: \"s:/\", to: /}\n")
    assert compose("-q", "build", "l.yaml", "-o", "o", cwd=tmp_path).returncode == 0
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop,ro", str(tmp_path / "o" / "root.img"), str(mnt)],
                   check=True)
    try:
        got = subprocess.run(["getfacl", "-n", "--omit-header", "f", "d"], cwd=mnt,
                             capture_output=True, text=True, check=True).stdout
        want = subprocess.run(["getfacl", "-n", "--omit-header", "f", "d"], cwd=src,
                              capture_output=True, text=True, check=True).stdout
        assert got == want
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.skipif(bool(NEEDS), reason=f"needs {NEEDS}")
def test_acl_with_names_only_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    if not _tree(src):
        env_skip("no-acls", "this file system does not take ACLs")
    subprocess.run(["setfacl", "-m", "u:root:r", str(src / "f")], check=True)  # a named user
    subprocess.run(["tar", "--acls", "-cf", str(tmp_path / "src.tar"), "-C", str(src), "."],
                   check=True)  # no --xattrs: GNU tar then stores names only
    (tmp_path / "l.yaml").write_text(
        "version: 1\nname: acl\nepoch: 1700000000\nsources:\n  s: src.tar\npartitions:\n"
        "  - {name: root, fs: ext4, mount: /}\nfiles:\n  - {from: \"s:/\", to: /}\n")
    result = compose("-q", "build", "l.yaml", "-o", "o", cwd=tmp_path)
    assert result.returncode == 1
    assert "member './f' has an ACL that names '" in result.stderr
    assert "without a numeric id" in result.stderr
    assert "hint: capture with tar --xattrs --acls" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(bool(NEEDS) or shutil.which("bsdtar") is None,
                    reason="needs setfacl, getfacl, tar and bsdtar")
def test_tar_partition_acls_are_restored_by_gnu_tar_and_bsdtar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    if not _tree(src):
        env_skip("no-acls", "this file system does not take ACLs")
    (tmp_path / "l.yaml").write_text(
        "version: 1\nname: acl\nepoch: 1700000000\nsources:\n  s: src/\npartitions:\n"
        "  - {name: root, fs: tar, mount: /}\nfiles:\n  - {from: \"s:/\", to: /}\n")
    assert compose("-q", "build", "l.yaml", "-o", "o", cwd=tmp_path).returncode == 0
    tar = str(tmp_path / "o" / "root.tar")
    (tmp_path / "gnu").mkdir()
    (tmp_path / "bsd").mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--acls", "-xf", tar, "-C",
                    str(tmp_path / "gnu")], check=True, capture_output=True)
    subprocess.run(["bsdtar", "--acls", "--xattrs", "-xpf", tar, "-C", str(tmp_path / "bsd")],
                   check=True, capture_output=True)

    def acls(root: Path) -> str:
        return subprocess.run(["getfacl", "-n", "--omit-header", "f", "d"], cwd=root,
                              capture_output=True, text=True, check=True).stdout

    assert "user:1000:rw-" in acls(src)
    assert acls(tmp_path / "gnu") == acls(src)
    assert acls(tmp_path / "bsd") == acls(src)
