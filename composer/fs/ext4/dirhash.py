"""The half_md4 directory hash of htree directories (ext4-facts §7.4, e2fsprogs dirhash.c).

Ported from the description of `ext2fs_dirhash`: the name is fed in 32-byte chunks through
`str2hashbuf`, which pads with the number of bytes *remaining*, into a 3-round half MD4.
Bytes >= 0x80 are sign-extended because we set the SIGNED_HASH superblock flag, like x86 mke2fs.
"""

from __future__ import annotations

_M = 0xFFFFFFFF
_MD4_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_K2 = 0x5A827999  # 013240474631
_K3 = 0x6ED9EBA1  # 015666365641

# (input word, shift) per step; the target register rotates a, d, c, b each step
_ROUND1 = ((0, 3), (1, 7), (2, 11), (3, 19), (4, 3), (5, 7), (6, 11), (7, 19))
_ROUND2 = ((1, 3), (3, 5), (5, 9), (7, 13), (0, 3), (2, 5), (4, 9), (6, 13))
_ROUND3 = ((3, 3), (7, 9), (2, 11), (6, 15), (1, 3), (5, 9), (0, 11), (4, 15))


def _f(x: int, y: int, z: int) -> int:
    return z ^ (x & (y ^ z))


def _g(x: int, y: int, z: int) -> int:
    return ((x & y) + ((x ^ y) & z)) & _M


def _h(x: int, y: int, z: int) -> int:
    return x ^ y ^ z


_ROUNDS = ((_f, 0, _ROUND1), (_g, _K2, _ROUND2), (_h, _K3, _ROUND3))


def _transform(buf: list[int], words: list[int]) -> None:
    s = list(buf)
    for fn, k, steps in _ROUNDS:
        for step, (w, shift) in enumerate(steps):
            t = (4 - step) & 3  # a, d, c, b, a, d, c, b
            x = (s[t] + fn(s[(t + 1) & 3], s[(t + 2) & 3], s[(t + 3) & 3]) + words[w] + k) & _M
            s[t] = ((x << shift) | (x >> (32 - shift))) & _M
    for i in range(4):
        buf[i] = (buf[i] + s[i]) & _M


def _str2hashbuf(chunk: bytes, remaining: int, signed: bool) -> list[int]:
    pad = (remaining | (remaining << 8)) & _M
    pad = (pad | (pad << 16)) & _M
    words: list[int] = []
    val = pad
    for i, c in enumerate(chunk[:32]):
        if signed and c >= 0x80:
            c -= 0x100
        val = (c + (val << 8)) & _M
        if i % 4 == 3:
            words.append(val)
            val = pad
    if len(words) < 8:
        words.append(val)
    words.extend([pad] * (8 - len(words)))
    return words


def dx_hash(name: bytes, seed: tuple[int, int, int, int], signed: bool = True) -> tuple[int, int]:
    """(major, minor) half_md4 hash of a directory entry name; major has its low bit clear."""
    buf = list(seed) if any(seed) else list(_MD4_IV)
    pos = 0
    remaining = len(name)
    while remaining > 0:
        _transform(buf, _str2hashbuf(name[pos:pos + 32], remaining, signed))
        pos += 32
        remaining -= 32
    return buf[1] & ~1 & _M, buf[2]
