"""What the plugin shows and writes: --carbon-top, --carbon-json, JUnit XML, GitHub Actions."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.test_pytest_support import make_project, read_json


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return make_project(pytester, monkeypatch)


SUITE = """
import pytest

@pytest.fixture
def heavy_setup(burn):
    burn(cpu=40.0)
    yield
    burn(ram=3.0)

def test_gpu(burn):
    burn(gpu=6.10, cpu=1.02, ram=0.19)

def test_small(burn):
    burn(cpu=0.5)

def test_with_fixture(heavy_setup, burn):
    burn(cpu=2.0)

@pytest.mark.carbon_budget("1 J")
def test_over(burn):
    burn(cpu=3.5)

@pytest.mark.carbon_skip
def test_not_measured(burn):
    burn(cpu=1000.0)
"""


def test_top_table_lists_phases_like_durations(project):
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest("--carbon-top=4")
    result.stdout.fnmatch_lines(
        [
            "*- carbon: top 4 by energy -*",
            "      40 J *  setup    test_suite.py::test_with_fixture",
            "    7.31 J *  call     test_suite.py::test_gpu",
            "     3.5 J *  call     test_suite.py::test_over  [[]over budget 1 J]",
            "       3 J *  teardown test_suite.py::test_with_fixture",
        ]
    )
    result.stdout.no_fnmatch_line("*test_not_measured*")
    all_rows = project.runpytest("--carbon-top=0")
    all_rows.stdout.fnmatch_lines(
        ["*- carbon: all tests by energy -*", "*500 mJ *call*::test_small"]
    )


def test_session_summary_lines(project):
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest("--carbon")
    result.stdout.fnmatch_lines(
        [
            "*= carbon =*",
            "session: 1056 J, * in * s (gpu 6.1 J nvml-energy-counter, cpu 1047 J "
            "cpu-time-model, ram 3.19 J ram-model); zone World * gCO2e/kWh (Ember *)",
            "4 tests measured: call 13.3 J, setup 40 J, teardown 3 J; 1 over budget",
        ]
    )


def test_json_document(project):
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest("--carbon-json=out/carbon.json", "--carbon-budget=10 J")
    result.stdout.fnmatch_lines(["carbon JSON: out/carbon.json"])
    doc = read_json(project.path / "out" / "carbon.json")
    assert doc["schema"] == "carbonlab.pytest-run/2"
    assert doc["budgets"] == {
        "test": "10 J",
        "test_source": "command line (--carbon-budget)",
        "session": None,
    }
    env = doc["environment"]
    assert env["machine_id"].endswith("-1xFake_GPU")
    assert env["methods"] == {
        "gpu": ["nvml-energy-counter"],
        "cpu": ["cpu-time-model"],
        "ram": ["ram-model"],
    }
    assert doc["intensity"]["zone"] == "World" and doc["intensity"]["source"].startswith("Ember")
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert set(tests) == {"test_gpu", "test_small", "test_with_fixture", "test_over"}
    gpu = tests["test_gpu"]
    call = gpu["call"]
    assert call["schema"] == "carbonlab.measurement/1"
    assert call["energy_j"] == pytest.approx(7.31)
    assert [(c["kind"], c["energy_j"], c["method"], c["scope"]) for c in call["components"]] == [
        ("gpu", 6.1, "nvml-energy-counter", "device"),
        ("cpu", 1.02, "cpu-time-model", "process"),
        ("ram", 0.19, "ram-model", "process"),
    ]
    assert call["co2e_g"] == pytest.approx(7.31 / 3.6e6 * doc["intensity"]["gco2e_per_kwh"])
    assert call["started_at"].endswith("Z")
    assert gpu["budget"] == {"limit": "10 J", "status": "ok", "failed_test": False}
    assert gpu["location"] == {"path": "test_suite.py", "line": 9}
    assert gpu["outcome"] == "passed" and gpu["attempts"] == 1
    fixture = tests["test_with_fixture"]
    assert (fixture["setup"]["energy_j"], fixture["call"]["energy_j"]) == (40.0, 2.0)
    assert fixture["teardown"]["energy_j"] == 3.0
    over = tests["test_over"]
    assert over["budget"] == {"limit": "1 J", "status": "over", "failed_test": True}
    assert over["outcome"] == "failed"
    session = doc["session"]
    assert session["measurement"]["energy_j"] == pytest.approx(
        1000 + 6.1 + 1.02 + 0.19 + 0.5 + 45 + 3.5
    )
    assert (session["tests"], session["measured"], session["over_budget"]) == (4, 4, 1)
    assert session["sums"]["call_j"] == pytest.approx(7.31 + 0.5 + 2 + 3.5)


def test_json_path_from_ini_is_relative_to_the_ini_file(project):
    project.makepyfile(test_suite=SUITE)
    project.makeini("[pytest]\ncarbon = true\ncarbon_json = reports/c.json\n")
    sub = project.mkdir("sub")
    project.runpytest("--rootdir", str(project.path), str(project.path), "-c", "tox.ini")
    assert (project.path / "reports" / "c.json").is_file()
    assert not (sub / "reports").exists()


def test_json_update_hook(project):
    project.makepyfile(test_suite=SUITE)
    project.makeconftest(
        project.path.joinpath("conftest.py").read_text()
        + "\n\ndef pytest_carbon_update_json(config, document):\n"
        + "    document['ci_run'] = 'abc'\n"
    )
    project.runpytest("--carbon-json=c.json")
    assert read_json(project.path / "c.json")["ci_run"] == "abc"


def test_junit_properties(project):
    project.makepyfile(test_suite=SUITE)
    project.runpytest("--carbon-budget=10 J", "--junitxml=junit.xml", "-o", "junit_family=xunit2")
    root = ET.parse(project.path / "junit.xml").getroot()
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }
    gpu = props["test_gpu"]
    assert float(gpu["carbon_energy_j"]) == pytest.approx(7.31)
    assert (gpu["carbon_gpu_j"], gpu["carbon_cpu_j"], gpu["carbon_ram_j"]) == (
        "6.1",
        "1.02",
        "0.19",
    )
    assert gpu["carbon_budget"] == "10 J" and gpu["carbon_budget_status"] == "ok"
    assert gpu["carbon_attribution"] == "exclusive" and gpu["carbon_below_resolution"] == "False"
    assert props["test_with_fixture"]["carbon_setup_j"] == "40.0"
    assert props["test_over"]["carbon_budget_failed"] == "True"
    assert props["test_not_measured"] == {}


def test_github_step_summary_and_annotations(project, monkeypatch):
    summary = project.path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(project.path.parent))
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest("--carbon-budget=5 J", "--carbon-session-budget=100 J")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = summary.read_text()
    assert text.startswith("# earlier step\n## carbonlab: energy of the test run")  # appended
    assert "**2 test(s) over their carbon budget**" in text
    assert "**carbon session budget exceeded: 1056 J > 100 J" in text
    assert "| call | CO2e | setup + teardown | test | notes |" in text
    assert "| 7.31 J |" in text and "`test_suite.py::test_gpu`" in text
    where = f"{project.path.name}/test_suite.py"
    result.stdout.fnmatch_lines(
        [
            f"::error file={where},line=9,title=carbon budget::test_suite.py::test_gpu: carbon "
            "budget exceeded: 7.31 J > 5 J",
            f"::error file={where},line=18,title=carbon budget::*test_over: *3.5 J > 1 J*",
            "::error title=carbon session budget::carbon session budget exceeded: 1056 J > 100 J*",
        ],
        consecutive=False,
    )


def test_no_annotations_outside_github_actions(project):
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest("--carbon-budget=5 J")
    result.stdout.no_fnmatch_line("::error*")


def test_step_summary_stays_below_githubs_limit(project, monkeypatch):
    # GitHub's cap is 1 MiB; the same logic with 8000 bytes is less work. Set inside each run by a
    # plugin of the project's: pytester takes the modules a run imported out of sys.modules after
    # it, so a module object patched here may not be the one the next run imports.
    project.makepyfile(
        small_summary="import pytest_carbon.report\npytest_carbon.report.SUMMARY_LIMIT = 8000\n"
    )
    project.syspathinsert()
    summary = project.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.parametrize("i", range(300))
        def test_param(i, burn):
            burn(cpu=1.0 + i)
        """
    )
    project.runpytest("-p", "small_summary", "--carbon")
    text = summary.read_text()
    assert "<details>" not in text  # by default: the top rows and the totals, one row per test
    assert text.count("test_param[") == 20 and "### By file" in text
    summary.unlink()
    project.runpytest("-p", "small_summary", "--carbon", "--carbon-top=0")
    text = summary.read_text()
    assert len(text.encode()) <= 8000
    assert "### Top 20 by energy" in text
    assert "more rows not shown: GitHub caps a step summary at 1 MiB" in text
    assert text.rstrip().endswith("</details>")


