"""Random tar, cpio and zip members (made with tarfile, zipfile and libarchive's cpio writer)
thrown at the sources and built into ext4, tar and vfat: a build either succeeds or fails with a
ComposerError (exit 1, never the exit-3 traceback), and writes nothing outside its output
folder."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import libarchive
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from composer.build import build, plan
from composer.errors import ComposerError

PARTS = [b"a", b"b", b"..", b".", b"", b"caf\xc3\xa9", b"lat\xe9", b"x" * 120, b"sp ace",
         b"back\\slash", b"new\nline", b"\xff\xfe", b"etc", b"-", b"A"]
NAMES = st.lists(st.sampled_from(PARTS), min_size=1, max_size=4).map(b"/".join) | \
    st.binary(min_size=1, max_size=30).map(lambda b: b.replace(b"\0", b"_"))
KINDS = st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "char"])
TIMES = st.sampled_from([0, 1, -1, -2_000_000_000, 1_700_000_000, 2**33, -(2**31) - 5])
MEMBER = st.tuples(NAMES, KINDS, st.binary(max_size=300), NAMES, TIMES,
                   st.integers(0, 0o7777), st.sampled_from([0, 1000, 65534, 2**21]))
MEMBERS = st.lists(MEMBER, min_size=1, max_size=8)
FORMATS = st.sampled_from(["gnu", "pax", "ustar", "zip", "cpio_newc", "cpio_odc"])
FS = st.sampled_from(["ext4", "tar", "vfat"])


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _tar(path: Path, fmt: str, members: list[tuple]) -> None:
    form = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT,
            "ustar": tarfile.USTAR_FORMAT}[fmt]
    with tarfile.open(path, "w", format=form, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, kind, data, target, mtime, mode, owner in members:
            info = tarfile.TarInfo(_text(name))
            info.mtime, info.mode, info.uid, info.gid = mtime, mode, owner, owner
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                         "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = _text(target)
            if kind == "file":
                info.size = len(data)
            try:
                tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
            except (ValueError, UnicodeError):  # a field this format cannot hold: leave it out
                continue


def _zip(path: Path, members: list[tuple]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, kind, data, target, _, mode, _ in members:
            info = zipfile.ZipInfo(_text(name).encode("utf-8", "replace").decode())
            if kind == "dir":
                info.filename += "/"
            elif kind == "symlink":
                info.external_attr = (0o120000 | mode) << 16
                data = target
            else:
                info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, data)


def _cpio(path: Path, fmt: str, members: list[tuple]) -> None:
    with libarchive.file_writer(str(path), fmt) as archive:
        for name, kind, data, _, mtime, mode, _ in members:
            filetype = {"dir": 0o040000, "fifo": 0o010000}.get(kind, 0o100000)
            body = data if filetype == 0o100000 else b""
            archive.add_file_from_memory(name, len(body), body, filetype=filetype,
                                         permission=mode, mtime=max(mtime, 0))


def _write_archive(path: Path, fmt: str, members: list[tuple]) -> None:
    if fmt == "zip":
        _zip(path, members)
    elif fmt.startswith("cpio"):
        _cpio(path, fmt, members)
    else:
        _tar(path, fmt, members)


def _everything(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root)
            for d, dirs, files in os.walk(root) for n in dirs + files}


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zipfile: wanted here
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(members=MEMBERS, fmt=FORMATS, fs=FS)
def test_random_members_never_crash_nor_escape(members: list[tuple], fmt: str, fs: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outer = Path(tmp)
        work = outer / "work"
        work.mkdir()
        archive = work / "s.bin"
        try:
            _write_archive(archive, fmt, members)
        except (ValueError, OSError, libarchive.ArchiveError):
            event("the writing tool refused the members")
            return
        (work / "l.yaml").write_text(
            "version: 1\nname: fuzz\nepoch: 1700000000\nsources:\n  s: s.bin\npartitions:\n"
            f"  - {{name: root, fs: {fs}, mount: /}}\nfiles:\n  - {{from: \"s:/\", to: /}}\n")
        before = _everything(outer)
        try:
            build(plan(work / "l.yaml"), work / "out")
            event(f"built {fs}")
        except ComposerError as exc:
            # the message may quote a member name with a lone surrogate (a non-UTF-8 byte):
            # hypothesis's statistics must be encodable, or its plugin aborts the session
            label = exc.message.split(":")[0][:40]
            event("error: " + label.encode("utf-8", "backslashreplace").decode("ascii",
                                                                                "replace"))
            exc.render().encode("utf-8")  # the message itself always prints
            assert not (work / "out").exists()
        after = _everything(outer)
        assert {p for p in after - before if not p.startswith("work/out")} == set()
