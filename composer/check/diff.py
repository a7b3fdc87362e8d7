"""What differs between two builds, in terms of the manifest's records (`compose diff`).

Changes are reported where they start and not again where they only follow: a file's new mode
explains its image's new bytes, that image's bmap, .simg and .zst, the disk image and
SHA256SUMS; a new epoch explains every entry whose mtime is one source time clamped to each
epoch, and every image (file systems store the epoch in their headers). An image whose bytes
differ while nothing that would explain it differs is named as such: the difference is outside
what the manifest records (a superblock field, a timestamp a writer leaked); between build
folders, composer/check/compare.py then names its structure and field (imagediff.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from composer.errors import ComposerError
from composer.outputs.manifest import DiskRecord, EntryRecord, Manifest, PartitionRecord
from composer.tree import Kind


class Scope(StrEnum):
    INPUTS = "inputs"  # provenance: what the builds were made from
    BUILD = "build"  # layout name, epoch, composer version
    PARTITION = "partition"  # a partition's record: fs, size, volume ID, its image's bytes
    ENTRY = "entry"  # one entry inside a partition
    DISK = "disk"  # the disk record: table, IDs, each table entry
    OUTPUT = "output"  # an output file whose bytes differ, unexplained by anything above
    STRUCTURE = "structure"  # a field of an on-disk structure inside an image (fielddiff)
    BYTES = "bytes"  # a byte range of an image in no structure decoded, and what holds it


NOT_COMPARED = "entries not compared"  # a file system whose entries could not be read (why in b)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: `field` of the thing at `where` (in `scope`) is `a` in A and `b` in B.
    `a` is None for something B added, `b` None for something B removed."""

    scope: Scope
    where: str  # "rootfs:/etc/hostname", "rootfs", "disk/partitions/rootfs", "rootfs.bmap", ""
    field: str
    a: Any
    b: Any

    def to_obj(self) -> dict[str, Any]:
        return {"scope": self.scope.value, "where": self.where, "field": self.field,
                "a": self.a, "b": self.b}

    def __str__(self) -> str:
        where = f"{self.where} " if self.where else ""
        if self.field == "added":
            return f"{self.scope.value}: {where}added"
        if self.field == "removed":
            return f"{self.scope.value}: {where}removed"
        if self.scope is Scope.BYTES:
            return f"{self.scope.value}: {self.where}: {self.field}"
        if self.field == NOT_COMPARED:
            return f"{self.scope.value}: {where}{self.field}: {self.b}"
        return f"{self.scope.value}: {where}{self.field}: {_show(self.a)} -> {_show(self.b)}"


def _show(value: Any) -> str:
    return "-" if value is None else str(value)


# The entry fields a change is reported in, and the record fields each one covers.
ENTRY_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kind", ("kind",)),
    ("content", ("size", "sha256")),
    ("mode", ("mode",)),
    ("owner", ("uid", "gid")),
    ("mtime", ("mtime_ns",)),  # mtime (seconds) follows mtime_ns
    ("xattrs", ("xattrs",)),
    ("device", ("rdev",)),
)


def entry_changes(partition: str, a: Iterable[EntryRecord], b: Iterable[EntryRecord],
                  epochs: tuple[int, int] | None = None) -> list[Change]:
    """Entries added, removed and changed, field by field, in path order. With `epochs` (A's
    and B's, when they differ) an mtime that is the epoch in both is no change of its own."""
    old = {e.path: e for e in a}
    new = {e.path: e for e in b}
    changes: list[Change] = []
    for path in sorted(old.keys() | new.keys()):
        where = f"{partition}:{path}"
        x, y = old.get(path), new.get(path)
        if x is not None and y is not None:
            x, y = _as_file(x, y, old), _as_file(y, x, new)
            changes += _entry_fields(where, x, y, epochs)
        elif y is not None:
            changes.append(Change(Scope.ENTRY, where, "added", None, y.kind))
        elif x is not None:
            changes.append(Change(Scope.ENTRY, where, "removed", x.kind, None))
    return changes


