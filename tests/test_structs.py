"""Declared on-disk structs (composer/structs.py): each declaration is checked against its size
when imported, and read back against what independent tools write or read: sfdisk for GPT and
MBR, img2simg for the Android sparse header, setfacl for the POSIX ACL xattr."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import uuid
from pathlib import Path

import pytest

import composer
from composer.acl import ACCESS_XATTR, ACL_ENTRY, ACL_HEADER, MASK, XATTR_VERSION
from composer.disk import gpt, mbr
from composer.outputs.simg import CHUNK_HEADER, SPARSE_HEADER, SPARSE_MAGIC
from composer.structs import Struct
from tests.conftest import need


def run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _declared() -> list[tuple[str, Struct]]:
    """Every Struct a composer module declares at its top level."""
    found = []
    for info in pkgutil.walk_packages(composer.__path__, "composer."):
        if info.name == "composer.__main__":  # importing it runs the CLI
            continue
        module = importlib.import_module(info.name)
        found += [(f"{info.name}.{name}", value) for name, value in vars(module).items()
                  if isinstance(value, Struct)]
    return found


def test_a_wrong_size_fails_when_declared() -> None:
    with pytest.raises(ValueError, match="make 6 bytes, spec says 8"):
        Struct("bad", "spec", 8, "<", (("a", "I"), ("b", "H")))
    with pytest.raises(ValueError, match="twice"):
        Struct("dup", "spec", 8, "<", (("a", "I"), ("a", "I")))
    with pytest.raises(ValueError, match="byte order"):
        Struct("native", "spec", 8, "@", (("a", "I"), ("b", "I")))


def test_pack_names_fields_and_zeroes_the_rest() -> None:
    layout = Struct("t", "spec", 12, "<", (("magic", "4s"), ("reserved", "I"), ("n", "I")))
    data = layout.pack(magic=b"ABCD", n=7)
    assert data == b"ABCD" + bytes(4) + (7).to_bytes(4, "little")
    assert layout.unpack(data) == {"magic": b"ABCD", "reserved": 0, "n": 7}
    assert layout.unpack(b"xx" + data, 2)["n"] == 7
    assert layout.offset("n") == 8 and layout.field_size("magic") == 4
    assert layout.pack_values(b"ABCD", 0, 7) == data
    with pytest.raises(TypeError, match="no field nn"):
        layout.pack(nn=1)


def test_packer_sets_named_fields_and_zeroes_the_rest() -> None:
    layout = Struct("t", "spec", 12, "<", (("magic", "4s"), ("reserved", "I"), ("n", "I")))
    buf = bytearray(b"\xff" * 14)
    layout.packer("magic", "n").pack_into(buf, 1, b"ABCD", 7)
    assert buf == b"\xff" + layout.pack(magic=b"ABCD", n=7) + b"\xff"
    assert layout.packer("n").pack(9) == layout.pack(n=9)
    with pytest.raises(ValueError, match="declaration order"):
        layout.packer("n", "magic")
    with pytest.raises(ValueError, match="declaration order"):
        layout.packer("n", "n")
    with pytest.raises(TypeError, match="no field nn"):
        layout.packer("nn")


def test_patch_writes_one_field_only() -> None:
    layout = Struct("t", "spec", 12, ">", (("magic", "4s"), ("reserved", "I"), ("n", "I")))
    buf = bytearray(b"\xff" * 14)
    layout.patch(buf, 1, "n", 0x01020304)
    assert buf == b"\xff" * 9 + b"\x01\x02\x03\x04" + b"\xff"


def test_every_declaration_names_its_source() -> None:
    declared = _declared()
    names = {name.rsplit(".", 1)[1] for name, _ in declared}
    assert {"GPT_HEADER", "GPT_ENTRY", "MBR_SECTOR", "MBR_ENTRY", "SPARSE_HEADER",
            "CHUNK_HEADER", "ACL_HEADER", "ACL_ENTRY"} <= names
    for name, layout in declared:
        assert layout.source.strip(), name
        assert layout.compiled.size == layout.size, name


def _gpt_disk(path: Path) -> gpt.GptTable:
    sectors = 16 * 2048  # 16 MiB
    table = gpt.GptTable(
        uuid.UUID("11111111-2222-3333-4444-555555555555"), sectors,
        (gpt.GptEntry(gpt.TYPE_GUIDS["linux"], uuid.UUID(int=7), 2048, 4095,
                      int(gpt.Attr.READ_ONLY), "root"),
         gpt.GptEntry(gpt.TYPE_GUIDS["esp"], uuid.UUID(int=9), 4096, 8191, 0, "boot")))
    with path.open("wb") as f:
        f.truncate(sectors * gpt.SECTOR)
        for offset, data in gpt.regions(table):
            f.seek(offset)
            f.write(data)
    return table


def test_gpt_fields_read_back_as_sfdisk_reads_them(tmp_path: Path) -> None:
    disk = tmp_path / "gpt.img"
    _gpt_disk(disk)
    table = json.loads(run("sfdisk", "--json", str(disk)))["partitiontable"]
    raw = disk.read_bytes()
    head = gpt.GPT_HEADER.unpack(raw, gpt.SECTOR)
    assert head["signature"] == b"EFI PART" and head["header_size"] == gpt.GPT_HEADER.size
    assert str(uuid.UUID(bytes_le=head["disk_guid"])).upper() == table["id"].upper()
    assert (head["first_usable_lba"], head["last_usable_lba"]) == \
        (table["firstlba"], table["lastlba"])
    for i, part in enumerate(table["partitions"]):
        entry = gpt.GPT_ENTRY.unpack(raw, head["partition_entry_lba"] * gpt.SECTOR
                                     + i * head["size_of_partition_entry"])
        assert entry["starting_lba"] == part["start"]
        assert entry["ending_lba"] - entry["starting_lba"] + 1 == part["size"]
        assert str(uuid.UUID(bytes_le=entry["partition_type_guid"])).upper() == \
            part["type"].upper()
        assert str(uuid.UUID(bytes_le=entry["unique_partition_guid"])).upper() == \
            part["uuid"].upper()
        assert entry["partition_name"].decode("utf-16-le").rstrip("\0") == part["name"]


def test_mbr_fields_read_back_as_sfdisk_reads_them(tmp_path: Path) -> None:
    disk = tmp_path / "mbr.img"
    table = mbr.MbrTable(0x1A2B3C4D, (mbr.MbrEntry(True, 0x0C, 2048, 2048),
                                      mbr.MbrEntry(False, 0x83, 4096, 8192)))
    with disk.open("wb") as f:
        f.truncate(16 << 20)
        f.write(mbr.encode(table))
    got = json.loads(run("sfdisk", "--json", str(disk)))["partitiontable"]
    sector = mbr.MBR_SECTOR.unpack(disk.read_bytes()[:mbr.SECTOR])
    assert sector["signature"] == 0xAA55
    assert f"0x{sector['unique_mbr_disk_signature']:08x}" == got["id"]
    records = sector["partition_records"]
    for i, part in enumerate(got["partitions"]):
        record = mbr.MBR_ENTRY.unpack(records, i * mbr.MBR_ENTRY.size)
        assert (record["starting_lba"], record["size_in_lba"]) == (part["start"], part["size"])
        assert f"{record['os_type']:x}" == part["type"]
        assert (record["boot_indicator"] == 0x80) is bool(part.get("bootable"))


def test_sparse_header_reads_what_img2simg_writes(tmp_path: Path) -> None:
    image = tmp_path / "raw.img"
    with image.open("wb") as f:
        f.truncate(64 * 4096)
        f.seek(8 * 4096)
        f.write(os.urandom(3 * 4096))
    run("img2simg", str(image), str(tmp_path / "x.simg"))
    data = (tmp_path / "x.simg").read_bytes()
    head = SPARSE_HEADER.unpack(data)
    assert head["magic"] == SPARSE_MAGIC
    assert (head["file_hdr_sz"], head["chunk_hdr_sz"]) == (SPARSE_HEADER.size, CHUNK_HEADER.size)
    assert head["blk_sz"] * head["total_blks"] == 64 * 4096
    offset, blocks = head["file_hdr_sz"], 0
    for _ in range(head["total_chunks"]):
        chunk = CHUNK_HEADER.unpack(data, offset)
        blocks += chunk["chunk_sz"]
        offset += chunk["total_sz"]
    assert (offset, blocks) == (len(data), head["total_blks"])


def test_acl_xattr_reads_what_setfacl_writes(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    done = subprocess.run(["setfacl", "-m", "u:1234:r-x,m::rwx", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this file system takes no ACLs: {done.stderr.strip()}")
    value = os.getxattr(target, ACCESS_XATTR)
    assert ACL_HEADER.unpack(value)["a_version"] == XATTR_VERSION
    entries = [ACL_ENTRY.unpack(value, offset)
               for offset in range(ACL_HEADER.size, len(value), ACL_ENTRY.size)]
    assert {"e_tag": 0x02, "e_perm": 5, "e_id": 1234} in entries
    assert {"e_tag": MASK, "e_perm": 7, "e_id": 0xFFFFFFFF} in entries


def test_fat_declarations_read_mkfs_vfat_as_minfo_shows(tmp_path: Path) -> None:
    """The FAT boot sector, FAT32 extension and FSInfo declarations read an image made by
    mkfs.vfat as mtools' minfo shows it (neither tool is composer's)."""
    import re as _re

    from composer.fs.fat_layouts import BPB, BPB_FAT32, FSINFO, FSINFO_LEAD_SIG

    need("mkfs.vfat", "minfo")
    img = tmp_path / "m.img"
    subprocess.run(["mkfs.vfat", "-C", "-F", "32", "-i", "1234abcd", "-n", "LBL", str(img),
                    "65536"], check=True, capture_output=True)
    shown = subprocess.run(["minfo", "-i", str(img), "::"], check=True, capture_output=True,
                           text=True).stdout

    def minfo(label: str) -> str:
        found = _re.search(rf"^{_re.escape(label)}[:=]\s*(.*)$", shown, _re.M)
        assert found, label
        return found.group(1).strip()

    data = img.read_bytes()[:1024]
    bpb, ext = BPB.unpack(data), BPB_FAT32.unpack(data, BPB.size)
    assert bpb["BPB_BytsPerSec"] == int(minfo("sector size").split()[0])
    assert bpb["BPB_SecPerClus"] == int(minfo("cluster size").split()[0])
    assert bpb["BPB_RsvdSecCnt"] == int(minfo("reserved (boot) sectors"))
    assert bpb["BPB_NumFATs"] == int(minfo("fats"))
    assert bpb["BPB_SecPerTrk"] == int(minfo("sectors per track"))
    assert bpb["BPB_NumHeads"] == int(minfo("heads"))
    assert bpb["BPB_TotSec32"] == int(minfo("big size").split()[0])
    assert ext["BPB_FATSz32"] == int(minfo("Big fatlen"))
    assert ext["BPB_RootClus"] == int(minfo("rootCluster"))
    assert ext["BPB_FSInfo"] == int(minfo("infoSector location"))
    assert ext["BPB_BkBootSec"] == int(minfo("backup boot sector"))
    assert f"{ext['BS_VolID']:08X}" == minfo("serial number")
    assert ext["BS_VolLab"].decode() == minfo("disk label").strip('"')
    fsinfo = FSINFO.unpack(data, ext["BPB_FSInfo"] * bpb["BPB_BytsPerSec"])
    assert fsinfo["FSI_LeadSig"] == FSINFO_LEAD_SIG and fsinfo["FSI_TrailSig"] == 0xAA550000
