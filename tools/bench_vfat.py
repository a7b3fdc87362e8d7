#!/usr/bin/env python3
"""Benchmark the vfat writer at scale against mkfs.vfat + mcopy (issue 15).

    python tools/bench_vfat.py [--quick] [--runs N] [--work DIR] [--mcopy-timeout S]
    python tools/bench.py --vfat ...          (the same)

Two synthetic folders are made once in the work folder and reused (random bytes, 0-2000 per
file, fixed seed):

  flat   20,000 files in one folder ("d/file-00000.txt" ...)
  tree   100,000 entries: 10 folders x 100 folders x 99 files ("top-3/Folder 042/f17.dat")

(--quick: 2,000 and 5,000, a smoke run.) For each, one after the other on the same input:

  vfat writer     a child process that scans the folder and runs VfatWriter check, auto size
                  and write, as `compose build` does for the partition (no rules, manifest,
                  bmap or SHA256SUMS)
  compose build   `compose build` of a layout with that folder as the source of one vfat
                  partition, size auto: everything a user waits for
  mkfs+mcopy      `mkfs.vfat` with the FAT type, size and cluster size composer chose, then
                  `mcopy -s -m` of the folder (the peer: what a build script does without
                  composer); stopped after --mcopy-timeout seconds, as mcopy is quadratic in
                  the files of one folder

Wall time and peak RSS as tools/bench.py measures them (child processes, warm page cache,
best of the rounds). Every image is judged by `fsck.vfat -n` (its output parsed: it can exit
0 with warnings). Prints PASS or MISS for each target of the issue: 20,000 files in one folder
and 100,000 entries in a tree each in under 10 s, fsck clean. Exits 0 always.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(1, str(REPO))

from bench import Row, default_work, run, verdict  # noqa: E402

EPOCH = "1718878001"
TARGET_S = 10.0
FULL = {"flat": 20_000, "tree": 100_000}
QUICK = {"flat": 2_000, "tree": 5_000}


def generate(work: Path, scale: str, count: int) -> Path:
    """The source folder of a scale, made once (a marker file says it is complete)."""
    root = work / f"vfat-{scale}-{count}"
    done = root.with_suffix(".done")
    if done.exists():
        return root
    print(f"generating {root} ...", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    rnd = random.Random(count)
    if scale == "flat":
        folder = root / "d"
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"file-{i:05d}.txt").write_bytes(rnd.randbytes(rnd.randrange(0, 2000)))
    else:
        tops, subs = 10, 100
        files = count // (tops * subs) - 1  # each folder is an entry too
        made = tops + tops * subs
        for a in range(tops):
            for b in range(subs):
                folder = root / f"top-{a}" / f"Folder {b:03d}"
                folder.mkdir(parents=True)
                for c in range(files):
                    if made == count:
                        break
                    (folder / f"f{c:02d}.dat").write_bytes(rnd.randbytes(rnd.randrange(0, 2000)))
                    made += 1
    done.touch()
    return root


def layout(work: Path, source: Path) -> Path:
    path = work / f"bench-{source.name}.yaml"
    path.write_text(f"""version: 1
name: benchvfat
epoch: {EPOCH}
sources:
  src: {source}
partitions:
  - {{name: data, fs: vfat, size: auto, mount: /}}
files:
  - {{from: "src:/", to: /}}