def _as_file(record: EntryRecord, other: EntryRecord, side: Mapping[str, EntryRecord]
             ) -> EntryRecord:
    """A hard link whose path is a file of its own on the other side, with the content of its
    group's first path: a link made or broken is that one change (its hard-link group), not
    a new kind and content as well."""
    if record.kind != Kind.HARDLINK.value or other.kind != Kind.FILE.value:
        return record
    first = side.get(record.target or "")
    if first is None or first.kind != Kind.FILE.value:
        return record
    return replace(record, kind=Kind.FILE.value, size=first.size, sha256=first.sha256)


def _entry_fields(where: str, x: EntryRecord, y: EntryRecord,
                  epochs: tuple[int, int] | None) -> list[Change]:
    changes = []
    for name, fields in ENTRY_FIELDS:
        before = tuple(getattr(x, f) for f in fields)
        after = tuple(getattr(y, f) for f in fields)
        if before == after:
            continue
        if name == "mtime" and epochs is not None and \
                follows_epoch(x.mtime_ns, y.mtime_ns, epochs):
            continue
        changes.append(Change(Scope.ENTRY, where, name, _one(before), _one(after)))
    if x.target != y.target:
        # a hard link's target names its group (composer links to the group's first path)
        name = "link target" if Kind.SYMLINK.value in (x.kind, y.kind) else "hardlink group"
        changes.append(Change(Scope.ENTRY, where, name, x.target, y.target))
    return changes


def follows_epoch(a_ns: int, b_ns: int, epochs: tuple[int, int]) -> bool:
    """Whether one source time s gives both mtimes, each clamped to its build's epoch
    (min(s, epoch), README "Time, IDs and determinism"): then the epoch alone changed it."""
    low, high = 0, None  # the times s can be: low <= s <= high (None: unbounded)
    for mtime, epoch in ((a_ns, epochs[0] * 10**9), (b_ns, epochs[1] * 10**9)):
        if mtime > epoch:
            return False  # not clamped: not this build's doing
        if mtime < epoch:
            if mtime < low or (high is not None and mtime > high):
                return False
            low = high = mtime
        else:
            low = max(low, mtime)
    return high is None or low <= high


