"""The plugin under pytest-xdist: workers measure, the controller aggregates and owns the output."""

from __future__ import annotations

import pytest

from tests.faults import assert_clean
from tests.test_pytest_support import make_project, read_json

pytest.importorskip("xdist")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return make_project(pytester, monkeypatch)


SUITE = """
import pytest

def test_gpu_heavy(burn):
    burn(gpu=6.10, cpu=1.02, ram=0.19)

def test_cpu_heavy(burn):
    burn(cpu=7.0)

@pytest.mark.parametrize("i", range(6))
def test_small(i, burn):
    burn(cpu=0.5)
"""


def test_workers_measure_controller_reports(project):
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest_subprocess(
        "-n", "2", "--carbon-budget=5 J", "--carbon-top=3", "--carbon-json=c.json"
    )
    # the CPU model is per process: attributable, so the CPU-heavy test fails on its budget
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(
        [
            "carbon: gpu=nvml-energy-counter(1) cpu=cpu-time-model ram=ram-model; *; "
            "budget 5 J/test; 2 xdist workers: gpu shared",
            "carbon budget exceeded: 7.00 J > 5 J (call; gpu 0.00 J nvml-energy-counter (shared), "
            "cpu 7.00 J cpu-time-model, ram 0.00 J)",
            "*- carbon budget -*",
        ]
    )
    # the GPU counter is machine-wide: shared between workers, so over only through it: a warning
    result.stdout.fnmatch_lines(
        [
            "*8 tests measured: call 17.3 J, *; 1 over budget; 1 possibly over budget (not failed); "
            "per-test figures of shared counters overlap between xdist workers",
            "*- carbon: possibly over budget, not failed -*",
            "test_suite.py::test_gpu_heavy: 7.31 J > 5 J  [[]shared]",
        ]
    )
    doc = read_json(project.path / "c.json")
    assert doc["environment"]["xdist_workers"] == 2
    tests = {t["nodeid"]: t for t in doc["tests"]}
    assert len(tests) == 8
    gpu = tests["test_suite.py::test_gpu_heavy"]
    assert gpu["worker"] in ("gw0", "gw1")
    assert gpu["attribution"] == "shared"
    assert gpu["budget"]["status"] == "inconclusive"
    assert [c["energy_j"] for c in gpu["call"]["components"]] == [6.1, 1.02, 0.19]
    # the session: process models summed over the workers, machine-wide counters read once
    session = doc["session"]["measurement"]
    cpu = sum(c["energy_j"] for c in session["components"] if c["kind"] == "cpu")
    assert cpu == pytest.approx(1.02 + 7.0 + 6 * 0.5)
    devices = {c["device"] for c in session["components"] if c["scope"] == "process"}
    assert {d.rsplit("@", 1)[-1] for d in devices} >= {"gw0", "gw1"}
    gpu_parts = [c for c in session["components"] if c["kind"] == "gpu"]
    assert len(gpu_parts) == 1 and "@" not in gpu_parts[0]["device"]  # the controller's one reading


def test_only_the_controller_writes(project, monkeypatch):
    summary = project.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest_subprocess("-n", "2", "--carbon-budget=5 J")
    assert summary.read_text().count("## carbonlab: energy of the test run") == 1
    assert result.stdout.str().count("::error ") == 1  # the CPU-heavy test, once
    assert result.stdout.str().count("::warning ") == 1  # the GPU-heavy one, shared
    assert result.stdout.str().count("= carbon =") == 1


def test_session_budget_under_xdist(project):
    project.makepyfile(test_suite=SUITE)
    result = project.runpytest_subprocess("-n", "2", "--carbon-session-budget=5 J")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["carbon session budget exceeded: * > 5 J (whole run; *)", "*= 8 passed in *"]
    )


