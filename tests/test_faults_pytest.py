"""Faults of the pytest plugin that must never reach the user's test run as a crash or an
INTERNALERROR: help texts, bad options, ini values, environment and markers, corrupt baselines,
markers added by conftest hooks, settings from the rootdir, unwritable outputs, hostile test ids.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from pytest_carbon.text import one_line
from tests.faults import assert_clean
from tests.test_pytest_support import REPO, make_project, read_json


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return make_project(pytester, monkeypatch)


def _out(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


ONE = """
def test_one(burn):
    burn(cpu=1.0)
"""


# --- packaging: pytest --help and --markers -------------------------------------------------------


@pytest.mark.fault("packaging")
@pytest.mark.parametrize("flag", ["--help", "--markers"])
def test_pytest_help_and_markers_work_with_the_plugin_installed(tmp_path, flag):
    """A raw '%' in an option's help made `pytest --help` crash in every project of the
    environment (argparse %-formats help texts)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTEST_ADDOPTS", None)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", flag],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert_clean(r.stdout + r.stderr)
    if flag == "--help":
        assert "--carbon-compare-fail=EXPR" in r.stdout
        assert "'energy:10%:0.5J' (both: over 10 % and over 0.5 J)" in " ".join(r.stdout.split())
    else:
        assert "@pytest.mark.carbon_budget(" in r.stdout


def test_every_help_text_survives_argparse_formatting():
    """Every option's help is %-formatted by argparse: each must format cleanly."""
    import argparse

    from pytest_carbon import options

    parser = argparse.ArgumentParser()

    class FakeGroup:
        def addoption(self, *names, **kw):
            parser.add_argument(*names, **kw)

    class FakeParser:
        def getgroup(self, *a, **k):
            return FakeGroup()

        def addini(self, *a, **k):
            pass

    options.add_options(FakeParser())  # type: ignore[arg-type]
    text = parser.format_help()
    assert "energy:10%" in text


# --- bad options, ini values, environment and markers (family "pytest") ---------------------------

BAD_OPTIONS = [
    ("--carbon-budget=5 XB", "5 XB"),
    ("--carbon-budget=-1 J", "-1 J"),
    ("--carbon-budget=nan J", "nan J"),
    ("--carbon-budget=inf J", "inf J"),
    ("--carbon-budget=1e999 J", "1e999 J"),
    ("--carbon-budget=J", "J"),
    ("--carbon-budget=5", "5"),
    ("--carbon-budget=5 mwh", "5 mwh"),
    ("--carbon-budget=", "--carbon-budget"),
    ("--carbon-session-budget=abc", "abc"),
    ("--carbon-session-budget=-5 J", "-5 J"),
    ("--carbon-top=-1", "-1"),
    ("--carbon-top=abc", "abc"),
    ("--carbon-top=1.5", "1.5"),
    ("--carbon-compare-fail=energy", "energy"),
    ("--carbon-compare-fail=energy:abc%", "energy:abc%"),
    ("--carbon-compare-fail=energy:-5%", "energy:-5%"),
    ("--carbon-compare-fail=watts:10%", "watts:10%"),
    ("--carbon-compare-fail=energy:10%:5XB", "5XB"),
    ("--carbon-compare-fail=energy:nan%", "energy:nan%"),
    ("--carbon-compare-fail=energy:10%:10%", "energy:10%:10%"),
    ("--carbon-compare-fail=energy:inf J", "inf J"),
    ("--carbon-json=", "--carbon-json"),
    ("--carbon-save=../x", "../x"),
]


@pytest.mark.fault("pytest")
@pytest.mark.parametrize("arg, needle", BAD_OPTIONS, ids=[a for a, _ in BAD_OPTIONS])
def test_bad_option_is_a_usage_error_naming_the_value(project, arg, needle):
    project.makepyfile(ONE)
    result = project.runpytest(arg)
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert needle in out
    assert_clean(out)


def test_zero_budget_and_huge_top_do_not_traceback(project):
    """Edge values that are not errors: a 0 J budget, an enormous --carbon-top."""
    project.makepyfile(ONE)
    for arg in (
        "--carbon-budget=0 J",
        "--carbon-top=99999999999999999999",
        "--carbon-budget=1e300 J",
    ):
        assert_clean(_out(project.runpytest(arg)))


