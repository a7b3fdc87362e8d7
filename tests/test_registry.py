"""One table of formats and one of source kinds, keyed by enums (composer/registry.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.registry import SCANNERS, WRITERS, Format, SourceKind, source_kind


def test_every_format_has_its_writer() -> None:
    assert set(WRITERS) == set(Format)
    for fmt, writer in WRITERS.items():
        assert writer.fs == fmt.value


def test_every_source_kind_has_a_scanner(tmp_path: Path) -> None:
    assert set(SCANNERS) == set(SourceKind)
    (tmp_path / "folder").mkdir()
    (tmp_path / "a.tar").write_bytes(b"")
    assert source_kind("s", tmp_path / "folder") is SourceKind.FOLDER
    assert source_kind("s", tmp_path / "a.tar") is SourceKind.ARCHIVE
    with pytest.raises(ComposerError, match="does not exist"):
        source_kind("s", tmp_path / "missing")


def test_unknown_fs_names_the_format_as_written(tmp_path: Path) -> None:
    """The hint shows the layout's word ('vfat'), not the enum member (Format.VFAT)."""
    from composer.layout.load import load_layout

    layout = tmp_path / "l.yaml"
    layout.write_text("version: 1\nname: x\npartitions:\n"
                      "  - {name: boot, fs: vfta, size: 64MiB, mount: /boot}\n")
    with pytest.raises(ComposerError) as caught:
        load_layout(layout)
    assert "unknown file system 'vfta'" in caught.value.render()
    assert "hint: did you mean 'vfat'?" in caught.value.render()
