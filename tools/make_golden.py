#!/usr/bin/env python3
"""Make a realistic synthetic snapshot of a Greengrass golden device (docs/greengrass.md §0).

It holds what a real one holds, including what must never ship: an encrypted SecretManager
response in every copy of the configuration, the golden device's thing name, certificate and
private key, logs, telemetry, work folders, a stale ipc.socket, and a Docker overlay2 store with
whiteouts, opaque folders, xattrs, hard links, setuid files and per-daemon state.

    python tools/make_golden.py OUT.tar.gz [--shuffle SEED] [--layers N --files-per-layer M]
                                           [--docker-mib MIB] [--variant NAME ...]

--variant adds what real devices have beyond the default (which it leaves byte-identical):
  fleet        provisioned by the fleet-provisioning-by-claim plugin: the plugin jar in
               plugins/trusted, its configuration, claim-certs/ and AmazonRootCA1.pem
  cda          client device auth: runtime.ca_passphrase and work/<Auth>/ca.jks
  ota          the nucleus updated over the air: alts/current -> alts/<id>, a newer nucleus
               (2.14.3, with its loader.log unit) beside the first one
  old-secrets  SecretManager 2.1.3, which kept secretResponse outside `runtime`
  yocto        the unit in /lib/systemd/system (meta-aws), only the .wants link in /etc
  jackson      effectiveConfig.yaml as the nucleus's Jackson YAMLMapper writes it: thing group
               deployments, processed deployments, literal and folded multi-line scalars
  users        /etc/passwd and /etc/group with ggc_user and ggc_group
  nucleus-tlog a tlog line as Jackson also accepts it: keys in another order, no V
  cloud-secrets SecretManager's configuration lists the secret it stores (cloudSecrets), as the
               deployment that gave it the secret does

--docker-mib gives the layers a Docker-store-shaped size distribution instead of the default
small files: most files a few KiB, some hundreds of KiB, and large ones (1 to 48 MiB) until the
layers hold about MIB mebibytes; their data is pseudo-random (it does not compress), streamed
from a fixed pool so that gigabytes cost no memory. tools/bench.py uses it.

The planted secrets are printed with --print-secrets so tests can grep every output for them.
Output is deterministic for the same arguments.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import sys
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Only the snapshot's vocabulary and the two documented Greengrass hashes come from composer; the
# archive itself is written by Python's tarfile, not by composer's tar writer (the code under test)
from composer.rules.greengrass import component_hash, recipe_digest  # noqa: E402
from composer.tree import Content, Entry, Kind  # noqa: E402

ROOT = "/greengrass/v2"
T0 = 1718878001  # the snapshot's clock, seconds
THING = "GoldenThing-7f3a91"
SECRET = "AgV4GOLDENSECRETdGhpcyBpcyB0aGUgZ29sZGVuIGRldmljZSdzIHNlY3JldA=="
PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEGOLDENPRIVATEKEYbm90IGEgcmVhbCBrZXk=\n"
               "-----END RSA PRIVATE KEY-----\n")
CERT = "-----BEGIN CERTIFICATE-----\nMIIDGOLDENTHINGCERT=\n-----END CERTIFICATE-----\n"
ROOT_CA = ("-----BEGIN CERTIFICATE-----\nMIIDQTCCAimgAwIBAgITBmyfz5m/jAo54vB4ikPmljZbyjANBgkq\n"
           "-----END CERTIFICATE-----\n")
NUCLEUS = "2.12.6"
NEW_NUCLEUS = "2.14.3"  # the ota variant's update
OTA_ALTS = "5d0b7c1e-0f4a-4c1e-9d1b-2a3b4c5d6e7f"
CLAIM_CERT = ("-----BEGIN CERTIFICATE-----\nMIIDFLEETCLAIMCERTsharedbyeverydevice=\n"
              "-----END CERTIFICATE-----\n")
CLAIM_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEFLEETCLAIMKEYsharedbyeverydevice=\n"
             "-----END RSA PRIVATE KEY-----\n")
AMAZON_ROOT_CA = ("-----BEGIN CERTIFICATE-----\nMIIDQTCCAimgAwIBAgITBmyfz5m/AmazonRootCA1=\n"
                  "-----END CERTIFICATE-----\n")
CA_PASSPHRASE = "GOLDENCAPASSPHRASE-4f1c2e"
CA_JKS = b"\xfe\xed\xfe\xedGOLDENLOCALCAKEYSTORE" * 8
FP_NAME = "aws.greengrass.FleetProvisioningByClaim"
VARIANTS = ("fleet", "cda", "ota", "old-secrets", "yocto", "jackson", "users", "nucleus-tlog",
            "cloud-secrets")
COMPONENTS = {  # name: (version, type)
    "aws.greengrass.Nucleus": (NUCLEUS, "aws.greengrass.nucleus"),
    "aws.greengrass.LogManager": ("2.3.7", "aws.greengrass.plugin"),
    "aws.greengrass.SecretManager": ("2.1.8", "aws.greengrass.plugin"),
    "aws.greengrass.telemetry.NucleusEmitter": ("1.0.8", "aws.greengrass.plugin"),
    "aws.greengrass.SecureTunneling": ("1.0.19", "aws.greengrass.generic"),
    "aws.greengrass.labs.HomeAssistant": ("1.0.0", "aws.greengrass.generic"),
    "aws.greengrass.DockerApplicationManager": ("2.0.11", "aws.greengrass.generic"),
}
UNIT = f"""[Unit]
Description=Greengrass Core
After=network.target

