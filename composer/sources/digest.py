"""The digest of a source's tree: what `reproduce` compares before it spends time building.

Every entry in the order of its path's bytes (so neither the folder's own path nor the order the
OS lists it in changes the digest), each field length-prefixed so that no two trees share an
encoding: path, kind, mode, uid, gid, mtime_ns, size and content sha256, link target, device
numbers, hard-link group, and each xattr's name and value digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace

from composer.sources import name_to_bytes
from composer.tree import Content, Entry, Kind

ContentDigest = Callable[[Content], str]


def tree_digest(entries: Iterable[Entry], content_sha256: ContentDigest) -> str:
    ordered = sorted(entries, key=lambda e: name_to_bytes(e.path))
    groups = _link_groups(ordered)
    by_path = {e.path: e for e in ordered}
    h = hashlib.sha256(b"composer-tree-1\n")
    for entry in ordered:
        if entry.kind is Kind.HARDLINK and entry.target in by_path:
            # one inode: its metadata is the data holder's, whatever a link's own header said
            inode = by_path[entry.target]
            entry = replace(inode, path=entry.path, kind=Kind.HARDLINK, target=entry.target)
        # one update per entry, of the same bytes as one per field (a call costs more than
        # the few dozen bytes it hashes)
        h.update(b"".join([b"%d:%s" % (len(field), field)
                           for field in _fields(entry, groups, content_sha256)]) + b"\n")
    return h.hexdigest()


def _link_groups(ordered: list[Entry]) -> dict[str, bytes]:
    """path -> the first path (in byte order) of its hard-link group, for every file that has
    other names. Which name an archive stored first (and so made the link target) is member
    order, and no more part of the tree than the order itself (tree.canonical_hardlinks)."""
    members: dict[str, list[str]] = {}
    for entry in ordered:
        if entry.kind is Kind.HARDLINK and entry.target is not None:
            members.setdefault(entry.target, [entry.target]).append(entry.path)
    groups: dict[str, bytes] = {}
    for paths in members.values():
        first = min(name_to_bytes(p) for p in paths)
        groups.update({p: first for p in paths})
    return groups


def _fields(entry: Entry, groups: dict[str, bytes], content_sha256: ContentDigest) -> list[bytes]:
    """Every member of a hard-link group as a file with its data and the group's first path."""
    linked = entry.kind is Kind.HARDLINK
    data = entry.kind in (Kind.FILE, Kind.HARDLINK) and entry.content is not None
    kind = Kind.FILE if linked else entry.kind
    target = None if linked else entry.target
    fields = [name_to_bytes(entry.path), kind.value.encode(), b"%o" % entry.mode,
              b"%d" % entry.uid, b"%d" % entry.gid, b"%d" % entry.mtime_ns,
              b"%d" % entry.content.size if data else b"",  # type: ignore[union-attr]
              content_sha256(entry.content).encode() if data else b"",  # type: ignore[arg-type]
              name_to_bytes(target) if target is not None else b"",
              groups.get(entry.path, b""),
              b"%d,%d" % entry.rdev if entry.kind in (Kind.CHAR, Kind.BLOCK) else b""]
    for name, value in entry.xattrs:
        fields += [name_to_bytes(name), hashlib.sha256(value).hexdigest().encode()]
    return fields
