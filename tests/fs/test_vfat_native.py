"""The native FAT writer (issue 15): names, scale and random trees, judged by fsck.vfat -n,
mtools (mdir, mcopy, mattrib, minfo), pyfatfs as an independent reader of names mtools cannot
show, and the kernel's vfat driver where there is one. No assertion here times anything:
speed is tools/bench_vfat.py's business."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.content import ContentStore
from composer.fs.base import WriteRequest
from composer.fs.vfat import VfatWriter, geometry, short_names
from composer.fs.vfat_reader import read_vfat
from composer.tree import Content, Entry, Kind, sorted_entries
from tests.conftest import env_skip
from tests.fs.test_vfat import EPOCH, MIB, NS, UUID, d, dos_seconds, f, fsck_clean, run

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("fsck.vfat", "mdir", "mcopy", "mattrib", "minfo")),
    reason="needs dosfstools and mtools")

T = 1_600_000_001
UTF8 = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}

# names Linux's vfat would give these 8.3 names (fs/fat/namei_vfat.c, vfat_create_shortname,
# worked out by hand): literal upper-case 8.3 names stay alone, everything else gets ~N
NAMES = {
    "KERNEL8.IMG": "KERNEL8 IMG",  # already 8.3: no long name
    "README.TXT": "README  TXT",
    "UPPER": "UPPER      ",
    "FOOBAR~1.TXT": "FOOBAR~1TXT",  # a literal name that looks generated keeps its name
    "MixedCase.Conf": "MIXEDC~1CON",
    ".hidden": "HIDDEN~1   ",  # leading dots dropped
    "a+b.txt": "A_B~1   TXT",  # + , ; = [ ] become _
    "foo bar.txt": "FOOBAR~2TXT",  # spaces dropped; ~1 is taken by the literal name
    "foobar.txt": "FOOBAR~3TXT",
    "lower": "LOWER~1    ",  # lower case is not 8.3: long name plus ~1, as Linux does
    "many.dots.in.name.tar.gz": "MANYDO~1GZ ",  # the extension follows the last dot
    "日本語のファイル.txt": "______~1TXT",  # non-ASCII becomes _, whatever the code page
    "x" * 255: "XXXXXX~1   ",  # the longest name FAT allows
    "Ünïcödé names.md": "_N_C_D~1MD ",
    "semi;colon=[1].txt": "SEMI_C~1TXT",
}


def file_entry(path: str, data: bytes, t: int = T) -> Entry:
    return f(path, data, t)


def write(tmp_path: Path, entries: list[Entry], size: int | None = None, name: str = "v.img",
          **options: object) -> Path:
    req = WriteRequest("boot", tuple(sorted_entries([d("/", T), *entries])), size, "BOOT", UUID,
                       EPOCH, options)
    writer = VfatWriter()
    assert writer.check(req) == []
    out = tmp_path / name
    writer.write(req, out, ContentStore())
    return out


def extract(img: Path, dest: Path, *paths: str) -> None:
    """mcopy everything (or the given paths) out, with times, under a UTF-8 locale."""
    dest.mkdir(parents=True, exist_ok=True)
    args = [f"::{p}" for p in paths] if paths else ["-s", "::/"]
    done = run("mcopy", "-i", img, "-m", "-n", *args, f"{dest}/", env=UTF8)
    assert done.returncode == 0, done.stderr


def host_tree(dest: Path) -> dict[str, bytes | None]:
    """Every path under dest ("/a/b"), with its bytes, or None for a directory."""
    return {"/" + str(p.relative_to(dest)): None if p.is_dir() else p.read_bytes()
            for p in dest.rglob("*")}


def short_of(listing: str) -> dict[str, str]:
    """{long name (or the 8.3 name when there is none): 11-character 8.3 name} from mdir."""
    found = {}
    for line in listing.splitlines():
        # "MIXEDC~1 CON        14 2020-09-13  12:26  MixedCase.Conf"
        if len(line) < 40 or line[0] == " " or "Directory for" in line:
            continue
        base, ext = line[:8].rstrip(), line[9:12].rstrip()
        rest = line[13:].split(None, 3)
        long_name = rest[3] if len(rest) == 4 else (f"{base}.{ext}" if ext else base)
        found[long_name] = base.ljust(8) + ext.ljust(3)
    return found


def test_short_names_follow_linux(tmp_path: Path) -> None:
    """The names as mdir lists them: 8.3 name and long name, the ~N tails as Linux makes
    them; fsck.vfat finds no duplicate and no bad long-name checksum."""
    entries = [file_entry(f"/{name}", name.encode()) for name in NAMES]
    img = write(tmp_path, entries, 8 * MIB)
    files, _, _ = fsck_clean(img)
    assert files == len(NAMES) + 1  # and the label
    listing = run("mdir", "-i", img, "-a", "::/", env=UTF8).stdout
    assert short_of(listing) == NAMES
    # the literal names have no long name: mdir shows no fourth column for them
    for line in listing.splitlines():
        if line.startswith(("KERNEL8  IMG", "README   TXT", "UPPER    ")):
            assert len(line[13:].split()) == 3, line  # size, date, time


def test_tails_count_on_past_nine() -> None:
    names = [f"file-{i:05d}.txt" for i in range(12)] + ["FILE-~10.TXT"]
    got = [short.decode() for short, _ in short_names(names)]
    assert got[:9] == [f"FILE-0~{i}TXT" for i in range(1, 10)]
    # ~10 is a literal name here, so the tenth generated one takes ~11
    assert got[9:] == ["FILE-~11TXT", "FILE-~12TXT", "FILE-~13TXT", "FILE-~10TXT"]
    assert [lfn for _, lfn in short_names(names)] == [True] * 12 + [False]


def test_names_bytes_times_and_attributes_read_back(tmp_path: Path) -> None:
    entries = [d("/sub", T + 2), d("/sub/deeper", T + 4)]
    for i, name in enumerate(NAMES):
        entries.append(file_entry(f"/{name}", name.encode() * (i + 1), T + 10 * i))
        entries.append(file_entry(f"/sub/deeper/{name}", bytes([i]) * (3000 * i), T + 11 * i))
    img = write(tmp_path, entries, 16 * MIB)
    fsck_clean(img)
    dest = tmp_path / "out"
    extract(img, dest)
    want = {e.path: e.content.inline if e.content else None for e in entries}
    assert host_tree(dest) == want
    for e in entries:
        assert int((dest / e.path.lstrip("/")).stat().st_mtime) == dos_seconds(e.mtime_ns // NS)
    attributes = run("mattrib", "-i", img, "-/", "::/", env=UTF8).stdout.splitlines()
    for line in attributes:
        flags, path = line[:13].strip(), line[13:]
        kind = "dir" if path in ("::/", "::/sub", "::/sub/deeper") else "file"
        assert flags == ("" if kind == "dir" else "A"), line  # archive on files only


def test_names_mtools_cannot_show_are_read_by_pyfatfs(tmp_path: Path) -> None:
    """mtools 4.0 shows a character beyond U+FFFF as "__"; pyfatfs decodes the UTF-16 pairs."""
    from pyfatfs.PyFatFS import PyFatFS

    names = ["émoji😀.bin", "🚀" * 127, "a" * 255, "日本語のファイル.txt"]
    img = write(tmp_path, [file_entry(f"/dir/{n}", n.encode()) for n in names], 8 * MIB)
    fsck_clean(img)
    fs = PyFatFS(str(img), read_only=True)
    try:
        assert sorted(fs.listdir("/dir")) == sorted(names)
        for name in names:
            assert fs.readbytes(f"/dir/{name}") == name.encode()
    finally:
        fs.close()


def test_minfo_shows_the_planned_geometry(tmp_path: Path) -> None:
    for fat, size in ((12, 2 * MIB), (16, 64 * MIB), (32, 600 * MIB)):
        img = write(tmp_path, [file_entry("/a", b"a")], size, f"{fat}.img", fat=fat)
        geo = geometry(fat, size)
        assert geo is not None
        shown = run("minfo", "-i", img, "::").stdout
        fields = dict(line.split(": ", 1) for line in shown.splitlines() if ": " in line)
        fields.update(line.split("=", 1) for line in shown.splitlines() if "=" in line)
        assert fields["cluster size"].split()[0] == str(geo.sectors_per_cluster), shown
        assert fields["reserved (boot) sectors"] == str(geo.reserved_sectors)
        assert fields["disk type"] == f'"FAT{fat}   "'
        assert fields["serial number"] == "1A2B3C4D"
        assert fields["disk label"] == '"BOOT       "'
        fat_len = fields["Big fatlen"] if fat == 32 else fields["sectors per fat"]
        assert int(fat_len) == geo.fat_sectors
        _, used, total = fsck_clean(img)
        assert total == geo.clusters and used == (2 if fat == 32 else 1)


def test_20000_files_in_one_folder(tmp_path: Path) -> None:
    count = 20_000
    rnd = random.Random(20_000)
    entries = [d("/d", T)]
    entries += [file_entry(f"/d/file-{i:05d}.txt", f"{i}\n".encode() * rnd.randrange(0, 300))
                for i in range(count)]
    img = write(tmp_path, entries)
    files, _, _ = fsck_clean(img)
    assert files == count + 2  # the folder and the label
    listing = run("mdir", "-i", img, "-b", "::/d", env=UTF8).stdout.splitlines()
    assert sorted(listing) == sorted(f"::/d/file-{i:05d}.txt" for i in range(count))
    # verify --deep's reader (pyfatfs, walked entry by entry) reads every file of the folder
    read = {e.path: e.sha256 for e in read_vfat(img)}
    assert read == {"/": None, "/d": None} | {
        e.path: hashlib.sha256(e.content.inline).hexdigest() for e in entries[1:]
        if e.content is not None}
    sample = sorted(rnd.sample(range(count), 30)) + [0, 9, 10, count - 1]
    dest = tmp_path / "out"
    extract(img, dest, *(entries[1 + i].path for i in sample))
    for i in sample:
        entry = entries[1 + i]
        assert entry.content is not None
        assert (dest / entry.path.rsplit("/", 1)[1]).read_bytes() == entry.content.inline


def test_100000_entries_in_a_tree(tmp_path: Path) -> None:
    entries: list[Entry] = []
    for a in range(10):
        entries.append(d(f"/top-{a}", T))
        for b in range(100):
            folder = f"/top-{a}/Folder {b:03d}"
            entries.append(d(folder, T))
            entries += [file_entry(f"{folder}/f{c:02d}.dat", f"{a}.{b}.{c}".encode())
                        for c in range(99 if (a, b) != (0, 0) else 89)]
    assert len(entries) == 100_000
    img = write(tmp_path, entries, 128 * MIB, fat=32)  # 512-byte clusters: a small image
    files, _, _ = fsck_clean(img)
    assert files == len(entries) + 1
    listing = run("mdir", "-i", img, "-/", "-b", "::/", env=UTF8).stdout.splitlines()
    assert len(listing) == len(entries)
    # mdir -b ends a folder's path with "/"
    assert {line.rstrip("/") for line in listing} == {f"::{e.path}" for e in entries}
    sample = random.Random(1).sample([e for e in entries if e.kind is Kind.FILE], 30)
    dest = tmp_path / "out"
    for i, e in enumerate(sample):
        extract(img, dest / str(i), e.path)
        assert e.content is not None
        assert (dest / str(i) / e.path.rsplit("/", 1)[1]).read_bytes() == e.content.inline


def test_a_directory_over_65536_entries_is_refused() -> None:
    names = [f"a-long-file-name-{i:05d}" for i in range(22_000)]  # 3 entries each
    req = WriteRequest("boot", tuple(sorted_entries(
        [d("/", T), d("/d", T)] + [file_entry(f"/d/{n}", b"") for n in names])), None, None,
        UUID, EPOCH)
    errors = VfatWriter().check(req)
    assert [e.message for e in errors] == [
        "boot: the directory /d needs 66002 entries; FAT allows 65536 (long names take one "
        "entry per 13 characters)"]


# -- random trees ---------------------------------------------------------------------------

_NAME_CHARS = "aAbBzZ09 .-_+,;=[]~!'é日"


@st.composite
def trees(draw: st.DrawFn) -> tuple[int, list[Entry]]:
    fat = draw(st.sampled_from([12, 16, 32]))
    cluster = {12: 512, 16: 1024, 32: 512}[fat]  # the cluster sizes of the auto sizes below
    entries: list[Entry] = []
    folders = ["/"]
    for _ in range(draw(st.integers(1, 25))):
        where = draw(st.sampled_from(folders))
        name = draw(st.text(_NAME_CHARS, min_size=1, max_size=30)).strip(" ")
        name = name.rstrip(". ")
        if not name or name in (".", ".."):
            continue
        path = where.rstrip("/") + "/" + name
        if any(e.path.upper() == path.upper() for e in entries) or path.count("/") > 4:
            continue
        if draw(st.booleans()):
            entries.append(d(path, draw(st.integers(0, EPOCH + 100))))
            folders.append(path)
        else:
            size = draw(st.integers(0, 3 * cluster + 1))
            data = bytes([len(entries) % 251]) * size
            entries.append(Entry(path, Kind.FILE, 0o644, 0, 0,
                                 draw(st.integers(0, EPOCH + 100)) * NS,
                                 content=Content.of_bytes(data)))
    return fat, entries


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees())
def test_random_trees_read_back(tmp_path: Path, tree: tuple[int, list[Entry]]) -> None:
    fat, entries = tree
    work = tmp_path / f"t{os.urandom(4).hex()}"  # hypothesis reuses tmp_path
    work.mkdir()
    try:
        img = write(work, entries, None, fat=fat)
        files, _, _ = fsck_clean(img)
        assert files == len(entries) + 1
        dest = work / "out"
        extract(img, dest)
        assert host_tree(dest) == {e.path: e.content.inline if e.content else None
                                   for e in entries}
        for e in entries:
            host = dest / e.path.lstrip("/")
            assert int(host.stat().st_mtime) == dos_seconds(e.mtime_ns // NS), e.path
    finally:
        shutil.rmtree(work)


def test_kernel_vfat_reads_what_mtools_reads(tmp_path: Path) -> None:
    if "vfat" not in Path("/proc/filesystems").read_text():
        env_skip("no-vfat-driver", "this kernel has no vfat driver: fsck.vfat, mtools and "
                 "pyfatfs judged the images, the kernel did not")
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        env_skip("no-loop-devices", "mounting needs root and a loop device")
    entries = [file_entry(f"/n/{name}", name.encode()) for name in NAMES]
    entries.append(file_entry("/n/émoji😀.bin", b"astral"))
    img = write(tmp_path, entries, 8 * MIB)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop,ro,utf8", "-t", "vfat", str(img), str(mnt)], check=True)
    try:
        assert host_tree(mnt) == {"/n": None} | {e.path: e.content.inline if e.content else None
                                                for e in entries}
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_declarations_read_what_mkfs_vfat_and_mcopy_wrote(tmp_path: Path) -> None:
    """The FAT12/16 BPB extension and long-name entry declarations (fat_layouts.py), and the
    checksum the writer uses, read an image neither composer nor pyfatfs made."""
    from composer.fs.fat_layouts import BPB, BPB_FAT16, DIR_ENTRY, LAST_LONG_ENTRY, LFN_ENTRY
    from composer.fs.vfat import lfn_checksum

    img = tmp_path / "m.img"
    done = run("mkfs.vfat", "-C", "-F", "16", "-i", "1234abcd", "-n", "MKFS", img, "16384")
    assert done.returncode == 0, done.stderr
    name = "A long name, 日本.txt"
    (tmp_path / name).write_bytes(b"x")
    assert run("mcopy", "-i", img, tmp_path / name, "::/", env=UTF8).returncode == 0
    data = img.read_bytes()
    bpb, ext = BPB.unpack(data), BPB_FAT16.unpack(data, BPB.size)
    assert (ext["BS_VolID"], ext["BS_VolLab"], ext["BS_FilSysType"]) == (
        0x1234ABCD, b"MKFS       ", b"FAT16   ")
    root = (bpb["BPB_RsvdSecCnt"] + bpb["BPB_NumFATs"] * bpb["BPB_FATSz16"]) * 512
    slots = [data[root + 32 * i:root + 32 * (i + 1)] for i in range(bpb["BPB_RootEntCnt"])]
    longs = [LFN_ENTRY.unpack(s) for s in slots if s[0] and s[11] == 0x0F]
    short = next(DIR_ENTRY.unpack(s) for s in slots if s[0] and s[11] not in (0x0F, 0x08))
    assert longs[0]["LDIR_Ord"] == LAST_LONG_ENTRY | len(longs)
    assert {e["LDIR_Chksum"] for e in longs} == {lfn_checksum(short["DIR_Name"])}
    units = b"".join(e["LDIR_Name1"] + e["LDIR_Name2"] + e["LDIR_Name3"] for e in reversed(longs))
    assert units.decode("utf-16-le").split("\0")[0] == name


def test_reader_agrees_with_mcopy_on_an_mkfs_vfat_image(tmp_path: Path) -> None:
    """verify --deep's reader on an image neither composer nor pyfatfs wrote, against what
    mcopy extracts from it."""
    src = tmp_path / "src"
    # no all-lower-case 8.3 names: mcopy stores those with Windows NT case bits, which pyfatfs
    # ignores (it reads "big.bin" as "BIG.BIN"); composer never writes them
    (src / "Sub dir" / "Deeper dir").mkdir(parents=True)
    (src / "Sub dir" / "Deeper dir" / "Lower.txt").write_bytes(b"hi\n")
    (src / "Big File.bin").write_bytes(random.Random(3).randbytes(100_000))
    (src / "UP.TXT").write_bytes(b"")
    img = tmp_path / "m.img"
    assert run("mkfs.vfat", "-C", "-F", "16", img, "16384").returncode == 0
    assert run("mcopy", "-s", "-m", "-i", img, *sorted(src.iterdir()), "::/",
               env=UTF8).returncode == 0
    dest = tmp_path / "out"
    extract(img, dest)
    want = {"/": None} | {path: None if data is None else hashlib.sha256(data).hexdigest()
                          for path, data in host_tree(dest).items()}
    got = read_vfat(img)
    assert {e.path: e.sha256 for e in got} == want
    assert [e.path for e in got] == sorted(want, key=lambda path: path.split("/"))
