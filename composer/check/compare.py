"""`compose diff A B`: two build folders, manifests or images, in any mix. Manifests are
compared by composer/check/diff.py; images, and the outputs of two build folders whose bytes
the manifests leave unexplained, field by field by composer/check/imagediff.py; an image and a
manifest, by the entries the image holds (as `verify --deep` reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from composer.check.diff import (
    Change,
    DiffResult,
    diff_manifests,
    diff_outputs,
    entry_changes,
    explained_outputs,
    read_sha256sums,
)
from composer.check.fielddiff import Progress
from composer.check.imagediff import image_changes, is_image
from composer.check.verify import DEEP_READERS, recorded_and_held
from composer.errors import ComposerError
from composer.outputs.manifest import Manifest


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a diff: a manifest, with the output digests and folder when it is a build
    folder; or an image file alone (manifest None)."""

    manifest: Manifest | None
    sums: Mapping[str, str] | None
    folder: Path | None = None
    image: Path | None = None


def load_side(path: Path) -> Side:
    """A build folder (its manifest.json and SHA256SUMS), a manifest.json file, or an image
    (anything else: a disk, ext4, vfat, tar, .simg or .zst image, or a .bmap file)."""
    folder = path if path.is_dir() else None
    manifest_path = path / "manifest.json" if folder is not None else path
    if folder is None and path.is_file() and not _looks_like_json(path):
        return Side(None, None, image=path)
    if not manifest_path.is_file():
        raise ComposerError(f"{path} is neither a build folder, a manifest.json nor an image",
                            hint="give the folder `compose build -o` wrote, its manifest.json, "
                                 "or an image file")
    try:
        manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ComposerError(f"{manifest_path} is not a composer manifest ({exc})") from None
    sums = read_sha256sums(folder / "SHA256SUMS") if folder is not None else None
    return Side(manifest, sums, folder)


def _looks_like_json(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(64).lstrip()[:1] == b"{"


def diff_sides(a: Side, b: Side) -> list[Change]:
    return diff_all(a, b).changes


def diff_all(a: Side, b: Side, progress: Progress | None = None) -> DiffResult:
    """Every difference between two sides (build folders, manifests or images, any mix)."""
    if a.image is not None or b.image is not None:
        return _diff_with_image(a, b, progress)
    assert a.manifest is not None and b.manifest is not None
    changes = diff_manifests(a.manifest, b.manifest)
    following: list[tuple[Change, str]] = []
    if a.sums is not None and b.sums is not None:
        outputs = diff_outputs(a.sums, b.sums, explained_outputs(changes, a.manifest,
                                                                 b.manifest))
        if a.folder is not None and b.folder is not None:
            found = output_fields(a.folder, b.folder, b.manifest, outputs, progress)
            changes += found.changes
            following += found.following
        else:
            changes += outputs
    return DiffResult(changes, following)


def _diff_with_image(a: Side, b: Side, progress: Progress | None) -> DiffResult:
    """An image against an image, or against the output of that name of a build folder, or
    against the entries a manifest records for the partition written to that file name."""
    if a.image is not None and b.image is not None:
        return image_changes(a.image.name, a.image, b.image, progress)
    image, other, image_first = (a.image, b, True) if a.image is not None else (b.image, a,
                                                                                 False)
    assert image is not None and other.manifest is not None
    if other.folder is not None:
        theirs = other.folder / image.name
        if not theirs.is_file():
            raise ComposerError(f"{other.folder} has no output named {image.name} to compare "
                                f"{image} with", hint="compare an image with an image, or "
                                "with the build folder that has one of its name")
        pair = (image, theirs) if image_first else (theirs, image)
        return image_changes(image.name, *pair, progress)
    return _image_against_manifest(image, other.manifest, image_first)


def _image_against_manifest(image: Path, manifest: Manifest, image_first: bool) -> DiffResult:
    part = next((p for p in manifest.partitions.values() if p.image == image.name), None)
    name = next((n for n, p in manifest.partitions.items() if p.image == image.name), "")
    if part is None or part.fs not in DEEP_READERS:
        raise ComposerError(f"the manifest records no partition image named {image.name} that "
                            "composer reads", hint="compare an image with the manifest of the "
                            "build that wrote it, under its file name")
    recorded, held = recorded_and_held(part, image)
    pair = (held, recorded) if image_first else (recorded, held)
    return DiffResult(entry_changes(name, *pair), [])


def output_fields(folder_a: Path, folder_b: Path, manifest: Manifest,
                  outputs: list[Change], progress: Progress | None = None) -> DiffResult:
    """The output changes, each image's "bytes" change replaced by the fields that differ
    (composer/check/imagediff.py); an output made from an image whose fields are named (its
    .simg, .zst, bmap; the disk image's copy of a partition) follows from that image."""
    differing = {c.where for c in outputs if c.field == "bytes"}
    # the disk image's partitions, by the label fielddiff_disk gives them, whose own image
    # differs too: what differs inside them is named there
    inside: dict[str, str] = {}
    if manifest.disk is not None:
        for p in manifest.disk.partitions:
            image = manifest.partitions[p.name].image if p.name in manifest.partitions else None
            if image in differing:
                inside[f"partition {p.number}"] = image
    changes: list[Change] = []
    following: list[tuple[Change, str]] = []
    for change in outputs:
        name = change.where
        source = derived_from(name)
        if change.field != "bytes" or not is_image(name):
            changes.append(change)
        elif source is not None and source in differing:
            following.append((change, source))
        else:
            # the manifests compared the entries already
            found = image_changes(name, folder_a / name, folder_b / name, progress, inside,
                                  entries=False)
            changes += found.changes
            following += found.following
    return DiffResult(changes, following)


def derived_from(name: str) -> str | None:
    """The image an output is made from: rootfs.simg, rootfs.img.zst, rootfs.bmap ->
    rootfs.img (a tar partition's .bmap: none is made)."""
    for suffix in (".simg", ".img.zst", ".bmap"):
        if name.endswith(suffix):
            return name.removesuffix(suffix) + ".img"
    return None


