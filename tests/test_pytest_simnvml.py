"""The plugin with carbonlab's real meters and the real pynvml, over the simulated NVML library.

The pytester project runs in subprocesses (and xdist workers) that load the simulator by soname
through LD_LIBRARY_PATH. Its clock is manual: a test "runs" for two seconds by moving the
simulator's clock, and ``carbonlab.clock.now`` reads that clock, so a GPU scripted at 100 W uses
exactly 200 J in the call, with no sleeping.
"""

from __future__ import annotations

import os

import pytest

from tests.simnvml import SimGpu
from tests.test_pytest_support import REPO, read_json

CONFTEST = """
import ctypes
import pytest
from carbonlab import clock, window

LIB = ctypes.CDLL("libnvidia-ml.so.1")  # the simulator, the same copy pynvml loads
LIB.simnvml_now_ns.restype = ctypes.c_longlong
LIB.simnvml_advance_ns.argtypes = [ctypes.c_longlong]
LIB.simnvml_advance_ns.restype = ctypes.c_longlong
clock.now = lambda: LIB.simnvml_now_ns() / 1e9  # durations in simulated time
# the clock utilisation samples are stamped with: the simulator's own, where a driver uses wall time
window.wall_us = lambda: LIB.simnvml_now_ns() // 1000


@pytest.fixture
def run_for():
    def run_for(seconds):
        assert LIB.simnvml_advance_ns(round(seconds * 1e9)) >= 0, "clock not manual, or NVML closed"
    return run_for
"""

TESTS = """
def test_two_seconds(run_for):
    run_for(2.0)

def test_half_second(run_for):
    run_for(0.5)

def test_instant():
    pass
"""


@pytest.fixture
def sim_project(pytester, sim_nvml_env, monkeypatch):
    sim_nvml_env.configure(
        SimGpu(name="NVIDIA H100 80GB HBM3", arch="hopper", power=100.0, uuid="GPU-sim-0"),
        SimGpu(name="NVIDIA H100 80GB HBM3", arch="hopper", power=100.0, uuid="GPU-sim-1"),
        clock="manual",
    )
    for k, v in sim_nvml_env.env_vars.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("CARBONLAB_ZONE", "FR")
    monkeypatch.setenv("CARBONLAB_CPU_W_PER_CORE", "0")  # only the GPU and RAM figures remain
    monkeypatch.delenv("PYTEST_CARBON_BUDGET", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_sim=TESTS)
    return pytester


def test_real_meters_over_simulated_nvml(sim_project):
    result = sim_project.runpytest_subprocess(
        "--carbon-budget=150 J", "--carbon-top=3", "--carbon-json=c.json", "-p", "no:randomly"
    )
    result.stdout.fnmatch_lines(
        [
            "carbon: gpu=nvml-energy-counter(2) cpu=cpu-time-model ram=ram-model; zone FR * "
            "gCO2e/kWh (Ember *); budget 150 J/test",
        ]
    )
    result.assert_outcomes(passed=2, failed=1)
    # two GPUs at 100 W for two seconds: 400 J on the GPU counters, plus the RAM model's share
    result.stdout.fnmatch_lines(
        [
            "carbon budget exceeded: 400 J > 150 J (call; gpu 400 J nvml-energy-counter, cpu 0 J "
            "cpu-time-model, ram * mJ)"
        ]
    )
    doc = read_json(sim_project.path / "c.json")
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    call = tests["test_two_seconds"]["call"]
    gpus = [c for c in call["components"] if c["kind"] == "gpu"]
    assert [(g["device"], g["energy_j"], g["method"], g["scope"]) for g in gpus] == [
        ("GPU-sim-0", 200.0, "nvml-energy-counter", "device"),
        ("GPU-sim-1", 200.0, "nvml-energy-counter", "device"),
    ]
    assert call["duration_s"] == pytest.approx(2.0)
    assert not call["below_resolution"]
    half = tests["test_half_second"]["call"]
    assert sum(g["energy_j"] for g in half["components"] if g["kind"] == "gpu") == 100.0
    # a test that takes no (simulated) time is below the 100 ms counter update: flagged, not 0 J
    instant = tests["test_instant"]
    assert instant["below_resolution"] and instant["call"]["below_resolution"]
    assert doc["environment"]["gpus"] == ["NVIDIA H100 80GB HBM3"] * 2
    assert doc["environment"]["machine_id"].endswith("-2xNVIDIA_H100_80GB_HBM3")


def test_simulated_nvml_under_xdist(sim_project):
    pytest.importorskip("xdist")
    # each worker process has its own simulated clock; the GPUs are machine-wide, so shared
    result = sim_project.runpytest_subprocess(
        "-n", "2", "--carbon-budget=150 J", "--carbon-json=c.json"
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*; 2 xdist workers: gpu shared",
            "*- carbon: possibly over budget, not failed -*",
            "test_sim.py::test_two_seconds: 400 J > 150 J  [[]*shared*]",
        ]
    )
    # with a GPU of its own per worker the figure is the test's: the budget fails it
    result = sim_project.runpytest_subprocess(
        "-n", "2", "--carbon-budget=150 J", "--carbon-gpu-per-worker", "--carbon-json=c.json"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["carbon budget exceeded: 200 J > 150 J (call; gpu 200 J nvml-energy-counter, *"]
    )
    tests = {t["nodeid"].split("::")[1]: t for t in read_json(sim_project.path / "c.json")["tests"]}
    two = tests["test_two_seconds"]
    gpus = [c["device"] for c in two["call"]["components"] if c["kind"] == "gpu"]
    assert len(gpus) == 1 and gpus[0] in ("GPU-sim-0", "GPU-sim-1")
    assert two["attribution"] == "exclusive"


def test_shared_gpu_charges_each_test_its_process_share(pytester, sim_nvml_env, monkeypatch):
    """Issue 10 in pytest: a GPU shared 70/30 with another process charges the test 70 %, scope
    process-estimated, the gross device energy kept beside it."""
    from tests.simnvml import SimProcess

    sim_nvml_env.configure(
        SimGpu(
            name="NVIDIA H100 80GB HBM3",
            arch="hopper",
            power=100.0,
            uuid="GPU-sim-0",
            processes=[SimProcess("self", sm=70), SimProcess(999_999, sm=30)],
        ),
        clock="manual",
    )
    for k, v in sim_nvml_env.env_vars.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("CARBONLAB_CPU_W_PER_CORE", "0")
    monkeypatch.delenv("PYTEST_CARBON_BUDGET", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_sim=TESTS)
    result = pytester.runpytest_subprocess("--carbon-budget=100 J", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    # 2 s at 100 W is 200 J on the device; 70 % of it is this process's
    result.stdout.fnmatch_lines(
        [
            "carbon budget exceeded: 140 J > 100 J (call; gpu 140 J nvml-energy-counter, *",
            "  gpu * 140 J  nvml-energy-counter  process-estimated GPU-sim-0 *"
            "[[]70% of the device's 200 J, shared with 1 other process]",
        ]
    )
