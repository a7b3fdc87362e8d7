#!/usr/bin/env python3
"""Benchmark `compose build` of an ext4 partition against its peers on one snapshot (issue 3).

    python tools/bench.py [--quick] [--runs N] [--work DIR] [--no-gz]
    python tools/bench.py --entries 50000,200000,500000 [--work DIR]
    python tools/bench.py --vfat [--quick] ...   (tools/bench_vfat.py: 20,000 files in a folder
                                                  and 100,000 in a tree, against mkfs+mcopy)

A Docker-store-shaped snapshot (tools/make_golden.py --docker-mib; 40 layers x 1000 files,
about 755 MB, 45,000 entries; --quick makes a small one) is written once as an uncompressed tar
into the work folder and reused. Then, in rounds, one after the other on the same input:

  compose          `compose build` of a layout with one ext4 partition, size auto, holding the
                   whole snapshot (`files: [{from: "snap:/", to: /}]`), from the tar
  compose tar.gz   the same from a gzip'd copy of the tar (an extra row; no target)
  mke2fs -d        `mke2fs -q -F -t ext4 -O ^resize_inode -b 4096 -d DIR` on a folder that was
                   extracted beforehand (the extraction is not timed), same image size
  tar -x+genimage  `tar -xf` into a fresh folder, then genimage (ext4, use-mke2fs) from it
  cat (floor)      `cat snapshot.tar > file`

--entries N[,N...] runs the scale instead: for each N, a tar of N entries with little data
(folders of 1000 entries: small files, some symlinks; written once into the work folder with
Python's tarfile) is built into one ext4 partition, and the time and peak RSS per entry are
printed. Time per entry must stay flat as N grows (linear total) and the peak below 1 KB per
entry (the bytes above the interpreter's own, measured with N=1000 entries).

Every tool runs as a child process; wall time is measured around it and its peak RSS is the
ru_maxrss that os.wait4 reports for it (which covers its own children, e.g. genimage's mke2fs).
Page cache is warm (nothing is dropped): rows compare steady-state CPU and memory cost. The
best wall time of the rounds is compared; the median is printed too. Exits 0 always; prints
PASS or MISS for each target of the issue.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAKE_GOLDEN = REPO / "tools" / "make_golden.py"
EPOCH = "1718878001"

FULL = {"layers": 40, "files": 1000, "mib": 720}
QUICK = {"layers": 2, "files": 60, "mib": 3}
# the targets of issue 15, as ratios of compose's best time to each peer's
TARGETS = {"mke2fs -d": 2.0, "tar -x+genimage": 0.5, "cat (floor)": 6.0}
BYTES_PER_ENTRY = 1024  # peak memory target, per entry
SCALE_FOLDER = 1000  # entries per folder in the --entries snapshots


@dataclass
class Row:
    name: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # user + system seconds, children included
    rss_kb: int = 0
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.walls)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)


LAST_CPU = [0.0]  # user + system seconds of the last child run() waited for


def run(argv: list[str], stdout: object = None, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run one child; (wall seconds, its peak RSS in KiB); its CPU seconds in LAST_CPU. Fails
    loudly on a non-zero exit."""
    out = subprocess.DEVNULL if stdout is None else stdout
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, cwd=cwd, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n"
                 f"{err.decode(errors='replace')}")
    return wall, usage.ru_maxrss


def default_work() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 8 << 30:
        return shm / "composer-bench"
    return Path(tempfile.gettempdir()) / "composer-bench"


def snapshot(work: Path, quick: bool) -> Path:
    p = QUICK if quick else FULL
    tar = work / f"snap-{p['layers']}x{p['files']}-{p['mib']}m.tar"
    if not tar.exists():
        print(f"generating {tar} ...", flush=True)
        part = tar.with_suffix(".part.tar")
        subprocess.run([sys.executable, str(MAKE_GOLDEN), str(part), "--layers",
                        str(p["layers"]), "--files-per-layer", str(p["files"]),
                        "--docker-mib", str(p["mib"])], check=True)
        part.rename(tar)
    return tar


def gzipped(tar: Path) -> Path:
    gz = tar.with_suffix(".tar.gz")
    if not gz.exists():
        print(f"generating {gz} ...", flush=True)
        part = gz.with_suffix(".part")
        with part.open("wb") as f:
            subprocess.run(["gzip", "-n", "-1", "-c", str(tar)], stdout=f, check=True)
        part.rename(gz)
    return gz


