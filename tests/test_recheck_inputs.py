"""Re-check on fresh inputs: paths that only a folder can hold, sources that cannot be read, and
archives made by GNU tar and bsdtar. Each bad input is one message with its place and a hint,
exit 1, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import compose

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, trusted.* xattrs, "
                               "chown, setuid to another user)")


def _layout(folder: Path, source: str, files: str) -> None:
    (folder / "layout.yaml").write_text(
        f"version: 1\nname: t\nepoch: 1718878001\nsources:\n  golden: {source}\npartitions:\n"
        f"  - {{name: root, fs: tar, mount: /}}\n  - {{name: boot, fs: tar, mount: /boot}}\n"
        f"files:\n{files}")


def _fails(folder: Path, expected: list[str]) -> None:
    result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == expected
    assert not (folder / "out").exists()


@pytest.mark.parametrize("files, message", [
    ('  - {from: "golden:/one", to: /}\n',
     "error: layout.yaml:10:5: files[0] makes / a file, but it is the root"),
    ('  - {from: "golden:/one", to: /boot}\n',
     "error: layout.yaml:10:5: files[0] makes /boot a file, but it is a partition's mount point"),
    ('  - {from: "golden:/one", to: /x}\n  - {to: /x/y, content: "a"}\n',
     "error: layout.yaml:10:5: files[0] makes /x a file, but files[1] places /x/y below it"),
    ('  - {to: /l, symlink: /etc}\n  - {from: "golden:/", to: /l/copy}\n',
     "error: layout.yaml:10:5: files[0] makes /l a symlink, but files[1] places /l/copy "
     "below it"),
])
def test_only_a_folder_holds_other_paths(tmp_path: Path, files: str, message: str) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "one").write_text("one\n")
    _layout(tmp_path, "src", files)
    _fails(tmp_path, [message, "  hint: only a folder can hold other paths; change 'to' so "
                      "that the two do not overlap"])


@pytest.mark.parametrize("make", ["tar", "zero"])
def test_empty_archive(tmp_path: Path, make: str) -> None:
    if make == "tar":
        (tmp_path / "e.tar").write_bytes(b"\0" * 10240)
    else:
        (tmp_path / "e.tar").write_bytes(b"")
    _layout(tmp_path, "e.tar", '  - {from: "golden:/", to: /srv}\n')
    _fails(tmp_path, ["error: layout.yaml:5:11: source 'golden': e.tar is an empty archive",
                      "  hint: the capture probably failed; capture the golden device again"])


def _plan_as_nobody(folder: Path) -> tuple[int, str]:
    """Run the whole plan as uid 65534 in a forked child (the interpreter itself may live where
    that user cannot read, so no exec)."""
    import composer.registry  # noqa: F401 - import every writer while still root
    from composer.build import plan
    from composer.errors import ComposerError
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code, text = 0, ""
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.chdir(folder)
            plan(Path("layout.yaml"))
        except ComposerError as exc:
            code, text = 1, exc.render()
        except BaseException as exc:  # noqa: BLE001
            code, text = 3, repr(exc)
        os.write(write, text.encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        text = stream.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


@ROOT_ONLY
def test_folder_that_can_be_listed_but_not_searched() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="recheck-", dir="/tmp"))  # pytest's is 0700 root
    os.chmod(tmp_path, 0o755)
    try:
        _unsearchable(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _unsearchable(tmp_path: Path) -> None:
    src = tmp_path / "src" / "locked"
    src.mkdir(parents=True)
    (src / "f").write_text("x")
    os.chmod(src, 0o444)  # r without x: listdir works, lstat of a child does not
    _layout(tmp_path, "src", '  - {from: "golden:/", to: /srv}\n')
    code, text = _plan_as_nobody(tmp_path)
    assert code == 1, text
    assert text == ("error: layout.yaml:5:11: source 'golden': cannot read /locked/f: "
                    "Permission denied\n  hint: make the folder searchable (x) by the user who "
                    "builds")


def _golden_tree(root: Path) -> None:
    """A docker store and a few files with what GNU tar --xattrs carries."""
    diff = root / "var/lib/docker/overlay2/l1/diff"
    (diff / "etc/opaque").mkdir(parents=True)
    os.setxattr(diff / "etc/opaque", "trusted.overlay.opaque", b"y")
    os.mknod(diff / "etc/gone", 0o600 | 0o020000, os.makedev(0, 0))
    (diff / "usr/bin").mkdir(parents=True)
    (diff / "usr/bin/ping").write_bytes(b"\x7fELF ping")
    os.setxattr(diff / "usr/bin/ping", "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))
    (diff / "usr/bin/su").write_bytes(b"\x7fELF su")
    os.chmod(diff / "usr/bin/su", 0o4755)
    (diff / "usr/bin/m").write_bytes(b"hard linked")
    os.chown(diff / "usr/bin/m", 100000, 100000)
    os.link(diff / "usr/bin/m", diff / "usr/bin/a")
    os.link(diff / "usr/bin/m", diff / "usr/bin/z")
    os.mkfifo(diff / "fifo")
    (diff / "name with space ✓").write_text("u")
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(dirpath, name), ns=(1718878001_123456789,) * 2,
                     follow_symlinks=False)
    os.utime(root, ns=(1718878001_123456789,) * 2)


@ROOT_ONLY
@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_folder_and_gnu_tar_snapshot_in_any_order_give_the_same_bytes(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _golden_tree(tree)
    names = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*"))
    (tmp_path / "reverse.list").write_text("".join(f"./{n}\n" for n in reversed(names)))
    common = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--format=pax",
              "-C", str(tree)]
    subprocess.run([*common, "--sort=name", "-czf", str(tmp_path / "sorted.tar.gz"), "."],
                   check=True)
    subprocess.run([*common, "--no-recursion", "-T", str(tmp_path / "reverse.list"), "-cf",
                    str(tmp_path / "reverse.tar")], check=True)
    images = []
    for source in ("tree", "sorted.tar.gz", "reverse.tar"):
        folder = tmp_path / f"build-{source}"
        folder.mkdir()
        (folder / "layout.yaml").write_text(
            f"version: 1\nname: t\nepoch: 1718878100\nsources:\n  golden: ../{source}\n"
            "partitions:\n  - {name: docker, fs: tar, mount: /var/lib/docker}\n"
            "docker:\n  from: golden:/var/lib/docker\n")
        result = compose("-q", "build", "layout.yaml", "-o", "out", cwd=folder)
        assert result.returncode == 0, result.stderr
        manifest = json.loads((folder / "out" / "manifest.json").read_text())
        images.append([(folder / "out" / "docker.tar").read_bytes(),
                       manifest.pop("provenance"), manifest])
    assert images[0][0] == images[1][0] == images[2][0]  # the image
    assert images[0][2] == images[1][2] == images[2][2]  # the manifest but its provenance
    # which records the source: a folder, or an archive whatever its member order
    assert images[0][1]["sources"]["golden"]["kind"] == "folder"
    assert images[1][1]["sources"] == images[2][1]["sources"]
    assert images[1][1]["sources"]["golden"]["kind"] == "archive"
    # read back with GNU tar, extract as root and compare with the original
    out = tmp_path / "extracted"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf",
                    str(tmp_path / "build-tree" / "out" / "docker.tar"), "-C", str(out)],
                   check=True, capture_output=True)
    src, got = tree / "var/lib/docker/overlay2/l1/diff", out / "overlay2/l1/diff"
    for rel in ("etc/opaque", "etc/gone", "usr/bin/ping", "usr/bin/su", "usr/bin/a", "fifo",
                "name with space ✓"):
        a, b = os.lstat(src / rel), os.lstat(got / rel)
        assert (a.st_mode, a.st_uid, a.st_rdev, a.st_mtime_ns) == \
            (b.st_mode, b.st_uid, b.st_rdev, b.st_mtime_ns), rel
        assert sorted(os.listxattr(src / rel, follow_symlinks=False)) == \
            sorted(os.listxattr(got / rel, follow_symlinks=False)), rel
    assert os.stat(got / "usr/bin/a").st_ino == os.stat(got / "usr/bin/z").st_ino
    assert os.getxattr(got / "usr/bin/ping", "security.capability") == \
        os.getxattr(src / "usr/bin/ping", "security.capability")


