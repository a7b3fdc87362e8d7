"""What composer reads from an image config (the JSON whose sha256 is the image ID)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from composer.docker.model import ImageFormatError


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageFormatError(f"{what} is not valid JSON ({exc})",
                               hint="the archive is corrupt; save or copy it again") from None


def diff_ids(config: Any, what: str) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) and _is_digest(i) for i in ids):
        raise ImageFormatError(f"{what} has no rootfs.diff_ids list of sha256 digests",
                               hint="is this an image config?")
    return ids


def platform_of(config: Any) -> str:
    if not isinstance(config, dict):
        return "unknown"
    parts = [str(config.get("os", "unknown")), str(config.get("architecture", "unknown"))]
    if config.get("variant"):
        parts.append(str(config["variant"]))
    return "/".join(parts)


def _is_digest(text: str) -> bool:
    hexpart = text.removeprefix("sha256:")
    return text.startswith("sha256:") and len(hexpart) == 64 and \
        all(c in "0123456789abcdef" for c in hexpart)


def checked_digest(text: object, what: str) -> str:
    if not isinstance(text, str) or not _is_digest(text):
        raise ImageFormatError(f"{what} is not a sha256 digest: {text!r}",
                               hint="composer reads sha256 digests only")
    return text
