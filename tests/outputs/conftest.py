from __future__ import annotations

from pathlib import Path

import pytest
from imagekit import make_image

from composer.fs.base import WriteResult


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, WriteResult]:
    path = tmp_path / "image.img"
    return path, make_image(path)
