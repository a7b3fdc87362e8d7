"""Smoke test of the vfat scales of tools/bench.py (tools/bench_vfat.py): it runs end to end on
small folders and prints its tables and verdicts. No timing is asserted here; the speed
targets are read from the benchmark's own output. The fsck verdicts are not timings: they
must pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not all(shutil.which(t) for t in ("mkfs.vfat", "mcopy", "fsck.vfat")),
                    reason="needs dosfstools and mtools")
def test_bench_vfat_quick_prints_the_tables(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "--vfat",
                             "--quick", "--runs", "1", "--mcopy-timeout", "3", "--work",
                             str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for scale in ("flat: 2000 entries", "tree: 5000 entries"):
        assert scale in out
    for row in ("vfat writer", "compose build", "mkfs+mcopy"):
        assert out.count(f"\n{row} ") == 2, row
    assert out.count("PASS") + out.count("MISS") == 6
    assert "PASS  fsck.vfat -n clean, flat (writer and compose)" in out
    assert "PASS  fsck.vfat -n clean, tree (writer and compose)" in out