def census(tar: Path) -> tuple[int, int, int]:
    """(entries, regular files, data bytes) of the snapshot."""
    import libarchive

    entries = files = size = 0
    with libarchive.file_reader(str(tar)) as archive:
        for member in archive:
            entries += 1
            if member.isreg:
                files += 1
                size += member.size
    return entries, files, size


def layout(work: Path, source: Path, tag: str) -> Path:
    path = work / f"bench-{tag}.yaml"
    path.write_text(f"""version: 1
name: bench
epoch: {EPOCH}
sources:
  snap: {source.name}
partitions:
  - {{name: rootfs, fs: ext4, mount: /, size: auto}}
files:
  - {{from: "snap:/", to: /}}
""", encoding="utf-8")
    return path


def extract(tar: Path, dest: Path) -> tuple[float, int]:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    # GNU tar reads SCHILY.xattr but not LIBARCHIVE.xattr headers: the few xattrs are lost
    return run(["tar", "--warning=no-unknown-keyword", "-xf", str(tar), "-C", str(dest)])


def genimage_config(work: Path, size: int) -> Path:
    cfg = work / "genimage.cfg"
    cfg.write_text(f"""image bench.ext4 {{
\text4 {{
\t\tuse-mke2fs = true
\t\tfeatures = "^resize_inode"
\t\textraargs = "-b 4096"
\t\tlabel = "bench"
\t}}
\tsize = {size}
}}
""", encoding="utf-8")
    return cfg


def e2fsck_ok(img: Path) -> bool:
    return subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True).returncode == 0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def scale_snapshot(work: Path, n: int) -> Path:
    """A tar of `n` entries with little data: folders of SCALE_FOLDER entries, each holding
    files of 0 to 255 bytes and every 20th entry a symlink (deterministic)."""
    import io
    import tarfile

    tar = work / f"scale-{n}.tar"
    if tar.exists():
        return tar
    print(f"generating {tar} ...", flush=True)
    part = tar.with_suffix(".part")
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as out:
        made = 0
        folder = 0
        while made < n:
            d = tarfile.TarInfo(f"store/f{folder:04d}")
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, int(EPOCH) - 10
            out.addfile(d)
            made += 1
            for i in range(min(SCALE_FOLDER - 1, n - made)):
                m = tarfile.TarInfo(f"store/f{folder:04d}/entry-{i:04d}")
                m.mtime, m.uid, m.gid = int(EPOCH) - i, 1000, 1000
                if i % 20 == 19:
                    m.type, m.linkname = tarfile.SYMTYPE, f"entry-{i - 1:04d}"
                    out.addfile(m)
                else:
                    data = (b"%d/%d " % (folder, i)) * (i % 40)
                    m.size, m.mode = len(data), 0o644
                    out.addfile(m, io.BytesIO(data))
                made += 1
            folder += 1
    part.rename(tar)
    return tar


def compose_scale(work: Path, n: int, env: dict[str, str],
                  runs: int) -> tuple[float, int, float]:
    """compose of the n-entry scale snapshot: (best wall seconds, peak RSS KiB, least CPU
    seconds)."""
    compose = [sys.executable, "-m", "composer", "-q", "build"]
    yaml = layout(work, scale_snapshot(work, n), f"scale-{n}")
    out = work / "scale-out"
    best, peak, cpu = float("inf"), 0, float("inf")
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        wall, rss = run([*compose, str(yaml), "-o", str(out)], env=env)
        best, peak, cpu = min(best, wall), max(peak, rss), min(cpu, LAST_CPU[0])
    shutil.rmtree(out, ignore_errors=True)
    return best, peak, cpu


def fixed_cost(work: Path, env: dict[str, str], runs: int) -> tuple[float, int, float]:
    """compose's cost that does not grow with entries: a build of SCALE_FOLDER entries."""
    return compose_scale(work, SCALE_FOLDER, env, runs)


