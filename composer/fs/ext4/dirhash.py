"""The half_md4 directory hash of htree directories (docs/ext4.md §7.4, e2fsprogs dirhash.c).

Ported from the description of `ext2fs_dirhash`: the name is fed in 32-byte chunks through
`str2hashbuf`, which pads with the number of bytes *remaining*, into a 3-round half MD4.
Bytes >= 0x80 are sign-extended because we set the SIGNED_HASH superblock flag, like x86 mke2fs.
"""

from __future__ import annotations

_M = 0xFFFFFFFF
_MD4_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_K2 = 0x5A827999  # 013240474631
_K3 = 0x6ED9EBA1  # 015666365641

def _transform(buf: list[int], w: list[int]) -> None:
    """halfMD4Transform, unrolled: 3 rounds of 8 steps on (a, b, c, d)."""
    a, b, c, d = buf
    # round 1: F(x, y, z) = z ^ (x & (y ^ z)), shifts 3, 7, 11, 19
    for i in (0, 4):
        x = (a + (d ^ (b & (c ^ d))) + w[i]) & _M
        a = ((x << 3) | (x >> 29)) & _M
        x = (d + (c ^ (a & (b ^ c))) + w[i + 1]) & _M
        d = ((x << 7) | (x >> 25)) & _M
        x = (c + (b ^ (d & (a ^ b))) + w[i + 2]) & _M
        c = ((x << 11) | (x >> 21)) & _M
        x = (b + (a ^ (c & (d ^ a))) + w[i + 3]) & _M
        b = ((x << 19) | (x >> 13)) & _M
    # round 2: G(x, y, z) = (x & y) + ((x ^ y) & z), words 1 3 5 7 0 2 4 6, shifts 3 5 9 13
    for i, j, k, m in ((1, 3, 5, 7), (0, 2, 4, 6)):
        x = (a + ((b & c) + ((b ^ c) & d)) + w[i] + _K2) & _M
        a = ((x << 3) | (x >> 29)) & _M
        x = (d + ((a & b) + ((a ^ b) & c)) + w[j] + _K2) & _M
        d = ((x << 5) | (x >> 27)) & _M
        x = (c + ((d & a) + ((d ^ a) & b)) + w[k] + _K2) & _M
        c = ((x << 9) | (x >> 23)) & _M
        x = (b + ((c & d) + ((c ^ d) & a)) + w[m] + _K2) & _M
        b = ((x << 13) | (x >> 19)) & _M
    # round 3: H(x, y, z) = x ^ y ^ z, words 3 7 2 6 1 5 0 4, shifts 3 9 11 15
    for i, j, k, m in ((3, 7, 2, 6), (1, 5, 0, 4)):
        x = (a + (b ^ c ^ d) + w[i] + _K3) & _M
        a = ((x << 3) | (x >> 29)) & _M
        x = (d + (a ^ b ^ c) + w[j] + _K3) & _M
        d = ((x << 9) | (x >> 23)) & _M
        x = (c + (d ^ a ^ b) + w[k] + _K3) & _M
        c = ((x << 11) | (x >> 21)) & _M
        x = (b + (c ^ d ^ a) + w[m] + _K3) & _M
        b = ((x << 15) | (x >> 17)) & _M
    buf[0] = (buf[0] + a) & _M
    buf[1] = (buf[1] + b) & _M
    buf[2] = (buf[2] + c) & _M
    buf[3] = (buf[3] + d) & _M


def _str2hashbuf(chunk: bytes, remaining: int, signed: bool) -> list[int]:
    """Pack up to 32 name bytes into 8 words, padding with the remaining length."""
    pad = (remaining | (remaining << 8)) & _M
    pad = (pad | (pad << 16)) & _M
    chunk = chunk[:32]
    if not (signed and max(chunk, default=0) >= 0x80):
        # without sign extension each full word is just the 4 bytes read big-endian (the pad
        # is shifted out), and a partial word is pad << 8*len + the bytes
        full = len(chunk) & ~3
        words = [int.from_bytes(chunk[i:i + 4], "big") for i in range(0, full, 4)]
        if len(words) < 8:
            rest = chunk[full:]
            words.append(((pad << (8 * len(rest))) + int.from_bytes(rest, "big")) & _M)
        words.extend([pad] * (8 - len(words)))
        return words
    words = []
    val = pad
    for i, c in enumerate(chunk):
        if c >= 0x80:
            c -= 0x100  # signed char, sign-extended
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
