"""ext4 test harness: build images with our writer, judge them with e2fsprogs and the kernel.

Our own code never reads an image back: `e2fsck -fn` judges consistency, `debugfs` (and a
read-only loop mount when we are root) reads the tree back for comparison with the request.
Everything is exposed through the session fixture `ext4` (an Ext4Harness) so the hypothesis
tests can use it too.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from composer.content import ContentStore
from composer.fs.base import WriteRequest, WriteResult
from composer.fs.ext4 import Ext4Writer
from composer.tree import Entry, Kind

NS = 1_000_000_000
EXT4_EPOCH = 1_700_000_000
EXT4_UUID = uuid.UUID("5f1d3c2a-8b7e-4d6f-9a0b-1c2d3e4f5a6b")

_E2FSCK_OK = (
    re.compile(r"^e2fsck \d"),
    re.compile(r"^Pass \d[A-Z]?: "),
    re.compile(r"^\S.*: \d+/\d+ files \(.*\), \d+/\d+ blocks$"),
)


@dataclass
class Ext4Node:
    """One file-system object as read back (or as expected)."""

    kind: str
    mode: int  # permission bits
    uid: int
    gid: int
    mtime_ns: int
    links: int
    size: int = 0
    data: bytes | None = None  # regular files
    target: bytes | None = None  # symlinks
    rdev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)
    ino: int = 0

    def comparable(self) -> tuple[object, ...]:
        return (self.kind, self.mode, self.uid, self.gid, self.mtime_ns, self.links, self.size,
                self.data, self.target, self.rdev, self.xattrs)


@dataclass(frozen=True)
class Ext4Built:
    path: Path
    result: WriteResult
    request: WriteRequest


_KIND_OF_IFMT = {
    stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
    stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket",
}


def _q(path: bytes) -> bytes:
    assert b'"' not in path and b"\n" not in path, path
    return b'"' + path + b'"'


def _acl_as_debugfs(value: bytes) -> bytes:
    """debugfs renders the ids of USER_OBJ/GROUP_OBJ/MASK/OTHER as 0, the kernel as -1."""
    out = bytearray(value)
    for off in range(4, len(out) - 7, 8):
        if int.from_bytes(out[off:off + 2], "little") in (0x1, 0x4, 0x10, 0x20):
            out[off + 4:off + 8] = bytes(4)
    return bytes(out)


def _decode_time(field_hex: str) -> int:
    """debugfs prints 'secs:extra' in hex; decode like the kernel (signed secs + epoch bits)."""
    secs_s, extra_s = field_hex.split(":")
    secs, extra = int(secs_s, 16), int(extra_s, 16)
    if secs >= 1 << 31:
        secs -= 1 << 32
    secs += (extra & 3) << 32
    return secs * NS + (extra >> 2)


class Ext4Harness:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.writer = Ext4Writer()

    # ---------------------------------------------------------------------------- building

    def request(self, entries: list[Entry] | tuple[Entry, ...], *, size: int | None = None,
                label: str | None = "ext4test", fs_uuid: uuid.UUID = EXT4_UUID,
                epoch: int = EXT4_EPOCH, name: str = "rootfs",
                options: dict[str, object] | None = None) -> WriteRequest:
        from composer.tree import sorted_entries

        return WriteRequest(name, tuple(sorted_entries(entries)), size, label, fs_uuid, epoch,
                            options or {})

    def build(self, entries: list[Entry] | tuple[Entry, ...], out: Path | None = None,
              store: ContentStore | None = None, **kw: object) -> Ext4Built:
        req = self.request(entries, **kw)  # type: ignore[arg-type]
        if req.size is None:
            size = self.writer.resolve_size(req)
            req = WriteRequest(req.name, req.entries, size, req.label, req.uuid, req.epoch,
                               req.options, req.loc)
        if out is None:
            out = Path(tempfile.mkdtemp(dir=self.workdir)) / "ext4.img"
        result = self.writer.write(req, out, store or ContentStore())
        return Ext4Built(out, result, req)

    # ----------------------------------------------------------------------------- judging

    def fsck(self, img: Path) -> None:
        """e2fsck -fn must exit 0 and print nothing but the pass lines and the summary."""
        env = dict(os.environ, E2FSCK_CONFIG="/dev/null")
        proc = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True,
                              env=env, errors="replace")
        lines = (proc.stdout + proc.stderr).splitlines()
        problems = [ln for ln in lines if ln.strip() and not any(r.match(ln) for r in _E2FSCK_OK)]
        assert proc.returncode == 0 and not problems, \
            f"e2fsck -fn exit {proc.returncode}:\n" + "\n".join(lines)

    def debugfs(self, img: Path, commands: list[bytes]) -> list[tuple[bytes, bytes]]:
        """Run commands in one debugfs session; returns (command, output) pairs."""
        if not commands:
            return []
        with tempfile.NamedTemporaryFile(dir=self.workdir, suffix=".cmds") as f:
            f.write(b"\n".join(commands) + b"\n")
            f.flush()
            proc = subprocess.run(["debugfs", "-f", f.name, str(img)], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        out: list[tuple[bytes, bytes]] = []
        for chunk in proc.stdout.split(b"debugfs: ")[1:]:
            cmd, _, body = chunk.partition(b"\n")
            out.append((cmd, body))
        assert len(out) == len(commands), (len(out), len(commands))
        return out

    def read_tree(self, img: Path, with_data: bool = True,
                  same_times: bool = True) -> dict[str, Ext4Node]:
        """The whole tree as debugfs sees it (ls -p, stat, ea_get, dump).

        With `same_times`, atime, ctime and crtime must equal mtime (what our writer does).
        """
        listing: dict[bytes, tuple[int, int, int, int, int]] = {}
        level = [b"/"]
        while level:
            nxt = []
            for cmd, body in self.debugfs(img, [b"ls -p " + _q(d) for d in level]):
                d = cmd[len(b"ls -p "):].strip(b'"')
                for line in body.splitlines():
                    if not line.startswith(b"/"):
                        continue
                    fields = line[1:-1].split(b"/")
                    # debugfs prints ids as signed 32-bit numbers
                    ino, mode, uid, gid = (int(fields[0]), int(fields[1], 8),
                                           int(fields[2]) & 0xFFFFFFFF,
                                           int(fields[3]) & 0xFFFFFFFF)
                    name = b"/".join(fields[4:-1])
                    if ino == 0:  # empty slots (mke2fs's lost+found shows them too)
                        continue
                    if name in (b".", b".."):
                        if d == b"/" and name == b".":
                            listing[b"/"] = (ino, mode, uid, gid, 0)
                        continue
                    path = (d.rstrip(b"/") + b"/" + name)
                    size = int(fields[-1]) if fields[-1] else 0
                    listing[path] = (ino, mode, uid, gid, size)
                    if stat.S_ISDIR(mode):
                        nxt.append(path)
            level = nxt
        paths = sorted(listing)
        stats = dict(self.debugfs(img, [b"stat " + _q(p) for p in paths]))
        nodes: dict[str, Ext4Node] = {}
        dumps: list[bytes] = []
        dump_dir = Path(tempfile.mkdtemp(dir=self.workdir))
        dump_names: dict[bytes, Path] = {}
        ea_cmds: list[bytes] = []
        ea_files: dict[tuple[bytes, str], Path] = {}
        for i, p in enumerate(paths):
            ino, mode, uid, gid, size = listing[p]
            body = stats[b"stat " + _q(p)].decode("utf-8", "replace")
            kind = _KIND_OF_IFMT[stat.S_IFMT(mode)]
            links = int(re.search(r"Links: (\d+)", body).group(1))  # type: ignore[union-attr]
            mtime = _decode_time(re.search(r"\bmtime: (0x[0-9a-f]+:[0-9a-f]+)",  # type: ignore
                                           body).group(1).replace("0x", ""))
            for other in ("atime", "ctime", "crtime") if same_times else ():
                m = re.search(rf"\b{other}: (0x[0-9a-f]+:[0-9a-f]+)", body)
                assert m and _decode_time(m.group(1).replace("0x", "")) == mtime, (p, other)
            node = Ext4Node(kind, stat.S_IMODE(mode), uid, gid, mtime, links, ino=ino)
            dev = re.search(r"Device major/minor number: (\d+):(\d+)", body)
            if kind in ("char", "block"):
                assert dev, body
                node.rdev = (int(dev.group(1)), int(dev.group(2)))
            if kind == "file":
                node.size = size
            if kind == "symlink":
                fast = re.search(r'Fast link dest: "(.*)"', body, re.S)
                if fast:
                    raw = stats[b"stat " + _q(p)]
                    start = raw.index(b'Fast link dest: "') + len(b'Fast link dest: "')
                    node.target = raw[start:raw.rindex(b'"')]
            if (kind == "file" and with_data) or (kind == "symlink" and node.target is None):
                dump_names[p] = dump_dir / f"d{i}"
                dumps.append(b"dump " + _q(p) + b" " + _q(str(dump_names[p]).encode()))
            if "Extended attributes:" in body:
                section = body.split("Extended attributes:", 1)[1]
                for line in section.splitlines()[1:]:
                    m = re.match(r"^  (\S+) \(\d+\)", line)
                    if not m:
                        break
                    ea_files[(p, m.group(1))] = dump_dir / f"x{len(ea_files)}"
                    ea_cmds.append(b"ea_get -f " + _q(str(ea_files[(p, m.group(1))]).encode())
                                   + b" " + _q(p) + b" " + m.group(1).encode())
            nodes[p.decode("utf-8", "surrogateescape")] = node
        self.debugfs(img, dumps + ea_cmds)
        for p, f in dump_names.items():
            node = nodes[p.decode("utf-8", "surrogateescape")]
            if node.kind == "file":
                node.data = f.read_bytes()
            else:
                node.target = f.read_bytes()
        for (p, name), f in ea_files.items():
            nodes[p.decode("utf-8", "surrogateescape")].xattrs[name] = f.read_bytes()
        shutil.rmtree(dump_dir)
        return nodes

    # ---------------------------------------------------------------------------- expected

    @staticmethod
    def expected(entries: list[Entry] | tuple[Entry, ...], epoch: int = EXT4_EPOCH,
                 with_data: bool = True) -> dict[str, Ext4Node]:
        """The tree a request should produce (lost+found added when absent)."""
        by_path = {e.path: e for e in entries}
        by_path.setdefault("/", Entry("/", Kind.DIR, 0o755, 0, 0, epoch * NS))
        by_path.setdefault("/lost+found", Entry("/lost+found", Kind.DIR, 0o700, 0, 0,
                                                epoch * NS))
        links: dict[str, int] = {}
        for e in by_path.values():
            if e.path == "/":
                continue
            parent = e.path.rsplit("/", 1)[0] or "/"
            if e.kind is Kind.DIR:
                links[parent] = links.get(parent, 2) + 1
            if e.kind is Kind.HARDLINK:
                assert e.target is not None
                links[e.target] = links.get(e.target, 1) + 1
        out: dict[str, Ext4Node] = {}
        for e in by_path.values():
            src = by_path[e.target] if e.kind is Kind.HARDLINK and e.target else e
            kind = "file" if src.kind is Kind.HARDLINK else str(src.kind.value)
            n = links.get(src.path, 2 if src.kind is Kind.DIR else 1)
            if src.kind is Kind.DIR and n > 65000:
                n = 1
            node = Ext4Node(kind, src.mode, src.uid, src.gid, src.mtime_ns, n,
                            xattrs=dict(src.xattrs))
            if src.kind is Kind.FILE:
                assert src.content is not None
                node.size = src.content.size
                if with_data:
                    node.data = src.content.inline
            if src.kind is Kind.SYMLINK:
                node.target = (src.target or "").encode("utf-8", "surrogateescape")
            if src.kind in (Kind.CHAR, Kind.BLOCK):
                node.rdev = src.rdev
            out[e.path] = node
        return out

    def assert_tree(self, img: Path, entries: list[Entry] | tuple[Entry, ...],
                    epoch: int = EXT4_EPOCH, with_data: bool = True) -> dict[str, Ext4Node]:
        got = self.read_tree(img, with_data)
        want = self.expected(entries, epoch, with_data)
        assert sorted(got) == sorted(want)
        for path, w in want.items():
            g = got[path]
            for name in ("system.posix_acl_access", "system.posix_acl_default"):
                if name in w.xattrs:
                    w.xattrs[name] = _acl_as_debugfs(w.xattrs[name])
            if not with_data:
                g.data = None
            assert g.comparable() == w.comparable(), f"{path}:\n got  {g}\n want {w}"
        # hard links: paths share an inode exactly when the request says so
        for e in entries:
            if e.kind is Kind.HARDLINK:
                assert e.target is not None
                assert got[e.path].ino == got[e.target].ino, e.path
        inos = [n.ino for p, n in got.items() if n.kind != "dir"]
        shared = len(inos) - len(set(inos))
        assert shared == sum(1 for e in entries if e.kind is Kind.HARDLINK)
        return got

    # ------------------------------------------------------------------------------ mount

    @staticmethod
    def can_mount() -> str | None:
        """None when loop mounts work here, else the reason to skip."""
        if os.geteuid() != 0:
            return "loop mounts need root"
        if not shutil.which("losetup") or not shutil.which("mount"):
            return "losetup/mount missing"
        proc = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"environment fact [no-loop-devices]: no free loop device: {proc.stderr.strip()}"
        return None

    @contextmanager
    def mounted(self, img: Path) -> Iterator[Path]:
        mnt = Path(tempfile.mkdtemp(dir=self.workdir))
        subprocess.run(["mount", "-o", "loop,ro", str(img), str(mnt)], check=True,
                       capture_output=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
            mnt.rmdir()

    def assert_mounted_tree(self, img: Path, entries: list[Entry] | tuple[Entry, ...],
                            epoch: int = EXT4_EPOCH) -> None:
        want = self.expected(entries, epoch)
        with self.mounted(img) as mnt:
            got: dict[str, Ext4Node] = {}
            for dirpath, dirnames, filenames in os.walk(mnt):
                for name in ["", *dirnames, *filenames]:
                    full = os.path.join(dirpath, name) if name else dirpath
                    rel = "/" if full == str(mnt) else "/" + os.path.relpath(full, mnt)
                    if rel in got:
                        continue
                    st = os.lstat(full)
                    kind = _KIND_OF_IFMT[stat.S_IFMT(st.st_mode)]
                    node = Ext4Node(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                    st.st_mtime_ns, st.st_nlink, ino=st.st_ino)
                    if kind == "file":
                        node.size = st.st_size
                        node.data = Path(full).read_bytes()
                    if kind == "symlink":
                        node.target = os.readlink(os.fsencode(full))
                    if kind in ("char", "block"):
                        node.rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
                    for x in os.listxattr(full, follow_symlinks=False):
                        node.xattrs[x] = os.getxattr(full, x, follow_symlinks=False)
                    assert st.st_atime_ns == st.st_mtime_ns == st.st_ctime_ns, rel
                    got[rel] = node
        assert sorted(got) == sorted(want)
        for path, w in want.items():
            assert got[path].comparable() == w.comparable(), \
                f"{path}:\n got  {got[path]}\n want {w}"


@pytest.fixture(scope="session")
def ext4(tmp_path_factory: pytest.TempPathFactory) -> Ext4Harness:
    for tool in ("e2fsck", "debugfs"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool} (e2fsprogs)")
    return Ext4Harness(tmp_path_factory.mktemp("ext4"))
