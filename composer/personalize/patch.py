"""Block patches: the 4 KiB blocks of an image that differ between the golden build and one
device's build, with their new bytes and the sha256 of the old and new bytes of every run.

File format (docs/personalize.md §4), version 1:

    line 1   b"composer-patch 1\\n"
    line 2   one JSON object and b"\\n": {"image", "device", "block_size", "size",
             "golden_sha256", "patched_sha256", "runs": [{"block", "count", "old_sha256",
             "new_sha256"}, ...]}, runs sorted by block and not overlapping
    then     the new bytes of every run, in the order of "runs", count * block_size each

A run holds the blocks whose bytes differ, and also every block the device's block map (its
.bmap) maps but the golden one does not: flashing the golden image with bmaptool skipped those,
so a flashed device holds old bytes there even where the two images both read zeros. A run
lies wholly inside or wholly outside the golden block map; outside, its `old_sha256` is null,
since nothing defines those bytes on a flashed device.

`apply_patch` writes a patch onto an image file or a block device: it first reads every run's
old bytes and refuses (writing nothing) unless each one's sha256 is the golden one (null: not
checked), so a patch never lands on another build or a device flashed with something else;
then it writes the runs and reads them back.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.outputs.bmap import BLOCK_SIZE
from composer.sparse import data_extents, paired_chunks

MAGIC = b"composer-patch 1\n"
BLOCK = BLOCK_SIZE  # the bmap's block: a flashed device is written in these
CHUNK = 1 << 20
MAX_HEADER = 64 << 20


@dataclass(frozen=True, slots=True)
class Run:
    block: int
    count: int
    old_sha256: str | None  # None: the golden block map leaves these blocks out
    new_sha256: str


@dataclass(frozen=True, slots=True)
class PatchHeader:
    image: str
    device: str
    block_size: int
    size: int
    golden_sha256: str
    runs: tuple[Run, ...]

    def to_json(self) -> bytes:
        obj = {"image": self.image, "device": self.device, "block_size": self.block_size,
               "size": self.size, "golden_sha256": self.golden_sha256,
               "runs": [{"block": r.block, "count": r.count, "old_sha256": r.old_sha256,
                         "new_sha256": r.new_sha256} for r in self.runs]}
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"

    @property
    def payload_bytes(self) -> int:
        return sum(r.count for r in self.runs) * self.block_size


def _data_ranges(f: BinaryIO, size: int) -> list[tuple[int, int]]:
    """The byte ranges of a sparse file that may hold data (everything else is a hole)."""
    return list(data_extents(f.fileno(), 0, size))


def _union_blocks(a: list[tuple[int, int]], b: list[tuple[int, int]],
                  size: int) -> Iterator[tuple[int, int]]:
    """Block-aligned ranges covering the data of either file, merged."""
    spans = sorted((s // BLOCK * BLOCK, min(-(-e // BLOCK) * BLOCK, size)) for s, e in a + b)
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    yield from merged


def diff_blocks(golden: Path, patched: Path) -> set[int]:
    """Every 4 KiB block whose bytes differ; holes read as zeros, and ranges that are holes in
    both files are not read."""
    size = golden.stat().st_size
    if patched.stat().st_size != size:
        raise ComposerError(f"{patched.name} is {patched.stat().st_size} bytes but the golden "
                            f"one is {size}: a device build must keep every image's size",
                            hint="a personalized image must not need more space than golden")
    blocks: set[int] = set()
    with golden.open("rb") as g, patched.open("rb") as p:
        for start, end in _union_blocks(_data_ranges(g, size), _data_ranges(p, size), size):
            for offset, a, b in paired_chunks(g, p, start, end, CHUNK):
                if a != b:
                    blocks.update((offset + i) // BLOCK for i in range(0, len(a), BLOCK)
                                  if a[i:i + BLOCK] != b[i:i + BLOCK])
    return blocks


BlockRanges = tuple[tuple[int, int], ...]  # (first, last) 4 KiB blocks, inclusive: a bmap's


def _subtract(ranges: BlockRanges, minus: BlockRanges) -> list[tuple[int, int]]:
    """The blocks of `ranges` outside `minus` (both sorted (first, last) lists)."""
    out: list[tuple[int, int]] = []
    j = 0
    for first, last in ranges:
        start = first
        while j < len(minus) and minus[j][1] < start:
            j += 1
        k = j
        while start <= last:
            if k >= len(minus) or minus[k][0] > last:
                out.append((start, last))
                break
            if minus[k][0] > start:
                out.append((start, minus[k][0] - 1))
            start = max(start, minus[k][1] + 1)
            k += 1
    return out


def patch_runs(blocks: set[int], golden_map: BlockRanges,
               device_map: BlockRanges) -> list[tuple[int, int, bool]]:
    """(first block, count, mapped in golden) of the blocks a patch must write: those that
    differ, and those only the device maps; split where the golden map starts or ends."""
    wanted = set(blocks)
    for first, last in _subtract(tuple(sorted(device_map)), tuple(sorted(golden_map))):
        wanted.update(range(first, last + 1))
    golden = sorted(golden_map)
    starts = [first for first, _ in golden]

    def mapped(block: int) -> bool:
        i = bisect.bisect_right(starts, block) - 1
        return i >= 0 and block <= golden[i][1]

    runs: list[tuple[int, int, bool]] = []
    for block in sorted(wanted):
        inside = mapped(block)
        if runs and runs[-1][0] + runs[-1][1] == block and runs[-1][2] == inside:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, inside)
        else:
            runs.append((block, 1, inside))
    return runs


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    data = f.read(n)
    return data + bytes(n - len(data))


def make_patch(golden: Path, patched: Path, out: Path, device: str, golden_sha256: str,
               golden_map: BlockRanges, device_map: BlockRanges) -> PatchHeader:
    """Write the patch that turns `golden` into `patched` to `out` (mode 0600); the maps are
    the two builds' .bmap ranges of this image."""
    runs = patch_runs(diff_blocks(golden, patched), golden_map, device_map)
    with patched.open("rb") as p:
        return write_patch(out, golden, device, golden_sha256, runs,
                           lambda block: _read_at(p, block * BLOCK, BLOCK))


