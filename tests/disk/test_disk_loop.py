"""The kernel's view: loop-mount a GPT disk image, see every partition, mount the vfat one."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from composer.disk.assemble import DiskPartitionSpec as P
from composer.disk.assemble import plan_disk, write_disk
from composer.fs.base import WriteResult
from tests.conftest import env_skip

MIB = 1 << 20

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for losetup and mount"),
    pytest.mark.skipif(not Path("/dev/loop-control").exists(),
                       reason="environment fact [no-loop-devices]: no /dev/loop-control"),
]


def sh(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stderr}"
    return done.stdout.strip()


def _wait_for(name: str, count: int) -> bool:
    for _ in range(20):
        found = sorted(p.name for p in Path(f"/sys/block/{name}").glob(f"{name}p*"))
        if found == [f"{name}p{i}" for i in range(1, count + 1)]:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("table", ["gpt", "mbr"])
def test_kernel_sees_partitions_and_mounts_vfat(tmp_path: Path, table: str,
                                                vfat_image: tuple[Path, WriteResult]) -> None:
    specs = [P("efi", 8 * MIB, "esp" if table == "gpt" else "vfat"),
             P("rootfs", 4 * MIB, "linux"), P("data", 2 * MIB, "linux")]
    plan = plan_disk(table, specs, seed="loop")
    img = tmp_path / "disk.img"
    write_disk(plan, {"efi": vfat_image}, img)
    try:
        dev = sh("losetup", "-P", "--show", "-f", str(img))
    except AssertionError as exc:
        env_skip("no-loop-devices", f"losetup failed here: {exc}")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        parts = [Path(f"{dev}p{i}") for i in (1, 2, 3)]
        name = Path(dev).name
        if not _wait_for(name, 3):
            # kernels built without CONFIG_EFI_PARTITION/CONFIG_MSDOS_PARTITION (some microVMs)
            # see no partitions with -P; util-linux's own parser (libblkid) then adds them
            sh("partx", "-a", dev)
            assert _wait_for(name, 3), "neither the kernel nor partx -a found 3 partitions"
        for _ in range(50):  # device nodes appear asynchronously
            if all(p.exists() for p in parts):
                break
            time.sleep(0.1)
        for number, part in enumerate(plan.partitions, start=1):
            sys_part = Path(f"/sys/block/{name}/{name}p{number}")
            assert int((sys_part / "start").read_text()) == part.start_lba
            assert int((sys_part / "size").read_text()) == part.sectors
        if not parts[0].exists():
            env_skip("no-loop-devices",
                     "no device nodes for loop partitions (no udev/devtmpfs here)")
        # through the kernel's partition device, the vfat image is intact
        assert sh("fsck.vfat", "-n", str(parts[0])).splitlines()[-1].endswith("clusters")
        if "vfat" not in Path("/proc/filesystems").read_text():
            env_skip("no-vfat-driver", "this kernel has no vfat driver: partitions and the "
                     "vfat partition were checked, the mount was not")
        sh("mount", "-t", "vfat", "-o", "ro", str(parts[0]), str(mnt))
        try:
            assert (mnt / "EFI" / "BOOT" / "BOOTAA64.EFI").read_bytes()[:2] == b"MZ"
            assert (mnt / "boot.scr").read_text() == "echo hi\n"
        finally:
            sh("umount", str(mnt))
    finally:
        sh("losetup", "-d", dev)