BAD_INI = [
    ("carbon_budget = 5 XB", "5 XB"),
    ("carbon_budget = nan J", "nan J"),
    ("carbon_session_budget = -3 Wh", "-3 Wh"),
    ("carbon_top = lots", "lots"),
    ("carbon_top = -2", "-2"),
    ("carbon_compare_fail =\n    energy:lots", "energy:lots"),
    ("carbon = maybe", "maybe"),
    ("carbon_gpu_per_worker = perhaps", "perhaps"),
]


@pytest.mark.fault("pytest")
@pytest.mark.parametrize(
    "line, needle", BAD_INI, ids=[x.split(" =")[0] + f"-{i}" for i, (x, _) in enumerate(BAD_INI)]
)
def test_bad_ini_value_is_a_usage_error_naming_it(project, line, needle):
    project.makeini(
        f"[pytest]\ncarbon = true\n{line}\n"
        if not line.startswith("carbon =")
        else f"[pytest]\n{line}\n"
    )
    project.makepyfile(ONE)
    result = project.runpytest()
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert needle in out
    assert_clean(out)


BAD_ENV = [
    ("PYTEST_CARBON_BUDGET", "5 XB"),
    ("PYTEST_CARBON_BUDGET", "nan J"),
    ("PYTEST_CARBON_BUDGET", "five joules"),
    ("PYTEST_CARBON_SESSION_BUDGET", "-1 J"),
    ("PYTEST_CARBON_SESSION_BUDGET", "1 W"),
]


