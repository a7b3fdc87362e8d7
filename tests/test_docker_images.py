"""docker.images: image archives preloaded into an overlay2 store without a daemon.

Judged by e2fsprogs (e2fsck, debugfs) on the image, by GNU tar on tar-split, and by a real
Docker Engine (test_dockerd_*): it lists, runs, inspects and `docker save`s the images."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from composer.docker.tarsplit import crc64_iso, tar_split
from tests.conftest import REPO, compose, need
from tests.dockerkit import (
    build,
    cat,
    debugfs,
    e2fsck_clean,
    images,
    layout,
    make_images,
)

STORE = "/docker"  # the store's path inside the data partition (mounted at /data)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("zstd")
    return make_images(tmp_path_factory.mktemp("images"))


@pytest.fixture()
def archives(tmp_path: Path, made: Path) -> Path:
    folder = tmp_path / "in"
    shutil.copytree(made, folder)
    return folder


ALL = [{"archive": "in/app.docker.tar"}, {"archive": "in/images.oci.tar"},
       {"archive": "in/other.oci", "tags": ["composer-test/other:1", "other:latest"]}]


# --- tar-split ---------------------------------------------------------------------------


def test_crc64_is_go_iso() -> None:
    # the check value of CRC-64/GO-ISO (Go's crc64.ISO table, as tar-split uses it)
    assert crc64_iso(iter([b"123456789"])).hex() == "b90956c775a41001"
    assert crc64_iso(iter([b"1234", b"56789"])).hex() == "b90956c775a41001"


def _reassemble(split: bytes, files: Path) -> bytes:
    """tar-split's asm.NewOutputTarStream, written from its documented format: segments as
    stored, each file's bytes read from `files` by name and checked against its CRC."""
    out = io.BytesIO()
    positions = []
    for line in gzip.decompress(split).splitlines():
        entry = json.loads(line)
        positions.append(entry["position"])
        if entry["type"] == 2:
            out.write(base64.b64decode(entry["payload"]))
        elif entry["type"] == 1 and entry.get("size"):
            data = (files / entry["name"]).read_bytes()
            assert crc64_iso(iter([data])) == base64.b64decode(entry["payload"]), entry["name"]
            out.write(data)
    assert positions == list(range(len(positions)))
    return out.getvalue()


def _long_names_tar() -> bytes:
    """GNU long names, pax paths and sizes, an empty file, and bytes after the end blocks."""
    out = io.BytesIO()
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
            for name, data in ((f"{'d' * 120}/{'f' * 110}-{fmt}", b"long\n"),
                               (f"empty-{fmt}", b""), (f"caf\u00e9-{fmt}", b"x" * 1000)):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue() + b"\0" * 1024


@pytest.mark.parametrize("which", ["base", "top-app", "top-other", "long-names"])
def test_tar_split_rebuilds_the_layer_byte_for_byte(tmp_path: Path, which: str) -> None:
    need("tar")
    tar = {"base": lambda: images.layer(images.BASE),
           "top-app": lambda: images.layer(images.TOP_APP),
           "top-other": lambda: images.layer(images.TOP_OTHER),
           "long-names": _long_names_tar}[which]()
    (tmp_path / "layer.tar").write_bytes(tar)
    files = tmp_path / "files"
    files.mkdir()
    # GNU tar, not composer, unpacks the files tar-split's getter reads
    subprocess.run(["tar", "-xf", str(tmp_path / "layer.tar"), "-C", str(files)], check=True)
    split = tar_split(io.BytesIO(tar), "test")
    assert _reassemble(split, files) == tar
    # the same layer gives the same tar-split bytes
    assert tar_split(io.BytesIO(tar), "test") == split


def test_tar_split_of_a_corrupt_header_is_an_error() -> None:
    tar = bytearray(images.layer(images.TOP_OTHER))
    tar[100] ^= 0xFF  # inside the first header's mode field: its checksum no longer holds
    with pytest.raises(Exception, match="bad checksum"):
        tar_split(io.BytesIO(bytes(tar)), "test")


# --- the store in the image --------------------------------------------------------------


@pytest.fixture()
def store_img(tmp_path: Path, archives: Path) -> Path:
    img = build(layout(tmp_path, ALL), tmp_path / "out")
    return img


def _diff_ids(image: images.Image) -> list[str]:
    return [images.sha256(t) for t in image.layers]


