"""Issue 16: the regression gate and CI output (new/removed tests, --carbon-top=0, regressions that
CI can see, branch names, xfail, budget text, per-file and session totals, energy outside tests)."""

from __future__ import annotations

import json
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


def test_several_baseline_runs_their_median_and_spread(project):
    """A test whose saved runs spread from 1 J to 3 J is not a regression at 2.5 J (beyond 10 % of
    the 1 J median, within the observed spread) nor at 4 J (within twice the spread above the
    median); at 6 J it is, and the message says 'median'."""
    for j in (1.0, 3.0, 1.0):
        project.makepyfile(test_s=f"def test_a(burn):\n    burn(cpu={j})\n")
        project.runpytest("--carbon-save=main")
    project.makepyfile(test_s="def test_a(burn):\n    burn(cpu=2.5)\n")
    result = project.runpytest("--carbon-compare=main", "--carbon-compare-fail=energy:10%")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["compared with the median of 3 runs saved as main: *"])
    result = project.runpytest(
        "--carbon-compare=main", "--carbon-compare-runs=1", "--carbon-compare-fail=energy:10%"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # against the last run (1 J) alone
    project.makepyfile(test_s="def test_a(burn):\n    burn(cpu=4)\n")
    result = project.runpytest("--carbon-compare=main", "--carbon-compare-fail=energy:10%")
    assert result.ret == pytest.ExitCode.OK
    project.makepyfile(test_s="def test_a(burn):\n    burn(cpu=6)\n")  # beyond 1 + 2 x (3 - 1)
    result = project.runpytest("--carbon-compare=main", "--carbon-compare-fail=energy:10%")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_a: energy 1 J (median of 3 runs, highest 3 J) -> 6 J*"])


def test_session_threshold(project):
    project.makepyfile(test_s=many(3))
    project.runpytest("--carbon-save=main")
    project.makepyfile(test_s=many(3) + "\n" + many(5, 0.2, start=3))  # +1 J in new tests
    result = project.runpytest("--carbon-compare=main", "--carbon-compare-fail=session:10%")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*whole session: energy 3 J -> 4 J*beyond 10 %*",
            "FAILED carbon session (carbon regression)*",
        ]
    )
    result = project.runpytest("--carbon-compare=main", "--carbon-compare-fail=energy:10%")
    assert result.ret == pytest.ExitCode.OK  # no test regressed; new tests are listed, not failed


def test_a_call_that_imports_modules_is_first_use_and_not_gated(project):
    (project.path / "heavy_mod_x.py").write_text("X = 1\n")
    project.makepyfile(test_s="def test_a(burn):\n    burn(cpu=1)\n")
    project.runpytest("--carbon-save=main")
    project.makepyfile(test_s="def test_a(burn):\n    import heavy_mod_x\n    burn(cpu=5)\n")
    result = project.runpytest_subprocess(
        "--carbon-compare=main", "--carbon-compare-fail=energy:10%", "--carbon-json=c.json"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_s.py::test_a  (first use: imported modules; not gated)"])
    assert read_json(project.path / "c.json")["tests"][0]["first_use"] >= 1


def test_summary_json(project):
    project.makepyfile(test_s=many(3), test_t=many(1, 2.0))
    result = project.runpytest("--carbon-summary-json=s.json")
    assert result.ret == pytest.ExitCode.OK
    doc = json.loads((project.path / "s.json").read_text())
    assert doc["schema"] == "carbonlab.pytest-summary/1"
    assert doc["measured"] == 4 and doc["session"]["energy_j"] >= 5.0
    assert [f["path"] for f in doc["files"]] == ["test_s.py", "test_t.py"]
    assert doc["top"][0]["nodeid"] == "test_t.py::test_0"


def test_json_for_5000_tests_is_compact_and_readable(project):
    project.makepyfile(
        test_big="""
import pytest

@pytest.mark.parametrize("i", range(5000))
def test_case_with_a_realistic_name(i, burn):
    burn(cpu=0.001 * (i % 7))
"""
    )
    result = project.runpytest("--carbon-json=c.json", "--carbon-save=main", "-q")
    assert result.ret == pytest.ExitCode.OK
    size = (project.path / "c.json").stat().st_size
    assert size <= 2_000_000, size
    from carbonlab.compare import load_run

    (path,) = saved(project)
    run = load_run(path)
    assert len(run.tests) == 5000
    full = read_json(project.path / "c.json")
    assert full["tests"][3]["call"]["components"][1]["energy_j"] == pytest.approx(0.003)
