"""SecretManager's secretResponse re-encrypted for a device: judged by the consumer's side.

The judge is the AWS Encryption SDK decrypting with the device's PRIVATE key (what the device's
SecretManager does, through the Java SDK, in crypto/Crypter.decrypt), a key id computed by
openssl from the certificate, and a parser of the message header written here from the AWS
Encryption SDK message format (version 2), independent of the SDK's own deserializer.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aws_encryption_sdk
import pytest
from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError, DecryptKeyError
from aws_encryption_sdk.identifiers import CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from composer.errors import ComposerError, Loc
from composer.personalize.secrets import (
    LineSecrets,
    PlaintextSecret,
    RsaWrapping,
    SecretKind,
    check_configured,
    device_key,
    load_secrets,
    not_configured,
    read_secrets,
    secret_response_for,
    secret_store_site,
    store_format,
)
from composer.rules.tlog import effective, parse_tlog
from tests.conftest import need

ARN_DB = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:line/db-AbCdEf"
ARN_BLOB = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:line/blob-GhIjKl"
DB_PASSWORD = "correct horse battery staple ✓"
BLOB = bytes(range(256)) * 3


@dataclass(frozen=True)
class Device:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert_pem: bytes

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _device(name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Device:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return Device(key, cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def device() -> Device:
    return _device("line-device-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def other_device() -> Device:
    return _device("line-device-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _records() -> list[dict[str, object]]:
    """What `aws secretsmanager get-secret-value --output json` prints (CLI v2 dates, CLI v1
    epoch seconds), plus boto3's ResponseMetadata."""
    return [
        {"ARN": ARN_DB, "Name": "line/db", "VersionId": "11111111-aaaa-bbbb-cccc-000000000001",
         "SecretString": DB_PASSWORD, "VersionStages": ["AWSCURRENT"],
         "CreatedDate": "2026-03-04T05:06:07.891000+00:00"},
        {"ARN": ARN_BLOB, "Name": "line/blob", "VersionId": "22222222-aaaa-bbbb-cccc-000000000002",
         "SecretBinary": base64.b64encode(BLOB).decode(), "VersionStages": ["AWSCURRENT", "NEW"],
         "CreatedDate": 1772600767.891, "ResponseMetadata": {"HTTPStatusCode": 200}},
    ]


def _secrets() -> tuple[PlaintextSecret, ...]:
    return load_secrets(json.dumps(_records(), ensure_ascii=False).encode(), "secrets.json")


def _openssl_key_id(cert_pem: bytes) -> str:
    """SHA-1 of the certificate's SubjectPublicKeyInfo DER, by openssl and hashlib-free sha1sum."""
    need("openssl", "sha1sum")
    pubkey = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=cert_pem,
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pubkey,
                         capture_output=True, check=True).stdout
    digest = subprocess.run(["sha1sum"], input=der, capture_output=True, check=True).stdout
    return digest.split()[0].decode()


def _decrypt(ciphertext_b64: str, private_key_pem: bytes, key_id: str,
             wrapping: WrappingAlgorithm = WrappingAlgorithm.RSA_PKCS1) -> tuple[bytes, object]:
    """What the device's SecretManager does: its own private key under provider gg:secrets."""
    master_key = RawMasterKey(
        provider_id="gg:secrets", key_id=key_id.encode(),
        wrapping_key=WrappingKey(wrapping_algorithm=wrapping, wrapping_key=private_key_pem,
                                 wrapping_key_type=EncryptionKeyType.PRIVATE))
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    # Java's Base64.getDecoder() is the strict standard alphabet: no newlines, no URL-safe chars
    message = base64.b64decode(ciphertext_b64, validate=True)
    return client.decrypt(source=message, key_provider=master_key)


@dataclass(frozen=True)
class Header:
    version: int
    suite_id: int
    context: dict[str, str]
    data_keys: list[tuple[str, bytes, bytes]]  # provider id, provider info, encrypted key