@pytest.mark.fault("pytest")
@pytest.mark.parametrize("var, value", BAD_ENV)
def test_bad_environment_budget_is_a_usage_error_naming_it(project, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    project.makepyfile(ONE)
    result = project.runpytest()
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert value in out and var in out
    assert_clean(out)


BAD_MARKERS = [
    ("carbon_budget(5)", "5"),
    ("carbon_budget(None)", "None"),
    ("carbon_budget(['5 J'])", "['5 J']"),
    ("carbon_budget('5 J', energy='2 J')", "energy given twice"),
    ("carbon_budget('1 g', co2e='2 g')", "co2e given twice"),
    ("carbon_budget(power='5 W')", "power"),
    ("carbon_budget('1 J', '2 J')", "at most one"),
    ("carbon_budget(energy=5)", "5"),
    ("carbon_budget(co2e='5 J')", "5 J"),
    ("carbon_budget(energy='0.3 g')", "0.3 g"),
    ("carbon_budget()", "needs a budget"),
    ("carbon_budget(energy=None)", "None"),
    ("carbon_budget('nan J')", "nan J"),
    ("carbon_budget('-2 J')", "-2 J"),
]


@pytest.mark.fault("pytest")
@pytest.mark.parametrize("mark, needle", BAD_MARKERS, ids=[m for m, _ in BAD_MARKERS])
def test_bad_marker_is_a_usage_error_naming_the_test(project, mark, needle):
    project.makepyfile(
        f"""
        import pytest

        @pytest.mark.{mark}
        def test_marked():
            raise AssertionError("must not run")
        """
    )
    result = project.runpytest("--carbon")
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "test_marked" in out and needle in out
    assert "must not run" not in out
    assert_clean(out)


# --- markers added by a conftest hook (family "pytest") -----------------------------------------

CONFTEST_MARKS = """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if "heavy" in item.name:
            item.add_marker(pytest.mark.carbon_budget({spec!r}))
"""

HEAVY = """
def test_heavy(burn):
    burn(cpu=3.0)

def test_light(burn):
    burn(cpu=3.0)
"""


@pytest.mark.fault("pytest")
def test_budget_marker_added_by_a_conftest_hook_is_honoured(project):
    project.makeconftest(
        (project.path / "conftest.py").read_text() + CONFTEST_MARKS.format(spec="1 J")
    )
    project.makepyfile(HEAVY)
    result = project.runpytest("--carbon")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*carbon budget exceeded: 3.00 J > 1 J*"])
    result.stdout.fnmatch_lines(["FAILED *::test_heavy*"])


@pytest.mark.fault("pytest")
def test_bad_marker_added_by_a_conftest_hook_is_a_usage_error(project):
    project.makeconftest(
        (project.path / "conftest.py").read_text() + CONFTEST_MARKS.format(spec="5 XB")
    )
    project.makepyfile(HEAVY)
    result = project.runpytest("--carbon")
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "test_heavy: carbon_budget('5 XB')" in out
    assert_clean(out)


@pytest.mark.fault("pytest")
def test_budget_marker_added_by_a_conftest_hook_under_xdist(project):
    pytest.importorskip("xdist")
    project.makeconftest(
        (project.path / "conftest.py").read_text() + CONFTEST_MARKS.format(spec="1 J")
    )
    project.makepyfile(HEAVY)
    result = project.runpytest_subprocess("-n", "2", "--carbon")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_heavy*"])
    assert_clean(_out(result))


@pytest.mark.fault("pytest")
def test_bad_marker_added_by_a_conftest_hook_under_xdist(project):
    pytest.importorskip("xdist")
    project.makeconftest(
        (project.path / "conftest.py").read_text() + CONFTEST_MARKS.format(spec="5 XB")
    )
    project.makepyfile(HEAVY)
    result = project.runpytest_subprocess("-n", "2", "--carbon")
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "carbon_budget('5 XB')" in out
    assert_clean(out)


# --- settings from pytest's rootdir (family "settings") -----------------------------------------


@pytest.mark.fault("settings")
def test_settings_come_from_the_rootdir_not_the_cwd(pytester, monkeypatch):
    """`cd .. && pytest proj` must use proj's [tool.carbonlab], as `cd proj && pytest` does.
    Real meters (no scripted conftest): the plugin resolves settings itself."""
    for var in ("CARBONLAB_ZONE", "CARBONLAB_INTENSITY", "CARBONLAB_PUE", "PYTEST_CARBON_BUDGET"):
        monkeypatch.delenv(var, raising=False)
    proj = pytester.mkdir("proj")
    (proj / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\n\n[tool.carbonlab]\nzone = "FR"\n'
    )
    (proj / "test_p.py").write_text("def test_p():\n    pass\n")
    result = pytester.runpytest("proj", "--carbon")
    assert result.ret == 0, _out(result)
    result.stdout.fnmatch_lines(["carbon: *; zone FR *"])
    assert_clean(_out(result))


# --- corrupt baselines (family "baselines") ---------------------------------------------------------

SCHEMA_RUN = "carbonlab.pytest-run/1"


def _doc(**over) -> dict:
    doc = {
        "schema": SCHEMA_RUN,
        "started_at": "2026-11-21T10:00:00Z",
        "environment": {"machine_id": "m", "methods": {"cpu": ["cpu-time-model"]}},
        "tests": [
            {
                "nodeid": "test_x.py::test_one",
                "call": {"energy_j": 1.0, "co2e_g": 1e-4, "below_resolution": False},
            }
        ],
        "session": {"measurement": {"energy_j": 1.0}},
    }
    doc.update(over)
    return doc


def _entry(**call) -> dict:
    return {"nodeid": "test_x.py::test_one", "call": {"energy_j": 1.0, **call}}


CORRUPT: dict[str, bytes | None] = {
    "empty": b"",
    "truncated": json.dumps(_doc()).encode()[:40],
    "list": b"[1, 2, 3]",
    "string": b'"a run"',
    "null": b"null",
    "no-schema": json.dumps({"tests": []}).encode(),
    "tests-int": json.dumps(_doc(tests=5)).encode(),
    "tests-dict": json.dumps(_doc(tests={"a": 1})).encode(),
    "entry-string": json.dumps(_doc(tests=["test_x.py::test_one"])).encode(),
    "entry-no-nodeid": json.dumps(_doc(tests=[{"call": {"energy_j": 1.0}}])).encode(),
    "nodeid-int": json.dumps(_doc(tests=[{"nodeid": 5, "call": {"energy_j": 1.0}}])).encode(),
    "call-list": json.dumps(_doc(tests=[{"nodeid": "t", "call": [1]}])).encode(),
    "energy-string": json.dumps(_doc(tests=[_entry(energy_j="abc")])).encode(),
    "energy-negative": json.dumps(_doc(tests=[_entry(energy_j=-1.0)])).encode(),
    "energy-bool": json.dumps(_doc(tests=[_entry(energy_j=True)])).encode(),
    "energy-nan": json.dumps(_doc(tests=[_entry(energy_j=float("nan"))])).encode(),
    "energy-infinity": json.dumps(_doc(tests=[_entry(energy_j=float("inf"))])).encode(),
    "energy-overflow": json.dumps(_doc(tests=[_entry()]))
    .replace('"energy_j": 1.0', '"energy_j": 1e999')
    .encode(),
    "co2e-string": json.dumps(_doc(tests=[_entry(co2e_g="lots")])).encode(),
    "below-resolution-string": json.dumps(_doc(tests=[_entry(below_resolution="no")])).encode(),
    "environment-list": json.dumps(_doc(environment=[])).encode(),
    "methods-string": json.dumps(_doc(environment={"machine_id": "m", "methods": "cpu"})).encode(),
    "machine-id-dict": json.dumps(_doc(environment={"machine_id": {"a": 1}})).encode(),
    "session-string": json.dumps(_doc(session="x")).encode(),
    "session-energy-string": json.dumps(
        _doc(session={"measurement": {"energy_j": "1 J"}})
    ).encode(),
    "non-utf8": b"\xff\xfe" + json.dumps(_doc()).encode("utf-16-le"),
    "latin1-bytes": json.dumps(_doc()).encode().replace(b"test_one", b"test_\xe9"),
    "directory": None,
}


def _write_corrupt(path, kind: str) -> None:
    data = CORRUPT[kind]
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)


