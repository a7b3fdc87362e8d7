"""The CLI as users run it: plan output, validate writing nothing, quiet mode."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import compose


def test_plan_json_lists_partitions(demo: Path) -> None:
    result = compose("plan", str(demo), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["layout"] == "gg-demo" and data["epoch"] == 1718878001
    parts = {p["name"]: p for p in data["partitions"]}
    assert parts["rootfs"]["mount"] == "/" and parts["docker"]["mount"] == "/var/lib/docker"
    assert parts["rootfs"]["entries"] > 50 and parts["docker"]["bytes"] > 0
    # derived IDs are stable
    again = json.loads(compose("plan", str(demo), "--json").stdout)
    assert again == data


def test_plan_text(demo: Path) -> None:
    result = compose("plan", str(demo))
    assert result.returncode == 0
    assert "rootfs" in result.stdout and "/var/lib/docker" in result.stdout


def test_validate_writes_nothing(demo: Path) -> None:
    before = sorted(p.name for p in demo.parent.iterdir())
    result = compose("validate", str(demo))
    assert result.returncode == 0, result.stderr
    assert "ok (4 partitions" in result.stderr
    assert sorted(p.name for p in demo.parent.iterdir()) == before


def test_quiet_build_prints_nothing(demo: Path, tmp_path: Path) -> None:
    result = compose("-q", "build", str(demo), "-o", str(tmp_path / "o"))
    assert result.returncode == 0
    assert result.stderr == "" and result.stdout == ""


def test_bad_source_date_epoch(demo: Path) -> None:
    result = compose("validate", str(demo), env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: SOURCE_DATE_EPOCH='yesterday' is not a number")


def test_version() -> None:
    result = compose("--version")
    assert result.returncode == 0 and result.stdout.startswith("compose ")
