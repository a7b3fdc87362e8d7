"""Two images compared field by field (`compose diff A.img B.img`, and the images of two build
folders whose bytes nothing in the manifest explains): the image kind from its magic numbers
(composer/check/inspect.py), then the module of that format. Android sparse and .zst images
are expanded first (composer/check/expand.py).
"""

from __future__ import annotations

from pathlib import Path

from composer.check.diff import Change, DiffResult, Scope
from composer.check.entrydiff import explainers, image_entry_changes
from composer.check.expand import expanded
from composer.check.fielddiff import FieldChange, Progress, Region
from composer.check.fielddiff_disk import FsDiff, diff_disk
from composer.check.fielddiff_ext4 import diff_ext4
from composer.check.fielddiff_fat import diff_fat
from composer.check.fielddiff_tar import diff_tar
from composer.check.inspect import ImageKind, detect, fs_at
from composer.check.verify import sparse_sha256
from composer.errors import ComposerError
from composer.outputs.bmap_reader import read_bmap

FS_DIFFS: dict[str, FsDiff] = {ImageKind.EXT4.value: diff_ext4, ImageKind.VFAT.value: diff_fat}


def diff_images(path_a: Path, path_b: Path, progress: Progress | None = None
                ) -> list[FieldChange]:
    """Every field that differs between the images at path_a and path_b (expanded first when
    they are .simg, .zst or compressed archives), by structure; [] when their bytes are the
    same."""
    if path_a.name.endswith(".bmap") and path_b.name.endswith(".bmap"):
        return diff_bmap(path_a, path_b)
    with expanded(path_a, detect(path_a)) as a, expanded(path_b, detect(path_b)) as b:
        return _diff_raw(a, b, progress)


def _diff_raw(a: Path, b: Path, progress: Progress | None) -> list[FieldChange]:
    kind_a, kind_b = detect(a), detect(b)
    if kind_a is not kind_b:
        return [FieldChange("image", "kind", kind_a.value, kind_b.value)]
    if kind_a is ImageKind.TAR:
        try:
            return diff_tar(a, b, progress)
        except ComposerError:
            if not _differ(a, b):
                return []  # two copies of one file no reader takes: nothing differs
            raise
    with a.open("rb") as fa, b.open("rb") as fb:
        ra, rb = Region(fa, 0, a.stat().st_size), Region(fb, 0, b.stat().st_size)
        if kind_a is ImageKind.DISK:
            return diff_disk(ra, rb, a.name, FS_DIFFS, _detect_region, progress)
        return FS_DIFFS[kind_a.value](ra, rb, a.name, progress, 0, None)


def _detect_region(r: Region) -> str | None:
    kind = fs_at(r.f, r.offset)
    return kind.value if kind is not None else None


IMAGE_SUFFIXES = (".img", ".simg", ".zst", ".tar", ".bmap")


def is_image(name: str) -> bool:
    """Whether an output file is one `image_changes` reads (by its name, as builds name them)."""
    return name.endswith(IMAGE_SUFFIXES) or ".tar." in name


def image_changes(name: str, path_a: Path, path_b: Path, progress: Progress | None = None,
                  inside: dict[str, str] | None = None, entries: bool = True) -> DiffResult:
    """diff_images (or diff_bmap) as the Changes `compose diff` reports: with `entries`, first
    the entries added, removed and changed in each file system (composer/check/entrydiff.py),
    then the fields those leave unexplained. A change that follows another, or that an entry
    change explains, or that lies in a partition `inside` names (label -> the image file that
    names it), goes to `following`."""
    entry_level: dict[str, tuple[ImageKind, list[Change]]] = {}
    if name.endswith(".bmap"):
        found = diff_bmap(path_a, path_b)
    else:
        with expanded(path_a, detect(path_a)) as a, expanded(path_b, detect(path_b)) as b:
            found = _diff_raw(a, b, progress)
            kind = detect(a)
            if entries and found and kind is detect(b):
                entry_level = image_entry_changes(name, a, b, kind, progress)
    explained = explainers(name, entry_level)
    changes = [c for _, found_in in entry_level.values() for c in found_in]
    following: list[tuple[Change, str]] = []
    for fc in found:
        if fc.is_bytes:
            change = Change(Scope.BYTES, f"{name} {fc.structure}", fc.field, None, None)
        else:
            change = Change(Scope.STRUCTURE, f"{name}: {fc.structure}", fc.field, fc.a, fc.b)
        label = (fc.field if fc.is_bytes else fc.structure).split(":", 1)[0].split(" (", 1)[0]
        cause = explained(fc) if not fc.follows else None
        if inside and label in inside:
            following.append((change, inside[label]))
        elif fc.follows:
            following.append((change, f"{name}: {fc.follows}"))
        elif cause is not None:
            following.append((change, cause))
        else:
            changes.append(change)
    if not found and detect(path_a) is detect(path_b) and _differ(path_a, path_b):
        # the same image in another container (.simg chunking, .zst frames); a raw image and
        # a .simg of the same bytes are the same image
        changes.append(Change(Scope.BYTES, name, "container bytes (the image inside is the "
                              "same)", None, None))
    return DiffResult(changes, following)


def diff_bmap(path_a: Path, path_b: Path) -> list[FieldChange]:
    """A bmap's image size, block size and each mapped range's checksum."""
    a, b = read_bmap(path_a), read_bmap(path_b)
    found = [FieldChange("bmap", f, getattr(a, f), getattr(b, f))
             for f in ("image_size", "block_size") if getattr(a, f) != getattr(b, f)]
    ranges_a = {(r.first, r.last): r.sha256 for r in a.ranges}
    ranges_b = {(r.first, r.last): r.sha256 for r in b.ranges}
    for span in sorted(ranges_a.keys() | ranges_b.keys()):
        x, y = ranges_a.get(span), ranges_b.get(span)
        if x != y:
            where = f"bmap range {span[0]}-{span[1]}"
            found.append(FieldChange(where, "chksum" if x and y else
                                     "added" if x is None else "removed", x, y))
    return found


def _differ(path_a: Path, path_b: Path) -> bool:
    return sparse_sha256(path_a) != sparse_sha256(path_b)
