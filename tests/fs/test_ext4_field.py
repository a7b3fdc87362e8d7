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


def test_tune2fs_new_uuid_keeps_a_two_level_htree_valid(ext4: Ext4Harness) -> None:
    """Index blocks written full (count == limit) are left with stale checksums by
    `tune2fs -U` (it wants `e2fsck -D` for them), and the kernel then fails the directory
    with EBADMSG. Every index block must keep a free slot."""
    n = 60000
    names = [f"a-rather-long-file-name-to-fill-leaves-{i:07d}" for i in range(n)]
    entries = [d("/"), d("/d")] + [f(f"/d/{name}", b"") for name in names]
    built = ext4.build(entries)
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
        return "online resize (EXT4_IOC_RESIZE_FS) needs CAP_SYS_RESOURCE, which this " \
               "process lacks"
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
    assert blocks == grown // 4096
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
            assert st.f_blocks * st.f_frsize > grown * 0.9
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
