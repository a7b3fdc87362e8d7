"""`compose diff` on images: one field changed by an independent tool (debugfs, tune2fs, sgdisk,
mlabel, Python's tarfile, a byte written by hand) is named as exactly that structure and field,
and nothing else; the checksums and backup copies that follow from it are listed under
`following` in --json, never as changes of their own. Old values come from the same tools
(debugfs stat, dumpe2fs, sgdisk -i/-p, mdir), not from composer's readers."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from composer.check.imagediff import diff_images
from composer.check.inspect import inspect
from composer.check.verify import verify
from tests.checkkit import build_demo, compose_json, copy_build
from tests.conftest import compose, copy_layouts, need

NEW_UUID = "11111111-2222-3333-4444-555555555555"
PINNED = "0b3cc4b2-1f2e-4d5a-9c3b-2a1e0f9d8c7b"
DOCKER = "{name: docker, fs: ext4, size: auto,  mount: /var/lib/docker}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    return build_demo(tmp_path_factory.mktemp("fields"), golden)


@pytest.fixture(scope="module")
def epoch(built: Path) -> int:
    return json.loads((built / "manifest.json").read_text())["epoch"]


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", "-L", str(src), str(dst)], check=True)
    return dst


def _diff(a: Path, b: Path) -> tuple[int, list[str], dict]:
    """(exit code, the text lines, the --json object) of `compose diff a b`."""
    done = compose("diff", str(a), str(b))
    assert done.returncode in (0, 1), done.stderr
    code, data = compose_json("diff", str(a), str(b))
    assert code == done.returncode
    return done.returncode, done.stdout.splitlines(), data


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def _debugfs(image: Path, request: str) -> str:
    return _run("debugfs", "-R", request, str(image))


def _e2fsck_clean(image: Path) -> None:
    done = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _follows_all(data: dict, cause: str) -> None:
    assert data["following"], "the checksums over the changed field follow it"
    assert {f["follows"] for f in data["following"]} == {cause}


# ------------------------------------------------------------------------------------ ext4


def test_one_inode_ctime_patched_with_debugfs(built: Path, tmp_path: Path) -> None:
    need("debugfs", "e2fsck")
    image = _copy(built / "rootfs.img", tmp_path / "rootfs.img")
    stat = _debugfs(image, "stat /etc/hostname")
    ino = int(re.search(r"Inode: (\d+)", stat).group(1))
    old = int(re.search(r"ctime: 0x([0-9a-f]+)", stat).group(1), 16)
    # debugfs recomputes the inode's checksum itself: an independent tool makes the change
    _run("debugfs", "-w", "-R", "set_inode_field /etc/hostname ctime 20240101000000",
         str(image))
    _e2fsck_clean(image)
    code, lines, data = _diff(built / "rootfs.img", image)
    assert code == 1
    assert lines == [f"structure: rootfs.img: inode {ino} (/etc/hostname) i_ctime: {old} -> "
                     "1704067200"]
    _follows_all(data, f"rootfs.img: inode {ino} (/etc/hostname) i_ctime")
    assert {f["field"] for f in data["following"]} == {"l_i_checksum_lo", "i_checksum_hi"}


def test_the_superblock_uuid_set_by_tune2fs(built: Path, tmp_path: Path, epoch: int) -> None:
    need("tune2fs", "dumpe2fs", "e2fsck")
    image = _copy(built / "rootfs.img", tmp_path / "rootfs.img")
    old = re.search(r"Filesystem UUID:\s+(\S+)", _run("dumpe2fs", "-h", str(image))).group(1)
    # e2fsprogs stamps s_wtime with the clock; E2FSPROGS_FAKE_TIME keeps the build's
    _run("tune2fs", "-U", NEW_UUID, str(image), env={"E2FSPROGS_FAKE_TIME": str(epoch)})
    _e2fsck_clean(image)
    code, lines, data = _diff(built / "rootfs.img", image)
    assert code == 1 and lines == [f"structure: rootfs.img: ext4 superblock s_uuid: {old} -> "
                                   f"{NEW_UUID}"]
    # without metadata_csum_seed the UUID seeds every checksum: all of them follow, and the
    # backup superblocks' copies of the UUID
    _follows_all(data, "rootfs.img: ext4 superblock s_uuid")
    fields = {f["field"] for f in data["following"]}
    assert {"s_uuid", "s_checksum", "bg_checksum", "l_i_checksum_lo", "det_checksum"} <= fields
    assert any("backup superblock" in f["where"] for f in data["following"])


def test_one_byte_of_a_file_inside_the_image(built: Path, tmp_path: Path) -> None:
    need("debugfs")
    image = _copy(built / "rootfs.img", tmp_path / "rootfs.img")
    ino = int(re.search(r"Inode: (\d+)", _debugfs(image, "stat /etc/hostname")).group(1))
    block = int(_debugfs(image, "bmap /etc/hostname 0").strip())
    block_size = int(re.search(r"Block size:\s+(\d+)",
                               _run("dumpe2fs", "-h", str(image))).group(1))
    at = block * block_size + 3
    with image.open("r+b") as f:
        f.seek(at)
        old = f.read(1)
        f.seek(at)
        f.write(bytes([old[0] ^ 0x01]))
    # the file's bytes before and after, as debugfs dumps them
    contents = []
    for side in (built / "rootfs.img", image):
        _debugfs(side, f"dump /etc/hostname {tmp_path / 'dumped'}")
        contents.append((tmp_path / "dumped").read_bytes())
        (tmp_path / "dumped").unlink()
    size, (old_sha, new_sha) = len(contents[0]), (hashlib.sha256(c).hexdigest() for c in contents)
    assert old_sha != new_sha and len(contents[1]) == size
    code, lines, data = _diff(built / "rootfs.img", image)
    assert code == 1
    # the file's content changed; the block's bytes are explained by it, and follow it
    assert lines == [f"entry: rootfs.img:/etc/hostname content: [{size}, '{old_sha}'] -> "
                     f"[{size}, '{new_sha}']"]
    assert [(f["scope"], f["where"], f["field"], f["follows"]) for f in data["following"]] == [
        ("bytes", f"rootfs.img bytes {at}-{at}", f"file data of inode {ino} (/etc/hostname)",
         "rootfs.img:/etc/hostname content")]


# ------------------------------------------------------------------------------------ disk


def test_a_partition_guid_set_by_sgdisk(built: Path, tmp_path: Path) -> None:
    need("sgdisk")
    disk = _copy(built / "disk.img", tmp_path / "disk.img")
    old = re.search(r"Partition unique GUID: (\S+)",
                    _run("sgdisk", "-i", "2", str(disk))).group(1).lower()
    _run("sgdisk", "-u", f"2:{NEW_UUID}", str(disk))
    code, lines, data = _diff(built / "disk.img", disk)
    assert code == 1
    assert lines == [f"structure: disk.img: GPT entry 2 unique_partition_guid: {old} -> "
                     f"{NEW_UUID}"]
    following = {(f["where"], f["field"]): f["follows"] for f in data["following"]}
    assert following == {
        ("disk.img: GPT header", "partition_entry_array_crc32"):
            "disk.img: GPT entry 2 unique_partition_guid",
        ("disk.img: GPT header", "header_crc32"):
            "disk.img: GPT header partition_entry_array_crc32",
        # the backup header and entry array: copies of the primary ones
        ("disk.img: GPT backup header", "partition_entry_array_crc32"):
            "disk.img: GPT header partition_entry_array_crc32",
        ("disk.img: GPT backup header", "header_crc32"): "disk.img: GPT header header_crc32",
        ("disk.img: GPT backup entry 2", "unique_partition_guid"):
            "disk.img: GPT entry 2 unique_partition_guid"}


def test_the_disk_guid_set_by_sgdisk(built: Path, tmp_path: Path) -> None:
    need("sgdisk")
    disk = _copy(built / "disk.img", tmp_path / "disk.img")
    old = re.search(r"Disk identifier \(GUID\): (\S+)",
                    _run("sgdisk", "-p", str(disk))).group(1).lower()
    _run("sgdisk", "-U", NEW_UUID, str(disk))
    code, lines, data = _diff(built / "disk.img", disk)
    assert code == 1
    assert lines == [f"structure: disk.img: GPT header disk_guid: {old} -> {NEW_UUID}"]
    following = {(f["where"], f["field"]): f["follows"] for f in data["following"]}
    assert following[("disk.img: GPT backup header", "disk_guid")] == \
        "disk.img: GPT header disk_guid"
    assert following[("disk.img: GPT header", "header_crc32")] == \
        "disk.img: GPT header disk_guid"


# ------------------------------------------------------------------------------------- FAT


def test_the_fat_volume_id_set_by_mlabel(built: Path, tmp_path: Path, epoch: int) -> None:
    need("mlabel", "mdir")
    image = _copy(built / "boot.img", tmp_path / "boot.img")
    old = re.search(r"Volume Serial Number is (\S+)",
                    _run("mdir", "-i", str(image), "::/")).group(1)
    # mlabel rewrites the label's directory entry too, stamped with SOURCE_DATE_EPOCH: the
    # build's epoch leaves that entry as it was
    _run("mlabel", "-N", "12345678", "-i", str(image), "::BOOT",
         env={"SOURCE_DATE_EPOCH": str(epoch), "TZ": "UTC"})
    assert "Volume Serial Number is 1234-5678" in _run("mdir", "-i", str(image), "::/")
    code, lines, data = _diff(built / "boot.img", image)
    assert code == 1
    assert lines == [f"structure: boot.img: boot sector BS_VolID: {old} -> 1234-5678"]
    assert data["following"] == []


def test_a_fat_directory_entry_by_path_set_by_mattrib(built: Path, tmp_path: Path) -> None:
    need("mattrib", "mdir")
    image = _copy(built / "boot.img", tmp_path / "boot.img")
    before = _mattrib_bits(image, "::/config.txt")
    _run("mattrib", "-i", str(image), "+r", "::/config.txt")
    after = _mattrib_bits(image, "::/config.txt")
    assert after == before | 0x01  # mtools reads the read-only bit back, and nothing else moved
    code, lines, _ = _diff(built / "boot.img", image)
    assert code == 1 and lines == ["structure: boot.img: directory entry /config.txt DIR_Attr: "
                                   f"{before} -> {after}"]


def _mattrib_bits(image: Path, name: str) -> int:
    """The attribute byte as mtools shows it (A archive 0x20, S system 4, H hidden 2, R 1)."""
    flags = _run("mattrib", "-i", str(image), name).split("::")[0]
    return sum(bit for letter, bit in (("A", 0x20), ("S", 0x04), ("H", 0x02), ("R", 0x01))
               if letter in flags)


def test_mbr_fields_of_a_disk_sfdisk_made(tmp_path: Path) -> None:
    need("sfdisk")
    one = tmp_path / "one.img"
    one.write_bytes(b"")
    os.truncate(one, 20 << 20)
    subprocess.run(["sfdisk", "-q", str(one)], input="label: dos\nlabel-id: 0x12345678\n"
                   "2048,8192,83\n,,c\n", text=True, check=True)
    two = _copy(one, tmp_path / "two.img")
    _run("sfdisk", "-q", "--disk-id", str(two), "0xdeadbeef")
    _run("sfdisk", "-q", "--part-type", str(two), "1", "82")
    code, lines, _ = _diff(one, two)
    assert code == 1 and lines == [
        "structure: one.img: MBR unique_mbr_disk_signature: 0x12345678 -> 0xdeadbeef",
        "structure: one.img: MBR partition record 1 os_type: 0x83 -> 0x82"]


# ------------------------------------------------------------------------------------- tar


def test_a_tar_member_mtime_rewritten_with_tarfile(built: Path, tmp_path: Path) -> None:
    archive = _copy(built / "app.tar", tmp_path / "app.tar")
    with tarfile.open(archive) as t:
        member = t.getmember("./run.sh")
    with archive.open("r+b") as f:
        f.seek(member.offset)
        info = tarfile.TarInfo.frombuf(f.read(tarfile.BLOCKSIZE), "utf-8", "surrogateescape")
        info.mtime += 3600
        header = info.tobuf(tarfile.USTAR_FORMAT)
        assert len(header) == tarfile.BLOCKSIZE
        f.seek(member.offset)
        f.write(header)
    listing = _run("tar", "--utc", "-tvf", str(archive))
    assert re.search(r" 11:06 \./run\.sh$", listing, re.MULTILINE), listing
    code, lines, data = _diff(built / "app.tar", archive)
    assert code == 1
    # the entry's mtime (in ns, as manifests record it); the header field follows from it
    assert lines == [f"entry: app.tar:/run.sh mtime: {member.mtime * 10**9} -> "
                     f"{(member.mtime + 3600) * 10**9}"]
    assert [(f["where"], f["field"], f["a"], f["b"], f["follows"])
            for f in data["following"]] == [
        ("app.tar: run.sh", "mtime", member.mtime, member.mtime + 3600,
         "app.tar:/run.sh mtime"),
        ("app.tar: run.sh", "chksum", member.chksum, data["following"][1]["b"],
         "app.tar: run.sh mtime")]


# ------------------------------------------------------------------------- two real builds


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    return copy_layouts(tmp_path_factory.mktemp("fieldbuilds") / "project", golden)


def _build(project: Path, name: str, *args: str, layout_text: str | None = None) -> Path:
    layout = project / "demo.yaml"
    if layout_text is not None:
        copy = shutil.copytree(project, project.parent / f"{name}-project")
        layout = copy / "demo.yaml"
        layout.write_text(layout_text)
    out = project.parent / name
    done = compose("build", str(layout), "-o", str(out), *args)
    assert done.returncode == 0, done.stderr
    return out


def test_two_epochs_differ_only_in_times(project: Path) -> None:
    need("debugfs")
    one = _build(project, "one", "--source-date-epoch", "1718878001")
    two = _build(project, "two", "--source-date-epoch", "1718878002")
    code, lines, data = _diff(one / "rootfs.img", two / "rootfs.img")
    assert code == 1
    manifests = [json.loads((o / "manifest.json").read_text())["partitions"]["rootfs"]
                 ["entries"] for o in (one, two)]
    moved = {e["path"] for e, f in zip(*manifests, strict=True) if e["mtime_ns"] !=
             f["mtime_ns"]}
    # first the entries: each mtime the manifests say moved (and the writer's own
    # /lost+found, README "Outputs", which no manifest holds), and nothing else
    entries = [c for c in data["changes"] if c["scope"] == "entry"]
    assert data["changes"][:len(entries)] == entries
    assert {c["field"] for c in entries} == {"mtime"}
    assert {c["where"].removeprefix("rootfs.img:") for c in entries} - {"/lost+found"} == moved
    # then the fields no entry change explains: the superblock's times and the journal's
    times = {"i_atime", "i_ctime", "i_mtime", "i_crtime", "i_atime_extra", "i_ctime_extra",
             "i_mtime_extra", "i_crtime_extra"}
    for change in data["changes"][len(entries):]:
        assert change["scope"] == "structure", change
        where = change["where"].removeprefix("rootfs.img: ")
        if where == "ext4 superblock":
            assert change["field"] in {"s_mkfs_time", "s_wtime", "s_lastcheck", "s_mtime"}
        else:
            assert re.fullmatch(r"inode \d+ \(journal\)", where), change
            assert change["field"] in times, change
    # each inode's time fields follow its entry's mtime change; debugfs shows they differ
    inodes = set()
    for change in data["following"]:
        found = re.fullmatch(r"rootfs\.img: inode (\d+) \((.*)\)", change["where"])
        if found and change["field"] in times:
            number, path = found.groups()
            assert change["follows"] == f"rootfs.img:{path} mtime", change
            inodes.add((number, path))
    for number, path in inodes:
        a = _debugfs(one / "rootfs.img", f"stat <{number}>")
        b = _debugfs(two / "rootfs.img", f"stat <{number}>")
        assert re.search(r"mtime: (\S+)", a).group(1) != re.search(r"mtime: (\S+)",
                                                                    b).group(1), path
    assert {path for _, path in inodes} - {"/lost+found"} == moved


def test_a_pinned_uuid_is_the_superblock_uuid_alone(project: Path) -> None:
    need("dumpe2fs")
    base = _build(project, "base")
    text = (project / "demo.yaml").read_text()
    assert text.count(DOCKER) == 1
    pinned = _build(project, "pinned",
                    layout_text=text.replace(DOCKER, DOCKER.replace("}", f", uuid: {PINNED}}}")))
    old = re.search(r"Filesystem UUID:\s+(\S+)",
                    _run("dumpe2fs", "-h", str(base / "docker.img"))).group(1)
    expected = f"ext4 superblock s_uuid: {old} -> {PINNED}"
    code, lines, data = _diff(base / "docker.img", pinned / "docker.img")
    assert code == 1 and lines == [f"structure: docker.img: {expected}"]
    # composer derives the htree hash seed from the UUID: it follows, as the checksums do
    assert ("docker.img: ext4 superblock", "s_hash_seed") in {
        (f["where"], f["field"]) for f in data["following"]}
    # the disk image holds the same file system: named by partition, and nothing else
    code, lines, _ = _diff(base / "disk.img", pinned / "disk.img")
    assert code == 1 and lines == [f"structure: disk.img: partition 3 (docker): {expected}"]
    # their bmaps: exactly the ranges whose checksum the XML (read here) says differ
    ranges = [{r.text.strip(): r.get("chksum") for r in
               ET.parse(o / "docker.bmap").getroot().iterfind("BlockMap/Range")}
              for o in (base, pinned)]
    expected_ranges = sorted(k for k in ranges[0] if ranges[0][k] != ranges[1].get(k))
    assert expected_ranges
    code, lines, _ = _diff(base / "docker.bmap", pinned / "docker.bmap")
    assert lines == [f"structure: docker.bmap: bmap range {r} chksum: {ranges[0][r]} -> "
                     f"{ranges[1][r]}" for r in expected_ranges]


# ---------------------------------------------------------------------- containers and mixes


@pytest.fixture(scope="module")
def patched(built: Path, tmp_path_factory: pytest.TempPathFactory, epoch: int) -> Path:
    """rootfs.img with a new UUID (tune2fs), and the line that names it."""
    need("tune2fs")
    image = _copy(built / "rootfs.img", tmp_path_factory.mktemp("patched") / "rootfs.img")
    _run("tune2fs", "-U", NEW_UUID, str(image), env={"E2FSPROGS_FAKE_TIME": str(epoch)})
    return image


def _uuid_line(built: Path, name: str) -> str:
    old = re.search(r"Filesystem UUID:\s+(\S+)",
                    _run("dumpe2fs", "-h", str(built / "rootfs.img"))).group(1)
    return f"structure: {name}: ext4 superblock s_uuid: {old} -> {NEW_UUID}"


def test_simg_and_zst_are_read_as_the_image_they_hold(built: Path, patched: Path) -> None:
    need("dumpe2fs", "zstd")
    for packed in ("rootfs.simg", "rootfs.img.zst"):
        code, lines, data = _diff(built / packed, built / "rootfs.img")
        assert (code, lines, data["following"]) == (0, [], []), packed
        code, lines, _ = _diff(built / packed, patched)
        assert code == 1 and lines == [_uuid_line(built, packed)], packed


def test_an_image_against_a_build_folder_and_a_folder_copy(built: Path, patched: Path,
                                                           tmp_path: Path) -> None:
    need("dumpe2fs")
    # against the folder: its output of the same name
    code, lines, _ = _diff(built, patched)
    assert code == 1 and lines == [_uuid_line(built, "rootfs.img")]
    # two folders: the image's bytes named by field instead of "output: rootfs.img bytes"
    out = copy_build(built, tmp_path / "out")
    shutil.copy(patched, out / "rootfs.img")
    sums = subprocess.run(["sha256sum", *sorted(p.name for p in out.iterdir()
                                                 if p.name != "SHA256SUMS")], cwd=out,
                          capture_output=True, text=True, check=True).stdout
    (out / "SHA256SUMS").write_text(sums)
    code, lines, _ = _diff(built, out)
    assert code == 1 and lines == [_uuid_line(built, "rootfs.img")]


def test_an_image_against_a_manifest_compares_entries(built: Path, tmp_path: Path) -> None:
    need("debugfs")
    image = _copy(built / "rootfs.img", tmp_path / "rootfs.img")
    _run("debugfs", "-w", "-R", "set_inode_field /etc/hostname mode 0100600", str(image))
    code, data = compose_json("diff", str(built / "manifest.json"), str(image))
    assert code == 1
    assert [(c["scope"], c["where"], c["field"], c["a"], c["b"]) for c in data["changes"]] == \
        [("entry", "rootfs:/etc/hostname", "mode", "0644", "0600")]


def test_bad_image_arguments_exit_2(built: Path, tmp_path: Path) -> None:
    stray = tmp_path / "stray.img"
    shutil.copy(built / "boot.img", stray)
    done = compose("diff", str(stray), str(built))
    assert done.returncode == 2 and "has no output named stray.img" in done.stderr
    truncated = _copy(built / "rootfs.img", tmp_path / "rootfs.img")
    os.truncate(truncated, 4096)
    done = compose("diff", str(built / "rootfs.img"), str(truncated))
    assert done.returncode == 2 and "ext4" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------- progress


def _recorder() -> tuple[list[tuple[int, int]], object]:
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def _monotone_to_the_end(calls: list[tuple[int, int]], total: int) -> None:
    assert calls, "the callback was never called"
    assert all(t == total for _, t in calls)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and dones[-1] == total and all(0 <= d <= total for d in dones)


def test_progress_of_an_image_diff_is_monotone_and_ends_at_the_total(
        built: Path, patched: Path) -> None:
    calls, progress = _recorder()
    assert diff_images(built / "rootfs.img", patched, progress)
    _monotone_to_the_end(calls, patched.stat().st_size)
    calls, progress = _recorder()
    diff_images(built / "disk.img", built / "disk.img", progress)
    _monotone_to_the_end(calls, (built / "disk.img").stat().st_size)


def test_progress_of_verify_deep_and_device(built: Path) -> None:
    calls, progress = _recorder()
    assert verify(built, deep=True, progress=progress).ok
    _monotone_to_the_end(calls, sum(p["size"] for p in json.loads(
        (built / "manifest.json").read_text())["partitions"].values()))
    calls, progress = _recorder()
    assert verify(built, device=built / "disk.img", progress=progress).ok
    # the total is the bytes the bmap maps (its XML read here, not by composer's reader)
    root = ET.parse(built / "disk.bmap").getroot()
    block, size = int(root.findtext("BlockSize")), int(root.findtext("ImageSize"))
    spans = [[int(n) for n in r.text.strip().split("-")] for r in root.iterfind("BlockMap/Range")]
    mapped = sum(min((span[-1] + 1) * block, size) - span[0] * block for span in spans)
    _monotone_to_the_end(calls, mapped)


def test_progress_of_inspecting_an_ext4_image(built: Path) -> None:
    need("dumpe2fs")
    head = _run("dumpe2fs", "-h", str(built / "rootfs.img"))
    blocks, free, size = (int(re.search(rf"{name}:\s+(\d+)", head).group(1))
                          for name in ("Block count", "Free blocks", "Block size"))
    calls, progress = _recorder()
    inspect(built / "rootfs.img", progress)
    _monotone_to_the_end(calls, (blocks - free) * size)


def test_progress_of_inspecting_a_tar_image(built: Path, tmp_path: Path) -> None:
    need("tar", "gzip")
    # the total: the bytes of the regular members, as GNU tar lists them (hard links: none)
    listing = _run("tar", "--numeric-owner", "-tvf", str(built / "app.tar")).splitlines()
    total = sum(int(line.split()[2]) for line in listing if line.startswith("-"))
    assert total > 0
    calls, progress = _recorder()
    inspect(built / "app.tar", progress)
    _monotone_to_the_end(calls, total)
    # compressed by gzip: the same members, the same total
    packed = tmp_path / "app.tar.gz"
    with packed.open("wb") as f:
        subprocess.run(["gzip", "-c", str(built / "app.tar")], stdout=f, check=True)
    calls, progress = _recorder()
    inspect(packed, progress)
    _monotone_to_the_end(calls, total)


def test_progress_of_inspecting_a_fat_image(built: Path) -> None:
    need("mdir")
    # the total: the bytes of the files mtools lists: the last "N files  5 006 bytes" line
    # (thousands split by spaces) is the only folder's, or "Total files listed:"
    listing = _run("mdir", "-/", "-a", "-i", str(built / "boot.img"), "::/")
    total = int(re.findall(r"^\s+\d+ files?\s+([\d ]+?) bytes$", listing,
                           re.MULTILINE)[-1].replace(" ", ""))
    assert total > 0, listing
    calls, progress = _recorder()
    inspect(built / "boot.img", progress)
    _monotone_to_the_end(calls, total)


def test_a_terminal_gets_an_inspect_progress_bar_for_tar_and_fat(built: Path) -> None:
    for image in ("app.tar", "boot.img"):
        drawn = _on_a_terminal("inspect", str(built / image))
        assert "reading" in drawn, image
        assert _on_a_terminal("-q", "inspect", str(built / image)).count("reading") == 0


def test_no_progress_bar_without_a_terminal_or_under_quiet(built: Path, patched: Path) -> None:
    done = compose("diff", str(built / "rootfs.img"), str(patched))
    assert done.stderr.splitlines() == [
        f"{built / 'rootfs.img'} and {patched}: 1 difference(s); "
        f"{len(compose_json('diff', str(built / 'rootfs.img'), str(patched))[1]['following'])}"
        " more follow from them (--json lists them)"]
    done = compose("-q", "diff", str(built / "rootfs.img"), str(patched))
    assert done.returncode == 1 and done.stderr == ""
    done = compose("verify", str(built), "--deep", "-q")
    assert done.returncode == 0 and done.stderr == ""


def _on_a_terminal(*args: str) -> str:
    """stderr of `compose ARGS` when it is a terminal (a pty), stdout to a pipe."""
    main, side = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "composer", *args], stderr=side,
                            stdout=subprocess.PIPE, env=env)
    os.close(side)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(main)
    return out.decode("utf-8", "replace")


def test_a_terminal_gets_a_progress_bar_and_quiet_none(built: Path, patched: Path) -> None:
    drawn = _on_a_terminal("diff", str(built / "rootfs.img"), str(patched))
    assert "comparing" in drawn and "1 difference(s)" in drawn
    assert _on_a_terminal("-q", "diff", str(built / "rootfs.img"), str(patched)) == ""


def test_inspect_reads_simg_and_zst_as_the_image_they_hold(built: Path) -> None:
    need("zstd")
    _, raw = compose_json("inspect", str(built / "rootfs.img"))
    for packed, container in (("rootfs.simg", "simg"), ("rootfs.img.zst", "zst")):
        _, data = compose_json("inspect", str(built / packed))
        assert data == {**raw, "image": packed, "container": container}
