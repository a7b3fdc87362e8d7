"""The Greengrass secret and identity rules end to end, each key pinned by its own assertion, the
output judged by GNU tar (extraction) and PyYAML / json (parsing), not by composer's readers.

Each test here was seen failing against a mutant of composer/rules/greengrass.py: the pre-2.1.4
SecretManager key dropped from SECRET_TABLE, ProcessedDeployments dropped from IDENTITY_KEYS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import compose, make_golden
from tests.judges import gnu_extract

GG = "/greengrass/v2"
THING = "GoldenThing-7f3a91"
SECRET = "AgV4GOLDENSECRET"  # the start of make_golden.SECRET
DEPLOYMENT = f"{GG}/deployments/3f2c8d4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
CONFIGS = [f"{GG}/config/{n}" for n in ("config.tlog", "config.tlog~", "bootstrap.tlog",
                                        "bootstrap.tlog~", "effectiveConfig.yaml",
                                        "effectiveConfig.yaml~")]
OLD_KEY = "services.aws.greengrass.SecretManager.secretResponse"  # before SecretManager 2.1.4
PROCESSED = "services.DeploymentService.runtime.ProcessedDeployments"


@pytest.fixture(scope="module")
def old_golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SecretManager 2.1.3 (secretResponse outside runtime) and a Jackson effectiveConfig.yaml
    with processed deployments."""
    return make_golden(tmp_path_factory.mktemp("old") / "golden.tar.gz", "--variant",
                       "old-secrets", "--variant", "jackson")


def _layout(folder: Path, golden: Path, greengrass: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layout.yaml").write_text(
        f"version: 1\nname: pin\nepoch: 1718878001\nsources:\n  golden: {golden}\n"
        "partitions:\n  - {name: rootfs, fs: tar, mount: /}\n"
        f"greengrass:\n  from: golden:{GG}\n{greengrass}")
    return folder / "layout.yaml"


def _build(layout: Path) -> Path:
    result = compose("build", "layout.yaml", "-o", "out", cwd=layout.parent)
    assert result.returncode == 0, result.stderr
    return layout.parent / "out"


def _tlog_paths(data: str) -> list[str]:
    return [".".join(json.loads(line)["TP"]) for line in data.splitlines() if line.strip()]


