"""Re-check of the ext4, vfat and disk outputs on fresh inputs, judged only by independent tools
(e2fsck, fsck.fat, mtools, sgdisk, sfdisk, blkid, bmaptool, simg2img, the kernel), whose output
is parsed rather than trusted by exit code. Bad layouts for these features must be exit 1 with
one message, its place and a hint, and nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import compose, env_skip
from tests.readback import published

EPOCH = 1718878001
MIB = 1 << 20
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop mounts, chown)")


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True)
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def _build(folder: Path, layout: str, out: str = "out") -> Path:
    (folder / "layout.yaml").write_text(layout)
    result = compose("-q", "build", "layout.yaml", "-o", out, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / out


def _fails(folder: Path, layout: str) -> list[str]:
    """Build a bad layout: exit 1, no traceback, nothing written; returns the stderr lines."""
    (folder / "layout.yaml").write_text(layout)
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (folder / "out").exists()
    return result.stderr.splitlines()


def _fsck_vfat_clean(image: Path) -> None:
    result = _run("fsck.vfat", "-n", str(image), ok=False)
    lines = [ln for ln in result.stdout.splitlines() if not ln.startswith("fsck.fat ")]
    assert result.returncode == 0 and len(lines) == 1 and " files, " in lines[0], result.stdout


def _e2fsck_clean(image: Path) -> None:
    result = _run("e2fsck", "-fn", str(image), ok=False)
    lines = [ln for ln in (result.stdout + result.stderr).splitlines()
             if not ln.startswith(("e2fsck ", "Pass "))]
    assert result.returncode == 0 and len(lines) == 1 and " files (" in lines[0], \
        result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# vfat: labels longer than 8 characters, no label, and a root directory that cannot fit


def _vfat_tree(root: Path) -> None:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / ".dotfile").write_text("dot\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "a" / "one-cluster").write_bytes(os.urandom(2048))
    (root / "Ünïcödé — ñame 日本語.txt").write_text("u\n")
    (root / "a very long file name that is not eight dot three at all.extension").write_text("l")
    (root / "a" / "b" / "c" / "deep.TXT").write_text("deep\n")


@pytest.mark.parametrize("fat, size, label", [
    (12, "2MiB", "BOOT-PART_1"), (16, "32MiB", "F16-LBL_1"), (32, "64MiB", None),
    (16, "8MiB", None),
])
def test_vfat_label_agrees_with_fsck(tmp_path: Path, fat: int, size: str,
                                     label: str | None) -> None:
    _need("fsck.vfat", "minfo", "mcopy")
    _vfat_tree(tmp_path / "src")
    label_key = f", label: {label}" if label else ""
    out = _build(tmp_path, f"version: 1\nname: v\nepoch: {EPOCH}\nsources:\n  s: src/\n"
                 f"partitions:\n  - {{name: b, fs: vfat, size: {size}, mount: /, fat: {fat}"
                 f"{label_key}}}\nfiles:\n  - {{from: \"s:/\", to: /}}\n")
    image = out / "b.img"
    _fsck_vfat_clean(image)  # a truncated or "NONAME" root-directory label made fsck say so
    info = _run("minfo", "-i", str(image), "::").stdout
    assert f'disk label="{(label or "NO NAME").ljust(11)}"' in info
    assert f'disk type="FAT{fat}' in info
    mlabel = _run("mlabel", "-i", str(image), "-s", "::").stdout
    assert (f"Volume label is {label}" in mlabel) if label else ("has no label" in mlabel)
    back = tmp_path / "back"
    back.mkdir()
    _run("mcopy", "-s", "-n", "-i", str(image), "::/", str(back))
    assert _run("diff", "-r", str(tmp_path / "src"), str(back), ok=False).returncode == 0


@pytest.mark.parametrize("fat_key, limit", [("", "512 FAT16"), (", fat: 12", "224 FAT12")])
def test_vfat_auto_size_full_root_directory(tmp_path: Path, fat_key: str, limit: str) -> None:
    (tmp_path / "src").mkdir()
    for i in range(600):
        (tmp_path / "src" / f"f{i}").write_bytes(b"")
    lines = _fails(tmp_path, f"version: 1\nname: v\nepoch: {EPOCH}\nsources:\n  s: src/\n"
                   f"partitions:\n  - {{name: b, fs: vfat, mount: /{fat_key}}}\n"
                   "files:\n  - {from: \"s:/\", to: /}\n")
    assert lines == [f"error: layout.yaml:7:5: b: the root directory needs 1201 entries, more "
                     f"than the {limit} has room for",
                     "  hint: use `fat: 32`, or move files into a subdirectory"]


# ---------------------------------------------------------------------------------------------
# a GPT disk in the i.MX style and an MBR disk, judged by sgdisk, sfdisk, blkid, bmaptool, simg2img


def _disk_inputs(folder: Path) -> None:
    _vfat_tree(folder / "vsrc")
    src = folder / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("recheck\n")
    (src / "data.bin").write_bytes(os.urandom(300_000))
    (folder / "blobs").mkdir()
    (folder / "blobs" / "flash.bin").write_bytes(os.urandom(700_000))


GPT_LAYOUT = f"""version: 1
name: rq-disk
epoch: {EPOCH}
sources:
  v: vsrc/
  s: src/
  b: blobs/
