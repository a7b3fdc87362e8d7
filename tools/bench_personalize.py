#!/usr/bin/env python3
"""Benchmark `compose personalize` on the demo golden build (issue 13).

    python tools/bench_personalize.py [--devices N] [--jobs J] [--full] [--work DIR]

Makes the synthetic golden snapshot (tools/make_golden.py), the demo layout with a
`personalize: {uuids: [rootfs]}` section, builds the golden image, writes N device records
(distinct ids and thing names; four RSA certificate/key pairs made with openssl, used in turn),
then runs `compose personalize` once as a child process (with --debug, for its phase times)
and reports:

* devices per second for the whole run (start-up, the check of the sources, every device) and
  for the devices alone (after the golden plan is ready), and the time of each phase;
* the peak RSS of the process tree (os.wait4: the largest of the parent and its --jobs
  workers);
* the patch sizes and how many devices were built in full (outgrew the reserved room), from
  OUT/personalize.json.

Prints PASS or MISS against the issue's target of 200 devices/s for patches (the whole run).
`--full` also writes each device's complete build (no target).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 200.0  # devices per second, patches only (issue 13)


def _run(argv: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MiB and stderr of one child process."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{err}")
    return seconds, usage.ru_maxrss // 1024, err


def _setup(work: Path, devices: int) -> tuple[Path, Path]:
    layouts = work / "in"
    shutil.copytree(REPO / "layouts", layouts)
    subprocess.run([sys.executable, str(REPO / "tools" / "make_golden.py"),
                    str(layouts / "golden-device.tar.gz")], check=True, capture_output=True)
    text = (layouts / "demo.yaml").read_text()
    layout = layouts / "line.yaml"
    layout.write_text(text.replace("\ndisk:", "\npersonalize:\n  uuids: [rootfs]\ndisk:", 1))
    for i in range(4):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(layouts / f"k{i}.key"), "-out", str(layouts / f"k{i}.crt"),
                        "-subj", f"/CN=bench{i}", "-days", "3650"], check=True,
                       capture_output=True)
    records = layouts / "devices.jsonl"
    with records.open("w") as f:
        for n in range(devices):
            f.write(json.dumps({"id": f"dev-{n:06d}", "thing_name": f"Bench-Thing-{n:06d}",
                                "certificate": f"k{n % 4}.crt",
                                "private_key": f"k{n % 4}.key"}) + "\n")
    return layout, records


def _phase(pattern: str, log: str) -> float | None:
    found = re.search(pattern, log)
    return float(found.group(1)) if found else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--jobs", type=int, help="compose personalize --jobs (default: its own)")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-personalize-"))
    try:
        layout, records = _setup(work, args.devices)
        compose = [sys.executable, "-m", "composer", "-q"]
        build_s, _, _ = _run([*compose, "build", str(layout), "-o", str(work / "golden")],
                             layout.parent)
        argv_p = [*compose, "--debug", "personalize", str(work / "golden"), "--devices",
                  str(records), "-o", str(work / "out")] + (["--full"] if args.full else []) + \
            ([f"--jobs={args.jobs}"] if args.jobs else [])
        seconds, rss, log = _run(argv_p, layout.parent)
        listed = json.loads((work / "out" / "personalize.json").read_text())
        sizes: dict[str, list[int]] = {}
        rebuilt = 0
        for device in listed["devices"]:
            rebuilt += device.get("rebuilt") is not None
            for patch in device["patches"]:
                sizes.setdefault(patch["image"], []).append(patch["blocks"] * 4096)
        rate = args.devices / seconds
        ready = _phase(r"golden ready in ([\d.]+) s", log)
        devices_s = _phase(r"\d+ devices in ([\d.]+) s", log)
        print(f"golden build: {build_s:.2f} s")
        print(f"personalize {args.devices} devices{' (--full)' if args.full else ''}"
              f"{f' --jobs {args.jobs}' if args.jobs else ''}: {seconds:.2f} s, "
              f"{rate:.2f} devices/s, peak RSS {rss} MiB")
        if ready is not None and devices_s is not None:
            start = seconds - ready - devices_s
            print(f"  phases: start-up and records {start:.2f} s, golden plan {ready:.2f} s, "
                  f"devices {devices_s:.2f} s ({args.devices / max(devices_s, 1e-9):.1f} "
                  f"devices/s, {devices_s * 1000 / args.devices:.2f} ms each)")
        print(f"  devices built in full (outgrew the reserved room): {rebuilt}")
        for image, values in sorted(sizes.items()):
            print(f"  {image}.patch blocks: min {min(values) // 1024} KiB, median "
                  f"{int(statistics.median(values)) // 1024} KiB, max {max(values) // 1024} KiB")
        if not args.full:
            print(f"{'PASS' if rate >= TARGET else 'MISS'}: {rate:.2f} devices/s "
                  f"(target {TARGET:.0f})")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
