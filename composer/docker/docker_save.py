"""The `docker save` format: manifest.json listing each image's config and layer tars.

Docker up to 24 names members `<hex>.json` and `<id>/layer.tar`; Docker 25 and later write an
OCI layout in the same tar and point manifest.json into `blobs/sha256/`. Both read the same.
"""

from __future__ import annotations

from typing import Any

from composer.docker.bundle import Bundle
from composer.docker.config import diff_ids, digest_of, parse_json, platform_of
from composer.docker.model import ArchiveImage, ImageFormatError, LayerRef


def is_docker_save(bundle: Bundle) -> bool:
    return bundle.has("manifest.json")


def read_docker_save(bundle: Bundle) -> list[ArchiveImage]:
    manifest = parse_json(bundle.read("manifest.json"), "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise ImageFormatError("manifest.json lists no image",
                               hint="is this a `docker save` archive?")
    return [_image(bundle, item, n) for n, item in enumerate(manifest)]


def _image(bundle: Bundle, item: Any, n: int) -> ArchiveImage:
    where = f"manifest.json[{n}]"
    if not isinstance(item, dict) or not isinstance(item.get("Config"), str) \
            or not isinstance(item.get("Layers"), list):
        raise ImageFormatError(f"{where} has no Config and Layers",
                               hint="is this a `docker save` archive?")
    config_name = item["Config"]
    config_bytes = bundle.read(config_name)
    image_id = digest_of(config_bytes)
    named = _digest_in_name(config_name)
    if named is not None and named != image_id:
        raise ImageFormatError(f"{config_name} does not match its name: its sha256 is "
                               f"{image_id}", hint="the archive is corrupt; save it again")
    config = parse_json(config_bytes, config_name)
    ids = diff_ids(config, config_name)
    layers = item["Layers"]
    if len(layers) != len(ids):
        raise ImageFormatError(f"{where} lists {len(layers)} layers, its config {config_name} "
                               f"{len(ids)}", hint="the archive is corrupt; save it again")
    refs = tuple(LayerRef(member=str(name), blob=bundle.file(str(name)), diff_id=diff_id,
                          digest=_digest_in_name(str(name)))
                 for name, diff_id in zip(layers, ids, strict=True))
    tags = item.get("RepoTags") or []
    names = tuple(t for t in tags if isinstance(t, str))
    return ArchiveImage(config_bytes, image_id, refs, names, platform_of(config))


def _digest_in_name(name: str) -> str | None:
    """The digest a content-addressed member name states (`<hex>.json`, `blobs/sha256/<hex>`)."""
    base = name.rsplit("/", 1)[-1].removesuffix(".json")
    if name.startswith("blobs/sha256/") or name.endswith(".json"):
        if len(base) == 64 and all(c in "0123456789abcdef" for c in base):
            return "sha256:" + base
    return None
