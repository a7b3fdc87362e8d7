"""One device's build: the golden layout and device tree, with that device's inputs applied.

What changes, and nothing else:

* configuration values, a mapping {config path: value} (a path is a tuple of the nucleus's key
  segments, since a segment such as `aws.greengrass.Nucleus` holds dots): appended to config.tlog,
  config.tlog~, bootstrap.tlog and bootstrap.tlog~ as `changed` lines with TS = the largest TS
  in that file + 1, never the wall clock (a future TS would freeze the key against the device's
  own later writes). The fallback copies are patched the same way rather than removed: the
  nucleus falls back to them when config.tlog is damaged (power loss while it is written), and
  then the device must still be itself, not an unprovisioned clone; removing them would also
  move every file after them in the image. effectiveConfig.yaml(~) and config.yaml are edited
  in place (composer.personalize.yamlset), never re-serialized;
* the identity files at system.certificateFilePath (0644) and system.privateKeyPath (0600), or
  no key file when the key is a `pkcs11:` URI (privateKeyPath then holds the URI);
* the ext4 UUID and GPT partition GUID of the partitions `personalize.uuids` lists.
"""

from __future__ import annotations

import functools
import json
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from composer.errors import ComposerError
from composer.layout.model import DiskPlacement, Layout, TableType
from composer.personalize.records import Device
from composer.personalize.yamlset import set_values
from composer.rules.assembly import Assembly
from composer.rules.greengrass import EFFECTIVE, INIT_CONFIGS, TLOGS
from composer.rules.personal import CERT_PATH, KEY_PATH, golden_config, identity_paths
from composer.rules.tlog import parse_tlog
from composer.rules.yamlcut import YamlCutError
from composer.tree import Content, Entry, Kind
from composer.types import Claim

ConfigPath = tuple[str, ...]
NUCLEUS = ("services", "aws.greengrass.Nucleus", "configuration")
FLEET = ("services", "aws.greengrass.FleetProvisioningByClaim", "configuration")
THING_NAME: ConfigPath = ("system", "thingName")
CERT_MODE, KEY_MODE = 0o644, 0o600
# derived IDs: uuid5(COMPOSER_NS, "<layout>/<partition>/fs/<device id>") and
# "<layout>/partition/<partition>/<device id>" (the golden ones without "/<device id>")


def device_fs_uuid(namespace: uuid.UUID, layout: str, partition: str, device: str) -> uuid.UUID:
    return uuid.uuid5(namespace, f"{layout}/{partition}/fs/{device}")


def device_part_uuid(namespace: uuid.UUID, layout: str, partition: str,
                     device: str) -> uuid.UUID:
    return uuid.uuid5(namespace, f"{layout}/partition/{partition}/{device}")


@dataclass(frozen=True, slots=True)
class IdentityFile:
    path: str  # device path
    data: bytes = field(repr=False)
    mode: int
    what: str


@dataclass(frozen=True, slots=True)
class DeviceInputs:
    """Everything one device changes, decided before its build starts."""

    device: Device
    values: Mapping[ConfigPath, Any] = field(repr=False)  # may hold secrets: never shown
    files: tuple[IdentityFile, ...]
    fs_uuids: Mapping[str, uuid.UUID]
    part_uuids: Mapping[str, uuid.UUID]


def device_uuids(device: Device, layout: Layout, namespace: uuid.UUID
                 ) -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID]]:
    """The device's ext4 UUIDs and GPT partition GUIDs: pinned by its record, else derived."""
    assert layout.personalize is not None
    names = layout.personalize.uuids
    fs_uuids = {p: device.fs_uuids.get(p) or device_fs_uuid(namespace, layout.name, p, device.id)
                for p in names}
    part_uuids = {p: device.part_uuids.get(p) or device_part_uuid(namespace, layout.name, p,
                                                                  device.id)
                  for p in names} if layout.disk is not None \
        and layout.disk.table is TableType.GPT else {}  # MBR: PARTUUID is the signature
    return fs_uuids, part_uuids


def device_inputs(device: Device, layout: Layout, namespace: uuid.UUID,
                  paths: Mapping[ConfigPath, str]) -> DeviceInputs:
    values: dict[ConfigPath, Any] = {}
    files: list[IdentityFile] = []
    if device.thing_name is not None:
        values[THING_NAME] = device.thing_name
    if (certificate := device.certificate()) is not None:
        values[CERT_PATH] = paths[CERT_PATH]
        files.append(IdentityFile(paths[CERT_PATH], certificate, CERT_MODE, "certificate"))
    if device.private_key_uri is not None:
        values[KEY_PATH] = device.private_key_uri
    elif (key := device.private_key()) is not None:
        values[KEY_PATH] = paths[KEY_PATH]
        files.append(IdentityFile(paths[KEY_PATH], key, KEY_MODE, "private key"))
    for name, value in sorted(device.endpoints.items()):
        values[(*NUCLEUS, name)] = value
    for name, value in sorted(device.template_parameters.items()):
        values[(*FLEET, "templateParameters", name)] = value
    fs_uuids, part_uuids = device_uuids(device, layout, namespace)
    return DeviceInputs(device, values, tuple(files), fs_uuids, part_uuids)