@pytest.mark.fault("baselines")
@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_baseline_in_pytest_names_the_file_and_finishes_the_run(project, kind):
    project.makepyfile(test_x=ONE)
    bad = project.path / "base.json"
    _write_corrupt(bad, kind)
    result = project.runpytest(f"--carbon-compare={bad}")
    out = _out(result)
    assert_clean(out)
    assert result.ret == pytest.ExitCode.OK, out
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*carbon: cannot compare: {bad}: *"])


@pytest.mark.fault("baselines")
@pytest.mark.parametrize("kind", ["tests-int", "energy-nan", "directory", "empty"])
def test_corrupt_baseline_with_compare_fail_fails_the_run_with_one_line(project, kind):
    """Gating on regressions against a baseline that cannot be read must not pass silently."""
    project.makepyfile(test_x=ONE)
    bad = project.path / "base.json"
    _write_corrupt(bad, kind)
    result = project.runpytest(
        f"--carbon-compare={bad}", "--carbon-compare-fail=energy:10%", "--carbon-json=c.json"
    )
    out = _out(result)
    comparison = read_json(project.path / "c.json")["comparison"]
    assert comparison["error"].startswith(f"cannot compare: {bad}: ")
    assert comparison["regressions"] is None
    assert_clean(out)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"carbon: --carbon-compare-fail not checked: cannot compare: {bad}: *"]
    )


@pytest.mark.fault("baselines")
def test_corrupt_latest_saved_run_is_reported_and_the_run_finishes(project):
    project.makepyfile(test_x=ONE)
    assert project.runpytest("--carbon-save=base").ret == 0
    (saved,) = (project.path / ".carbonlab" / "pytest").glob("*/*.json")
    saved.write_text('{"schema": "carbonlab.pytest-run/1", "tests": [42]}')
    result = project.runpytest("--carbon-compare")
    out = _out(result)
    assert_clean(out)
    assert result.ret == 0, out
    result.stdout.fnmatch_lines([f"*cannot compare: {saved}: *"])


@pytest.mark.fault("baselines")
@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_baseline_in_carbonlab_compare_is_exit_2_and_one_line(tmp_path, capsys, kind):
    from carbonlab.compare import EXIT_USAGE, compare_main

    bad = tmp_path / "base.json"
    _write_corrupt(bad, kind)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_doc()))
    for argv in ([str(bad), str(good)], [str(good), str(bad)]):
        assert compare_main(argv) == EXIT_USAGE
        cap = capsys.readouterr()
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1, cap.err
        assert lines[0].startswith("carbonlab compare: error: ") and str(bad) in lines[0]
        assert_clean(cap.out + cap.err)