[Service]
Type=simple
PIDFile={ROOT}/alts/loader.pid
RemainAfterExit=no
Restart=on-failure
RestartSec=10
ExecStart=/bin/sh {ROOT}/alts/current/distro/bin/loader
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""


class Snapshot:
    def __init__(self) -> None:
        self.entries: list[tuple[Entry, bytes | None]] = []

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, **kw: object) -> None:
        self.entries.append((Entry(path, Kind.DIR, mode, uid, gid, T0 * 10**9, **kw), None))

    def file(self, path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: int = T0, **kw: object) -> None:
        raw = data.encode() if isinstance(data, str) else data
        entry = Entry(path, Kind.FILE, mode, uid, gid, mtime * 10**9 + 123456789,
                      content=Content.of_bytes(raw), **kw)
        self.entries.append((entry, raw))

    def link(self, path: str, target: str) -> None:
        self.entries.append((Entry(path, Kind.SYMLINK, 0o777, 0, 0, T0 * 10**9, target=target),
                             None))

    def node(self, path: str, kind: Kind, mode: int = 0o644, rdev: tuple[int, int] = (0, 0),
             uid: int = 0, gid: int = 0) -> None:
        self.entries.append((Entry(path, kind, mode, uid, gid, T0 * 10**9, rdev=rdev), None))

    def lazy_file(self, path: str, size: int, start: int, mode: int = 0o644, uid: int = 0,
                  gid: int = 0, mtime: int = T0) -> None:
        """A file of `size` pool bytes from offset `start`, produced only when written."""
        entry = Entry(path, Kind.FILE, mode, uid, gid, mtime * 10**9 + 123456789,
                      content=Content(size=size, source="pool"))
        self.entries.append((entry, lambda: PoolStream(size, start)))  # type: ignore[arg-type]

    def hardlink(self, path: str, target: str, mode: int = 0o755) -> None:
        self.entries.append((Entry(path, Kind.HARDLINK, mode, 0, 0, T0 * 10**9, target=target),
                             None))


_POOL: list[bytes] = []
POOL_SIZE = 64 << 20


class PoolStream(io.RawIOBase):
    """`size` bytes of a fixed pseudo-random pool, from `start`, wrapping around."""

    def __init__(self, size: int, start: int) -> None:
        if not _POOL:
            _POOL.append(random.Random(3).randbytes(POOL_SIZE))
        self._left = size
        self._pos = start % POOL_SIZE

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        """Exactly `n` bytes (fewer only at the end): tarfile takes a short read for the end of
        the data, so a read that crosses the pool's end wraps around within the call."""
        if n < 0 or n > self._left:
            n = self._left
        parts = []
        while n > 0:
            take = min(n, POOL_SIZE - self._pos)
            parts.append(_POOL[0][self._pos:self._pos + take])
            self._pos = (self._pos + take) % POOL_SIZE
            self._left -= take
            n -= take
        return b"".join(parts)


def tlog_line(ts: int, path: list[str], value: object, action: str = "changed") -> str:
    return json.dumps({"TS": ts, "TP": path, "W": action, "V": value},
                      separators=(",", ":")) + "\n"


SECRET_ARN = "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf"


