"""Archive sources read as GNU tar, bsdtar and GNU cpio extract them: hard links in tar, pax,
cpio (newc, odc, bin) and zip, zip headers that disagree, sparse maps, pre-1970 times.

Every archive is made by another tool (GNU tar, GNU cpio, zip, python's zipfile), extracted by
another tool (GNU tar, bsdtar, GNU cpio, unzip) for the reference, and compared with what
composer put into an ext4 image (read back by debugfs) and into a tar partition (extracted by
GNU tar)."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import compose, env_skip
from tests.fs.conftest import Ext4Harness

NEEDS = [t for t in ("tar", "bsdtar", "cpio", "bsdcpio", "zip", "unzip", "debugfs")
         if not shutil.which(t)]
pytestmark = pytest.mark.skipif(bool(NEEDS), reason=f"needs {NEEDS} (see .ci/run)")

LAYOUT = ("version: 1\nname: t\nepoch: 2000000000\nsources:\n  s: {src}\npartitions:\n"
          "  - {{name: root, fs: {fs}, mount: /}}\nfiles:\n  - {{from: \"s:/\", to: /}}\n")

# (kind, bytes: data or link target) per path, and the groups of paths that share an inode
View = tuple[dict[str, tuple[str, bytes]], list[list[str]]]


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def build(folder: Path, src: str, fs: str, out: str = "out",
          env: dict[str, str] | None = None) -> Path:
    (folder / "l.yaml").write_text(LAYOUT.format(src=src, fs=fs))
    result = compose("-q", "build", "l.yaml", "-o", out, cwd=folder, env=env)
    assert result.returncode == 0, result.stderr
    return folder / out


def folder_view(root: Path) -> View:
    """What an extracting tool left in `root`, names as bytes."""
    found: dict[str, tuple[str, bytes]] = {}
    inodes: dict[int, list[str]] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = "/" + _name(os.path.relpath(p, base))
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                found[rel] = ("file", Path(os.fsdecode(p)).read_bytes())
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                found[rel] = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", b"")
    return found, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


def ext4_view(tmp: Path, img: Path) -> View:
    """The same view of an ext4 image, through debugfs."""
    nodes = Ext4Harness(tmp).read_tree(img)
    found: dict[str, tuple[str, bytes]] = {}
    inodes: dict[int, list[str]] = {}
    for path, node in nodes.items():
        if path in ("/", "/lost+found"):
            continue
        body = node.data if node.kind == "file" else node.target if node.kind == "symlink" \
            else b""
        found[path] = (node.kind, body or b"")
        if node.kind == "file":
            inodes.setdefault(node.ino, []).append(path)
    return found, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


def tar_view(tmp: Path, tar: Path) -> View:
    """A tar partition as GNU tar extracts it."""
    into = tmp / f"x-{tar.parent.name}-{tar.stem}"
    into.mkdir()
    subprocess.run(["tar", "-xf", str(tar), "-C", str(into)], check=True)
    return folder_view(into)


def extracted(tmp: Path, archive: Path, tool: str) -> View:
    into = tmp / f"ref-{tool}-{archive.name}"
    into.mkdir()
    commands = {
        "gnutar": ["tar", "-xf", str(archive)],
        "bsdtar": ["bsdtar", "-xf", str(archive)],
        "cpio": ["sh", "-c", f"cpio -id --quiet < '{archive}'"],
        "unzip": ["unzip", "-q", str(archive)],
    }
    subprocess.run(commands[tool], cwd=into, check=True)
    return folder_view(into)


def _linked_folder(d: Path) -> None:
    d.mkdir()
    (d / "a").write_bytes(b"data of a and b\n")
    os.link(d / "a", d / "b")
    (d / "c").write_bytes(b"c alone\n")
    (d / "x").write_bytes(b"x, y and z\n" * 100)
    os.link(d / "x", d / "y")
    os.link(d / "x", d / "z")


@pytest.mark.parametrize("tool, fmt", [("cpio", "newc"), ("cpio", "odc"), ("cpio", "bin"),
                                       ("bsdcpio", "newc"), ("bsdcpio", "odc")])
def test_cpio_hard_links(tmp_path: Path, tool: str, fmt: str) -> None:
    """newc (GNU cpio and bsdcpio) keeps a group's data with its LAST link; odc and bin with
    every link."""
    _linked_folder(tmp_path / "d")
    archive = tmp_path / f"s.{fmt}.cpio"
    subprocess.run(f"printf 'a\\nb\\nc\\nx\\ny\\nz\\n' | {tool} -o --quiet -H {fmt} > "
                   f"'{archive}'", shell=True, cwd=tmp_path / "d", check=True)
    want = extracted(tmp_path, archive, "cpio")
    assert want == extracted(tmp_path, archive, "bsdtar")
    assert want[0]["/b"] == ("file", b"data of a and b\n")
    assert want[1] == [["/a", "/b"], ["/x", "/y", "/z"]]
    assert ext4_view(tmp_path, build(tmp_path, archive.name, "ext4") / "root.img") == want
    assert tar_view(tmp_path, build(tmp_path, archive.name, "tar", "t") / "root.tar") == want


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_tar_link_keeps_the_inode_a_later_member_replaces(tmp_path: Path, fmt: str) -> None:
    """`a`, then `b` linked to `a`, then a new `a`: b keeps the old data, as GNU tar and bsdtar
    extract it."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_bytes(b"old\n")
    os.link(d / "a", d / "b")
    archive = tmp_path / f"s.{fmt}.tar"
    subprocess.run(["tar", f"--format={fmt}", "-cf", str(archive), "-C", str(d), "a", "b"],
                   check=True)
    (d / "a").unlink()
    (d / "a").write_bytes(b"new, longer\n")
    subprocess.run(["tar", f"--format={fmt}", "-rf", str(archive), "-C", str(d), "a"],
                   check=True)
    want = extracted(tmp_path, archive, "gnutar")
    assert want == extracted(tmp_path, archive, "bsdtar")
    assert want == ({"/a": ("file", b"new, longer\n"), "/b": ("file", b"old\n")}, [])
    assert ext4_view(tmp_path, build(tmp_path, archive.name, "ext4") / "root.img") == want
    assert tar_view(tmp_path, build(tmp_path, archive.name, "tar", "t") / "root.tar") == want


