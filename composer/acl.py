"""POSIX ACLs as Linux stores them in xattrs (system.posix_acl_access / _default).

The xattr form (acl_ea.h): a little-endian u32 version 2, then one 8-byte entry per ACL entry:
u16 tag, u16 permissions (rwx = 4/2/1), u32 id (0xFFFFFFFF for the owner, owning group, mask
and other entries), sorted by tag then id. Archives hand ACLs over as separate entries, so they
are turned into this form and travel with the other xattrs.
"""

from __future__ import annotations

from collections.abc import Iterable

from composer.structs import Struct

ACCESS_XATTR = "system.posix_acl_access"
DEFAULT_XATTR = "system.posix_acl_default"
XATTR_VERSION = 2
NO_ID = 0xFFFFFFFF

ACL_HEADER = Struct("posix_acl_xattr_header", "linux include/uapi/linux/posix_acl_xattr.h", 4,
                    "<", (("a_version", "I"),))
ACL_ENTRY = Struct("posix_acl_xattr_entry", "linux include/uapi/linux/posix_acl_xattr.h", 8,
                   "<", (("e_tag", "H"), ("e_perm", "H"), ("e_id", "I")))

# tags of the xattr form (linux/posix_acl.h)
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
# libarchive's tags (archive_entry.h) -> the xattr form's, and whether the id counts
_FROM_LIBARCHIVE = {10002: (USER_OBJ, False), 10001: (USER, True), 10004: (GROUP_OBJ, False),
                    10003: (GROUP, True), 10005: (MASK, False), 10006: (OTHER, False)}


class UnresolvedName(ValueError):
    """A named ACL entry without a numeric id: names mean nothing off the golden device."""


def acl_xattr(entries: Iterable[tuple[int, int, int] | tuple[int, int, int, str]]
              ) -> bytes | None:
    """The xattr value for libarchive ACL entries (tag, perm, id[, name]); None for a trivial
    ACL (only owner, group and other: the mode bits say it all)."""
    items = []
    for tag, perm, ident, *name in entries:
        if tag not in _FROM_LIBARCHIVE:
            continue  # NFSv4 entries have no place in a POSIX ACL
        xtag, has_id = _FROM_LIBARCHIVE[tag]
        if has_id and ident < 0:
            raise UnresolvedName(name[0] if name else "?")
        items.append((xtag, perm & 0o7, ident & 0xFFFFFFFF if has_id else NO_ID))
    if not any(tag in (USER, GROUP, MASK) for tag, _, _ in items):
        return None
    items.sort(key=lambda item: (item[0], item[2]))
    return ACL_HEADER.pack(a_version=XATTR_VERSION) + b"".join(
        ACL_ENTRY.pack(e_tag=tag, e_perm=perm, e_id=ident) for tag, perm, ident in items)


def mask_bits(value: bytes) -> int | None:
    """The mask entry's permissions of an xattr-form ACL (None without a mask)."""
    for entry in _entries(value):
        if entry["e_tag"] == MASK:
            return int(entry["e_perm"])
    return None


_TO_LIBARCHIVE = {xtag: tag for tag, (xtag, _) in _FROM_LIBARCHIVE.items()}


def acl_entries(value: bytes) -> list[tuple[int, int, int]]:
    """The xattr form back as libarchive entries (tag, perm, id; -1 where no id applies)."""
    found = []
    for entry in _entries(value):
        tag, ident = entry["e_tag"], entry["e_id"]
        if tag in _TO_LIBARCHIVE:
            found.append((_TO_LIBARCHIVE[tag], entry["e_perm"] & 0o7,
                          -1 if ident == NO_ID else ident))
    return found


def _entries(value: bytes) -> Iterable[dict[str, int]]:
    """The entries after the header; a partial entry at the end is ignored."""
    for offset in range(ACL_HEADER.size, len(value) - ACL_ENTRY.size + 1, ACL_ENTRY.size):
        yield ACL_ENTRY.unpack(value, offset)
