"""`compose diff`: deliberate one-field changes are each reported as exactly that change (and
the input that caused it), nothing else: not the image, bmap, .simg, .zst, disk or SHA256SUMS
bytes that follow from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.checkkit import compose_json
from tests.conftest import compose, copy_layouts

HOSTNAME = '{to: /etc/hostname, content: "gg-device\\n", mode: "0644"}'
DOCKER = "{name: docker, fs: ext4, size: auto,  mount: /var/lib/docker}"
PINNED = "0b3cc4b2-1f2e-4d5a-9c3b-2a1e0f9d8c7b"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    return copy_layouts(tmp_path_factory.mktemp("diff") / "project", golden)


@pytest.fixture(scope="module")
def base(project: Path) -> Path:
    return _build(project, "base", None)


def _build(project: Path, name: str, edit: tuple[str, str] | None, *args: str) -> Path:
    """A build of the demo layout, with one text edit of it in a copy of the project
    (shutil.copytree keeps the sources' metadata: the same inputs but the layout)."""
    layout = project / "demo.yaml"
    if edit is not None:
        copy = shutil.copytree(project, project.parent / f"{name}-project")
        layout = copy / "demo.yaml"
        text = layout.read_text()
        assert text.count(edit[0]) == 1
        layout.write_text(text.replace(*edit))
    out = project.parent / name
    done = compose("build", str(layout), "-o", str(out), *args)
    assert done.returncode == 0, done.stderr
    return out


def _changes(a: Path, b: Path) -> list[tuple[str, str, str, object, object]]:
    code, data = compose_json("diff", str(a), str(b))
    assert code == (1 if data["changes"] else 0)
    return [(c["scope"], c["where"], c["field"], c["a"], c["b"]) for c in data["changes"]]


def _layout_sha(out: Path) -> str:
    return json.loads((out / "manifest.json").read_text())["provenance"]["layout"]["sha256"]


def test_a_build_equals_itself_and_its_copy(base: Path, tmp_path: Path) -> None:
    assert _changes(base, base / "manifest.json") == []
    copy = tmp_path / "copy"
    shutil.copytree(base, copy, symlinks=False)
    done = compose("diff", str(base), str(copy))
    assert done.returncode == 0 and done.stdout == ""


def test_a_file_mode(project: Path, base: Path) -> None:
    other = _build(project, "mode", (HOSTNAME, HOSTNAME.replace('"0644"', '"0600"')))
    assert _changes(base, other) == [
        ("inputs", "", "layout.sha256", _layout_sha(base), _layout_sha(other)),
        ("entry", "rootfs:/etc/hostname", "mode", "0644", "0600")]


def test_one_byte_of_content(project: Path, base: Path) -> None:
    other = _build(project, "content", (HOSTNAME, HOSTNAME.replace("gg-device", "gg-devicf")))
    changes = _changes(base, other)
    assert [c[:3] for c in changes] == [("inputs", "", "layout.sha256"),
                                        ("entry", "rootfs:/etc/hostname", "content")]
    size_a, sha_a = changes[1][3]
    size_b, sha_b = changes[1][4]
    assert size_a == size_b == len("gg-device\n") and sha_a != sha_b


def test_the_epoch(project: Path) -> None:
    one = _build(project, "epoch1", None, "--source-date-epoch", "1718878001")
    two = _build(project, "epoch2", None, "--source-date-epoch", "1718878002")
    # entries clamped to the first epoch and not to the second follow it: no change of their own
    assert _changes(one, two) == [("build", "", "epoch", 1718878001, 1718878002)]


def test_a_pinned_uuid(project: Path, base: Path) -> None:
    other = _build(project, "uuid", (DOCKER, DOCKER.replace("}", f", uuid: {PINNED}}}")))
    changes = _changes(base, other)
    assert changes[0][:3] == ("inputs", "", "layout.sha256")
    assert changes[1:] == [("partition", "docker", "uuid",
                            json.loads((base / "manifest.json").read_text())
                            ["partitions"]["docker"]["uuid"], PINNED)]


def test_image_bytes_that_the_entries_do_not_explain(base: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(base, other, symlinks=False)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["partitions"]["boot"]["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert [c[:3] for c in _changes(base / "manifest.json", other / "manifest.json")] == \
        [("partition", "boot", "image bytes (entries the same)")]


def test_bad_arguments_exit_2(base: Path, tmp_path: Path) -> None:
    assert compose("diff", str(base), str(tmp_path / "nowhere")).returncode == 2
    (tmp_path / "junk.json").write_text("{}")
    assert compose("diff", str(base), str(tmp_path / "junk.json")).returncode == 2
    assert compose("diff", str(base)).returncode == 2
