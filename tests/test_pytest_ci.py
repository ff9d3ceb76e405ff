"""The CI recipe of examples/pytest_budgets (GitHub Actions), run end to end: its `names` and `tests`
steps are executed as the workflow has them, in a project with scripted meters; the artifact steps
(which only carry .carbonlab/pytest between jobs) are simulated by keeping that directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import assert_clean
from tests.test_pytest_support import REPO, make_project

yaml = pytest.importorskip("yaml")
pytest.importorskip("xdist")

WORKFLOW = REPO / "examples" / "pytest_budgets" / ".github" / "workflows" / "carbon.yml"


def step(step_id: str) -> str:
    doc = yaml.safe_load(WORKFLOW.read_text())
    (job,) = doc["jobs"].values()
    return next(s for s in job["steps"] if s.get("id") == step_id)["run"]


def suite(b: float) -> str:
    return f"""
def test_a(burn):
    burn(cpu=5.0)

def test_b(burn):
    burn(cpu={b})
"""


def run_step(project: pytest.Pytester, script: str, **env: str) -> subprocess.CompletedProcess:
    full = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(project.path / "summary.md"),
        "GITHUB_WORKSPACE": str(project.path),
        **env,
    }
    full.pop("PYTEST_ADDOPTS", None)
    # GitHub runs `run:` scripts with `bash -e {0}`
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=project.path,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_artifact_names_are_safe_for_branch_names(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", "-e", "-c", step("names")],
        env={**os.environ, "GITHUB_REF_NAME": "feature/foo", "GITHUB_OUTPUT": str(out)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == ["branch=feature_foo", "base=feature_foo"]


def test_main_saves_baselines_and_a_pull_request_is_gated(pytester, monkeypatch):
    project = make_project(pytester, monkeypatch)
    project.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\n")
    tests = step("tests")
    project.makepyfile(test_s=suite(2.0))
    for _ in range(3):  # three pushes to main, each adding its run to the branch's baselines
        proc = run_step(project, tests, GITHUB_EVENT_NAME="push", BRANCH="main")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    saved = sorted((project.path / ".carbonlab" / "pytest").glob("*/*.json"))
    assert [p.name for p in saved] == ["0001_main.json", "0002_main.json", "0003_main.json"]

    # A pull request that leaves the energy alone passes.
    (project.path / "summary.md").unlink()
    proc = run_step(project, tests, GITHUB_EVENT_NAME="pull_request", BRANCH="main")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compared with the median of 3 runs saved as main" in proc.stdout

    # One that makes test_b use 5x the energy fails, and says which test.
    project.makepyfile(test_s=suite(10.0))
    (project.path / "summary.md").unlink()
    proc = run_step(project, tests, GITHUB_EVENT_NAME="pull_request", BRANCH="main")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "FAILED test_s.py::test_b (carbon regression) - energy 2 J" in out
    assert "::error title=carbon regression::test_s.py::test_b: energy 2 J" in out
    assert "whole session: energy" in out  # session:10% crossed too (7 J -> 15 J)
    junit = (project.path / "junit.xml").read_text()
    assert 'name="test_b (carbon regression)"' in junit and 'failures="2"' in junit
    summary = (project.path / "summary.md").read_text()
    assert "**2 energy regression(s)**" in summary, summary
    assert "- test_s.py::test_b: energy 2 J (median of 3 runs" in summary, summary
    doc = json.loads((project.path / "carbon-summary.json").read_text())
    assert doc["comparison"]["regressed_tests"] == ["test_s.py::test_b", "(session)"]
    assert_clean(out + proc.stderr)