def config_tlog(variants: frozenset[str] = frozenset()) -> str:
    ms = T0 * 1000
    secret_doc = json.dumps({"secrets": [{
        "arn": SECRET_ARN,
        "name": "db", "versionId": "v1", "encryptedSecretString": SECRET,
        "versionStages": ["AWSCURRENT"], "createdDate": ms}]})
    root_ca = f"{ROOT}/AmazonRootCA1.pem" if "fleet" in variants else f"{ROOT}/rootCA.pem"
    secret_path = ["services", "aws.greengrass.SecretManager", "runtime", "secretResponse"]
    if "old-secrets" in variants:  # before SecretManager 2.1.4 (commit 8a11ab2)
        secret_path = ["services", "aws.greengrass.SecretManager", "secretResponse"]
    lines = [
        tlog_line(1, ["system", "rootpath"], ROOT),
        tlog_line(ms + 1, ["system", "thingName"], THING),
        tlog_line(ms + 2, ["system", "certificateFilePath"], f"{ROOT}/thingCert.crt"),
        tlog_line(ms + 3, ["system", "privateKeyPath"], f"{ROOT}/privKey.key"),
        tlog_line(ms + 4, ["system", "rootCaPath"], root_ca),
        tlog_line(ms + 5, ["setenv", "AWS_IOT_THING_NAME"], THING),
        tlog_line(ms + 6, ["setenv", "AWS_REGION"], "us-east-1"),
        tlog_line(ms + 7, ["services", "aws.greengrass.Nucleus", "version"], NUCLEUS),
        tlog_line(ms + 8, ["services", "aws.greengrass.Nucleus", "configuration", "awsRegion"],
                  "us-east-1"),
        tlog_line(ms + 9, ["services", "aws.greengrass.Nucleus", "configuration",
                           "iotDataEndpoint"], "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"),
        tlog_line(ms + 10, ["services", "aws.greengrass.Nucleus", "configuration",
                            "runWithDefault", "posixUser"], "ggc_user:ggc_group"),
        tlog_line(ms + 11, secret_path, secret_doc),
        tlog_line(ms + 12, ["services", "DeploymentService", "GroupToRootComponents",
                            f"thing/{THING}", "aws.greengrass.labs.HomeAssistant"], "1.0.0"),
        tlog_line(ms + 13, ["services", "DeploymentService", "GroupToRootComponents",
                            "thinggroup/Fleet", "aws.greengrass.LogManager"], "2.3.7"),
        tlog_line(ms + 14, ["services", "aws.greengrass.labs.HomeAssistant", "configuration",
                            "topic"], f"$aws/things/{THING}/shadow"),
        tlog_line(ms + 15, ["services", "aws.greengrass.SecretManager", "runtime"], None,
                  "interiorAdded"),
    ]
    for name, (version, kind) in sorted(COMPONENTS.items()):
        lines.append(tlog_line(ms + 20, ["services", name, "version"], version))
        if kind == "aws.greengrass.plugin":
            lines.append(tlog_line(ms + 21, ["services", "main", "runtime", "service-digest",
                                             f"{name}-v{version}"], recipe_digest(recipe(name))))
    lines += variant_tlog(variants, ms)
    return "".join(lines)


def variant_tlog(variants: frozenset[str], ms: int) -> list[str]:
    lines = []
    if "fleet" in variants:
        # FleetProvisioningByClaimPlugin's configuration, as --init-config wrote it (AWS guide)
        fp = ["services", FP_NAME, "configuration"]
        for i, (key, value) in enumerate((
                ("provisioningTemplate", "GreengrassFleetTemplate"),
                ("claimCertificatePath", f"{ROOT}/claim-certs/claim.pem.crt"),
                ("claimCertificatePrivateKeyPath", f"{ROOT}/claim-certs/claim.private.pem.key"),
                ("rootCaPath", f"{ROOT}/AmazonRootCA1.pem"),
                ("iotDataEndpoint", "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"),
                ("iotCredentialEndpoint", "c1d2e3f4.credentials.iot.us-east-1.amazonaws.com"),
                ("iotRoleAlias", "GreengrassCoreTokenExchangeRoleAlias"),
                ("awsRegion", "us-east-1"),
                ("rootPath", ROOT))):
            lines.append(tlog_line(ms + 30 + i, [*fp, key], value))
        lines.append(tlog_line(ms + 40, [*fp, "templateParameters", "ThingName"], THING))
        lines.append(tlog_line(ms + 41, [*fp, "templateParameters", "ThingGroupName"], "Fleet"))
    if "cda" in variants:
        auth = ["services", "aws.greengrass.clientdevices.Auth"]
        lines.append(tlog_line(ms + 50, [*auth, "version"], "2.4.5"))
        lines.append(tlog_line(ms + 51, [*auth, "runtime", "ca_passphrase"], CA_PASSPHRASE))
        lines.append(tlog_line(ms + 52, [*auth, "runtime", "certificates", "authorities"],
                               ["-----BEGIN CERTIFICATE-----\nMIIGOLDENLOCALCA=\n"
                                "-----END CERTIFICATE-----\n"]))
    if "ota" in variants:  # the deployment that updated the nucleus: a newer value wins
        lines.append(tlog_line(ms + 60, ["services", "aws.greengrass.Nucleus", "version"],
                               NEW_NUCLEUS))
    if "old-secrets" in variants:
        lines.append(tlog_line(ms + 61, ["services", "aws.greengrass.SecretManager", "version"],
                               "2.1.3"))
    if "cloud-secrets" in variants:
        lines.append(tlog_line(ms + 62, ["services", "aws.greengrass.SecretManager",
                                         "configuration", "cloudSecrets"],
                               [{"arn": SECRET_ARN, "labels": ["AWSCURRENT"]}]))
    # a `removed` line without V, as the nucleus's own test resources have, keys reordered
    if "nucleus-tlog" in variants:
        lines.append('{"W":"removed","TP":["services","aws.greengrass.labs.HomeAssistant",'
                     f'"configuration","stale"],"TS":{ms + 70}}}\n')
    return lines


