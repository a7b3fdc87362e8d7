"""The 256-byte inode (docs/ext4.md §5.1) and its checksum."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from composer.fs.ext4.constants import EXTRA_ISIZE, INODE_SIZE
from composer.fs.ext4.csum import crc, inode_seed

_M = 0xFFFFFFFF
_NS = 1_000_000_000
# ext4 time range: 32-bit signed seconds plus two epoch bits (1901-12-13 .. 2446-05-10): the
# epoch bits add 0..3 times 2^32 to the signed value (kernel ext4_decode_extra_time), so the
# last second is 3 * 2^32 + 2^31 - 1; one more wraps to epoch 0, 1901
TIME_MIN = -(1 << 31)
TIME_MAX = 3 * (1 << 32) + (1 << 31) - 1

# base inode: mode, uid, size_lo, atime, ctime, mtime, dtime, gid, links, blocks_lo, flags,
# version; then i_block (60 bytes) at 0x28
_BASE = struct.Struct("<HHIIIIIHHIII")
# 0x64: generation, file_acl_lo, size_high, faddr, blocks_hi, file_acl_hi, uid_hi, gid_hi,
# checksum_lo, reserved; 0x80: extra_isize, checksum_hi, ctime/mtime/atime extra, crtime,
# crtime_extra, version_hi, projid
_TAIL = struct.Struct("<IIIIHHHHHHHHIIIIIII")


def encode_time(ns: int) -> tuple[int, int]:
    """(seconds field, extra field) for a time in ns (kernel ext4_encode_extra_time)."""
    secs, nsec = divmod(ns, _NS)
    signed32 = ((secs + (1 << 31)) & _M) - (1 << 31)
    epoch = ((secs - signed32) >> 32) & 3
    return secs & _M, (nsec << 2) | epoch


@dataclass(frozen=True, slots=True)
class InodeData:
    st_mode: int  # S_IFMT | permission bits
    uid: int
    gid: int
    size: int
    links: int
    sectors: int  # i_blocks in 512-byte units
    flags: int
    i_block: bytes  # 60 bytes
    time_ns: int  # atime = ctime = mtime = crtime
    file_acl: int = 0
    xattr_area: bytes = b""  # 96 bytes from 0xA0 when there are in-inode xattrs


def pack_inode(buf: bytearray, off: int, ino: int, d: InodeData, csum_seed: int) -> None:
    """Write the inode at buf[off:off+256] (which must be zero) and its checksum."""
    t, t_extra = encode_time(d.time_ns)
    _BASE.pack_into(buf, off, d.st_mode, d.uid & 0xFFFF, d.size & _M, t, t, t, 0,
                    d.gid & 0xFFFF, d.links, d.sectors & _M, d.flags, 0)
    buf[off + 0x28:off + 0x64] = d.i_block
    _TAIL.pack_into(buf, off + 0x64, 0, d.file_acl & _M, d.size >> 32, 0,
                    (d.sectors >> 32) & 0xFFFF, d.file_acl >> 32, d.uid >> 16, d.gid >> 16,
                    0, 0, EXTRA_ISIZE, 0, t_extra, t_extra, t_extra, t, t_extra, 0, 0)
    if d.xattr_area:
        buf[off + 0xA0:off + INODE_SIZE] = d.xattr_area
    c = crc(inode_seed(csum_seed, ino), memoryview(buf)[off:off + INODE_SIZE])
    struct.pack_into("<H", buf, off + 0x7C, c & 0xFFFF)
    struct.pack_into("<H", buf, off + 0x82, c >> 16)
