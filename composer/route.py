"""Routing: every device path goes to the partition whose mount is its longest prefix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from composer.errors import ComposerError
from composer.layout.model import Partition
from composer.tree import DeviceTree, Entry, Kind, is_under, parent, relative, sort_key
from composer.types import Claim


def owner_of(path: str, partitions: Sequence[Partition]) -> Partition | None:
    best: Partition | None = None
    for part in partitions:
        if is_under(path, part.mount) and (best is None or len(part.mount) > len(best.mount)):
            best = part
    return best


@dataclass(frozen=True, slots=True)
class Routing:
    """What route() found; the tree it was given is left as it was."""

    tree: DeviceTree  # the device tree with every mount point (a folder at the epoch if absent)
    partitions: Mapping[str, tuple[Entry, ...]]  # by name: sorted, paths relative to the mount
    errors: tuple[ComposerError, ...]


def route(given: DeviceTree, partitions: Sequence[Partition], epoch_ns: int,
          claims: Mapping[str, Claim]) -> Routing:
    """Entries of each partition, sorted, with paths relative to its mount ("/" = its root)."""
    errors: list[ComposerError] = []
    uncovered: dict[Claim, list[str]] = {}
    missing = [Entry(m, Kind.DIR, 0o755, 0, 0, epoch_ns)
               for m in dict.fromkeys(p.mount for p in partitions) if m not in given]
    tree = DeviceTree([*given.entries(), *missing]) if missing else given
    mounts = {p.mount for p in partitions}
    routed: dict[str, list[Entry]] = {p.name: [] for p in partitions}
    owners: dict[str, Partition] = {}
    entries = tree.entries()
    errors += _not_folders(tree, entries, mounts, claims)
    for entry in entries:
        part = owner_of(entry.path, partitions)
        if part is None:
            claim = claims.get(entry.path)
            if claim is not None:  # folders made only to hold others are not worth a word
                uncovered.setdefault(claim, []).append(entry.path)
            continue
        owners[entry.path] = part
        moved = entry.moved(relative(entry.path, part.mount))
        if entry.kind is Kind.HARDLINK and entry.target is not None:
            moved = replace(moved, target=relative(entry.target, part.mount))
        routed[part.name].append(moved)
        if entry.path in mounts and entry.path != "/":
            parent_part = owner_of_parent(entry.path, partitions)
            if parent_part is not None:  # the mount point itself, empty, in the parent fs
                rel = relative(entry.path, parent_part.mount)
                routed[parent_part.name].append(replace(entry, path=rel))
    errors += [_uncovered(claim, paths) for claim, paths in uncovered.items()]
    errors += _hardlinks(tree, owners)
    result = {name: tuple(sorted(entries, key=lambda e: sort_key(e.path)))
              for name, entries in routed.items()}
    return Routing(tree, result, tuple(errors))


def _not_folders(tree: DeviceTree, entries: list[Entry], mounts: set[str],
                 claims: Mapping[str, Claim]) -> list[ComposerError]:
    """The root, every mount point and every parent must be a folder: a writer cannot put a file
    below a file, and nothing may be placed through a symlink (it would land elsewhere)."""
    errors: list[ComposerError] = []
    reported: set[str] = set()
    for entry in entries:
        mount = entry.path in mounts or entry.path == "/"
        holder = entry if mount else tree.get(parent(entry.path))
        if holder is None or holder.kind is Kind.DIR or holder.path in reported:
            continue
        reported.add(holder.path)
        claim, below = claims.get(holder.path), claims.get(entry.path)
        message = f"{claim.what} makes " if claim is not None else ""
        message += f"{holder.path} a {holder.kind.value}, but "
        if holder is entry:
            message += "it is the root" if entry.path == "/" else "it is a partition's mount point"
        else:
            message += f"{below.what} places" if below is not None else "there is"
            message += f" {entry.path} below it"
        loc = claim.loc if claim is not None else below.loc if below is not None else None
        errors.append(ComposerError(message, loc, hint="only a folder can hold other paths; "
                                    "change 'to' so that the two do not overlap"))
    return errors


def _uncovered(claim: Claim, paths: list[str]) -> ComposerError:
    more = f" (and {len(paths) - 1} more below it)" if len(paths) > 1 else ""
    return ComposerError(f"{claim.what} places {paths[0]}{more}, which is on no partition",
                         claim.loc, hint=_cover_hint(claim))


def _cover_hint(claim: Claim) -> str:
    if claim.what == "systemd":  # the one rule with no `to`: units go where systemd looks
        return ("systemd installs units in /etc/systemd/system: add a partition whose mount "
                "covers it (usually the root, mount: /)")
    return f"add a partition whose mount covers it, or change {claim.what}.to"


def owner_of_parent(mount: str, partitions: Sequence[Partition]) -> Partition | None:
    others = [p for p in partitions if p.mount != mount]
    return owner_of(mount, others)


def _hardlinks(tree: DeviceTree, owners: dict[str, Partition]) -> list[ComposerError]:
    errors = []
    links = [e for e in tree.as_mapping().values() if e.kind is Kind.HARDLINK]
    for entry in sorted(links, key=lambda e: sort_key(e.path)):
        if entry.target is not None:
            a, b = owners.get(entry.path), owners.get(entry.target)
            if a is not None and b is not None and a.name != b.name:
                errors.append(ComposerError(
                    f"{entry.path} is a hard link to {entry.target}, which is on another "
                    f"partition ({b.name}, not {a.name})", None,
                    hint="hard links cannot cross file systems; copy the file instead"))
    return errors


def for_writer(entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
    """Hard links carry no data of their own inside one image."""
    return tuple(replace(e, content=None) if e.kind is Kind.HARDLINK else e for e in entries)