def effective_config() -> str:
    secret = json.dumps({"secrets": [{"encryptedSecretString": SECRET}]})
    return f"""---
services:
  aws.greengrass.labs.HomeAssistant:
    configuration:
      topic: "$aws/things/{THING}/shadow"
  aws.greengrass.Nucleus:
    configuration:
      awsRegion: "us-east-1"
    version: "{NUCLEUS}"
  aws.greengrass.SecretManager:
    runtime:
      secretResponse: {json.dumps(secret)}
    version: "2.1.8"
system:
  certificateFilePath: "{ROOT}/thingCert.crt"
  privateKeyPath: "{ROOT}/privKey.key"
  rootCaPath: "{ROOT}/rootCA.pem"
  rootpath: "{ROOT}"
  thingName: "{THING}"
"""


def jackson_effective_config(variants: frozenset[str]) -> str:
    """effectiveConfig.yaml as Kernel.writeEffectiveConfig writes it (Jackson YAMLMapper: a `---`
    header, quoted strings, literal blocks for multi-line values, folded long ones), with the
    deployment history that sits next to per-device keys."""
    secret = json.dumps({"secrets": [{"encryptedSecretString": SECRET}]})
    secret_block = f"""  aws.greengrass.SecretManager:
    runtime:
      secretResponse: {json.dumps(secret)}
    version: "2.1.8"
"""
    if "old-secrets" in variants:
        secret_block = f"""  aws.greengrass.SecretManager:
    secretResponse: {json.dumps(secret)}
    version: "2.1.3"
"""
    cda = ""
    if "cda" in variants:
        cda = f"""  aws.greengrass.clientdevices.Auth:
    runtime:
      ca_passphrase: "{CA_PASSPHRASE}"
      certificates:
        authorities:
        - "-----BEGIN CERTIFICATE-----\\nMIIGOLDENLOCALCA=\\n-----END CERTIFICATE-----\\n"
    version: "2.4.5"
"""
    fleet = ""
    root_ca = f"{ROOT}/AmazonRootCA1.pem" if "fleet" in variants else f"{ROOT}/rootCA.pem"
    if "fleet" in variants:
        fleet = f"""  {FP_NAME}:
    configuration:
      claimCertificatePath: "{ROOT}/claim-certs/claim.pem.crt"
      claimCertificatePrivateKeyPath: "{ROOT}/claim-certs/claim.private.pem.key"
      iotDataEndpoint: "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
      provisioningTemplate: "GreengrassFleetTemplate"
      rootCaPath: "{root_ca}"
      rootPath: "{ROOT}"
      templateParameters:
        ThingGroupName: "Fleet"
        ThingName: "{THING}"
"""
    arn = "arn:aws:greengrass:us-east-1:111122223333:configuration"
    return f"""---
services:
  DeploymentService:
    ComponentToGroups:
      aws.greengrass.labs.HomeAssistant:
        "{arn}:thing/{THING}:3": "thing/{THING}"
    GroupToLastDeployment:
      thing/{THING}:
        configurationArn: "{arn}:thing/{THING}:3"
        timestamp: 1718878001465
      thinggroup/Fleet:
        configurationArn: "{arn}:thinggroup/Fleet:5"
        timestamp: 1718878001466
    runtime:
      ProcessedDeployments:
        "1718878001467":
          DeploymentId: "3f2c8d4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
          DeploymentStatus: "SUCCEEDED"
  FleetStatusService:
    sequenceNumber: 4
{cda}{fleet}  aws.greengrass.Nucleus:
    configuration:
      awsRegion: "us-east-1"
      runWithDefault:
        posixUser: "ggc_user:ggc_group"
    version: "{NEW_NUCLEUS if "ota" in variants else NUCLEUS}"
{secret_block}  aws.greengrass.labs.HomeAssistant:
    configuration:
      accessControl:
        aws.greengrass.ipc.mqttproxy:
          policy1:
            operations:
            - "aws.greengrass#PublishToIoTCore"
            resources:
            - "$aws/things/{THING}/shadow"
      description: >-
        Home Assistant, run by Greengrass in a container on every device of the fleet; this
        text is long enough that the emitter folds it over lines
      topic: "$aws/things/{THING}/shadow"
    lifecycle:
      run: |-
        docker run --rm --name homeassistant \\
          -v /config:/config homeassistant/home-assistant:2024.6
    version: "1.0.0"
system:
  certificateFilePath: "{ROOT}/thingCert.crt"
  privateKeyPath: "{ROOT}/privKey.key"
  rootCaPath: "{root_ca}"
  rootpath: "{ROOT}"
  thingName: "{THING}"
"""


def recipe(name: str, version: str | None = None) -> bytes:
    version, kind = version or COMPONENTS[name][0], COMPONENTS[name][1]
    return (f"---\nRecipeFormatVersion: \"2020-01-25\"\nComponentName: \"{name}\"\n"
            f"ComponentVersion: \"{version}\"\nComponentType: \"{kind}\"\n"
            f"ComponentPublisher: \"AWS\"\n").encode()


