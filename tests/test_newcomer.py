"""A new user's first hour: the README's example is the demo, help renders as words, options
go before or after the command, IDs look the way Linux shows them, tar partitions read without
warnings in GNU tar and bsdtar."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, compose, need

README = (REPO / "README.md").read_text(encoding="utf-8")


def _run(*cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)  # type: ignore


def test_readme_example_is_the_demo_layout() -> None:
    block = re.search(r"## The layout file \(version 1\)\n\n```yaml\n(.*?)```", README, re.S)
    assert block is not None
    demo = yaml.safe_load((REPO / "layouts" / "demo.yaml").read_text(encoding="utf-8"))
    assert yaml.safe_load(block.group(1)) == demo
    assert set(demo["outputs"]) == {"simg", "zst", "sfdisk"}  # every output kind to look at


@pytest.mark.parametrize("command", ["build", "validate", "plan"])
def test_help_renders_words_and_every_option_is_documented(command: str) -> None:
    result = compose(command, "--help", env={"COLUMNS": "100", "TERM": "dumb"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "<bool>" not in text and "{layout}" not in text and "<path>" not in text
    assert f"{command} [OPTIONS] LAYOUT" in text
    commands = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    for option in re.findall(r"(--[a-z][a-z-]+)", text):
        assert option == "--help" or option in commands, (command, option)


def test_global_options_after_the_command(demo: Path, tmp_path: Path) -> None:
    result = compose("build", str(demo), "-o", str(tmp_path / "o"), "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""
    assert compose("validate", str(demo), "--quiet").stderr == ""
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nname: x\npartitions: []\n")
    result = compose("validate", str(broken), "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr


def _blkid(image: Path, offset: int = 0) -> dict[str, str]:
    out = _run("blkid", "-p", "-O", str(offset), "-o", "export", str(image)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_plan_and_manifest_ids_in_each_format_s_own_form(demo: Path, tmp_path: Path) -> None:
    planned = json.loads(compose("plan", str(demo), "--json").stdout)
    parts = {p["name"]: p for p in planned["partitions"]}
    assert parts["app"]["uuid"] is None  # a tar has no file-system ID
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}", parts["boot"]["uuid"])
    text = compose("plan", str(demo)).stdout
    assert f"uuid {parts['boot']['uuid']}" in text
    assert re.search(r"^  app .* uuid -$", text, re.M)

    out = tmp_path / "o"
    assert compose("build", str(demo), "-o", str(out)).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "uuid" not in manifest["partitions"]["app"]
    for name in ("boot", "rootfs", "docker"):
        got = _blkid(out / f"{name}.img")["UUID"]  # what /dev/disk/by-uuid would show
        assert manifest["partitions"][name]["uuid"] == parts[name]["uuid"] == got, name


@pytest.mark.skipif(shutil.which("sfdisk") is None, reason="needs sfdisk (fdisk package)")
def test_mbr_partuuid_is_signature_dash_number(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "boot").mkdir(parents=True)
    (src / "boot" / "config.txt").write_text("arm_64bit=1\n")
    (src / "etc").mkdir()
    layout = tmp_path / "pi.yaml"
    layout.write_text(
        "version: 1\nname: pi\nepoch: 1700000000\nsources: {s: src}\npartitions:\n"
        "  - {name: boot, fs: vfat, size: 32MiB, mount: /boot, label: BOOT}\n"
        "  - {name: root, fs: ext4, size: 16MiB, mount: /}\n"
        "files:\n  - {from: \"s:/\", to: /}\n"
        "disk: {table: mbr, signature: \"0x1a2b3c4d\"}\n")
    out = tmp_path / "o"
    result = compose("build", str(layout), "-o", str(out))
    assert result.returncode == 0, result.stderr
    disk = json.loads((out / "manifest.json").read_text())["disk"]
    table = json.loads(_run("sfdisk", "--json", str(out / "disk.img")).stdout)["partitiontable"]
    assert table["id"] == "0x1a2b3c4d"
    # Linux's MBR PARTUUID: "%08x-%02x" of the disk signature and the partition number
    assert [p["partuuid"] for p in disk["partitions"]] == ["1a2b3c4d-01", "1a2b3c4d-02"]
    assert all("attributes" not in p for p in disk["partitions"])  # a GPT-only field
    planned = compose("plan", str(layout)).stdout
    assert "partuuid 1a2b3c4d-01" in planned and "partuuid 1a2b3c4d-02" in planned


def test_lowercase_vfat_label_is_an_error_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    layout = tmp_path / "l.yaml"
    layout.write_text("version: 1\nname: x\nsources: {s: src}\npartitions:\n"
                      "  - {name: boot, fs: vfat, size: 8MiB, mount: /, label: Boot}\n"
                      "files:\n  - {from: \"s:/\", to: /}\n")
    result = compose("build", str(layout), "-o", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "FAT label 'Boot' has lowercase letters" in result.stderr
    assert "write label: BOOT" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(shutil.which("bsdtar") is None, reason="needs bsdtar (libarchive-tools)")
def test_tar_xattrs_read_by_gnu_tar_and_bsdtar_without_warnings(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    archive = tmp_path / "in.tar"
    # the input: a pax archive with a binary xattr value, made by GNU tar from Python's tarfile
    import tarfile

    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size, info.mtime = 4, 1700000000
        info.pax_headers = {"SCHILY.xattr.user.bin": "\x01\x02value",
                            "SCHILY.xattr.user.text": "hello"}
        tar.addfile(info, (src / "f").open("rb"))
    layout = tmp_path / "l.yaml"
    layout.write_text("version: 1\nname: x\nepoch: 1700000000\nsources: {s: in.tar}\n"
                      "partitions:\n  - {name: app, fs: tar, mount: /}\n"
                      "files:\n  - {from: \"s:/\", to: /}\n")
    out = tmp_path / "o"
    result = compose("build", str(layout), "-o", str(out))
    assert result.returncode == 0, result.stderr
    image = out / "app.tar"
    raw = image.read_bytes()
    assert b"LIBARCHIVE.xattr" not in raw and b"SCHILY.xattr.user.text=hello" in raw
    gnu = subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-tvvf", str(image)],
                         capture_output=True, text=True)
    assert gnu.returncode == 0 and gnu.stderr == "", gnu.stderr
    bsd = subprocess.run(["bsdtar", "-tvf", str(image)], capture_output=True, text=True)
    assert bsd.returncode == 0 and bsd.stderr == "", bsd.stderr
    need("getfattr")  # the attr package
    dest = tmp_path / "x"
    dest.mkdir()
    _run("tar", "--xattrs", "--xattrs-include=user.*", "-xf", str(image), "-C", str(dest))
    got = _run("getfattr", "-d", "-e", "hex", str(dest / "f")).stdout
    assert "user.text=0x68656c6c6f" in got and "user.bin=0x010276616c7565" in got
