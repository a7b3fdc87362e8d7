"""OCI image layouts (a folder, or a tar of one: `oci-archive`): index.json, then image indexes
(one per multi-platform image) and image manifests, every blob named by its digest."""

from __future__ import annotations

from typing import Any

from composer.docker.bundle import Bundle
from composer.docker.config import checked_digest, diff_ids, digest_of, parse_json, platform_of
from composer.docker.model import ArchiveImage, ImageFormatError, LayerRef

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
REF_NAME = "org.opencontainers.image.ref.name"
FULL_NAME = "io.containerd.image.name"  # written by containerd and Docker 25+ next to ref.name


def is_oci(bundle: Bundle) -> bool:
    return bundle.has("index.json") and bundle.has("oci-layout")


def read_oci(bundle: Bundle, platform: str | None) -> list[ArchiveImage]:
    index = parse_json(bundle.read("index.json"), "index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise ImageFormatError("index.json lists no image", hint="is this an OCI image layout?")
    images = []
    for n, desc in enumerate(manifests):
        where = f"index.json manifests[{n}]"
        names = _names(desc)
        for image in _resolve(bundle, desc, where, platform):
            images.append(ArchiveImage(image.config, image.image_id, image.layers, names,
                                       image.platform))
    return images


def _names(desc: Any) -> tuple[str, ...]:
    annotations = desc.get("annotations") if isinstance(desc, dict) else None
    if not isinstance(annotations, dict):
        return ()
    full = annotations.get(FULL_NAME)
    if isinstance(full, str) and full:
        return (full,)
    ref = annotations.get(REF_NAME)
    # a bare tag ("1.0", as skopeo writes it) names no repository: the layout must give one
    return (ref,) if isinstance(ref, str) and ":" in ref.rsplit("/", 1)[-1] else ()


def _blob(bundle: Bundle, desc: Any, where: str) -> bytes:
    if not isinstance(desc, dict):
        raise ImageFormatError(f"{where} is not a descriptor")
    digest = checked_digest(desc.get("digest"), f"{where}.digest")
    data = bundle.read("blobs/sha256/" + digest.removeprefix("sha256:"))
    if digest_of(data) != digest:
        raise ImageFormatError(f"{where}: blob {digest} does not match its digest "
                               f"(its sha256 is {digest_of(data)})",
                               hint="the archive is corrupt; copy or save it again")
    return data


def _resolve(bundle: Bundle, desc: Any, where: str, platform: str | None) -> list[ArchiveImage]:
    media = desc.get("mediaType") if isinstance(desc, dict) else None
    data = _blob(bundle, desc, where)
    body = parse_json(data, where)
    media = media or (body.get("mediaType") if isinstance(body, dict) else None)
    if media in INDEX_TYPES or (isinstance(body, dict) and "manifests" in body):
        return [_pick(bundle, body, where, platform)]
    if media in MANIFEST_TYPES or (isinstance(body, dict) and "layers" in body):
        return [_manifest(bundle, body, where)]
    raise ImageFormatError(f"{where} has media type {media!r}, neither an image index nor an "
                           "image manifest")


def _pick(bundle: Bundle, index: Any, where: str, platform: str | None) -> ArchiveImage:
    """The one image of a multi-platform index that runs on `platform`."""
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImageFormatError(f"{where}: the image index lists no manifest")
    offered = []
    for n, desc in enumerate(entries):
        plat = desc.get("platform") if isinstance(desc, dict) else None
        name = platform_of(plat) if isinstance(plat, dict) else "unknown"
        if name == "unknown/unknown":  # attestations (BuildKit) are not images to run
            continue
        offered.append((name, desc, f"{where} > manifests[{n}]"))
    names = sorted({name for name, _, _ in offered})
    if platform is None:
        if len(offered) == 1:
            return _resolve(bundle, offered[0][1], offered[0][2], None)[0]
        raise ImageFormatError(f"{where} is a multi-platform image ({', '.join(names)})",
                               hint="choose the device's with `platform:` (such as "
                               f"{names[0]!r})")
    for name, desc, at in offered:
        if matches_platform(name, platform):
            return _resolve(bundle, desc, at, platform)[0]
    raise ImageFormatError(f"{where} has no image for {platform}: it offers "
                           f"{', '.join(names) or 'none'}",
                           hint="pick a platform the archive has, or save the image for "
                           f"{platform}")


def matches_platform(offered: str, wanted: str) -> bool:
    """linux/arm64 matches linux/arm64/v8; a wanted variant must be offered."""
    have, want = offered.split("/"), wanted.split("/")
    return have[:2] == want[:2] and (len(want) < 3 or have[2:3] == want[2:3])


def _manifest(bundle: Bundle, body: Any, where: str) -> ArchiveImage:
    config_desc = body.get("config")
    config_bytes = _blob(bundle, config_desc, f"{where} config")
    config = parse_json(config_bytes, f"{where} config")
    ids = diff_ids(config, f"{where} config")
    layers = body.get("layers")
    if not isinstance(layers, list) or len(layers) != len(ids):
        count = len(layers) if isinstance(layers, list) else 0
        raise ImageFormatError(f"{where} lists {count} layers, its config {len(ids)}",
                               hint="the archive is corrupt; copy or save it again")
    refs = []
    for n, (desc, diff_id) in enumerate(zip(layers, ids, strict=True)):
        at = f"{where} layers[{n}]"
        if not isinstance(desc, dict):
            raise ImageFormatError(f"{at} is not a descriptor")
        digest = checked_digest(desc.get("digest"), f"{at}.digest")
        name = "blobs/sha256/" + digest.removeprefix("sha256:")
        refs.append(LayerRef(member=name, blob=bundle.file(name), diff_id=diff_id,
                             digest=digest))
    return ArchiveImage(config_bytes, digest_of(config_bytes), tuple(refs), (),
                        platform_of(config))