def greengrass(s: Snapshot, variants: frozenset[str] = frozenset()) -> None:
    s.dir("/greengrass")
    s.dir(ROOT, 0o755)
    nucleus_dir = f"{ROOT}/packages/artifacts-unarchived/aws.greengrass.Nucleus/{NUCLEUS}/" \
        "aws.greengrass.nucleus"
    s.dir(f"{ROOT}/alts", 0o700)
    s.link(f"{ROOT}/alts/current", f"{ROOT}/alts/init")
    s.dir(f"{ROOT}/alts/init")
    s.link(f"{ROOT}/alts/init/distro", nucleus_dir)
    s.file(f"{ROOT}/alts/init/launch.params", "-Dlog.store=FILE")
    s.file(f"{ROOT}/alts/loader.pid", "4242\n")
    s.dir(f"{ROOT}/bin")
    s.dir(f"{ROOT}/cli_ipc_info")
    s.file(f"{ROOT}/cli_ipc_info/cli.json", '{"token":"golden-cli-token"}')
    s.dir(f"{ROOT}/config", 0o700)
    tlog = config_tlog(variants)
    for name in ("config.tlog", "config.tlog~", "bootstrap.tlog", "bootstrap.tlog~"):
        s.file(f"{ROOT}/config/{name}", tlog)
    effective = jackson_effective_config(variants) if "jackson" in variants \
        else effective_config()
    s.file(f"{ROOT}/config/effectiveConfig.yaml", effective)
    s.file(f"{ROOT}/config/effectiveConfig.yaml~", effective)
    s.dir(f"{ROOT}/deployments", 0o700)
    dep = f"{ROOT}/deployments/3f2c8d4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
    s.dir(dep, 0o700)
    s.file(f"{dep}/target_config.tlog", tlog)
    s.file(f"{dep}/deployment_metadata.json", '{"deploymentId":"3f2c8d4e"}')
    s.link(f"{ROOT}/deployments/previous-success", dep)
    s.dir(f"{ROOT}/logs", 0o700)
    s.file(f"{ROOT}/logs/greengrass.log", f"connected as {THING}\n" * 50)
    s.file(f"{ROOT}/logs/aws.greengrass.labs.HomeAssistant.log", "started\n")
    s.dir(f"{ROOT}/telemetry", 0o700)
    s.file(f"{ROOT}/telemetry/SystemMetrics.log", '{"CPU":3}\n')
    s.dir(f"{ROOT}/work", 0o755)
    s.dir(f"{ROOT}/work/aws.greengrass.labs.HomeAssistant", 0o700, 999, 999)
    s.file(f"{ROOT}/work/aws.greengrass.labs.HomeAssistant/state.db", b"\x00state", 0o600, 999,
           999)
    packages(s, nucleus_dir)
    s.dir(f"{ROOT}/plugins", 0o700)
    s.dir(f"{ROOT}/plugins/trusted", 0o755)
    s.dir(f"{ROOT}/plugins/untrusted", 0o755)
    s.file(f"{ROOT}/thingCert.crt", CERT)
    s.file(f"{ROOT}/privKey.key", PRIVATE_KEY, 0o600)
    s.file(f"{ROOT}/rootCA.pem", ROOT_CA)
    s.node(f"{ROOT}/ipc.socket", Kind.SOCKET, 0o666)
    greengrass_variants(s, variants, nucleus_dir)


def greengrass_variants(s: Snapshot, variants: frozenset[str], nucleus_dir: str) -> None:
    if "fleet" in variants:
        s.file(f"{ROOT}/plugins/trusted/{FP_NAME}.jar", b"PK\x03\x04fleetprovisioning" * 64)
        s.dir(f"{ROOT}/claim-certs", 0o700)
        s.file(f"{ROOT}/claim-certs/claim.pem.crt", CLAIM_CERT)
        s.file(f"{ROOT}/claim-certs/claim.private.pem.key", CLAIM_KEY, 0o600)
        s.file(f"{ROOT}/AmazonRootCA1.pem", AMAZON_ROOT_CA)
    if "cda" in variants:
        work = f"{ROOT}/work/aws.greengrass.clientdevices.Auth"
        s.dir(work, 0o700)
        s.file(f"{work}/ca.jks", CA_JKS, 0o600)
    if "ota" in variants:
        new_dir = nucleus_dir.replace(f"/{NUCLEUS}/", f"/{NEW_NUCLEUS}/")
        for folder in (f"{ROOT}/packages/artifacts/aws.greengrass.Nucleus/{NEW_NUCLEUS}",
                       new_dir.rsplit("/", 1)[0], new_dir, f"{new_dir}/bin", f"{new_dir}/lib"):
            s.dir(folder)
        s.file(f"{new_dir}/bin/loader", "#!/bin/sh\nexec java -jar Greengrass.jar\n", 0o555)
        s.file(f"{new_dir}/bin/greengrass.service", unit_2_14(), 0o555)
        s.file(f"{new_dir}/lib/Greengrass.jar", b"PK\x03\x04nucleus-2.14" * 512, 0o555)
        stem = f"{ROOT}/packages/recipes/{component_hash('aws.greengrass.Nucleus')}@{NEW_NUCLEUS}"
        s.file(f"{stem}.recipe.yaml", recipe("aws.greengrass.Nucleus", NEW_NUCLEUS))
        # the loader switched alts/current to the deployment's folder (KernelAlternatives)
        s.entries = [(e, d) for e, d in s.entries if e.path != f"{ROOT}/alts/current"]
        s.dir(f"{ROOT}/alts/{OTA_ALTS}")
        s.link(f"{ROOT}/alts/{OTA_ALTS}/distro", new_dir)
        s.file(f"{ROOT}/alts/{OTA_ALTS}/launch.params", "-Dlog.store=FILE")
        s.link(f"{ROOT}/alts/current", f"{ROOT}/alts/{OTA_ALTS}")


