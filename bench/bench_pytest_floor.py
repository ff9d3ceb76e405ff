"""The pytest plugin's per-test cost against the least any per-phase plugin can cost, in CPU time.

Run: .venv/bin/python -m bench.bench_pytest_floor [--rounds N] [--tests N]   (prints; not a test)

Issue 16 asks ``--carbon`` for ≤ 25 µs a test and ≤ 1.05× on 1,000 trivial tests. This measures
how far from that the plugin is, and how far any plugin measuring the same things could get: in
one process (warm: every module imported, so the start's imports drop out and what is left is
each test's cost), ``pytest.main`` on a project of ``--tests`` trivial tests, these configurations
alternated round by round, CPU time (``time.process_time``) of each run:

- ``none``: ``-p no:carbon``, the baseline;
- ``hooks``: a plugin with the hook implementations ``--carbon`` has for every test (a ``tryfirst``
  setup, a wrapper of the call and one of the teardown), each doing nothing;
- ``floor``: the same hooks doing the least that gives a test its setup, call and teardown figures
  on its teardown report (what JUnit XML and xdist read): three readings of every meter carbonlab
  opens here (the CPU-time and RAM models on a machine without a GPU or RAPL; the setup's start
  reuses the previous test's end) and four properties; no results, summary, budgets, first-use
  count, per-kind figures or below-resolution flag;
- ``carbon``: ``--carbon``.

Each line is a configuration's extra CPU time over ``none`` in the same round, median and quartiles
over the rounds, per run and divided by the tests (the run's own warm part, opening the meters and
the summary, is in it too: small against 1,000 tests, not against 50). On a quiet 2-CPU VM
(2026-12-07) the quartiles were within about ±3-5 ms of the median for a run of 1,000 tests;
fresh-process timings (``python -m bench``) add the start's imports and swing more.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.bench_pytest import make_project  # noqa: E402

PLUGIN = """
import pytest


class Hooks:
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        pass

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item):
        try:
            return (yield)
        finally:
            pass


class Floor:
    def __init__(self, config):
        from carbonlab import clock, meters
        from carbonlab import config as cl_config

        fs = [m.energy_j for m in meters.get(cl_config.resolve(cwd=config.rootpath)).meters]
        now = clock.now
        if len(fs) == 2:  # the usual pair, CPU-time and RAM models: as the plugin reads them
            f0, f1 = fs
            self.read = lambda: (now(), f0() + f1())
        else:
            self.read = lambda: (now(), sum([f() for f in fs]))
        self.last = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        self.r0 = self.last or self.read()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        self.rs = self.read()
        try:
            return (yield)
        finally:
            self.rc = self.read()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item):
        try:
            return (yield)
        finally:
            r1 = self.last = self.read()
            r0, rs, rc = self.r0, self.rs, self.rc
            item.user_properties += [
                ("carbon_setup_j", rs[1] - r0[1]),
                ("carbon_energy_j", rc[1] - rs[1]),
                ("carbon_duration_s", rc[0] - rs[0]),
                ("carbon_teardown_j", r1[1] - rc[1]),
            ]


def pytest_configure(config):
    import os

    shape = os.environ.get("CARBON_BENCH_FLOOR")
    if shape == "hooks":
        config.pluginmanager.register(Hooks(), "bench-floor")
    elif shape == "floor":
        config.pluginmanager.register(Floor(config), "bench-floor")
"""

CONFIGS = {
    "none": (["-p", "no:carbon"], None),
    "hooks": (["-p", "no:carbon", "-p", "_carbon_bench_floor"], "hooks"),
    "floor": (["-p", "no:carbon", "-p", "_carbon_bench_floor"], "floor"),
    "carbon": (["--carbon"], None),
}


def run(args: list[str], shape: str | None) -> float:
    if shape is None:
        os.environ.pop("CARBON_BENCH_FLOOR", None)
    else:
        os.environ["CARBON_BENCH_FLOOR"] = shape
    import pytest

    out = io.StringIO()
    t = time.process_time()
    with contextlib.redirect_stdout(out):
        code = pytest.main(["-q", "-p", "no:cacheprovider", *args])
    spent = time.process_time() - t
    if code != 0:
        raise SystemExit(f"pytest {' '.join(args)} exited {code}:\n{out.getvalue()[-2000:]}")
    return spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--tests", type=int, default=1000)
    a = ap.parse_args()
    for var in ("PYTEST_CARBON_BUDGET", "PYTEST_CARBON_SESSION_BUDGET", "PYTEST_ADDOPTS"):
        os.environ.pop(var, None)
    with tempfile.TemporaryDirectory() as d:
        root = make_project(Path(d) / "project", a.tests)
        (Path(d) / "_carbon_bench_floor.py").write_text(PLUGIN)
        sys.path.insert(0, d)
        os.chdir(root)
        times: dict[str, list[float]] = {k: [] for k in CONFIGS}
        for args, shape in CONFIGS.values():  # warm-up: imports, bytecode, the plugin's modules
            run(args, shape)
        for i in range(a.rounds):
            names = list(CONFIGS) if i % 2 == 0 else list(reversed(CONFIGS))
            for name in names:
                times[name].append(run(*CONFIGS[name]))
    print(
        f"{a.tests} trivial tests in one process, {a.rounds} rounds; "
        f"none: {statistics.median(times['none']) * 1e3:.1f} ms CPU a run"
    )
    for name in ("hooks", "floor", "carbon"):
        extra = [x - b for x, b in zip(times[name], times["none"])]
        q1, med, q3 = statistics.quantiles(extra, n=4)
        print(
            f"{name:>7}: +{med * 1e3:.1f} ms a run (quartiles {q1 * 1e3:.1f}, {q3 * 1e3:.1f}), "
            f"{med / a.tests * 1e6:.1f} µs a test"
        )


if __name__ == "__main__":
    main()
