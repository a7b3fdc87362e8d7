"""Greengrass rules on golden devices as they are in the field (issue 7): fleet provisioning,
client device auth, nucleus updates, old SecretManager, Yocto units, Jackson-written YAML,
component users. Snapshots come from tools/make_golden.py --variant; images are read back with
debugfs and GNU tar, never with composer's own readers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from composer.rules.tlog import parse_tlog
from tests.conftest import TOOLS, compose, make_golden

GG = "/greengrass/v2"
THING = "GoldenThing-7f3a91"
ALL = ("fleet", "cda", "ota", "jackson", "users")  # each point's own variant joins in its test
needs_debugfs = pytest.mark.skipif(shutil.which("debugfs") is None, reason="needs debugfs")


def secrets_of(*variants: str) -> list[str]:
    args = [a for v in variants for a in ("--variant", v)]
    out = subprocess.run([sys.executable, str(TOOLS / "make_golden.py"), "--print-secrets",
                          *args], check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def field_golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    args = [a for v in ALL for a in ("--variant", v)]
    return make_golden(tmp_path_factory.mktemp("field") / "golden.tar.gz", *args)


def layout(folder: Path, golden: Path, greengrass: str = "",
           systemd_from: str = "golden:/etc/systemd/system",
           partitions: str = "  - {name: rootfs, fs: tar, mount: /}\n", files: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if golden.is_dir():
        source = golden
    else:
        source = folder / "golden.tar.gz"
        shutil.copy(golden, source)
    (folder / "layout.yaml").write_text(
        f"version: 1\nname: field\nepoch: 1718878001\nsources:\n  golden: {source}\n"
        f"partitions:\n{partitions}"
        f"greengrass:\n  from: golden:{GG}\n{greengrass}"
        f"systemd:\n  from: {systemd_from}\n  units: [greengrass.service]\n"
        "files:\n  - {from: \"golden:/etc/passwd\", to: /etc/passwd}\n"
        "  - {from: \"golden:/etc/group\", to: /etc/group}\n" + files)
    return folder / "layout.yaml"


def build(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return compose("build", path.name, "-o", "out", *extra, cwd=path.parent)


def extract(tar: Path, dest: Path) -> Path:
    """The tar unpacked by GNU tar."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xf", str(tar), "-C", str(dest), "--no-same-owner"], check=True,
                   capture_output=True)
    return dest


def debugfs(image: Path, command: str) -> str:
    result = subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True,
                            text=True, errors="replace")
    return result.stdout


def findings(out: Path) -> list[str]:
    return (out / "report.txt").read_text().splitlines()


# --- point 2: a fleet-provisioned golden device composes into an image that provisions -----


