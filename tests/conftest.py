"""Shared fixtures: a synthetic golden snapshot made by tools/make_golden.py, and a CLI runner
that runs the real `compose` entry point in a subprocess (exit codes and stderr as users see
them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"


def make_golden(out: Path, *args: str) -> Path:
    subprocess.run([sys.executable, str(TOOLS / "make_golden.py"), str(out), *args], check=True)
    return out


def planted_secrets() -> list[str]:
    out = subprocess.run([sys.executable, str(TOOLS / "make_golden.py"), "--print-secrets"],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


def compose(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            umask: int | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    full_env.update(env or {})

    def preexec() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run([sys.executable, "-m", "composer", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, preexec_fn=preexec)


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_golden(tmp_path_factory.mktemp("golden") / "golden-device.tar.gz")


def copy_layouts(folder: Path, golden: Path | None = None) -> Path:
    """A copy of layouts/ in `folder` with the snapshot it reads (`golden`, or none yet)."""
    shutil.copytree(REPO / "layouts", folder, ignore=shutil.ignore_patterns("*.tar.gz"))
    if golden is not None:
        shutil.copy(golden, folder / "golden-device.tar.gz")
    return folder


@pytest.fixture()
def demo(tmp_path: Path, golden: Path) -> Path:
    """A copy of layouts/demo.yaml with its inputs, in a fresh folder."""
    return copy_layouts(tmp_path / "demo", golden) / "demo.yaml"
