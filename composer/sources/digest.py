"""The digest of a source's tree: what `reproduce` compares before it spends time building.

Every entry in the order of its path's bytes (so neither the folder's own path nor the order the
OS lists it in changes the digest), each field length-prefixed so that no two trees share an
encoding: path, kind, mode, uid, gid, mtime_ns, size and content sha256, link target, device
numbers, and each xattr's name and value digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from composer.sources import name_to_bytes
from composer.tree import Content, Entry, Kind

ContentDigest = Callable[[Content], str]


def tree_digest(entries: Iterable[Entry], content_sha256: ContentDigest) -> str:
    h = hashlib.sha256(b"composer-tree-1\n")
    for entry in sorted(entries, key=lambda e: name_to_bytes(e.path)):
        for field in _fields(entry, content_sha256):
            h.update(b"%d:" % len(field))
            h.update(field)
        h.update(b"\n")
    return h.hexdigest()


def _fields(entry: Entry, content_sha256: ContentDigest) -> list[bytes]:
    data = entry.kind is Kind.FILE and entry.content is not None
    fields = [name_to_bytes(entry.path), entry.kind.value.encode(), b"%o" % entry.mode,
              b"%d" % entry.uid, b"%d" % entry.gid, b"%d" % entry.mtime_ns,
              b"%d" % entry.size if data else b"",
              content_sha256(entry.content).encode() if data else b"",  # type: ignore[arg-type]
              name_to_bytes(entry.target) if entry.target is not None else b"",
              b"%d,%d" % entry.rdev if entry.kind in (Kind.CHAR, Kind.BLOCK) else b""]
    for name, value in entry.xattrs:
        fields += [name_to_bytes(name), hashlib.sha256(value).hexdigest().encode()]
    return fields
