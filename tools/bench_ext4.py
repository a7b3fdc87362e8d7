#!/usr/bin/env python3
"""Benchmark the native ext4 writer against `mke2fs -d` on the same folder.

    python tools/bench_ext4.py [--src DIR] [--files 40000] [--mib 700] [--work DIR]

Without --src a synthetic tree is generated once (random data, exponential file sizes, 400
directories) in the work folder and reused. Both images get the size our writer resolves;
both must pass `e2fsck -fn`. Times are wall clock, page cache warm after the first run.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from composer.content import ContentStore  # noqa: E402
from composer.fs.base import WriteRequest  # noqa: E402
from composer.fs.ext4 import Ext4Writer  # noqa: E402
from composer.sources.directory import scan_directory  # noqa: E402
from composer.tree import sorted_entries  # noqa: E402


def generate(root: Path, files: int, mib: int) -> None:
    rnd = random.Random(1)
    mean = mib * (1 << 20) // files
    for i in range(files):
        folder = root / f"d{i % 400:03d}" / f"s{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        size = min(int(rnd.expovariate(1 / mean)), 4 << 20)
        (folder / f"file-{i:05d}.bin").write_bytes(rnd.randbytes(size))


def fsck(img: Path) -> None:
    subprocess.run(["e2fsck", "-fn", str(img)], check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path)
    ap.add_argument("--files", type=int, default=40000)
    ap.add_argument("--mib", type=int, default=700)
    ap.add_argument("--work", type=Path, default=Path("/tmp/composer-bench-ext4"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    src = args.src
    if src is None:
        src = args.work / f"src-{args.files}-{args.mib}"
        if not src.exists():
            print(f"generating {args.files} files, ~{args.mib} MiB in {src}")
            generate(src, args.files, args.mib)

    for run in range(args.runs):
        t0 = time.perf_counter()
        scanned = scan_directory("src", src)
        entries = tuple(sorted_entries(scanned.entries.values()))
        t1 = time.perf_counter()
        writer = Ext4Writer()
        req = WriteRequest("bench", entries, None, "bench", uuid.UUID(int=1), 1_700_000_000)
        size = writer.resolve_size(req)
        req = WriteRequest("bench", entries, size, "bench", req.uuid, req.epoch)
        ours = args.work / "ours.img"
        writer.write(req, ours, ContentStore({"src": scanned.data}))
        t2 = time.perf_counter()
        ref = args.work / "mke2fs.img"
        ref.unlink(missing_ok=True)
        # the inode count and block size our writer chose (s_inodes_count, s_log_block_size;
        # it raises the count to fit the entries), so both tools make the same shape
        with ours.open("rb") as image:
            image.seek(1024)
            super_block = image.read(28)
        inodes = int.from_bytes(super_block[0:4], "little")
        block_size = 1024 << int.from_bytes(super_block[24:28], "little")
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^resize_inode", "-b",
                        str(block_size), "-N", str(inodes), "-d", str(src), str(ref),
                        str(size // 1024) + "k"],
                       check=True,
                       env=dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000"), capture_output=True)
        t3 = time.perf_counter()
        fsck(ours)
        fsck(ref)
        print(f"run {run + 1}: composer {t2 - t0:.2f}s (scan {t1 - t0:.2f}s + ext4 "
              f"{t2 - t1:.2f}s), mke2fs -d {t3 - t2:.2f}s, image {size >> 20} MiB, "
              f"{len(entries)} entries")


if __name__ == "__main__":
    main()