@functools.lru_cache(maxsize=16)
def _next_ts(data: bytes) -> int:
    """The file's largest TS + 1 (each golden tlog is parsed once for a whole line of
    devices)."""
    lines, _ = parse_tlog(data)
    return max((line.ts for line in lines), default=0) + 1


def tlog_lines(data: bytes, values: Mapping[ConfigPath, Any]) -> bytes:
    """`data` with one `changed` line per value appended, TS = the file's largest TS + 1."""
    ts = _next_ts(data)
    added = b"".join(json.dumps({"TS": ts, "TP": list(path), "W": "changed", "V": value},
                                separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                     for path, value in values.items())
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data + added


def config_bytes(name: str, data: bytes, values: Mapping[ConfigPath, Any]) -> bytes:
    """The configuration file `name` (a tlog, effectiveConfig.yaml or config.yaml) with the
    device's values set; raises YamlCutError (or a YAML or decoding error) for a YAML file that
    cannot be edited in place."""
    return tlog_lines(data, values) if name in TLOGS else set_values(data, values)


class Tailor:
    """The build hook (composer.build.plan's `tailor`) that makes the golden build one device's.

    `extra` holds more configuration values to set (SecretManager's secretResponse, made for
    this device by composer.personalize.secrets); they are applied like the record's."""

    def __init__(self, device: Device, namespace: uuid.UUID,
                 extra: Mapping[ConfigPath, Any] | None = None,
                 images_only: bool = False) -> None:
        self.device = device
        self.namespace = namespace
        self.extra = dict(extra or {})
        self.images_only = images_only  # no simg, zst or sfdisk: the build is only diffed
        self.inputs: DeviceInputs | None = None  # known once tree() has read the golden config

    def layout(self, layout: Layout) -> Layout:
        assert layout.personalize is not None
        fs_uuids, part_uuids = device_uuids(self.device, layout, self.namespace)
        parts = []
        for part in layout.partitions:
            if part.name in fs_uuids:
                part = replace(part, uuid=fs_uuids[part.name])
            if part.name in part_uuids:
                placement = part.disk or DiskPlacement()
                part = replace(part, disk=replace(placement, partuuid=part_uuids[part.name]))
            parts.append(part)
        return replace(layout, partitions=tuple(parts),
                       outputs=() if self.images_only else layout.outputs)

    def tree(self, asm: Assembly, layout: Layout) -> None:
        assert layout.greengrass is not None and layout.personalize is not None
        root = layout.greengrass.to
        paths = identity_paths(golden_config(asm, root), root)
        inputs = device_inputs(self.device, layout, self.namespace, paths)
        inputs = replace(inputs, values={**inputs.values, **self.extra})
        self.inputs = inputs
        loc = layout.personalize.loc
        claim = Claim("personalize", loc, from_source=False)
        keys = ", ".join(".".join(p) for p in inputs.values)
        for name in TLOGS + EFFECTIVE + INIT_CONFIGS:
            path = posixpath.join(root, "config", name)
            entry = asm.tree.get(path)
            if entry is None or entry.kind is not Kind.FILE or entry.content is None:
                continue
            data = asm.read_small([entry.content])[entry.content]
            try:
                new = config_bytes(name, data, inputs.values)
            except (YamlCutError, yaml.YAMLError, UnicodeDecodeError) as exc:
                asm.errors.append(ComposerError(
                    f"{path}: the device's values cannot be set in place: {exc}", loc,
                    path="personalize", hint="the golden file must be block-style YAML as "
                    "the nucleus writes it"))
                continue
            asm.tree.put(replace(entry, content=Content.of_bytes(new)))
            if keys:
                asm.report.changed(f"{path}: device {self.device.id} sets {keys}")
        for file in inputs.files:
            asm.place(Entry(file.path, Kind.FILE, file.mode, 0, 0, asm.epoch_ns,
                            Content.of_bytes(file.data)), claim)
            asm.report.changed(f"{file.path}: device {self.device.id}'s {file.what} "
                               f"(mode {file.mode:04o})")
