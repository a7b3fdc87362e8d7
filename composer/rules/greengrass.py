"""The Greengrass golden-image rules (greengrass-facts.md §11): keep what a device needs, drop
what is ephemeral, remove the golden device's secrets and identity from every copy of the
configuration, and check that the nucleus will start from the result."""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
from dataclasses import dataclass, replace
from typing import Any

import yaml

from composer.layout.model import Greengrass, IdentityPolicy, SecretsPolicy
from composer.rules.assembly import Assembly, Claim
from composer.rules.tlog import (
    Key,
    drop_lines,
    drop_yaml_keys,
    effective,
    parse_tlog,
    under,
    yaml_keys,
    yaml_problem,
    yaml_values,
)
from composer.tree import Content, Entry, Kind, is_under, norm

KNOWN_DIRS = ("alts", "bin", "cli_ipc_info", "config", "deployments", "logs", "packages",
              "plugins", "telemetry", "work")
DEFAULT_KEEP = ("alts", "config", "packages")
TLOGS = ("config.tlog", "config.tlog~", "bootstrap.tlog", "bootstrap.tlog~")
EFFECTIVE = ("effectiveConfig.yaml", "effectiveConfig.yaml~")
# config/config.yaml (or .yml) is the nucleus's fallback (and --init-config's default): it may
# hold the same keys, often a copy of effectiveConfig.yaml (greengrass-facts.md §6)
INIT_CONFIGS = ("config.yaml", "config.yml")
SNAPSHOT_TLOGS = ("target_config.tlog", "rollback_snapshot.tlog")
SECRET_KEYS: tuple[Key, ...] = (
    ("services", "aws.greengrass.secretmanager", "runtime", "secretresponse"),
    ("services", "aws.greengrass.secretmanager", "secretresponse"),  # before SecretManager 2.1.4
)
THING_NAME: Key = ("system", "thingname")
IDENTITY_KEYS: tuple[Key, ...] = (
    THING_NAME,
    ("setenv", "aws_iot_thing_name"),
    ("services", "deploymentservice", "runtime", "processeddeployments"),
)
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


