"""The libarchive calls that libarchive-c does not wrap: extended attributes, sparse maps, raw
names, and a locale that cannot change names.

libarchive-c 5.x exposes no xattr API, yet overlay2 stores and file capabilities live in xattrs
(trusted.overlay.*, security.capability), so we declare the entry_xattr_* functions ourselves
through libarchive-c's own ffi helper.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from ctypes import POINTER, c_char_p, c_int, c_int64, c_size_t, c_void_p

from libarchive import ffi
from libarchive.read import new_archive_read

from composer.errors import ComposerError

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
    if not xattr_reset(entry_p):  # it returns how many there are: most members have none
        return ()
    result: dict[str, bytes] = {}
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

@contextmanager
def open_archive(path: str, block_size: int | None = None) -> Iterator[int]:
    """An archive opened for reading, as libarchive's pointer (what the functions here take).

    libarchive-c's `file_reader` keeps the pointer in a private attribute of its ArchiveRead and
    ignores `block_size` (it reads st_blksize); this opens the file the same way through
    libarchive-c's public `new_archive_read` and ffi, with the block size given (default: the
    file's st_blksize, as file_reader)."""
    with new_archive_read() as archive_p:
        size = block_size if block_size is not None else os.stat(path).st_blksize
        ffi.read_open_filename_w(archive_p, path, size)
        yield archive_p


# archive_entry_update_link_utf8 (what libarchive-c's `linkpath` setter uses) picks symlink or
# hard link from flags set by earlier calls, so set each kind of link explicitly. Names are set
# as raw bytes (the "mbs" form, taken as is under utf8_locale below): the *_utf8 setters refuse
# bytes that are not valid UTF-8 and leave the name empty.
copy_pathname = ffi.ffi("entry_copy_pathname", [_entry_p, c_char_p], None)
copy_symlink = ffi.ffi("entry_copy_symlink", [_entry_p, c_char_p], None)
copy_hardlink = ffi.ffi("entry_copy_hardlink", [_entry_p, c_char_p], None)

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


# Sparse maps: GNU tar --sparse (old GNU and pax 0.x/1.0 formats) stores only the data regions of
# a file; libarchive hands the map over as (offset, length) data regions and reads zeros for the
# rest (archive_entry_sparse(3)).
sparse_reset = ffi.ffi("entry_sparse_reset", [_entry_p], c_int)
sparse_next = ffi.ffi("entry_sparse_next", [_entry_p, POINTER(c_int64), POINTER(c_int64)], c_int)


def data_regions(entry_p: int) -> list[tuple[int, int]]:
    """The member's data regions (offset, length) as its archive stores them; [] when the member
    has no sparse map (all of it is data)."""
    regions: list[tuple[int, int]] = []
    if sparse_reset(entry_p) <= 0:  # returns the number of regions
        return regions
    offset, length = c_int64(), c_int64()
    while sparse_next(entry_p, ctypes.byref(offset), ctypes.byref(length)) == ARCHIVE_OK:
        regions.append((offset.value, length.value))
    return regions


# Where a member's data starts: for an uncompressed tar, the bytes the format reader consumed
# (archive_filter_bytes of filter 0) right after a header are the file offset of its data, so the
# data can then be read with pread in any order, without parsing the headers again.
_filter_bytes = ffi.libarchive["archive_filter_bytes"]
_filter_bytes.argtypes = [ffi.c_archive_p, c_int]
_filter_bytes.restype = c_int64
_filter_code = ffi.libarchive["archive_filter_code"]
_filter_code.argtypes = [ffi.c_archive_p, c_int]
_filter_code.restype = c_int
_format = ffi.libarchive["archive_format"]
_format.argtypes = [ffi.c_archive_p]
_format.restype = c_int
_FORMAT_BASE_MASK = 0xFF0000
_FORMAT_TAR = 0x30000
_FILTER_NONE = 0


def plain_tar(archive_p: int) -> bool:
    """The archive (after its first header) is a tar with no compression filter: its members'
    data lie at data_offset() in the file, stored as is."""
    return (_format(archive_p) & _FORMAT_BASE_MASK) == _FORMAT_TAR and \
        ffi.filter_count(archive_p) == 1 and _filter_code(archive_p, 0) == _FILTER_NONE


def data_offset(archive_p: int) -> int:
    """Right after next_header: where the member's data starts in the unfiltered stream."""
    return int(_filter_bytes(archive_p, 0))