def _yaml(path: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


def test_pre_2_1_4_secret_key_is_stripped_from_every_copy(tmp_path: Path,
                                                          old_golden: Path) -> None:
    out = _build(_layout(tmp_path / "b", old_golden,
                         "  keep: [alts, config, packages, deployments]\n"))
    root = gnu_extract(out / "rootfs.tar", tmp_path / "x")
    report = (out / "report.txt").read_text().splitlines()
    for path in [*CONFIGS, f"{DEPLOYMENT}/target_config.tlog"]:
        text = (root / path.lstrip("/")).read_text()
        assert SECRET not in text, path
        assert f"changed: {path}: removed {OLD_KEY}" in report, path
        if path.endswith((".yaml", ".yaml~")):
            manager = _yaml(root / path.lstrip("/"))["services"]["aws.greengrass.SecretManager"]
            assert manager == {"version": "2.1.3"}, path  # the key went, its sibling stayed
        else:
            assert OLD_KEY not in _tlog_paths(text), path
            # the version line of the same service stays
            assert "services.aws.greengrass.SecretManager.version" in _tlog_paths(text), path


def test_secrets_fail_lists_the_old_key_file_by_file(tmp_path: Path, old_golden: Path) -> None:
    layout = _layout(tmp_path / "b", old_golden,
                     "  keep: [alts, config, packages, deployments]\n  secrets: fail\n")
    result = compose("build", "layout.yaml", "-o", "out", cwd=layout.parent)
    assert result.returncode == 1, result.stderr
    assert not (layout.parent / "out").exists()
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "greengrass.secrets" in errors[0] or "layout.yaml:" in errors[0]
    for path in [*CONFIGS, f"{DEPLOYMENT}/target_config.tlog"]:
        assert f"{path}: {OLD_KEY}" in errors[0], path
    assert "hint: use 'secrets: strip'" in result.stderr
    assert SECRET not in result.stderr


def test_secrets_keep_keeps_each_with_a_warning(tmp_path: Path, old_golden: Path) -> None:
    out = _build(_layout(tmp_path / "b", old_golden, "  secrets: keep\n"))
    root = gnu_extract(out / "rootfs.tar", tmp_path / "x")
    report = (out / "report.txt").read_text().splitlines()
    for path in CONFIGS:
        assert SECRET in (root / path.lstrip("/")).read_text(), path
        assert f"warning: {path}: kept secret {OLD_KEY} (secrets: keep)" in report, path
        assert not [ln for ln in report if ln.startswith(f"changed: {path}: removed {OLD_KEY}")]
    # the identity is still stripped: secrets and identity are separate policies
    assert THING not in (root / "greengrass/v2/config/effectiveConfig.yaml").read_text() \
        .split("system:")[1]


def test_identity_strip_removes_processed_deployments(tmp_path: Path, old_golden: Path) -> None:
    out = _build(_layout(tmp_path / "b", old_golden, ""))
    root = gnu_extract(out / "rootfs.tar", tmp_path / "x")
    report = (out / "report.txt").read_text().splitlines()
    for path in CONFIGS[4:]:
        service = _yaml(root / path.lstrip("/"))["services"]["DeploymentService"]
        assert "ProcessedDeployments" not in service.get("runtime", {}), path
        assert f"thing/{THING}" not in service["GroupToLastDeployment"], path
        assert "thinggroup/Fleet" in service["GroupToLastDeployment"], path  # not identity
        assert f"changed: {path}: removed {PROCESSED}" in report, path
        assert "thingName" not in _yaml(root / path.lstrip("/"))["system"], path
    for path in CONFIGS[:4]:
        paths = _tlog_paths((root / path.lstrip("/")).read_text())
        assert "system.thingName" not in paths and "setenv.AWS_IOT_THING_NAME" not in paths
    # the thing name never appears in the report, only <thingName>
    assert THING not in (out / "report.txt").read_text()
    assert not (root / "greengrass/v2/privKey.key").exists()
    assert not (root / "greengrass/v2/thingCert.crt").exists()


def test_identity_keep_keeps_processed_deployments_and_the_thing(tmp_path: Path,
                                                                 old_golden: Path) -> None:
    out = _build(_layout(tmp_path / "b", old_golden, "  identity: keep\n"))
    root = gnu_extract(out / "rootfs.tar", tmp_path / "x")
    config = _yaml(root / "greengrass/v2/config/effectiveConfig.yaml")
    assert config["system"]["thingName"] == THING
    assert "ProcessedDeployments" in config["services"]["DeploymentService"]["runtime"]
    assert "system.thingName" in _tlog_paths((root / "greengrass/v2/config/config.tlog")
                                             .read_text())
    assert (root / "greengrass/v2/privKey.key").read_text().startswith("-----BEGIN RSA")
    assert (root / "greengrass/v2/thingCert.crt").exists()
    report = (out / "report.txt").read_text()
    assert PROCESSED not in report and "removed system.thingName" not in report
    assert SECRET not in (root / "greengrass/v2/config/config.tlog").read_text()  # still strip


def test_custom_keep_keeps_exactly_the_listed_folders(tmp_path: Path, old_golden: Path) -> None:
    out = _build(_layout(tmp_path / "b", old_golden,
                         "  keep: [alts, config, packages, logs, telemetry]\n"))
    root = gnu_extract(out / "rootfs.tar", tmp_path / "x")
    gg = root / "greengrass/v2"
    assert sorted(p.name for p in gg.iterdir()) == ["alts", "config", "logs", "packages",
                                                    "rootCA.pem", "telemetry"]
    assert (gg / "logs/greengrass.log").read_text().startswith("connected as ")
    report = (out / "report.txt").read_text().splitlines()
    for folder in ("work", "deployments", "bin", "cli_ipc_info"):
        assert f"dropped: {GG}/{folder} (folder, not in greengrass.keep)" in report, folder
    assert f"dropped: {GG}/logs (folder, not in greengrass.keep)" not in report
    # a kept log that holds the thing name is reported with its file, never with the name
    assert [ln for ln in report if ln.startswith(f"warning: {GG}/logs/greengrass.log")]
    assert THING not in "\n".join(report)


# --- private material in kept work folders (README: "and, when work is kept, these files") ----

WORK_SECRETS = {  # path under the root -> why the report gives (README's list, in its words)
    "work/aws.greengrass.clientdevices.Auth/other.bin": "client device auth's CA keystore",
    "work/com.example.App/store.jks": "a Java keystore",
    "work/com.example.App/store.p12": "a PKCS#12 keystore",
    "work/com.example.App/store.pfx": "a PKCS#12 keystore",
    "work/com.example.App/device.key": "a private key",
    "work/aws.greengrass.labs.CertificateRotator/priv.key.bak": "the certificate rotator's copy",
}


@pytest.fixture()
def work_snapshot(tmp_path: Path, golden: Path) -> Path:
    """The golden snapshot as a folder (GNU tar, without the Docker store) plus private material
    in work/ and one harmless file next to it."""
    import subprocess

    from tests.conftest import need

    need("tar")
    snap = tmp_path / "snap"
    snap.mkdir()
    done = subprocess.run(["tar", "--no-same-owner", "--exclude=./var/lib/docker", "-xzf",
                           str(golden), "-C", str(snap)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    for rel in [*WORK_SECRETS, "work/com.example.App/state.db"]:
        path = snap / GG.lstrip("/") / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PRIVATE MATERIAL " + rel.encode())
    return snap


@pytest.mark.parametrize("policy", ["strip", "fail", "keep"])
def test_private_files_in_kept_work_follow_the_secrets_policy(tmp_path: Path,
                                                              work_snapshot: Path,
                                                              policy: str) -> None:
    layout = _layout(tmp_path / "b", work_snapshot,
                     f"  keep: [alts, config, packages, work]\n  secrets: {policy}\n")
    result = compose("build", "layout.yaml", "-o", "out", cwd=layout.parent)
    out = layout.parent / "out"
    if policy == "fail":
        assert result.returncode == 1, result.stderr
        assert not out.exists()
        for rel, why in WORK_SECRETS.items():
            assert f"{GG}/{rel} ({why}" in result.stderr, rel
        assert "state.db" not in result.stderr
        return
    assert result.returncode == 0, result.stderr
    root = gnu_extract(out / "rootfs.tar", tmp_path / "x")
    report = (out / "report.txt").read_text().splitlines()
    assert (root / GG.lstrip("/") / "work/com.example.App/state.db").exists()
    for rel, why in WORK_SECRETS.items():
        there = (root / GG.lstrip("/") / rel).exists()
        if policy == "strip":
            assert not there, rel
            assert [ln for ln in report if ln.startswith(f"dropped: {GG}/{rel} ({why}")], rel
        else:
            assert there, rel
            assert [ln for ln in report if ln.startswith(f"warning: {GG}/{rel}: kept {why}")
                    and ln.endswith("(secrets: keep)")], rel