def test_advice_line_from_a_live_forecast(project, monkeypatch, tmp_path):
    """With a live provider holding a forecast, the summary says when the session would emit less."""
    from carbonlab import config
    from carbonlab.footprint import providers
    from tests.test_providers import T0, ApiServer, Clock, uk_server

    server = uk_server(ApiServer().start())
    try:
        monkeypatch.setenv("CARBONLAB_INTENSITY", "uk-carbon-intensity:GB")
        monkeypatch.setenv("CARBONLAB_UK_CI_URL", server.url)
        monkeypatch.setenv("CARBONLAB_INTENSITY_CACHE_DIR", str(tmp_path / "cache"))
        providers.reset()
        # The provider instance the in-process run will use, with "now" inside the captured forecast.
        live = providers.get(config.resolve(cwd=project.path))
        live.clock = Clock(T0)
        live.refresh()
        project.makepyfile(test_suite=SUITE)
        result = project.runpytest("--carbon")
        result.stdout.fnmatch_lines(
            [
                "advice: this test session would emit * % less between * NESO Carbon Intensity API forecast for GB)"
            ]
        )
        # Without a forecast nothing is invented.
        monkeypatch.delenv("CARBONLAB_INTENSITY")
        providers.reset()
        project.runpytest("--carbon").stdout.no_fnmatch_line("advice:*")
    finally:
        server.stop()
        providers.reset()