class GreengrassRule:
    def __init__(self, spec: Greengrass, asm: Assembly) -> None:
        self.spec = spec
        self.asm = asm
        self.root = spec.to
        self.claim = Claim("greengrass", spec.loc, from_source=True)
        self.thing_name: str | None = None
        self.config: dict[Key, Any] = {}

    def rel(self, path: str) -> str:
        return path[len(self.root):].lstrip("/")

    def at(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    # --- placement -----------------------------------------------------------------------

    def apply(self) -> None:
        top = self.asm.lookup(self.spec.src, "greengrass.from")
        if top is None:
            return
        if top.kind is not Kind.DIR:
            self.asm.error(f"{self.spec.src} is not a folder", self.spec.src.loc,
                           path="greengrass.from")
            return
        keep = self._keep_set()
        self.asm.copy(self.spec.src, self.root, self.claim, keep=lambda rel, e: self._keep(
            rel, e, keep))
        self._sanitize()

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
        top = rel.split("/", 1)[0]
        where = self.at(rel)
        if top not in keep or (rel == top and entry.kind is not Kind.DIR):
            what = "folder" if entry.kind is Kind.DIR else entry.kind.value
            why = "not in greengrass.keep" if top in KNOWN_DIRS else "not part of a device image"
            self.asm.report.dropped(f"{where} ({what}, {why})")
            return False
        if rel in STRAY or entry.kind is Kind.SOCKET:
            self.asm.report.dropped(f"{where} (left behind by a running nucleus)")
            return False
        return True

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
        main = next((f for f in files if f.path == self.at("config/config.tlog")), None)
        if main is None:
            self.asm.report.warn(f"{self.at('config/config.tlog')} is missing: the nucleus will "
                                 "fall back to bootstrap.tlog or config.yaml")
        self._check_tlogs(files)
        self._check_yaml(files)
        source = main or next((f for f in files if f.path.endswith(".tlog")), None)
        if source is not None:
            self.config = effective(parse_tlog(source.data)[0])
        name = self.config.get(THING_NAME)
        self.thing_name = name if isinstance(name, str) and name else None
        if self.thing_name:  # file names and keys may carry it too; the report is an output
            self.asm.report.mask(self.thing_name, "<thingName>")
        secrets = self._secret_findings(files)
        self._apply_secret_policy(secrets)
        files = [self._rewrite(file) for file in files]
        self._identity_files()
        self._report_leftover_thing_name(files)

    def _check_tlogs(self, files: list[ConfigFile]) -> None:
        for file in files:
            if not file.path.endswith(".tlog") and not file.path.endswith(".tlog~"):
                continue
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
                keys = [".".join(p) for p, _ in yaml_values(file.data) if _is_secret(_lower(p))]
                keys += [k for k in _yaml_secret_parents(file.data)]
            else:
                keys = [".".join(line.path) for line in parse_tlog(file.data)[0]
                        if _is_secret(line.key) and line.action == "changed"]
            found += [(file.path, key) for key in dict.fromkeys(keys)]
        return found

    def _apply_secret_policy(self, secrets: list[tuple[str, str]]) -> None:
        if not secrets:
            return
        listing = "; ".join(f"{path}: {key}" for path, key in secrets)
        if self.spec.secrets is SecretsPolicy.FAIL:
            self.asm.error(f"the snapshot holds the golden device's secrets: {listing}",
                           self.spec.loc, path="greengrass.secrets",
                           hint="use 'secrets: strip' to remove them (they are encrypted with "
                           "the golden device's key and useless elsewhere)")
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
        else:
            data, removed = drop_yaml_keys(file.data, self._doomed_key)
        if data == file.data:
            return file
        for key in removed:
            self.asm.report.changed(f"{file.path}: removed {key}")
        entry = replace(file.entry, content=Content.of_bytes(data))
        self.asm.tree.put(entry)
        return ConfigFile(file.path, entry, data)

    def _identity_files(self) -> None:
        if self.spec.identity is not IdentityPolicy.STRIP:
            return
        for key, what in ((("system", "privatekeypath"), "private key (system.privateKeyPath)"),
                          (("system", "certificatefilepath"),
                           "certificate (system.certificateFilePath)")):
            value = self.config.get(key)
            if not isinstance(value, str):
                continue
            if value.startswith("file://"):  # a file: URI (the PKCS#11 setups use them)
                value = value[len("file://"):]
            # a path on the golden device, whose root is greengrass.to (checked); a relative one
            # is taken from the root
            device = norm(value if value.startswith("/") else self.at(value))
            if not value or not is_under(device, self.root) or device == self.root:
                continue
            if self.asm.tree.remove(device) is not None:
                self.asm.report.dropped(f"{device} (the golden device's {what})")

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
                self.asm.report.warn(f"{file.path}: {key} still contains the golden device's "
                                     "thing name (system.thingName)")

    # --- checks on the finished device tree ----------------------------------------------

    def check(self) -> None:
        if self.asm.tree.get(self.root) is None:
            return
        self._check_alts()
        recipes = self._check_recipes()
        self._check_plugin_digests(recipes)
        rootpath = self.config.get(("system", "rootpath"))
        if rootpath is not None and rootpath != self.root:
            self.asm.error(f"system.rootpath in config.tlog is {rootpath!r} but greengrass.to is "
                           f"{self.root!r}", self.spec.loc, path="greengrass.to",
                           hint="the nucleus re-roots itself to system.rootpath; install it at "
                           "the same path as on the golden device")

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


def _yaml_secret_parents(data: bytes) -> list[str]:
    """A secretResponse key whose value is a mapping or null has no leaf of its own."""
    return [".".join(k.path) for k in yaml_keys(data) if _lower(k.path) in SECRET_KEYS]


