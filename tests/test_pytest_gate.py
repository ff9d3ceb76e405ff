"""Issue 16: the regression gate and CI output (new/removed tests, --carbon-top=0, regressions that
CI can see, branch names, xfail, budget text, per-file and session totals, energy outside tests)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.faults import assert_clean
from tests.test_pytest_support import make_project, read_json


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return make_project(pytester, monkeypatch)


def many(n: int, j: float = 1.0, start: int = 0) -> str:
    return "\n".join(f"def test_{i}(burn):\n    burn(cpu={j})\n" for i in range(start, start + n))


def saved(project: pytest.Pytester) -> list[Path]:
    return sorted((project.path / ".carbonlab" / "pytest").glob("*/*.json"))


def test_new_and_removed_tests_are_listed_in_the_comparison(project):
    project.makepyfile(test_s=many(30) + "\ndef test_gone(burn):\n    burn(cpu=1)\n")
    project.runpytest("--carbon-save=base")
    project.makepyfile(test_s=many(30, 2.0) + "\ndef test_fresh(burn):\n    burn(cpu=1)\n")
    result = project.runpytest("--carbon-compare")
    text = result.stdout.str()
    assert "test_s.py::test_fresh" in text and "new" in text
    assert "test_s.py::test_gone" in text and "removed" in text


def test_carbon_top_zero_shows_every_comparison_row(project):
    project.makepyfile(test_s=many(30))
    project.runpytest("--carbon-save=base")
    project.makepyfile(test_s=many(30, 2.0))
    result = project.runpytest("--carbon-compare", "--carbon-top=0")
    text = result.stdout.str()
    assert all(f"test_s.py::test_{i}\n" in text for i in range(30))


@pytest.mark.fault("baselines")
def test_a_regression_is_a_named_failure_in_the_terminal_and_junit(project):
    project.makepyfile(test_s=many(2))
    project.runpytest("--carbon-save=base")
    project.makepyfile(test_s=many(1) + "\n" + many(1, 5.0, start=1))
    xml = project.path / "junit.xml"
    result = project.runpytest("--carbon-compare-fail=energy:10%:0.5J", f"--junitxml={xml}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "FAILED test_s.py::test_1 (carbon regression) - energy 1 J -> 5 J*",
            "*= 1 failed, 2 passed in *",
        ]
    )
    body = xml.read_text()
    assert 'failures="1"' in body
    assert 'name="test_1 (carbon regression)"' in body
    assert 'name="carbon_regression"' in body  # a JUnit property on the failing case
    assert_clean(result.stdout.str() + result.stderr.str())


@pytest.mark.fault("baselines")
def test_branch_names_are_saved_and_found_by_their_own_name(project):
    project.makepyfile(test_s=many(2))
    result = project.runpytest("--carbon-save=feature/foo")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    (path,) = saved(project)
    assert path.name == "0001_feature_foo.json"
    assert read_json(path)["name"] == "feature/foo"
    result = project.runpytest("--carbon-compare=feature/foo")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["compared with */0001_feature_foo.json"])


@pytest.mark.fault("baselines")
def test_an_all_digit_name_is_refused_and_hash_numbers_name_runs(project):
    project.makepyfile(test_s=many(1))
    result = project.runpytest("--carbon-save=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--carbon-save name '3'*run number*"])
    project.runpytest("--carbon-save=a")
    result = project.runpytest("--carbon-compare=#1")
    result.stdout.fnmatch_lines(["compared with */0001_a.json"])


def test_xfailed_and_xpassed_tests_are_recorded_as_such(project):
    project.makepyfile(
        test_s="""
import pytest

@pytest.mark.xfail
def test_x(burn):
    burn(cpu=1)
    assert False

@pytest.mark.xfail
def test_xp(burn):
    burn(cpu=1)
"""
    )
    project.runpytest("--carbon-json=out.json")
    doc = read_json(project.path / "out.json")
    outcomes = {t["nodeid"]: t["outcome"] for t in doc["tests"]}
    assert outcomes == {"test_s.py::test_x": "xfailed", "test_s.py::test_xp": "xpassed"}


def test_budget_text_is_normalised_and_precise(project):
    project.makepyfile(test_s="def test_a(burn):\n    burn(cpu=0.81859351)\n")
    result = project.runpytest("--carbon-budget=0.001mJ")
    text = result.stdout.str()
    assert "0.001 mJ" in text and "0.001mJ" not in text
    assert "818.59351" not in text and "819 mJ" in text
    result = project.runpytest("--carbon-budget=5J")
    assert "budget 5 J/test" in result.stdout.str()


@pytest.mark.fault("pytest")
def test_a_zero_budget_is_a_usage_error(project):
    project.makepyfile(test_s=many(1))
    result = project.runpytest("--carbon-budget=0 J")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*0 J*every test*none*"])
    assert_clean(result.stderr.str())


def test_one_test_is_singular(project):
    project.makepyfile(test_s=many(1))
    result = project.runpytest("--carbon")
    result.stdout.fnmatch_lines(["1 test measured: *"])


def test_per_file_totals_and_session_line_in_the_comparison(project):
    project.makepyfile(test_s=many(2), test_t=many(1, 3.0))
    project.runpytest("--carbon-save=base")
    project.makepyfile(test_s=many(2, 2.0))
    result = project.runpytest("--carbon-compare")
    result.stdout.fnmatch_lines(
        ["*by file*", "*2 J *4 J *+100.0 %  test_s.py", "*3 J *3 J *test_t.py", "*session*"]
    )


def test_energy_outside_tests_is_shown_and_explained(project):
    project.makepyfile(test_s=many(2))
    result = project.runpytest("--carbon")
    result.stdout.fnmatch_lines(["outside tests: *collection*"])


@pytest.mark.fault("outputs")
def test_outputs_respect_the_umask(project):
    project.makepyfile(test_s=many(1))
    old = os.umask(0o022)
    try:
        project.runpytest_subprocess("--carbon-json=out.json", "--carbon-save=a")
    finally:
        os.umask(old)
    for p in [project.path / "out.json", *saved(project)]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