def _one(values: tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else list(values)


def diff_manifests(a: Manifest, b: Manifest) -> list[Change]:
    """Every difference between two manifests, explained ones left out (module docstring)."""
    changes = _provenance(a, b)
    if a.layout != b.layout:
        changes.append(Change(Scope.BUILD, "", "layout", a.layout, b.layout))
    if a.composer != b.composer:
        changes.append(Change(Scope.BUILD, "", "composer", a.composer, b.composer))
    epochs = (a.epoch, b.epoch) if a.epoch != b.epoch else None
    if epochs is not None:
        changes.append(Change(Scope.BUILD, "", "epoch", a.epoch, b.epoch))
    for name in sorted(a.partitions.keys() | b.partitions.keys()):
        pa, pb = a.partitions.get(name), b.partitions.get(name)
        if pa is None or pb is None:
            changes.append(Change(Scope.PARTITION, name, "added" if pa is None else "removed",
                                  pa and pa.fs, pb and pb.fs))
            continue
        changes += _partition(name, pa, pb, epochs)
    changes += _disk(a.disk, b.disk)
    return changes


def _provenance(a: Manifest, b: Manifest) -> list[Change]:
    pa = a.provenance.to_obj() if a.provenance is not None else {}
    pb = b.provenance.to_obj() if b.provenance is not None else {}
    return [Change(Scope.INPUTS, "", key, x, y) for key, x, y in _flat_diff("", pa, pb)]


def _flat_diff(prefix: str, a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """Leaf differences of two JSON objects, as dotted keys."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in sorted(a.keys() | b.keys()):
            out += _flat_diff(f"{prefix}.{key}" if prefix else key, a.get(key), b.get(key))
        return out
    return [] if a == b else [(prefix, a, b)]


def _partition(name: str, a: PartitionRecord, b: PartitionRecord,
               epochs: tuple[int, int] | None) -> list[Change]:
    # a tar image's size is its byte count, as telling as its sha256: left to the entries
    fields = ("fs", "image", "uuid") if "tar" in (a.fs, b.fs) else ("fs", "image", "size", "uuid")
    changes = [Change(Scope.PARTITION, name, f, getattr(a, f), getattr(b, f))
               for f in fields if getattr(a, f) != getattr(b, f)]
    entries = entry_changes(name, a.entries, b.entries, epochs)
    changes += entries
    if a.sha256 != b.sha256 and not changes and epochs is None:
        changes.append(Change(Scope.PARTITION, name, "image bytes (entries the same)",
                              a.sha256, b.sha256))
    return changes


def _disk(a: DiskRecord | None, b: DiskRecord | None) -> list[Change]:
    if a is None and b is None:
        return []
    if a is None or b is None:
        return [Change(Scope.DISK, "disk", "added" if a is None else "removed",
                       a and a.table, b and b.table)]
    changes = [Change(Scope.DISK, "disk", f, getattr(a, f), getattr(b, f))
               for f in ("table", "size", "guid", "signature") if getattr(a, f) != getattr(b, f)]
    for kind, xs, ys, key in (("partitions", a.partitions, b.partitions, "name"),
                              ("raw", a.raw, b.raw, "name"), ("free", a.free, b.free, "offset")):
        old = {getattr(x, key): x.to_obj() for x in xs}
        new = {getattr(y, key): y.to_obj() for y in ys}
        for item in sorted(old.keys() | new.keys(), key=str):
            where = f"disk/{kind}/{item}"
            if item not in old or item not in new:
                changes.append(Change(Scope.DISK, where, "added" if item not in old else
                                      "removed", old.get(item), new.get(item)))
                continue
            changes += [Change(Scope.DISK, where, f, x, y)
                        for f, x, y in _flat_diff("", old[item], new[item])]
    return changes


def diff_outputs(a: Mapping[str, str], b: Mapping[str, str],
                 explained: frozenset[str] = frozenset()) -> list[Change]:
    """Output files (name -> sha256, from each SHA256SUMS) added, removed or with other bytes;
    bytes of the `explained` ones are not reported again."""
    changes = []
    for name in sorted(a.keys() | b.keys()):
        if name not in a or name not in b:
            changes.append(Change(Scope.OUTPUT, name, "added" if name not in a else "removed",
                                  a.get(name), b.get(name)))
        elif a[name] != b[name] and name not in explained:
            changes.append(Change(Scope.OUTPUT, name, "bytes", a[name], b[name]))
    return changes


DISK_OUTPUTS = ("disk.img", "disk.bmap", "disk.simg", "disk.img.zst", "disk.sfdisk")


def partition_outputs(name: str) -> tuple[str, ...]:
    """The files made from partition `name`'s image (README "Outputs")."""
    return (f"{name}.img", f"{name}.tar", f"{name}.bmap", f"{name}.simg", f"{name}.img.zst")


def explained_outputs(changes: Sequence[Change], a: Manifest, b: Manifest) -> frozenset[str]:
    """The output files whose new bytes the manifest-level `changes` account for."""
    if not changes:
        return frozenset()
    names = {"manifest.json"}
    if any(c.scope is Scope.BUILD and c.field == "epoch" for c in changes):
        return frozenset(names | {*DISK_OUTPUTS} |
                         {n for p in a.partitions.keys() | b.partitions.keys()
                          for n in partition_outputs(p)})
    in_disk = {p.name for m in (a, b) if m.disk is not None for p in m.disk.partitions}
    for change in changes:
        if change.scope in (Scope.PARTITION, Scope.ENTRY):
            partition = change.where.split(":", 1)[0]
            names.update(partition_outputs(partition))
            if partition in in_disk:
                names.update(DISK_OUTPUTS)
        elif change.scope is Scope.DISK:
            names.update(DISK_OUTPUTS)
    return frozenset(names)


def read_sha256sums(path: Path) -> dict[str, str]:
    """name -> sha256 from a SHA256SUMS file ("<hex>  <name>" lines, as sha256sum writes)."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ComposerError(f"{path}:{number}: not a sha256sum line: {line!r}")
        sums[name] = digest
    return sums


@dataclass(frozen=True, slots=True)
class DiffResult:
    """The changes where they start, and those that only follow from one of them (with the
    key of what they follow: `diff` prints the first, `--json` holds both)."""

    changes: list[Change]
    following: list[tuple[Change, str]]

    def to_obj(self) -> dict[str, Any]:
        return {"identical": not self.changes and not self.following,
                "changes": [c.to_obj() for c in self.changes],
                "following": [{**c.to_obj(), "follows": cause} for c, cause in self.following],
                "summary": summary(self.changes)}


def summary(changes: Sequence[Change]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.scope.value] = counts.get(change.scope.value, 0) + 1
    return counts
