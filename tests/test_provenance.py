"""manifest.json's provenance: the layout's sha256, each source's tree digest and the epoch's
origin, recomputed here independently of composer's own digest code."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

from composer.outputs.manifest import Manifest
from tests.conftest import compose


def _build(layout: Path, out: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    result = compose("build", str(layout), "-o", str(out), *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "manifest.json").read_text())["provenance"]


def _folder_digest(root: Path) -> str:
    """The README's definition of a tree digest, written again with os.walk and hashlib."""
    rows = []
    for folder, dirs, files in os.walk(root):
        for name in ["", *dirs, *files]:
            host = Path(folder) / name if name else Path(folder)
            rel = "/" + host.relative_to(root).as_posix() if host != root else "/"
            st = os.lstat(host)
            assert st.st_nlink == 1 or stat.S_ISDIR(st.st_mode)  # no hard links in this test
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
            data = host.read_bytes() if kind == "file" else None
            xattrs = []
            for x in sorted(os.listxattr(host, follow_symlinks=False)):
                xattrs += [x.encode(), hashlib.sha256(os.getxattr(host, x)).hexdigest().encode()]
            rows.append((rel.encode(), [
                rel.encode(), kind.encode(), b"%o" % stat.S_IMODE(st.st_mode), b"%d" % st.st_uid,
                b"%d" % st.st_gid, b"%d" % st.st_mtime_ns,
                b"%d" % len(data) if data is not None else b"",
                hashlib.sha256(data).hexdigest().encode() if data is not None else b"",
                b"", b"", b"", *xattrs]))  # link target, hard-link group, device numbers
    h = hashlib.sha256(b"composer-tree-1\n")
    seen = set()
    for key, fields in sorted(rows):
        if key in seen:  # os.walk lists a folder as a child and again as a root
            continue
        seen.add(key)
        for field in fields:
            h.update(b"%d:" % len(field) + field)
        h.update(b"\n")
    return h.hexdigest()


def test_the_manifest_records_layout_sources_and_epoch_origin(demo: Path, tmp_path: Path) -> None:
    prov = _build(demo, tmp_path / "out")
    assert prov["layout"] == {"file": "demo.yaml",
                              "sha256": hashlib.sha256(demo.read_bytes()).hexdigest()}
    assert prov["epoch_origin"] == "layout"
    assert prov["sources"]["boot"] == {"kind": "folder",
                                       "tree_sha256": _folder_digest(demo.parent / "boot")}
    assert prov["sources"]["golden"]["kind"] == "archive"
    # the typed record reads it back
    manifest = Manifest.from_json((tmp_path / "out" / "manifest.json").read_text())
    assert manifest.provenance is not None
    assert manifest.provenance.sources["boot"].tree_sha256 == prov["sources"]["boot"]["tree_sha256"]


def test_each_epoch_origin_is_named(demo: Path, tmp_path: Path) -> None:
    assert _build(demo, tmp_path / "a", "--source-date-epoch", "1600000000")["epoch_origin"] \
        == "--source-date-epoch"
    assert _build(demo, tmp_path / "b", env={"SOURCE_DATE_EPOCH": "1600000000"})[
        "epoch_origin"] == "SOURCE_DATE_EPOCH"
    text = demo.read_text()
    assert "epoch: 1718878001\n" in text
    demo.write_text(text.replace("epoch: 1718878001\n", ""))
    assert _build(demo, tmp_path / "c")["epoch_origin"] == "newest input mtime"


def test_a_folder_digest_follows_content_and_metadata_not_its_path(demo: Path,
                                                                    tmp_path: Path) -> None:
    before = _build(demo, tmp_path / "a")["sources"]
    # the whole project moved elsewhere, metadata kept: the same provenance
    moved = tmp_path / "x" / "y" / "moved"
    shutil.copytree(demo.parent, moved)
    assert _build(moved / "demo.yaml", tmp_path / "b")["sources"] == before
    boot = moved / "boot"
    config = boot / "config.txt"
    stamp = os.stat(config)
    config.write_bytes(b"X" + config.read_bytes()[1:])  # one byte, size and mtime kept
    os.utime(config, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.utime(boot, ns=(os.stat(boot).st_atime_ns, os.stat(demo.parent / "boot").st_mtime_ns))
    one_byte = _build(moved / "demo.yaml", tmp_path / "c")["sources"]
    assert one_byte["boot"]["tree_sha256"] not in (before["boot"]["tree_sha256"],)
    assert one_byte["boot"]["tree_sha256"] == _folder_digest(boot)
    assert one_byte["golden"] == before["golden"]
    os.chmod(config, 0o600)
    assert _build(moved / "demo.yaml", tmp_path / "d")["sources"]["boot"]["tree_sha256"] \
        not in (before["boot"]["tree_sha256"], one_byte["boot"]["tree_sha256"])


def test_an_archive_digest_follows_its_members_not_their_order(demo: Path,
                                                                tmp_path: Path) -> None:
    before = _build(demo, tmp_path / "a")["sources"]["golden"]["tree_sha256"]
    archive = demo.parent / "golden-device.tar.gz"
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None)
                   for m in tar.getmembers()]
    # reversed, each hard link still after its target; then one byte of one file changed
    files = [m for m in members if not m[0].islnk()]
    links = [m for m in members if m[0].islnk()]
    repacked = tmp_path / "golden-device.tar"
    with tarfile.open(repacked, "w", format=tarfile.PAX_FORMAT) as tar:
        for m, data in [*reversed(files), *links]:
            tar.addfile(m, None if data is None else io.BytesIO(data))
    shutil.copy(repacked, archive)
    assert _build(demo, tmp_path / "b")["sources"]["golden"]["tree_sha256"] == before
    victim = next(i for i, (m, data) in enumerate(files) if data and len(data) > 10)
    m, data = files[victim]
    files[victim] = (m, bytes([data[0] ^ 1]) + data[1:])
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for m, data in [*files, *links]:
            tar.addfile(m, None if data is None else io.BytesIO(data))
    assert _build(demo, tmp_path / "c")["sources"]["golden"]["tree_sha256"] != before
