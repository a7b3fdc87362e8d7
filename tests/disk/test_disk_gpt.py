"""GPT disks: judged by an independent decoder (gptcheck.py), sfdisk --json and sgdisk -v."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from gptcheck import Part, decode_gpt

from composer.disk.assemble import (
    DiskPartitionSpec,
    DiskPlan,
    RawBlobSpec,
    TableType,
    plan_disk,
    write_disk,
)
from composer.fs.base import WriteResult
from tests.conftest import need

MIB = 1 << 20
KIB = 1 << 10
ESP = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
ROOT_ARM64 = uuid.UUID("B921B045-1DF0-41C3-AF44-4C6F280D3FAE")
LINUX = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
PINNED = uuid.UUID("6A3B1C2D-0000-4000-8000-000000000014")

needs_tools = pytest.mark.skipif(not (shutil.which("sfdisk") and shutil.which("sgdisk")),
                                 reason="needs sfdisk (fdisk) and sgdisk (gdisk)")


def specs() -> list[DiskPartitionSpec]:
    return [
        DiskPartitionSpec("efi", 8 * MIB, "esp", bootable=True),
        DiskPartitionSpec("rootfs-a", 16 * MIB, "root-arm64", attributes=("required", "read-only")),
        DiskPartitionSpec("rootfs-b", 16 * MIB, "root-arm64", attributes=("no-automount",)),
        DiskPartitionSpec("data", 4 * MIB, "0fc63daf-8483-4772-8e79-3d69d8477de4", uuid=PINNED),
    ]


def build(tmp_path: Path, vfat: tuple[Path, WriteResult], plan: DiskPlan | None = None,
          name: str = "disk.img", blobs: dict[str, bytes | Path] | None = None
          ) -> tuple[Path, DiskPlan, WriteResult]:
    plan = plan or plan_disk(TableType.GPT, specs(), seed="demo")
    out = tmp_path / name
    return out, plan, write_disk(plan, {"efi": vfat}, out, blobs)


def test_plan_places_aligned_and_derives_guids() -> None:
    plan = plan_disk("gpt", specs(), seed="demo")
    assert [(p.name, p.number, p.offset, p.size) for p in plan.partitions] == [
        ("efi", 1, 1 * MIB, 8 * MIB), ("rootfs-a", 2, 9 * MIB, 16 * MIB),
        ("rootfs-b", 3, 25 * MIB, 16 * MIB), ("data", 4, 41 * MIB, 4 * MIB)]
    # auto size: last end (45 MiB) + 33 backup sectors, rounded up to 1 MiB
    assert plan.disk_size == 46 * MIB
    # written out, not derive_guid: uuid5 of "<seed>/<purpose>" in the disk module's namespace
    disk_ns = uuid.uuid5(uuid.NAMESPACE_URL, "composer:disk")
    assert plan.disk_guid == uuid.uuid5(disk_ns, "demo/disk")
    assert plan.partitions[0].uuid == uuid.uuid5(disk_ns, "demo/partition/efi")
    assert plan.partitions[3].uuid == PINNED
    assert plan.free == ((17 * KIB, MIB - 17 * KIB), (45 * MIB, MIB - 33 * 512))
    other = plan_disk("gpt", specs(), seed="other")
    assert other.disk_guid != plan.disk_guid
    assert other.partitions[0].uuid != plan.partitions[0].uuid


def test_independent_decoder(tmp_path: Path, vfat_image: tuple[Path, WriteResult]) -> None:
    img, plan, result = build(tmp_path, vfat_image)
    assert img.stat().st_size == result.size == 46 * MIB
    table = decode_gpt(img)
    n = result.size // 512
    assert (table.first_usable, table.last_usable, table.entry_lba) == (34, n - 34, 2)
    assert table.disk_guid == plan.disk_guid
    uuids = [p.uuid for p in plan.partitions]
    assert table.parts == (
        Part(ESP, uuids[0], 2048, 2048 + 16384 - 1, 1 << 2, "efi"),
        Part(ROOT_ARM64, uuids[1], 18432, 18432 + 32768 - 1, 1 << 60 | 1, "rootfs-a"),
        Part(ROOT_ARM64, uuids[2], 51200, 51200 + 32768 - 1, 1 << 63, "rootfs-b"),
        Part(LINUX, PINNED, 83968, 83968 + 8192 - 1, 0, "data"),
    )


def test_partition_image_copied_and_holes_kept(tmp_path: Path,
                                               vfat_image: tuple[Path, WriteResult]) -> None:
    img, plan, result = build(tmp_path, vfat_image)
    vfat, vres = vfat_image
    data = img.read_bytes()
    efi = plan.partitions[0]
    assert data[efi.offset:efi.offset + vres.size] == vfat.read_bytes()
    assert not any(data[efi.offset + vres.size:efi.end])
    # every non-zero byte of the disk is in the returned extents
    mapped = bytearray(len(data))
    for offset, length in result.extents:
        mapped[offset:offset + length] = b"\1" * length
    for block in range(0, len(data), 4096):
        if any(data[block:block + 4096]):
            assert all(mapped[i] for i in range(block, block + 4096) if data[i]), block
    # partitions with no image get their first and last MiB mapped (wiped), nothing more
    rootfs_a = plan.partitions[1]
    assert all(mapped[rootfs_a.offset:rootfs_a.offset + MIB])
    assert not any(mapped[rootfs_a.offset + MIB:rootfs_a.end - MIB])
    # holes stay holes: the file allocates about what was mapped, not 46 MiB
    mapped_bytes = sum(length for _, length in result.extents)
    assert os.stat(img).st_blocks * 512 <= mapped_bytes + 256 * KIB
    need("fsck.vfat")
    part = tmp_path / "p1.vfat"
    part.write_bytes(data[efi.offset:efi.offset + vres.size])
    done = subprocess.run(["fsck.vfat", "-n", str(part)], capture_output=True, text=True)
    assert done.returncode == 0 and "files," in done.stdout.splitlines()[-1], done.stdout


def test_reproducible(tmp_path: Path, vfat_image: tuple[Path, WriteResult]) -> None:
    a, _, _ = build(tmp_path, vfat_image, name="a.img")
    b, _, _ = build(tmp_path, vfat_image, name="b.img")
    assert a.read_bytes() == b.read_bytes()


@needs_tools
def test_sfdisk_json(tmp_path: Path, vfat_image: tuple[Path, WriteResult]) -> None:
    img, plan, result = build(tmp_path, vfat_image)
    done = subprocess.run(["sfdisk", "--json", str(img)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    table = json.loads(done.stdout)["partitiontable"]
    n = result.size // 512
    assert {k: table[k] for k in ("label", "id", "unit", "firstlba", "lastlba")} == {
        "label": "gpt", "id": str(plan.disk_guid).upper(), "unit": "sectors",
        "firstlba": 34, "lastlba": n - 34}
    got = [{k: v for k, v in p.items() if k != "node"} for p in table["partitions"]]
    u = [str(p.uuid).upper() for p in plan.partitions]
    assert got == [
        {"start": 2048, "size": 16384, "type": str(ESP).upper(), "uuid": u[0], "name": "efi",
         "attrs": "LegacyBIOSBootable"},
        {"start": 18432, "size": 32768, "type": str(ROOT_ARM64).upper(), "uuid": u[1],
         "name": "rootfs-a", "attrs": "RequiredPartition GUID:60"},
        {"start": 51200, "size": 32768, "type": str(ROOT_ARM64).upper(), "uuid": u[2],
         "name": "rootfs-b", "attrs": "GUID:63"},
        {"start": 83968, "size": 8192, "type": str(LINUX).upper(), "uuid": u[3], "name": "data"},
    ]


def sgdisk_verify(img: Path) -> list[str]:
    """sgdisk -v exits 0 on problems: parse it. Returns any Warning lines."""
    done = subprocess.run(["sgdisk", "-v", str(img)], capture_output=True, text=True)
    out = done.stdout
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "No problems found." in out, out
    for bad in ("Creating new GPT", "Problem", "Caution", "Identified"):
        assert bad not in out, out
    return [ln for ln in out.splitlines() if "Warning" in ln]


@needs_tools
def test_sgdisk_verify(tmp_path: Path, vfat_image: tuple[Path, WriteResult]) -> None:
    img, _, _ = build(tmp_path, vfat_image)
    assert sgdisk_verify(img) == []


@needs_tools
def test_moved_entry_array_for_a_boot_rom_blob(tmp_path: Path,
                                               vfat_image: tuple[Path, WriteResult]) -> None:
    """i.MX6 reads its bootloader at 1 KiB: move the array to just before the first partition."""
    blob = bytes([0xD1]) * (700 * KIB)
    plan = plan_disk("gpt", specs(), seed="demo", gpt_entry_lba=2048 - 32,
                     raw_blobs=[RawBlobSpec("u-boot", 1 * KIB, 1 * MIB - 1 * KIB - 16 * KIB)])
    img, plan, result = build(tmp_path, vfat_image, plan, blobs={"u-boot": blob})
    data = img.read_bytes()
    assert data[KIB:KIB + len(blob)] == blob
    table = decode_gpt(img)
    assert (table.entry_lba, table.first_usable) == (2016, 2048)
    assert [p.first for p in table.parts] == [2048, 18432, 51200, 83968]
    warnings = sgdisk_verify(img)
    assert all("gap" in w.lower() or "partition table" in w.lower() for w in warnings), warnings
    assert any(o <= KIB and KIB + len(blob) <= o + n for o, n in result.extents)
