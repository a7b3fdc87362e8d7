"""vfat writer: judged by dosfstools (fsck.vfat -n) and mtools (mdir, mcopy), never by pyfatfs."""

from __future__ import annotations

import calendar
import io
import os
import re
import shutil
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from composer.content import ContentStore, DataSource
from composer.errors import ComposerError
from composer.fs.base import WriteRequest, WriteResult
from composer.fs.vfat import VfatWriter
from composer.registry import WRITERS, Format
from composer.tree import Content, Entry, Kind, sorted_entries

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("fsck.vfat", "mdir", "mcopy")),
    reason="needs dosfstools and mtools")

NS = 1_000_000_000
MIB = 1 << 20
EPOCH = 1_700_000_000
DOS_1980 = calendar.timegm((1980, 1, 1, 0, 0, 0))
UUID = uuid.UUID("1a2b3c4d-0000-4000-8000-000000000001")


def d(path: str, t: int) -> Entry:
    return Entry(path, Kind.DIR, 0o755, 0, 0, t * NS)


def f(path: str, data: bytes, t: int, mode: int = 0o644) -> Entry:
    return Entry(path, Kind.FILE, mode, 1000, 1000, t * NS, content=Content.of_bytes(data))


def tree() -> tuple[Entry, ...]:
    """Long names, dotfiles, odd seconds, a pre-1980 time, a future time, zeros, a full dir."""
    entries = [
        d("/", 1_600_000_000),
        d("/EFI", 1_600_000_001),
        d("/EFI/BOOT", 1_600_000_003),
        f("/EFI/BOOT/BOOTAA64.EFI", b"MZ" * 5000, 1_600_000_005),
        d("/.hidden", 1000),  # before 1980: clamped
        f("/.hidden/.dotfile", b"dot\n", 1_600_000_007, mode=0o600),
        f("/A Long File Name with Spaces.txt", b"hello\n", 1_600_000_009),
        f("/MixedCase.Conf", b"x=1\n", 1_600_000_010),
        f("/zeros.bin", bytes(200_000), 1_600_000_011),  # written zeros must be mapped
        f("/pattern.bin", bytes(range(256)) * 12_000, 1_600_000_013),
        f("/empty", b"", 1_600_000_015),
        f("/future.txt", b"later\n", EPOCH + 10_000),  # after the epoch: clamped to it
        d("/many", 1_600_000_017),
    ]
    # enough entries to grow the directory past one cluster
    entries += [f(f"/many/file-with-a-long-name-{i:03d}.txt", f"{i}\n".encode(), 1_600_000_019)
                for i in range(60)]
    return tuple(sorted_entries(entries))


def request(entries: tuple[Entry, ...] = (), size: int | None = 16 * MIB, **options: object
            ) -> WriteRequest:
    return WriteRequest(name="boot", entries=entries or tree(), size=size, label="BOOT",
                        uuid=UUID, epoch=EPOCH, options=options)


def build(tmp_path: Path, req: WriteRequest, name: str = "boot.vfat") -> tuple[Path, WriteResult]:
    writer = VfatWriter()
    assert writer.check(req) == []
    out = tmp_path / name
    return out, writer.write(req, out, ContentStore())


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})


def fsck_clean(img: Path) -> tuple[int, int, int]:
    """fsck.vfat -n must print only its banner and the summary: (files, used, total clusters)."""
    done = run("fsck.vfat", "-n", img)
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[0].startswith("fsck.fat "), lines
    match = re.fullmatch(rf"{re.escape(str(img))}: (\d+) files, (\d+)/(\d+) clusters", lines[-1])
    assert match and len(lines) == 2, done.stdout
    return int(match[1]), int(match[2]), int(match[3])


def dos_seconds(t: int) -> int:
    """What a FAT timestamp reads back as under TZ=UTC: clamped, even seconds."""
    t = max(DOS_1980, min(t, EPOCH))
    return t - t % 2


def read_back(img: Path, dest: Path) -> None:
    done = run("mcopy", "-i", img, "-s", "-m", "-n", "::/", f"{dest}/", env={"TZ": "UTC"})
    assert done.returncode == 0, done.stderr


def test_registered() -> None:
    assert WRITERS[Format.VFAT] is VfatWriter
    assert set(VfatWriter.options) == {"fat", "volume_id"}


