"""The Greengrass golden-image rules (docs/greengrass.md §11): keep what a device needs, drop
what is ephemeral, remove the golden device's secrets and identity from every copy of the
configuration, and check that the nucleus will start from the result."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import posixpath
from dataclasses import dataclass, replace
from typing import Any

import yaml

from composer.layout.model import KNOWN_DIRS, Greengrass, IdentityPolicy, SecretsPolicy
from composer.rules.assembly import Assembly
from composer.rules.tlog import (
    Key,
    drop_lines,
    effective,
    parse_tlog,
    under,
    yaml_problem,
    yaml_values,
)
from composer.rules.yamlcut import YamlCutError, cut, keys
from composer.tree import Content, Entry, Kind, is_under, norm
from composer.types import Claim

EPHEMERAL_DIRS = ("deployments", "logs", "telemetry", "work")  # may hold the thing name
SEARCH_LIMIT = 64 << 20  # bytes of one kept log or work file searched for the thing name
TLOGS = ("config.tlog", "config.tlog~", "bootstrap.tlog", "bootstrap.tlog~")  # the nucleus's order
EFFECTIVE = ("effectiveConfig.yaml", "effectiveConfig.yaml~")
# config/config.yaml (or .yml) is the nucleus's fallback (and --init-config's default): it may
# hold the same keys, often a copy of effectiveConfig.yaml (docs/greengrass.md §6)
INIT_CONFIGS = ("config.yaml", "config.yml")
SNAPSHOT_TLOGS = ("target_config.tlog", "rollback_snapshot.tlog")
# Config keys that hold a secret of the golden device, with why (README "The rules")
SECRET_TABLE: tuple[tuple[Key, str], ...] = (
    (("services", "aws.greengrass.secretmanager", "runtime", "secretresponse"),
     "SecretManager's local store, encrypted with the golden device's key "
     "(secret-manager store/FileSecretStore.java)"),
    (("services", "aws.greengrass.secretmanager", "secretresponse"),
     "the same store before SecretManager 2.1.4"),
    (("services", "aws.greengrass.clientdevices.auth", "runtime", "ca_passphrase"),
     "the passphrase of client device auth's local CA keystore "
     "(client-device-auth configuration/RuntimeConfiguration.java)"),
    (("services", "aws.greengrass.clientdevices.auth", "runtime", "certificates"),
     "client device auth's local CA certificates, which go with that keystore"),
)
SECRET_KEYS: tuple[Key, ...] = tuple(k for k, _ in SECRET_TABLE)
# Files under the root that hold a device's private material (patterns relative to the root)
SECRET_FILES: tuple[tuple[str, str], ...] = (
    ("work/aws.greengrass.clientdevices.Auth/*", "client device auth's CA keystore (ca.jks)"),
    ("work/*/*.jks", "a Java keystore"),
    ("work/*/*.p12", "a PKCS#12 keystore"),
    ("work/*/*.pfx", "a PKCS#12 keystore"),
    ("work/*/*.key", "a private key"),
    ("work/aws.greengrass.labs.CertificateRotator/*.bak",
     "the certificate rotator's copy of the device key or certificate (pki_file.py)"),
)
THING_NAME: Key = ("system", "thingname")
IDENTITY_KEYS: tuple[Key, ...] = (
    THING_NAME,
    ("setenv", "aws_iot_thing_name"),
    ("services", "deploymentservice", "runtime", "processeddeployments"),
)
# The files that are the device's identity (DeviceConfiguration), and where the fleet
# provisioning plugin writes a new one (FleetProvisioningByClaimPlugin: certPath, keyPath)
IDENTITY_FILES: tuple[tuple[Key, str], ...] = (
    (("system", "privatekeypath"), "private key (system.privateKeyPath)"),
    (("system", "certificatefilepath"), "certificate (system.certificateFilePath)"),
)
FP_NAME = "aws.greengrass.FleetProvisioningByClaim"
FP: Key = ("services", FP_NAME.lower(), "configuration")
FP_REQUIRED = ("provisioningTemplate", "claimCertificatePath", "claimCertificatePrivateKeyPath",
               "rootCaPath", "iotDataEndpoint", "rootPath")
FP_FILES = ("claimCertificatePath", "claimCertificatePrivateKeyPath", "rootCaPath", "csrPath",
            "csrPrivateKeyPath")
FP_OUTPUTS = (("certPath", "thingCert.crt"), ("keyPath", "privKey.key"))
STRAY = ("alts/loader.pid", "config/config.tlog+", "config/config.tlog.old")
UPDATE_LINKS = ("old", "new", "broken")


def component_hash(name: str) -> str:
    """base64url-without-padding(sha256(name)): the recipe file name prefix (§3)."""
    digest = hashlib.sha256(name.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def recipe_digest(data: bytes) -> str:
    """Standard base64 (with padding) of sha256: the plugin tamper check value (§3)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass(frozen=True, slots=True)
