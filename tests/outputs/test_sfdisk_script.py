"""sfdisk scripts: applying one with sfdisk must recreate composer's tables byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from composer.disk.assemble import DiskPartitionSpec as P
from composer.disk.assemble import DiskPlan, RawBlobSpec, plan_disk, write_disk
from composer.disk.sfdisk import gpt_attrs, sfdisk_script

MIB = 1 << 20

pytestmark = pytest.mark.skipif(not shutil.which("sfdisk"), reason="needs sfdisk")


def gpt_plan(**kw: object) -> DiskPlan:
    return plan_disk("gpt", [
        P("efi", 8 * MIB, "esp", bootable=True, uuid=uuid.UUID(int=0x11)),
        P("rootfs-a", 16 * MIB, "root-arm64", attributes=("required", "read-only"),
          uuid=uuid.UUID(int=0x12)),
        P("data", 4 * MIB, "linux", attributes=("no-automount", "bit:48"),
          uuid=uuid.UUID(int=0x13)),
    ], seed="s", disk_guid=uuid.UUID("6A3B1C2D-0000-4000-8000-000000000001"), **kw)


def mbr_plan() -> DiskPlan:
    return plan_disk("mbr", [P("boot", 8 * MIB, "vfat", bootable=True),
                             P("rootfs", 16 * MIB, "linux"), P("swap", MIB, "swap")],
                     seed="s", mbr_signature=0x12345678)


def apply(tmp_path: Path, plan: DiskPlan) -> Path:
    blank = tmp_path / "sfdisk.img"
    with blank.open("wb") as f:
        f.truncate(plan.disk_size)
    done = subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", str(blank)],
                          input=sfdisk_script(plan), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return blank


def test_gpt_script_text() -> None:
    plan = gpt_plan()
    n = plan.disk_sectors
    assert sfdisk_script(plan) == f"""label: gpt
label-id: 6A3B1C2D-0000-4000-8000-000000000001
unit: sectors
first-lba: 34
last-lba: {n - 34}
table-length: 128
sector-size: 512

start=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=00000000-0000-0000-0000-000000000011, name="efi", attrs="LegacyBIOSBootable"
start=18432, size=32768, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, uuid=00000000-0000-0000-0000-000000000012, name="rootfs-a", attrs="RequiredPartition GUID:60"
start=51200, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=00000000-0000-0000-0000-000000000013, name="data", attrs="GUID:48 GUID:63"
"""  # noqa: E501


@pytest.mark.parametrize("make", [gpt_plan, mbr_plan])
def test_sfdisk_recreates_the_tables_byte_for_byte(tmp_path: Path, make) -> None:  # type: ignore
    plan = make()
    ours = tmp_path / "disk.img"
    write_disk(plan, {}, ours)
    theirs = apply(tmp_path, plan)
    assert theirs.read_bytes() == ours.read_bytes()


def test_moved_entry_array_is_noted(tmp_path: Path) -> None:
    plan = gpt_plan(gpt_entry_lba=2016, raw_blobs=[RawBlobSpec("spl", 1024, 512 * 1024)])
    script = sfdisk_script(plan)
    assert script.startswith("# the GPT entry array is at LBA 2016 in the image; sfdisk cannot "
                             "move it there and will write it at LBA 2\n")
    assert "first-lba: 2048\n" in script
    blank = apply(tmp_path, plan)  # sfdisk accepts the comment; partitions stay in place
    done = subprocess.run(["sfdisk", "--json", str(blank)], capture_output=True, text=True)
    table = json.loads(done.stdout)["partitiontable"]
    assert [p["start"] for p in table["partitions"]] == [2048, 18432, 51200]


def test_attr_words() -> None:
    assert gpt_attrs(0) == ""
    assert gpt_attrs(1 | 2 | 4 | 1 << 59 | 1 << 63) == (
        "RequiredPartition NoBlockIOProtocol LegacyBIOSBootable GUID:59 GUID:63")
