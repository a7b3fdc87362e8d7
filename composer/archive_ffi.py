"""The libarchive calls that libarchive-c does not wrap: extended attributes.

libarchive-c 5.x exposes no xattr API, yet overlay2 stores and file capabilities live in xattrs
(trusted.overlay.*, security.capability), so we declare the entry_xattr_* functions ourselves
through libarchive-c's own ffi helper.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_void_p

from libarchive import ffi

_entry_p = ffi.c_archive_entry_p

xattr_reset = ffi.ffi("entry_xattr_reset", [_entry_p], c_int)
xattr_next = ffi.ffi("entry_xattr_next",
                     [_entry_p, POINTER(c_char_p), POINTER(c_void_p), POINTER(c_size_t)], c_int)
xattr_add = ffi.ffi("entry_xattr_add_entry", [_entry_p, c_char_p, c_void_p, c_size_t], None)
xattr_clear = ffi.ffi("entry_xattr_clear", [_entry_p], None)

ARCHIVE_OK = 0


def read_xattrs(entry_p: int) -> tuple[tuple[str, bytes], ...]:
    """All xattrs of an archive entry, sorted by name.

    A pax archive may carry each xattr twice (LIBARCHIVE.xattr.* and SCHILY.xattr.*), so the
    names are de-duplicated."""
    result: dict[str, bytes] = {}
    xattr_reset(entry_p)
    name = c_char_p()
    value = c_void_p()
    size = c_size_t()
    while xattr_next(entry_p, ctypes.byref(name), ctypes.byref(value), ctypes.byref(size)) \
            == ARCHIVE_OK:
        assert name.value is not None
        data = ctypes.string_at(value, size.value) if value.value else b""
        result[name.value.decode("utf-8", "surrogateescape")] = data
    return tuple(sorted(result.items()))


def add_xattrs(entry_p: int, xattrs: tuple[tuple[str, bytes], ...]) -> None:
    for name, data in xattrs:
        xattr_add(entry_p, name.encode("utf-8", "surrogateescape"), data, len(data))

# archive_entry_update_link_utf8 (what libarchive-c's `linkpath` setter uses) picks symlink or
# hard link from flags set by earlier calls, so set each kind of link explicitly.
update_symlink_utf8 = ffi.ffi("entry_update_symlink_utf8", [_entry_p, c_char_p], c_int)
update_hardlink_utf8 = ffi.ffi("entry_update_hardlink_utf8", [_entry_p, c_char_p], c_int)

# POSIX ACLs: libarchive keeps them apart from xattrs (tar --acls writes SCHILY.acl.*), with
# numeric ids in `qual`. Walked entry by entry: the text form maps ids to host user names.
acl_reset = ffi.ffi("entry_acl_reset", [_entry_p, c_int], c_int)
acl_next = ffi.ffi("entry_acl_next", [_entry_p, c_int, POINTER(c_int), POINTER(c_int),
                                      POINTER(c_int), POINTER(c_int), POINTER(c_char_p)], c_int)
acl_types = ffi.ffi("entry_acl_types", [_entry_p], c_int)  # one cheap call for "none at all"
ACL_TYPE_ACCESS = 0x100
ACL_TYPE_DEFAULT = 0x200


def read_acl(entry_p: int, acl_type: int) -> list[tuple[int, int, int, str]]:
    """(libarchive tag, permission bits rwx, numeric id or -1, name) of every ACL entry of one
    type."""
    found: list[tuple[int, int, int, str]] = []
    if acl_reset(entry_p, acl_type) == 0:
        return found
    kind, perm, tag, qual = c_int(), c_int(), c_int(), c_int()
    name = c_char_p()
    while acl_next(entry_p, acl_type, ctypes.byref(kind), ctypes.byref(perm), ctypes.byref(tag),
                   ctypes.byref(qual), ctypes.byref(name)) == ARCHIVE_OK:
        text = name.value.decode("utf-8", "replace") if name.value else ""
        found.append((tag.value, perm.value & 0o7, qual.value, text))
    return found
acl_add = ffi.ffi("entry_acl_add_entry", [_entry_p, c_int, c_int, c_int, c_int, c_char_p], c_int)


def add_acl(entry_p: int, acl_type: int, entries: list[tuple[int, int, int]]) -> None:
    """Add (libarchive tag, perm, id) entries; tar writers store them as SCHILY.acl.*."""
    for tag, perm, ident in entries:
        acl_add(entry_p, acl_type, perm, tag, ident, None)
