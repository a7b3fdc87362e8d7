"""composer/fs/ext4/reader.py against debugfs (ls -p, stat, dump, ea_get through the ext4
harness of tests/fs/conftest.py) on composer's images and `mke2fs -d` images, `compose inspect`
and `verify --deep` on ext4 partitions, and hostile images: one clear error each."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.fs.ext4.reader import Ext4Reader
from composer.tree import Entry, Kind
from tests.checkkit import build_demo, compose_json, copy_build, flip_byte
from tests.conftest import compose
from tests.fs.conftest import NS, Ext4Harness, Ext4Node
from tests.fs.test_ext4 import kitchen_sink

ACLS = ("system.posix_acl_access", "system.posix_acl_default")  # debugfs shows another form


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Ext4Harness:
    return Ext4Harness(tmp_path_factory.mktemp("ext4read"))


def _read(img: Path) -> dict[str, Ext4Node]:
    """The tree as our reader sees it, in the harness's terms."""
    nodes: dict[str, Ext4Node] = {}
    with img.open("rb") as f:
        reader = Ext4Reader(f, img.name)
        for e in reader.entries():
            i = e.inode
            node = Ext4Node(e.kind.value, i.mode & 0o7777, i.uid, i.gid, i.mtime * NS + i.mtime_ns,
                            i.links, ino=i.number, target=e.target, rdev=e.rdev or (0, 0))
            if e.kind is Kind.FILE:
                node.size = i.size
                node.data = b"".join(reader.chunks(i))
            node.xattrs = {n.decode(): v for n, v in reader.xattrs(i)}
            nodes[e.path.decode("utf-8", "surrogateescape")] = node
    return nodes


def _agree(harness: Ext4Harness, img: Path) -> dict[str, Ext4Node]:
    theirs = harness.read_tree(img, same_times=False)
    mine = _read(img)
    assert sorted(mine) == sorted(theirs)
    for path, node in theirs.items():
        got = mine[path]
        for acl in ACLS:  # the names must agree; the values debugfs converts
            assert (acl in got.xattrs) == (acl in node.xattrs), path
            got.xattrs.pop(acl, None)
            node.xattrs.pop(acl, None)
        assert (got.comparable(), got.ino) == (node.comparable(), node.ino), path
    return mine


def _sink(block_size: int) -> list[Entry]:
    """kitchen_sink, with what 1 KiB blocks cannot hold made to fit (still outside the inode)."""
    if block_size == 4096:
        return kitchen_sink()
    small = {"/etc/xattrs": replace(next(e for e in kitchen_sink() if e.path == "/etc/xattrs"),
                                    xattrs=(("trusted.big", bytes(range(256)) * 3),
                                            ("user.mime_type", b"text/plain"))),
             "/home/user/longest": Entry("/home/user/longest", Kind.SYMLINK, 0o777, 0, 0, 0,
                                         target="z/" * 500 + "z")}
    return [small.get(e.path, e) for e in kitchen_sink()]


@pytest.mark.parametrize("block_size", [1024, 4096])
def test_composer_images_agree_with_debugfs(harness: Ext4Harness, block_size: int) -> None:
    built = harness.build(_sink(block_size), options={"block_size": block_size})
    harness.fsck(built.path)
    mine = _agree(harness, built.path)
    assert mine["/home/user/link2"].ino == mine["/etc/hosts"].ino
    assert mine["/dev/huge"].rdev == (300, 70000)


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True,
                          errors="replace").stdout


