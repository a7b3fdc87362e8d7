"""An uncompressed tar's data is read with pread at the offsets the scan noted (so the ext4
writer can take it in block order): the bytes must be the member's, in every tar format GNU tar
writes, and anything else (compressed, sparse, changed since the scan) must not be read that way.

The archives are made by GNU tar from a folder; the folder's own files are the reference."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.sources.archive import ArchiveData, scan_archive
from composer.tree import Kind
from tests.conftest import compose

pytestmark = pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar (see .ci/run)")

LONG_DIR = "d" * 90 + "/" + "e" * 90  # past ustar's 100-byte name and 155-byte prefix fields


def _tree(root: Path, long_names: bool) -> dict[str, bytes]:
    """Files of awkward sizes and names; returns their data by archive path."""
    rng = hashlib.sha256(b"seed")
    files: dict[str, bytes] = {}
    sizes = [0, 1, 511, 512, 513, 4096, 65537, (1 << 20) + 3]
    for i, size in enumerate(sizes):
        data = b""
        while len(data) < size:
            rng.update(b"x")
            data += rng.digest()
        files[f"f{i}.bin"] = data[:size]
    if long_names:
        files[f"{LONG_DIR}/{'n' * 120}.txt"] = b"deep\n" * 300
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.link(root / "f7.bin", root / "hard.bin")  # a link member: no data of its own
    files["hard.bin"] = files["f7.bin"]
    os.symlink("f1.bin", root / "sym")
    return files


def _read_all(data: ArchiveData, contents: list) -> dict[object, bytes]:
    got = {}
    for content, stream in data.iter_data(contents):
        buf = bytearray()
        while chunk := stream.read(1 << 16):
            buf += chunk
        got[content] = bytes(buf)
    return got


def _file_contents(scanned) -> dict[str, object]:
    return {path: e.content for path, e in scanned.entries.items()
            if e.kind in (Kind.FILE, Kind.HARDLINK) and e.content is not None}


@pytest.mark.parametrize("fmt", ["gnu", "oldgnu", "pax", "ustar", "v7"])
def test_plain_tar_is_read_at_its_offsets_with_the_members_bytes(tmp_path: Path,
                                                                   fmt: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = _tree(src, long_names=fmt in ("gnu", "oldgnu", "pax"))
    tar = tmp_path / "t.tar"
    subprocess.run(["tar", f"--format={fmt}", "-cf", str(tar), "-C", str(src), "."],
                   check=True)
    scanned = scan_archive("s", tar)
    assert scanned.data.sequential is False  # the pread path is the one under test
    contents = _file_contents(scanned)
    # in reverse path order: nothing depends on reading in member order
    wanted = [contents[p] for p in sorted(contents, reverse=True)]
    got = _read_all(scanned.data, wanted)
    for rel, data in files.items():
        assert got[contents["/" + rel]] == data, rel


def test_compressed_and_sparse_tars_are_read_in_member_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = _tree(src, long_names=False)
    plain = tmp_path / "t.tar"
    subprocess.run(["tar", "-cf", str(plain), "-C", str(src), "."], check=True)
    packed = tmp_path / "t.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    with open(src / "holey", "wb") as f:  # a GNU sparse member stores only its data regions
        f.seek(1 << 20)
        f.write(b"tail")
    sparse = tmp_path / "s.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(sparse), "-C", str(src), "."], check=True)
    for archive in (packed, sparse):
        scanned = scan_archive("s", archive)
        assert scanned.data.sequential is True, archive.name
        contents = _file_contents(scanned)
        got = _read_all(scanned.data, list(contents.values()))
        for rel, data in files.items():
            assert got[contents["/" + rel]] == data, (archive.name, rel)
    holey = _file_contents(scan_archive("s", sparse))["/holey"]
    assert _read_all(scan_archive("s", sparse).data, [holey])[holey] == \
        bytes(1 << 20) + b"tail"


def test_a_tar_changed_since_its_scan_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src, long_names=False)
    tar = tmp_path / "t.tar"
    subprocess.run(["tar", "-cf", str(tar), "-C", str(src), "."], check=True)
    scanned = scan_archive("s", tar)
    contents = list(_file_contents(scanned).values())
    # same size, other bytes: only the stamp tells
    data = bytearray(tar.read_bytes())
    data[-20000] ^= 0xFF
    tar.write_bytes(bytes(data))
    with pytest.raises(ComposerError, match="changed since it was scanned"):
        _read_all(scanned.data, contents)


def test_ext4_image_from_a_tar_equals_the_one_from_its_gzip(tmp_path: Path) -> None:
    """The data goes in in block order from the tar and in member order from the tar.gz: the
    image bytes do not depend on it."""
    src = tmp_path / "src"
    src.mkdir()
    _tree(src, long_names=True)
    tar = tmp_path / "t.tar"
    # members in an order far from the image's (reverse names)
    names = sorted((p.relative_to(src).as_posix() for p in src.rglob("*")), reverse=True)
    subprocess.run(["tar", "--no-recursion", "-cf", str(tar), "-C", str(src), *names],
                   check=True)
    (tmp_path / "t.tar.gz").write_bytes(gzip.compress(tar.read_bytes(), mtime=0))
    digests = []
    for name in ("t.tar", "t.tar.gz"):
        (tmp_path / "l.yaml").write_text(
            f"version: 1\nname: t\nepoch: 2000000000\nsources:\n  s: {name}\npartitions:\n"
            "  - {name: root, fs: ext4, mount: /, size: 8MiB}\nfiles:\n"
            "  - {from: \"s:/\", to: /}\n")
        result = compose("-q", "build", "l.yaml", "-o", f"out-{name}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        digests.append(hashlib.sha256((tmp_path / f"out-{name}" / "root.img").read_bytes())
                       .hexdigest())
    assert digests[0] == digests[1]
    if shutil.which("debugfs"):
        img = tmp_path / "out-t.tar" / "root.img"
        dumped = subprocess.run(["debugfs", "-R", "cat /f7.bin", str(img)],
                                capture_output=True, check=True).stdout
        assert dumped == (src / "f7.bin").read_bytes()