# Names are bytes on Linux. libarchive converts the names that a format defines as text (pax
# `path`, zip names flagged UTF-8) to the charset of the calling thread's locale
# (archive_string.c, get_current_charset via nl_langinfo(CODESET)), so under LC_ALL=C or a
# Latin-1 locale the same archive gives other bytes, or fails to convert. Archives are therefore
# read and written with the thread's locale switched to C.UTF-8 (uselocale(3) is per thread: no
# process-wide state of Python or of libarchive is touched), where raw names pass unchanged and
# pax UTF-8 names come out as their UTF-8 bytes.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.newlocale.restype = c_void_p
_libc.newlocale.argtypes = [c_int, c_char_p, c_void_p]
_libc.uselocale.restype = c_void_p
_libc.uselocale.argtypes = [c_void_p]
_LC_ALL_MASK = 0x1FBF  # glibc's LC_ALL_MASK (locale.h): every category
_utf8_locale: int | None = None


def _c_utf8() -> int:
    global _utf8_locale
    if _utf8_locale is None:
        handle = _libc.newlocale(_LC_ALL_MASK, b"C.UTF-8", None)
        if not handle:
            raise ComposerError("the C.UTF-8 locale is missing, so archive names cannot be read "
                                "independently of the locale",
                                hint="use a glibc of 2.35 or later, or install C.UTF-8")
        _utf8_locale = handle
    return _utf8_locale


@contextmanager
def utf8_locale() -> Iterator[None]:
    """Run the block with this thread's locale set to C.UTF-8, then restore it."""
    previous = _libc.uselocale(_c_utf8())
    try:
        yield
    finally:
        _libc.uselocale(previous)


def raw_pathname(entry_p: int) -> bytes:
    """The member's name as bytes (libarchive-c's `pathname` goes through wchar_t and the
    locale, and returns bytes instead of str when that fails)."""
    return ffi.entry_pathname(entry_p) or b""


def raw_symlink(entry_p: int) -> bytes | None:
    return ffi.entry_symlink(entry_p)


def raw_hardlink(entry_p: int) -> bytes | None:
    return ffi.entry_hardlink(entry_p)


# Reading without libarchive-c's error check: its check_int only logs ARCHIVE_WARN, which is how
# libarchive reports a zip whose local header and central directory disagree, or a bad CRC. We
# need the code itself. `libarchive[name]` makes a new function object each time, so libarchive-c's
# own bindings stay as they are.
ARCHIVE_EOF = 1
ARCHIVE_WARN = -20
_next_header = ffi.libarchive["archive_read_next_header2"]
_next_header.argtypes = [ffi.c_archive_p, _entry_p]
_next_header.restype = c_int
_read_data = ffi.libarchive["archive_read_data"]
_read_data.argtypes = [ffi.c_archive_p, c_void_p, c_size_t]
_read_data.restype = ctypes.c_ssize_t
_error_string = ffi.libarchive["archive_error_string"]
_error_string.argtypes = [ffi.c_archive_p]
_error_string.restype = c_char_p

# Warnings that only say a text field held bytes that are not valid UTF-8: libarchive keeps the
# bytes as stored, which is what GNU tar extracts (archive_string.c: "... can't be converted").
_HARMLESS_WARNING = b"can't be converted"


class ReadFailure(Exception):
    """libarchive could not read on (or read something inconsistent): its reason, and the name
    of the member whose header it read (None when the header itself could not be read)."""

    def __init__(self, reason: str, member: bytes | None = None) -> None:
        super().__init__(reason)
        self.member = member


def _reason(archive_p: int) -> str:
    text = _error_string(archive_p) or b"unknown error"
    return text.decode("utf-8", "backslashreplace").strip().rstrip(".")


def next_header(archive_p: int, entry_p: int) -> bool:
    """Read the next member's header into entry_p; False at the end of the archive."""
    code = _next_header(archive_p, entry_p)
    if code == ARCHIVE_EOF:
        return False
    if code == ARCHIVE_OK:
        return True
    if code == ARCHIVE_WARN:  # the header was read, and found wanting
        if _HARMLESS_WARNING in (_error_string(archive_p) or b""):
            return True
        raise ReadFailure(_reason(archive_p), raw_pathname(entry_p))
    raise ReadFailure(_reason(archive_p))


def next_header_as_stored(archive_p: int, entry_p: int) -> bool:
    """next_header with this thread's locale pinned to C.UTF-8 for the call only (what
    utf8_locale does, without a context manager: the data pass calls this once per member)."""
    previous = _libc.uselocale(_c_utf8())
    try:
        return next_header(archive_p, entry_p)
    finally:
        _libc.uselocale(previous)


def read_data(archive_p: int, buffer: ctypes.Array[ctypes.c_char] | int, size: int) -> int:
    """Up to `size` bytes of the current member into `buffer` (a ctypes array or an address;
    holes read as zeros); 0 at its end."""
    got = _read_data(archive_p, buffer, size)
    if got < 0:
        raise ReadFailure(_reason(archive_p))
    return int(got)