partitions:
  - {{name: boot, fs: vfat, size: 16MiB, mount: /boot, label: BOOT-PART_1, type: esp,
      attributes: [required, bit:60], partuuid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}}
  - {{name: rootfs, fs: ext4, mount: /, label: root-label-16byt, type: root-arm64,
      attributes: [grow-file-system, read-only], bootable: true}}
  - {{name: data, fs: ext4, size: 8MiB, mount: /data, offset: 100MiB, uuid:
      "11111111-2222-3333-4444-555555555555"}}
files:
  - {{from: "v:/", to: /boot}}
  - {{from: "s:/", to: /}}
disk:
  table: gpt
  align: 4MiB
  size: 160MiB
  guid: "12345678-1234-5678-1234-567812345678"
  entry_lba: 2016
  raw:
    - {{from: "b:/flash.bin", offset: 1KiB}}
outputs: [simg, zst, sfdisk]
"""

MBR_LAYOUT = f"""version: 1
name: rq-mbr
epoch: {EPOCH}
sources:
  v: vsrc/
  s: src/
  b: blobs/
partitions:
  - {{name: boot, fs: vfat, size: 70MiB, mount: /boot, label: BOOTFS, type: fat32,
      bootable: true, fat: 32}}
  - {{name: rootfs, fs: ext4, mount: /, type: 0x83}}
  - {{name: data, fs: ext4, size: 8MiB, mount: /data, offset: 120MiB}}
files:
  - {{from: "v:/", to: /boot}}
  - {{from: "s:/", to: /}}
disk:
  table: mbr
  signature: "0xdeadbeef"
  align: 4MiB
  raw:
    - {{from: "b:/flash.bin", offset: 32KiB}}
