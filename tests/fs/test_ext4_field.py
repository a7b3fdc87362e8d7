"""Issue 8, points 4, 5, 6, 7 and 9: ext4 images through what a device's life does to them.

`tune2fs -U random`, `resize2fs` (shrink, offline and online grow), kernel read-write use as
root, small size types; judged by e2fsck -fn (output parsed), debugfs, dumpe2fs and the kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from composer.tree import Content, Entry, Kind
from tests.flashkit import fs_block_size

if TYPE_CHECKING:
    from tests.fs.conftest import Ext4Harness

MIB = 1 << 20
GIB = 1 << 30
NS = 1_000_000_000
T = 1_600_000_000 * NS


def d(path: str) -> Entry:
    return Entry(path, Kind.DIR, 0o755, 0, 0, T)


def f(path: str, data: bytes) -> Entry:
    return Entry(path, Kind.FILE, 0o644, 0, 0, T, content=Content.of_bytes(data))


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True)


# ------------------------------------------------------------------ point 4: htree slack


def _dx_counts(ext4: Ext4Harness, img: Path, directory: bytes) -> list[tuple[int, int]]:
    """(count, limit) of every htree index block of `directory`, as debugfs prints them."""
    body = ext4.debugfs(img, [b"htree " + directory])[0][1].decode()
    counts = [int(c) for c in re.findall(r"Number of entries \(count\): (\d+)", body)]
    limits = [int(v) for v in re.findall(r"Number of entries \(limit\): (\d+)", body)]
    assert counts and len(counts) == len(limits), body[:2000]
    return list(zip(counts, limits, strict=True))


@pytest.mark.parametrize("block_size", [1024, 4096])
def test_tune2fs_new_uuid_keeps_a_two_level_htree_valid(ext4: Ext4Harness,
                                                        block_size: int) -> None:
    """Index blocks written full (count == limit) are left with stale checksums by
    `tune2fs -U` (it wants `e2fsck -D` for them), and the kernel then fails the directory
    with EBADMSG. Every index block must keep a free slot."""
    n = 60000
    names = [f"a-rather-long-file-name-to-fill-leaves-{i:07d}" for i in range(n)]
    entries = [d("/"), d("/d")] + [f(f"/d/{name}", b"") for name in names]
    built = ext4.build(entries, options={"block_size": block_size})
    body = ext4.debugfs(built.path, [b"htree /d"])[0][1].decode()
    assert "Indirect levels: 1" in body
    counts = _dx_counts(ext4, built.path, b"/d")
    assert len(counts) >= 3 and all(c < limit for c, limit in counts), counts
    img = _copy(built.path, ext4.workdir / "tune2fs-u.img")
    proc = _run("tune2fs", "-U", "random", str(img))
    assert proc.returncode == 0 and "e2fsck -fD" not in proc.stdout + proc.stderr, \
        proc.stdout + proc.stderr
    ext4.fsck(img)  # no "fails checksum" / problems after the UUID change
    if ext4.can_mount() is None:  # the kernel verifies every index block it walks
        with ext4.mounted(img) as mnt:
            assert sorted(os.listdir(mnt / "d")) == sorted(names)
            for i in (0, 777, 31337, n - 1):
                assert (mnt / "d" / names[i]).stat().st_size == 0
    img.unlink()


# ------------------------------------------------------- point 5: flex_bg placement


def _group_tables(img: Path) -> list[str]:
    """dumpe2fs's per-group placement lines (group ranges, bitmaps, inode tables), checksums
    and flags stripped: what mke2fs's allocator decided."""
    out = _run("dumpe2fs", str(img)).stdout
    keep = [ln for ln in out.splitlines()
            if ln.startswith("Group ") or re.search(r"(bitmap|Inode table) at", ln)]
    return [re.sub(r"(,)? csum 0x[0-9a-f]+.*$", "", ln) for ln in keep]