def test_a_valid_baseline_still_loads():
    from carbonlab.compare import run_from_document

    run = run_from_document(_doc(), "x")
    assert run.tests["test_x.py::test_one"].energy_j == 1.0
    entry = {"nodeid": "test_x.py::test_two", "call": None}  # skipped test: no call
    assert "test_x.py::test_two" not in run_from_document(_doc(tests=[entry]), "x").tests


# --- outputs: --carbon-json, --carbon-save and the step summary (family "outputs") -------------


@pytest.mark.fault("outputs")
@pytest.mark.parametrize("where", ["parent-is-a-file", "path-is-a-directory", "deep-under-a-file"])
def test_unwritable_carbon_json_is_a_usage_error_before_tests_run(project, where):
    project.makepyfile(
        """
        def test_one():
            raise AssertionError("must not run")
        """
    )
    (project.path / "afile").write_text("x")
    (project.path / "adir").mkdir()
    path = {
        "parent-is-a-file": "afile/c.json",
        "path-is-a-directory": "adir",
        "deep-under-a-file": "afile/a/b/c.json",
    }[where]
    result = project.runpytest(f"--carbon-json={path}")
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert path in out and "must not run" not in out
    assert_clean(out)


def test_carbon_json_creates_missing_directories(project):
    project.makepyfile(ONE)
    result = project.runpytest("--carbon-json=build/out/c.json")
    assert result.ret == 0
    assert read_json(project.path / "build" / "out" / "c.json")["tests"]


@pytest.mark.fault("outputs")
def test_carbon_json_that_fails_at_the_end_fails_the_run_and_still_saves(project):
    """The directory disappears during the run: the run says so, exits non-zero, and
    --carbon-save still happens."""
    project.makepyfile(
        """
        import os, shutil

        def test_breaks_output_dir(burn):
            shutil.rmtree("out")
            open("out", "w").close()  # a file where the directory was
        """
    )
    (project.path / "out").mkdir()
    result = project.runpytest("--carbon-json=out/c.json", "--carbon-save=base")
    out = _out(result)
    assert_clean(out)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["carbon: could not write the carbon JSON out/c.json: *"])
    assert list((project.path / ".carbonlab" / "pytest").glob("*/0001_base.json"))


@pytest.mark.fault("outputs")
def test_unwritable_step_summary_fails_the_run_and_still_saves(project, monkeypatch):
    project.makepyfile(ONE)
    (project.path / "summary").mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project.path / "summary"))
    result = project.runpytest("--carbon-save=base", "--carbon-json=c.json")
    out = _out(result)
    assert_clean(out)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    result.stdout.fnmatch_lines(["carbon: could not write the GitHub step summary *summary*"])
    assert list((project.path / ".carbonlab" / "pytest").glob("*/0001_base.json"))
    assert (project.path / "c.json").is_file()


@pytest.mark.fault("outputs")
@pytest.mark.parametrize("storage", ["afile", "afile/deeper"])
def test_unwritable_storage_with_carbon_save_is_a_usage_error_before_tests_run(project, storage):
    project.makepyfile(
        """
        def test_one():
            raise AssertionError("must not run")
        """
    )
    (project.path / "afile").write_text("x")
    result = project.runpytest(f"--carbon-storage={storage}", "--carbon-save=base")
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "--carbon-save" in out and "afile" in out and "must not run" not in out
    assert_clean(out)


@pytest.mark.fault("outputs")
def test_a_full_step_summary_gets_nothing_more_and_a_note(project, monkeypatch):
    from pytest_carbon.report import SUMMARY_LIMIT

    summary = project.path / "summary.md"
    summary.write_text("x" * SUMMARY_LIMIT)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.makepyfile(ONE)
    result = project.runpytest("--carbon")
    assert result.ret == 0, _out(result)
    assert summary.stat().st_size == SUMMARY_LIMIT
    result.stdout.fnmatch_lines(["note: no carbon step summary: earlier steps filled *"])