@needs_debugfs
def test_fleet_provisioned_device_composes_into_an_ext4_image_that_can_provision(
        tmp_path: Path, field_golden: Path) -> None:
    parts = ("  - {name: rootfs, fs: ext4, size: 48MiB, mount: /}\n"
             "  - {name: app, fs: tar, mount: /opt/app}\n")
    path = layout(tmp_path / "b", field_golden, greengrass="  keep: [alts, config, packages, "
                  "plugins, work, logs]\n", partitions=parts,
                  files="  - {from: \"golden:/opt/app\", to: /opt/app}\n")
    result = build(path)
    assert result.returncode == 0, result.stderr
    out = path.parent / "out"
    image = out / "rootfs.img"
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # the root CA and the claim files at the paths the configuration names, byte for byte
    with tarfile.open(field_golden) as snap:
        for rel in ("AmazonRootCA1.pem", "claim-certs/claim.pem.crt",
                    "claim-certs/claim.private.pem.key",
                    "plugins/trusted/aws.greengrass.FleetProvisioningByClaim.jar"):
            member = snap.extractfile(f".{GG}/{rel}")
            assert member is not None
            want = member.read()
            dumped = tmp_path / "dump"
            subprocess.run(["debugfs", "-R", f"dump {GG}/{rel} {dumped}", str(image)],
                           check=True, capture_output=True)
            assert dumped.read_bytes() == want, rel
    listing = debugfs(image, f"ls -l {GG}")
    for gone in ("thingCert.crt", "privKey.key", "rootCA.pem"):
        assert gone not in listing
    assert "ca.jks" not in debugfs(image, f"ls -l {GG}/work/aws.greengrass.clientdevices.Auth")
    # the device will run the plugin: no thing name left in the configuration the nucleus reads
    tlog = debugfs(image, f"cat {GG}/config/config.tlog").encode()
    lines, problems = parse_tlog(tlog)
    assert lines and not problems
    assert not [ln for ln in lines if ln.key in (("system", "thingname"),)]
    report = findings(out)
    assert ("note: device will provision with claim certificate "
            f"{GG}/claim-certs/claim.pem.crt (template GreengrassFleetTemplate)") in report
    assert any("templateParameters.ThingName holds the golden device's thing name" in line
               for line in report)
    assert any(line.startswith(f"kept: {GG}/claim-certs/claim.private.pem.key (file, named by "
                               "services.aws.greengrass.FleetProvisioningByClaim.configuration."
                               "claimCertificatePrivateKeyPath") for line in report)
    # no device key, certificate, secret, CA passphrase or local CA in any output byte
    secrets = secrets_of(*ALL)
    assert "GOLDENCAPASSPHRASE-4f1c2e" in secrets
    outputs = [p for p in out.iterdir() if p.is_file()]
    assert {p.name for p in outputs} >= {"rootfs.img", "app.tar", "manifest.json", "report.txt"}
    for output in outputs:
        data = output.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret} in {output.name}"
    extracted = extract(out / "app.tar", tmp_path / "app")
    for file in extracted.rglob("*"):
        if file.is_file():
            for secret in secrets:
                assert secret.encode() not in file.read_bytes()


def snapshot_folder(tmp_path: Path, golden: Path) -> Path:
    folder = tmp_path / "snap"
    with tarfile.open(golden) as tar:
        tar.extractall(folder, filter="tar")
    return folder


def test_validate_fails_when_a_file_the_plugin_needs_is_missing(tmp_path: Path,
                                                               field_golden: Path) -> None:
    snap = snapshot_folder(tmp_path, field_golden)
    (snap / "greengrass/v2/claim-certs/claim.private.pem.key").unlink()
    path = layout(tmp_path / "b", snap)
    result = compose("validate", "layout.yaml", cwd=path.parent)
    assert result.returncode == 1
    assert (f"{GG}/claim-certs/claim.private.pem.key, named by services.aws.greengrass."
            "FleetProvisioningByClaim.configuration.claimCertificatePrivateKeyPath, is not in "
            "the image: the device cannot provision") in result.stderr
    assert "layout.yaml:" in result.stderr and "hint:" in result.stderr
    assert not (path.parent / "out").exists()


def test_fleet_config_without_the_plugin_jar_fails(tmp_path: Path, field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden, greengrass="  keep: [alts, config, packages]\n")
    result = build(path)
    assert result.returncode == 1
    assert "holds no FleetProvisioningByClaim jar, so the device cannot provision" in \
        result.stderr


# --- point 3: identity: keep keeps the identity ------------------------------------------


def test_identity_keep_keeps_the_device_key_and_certificate(tmp_path: Path,
                                                            field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden, greengrass="  identity: keep\n")
    result = build(path)
    assert result.returncode == 0, result.stderr
    root = extract(path.parent / "out" / "rootfs.tar", tmp_path / "x")
    assert (root / "greengrass/v2/privKey.key").read_text().startswith("-----BEGIN RSA")
    assert (root / "greengrass/v2/thingCert.crt").exists()
    assert THING in (root / "greengrass/v2/config/config.tlog").read_text()
    # with the identity kept the plugin never runs: no provisioning note
    assert not [line for line in findings(path.parent / "out") if line.startswith("note:")]


