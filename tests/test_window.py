"""carbonlab/window.py: begin/end differences, nesting, threads, resolution flags, decorator."""

from __future__ import annotations

import threading

import pytest

import carbonlab
from carbonlab import clock
from carbonlab.measurement import METHOD_NVML_COUNTER, SCHEMA, Measurement
from tests import fakes


@pytest.fixture
def manual_clock(monkeypatch):
    t = [1000.0]
    monkeypatch.setattr(clock, "now", lambda: t[0])
    return t


def test_energy_is_the_difference_of_readings(manual_clock):
    cpu = fakes.ScriptedMeter("cpu")
    gpu = fakes.gpu_counter()
    fakes.install([gpu, cpu])
    cpu.add(50.0)  # before the window: not counted
    with carbonlab.track("step") as m:
        cpu.add(3.5)
        gpu.add(120.0)
        manual_clock[0] += 2.0
    assert m.duration_s == pytest.approx(2.0)
    assert m.by_kind() == {"gpu": 120.0, "cpu": 3.5}
    assert m.energy_j == pytest.approx(123.5)
    gpu_c = next(c for c in m.components if c.kind == "gpu")
    assert gpu_c.method == METHOD_NVML_COUNTER and gpu_c.scope == "device"
    assert not m.below_resolution


@pytest.mark.fault("figures")
def test_short_window_is_flagged_not_a_confident_zero(manual_clock):
    gpu = fakes.gpu_counter(resolution_s=0.1)
    fakes.install([gpu, fakes.ScriptedMeter("cpu")])
    with carbonlab.track() as m:
        manual_clock[0] += 0.05
    assert m.below_resolution
    assert [c.below_resolution for c in m.components] == [True, False]
    assert m.to_dict()["below_resolution"] is True
    assert m.to_dict()["components"][0]["below_resolution"] is True


def test_nested_windows_each_see_their_own_span(manual_clock):
    cpu = fakes.ScriptedMeter("cpu")
    fakes.install([cpu])
    with carbonlab.track("outer") as outer:
        cpu.add(1.0)
        with carbonlab.track("inner") as inner:
            cpu.add(2.0)
        cpu.add(4.0)
    assert inner.energy_j == 2.0
    assert outer.energy_j == 7.0


def test_same_tracker_reentered_nests():
    cpu = fakes.ScriptedMeter("cpu")
    fakes.install([cpu])
    t = carbonlab.track("re")
    with t as a:
        cpu.add(1.0)
        with t as b:
            cpu.add(10.0)
    assert (a.energy_j, b.energy_j) == (11.0, 10.0)


def test_windows_on_threads_are_independent():
    cpu = fakes.ScriptedMeter("cpu")
    fakes.install([cpu])
    barrier = threading.Barrier(4)
    results = {}

    def work(i):
        with carbonlab.track(f"t{i}") as m:
            barrier.wait()
            barrier.wait()
        results[i] = m

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    barrier.wait()  # all three windows are open
    cpu.add(9.0)
    barrier.wait()
    for th in threads:
        th.join()
    # Machine-wide counters: every overlapping window sees the overlap's energy.
    assert sorted(m.energy_j for m in results.values()) == [9.0, 9.0, 9.0]
    assert sorted(m.label for m in results.values()) == ["t0", "t1", "t2"]


def test_raising_block_is_still_measured():
    cpu = fakes.ScriptedMeter("cpu")
    fakes.install([cpu])
    with pytest.raises(ZeroDivisionError), carbonlab.track("boom") as m:
        cpu.add(2.0)
        1 / 0  # noqa: B018
    assert m.energy_j == 2.0 and m.extra["error"] is True


def test_decorator_measures_every_call():
    cpu = fakes.ScriptedMeter("cpu")
    fakes.install([cpu])
    seen = []

    @carbonlab.track(on_measurement=seen.append)
    def step(j):
        cpu.add(j)
        return j * 2

    assert step(1.5) == 3.0
    assert step(4.0) == 8.0
    assert [m.energy_j for m in seen] == [1.5, 4.0]
    assert step.last_measurement is seen[-1]
    assert seen[0].label.endswith("step")


@pytest.mark.fault("settings")
def test_track_rejects_bad_override_before_work():
    with pytest.raises(ValueError, match="pue"):
        carbonlab.track(pue="lots")


@pytest.mark.fault("figures")
def test_counter_going_backwards_is_never_negative():
    class Backwards(fakes.ScriptedMeter):
        def energy_j(self):
            return -super().energy_j()

    meter = Backwards("cpu")
    fakes.install([meter])
    with carbonlab.track() as m:
        meter.add(5.0)
    assert m.energy_j == 0.0


def test_json_round_trip_keeps_every_field():
    cpu = fakes.ScriptedMeter("cpu")
    fakes.install([cpu, fakes.gpu_counter()], zone="FR")
    with carbonlab.track("rt") as m:
        cpu.add(7.25)
    d = m.to_dict()
    assert d["schema"] == SCHEMA
    assert d["energy_j"] == pytest.approx(sum(c["energy_j"] for c in d["components"]))
    again = Measurement.from_dict(d)
    assert again.to_dict() == d
    with pytest.raises(ValueError, match="schema"):
        Measurement.from_dict({**d, "schema": "other/9"})


