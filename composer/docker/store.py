"""Docker's overlay2 image store, laid out as Docker itself leaves it after `docker load`
(moby: image/fs.go, layer/filestore.go, graphdriver/overlay2/overlay.go, refstore), as entries
with paths inside the store (`/` is the store's root, /var/lib/docker on most devices).

Docker names a layer's folder (`cache-id`) and its short link with random values; here both are
derived from the layer's chain ID, so the same images always give the same store, and a layer
that several images share is stored once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from composer.docker.layer import Layer
from composer.docker.model import ArchiveImage
from composer.docker.reference import repository
from composer.tree import Content, Entry, Kind

IMAGE_DB = "/image/overlay2/imagedb/content/sha256"
LAYER_DB = "/image/overlay2/layerdb/sha256"
REPOSITORIES = "/image/overlay2/repositories.json"
OVERLAY = "/overlay2"

# the modes Docker 20.10 gives what it creates (as found in a store it wrote)
_DIR_MODES = {"/": 0o710, "/image": 0o700, "/image/overlay2": 0o700,
              "/image/overlay2/imagedb": 0o700, "/image/overlay2/imagedb/content": 0o700,
              IMAGE_DB: 0o700, "/image/overlay2/layerdb": 0o700, LAYER_DB: 0o755,
              OVERLAY: 0o710, f"{OVERLAY}/l": 0o700}


@dataclass(frozen=True, slots=True)
class StoreImage:
    image: ArchiveImage
    names: tuple[str, ...]  # familiar `name:tag` references


@dataclass(frozen=True, slots=True)
class Existing:
    """A layer the store already holds (a snapshot's store under `docker.from`)."""

    cache_id: str
    link: str


@dataclass(frozen=True, slots=True)
class StoreLayer:
    """A layer in the store: one per chain ID, whatever number of images use it."""

    chain_id: str
    parent: StoreLayer | None
    layer: Layer
    existing: Existing | None = None  # in the store already: written by nobody here

    @property
    def cache_id(self) -> str:
        if self.existing is not None:
            return self.existing.cache_id
        return hashlib.sha256(f"composer overlay2 cache-id {self.chain_id}".encode()).hexdigest()

    @property
    def link(self) -> str:
        """26 characters of base32, as Docker's own link names."""
        if self.existing is not None:
            return self.existing.link
        digest = hashlib.sha256(f"composer overlay2 link {self.chain_id}".encode()).digest()
        return base64.b32encode(digest).decode()[:26]

    def lowers(self) -> list[str]:
        """The `lower` file's parts: the parents' links, nearest first."""
        found = []
        parent = self.parent
        while parent is not None:
            found.append(f"l/{parent.link}")
            parent = parent.parent
        return found


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """image-spec identity.ChainIDs: chain₀ = diff₀, chainₙ = sha256(chainₙ₋₁ + " " + diffₙ)."""
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(diff_id if not chains else
                      "sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


def store_layers(images: Iterable[StoreImage], layers: dict[str, Layer],
                 existing: dict[str, Existing] | None = None) -> dict[str, StoreLayer]:
    """Every chain the images need, by chain ID."""
    found: dict[str, StoreLayer] = {}
    for item in images:
        parent = None
        diff_ids = [ref.diff_id for ref in item.image.layers]
        for chain, diff_id in zip(chain_ids(diff_ids), diff_ids, strict=True):
            parent = found.setdefault(chain, StoreLayer(chain, parent, layers[diff_id],
                                                        (existing or {}).get(chain)))
    return found


def repositories(images: Iterable[StoreImage],
                 existing: dict[str, dict[str, str]] | None = None) -> bytes:
    """repositories.json: {"Repositories": {repo: {"repo:tag": image ID}}}, keys sorted as Go's
    encoding/json writes a map."""
    repos: dict[str, dict[str, str]] = {k: dict(v) for k, v in (existing or {}).items()}
    for item in images:
        for name in item.names:
            repos.setdefault(repository(name), {})[name] = item.image.image_id
    return json.dumps({"Repositories": repos}, sort_keys=True, separators=(",", ":")).encode()


def store_entries(images: list[StoreImage], chains: dict[str, StoreLayer],
                  repositories_json: bytes, mtime_ns: int) -> Iterator[Entry]:
    """The store's entries (paths inside the store), in no particular order."""
    make = _Maker(mtime_ns)
    for path in _DIR_MODES:
        yield make.folder(path)
    for image in {i.image.image_id: i.image for i in images}.values():
        yield make.file(f"{IMAGE_DB}/{image.image_id.removeprefix('sha256:')}", image.config,
                        0o600)
    yield make.file(REPOSITORIES, repositories_json, 0o600)
    parents = {c.parent.chain_id for c in chains.values() if c.parent is not None}
    for chain in chains.values():
        if chain.existing is None:
            yield from _layer_entries(chain, chain.chain_id in parents, make)
        elif chain.chain_id in parents:  # a new layer on one of the store's own
            yield make.file(f"{OVERLAY}/{chain.cache_id}/committed", b"", 0o600)


@dataclass(frozen=True, slots=True)
class _Maker:
    """The store's own files and folders: root's, at the build's time."""

    mtime_ns: int

    def folder(self, path: str, mode: int | None = None) -> Entry:
        return Entry(path, Kind.DIR, _DIR_MODES.get(path, 0o700) if mode is None else mode,
                     0, 0, self.mtime_ns)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> Entry:
        return Entry(path, Kind.FILE, mode, 0, 0, self.mtime_ns, Content.of_bytes(data))

    def symlink(self, path: str, target: str) -> Entry:
        return Entry(path, Kind.SYMLINK, 0o777, 0, 0, self.mtime_ns, target=target)


def _layer_entries(chain: StoreLayer, has_child: bool, make: _Maker) -> Iterator[Entry]:
    db = f"{LAYER_DB}/{chain.chain_id.removeprefix('sha256:')}"
    yield make.folder(db, 0o700)
    yield make.file(f"{db}/diff", chain.layer.diff_id.encode())
    yield make.file(f"{db}/size", str(chain.layer.size).encode())
    yield make.file(f"{db}/cache-id", chain.cache_id.encode())
    yield make.file(f"{db}/tar-split.json.gz", chain.layer.tar_split)
    if chain.parent is not None:
        yield make.file(f"{db}/parent", chain.parent.chain_id.encode())
    top = f"{OVERLAY}/{chain.cache_id}"
    yield make.folder(top, 0o710)
    yield make.file(f"{top}/link", chain.link.encode())
    if chain.parent is not None:
        yield make.file(f"{top}/lower", ":".join(chain.lowers()).encode())
        yield make.folder(f"{top}/work", 0o700)
    if has_child:  # Docker marks a layer that another was made on
        yield make.file(f"{top}/committed", b"", 0o600)
    yield make.symlink(f"{OVERLAY}/l/{chain.link}", f"../{chain.cache_id}/diff")
    diff = f"{top}/diff"
    for entry in chain.layer.entries:
        moved = entry.moved(diff + entry.path if entry.path != "/" else diff)
        if moved.kind is Kind.HARDLINK and moved.target is not None:
            moved = replace(moved, target=diff + moved.target)
        yield moved