def test_tar_links_move_to_the_next_name_of_a_replaced_file(tmp_path: Path) -> None:
    """`a`, `b` and `c` linked to `a`, then a new `a`: b and c still share the old inode."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_bytes(b"old\n")
    os.link(d / "a", d / "b")
    os.link(d / "a", d / "c")
    archive = tmp_path / "s.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(d), "a", "b", "c"], check=True)
    (d / "a").unlink()
    (d / "a").write_bytes(b"new\n")
    subprocess.run(["tar", "-rf", str(archive), "-C", str(d), "a"], check=True)
    want = extracted(tmp_path, archive, "gnutar")
    assert want == extracted(tmp_path, archive, "bsdtar")
    assert want[1] == [["/b", "/c"]]
    assert ext4_view(tmp_path, build(tmp_path, archive.name, "ext4") / "root.img") == want
    assert tar_view(tmp_path, build(tmp_path, archive.name, "tar", "t") / "root.tar") == want


def test_hard_link_member_replaces_a_symlink(tmp_path: Path) -> None:
    """`a`; `b` a symlink whose text is `/a`; then `b` a hard link to `a` (python's tarfile):
    extraction replaces the symlink with a second name of `a`."""
    import io
    import tarfile

    archive = tmp_path / "s.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"data\n"))
        for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            info = tarfile.TarInfo("b")
            info.type, info.linkname = kind, "/a" if kind == tarfile.SYMTYPE else "a"
            tar.addfile(info)
    want = extracted(tmp_path, archive, "gnutar")
    assert want == extracted(tmp_path, archive, "bsdtar")
    assert want == ({"/a": ("file", b"data\n"), "/b": ("file", b"data\n")}, [["/a", "/b"]])
    assert ext4_view(tmp_path, build(tmp_path, archive.name, "ext4") / "root.img") == want


def test_zip_of_hard_linked_files(tmp_path: Path) -> None:
    """zip has no hard links: Info-ZIP stores each name with its own copy of the data."""
    _linked_folder(tmp_path / "d")
    archive = tmp_path / "s.zip"
    subprocess.run(["zip", "-qr", str(archive), "."], cwd=tmp_path / "d", check=True)
    want = extracted(tmp_path, archive, "unzip")
    assert want[0]["/z"] == ("file", b"x, y and z\n" * 100) and want[1] == []
    assert ext4_view(tmp_path, build(tmp_path, archive.name, "ext4") / "root.img") == want
    assert tar_view(tmp_path, build(tmp_path, archive.name, "tar", "t") / "root.tar") == want


# ------------------------------------------------------------------------------------- zip


def _zip(path: Path, patch: str) -> None:
    """A stored zip of a.txt (1000 bytes) and b.txt, with a.txt's local header patched."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.txt", b"A" * 1000)
        z.writestr("b.txt", b"B" * 10)
    data = bytearray(path.read_bytes())
    # local file header: signature, version, flags, method, time, date, crc32 @14,
    # compressed size @18, uncompressed size @22 (APPNOTE.TXT 4.3.7)
    field = {"usize": 22, "csize": 18, "crc": 14}[patch]
    struct.pack_into("<I", data, field, {"usize": 500, "csize": 600, "crc": 12345}[patch])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("patch, reason", [
    ("usize", "Inconsistent uncompressed size: 1000 in central directory, 500 in local header"),
    ("csize", "Inconsistent compressed size: 1000 in central directory, 600 in local header"),
    ("crc", "Inconsistent CRC32 values"),
])
@pytest.mark.parametrize("fs", ["ext4", "tar"])
def test_zip_local_header_disagrees_with_central_directory(tmp_path: Path, patch: str,
                                                           reason: str, fs: str) -> None:
    _zip(tmp_path / "z.zip", patch)
    # the reference: bsdtar and unzip refuse it too (unzip exits 0 on some; bsdtar never)
    assert subprocess.run(["bsdtar", "-xOf", "z.zip"], cwd=tmp_path,
                          capture_output=True).returncode != 0
    (tmp_path / "l.yaml").write_text(LAYOUT.format(src="z.zip", fs=fs))
    result = compose("-q", "build", "l.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"error: l.yaml:5:6: source 's': z.zip is truncated or corrupt at member 'a.txt' "
        f"(libarchive: {reason})",
        "  hint: check the archive with 'tar -tvf', or capture it again"]
    assert not (tmp_path / "out").exists()


def test_zip_data_with_a_bad_crc_is_an_error(tmp_path: Path) -> None:
    """Headers agree but the data does not match their CRC: found while writing, exit 1."""
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.txt", b"A" * 1000)
    data = bytearray((tmp_path / "z.zip").read_bytes())
    start = data.index(b"A" * 1000)
    data[start + 500] = ord("X")
    (tmp_path / "z.zip").write_bytes(bytes(data))
    assert subprocess.run(["unzip", "-t", "z.zip"], cwd=tmp_path,
                          capture_output=True).returncode != 0
    (tmp_path / "l.yaml").write_text(LAYOUT.format(src="z.zip", fs="ext4"))
    result = compose("-q", "build", "l.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[0].startswith(
        "error: source 's': z.zip member 'a.txt' cannot be read (libarchive: ZIP bad CRC"), \
        result.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- sparse


def _host_holes(path: Path) -> list[tuple[int, int]]:
    """The file's holes as the host file system reports them (SEEK_DATA/SEEK_HOLE)."""
    holes = []
    size = path.stat().st_size
    with path.open("rb") as f:
        fd = f.fileno()
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole from here on
                data = size
            if data > pos:
                holes.append((pos, data - pos))
            if data >= size:
                break
            pos = os.lseek(fd, data, os.SEEK_HOLE)
    return holes


@pytest.mark.parametrize("fmt", [["--format=gnu"], ["--format=pax", "--sparse-version=1.0"],
                                 ["--format=pax", "--sparse-version=0.1"]])
def test_sparse_members_give_their_holes(tmp_path: Path, fmt: list[str]) -> None:
    from composer.content import ContentStore
    from composer.registry import scan_source

    d = tmp_path / "d"
    d.mkdir()
    f = d / "sparse"
    with f.open("wb") as out:
        out.truncate(3 << 20)
        out.seek(1 << 20)
        out.write(b"middle" * 1000)
        out.seek((3 << 20) - 5)
        out.write(b"tail!")
    (d / "hole-only").touch()
    os.truncate(d / "hole-only", 1 << 20)
    (d / "dense").write_bytes(b"\0" * 8192 + b"x")
    holes = _host_holes(f)
    if not holes:
        env_skip("no-holes", "the host file system does not keep holes")
    archive = tmp_path / "s.tar"
    subprocess.run(["tar", "--sparse", *fmt, "-cf", str(archive), "-C", str(d), "."],
                   check=True)
    # GNU tar's own account of what it stored as data
    listing = subprocess.run(["tar", "-tvf", str(archive)], capture_output=True, text=True,
                             check=True).stdout
    assert "sparse" in listing
    scanned = scan_source("s", archive)
    content = scanned.entries["/sparse"].content
    assert content is not None and content.size == 3 << 20
    assert list(content.holes) == holes
    assert scanned.entries["/hole-only"].content.holes == ((0, 1 << 20),)  # type: ignore
    assert scanned.entries["/dense"].content.holes == ()  # type: ignore[union-attr]
    store = ContentStore({"s": scanned.data})
    wanted = [scanned.entries[p].content for p in ("/dense", "/hole-only", "/sparse")]
    got = {c.member: stream.read() for c, stream in store.stream(wanted)}  # type: ignore
    assert got == {"./dense": (d / "dense").read_bytes(),
                   "./hole-only": bytes(1 << 20), "./sparse": f.read_bytes()}


# -------------------------------------------------------------------------------- pre-1970


@pytest.mark.parametrize("fmt", ["gnu", "pax"])  # ustar has no negative times
def test_mtimes_before_1970_are_kept(tmp_path: Path, fmt: str) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "old").write_bytes(b"from the sixties\n")
    (d / "older").mkdir()
    os.utime(d / "old", ns=(0, -315_619_200 * 10**9))  # 1960-01-01
    os.utime(d / "older", ns=(0, -2_000_000_000 * 10**9))  # 1906-08-16, in ext4's range
    archive = tmp_path / "s.tar"
    subprocess.run(["tar", f"--format={fmt}", "-cf", str(archive), "-C", str(d), "old",
                    "older"], check=True)
    nodes = Ext4Harness(tmp_path).read_tree(build(tmp_path, archive.name, "ext4") / "root.img")
    assert nodes["/old"].mtime_ns == -315_619_200 * 10**9
    assert nodes["/older"].mtime_ns == -2_000_000_000 * 10**9
    out = build(tmp_path, archive.name, "tar", "t") / "root.tar"
    listing = subprocess.run(["tar", "--full-time", "--utc", "-tvf", str(out)],
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, TZ="UTC")).stdout
    assert "1960-01-01 00:00:00 ./old" in listing, listing
    assert "1906-08-16 20:26:40 ./older/" in listing, listing


