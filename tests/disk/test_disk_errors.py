"""Bad disk layouts: each is a ComposerError with an exact message (and hint where it helps)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from composer.disk.assemble import DiskPartitionSpec as P
from composer.disk.assemble import RawBlobSpec, plan_disk, write_disk
from composer.errors import ComposerError, ComposerErrors, Loc
from composer.fs.base import WriteResult

MIB = 1 << 20
KIB = 1 << 10


def errors_of(table: str, parts: Sequence[P], **kw: object) -> list[tuple[str, str | None]]:
    with pytest.raises(ComposerError) as info:
        plan_disk(table, parts, seed="s", **kw)  # type: ignore[arg-type]
    exc = info.value
    found = exc.errors if isinstance(exc, ComposerErrors) else [exc]
    return [(e.message, e.hint) for e in found]


def test_overlapping_partitions() -> None:
    assert errors_of("gpt", [P("a", 4 * MIB, "linux", offset=MIB),
                             P("b", 4 * MIB, "linux", offset=4 * MIB)]) == [(
        "partition 'a' (bytes 1048576-5242879) overlaps partition 'b' (bytes 4194304-8388607)",
        "give one of them another offset, or drop `offset:` to let the partition follow the "
        "previous one")]


def test_raw_blob_on_the_gpt_entry_array_offers_a_moved_array() -> None:
    assert errors_of("gpt", [P("a", 4 * MIB, "linux")],
                     raw_blobs=[RawBlobSpec("spl", KIB, 64 * KIB)]) == [(
        "raw blob 'spl' (bytes 1024-66559) overlaps the primary GPT partition entry array "
        "(bytes 1024-17407)",
        "move the GPT entry array out of the way (disk.entry_lba: 2016 puts it just before the "
        "first partition), or use an MBR partition table")]
    # the offered fix works, and so does an MBR
    plan_disk("gpt", [P("a", 4 * MIB, "linux")], seed="s", gpt_entry_lba=2016,
              raw_blobs=[RawBlobSpec("spl", KIB, 64 * KIB)])
    plan_disk("mbr", [P("a", 4 * MIB, "linux")], seed="s",
              raw_blobs=[RawBlobSpec("spl", KIB, 64 * KIB)])


def test_overlapping_raw_blobs_and_partition() -> None:
    assert errors_of("gpt", [P("a", 4 * MIB, "linux", offset=MIB)], raw_blobs=[
        RawBlobSpec("spl", 32 * KIB, 64 * KIB), RawBlobSpec("env", 64 * KIB, 16 * KIB),
        RawBlobSpec("fip", 2 * MIB, 64 * KIB)]) == [
        ("partition 'a' (bytes 1048576-5242879) overlaps raw blob 'fip' (bytes 2097152-2162687)",
         "move the raw blob, or the partition (drop its `offset:` to place it after the blob)"),
        ("raw blob 'spl' (bytes 32768-98303) overlaps raw blob 'env' (bytes 65536-81919)",
         "move one of the raw blobs"),
    ]


def test_auto_placement_skips_raw_blobs() -> None:
    plan = plan_disk("gpt", [P("a", 4 * MIB, "linux"), P("b", MIB, "linux")], seed="s",
                     raw_blobs=[RawBlobSpec("fip", 5 * MIB + 4 * KIB, 64 * KIB)])
    assert [p.offset for p in plan.partitions] == [MIB, 6 * MIB]


def test_partition_bigger_than_the_disk() -> None:
    assert errors_of("gpt", [P("a", 40 * MIB, "linux")], disk_size=32 * MIB) == [(
        "partition 'a' (bytes 1048576-42991615) ends beyond the end of the disk "
        "(33554432 bytes)", "make the disk bigger, or the partition smaller")]
    assert errors_of("gpt", [P("a", 4 * MIB, "linux")], disk_size=5 * MIB) == [(
        "partition 'a' (bytes 1048576-5242879) overlaps the backup GPT partition entry array "
        "and the backup GPT header (bytes 5225984-5242879)",
        "the last 33 sectors hold the backup GPT; make the disk bigger")]


def test_partition_on_the_tables() -> None:
    assert errors_of("gpt", [P("a", 4 * MIB, "linux", offset=0)]) == [(
        "partition 'a' (bytes 0-4194303) overlaps the protective MBR, the primary GPT header and "
        "the primary GPT partition entry array (bytes 0-17407)",
        "start it at byte 17408 or later, or drop `offset:` to place it automatically")]
    assert errors_of("mbr", [P("a", 4 * MIB, "linux", offset=0)]) == [(
        "partition 'a' (bytes 0-4194303) overlaps the MBR (bytes 0-511)",
        "start it at byte 512 or later, or drop `offset:` to place it automatically")]


def test_unknown_type_names() -> None:
    [(message, hint)] = errors_of("gpt", [P("a", 4 * MIB, "rootfs")])
    assert message == "unknown GPT partition type 'rootfs'"
    assert hint is not None and "root-arm64" in hint and "esp" in hint
    [(message, hint)] = errors_of("mbr", [P("a", 4 * MIB, "rootfs")])
    assert (message, hint) == ("unknown MBR partition type 'rootfs'",
                               "use a number 0x01-0xff or one of: esp, fat16, fat32, linux, "
                               "swap, vfat")


def test_errors_carry_locations_and_come_together() -> None:
    here = Loc("layout.yaml", 7, 5)
    with pytest.raises(ComposerErrors) as info:
        plan_disk("gpt", [P("a", 4 * MIB, "nope", loc=here), P("b" * 37, MIB, "linux"),
                          P("c", MIB, "linux", attributes=("ro",))], seed="s")
    rendered = [e.render().splitlines()[0] for e in info.value.errors]
    assert rendered == [
        "error: partition 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb': GPT names hold at most 36 "
        "UTF-16 characters",
        "error: unknown GPT attribute 'ro'",
        "error: layout.yaml:7:5: unknown GPT partition type 'nope'",
    ]


def test_mbr_limits() -> None:
    assert errors_of("mbr", [P(str(i), MIB, "linux") for i in range(5)]) == [
        ("5 partitions do not fit in MBR, which holds 4", "use gpt")]
    assert errors_of("mbr", [P("a", MIB, "linux", attributes=("read-only",))]) == [
        ("partition 'a': MBR partitions have no GUID and no attributes", "use gpt, or drop them")]


def test_units() -> None:
    assert errors_of("gpt", [P("a", 4 * MIB + 1, "linux")]) == [
        ("partition 'a': size 4194305 is not a positive multiple of 512 bytes", None)]
    assert errors_of("gpt", [P("a", MIB, "linux"), P("a", MIB, "linux")]) == [
        ("two partitions are named 'a'", None)]


def test_image_bigger_than_its_partition(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = plan_disk("gpt", [P("a", MIB, "linux")], seed="s")
    image = tmp_path / "a.img"
    image.write_bytes(bytes(2 * MIB))
    with pytest.raises(ComposerError) as info:
        write_disk(plan, {"a": (image, WriteResult(2 * MIB, ((0, 2 * MIB),)))},
                   tmp_path / "disk.img")
    assert info.value.message == (
        "partition 'a': the image is 2097152 bytes but the partition only 1048576")
