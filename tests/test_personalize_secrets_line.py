"""`compose personalize --secrets`: each device's images carry SecretManager's store made for
its certificate. Judged by debugfs (the files in the device's rootfs.img), the nucleus-rule tlog
replayer (tests/tlogjudge.py), PyYAML, and the AWS Encryption SDK decrypting with the device's
own private key; the plaintext is searched for in every byte composer wrote."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aws_encryption_sdk
import pytest
import yaml
from aws_encryption_sdk.exceptions import DecryptKeyError
from aws_encryption_sdk.identifiers import CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey

from tests import tlogjudge
from tests.conftest import compose, copy_layouts, make_golden, need
from tests.flashkit import debugfs_dump, e2fsck_clean
from tests.test_personalize import pem_pair

GG = "/greengrass/v2"
TLOGS = ("config.tlog", "config.tlog~", "bootstrap.tlog", "bootstrap.tlog~")
STORE = ("services", "aws.greengrass.SecretManager", "runtime", "secretResponse")
# the ARN the golden device's SecretManager configuration lists (make_golden --variant
# cloud-secrets)
ARN = "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf"
PLAINTEXT = "line-secret-Zq8#PLAIN"
SECRETS = [{"ARN": ARN, "Name": "db", "VersionId": "0f6b7c1e-line-v2", "SecretString": PLAINTEXT,
            "VersionStages": ["AWSCURRENT"], "CreatedDate": "2026-01-02T03:04:05.678Z"}]
DEVICES = [
    {"id": "dev-a", "thing_name": "Line2-A", "certificate": "a.crt", "private_key": "a.key"},
    {"id": "dev-b", "thing_name": "Line2-B", "certificate": "b.crt",
     "private_key": "pkcs11:token=gg;object=devkey;type=private"},
]


def _key_id(cert: Path) -> str:
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(cert)],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    return subprocess.run(["sha1sum"], input=der, check=True,
                          capture_output=True).stdout.split()[0].decode()


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("openssl", "sha1sum", "debugfs")
    base = tmp_path_factory.mktemp("secrets-line")
    golden_tar = make_golden(base / "golden-device.tar.gz", "--variant", "cloud-secrets")
    layouts = copy_layouts(base / "in", golden_tar)
    text = (layouts / "demo.yaml").read_text()
    layout = layouts / "line.yaml"
    layout.write_text(text.replace("\ndisk:", "\npersonalize:\n  uuids: [rootfs]\ndisk:", 1))
    done = compose("-q", "build", str(layout), "-o", str(base / "golden"))
    assert done.returncode == 0, done.stderr
    for name in ("a", "b", "other"):
        pem_pair(layouts, name)
    pem_pair(layouts, "ec", ("ec", "-pkeyopt", "ec_paramgen_curve:P-256"))
    (layouts / "devices.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DEVICES))
    done = compose("personalize", str(base / "golden"), "--devices", "devices.jsonl", "-o",
                   str(base / "out"), "--full", "--secrets", "-", cwd=layouts,
                   stdin=json.dumps(SECRETS))
    assert done.returncode == 0, done.stderr
    (base / "run.log").write_text(done.stdout + done.stderr)
    return {"base": base, "in": layouts, "golden": base / "golden", "out": base / "out"}


def _decrypt(store_json: str, key: Path, cert: Path) -> tuple[bytes, dict[str, str]]:
    """SecretManager's LocalStoreMap.decrypt: the device's private key under gg:secrets."""
    (entry,) = json.loads(store_json)["secrets"]
    master_key = RawMasterKey(
        provider_id="gg:secrets", key_id=_key_id(cert).encode(),
        wrapping_key=WrappingKey(wrapping_algorithm=WrappingAlgorithm.RSA_PKCS1,
                                 wrapping_key=key.read_bytes(),
                                 wrapping_key_type=EncryptionKeyType.PRIVATE))
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    plain, header = client.decrypt(
        source=base64.b64decode(entry["encryptedSecretString"], validate=True),
        key_provider=master_key)
    return plain, dict(header.encryption_context)


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d["id"])
def test_every_config_copy_holds_the_store_made_for_the_device(line: dict[str, Path],
                                                               tmp_path: Path,
                                                               device: dict) -> None:
    image = line["out"] / device["id"] / "full" / "rootfs.img"
    name = device["id"][-1]
    cert = line["in"] / f"{name}.crt"
    stores = []
    for file in TLOGS:  # each on its own: the nucleus falls back to it when one is damaged
        config = tlogjudge.replay(debugfs_dump(image, f"{GG}/config/{file}", tmp_path / "d"))
        stores.append(tlogjudge.get(config, *STORE))
    effective = yaml.safe_load(debugfs_dump(image, f"{GG}/config/effectiveConfig.yaml",
                                            tmp_path / "d"))
    stores.append(effective["services"]["aws.greengrass.SecretManager"]["runtime"]
                  ["secretResponse"])
    assert len(set(stores)) == 1  # one store, made once for the device, in every copy
    entry = json.loads(stores[0])["secrets"][0]
    assert {k: v for k, v in entry.items() if k != "encryptedSecretString"} == {
        "arn": ARN, "name": "db", "versionId": "0f6b7c1e-line-v2",
        "versionStages": ["AWSCURRENT"], "createdDate": 1767323045678}
    if name == "a":  # the device whose key is a file: decrypt as the device does
        plain, context = _decrypt(stores[0], line["in"] / "a.key", cert)
        assert plain.decode() == PLAINTEXT and context["Context"] == ARN
    # no other key opens it, even one claiming this device's key id
    for other in ("other", "b" if name == "a" else "a"):
        with pytest.raises(DecryptKeyError):
            _decrypt(stores[0], line["in"] / f"{other}.key", cert)


def test_the_two_devices_stores_differ(line: dict[str, Path], tmp_path: Path) -> None:
    stores = [tlogjudge.get(tlogjudge.replay(debugfs_dump(
        line["out"] / d["id"] / "full" / "rootfs.img", f"{GG}/config/config.tlog",
        tmp_path / "d")), *STORE) for d in DEVICES]
    assert stores[0] != stores[1]


def _chunks(path: Path) -> Iterator[bytes]:
    """The file's bytes, its holes skipped (the images are sparse: a hole holds only zeros)."""
    with path.open("rb") as f:
        fd, pos, tail = f.fileno(), 0, b""
        size = os.fstat(fd).st_size
        while pos < size:
            try:
                pos = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                return
            end = os.lseek(fd, pos, os.SEEK_HOLE)
            f.seek(pos)
            while pos < end:
                chunk = f.read(min(1 << 20, end - pos))
                pos += len(chunk)
                yield tail + chunk  # a match may straddle two chunks
                tail = chunk[-64:]


