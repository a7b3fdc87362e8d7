"""The sources' files hashed by a child process while the build plans
(composer/outputs/prehash.py): the manifest must be byte for byte the one made without it, the
child's digests must be hashlib's of the files, and a plan or build that fails must not leave
the child behind."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest

from composer.build import build, plan
from composer.errors import ComposerError

LAYOUT = """version: 1
name: t
epoch: 2000000000
sources:
  packed: files.tar
  folder: more/
partitions:
  - {name: root, fs: ext4, mount: /, size: 16MiB}
  - {name: app, fs: tar, mount: /opt}
files:
  - {from: "packed:/", to: /}
  - {from: "folder:/", to: /opt/more}
"""


def _sources(root: Path) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    src = root / "src"
    for i in range(300):
        body = hashlib.sha256(b"%d" % i).digest() * (i * 7 % 300)
        data[f"etc/f{i:03d}"] = body
        (src / "etc").mkdir(parents=True, exist_ok=True)
        (src / f"etc/f{i:03d}").write_bytes(body)
    big = os.urandom(3 << 20)
    (src / "big.bin").write_bytes(big)
    data["big.bin"] = big
    subprocess.run(["tar", "-cf", str(root / "files.tar"), "-C", str(src), "."], check=True)
    (root / "more").mkdir()
    for i in range(50):
        (root / "more" / f"m{i}").write_bytes(b"more %d\n" % i * i)
    (root / "l.yaml").write_text(LAYOUT)
    return data


def test_manifest_with_the_child_equals_the_one_without(tmp_path: Path) -> None:
    data = _sources(tmp_path)
    with_child = plan(tmp_path / "l.yaml", prehash=True)
    assert with_child.prehash is not None
    taken = with_child.prehash.take(wait=True)
    assert taken is not None
    digests = dict(taken)
    # the child's digests are hashlib's of the files (all of the tar's, all of the folder's)
    by_member = {c.member.removeprefix("./"): d for c, d in digests.items()}
    for rel, body in data.items():
        if body:  # an empty file has no content to hash
            assert by_member[rel] == hashlib.sha256(body).digest(), rel
    assert len(digests) == len([b for b in data.values() if b]) + 49

    fresh = plan(tmp_path / "l.yaml", prehash=True)  # taken by the build this time
    build(fresh, tmp_path / "a")
    assert multiprocessing.active_children() == []
    build(plan(tmp_path / "l.yaml"), tmp_path / "b")
    for name in ("manifest.json", "SHA256SUMS", "root.img", "app.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_plan_that_fails_leaves_no_child(tmp_path: Path) -> None:
    _sources(tmp_path)
    text = (tmp_path / "l.yaml").read_text()
    (tmp_path / "l.yaml").write_text(text.replace("size: 16MiB", "size: 1MiB"))
    with pytest.raises(ComposerError):
        plan(tmp_path / "l.yaml", prehash=True)
    assert multiprocessing.active_children() == []


def test_a_build_that_fails_leaves_no_child(tmp_path: Path) -> None:
    _sources(tmp_path)
    the_plan = plan(tmp_path / "l.yaml", prehash=True)
    (tmp_path / "out").write_text("a file where the output folder goes")
    with pytest.raises(ComposerError):
        build(the_plan, tmp_path / "out")
    assert multiprocessing.active_children() == []
