"""The 256-byte inode (docs/ext4.md §5.1) and its checksum."""

from __future__ import annotations

from dataclasses import dataclass

from composer.fs.ext4.constants import EXTRA_ISIZE, INODE_SIZE
from composer.fs.ext4.csum import crc, inode_seed
from composer.fs.ext4.layouts import INODE

_M = 0xFFFFFFFF
_NS = 1_000_000_000
# ext4 time range: 32-bit signed seconds plus two epoch bits (1901-12-13 .. 2446-05-10): the
# epoch bits add 0..3 times 2^32 to the signed value (kernel ext4_decode_extra_time), so the
# last second is 3 * 2^32 + 2^31 - 1; one more wraps to epoch 0, 1901
TIME_MIN = -(1 << 31)
TIME_MAX = 3 * (1 << 32) + (1 << 31) - 1

# every field composer sets; the others (dtime, version, generation, faddr, projid, ...) and the
# checksum halves, patched in after the crc over the rest, are zero
_INODE = INODE.packer(
    "i_mode", "i_uid", "i_size_lo", "i_atime", "i_ctime", "i_mtime", "i_gid", "i_links_count",
    "i_blocks_lo", "i_flags", "i_block", "i_file_acl_lo", "i_size_high", "l_i_blocks_hi",
    "l_i_file_acl_high", "l_i_uid_high", "l_i_gid_high", "i_extra_isize", "i_ctime_extra",
    "i_mtime_extra", "i_atime_extra", "i_crtime", "i_crtime_extra", "ibody_xattrs")


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
    xattr_area: bytes = b""  # ibody_xattrs (96 bytes) when there are in-inode xattrs


def pack_inode(buf: bytearray, off: int, ino: int, d: InodeData, csum_seed: int,
               iseed: int | None = None) -> None:
    """Write the inode at buf[off:off+256] and its checksum (`iseed`: the inode's checksum
    seed, `inode_seed(csum_seed, ino)`, when the caller has it already)."""
    pack_inode_values(buf, off, inode_seed(csum_seed, ino) if iseed is None else iseed,
                      d.st_mode, d.uid, d.gid, d.size, d.links, d.sectors, d.flags, d.i_block,
                      d.time_ns, d.file_acl, d.xattr_area)


def pack_inode_values(buf: bytearray, off: int, iseed: int, st_mode: int, uid: int, gid: int,
                      size: int, links: int, sectors: int, flags: int, i_block: bytes,
                      time_ns: int, file_acl: int, xattr_area: bytes) -> None:
    """`pack_inode` with InodeData's fields as arguments, in its order (the image writer's
    loop over every inode: no record object per inode); `iseed` is the inode's seed."""
    t, t_extra = encode_time(time_ns)
    _INODE.pack_into(
        buf, off,
        st_mode, uid & 0xFFFF, size & _M, t, t, t, gid & 0xFFFF, links,
        sectors & _M, flags, i_block, file_acl & _M, size >> 32,
        (sectors >> 32) & 0xFFFF, file_acl >> 32, uid >> 16, gid >> 16, EXTRA_ISIZE,
        t_extra, t_extra, t_extra, t, t_extra, xattr_area)
    c = crc(iseed, memoryview(buf)[off:off + INODE_SIZE])
    INODE.patch(buf, off, "l_i_checksum_lo", c & 0xFFFF)
    INODE.patch(buf, off, "i_checksum_hi", c >> 16)