@pytest.mark.parametrize("size", [4 * GIB, 17 * GIB])
def test_shrinks_with_resize2fs_and_places_tables_like_mke2fs(ext4: Ext4Harness,
                                                              size: int) -> None:
    """All tables at the disk start ran into group 2 at 17 GiB, and `resize2fs -M` failed
    with ENOSPC on every image of 4 GiB or more. Tables per flex group of 16, where mke2fs
    puts them: the same dumpe2fs placement as `mke2fs -O ^resize_inode`, and the shrink works."""
    entries = [d("/"), d("/etc")] + [f(f"/etc/f{i:02d}", bytes([65 + i]) * (i * 3001))
                                     for i in range(20)]
    built = ext4.build(entries, size=size)
    ref = ext4.workdir / "mke2fs-flex.img"
    ref.unlink(missing_ok=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^resize_inode", "-b", "4096",
                    str(ref), str(size // 1024) + "k"], check=True)
    ours = _group_tables(built.path)
    assert len(ours) > 3 * (size // (128 * MIB))
    assert ours == _group_tables(ref)
    ref.unlink()
    proc = _run("resize2fs", "-M", str(built.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"is now (\d+) \(4k\) blocks long", proc.stdout)
    assert m and int(m.group(1)) * 4096 < size // 8, proc.stdout
    ext4.fsck(built.path)
    ext4.assert_tree(built.path, entries)
    built.path.unlink()


# ------------------------------------------------------------------ point 7: headroom 0


def _free_and_reserved(img: Path) -> tuple[int, int, int]:
    out = _run("dumpe2fs", "-h", str(img)).stdout
    value = {k: int(re.search(rf"^{k}:\s+(\d+)", out, re.M).group(1))  # type: ignore[union-attr]
             for k in ("Block count", "Free blocks", "Reserved block count")}
    return value["Block count"], value["Free blocks"], value["Reserved block count"]


@pytest.mark.parametrize("payload", [10 * MIB + 700_000, 40 * MIB + 4096])
def test_headroom_zero_leaves_room_to_write(ext4: Ext4Harness, payload: int) -> None:
    """`headroom: 0` sized the image to its content: free blocks fell below what the kernel
    keeps back (s_r_blocks_count, then 2 % up to 4096 blocks even from root), so root could not
    create a file. Now root creates one and writes a block; e2fsck stays clean."""
    entries = [d("/"), d("/data"), f("/data/blob", b"\1" * payload)]
    built = ext4.build(entries, options={"headroom": 0})
    blocks, free, reserved = _free_and_reserved(built.path)
    assert free >= reserved + min(blocks // 50, 4096) + 1, (blocks, free, reserved)
    reason = ext4.can_mount()
    if reason:
        pytest.skip(reason)
    mnt = ext4.workdir / "headroom0"
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(built.path), str(mnt)], check=True)
    try:
        data = bytes(range(256)) * 16  # one 4 KiB block
        with open(mnt / "data" / "written-by-root", "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        (mnt / "new-dir").mkdir()
        (mnt / "new-dir" / "small").write_bytes(b"x" * 100)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    ext4.fsck(built.path)
    got = ext4.debugfs(built.path, [b"dump /data/written-by-root " +
                                    str(ext4.workdir / "wbr").encode()])
    assert got and (ext4.workdir / "wbr").read_bytes() == data
    built.path.unlink()


# -------------------------------------------------------------------- point 9: growth

CAP_SYS_RESOURCE = 24


def _online_resize_reason(ext4: Ext4Harness) -> str | None:
    """None when the kernel may grow a mounted image here, else why not."""
    reason = ext4.can_mount()
    if reason:
        return reason
    status = Path("/proc/self/status").read_text()
    m = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)
    if not m or not int(m.group(1), 16) >> CAP_SYS_RESOURCE & 1:
        return "environment fact [no-cap-sys-resource]: online resize (EXT4_IOC_RESIZE_FS) " \
               "needs CAP_SYS_RESOURCE, which this process lacks"
    return None


def _growth_entries() -> list[Entry]:
    return [d("/"), d("/etc"), d("/many")] + \
        [f(f"/etc/f{i:02d}", bytes([97 + i]) * (i * 40_000 + 7)) for i in range(20)] + \
        [f(f"/many/entry-{i:05d}", b"%d" % i) for i in range(3000)]


@pytest.mark.parametrize("grown", [512 * MIB, 12 * GIB])  # same GDT block / more GDT blocks
def test_offline_resize2fs_grow(ext4: Ext4Harness, grown: int) -> None:
    entries = _growth_entries()
    built = ext4.build(entries, size=256 * MIB)
    os.truncate(built.path, grown)
    proc = _run("resize2fs", str(built.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    blocks, _, _ = _free_and_reserved(built.path)
    assert blocks == grown // fs_block_size(built.path)
    ext4.fsck(built.path)
    ext4.assert_tree(built.path, entries)
    built.path.unlink()


@pytest.mark.parametrize("grown", [512 * MIB, 12 * GIB])
def test_online_grow_of_a_mounted_image(ext4: Ext4Harness, grown: int) -> None:
    """What systemd-growfs and the GPT grow-file-system attribute do: EXT4_IOC_RESIZE_FS on
    the mounted file system. Without resize_inode (no reserved GDT blocks) the kernel converts
    to meta_bg when the descriptor table must grow."""
    reason = _online_resize_reason(ext4)
    if reason:
        pytest.skip(reason)
    entries = _growth_entries()
    built = ext4.build(entries, size=256 * MIB)
    mnt = ext4.workdir / "online"
    mnt.mkdir(exist_ok=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(built.path)], capture_output=True,
                          text=True, check=True).stdout.strip()
    try:
        subprocess.run(["mount", loop, str(mnt)], check=True)
        try:
            os.truncate(built.path, grown)
            subprocess.run(["losetup", "-c", loop], check=True)
            proc = _run("resize2fs", loop)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            st = os.statvfs(mnt)
            assert st.f_blocks * st.f_frsize > grown * 0.8  # less inode tables and journal
            (mnt / "etc" / "after-grow").write_bytes(b"g" * 10_000)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    ext4.fsck(built.path)
    got = ext4.read_tree(built.path, same_times=False)
    assert got.pop("/etc/after-grow").data == b"g" * 10_000
    want = ext4.expected(entries)
    assert sorted(got) == sorted(want)
    for path in ("/etc/f19", "/many/entry-02999"):
        assert got[path].data == want[path].data
    built.path.unlink()


# ----------------------------------------------------- point 6: mke2fs size types, block size


def _header(img: Path) -> dict[str, str]:
    out = _run("dumpe2fs", "-h", str(img)).stdout
    fields = dict(re.findall(r"^([A-Za-z][^:\n]*):\s+(.*)$", out, re.M))
    keep = ("Block size", "Block count", "Inode count", "Inodes per group", "Inode size",
            "Reserved block count", "First block", "Blocks per group", "Flex block group size")
    head = {k: fields.get(k, "") for k in keep}
    head["journal"] = fields.get("Total journal size", "none")
    head["features"] = " ".join(sorted(fields.get("Filesystem features", "").split()))
    return head


def _mke2fs(img: Path, size: int, *extra: str) -> Path:
    img.unlink(missing_ok=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^resize_inode", *extra, str(img),
                    f"{size // 1024}k"], check=True, capture_output=True)
    return img


SMALL_TREE = [d("/"), d("/etc"), f("/etc/hostname", b"device\n"),
              f("/etc/blob", bytes(range(256)) * 700), f("/zeros", bytes(5000))]


@pytest.mark.parametrize("size", [1 * MIB, 2 * MIB, 4 * MIB, 64 * MIB, 700 * MIB])
def test_defaults_follow_mke2fs_size_types(ext4: Ext4Harness, size: int) -> None:
    """1-4 MiB partitions failed with the default journal; composer had one inode ratio.
    Defaults now match `mke2fs -t ext4 -O ^resize_inode` of the same size: block size, inode
    count, reserved blocks, journal (none below 2048 blocks), and where the tables go."""
    built = ext4.build(SMALL_TREE, size=size)
    ext4.fsck(built.path)
    ext4.assert_tree(built.path, SMALL_TREE)
    ref = _mke2fs(ext4.workdir / "mke2fs-type.img", size)
    ours, theirs = _header(built.path), _header(ref)
    assert ours == theirs
    assert ours["Block size"] == ("1024" if size < 512 * MIB else "4096")
    assert (ours["journal"] == "none") == (size < 2 * MIB)
    assert _group_tables(built.path) == _group_tables(ref)
    ref.unlink()
    built.path.unlink()


@pytest.mark.parametrize("block_size", [1024, 2048, 4096])
def test_block_size_option_matches_mke2fs_b(ext4: Ext4Harness, block_size: int) -> None:
    size = 300 * MIB
    built = ext4.build(SMALL_TREE, size=size, options={"block_size": block_size})
    ext4.fsck(built.path)
    ext4.assert_tree(built.path, SMALL_TREE)
    ref = _mke2fs(ext4.workdir / "mke2fs-b.img", size, "-b", str(block_size))
    assert _header(built.path) == _header(ref)
    assert _group_tables(built.path) == _group_tables(ref)
    ref.unlink()
    built.path.unlink()


def test_auto_size_picks_the_block_size_of_its_size_type(ext4: Ext4Harness) -> None:
    """size: auto decides the size type from the size the image comes out at, as mke2fs
    would for that size; building again at the resolved size gives the same bytes."""
    built = ext4.build(SMALL_TREE)
    head = _header(built.path)
    assert built.result.size < 3 * MIB and head["Block size"] == "1024"
    assert int(head["Inode count"]) == built.result.size // 8192  # floppy: one per 8 KiB
    fresh = ext4.build(SMALL_TREE, size=built.result.size)  # a new writer plans it afresh
    assert fresh.path.read_bytes() == built.path.read_bytes()
    big = [d("/"), f("/big", b"\x01" * (600 * MIB))]
    built_big = ext4.build(big, options={"headroom": 0})
    assert _header(built_big.path)["Block size"] == "4096"
    ext4.fsck(built_big.path)
    built_big.path.unlink()


def test_kernel_reads_a_1k_block_image_byte_exact(ext4: Ext4Harness) -> None:
    from tests.fs.test_ext4 import kitchen_sink

    # without the 4095-byte symlink target and the 3 KiB of xattrs that need 4 KiB blocks
    # (with them the default falls back to 4 KiB blocks: a 1 KiB block cannot hold them)
    entries = [e for e in kitchen_sink() if e.path not in ("/home/user/longest", "/etc/xattrs")]
    built = ext4.build(entries, size=64 * MIB)
    assert _header(built.path)["Block size"] == "1024"
    ext4.fsck(built.path)
    ext4.assert_tree(built.path, entries)
    whole = ext4.build(kitchen_sink(), size=64 * MIB)  # default falls back to 4 KiB blocks
    assert _header(whole.path)["Block size"] == "4096"
    ext4.fsck(whole.path)
    reason = ext4.can_mount()
    if reason:
        pytest.skip(reason)
    ext4.assert_mounted_tree(built.path, entries)


@pytest.mark.parametrize("block_size", [1024, 2048])
def test_small_blocks_flashed_onto_used_storage(ext4: Ext4Harness, tmp_path: Path,
                                                block_size: int) -> None:
    """bmaptool and simg2img onto a device full of 0xAA: every allocated block of a 1 or
    2 KiB-block image is in the 4 KiB-block .bmap/.simg, so no file reads stale bytes."""
    from composer.outputs.bmap import write_bmap
    from composer.outputs.simg import write_simg
    from tests.flashkit import Tool, flash, flash_reason

    entries = [d("/"), d("/d"), f("/zeros", bytes(3 * 4096 + 1024)),
               f("/d/mixed", b"m" * 1500 + bytes(9000) + b"n" * 700)] + \
        [f(f"/d/f{i:03d}", bytes([i % 7]) * (i * 97)) for i in range(120)]
    built = ext4.build(entries, size=8 * MIB, options={"block_size": block_size})
    assert _header(built.path)["Block size"] == str(block_size)
    write_bmap(built.path, built.result, built.path.with_suffix(".bmap"))
    write_simg(built.path, built.result, built.path.with_suffix(".simg"))
    reason = flash_reason()
    if reason:
        pytest.skip(reason)
    for tool in Tool:
        device = flash(tool, built.path, built.result.size, tmp_path / f"device-{tool}")
        ext4.fsck(device)
        ext4.assert_tree(device, entries)
        device.unlink()


def test_too_small_names_what_would_fit(ext4: Ext4Harness) -> None:
    entries = [d("/"), f("/payload", b"\x07" * (2 * MIB + 300_000))]
    errors = ext4.writer.check(ext4.request(entries, size=3 * MIB))
    assert len(errors) == 1, errors
    assert "needs at least" in errors[0].message and "1024-byte blocks" in errors[0].message
    assert errors[0].hint is not None and "journal: none" in errors[0].hint
    built = ext4.build(entries, size=3 * MIB, options={"journal": "none"})
    ext4.fsck(built.path)
    # many small files: 4 KiB blocks waste most of each block, 1 KiB blocks fit them
    small_files = [d("/"), d("/s")] + [f(f"/s/{i:04d}", b"%d" % i * 30) for i in range(3000)]
    errors = ext4.writer.check(ext4.request(small_files, size=8 * MIB,
                                            options={"block_size": 4096}))
    assert len(errors) == 1 and errors[0].hint is not None
    assert "block_size: 1024" in errors[0].hint
    built = ext4.build(small_files, size=8 * MIB, options={"block_size": 1024})
    ext4.fsck(built.path)
    errors = ext4.writer.check(ext4.request(entries, options={"block_size": 1000}))
    assert len(errors) == 1 and "1024, 2048 or 4096" in (errors[0].hint or "")


def test_block_size_layout_key(ext4: Ext4Harness, tmp_path: Path) -> None:
    """`block_size` in the layout: used by ext4, refused with a hint when not 1/2/4 KiB, and
    unknown to vfat."""
    from tests.conftest import compose

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello").write_bytes(b"hello\n")

    def layout(extra: str) -> str:
        return ("version: 1\nname: bs\nepoch: 1700000000\nsources: {s: src}\npartitions:\n"
                f"  - {{name: root, fs: ext4, mount: /, size: 600MiB, block_size: 2048}}\n"
                f"{extra}files:\n  - {{from: \"s:/\", to: /}}\n")

    (tmp_path / "ok.yaml").write_text(layout(""))
    done = compose("build", "ok.yaml", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    img = tmp_path / "out" / "root.img"
    assert _header(img)["Block size"] == "2048"  # 600 MiB alone would give 4096
    ext4.fsck(img)
    bad = layout("  - {name: boot, fs: vfat, mount: /boot, size: 8MiB, block_size: 1024}\n")
    (tmp_path / "bad.yaml").write_text(bad.replace("block_size: 2048", "block_size: 1000"))
    done = compose("build", "bad.yaml", "-o", "out2", cwd=tmp_path)
    assert done.returncode == 1 and not (tmp_path / "out2").exists()
    assert "partitions[0].block_size: 1000 is not one of 1024, 2048, 4096" in done.stderr
    assert "hint: file-system block size in bytes: 1024, 2048 or 4096" in done.stderr
    assert "partitions[1].block_size: unknown key 'block_size'" in done.stderr