@pytest.fixture(scope="module", params=["64bit", "^64bit"])
def mke2fs_image(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An `mke2fs -d` image (64-byte group descriptors, or 32-byte ones without 64bit),
    its big folder made an htree by `e2fsck -fyD` (mke2fs -d writes linear folders)."""
    if os.geteuid() != 0:
        pytest.skip("device nodes in the source folder need root (mknod); CI runs as root")
    top = tmp_path_factory.mktemp("mke2fs")
    src = top / "src"
    (src / "big").mkdir(parents=True)
    for i in range(3000):  # long names at 1 KiB blocks: an htree with 2 levels
        (src / "big" / (f"{i:05d}-" + "n" * 180)).write_bytes(b"%d" % i)
    with (src / "fragmented").open("wb") as f:  # data every other block: > 4 extents
        for i in range(40):
            f.seek(2 * i * 1024)
            f.write(bytes([i + 1]) * 1024)
    with (src / "sparse").open("wb") as f:
        f.seek(5_000_000)
        f.write(b"end")
    (src / "xattrs").write_bytes(b"x")
    subprocess.run(["setfattr", "-n", "user.big", "-v", "0x" + "ab" * 700, str(src / "xattrs")],
                   check=True)
    subprocess.run(["setfattr", "-n", "user.small", "-v", "s", str(src / "xattrs")], check=True)
    os.mknod(src / "null", 0o20666, os.makedev(1, 3))
    os.mknod(src / "disk", 0o60660, os.makedev(259, 70000))
    (src / "target").write_bytes(b"linked")
    os.link(src / "target", src / "hardlink")
    with open(os.fsencode(src) + b"/bad-\xff-name", "wb") as f:  # not UTF-8
        f.write(b"latin")
    os.symlink("t" * 100, src / "long-link")
    os.symlink("short", src / "short-link")
    img = top / "mke2fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", request.param, "-b", "1024",
                    "-N", "4096", "-d", str(src), str(img), "40M"], check=True,
                   capture_output=True)
    fsck = subprocess.run(["e2fsck", "-fyD", str(img)], capture_output=True)
    assert fsck.returncode in (0, 1), fsck.stdout  # 1: the folders were re-indexed
    return img


def test_an_mke2fs_image_agrees_with_debugfs(harness: Ext4Harness, mke2fs_image: Path) -> None:
    htree = _run("debugfs", "-R", "htree /big", str(mke2fs_image))
    assert "Indirect levels: 1" in htree  # really two levels of index
    extents = _run("debugfs", "-R", "ex /fragmented", str(mke2fs_image))
    assert re.search(r"^\s*0/\s*1\s", extents, re.M)  # an index level: depth >= 1
    desc = re.search(r"Group descriptor size:\s+(\d+)", _run("dumpe2fs", "-h", str(mke2fs_image)))
    with mke2fs_image.open("rb") as f:
        assert Ext4Reader(f, "x").desc_size == (int(desc.group(1)) if desc else 32)
    mine = _agree(harness, mke2fs_image)
    assert mine["/disk"].rdev == (259, 70000) and mine["/null"].rdev == (1, 3)
    assert mine["/hardlink"].ino == mine["/target"].ino
    assert mine["/sparse"].data == bytes(5_000_000) + b"end"
    assert len(mine["/xattrs"].xattrs["user.big"]) == 700
    assert "/bad-\udcff-name" in mine and mine["/long-link"].target == b"t" * 100


def test_inspect_an_mke2fs_image(mke2fs_image: Path) -> None:
    done = compose("inspect", str(mke2fs_image), "--json")
    assert done.returncode == 0, done.stderr
    import json

    data = json.loads(done.stdout)
    assert data["kind"] == "ext4" and data["ext4"]["block_size"] == 1024
    dumpe2fs = _run("dumpe2fs", "-h", str(mke2fs_image))
    uuid = re.search(r"Filesystem UUID:\s+(\S+)", dumpe2fs).group(1)  # type: ignore[union-attr]
    assert data["ext4"]["uuid"] == uuid
    by_path = {e["path"]: e for e in data["entries"]}
    assert by_path["/hardlink"]["kind"] == "hardlink" and by_path["/hardlink"]["target"] == \
        "/target" or by_path["/target"]["kind"] == "hardlink"
    assert by_path["/sparse"]["sha256"] == hashlib.sha256(bytes(5_000_000) + b"end").hexdigest()
    assert by_path["/bad-\\xff-name"]["kind"] == "file"


# ------------------------------------------------------------------------- verify --deep


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    return build_demo(tmp_path_factory.mktemp("ext4verify"), golden)


def test_verify_deep_reads_ext4_partitions(built: Path) -> None:
    code, report = compose_json("verify", str(built), "--deep")
    assert code == 0 and report["ok"], report
    assert report["not_checked"] == []
    assert any(c.startswith("rootfs.img: ") for c in report["checked"])
    assert any(c.startswith("docker.img: ") for c in report["checked"])


def test_verify_deep_catches_a_flipped_byte_in_an_ext4_file(built: Path, tmp_path: Path) -> None:
    out = copy_build(built, tmp_path / "out")
    image = out / "rootfs.img"
    files = [e for e in compose_json("inspect", str(image))[1]["entries"]
             if e["kind"] == "file" and e.get("size", 0) > 8]
    target = files[0]["path"]
    bmap = _run("debugfs", "-R", f'bmap "{target}" 0', str(image)).split()
    block_size = int(re.search(r"Block size:\s+(\d+)",  # type: ignore[union-attr]
                               _run("dumpe2fs", "-h", str(image))).group(1))
    before = subprocess.run(["debugfs", "-R", f'cat "{target}"', str(image)],
                            capture_output=True, check=True).stdout
    flip_byte(image, int(bmap[-1]) * block_size + 3)
    after = subprocess.run(["debugfs", "-R", f'cat "{target}"', str(image)],
                           capture_output=True, check=True).stdout
    assert before != after and len(before) == len(after)  # debugfs sees it too
    code, deep = compose_json("verify", str(out), "--deep")
    assert code == 1
    assert [d["where"] for d in deep["differences"]] == ["rootfs.img", f"rootfs:{target}"]
    assert deep["differences"][1]["what"].startswith("content: ")


# ------------------------------------------------------------------------------- hostile


@pytest.fixture(scope="module")
def small(harness: Ext4Harness) -> Path:
    return harness.build(_sink(1024), options={"block_size": 1024}).path


def _damaged(small: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "damaged.img"
    shutil.copy(small, copy)
    return copy


def _one_error(img: Path, *wanted: str) -> None:
    with pytest.raises(ComposerError) as caught, img.open("rb") as f:
        reader = Ext4Reader(f, img.name)
        for e in reader.entries():
            if e.kind is Kind.FILE:
                for _ in reader.chunks(e.inode):
                    pass
    for text in wanted:
        assert text in caught.value.message, caught.value.message
    done = compose("inspect", str(img))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr


def _inode_offset(img: Path, path: str) -> tuple[int, int]:
    """(inode number, byte offset of the inode), from debugfs's imap."""
    out = _run("debugfs", "-R", f'imap "{path}"', str(img))
    ino = int(re.search(r"Inode (\d+) is part of", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)", out)
    assert m, out
    return ino, int(m.group(1)) * 1024 + int(m.group(2), 16)


def test_truncated(small: Path, tmp_path: Path) -> None:
    img = _damaged(small, tmp_path)
    os.truncate(img, img.stat().st_size // 2)
    _one_error(img, "ext4 superblock says", "truncated")


def test_zeroed_superblock_magic(small: Path, tmp_path: Path) -> None:
    img = _damaged(small, tmp_path)
    with img.open("r+b") as f:
        f.seek(1024 + 0x38)
        f.write(b"\0\0")
    with pytest.raises(ComposerError, match="superblock magic 0x0000, not 0xEF53"), \
            img.open("rb") as f:
        Ext4Reader(f, img.name)


def test_extent_header_depth_100(small: Path, tmp_path: Path) -> None:
    img = _damaged(small, tmp_path)
    ino, at = _inode_offset(img, "/bin/busybox")
    with img.open("r+b") as f:
        f.seek(at + 40 + 6)  # i_block: the extent header's eh_depth
        f.write(struct.pack("<H", 100))
    _one_error(img, f"ext4 inode {ino}: extent header in the inode: depth 100")


def test_extent_header_bad_magic(small: Path, tmp_path: Path) -> None:
    img = _damaged(small, tmp_path)
    ino, at = _inode_offset(img, "/bin/busybox")
    with img.open("r+b") as f:
        f.seek(at + 40)
        f.write(b"\0\0")
    _one_error(img, f"ext4 inode {ino}: extent header magic 0x0000, not 0xF30A")


def test_extent_past_the_end(small: Path, tmp_path: Path) -> None:
    img = _damaged(small, tmp_path)
    ino, at = _inode_offset(img, "/bin/busybox")
    with img.open("r+b") as f:
        f.seek(at + 40 + 12 + 8)  # the first extent's ee_start_lo
        f.write(struct.pack("<I", 0x7FFFFFF0))
    _one_error(img, f"ext4 inode {ino}: extent header in the inode: extent 0", "points outside")


def test_two_extent_indexes_to_one_block(small: Path, tmp_path: Path) -> None:
    """A tree block reached twice (the only loop a depth that must fall by one allows)."""
    img = _damaged(small, tmp_path)
    ino, at = _inode_offset(img, "/bin/busybox")
    leaf = int(_run("debugfs", "-R", 'bmap "/etc/block" 0', str(img)).split()[-1])
    with img.open("r+b") as f:
        f.seek(leaf * 1024)  # an empty leaf block: header, depth 0, no entries
        f.write(struct.pack("<HHHHI", 0xF30A, 0, 84, 0, 0))
        f.seek(at + 40)  # i_block: depth 1, two indexes to that leaf
        f.write(struct.pack("<HHHHI", 0xF30A, 2, 4, 1, 0)
                + struct.pack("<IIHH", 0, leaf, 0, 0) + struct.pack("<IIHH", 9, leaf, 0, 0))
    _one_error(img, f"ext4 inode {ino}: extent header in the inode: index 1 points to block "
               f"{leaf} again")


def test_huge_entry_count(small: Path, tmp_path: Path) -> None:
    img = _damaged(small, tmp_path)
    ino, at = _inode_offset(img, "/bin/busybox")
    with img.open("r+b") as f:
        f.seek(at + 40 + 2)  # eh_entries
        f.write(struct.pack("<H", 0xFFFF))
    _one_error(img, f"ext4 inode {ino}: extent header in the inode: 65535 entries, more than fit")


def test_bad_directory_record(small: Path, tmp_path: Path) -> None:
    img = _damaged(small, tmp_path)
    ino = int(re.search(r"Inode (\d+)",  # type: ignore[union-attr]
                        _run("debugfs", "-R", "imap /deep", str(img))).group(1))
    block = int(_run("debugfs", "-R", "bmap /deep 0", str(img)).split()[-1])
    with img.open("r+b") as f:
        f.seek(block * 1024 + 4)  # "."'s rec_len
        f.write(struct.pack("<H", 3))
    _one_error(img, f"ext4 inode {ino}: directory block 0: entry at byte 0 has rec_len 3")
