"""The demo layout's images and GPT disk, judged by e2fsprogs, dosfstools, mtools, sgdisk,
sfdisk, bmaptool, simg2img and the kernel (when root with loop devices)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import compose, copy_layouts, planted_secrets
from tests.readback import published, sha256_of

GG = "/greengrass/v2"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    folder = tmp_path_factory.mktemp("disk")
    copy_layouts(folder / "layouts", golden)
    result = compose("build", "layouts/demo.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "out"


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


sha = sha256_of


def extract(out: Path, name: str) -> Path:
    """A partition cut out of disk.img (so the tools judge the disk, not the loose image)."""
    part = next(p for p in manifest(out)["disk"]["partitions"] if p["name"] == name)
    target = out.parent / f"cut-{name}.img"
    with (out / "disk.img").open("rb") as disk, target.open("wb") as f:
        disk.seek(part["offset"])
        left = part["size"]
        while left:
            chunk = disk.read(min(left, 1 << 24))
            f.write(chunk)
            left -= len(chunk)
    return target


def e2fsck_clean(image: Path) -> None:
    result = run("e2fsck", "-fn", str(image), check=False)
    allowed = re.compile(r"^(e2fsck \d|Pass \d|.*: \d+/\d+ files .* blocks$)")
    problems = [line for line in result.stdout.splitlines() + result.stderr.splitlines()
                if line.strip() and not allowed.match(line)]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_all_outputs_listed_and_verified(out: Path) -> None:
    names = {p.name for p in published(out)}
    for stem in ("boot", "rootfs", "docker", "disk"):
        assert {f"{stem}.img", f"{stem}.bmap", f"{stem}.simg", f"{stem}.img.zst"} <= names
    assert {"app.tar", "disk.sfdisk", "manifest.json", "SHA256SUMS", "report.txt"} <= names
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout
    assert check.stdout.count(": OK") == len(names) - 1
    # the manifest lists every output written before it
    assert set(manifest(out)["outputs"]) == names - {"manifest.json", "report.txt",
                                                     "SHA256SUMS"}


def test_gpt_checked_by_sgdisk_and_sfdisk(out: Path) -> None:
    verify = run("sgdisk", "-v", str(out / "disk.img"), check=False)
    assert "No problems found" in verify.stdout, verify.stdout
    assert "Problem" not in verify.stdout and "Caution" not in verify.stdout
    table = json.loads(run("sfdisk", "--json", str(out / "disk.img")).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    disk = manifest(out)["disk"]
    assert table["id"].lower() == disk["guid"]
    got = [(p["name"], p["start"] * 512, p["size"] * 512, p["type"].lower(), p["uuid"].lower())
           for p in table["partitions"]]
    want = [(p["name"], p["offset"], p["size"], p["type"], p["partuuid"])
            for p in disk["partitions"]]
    assert got == want
    assert [p["name"] for p in table["partitions"]] == ["boot", "rootfs", "docker"]


def test_partitions_in_the_disk_equal_the_images(out: Path) -> None:
    for name in ("boot", "rootfs", "docker"):
        assert sha(extract(out, name)) == sha(out / f"{name}.img"), name


def test_ext4_partitions_are_clean_and_hold_the_tree(out: Path) -> None:
    rootfs, docker = extract(out, "rootfs"), extract(out, "docker")
    e2fsck_clean(rootfs)
    e2fsck_clean(docker)
    cat = run("debugfs", "-R", "cat /etc/hostname", str(rootfs)).stdout
    assert cat == "gg-device\n"
    link = run("debugfs", "-R", f"stat {GG}/alts/current", str(rootfs)).stdout
    assert f'Fast link dest: "{GG}/alts/init"' in link
    enabled = run("debugfs", "-R", "stat /etc/systemd/system/multi-user.target.wants/"
                  "greengrass.service", str(rootfs)).stdout
    assert "/etc/systemd/system/greengrass.service" in enabled
    listing = run("debugfs", "-R", f"ls -l {GG}", str(rootfs)).stdout
    for gone in ("logs", "telemetry", "work", "deployments", "privKey.key"):
        assert f" {gone}\n" not in listing + "\n"
    layer = "/overlay2/01" + "a" * 62 + "/diff/usr/bin"
    whiteout = run("debugfs", "-R", f"stat {layer}/removed-tool", str(docker)).stdout
    assert "Type: character special" in whiteout and "Device major/minor number: 00:00" in \
        whiteout
    su = run("debugfs", "-R", "stat /overlay2/00" + "a" * 62 + "/diff/usr/bin/su",
             str(docker)).stdout
    assert "Links: 2" in su and "Mode:  04755" in su
    ping = run("debugfs", "-R", "ea_list /overlay2/00" + "a" * 62 + "/diff/usr/bin/ping",
               str(docker)).stdout
    assert "security.capability" in ping


def test_vfat_partition_is_clean_and_keeps_dotfiles(out: Path) -> None:
    boot = extract(out, "boot")
    fsck = run("fsck.vfat", "-n", str(boot), check=False)
    assert fsck.returncode == 0 and len(fsck.stdout.strip().splitlines()) == 2, fsck.stdout
    data = run("mtype", "-i", str(boot), "::/.bootstamp").stdout
    assert data == "keep me\n"
    label = run("mlabel", "-i", str(boot), "-s", "::").stdout
    assert "BOOT" in label


def test_no_planted_secret_in_any_output(out: Path) -> None:
    for secret in planted_secrets():
        for path in published(out):
            if path.suffix in (".zst", ".simg"):
                continue  # compressed forms of images checked here directly
            with path.open("rb") as f:
                while chunk := f.read(1 << 24):
                    assert secret.encode() not in chunk, (secret, path.name)


def test_bmaptool_copy_reproduces_the_disk(out: Path, tmp_path: Path) -> None:
    for source in ("disk.img", "disk.img.zst"):
        dest = tmp_path / f"copy-{source}"
        run("bmaptool", "copy", "--bmap", str(out / "disk.bmap"), str(out / source), str(dest))
        assert sha(dest) == sha(out / "disk.img"), source


def test_bmaptool_rejects_a_tampered_disk(out: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.img"
    shutil.copy(out / "disk.img", tampered)
    part = next(p for p in manifest(out)["disk"]["partitions"] if p["name"] == "rootfs")
    with tampered.open("r+b") as f:
        f.seek(part["offset"] + 1024 + 100)  # inside the ext4 superblock: a mapped block
        f.write(b"\xff\xfe")
    result = run("bmaptool", "copy", "--bmap", str(out / "disk.bmap"), str(tampered),
                 str(tmp_path / "dest.img"), check=False)
    assert result.returncode != 0
    assert "checksum mismatch" in (result.stderr + result.stdout).lower()


def test_android_sparse_images_give_back_the_raw_ones(out: Path, tmp_path: Path) -> None:
    for stem in ("disk", "rootfs", "boot"):
        raw = tmp_path / f"{stem}.raw"
        run("simg2img", str(out / f"{stem}.simg"), str(raw))
        assert sha(raw) == sha(out / f"{stem}.img"), stem


def test_sfdisk_script_recreates_the_table(out: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    with blank.open("wb") as f:
        f.truncate((out / "disk.img").stat().st_size)
    with (out / "disk.sfdisk").open() as script:
        subprocess.run(["sfdisk", "-q", str(blank)], stdin=script, check=True,
                       capture_output=True)
    ours = json.loads(run("sfdisk", "--json", str(out / "disk.img")).stdout)["partitiontable"]
    theirs = json.loads(run("sfdisk", "--json", str(blank)).stdout)["partitiontable"]
    for key in ("partitions", "id", "firstlba", "lastlba"):
        mine = ours[key] if key != "partitions" else [
            {k: v for k, v in p.items() if k != "node"} for p in ours[key]]
        other = theirs[key] if key != "partitions" else [
            {k: v for k, v in p.items() if k != "node"} for p in theirs[key]]
        assert mine == other, key


def _can_loop() -> str | None:
    if os.geteuid() != 0:
        return "needs root for loop devices"
    if not Path("/dev/loop-control").exists():
        return "environment fact [no-loop-devices]: no /dev/loop-control"
    return None


@pytest.mark.root
@pytest.mark.skipif(_can_loop() is not None, reason=str(_can_loop()))
def test_kernel_mounts_the_ext4_partitions_of_the_disk(out: Path, tmp_path: Path) -> None:
    disk = manifest(out)["disk"]
    for name, probe, expected in (("rootfs", "etc/hostname", b"gg-device\n"),
                                  ("docker", "image/overlay2/repositories.json", None)):
        part = next(p for p in disk["partitions"] if p["name"] == name)
        loop = run("losetup", "--find", "--show", "--read-only", "--offset",
                   str(part["offset"]), "--sizelimit", str(part["size"]),
                   str(out / "disk.img")).stdout.strip()
        mnt = tmp_path / name
        mnt.mkdir()
        try:
            run("mount", "-t", "ext4", "-o", "ro", loop, str(mnt))
            try:
                data = (mnt / probe).read_bytes()
                assert expected is None or data == expected
                if name == "rootfs":
                    assert os.readlink(mnt / "greengrass/v2/alts/current") == \
                        f"{GG}/alts/init"
                    assert not (mnt / "greengrass/v2/logs").exists()
            finally:
                run("umount", str(mnt))
        finally:
            run("losetup", "-d", loop)


def test_mbr_disk_with_a_bootloader_blob(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "spl.bin").write_bytes(b"SPL!" * 8192)  # 32 KiB at 33 KiB, as on i.MX
    (tmp_path / "layout.yaml").write_text(
        "version: 1\nname: mbr-test\nepoch: 1718878001\nsources:\n  boot: boot/\n"
        "partitions:\n"
        "  - {name: boot, fs: vfat, size: 32MiB, mount: /boot, bootable: true}\n"
        "  - {name: root, fs: ext4, size: auto, mount: /}\n"
        "files:\n  - {to: /etc/hostname, content: \"mbr\\n\"}\n"
        "  - {to: /boot/cmdline.txt, content: \"root=/dev/mmcblk0p2\\n\"}\n"
        "disk:\n  table: mbr\n  signature: \"0x1a2b3c4d\"\n"
        "  raw: [{from: \"boot:/spl.bin\", offset: 33KiB}]\n")
    result = compose("build", "layout.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    table = json.loads(run("sfdisk", "--json", str(out / "disk.img")).stdout)["partitiontable"]
    assert table["label"] == "dos" and table["id"] == "0x1a2b3c4d"
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83"]
    assert parts[0].get("bootable") is True and not parts[1].get("bootable")
    verify = run("sfdisk", "--verify", str(out / "disk.img"), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with (out / "disk.img").open("rb") as f:
        f.seek(33 * 1024)
        assert f.read(32768) == b"SPL!" * 8192
    e2fsck_clean(extract(out, "root"))
    dest = tmp_path / "copy.img"
    run("bmaptool", "copy", "--bmap", str(out / "disk.bmap"), str(out / "disk.img"), str(dest))
    assert sha(dest) == sha(out / "disk.img")
