"""Baselines: --carbon-save, --carbon-compare, --carbon-compare-fail, and `carbonlab compare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbonlab.compare import (
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    CompareError,
    compare_main,
    parse_fail_spec,
    resolve_run,
)
from tests.faults import assert_clean
from tests.test_pytest_support import make_project, read_json


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return make_project(pytester, monkeypatch)


def suite(a: float, b: float, c: float = 0.001) -> str:
    return f"""
def test_a(burn):
    burn(cpu={a})

def test_b(burn):
    burn(cpu={b})

def test_tiny(burn):
    burn(cpu={c})
"""


def saved(project: pytest.Pytester) -> list[Path]:
    return sorted((project.path / ".carbonlab" / "pytest").glob("*/*.json"))


def test_save_numbers_runs_per_machine(project):
    project.makepyfile(test_s=suite(10, 20))
    result = project.runpytest("--carbon-save=main")
    result.stdout.fnmatch_lines(
        ["carbon baseline saved: */.carbonlab/pytest/*-1xFake_GPU/0001_main.json"]
    )
    project.runpytest("--carbon-save")  # unnamed: commit or timestamp
    files = saved(project)
    assert [f.name[:5] for f in files] == ["0001_", "0002_"]
    doc = read_json(files[0])
    assert doc["schema"] == "carbonlab.pytest-run/2"
    assert files[0].parent.name == doc["environment"]["machine_id"]
    assert {t["nodeid"]: t["call"]["energy_j"] for t in doc["tests"]} == pytest.approx(
        {"test_s.py::test_a": 10.0, "test_s.py::test_b": 20.0, "test_s.py::test_tiny": 0.001}
    )


def test_storage_option_and_bad_names(project):
    project.makepyfile(test_s=suite(10, 20))
    project.runpytest("--carbon-storage=baselines", "--carbon-save=x")
    assert list((project.path / "baselines" / "pytest").glob("*/0001_x.json"))
    result = project.runpytest("--carbon-save=../escape")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--carbon-save name '../escape': must not start with a dot*"])


def test_compare_shows_changes_and_does_not_fail_without_thresholds(project):
    project.makepyfile(test_s=suite(10, 20))
    project.runpytest("--carbon-save=base")
    project.makepyfile(test_s=suite(13, 20))
    result = project.runpytest("--carbon-compare")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*- carbon: comparison -*",
            "compared with */0001_base.json",
            "*baseline        now    change  test",
            "      10 J       13 J   +30.0 %  test_s.py::test_a",
            "      20 J       20 J    +0.0 %  test_s.py::test_b",
        ]
    )


def test_compare_fail_with_percentage_and_floor(project):
    project.makepyfile(test_s=suite(10, 20, 0.001))
    project.runpytest("--carbon-save=base")
    project.makepyfile(test_s=suite(13, 20.5, 0.01))  # +30 % / +3 J; +2.5 % ; +900 % of 1 mJ
    result = project.runpytest("--carbon-compare-fail=energy:10%:0.5J")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "carbon: energy regressed in 1 test(s):",
            "  test_s.py::test_a: energy 10 J -> 13 J (+30.0 %, +3 J) beyond 10 % and 500 mJ",
            "*= 1 failed, 3 passed in *",
        ]
    )
    result.stdout.no_fnmatch_line("*test_tiny: energy*")  # +900 %, but 9 mJ: under the floor
    # percentage alone: the tiny test fails too
    result = project.runpytest("--carbon-compare=base", "--carbon-compare-fail=energy:10%")
    result.stdout.fnmatch_lines(["carbon: energy regressed in 2 test(s):"])
    # a floor alone
    result = project.runpytest("--carbon-compare-fail=energy:5J")
    assert result.ret == pytest.ExitCode.OK


def test_compare_fail_from_ini(project):
    project.makepyfile(test_s=suite(10, 20))
    project.runpytest("--carbon-save")
    project.makepyfile(test_s=suite(20, 20))
    project.makeini("[pytest]\ncarbon = true\ncarbon_compare_fail =\n    energy:10%:1J\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_compare_fail_without_a_baseline_is_a_note_not_an_error(project):
    """A new CI runner has no baseline for its machine: say so, don't fail the build."""
    project.makepyfile(test_s=suite(10, 20))
    result = project.runpytest("--carbon-compare-fail=energy:10%")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["note: nothing to compare with: no saved runs under *"])


@pytest.mark.fault("baselines")
def test_naming_a_missing_baseline_is_a_usage_error(project):
    project.makepyfile(test_s=suite(10, 20))
    project.runpytest("--carbon-save=base")
    result = project.runpytest("--carbon-compare=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*carbon: --carbon-compare: no saved run 'nosuch' under *; latest: 0001_base"]
    )
    assert_clean(result.stdout.str() + result.stderr.str())