def test_identity_fail_lists_every_trace(tmp_path: Path, field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden,
                  greengrass="  identity: fail\n  keep: [alts, config, packages, plugins, logs]\n")
    result = build(path)
    assert result.returncode == 1
    err = result.stderr
    assert "the snapshot holds the golden device's identity" in err
    for trace in (f"{GG}/privKey.key", f"{GG}/thingCert.crt",
                  f"{GG}/config/config.tlog: system.thingName",
                  f"{GG}/config/effectiveConfig.yaml: system.thingName",
                  f"{GG}/logs/greengrass.log"):
        assert trace in err, trace
    assert THING not in err
    assert not (path.parent / "out").exists()


# --- point 4: tlog lines the nucleus accepts -----------------------------------------------


def test_tlog_read_as_the_nucleus_reads_it() -> None:
    ok = (b'{"TS":5,"TP":["first","second","to-be-removed-1"],"W":"removed"}\n'  # no V
          b'{"W":"changed","V":1,"TP":["a"],"TS":2}\n'  # any key order
          b'{"TS":1,"TP":["x"],"W":"childChanged","V":null}\n')
    lines, problems = parse_tlog(ok)
    assert problems == []
    assert [ln.action for ln in lines] == ["removed", "changed", "childChanged"]
    bad = (b'{"TS":1,"TP":["a"],"W":"changed","V":1,"X":2}\n'
           b'{"TS":1,"TP":["a"],"W":"updated","V":1}\n'
           b'\n'
           b'{"TS":"1","TP":["a"],"W":"changed","V":1}\n')
    problems = parse_tlog(bad)[1]
    assert [n for n, _ in problems] == [1, 2, 3, 4]
    assert "unknown key 'X'" in problems[0][1]
    assert "'updated' is not one of changed, initialized" in problems[1][1]


def test_snapshot_with_a_removed_line_without_v_builds(tmp_path: Path) -> None:
    # the tlog ends with {"W":"removed","TP":[...],"TS":...}: no V, keys reordered
    golden = make_golden(tmp_path / "g.tar.gz", *[a for v in ALL for a in ("--variant", v)],
                         "--variant", "nucleus-tlog")
    with tarfile.open(golden) as tar:
        member = tar.extractfile(f".{GG}/config/config.tlog")
        assert member is not None
        assert b'{"W":"removed","TP":' in member.read()
    result = build(layout(tmp_path / "b", golden))
    assert result.returncode == 0, result.stderr


# --- point 5: system.rootpath is a path ----------------------------------------------------


@pytest.mark.parametrize(("rootpath", "ok"), [("/greengrass/v2/", True),
                                               ("//greengrass//v2", True),
                                               ("/greengrass/v3", False)])
def test_rootpath_compared_as_a_path(tmp_path: Path, field_golden: Path, rootpath: str,
                                     ok: bool) -> None:
    snap = snapshot_folder(tmp_path, field_golden)
    tlog = snap / "greengrass/v2/config/config.tlog"
    line = json.dumps({"TS": 2, "TP": ["system", "rootpath"], "W": "changed", "V": rootpath},
                      separators=(",", ":"))
    tlog.write_text(tlog.read_text() + line + "\n")
    result = build(layout(tmp_path / "b", snap, greengrass="  identity: keep\n"))
    assert (result.returncode == 0) is ok, result.stderr
    if not ok:
        assert "system.rootpath in config.tlog is '/greengrass/v3'" in result.stderr


# --- point 6: every secret --------------------------------------------------------------


