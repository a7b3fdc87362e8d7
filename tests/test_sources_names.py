"""Names are bytes: the same sources give the same image bytes under any locale, names that are
not UTF-8 go from a folder and from a tar into ext4 and tar partitions unchanged, and
manifest.json shows them in the README's escaping. Folder files that change during a build are
errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import compose
from tests.fs.conftest import Ext4Harness
from tests.test_sources_archives import folder_view, tar_view

LATIN1 = "de_DE.ISO-8859-1"
LAYOUT = """version: 1
name: names
epoch: 1700000000
sources:
  f: src
  g: gnu.tar
  p: pax.tar
partitions:
  - {name: root, fs: ext4, mount: /}
  - {name: t, fs: tar, mount: /t}
files:
  - {from: "f:/", to: /folder}
  - {from: "g:/", to: /gnu}
  - {from: "p:/", to: /t/pax}
  - {from: "f:/", to: /t/folder}
"""


def _locale_exists(name: str) -> bool:
    probe = subprocess.run([sys.executable, "-c",
                            "import locale; locale.setlocale(locale.LC_ALL, '')"],
                           env=dict(os.environ, LC_ALL=name), capture_output=True)
    return probe.returncode == 0


def _sources(folder: Path) -> None:
    src = os.fsencode(folder / "src")
    os.mkdir(src)
    for name in (b"caf\xc3\xa9", b"lat\xe9", b"\xe2\x82\xac-euro", b"back\\slash", b"plain"):
        with open(os.path.join(src, name), "wb") as f:
            f.write(b"bytes of " + name + b"\n")
    os.mkdir(os.path.join(src, b"d\xff\xfe"))
    with open(os.path.join(src, b"d\xff\xfe", b"in\xc3"), "wb") as f:
        f.write(b"deep\n")
    os.symlink(b"lat\xe9", os.path.join(src, b"link\xe9"))
    os.symlink(b"caf\xc3\xa9", os.path.join(src, b"link-utf8"))
    env = dict(os.environ, LC_ALL="C.UTF-8")
    for fmt, out in (("gnu", "gnu.tar"), ("pax", "pax.tar")):
        subprocess.run(["tar", f"--format={fmt}", "-cf", str(folder / out), "-C",
                        str(folder / "src"), "."], check=True, env=env)


def _build(folder: Path, locale: str, out: str) -> Path:
    result = compose("-q", "build", "l.yaml", "-o", out, cwd=folder,
                     env={"LC_ALL": locale, "LANG": locale})
    assert result.returncode == 0, result.stderr
    return folder / out


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("names")
    _sources(folder)
    (folder / "l.yaml").write_text(LAYOUT)
    locales = ["C.UTF-8", "C", "POSIX"] + ([LATIN1] if _locale_exists(LATIN1) else [])
    return folder, {loc: _build(folder, loc, f"out-{loc}") for loc in locales}


def test_every_locale_gives_the_same_bytes(builds: tuple[Path, dict[str, Path]]) -> None:
    _, outs = builds
    if LATIN1 not in outs:
        pytest.skip(f"the {LATIN1} locale is not installed (.ci/run makes it with localedef)")
    sums = {loc: (out / "SHA256SUMS").read_text() for loc, out in outs.items()}
    assert len(set(sums.values())) == 1, sums


def test_utf8_names_give_the_same_bytes_in_every_locale(tmp_path: Path) -> None:
    """Only valid UTF-8 names (these builds never crashed; under Latin-1 they came out
    double-encoded)."""
    if not _locale_exists(LATIN1):
        pytest.skip(f"the {LATIN1} locale is not installed (.ci/run makes it with localedef)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("café", "€uro", "日本"):
        (src / name).write_text(name)
    os.setxattr(src / "café", "user.café".encode(), b"value")  # xattr names are bytes too
    env = dict(os.environ, LC_ALL="C.UTF-8")
    for fmt, out in (("gnu", "gnu.tar"), ("pax", "pax.tar")):
        subprocess.run(["tar", f"--format={fmt}", "-cf", str(tmp_path / out), "-C", str(src),
                        "."], check=True, env=env)
    (tmp_path / "l.yaml").write_text(LAYOUT)
    sums = {loc: (_build(tmp_path, loc, f"out-{loc}") / "SHA256SUMS").read_text()
            for loc in ("C.UTF-8", "C", LATIN1)}
    assert len(set(sums.values())) == 1, sums
    nodes = Ext4Harness(tmp_path).read_tree(tmp_path / f"out-{LATIN1}" / "root.img")
    assert {"/gnu/café", "/gnu/€uro", "/gnu/日本", "/folder/café"} <= set(nodes)
    eas = subprocess.run(["debugfs", "-R", "ea_list /folder/café",
                          str(tmp_path / f"out-{LATIN1}" / "root.img")],
                         capture_output=True, text=True).stdout
    # debugfs spells a name with non-ASCII bytes in hex: these are UTF-8 "user.café"
    assert '75 73 65 72 2e 63 61 66 c3 a9  (5) = "value"' in eas, eas


def test_names_reach_ext4_and_tar_as_bytes(builds: tuple[Path, dict[str, Path]],
                                           tmp_path: Path) -> None:
    folder, outs = builds
    want, _ = folder_view(folder / "src")
    assert "/lat\udce9" in want and want["/link\udce9"] == ("symlink", b"lat\xe9")
    for out in outs.values():
        Ext4Harness(tmp_path).fsck(out / "root.img")
        nodes = Ext4Harness(tmp_path).read_tree(out / "root.img")
        for top in ("/folder", "/gnu"):
            got = {p[len(top):]: n for p, n in nodes.items() if p.startswith(top + "/")}
            assert sorted(got) == sorted(want), (top, sorted(got))
            for path, (kind, body) in want.items():
                assert got[path].kind == kind
                assert (got[path].data if kind == "file" else got[path].target
                        if kind == "symlink" else b"") == body, path
        tree, _ = tar_view(tmp_path, out / "t.tar")
        for top in ("/pax", "/folder"):
            got = {p[len(top):]: v for p, v in tree.items() if p.startswith(top + "/")}
            assert got == want, top


def test_manifest_shows_names_in_the_documented_escaping(
        builds: tuple[Path, dict[str, Path]]) -> None:
    _, outs = builds
    text = (outs["C"] / "manifest.json").read_bytes()
    text.decode("utf-8")  # valid UTF-8 whatever the names
    manifest = json.loads(text)
    # paths inside each partition
    paths = {part + e["path"]: e for part, p in manifest["partitions"].items()
             for e in p["entries"]}
    # undecodable bytes as \xNN, a backslash doubled, UTF-8 as itself
    for path in ("root/folder/lat\\xe9", "root/folder/café", "root/folder/€-euro",
                 "root/folder/back\\\\slash", "root/folder/d\\xff\\xfe/in\\xc3",
                 "root/gnu/lat\\xe9", "t/pax/lat\\xe9", "t/folder/lat\\xe9"):
        assert path in paths, path
    assert paths["root/folder/link\\xe9"]["target"] == "lat\\xe9"
    assert paths["t/pax/link\\xe9"]["target"] == "lat\\xe9"


def test_vfat_refuses_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    src = os.fsencode(tmp_path / "src")
    os.mkdir(src)
    with open(os.path.join(src, b"lat\xe9.txt"), "wb") as f:
        f.write(b"x")
    (tmp_path / "l.yaml").write_text(
        "version: 1\nname: v\nepoch: 2000000000\nsources:\n  f: src\npartitions:\n"
        "  - {name: boot, fs: vfat, mount: /}\nfiles:\n  - {from: \"f:/\", to: /}\n")
    result = compose("-q", "build", "l.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "error: l.yaml:7:5: boot: /lat\\xe9.txt: the name is not valid UTF-8, and FAT stores "
        "names as UTF-16 text"]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ sources that change


def _store_of(folder: Path) -> tuple[object, object]:
    from composer.content import ContentStore
    from composer.registry import scan_source

    scanned = scan_source("s", folder)
    return scanned, ContentStore({"s": scanned.data})


def test_folder_file_changed_after_the_plan_is_an_error(tmp_path: Path) -> None:
    from composer.errors import ComposerError

    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "grows"
    f.write_bytes(b"x" * 100)
    scanned, store = _store_of(tmp_path / "src")
    content = scanned.entries["/grows"].content  # type: ignore[attr-defined]
    with f.open("ab") as out:
        out.write(b"more")
    with pytest.raises(ComposerError) as caught:
        for _, stream in store.stream([content]):  # type: ignore[attr-defined]
            stream.read()
    assert caught.value.message.startswith(
        "source 's': grows changed during the build (size 100 -> 104, mtime_ns ")


def test_folder_file_that_grows_while_read_is_an_error(tmp_path: Path) -> None:
    from composer.errors import ComposerError

    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "log"
    f.write_bytes(b"x" * 100)
    scanned, store = _store_of(tmp_path / "src")
    content = scanned.entries["/log"].content  # type: ignore[attr-defined]
    with pytest.raises(ComposerError) as caught:
        for _, stream in store.stream([content]):  # type: ignore[attr-defined]
            stream.read(10)
            with f.open("ab") as out:  # same size at open, then it grows
                out.write(b"more")
            stream.read()
    assert caught.value.message == ("s:log: holds more than the 100 bytes it had when the "
                                    "build was planned")


def test_folder_file_that_shrinks_while_read_is_an_error(tmp_path: Path) -> None:
    from composer.errors import ComposerError

    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "log"
    f.write_bytes(b"x" * (1 << 20))  # more than the reader buffers
    scanned, store = _store_of(tmp_path / "src")
    content = scanned.entries["/log"].content  # type: ignore[attr-defined]
    with pytest.raises(ComposerError) as caught:
        for _, stream in store.stream([content]):  # type: ignore[attr-defined]
            stream.read(10)
            os.truncate(f, 50)
            stream.read()
    assert re.fullmatch(r"s:log: ended after \d+ of 1048576 bytes", caught.value.message)


def test_folder_file_rewritten_at_the_same_size_is_an_error(tmp_path: Path) -> None:
    from composer.errors import ComposerError

    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "conf"
    f.write_bytes(b"old!")
    os.utime(f, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    scanned, store = _store_of(tmp_path / "src")
    content = scanned.entries["/conf"].content  # type: ignore[attr-defined]
    f.write_bytes(b"new!")  # same size, new mtime
    with pytest.raises(ComposerError) as caught:
        for _, stream in store.stream([content]):  # type: ignore[attr-defined]
            stream.read()
    assert caught.value.message.startswith(
        "source 's': conf changed during the build (size 4 -> 4, mtime_ns "
        "1600000000000000000 -> ")


def test_report_shows_a_name_in_the_documented_escaping(tmp_path: Path) -> None:
    import io
    import tarfile

    with tarfile.open(tmp_path / "s.tar", "w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        info = tarfile.TarInfo("../lat\udce9\\x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "l.yaml").write_text(
        "version: 1\nname: r\nepoch: 1700000000\nsources:\n  s: s.tar\npartitions:\n"
        "  - {name: root, fs: tar, mount: /}\nfiles:\n  - {from: \"s:/\", to: /}\n")
    result = compose("build", "l.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = ("warning: source 's': member '../lat\\xe9\\\\x' escapes the source; taken as "
            "'/lat\\xe9\\\\x'")
    assert (tmp_path / "out" / "report.txt").read_text(encoding="utf-8").splitlines() == [line]
    assert line in result.stderr
    # GNU tar lists the member under the same bytes
    listing = subprocess.run(["tar", "--quoting-style=literal", "-tf",
                              str(tmp_path / "out" / "root.tar")],
                             capture_output=True, check=True).stdout
    assert b"./lat\xe9\\x\n" in listing
