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

# What CI cannot change on its machine, and so the only reasons a test may skip there (CI runs as
# root with every judge installed: .ci/run). A skip names one of these with env_skip(); any other
# skip under CI=... is turned into a failure (pytest_runtest_makereport below).
ENVIRONMENT_FACTS = {
    "no-vfat-driver": "the kernel has no vfat driver (a container shares the host's kernel)",
    "no-loop-devices": "no loop devices or loop partition nodes (a container without /dev/loop*)",
    "no-holes": "the host file system of the temporary folder does not report holes",
    "no-acls": "the host file system of the temporary folder does not take POSIX ACLs",
    "uid-cannot-read": "an unprivileged uid cannot read the checkout or the Python installation",
    "no-cap-sys-resource": "the container withholds CAP_SYS_RESOURCE, which online ext4 resize "
    "(EXT4_IOC_RESIZE_FS) needs",
}


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def need(*tools: str) -> None:
    """A judge the test cannot do without: skipped with the tool's name on a developer machine,
    a failure in CI (which installs every judge)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (see .ci/run)"
    if in_ci():
        pytest.fail(f"{reason}: CI must install every judge")
    pytest.skip(reason)


def need_root(why: str) -> None:
    """Root, which CI has: a skip elsewhere, a failure in CI."""
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail(f"needs root ({why}): CI runs as root")
        pytest.skip(f"needs root ({why})")


def env_skip(fact: str, detail: str) -> None:
    """Skip for one of ENVIRONMENT_FACTS, the only skips CI accepts."""
    assert fact in ENVIRONMENT_FACTS, fact
    pytest.skip(f"environment fact [{fact}]: {detail}")


def _allowed_in_ci(reason: str) -> bool:
    return any(f"environment fact [{fact}]" in reason for fact in ENVIRONMENT_FACTS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI a skip is a failure unless it names an environment fact: a judge that is
    missing, or a test that cannot run, must not pass as green."""
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not _allowed_in_ci(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {reason}"


def make_golden(out: Path, *args: str) -> Path:
    subprocess.run([sys.executable, str(TOOLS / "make_golden.py"), str(out), *args], check=True)
    return out


def planted_secrets() -> list[str]:
    out = subprocess.run([sys.executable, str(TOOLS / "make_golden.py"), "--print-secrets"],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


def compose(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            umask: int | None = None, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    full_env.update(env or {})

    def preexec() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run([sys.executable, "-m", "composer", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, preexec_fn=preexec, input=stdin)


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