def _header(message: bytes) -> Header:
    """The AWS Encryption SDK message header, version 2 (message-format.md): version, suite id,
    message id (32), AAD (length, count, key/value pairs), encrypted data keys."""
    view = io.BytesIO(message)

    def u16() -> int:
        return struct.unpack(">H", view.read(2))[0]

    def field() -> bytes:
        return view.read(u16())

    version, suite_id = struct.unpack(">BH", view.read(3))
    view.read(32)  # message id
    aad = io.BytesIO(field())
    context = {}
    if aad.getbuffer().nbytes:
        pairs = struct.unpack(">H", aad.read(2))[0]
        for _ in range(pairs):
            key = aad.read(struct.unpack(">H", aad.read(2))[0]).decode()
            context[key] = aad.read(struct.unpack(">H", aad.read(2))[0]).decode()
    data_keys = [(field().decode(), field(), field()) for _ in range(u16())]
    return Header(version, suite_id, context, data_keys)


def _response(secrets: tuple[PlaintextSecret, ...], device: Device) -> dict[str, object]:
    return json.loads(secret_response_for(secrets, device.cert_pem, "line-device-1"))


def test_secrets_decrypt_with_the_device_private_key(device: Device) -> None:
    key_id = _openssl_key_id(device.cert_pem)
    store = _response(_secrets(), device)
    by_arn = {entry["arn"]: entry for entry in store["secrets"]}
    text, text_header = _decrypt(by_arn[ARN_DB]["encryptedSecretString"], device.key_pem, key_id)
    blob, blob_header = _decrypt(by_arn[ARN_BLOB]["encryptedSecretBinary"], device.key_pem, key_id)
    assert text.decode("utf-8") == DB_PASSWORD
    assert blob == BLOB
    # Crypter.decrypt compares the context's "Context" with the secret's ARN
    assert text_header.encryption_context["Context"] == ARN_DB
    assert blob_header.encryption_context["Context"] == ARN_BLOB
    assert text_header.algorithm.algorithm_id == 0x0578


def test_message_header_names_the_device_key_and_the_committing_suite(device: Device) -> None:
    key_id = _openssl_key_id(device.cert_pem)
    assert device_key(device.cert_pem, "d").key_id == key_id
    store = _response(_secrets(), device)
    for entry in store["secrets"]:
        encoded = entry.get("encryptedSecretString") or entry["encryptedSecretBinary"]
        assert base64.b64encode(base64.b64decode(encoded)) == encoded.encode()  # no newlines
        header = _header(base64.b64decode(encoded))
        assert (header.version, header.suite_id) == (2, 0x0578)
        # the signing suite adds the signature's public key; Context is the one SecretManager reads
        assert header.context["Context"] == entry["arn"]
        assert set(header.context) == {"Context", "aws-crypto-public-key"}
        assert len(header.data_keys) == 1
        provider, info, wrapped = header.data_keys[0]
        # RSA raw master key: the provider info is the key id alone (no IV, unlike AES)
        assert (provider, info.decode()) == ("gg:secrets", key_id)
        assert len(wrapped) == 256  # RSA-2048 PKCS#1 v1.5 of the data key


def test_store_document_has_secretmanager_s_shape(device: Device) -> None:
    text = secret_response_for(_secrets(), device.cert_pem, "line-device-1")
    assert " " not in text.replace(DB_PASSWORD, "")  # compact, as Jackson writes it
    store = json.loads(text)
    assert list(store) == ["secrets"]
    db, blob = store["secrets"]  # sorted by ARN: blob < db
    db, blob = (db, blob) if db["arn"] == ARN_DB else (blob, db)
    assert list(db) == ["arn", "name", "versionId", "encryptedSecretString", "versionStages",
                        "createdDate"]
    assert list(blob) == ["arn", "name", "versionId", "encryptedSecretBinary", "versionStages",
                          "createdDate"]
    assert db["name"] == "line/db" and db["versionId"].endswith("0001")
    assert blob["versionStages"] == ["AWSCURRENT", "NEW"]
    # epoch milliseconds, an integer (AWSSecretResponse.createdDate is a Java long)
    expected = int(datetime.datetime(2026, 3, 4, 5, 6, 7, 891000, datetime.UTC).timestamp()) * 1000
    assert db["createdDate"] == expected + 891
    assert blob["createdDate"] == 1772600767891
    assert DB_PASSWORD not in text and base64.b64encode(BLOB).decode() not in text