def write_patch(out: Path, golden: Path, device: str, golden_sha256: str,
                runs: list[tuple[int, int, bool]],
                new_block: Callable[[int], bytes],
                golden_blocks: GoldenBlocks | None = None) -> PatchHeader:
    """Write a patch of `runs` (first block, count, mapped in golden) whose new bytes
    `new_block(block)` gives; the old bytes are read from `golden`."""
    return write_patch_sha(out, golden, device, golden_sha256, runs, new_block,
                           golden_blocks)[0]


def write_patch_sha(out: Path, golden: Path, device: str, golden_sha256: str,
                    runs: list[tuple[int, int, bool]], new_block: Callable[[int], bytes],
                    golden_blocks: GoldenBlocks | None = None) -> tuple[PatchHeader, str]:
    """`write_patch`, and the sha256 of the patch file, hashed as it is written."""
    reader = golden_blocks or GoldenBlocks()
    records = []
    try:
        for block, count, mapped in runs:
            new = b"".join(new_block(b) for b in range(block, block + count))
            old = reader.sha256(golden, block, count) if mapped else None
            records.append(Run(block, count, old, hashlib.sha256(new).hexdigest()))
        size = reader.size(golden)
    finally:
        if golden_blocks is None:
            reader.close()
    header = PatchHeader(golden.name, device, BLOCK, size, golden_sha256, tuple(records))
    digest = hashlib.sha256()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        pending = bytearray(MAGIC + header.to_json())
        for block, count, _ in runs:
            for b in range(block, block + count):
                pending += new_block(b)
                if len(pending) >= CHUNK:
                    digest.update(pending)
                    f.write(pending)
                    pending = bytearray()
        digest.update(pending)
        f.write(pending)
    return header, digest.hexdigest()


class GoldenBlocks:
    """Reads of the golden images, each opened once; single blocks and the sha256 of runs are
    kept (the same few are read for every device of a run), at most CACHED of each."""

    CACHED = 1024

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._blocks: dict[tuple[Path, int], bytes] = {}
        self._shas: dict[tuple[Path, int, int], str] = {}

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def size(self, path: Path) -> int:
        return os.fstat(self._fd(path)).st_size

    def read(self, path: Path, block: int, count: int = 1) -> bytes:
        if count != 1:
            return _pread_full(self._fd(path), block * BLOCK, count * BLOCK)
        key = (path, block)
        data = self._blocks.get(key)
        if data is None:
            if len(self._blocks) >= self.CACHED:
                self._blocks.pop(next(iter(self._blocks)))
            data = self._blocks[key] = _pread_full(self._fd(path), block * BLOCK, BLOCK)
        return data

    def sha256(self, path: Path, block: int, count: int) -> str:
        """The sha256 of `count` golden blocks from `block` (kept: every device's patch has
        runs at the same places)."""
        key = (path, block, count)
        digest = self._shas.get(key)
        if digest is None:
            if len(self._shas) >= self.CACHED:
                self._shas.pop(next(iter(self._shas)))
            digest = self._shas[key] = hashlib.sha256(self.read(path, block, count)).hexdigest()
        return digest

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        self._blocks = {}
        self._shas = {}


