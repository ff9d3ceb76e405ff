"""Shared pieces of the pytest plugin tests (no tests here).

``FAKE_CONFTEST`` gives a pytester project scripted meters through the plugin's
``pytest_carbon_meter_set`` hook, in every process (xdist workers too), and a ``burn`` fixture that
moves them by exact joules: ``burn(gpu=6.10, cpu=1.02, ram=0.19)`` makes the call use 7.31 J.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_CONFTEST = """
import os
import pytest
from carbonlab.measurement import METHOD_CPU_MODEL, METHOD_NVML_COUNTER, METHOD_RAM_MODEL
from carbonlab.meters import MeterSet
from tests.fakes import ScriptedMeter

METERS = {}
GPU_RESOLUTION = float(os.environ.get("FAKE_GPU_RESOLUTION", "0"))


@pytest.hookimpl(optionalhook=True)  # so -p no:carbon still loads this conftest
def pytest_carbon_meter_set(config):
    gpu = ScriptedMeter("gpu", "GPU-fake-0", METHOD_NVML_COUNTER, "device", "Fake GPU",
                        resolution_s=GPU_RESOLUTION)
    cpu = ScriptedMeter("cpu", "cpu", METHOD_CPU_MODEL, "process", "Fake CPU")
    ram = ScriptedMeter("ram", "ram", METHOD_RAM_MODEL, "process", "RAM")
    METERS.update(gpu=gpu, cpu=cpu, ram=ram)
    return MeterSet([gpu, cpu, ram])


def _burn(gpu=0.0, cpu=0.0, ram=0.0):
    if not METERS:  # the plugin is off: nothing to move
        return
    METERS["gpu"].add(gpu)
    METERS["cpu"].add(cpu)
    METERS["ram"].add(ram)


@pytest.fixture
def burn():
    return _burn
"""


def make_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project with scripted meters; subprocesses (xdist workers) find ``tests``.

    Each test module wraps this in its own ``project`` fixture.
    """
    pytester.makeconftest(FAKE_CONFTEST)
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in (
        "PYTEST_CARBON_BUDGET",
        "PYTEST_CARBON_SESSION_BUDGET",
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "CARBONLAB_ZONE",
        "CARBONLAB_INTENSITY",
        "CARBONLAB_PUE",
    ):
        monkeypatch.delenv(var, raising=False)
    return pytester


def read_json(path: Path) -> dict:
    """A run document in the full (v1) shape, whichever schema it was written in."""
    from carbonlab.compare import expand_run

    return expand_run(json.loads(Path(path).read_text()))


def read_raw(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def calls(reprec) -> dict[str, dict]:
    """nodeid -> carbon user_properties of its teardown report (the final set)."""
    out = {}
    for rep in reprec.getreports("pytest_runtest_logreport"):
        if rep.when == "teardown":
            out[rep.nodeid] = {k: v for k, v in rep.user_properties if k.startswith("carbon_")}
    return out