def test_store_document_does_not_depend_on_input_order(device: Device) -> None:
    forward = _secrets()
    backward = load_secrets(json.dumps(_records()[::-1]).encode(), "secrets.json")
    arns = [[e["arn"] for e in _response(s, device)["secrets"]] for s in (forward, backward)]
    assert arns[0] == arns[1] == sorted([ARN_DB, ARN_BLOB])


def test_another_device_key_cannot_decrypt(device: Device, other_device: Device) -> None:
    store = _response(_secrets(), device)
    encoded = store["secrets"][1]["encryptedSecretString"]
    # the other device's own key id: not the key this message was wrapped for
    with pytest.raises(DecryptKeyError):
        _decrypt(encoded, other_device.key_pem, _openssl_key_id(other_device.cert_pem))
    # even claiming this device's key id, the other private key cannot unwrap the data key.
    # How it fails depends on the cryptography release: an unwrap error (DecryptKeyError), or,
    # with PKCS#1 v1.5 implicit rejection (cryptography 49+ on OpenSSL 3.2+, against the
    # Marvin attack), a pseudo-random "data key" that the committing suite's key commitment
    # then refuses (MasterKeyProviderError). Either way no plaintext comes out.
    with pytest.raises(AWSEncryptionSDKClientError):
        _decrypt(encoded, other_device.key_pem, _openssl_key_id(device.cert_pem))


def test_ec_device_is_refused_naming_the_device() -> None:
    ec_device = _device("ec-device", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ComposerError) as caught:
        secret_response_for(_secrets(), ec_device.cert_pem, "ec-device-7")
    message = str(caught.value)
    assert "ec-device-7" in message and "RSA" in message and "an EC (secp256r1) key" in message
    assert DB_PASSWORD not in message