def unit_2_14() -> str:
    """greengrass.service.template of 2.14.3+ (commit 47c916d), interpolated by SystemdUtils."""
    return UNIT.replace(f"ExecStart=/bin/sh {ROOT}/alts/current/distro/bin/loader",
                        f'ExecStart=/bin/sh -c "exec {ROOT}/alts/current/distro/bin/loader '
                        f'>> {ROOT}/logs/loader.log 2>&1"')


def packages(s: Snapshot, nucleus_dir: str) -> None:
    s.dir(f"{ROOT}/packages")
    s.dir(f"{ROOT}/packages/artifacts")
    s.dir(f"{ROOT}/packages/artifacts-unarchived")
    s.dir(f"{ROOT}/packages/recipes", 0o700)
    for name, (version, kind) in sorted(COMPONENTS.items()):
        for area in ("artifacts", "artifacts-unarchived"):
            s.dir(f"{ROOT}/packages/{area}/{name}")
            s.dir(f"{ROOT}/packages/{area}/{name}/{version}")
        if kind == "aws.greengrass.plugin":
            s.file(f"{ROOT}/packages/artifacts/{name}/{version}/{name}.jar",
                   b"PK\x03\x04" + name.encode() * 40, 0o440)
        stem = f"{ROOT}/packages/recipes/{component_hash(name)}@{version}"
        s.file(f"{stem}.recipe.yaml", recipe(name))
        if name != "aws.greengrass.Nucleus":  # installed locally: no metadata (a warning)
            arn = f"arn:aws:greengrass:us-east-1:aws:components:{name}:versions:{version}"
            s.file(f"{stem}.metadata.json", json.dumps({"componentVersionArn": arn}))
    s.dir(nucleus_dir)
    for sub in ("bin", "lib", "conf"):
        s.dir(f"{nucleus_dir}/{sub}")
    s.file(f"{nucleus_dir}/bin/loader", "#!/bin/sh\nexec java -jar Greengrass.jar\n", 0o555)
    s.file(f"{nucleus_dir}/bin/greengrass.service", UNIT, 0o555)
    s.file(f"{nucleus_dir}/lib/Greengrass.jar", b"PK\x03\x04nucleus" * 512, 0o555)
    s.file(f"{nucleus_dir}/conf/recipe.yaml", recipe("aws.greengrass.Nucleus"), 0o555)


def systemd(s: Snapshot, variants: frozenset[str] = frozenset()) -> None:
    for path in ("/etc", "/etc/systemd", "/etc/systemd/system",
                 "/etc/systemd/system/multi-user.target.wants"):
        s.dir(path)
    unit = unit_2_14() if "ota" in variants else UNIT
    if "yocto" in variants:
        # meta-aws greengrass-bin: ${systemd_unitdir}/system/greengrass.service, only the
        # .wants link in /etc
        for path in ("/lib", "/lib/systemd", "/lib/systemd/system"):
            s.dir(path)
        s.file("/lib/systemd/system/greengrass.service", unit)
        s.link("/etc/systemd/system/multi-user.target.wants/greengrass.service",
               "/lib/systemd/system/greengrass.service")
    else:
        s.file("/etc/systemd/system/greengrass.service", unit)
        s.link("/etc/systemd/system/multi-user.target.wants/greengrass.service",
               "/etc/systemd/system/greengrass.service")
    if "users" in variants:
        s.file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
               "ggc_user:x:998:998::/home/ggc_user:/bin/sh\n")
        s.file("/etc/group", "root:x:0:\nggc_group:x:998:ggc_user\n")