def test_window_reads_each_meter_exactly_twice():
    cpu = fakes.ScriptedMeter("cpu")
    fakes.install([cpu])
    with carbonlab.track():
        pass
    assert cpu.reads == 2


def test_a_windows_start_stamp_is_the_utc_millisecond_datetime_would_give():
    """clock.iso_utc formats the date and time once a second (every window stamps its start);
    it must give what datetime gives, across second, day and year boundaries."""
    import random
    from datetime import datetime, timezone

    from carbonlab import clock

    rng = random.Random(7)
    base = [0, 1_700_000_000, 1_798_761_599, 1_798_761_600, 4_102_444_799]  # 2026/2027 new year
    times = [b + f for b in base for f in (0.0, 0.0005, 0.999, 0.9994)]
    times += [
        rng.randrange(0, 4_000_000_000) + rng.randrange(0, 1_000_000) / 1e6 for _ in range(300)
    ]
    for t in times:
        t_us = round(t * 1e6) / 1e6 + 3e-7  # away from a microsecond's rounding edge
        want = datetime.fromtimestamp(t_us, timezone.utc).isoformat(timespec="milliseconds")
        assert clock.iso_utc(t_us) == want.replace("+00:00", "Z"), t_us


def test_a_stopped_windows_energy_is_its_measurements_to_the_last_bit(manual_clock):
    """Window.energy_j (what a quick cell's threshold is judged on, before its Measurement is
    built) equals the built Measurement's energy, clamps at the models' ceilings included; a window
    whose build would read something more (a GPU meter's process attribution, an attached
    cluster, a live intensity) is not deferrable."""
    from carbonlab import runtime
    from carbonlab.window import Window

    class Capped(fakes.ScriptedMeter):
        def ceiling_w(self):
            return 8.0

    cpu, ram = Capped("cpu"), fakes.ScriptedMeter("ram")
    fakes.install([cpu, ram])
    rt = runtime.get()
    for cpu_j, ram_j in ((0.1, 0.2), (7.0, 1e-7), (100.0, 3.3), (0.0, 0.0)):
        w = Window("x", rt.settings, rt=rt).begin()
        cpu.add(cpu_j)
        ram.add(ram_j)
        manual_clock[0] += 0.9
        w.stop()
        assert w.deferrable()
        quick = w.energy_j()
        m = w.build()
        assert quick == m.energy_j  # exactly: the same clamps, summed in the same order
        assert ("clamped_from_j" in m.components[0].params) == (cpu_j > 8.0 * 0.9)
    w = Window("x", rt.settings, rt=rt).begin()
    cpu.add(100.0)
    manual_clock[0] += 0.5
    w.stop()
    m = w.build()
    assert m.components[0].energy_j == pytest.approx(4.0) and w.energy_j() == m.energy_j
    assert m.components[0].params["clamped_from_j"] == 100.0

    class Attributing(fakes.ScriptedMeter):
        def attribute(self, window_start_wall_us, duration_s, energy_j):
            return None  # (a GPU meter asks NVML which processes ran, at the end edge)

    fakes.install([Attributing("gpu"), cpu])
    rt = runtime.get()
    w = Window("x", rt.settings, rt=rt).begin()
    w.stop()
    assert not w.deferrable()  # the NVML meter attributes by process at the end edge


def test_windows_and_the_pytest_recorder_leave_carbonlab_cluster_unimported():
    """No cluster attached: a window, and the pytest plugin's recorder, do not import
    carbonlab.cluster (they read the registry in carbonlab._clusters, the very list it keeps)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import carbonlab\n"
        "with carbonlab.track('a') as m: pass\n"
        "after_window = 'carbonlab.cluster' in sys.modules\n"
        "import pytest_carbon.recorder\n"
        "after_recorder = 'carbonlab.cluster' in sys.modules\n"
        "from carbonlab import _clusters, cluster\n"
        "print(json.dumps([after_window, after_recorder, cluster._sources is _clusters.SOURCES,"
        " m.components[0].kind]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False, True, "cpu"]


def test_with_a_cluster_registered_windows_call_carbonlab_cluster(monkeypatch):
    from carbonlab import _clusters, cluster

    calls = []
    monkeypatch.setattr(cluster, "begin_all", lambda: calls.append("begin") or ["b"])
    monkeypatch.setattr(cluster, "live", lambda begun: calls.append(("live", begun)) or {"e": 1})
    monkeypatch.setattr(
        cluster, "end_all", lambda begun, d: calls.append(("end", begun, d)) or ([], ["n"])
    )
    assert _clusters.begin_all() == [] and calls == []  # none registered: nothing asked
    source = object()
    cluster._sources.append(source)
    try:
        assert _clusters.begin_all() == ["b"]
        assert _clusters.live(["b"]) == {"e": 1}
        assert _clusters.end_all(["b"], 2.0) == ([], ["n"])
    finally:
        cluster.unregister(source)
    assert calls == ["begin", ("live", ["b"]), ("end", ["b"], 2.0)]
    assert _clusters.SOURCES == []