def test_small_rsa_key_and_non_certificate_are_refused() -> None:
    small = _device("small", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(ComposerError, match="dev-small: its RSA key has 1024 bits"):
        device_key(small.cert_pem, "dev-small")
    with pytest.raises(ComposerError, match="dev-junk: its certificate is not an X.509"):
        device_key(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
                   "dev-junk")


def test_der_certificate_and_chain_file_give_the_device_key(device: Device,
                                                            other_device: Device) -> None:
    cert = x509.load_pem_x509_certificate(device.cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    key_id = _openssl_key_id(device.cert_pem)
    assert device_key(der, "d").key_id == key_id
    # a chain file: the device's certificate first, then its issuer
    assert device_key(device.cert_pem + other_device.cert_pem, "d").key_id == key_id


def test_each_call_draws_a_fresh_data_key(device: Device) -> None:
    """Not reproducible by design: the caller writes one device's value once (README)."""
    secrets = _secrets()
    assert (secret_response_for(secrets, device.cert_pem)
            != secret_response_for(secrets, device.cert_pem))


def test_plaintext_is_not_in_repr(device: Device) -> None:
    secrets = _secrets()
    assert DB_PASSWORD not in repr(secrets)
    assert repr(BLOB) not in repr(secrets)
    assert secrets[0].kind is SecretKind.STRING and secrets[1].kind is SecretKind.BINARY


def test_one_record_and_json_lines_are_read() -> None:
    one = load_secrets(json.dumps(_records()[0]).encode(), "one.json")
    lines = load_secrets("\n".join(json.dumps(r) for r in _records()).encode() + b"\n", "l.json")
    assert [s.arn for s in one] == [ARN_DB]
    assert [s.arn for s in lines] == [ARN_DB, ARN_BLOB]
    assert lines[1].loc.line == 2


def _error(data: str | bytes) -> ComposerError:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(ComposerError) as caught:
        load_secrets(raw, "secrets.json")
    error = caught.value
    text = str(error)
    # the error never quotes a value, nor keeps the input in its context
    assert "hunter2" not in text and "hunter2" not in repr(error.__context__)
    assert error.__cause__ is None and (error.__context__ is None
                                        or error.__suppress_context__)
    return error


def _record(**changes: object) -> dict[str, object]:
    record = dict(_records()[0], SecretString="hunter2")
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


def _lines(*records: dict[str, object]) -> str:
    return "\n".join(json.dumps(r) for r in records)


@pytest.mark.parametrize(("data", "where", "message"), [
    ('[{"ARN": "x",\n "SecretString": "hunter2" ', "secrets.json:2:", "not valid JSON"),
    (b'{"SecretString": "hunter2\xff"}', "secrets.json:1", "not UTF-8"),
    ("[]", "secrets.json", "holds no secret"),
    ('["hunter2"]', "secrets.json:1:2", "must be a JSON object"),
    ('[{"a": 1}] x', "secrets.json:1:12", "text after the array"),
    (_lines(_record(), _record(ARN=None)), "secrets.json:2:1: [1].ARN", "missing"),
    (_lines(_record(ARN="arn:aws:s3:::hunter2")), "[0].ARN", "not a Secrets Manager secret ARN"),
    (_lines(_record(Name="")), "[0].Name", "non-empty string"),
    (_lines(_record(VersionId=None)), "[0].VersionId", "missing"),
    (_lines(_record(SecretBinary="aHVudGVyMg==")), "[0].SecretString", "exactly one of"),
    (_lines(_record(SecretString=None)), "[0].SecretString", "exactly one of"),
    (_lines(_record(SecretString=["hunter2"])), "[0].SecretString", "must be a string"),
    (_lines(_record(SecretString="")), "[0].SecretString", "is empty"),
    (_lines(_record(SecretString=None, SecretBinary="hunter2!")), "[0].SecretBinary",
     "standard base64"),
    ('{"ARN": "' + ARN_DB + '", "Name": "n", "VersionId": "v", "SecretString": "\\ud800hunter2",'
     ' "VersionStages": ["AWSCURRENT"], "CreatedDate": 1}', "[0].SecretString", "lone surrogate"),
    (_lines(_record(SecretString="x" * 65537)), "[0].SecretString", "more than"),
    (_lines(_record(VersionStages=[])), "[0].VersionStages", "non-empty list"),
    (_lines(_record(VersionStages=["A", "A"])), "[0].VersionStages", "listed twice"),
    (_lines(_record(CreatedDate=None)), "[0].CreatedDate", "missing"),
    (_lines(_record(CreatedDate="2026-03-04T05:06:07")), "[0].CreatedDate", "must be a date"),
    (_lines(_record(CreatedDate=True)), "[0].CreatedDate", "must be a date"),
    (_lines(_record(SecretStrng="hunter2")), "[0].SecretStrng", "unknown field"),
    (_lines(_record(), _record()), "secrets.json:2:1", "given twice (first at secrets.json:1:1)"),
    (_lines(_record(), _record(VersionId="v2")), "secrets.json:2:1",
     "label AWSCURRENT is on two versions"),
    (_lines(_record(), _record(ARN=ARN_BLOB)), "secrets.json:2:1", "names two ARNs"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_bad_secrets_get_one_located_error(data: str | bytes, where: str, message: str) -> None:
    error = _error(data)
    assert where in str(error) and message in str(error), str(error)


def test_read_secrets_from_stdin_and_file(tmp_path: Path) -> None:
    data = json.dumps(_records()).encode()
    from_stdin = read_secrets("-", io.BytesIO(data))
    assert [s.arn for s in from_stdin] == [ARN_DB, ARN_BLOB]
    assert from_stdin[0].loc.file == "<stdin>"
    path = tmp_path / "secrets.json"
    path.write_bytes(data)
    assert read_secrets(str(path), io.BytesIO()) == from_stdin
    with pytest.raises(ComposerError, match="missing.json: cannot read the secrets"):
        read_secrets(str(tmp_path / "missing.json"), io.BytesIO())


@pytest.mark.parametrize(("created", "ms"), [
    (1772600767.8919, 1772600767891),  # rounded down, as Java's Instant.toEpochMilli
    (1772600767, 1772600767000),
    ("2026-03-04T05:06:07.891999+00:00", 1772600767891),
    ("2026-03-04T07:06:07.891Z", 1772600767891 + 2 * 3600 * 1000),
    ("2026-03-04T07:06:07.891+02:00", 1772600767891),
])
def test_created_date_becomes_epoch_milliseconds(created: object, ms: int) -> None:
    record = dict(_records()[0], CreatedDate=created)
    assert load_secrets(json.dumps(record).encode(), "s.json")[0].created_date_ms == ms


def test_secrets_outside_the_cloud_secrets_configuration_are_found() -> None:
    """SecretManager keeps a stored version only if a configured ARN is part of its ARN and it
    carries a configured label or AWSCURRENT (LocalStoreMap.save)."""
    db, blob = _secrets()  # db: AWSCURRENT; blob: AWSCURRENT and NEW
    assert not_configured((db, blob), [{"arn": ARN_DB}, {"arn": ARN_BLOB}]) == ()
    assert not_configured((db, blob), [{"arn": ARN_DB, "labels": ["NEW"]}]) == (blob,)
    # a partial ARN (without the random suffix) is matched as SecretManager matches it
    assert not_configured((db,), [{"arn": ARN_DB.removesuffix("-AbCdEf")}]) == ()
    only_new = load_secrets(json.dumps(dict(_records()[1], VersionStages=["NEW"])).encode(), "s")
    assert not_configured(only_new, [{"arn": ARN_BLOB}]) == only_new
    assert not_configured(only_new, [{"arn": ARN_BLOB, "labels": ["NEW"]}]) == ()
    assert not_configured((db,), None) == (db,)
    assert not_configured((db,), [{"labels": ["AWSCURRENT"]}, "junk"]) == (db,)


_WRITES: list[str] | None = None  # while a list: every file opened for writing, by path


def _record_writes(event: str, args: tuple[object, ...]) -> None:
    if _WRITES is not None and event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            _WRITES.append(str(path))


def test_reading_and_encrypting_open_no_file_for_writing(tmp_path: Path, device: Device) -> None:
    """Plaintext never touches the disk: every Python-level open (io.open, os.open) of the
    whole read-and-encrypt path is audited, the SDK's and cryptography's included."""
    global _WRITES
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(_records(), ensure_ascii=False))
    sys.addaudithook(_record_writes)  # cannot be removed: inert once _WRITES is None again
    _WRITES = []
    try:
        secrets = read_secrets(str(path), io.BytesIO())
        secret_response_for(secrets, device.cert_pem, "line-device-1")
        assert _WRITES == []
        # the audit sees a write: this test can fail
        (tmp_path / "probe").write_bytes(b"")
        assert _WRITES == [str(tmp_path / "probe")]
    finally:
        _WRITES = None


@pytest.mark.parametrize(("version", "path", "wrapping"), [
    ("2.2.6", "services.aws.greengrass.SecretManager.runtime.secretResponse", RsaWrapping.PKCS1),
    ("2.1.4", "services.aws.greengrass.SecretManager.runtime.secretResponse", RsaWrapping.PKCS1),
    ("2.1.3", "services.aws.greengrass.SecretManager.secretResponse", RsaWrapping.PKCS1),
    ("2.1.0", "services.aws.greengrass.SecretManager.secretResponse", RsaWrapping.PKCS1),
    ("2.0.9", "services.aws.greengrass.SecretManager.secretResponse", RsaWrapping.OAEP_SHA256),
    ("2.0.6", "services.aws.greengrass.SecretManager.secretResponse", RsaWrapping.OAEP_SHA256),
])
def test_store_format_follows_the_secretmanager_version(version: str, path: str,
                                                         wrapping: RsaWrapping) -> None:
    form = store_format(version)
    assert (form.dotted, form.wrapping) == (path, wrapping)


@pytest.mark.parametrize("version", ["2.0.5", "2.0", "latest"])
def test_secretmanager_without_committing_suites_is_refused(version: str) -> None:
    with pytest.raises(ComposerError, match=f"SecretManager {version}: only 2.0.6 and later"):
        store_format(version)


def test_oaep_wrapping_for_secretmanager_2_0(device: Device) -> None:
    """2.0.6-2.0.9 unwrap with RSA/ECB/OAEPWithSHA-256AndMGF1Padding: a PKCS#1 v1.5 key
    cannot, an OAEP-SHA256 one can."""
    key_id = _openssl_key_id(device.cert_pem)
    text = secret_response_for(_secrets(), device.cert_pem, "d", RsaWrapping.OAEP_SHA256)
    entry = next(e for e in json.loads(text)["secrets"] if e["arn"] == ARN_DB)
    with pytest.raises(AWSEncryptionSDKClientError):  # which one: see the test above
        _decrypt(entry["encryptedSecretString"], device.key_pem, key_id)
    plain, _ = _decrypt(entry["encryptedSecretString"], device.key_pem, key_id,
                        WrappingAlgorithm.RSA_OAEP_SHA256_MGF1)
    assert plain.decode() == DB_PASSWORD


def _config(tlog: str) -> dict[tuple[str, ...], object]:
    lines, problems = parse_tlog(tlog.encode())
    assert not problems
    return effective(lines)


def _tlog_line(ts: int, path: list[str], value: object) -> str:
    return json.dumps({"TS": ts, "TP": path, "W": "changed", "V": value}) + "\n"


def test_secret_store_site_reads_the_golden_configuration() -> None:
    manager = ["services", "aws.greengrass.SecretManager"]
    tlog = (_tlog_line(1, [*manager, "version"], "2.1.3")
            + _tlog_line(2, [*manager, "configuration", "cloudSecrets"],
                         [{"arn": ARN_DB}, {"arn": ARN_BLOB, "labels": ["NEW"]}])
            + _tlog_line(3, [*manager, "version"], "2.2.6"))  # an update: the newer line wins
    site = secret_store_site(_config(tlog))
    assert site.version == "2.2.6"
    assert site.format.dotted == "services.aws.greengrass.SecretManager.runtime.secretResponse"
    check_configured(_secrets(), site)
    narrower = _tlog_line(2, [*manager, "configuration", "cloudSecrets"], [{"arn": ARN_BLOB}])
    with pytest.raises(ComposerError) as caught:
        check_configured(_secrets(), secret_store_site(_config(tlog + narrower)))
    # located at the record in the secrets file, naming the ARN
    assert str(caught.value).startswith(f"error: secrets.json:1:2: secret {ARN_DB} (AWSCURRENT)")
    assert "cloudSecrets" in str(caught.value)


def test_golden_without_secretmanager_is_refused() -> None:
    nucleus = _tlog_line(1, ["services", "aws.greengrass.Nucleus", "version"], "2.12.0")
    with pytest.raises(ComposerError, match="runs no aws.greengrass.SecretManager"):
        secret_store_site(_config(nucleus))


def test_line_secrets_give_each_device_its_store(device: Device) -> None:
    manager = ["services", "aws.greengrass.SecretManager"]
    config = _config(_tlog_line(1, [*manager, "version"], "2.1.8")
                     + _tlog_line(2, [*manager, "configuration", "cloudSecrets"],
                                  [{"arn": ARN_DB}, {"arn": ARN_BLOB}]))
    line = LineSecrets.for_golden(_secrets(), config)
    record = Loc("devices.csv", 3, 1)
    values = line.values_for("line-device-1", device.cert_pem, record)
    (path, text), = values.items()
    assert path == ("services", "aws.greengrass.SecretManager", "runtime", "secretResponse")
    entry = next(e for e in json.loads(text)["secrets"] if e["arn"] == ARN_DB)
    key_id = _openssl_key_id(device.cert_pem)
    assert _decrypt(entry["encryptedSecretString"], device.key_pem, key_id)[0].decode() \
        == DB_PASSWORD
    with pytest.raises(ComposerError, match=r"devices.csv:3:1: device d9: --secrets needs"):
        line.check_device("d9", None, record)
    ec_device = _device("ec", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ComposerError, match=r"devices.csv:3:1: device d8: its certificate holds "
                                            r"an EC \(secp384r1\) key"):
        line.values_for("d8", ec_device.cert_pem, record)
    # bound to the golden device: one whose configuration lists only the blob is refused
    narrow = _config(_tlog_line(1, [*manager, "version"], "2.1.8")
                     + _tlog_line(2, [*manager, "configuration", "cloudSecrets"],
                                  [{"arn": ARN_BLOB}]))
    with pytest.raises(ComposerError, match=f"secret {ARN_DB} .* not in the golden"):
        LineSecrets.for_golden(_secrets(), narrow)