def test_client_device_auth_secrets_stripped_and_keystore_dropped(tmp_path: Path,
                                                                  field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden,
                  greengrass="  keep: [alts, config, packages, plugins, work]\n")
    result = build(path)
    assert result.returncode == 0, result.stderr
    root = extract(path.parent / "out" / "rootfs.tar", tmp_path / "x")
    gg = root / "greengrass/v2"
    assert (gg / "work").is_dir()
    assert not (gg / "work/aws.greengrass.clientdevices.Auth/ca.jks").exists()
    for name in ("config.tlog", "config.tlog~", "bootstrap.tlog", "bootstrap.tlog~",
                 "effectiveConfig.yaml", "effectiveConfig.yaml~"):
        data = (gg / "config" / name).read_text()
        assert "GOLDENCAPASSPHRASE" not in data and "MIIGOLDENLOCALCA" not in data, name
    report = findings(path.parent / "out")
    assert (f"dropped: {GG}/work/aws.greengrass.clientdevices.Auth/ca.jks (client device "
            "auth's CA keystore (ca.jks) of the golden device)") in report
    assert (f"changed: {GG}/config/config.tlog: removed services.aws.greengrass.clientdevices."
            "Auth.runtime.ca_passphrase") in report


def test_secrets_fail_lists_ca_passphrase_and_keystore(tmp_path: Path,
                                                       field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden, greengrass="  secrets: fail\n  keep: [alts, "
                  "config, packages, plugins, work]\n")
    result = build(path)
    assert result.returncode == 1
    for trace in (f"{GG}/config/config.tlog: services.aws.greengrass.clientdevices.Auth.runtime"
                  ".ca_passphrase",
                  f"{GG}/config/effectiveConfig.yaml: services.aws.greengrass.SecretManager."
                  "runtime.secretResponse",
                  f"{GG}/work/aws.greengrass.clientdevices.Auth/ca.jks"):
        assert trace in result.stderr, trace
    assert "GOLDENCAPASSPHRASE" not in result.stderr


def test_old_secret_manager_path_stripped(tmp_path: Path) -> None:
    golden = make_golden(tmp_path / "g.tar.gz", "--variant", "old-secrets", "--variant",
                         "jackson")
    path = layout(tmp_path / "b", golden, files="")
    path.write_text(path.read_text().split("files:")[0])
    result = build(path)
    assert result.returncode == 0, result.stderr
    root = extract(path.parent / "out" / "rootfs.tar", tmp_path / "x")
    for name in ("config.tlog", "effectiveConfig.yaml"):
        assert "AgV4GOLDENSECRET" not in (root / "greengrass/v2/config" / name).read_text()
    assert (f"changed: {GG}/config/effectiveConfig.yaml: removed services.aws.greengrass."
            "SecretManager.secretResponse") in findings(path.parent / "out")


def test_thing_name_in_kept_logs_is_reported(tmp_path: Path, field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden,
                  greengrass="  keep: [alts, config, packages, plugins, logs]\n")
    result = build(path)
    assert result.returncode == 0, result.stderr
    assert (f"warning: {GG}/logs/greengrass.log contains the golden device's thing name"
            in findings(path.parent / "out"))


# --- point 1, end to end: effectiveConfig.yaml minus exactly the reported keys ------------


def test_effective_config_equals_original_minus_reported_keys(tmp_path: Path,
                                                              field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden)
    result = build(path)
    assert result.returncode == 0, result.stderr
    root = extract(path.parent / "out" / "rootfs.tar", tmp_path / "x")
    with tarfile.open(field_golden) as tar:
        member = tar.extractfile(f".{GG}/config/effectiveConfig.yaml")
        assert member is not None
        before = yaml.safe_load(member.read())
    after = yaml.safe_load((root / "greengrass/v2/config/effectiveConfig.yaml").read_text())
    prefix = f"changed: {GG}/config/effectiveConfig.yaml: removed "
    reported = {line[len(prefix):].replace("<thingName>", THING)
                for line in findings(path.parent / "out") if line.startswith(prefix)}
    assert "services.DeploymentService.GroupToLastDeployment.thing/" + THING in reported

    def minus(tree: object, dotted: str = "") -> object:
        if not isinstance(tree, dict):
            return tree
        return {k: minus(v, f"{dotted}.{k}" if dotted else str(k)) for k, v in tree.items()
                if (f"{dotted}.{k}" if dotted else str(k)) not in reported}

    assert after == minus(before)
    group = after["services"]["DeploymentService"]["GroupToLastDeployment"]
    assert list(group) == ["thinggroup/Fleet"]
    assert after["services"]["FleetStatusService"] == {"sequenceNumber": 4}