""", encoding="utf-8")
    return path


def writer_only(source: Path, out: Path) -> None:
    """The child of the `vfat writer` row: scan, check, size, write; print the geometry."""
    import uuid

    from composer.content import ContentStore
    from composer.fs.base import WriteRequest
    from composer.fs.vfat import VfatWriter, auto_fat, geometry
    from composer.sources.directory import scan_directory
    from composer.tree import sorted_entries

    scanned = scan_directory("src", source)
    entries = tuple(sorted_entries(scanned.entries.values()))
    writer = VfatWriter()
    req = WriteRequest("data", entries, None, "BENCH", uuid.UUID(int=1), int(EPOCH))
    errors = writer.check(req)
    if errors:
        sys.exit(f"bench: {errors[0]}")
    size = writer.resolve_size(req)
    req = WriteRequest("data", entries, size, "BENCH", req.uuid, req.epoch)
    writer.write(req, out, ContentStore({"src": scanned.data}))
    geo = geometry(auto_fat(size), size)
    assert geo is not None
    print(f"{geo.fat} {size} {geo.sectors_per_cluster} {len(entries)}")


FSCK_LAST = re.compile(r".*: (\d+) files, (\d+)/(\d+) clusters")


def fsck_files(img: Path) -> int | None:
    """Files fsck.vfat -n counts when its output is clean (banner and summary only), else
    None."""
    done = subprocess.run(["fsck.vfat", "-n", str(img)], capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    match = FSCK_LAST.fullmatch(lines[-1]) if lines else None
    if done.returncode != 0 or len(lines) != 2 or match is None:
        return None
    return int(match[1])


def mkfs_mcopy(source: Path, img: Path, fat: int, size: int, spc: int,
               timeout: float) -> tuple[float, int, bool]:
    """(wall s, peak RSS KiB, finished) of mkfs.vfat then mcopy -s -m of the folder."""
    img.unlink(missing_ok=True)
    wall1, rss1 = run(["mkfs.vfat", "-C", "-F", str(fat), "-S", "512", "-s", str(spc),
                       "-i", "12345678", "-n", "BENCH", str(img), str(size // 1024)])
    tops = sorted(str(p) for p in source.iterdir())
    start = time.perf_counter()
    proc = subprocess.Popen(["mcopy", "-s", "-m", "-i", str(img), *tops, "::/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH))
    finished = True
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            finished = False
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if finished and proc.returncode != 0:
        sys.exit(f"bench: mcopy failed ({proc.returncode})")
    return time.perf_counter() - start + wall1, max(rss1, usage.ru_maxrss), finished


def bench_scale(work: Path, scale: str, count: int, runs: int, timeout: float,
                env: dict[str, str]) -> list[tuple[str, bool]]:
    source = generate(work, scale, count)
    yaml = layout(work, source)
    rows = {name: Row(name) for name in ("vfat writer", "compose build", "mkfs+mcopy")}
    out_img = work / "vfat-writer.img"
    geometry_line = ""
    clean = {"vfat writer": False, "compose build": False}
    mcopy_done = True
    for _ in range(runs):
        out_img.unlink(missing_ok=True)
        with (work / "writer.out").open("w") as out:
            wall, rss = run([sys.executable, str(Path(__file__).resolve()), "--writer-only",
                             str(source), str(out_img)], stdout=out, env=env)
        rows["vfat writer"].walls.append(wall)
        rows["vfat writer"].rss_kb = max(rows["vfat writer"].rss_kb, rss)
        geometry_line = (work / "writer.out").read_text().split()
        scanned = int(geometry_line[3])  # every folder and file, and the root
        # fsck counts each folder and file, and a volume label (the writer row sets one)
        clean["vfat writer"] = fsck_files(out_img) == scanned
        out_img.unlink(missing_ok=True)

        out = work / "vfat-out"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss = run([sys.executable, "-m", "composer", "-q", "build", str(yaml), "-o",
                         str(out)], env=env)
        rows["compose build"].walls.append(wall)
        rows["compose build"].rss_kb = max(rows["compose build"].rss_kb, rss)
        clean["compose build"] = fsck_files(out / "data.img") == scanned - 1
        shutil.rmtree(out, ignore_errors=True)

        fat, size, spc, _ = (int(v) for v in geometry_line)
        peer = work / "mkfs-mcopy.img"
        wall, rss, finished = mkfs_mcopy(source, peer, fat, size, spc, timeout)
        mcopy_done = mcopy_done and finished
        rows["mkfs+mcopy"].walls.append(wall)
        rows["mkfs+mcopy"].rss_kb = max(rows["mkfs+mcopy"].rss_kb, rss)
        if finished and fsck_files(peer) is None:
            rows["mkfs+mcopy"].note = "fsck.vfat -n NOT clean"
        peer.unlink(missing_ok=True)
    if not mcopy_done:
        rows["mkfs+mcopy"].note = f"stopped after {timeout:.0f} s: a lower bound"

    fat, size, spc, entries = (int(v) for v in geometry_line)
    print(f"\n{scale}: {count} entries ({entries} scanned), FAT{fat}, {size >> 20} MiB, "
          f"{spc * 512} B clusters; best of {runs}")
    peer = rows["mkfs+mcopy"]
    print(f"{'tool':<15} {'best s':>8} {'median s':>9} {'peak RSS MB':>12} "
          f"{'peer/tool':>10}  note")
    for row in rows.values():
        ratio = peer.best / row.best if row.best > 0 else float("inf")
        more = ">" if not mcopy_done and row is not peer else " "
        print(f"{row.name:<15} {row.best:>8.2f} {row.median:>9.2f} {row.rss_kb / 1024:>12.0f} "
              f"{more}{ratio:>8.1f}x  {row.note}")
    what = "files in one folder" if scale == "flat" else "entries in a tree"
    return [
        (f"vfat writer, {count} {what} < {TARGET_S:.0f} s "
         f"({rows['vfat writer'].best:.2f} s)", rows["vfat writer"].best < TARGET_S),
        (f"compose build, {count} {what} < {TARGET_S:.0f} s "
         f"({rows['compose build'].best:.2f} s)", rows["compose build"].best < TARGET_S),
        (f"fsck.vfat -n clean, {scale} (writer and compose)", all(clean.values())),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 and 5,000 entries (smoke)")
    ap.add_argument("--runs", type=int, default=2, help="rounds (default 2)")
    ap.add_argument("--work", type=Path, default=None,
                    help="work folder (default /dev/shm/composer-bench when it has room)")
    ap.add_argument("--mcopy-timeout", type=float, default=None,
                    help="seconds mcopy may take per run (default 120, --quick 15)")
    ap.add_argument("--writer-only", nargs=2, type=Path, metavar=("SRC", "IMG"),
                    help=argparse.SUPPRESS)  # the child of the `vfat writer` row
    args = ap.parse_args()
    if args.writer_only:
        writer_only(*args.writer_only)
        return 0
    for tool in ("mkfs.vfat", "mcopy", "fsck.vfat"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: needs {tool} (dosfstools, mtools)")
    work = (args.work or default_work()).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    print(f"work folder {work}, warm page cache, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    timeout = args.mcopy_timeout or (15.0 if args.quick else 120.0)
    targets = []
    for scale, count in (QUICK if args.quick else FULL).items():
        targets += bench_scale(work, scale, count, max(1, args.runs), timeout, env)
    print()
    for label, ok in targets:
        print(f"{verdict(ok)}  {label}")
    if args.quick:
        print("quick scales: the targets are meant for 20,000 and 100,000 entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