outputs: [simg, zst, sfdisk]
"""


def _check_partitions_on(disk: Path, manifest: dict, layout_fs: dict[str, str]) -> None:
    """blkid at each partition's offset: TYPE, LABEL and UUID as the manifest says; each file
    system clean when cut out of `disk`."""
    parts = {p["image"].removesuffix(".img"): p for p in manifest["partitions"].values()
             if p["fs"] != "tar"}
    for entry in manifest["disk"]["partitions"]:
        fs = parts[entry["name"]]
        probe = _run("blkid", "-p", "-O", str(entry["offset"]), "-o", "export", str(disk)).stdout
        tags = dict(line.split("=", 1) for line in probe.splitlines() if "=" in line)
        assert tags["TYPE"] == layout_fs[entry["name"]], tags
        # the manifest names each file system by the ID blkid (and /dev/disk/by-uuid) shows:
        # a UUID for ext4, the volume serial XXXX-XXXX for vfat
        assert tags["UUID"] == fs["uuid"], (tags, fs["uuid"])
        cut = disk.parent / f"cut-{entry['name']}.img"
        with disk.open("rb") as src, cut.open("wb") as dst:
            src.seek(entry["offset"])
            dst.write(src.read(fs["size"]))
        (_e2fsck_clean if tags["TYPE"] == "ext4" else _fsck_vfat_clean)(cut)
        cut.unlink()


def _flash_checks(out: Path, tmp: Path) -> None:
    """bmaptool onto 0xFF (plain and .zst): mapped ranges equal; simg2img gives the image back;
    SHA256SUMS holds."""
    disk = out / "disk.img"
    for src in (disk, out / "disk.img.zst"):
        target = tmp / "ff.img"
        with target.open("wb") as f:
            block = b"\xff" * MIB
            for _ in range(disk.stat().st_size // MIB):
                f.write(block)
        _run("bmaptool", "copy", "--bmap", str(out / "disk.bmap"), str(src), str(target))
        _compare_mapped(out / "disk.bmap", disk, target)
    manifest = json.loads((out / "manifest.json").read_text())
    fs_types = {p["image"].removesuffix(".img"): {"ext4": "ext4", "vfat": "vfat"}[p["fs"]]
                for p in manifest["partitions"].values() if p["fs"] != "tar"}
    _check_partitions_on(tmp / "ff.img", manifest, fs_types)  # holes are 0xFF on this device
    for name in ["disk", *fs_types]:
        _run("simg2img", str(out / f"{name}.simg"), str(tmp / "back.img"))
        assert _same(out / f"{name}.img", tmp / "back.img"), name
    sums = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out,
                          capture_output=True, text=True)
    assert sums.returncode == 0 and all(ln.endswith(": OK") for ln in sums.stdout.splitlines())


def _same(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def _compare_mapped(bmap: Path, image: Path, target: Path) -> None:
    import xml.etree.ElementTree as ET

    tree = ET.parse(bmap)
    bs = int(tree.findtext("BlockSize"))
    with image.open("rb") as a, target.open("rb") as b:
        for rng in tree.find("BlockMap"):
            first, _, last = rng.text.strip().partition("-")
            start, end = int(first), int(last or first)
            a.seek(start * bs)
            b.seek(start * bs)
            length = (end - start + 1) * bs
            assert a.read(length) == b.read(length), rng.text


def test_gpt_disk_imx_style(tmp_path: Path) -> None:
    _need("sgdisk", "sfdisk", "blkid", "bmaptool", "simg2img", "e2fsck", "fsck.vfat", "zstd")
    _disk_inputs(tmp_path)
    out = _build(tmp_path, GPT_LAYOUT)
    disk = out / "disk.img"
    verify = _run("sgdisk", "-v", str(disk))
    assert "No problems found." in verify.stdout and not verify.stderr
    assert not any(w in verify.stdout for w in ("Problem", "Caution", "Creating new GPT"))
    warnings = [ln for ln in verify.stdout.splitlines() if ln.startswith("Warning")]
    assert warnings == ["Warning: There is a gap between the main metadata (sector 1) and the main"]
    table = json.loads(_run("sfdisk", "--json", str(disk)).stdout)["partitiontable"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert table["id"] == "12345678-1234-5678-1234-567812345678"
    assert table["firstlba"] == 2048 and table["lastlba"] == 160 * MIB // 512 - 34
    got = [(p["name"], p["start"] * 512, p["size"] * 512, p["type"].lower(), p["uuid"].lower(),
            p.get("attrs", "")) for p in table["partitions"]]
    want = [(p["name"], p["offset"], p["size"], p["type"], p["partuuid"]) for p in
            manifest["disk"]["partitions"]]
    assert [g[:5] for g in got] == want
    assert [g[5] for g in got] == ["RequiredPartition GUID:60", "LegacyBIOSBootable GUID:59,60",
                                   ""]
    assert got[0][4] == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert [g[1] for g in got] == [4 * MIB, 20 * MIB, 100 * MIB]
    assert "Main partition table begins at sector 2016" in _run("sgdisk", "-p", str(disk)).stdout
    with disk.open("rb") as f:
        f.seek(1024)
        assert f.read(700_000) == (tmp_path / "blobs" / "flash.bin").read_bytes()
    labels = _run("blkid", "-p", "-O", str(20 * MIB), "-s", "LABEL", "-o", "value", str(disk))
    assert labels.stdout.strip() == "root-label-16byt"
    _flash_checks(out, tmp_path)
    # the sfdisk script gives the same table on a blank disk (its entry array goes to LBA 2)
    blank = _sfdisk_onto_blank(out, tmp_path)
    again = json.loads(_run("sfdisk", "--json", str(blank)).stdout)["partitiontable"]
    strip = [{k: v for k, v in p.items() if k != "node"} for p in again["partitions"]]
    assert strip == [{k: v for k, v in p.items() if k != "node"} for p in table["partitions"]]


def _sfdisk_onto_blank(out: Path, tmp_path: Path) -> Path:
    """A blank file the size of disk.img with disk.sfdisk applied by sfdisk itself."""
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"")
    os.truncate(blank, (out / "disk.img").stat().st_size)
    with (out / "disk.sfdisk").open() as script:
        subprocess.run(["sfdisk", "-q", str(blank)], stdin=script, check=True,
                       capture_output=True)
    return blank


def test_mbr_disk(tmp_path: Path) -> None:
    _need("sfdisk", "partx", "blkid", "bmaptool", "simg2img", "e2fsck", "fsck.vfat", "zstd")
    _disk_inputs(tmp_path)
    out = _build(tmp_path, MBR_LAYOUT)
    disk = out / "disk.img"
    assert "No errors detected." in _run("sfdisk", "--verify", str(disk)).stdout
    dump = _run("sfdisk", "--dump", str(disk)).stdout
    assert "label-id: 0xdeadbeef" in dump
    rows = _run("partx", "-g", "-o", "NR,START,SECTORS,UUID,TYPE,FLAGS", str(disk)).stdout.split()
    assert rows == ["1", "8192", "143360", "deadbeef-01", "0xc", "0x80",
                    "2", str(76 * 2048), rows[8], "deadbeef-02", "0x83", "0x0",
                    "3", str(120 * 2048), str(8 * 2048), "deadbeef-03", "0x83", "0x0"]
    _flash_checks(out, tmp_path)
    blank = _sfdisk_onto_blank(out, tmp_path)
    assert _run("sfdisk", "--dump", str(blank)).stdout.replace(str(blank), "X") == \
        dump.replace(str(disk), "X")


def test_disk_outputs_do_not_depend_on_the_environment(tmp_path: Path) -> None:
    _disk_inputs(tmp_path)
    (tmp_path / "layout.yaml").write_text(GPT_LAYOUT)
    first = compose("-q", "build", "layout.yaml", "-o", "a", cwd=tmp_path,
                    env={"TZ": "UTC", "LC_ALL": "C"}, umask=0o022)
    second = compose("-q", "build", str(tmp_path / "layout.yaml"), "-o",
                     str(tmp_path / "deep" / "b"), cwd=Path("/"),
                     env={"TZ": "Pacific/Chatham", "LC_ALL": "C.UTF-8"}, umask=0o077)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    names = [p.name for p in published(tmp_path / "a")]
    assert names == [p.name for p in published(tmp_path / "deep" / "b")]
    for name in names:
        assert _same(tmp_path / "a" / name, tmp_path / "deep" / "b" / name), name


# ---------------------------------------------------------------------------------------------
# bad disk layouts


BAD_HEAD = f"version: 1\nname: rqd\nepoch: {EPOCH}\npartitions:\n"


@pytest.mark.parametrize("partitions, disk, message, hint", [
    ('  - {name: a, fs: ext4, size: 8MiB, mount: /, partuuid: "aaaaaaaa-bbbb-cccc-dddd-'
     'eeeeeeeeeeee"}\n  - {name: c, fs: ext4, size: 8MiB, mount: /c, partuuid: "AAAAAAAA-BBBB-'
     'CCCC-DDDD-EEEEEEEEEEEE"}\n', "disk: {}\n",
     "layout.yaml:6:58: partition 'c': partuuid aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee is already "
     "the partuuid of partition 'a'",
     "every GUID on a disk must be unique; drop partuuid to derive one"),
    ('  - {name: a, fs: ext4, size: 8MiB, mount: /, partuuid: "aaaaaaaa-bbbb-cccc-dddd-'
     'eeeeeeeeeeee"}\n', 'disk: {guid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}\n',
     "layout.yaml:5:57: partition 'a': partuuid aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee is already "
     "the disk's own GUID (disk.guid)",
     "every GUID on a disk must be unique; drop partuuid to derive one"),
    ('  - {name: a, fs: ext4, size: 8MiB, mount: /, partuuid: "00000000-0000-0000-0000-'
     '000000000000"}\n', "disk: {}\n",
     "layout.yaml:5:57: partition 'a': partuuid cannot be the nil GUID",
     "pin another GUID, or drop partuuid"),
    ("  - {name: a, fs: ext4, size: 8MiB, mount: /}\n",
     'disk: {guid: "00000000-0000-0000-0000-000000000000"}\n',
     "layout.yaml:6:7: the disk GUID cannot be the nil GUID",
     "pin another GUID, or drop disk.guid to derive one"),
    ('  - {name: a, fs: ext4, size: 8MiB, mount: /, type: "00000000-0000-0000-0000-000000000000"}'
     "\n", "disk: {}\n",
     "layout.yaml:5:53: the GPT partition type cannot be the nil GUID, which marks an unused "
     "entry", "use linux or another type"),
    ("  - {name: a, fs: ext4, size: 8MiB, mount: /, type: 5}\n", "disk: {table: mbr}\n",
     "layout.yaml:5:53: MBR partition type 0x05 marks an extended partition, not a partition "
     "that holds a file system", "use linux (0x83), vfat (0x0c) or another type"),
    ("  - {name: a, fs: ext4, size: 8MiB, mount: /, type: 0xee}\n", "disk: {table: mbr}\n",
     "layout.yaml:5:53: MBR partition type 0xee marks the protective entry of a GPT disk, not a "
     "partition that holds a file system", "use linux (0x83), vfat (0x0c) or another type"),
    ("  - {name: a, fs: ext4, size: 8MiB, mount: /}\n", "disk: {size: 0}\n",
     "layout.yaml:6:14: disk.size: 0 bytes is not a positive multiple of 4 KiB",
     "bmap and sparse images count 4 KiB blocks; 1 MiB steps are best"),
    ("  - {name: a, fs: ext4, size: 8MiB, mount: /}\n",
     'disk:\n  size: 16MiB\n  raw: [{from: "b:/x.bin", offset: 20MiB}]\n',
     "layout.yaml:9:3: raw blob 'raw[0] b:/x.bin' (bytes 20971520-20971999) ends beyond the end "
     "of the disk (16777216 bytes)", "make the disk bigger, or move the raw blob"),
    ("  - {name: a, fs: ext4, size: 8MiB, mount: /}\n",
     'disk:\n  raw: [{from: "b:/x.bin", offset: 1KiB}]\n',
     "layout.yaml:9:3: raw blob 'raw[0] b:/x.bin' (bytes 1024-1503) overlaps the primary GPT "
     "partition entry array (bytes 1024-17407)",
     "move the GPT entry array out of the way (disk.entry_lba: 2016 puts it just before the "
     "first partition), or use an MBR partition table"),
])
def test_bad_disk_layouts(tmp_path: Path, partitions: str, disk: str, message: str,
                          hint: str) -> None:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "x.bin").write_bytes(bytes(480))
    head = BAD_HEAD
    if "b:/" in disk:
        head = head.replace("partitions:\n", "sources:\n  b: blobs/\npartitions:\n")
    lines = _fails(tmp_path, head + partitions + disk)
    assert lines == [f"error: {message}", f"  hint: {hint}"]


# ---------------------------------------------------------------------------------------------
# ext4 from a real folder: loop mount and compare everything (root only)


def _ext4_source(root: Path) -> None:
    (root / "d" / "many").mkdir(parents=True)
    for i in range(5000):
        (root / "d" / "many" / f"entry-{i:05d}").write_bytes(b"")
    (root / "d" / "exact4096").write_bytes(os.urandom(4096))
    (root / "d" / "zero").write_bytes(b"")
    (root / "d" / "big").write_bytes(os.urandom(8 * MIB + 1))
    (root / "d" / "ünïcödé 名前.txt").write_text("utf-8\n")
    os.link(root / "d" / "exact4096", root / "d" / "hard")
    os.symlink("exact4096", root / "d" / "sym")
    os.symlink("/a/" + "x" * 200, root / "d" / "longsym")
    os.setxattr(root / "d" / "exact4096", "user.one", b"1")
    os.setxattr(root / "d" / "zero", "user.big", b"x" * 300)
    os.chown(root / "d" / "zero", 1234, 5678)
    os.chmod(root / "d" / "zero", 0o4750)
    os.utime(root / "d" / "exact4096", ns=(0, 1_600_000_000_123_456_789))
    for path in [root / "d" / "sym", root / "d" / "longsym"]:
        os.utime(path, ns=(0, 1_600_000_000_000_000_001), follow_symlinks=False)
    if Path("/etc/ssl").is_dir():  # a real folder of this machine
        shutil.copytree("/etc/ssl", root / "etc-ssl", symlinks=True)


def _walk(root: Path, clamp: bool) -> dict[str, tuple]:
    """Every entry below root: kind, mode, owner, mtime, size, digest, link, xattrs, and its
    hard-link group (by inode). `clamp` is for the source side only: what the image holds is
    compared as it is, so an image whose times were not clamped fails."""
    epoch_ns = EPOCH * 10**9 if clamp else None
    found: dict[str, tuple] = {}
    groups: dict[int, list[str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if rel == "lost+found":
                continue
            st = path.lstat()
            digest = link = None
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                groups.setdefault(st.st_ino, []).append(rel)
            if stat.S_ISLNK(st.st_mode):
                link = os.readlink(path)
            xattrs = {} if stat.S_ISLNK(st.st_mode) else \
                {k: os.getxattr(path, k, follow_symlinks=False) for k in os.listxattr(path)}
            mtime = st.st_mtime_ns if epoch_ns is None else min(st.st_mtime_ns, epoch_ns)
            found[rel] = (st.st_mode, st.st_uid, st.st_gid, mtime,
                          st.st_size if not stat.S_ISDIR(st.st_mode) else 0, digest, link,
                          xattrs)
    links = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    found["<hard links>"] = tuple(map(tuple, links))
    return found


@ROOT_ONLY
def test_ext4_from_a_real_folder_mounts_and_matches(tmp_path: Path) -> None:
    _need("e2fsck", "dumpe2fs", "mount", "umount")
    src = tmp_path / "src"
    _ext4_source(src)
    out = _build(tmp_path, f"version: 1\nname: rq-ext4\nepoch: {EPOCH}\nsources:\n  s: src/\n"
                 "partitions:\n  - {name: root, fs: ext4, mount: /, label: abcdefghijklmnop, "
                 "uuid: \"11111111-2222-3333-4444-555555555555\", journal: none, reserved: 0, "
                 "headroom: 20}\nfiles:\n  - {from: \"s:/\", to: /}\n")
    image = out / "root.img"
    _e2fsck_clean(image)
    header = _run("dumpe2fs", "-h", str(image)).stdout
    fields = dict(ln.split(":", 1) for ln in header.splitlines() if ":" in ln)
    assert fields["Filesystem volume name"].strip() == "abcdefghijklmnop"
    assert fields["Filesystem UUID"].strip() == "11111111-2222-3333-4444-555555555555"
    assert "has_journal" not in fields["Filesystem features"]
    assert fields["Reserved block count"].strip() == "0"
    mnt = Path(tempfile.mkdtemp(dir=tmp_path))
    mount = subprocess.run(["mount", "-o", "loop,ro", str(image), str(mnt)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        env_skip("no-loop-devices", f"loop mount unavailable: {mount.stderr.strip()}")
    try:
        got = _walk(mnt, clamp=False)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    want = _walk(src, clamp=True)
    assert sorted(got) == sorted(want)
    for rel in want:
        if rel:
            assert got[rel] == want[rel], rel
    # the kernel writes into it, and e2fsck still finds nothing
    rw = tmp_path / "rw.img"
    shutil.copyfile(image, rw)
    subprocess.run(["mount", "-o", "loop", str(rw), str(mnt)], check=True)
    try:
        (mnt / "new").mkdir()
        for i in range(300):
            (mnt / "new" / f"f{i}").write_bytes(os.urandom(100))
        shutil.rmtree(mnt / "d" / "many")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    _e2fsck_clean(rw)


# ---------------------------------------------------------------------------------------------
# bugs found by the re-check in the layout loader (fixed there)


def test_disk_align_zero_is_an_error(tmp_path: Path) -> None:
    _fails(tmp_path, BAD_HEAD + "  - {name: a, fs: ext4, size: 8MiB, mount: /}\n"
           "disk: {align: 0}\n")


def test_simg_of_an_odd_size_fails_at_validate(tmp_path: Path) -> None:
    (tmp_path / "layout.yaml").write_text(
        BAD_HEAD + "  - {name: a, fs: ext4, size: 10000001, mount: /}\noutputs: [simg]\n")
    result = compose("validate", "layout.yaml", cwd=tmp_path)
    assert result.returncode == 1 and "layout.yaml:5:" in result.stderr
    assert "is not a positive multiple of 4 KiB" in result.stderr