# --- point 7: units where Yocto puts them ---------------------------------------------------


@pytest.fixture(scope="module")
def yocto_golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_golden(tmp_path_factory.mktemp("yocto") / "golden.tar.gz", "--variant", "yocto",
                       "--variant", "ota", "--variant", "users")


@pytest.mark.parametrize("systemd_from", ["golden:/", "golden:/etc/systemd/system",
                                          "golden:/lib/systemd/system"])
def test_yocto_unit_installed_where_it_was_and_enabled(tmp_path: Path, yocto_golden: Path,
                                                       systemd_from: str) -> None:
    path = layout(tmp_path / "b", yocto_golden, systemd_from=systemd_from)
    result = build(path)
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["tar", "-tvf", str(path.parent / "out" / "rootfs.tar")],
                             check=True, capture_output=True, text=True).stdout
    assert "./lib/systemd/system/greengrass.service\n" in listing
    assert ("./etc/systemd/system/multi-user.target.wants/greengrass.service -> "
            "/lib/systemd/system/greengrass.service") in listing
    assert "./etc/systemd/system/greengrass.service\n" not in listing


def test_unit_found_nowhere_names_where_it_looked(tmp_path: Path, field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden, systemd_from="golden:/opt")
    (path.parent / "golden.tar.gz").unlink()
    shutil.copy(make_golden(tmp_path / "y.tar.gz", "--variant", "yocto", "--variant", "users"),
                path.parent / "golden.tar.gz")
    result = compose("validate", "layout.yaml", cwd=path.parent)
    assert result.returncode == 1
    assert "greengrass.service is not in source 'golden' (looked in /opt/etc/systemd/system/" \
        "greengrass.service, /opt/lib/systemd/system/greengrass.service" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="capture-golden.sh refuses to run as non-root")
def test_capture_script_archives_the_unit_systemd_loads(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "tar-args"
    unit = tmp_path / "lib/systemd/system/greengrass.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\n")
    dropin = tmp_path / "run/greengrass.service.d/override.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\n")
    # stand-ins for systemctl (answers `show` as systemd does) and tar (records its arguments)
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\ncase \"$*\" in *show*) printf '%s\\n%s\\n' "
        f"'{unit}' '{dropin}';; esac\nexit 0\n")
    (bin_dir / "tar").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {log}\n")
    for tool in ("systemctl", "tar"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "GG_ROOT": str(tmp_path / "gg")}
    subprocess.run(["sh", str(TOOLS / "capture-golden.sh"), str(tmp_path / "o.tar.gz")],
                   check=True, env=env, capture_output=True)
    args = log.read_text().splitlines()
    assert str(unit) in args and str(dropin) in args
    assert "/etc/systemd/system" in args and str(tmp_path / "gg") in args


# --- point 8: the component user exists ----------------------------------------------------


def test_missing_component_user_fails(tmp_path: Path, field_golden: Path) -> None:
    path = layout(tmp_path / "b", field_golden)
    text = path.read_text().replace(
        '  - {from: "golden:/etc/passwd", to: /etc/passwd}\n',
        '  - {to: /etc/passwd, content: "root:x:0:0:root:/root:/bin/sh\\n"}\n')
    path.write_text(text)
    result = compose("validate", "layout.yaml", cwd=path.parent)
    assert result.returncode == 1
    assert ("services.aws.greengrass.Nucleus.configuration.runWithDefault.posixUser is "
            "'ggc_user:ggc_group' but /etc/passwd of the image has no user 'ggc_user'"
            in result.stderr)
    assert "group 'ggc_group'" not in result.stderr  # /etc/group has it