def _chain(diff_ids: list[str]) -> list[str]:
    chains = [diff_ids[0]]
    for d in diff_ids[1:]:
        chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {d}".encode()).hexdigest())
    return chains


def test_store_layout_as_docker_writes_it(store_img: Path) -> None:
    e2fsck_clean(store_img)
    app, other = images.app_image(), images.other_image()
    repos = json.loads(cat(store_img, f"{STORE}/image/overlay2/repositories.json"))
    assert repos == {"Repositories": {
        "composer-test/app": {"composer-test/app:1": app.image_id},
        "composer-test/other": {"composer-test/other:1": other.image_id},
        "other": {"other:latest": other.image_id}}}
    for image in (app, other):
        hexid = image.image_id.removeprefix("sha256:")
        assert cat(store_img, f"{STORE}/image/overlay2/imagedb/content/sha256/{hexid}") \
            == image.config
    app_chains = _chain(_diff_ids(app))
    other_chains = _chain(_diff_ids(other))
    assert app_chains[0] == other_chains[0]  # the shared base: one chain, stored once
    layerdb = f"{STORE}/image/overlay2/layerdb/sha256"
    listed = debugfs(store_img, f"ls {layerdb}", f"ls {STORE}/overlay2")
    chains = set(re.findall(r"[0-9a-f]{64}", listed[0]))
    assert chains == {c.removeprefix("sha256:") for c in app_chains + other_chains}
    caches = set(re.findall(r"[0-9a-f]{64}", listed[1]))
    assert len(caches) == 3
    links = {}
    for chain, diff in zip(app_chains + other_chains, _diff_ids(app) + _diff_ids(other),
                           strict=True):
        at = f"{layerdb}/{chain.removeprefix('sha256:')}"
        assert cat(store_img, f"{at}/diff") == diff.encode()
        cache_id = cat(store_img, f"{at}/cache-id").decode()
        assert cache_id in caches
        link = cat(store_img, f"{STORE}/overlay2/{cache_id}/link").decode()
        assert re.fullmatch(r"[A-Z2-7]{26}", link)
        links[chain] = (cache_id, link)
        target = debugfs(store_img, f"stat {STORE}/overlay2/l/{link}")[0]
        assert "Type: symlink" in target  # 72 bytes: kept in a block, which cat shows
        assert cat(store_img, f"{STORE}/overlay2/l/{link}") == f"../{cache_id}/diff".encode()
    base_cache, base_link = links[app_chains[0]]
    top_cache, _ = links[app_chains[1]]
    assert cat(store_img, f"{layerdb}/{app_chains[1].removeprefix('sha256:')}/parent") \
        == app_chains[0].encode()
    assert cat(store_img, f"{STORE}/overlay2/{top_cache}/lower") == f"l/{base_link}".encode()
    out = debugfs(store_img, f"ls -l {STORE}/overlay2/{base_cache}",
                  f"ls -l {STORE}/overlay2/{top_cache}")
    assert "committed" in out[0] and "lower" not in out[0] and "work" not in out[0]
    assert "lower" in out[1] and "work" in out[1] and "committed" not in out[1]


def test_layers_keep_whiteouts_owners_modes_xattrs_and_links(store_img: Path) -> None:
    app = images.app_image()
    chains = _chain(_diff_ids(app))
    layerdb = f"{STORE}/image/overlay2/layerdb/sha256"
    base = f"{STORE}/overlay2/" + cat(store_img, f"{layerdb}/{chains[0][7:]}/cache-id").decode()
    top = f"{STORE}/overlay2/" + cat(store_img, f"{layerdb}/{chains[1][7:]}/cache-id").decode()
    out = debugfs(store_img, f"stat {top}/diff/etc/removed", f"ea_list {top}/diff/opt/cfg",
                  f"ls {top}/diff/opt/cfg", f"ea_list {base}/diff/bin/capped",
                  f"stat {base}/diff/bin/ping-ish", f"stat {base}/diff/etc/greeting",
                  f"stat {base}/diff/opt/cfg/b")
    removed, opaque, listing, capped, setuid, greeting, owned = out
    assert "Type: character special" in removed and "Device major/minor number: 00:00" \
        in removed
    assert re.search(r"trusted\.overlay\.opaque.*= \"y\"", opaque), opaque
    assert ".wh." not in listing and " c " in f" {listing} "
    assert "security.capability" in capped and "01 00 00 02 00 20" in capped.replace(
        "\\", " ").lower() or "security.capability (20)" in capped, capped
    assert re.search(r"Mode:\s+04755", setuid), setuid
    assert re.search(r"Links: 2", greeting), greeting
    assert re.search(r"User:\s+1000\s+Group:\s+1000", owned), owned
    assert cat(store_img, f"{base}/diff/bin/cat") == images.cat_binary()