def test_compare_with_a_path_from_another_machine_warns(project, tmp_path):
    project.makepyfile(test_s=suite(10, 20))
    project.runpytest("--carbon-json=other.json")
    doc = read_json(project.path / "other.json")
    doc["environment"]["machine_id"] = "Linux-aarch64-Other-noGPU"
    (project.path / "other.json").write_text(json.dumps(doc))
    result = project.runpytest("--carbon-compare=other.json")
    result.stdout.fnmatch_lines(["note: the runs come from different machines (*)*"])


def test_parse_fail_spec():
    assert parse_fail_spec("energy:10%") == parse_fail_spec(" energy:10% ")
    s = parse_fail_spec("co2e:5%:0.1g")
    assert (s.field, s.pct, s.floor) == ("co2e", 5.0, 0.1)
    assert parse_fail_spec("energy:0.5 kJ").floor == 500.0
    for bad in (
        "energy",
        "energy:",
        "power:10%",
        "energy:10",
        "energy:ten%",
        "energy:1J:10%",
        "energy:-5%",
    ):
        with pytest.raises(CompareError):
            parse_fail_spec(bad)
    with pytest.raises(CompareError, match="did you mean 'mJ' or 'MJ'"):
        parse_fail_spec("energy:10%:5mj")


def _run_doc(energies: dict[str, float], machine: str = "m1") -> dict:
    return {
        "schema": "carbonlab.pytest-run/1",
        "started_at": "2026-11-21T10:00:00Z",
        "environment": {"machine_id": machine, "methods": {"cpu": ["cpu-time-model"]}},
        "tests": [
            {"nodeid": n, "call": {"energy_j": e, "co2e_g": e * 1e-4, "below_resolution": False}}
            for n, e in energies.items()
        ],
        "session": {"measurement": {"energy_j": sum(energies.values())}},
    }


def _store(root: Path, machine: str, name: str, energies: dict[str, float]) -> Path:
    d = root / ".carbonlab" / "pytest" / machine
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(json.dumps(_run_doc(energies, machine)))
    return p


def test_compare_main_exit_codes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _store(tmp_path, "m1", "0001_main.json", {"t::a": 10.0, "t::b": 5.0})
    _store(tmp_path, "m1", "0002_pr.json", {"t::a": 12.0, "t::b": 5.0, "t::new": 1.0})
    assert compare_main(["main", "pr"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "+20.0 %  t::a" in out and "new  t::new" in out
    assert compare_main(["1", "2", "--fail=energy:10%"]) == EXIT_REGRESSION
    assert "t::a: energy 10 J -> 12 J (+20.0 %, +2 J) beyond 10 %" in capsys.readouterr().out
    assert compare_main(["0001", "0002", "--fail=energy:10%:5J"]) == EXIT_OK
    assert compare_main(["main", "pr", "--fail=energy:lots"]) == EXIT_USAGE
    assert "carbonlab compare: error:" in capsys.readouterr().err
    assert compare_main(["main", "nosuch"]) == EXIT_USAGE
    assert compare_main(["main"]) == EXIT_USAGE  # argparse: current is required
    assert compare_main(["main", "pr", "--json", "--fail=energy:10%"]) == EXIT_REGRESSION
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] and data["rows"][0]["nodeid"] == "t::a"


def test_compare_main_with_paths_and_names_across_machines(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _store(tmp_path, "m1", "0001_main.json", {"t::a": 10.0})
    b = _store(tmp_path, "m2", "0001_main.json", {"t::a": 10.0})
    with pytest.raises(CompareError, match="several machines"):
        resolve_run("main", tmp_path / ".carbonlab")
    assert compare_main([str(a), str(b)]) == EXIT_OK
    assert "different machines (m1 vs m2)" in capsys.readouterr().out
    not_a_run = tmp_path / "x.json"
    not_a_run.write_text('{"schema": "something/1"}')
    assert compare_main([str(not_a_run), str(b)]) == EXIT_USAGE
    assert "not a pytest carbon run" in capsys.readouterr().err


def test_below_resolution_tests_never_fail_a_compare(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _store(tmp_path, "m", "0001_a.json", {"t::noisy": 1.0})
    doc = _run_doc({"t::noisy": 100.0}, "m")
    doc["tests"][0]["call"]["below_resolution"] = True
    (tmp_path / ".carbonlab" / "pytest" / "m" / "0002_b.json").write_text(json.dumps(doc))
    assert compare_main(["a", "b", "--fail=energy:10%"]) == EXIT_OK
    assert "(below resolution)" in capsys.readouterr().out


def test_carbonlab_cli_compare_subcommand(tmp_path, monkeypatch):
    """The `carbonlab compare` subcommand is compare_main (wired by the CLI)."""
    import subprocess
    import sys

    _store(tmp_path, "m1", "0001_main.json", {"t::a": 10.0})
    _store(tmp_path, "m1", "0002_pr.json", {"t::a": 20.0})
    proc = subprocess.run(
        [sys.executable, "-m", "carbonlab.cli", "compare", "main", "pr", "--fail=energy:10%"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == EXIT_REGRESSION, proc.stderr
