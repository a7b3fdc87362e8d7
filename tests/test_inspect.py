"""`compose inspect`: partition tables and archive or FAT entries, from composer's images and
from other tools' (sfdisk, GNU tar, mkfs.vfat + mcopy), judged by those tools; damaged and
hostile tables are one clear error naming the structure and field."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from tests.checkkit import build_demo, copy_build
from tests.conftest import compose

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


def test_what_it_cannot_read(built: Path, tmp_path: Path) -> None:
    done = compose("inspect", str(built / "manifest.json"))
    assert done.returncode == 1 and "not an archive libarchive reads" in done.stderr
    assert compose("inspect", str(tmp_path / "nothing")).returncode == 2