@pytest.mark.fault("outputs")
def test_step_summary_counts_what_earlier_steps_wrote(project, monkeypatch):
    from pytest_carbon.report import SUMMARY_LIMIT

    summary = project.path / "summary.md"
    earlier = "x" * (SUMMARY_LIMIT - 3000) + "\n"
    summary.write_text(earlier)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(300))
        def test_many(burn, i):
            burn(cpu=0.01 * (i + 1))
        """
    )
    result = project.runpytest("--carbon")
    assert result.ret == 0, _out(result)
    text = summary.read_text()
    assert text.startswith(earlier)
    assert len(text.encode()) <= SUMMARY_LIMIT
    added = text[len(earlier) :]
    assert "carbonlab" in added and "more rows not shown" in added


# --- injection: hostile test ids in Markdown, workflow commands and the terminal -------------------

HOSTILE_IDS = [
    "a`b**bold**`c",
    "x|y|z",
    "[link](https://evil.example)",
    "<img src=x onerror=alert(1)>",
    "nl\n::error::injected",
    "cr\r::error::injected",
    "pct%0A::error::injected",
    "_under_ *star* # hash",
]


def _hostile_project(project, ident: str):
    project.makeini(
        "[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n"
    )
    project.makepyfile(
        test_h=f"""
        import pytest

        @pytest.mark.parametrize("x", [1], ids=[{ident!r}])
        def test_h(burn, x):
            burn(cpu=9.0)
        """
    )


def _workflow_command_lines(text: str) -> list[str]:
    """Lines GitHub's runner would take as workflow commands."""
    return [ln for ln in text.replace("\r", "\n").split("\n") if ln.lstrip().startswith("::")]


@pytest.mark.fault("injection")
@pytest.mark.parametrize("ident", HOSTILE_IDS)
def test_hostile_test_id_cannot_inject_a_workflow_command(project, monkeypatch, ident):
    _hostile_project(project, ident)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    # --tb=no -rN: pytest's own failure headers and summary print ids raw; only ours are checked
    result = project.runpytest("--carbon-budget=1 J", "--carbon-top=5", "--tb=no", "-rN")
    out = result.stdout.str()
    assert_clean(out)
    for line in _workflow_command_lines(out):
        assert line.startswith(("::error file=", "::warning file=", "::error title=")), line
        assert "injected" not in line.split("::", 2)[1]  # nothing in the command's name/properties
    # exactly one annotation for the one test over budget
    assert sum(1 for ln in _workflow_command_lines(out) if ln.startswith("::error file=")) == 1
    # the top list shows the id on one line, control characters escaped
    top = [ln for ln in out.splitlines() if "test_h[" in ln and " call " in ln]
    assert top, out
    if "\n" in ident:
        assert "\\n::error::injected" in top[0]


@pytest.mark.fault("injection")
@pytest.mark.parametrize("ident", HOSTILE_IDS)
def test_hostile_test_id_cannot_break_the_step_summary(project, monkeypatch, ident):
    _hostile_project(project, ident)
    summary = project.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.runpytest("--carbon")
    text = summary.read_text()
    top = text[text.index("### Top") :]  # the per-test table (the per-file one comes first)
    rows = [ln for ln in top.splitlines() if ln.startswith("| ") and "mgCO2e" in ln]
    assert len(rows) == 1, text  # one table row: no newline broke out of it
    row = rows[0]
    header = next(ln for ln in text.splitlines() if ln.startswith("| call | CO2e"))
    cells = re.split(r"(?<!\\)\|", row)
    assert len(cells) == len(re.split(r"(?<!\\)\|", header)), row  # no pipe added a column
    cell = cells[4].strip()
    # one code span holding the whole id: nothing inside it renders as a link, HTML or emphasis
    fence = re.match("`+", cell).group()
    assert cell.endswith(fence) and len(cell) > 2 * len(fence)
    inner = cell[len(fence) : -len(fence)]
    assert all(len(run) != len(fence) for run in re.findall("`+", inner))
    shown = inner.strip(" ") if inner.startswith(" ") and inner.endswith(" ") else inner
    assert shown.replace("\\|", "|") == one_line(f"test_h.py::test_h[{ident}]")
    assert "\r" not in text


