"""layouts/tarballs.yaml (the demo as tar partitions) built through the real CLI, and read back
with libarchive."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import compose, copy_layouts, planted_secrets
from tests.readback import published, read_tar

GG = "/greengrass/v2"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, golden: Path) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    copy_layouts(folder / "layouts", golden)
    result = compose("build", "layouts/tarballs.yaml", "-o", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "out"


def test_outputs_are_listed_and_checksums_verify(built: Path) -> None:
    names = [p.name for p in published(built)]
    assert names == ["SHA256SUMS", "app.tar", "boot.tar", "docker.tar", "manifest.json",
                     "report.txt", "rootfs.tar"]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=built, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 6


def test_no_planted_secret_in_any_output(built: Path) -> None:
    secrets = planted_secrets()
    assert len(secrets) >= 4
    for path in published(built):
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} leaked into {path.name}"
    # the tar members themselves (data is not compressed, but check the decoded view too)
    for tar in built.glob("*.tar"):
        for member in read_tar(tar).values():
            for secret in secrets:
                assert secret.encode() not in member.data, f"{secret} in {member.path}"


def test_dropped_directories_absent_and_kept_ones_complete(built: Path) -> None:
    rootfs = read_tar(built / "rootfs.tar")
    for gone in ("logs", "telemetry", "work", "deployments", "bin", "cli_ipc_info",
                 "privKey.key", "thingCert.crt", "ipc.socket", "alts/loader.pid"):
        assert f"{GG}/{gone}" not in rootfs, gone
    kept = {p for p in rootfs if p.startswith(GG + "/")}
    for folder in ("alts", "config", "packages"):
        assert f"{GG}/{folder}" in kept
    # every package file of the snapshot is there, with its bytes
    import libarchive

    from tests.conftest import REPO

    del REPO
    snapshot = {}
    golden = next(built.parent.glob("layouts/golden-device.tar.gz"))
    with libarchive.file_reader(str(golden)) as archive:
        for m in archive:
            name = "/" + m.pathname[2:].rstrip("/")
            if name.startswith(f"{GG}/packages/") and m.isfile:
                snapshot[name] = b"".join(bytes(b) for b in m.get_blocks())
    assert snapshot
    for name, data in snapshot.items():
        assert rootfs[name].data == data, name


def test_plugin_recipes_are_byte_identical_and_digests_match(built: Path) -> None:
    rootfs = read_tar(built / "rootfs.tar")
    tlog = rootfs[f"{GG}/config/config.tlog"].data.decode()
    digests = {}
    for line in tlog.splitlines():
        entry = json.loads(line)
        if entry["TP"][:4] == ["services", "main", "runtime", "service-digest"]:
            digests[entry["TP"][4]] = entry["V"]
    assert len(digests) == 3
    recipes = {p: m for p, m in rootfs.items() if p.endswith(".recipe.yaml")}
    for ident, digest in digests.items():
        name, version = ident.rsplit("-v", 1)
        prefix = base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()).decode()
        path = f"{GG}/packages/recipes/{prefix.rstrip('=')}@{version}.recipe.yaml"
        data = recipes[path].data
        assert base64.b64encode(hashlib.sha256(data).digest()).decode() == digest


def test_tlog_lines_kept_are_byte_identical(built: Path, golden: Path) -> None:
    import libarchive

    with libarchive.file_reader(str(golden)) as archive:
        original = next(b"".join(bytes(b) for b in m.get_blocks()) for m in archive
                        if m.pathname == f".{GG}/config/config.tlog")
    result = read_tar(built / "rootfs.tar")[f"{GG}/config/config.tlog"].data
    kept = result.splitlines(keepends=True)
    assert set(kept) <= set(original.splitlines(keepends=True))
    assert len(kept) == len(original.splitlines()) - 4
    assert b"secretResponse" not in result and b"thingName" not in result


def test_enable_symlink_and_alts_links(built: Path) -> None:
    rootfs = read_tar(built / "rootfs.tar")
    link = rootfs["/etc/systemd/system/multi-user.target.wants/greengrass.service"]
    assert link.type == "symlink" and link.link == "/etc/systemd/system/greengrass.service"
    assert rootfs["/etc/systemd/system/greengrass.service"].type == "file"
    assert rootfs[f"{GG}/alts/current"].link == f"{GG}/alts/init"
    distro = rootfs[f"{GG}/alts/init/distro"].link
    assert distro.startswith(f"{GG}/packages/artifacts-unarchived/aws.greengrass.Nucleus/")
    assert rootfs[distro + "/bin/loader"].mode & 0o111
    assert rootfs["/boot"].type == "dir"  # the mount point stays in the parent


def test_docker_store_keeps_whiteouts_xattrs_hardlinks_setuid(built: Path) -> None:
    docker = read_tar(built / "docker.tar")
    for gone in ("containers", "tmp", "runtimes", "swarm", "network", "buildkit", "engine-id"):
        assert f"/{gone}" not in docker, gone
    whiteouts = [m for m in docker.values() if m.type == "char"]
    assert whiteouts and all(m.rdev == (0, 0) for m in whiteouts)
    opaque = [m for m in docker.values() if m.xattrs.get("trusted.overlay.opaque") == b"y"]
    assert opaque
    caps = [m for m in docker.values() if "security.capability" in m.xattrs]
    assert caps and caps[0].xattrs["security.capability"].startswith(b"\x01\x00\x00\x02")
    links = [m for m in docker.values() if m.type == "hardlink"]
    assert links
    for link in links:
        target = docker["/" + link.link[2:]]
        assert target.type == "file" and target.mode & 0o4000
    assert any(m.uid == 100000 for m in docker.values())


def test_files_rules(built: Path) -> None:
    app = read_tar(built / "app.tar")
    assert "/app.log" not in app and "/cache" not in app
    assert app["/.env"].data == b"MODE=production\n"
    assert app["/data"].type == "dir" and (app["/data"].uid, app["/data"].mode) == (998, 0o750)
    assert app["/current"].link == "/opt/app/releases/1"
    boot = read_tar(built / "boot.tar")
    assert boot["/.bootstamp"].data == b"keep me\n"
    rootfs = read_tar(built / "rootfs.tar")
    assert rootfs["/etc/hostname"].data == b"gg-device\n"


def test_every_mtime_is_clamped_to_the_epoch(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    epoch = manifest["epoch"]
    assert epoch == 1718878001
    for tar in built.glob("*.tar"):
        for member in read_tar(tar).values():
            assert member.mtime_ns <= epoch * 10**9, member.path


def test_manifest_lists_every_entry_with_hashes(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    rootfs = manifest["partitions"]["rootfs"]
    assert rootfs["fs"] == "tar"
    members = read_tar(built / "rootfs.tar")
    paths = [e["path"] for e in rootfs["entries"]]
    assert set(paths) == set(members)
    for record in rootfs["entries"]:
        if record["kind"] == "file":
            data = members[record["path"]].data
            assert record["sha256"] == hashlib.sha256(data).hexdigest()
    image = hashlib.sha256((built / "rootfs.tar").read_bytes()).hexdigest()
    assert rootfs["sha256"] == image


def test_report_names_every_drop_and_change(built: Path) -> None:
    report = (built / "report.txt").read_text()
    assert f"dropped: {GG}/logs" in report
    assert "removed services.aws.greengrass.SecretManager.runtime.secretResponse" in report
    assert "removed system.thingName" in report
    assert "dropped: /var/lib/docker/engine-id" in report


def test_thing_name_remains_only_where_reported(built: Path) -> None:
    rootfs = read_tar(built / "rootfs.tar")
    thing = b"GoldenThing-7f3a91"
    holders = sorted(p for p, m in rootfs.items() if thing in m.data)
    assert holders == [f"{GG}/config/{n}" for n in sorted(
        ["bootstrap.tlog", "bootstrap.tlog~", "config.tlog", "config.tlog~",
         "effectiveConfig.yaml", "effectiveConfig.yaml~"])]
    for path in holders:
        for line in rootfs[path].data.splitlines():
            if thing in line:
                assert b"topic" in line  # the one interpolated value, reported below
    report = (built / "report.txt").read_text()
    assert report.count("HomeAssistant.configuration.topic still contains") == 6
    assert thing.decode() not in report
