"""Smoke test of tools/bench.py: it runs end to end on a small snapshot and prints its table.
No timing is asserted here; the speed targets are read from the benchmark's own output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("genimage") is None or shutil.which("mke2fs") is None,
                    reason="needs genimage and mke2fs")
def test_bench_quick_prints_the_table(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "--quick",
                             "--runs", "1", "--work", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tool" in out and "peak RSS MB" in out and "compose/peer" in out
    for row in ("compose ", "compose tar.gz", "mke2fs -d", "tar -x+genimage", "cat (floor)"):
        assert f"\n{row}" in out
    assert out.count("PASS") + out.count("MISS") == 4
    assert "e2fsck -fn: clean" in out


def test_pool_stream_reads_across_the_pool_end_in_one_call() -> None:
    """The full benchmark snapshot has files that wrap around the 64 MiB pool; tarfile takes a
    short read for the end of the data ("unexpected end of data"), so a read never stops at
    the wrap."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_golden
    finally:
        sys.path.remove(str(REPO / "tools"))
    start = make_golden.POOL_SIZE - 10
    stream = make_golden.PoolStream(100, start)
    data = stream.read(64)
    assert len(data) == 64
    pool = make_golden._POOL[0]
    assert data == pool[start:] + pool[:54]
    assert len(stream.read(100)) == 36 and stream.read(10) == b""


def test_bench_entry_scale_prints_time_and_memory_per_entry(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "--entries",
                             "1500,2500", "--runs", "1", "--work", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "CPU us/entry" in out and "bytes/entry" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1500"], ["2500"])]
    assert [row[0] for row in rows] == ["1500", "2500"] and all(len(row) == 7 for row in rows)
    assert "time per entry flat" in out and "bytes per entry" in out
    assert out.count("PASS") + out.count("MISS") == 2
    # the snapshots hold what they say: N entries each (GNU tar lists them)
    listed = subprocess.run(["tar", "-tf", str(tmp_path / "scale-2500.tar")],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(listed) == 2500
