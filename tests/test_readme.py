"""The README documents every layout key and every writer option the code accepts."""

from __future__ import annotations

from composer.layout.load import DISK_KEYS, DISK_PARTITION_KEYS, PARTITION_KEYS, TOP_KEYS
from composer.registry import WRITERS
from tests.conftest import REPO


def test_every_key_and_option_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    keys = set(TOP_KEYS) | set(PARTITION_KEYS) | set(DISK_PARTITION_KEYS)
    keys |= {f"disk.{k}" for k in DISK_KEYS}
    for writer in WRITERS.values():
        keys |= set(writer.options)
    missing = sorted(k for k in keys if f"`{k}`" not in readme and f".{k}`" not in readme
                     and f"`{k}." not in readme and f"`{k}[" not in readme
                     and f"`{k}:" not in readme)
    assert not missing, f"README does not document: {missing}"