def docker(s: Snapshot, layers: int, files_per_layer: int, rng: random.Random,
           docker_mib: int | None = None) -> None:
    base = "/var/lib/docker"
    for path in ("/var", "/var/lib", base, f"{base}/overlay2", f"{base}/image",
                 f"{base}/image/overlay2", f"{base}/containers", f"{base}/tmp",
                 f"{base}/network", f"{base}/network/files", f"{base}/runtimes",
                 f"{base}/buildkit", f"{base}/swarm", f"{base}/volumes"):
        s.dir(path, 0o710 if path == base else 0o755)
    s.file(f"{base}/engine-id", "f6b5a1c2-golden-engine-id\n", 0o600)
    s.file(f"{base}/network/files/local-kv.db", b"\x00bolt" * 100, 0o644)
    s.dir(f"{base}/containers/3c5e7f", 0o710)
    s.file(f"{base}/containers/3c5e7f/config.v2.json", f'{{"Hostname":"{THING}"}}')
    s.file(f"{base}/image/overlay2/repositories.json",
           '{"Repositories":{"homeassistant/home-assistant":{}}}')
    s.file(f"{base}/volumes/metadata.db", b"\x00bolt" * 10, 0o600)
    for layer in range(layers):
        lid = f"{layer:02d}" + "a" * 62
        ldir = f"{base}/overlay2/{lid}"
        s.dir(ldir, 0o710)
        s.file(f"{ldir}/link", f"L{layer:025d}")
        s.dir(f"{ldir}/diff")
        s.dir(f"{ldir}/diff/usr")
        s.dir(f"{ldir}/diff/usr/bin")
        if docker_mib is not None:
            shaped_layer(s, ldir, layer, layers, files_per_layer, docker_mib)
        for i in range(files_per_layer if docker_mib is None else 0):
            size = rng.choice((0, 17, 600, 4096, 5000, 40000))
            s.file(f"{ldir}/diff/usr/bin/tool{i:05d}", rng.randbytes(size), 0o755, 100000,
                   100000, mtime=T0 - 1000 - i)
        if layer == 0:
            s.file(f"{ldir}/diff/usr/bin/su", b"\x7fELFsu" * 100, 0o4755)
            s.hardlink(f"{ldir}/diff/usr/bin/su-again", f"{ldir}/diff/usr/bin/su", 0o4755)
            s.file(f"{ldir}/diff/usr/bin/ping", b"\x7fELFping" * 50, 0o755,
                   xattrs=(("security.capability",
                            bytes.fromhex("0100000200200000000000000000000000000000")),))
        else:
            s.node(f"{ldir}/diff/usr/bin/removed-tool", Kind.CHAR, 0o000, (0, 0))  # a whiteout
            s.dir(f"{ldir}/diff/etc", xattrs=(("trusted.overlay.opaque", b"y"),))
        s.file(f"{ldir}/lower", f"l/L{max(layer - 1, 0):025d}")
    s.dir(f"{base}/overlay2/l", 0o700)
    for layer in range(layers):
        s.link(f"{base}/overlay2/l/L{layer:025d}", f"../{layer:02d}{'a' * 62}/diff")


def shaped_layer(s: Snapshot, ldir: str, layer: int, layers: int, files: int, mib: int) -> None:
    """One layer of a Docker-store-shaped snapshot: `files` files in package-like folders,
    sized like an image layer (log-normal small files, a few large ones), so that all layers
    together hold about `mib` MiB."""
    rng = random.Random(1000 + layer)
    budget = (mib << 20) // layers
    sizes = [min(int(rng.lognormvariate(7.6, 1.6)), 1 << 20) for _ in range(files)]
    large = 0
    while sum(sizes) < budget and large < files:
        # the biggest files of a layer (shared libraries, models, jars): 1 to 48 MiB
        big = min(rng.randint(1 << 20, 48 << 20), budget - sum(sizes) + 4096)
        sizes[rng.randrange(files)] = max(big, 0)
        large += 1
    lib = f"{ldir}/diff/usr/lib/python3/site-packages"
    s.dir(f"{ldir}/diff/usr/lib")
    s.dir(f"{ldir}/diff/usr/lib/python3")
    s.dir(lib)
    made: set[str] = set()
    for i, size in enumerate(sizes):
        folder = f"{lib}/pkg{i // 50:03d}/mod{(i // 10) % 5}"  # 10 files a folder
        for d in (folder.rsplit("/", 1)[0], folder):
            if d not in made:
                made.add(d)
                s.dir(d)
        mode = 0o755 if i % 11 == 0 else 0o644
        s.lazy_file(f"{folder}/file{i:05d}.py", size, rng.randrange(POOL_SIZE), mode,
                    100000, 100000, mtime=T0 - 1000 - i)


def app(s: Snapshot) -> None:
    s.dir("/opt")
    s.dir("/opt/app")
    s.file("/opt/app/run.sh", "#!/bin/sh\necho app\n", 0o755)
    s.file("/opt/app/.env", "MODE=production\n", 0o640)
    s.file("/opt/app/app.log", "old log\n")
    s.dir("/opt/app/cache")
    s.file("/opt/app/cache/blob", b"\x00" * 100)
    s.dir("/opt/app/releases")
    s.dir("/opt/app/releases/1")
    s.file("/opt/app/releases/1/app.bin", b"\x7fELFapp" * 200, 0o755)


def make(out: Path, shuffle: int | None, layers: int, files_per_layer: int,
         docker_mib: int | None = None, variants: frozenset[str] = frozenset()) -> None:
    rng = random.Random(1)
    s = Snapshot()
    greengrass(s, variants)
    systemd(s, variants)
    docker(s, layers, files_per_layer, rng, docker_mib)
    app(s)
    items = s.entries
    if shuffle is not None:
        items = _shuffled(items, random.Random(shuffle))
    # tar cannot hold sockets (GNU tar skips them too), so a snapshot archive has no ipc.socket
    items = [i for i in items if i[0].kind is not Kind.SOCKET]
    write_snapshot(out, items)