@pytest.mark.parametrize(("fat", "size"), [(12, 8 * MIB), (16, 16 * MIB), (32, 40 * MIB)])
def test_tree_reads_back(tmp_path: Path, fat: int, size: int) -> None:
    img, result = build(tmp_path, request(size=size, fat=fat))
    assert result.size == size == img.stat().st_size
    entries = [e for e in tree() if e.path != "/"]
    files, used, _ = fsck_clean(img)
    assert files == len(entries) + 1  # the volume label counts as one
    assert img.read_bytes()[54 if fat != 32 else 82:][:8] == f"FAT{fat}   ".encode()

    dest = tmp_path / "out"
    dest.mkdir()
    read_back(img, dest)
    got = {"/" + str(p.relative_to(dest)) for p in dest.rglob("*")}
    assert got == {e.path for e in entries}
    for e in entries:
        host = dest / e.path.lstrip("/")
        assert host.is_dir() == (e.kind is Kind.DIR), e.path
        if e.kind is Kind.FILE:
            assert e.content is not None and host.read_bytes() == e.content.inline, e.path
        assert int(host.stat().st_mtime) == dos_seconds(e.mtime_ns // NS), e.path


def test_label_and_serial(tmp_path: Path) -> None:
    img, _ = build(tmp_path, request())
    out = run("mdir", "-i", img, "::/").stdout
    assert "Volume in drive : is BOOT" in out
    assert "Volume Serial Number is 1A2B-3C4D" in out  # the first 4 bytes of the UUID
    img2, _ = build(tmp_path, request(volume_id="DEAD-beef"), "pinned.vfat")
    assert "Volume Serial Number is DEAD-BEEF" in run("mdir", "-i", img2, "::/").stdout


def test_long_names_and_dotfiles_listed(tmp_path: Path) -> None:
    img, _ = build(tmp_path, request())
    listing = run("mdir", "-i", img, "-/", "-a", "::").stdout
    for name in (".hidden", ".dotfile", "A Long File Name with Spaces.txt", "MixedCase.Conf",
                 "file-with-a-long-name-059.txt"):
        assert name in listing, name


def test_extents_cover_every_written_block(tmp_path: Path) -> None:
    img, result = build(tmp_path, request())
    data = img.read_bytes()
    mapped = bytearray(len(data))
    for offset, length in result.extents:
        mapped[offset:offset + length] = b"\1" * length
    for block in range(0, len(data), 4096):
        if any(data[block:block + 4096]):
            assert all(mapped[block:block + 4096]), f"non-zero block at {block} is not mapped"
    # metadata (boot sector, both FATs, root directory) is mapped whole, even where zero
    bps, spc, reserved, nfats, root_entries = struct.unpack_from("<HBHBH", data, 11)
    fat_sectors = struct.unpack_from("<H", data, 22)[0]
    metadata = (reserved + nfats * fat_sectors) * bps + root_entries * 32
    assert all(mapped[:metadata])
    # and beyond it exactly the clusters fsck counts as used (zero-filled file data included)
    _, used, _ = fsck_clean(img)
    assert sum(length for _, length in result.extents) == metadata + used * spc * bps


def test_reproducible_across_tz_and_clock(tmp_path: Path) -> None:
    old = os.environ.get("TZ")
    try:
        os.environ["TZ"] = "UTC"
        time.tzset()
        a, _ = build(tmp_path, request(), "a.vfat")
        time.sleep(2.1)  # FAT time has 2 s resolution: a clock leak would show
        os.environ["TZ"] = "America/St_Johns"  # UTC-3:30, an odd offset
        time.tzset()
        b, _ = build(tmp_path, request(), "b.vfat")
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()
    assert a.read_bytes() == b.read_bytes()
    c, _ = build(tmp_path, request(volume_id="00000001"), "c.vfat")
    assert c.read_bytes() != a.read_bytes()


def test_auto_size(tmp_path: Path) -> None:
    writer = VfatWriter()
    req = request(size=None)
    size = writer.resolve_size(req)
    assert size % MIB == 0 and size >= 5 * MIB
    img, result = build(tmp_path, req)
    assert result.size == size
    fsck_clean(img)
    assert img.read_bytes()[54:62] == b"FAT16   "
    big = request(entries=(d("/", 0), f("/big", bytes(9 * MIB), 1_600_000_000)), size=None)
    assert writer.resolve_size(big) >= 10 * MIB
    assert writer.resolve_size(request(size=None, fat=32)) >= 33 * MIB


def error(req: WriteRequest) -> tuple[str, str | None]:
    errors = VfatWriter().check(req)
    assert len(errors) == 1, errors
    return errors[0].message, errors[0].hint


def test_special_files_rejected() -> None:
    link = Entry("/EFI/link", Kind.SYMLINK, 0o777, 0, 0, 0, target="BOOT")
    fifo = Entry("/fifo", Kind.FIFO, 0o644, 0, 0, 0)
    hard = Entry("/hard", Kind.HARDLINK, 0o644, 0, 0, 0, target="/empty")
    assert error(request(tuple(sorted_entries(tree() + (link,))))) == (
        "boot: /EFI/link is a symlink; FAT holds only files and directories",
        "put it on an ext4 partition")
    assert error(request(tuple(sorted_entries(tree() + (fifo,)))))[0] == (
        "boot: /fifo is a fifo; FAT holds only files and directories")
    assert error(request(tuple(sorted_entries(tree() + (hard,)))))[0] == (
        "boot: /hard is a hard link; FAT has no hard links")


def test_bad_names_rejected() -> None:
    case = f("/efi", b"", 0)
    assert error(request(tuple(sorted_entries(tree() + (case,)))))[0] == (
        "boot: /efi and /EFI differ only in case, which FAT ignores")
    colon = f("/a:b", b"", 0)
    assert error(request(tuple(sorted_entries(tree() + (colon,)))))[0].startswith(
        "boot: /a:b: the name holds a character FAT forbids")


def test_sizes_composer_cannot_format() -> None:
    assert error(request(size=16 * MIB, fat=32)) == (
        "boot: composer cannot format FAT32 at 16777216 bytes; FAT32 needs 34099712 to "
        "34359738368 bytes", "change the size, or the `fat:` option (12, 16 or 32)")
    assert error(request(entries=(d("/", 0),), size=4 * MIB, fat=16))[0] == (
        "boot: composer cannot format FAT16 at 4194304 bytes; FAT16 needs 4301312 to "
        "2147401728 bytes")
    assert error(request(size=1000 * 1024 + 1))[0] == (
        "boot: size 1024001 is not a multiple of 512 bytes")
    with pytest.raises(ComposerError, match="composer cannot format FAT32"):
        VfatWriter().write(request(size=16 * MIB, fat=32), Path("/nonexistent/x"),
                           ContentStore())


def test_content_too_big_and_label_checks() -> None:
    message, _ = error(request(size=5 * MIB, fat=16, entries=(
        d("/", 0), f("/big", bytes(6 * MIB), 0))))
    assert message == ("boot: content needs 6144 clusters of 1024 bytes but the FAT16 file "
                       "system has 5083")
    long_label = WriteRequest("boot", tree(), 16 * MIB, "much-too-long", UUID, EPOCH)
    assert error(long_label)[0] == (
        "boot: FAT label 'much-too-long' must be 1 to 11 characters of A-Z, 0-9, '_' and '-'")
    assert error(request(volume_id="xyz"))[0] == "boot: volume_id 'xyz' is not 8 hex digits"
    lowercase = WriteRequest("boot", tree(), 16 * MIB, "Boot", UUID, EPOCH)
    assert error(lowercase) == ("boot: FAT label 'Boot' has lowercase letters",
                                "FAT labels are capitals: write label: BOOT")


class _Sequential(DataSource):
    """An archive-like source: members come in its own order, which is not the sorted order."""

    name = "tar"
    sequential = True

    def __init__(self, members: dict[str, bytes]) -> None:
        self.members = members

    def iter_data(self, wanted: Sequence[Content]) -> Iterator[tuple[Content, BinaryIO]]:
        for content in sorted(wanted, key=lambda c: c.index, reverse=True):
            yield content, io.BytesIO(self.members[content.member])


def test_sequential_source_in_reverse_order(tmp_path: Path) -> None:
    members = {f"m{i}": bytes([i]) * (1000 * i + 1) for i in range(5)}
    entries = [d("/", 1_600_000_000)] + [
        Entry(f"/f{i}", Kind.FILE, 0o644, 0, 0, 1_600_000_000 * NS,
              content=Content(len(data), source="tar", member=f"m{i}", index=i))
        for i, data in enumerate(members.values())]
    req = request(entries=tuple(sorted_entries(entries)), size=8 * MIB)
    out = tmp_path / "seq.vfat"
    VfatWriter().write(req, out, ContentStore({"tar": _Sequential(members)}, spill_dir=tmp_path))
    fsck_clean(out)
    dest = tmp_path / "out"
    dest.mkdir()
    read_back(out, dest)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == {
        f"f{i}": data for i, data in enumerate(members.values())}


def test_auto_size_that_cannot_fit_the_fat_type() -> None:
    big = Entry("/big", Kind.FILE, 0o644, 0, 0, 0, content=Content(300 * MIB, "tar", "big", 0))
    too_big = request(entries=(d("/", 0), big), size=None, fat=12)
    assert error(too_big) == ("boot: no FAT size fits this content",
                              "give the partition an explicit size and `fat:` type")


def test_writes_at_once_in_threads_equal_writes_one_by_one(tmp_path: Path) -> None:
    """Each write's times are its own: no state shared between writes in one process."""
    from concurrent.futures import ThreadPoolExecutor

    def shifted(by: int) -> WriteRequest:
        entries = tuple(replace(e, mtime_ns=e.mtime_ns + by * 86_400 * NS) for e in tree())
        return request(entries)

    def write(i: int, where: Path) -> bytes:
        out = where / f"{i}.vfat"
        VfatWriter().write(shifted(i), out, ContentStore())
        return out.read_bytes()

    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    alone = [write(i, tmp_path / "one") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: write(i, tmp_path / "many"), range(4)))
    assert len(set(alone)) == 4  # the times really differ
    assert together == alone


def test_plan_overflow_is_an_error_not_an_assert(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Should check() ever count fewer clusters than the writer hands out, the write stops
    with a ComposerError (also under `python -O`) and never ships an overflowing FAT."""
    from composer.fs import vfat

    monkeypatch.setattr(vfat, "_clusters_needed", lambda entries, geo: 0)
    req = request(size=5 * MIB, fat=16, entries=(d("/", 0), f("/big", bytes(6 * MIB), 0)))
    assert VfatWriter().check(req) == []
    with pytest.raises(ComposerError, match="content needs 6144 clusters of 1024 bytes"):
        VfatWriter().write(req, tmp_path / "a.vfat", ContentStore())
