"""`compose inspect`: partition tables and archive or FAT entries, from composer's images and
from other tools' (sfdisk, GNU tar, mkfs.vfat + mcopy), judged by those tools; damaged and
hostile tables are one clear error naming the structure and field."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from tests.checkkit import build_demo, copy_build
from tests.conftest import compose, need

SECTOR = 512


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    return build_demo(tmp_path_factory.mktemp("inspect"), golden)


def _inspect(path: Path) -> dict:
    done = compose("inspect", str(path), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _sfdisk(disk: Path) -> dict:
    return json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                     text=True, check=True).stdout)["partitiontable"]


def _agrees_with_sfdisk(disk: Path) -> dict:
    seen, table = _inspect(disk), _sfdisk(disk)
    assert seen["table"]["table"] == table["label"]
    assert (seen["table"]["guid"] or seen["table"]["signature"]).lower() == table["id"].lower()
    dos = table["label"] == "dos"  # sfdisk shows an MBR type byte as bare hex ("c", "83")
    theirs = [(p["start"] * SECTOR, p["size"] * SECTOR,
               int(p["type"], 16) if dos else p["type"].lower(),
               p.get("uuid", "").lower(), p.get("name"), p.get("bootable"))
              for p in table["partitions"]]
    mine = [(p["offset"], p["size"], int(p["type"], 16) if dos else p["type"],
             "" if dos else p["partuuid"], p.get("name"), p.get("bootable") or None)
            for p in seen["partitions"]]
    assert mine == theirs
    return seen


def test_composer_disk_agrees_with_sfdisk_and_the_manifest(built: Path) -> None:
    seen = _agrees_with_sfdisk(built / "disk.img")
    manifest = json.loads((built / "manifest.json").read_text())
    assert [(p["name"], p["fs"]) for p in seen["partitions"]] == \
        [(p["name"], manifest["partitions"][p["name"]]["fs"])
         for p in manifest["disk"]["partitions"]]


@pytest.mark.parametrize("label", ["gpt", "dos"])
def test_an_sfdisk_disk(label: str, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    with disk.open("wb") as f:
        f.truncate(64 << 20)
    script = f"label: {label}\n" + ("label-id: 0x1a2b3c4d\n" if label == "dos" else "") + \
        ("start=2048, size=20480, type=L, name=alpha\nsize=40960, type=U, name=beta\n"
         if label == "gpt" else "start=2048, size=20480, type=83, bootable\n"
         "size=40960, type=c\n")
    subprocess.run(["sfdisk", "-q", str(disk)], input=script, text=True, check=True)
    seen = _agrees_with_sfdisk(disk)
    assert len(seen["partitions"]) == 2


def test_a_gnu_tar_archive(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"hello\n" * 1000)
    (root / "dir" / "file").chmod(0o640)
    (root / "link").symlink_to("dir/file")
    (root / "hard").hardlink_to(root / "dir" / "file")
    archive = tmp_path / "t.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "--owner=1000", "--group=2000",
                    "--numeric-owner", "-C", str(root), "."], check=True)
    seen = {e["path"]: e for e in _inspect(archive)["entries"]}
    with tarfile.open(archive) as tar:  # Python's reader, not libarchive
        for m in tar.getmembers():
            path = "/" + m.name.removeprefix("./").rstrip("/") if m.name != "." else "/"
            entry = seen.pop(path if path != "/." else "/")
            assert (entry["uid"], entry["gid"], int(entry["mode"], 8)) == (m.uid, m.gid, m.mode)
            assert entry["mtime"] == int(m.mtime)
            if m.isfile():
                data = tar.extractfile(m).read()
                assert (entry["kind"], entry["size"], entry["sha256"]) == \
                    ("file", len(data), hashlib.sha256(data).hexdigest())
            elif m.issym():
                assert (entry["kind"], entry["target"]) == ("symlink", m.linkname)
            elif m.islnk():
                assert (entry["kind"], entry["target"]) == ("hardlink", "/" + m.linkname[2:])
            else:
                assert entry["kind"] == "dir"
    assert seen == {}


def test_a_gnu_tar_name_that_is_not_utf8(tmp_path: Path) -> None:
    need("tar")
    archives = []
    for number, content in enumerate((b"one", b"two")):
        root = tmp_path / f"tree{number}"
        root.mkdir()
        with open(os.fsencode(root) + b"/bad-\xff-name", "wb") as f:  # Latin-1, not UTF-8
            f.write(content)
        archive = tmp_path / f"t{number}.tar"
        subprocess.run(["tar", "--format=pax", "-cf", str(archive), "-C", str(root), "."],
                       check=True)
        archives.append(archive)
    # GNU tar lists the byte as stored (octal escape)
    listed = subprocess.run(["tar", "--quoting-style=escape", "-tf", str(archives[0])],
                            capture_output=True, check=True).stdout
    assert b"./bad-\\377-name" in listed.splitlines(), listed
    seen = {e["path"]: e for e in _inspect(archives[0])["entries"]}
    assert seen["/bad-\\xff-name"]["sha256"] == hashlib.sha256(b"one").hexdigest()
    done = compose("diff", str(archives[0]), str(archives[1]))
    assert done.returncode == 1, done.stderr
    assert any(line.startswith("entry: t0.tar:/bad-\\xff-name content: [3, ")
               for line in done.stdout.splitlines()), done.stdout


def test_composer_tar_agrees_with_the_manifest(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert _inspect(built / "app.tar")["entries"] == manifest["partitions"]["app"]["entries"]


def test_a_mkfs_vfat_image(tmp_path: Path) -> None:
    if not (shutil.which("mkfs.vfat") and shutil.which("mcopy")):
        pytest.skip("needs mkfs.vfat and mcopy (dosfstools, mtools)")
    image = tmp_path / "fat.img"
    # FAT16: pyfatfs 1.1 misreads the FAT12 cluster chains of mkfs.vfat's small default images
    subprocess.run(["mkfs.vfat", "-F", "16", "-C", str(image), "16384"], check=True,
                   capture_output=True)
    (tmp_path / "long name.txt").write_bytes(b"x" * 5000)
    subprocess.run(["mmd", "-i", str(image), "::EFI"], check=True)
    subprocess.run(["mcopy", "-i", str(image), str(tmp_path / "long name.txt"), "::EFI/"],
                   check=True)
    assert _inspect(image)["entries"] == [
        {"path": "/", "kind": "dir"}, {"path": "/EFI", "kind": "dir"},
        {"path": "/EFI/long name.txt", "kind": "file", "size": 5000,
         "sha256": hashlib.sha256(b"x" * 5000).hexdigest()}]


def test_fat_short_names_in_the_case_their_nt_bits_give(tmp_path: Path) -> None:
    if not (shutil.which("mkfs.vfat") and shutil.which("mcopy") and shutil.which("mdir")):
        pytest.skip("needs mkfs.vfat, mcopy and mdir (dosfstools, mtools)")
    image = tmp_path / "fat.img"
    subprocess.run(["mkfs.vfat", "-F", "16", "-C", str(image), "16384"], check=True,
                   capture_output=True)
    # mcopy stores these as 8.3 names with DIR_NTRes case bits, no long name
    src = tmp_path / "src"
    (src / "lower").mkdir(parents=True)
    for name in ("big.bin", "UPPER.TXT", "lower/n", "lower/mixed.TXT"):
        (src / name).write_text(name)
    subprocess.run(["mcopy", "-s", "-i", str(image), str(src / "big.bin"), str(src / "UPPER.TXT"),
                    str(src / "lower"), "::/"], check=True)
    listed = subprocess.run(["mdir", "-/", "-b", "-i", str(image), "::/"], capture_output=True,
                            text=True, check=True).stdout.split()
    theirs = sorted(p.removeprefix("::").rstrip("/") for p in listed)
    assert "/big.bin" in theirs and "/lower/n" in theirs  # mtools reads the bits as stored
    mine = sorted(e["path"] for e in _inspect(image)["entries"] if e["path"] != "/")
    assert mine == theirs


def _patch_header(disk: Path, **fields: int) -> None:
    """Change GPT header fields (offsets from the UEFI table) and fix its CRC, as a hostile
    tool would; `crc=False`-style damage is done with a plain byte flip instead."""
    offsets = {"number_of_partition_entries": 80, "size_of_partition_entry": 84}
    with disk.open("r+b") as f:
        f.seek(SECTOR)
        header = bytearray(f.read(92))
        for name, value in fields.items():
            struct.pack_into("<I", header, offsets[name], value)
        struct.pack_into("<I", header, 16, 0)
        struct.pack_into("<I", header, 16, zlib.crc32(header))
        f.seek(SECTOR)
        f.write(header)


def test_damaged_and_hostile_tables(built: Path, tmp_path: Path) -> None:
    out = copy_build(built, tmp_path / "out")
    disk = out / "disk.img"
    pristine = disk.read_bytes()[:64 * SECTOR]
    with disk.open("r+b") as f:  # a flipped byte of the disk GUID
        f.seek(SECTOR + 56)
        f.write(b"\x00" if pristine[SECTOR + 56] else b"\x01")
    done = compose("inspect", str(disk))
    assert done.returncode == 1 and "GPT header header_crc32 is" in done.stderr
    assert "Traceback" not in done.stderr
    # sfdisk sees the primary header's CRC fail too
    judged = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True)
    assert "The primary GPT table is corrupt" in judged.stderr, judged.stderr
    # diff cannot read the entries behind a broken table, and names the field that differs
    done = compose("diff", str(built / "disk.img"), str(disk))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("entry: disk.img entries not compared: ") and \
        "header_crc32" in lines[0]
    assert [line for line in lines if line.startswith("structure:")][0].startswith(
        "structure: disk.img: GPT header disk_guid: ")
    with disk.open("r+b") as f:
        f.write(pristine)
    with disk.open("r+b") as f:  # a flipped byte of the first entry's name
        f.seek(2 * SECTOR + 60)
        f.write(b"Z")
    done = compose("inspect", str(disk))
    assert done.returncode == 1 and "partition_entry_array_crc32" in done.stderr
    with disk.open("r+b") as f:
        f.write(pristine)
    _patch_header(disk, number_of_partition_entries=0xFFFFFFFF)  # a valid CRC, a huge count
    done = compose("inspect", str(disk))
    assert done.returncode == 1 and "4294967295 entries of 128 bytes" in done.stderr
    assert "Traceback" not in done.stderr
    done = compose("diff", str(built / "disk.img"), str(disk))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "structure: disk.img: GPT header number_of_partition_entries: 128 -> 4294967295" \
        in done.stdout.splitlines()


def test_what_it_cannot_read(built: Path, tmp_path: Path) -> None:
    done = compose("inspect", str(built / "manifest.json"))
    assert done.returncode == 1 and "not an archive libarchive reads" in done.stderr
    assert compose("inspect", str(tmp_path / "nothing")).returncode == 2


# ------------------------------------------------------------- hostile file systems and archives
# Each damage is made by hand or by a tool, confirmed by the format's own checker (e2fsck,
# fsck.vfat, GNU tar, gzip), and must be one error naming the structure: inspect exits 1, and
# diff against the undamaged image names the entries it could not compare, then the fields.


def _refused(image: Path, clean: Path | None, *wanted: str) -> None:
    done = compose("inspect", str(image))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    for text in wanted:
        assert text in lines[0], lines[0]
    if clean is not None:
        done = compose("diff", str(clean), str(image))
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        out = done.stdout.splitlines()
        assert out[0].startswith(f"entry: {clean.name} entries not compared: "), out
        assert all(text in out[0] for text in wanted), out[0]
        assert len(out) > 1, "the fields that differ are still named"


def _checker_finds(args: list[str], *wanted: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode != 0, done.stdout
    for text in wanted:
        assert text in done.stdout + done.stderr, done.stdout + done.stderr


def _run_tool(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def ext4_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("mke2fs", "e2fsck", "debugfs")
    top = tmp_path_factory.mktemp("hostile-ext4")
    (top / "src" / "d").mkdir(parents=True)
    (top / "src" / "f").write_text("hello\n")
    (top / "src" / "d" / "x").write_text("x\n")
    image = top / "clean.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "metadata_csum", "-d",
                    str(top / "src"), str(image), "8M"], check=True, capture_output=True)
    assert subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True).returncode == 0
    return image


def _ext4_copy(clean: Path, tmp_path: Path) -> Path:
    image = tmp_path / "damaged.img"
    shutil.copy(clean, image)
    return image


def _inode_at(image: Path, path: str) -> tuple[int, int]:
    out = _run_tool("debugfs", "-R", f"imap {path}", str(image))
    number = int(re.search(r"Inode (\d+) is part of", out).group(1))
    place = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)", out)
    block_size = int(re.search(r"Block size:\s+(\d+)",
                               _run_tool("dumpe2fs", "-h", str(image))).group(1))
    return number, int(place.group(1)) * block_size + int(place.group(2), 16)


def test_ext4_bad_inode_checksum(ext4_image: Path, tmp_path: Path) -> None:
    image = _ext4_copy(ext4_image, tmp_path)
    number, at = _inode_at(image, "/f")
    with image.open("r+b") as f:  # i_generation (0x64): not a field inspect shows
        f.seek(at + 0x64)
        old = f.read(1)
        f.seek(at + 0x64)
        f.write(bytes([old[0] ^ 1]))
    _checker_finds(["e2fsck", "-fn", str(image)], f"Inode {number} passes checks, but "
                   "checksum does not match inode")
    _refused(image, ext4_image, f"ext4 inode {number}: checksum")


def test_ext4_bad_superblock_checksum(ext4_image: Path, tmp_path: Path) -> None:
    image = _ext4_copy(ext4_image, tmp_path)
    with image.open("r+b") as f:  # a byte of s_volume_name, the checksum left as it was
        f.seek(1024 + 0x78)
        f.write(b"Z")
    _checker_finds(["e2fsck", "-fn", str(image)], "Superblock checksum does not match")
    _refused(image, None, "ext4 superblock s_checksum")


def test_ext4_name_with_a_slash(ext4_image: Path, tmp_path: Path) -> None:
    image = _ext4_copy(ext4_image, tmp_path)
    # debugfs rewrites the entry (and its block's checksum): only the name is wrong
    block_size = int(re.search(r"Block size:\s+(\d+)",
                               _run_tool("dumpe2fs", "-h", str(image))).group(1))
    block = int(_run_tool("debugfs", "-R", "bmap /d 0", str(image)).split()[-1])
    with image.open("r+b") as f:
        f.seek(block * block_size)
        data = f.read(block_size)
        at = data.index(b"\x01\x01x") + 2  # name_len 1, file type 1 (regular), "x"
        f.seek(block * block_size + at)
        f.write(b"/")
    _checker_finds(["e2fsck", "-fn", str(image)], "has illegal characters in its name")
    _refused(image, ext4_image, "has the name b'/'")


def test_ext4_directory_loop(ext4_image: Path, tmp_path: Path) -> None:
    image = _ext4_copy(ext4_image, tmp_path)
    subprocess.run(["debugfs", "-w", "-R", "link / /d/up", str(image)], check=True,
                   capture_output=True)
    _checker_finds(["e2fsck", "-fn", str(image)], "Entry 'up' in /d")
    _refused(image, ext4_image, "appears twice (a directory loop")


@pytest.fixture(scope="module")
def fat_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("mkfs.vfat", "mmd", "mcopy", "fsck.vfat")
    top = tmp_path_factory.mktemp("hostile-fat")
    image = top / "clean.img"
    subprocess.run(["mkfs.vfat", "-F", "16", "-C", str(image), "20480"], check=True,
                   capture_output=True)
    (top / "X.TXT").write_text("hi\n")
    subprocess.run(["mmd", "-i", str(image), "::A", "::A/B"], check=True)
    subprocess.run(["mcopy", "-i", str(image), str(top / "X.TXT"), "::A/"], check=True)
    assert subprocess.run(["fsck.vfat", "-n", str(image)], capture_output=True).returncode == 0
    return image


def _fat_folder_a(image: Path) -> tuple[int, int]:
    """(byte offset of folder /A's first cluster, its size), from the boot sector's BPB."""
    with image.open("rb") as f:
        boot = f.read(512)
    sector, per_cluster, reserved, fats, root_entries, _, _, fat_sectors = \
        struct.unpack_from("<HBHBHHBH", boot, 11)
    root = (reserved + fats * fat_sectors) * sector
    data = root + root_entries * 32
    with image.open("rb") as f:
        f.seek(root)
        entries = f.read(root_entries * 32)
    at = next(i for i in range(0, len(entries), 32) if entries[i:i + 11] == b"A          ")
    cluster = struct.unpack_from("<H", entries, at + 26)[0]
    return data + (cluster - 2) * per_cluster * sector, per_cluster * sector


def _patch_in_a(image: Path, name: bytes, offset: int, value: bytes) -> None:
    start, size = _fat_folder_a(image)
    with image.open("r+b") as f:
        f.seek(start)
        at = f.read(size).index(name)
        f.seek(start + at + offset)
        f.write(value)


def test_fat_directory_loop(fat_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "damaged.img"
    shutil.copy(fat_image, image)
    start, _ = _fat_folder_a(image)
    with image.open("rb") as f:
        f.seek(start)  # "." of /A holds /A's own cluster
        own = f.read(32)[26:28]
    _patch_in_a(image, b"B          ", 26, own)  # /A/B starts where /A does
    _checker_finds(["fsck.vfat", "-n", str(image)], "/A/B", "point to containing directory")
    _refused(image, fat_image, "FAT directory /A/B starts at cluster", "loops")


def test_fat_name_with_a_slash(fat_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "damaged.img"
    shutil.copy(fat_image, image)
    _patch_in_a(image, b"X       TXT", 0, b"X/Y")
    _checker_finds(["fsck.vfat", "-n", str(image)], "Bad short file name (X/Y.TXT)")
    _refused(image, fat_image, "FAT directory /A holds an entry named 'X/Y.TXT'")


def test_fat_truncated(fat_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "damaged.img"
    shutil.copy(fat_image, image)
    os.truncate(image, 100_000)
    _checker_finds(["fsck.vfat", "-n", str(image)], "Failed to read sector")
    _refused(image, None, f"FAT boot sector says {20480 * 1024} bytes",
             "the 100000 bytes there are")


def test_fat_huge_fat_size(fat_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "damaged.img"
    shutil.copy(fat_image, image)
    with image.open("r+b") as f:  # BPB_FATSz16: 65535 sectors per FAT, 64 MiB in 20 MiB
        f.seek(22)
        f.write(struct.pack("<H", 0xFFFF))
    _checker_finds(["fsck.vfat", "-n", str(image)])
    _refused(image, None, "FAT boot sector says", "(reserved sectors, FATs", "more than the "
             "file system's size")


def test_tar_member_longer_than_the_archive(tmp_path: Path) -> None:
    need("tar")
    archive = tmp_path / "huge.tar"
    member = tarfile.TarInfo("huge")
    member.size = 8 << 30  # a header claiming 8 GiB, with 512 bytes behind it
    archive.write_bytes(member.tobuf(tarfile.GNU_FORMAT) + b"x" * 512 + bytes(1024))
    _checker_finds(["tar", "-tvf", str(archive)], "Error is not recoverable")
    _refused(archive, None, "huge.tar is truncated or corrupt at member 'huge'")


def test_truncated_gzip_archive(tmp_path: Path) -> None:
    need("tar", "gzip")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "noise").write_bytes(os.urandom(100_000))
    whole = tmp_path / "whole.tar.gz"
    subprocess.run(["tar", "-czf", str(whole), "-C", str(tmp_path / "src"), "."], check=True)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:50_000])
    _checker_finds(["gzip", "-t", str(cut)], "unexpected end of file")
    _refused(cut, None, "cut.tar.gz is not a gzip file that expands to its end")
    done = compose("diff", str(whole), str(cut))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "expands to its end" in done.stderr
