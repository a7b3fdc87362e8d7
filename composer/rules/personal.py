"""What the golden build reserves for personalization (layout `personalize:`), decided from the
golden device tree, so that a device's build, which adds lines to the configuration files and
writes its identity files, moves nothing else in the image (docs/personalize.md §2).

* every configuration file a device changes (config.tlog and its copies, effectiveConfig.yaml
  and its copy, config.yaml) gets its size plus `personalize.slack` bytes of room;
* the identity files, at system.certificateFilePath and system.privateKeyPath (else the
  installer's defaults), get an inode number and IDENTITY_ROOM bytes even though the golden
  image does not hold them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from composer.layout.model import Layout, Vary
from composer.rules.assembly import Assembly
from composer.rules.greengrass import EFFECTIVE, INIT_CONFIGS, TLOGS
from composer.rules.tlog import effective, parse_tlog
from composer.tree import Kind, norm

ConfigPath = tuple[str, ...]
CERT_PATH: ConfigPath = ("system", "certificateFilePath")
KEY_PATH: ConfigPath = ("system", "privateKeyPath")
DEFAULT_FILES = {CERT_PATH: "thingCert.crt", KEY_PATH: "privKey.key"}  # the installer's names
IDENTITY_ROOM = 8 << 10  # a certificate chain or an RSA-4096 key in PEM fits


def golden_config(asm: Assembly, root: str) -> dict[tuple[str, ...], Any]:
    """The configuration config.tlog of the composed tree gives (keys lower-cased)."""
    entry = asm.tree.get(posixpath.join(root, "config", "config.tlog"))
    if entry is None or entry.content is None:
        return {}
    return effective(parse_tlog(asm.read_small([entry.content])[entry.content])[0])


def identity_paths(config: Mapping[tuple[str, ...], Any], root: str) -> dict[ConfigPath, str]:
    """Where the identity files go: the golden configuration's paths (kept by identity: strip),
    else the installer's defaults under the root."""
    paths = {}
    for key, default in DEFAULT_FILES.items():
        value = config.get(tuple(k.lower() for k in key))
        if isinstance(value, str) and value.startswith("file://"):
            value = value[len("file://"):]
        if isinstance(value, str) and value and not value.startswith("pkcs11:"):
            paths[key] = norm(value if value.startswith("/") else posixpath.join(root, value))
        else:
            paths[key] = posixpath.join(root, default)
    return paths


def personal_room(layout: Layout, asm: Assembly) -> dict[str, int]:
    """Device path -> bytes the golden plan keeps for it."""
    spec = layout.personalize
    if spec is None or layout.greengrass is None:
        return {}
    root = layout.greengrass.to
    room: dict[str, int] = {}
    for name in TLOGS + EFFECTIVE + INIT_CONFIGS:
        path = posixpath.join(root, "config", name)
        entry = asm.tree.get(path)
        if entry is not None and entry.kind is Kind.FILE:
            room[path] = entry.size + spec.slack
    paths = identity_paths(golden_config(asm, root), root)
    for key, vary in ((CERT_PATH, Vary.CERTIFICATE), (KEY_PATH, Vary.PRIVATE_KEY)):
        if vary in spec.vary and asm.tree.get(paths[key]) is None:
            room[paths[key]] = IDENTITY_ROOM
    return room
