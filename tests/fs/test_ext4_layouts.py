"""The ext4 and jbd2 declarations (composer/fs/ext4/layouts.py) read an image as dumpe2fs and
debugfs read it: superblock, group descriptor, inode, extent header and entry, directory entries
and tail, htree root, entry and tail, xattr block header and entry, journal superblock. Two images:
one that mke2fs, e2fsck -D and debugfs made (the declarations against e2fsprogs), and one of
composer's writer (the declarations against what composer writes)."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from composer.fs.ext4 import layouts as L
from composer.tree import Content, Entry, Kind
from tests.fs.conftest import EXT4_EPOCH, Ext4Harness

BS = 4096


def run(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=check)
    return done.stdout + done.stderr


@pytest.fixture(scope="module", params=["mke2fs", "composer"])
def image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "composer":
        harness: Ext4Harness = request.getfixturevalue("ext4")
        return _composer_image(harness)
    folder = tmp_path_factory.mktemp("layouts")
    src = folder / "src"
    (src / "big").mkdir(parents=True)
    for i in range(400):  # enough names for several directory blocks, so e2fsck -D indexes it
        (src / "big" / f"file-with-a-longish-name-{i:04d}").write_text(str(i))
    (src / "data").write_bytes(bytes(range(256)) * 64)
    img = folder / "mke2fs.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", str(BS), "-I", "256", "-O", "^resize_inode",
        "-L", "layouts", "-U", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "-d", str(src), str(img),
        "64M")
    run("e2fsck", "-fyD", str(img), check=False)  # -D: index every directory it can
    value = "v" * 300  # too big for the inode: it goes to an xattr block
    run("debugfs", "-w", "-R", f"ea_set /data user.big {value}", str(img))
    result = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return img


def _composer_image(harness: Ext4Harness) -> Path:
    t = EXT4_EPOCH * 10**9
    entries = [Entry("/", Kind.DIR, 0o755, 0, 0, t), Entry("/big", Kind.DIR, 0o755, 0, 0, t)]
    entries += [Entry(f"/big/file-with-a-longish-name-{i:04d}", Kind.FILE, 0o644, 0, 0, t,
                      content=Content.of_bytes(str(i).encode())) for i in range(400)]
    entries.append(Entry("/data", Kind.FILE, 0o644, 0, 0, t,
                         content=Content.of_bytes(bytes(range(256)) * 64),
                         xattrs=(("user.big", b"v" * 300),)))
    built = harness.build(entries, size=64 << 20, label="layouts")
    harness.fsck(built.path)
    return built.path


def _dumpe2fs(img: Path) -> dict[str, str]:
    out = run("dumpe2fs", "-h", str(img))
    return {k.strip(): v.strip() for k, v in
            (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def _block(img: Path, number: int) -> bytes:
    with img.open("rb") as f:
        f.seek(number * BS)
        return f.read(BS)


def _inode_bytes(img: Path, ino: int) -> bytes:
    sb = L.SUPERBLOCK.unpack(img.read_bytes()[1024:2048])
    group, index = divmod(ino - 1, sb["s_inodes_per_group"])
    desc = L.GROUP_DESC.unpack(_block(img, 1), group * L.GROUP_DESC.size)
    table = desc["bg_inode_table_lo"] | desc["bg_inode_table_hi"] << 32
    with img.open("rb") as f:
        f.seek(table * BS + index * sb["s_inode_size"])
        return f.read(L.INODE.size)


def _bmap(img: Path, path: str, logical: int = 0) -> int:
    out = subprocess.run(["debugfs", "-R", f"bmap {path} {logical}", str(img)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1])


def test_superblock_reads_as_dumpe2fs_shows_it(image: Path) -> None:
    sb = L.SUPERBLOCK.unpack(image.read_bytes()[1024:2048])
    fields = _dumpe2fs(image)
    assert sb["s_magic"] == int(fields["Filesystem magic number"], 16)
    assert sb["s_inodes_count"] == int(fields["Inode count"])
    assert sb["s_blocks_count_lo"] | sb["s_blocks_count_hi"] << 32 == int(fields["Block count"])
    assert sb["s_free_inodes_count"] == int(fields["Free inodes"])
    assert sb["s_free_blocks_count_lo"] == int(fields["Free blocks"])
    assert sb["s_first_ino"] == int(fields["First inode"])
    assert sb["s_inode_size"] == int(fields["Inode size"])
    assert sb["s_inodes_per_group"] == int(fields["Inodes per group"])
    assert sb["s_blocks_per_group"] == int(fields["Blocks per group"])
    assert 1024 << sb["s_log_block_size"] == int(fields["Block size"])
    assert str(uuid.UUID(bytes=sb["s_uuid"])) == fields["Filesystem UUID"]
    assert sb["s_volume_name"].rstrip(b"\0").decode() == fields["Filesystem volume name"]
    assert sb["s_journal_inum"] == int(fields["Journal inode"])
    assert sb["s_desc_size"] == int(fields["Group descriptor size"])
    assert sb["s_min_extra_isize"] == int(fields["Required extra isize"])
    assert sb["s_want_extra_isize"] == int(fields["Desired extra isize"])
    assert 1 << sb["s_log_groups_per_flex"] == int(fields["Flex block group size"])
    assert f"0x{sb['s_checksum']:08x}" == fields["Checksum"]
    assert fields["Default directory hash"] == "half_md4" and sb["s_def_hash_version"] == 1


def test_group_descriptor_reads_as_dumpe2fs_shows_it(image: Path) -> None:
    desc = L.GROUP_DESC.unpack(_block(image, 1), 0)
    out = run("dumpe2fs", str(image))
    group0 = out.split("Group 0:", 1)[1].split("Group 1:", 1)[0]
    assert f"Block bitmap at {desc['bg_block_bitmap_lo']} " in group0
    assert f"Inode bitmap at {desc['bg_inode_bitmap_lo']} " in group0
    assert f"Inode table at {desc['bg_inode_table_lo']}-" in group0
    assert f"{desc['bg_free_blocks_count_lo']} free blocks" in group0
    assert f"{desc['bg_free_inodes_count_lo']} free inodes" in group0
    assert f"{desc['bg_used_dirs_count_lo']} directories" in group0
    assert f"csum 0x{desc['bg_checksum']:04x}" in group0


def test_inode_and_extents_read_as_debugfs_shows_them(image: Path) -> None:
    stat = run("debugfs", "-R", "stat /data", str(image))
    ino = int(re.search(r"Inode: (\d+)", stat).group(1))  # type: ignore[union-attr]
    inode = L.INODE.unpack(_inode_bytes(image, ino))
    assert f"Mode:  0{inode['i_mode'] & 0o7777:o}" in stat
    assert f"Size: {inode['i_size_lo']}" in stat
    assert f"Links: {inode['i_links_count']}" in stat
    assert f"Blockcount: {inode['i_blocks_lo']}" in stat
    assert f"File ACL: {inode['i_file_acl_lo']}" in stat
    assert f"Inode checksum: 0x{inode['l_i_checksum_lo'] | inode['i_checksum_hi'] << 16:08x}" \
        in stat
    head = L.EXTENT_HEADER.unpack(inode["i_block"])
    assert head["eh_magic"] == 0xF30A and head["eh_depth"] == 0 and head["eh_entries"] == 1
    extent = L.EXTENT.unpack(inode["i_block"], L.EXTENT_HEADER.size)
    start = extent["ee_start_lo"] | extent["ee_start_hi"] << 32
    assert f"(0-{extent['ee_len'] - 1}):{start}-{start + extent['ee_len'] - 1}" in stat \
        or f"(0):{start}" in stat


def test_linear_directory_and_tail(image: Path) -> None:
    block = _block(image, _bmap(image, "/"))
    dot = L.DIR_ENTRY.unpack(block)
    assert (dot["inode"], dot["rec_len"], dot["name_len"], dot["file_type"]) == (2, 12, 1, 2)
    dotdot = L.DIR_ENTRY.unpack(block, dot["rec_len"])
    assert dotdot["inode"] == 2 and dotdot["name_len"] == 2
    tail = L.DIR_TAIL.unpack(block, BS - L.DIR_TAIL.size)
    assert (tail["det_rec_len"], tail["det_reserved_ft"]) == (12, 0xDE)


def test_htree_root_reads_as_debugfs_htree_dump(image: Path) -> None:
    dump = run("debugfs", "-R", "htree_dump /big", str(image))
    block = _block(image, _bmap(image, "/big"))
    root = L.DX_ROOT.unpack(block)
    assert root["dotdot_rec_len"] == BS - 12 and root["info_length"] == 8
    assert f"Number of entries (count): {root['count']}" in dump
    assert f"Number of entries (limit): {root['limit']}" in dump
    assert f"Indirect levels: {root['indirect_levels']}" in dump
    entries = [L.DX_ENTRY.unpack(block, L.DX_ROOT.offset("limit") + i * L.DX_ENTRY.size)
               for i in range(1, root["count"])]
    assert f"Entry #0: Hash 0x00000000, block {root['block']}\n" in dump
    for i, entry in enumerate(entries, 1):
        assert f"Entry #{i}: Hash 0x{entry['hash']:08x}, block {entry['block']}\n" in dump
    assert root["count"] >= 2
    tail_at = L.DX_ROOT.offset("limit") + root["limit"] * L.DX_ENTRY.size
    assert tail_at + L.DX_TAIL.size == BS
    tail = L.DX_TAIL.unpack(block, tail_at)
    assert tail["dt_reserved"] == 0 and f"Checksum: 0x{tail['dt_checksum']:08x}\n" in dump


def test_xattr_block_reads_as_debugfs_shows_it(image: Path) -> None:
    stat = run("debugfs", "-R", "stat /data", str(image))
    acl = int(re.search(r"File ACL: (\d+)", stat).group(1))  # type: ignore[union-attr]
    assert acl != 0
    block = _block(image, acl)
    head = L.XATTR_BLOCK_HEADER.unpack(block)
    assert (head["h_magic"], head["h_refcount"], head["h_blocks"]) == (0xEA020000, 1, 1)
    entry = L.XATTR_ENTRY.unpack(block, L.XATTR_BLOCK_HEADER.size)
    name_at = L.XATTR_BLOCK_HEADER.size + L.XATTR_ENTRY.size
    assert block[name_at:name_at + entry["e_name_len"]] == b"big"
    assert entry["e_name_index"] == 1  # user.
    value = block[entry["e_value_offs"]:entry["e_value_offs"] + entry["e_value_size"]]
    assert value == b"v" * 300


def test_journal_superblock_reads_as_dumpe2fs_shows_it(image: Path) -> None:
    fields = _dumpe2fs(image)
    jsb = L.JOURNAL_SUPERBLOCK.unpack(_block(image, _bmap(image, "<8>")))
    assert jsb["h_magic"] == 0xC03B3998 and jsb["h_blocktype"] == 4
    assert jsb["s_blocksize"] == BS
    assert jsb["s_maxlen"] == int(fields["Total journal blocks"])
    assert jsb["s_first"] == 1 and jsb["s_start"] == 0
    assert jsb["s_nr_users"] == 1