def _shuffled(items: list[tuple[Entry, object]], rng: random.Random) -> list[tuple[Entry, object]]:
    """Another member order giving the same tree. A hard link must follow the member that holds
    its data, so each link group is turned around instead: its sorted-last name holds the data
    and the other names link to it, as an archive made in another directory order would have it
    (the canonical order of the output must not depend on which name came first)."""
    by_path = {entry.path: (entry, data) for entry, data in items}
    groups: dict[str, list[str]] = {}
    for entry, _ in items:
        if entry.kind is Kind.HARDLINK and entry.target is not None:
            groups.setdefault(entry.target, [entry.target]).append(entry.path)
    turned: dict[str, tuple[Entry, object]] = {}
    links: list[tuple[Entry, object]] = []
    for target, names in groups.items():
        file, data = by_path[target]
        holder = max(names)
        turned[holder] = (replace(file, path=holder), data)
        for name in names:
            if name != holder:
                links.append((replace(by_path[name][0], path=name, kind=Kind.HARDLINK,
                                      target=holder, content=None), None))
    grouped = {name for names in groups.values() for name in names}
    rest = [turned.get(entry.path, (entry, data)) for entry, data in items
            if entry.path not in grouped or entry.path in turned]
    rng.shuffle(rest)
    return rest + links


def write_snapshot(out: Path, items: list[tuple[Entry, object]]) -> None:
    """A pax archive (gzip-compressed for .gz) as GNU tar --xattrs --numeric-owner would write
    it, by Python's tarfile; the gzip header carries no name and no time, so equal arguments
    give equal bytes."""
    with open(out, "wb") as raw:
        packed: BinaryIO = raw
        if out.name.endswith(".gz"):
            packed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,  # type: ignore[assignment]
                                   compresslevel=6)
        with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT,
                          encoding="utf-8") as tar:
            for entry, data in items:
                stream = _stream(data)
                tar.addfile(_tarinfo(entry), stream)
        if packed is not raw:
            packed.close()


_TYPES = {Kind.FILE: tarfile.REGTYPE, Kind.DIR: tarfile.DIRTYPE, Kind.SYMLINK: tarfile.SYMTYPE,
          Kind.HARDLINK: tarfile.LNKTYPE, Kind.CHAR: tarfile.CHRTYPE,
          Kind.BLOCK: tarfile.BLKTYPE, Kind.FIFO: tarfile.FIFOTYPE}


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo("./" + entry.path.lstrip("/"))  # as `tar -C / -c ./...` names them
    info.type = _TYPES[entry.kind]
    info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
    info.uname = info.gname = ""
    seconds, ns = divmod(entry.mtime_ns, 10**9)
    info.mtime = seconds
    pax: dict[str, str] = {}
    if ns:
        pax["mtime"] = f"{seconds}.{ns:09d}"
    for name, value in entry.xattrs:  # GNU tar's and bsdtar's record for an xattr
        pax[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = pax
    if entry.kind is Kind.FILE and entry.content is not None:
        info.size = entry.content.size
    elif entry.kind is Kind.HARDLINK and entry.target is not None:
        info.linkname = "./" + entry.target.lstrip("/")
    elif entry.kind is Kind.SYMLINK and entry.target is not None:
        info.linkname = entry.target
    elif entry.kind in (Kind.CHAR, Kind.BLOCK):
        info.devmajor, info.devminor = entry.rdev
    return info


def _stream(data: object) -> BinaryIO | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        return io.BytesIO(data)
    return data()  # type: ignore[operator, no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--shuffle", type=int, help="shuffle member order with this seed")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--files-per-layer", type=int, default=20)
    parser.add_argument("--docker-mib", type=int,
                        help="Docker-store-shaped file sizes, about this many MiB in the layers")
    parser.add_argument("--variant", action="append", choices=VARIANTS, default=[],
                        help="add a real-device case (repeatable); see the module's docstring")
    parser.add_argument("--print-secrets", action="store_true",
                        help="print the planted secret strings, one per line, and exit")
    args = parser.parse_args()
    if args.print_secrets:
        # the thing name is identity, not a secret: it may remain in values the report names
        secrets = [SECRET, PRIVATE_KEY.splitlines()[1], "MIIDGOLDENTHINGCERT",
                   "golden-engine-id", "golden-cli-token"]
        if "cda" in args.variant:  # the claim certificate and key are shared: they must ship
            secrets += [CA_PASSPHRASE, "GOLDENLOCALCAKEYSTORE", "MIIGOLDENLOCALCA"]
        print("\n".join(secrets))
        return
    if args.out is None:
        parser.error("OUT is required")
    make(args.out, args.shuffle, args.layers, args.files_per_layer, args.docker_mib,
         frozenset(args.variant))


if __name__ == "__main__":
    main()
