"""Re-check on fresh inputs: Greengrass snapshots given as folders, made here (not by
tools/make_golden.py), with the variations real golden devices have. Secrets, keys and the thing
name must never pass silently, into an image or into the report."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from tests.conftest import compose
from tests.readback import published

ROOT = "greengrass/v2"
THING = "Golden-Thing_7f:3a"
SECRET = "ENCRYPTEDrecheckSECRET0123456789"
KEY = "-----BEGIN PRIVATE KEY-----\nRECHECKPRIVATEKEYBYTES\n-----END PRIVATE KEY-----\n"
NUCLEUS = "/greengrass/v2/packages/artifacts-unarchived/aws.greengrass.Nucleus/2.14.3/" \
    "aws.greengrass.nucleus"


def _hash(name: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()).decode().rstrip("=")


def _line(ts: int, path: list[str], value: object, action: str = "changed") -> str:
    return json.dumps({"TS": ts, "TP": path, "W": action, "V": value},
                      separators=(",", ":")) + "\n"


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def make_snapshot(folder: Path, gg: str = ROOT, key_value: str = "/greengrass/v2/config/dev.key",
                  extra_tlog: str = "") -> Path:
    """A golden device after a nucleus OTA (alts/current -> alts/<uuid>), keys inside config/."""
    g = folder / gg
    alts = g / "alts" / "5d0b7c1e-0f4a-4c1e-9d1b-2a3b4c5d6e7f"
    alts.mkdir(parents=True)
    os.symlink("/greengrass/v2/alts/5d0b7c1e-0f4a-4c1e-9d1b-2a3b4c5d6e7f", g / "alts/current")
    os.symlink(NUCLEUS, alts / "distro")
    nucleus = g / NUCLEUS[len("/greengrass/v2/"):]
    _write(nucleus / "bin/loader", "#!/bin/sh\n", 0o755)
    _write(nucleus / "lib/Greengrass.jar", b"PK\x03\x04")
    recipe = '---\nComponentName: "aws.greengrass.Nucleus"\nComponentVersion: "2.14.3"\n'
    _write(g / f"packages/recipes/{_hash('aws.greengrass.Nucleus')}@2.14.3.recipe.yaml", recipe)
    doc = json.dumps({"secrets": [{"encryptedSecretString": SECRET}]})
    tlog = "".join([
        _line(1, ["system", "rootpath"], "/greengrass/v2"),
        _line(2, ["system", "thingName"], THING),
        _line(2, ["system", "privateKeyPath"], key_value),
        _line(3, ["services", "aws.greengrass.SecretManager", "runtime", "secretResponse"], doc),
    ]) + extra_tlog
    _write(g / "config/config.tlog", tlog)
    _write(g / "config/dev.key", KEY, 0o600)
    _write(g / "config/effectiveConfig.yaml",
           f"---\nsystem:\n  rootpath: \"/greengrass/v2\"\n  thingName: \"{THING}\"\n")
    return g


def _layout(folder: Path, gg_from: str = "golden:/greengrass/v2", extra: str = "") -> None:
    (folder / "layout.yaml").write_text(
        "version: 1\nname: recheck\nepoch: 1718878001\nsources:\n  golden: snap\n"
        "partitions:\n  - {name: root, fs: tar, mount: /}\n"
        f"greengrass:\n  from: {gg_from}\n  to: /greengrass/v2\n{extra}")


def _build(folder: Path, *args: str) -> tuple[int, str, bytes]:
    result = compose(*args, "build", "layout.yaml", "-o", "out", cwd=folder)
    outputs = b"".join(p.read_bytes() for p in published(folder / "out")) \
        if (folder / "out").exists() else b""
    return result.returncode, result.stderr, outputs


def test_init_config_yaml_is_sanitized_like_effective_config(tmp_path: Path) -> None:
    g = make_snapshot(tmp_path / "snap")
    _write(g / "config/config.yaml",
           f"system:\n  thingName: \"{THING}\"\nservices:\n  aws.greengrass.SecretManager:\n"
           f"    runtime:\n      secretResponse: \"{SECRET}\"\n")
    _layout(tmp_path)
    code, err, outputs = _build(tmp_path)
    assert code == 0, err
    assert SECRET.encode() not in outputs and THING.encode() not in outputs
    assert "config/config.yaml: removed services.aws.greengrass.SecretManager.runtime." \
        "secretResponse" in err


def test_config_yaml_that_does_not_parse_is_an_error_not_a_silent_copy(tmp_path: Path) -> None:
    g = make_snapshot(tmp_path / "snap")
    _write(g / "config/effectiveConfig.yaml~",
           f"---\nservices:\n  aws.greengrass.SecretManager:\n    runtime:\n"
           f"      secretResponse: \"{SECRET}\"\n  broken: [unclosed\n")
    _layout(tmp_path)
    code, err, _ = _build(tmp_path, "-q")
    assert code == 1
    assert err.startswith("error: layout.yaml:9:3: greengrass: /greengrass/v2/config/"
                          "effectiveConfig.yaml~ is not valid YAML (")
    assert "cannot be checked for secrets and identity\n  hint: " in err
    assert len(err.splitlines()) == 2
    assert SECRET not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_private_key_is_removed_when_the_snapshot_root_differs_from_the_device_root(
        tmp_path: Path) -> None:
    make_snapshot(tmp_path / "snap", gg="captures/device-1/gg")
    _layout(tmp_path, gg_from="golden:/captures/device-1/gg")
    code, err, outputs = _build(tmp_path)
    assert code == 0, err
    assert b"RECHECKPRIVATEKEY" not in outputs
    assert ("dropped: /greengrass/v2/config/dev.key (the golden device's private key "
            "(system.privateKeyPath))") in err


def test_private_key_given_as_a_file_uri_is_removed(tmp_path: Path) -> None:
    make_snapshot(tmp_path / "snap", key_value="file:///greengrass/v2/config/dev.key")
    _layout(tmp_path)
    code, err, outputs = _build(tmp_path)
    assert code == 0, err
    assert b"RECHECKPRIVATEKEY" not in outputs


def test_thing_name_in_a_key_or_a_file_name_stays_out_of_the_report(tmp_path: Path) -> None:
    extra = _line(4, ["services", "app", "configuration", f"{THING}-topic"], f"a/{THING}/b")
    g = make_snapshot(tmp_path / "snap", extra_tlog=extra)
    _write(g / f"{THING}-certificate.pem.crt", "CERT\n")
    _layout(tmp_path)
    code, err, _ = _build(tmp_path)
    assert code == 0, err
    report = (tmp_path / "out" / "report.txt").read_text()
    assert THING not in report and THING not in err
    assert "services.app.configuration.<thingName>-topic still contains the golden device's " \
        "thing name" in report
    assert "dropped: /greengrass/v2/<thingName>-certificate.pem.crt" in report