def test_component_user_present_passes(tmp_path: Path, field_golden: Path) -> None:
    result = compose("validate", "layout.yaml", cwd=layout(tmp_path / "b", field_golden).parent)
    assert result.returncode == 0, result.stderr


# --- the root-file policy on a device that keeps its certificates in certs/ ---------------


def test_certs_subfolder_root_ca_kept_identity_dropped_others_reported(
        tmp_path: Path, field_golden: Path) -> None:
    snap = snapshot_folder(tmp_path, field_golden)
    gg = snap / "greengrass/v2"
    (gg / "certs").mkdir()
    for name in ("rootCA.pem", "thingCert.crt", "privKey.key"):
        (gg / name).rename(gg / "certs" / name)
    (gg / "notes.txt").write_text("golden device notes\n")
    tlog = gg / "config/config.tlog"
    lines = [json.dumps({"TS": 2 * 10**12, "TP": ["system", key], "W": "changed",
                         "V": f"{GG}/certs/{name}"}, separators=(",", ":"))
             for key, name in (("rootCaPath", "rootCA.pem"), ("certificateFilePath",
                                                               "thingCert.crt"),
                               ("privateKeyPath", "privKey.key"))]
    tlog.write_text(tlog.read_text() + "\n".join(lines) + "\n")
    path = layout(tmp_path / "b", snap, greengrass="  keep: [alts, config, packages, plugins]\n")
    result = build(path)
    assert result.returncode == 0, result.stderr
    root = extract(path.parent / "out" / "rootfs.tar", tmp_path / "x")
    certs = root / "greengrass/v2/certs"
    assert sorted(p.name for p in certs.iterdir()) == ["rootCA.pem"]
    assert not (root / "greengrass/v2/notes.txt").exists()
    report = findings(path.parent / "out")
    assert f"kept: {GG}/certs/rootCA.pem (file, named by system.rootCaPath in the " \
        "configuration)" in report
    assert f"dropped: {GG}/certs/privKey.key (the golden device's private key " \
        "(system.privateKeyPath))" in report
    assert f"dropped: {GG}/notes.txt (file, not a Greengrass folder and not named by the " \
        "configuration; a files: entry can add it)" in report


def test_component_run_with_user_checked_too(tmp_path: Path, field_golden: Path) -> None:
    snap = snapshot_folder(tmp_path, field_golden)
    tlog = snap / "greengrass/v2/config/config.tlog"
    line = json.dumps({"TS": 2 * 10**12, "TP": ["services", "aws.greengrass.labs.HomeAssistant",
                                                 "runWith", "posixUser"],
                       "W": "changed", "V": "hass:ggc_group"}, separators=(",", ":"))
    tlog.write_text(tlog.read_text() + line + "\n")
    result = compose("validate", "layout.yaml", cwd=layout(tmp_path / "b", snap).parent)
    assert result.returncode == 1
    assert ("services.aws.greengrass.labs.HomeAssistant.runWith.posixUser is "
            "'hass:ggc_group' but /etc/passwd of the image has no user 'hass'") in result.stderr


def test_alias_and_required_by_links_made_as_systemctl_enable_would(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    units = snap / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "gg.service").write_text("[Service]\nExecStart=/bin/true\n[Install]\n"
                                      "WantedBy=multi-user.target\nRequiredBy=network.target\n"
                                      "Alias=greengrass-core.service\n")
    (tmp_path / "layout.yaml").write_text(
        "version: 1\nname: units\nepoch: 1718878001\nsources:\n  snap: snap\n"
        "partitions:\n  - {name: root, fs: tar, mount: /}\n"
        "systemd:\n  from: snap:/\n  units: [gg.service]\n")
    result = compose("build", "layout.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "out/root.tar")], check=True,
                             capture_output=True, text=True).stdout
    target = "/usr/lib/systemd/system/gg.service"
    for link in ("multi-user.target.wants/gg.service", "network.target.requires/gg.service",
                 "greengrass-core.service"):
        assert f"./etc/systemd/system/{link} -> {target}" in listing, link
    assert f".{target}\n" in listing