def scale(work: Path, counts: list[int], runs: int) -> int:
    """Time and peak memory of compose per entry at several entry counts (--entries)."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")

    def measure(n: int) -> tuple[float, int, float]:
        return compose_scale(work, n, env, runs)

    base_wall, base_kb, base_cpu = fixed_cost(work, env, runs)
    print(f"baseline: {SCALE_FOLDER} entries, {base_wall:.2f} s, {base_cpu:.2f} CPU s, "
          f"{base_kb / 1024:.0f} MB peak (the fixed cost the per-entry figures leave out)")
    print(f"{'entries':>8} {'best s':>8} {'us/entry':>9} {'CPU s':>7} {'CPU us/entry':>13} "
          f"{'peak RSS MB':>12} {'bytes/entry':>12}")
    rows = []
    for n in counts:
        wall, kb, cpu = measure(n)
        above = max(n - SCALE_FOLDER, 1)  # entries above the fixed-cost build
        us = (wall - base_wall) / above * 1e6
        cpu_us = (cpu - base_cpu) / above * 1e6
        per = (kb - base_kb) * 1024 / above
        rows.append((n, us, per, cpu_us))
        print(f"{n:>8} {wall:>8.2f} {us:>9.1f} {cpu:>7.2f} {cpu_us:>13.1f} {kb / 1024:>12.0f} "
              f"{per:>12.0f}", flush=True)
    if len(rows) > 1:
        flat = rows[-1][1] <= 1.25 * rows[0][1]
        print(f"{verdict(flat)}  time per entry flat (within 25 %) from {rows[0][0]} to "
              f"{rows[-1][0]} entries: {rows[0][1]:.1f} -> {rows[-1][1]:.1f} us "
              f"(CPU {rows[0][3]:.1f} -> {rows[-1][3]:.1f} us)")
    worst = max(row[2] for row in rows)
    print(f"{verdict(worst <= BYTES_PER_ENTRY)}  peak RSS <= {BYTES_PER_ENTRY} bytes per entry: "
          f"{worst:.0f} at most")
    return 0


def compiled() -> None:
    """Byte-compile composer once, as `pip install` of the wheel does: an editable checkout
    under PYTHONDONTWRITEBYTECODE (set on CI machines and here) would otherwise compile every
    module from source in each timed run (0.15 s of a 4 s build)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "composer")],
                   check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    compiled()
    if "--vfat" in sys.argv[1:]:  # the vfat scales of issue 15, with their own options
        import bench_vfat

        sys.argv.remove("--vfat")
        return bench_vfat.main()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small snapshot (smoke test)")
    ap.add_argument("--runs", type=int, default=2, help="rounds (default 2)")
    ap.add_argument("--work", type=Path, default=None,
                    help="work folder (default /dev/shm/composer-bench when it has room)")
    ap.add_argument("--no-gz", action="store_true", help="skip the tar.gz row")
    ap.add_argument("--entries", default=None, metavar="N[,N...]",
                    help="run the entry scale instead (e.g. 50000,200000,500000)")
    args = ap.parse_args()
    work = (args.work or default_work()).resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs = max(1, args.runs)
    if args.entries is not None:
        return scale(work, [int(n) for n in args.entries.split(",")], runs)

    tar = snapshot(work, args.quick)
    entries, files, data = census(tar)
    gz = None if args.no_gz else gzipped(tar)
    print(f"snapshot {tar.name}: {tar.stat().st_size / 1e6:.0f} MB uncompressed tar, "
          f"{entries} entries, {files} files, {data / 1e6:.0f} MB of file data")
    print(f"work folder {work} ({'tmpfs' if str(work).startswith('/dev/shm') else 'disk'}), "
          f"warm page cache, {runs} rounds, {os.cpu_count()} CPUs")

    _, spawn_kb = run(["true"])
    print(f"a child's peak RSS never reads below {spawn_kb / 1024:.0f} MB here: Linux counts "
          "the pre-exec copy of this process")

    extracted = work / "extracted"
    extract(tar, extracted)  # once, untimed: mke2fs -d gets a ready folder
    yaml_tar = layout(work, tar, "tar")
    yaml_gz = layout(work, gz, "gz") if gz is not None else None
    compose = [sys.executable, "-m", "composer", "-q", "build"]
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")

    rows = {name: Row(name) for name in
            ("compose", "compose tar.gz", "mke2fs -d", "tar -x+genimage", "cat (floor)")}
    rows["compose tar.gz"].note = "gzip -1 of the same tar; no target"
    if gz is None:
        del rows["compose tar.gz"]
    rows["mke2fs -d"].note = "folder extracted beforehand"
    size = 0
    checked = False
    for round_ in range(runs):
        print(f"round {round_ + 1}/{runs} ...", flush=True)
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss = run([*compose, str(yaml_tar), "-o", str(out)], env=env)
        rows["compose"].walls.append(wall)
        rows["compose"].cpus.append(LAST_CPU[0])
        rows["compose"].rss_kb = max(rows["compose"].rss_kb, rss)
        img = out / "rootfs.img"
        size = img.stat().st_size
        if not checked:
            checked = True
            print(f"  compose image {size / 1e6:.0f} MB, e2fsck -fn: "
                  f"{'clean' if e2fsck_ok(img) else 'ERRORS'}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        if yaml_gz is not None:
            wall, rss = run([*compose, str(yaml_gz), "-o", str(out)], env=env)
            rows["compose tar.gz"].walls.append(wall)
            rows["compose tar.gz"].cpus.append(LAST_CPU[0])
            rows["compose tar.gz"].rss_kb = max(rows["compose tar.gz"].rss_kb, rss)
            shutil.rmtree(out, ignore_errors=True)

        ref = work / "mke2fs.img"
        ref.unlink(missing_ok=True)
        wall, rss = run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^resize_inode", "-b", "4096",
                         "-d", str(extracted), str(ref), f"{size // 1024}k"],
                        env=dict(env, E2FSPROGS_FAKE_TIME=EPOCH))
        rows["mke2fs -d"].walls.append(wall)
        rows["mke2fs -d"].cpus.append(LAST_CPU[0])
        rows["mke2fs -d"].rss_kb = max(rows["mke2fs -d"].rss_kb, rss)
        ref.unlink(missing_ok=True)

        fresh = work / "genimage-root"
        for d in ("genimage-tmp", "genimage-out", "genimage-in"):
            shutil.rmtree(work / d, ignore_errors=True)
        (work / "genimage-in").mkdir()
        cfg = genimage_config(work, size)
        shutil.rmtree(fresh, ignore_errors=True)
        wall1, rss1 = extract(tar, fresh)
        cpu1 = LAST_CPU[0]
        wall2, rss2 = run(["genimage", "--rootpath", str(fresh),
                           "--tmppath", str(work / "genimage-tmp"),
                           "--inputpath", str(work / "genimage-in"),
                           "--outputpath", str(work / "genimage-out"), "--config", str(cfg)],
                          cwd=work)
        rows["tar -x+genimage"].walls.append(wall1 + wall2)
        rows["tar -x+genimage"].cpus.append(cpu1 + LAST_CPU[0])
        rows["tar -x+genimage"].rss_kb = max(rows["tar -x+genimage"].rss_kb, rss1, rss2)
        for d in ("genimage-root", "genimage-tmp", "genimage-out"):
            shutil.rmtree(work / d, ignore_errors=True)

        floor = work / "floor.bin"
        floor.unlink(missing_ok=True)
        with floor.open("wb") as f:
            wall, rss = run(["cat", str(tar)], stdout=f)
        rows["cat (floor)"].walls.append(wall)
        rows["cat (floor)"].cpus.append(LAST_CPU[0])
        rows["cat (floor)"].rss_kb = max(rows["cat (floor)"].rss_kb, rss)
        floor.unlink(missing_ok=True)

    mine = rows["compose"]
    print()
    print(f"{'tool':<18} {'best s':>8} {'median s':>9} {'CPU s':>7} {'peak RSS MB':>12} "
          f"{'compose/peer':>13} {'CPU ratio':>10}  note")
    for row in rows.values():
        ratio = mine.best / row.best if row.best > 0 else float("inf")
        cpu_ratio = min(mine.cpus) / min(row.cpus) if min(row.cpus) > 0 else float("inf")
        print(f"{row.name:<18} {row.best:>8.2f} {row.median:>9.2f} {min(row.cpus):>7.2f} "
              f"{row.rss_kb / 1024:>12.0f} {ratio:>12.2f}x {cpu_ratio:>9.2f}x  {row.note}")
    print()
    rss_mb = mine.rss_kb / 1024
    _, fixed_kb, _ = fixed_cost(work, env, 1)
    per_entry = (mine.rss_kb - fixed_kb) * 1024 / max(entries - SCALE_FOLDER, 1)
    targets = [(f"compose <= {limit}x {name}", mine.best <= limit * rows[name].best,
                f"{mine.best / rows[name].best:.2f}x") for name, limit in TARGETS.items()]
    targets.append((f"compose peak RSS <= {BYTES_PER_ENTRY} bytes per entry",
                    per_entry <= BYTES_PER_ENTRY, f"{per_entry:.0f} bytes per entry above the "
                    f"{fixed_kb / 1024:.0f} MB of a {SCALE_FOLDER}-entry build "
                    f"({rss_mb:.0f} MB peak)"))
    for label, ok, figure in targets:
        print(f"{verdict(ok)}  {label}: {figure}")
    if args.quick:
        print("(quick snapshot: the targets are meant for the full one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
