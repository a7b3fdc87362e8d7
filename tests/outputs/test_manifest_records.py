"""manifest.json as typed records: a real manifest (GPT demo, MBR with a raw blob) reads into
frozen records and writes back byte for byte, and what the records say is what sha256sum, sfdisk
and Python's tarfile find in the outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from composer.outputs.manifest import DiskRecord, EntryRecord, Manifest, PartitionRecord
from tests.conftest import compose, copy_layouts

# what `outputs` does not list: the records themselves and the publishing lock folder
EXTRA = {"manifest.json", "report.txt", "SHA256SUMS", ".compose"}

MBR_LAYOUT = """\
version: 1
name: mbr-records
epoch: 1718878001
sources:
  boot: boot/
partitions:
  - {name: boot, fs: vfat, size: 32MiB, mount: /boot, bootable: true}
  - {name: root, fs: ext4, size: auto, mount: /}
  - {name: extra, fs: tar, mount: /extra}
files:
  - {to: /etc/hostname, content: "mbr\\n"}
  - {to: /extra/a, content: "a\\n"}
  - {to: /boot/cmdline.txt, content: "root=PARTUUID=1a2b3c4d-02\\n"}
disk:
  table: mbr
  signature: "0x1a2b3c4d"
  raw: [{from: "boot:/spl.bin", offset: 33KiB}]
"""


@pytest.fixture(scope="module")
def gpt_out(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    folder = tmp_path_factory.mktemp("records-gpt")
    copy_layouts(folder / "layouts", golden)
    result = compose("build", "layouts/demo.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "out"


@pytest.fixture(scope="module")
def mbr_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("records-mbr")
    (folder / "boot").mkdir()
    (folder / "boot" / "spl.bin").write_bytes(b"SPL!" * 8192)
    (folder / "layout.yaml").write_text(MBR_LAYOUT)
    result = compose("build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "out"


@pytest.fixture(params=["gpt", "mbr"])
def out(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_out")  # type: ignore[no-any-return]


def test_a_real_manifest_round_trips_byte_for_byte(out: Path) -> None:
    text = (out / "manifest.json").read_text(encoding="utf-8")
    manifest = Manifest.from_json(text)
    assert manifest.to_json() == text
    assert Manifest.from_obj(manifest.to_obj()) == manifest
    # and the fast writer agrees with json's own reading of the file
    assert json.loads(manifest.to_json()) == json.loads(text)


def test_records_are_frozen(gpt_out: Path) -> None:
    manifest = Manifest.from_json((gpt_out / "manifest.json").read_text(encoding="utf-8"))
    part = manifest.partitions["rootfs"]
    assert isinstance(part, PartitionRecord) and isinstance(part.entries[0], EntryRecord)
    assert isinstance(manifest.disk, DiskRecord)
    for record, name in ((manifest, "epoch"), (part, "sha256"), (part.entries[0], "path"),
                         (manifest.disk, "table"), (manifest.disk.partitions[0], "offset")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, name, None)


def test_digests_and_outputs_are_what_sha256_finds(out: Path) -> None:
    manifest = Manifest.from_json((out / "manifest.json").read_text(encoding="utf-8"))
    on_disk = {p.name for p in out.iterdir()}
    assert set(manifest.outputs) == on_disk - EXTRA
    sums = dict(reversed(line.split("  ", 1)) for line in
                (out / "SHA256SUMS").read_text().splitlines())
    for part in manifest.partitions.values():
        assert part.sha256 == _sha256(out / part.image) == sums[part.image]
        assert part.size == (out / part.image).stat().st_size
    assert manifest.disk is not None and manifest.disk.image == "disk.img"
    assert manifest.disk.sha256 == _sha256(out / "disk.img")


def test_disk_record_is_what_sfdisk_reads(out: Path) -> None:
    manifest = Manifest.from_json((out / "manifest.json").read_text(encoding="utf-8"))
    disk = manifest.disk
    assert disk is not None
    table = json.loads(subprocess.run(["sfdisk", "--json", str(out / "disk.img")],
                                      capture_output=True, text=True, check=True).stdout)
    table = table["partitiontable"]
    assert len(table["partitions"]) == len(disk.partitions)
    for got, record in zip(table["partitions"], disk.partitions, strict=True):
        assert got["start"] * 512 == record.offset and got["size"] * 512 == record.size
        assert got["node"].endswith(str(record.number))
        if disk.table == "gpt":
            assert table["id"].lower() == disk.guid and disk.signature is None
            assert got["type"].lower() == record.type and got["uuid"].lower() == record.partuuid
            assert record.attributes is not None and record.bootable is None
        else:
            assert table["id"] == disk.signature and disk.guid is None
            assert f"0x{got['type']:0>2}" == record.type
            assert record.partuuid == f"{disk.signature[2:]}-{record.number:02x}"
            assert bool(got.get("bootable")) is record.bootable and record.attributes is None


def test_mbr_raw_blob_and_tar_volume(mbr_out: Path) -> None:
    manifest = Manifest.from_json((mbr_out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest.disk is not None
    [blob] = manifest.disk.raw
    assert (blob.offset, blob.size) == (33 * 1024, 32768)
    with (mbr_out / "disk.img").open("rb") as f:
        f.seek(blob.offset)
        assert f.read(blob.size) == b"SPL!" * 8192
    extra = manifest.partitions["extra"]
    assert extra.fs == "tar" and extra.uuid is None
    with tarfile.open(mbr_out / extra.image) as tar:
        member = tar.extractfile("./a")  # paths are relative to the mount point
        assert member is not None
        data = member.read()
    [record] = [e for e in extra.entries if e.path == "/a"]
    assert record.size == len(data) and record.sha256 == hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
