"""Property test: random trees must give e2fsck-clean images that read back identically."""

from __future__ import annotations

import random
import struct
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from composer.tree import Content, Entry, Kind

if TYPE_CHECKING:
    from tests.fs.conftest import Ext4Harness

NS = 1_000_000_000
UNDEF = 0xFFFFFFFF

# names: ASCII, accents, CJK, emoji, spaces; never '/', NUL, newline or '"' (debugfs quoting)
_NAME_CHARS = st.sampled_from(list("abcxyzABZ019_-.+~ é✓日本語ß") + ["\U0001F600"])
_short_names = st.text(_NAME_CHARS, min_size=1, max_size=24).filter(lambda s: s not in (".", ".."))
_long_names = st.tuples(st.sampled_from(["a", "é", "日"]), st.sampled_from(["", "x", "xy"])).map(
    lambda t: (t[0] * (255 // len(t[0].encode())) + t[1]).encode()[:255].decode("utf-8",
                                                                               "ignore"))
_names = st.one_of(_short_names, _short_names, _short_names, _long_names)
_ids = st.sampled_from([0, 1, 1000, 65534, 65535, 65536, 100000, 4_000_000_000])
_modes = st.one_of(st.sampled_from([0o644, 0o755, 0o600, 0o4755, 0o2755, 0o1777, 0o000]),
                   st.integers(0, 0o7777))
_times = st.one_of(st.just(1_600_000_000 * NS),
                   st.integers(-(1 << 31) * NS, (1 << 33) * NS + NS - 1))
_sizes = st.one_of(st.sampled_from([0, 1, 59, 4095, 4096, 4097, 8192, 3 * 4096 + 1]),
                   st.integers(0, 40_000))
_xattr_names = st.sampled_from(["user.a", "user.mime", "user." + "n" * 60, "trusted.t",
                                "security.selinux", "security.capability"])
_xattr_values = st.one_of(st.binary(max_size=40), st.binary(min_size=100, max_size=900))
_acls = st.lists(st.tuples(st.sampled_from([2, 8]), st.integers(0, 7), st.integers(0, 70000)),
                 max_size=3).map(lambda extra: struct.pack("<I", 2) + b"".join(
                     struct.pack("<HHI", *e) for e in
                     [(1, 7, UNDEF), *sorted(extra), (4, 5, UNDEF), (0x10, 7, UNDEF),
                      (0x20, 4, UNDEF)]))


@st.composite
def _xattrs(draw: st.DrawFn, is_dir: bool, user: bool = True) -> tuple[tuple[str, bytes], ...]:
    found = dict(draw(st.lists(st.tuples(_xattr_names, _xattr_values), max_size=4)))
    if not user:  # Linux hides user.* on anything but files and directories
        found = {k: v for k, v in found.items() if not k.startswith("user.")}
    if "security.capability" in found:  # the kernel validates capabilities on read
        found["security.capability"] = bytes.fromhex("01000002") + b"\0\4\0\0" + bytes(12)
    if user and draw(st.booleans()) and draw(st.booleans()):  # (no ACLs on symlinks either)
        found["system.posix_acl_access"] = draw(_acls)
        if is_dir and draw(st.booleans()):
            found["system.posix_acl_default"] = draw(_acls)
    return tuple(sorted(found.items()))


@st.composite
def trees(draw: st.DrawFn) -> list[Entry]:
    entries = [Entry("/", Kind.DIR, draw(_modes), draw(_ids), draw(_ids), draw(_times))]
    dirs = ["/"]
    files: list[str] = []
    taken: set[str] = {"/lost+found"}

    def new_path() -> str | None:
        parent = draw(st.sampled_from(dirs))
        path = parent.rstrip("/") + "/" + draw(_names)
        if path in taken or len(path.split("/")) > 9:
            return None
        taken.add(path)
        return path

    kinds = st.sampled_from(["dir", "dir", "file", "file", "file", "fast", "slow", "char",
                             "block", "fifo", "sock", "hardlink", "bigdir"])
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(kinds)
        path = new_path()
        if path is None:
            continue
        meta = dict(mode=draw(_modes), uid=draw(_ids), gid=draw(_ids), mtime_ns=draw(_times))
        if kind in ("dir", "bigdir"):
            entries.append(Entry(path, Kind.DIR, xattrs=draw(_xattrs(True)), **meta))
            dirs.append(path)
            if kind == "bigdir":  # enough names for an htree (> 2 blocks)
                prefix = draw(_short_names)
                for i in range(draw(st.integers(150, 450))):
                    child = f"{path}/{prefix}-{i}"
                    entries.append(Entry(child, Kind.FILE, 0o644, 0, 0, meta["mtime_ns"],
                                         content=Content.of_bytes(b"%d" % i)))
                    taken.add(child)
        elif kind == "file":
            size = draw(_sizes)
            data = random.Random(draw(st.integers(0, 1 << 30))).randbytes(size)
            entries.append(Entry(path, Kind.FILE, content=Content.of_bytes(data),
                                 xattrs=draw(_xattrs(False)), **meta))
            files.append(path)
        elif kind in ("fast", "slow"):
            n = draw(st.integers(1, 59) if kind == "fast" else st.integers(60, 400))
            target = (draw(st.text(_NAME_CHARS | st.just("/"), min_size=1, max_size=20)) * n)
            target = target.encode()[:n].decode("utf-8", "ignore") or "t"
            entries.append(Entry(path, Kind.SYMLINK, **{**meta, "mode": 0o777}, target=target,
                                 xattrs=draw(_xattrs(False, user=False))))
        elif kind in ("char", "block"):
            rdev = (draw(st.integers(0, 4095)), draw(st.integers(0, (1 << 20) - 1)))
            entries.append(Entry(path, Kind.CHAR if kind == "char" else Kind.BLOCK, **meta,
                                 rdev=rdev))
        elif kind in ("fifo", "sock"):
            entries.append(Entry(path, Kind.FIFO if kind == "fifo" else Kind.SOCKET, **meta))
        elif kind == "hardlink" and files:
            entries.append(Entry(path, Kind.HARDLINK, 0o644, 0, 0, 0,
                                 target=draw(st.sampled_from(files))))
    return entries


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trees())
def test_random_trees_are_clean_and_read_back(ext4: Ext4Harness, entries: list[Entry]) -> None:
    kinds = {e.kind for e in entries}
    for kind in kinds:
        event(f"has {kind.value}")
    if len(entries) > 150:
        event("has a directory big enough for an htree")
    if any(sum(len(n) + len(v) for n, v in e.xattrs) > 100 for e in entries):
        event("has an xattr block")
    built = ext4.build(entries)
    ext4.fsck(built.path)
    ext4.assert_tree(built.path, entries)
    if ext4.can_mount() is None:
        ext4.assert_mounted_tree(built.path, entries)
    built.path.unlink()
