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
    # sorted by a key, not as (bytes, entry) pairs: the keys go with the sort, and the pairs
    # would stay for the whole digest (about 130 bytes an entry at the end of a build)
    ordered = sorted(entries, key=_path_bytes)
    groups = _link_groups(ordered)
    by_path = {e.path: e for e in ordered}
    h = hashlib.sha256(b"composer-tree-1\n")
    # one update per entry, of the same bytes as one per field (a call costs more than the
    # few dozen bytes it hashes); the fields few values share are encoded once
    encoded = _Encoded()
    for entry in ordered:
        path = name_to_bytes(entry.path)
        if entry.kind is Kind.HARDLINK and entry.target in by_path:
            # one inode: its metadata is the data holder's, whatever a link's own header said
            inode = by_path[entry.target]
            entry = replace(inode, path=entry.path, kind=Kind.HARDLINK, target=entry.target)
        h.update(_line(path, entry, groups, content_sha256, encoded))
    return h.hexdigest()


def _path_bytes(entry: Entry) -> bytes:
    return name_to_bytes(entry.path)


def _field(value: bytes) -> bytes:
    """A field as the digest takes it: its length, a colon, its bytes."""
    return b"%d:%s" % (len(value), value)


_KIND_FIELDS = {kind: _field(kind.value.encode()) for kind in Kind}


class _Encoded(dict[tuple[str, int], bytes]):
    """Encoded fields by (what, value), for the ints that take few values (mode, uid, gid):
    made once per build instead of once per entry."""

    def of(self, what: str, value: int, spelling: bytes) -> bytes:
        key = (what, value)
        found = self.get(key)
        if found is None:
            found = self[key] = _field(spelling % value)
        return found


def _line(path: bytes, entry: Entry, groups: dict[str, bytes], content_sha256: ContentDigest,
          encoded: _Encoded) -> bytes:
    """Every member of a hard-link group as a file with its data and the group's first path:
    path, kind, mode, uid, gid, mtime_ns, size, content sha256, link target, group, device
    numbers, then each xattr's name and value digest; each field length-prefixed."""
    kind = entry.kind
    linked = kind is Kind.HARDLINK
    content = entry.content
    data = (kind is Kind.FILE or linked) and content is not None
    target = None if linked else entry.target
    parts = [_field(path), _KIND_FIELDS[Kind.FILE if linked else kind],
             encoded.of("mode", entry.mode, b"%o"), encoded.of("id", entry.uid, b"%d"),
             encoded.of("id", entry.gid, b"%d"), _field(b"%d" % entry.mtime_ns),
             _field(b"%d" % content.size) if data else b"0:",  # type: ignore[union-attr]
             _field(content_sha256(content).encode()) if data else b"0:",  # type: ignore[arg-type]
             _field(name_to_bytes(target)) if target is not None else b"0:",
             _field(groups.get(entry.path, b"")),
             _field(b"%d,%d" % entry.rdev) if kind is Kind.CHAR or kind is Kind.BLOCK
             else b"0:"]
    for name, value in entry.xattrs:
        parts += [_field(name_to_bytes(name)),
                  _field(hashlib.sha256(value).hexdigest().encode())]
    parts.append(b"\n")
    return b"".join(parts)


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