class ConfigFile:
    path: str  # device path
    entry: Entry
    data: bytes


@dataclass(frozen=True, slots=True)
class RootPolicy:
    """What the golden configuration says about files at the root (relative paths)."""

    identity: dict[str, str]  # the device's identity files -> what each is
    referenced: dict[str, str]  # paths named by kept configuration -> the key naming them
    folders: frozenset[str]  # folders that hold one of the above, kept for them


class GreengrassRule:
    def __init__(self, spec: Greengrass, asm: Assembly) -> None:
        self.spec = spec
        self.asm = asm
        self.root = spec.to
        self.claim = Claim("greengrass", spec.loc, from_source=True)
        self.thing_name: str | None = None
        self.config: dict[Key, Any] = {}
        self.spelling: dict[Key, str] = {}  # each config key as the golden device wrote it
        self.config_file = ""  # the copy the nucleus would read
        self.policy = RootPolicy({}, {}, frozenset())
        self.identity_traces: list[str] = []  # for identity: fail
        self.secret_traces: list[str] = []  # secret files, for secrets: fail

    def rel(self, path: str) -> str:
        return path[len(self.root):].lstrip("/")

    def at(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    def spelled(self, key: Key) -> str:
        return self.spelling.get(key, ".".join(key))

    def device_rel(self, value: object) -> str | None:
        """The path relative to the root that a config value names, or None. A relative path is
        resolved from the root (the nucleus resolves its file settings against rootPath)."""
        if not isinstance(value, str) or not value or "\n" in value:
            return None
        if value.startswith("file://"):  # a file: URI (PKCS#11 setups use them)
            value = value[len("file://"):]
        device = norm(value) if value.startswith("/") else norm(self.at(value))
        if not is_under(device, self.root) or device == self.root:
            return None
        return self.rel(device)

    # --- placement -----------------------------------------------------------------------

    def apply(self) -> None:
        top = self.asm.lookup(self.spec.src, "greengrass.from")
        if top is None:
            return
        if top.kind is not Kind.DIR:
            self.asm.error(f"{self.spec.src} is not a folder", self.spec.src.loc,
                           path="greengrass.from")
            return
        self._read_golden_config()
        self.policy = self._root_policy()
        keep = self._keep_set()
        self.asm.copy(self.spec.src, self.root, self.claim, keep=lambda rel, e: self._keep(
            rel, e, keep))
        self._sanitize()

    def _read_golden_config(self) -> None:
        """The configuration the nucleus would load: the first valid tlog in the order
        KernelLifecycle.initConfigAndTlog tries them, else config/config.yaml."""
        entries = self.asm.sources[self.spec.src.source].entries
        found: list[tuple[str, Content]] = []
        for name in TLOGS + INIT_CONFIGS:
            entry = entries.get(posixpath.join(self.spec.src.path, "config", name))
            if entry is not None and entry.kind is Kind.FILE and entry.content is not None:
                found.append((name, entry.content))
        data = self.asm.read_small(c for _, c in found)
        for name, content in found:
            raw = data[content]
            if name in TLOGS and raw and not parse_tlog(raw)[1]:
                lines = parse_tlog(raw)[0]
                self.config = effective(lines)
                self.spelling = {line.key: ".".join(line.path) for line in lines}
            elif name in INIT_CONFIGS and yaml_problem(raw) is None:
                self.config = {_lower(p): v for p, v in yaml_values(raw)}
                self.spelling = {_lower(p): ".".join(p) for p, _ in yaml_values(raw)}
            else:
                continue
            self.config_file = self.at(f"config/{name}")
            break
        name = self.config.get(THING_NAME)
        self.thing_name = name if isinstance(name, str) and name else None
        if self.thing_name:  # file names and keys may carry it too; the report is an output
            self.asm.report.mask(self.thing_name, "<thingName>")

    def _root_policy(self) -> RootPolicy:
        identity: dict[str, str] = {}
        for key, what in IDENTITY_FILES:
            if (rel := self.device_rel(self.config.get(key))) is not None:
                identity[rel] = what
        fp = self._fleet_config()
        for name, default in FP_OUTPUTS:
            rel = self.device_rel(fp.get(name.lower(), self.at(default))) if fp else None
            if rel is not None and rel not in identity:
                identity[rel] = f"identity file ({'.'.join(FP)}.{name})"
        referenced: dict[str, str] = {}
        for key, value in sorted(self.config.items()):
            rel = self.device_rel(value) if isinstance(value, str) and \
                value.startswith(("/", "file://")) or key[-1].endswith("path") else None
            if rel is None or rel in identity or self._doomed_key(key) or key == ("system",
                                                                                   "rootpath"):
                continue
            referenced.setdefault(rel, self.spelled(key))
        folders = {posixpath.dirname(rel) for rel in (*identity, *referenced)}
        for rel in list(folders):
            while rel:
                folders.add(rel)
                rel = posixpath.dirname(rel)
        folders.discard("")
        return RootPolicy(identity, referenced, frozenset(folders))

    def _keep_set(self) -> set[str]:
        keep = set(self.spec.keep)
        if not self.spec.keep_given:
            plugins = posixpath.join(self.spec.src.path, "plugins")
            has_any = any(e.kind is not Kind.DIR and e.path.startswith(plugins + "/")
                          for e in self.asm.source_subtree(self.spec.src))
            if has_any:
                keep.add("plugins")
        return keep

    def _keep(self, rel: str, entry: Entry, keep: set[str]) -> bool:
        """The root-file policy (README "The rules"): every decision is reported."""
        top = rel.split("/", 1)[0]
        where = self.at(rel)
        what = "folder" if entry.kind is Kind.DIR else entry.kind.value
        if rel in STRAY or entry.kind is Kind.SOCKET:
            self.asm.report.dropped(f"{where} (left behind by a running nucleus)")
            return False
        if rel in self.policy.identity:
            return self._identity_file(where, self.policy.identity[rel])
        if top in KNOWN_DIRS and not (rel == top and entry.kind is not Kind.DIR):
            if top not in keep:
                self._dropped_but_named(rel)
                self.asm.report.dropped(f"{where} ({what}, not in greengrass.keep)")
                return False
            return self._secret_file(rel, where)
        named = self._named_by(rel)
        if named is not None:
            self.asm.report.kept(f"{where} ({what}, named by {named} in the configuration)")
            return True
        if rel in self.policy.folders and entry.kind is Kind.DIR:
            self.asm.report.kept(f"{where} (folder of a file the configuration names)")
            return True
        self.asm.report.dropped(f"{where} ({what}, not a Greengrass folder and not named by the "
                                "configuration; a files: entry can add it)")
        return False

    def _named_by(self, rel: str) -> str | None:
        for path, key in self.policy.referenced.items():
            if rel == path or rel.startswith(path + "/"):
                return key
        return None

    def _dropped_but_named(self, rel: str) -> None:
        for path, key in self.policy.referenced.items():
            if path == rel or path.startswith(rel + "/"):
                self.asm.report.warn(f"{self.at(path)} is named by {key} but "
                                     f"{rel.split('/', 1)[0]} is not in greengrass.keep")

    def _identity_file(self, where: str, what: str) -> bool:
        if self.spec.identity is IdentityPolicy.KEEP:
            self.asm.report.kept(f"{where} (the golden device's {what}, identity: keep)")
            return True
        if self.spec.identity is IdentityPolicy.FAIL:
            self.identity_traces.append(f"{where} (the golden device's {what})")
            return False
        self.asm.report.dropped(f"{where} (the golden device's {what})")
        return False

    def _secret_file(self, rel: str, where: str) -> bool:
        why = next((why for pattern, why in SECRET_FILES if fnmatch.fnmatchcase(rel, pattern)),
                   None)
        if why is None:
            return True
        if self.spec.secrets is SecretsPolicy.KEEP:
            self.asm.report.warn(f"{where}: kept {why} of the golden device (secrets: keep)")
            return True
        if self.spec.secrets is SecretsPolicy.FAIL:
            self.secret_traces.append(f"{where} ({why})")
            return False
        self.asm.report.dropped(f"{where} ({why} of the golden device)")
        return False

    # --- sanitizing the configuration ----------------------------------------------------

    def _config_files(self) -> list[ConfigFile]:
        names = [f"config/{n}" for n in TLOGS + EFFECTIVE + INIT_CONFIGS]
        names += [e.path for e in self.asm.tree.below(self.at("deployments"))
                  if posixpath.basename(e.path) in SNAPSHOT_TLOGS]
        found = []
        for name in names:
            path = name if name.startswith("/") else self.at(name)
            entry = self.asm.tree.get(path)
            if entry is not None and entry.kind is Kind.FILE and entry.content is not None:
                found.append((path, entry))
        data = self.asm.read_small(e.content for _, e in found if e.content is not None)
        return [ConfigFile(p, e, data[e.content]) for p, e in found if e.content is not None]

    def _sanitize(self) -> None:
        files = self._config_files()
        if self.asm.tree.get(self.at("config/config.tlog")) is None:
            fallback = self.config_file or "bootstrap.tlog or config.yaml"
            self.asm.report.warn(f"{self.at('config/config.tlog')} is missing: the nucleus will "
                                 f"fall back to {fallback}")
        self._check_tlogs(files)
        self._check_yaml(files)
        secrets = self._secret_findings(files)
        self._apply_secret_policy(secrets)
        files = [self._rewrite(file) for file in files]
        self._report_leftover_thing_name(files)
        self._report_thing_name_in_kept_files()
        if self.spec.identity is IdentityPolicy.FAIL and self.identity_traces:
            # errors are printed: the name itself is masked like in the report
            traces = "; ".join(self.identity_traces).replace(self.thing_name or "\0",
                                                             "<thingName>")
            self.asm.error(f"the snapshot holds the golden device's identity: {traces}",
                           self.spec.loc,
                           path="greengrass.identity",
                           hint="use 'identity: strip' to remove it (each device then needs "
                           "its own identity, e.g. from fleet provisioning)")

    def _check_tlogs(self, files: list[ConfigFile]) -> None:
        for file in files:
            if not file.path.endswith(".tlog") and not file.path.endswith(".tlog~"):
                continue
            if not file.data:  # ConfigurationReader.validateTlog: an empty file is invalid
                self.asm.report.warn(f"{file.path} is empty, which the nucleus treats as "
                                     "invalid (it falls back to the next copy)")
            for number, problem in parse_tlog(file.data)[1]:
                self.asm.error(f"{file.path} line {number}: {problem}", self.spec.loc,
                               path="greengrass",
                               hint="the nucleus refuses a tlog with any bad line; "
                               "fix or remove it in the snapshot")

    def _check_yaml(self, files: list[ConfigFile]) -> None:
        """A YAML copy of the configuration that does not parse cannot be checked for secrets or
        identity, so it cannot pass silently."""
        for file in files:
            if _is_yaml(file.path) and (problem := yaml_problem(file.data)) is not None:
                self.asm.error(f"{file.path} is not valid YAML ({problem}), so it cannot be "
                               "checked for secrets and identity", self.spec.loc,
                               path="greengrass", hint="fix or delete the broken file in the "
                               "snapshot (the nucleus never reads effectiveConfig.yaml)")

    def _secret_findings(self, files: list[ConfigFile]) -> list[tuple[str, str]]:
        found = []
        for file in files:
            if _is_yaml(file.path):
                names = [".".join(k.path) for k in keys(file.data)
                         if _lower(k.path) in SECRET_KEYS]
            else:
                names = [".".join(line.path) for line in parse_tlog(file.data)[0]
                         if _is_secret(line.key) and line.action == "changed"]
            found += [(file.path, key) for key in dict.fromkeys(names)]
        return found

    def _apply_secret_policy(self, secrets: list[tuple[str, str]]) -> None:
        listing = [f"{path}: {key}" for path, key in secrets] + self.secret_traces
        if not listing:
            return
        if self.spec.secrets is SecretsPolicy.FAIL:
            self.asm.error(f"the snapshot holds the golden device's secrets: {'; '.join(listing)}",
                           self.spec.loc, path="greengrass.secrets",
                           hint="use 'secrets: strip' to remove them (they belong to the golden "
                           "device and are useless or dangerous on others)")
        elif self.spec.secrets is SecretsPolicy.KEEP:
            for path, key in secrets:
                self.asm.report.warn(f"{path}: kept secret {key} (secrets: keep)")

    def _doomed_key(self, key: Key) -> bool:
        if self.spec.secrets is SecretsPolicy.STRIP and _is_secret(key):
            return True
        if self.spec.identity is IdentityPolicy.STRIP:
            if any(under(key, k) for k in IDENTITY_KEYS):
                return True
            group = f"thing/{self.thing_name}".lower() if self.thing_name else None
            return group is not None and key[:2] == ("services", "deploymentservice") \
                and group in key
        return False

    def _rewrite(self, file: ConfigFile) -> ConfigFile:
        """The file without the doomed keys (put in the tree too, and reported)."""
        if not _is_yaml(file.path):
            data, gone = drop_lines(file.data, lambda line: self._doomed_key(line.key))
            removed = sorted({".".join(line.path) for line in gone})
        elif yaml_problem(file.data) is not None:
            return file  # already an error (_check_yaml)
        else:
            try:
                data, paths = cut(file.data, self._doomed_key)
            except (YamlCutError, yaml.YAMLError, UnicodeDecodeError) as exc:
                self.asm.error(f"{file.path}: the secrets and identity cannot be cut out safely: "
                               f"{exc}", self.spec.loc, path="greengrass",
                               hint="rewrite the file in the nucleus's own style (or delete it: "
                               "the nucleus never reads effectiveConfig.yaml)")
                return file
            removed = [".".join(p) for p in paths]
        if data == file.data:
            return file
        for key in removed:
            self.asm.report.changed(f"{file.path}: removed {key}")
        entry = replace(file.entry, content=Content.of_bytes(data))
        self.asm.tree.put(entry)
        return ConfigFile(file.path, entry, data)

    def _report_leftover_thing_name(self, files: list[ConfigFile]) -> None:
        if not self.thing_name:
            return
        for file in files:
            name = self.thing_name
            if _is_yaml(file.path):
                hits = [".".join(p) for p, v in yaml_values(file.data)
                        if (isinstance(v, str) and name in v) or any(name in k for k in p)]
            else:
                hits = [".".join(line.path) for line in parse_tlog(file.data)[0]
                        if name in json.dumps(line.value, ensure_ascii=False)
                        or any(name in k for k in line.path)]
            for key in dict.fromkeys(hits):
                self._identity_trace(f"{file.path}: {key}", "still contains the golden "
                                     "device's thing name (system.thingName)")

    def _report_thing_name_in_kept_files(self) -> None:
        """Logs, telemetry, work and deployments are device history: when kept, every file that
        names the golden device is reported (they cannot be edited the way a config is)."""
        if not self.thing_name:
            return
        name = self.thing_name.encode()
        entries = [e for d in EPHEMERAL_DIRS for e in self.asm.tree.below(self.at(d))
                   if e.kind is Kind.FILE and e.content is not None
                   and posixpath.basename(e.path) not in SNAPSHOT_TLOGS]
        for entry in [e for e in entries if e.size > SEARCH_LIMIT]:
            # read into memory to search: a database of gigabytes is named instead
            self.asm.report.warn(f"{entry.path} ({entry.size >> 20} MiB) was not searched for "
                                 "the golden device's thing name")
        entries = [e for e in entries if e.size <= SEARCH_LIMIT]
        data = self.asm.read_small(e.content for e in entries if e.content is not None)
        for entry in entries:
            assert entry.content is not None
            if name in data[entry.content]:
                self._identity_trace(entry.path, "contains the golden device's thing name")

    def _identity_trace(self, where: str, what: str) -> None:
        if self.spec.identity is IdentityPolicy.FAIL:
            self.identity_traces.append(where)
        else:
            self.asm.report.warn(f"{where} {what}")

    def _fleet_config(self) -> dict[str, Any]:
        """services.aws.greengrass.FleetProvisioningByClaim.configuration, keys lower-cased."""
        return {".".join(k[len(FP):]): v for k, v in self.config.items() if under(k, FP)}

    def _fleet_key(self, name: str) -> str:
        """A plugin setting's dotted key as written (`name` as FleetProvisioningByClaimPlugin
        spells it when the configuration does not have it)."""
        key = (*FP, *name.lower().split("."))
        spelled = self.spelling.get(key)
        return spelled if spelled else f"services.{FP_NAME}.configuration.{name}"

    # --- checks on the finished device tree ----------------------------------------------

    def check(self) -> None:
        if self.asm.tree.get(self.root) is None:
            return
        self._check_alts()
        recipes = self._check_recipes()
        self._check_plugin_digests(recipes)
        rootpath = self.config.get(("system", "rootpath"))
        # stored verbatim (KernelCommandLine), so "/greengrass/v2/" and "//greengrass/v2" are the
        # same folder: compare paths, not strings
        if rootpath is not None and (not isinstance(rootpath, str) or not rootpath.startswith("/")
                                     or norm(rootpath) != self.root):
            self.asm.error(f"system.rootpath in config.tlog is {rootpath!r} but greengrass.to is "
                           f"{self.root!r}", self.spec.loc, path="greengrass.to",
                           hint="the nucleus re-roots itself to system.rootpath; install it at "
                           "the same path as on the golden device")
        self._check_fleet_provisioning()
        self._check_users()

    def _will_provision(self) -> bool:
        """The nucleus runs provisioning plugins only while the device is not configured to
        talk to the cloud (DeviceConfiguration.isDeviceConfiguredToTalkToCloud): here, when the
        thing name is gone."""
        return self.spec.identity is IdentityPolicy.STRIP or not self.thing_name

    def _check_fleet_provisioning(self) -> None:
        fp = self._fleet_config()
        jars = [e.path for e in self.asm.tree.below(self.at("plugins/trusted"))
                if e.kind is Kind.FILE and e.path.endswith(".jar")
                and "fleetprovisioning" in posixpath.basename(e.path).lower()]
        if not self._will_provision():
            return
        if not fp and not jars:
            if self.thing_name:
                self.asm.report.warn("the device has no identity after identity: strip and no "
                                     "fleet provisioning plugin: it will not connect to AWS IoT "
                                     "until it is provisioned some other way")
            return
        where = f"services.{FP_NAME}.configuration"
        if fp and not jars:
            self.asm.error(f"{where} is set but {self.at('plugins/trusted')} holds no "
                           "FleetProvisioningByClaim jar, so the device cannot provision",
                           self.spec.loc, path="greengrass.keep",
                           hint="keep plugins (greengrass.keep) and the plugin jar in the "
                           "snapshot")
        if jars and not fp:
            self.asm.error(f"{jars[0]} is in the image but {where} is not in the "
                           "configuration, so the plugin cannot run", self.spec.loc,
                           path="greengrass", hint="provision the golden device with the "
                           "plugin's configuration (config.yaml with --init-config)")
            return
        for name in FP_REQUIRED:
            if fp.get(name.lower()) in (None, ""):
                self.asm.error(f"{self._fleet_key(name)} is missing: the fleet provisioning plugin "
                               "needs it", self.spec.loc, path="greengrass",
                               hint="FleetProvisioningByClaimPlugin requires provisioningTemplate, "
                               "claimCertificatePath, claimCertificatePrivateKeyPath, rootCaPath, "
                               "iotDataEndpoint and rootPath")
        root_path = fp.get("rootpath")
        if isinstance(root_path, str) and root_path and norm(root_path) != self.root:
            self.asm.error(f"{self._fleet_key('rootPath')} is {root_path!r} but greengrass.to is "
                           f"{self.root!r}", self.spec.loc, path="greengrass.to",
                           hint="the plugin writes the new identity under rootPath")
        needed = [(self._fleet_key(name), fp.get(name.lower())) for name in FP_FILES]
        needed.append((self.spelled(("system", "rootcapath")),
                       self.config.get(("system", "rootcapath"))))
        for key, value in needed:
            if isinstance(value, str) and value:
                self._need_file(key, value)
        for key, value in sorted(fp.items()):
            if key.startswith("templateparameters") and self.thing_name and \
                    self.thing_name in str(value):
                self.asm.report.warn(f"{self._fleet_key(key)} holds the golden device's thing "
                                     "name: every device would provision with it")
        if fp.get("deviceid"):
            self.asm.report.warn(f"{self._fleet_key('deviceId')} is set: every device will "
                                 "connect with the same MQTT client id while provisioning")
        if jars and fp.get("claimcertificatepath"):
            self.asm.report.note(f"device will provision with claim certificate "
                                 f"{fp['claimcertificatepath']} (template "
                                 f"{fp.get('provisioningtemplate')})")

    def _need_file(self, key: str, value: str) -> None:
        path = value[len("file://"):] if value.startswith("file://") else value
        device = norm(path) if path.startswith("/") else norm(self.at(path))
        resolved = self.asm.tree.resolve(device)
        entry = self.asm.tree.get(resolved) if resolved else None
        if entry is None or entry.kind is not Kind.FILE:
            self.asm.error(f"{device}, named by {key}, is not in the image: the device cannot "
                           "provision", self.spec.loc, path="greengrass",
                           hint="the fleet provisioning plugin reads it at first boot; put it in "
                           "the snapshot at that path or add a files: entry for it")

    def _check_users(self) -> None:
        """Components run as runWithDefault.posixUser (or their own runWith.posixUser); the nucleus
        never creates users (UnixRunWithGenerator, GreengrassSetup), so the composed /etc/passwd
        and /etc/group must define them, when the image has those files."""
        tables = {name: self._names(f"/etc/{name}") for name in ("passwd", "group")}
        if all(t is None for t in tables.values()):
            return
        for key, value in sorted(self.config.items()):
            if not (key[-1] == "posixuser" and len(key) >= 4 and key[0] == "services"
                    and key[-2] in ("runwithdefault", "runwith")) or not isinstance(value, str):
                continue
            user, _, group = value.partition(":")
            for table, name in (("passwd", user), ("group", group)):
                known = tables[table]
                if known is None or not name or name.isdigit() or name in known:
                    continue
                what = "user" if table == "passwd" else "group"
                self.asm.error(f"{self.spelled(key)} is {value!r} but /etc/{table} of the image "
                               f"has no {what} {name!r}: every component would fail to start",
                               self.spec.loc, path="greengrass",
                               hint=f"add {what} {name!r} to /etc/{table} (the Greengrass "
                               "installer creates ggc_user and ggc_group; the nucleus does not)")

    def _names(self, path: str) -> set[str] | None:
        resolved = self.asm.tree.resolve(path)
        entry = self.asm.tree.get(resolved) if resolved else None
        if entry is None or entry.kind is not Kind.FILE or entry.content is None:
            return None
        text = self.asm.read_small([entry.content])[entry.content].decode("utf-8", "replace")
        return {line.split(":", 1)[0] for line in text.splitlines()
                if line.strip() and not line.startswith("#")}

    def _check_alts(self) -> None:
        if "alts" not in self.spec.keep and self.asm.tree.get(self.at("alts")) is None:
            return
        tree = self.asm.tree
        for name in UPDATE_LINKS:
            if tree.get(self.at(f"alts/{name}")) is not None:
                self.asm.error(f"{self.at(f'alts/{name}')} exists: the snapshot was taken in the "
                               "middle of a nucleus update or rollback", self.spec.loc,
                               path="greengrass", hint="let the update finish (or roll back) on "
                               "the golden device, then take the snapshot again")
        current = self.at("alts/current")
        resolved = tree.resolve(current)
        target = tree.get(resolved) if resolved else None
        if target is None or target.kind is not Kind.DIR:
            self.asm.error(f"{current} does not resolve to a folder inside the device tree",
                           self.spec.loc, path="greengrass",
                           hint="alts/current must link to alts/init or alts/<deployment>; links "
                           "are absolute, so greengrass.to must equal the golden device's path")
            return
        jar = tree.resolve(f"{current}/distro/lib/Greengrass.jar")
        loader = tree.resolve(f"{current}/distro/bin/loader")
        jar_entry = tree.get(jar) if jar else None
        loader_entry = tree.get(loader) if loader else None
        if jar_entry is None or jar_entry.kind is not Kind.FILE:
            self.asm.error(f"{current}/distro/lib/Greengrass.jar does not resolve to a file",
                           self.spec.loc, path="greengrass", hint="the nucleus distribution "
                           "under packages/artifacts-unarchived must be kept")
        if loader_entry is None or loader_entry.kind is not Kind.FILE or \
                not loader_entry.mode & 0o111:
            self.asm.error(f"{current}/distro/bin/loader does not resolve to an executable "
                           "file", self.spec.loc, path="greengrass",
                           hint="systemd runs it, and the loader re-executes itself")

    def _check_recipes(self) -> dict[str, Entry]:
        """Check recipe names; return recipe entries by '<name>-v<version>'."""
        folder = self.at("packages/recipes")
        entries = [e for e in self.asm.tree.below(folder)
                   if e.kind is Kind.FILE and e.path.endswith(".recipe.yaml")]
        data = self.asm.read_small(e.content for e in entries if e.content is not None)
        found: dict[str, Entry] = {}
        for entry in entries:
            assert entry.content is not None
            ident = self._check_recipe(entry, data[entry.content])
            if ident is not None:
                found[ident] = entry
        return found

    def _check_recipe(self, entry: Entry, data: bytes) -> str | None:
        file = posixpath.basename(entry.path)
        try:
            recipe = yaml.safe_load(data.decode("utf-8"))
            name, version = str(recipe["ComponentName"]), str(recipe["ComponentVersion"])
        except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError):
            self.asm.error(f"{entry.path} is not a recipe with ComponentName and "
                           "ComponentVersion", self.spec.loc, path="greengrass")
            return None
        expected = f"{component_hash(name)}@{version}.recipe.yaml"
        if file != expected:
            self.asm.error(f"{entry.path}: the recipe of {name} {version} must be named "
                           f"{expected}", self.spec.loc, path="greengrass",
                           hint="the nucleus finds recipes by base64url(sha256(name))@version")
        metadata = entry.path[: -len(".recipe.yaml")] + ".metadata.json"
        if self.asm.tree.get(metadata) is None:
            self.asm.report.warn(f"{metadata} is missing (normal for a component installed "
                                 "locally)")
        return f"{name}-v{version}"

    def _check_plugin_digests(self, recipes: dict[str, Entry]) -> None:
        prefix = ("services", "main", "runtime", "service-digest")
        digests = {k[4]: v for k, v in self.config.items() if len(k) == 5 and under(k, prefix)}
        by_lower = {ident.lower(): entry for ident, entry in recipes.items()}
        data = self.asm.read_small(e.content for e in by_lower.values() if e.content)
        for ident, stored in sorted(digests.items()):
            entry = by_lower.get(ident)
            if entry is None or entry.content is None:
                self.asm.error(f"plugin {ident} has a service-digest but no recipe in "
                               "packages/recipes", self.spec.loc, path="greengrass",
                               hint="the nucleus will refuse to load that plugin")
                continue
            if recipe_digest(data[entry.content]) != stored:
                self.asm.error(f"{entry.path} no longer matches services.main.runtime."
                               f"service-digest for {ident}", self.spec.loc, path="greengrass",
                               hint="the nucleus refuses a plugin whose recipe was modified; "
                               "use the recipe file exactly as the golden device has it")


def _lower(path: tuple[str, ...]) -> Key:
    return tuple(p.lower() for p in path)


def _is_secret(key: Key) -> bool:
    return any(under(key, k) for k in SECRET_KEYS)


def _is_yaml(path: str) -> bool:
    return path.endswith((".yaml", ".yaml~", ".yml"))
