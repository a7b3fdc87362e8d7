"""Archives are read as few times as possible: a compressed tar can only be read from its start."""

from __future__ import annotations

from pathlib import Path

import pytest

import composer.sources.archive as archive
from composer.build import plan


def test_planning_reads_the_archive_data_once(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = archive.ArchiveData.iter_data

    def counting(self, wanted):  # type: ignore[no-untyped-def]
        calls.append(len(wanted))
        return original(self, wanted)

    monkeypatch.setattr(archive.ArchiveData, "iter_data", counting)
    plan(demo)
    assert len(calls) == 1, calls  # configs, recipes and the unit in one pass
