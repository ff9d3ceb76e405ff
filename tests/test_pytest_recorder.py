"""pytest_carbon/recorder.py: a test's figures from its readings.

The usual test (two meters of two kinds, no budget, no GPU, no cluster) takes a lean path at its
teardown that never builds its phases; every figure it puts on the test must be the one the general
path gives, clamped or not.
"""

from __future__ import annotations

import itertools
import sys

import pytest

from carbonlab import clock
from carbonlab.meters import MeterSet
from carbonlab.meters.base import Meter
from pytest_carbon.recorder import Recorder


class Scripted(Meter):
    """A meter whose readings are given in advance; a ceiling of ``ceiling`` W (None: none)."""

    def __init__(self, kind: str, scope: str, values: list[float], ceiling: float | None) -> None:
        super().__init__(
            kind=kind, device=kind, name=kind, method=f"{kind}-model", scope=scope,
            resolution_s=0.004,
        )  # fmt: skip
        self._values = iter(values)
        self._ceiling = ceiling

    def energy_j(self) -> float:
        return next(self._values)

    def ceiling_w(self) -> float | None:
        return self._ceiling


# Five readings per test: setup start, call start, call end, teardown end (four; the fifth is the
# next test's). Times in s, joules per meter. Ceilings: CPU 10 W, RAM none.
CASES = {
    "usual": ([0.0, 0.01, 0.03, 0.035], [0.0, 0.02, 0.1, 0.12], [0.0, 0.001, 0.003, 0.004]),
    "call over the ceiling": ([0.0, 0.01, 0.011, 0.02], [0.0, 0.02, 5.0, 5.01], [0.0, 0.0, 0.0, 0.0]),
    "setup over the ceiling": ([0.0, 0.001, 0.011, 0.02], [0.0, 3.0, 3.05, 3.06], [0.0, 0.0, 0.0, 0.0]),
    "teardown over the ceiling": ([0.0, 0.01, 0.02, 0.021], [0.0, 0.01, 0.02, 9.0], [0.0, 0.0, 0.0, 0.0]),
    "zero duration": ([1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.5, 0.5, 0.5, 0.5]),
}  # fmt: skip


_names = itertools.count()


def _run(monkeypatch, case, *, lean: bool, g_per_j, workers: int, scope: str, imports: int):
    times, cpu, ram = CASES[case]
    ticks = iter(times + times)  # start_test may look at the clock again (reuse of a reading)
    monkeypatch.setattr(clock, "now", lambda: next(ticks))
    meters = [Scripted("cpu", scope, cpu, 10.0), Scripted("ram", "process", ram, None)]
    rec = Recorder(MeterSet(meters), g_per_j=g_per_j, worker_count=workers)
    if not lean:
        rec._lean = None
    else:
        assert rec._lean is not None
    rec.start_test("t::a", None)
    rec.begin_call("t::a")
    if imports:
        monkeypatch.setitem(sys.modules, f"_carbon_test_import_{next(_names)}", object())
    rec.end_call("t::a")
    rec.begin_teardown("t::a")
    props = rec.end_teardown("t::a")
    record = rec.records["t::a"]
    phases = {
        w: (p.duration_s, list(p.deltas), p.clamped, p.imported) for w, p in record.phases.items()
    }
    return props, phases, rec.export()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    "g_per_j, workers, scope, imports",
    [(None, 0, "process", 0), (1e-4, 0, "process", 1), (1e-4, 2, "package", 0)],
)
def test_lean_path_gives_the_general_paths_figures(
    monkeypatch, case, g_per_j, workers, scope, imports
):
    kw = dict(g_per_j=g_per_j, workers=workers, scope=scope, imports=imports)
    lean = _run(monkeypatch, case, lean=True, **kw)
    general = _run(monkeypatch, case, lean=False, **kw)
    assert lean == general
    props = dict(lean[0])
    assert list(lean[0])[0][0] == "carbon_setup_j" and list(lean[0])[-1][0] == "carbon_teardown_j"
    if case == "call over the ceiling":
        # 5 J in 1 ms is over 10 W: capped at 10 mJ, the excess said
        assert props["carbon_cpu_j"] == pytest.approx(0.01)
        assert props["carbon_clamped_j"] == pytest.approx(4.98 - 0.01)
    if imports:
        assert props["carbon_first_use"] == 1
    else:
        assert "carbon_first_use" not in props
    assert props["carbon_attribution"] == ("shared" if workers > 1 else "exclusive")
    assert ("carbon_co2e_g" in props) == (g_per_j is not None)


