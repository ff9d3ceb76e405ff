"""examples/pytest_budgets runs as its README says: budgets from pyproject.toml and markers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pytest_budgets"


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dest = tmp_path / "pytest_budgets"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".carbonlab"))
    for var in ("PYTEST_CARBON_BUDGET", "PYTEST_CARBON_SESSION_BUDGET", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)
    return dest


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("args", [(), ("-n", "2")])
def test_example_suite(example, args):
    if args:
        pytest.importorskip("xdist")
    proc = _pytest(example, *args, "--carbon-json=carbon.json")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "6 passed, 1 xfailed" in out
    assert "; zone FR " in out and "budget 20 J/test; session budget 2 kJ" in out
    assert "- carbon: top 5 by energy -" in out
    assert "setup    tests/test_primes.py::test_table_fixture" in out
    import json

    doc = json.loads((example / "carbon.json").read_text())
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t for t in doc["tests"]}
    assert "test_not_measured" not in tests
    assert tests["test_over_budget_on_purpose"]["budget"]["status"] == "over"
    assert tests["test_trial_division_agrees"]["budget"]["limit"] == "50 J"
    assert tests["test_sieve_100k"]["budget"]["limit"] == "5 J, 0.1 mg"


def test_example_without_the_xfail_shows_the_budget_failure(example):
    test_file = example / "tests" / "test_primes.py"
    test_file.write_text(
        test_file.read_text().replace("@pytest.mark.xfail(", "@pytest.mark.skipif(False, ")
    )
    proc = _pytest(example)
    assert proc.returncode == 1
    assert "carbon budget exceeded: " in proc.stdout and " > 1 mJ (call; " in proc.stdout
