"""carbonlab/sampler.py: started on demand, idle without demand, bounded ring buffer."""

from __future__ import annotations

import threading

import carbonlab
from carbonlab import runtime
from carbonlab.sampler import RING_SIZE, Sampler
from tests import fakes


def test_no_thread_without_demand():
    fakes.install([fakes.ScriptedMeter("cpu")])
    with carbonlab.track():
        pass
    assert not runtime.get().sampler.running


def test_power_meter_in_window_is_polled_by_the_thread():
    polled = threading.Event()

    class PowerOnly(fakes.ScriptedMeter):
        def poll(self):
            polled.set()

    meter = PowerOnly("gpu", sample_period_s=0.01)
    fakes.install([meter], sample_hz=50)
    with carbonlab.track():
        assert polled.wait(timeout=10), "sampler never polled a power-only meter"
        assert runtime.get().sampler.running


def test_listener_gets_samples_with_power_from_energy_deltas():
    meter = fakes.ScriptedMeter("cpu")
    fakes.install([meter], sample_hz=50)
    s = runtime.get().sampler
    got = []
    enough = threading.Event()

    def listener(sample):
        meter.add(1.0)  # 1 J between consecutive samples
        got.append(sample)
        if len(got) >= 4:
            enough.set()

    token = s.subscribe(listener)
    assert enough.wait(timeout=10)
    s.unsubscribe(token)
    energies = [x.energy_j[0] for x in got[:4]]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    later = got[2]
    dt = later.t - got[1].t
    assert later.power_w[0] == (later.energy_j[0] - got[1].energy_j[0]) / dt


def test_failing_listener_does_not_kill_the_thread():
    fakes.install([fakes.ScriptedMeter("cpu")], sample_hz=50)
    s = runtime.get().sampler
    ok = threading.Event()

    def bad(_):
        raise RuntimeError("listener bug")

    t1 = s.subscribe(bad)
    t2 = s.subscribe(lambda _: ok.set())
    assert ok.wait(timeout=10)
    s.unsubscribe(t1)
    s.unsubscribe(t2)
    assert s.errors >= 1 and s.running


def test_ring_buffer_is_bounded():
    s = Sampler([fakes.ScriptedMeter("cpu")])
    for _ in range(RING_SIZE + 10):
        s.take()
    assert len(s.ring) == RING_SIZE


def test_stop_ends_the_thread():
    fakes.install([fakes.ScriptedMeter("cpu")], sample_hz=50)
    s = runtime.get().sampler
    s.subscribe(lambda _: None)
    assert s.running
    s.stop()
    assert not s.running


def test_lazy_meter_is_polled_without_waking_the_thread_per_window(monkeypatch):
    """A RAM-model-like meter (period > URGENT_S) is polled by the thread's look-ins."""
    from carbonlab import sampler as sampler_mod

    monkeypatch.setattr(sampler_mod, "LINGER_CHECK_S", 0.02)
    polled = threading.Event()

    class Lazy(fakes.ScriptedMeter):
        def poll(self):
            polled.set()

    meter = Lazy("ram", sample_period_s=sampler_mod.URGENT_S + 0.1)
    fakes.install([meter])
    s = runtime.get().sampler
    assert not s._urgent
    with carbonlab.track():  # starts the thread
        pass
    with carbonlab.track():
        assert polled.wait(timeout=10), "an open window's lazy meter was never polled"


def test_a_delayed_listener_gone_before_its_start_costs_no_sample():
    """A cell's live stream starts 0.25 s in: a trivial cell that ends first makes the thread
    read no meter and call no listener (issue 14: a wake-up per cell cost a real kernel)."""
    reads = []

    class Counted(fakes.ScriptedMeter):
        def energy_j(self):
            reads.append(1)
            return super().energy_j()

    fakes.install([Counted("cpu")], sample_hz=50)
    s = runtime.get().sampler
    called = []
    early = s.subscribe(lambda _: None)  # the thread is up and sampling
    s.unsubscribe(early)
    tokens = [s.subscribe(called.append, delay_s=30.0) for _ in range(50)]
    n = len(reads)
    for t in tokens:
        s.unsubscribe(t)
    assert s.running
    # The thread, if it woke at all, found nothing due: no listener ran, no meter was read
    # for these 50 subscriptions beyond what a look-in without listeners reads (nothing).
    assert called == []
    assert len(reads) - n <= 1  # at most one sample that was already under way


def test_a_delayed_listener_gets_its_first_sample_after_the_delay():
    import time

    fakes.install([fakes.ScriptedMeter("cpu")], sample_hz=50)
    s = runtime.get().sampler
    first = threading.Event()
    times: list[float] = []

    def listener(sample):
        times.append(time.monotonic())
        first.set()

    t0 = time.monotonic()
    token = s.subscribe(listener, delay_s=0.2)
    assert first.wait(timeout=10), "a delayed listener was never called"
    s.unsubscribe(token)
    assert times[0] - t0 >= 0.2


def test_a_listener_that_comes_while_the_thread_is_busy_is_served_at_once():
    """subscribe does not wake a busy thread: its next wait must count the newcomer (a review
    found it waited the period of the listeners it had before, here 100 s)."""
    fakes.install([fakes.ScriptedMeter("cpu")], sample_hz=50)
    s = runtime.get().sampler
    in_slow = threading.Event()
    release = threading.Event()
    got_b = threading.Event()

    def slow(_sample):
        in_slow.set()
        release.wait(30)

    a = s.subscribe(slow, hz=0.01)  # a 100 s period
    assert in_slow.wait(10)
    b = s.subscribe(lambda _: got_b.set(), hz=4.0)  # while the thread is inside slow()
    release.set()
    try:
        assert got_b.wait(10), "a listener subscribed during a busy tick waited the old period"
    finally:
        s.unsubscribe(a)
        s.unsubscribe(b)