def test_lean_path_is_not_taken_with_three_meters(monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(clock, "now", lambda: float(next(ticks)))
    meters = [
        Scripted("cpu", "process", [0.0] * 8, None),
        Scripted("ram", "process", [0.0] * 8, None),
        Scripted("gpu", "device", [0.0] * 8, None),
    ]
    assert Recorder(MeterSet(meters))._lean is None


def test_a_call_whose_cluster_parts_are_below_resolution_is_flagged_as_in_notebooks():
    """A call longer than every local meter's resolution whose attached cluster gave only parts
    below its resolution (a window shorter than a round trip) is below resolution, as the same
    window's Measurement is in a notebook; with the cluster's parts resolved it is not."""
    from pytest_carbon.recorder import NO_VERDICT, P_BELOW, Phase

    meters = [
        Scripted("cpu", "process", [0.0] * 4, None),
        Scripted("ram", "process", [0.0] * 4, None),
    ]
    rec = Recorder(MeterSet(meters))
    part = {"kind": "cpu", "energy_j": 0.0, "below_resolution": True}
    for below, expected in ((True, True), (False, False)):
        phase = Phase(0.05, [0.1, 0.01])  # 50 ms: over the local meters' 4 ms
        phase.remote = ([{**part, "below_resolution": below}], [])
        props = dict(rec.call_properties(phase, NO_VERDICT, None))
        assert props[P_BELOW] is expected


def _protocol(monkeypatch, lean: bool, tests: list[str], finish_last: bool = True):
    """``tests`` run one after another (a name twice: a rerun); each reading of each meter is
    the next number, 1 ms apart: none is reused. Returns the recorder and each test's props."""
    ticks = itertools.count()
    monkeypatch.setattr(clock, "now", lambda: next(ticks) * 0.001)
    n = 5 * len(tests) + 2
    meters = [
        Scripted("cpu", "process", [0.001 * i for i in range(n)], 10.0),
        Scripted("ram", "process", [0.0002 * i * i for i in range(n)], None),
    ]
    rec = Recorder(MeterSet(meters), g_per_j=1e-4)
    if not lean:
        rec._lean = None
    props = []
    for i, key in enumerate(tests):
        rec.start_test(key, None)
        rec.begin_call(key)
        rec.end_call(key)
        rec.begin_teardown(key)
        if finish_last or i < len(tests) - 1:
            props.append(rec.end_teardown(key))
    return rec, props


@pytest.mark.parametrize("finish_last", [True, False], ids=["finished", "interrupted"])
def test_records_built_from_lean_readings_are_the_general_paths(monkeypatch, finish_last):
    """A lean test keeps only its readings (no record while the run goes on); the records built
    from them after the run, reruns and a test left open included, are the general path's."""
    tests = ["t::a", "t::b", "t::a", "t::c", "t::a"]
    lean_rec, lean_props = _protocol(monkeypatch, True, tests, finish_last)
    general_rec, general_props = _protocol(monkeypatch, False, tests, finish_last)
    assert lean_props == general_props
    assert lean_rec.export() == general_rec.export()
    assert list(lean_rec.records) == ["t::a", "t::b", "t::c"]
    a = lean_rec.records["t::a"]
    assert a.attempts == 3 and a.rerun_j > 0
    assert lean_rec.export()["tests"]["t::a"]["rerun_j"] == general_rec.records["t::a"].rerun_j
    if not finish_last:  # the open test is in the records, with the phases it had
        assert set(lean_rec.records["t::a"].phases) == {"setup", "call"}
        assert lean_rec.record_of("t::a") is not None
    else:
        assert set(a.phases) == {"setup", "call", "teardown"}


def test_phase_methods_ignore_a_test_that_is_not_open(monkeypatch):
    """A hook for a test whose setup the plugin never saw (a tryfirst setup of another plugin
    raised first) reads nothing and changes nothing."""
    rec, _ = _protocol(monkeypatch, True, ["t::a"])
    before = rec.export()
    rec.begin_call("t::other")
    assert rec.end_call("t::other") is None
    rec.begin_teardown("t::other")
    assert rec.end_teardown("t::other") is None
    assert rec.export() == before and not rec.active("t::other")