def test_rebuild_is_byte_identical_with_members_reordered(tmp_path: Path, archives: Path,
                                                          ) -> None:
    first = build(layout(tmp_path, ALL), tmp_path / "out1")
    shutil.rmtree(archives)
    make_images(archives, "--member-order", "reversed")
    assert (archives / "images.oci.tar").read_bytes() != b""
    second = build(layout(tmp_path, ALL), tmp_path / "out2")
    assert first.read_bytes() == second.read_bytes()


# --- bad archives and layouts ------------------------------------------------------------


def _fails(tmp_path: Path, items: list[dict[str, object]], *expected: str,
           docker_extra: str = "") -> str:
    lay = layout(tmp_path, items, docker_extra)
    out = tmp_path / "bad-out"
    proc = compose("build", str(lay), "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert not out.exists() or not any(out.iterdir())
    return proc.stderr


def test_a_layer_that_does_not_match_its_digest(tmp_path: Path, archives: Path) -> None:
    blobs = archives / "other.oci" / "blobs" / "sha256"
    layer = blobs / images.sha256(images.other_image().blobs()[1]).removeprefix("sha256:")
    data = bytearray(layer.read_bytes())
    data[-12] ^= 1
    layer.write_bytes(bytes(data))
    _fails(tmp_path, [ALL[2]], "layout.yaml:9:7:", "docker.images[0]", "other.oci",
           "does not match its digest")


def test_a_layer_that_does_not_match_the_config(tmp_path: Path, archives: Path) -> None:
    # a docker-save archive names layers by path: swap one layer's bytes for another layer's
    app = images.app_image(compress=("", ""))
    files = images.docker_save([app])
    manifest = json.loads(files["manifest.json"])
    files[manifest[0]["Layers"][1]] = images.layer(images.TOP_OTHER)
    images.write_tar(files, archives / "app.docker.tar")
    _fails(tmp_path, [ALL[0]], "docker.images[0]", "does not match the image config",
           images.sha256(images.layer(images.TOP_OTHER)))


def test_a_docker_save_layer_linked_to_an_earlier_copy(tmp_path: Path, archives: Path) -> None:
    """Docker up to 24 saves a layer that two images hold under two ids once, and the second
    `<id>/layer.tar` as a symlink to the first."""
    app, other = images.app_image(compress=("", "")), images.other_image()
    other = images.Image(other.tag, other.layers, ("", ""))
    files = images.docker_save([app, other])
    manifest = json.loads(files["manifest.json"])
    first = manifest[0]["Layers"][0]
    manifest[1]["Layers"][0] = "feedface/layer.tar"
    files["manifest.json"] = json.dumps(manifest).encode()
    out = archives / "linked.tar"
    images.write_tar(files, out)
    with tarfile.open(out, "a") as tar:
        link = tarfile.TarInfo("feedface/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, f"../{first}"
        tar.addfile(link)
    img = build(layout(tmp_path, [{"archive": "in/linked.tar"}]), tmp_path / "out")
    e2fsck_clean(img)
    repos = json.loads(cat(img, f"{STORE}/image/overlay2/repositories.json"))["Repositories"]
    assert repos["composer-test/other"] == {"composer-test/other:1": other.image_id}


def test_a_truncated_layer(tmp_path: Path, archives: Path) -> None:
    files = images.docker_save([images.app_image(compress=("", ""))])
    name = json.loads(files["manifest.json"])[0]["Layers"][0]
    files[name] = files[name][:1500]  # inside the second member's data
    images.write_tar(files, archives / "app.docker.tar")
    _fails(tmp_path, [ALL[0]], "docker.images[0]", f"layer {name}: the tar ends inside a "
           "member's data", "the layer is truncated")


def test_a_missing_layer(tmp_path: Path, archives: Path) -> None:
    files = images.docker_save([images.app_image(compress=("", ""))])
    missing = json.loads(files["manifest.json"])[0]["Layers"][0]
    del files[missing]
    images.write_tar(files, archives / "app.docker.tar")
    _fails(tmp_path, [ALL[0]], "docker.images[0]", f"{missing} is missing from the archive")


def test_an_image_for_another_platform(tmp_path: Path, archives: Path) -> None:
    _fails(tmp_path, [{**ALL[0], "platform": "linux/arm64"}], "docker.images[0]",
           "is for linux/amd64, not linux/arm64")


def test_a_multi_platform_index_needs_a_platform_and_gives_that_one(tmp_path: Path,
                                                                    archives: Path) -> None:
    amd = images.app_image()
    arm = images.Image(amd.tag, amd.layers, amd.compress,
                       {"os": "linux", "architecture": "arm64", "variant": "v8"})
    images.write_folder(images.oci_layout([amd, arm], platforms_index=True), archives / "multi")
    item = {"archive": "in/multi", "tags": ["multi:1"]}
    _fails(tmp_path, [item], "multi-platform image (linux/amd64, linux/arm64/v8)")
    _fails(tmp_path, [{**item, "platform": "linux/riscv64"}],
           "has no image for linux/riscv64: it offers linux/amd64, linux/arm64/v8")
    img = build(layout(tmp_path, [{**item, "platform": "linux/arm64"}]), tmp_path / "out")
    repos = json.loads(cat(img, f"{STORE}/image/overlay2/repositories.json"))
    assert repos["Repositories"]["multi"]["multi:1"] == arm.image_id


def test_one_name_for_two_images_is_an_error(tmp_path: Path, archives: Path) -> None:
    _fails(tmp_path, [ALL[0], {"archive": "in/other.oci", "tags": ["composer-test/app:1"]}],
           "docker.images[1]", "composer-test/app:1 is image", "but", "in docker.images[0]")


def test_bad_tags_and_missing_keys_are_located_layout_errors(tmp_path: Path,
                                                             archives: Path) -> None:
    err = _fails(tmp_path, [{"archive": "in/other.oci", "tags": ["Not A Name"]}],
                 "docker.images[0].tags[0]", "not a valid image name")
    assert re.search(r"layout\.yaml:\d+:\d+", err)
    _fails(tmp_path, [], "nothing to install", docker_extra="")


def test_an_archive_that_holds_no_image(tmp_path: Path, archives: Path) -> None:
    images.write_tar({"hello.txt": b"hi\n"}, archives / "junk.tar")
    _fails(tmp_path, [{"archive": "in/junk.tar"}], "docker.images[0]", "junk.tar",
           "neither a `docker save` archive")
    _fails(tmp_path, [{"archive": "in/nowhere.tar"}], "nowhere.tar", "no such file")


def _with_daemon_json(tmp_path: Path, text: str) -> Path:
    """The test layout plus a root partition with /etc/docker/daemon.json holding `text`."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "daemon.json").write_text(text)
    lay = layout(tmp_path, [ALL[0]])
    root = "sources: {conf: conf}\npartitions:\n  - {name: root, fs: tar, mount: /}\n"
    lay.write_text(lay.read_text().replace("partitions:\n", root)
                   + 'files:\n  - {from: "conf:/daemon.json", to: /etc/docker/daemon.json}\n')
    return lay


@pytest.mark.parametrize(("daemon_json", "problem"), [
    ('{"storage-driver": "vfs"}', '"storage-driver": "vfs"'),
    ('{"data-root": "/var/lib/docker"}', '"data-root": "/var/lib/docker"'),
    ('{"features": {"containerd-snapshotter": true}}', "containerd-snapshotter"),
    ("{not json", "is not valid JSON"),
])
def test_a_daemon_json_that_would_hide_the_store_is_an_error(tmp_path: Path, archives: Path,
                                                              daemon_json: str,
                                                              problem: str) -> None:
    lay = _with_daemon_json(tmp_path, daemon_json)
    proc = compose("build", str(lay), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert "/etc/docker/daemon.json" in proc.stderr and problem in proc.stderr, proc.stderr


def test_a_daemon_json_that_agrees_passes_and_a_moved_store_without_one_is_reported(
        tmp_path: Path, archives: Path) -> None:
    lay = _with_daemon_json(tmp_path, '{"storage-driver": "overlay2", '
                            '"data-root": "/data/docker"}')
    build(lay, tmp_path / "out1")
    assert "data-root" not in (tmp_path / "out1" / "report.txt").read_text()
    build(layout(tmp_path, [ALL[0]]), tmp_path / "out2")
    assert "no /etc/docker/daemon.json sets data-root" in \
        (tmp_path / "out2" / "report.txt").read_text()


def _docker25_files() -> dict[str, bytes]:
    """What `docker save` writes from Docker 25 on: an OCI layout (index.json naming the image
    by io.containerd.image.name, a bare tag in ref.name) plus a manifest.json into blobs/."""
    app = images.app_image(compress=("", ""))
    files = images.oci_layout([app])
    index = json.loads(files["index.json"])
    index["manifests"][0]["annotations"] = {
        "io.containerd.image.name": "docker.io/composer-test/app:1",
        "org.opencontainers.image.ref.name": "1"}
    files["index.json"] = json.dumps(index).encode()
    files["manifest.json"] = json.dumps([{
        "Config": "blobs/sha256/" + app.image_id[7:], "RepoTags": ["composer-test/app:1"],
        "Layers": ["blobs/sha256/" + images.sha256(t)[7:] for t in app.layers]}]).encode()
    return files


@pytest.mark.parametrize("reader", ["oci", "docker-save"])
def test_docker_25_save_archives_are_read_by_either_reader(tmp_path: Path, archives: Path,
                                                           reader: str) -> None:
    files = _docker25_files()
    if reader == "docker-save":
        del files["oci-layout"]  # no OCI layout marker: manifest.json is what is read
    images.write_tar(files, archives / "d25.tar")
    img = build(layout(tmp_path, [{"archive": "in/d25.tar"}]), tmp_path / "out")
    repos = json.loads(cat(img, f"{STORE}/image/overlay2/repositories.json"))
    assert repos == {"Repositories": {"composer-test/app": {
        "composer-test/app:1": images.app_image().image_id}}}


def test_names_are_recorded_as_docker_shows_them_and_a_nameless_image_needs_tags(
        tmp_path: Path, archives: Path) -> None:
    files = _docker25_files()
    index = json.loads(files["index.json"])
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "1.0"}
    files["index.json"] = json.dumps(index).encode()
    del files["manifest.json"]
    images.write_folder(files, archives / "bare")
    _fails(tmp_path, [{"archive": "in/bare"}], "docker.images[0]", "records no name",
           "give its names with `tags`")
    tags = ["docker.io/library/alpine", "index.docker.io/team/app:2", "localhost:5000/x/y:z"]
    img = build(layout(tmp_path, [{"archive": "in/bare", "tags": tags}]), tmp_path / "out")
    repos = json.loads(cat(img, f"{STORE}/image/overlay2/repositories.json"))["Repositories"]
    assert {name for repo in repos.values() for name in repo} == {
        "alpine:latest", "team/app:2", "localhost:5000/x/y:z"}


def test_the_example_layout_builds_and_verifies(tmp_path: Path, made: Path) -> None:
    shutil.copy(REPO / "layouts" / "docker-preload.yaml", tmp_path)
    shutil.copytree(made, tmp_path / "images")
    lay = tmp_path / "docker-preload.yaml"
    assert compose("validate", str(lay)).returncode == 0
    out = tmp_path / "out"
    build(lay, out)
    e2fsck_clean(out / "docker.img")
    proc = compose("verify", str(out), "--deep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    repos = json.loads(cat(out / "docker.img", "/image/overlay2/repositories.json"))
    assert sorted(repos["Repositories"]) == ["composer-test/app", "composer-test/other", "other"]


def test_a_manifest_and_config_with_different_layer_counts(tmp_path: Path,
                                                           archives: Path) -> None:
    files = images.docker_save([images.app_image(compress=("", ""))])
    manifest = json.loads(files["manifest.json"])
    manifest[0]["Layers"] = manifest[0]["Layers"][:1]
    files["manifest.json"] = json.dumps(manifest).encode()
    images.write_tar(files, archives / "app.docker.tar")
    _fails(tmp_path, [ALL[0]], "docker.images[0]", "manifest.json[0] lists 1 layers, its "
           "config", "2")
