"""Same layout and same input content give the same bytes, whatever the member order, umask,
TZ, locale, output folder or wall clock; another epoch gives other bytes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, compose, copy_layouts, env_skip, make_golden
from tests.readback import published, sha256_of


def _project(folder: Path, shuffle: int | None) -> Path:
    copy_layouts(folder)
    args = ("--shuffle", str(shuffle)) if shuffle is not None else ()
    make_golden(folder / "golden-device.tar.gz", *args)
    return folder / "demo.yaml"


def _outputs(folder: Path) -> dict[str, str]:
    """sha256 of every output (images are GiB-sized sparse files: hash, don't hold them)."""
    return {path.name: sha256_of(path) for path in published(folder)}


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    a = _project(tmp_path / "a", shuffle=None)
    b = _project(tmp_path / "elsewhere" / "b", shuffle=7)
    assert (a.parent / "golden-device.tar.gz").read_bytes() != \
        (b.parent / "golden-device.tar.gz").read_bytes()  # really another member order
    first = compose("build", str(a), "-o", str(tmp_path / "out1"),
                    env={"TZ": "UTC", "LC_ALL": "C"}, umask=0o022)
    second = compose("build", str(b), "-o", str(tmp_path / "x" / "y" / "out2"),
                     env={"TZ": "Asia/Kolkata", "LC_ALL": "C.UTF-8", "LANG": "de_DE.UTF-8"},
                     umask=0o077)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    one, two = _outputs(tmp_path / "out1"), _outputs(tmp_path / "x" / "y" / "out2")
    assert one.keys() == two.keys()
    for name in one:
        assert one[name] == two[name], f"{name} differs"
    # umask must not leak into the output files' modes either
    for p in published(tmp_path / "x" / "y" / "out2"):
        assert p.stat().st_mode & 0o777 == 0o644


def test_another_epoch_gives_other_bytes(tmp_path: Path) -> None:
    layout = _project(tmp_path / "p", shuffle=None)
    first = compose("build", str(layout), "-o", str(tmp_path / "o1"))
    second = compose("build", str(layout), "-o", str(tmp_path / "o2"),
                     "--source-date-epoch", "1600000000")
    third = compose("build", str(layout), "-o", str(tmp_path / "o3"),
                    env={"SOURCE_DATE_EPOCH": "1600000000"})
    assert first.returncode == second.returncode == third.returncode == 0
    assert _outputs(tmp_path / "o1")["rootfs.img"] != _outputs(tmp_path / "o2")["rootfs.img"]
    # the same bytes but for the manifest, which records where the epoch came from
    two, three = _outputs(tmp_path / "o2"), _outputs(tmp_path / "o3")
    for name in ("manifest.json", "SHA256SUMS"):
        assert two.pop(name) != three.pop(name)
    assert two == three
    m2 = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    m3 = json.loads((tmp_path / "o3" / "manifest.json").read_text())
    assert m2["provenance"].pop("epoch_origin") == "--source-date-epoch"
    assert m3["provenance"].pop("epoch_origin") == "SOURCE_DATE_EPOCH"
    assert m2 == m3


def test_rebuilding_into_the_same_folder_is_stable(tmp_path: Path) -> None:
    layout = _project(tmp_path / "p", shuffle=None)
    assert compose("build", str(layout), "-o", str(tmp_path / "o")).returncode == 0
    before = _outputs(tmp_path / "o")
    assert compose("build", str(layout), "-o", str(tmp_path / "o")).returncode == 0
    assert _outputs(tmp_path / "o") == before
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".compose-")]


def test_another_user_builds_the_same_bytes(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to run a build as another user) and setpriv")
    # pytest's own tmp folders are private to root: work where user 65534 can get in
    base = Path(tempfile.mkdtemp(prefix="compose-user-"))
    try:
        os.chmod(base, 0o777)
        as_nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "env",
                     f"PYTHONPATH={REPO}", f"HOME={base}", sys.executable]
        probe = subprocess.run([*as_nobody, "-c", "import composer"], capture_output=True)
        if probe.returncode != 0:
            env_skip("uid-cannot-read", "user 65534 cannot read this Python or checkout")
        layout = _project(base / "p", shuffle=None)
        for path in (base / "p", *(base / "p").rglob("*")):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        mine = compose("build", str(layout), "-o", str(tmp_path / "root-out"))
        theirs = subprocess.run([*as_nobody, "-m", "composer", "-q", "build", str(layout), "-o",
                                 str(base / "nobody-out")], capture_output=True, text=True)
        assert mine.returncode == 0 and theirs.returncode == 0, theirs.stderr
        assert _outputs(tmp_path / "root-out") == _outputs(base / "nobody-out")
    finally:
        shutil.rmtree(base, ignore_errors=True)