def _pread_full(fd: int, offset: int, n: int) -> bytes:
    """n bytes at offset; zeros past the end of the file."""
    data = os.pread(fd, n, offset)
    while len(data) < n:
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            return data + bytes(n - len(data))
        data += more
    return data


def read_block(path: Path, block: int) -> bytes:
    with path.open("rb") as f:
        return _read_at(f, block * BLOCK, BLOCK)


def read_header(f: BinaryIO, where: str) -> PatchHeader:
    if f.read(len(MAGIC)) != MAGIC:
        raise ComposerError(f"{where} is not a composer patch (no 'composer-patch 1' line)",
                            hint="give a .patch file that compose personalize wrote")
    line = f.readline(MAX_HEADER)
    try:
        obj = json.loads(line)
        runs = tuple(Run(int(r["block"]), int(r["count"]),
                         None if r["old_sha256"] is None else str(r["old_sha256"]),
                         str(r["new_sha256"])) for r in obj["runs"])
        header = PatchHeader(str(obj["image"]), str(obj["device"]), int(obj["block_size"]),
                             int(obj["size"]), str(obj["golden_sha256"]), runs)
    except (ValueError, KeyError, TypeError) as exc:
        raise ComposerError(f"{where}: the patch header is damaged ({exc.__class__.__name__})",
                            hint="write the patch again") from None
    end = 0
    for run in header.runs:
        if run.count <= 0 or run.block < end or (run.block + run.count) * header.block_size \
                > header.size:
            raise ComposerError(f"{where}: run at block {run.block} is out of order or outside "
                                f"the {header.size}-byte image", hint="write the patch again")
        end = run.block + run.count
    return header


def _target_size(target: Path) -> int:
    st = target.stat()
    if stat.S_ISBLK(st.st_mode):
        with target.open("rb") as f:
            return f.seek(0, os.SEEK_END)
    return st.st_size


def apply_patch(patch: Path, target: Path) -> PatchHeader:
    """Write `patch` onto `target` (an image or a block device) after checking that every run
    of the target holds the golden bytes; nothing is written when one does not."""
    with patch.open("rb") as f:
        header = read_header(f, str(patch))
        payload_start = f.tell()
        if os.fstat(f.fileno()).st_size != payload_start + header.payload_bytes:
            raise ComposerError(f"{patch} holds {os.fstat(f.fileno()).st_size - payload_start} "
                                f"bytes of blocks, its header says {header.payload_bytes}",
                                hint="the patch is truncated or damaged; copy it again")
        size = _target_size(target)
        if size < header.size:
            raise ComposerError(f"{target} is {size} bytes, smaller than the {header.size}-byte "
                                f"{header.image} the patch is for", hint="is this the right "
                                "target?")
        bs = header.block_size
        with target.open("r+b") as t:
            for run in header.runs:
                if run.old_sha256 is None:
                    continue  # not written by flashing the golden image: anything goes
                old = _read_at(t, run.block * bs, run.count * bs)
                if hashlib.sha256(old).hexdigest() != run.old_sha256:
                    raise ComposerError(
                        f"{target}: blocks {run.block}-{run.block + run.count - 1} do not hold "
                        f"the golden {header.image} bytes the patch was made against; nothing "
                        "was written", hint="flash the golden image of this build first (or "
                        "the patch was already applied)")
            offset = payload_start
            for run in header.runs:
                f.seek(offset)
                new = f.read(run.count * bs)
                if hashlib.sha256(new).hexdigest() != run.new_sha256:
                    raise ComposerError(f"{patch}: the bytes of run at block {run.block} do not "
                                        "match their sha256", hint="the patch is damaged")
                offset += len(new)
            f.seek(payload_start)
            for run in header.runs:
                t.seek(run.block * bs)
                t.write(f.read(run.count * bs))
            t.flush()
            os.fsync(t.fileno())
            for run in header.runs:
                if hashlib.sha256(_read_at(t, run.block * bs, run.count * bs)).hexdigest() \
                        != run.new_sha256:
                    raise ComposerError(f"{target}: blocks at {run.block} read back differently "
                                        "after writing", hint="the device may be failing")
    return header