@pytest.mark.fault("pytest")
def test_bad_marker_under_xdist_is_a_usage_error_not_an_internal_error(project):
    project.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.carbon_budget("5 XB")
        def test_a():
            raise AssertionError("must not run")

        def test_b():
            pass
        """
    )
    result = project.runpytest_subprocess("-n", "2", "--carbon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [
            "ERROR: carbon: bad carbon_budget marker:",
            "  test_bad.py::test_a: carbon_budget('5 XB'): '5 XB': unknown unit 'XB'",
            "accepted units: *",
        ]
    )
    out = result.stdout.str() + result.stderr.str()
    assert_clean(out)
    assert "must not run" not in out


def test_reruns_under_xdist_do_not_double_count(project):
    pytest.importorskip("pytest_rerunfailures")
    project.makepyfile(
        test_flaky="""
        import pytest, os
        ATTEMPTS = []

        @pytest.mark.flaky(reruns=2)
        def test_flaky(burn):
            burn(cpu=2.0)
            ATTEMPTS.append(1)
            assert len(ATTEMPTS) >= 2

        def test_steady(burn):
            burn(cpu=1.0)
        """
    )
    result = project.runpytest_subprocess("-n", "2", "--carbon-json=c.json")
    result.assert_outcomes(passed=2)
    tests = {t["nodeid"]: t for t in read_json(project.path / "c.json")["tests"]}
    flaky = tests["test_flaky.py::test_flaky"]
    assert (flaky["attempts"], flaky["rerun_energy_j"], flaky["call"]["energy_j"]) == (2, 2.0, 2.0)


def test_gpu_per_worker_makes_gpu_energy_attributable(project, monkeypatch):
    """With --carbon-gpu-per-worker each worker sees one GPU of its own: nothing is shared."""
    project.makeconftest(
        project.path.joinpath("conftest.py")
        .read_text()
        .replace(
            "    gpu = ScriptedMeter(",
            "    import os\n"
            "    print('CUDA_VISIBLE_DEVICES', os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
            "    gpu = ScriptedMeter(",
        )
    )
    project.makepyfile(test_suite=SUITE)
    # one scripted GPU on the controller: two workers would share it
    result = project.runpytest_subprocess(
        "-n", "2", "--carbon-budget=5 J", "--carbon-gpu-per-worker"
    )
    result.stdout.fnmatch_lines(["*2 xdist workers: gpu shared*"])
    result.assert_outcomes(passed=7, failed=1)


def test_gpu_per_worker_with_a_gpu_each(project, monkeypatch):
    """Two GPUs, two workers: gw0 sees GPU 0 only, gw1 GPU 1 only; per-test GPU energy counts."""
    project.makeconftest(
        """
        import os
        import pytest
        from carbonlab.measurement import METHOD_NVML_COUNTER
        from carbonlab.meters import MeterSet
        from tests.fakes import ScriptedMeter

        METERS = []

        @pytest.hookimpl(optionalhook=True)
        def pytest_carbon_meter_set(config):
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            uuids = ["GPU-aaaa", "GPU-bbbb"] if visible is None else visible.split(",")
            METERS[:] = [ScriptedMeter("gpu", u, METHOD_NVML_COUNTER, "device", "Fake GPU")
                         for u in uuids]
            return MeterSet(list(METERS))

        @pytest.fixture
        def burn_gpu():
            return lambda j: METERS[0].add(j)
        """
    )
    project.makepyfile(
        test_gpu="""
        import os

        def test_heavy(burn_gpu):
            burn_gpu(9.0)

        def test_light(burn_gpu):
            burn_gpu(1.0)
            assert os.environ["CUDA_VISIBLE_DEVICES"] in ("GPU-aaaa", "GPU-bbbb")
        """
    )
    result = project.runpytest_subprocess(
        "-n", "2", "--carbon-budget=5 J", "--carbon-gpu-per-worker", "--carbon-json=c.json"
    )
    result.stdout.fnmatch_lines(["carbon: gpu=nvml-energy-counter(2); *; budget 5 J/test"])
    result.stdout.no_fnmatch_line("*shared*")
    result.assert_outcomes(passed=1, failed=1)
    tests = {t["nodeid"]: t for t in read_json(project.path / "c.json")["tests"]}
    assert tests["test_gpu.py::test_heavy"]["attribution"] == "exclusive"
    assert tests["test_gpu.py::test_heavy"]["budget"]["status"] == "over"
