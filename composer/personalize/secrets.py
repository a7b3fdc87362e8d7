"""Greengrass SecretManager's local secret store, re-encrypted for one device on the line.

The SecretManager component keeps the secrets it downloaded in its runtime config, at
services.aws.greengrass.SecretManager.runtime.secretResponse, as a JSON string (Jackson, compact,
null fields left out) of {"secrets": [{"arn", "name", "versionId", "encryptedSecretString" |
"encryptedSecretBinary", "versionStages", "createdDate"}]} (aws-greengrass-secret-manager @ adbbd4d:
model/SecretDocument.java, model/AWSSecretResponse.java, store/FileSecretStore.java). Each
ciphertext is (LocalStoreMap.encryptAWSResponse, crypto/Crypter.java, crypto/RSAMasterKey.java):

- an AWS Encryption SDK message from `AwsCrypto.builder().build()` of aws-encryption-sdk-java 2.2.0
  (pom.xml): commitment policy RequireEncryptRequireDecrypt, hence the default committing suite
  0x0578 AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 (AWS Encryption SDK developer guide,
  "Supported algorithm suites" and "Setting your commitment policy");
- with one encrypted data key from a JceMasterKey: provider id `gg:secrets`, wrapping
  `RSA/ECB/PKCS1Padding`, key id = lowercase hex of SHA-1 of the device public key's
  `getEncoded()`, which for an RSA key is its X.509 SubjectPublicKeyInfo DER;
- encryption context {"Context": <secret ARN>}, which Crypter.decrypt checks on the device;
- of the secret's UTF-8 string or its raw binary; then standard base64 of the message.

Older versions differ (store_format): before 2.1.4 the store sat at
services.aws.greengrass.SecretManager.secretResponse; 2.0.6 to 2.0.9 wrapped data keys with
RSA/ECB/OAEPWithSHA-256AndMGF1Padding; 2.0.5 pinned the Java SDK 1.6.2, which reads no committing
suite, and is refused.

The key pair is the device identity (LocalStoreMap.loadCrypter): the certificate at
system.certificateFilePath and the private key at system.privateKeyPath (file or PKCS#11). Only
RSA works: JceMasterKey with RSA/ECB/PKCS1Padding cannot wrap with an EC key. Wrapping needs only
the public key, so the line needs each device's certificate, never its private key: the Python
SDK's RawMasterKey with a PUBLIC wrapping key writes the same data key record (provider info =
the key id, RSA PKCS#1 v1.5 of the data key) that the Java JceMasterKey reads.

Plaintext handling: values are read from the caller's bytes into PlaintextSecret.value and go
only to the SDK; they are never written, logged, shown in a repr or quoted in an error message.
Python cannot wipe an immutable bytes object, so "as short as possible" means: the caller drops
its PlaintextSecret objects once the last device is encrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, BinaryIO, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from composer.errors import ComposerError, Loc

SECRET_MANAGER = ("services", "aws.greengrass.SecretManager")
KEY_PROVIDER_ID = "gg:secrets"  # RSAMasterKey.KEY_PROVIDER
CONTEXT_KEY = "Context"  # Crypter.CONTEXT_STR
SUITE_ID = 0x0578  # ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
# Secrets Manager's own limit on a secret value (GetSecretValue, SecretString and SecretBinary)
MAX_SECRET_BYTES = 65536
# a bound on what is read: a fleet's secrets are a few KiB, and they stay in memory for the run
MAX_SECRETS_FILE = 64 << 20
# AWS IoT Core registers RSA device certificates of 2048 bits or more
MIN_RSA_BITS = 2048

# GetSecretValue's response fields; boto3 adds ResponseMetadata, which carries no secret
_FIELDS = ("ARN", "Name", "VersionId", "SecretString", "SecretBinary", "VersionStages",
           "CreatedDate")
_IGNORED_FIELDS = ("ResponseMetadata",)
_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:\S+")
_Bad = Callable[..., ComposerError]  # makes the located error for one field of one record
_INPUT_HINT = ("give what `aws secretsmanager get-secret-value --output json` prints: one object, "
               "a JSON array of them, or one per line")


class SecretKind(Enum):
    """Which GetSecretValue field held the value, named by the store field its ciphertext takes."""

    STRING = "encryptedSecretString"
    BINARY = "encryptedSecretBinary"


@dataclass(frozen=True, slots=True)
class PlaintextSecret:
    """One secret version as GetSecretValue returned it. `value` is the plaintext (UTF-8 of a
    SecretString, or the decoded SecretBinary): kept out of repr so no log or traceback shows it."""

    arn: str
    name: str
    version_id: str
    kind: SecretKind
    value: bytes = field(repr=False)
    version_stages: tuple[str, ...]
    created_date_ms: int  # epoch milliseconds, as AWSSecretResponse.createdDate
    loc: Loc = field(compare=False)


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """The public half of a device identity, as SecretManager names it."""

    key_id: str  # lowercase hex SHA-1 of the SubjectPublicKeyInfo DER (RSAMasterKey.publicKeySHA)
    public_key_pem: bytes


# --- loading the plaintext secrets ------------------------------------------------------------


def read_secrets(path: str, stdin: BinaryIO) -> tuple[PlaintextSecret, ...]:
    """The secrets of `--secrets PATH`, `-` being `stdin` (a pipe from a vault keeps them off
    the line's disk altogether)."""
    source = "<stdin>" if path == "-" else path
    failure = None
    try:
        if path == "-":
            data = stdin.read(MAX_SECRETS_FILE + 1)
        else:
            with open(path, "rb") as file:
                data = file.read(MAX_SECRETS_FILE + 1)
    except OSError as error:
        failure = error.strerror or type(error).__name__
    if failure is not None:
        raise ComposerError(f"cannot read the secrets: {failure}", Loc(source))
    if len(data) > MAX_SECRETS_FILE:
        raise ComposerError(f"secrets file is larger than {MAX_SECRETS_FILE} bytes", Loc(source),
                            hint="each secret is at most 64 KiB: is this the right file?")
    return load_secrets(data, source)


def load_secrets(data: bytes, source: str) -> tuple[PlaintextSecret, ...]:
    """The secrets in `data` (read from `source`, a file name or `-`): GetSecretValue results as
    one JSON object, a JSON array of them, or one object per line. Every error is located and
    never quotes a value."""
    # errors are raised outside the except blocks: UnicodeDecodeError and JSONDecodeError hold
    # the whole input, and an exception's context would keep it alive and in tracebacks
    bad_byte = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad_byte = error.start
    if bad_byte is not None:
        line = data.count(b"\n", 0, bad_byte) + 1
        raise ComposerError("secrets file is not UTF-8", Loc(source, line), hint=_INPUT_HINT)
    documents = list(_documents(text, source))  # a syntax error anywhere comes first
    secrets = [_secret(document, _loc(source, text, offset), index)
               for index, (offset, document) in enumerate(documents)]
    if not secrets:
        raise ComposerError("secrets file holds no secret", Loc(source), hint=_INPUT_HINT)
    _check_unique(secrets)
    return tuple(secrets)


def _documents(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """(offset, value) of each secret record: the items of a top-level array, or each top-level
    value of the text. Offsets locate errors; json's own errors keep only their position (a
    JSONDecodeError carries the whole document, so it is never chained)."""
    decoder = json.JSONDecoder(parse_float=Decimal)
    pos = _skip_space(text, 0)
    if text.startswith("[", pos):
        pos = _skip_space(text, pos + 1)
        if text.startswith("]", pos):
            return
        while True:
            value, end = _decode(decoder, text, pos, source)
            yield pos, value
            pos = _skip_space(text, end)
            if text.startswith(",", pos):
                pos = _skip_space(text, pos + 1)
            elif text.startswith("]", pos):
                pos = _skip_space(text, pos + 1)
                break
            else:
                _syntax(source, text, pos, "expected ',' or ']' after an array item")
        if pos != len(text):
            _syntax(source, text, pos, "text after the array")
        return
    while pos < len(text):
        value, end = _decode(decoder, text, pos, source)
        yield pos, value
        pos = _skip_space(text, end)


def _decode(decoder: json.JSONDecoder, text: str, pos: int, source: str) -> tuple[Any, int]:
    try:
        return decoder.raw_decode(text, pos)
    except json.JSONDecodeError as error:
        where, what = error.pos, error.msg
    _syntax(source, text, where, what)


def _syntax(source: str, text: str, pos: int, what: str) -> NoReturn:
    raise ComposerError(f"secrets file is not valid JSON: {what}", _loc(source, text, pos),
                        hint=_INPUT_HINT)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _loc(source: str, text: str, offset: int) -> Loc:
    line = text.count("\n", 0, offset) + 1
    return Loc(source, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _secret(document: Any, loc: Loc, index: int) -> PlaintextSecret:
    def bad(key: str, message: str, hint: str | None = None) -> ComposerError:
        return ComposerError(message, loc, hint=hint, path=f"[{index}].{key}" if key else None)

    if not isinstance(document, dict):
        raise bad("", "a secret must be a JSON object", _INPUT_HINT)
    for key in document:
        if key not in _FIELDS and key not in _IGNORED_FIELDS:
            raise bad(key, "unknown field", f"GetSecretValue's fields are {', '.join(_FIELDS)}")
    arn = _text(document, "ARN", bad)
    if not _ARN.fullmatch(arn):
        raise bad("ARN", "not a Secrets Manager secret ARN",
                  "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX")
    kind, value = _value(document, bad)
    return PlaintextSecret(
        arn=arn,
        name=_text(document, "Name", bad),
        version_id=_text(document, "VersionId", bad),
        kind=kind,
        value=value,
        version_stages=_stages(document, bad),
        created_date_ms=_created_ms(document, bad),
        loc=loc,
    )


def _text(document: dict[str, Any], key: str, bad: _Bad) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise bad(key, "missing" if value is None else "must be a non-empty string")
    return value


def _value(document: dict[str, Any], bad: _Bad) -> tuple[SecretKind, bytes]:
    """The plaintext. Messages here name the field, never its content."""
    has_string, has_binary = "SecretString" in document, "SecretBinary" in document
    if has_string == has_binary:
        raise bad("SecretString", "give exactly one of SecretString and SecretBinary",
                  "Secrets Manager stores a secret's value in one of the two")
    if has_string:
        key, kind, raw = "SecretString", SecretKind.STRING, document["SecretString"]
        if not isinstance(raw, str):
            raise bad(key, "must be a string")
        try:
            value = raw.encode("utf-8")
        except UnicodeEncodeError:
            value = None  # a lone surrogate escape (\\ud800): Java would store "?" in its place
        if value is None:
            raise bad(key, "is not valid Unicode (a lone surrogate escape)")
    else:
        key, kind, raw = "SecretBinary", SecretKind.BINARY, document["SecretBinary"]
        try:
            value = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
        except (binascii.Error, ValueError):
            value = None
        if value is None:
            raise bad(key, "must be standard base64 (as the AWS CLI prints it)")
    if not value:
        # Crypter.encrypt refuses an empty plaintext, so the device would never hold it
        raise bad(key, "is empty: SecretManager stores no empty secret")
    if len(value) > MAX_SECRET_BYTES:
        raise bad(key, f"is {len(value)} bytes, more than Secrets Manager's {MAX_SECRET_BYTES}")
    return kind, value


def _stages(document: dict[str, Any], bad: _Bad) -> tuple[str, ...]:
    stages = document.get("VersionStages")
    if (not isinstance(stages, list) or not stages
            or not all(isinstance(s, str) and s for s in stages)):
        # the device looks a secret up by ARN and label (FileSecretStore.get): no label, no use
        raise bad("VersionStages", "must be a non-empty list of labels such as AWSCURRENT")
    if len(set(stages)) != len(stages):
        raise bad("VersionStages", "a label is listed twice")
    return tuple(stages)


def _created_ms(document: dict[str, Any], bad: _Bad) -> int:
    """CreatedDate as epoch milliseconds, rounded down as Java's Instant.toEpochMilli does: a
    number of epoch seconds (AWS CLI v1, botocore's JSON) or ISO 8601 with an offset (CLI v2)."""
    value = document.get("CreatedDate")
    hint = "epoch seconds (1700000000.123) or ISO 8601 with an offset (2023-11-14T22:13:20.123Z)"
    if isinstance(value, bool) or value is None:
        raise bad("CreatedDate", "missing" if value is None else "must be a date", hint)
    if isinstance(value, int | Decimal):
        try:
            return int((Decimal(value) * 1000).to_integral_value(rounding="ROUND_FLOOR"))
        except InvalidOperation:
            raise bad("CreatedDate", "must be a finite number", hint) from None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            # exact integer arithmetic: a float timestamp can be a millisecond off
            delta = moment - datetime.fromisoformat("1970-01-01T00:00:00+00:00")
            return (delta.days * 86_400_000 + delta.seconds * 1000
                    + delta.microseconds // 1000)
    raise bad("CreatedDate", "must be a date", hint)


def _check_unique(secrets: list[PlaintextSecret]) -> None:
    """The store is looked up by (ARN, label) and by name (SecretManager.nameToArnMap): each must
    name one secret version."""
    by_stage: dict[tuple[str, str], PlaintextSecret] = {}
    by_version: dict[tuple[str, str], PlaintextSecret] = {}
    arn_of_name: dict[str, PlaintextSecret] = {}
    for secret in secrets:
        first = by_version.setdefault((secret.arn, secret.version_id), secret)
        if first is not secret:
            raise ComposerError(f"secret {secret.arn} version {secret.version_id} is given twice "
                                f"(first at {first.loc})", secret.loc)
        for stage in secret.version_stages:
            first = by_stage.setdefault((secret.arn, stage), secret)
            if first is not secret:
                raise ComposerError(f"secret {secret.arn}: label {stage} is on two versions "
                                    f"(first at {first.loc})", secret.loc,
                                    hint="a label names one version of a secret")
        first = arn_of_name.setdefault(secret.name, secret)
        if first.arn != secret.arn:
            raise ComposerError(f"secret name {secret.name} names two ARNs "
                                f"(first at {first.loc})", secret.loc)


# --- where and how a SecretManager version keeps its store -------------------------------------


class RsaWrapping(Enum):
    """RSAMasterKey.WRAPPING_ALGO, the JCE transformation wrapping each data key."""

    PKCS1 = "RSA/ECB/PKCS1Padding"  # SecretManager 2.1.0 and later (commit c7e645d)
    # 2.0.6 to 2.0.9; the Java SDK's RsaJceKeyCipher uses MGF1 with the same hash
    OAEP_SHA256 = "RSA/ECB/OAEPWithSHA-256AndMGF1Padding"


@dataclass(frozen=True, slots=True)
class StoreFormat:
    """Where one SecretManager version keeps secretResponse, and how it unwraps data keys."""

    path: tuple[str, ...]  # config key path, as the nucleus spells it
    wrapping: RsaWrapping

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


# the label SecretManager always syncs, configured or not (SecretManager.LATEST_LABEL)
ALWAYS_SYNCED_LABEL = "AWSCURRENT"


def store_format(version: str) -> StoreFormat:
    """The store of SecretManager `version` (its tags in aws-greengrass-secret-manager)."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    if len(numbers) < 3 or numbers < (2, 0, 6):
        # 2.0.5 pins the Encryption SDK for Java 1.6.2, which reads no committing suite
        raise ComposerError(
            f"aws.greengrass.SecretManager {version}: only 2.0.6 and later read secrets "
            "encrypted with a key-committing suite", hint="deploy a newer SecretManager to the "
            "golden device, or personalize without --secrets")
    # the store moved under `runtime` in 2.1.4 (commit 8a11ab2, FileSecretDao.java)
    path = (*SECRET_MANAGER, "runtime", "secretResponse") if numbers >= (2, 1, 4) else (
        *SECRET_MANAGER, "secretResponse")
    wrapping = RsaWrapping.PKCS1 if numbers >= (2, 1, 0) else RsaWrapping.OAEP_SHA256
    return StoreFormat(path, wrapping)


@dataclass(frozen=True, slots=True)
class SecretStoreSite:
    """What the golden device's configuration says about its SecretManager."""

    version: str
    format: StoreFormat
    cloud_secrets: object  # configuration.cloudSecrets: a list of {"arn", "labels"} when valid


def secret_store_site(config: Mapping[tuple[str, ...], Any]) -> SecretStoreSite:
    """SecretManager's version and configured secrets in `config`, the golden device's effective
    configuration keyed by lower-cased paths (composer.rules.tlog.effective)."""
    component = tuple(part.lower() for part in SECRET_MANAGER)
    version = config.get((*component, "version"))
    if not isinstance(version, str):
        raise ComposerError(
            "the golden device runs no aws.greengrass.SecretManager: the secrets would have no "
            "component to read them", hint="deploy SecretManager to the golden device (with the "
            "secrets in its cloudSecrets), or personalize without --secrets")
    # SecretManagerService.SECRETS_TOPIC under the component's configuration
    cloud_secrets = config.get((*component, "configuration", "cloudsecrets"))
    return SecretStoreSite(version, store_format(version), cloud_secrets)


def check_configured(secrets: Iterable[PlaintextSecret], site: SecretStoreSite) -> None:
    """A located error for the first secret SecretManager would drop at its first start."""
    for secret in not_configured(secrets, site.cloud_secrets):
        raise ComposerError(
            f"secret {secret.arn} ({', '.join(secret.version_stages)}) is not in the golden "
            "device's SecretManager configuration: SecretManager would drop it at its first start",
            secret.loc, hint="add it to cloudSecrets (arn, and labels unless AWSCURRENT) in the "
            "deployment that made the golden device")


def not_configured(secrets: Iterable[PlaintextSecret],
                   cloud_secrets: object) -> tuple[PlaintextSecret, ...]:
    """The secrets SecretManager would drop from its store at its first start: at install, online
    or not, it keeps only the versions whose ARN contains a configured `arn` and that carry one
    of that entry's `labels` or AWSCURRENT (SecretManagerService.install -> serviceChanged ->
    SecretManager.syncFromCloud -> LocalStoreMap.syncWithConfig -> save;
    SecretManager.getSecretConfiguration). `cloud_secrets` is the golden device's
    configured value (a list of {"arn", "labels"}); anything else keeps nothing."""
    configured: list[tuple[str, frozenset[str]]] = []
    for entry in cloud_secrets if isinstance(cloud_secrets, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("arn"), str):
            labels = entry.get("labels")
            labels = [x for x in labels if isinstance(x, str)] if isinstance(labels, list) else []
            configured.append((entry["arn"], frozenset([*labels, ALWAYS_SYNCED_LABEL])))
    return tuple(
        secret for secret in secrets
        if not any(arn in secret.arn and labels.intersection(secret.version_stages)
                   for arn, labels in configured))


# --- the device key ---------------------------------------------------------------------------


def device_key(certificate: bytes, device: str, loc: Loc | None = None) -> DeviceKey:
    """The RSA public key of a device certificate (PEM, the first certificate of the file, or
    DER), named as RSAMasterKey names it. An EC or other key is refused, naming the device
    (and `loc`, its record)."""
    try:
        if b"-----BEGIN" in certificate:
            cert = x509.load_pem_x509_certificates(certificate)[0]
        else:
            cert = x509.load_der_x509_certificate(certificate)
    except ValueError:
        raise ComposerError(f"device {device}: its certificate is not an X.509 certificate "
                            "(PEM or DER)", loc) from None
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ComposerError(
            f"device {device}: its certificate holds {_key_kind(public_key)} key, and Greengrass "
            "SecretManager encrypts its secrets only for RSA device keys", loc,
            hint="give this device an RSA key and certificate, or personalize it without --secrets")
    if public_key.key_size < MIN_RSA_BITS:
        raise ComposerError(f"device {device}: its RSA key has {public_key.key_size} bits; AWS "
                            f"IoT accepts {MIN_RSA_BITS} or more", loc)
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = public_key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return DeviceKey(key_id=hashlib.sha1(spki).hexdigest(), public_key_pem=pem)


def _key_kind(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"an EC ({public_key.curve.name})"
    return f"a {type(public_key).__name__.removeprefix('_').removesuffix('PublicKey')}"


# --- encrypting -------------------------------------------------------------------------------


def secret_response_for(secrets: Iterable[PlaintextSecret], device_cert_pem: bytes,
                        device: str = "", wrapping: RsaWrapping = RsaWrapping.PKCS1,
                        loc: Loc | None = None) -> str:
    """The secretResponse value for one device: every secret encrypted for the key in its
    certificate, its data key wrapped as the golden device's SecretManager unwraps it
    (store_format(version).wrapping). Each call draws fresh data keys, so two calls never give
    the same text; a caller that must write one device's value twice (patch and full image)
    calls this once."""
    # imported here: the SDK pulls in boto3, which only a personalization with secrets needs
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKey

    python_wrapping = {RsaWrapping.PKCS1: WrappingAlgorithm.RSA_PKCS1,
                        RsaWrapping.OAEP_SHA256: WrappingAlgorithm.RSA_OAEP_SHA256_MGF1}
    key = device_key(device_cert_pem, device, loc)
    master_key = RawMasterKey(
        provider_id=KEY_PROVIDER_ID,
        key_id=key.key_id.encode("ascii"),
        wrapping_key=WrappingKey(wrapping_algorithm=python_wrapping[wrapping],
                                 wrapping_key=key.public_key_pem,
                                 wrapping_key_type=EncryptionKeyType.PUBLIC),
    )
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    suite = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
    assert suite.algorithm_id == SUITE_ID
    entries = []
    # sorted: the document does not depend on the order of the input file
    for secret in sorted(secrets, key=lambda s: (s.arn, s.version_id)):
        message, _header = client.encrypt(source=secret.value, key_provider=master_key,
                                          encryption_context={CONTEXT_KEY: secret.arn},
                                          algorithm=suite)
        # field order and omission of the other value field as Jackson writes AWSSecretResponse
        entries.append({
            "arn": secret.arn,
            "name": secret.name,
            "versionId": secret.version_id,
            secret.kind.value: base64.b64encode(message).decode("ascii"),
            "versionStages": list(secret.version_stages),
            "createdDate": secret.created_date_ms,
        })
    return json.dumps({"secrets": entries}, separators=(",", ":"), ensure_ascii=False)


# --- one personalization run ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineSecrets:
    """The `--secrets` of one personalization run, bound to the golden device's SecretManager by
    for_golden, which refuses what it could not keep; then each device's value, checked first
    for every device (check_device) so that a refusal comes before anything is written."""

    secrets: tuple[PlaintextSecret, ...]
    site: SecretStoreSite

    @classmethod
    def for_golden(cls, secrets: tuple[PlaintextSecret, ...],
                   golden_config: Mapping[tuple[str, ...], Any]) -> LineSecrets:
        """`golden_config`: the golden device's effective configuration (lower-cased keys, as
        composer.rules.tlog.effective gives it)."""
        site = secret_store_site(golden_config)
        check_configured(secrets, site)
        return cls(secrets, site)

    def check_device(self, device: str, certificate: bytes | None, loc: Loc | None) -> None:
        """Refuse a device the secrets cannot be encrypted for."""
        if certificate is None:
            raise ComposerError(f"device {device}: --secrets needs the device's certificate, and "
                                "its record gives none", loc,
                                hint="give every device record a certificate")
        device_key(certificate, device, loc)

    def values_for(self, device: str, certificate: bytes | None,
                   loc: Loc | None) -> dict[tuple[str, ...], str]:
        """{config path: value} that gives `device` the secrets: SecretManager's store, made
        for its certificate as the golden device's SecretManager version reads it. Call once
        per device and run (every call draws new data keys)."""
        self.check_device(device, certificate, loc)
        assert certificate is not None
        return {self.site.format.path: secret_response_for(
            self.secrets, certificate, device, self.site.format.wrapping, loc)}
