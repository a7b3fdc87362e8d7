"""The real judge of docker.images: a stock Docker Engine started on the composed store (a loop
mount of the built partition) lists the images, runs containers from them, shows their layers,
and `docker save` gives back each layer tar byte for byte (its diffID), which needs the
tar-split composer wrote. Root, loop devices and docker.io: CI has all three (.ci/run)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import compose
from tests.dockerkit import (
    build,
    cat,
    dockerd,
    e2fsck_clean,
    images,
    layout,
    loop_mounted,
    make_images,
    need_dockerd,
    sha256_file,
)

pytestmark = pytest.mark.root

ALL = [{"archive": "in/app.docker.tar"}, {"archive": "in/images.oci.tar"},
       {"archive": "in/other.oci", "tags": ["composer-test/other:1", "other:latest"]}]


@pytest.fixture()
def archives(tmp_path: Path) -> Path:
    return make_images(tmp_path / "in")


def _tags(daemon) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = daemon.docker("image", "ls", "--no-trunc", "--format",
                        "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    return dict(line.split() for line in out.splitlines())


def _run(daemon, image: str, *cmd: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def, type-arg]
    return daemon.docker("run", "--rm", "--network", "none", image, *cmd, check=False)


def _merged_view(daemon, image: str) -> dict[str, tarfile.TarInfo]:  # type: ignore[no-untyped-def]
    """What a container of `image` sees, from `docker export` (read by Python's tarfile)."""
    cid = daemon.docker("create", "--network", "none", image).stdout.strip()
    try:
        data = daemon.docker("export", cid, binary=True).stdout
    finally:
        daemon.docker("rm", cid)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def _saved_layers(daemon, tmp: Path, *refs: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """`docker save`: each image's layer tars, as the sha256 of their bytes (diffIDs)."""
    saved = tmp / "saved.tar"
    daemon.docker("save", "-o", str(saved), *refs)
    folder = tmp / "saved"
    folder.mkdir()
    subprocess.run(["tar", "-xf", str(saved), "-C", str(folder)], check=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    return {item["RepoTags"][0]: [sha256_file(folder / p) for p in item["Layers"]]
            for item in manifest}


def _diff_ids(image: images.Image) -> list[str]:
    return [images.sha256(t) for t in image.layers]


def test_dockerd_lists_runs_inspects_and_saves_the_preloaded_images(tmp_path: Path,
                                                                    archives: Path) -> None:
    need_dockerd()
    img = build(layout(tmp_path, ALL), tmp_path / "out")
    e2fsck_clean(img)
    app, other = images.app_image(), images.other_image()
    with loop_mounted(img) as mnt, dockerd(mnt / "docker") as daemon:
        assert _tags(daemon) == {"composer-test/app:1": app.image_id,
                                 "composer-test/other:1": other.image_id,
                                 "other:latest": other.image_id}
        ran = _run(daemon, "composer-test/app:1", "/bin/cat", "/etc/greeting",
                   "/etc/greeting.link", "/opt/cfg/c", "/app/run")
        assert (ran.returncode, ran.stdout) == (0, "hello from base\nhello from base\nc\n"
                                                   "app one\n"), ran.stderr
        for gone in ("/etc/removed", "/opt/cfg/a", "/opt/cfg/b"):  # whiteout, opaque folder
            ran = _run(daemon, "composer-test/app:1", "/bin/cat", gone)
            assert (ran.returncode, ran.stdout) == (1, ""), (gone, ran.stderr)
        ran = _run(daemon, "other:latest")  # the config's Cmd: cat /etc/greeting
        assert (ran.returncode, ran.stdout) == (0, "hello from other\n"), ran.stderr
        ran = _run(daemon, "composer-test/other:1", "/bin/cat", "/etc/removed", "/opt/cfg/a")
        assert (ran.returncode, ran.stdout) == (0, "deleted by the top layer\na\n")

        view = _merged_view(daemon, "composer-test/app:1")
        assert "etc/removed" not in view
        assert sorted(p for p in view if p.startswith("opt/cfg/")) == ["opt/cfg/c"]
        assert view["opt/cfg"].mode & 0o7777 == 0o750
        assert view["bin/ping-ish"].mode & 0o7777 == 0o4755
        assert view["bin/capped"].pax_headers.get("SCHILY.xattr.security.capability") \
            .encode("latin-1", "surrogateescape") == images.CAPABILITY
        assert view["etc/greeting.link"].islnk()
        assert (view["opt/cfg/c"].uid, view["etc/greeting"].uid) == (0, 0)

        for ref, image in (("composer-test/app:1", app), ("other:latest", other)):
            layers = json.loads(daemon.docker("inspect", "--format", "{{json .RootFS.Layers}}",
                                              ref).stdout)
            assert layers == _diff_ids(image)
        saved = _saved_layers(daemon, tmp_path, "composer-test/app:1", "composer-test/other:1")
        assert saved == {"composer-test/app:1": _diff_ids(app),
                         "composer-test/other:1": _diff_ids(other)}
    # what Docker saved, composed again, is the same store: the same image, byte for byte, as
    # the same images and names from the test's own archives
    shutil.copy(tmp_path / "saved.tar", archives / "saved.tar")
    again = build(layout(tmp_path, [{"archive": "in/saved.tar"}]), tmp_path / "again")
    same = build(layout(tmp_path, [ALL[0], {**ALL[2], "tags": ["composer-test/other:1"]}]),
                 tmp_path / "same")
    assert again.read_bytes() == same.read_bytes()


def test_dockerd_runs_a_snapshot_store_plus_preloaded_images(tmp_path: Path,
                                                             archives: Path) -> None:
    need_dockerd()
    # a golden device's /var/lib/docker as Docker itself writes it (random cache-ids and
    # links, engine-id, network state): `docker load` into an ext4 file system
    backing = tmp_path / "golden.ext4"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(backing), "64M"], check=True,
                   capture_output=True)
    app, other = images.app_image(), images.other_image()
    with loop_mounted(backing) as golden:
        with dockerd(golden / "docker") as daemon:
            daemon.docker("load", "-i", str(archives / "app.docker.tar"))
        layerdb = golden / "docker/image/overlay2/layerdb/sha256"
        base_cache = (layerdb / _diff_ids(app)[0][7:] / "cache-id").read_text()
        sources = f"sources:\n  golden: {golden}\n"
        extra = "  from: golden:/docker\n"
        conflict = [{"archive": "in/other.oci", "tags": ["composer-test/app:1"]}]
        proc = compose("build", str(layout(tmp_path, conflict, extra, sources)), "-o",
                       str(tmp_path / "bad"))
        assert proc.returncode == 1
        assert "composer-test/app:1 is image" in proc.stderr and "docker.from's store" \
            in proc.stderr, proc.stderr
        img = build(layout(tmp_path, [ALL[2]], extra, sources), tmp_path / "out")
    e2fsck_clean(img)
    # the shared base layer is the snapshot's: its cache-id, not a second copy
    assert cat(img, f"/docker/image/overlay2/layerdb/sha256/{_diff_ids(app)[0][7:]}/cache-id") \
        .decode() == base_cache
    report = (tmp_path / "out" / "report.txt").read_text()
    assert "dropped: /data/docker/containers (state of one running daemon)" in report
    with loop_mounted(img) as mnt:
        assert len([p for p in (mnt / "docker/overlay2").iterdir() if p.name != "l"]) == 3
        assert not (mnt / "docker/containers").exists()
        with dockerd(mnt / "docker") as daemon:
            assert _tags(daemon) == {"composer-test/app:1": app.image_id,
                                     "composer-test/other:1": other.image_id,
                                     "other:latest": other.image_id}
            ran = _run(daemon, "composer-test/app:1", "/bin/cat", "/app/run")
            assert (ran.returncode, ran.stdout) == (0, "app one\n"), ran.stderr
            ran = _run(daemon, "other:latest")
            assert (ran.returncode, ran.stdout) == (0, "hello from other\n"), ran.stderr
            saved = _saved_layers(daemon, tmp_path, "composer-test/other:1")
            assert saved == {"composer-test/other:1": _diff_ids(other)}
    shutil.rmtree(tmp_path / "out")