# ------------------------------------------------------------------------- NUL in targets


@pytest.mark.parametrize("kind", ["pax", "zip"])
def test_nul_in_a_link_target_ends_it_as_the_extracting_tools_do(tmp_path: Path,
                                                                 kind: str) -> None:
    """A pax linkpath record or a zip symlink's data may hold a NUL; GNU tar, bsdtar and unzip
    make the link of the bytes before it, and so does composer (a C string all the way: no
    target with a NUL reaches the writers, whose images e2fsck would reject)."""
    import tarfile

    archive = tmp_path / f"s.{kind}"
    if kind == "pax":
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("l")
            info.type, info.linkname = tarfile.SYMTYPE, "ab\0cd"
            tar.addfile(info)
        tools = ["gnutar", "bsdtar"]
    else:
        with zipfile.ZipFile(archive, "w") as z:
            info = zipfile.ZipInfo("l")
            info.create_system, info.external_attr = 3, 0o120777 << 16
            z.writestr(info, b"ab\0cd")
        tools = ["unzip", "bsdtar"]
    for tool in tools:
        assert extracted(tmp_path, archive, tool) == ({"/l": ("symlink", b"ab")}, [])
    (tmp_path / "l.yaml").write_text(  # an epoch in the past: e2fsck checks the write time
        LAYOUT.format(src=archive.name, fs="ext4").replace("2000000000", "1700000000"))
    assert compose("-q", "build", "l.yaml", "-o", "out", cwd=tmp_path).returncode == 0
    img = tmp_path / "out" / "root.img"
    Ext4Harness(tmp_path).fsck(img)
    assert ext4_view(tmp_path, img) == ({"/l": ("symlink", b"ab")}, [])
