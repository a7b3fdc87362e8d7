"""In CI (CI set, as .ci/run sets it) no test may pass by being skipped: tests/conftest.py turns
every skip into a failure unless it names one of ENVIRONMENT_FACTS, and need() fails outright for
a missing judge. Checked by running pytest on a small suite that uses the real hooks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ENVIRONMENT_FACTS, REPO

SUITE = '''
import pytest
from tests.conftest import env_skip, need

def test_plain_skip():
    pytest.skip("needs something")

@pytest.mark.skipif(True, reason="needs root")
def test_marker_skip():
    pass

def test_missing_judge():
    need("no-such-judge-tool")

def test_environment_fact():
    env_skip("no-vfat-driver", "this kernel has no vfat driver")

@pytest.mark.xfail(reason="a known failure", strict=True)
def test_xfail():
    assert False

def test_pass():
    pass
'''


def _run(tmp_path: Path, ci: bool) -> dict[str, str]:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = "true"
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_suite.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    outcomes = {}
    for line in done.stdout.splitlines():
        m = re.match(r"^\S*::(test_\w+) (PASSED|FAILED|SKIPPED|XFAIL|ERROR)\b", line)
        if m:
            outcomes[m.group(1)] = m.group(2)
    return outcomes


def test_in_ci_a_skip_is_a_failure_unless_it_is_an_environment_fact(tmp_path: Path) -> None:
    assert _run(tmp_path, ci=True) == {
        "test_plain_skip": "FAILED", "test_marker_skip": "ERROR",  # a skip in setup
        "test_missing_judge": "FAILED", "test_environment_fact": "SKIPPED",
        "test_xfail": "XFAIL", "test_pass": "PASSED"}


def test_outside_ci_skips_name_what_is_missing(tmp_path: Path) -> None:
    assert _run(tmp_path, ci=False) == {
        "test_plain_skip": "SKIPPED", "test_marker_skip": "SKIPPED",
        "test_missing_judge": "SKIPPED", "test_environment_fact": "SKIPPED",
        "test_xfail": "XFAIL", "test_pass": "PASSED"}


def test_the_allow_list_is_short_and_each_fact_is_one_ci_cannot_change() -> None:
    """Root, tools, locales and packages are CI's to provide: none of them may be a fact."""
    assert len(ENVIRONMENT_FACTS) <= 6
    for fact, why in ENVIRONMENT_FACTS.items():
        assert not re.search(r"\broot\b|\binstalls?\b|missing tool|locale", why), (fact, why)


def test_ci_script_sets_ci() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "export CI=true" in script
    assert script.index("export CI=true") < script.index("python3 -m pytest")
