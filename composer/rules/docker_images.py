"""`docker.images`: image archives composed into Docker's overlay2 store at `docker.to`, beside
a snapshot's store (`docker.from`) or alone. The archive formats and the store's files are
composer/docker's; this rule resolves names, checks them against the snapshot's store and
places the entries."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, replace

from composer.docker.bundle import Bundle, open_bundle
from composer.docker.docker_save import is_docker_save, read_docker_save
from composer.docker.layer import Layer, read_layer
from composer.docker.model import ArchiveImage, ImageFormatError
from composer.docker.oci import is_oci, matches_platform, read_oci
from composer.docker.reference import BadReference, familiar
from composer.docker.store import (
    LAYER_DB,
    OVERLAY,
    REPOSITORIES,
    Existing,
    StoreImage,
    repositories,
    store_entries,
    store_layers,
)
from composer.errors import ComposerError
from composer.layout.model import Docker, DockerImage
from composer.rules.assembly import Assembly
from composer.tree import Entry, Kind
from composer.types import Claim

DAEMON_JSON = "/etc/docker/daemon.json"
DEFAULT_ROOT = "/var/lib/docker"


@dataclass(frozen=True, slots=True)
class _Named:
    image: StoreImage
    item: int  # index in docker.images


class DockerImagesRule:
    def __init__(self, spec: Docker, asm: Assembly) -> None:
        self.spec = spec
        self.asm = asm

    def apply(self) -> None:
        named: list[_Named] = []
        layers: dict[str, Layer] = {}
        failed = False
        for n, item in enumerate(self.spec.images):
            try:
                found = self._read(item, layers)
            except (ImageFormatError, ComposerError) as exc:
                self.asm.error(f"{item.archive.name}: {exc.message}", item.loc, exc.hint,
                               path=f"docker.images[{n}]")
                failed = True
                continue
            named += [_Named(image, n) for image in found]
        existing_repos = self._existing_repositories()
        if failed or not self._names_agree(named, existing_repos):
            return
        images = [n.image for n in named]
        for layer in layers.values():
            if layer.data.name not in self.asm.store.sources:
                self.asm.store.add(layer.data)
        chains = store_layers(images, layers, self._existing_layers())
        self._place(store_entries(images, chains, repositories(images, existing_repos),
                                  self.asm.epoch_ns))
        self._report(images)

    def _place(self, entries: Iterable[Entry]) -> None:
        """The store's entries at docker.to. What the snapshot's store already holds stays:
        a file named by its content's digest (configs, layers of the same chain) is the same
        file; repositories.json is replaced by the merged one."""
        claim = Claim("docker.images", self.spec.loc, from_source=True)
        to = self.spec.to
        for entry in entries:
            moved = entry.moved(to + entry.path if entry.path != "/" else to)
            if moved.kind is Kind.HARDLINK and moved.target is not None:
                moved = replace(moved, target=to + moved.target)
            merged = entry.path == REPOSITORIES
            if moved.kind is Kind.FILE and not merged and moved.path in self.asm.tree:
                continue
            self.asm.place(moved, claim, override=merged)

    def _report(self, images: list[StoreImage]) -> None:
        names: dict[str, list[str]] = {}
        for image in images:
            names.setdefault(image.image.image_id, []).extend(image.names)
        for image_id, given in names.items():
            shown = ", ".join(dict.fromkeys(given))
            self.asm.report.changed(f"{self.spec.to}: preloaded image {image_id} ({shown})")

    # --- reading the archives ----------------------------------------------------------

    def _read(self, item: DockerImage, layers: dict[str, Layer]) -> list[StoreImage]:
        if not item.archive.exists():
            raise ImageFormatError("no such file or folder",
                                   hint="the path is relative to the layout file")
        bundle = open_bundle(item.archive)
        found = self._images(bundle, item)
        if item.tags and len(found) != 1:
            raise ImageFormatError(f"holds {len(found)} images, and `tags` names one",
                                   hint="leave `tags` out: each image keeps the names the "
                                   "archive gives it")
        result = []
        for image in found:
            for ref in image.layers:
                if ref.diff_id not in layers:
                    layers[ref.diff_id] = read_layer(ref, bundle)
            result.append(StoreImage(image, self._names(image, item)))
        return result

    @staticmethod
    def _images(bundle: Bundle, item: DockerImage) -> list[ArchiveImage]:
        if is_oci(bundle):
            images = read_oci(bundle, item.platform)
        elif is_docker_save(bundle):
            images = read_docker_save(bundle)
        else:
            raise ImageFormatError("is neither a `docker save` archive (manifest.json) nor an "
                                   "OCI image layout (oci-layout, index.json)",
                                   hint="make it with `docker save`, `skopeo copy ... "
                                   "oci-archive:FILE` or `crane save`")
        for image in images:
            if item.platform is not None and not matches_platform(image.platform,
                                                                  item.platform):
                raise ImageFormatError(f"image {image.image_id} is for {image.platform}, not "
                                       f"{item.platform}",
                                       hint=f"save the image for {item.platform}, or correct "
                                       "`platform`")
        return images

    @staticmethod
    def _names(image: ArchiveImage, item: DockerImage) -> tuple[str, ...]:
        given = item.tags or image.names
        if not given:
            raise ImageFormatError(f"records no name (repository and tag) for image "
                                   f"{image.image_id}",
                                   hint="give its names with `tags`, such as [\"app:1.0\"]")
        names = []
        for name in given:
            try:
                names.append(familiar(name))
            except BadReference as exc:
                raise ImageFormatError(f"the archive names the image {exc}",
                                       hint="give the names with `tags`") from None
        return tuple(dict.fromkeys(names))

    def check_daemon_json(self) -> None:
        """Docker must find the store where it was put, and read it with overlay2: an
        /etc/docker/daemon.json on the device that says otherwise is an error. (Docker 29
        starts fresh installs on the containerd image store, but keeps overlay2 when
        `overlay2/` under its data root is not empty, as it is here.)"""
        entry = self.asm.tree.get(DAEMON_JSON)
        if entry is None or entry.kind is not Kind.FILE or entry.content is None:
            if self.spec.to != DEFAULT_ROOT:
                self.asm.report.warn(f"the Docker store is at {self.spec.to}, and no "
                                     f"{DAEMON_JSON} sets data-root: Docker looks in "
                                     f"{DEFAULT_ROOT} unless told (dockerd --data-root, or "
                                     "daemon.json)")
            return
        data = self.asm.read_small([entry.content])[entry.content]
        try:
            config = json.loads(data)
        except ValueError as exc:
            self.asm.error(f"{DAEMON_JSON} is not valid JSON ({exc})", self.spec.loc,
                           path="docker", hint="Docker would not start with it")
            return
        if not isinstance(config, dict):
            return
        problems = []
        driver = config.get("storage-driver")
        if driver not in (None, "overlay2"):
            problems.append(f'"storage-driver": "{driver}" (the store is overlay2)')
        root = config.get("data-root")
        if root is not None and root.rstrip("/") != self.spec.to:
            problems.append(f'"data-root": "{root}" (the store is at {self.spec.to})')
        features = config.get("features")
        if isinstance(features, dict) and features.get("containerd-snapshotter") is True:
            problems.append('"features": {"containerd-snapshotter": true} (Docker would use '
                            "its containerd image store and not see these images)")
        for problem in problems:
            self.asm.error(f"{DAEMON_JSON} on the device says {problem}", self.spec.loc,
                           path="docker", hint="change daemon.json or docker.to so that "
                           "Docker reads the preloaded store")
        if root is None and self.spec.to != DEFAULT_ROOT:
            self.asm.report.warn(f"the Docker store is at {self.spec.to}, and {DAEMON_JSON} "
                                 f"sets no data-root: Docker looks in {DEFAULT_ROOT}")

    # --- the snapshot's store, if any ----------------------------------------------------

    def _from_path(self, rel: str) -> str | None:
        """The device path of `rel` inside the copied snapshot store, if there is one."""
        if self.spec.src is None:
            return None
        return self.spec.to + rel

    def _existing_repositories(self) -> dict[str, dict[str, str]]:
        path = self._from_path(REPOSITORIES)
        entry = self.asm.tree.get(path) if path is not None else None
        if entry is None or entry.kind is not Kind.FILE or entry.content is None:
            return {}
        data = self.asm.read_small([entry.content])[entry.content]
        try:
            repos = json.loads(data).get("Repositories", {})
        except (ValueError, AttributeError):
            self.asm.error(f"{path} in docker.from's store is not valid JSON", self.spec.loc,
                           path="docker.from")
            return {}
        return {k: dict(v) for k, v in repos.items() if isinstance(v, dict)}

    def _existing_layers(self) -> dict[str, Existing]:
        """The snapshot's layers by chain ID, with their folder and link names."""
        root = self._from_path(LAYER_DB)
        if root is None:
            return {}
        wanted = {}
        for entry in self.asm.tree.children(root):
            cache = self.asm.tree.get(entry.path + "/cache-id")
            if cache is not None and cache.content is not None:
                wanted[posixpath.basename(entry.path)] = cache.content
        cache_ids = self.asm.read_small(wanted.values())
        links = {}
        for chain, content in wanted.items():
            cache_id = cache_ids[content].decode("ascii", "replace").strip()
            link = self.asm.tree.get(f"{self.spec.to}{OVERLAY}/{cache_id}/link")
            if link is not None and link.content is not None:
                links[chain] = (cache_id, link.content)
        texts = self.asm.read_small(c for _, c in links.values())
        return {f"sha256:{chain}": Existing(cache_id, texts[c].decode("ascii", "replace").strip())
                for chain, (cache_id, c) in links.items()}

    def _names_agree(self, named: list[_Named], existing: dict[str, dict[str, str]]) -> bool:
        """One name, one image: across the archives, and against the snapshot's store."""
        owner: dict[str, tuple[str, str]] = {}  # name -> (image ID, who gives it)
        for repo in existing.values():
            for name, image_id in repo.items():
                owner[name] = (image_id, "docker.from's store")
        ok = True
        for item in named:
            for name in item.image.names:
                mine = item.image.image.image_id
                theirs = owner.get(name)
                if theirs is not None and theirs[0] != mine:
                    self.asm.error(f"{name} is image {mine} here but {theirs[0]} in "
                                   f"{theirs[1]}", self.spec.images[item.item].loc,
                                   hint="one name can point to one image: drop or change one "
                                   "of the tags", path=f"docker.images[{item.item}]")
                    ok = False
                owner.setdefault(name, (mine, f"docker.images[{item.item}]"))
        return ok