@pytest.mark.fault("injection")
def test_hostile_file_name_in_annotations_and_top_list(project, monkeypatch):
    """A test file whose name holds a newline and a workflow command."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    name = "test_evil\n::error::pwned.py"
    (project.path / name).write_text("def test_e(burn):\n    burn(cpu=9.0)\n")
    result = project.runpytest("--carbon-budget=1 J", "--carbon-top=3", "--tb=no", "-rN")
    out = result.stdout.str()
    assert_clean(out)
    commands = _workflow_command_lines(out)
    assert commands == [
        next(
            ln
            for ln in commands
            if ln.startswith("::error file=test_evil%0A%3A%3Aerror%3A%3Apwned.py,")
        )
    ], out
    top = [ln for ln in out.splitlines() if " call " in ln and "test_e" in ln]
    assert top and "test_evil\\n::error::pwned.py" in top[0]


@pytest.mark.fault("injection")
def test_hostile_test_id_in_a_bad_marker_error_stays_on_one_line(project):
    _hostile_project(project, "nl\n::error::injected")
    project.makepyfile(
        test_m="""
        import pytest

        @pytest.mark.carbon_budget("5 XB")
        @pytest.mark.parametrize("x", [1], ids=["nl\\n::error::injected"])
        def test_m(x):
            pass
        """
    )
    result = project.runpytest("--carbon")
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert_clean(out)
    assert "test_m[nl\\n::error::injected]: carbon_budget('5 XB')" in out
    assert not _workflow_command_lines(out), out


# --- packaging: pytest/pluggy too old for the plugin -----------------------------------------------


@pytest.mark.fault("packaging")
@pytest.mark.parametrize(
    "versions", [("7.0.1", "1.2.0"), ("8.3.0", "1.0.0"), ("6.2.5", "0.13.1")], ids=str
)
def test_a_too_old_pytest_or_pluggy_is_one_warning_and_an_unmeasured_run(
    project, monkeypatch, versions
):
    from pytest_carbon import plugin

    monkeypatch.setattr(plugin, "_versions", lambda: versions)
    project.makepyfile(test_x=ONE)
    r = project.runpytest_inprocess("--carbon-budget=5J", "-p", "no:cacheprovider")
    out = _out(r)
    assert r.ret == 0, out
    assert_clean(out)
    assert (
        f"PytestConfigWarning: pytest-carbon needs pytest>=7.4 and pluggy>=1.2 (found pytest "
        f"{versions[0]}, pluggy {versions[1]}): carbon measurement is off" in out
    )
    assert out.count("pytest-carbon needs") == 1
    assert not re.search(r"^carbon: ", out, re.M)  # no session: no header line, no summary
    monkeypatch.setattr(plugin, "_versions", lambda: ("8.3.0", "1.5.0"))
    ok = project.runpytest_inprocess("--carbon-budget=5J", "-p", "no:cacheprovider")
    assert re.search(r"^carbon: ", _out(ok), re.M)  # what the guard turned off


@pytest.mark.fault("packaging")
def test_a_pluggy_without_hookimplmarker_is_judged_by_its_metadata(monkeypatch):
    # The new-enough check reads HookimplMarker's code; a pluggy without it (vendored, rewritten)
    # must not raise while the plugin module is imported (every pytest run): its version decides.
    import pluggy

    from pytest_carbon import plugin

    monkeypatch.delattr(pluggy, "HookimplMarker")
    monkeypatch.setattr(plugin, "_pluggy_metadata_version", lambda: "1.0.0")
    assert plugin._versions() == (pytest.__version__, "1.0.0")
    assert "pluggy>=1.2" in (plugin.version_problem() or "")


def test_the_installed_pytest_and_pluggy_are_supported():
    from pytest_carbon import plugin

    assert plugin.version_problem() is None
    assert plugin._release("8.3.0rc1") >= plugin.MIN_PYTEST
    assert plugin._release("1.1.9") < plugin.MIN_PLUGGY