def test_the_plaintext_is_in_no_output(line: dict[str, Path]) -> None:
    forms = [PLAINTEXT.encode(), base64.b64encode(PLAINTEXT.encode()),
             PLAINTEXT.encode("utf-16-le"), PLAINTEXT.encode().hex().encode()]
    files = [p for p in line["base"].rglob("*") if p.is_file()]
    assert any(p.name == "disk.img.patch" for p in files)
    # the search can fail: the secrets file's own bytes are found
    probe = line["base"] / "probe.bin"
    with probe.open("wb") as f:  # after a hole, as in an image
        f.seek(3 << 20)
        f.write(json.dumps(SECRETS).encode())
    assert any(PLAINTEXT.encode() in chunk for chunk in _chunks(probe))
    probe.unlink()
    for path in files:
        for chunk in _chunks(path):
            assert not any(form in chunk for form in forms), path


def test_report_names_the_store_never_its_value(line: dict[str, Path]) -> None:
    report = (line["out"] / "dev-a" / "full" / "report.txt").read_text()
    assert "secretResponse" in report
    log = (line["base"] / "run.log").read_text()
    assert PLAINTEXT not in report and PLAINTEXT not in log


def _run(line: dict[str, Path], records: list[dict], secrets: list[dict], out: str
         ) -> subprocess.CompletedProcess[str]:
    (line["in"] / f"{out}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in records))
    return compose("personalize", str(line["golden"]), "--devices", f"{out}.jsonl", "-o",
                   str(line["base"] / out), "--secrets", "-", cwd=line["in"],
                   stdin=json.dumps(secrets))


def test_ec_device_is_refused_before_anything_is_written(line: dict[str, Path]) -> None:
    records = [DEVICES[0], {"id": "dev-ec", "thing_name": "Line2-EC", "certificate": "ec.crt",
                            "private_key": "ec.key"}]
    done = _run(line, records, SECRETS, "out-ec")
    assert done.returncode == 1
    assert "ec-out.jsonl" not in done.stderr
    assert ("out-ec.jsonl:2" in done.stderr and "device dev-ec" in done.stderr
            and "EC (secp256r1)" in done.stderr and "RSA" in done.stderr), done.stderr
    assert not (line["base"] / "out-ec").exists()


def test_secret_the_golden_does_not_configure_is_refused(line: dict[str, Path]) -> None:
    other = dict(SECRETS[0], ARN=ARN.replace("db-AbCdEf", "api-GhIjKl"), Name="api")
    done = _run(line, [DEVICES[0]], [other], "out-unconfigured")
    assert done.returncode == 1
    assert "<stdin>:1:2" in done.stderr and "api-GhIjKl" in done.stderr, done.stderr
    assert "cloudSecrets" in done.stderr and PLAINTEXT not in done.stderr
    assert not (line["base"] / "out-unconfigured").exists()


def test_bad_secrets_input_is_refused_with_nothing_written(line: dict[str, Path]) -> None:
    broken = [dict(SECRETS[0], SecretBinary="aGk=")]  # both SecretString and SecretBinary
    done = _run(line, [DEVICES[0]], broken, "out-bad")
    assert done.returncode == 1
    assert "<stdin>:1:2: [0].SecretString: give exactly one of" in done.stderr, done.stderr
    assert PLAINTEXT not in done.stderr
    assert not (line["base"] / "out-bad").exists()



def test_the_golden_plus_the_patch_holds_the_store(line: dict[str, Path], tmp_path: Path) -> None:
    """The line's usual output: patches only (no --full). golden + dev-a's patch is a clean file
    system whose every tlog copy holds a store that dev-a's key opens."""
    need("e2fsck")
    done = _run(line, [DEVICES[0]], SECRETS, "out-lean")
    assert done.returncode == 0, done.stderr
    assert not (line["base"] / "out-lean" / "dev-a" / "full").exists()
    target = tmp_path / "rootfs.img"
    subprocess.run(["cp", "--sparse=always", str(line["golden"] / "rootfs.img"), str(target)],
                   check=True)
    done = compose("-q", "personalize", "--apply",
                   str(line["base"] / "out-lean" / "dev-a" / "rootfs.img.patch"), str(target))
    assert done.returncode == 0, done.stderr
    e2fsck_clean(target)
    stores = {tlogjudge.get(tlogjudge.replay(debugfs_dump(target, f"{GG}/config/{name}",
                                                          tmp_path / "d")), *STORE)
              for name in TLOGS}
    (store,) = stores
    plain, context = _decrypt(store, line["in"] / "a.key", line["in"] / "a.crt")
    assert plain.decode() == PLAINTEXT and context["Context"] == ARN
