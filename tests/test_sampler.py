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


def _counting_sampler() -> tuple[Sampler, list[int]]:
    """The runtime's sampler over one CPU meter that counts its reads (one item a read)."""
    reads: list[int] = []

    class Counted(fakes.ScriptedMeter):
        def energy_j(self):
            reads.append(1)
            return super().energy_j()

    fakes.install([Counted("cpu")], sample_hz=50)
    return runtime.get().sampler, reads


def test_a_delayed_listener_gone_before_its_start_costs_no_sample():
    """A cell's live stream starts 0.25 s in: a trivial cell that ends first makes the thread
    read no meter and call no listener (issue 14: a wake-up per cell cost a real kernel)."""
    s, reads = _counting_sampler()
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


def test_an_alarm_calls_once_on_the_thread_after_its_delay_and_never_once_disarmed():
    """Issue 14: a cell's live stream is started by one reusable alarm, not a subscription per
    cell; a run that ends first disarms it and nothing is called, read or left behind."""
    import time

    s, reads = _counting_sampler()
    alarm = s.alarm()
    called: list[str] = []
    for _ in range(50):  # fifty quick cells
        alarm.arm(lambda: called.append("early"), 30.0)
        alarm.disarm()
    assert called == [] and not alarm.armed and not s._listeners and reads == []
    fired = threading.Event()
    where: list[tuple[str, float]] = []
    t0 = time.monotonic()

    def call():
        where.append((threading.current_thread().name, time.monotonic()))
        fired.set()

    alarm.arm(call, 0.1)
    assert fired.wait(10), "an armed alarm was never called"
    assert where[0][0] == "carbonlab-sampler" and where[0][1] - t0 >= 0.1
    assert not alarm.armed and reads == []  # called once, and no meter read for it
    alarm.close()
    assert alarm not in s._alarms


def test_disarming_waits_for_a_call_in_progress():
    fakes.install([fakes.ScriptedMeter("cpu")], sample_hz=50)
    alarm = runtime.get().sampler.alarm()
    inside = threading.Event()
    release = threading.Event()
    done: list[str] = []

    def slow():
        inside.set()
        release.wait(30)
        done.append("made")

    alarm.arm(slow, 0.0)
    assert inside.wait(10)
    threading.Timer(0.05, release.set).start()
    alarm.disarm()  # returns only once the call that started has finished
    assert done == ["made"]
    alarm.close()


def test_an_alarm_wakes_a_thread_that_would_look_in_later(monkeypatch):
    """The thread is not woken for each arm while it looks in often enough; it is when it waits
    longer than the alarm (a far listener start), or sleeps (deep idle)."""
    import time

    from carbonlab import sampler as sampler_mod

    fakes.install([fakes.ScriptedMeter("cpu")], sample_hz=50)
    s = runtime.get().sampler
    far = s.subscribe(lambda _: None, delay_s=600.0)  # the thread waits for this one: 10 min
    alarm = s.alarm()
    fired = threading.Event()

    def waits_longer_than(seconds: float) -> bool:  # the thread is in its wait, not before it
        for _ in range(1000):
            if s._wake_at - time.monotonic() > seconds:
                return True
            threading.Event().wait(0.01)
        return False

    try:
        assert waits_longer_than(500), "the thread never waited for the far listener"
        alarm.arm(fired.set, 0.0)
        assert fired.wait(10), "an alarm due before the thread's next look-in waited for it"
    finally:
        s.unsubscribe(far)
    monkeypatch.setattr(sampler_mod, "LINGER_S", 0.0)  # nothing to linger for: deep idle
    s._last_activity = 0.0
    with s._cond:  # (an unsubscribe wakes nothing: the thread may still wait for `far`)
        s._cond.notify_all()
    deep = threading.Event()

    def watch():
        for _ in range(1000):
            if s._deep_idle:
                deep.set()
                return
            threading.Event().wait(0.01)

    threading.Thread(target=watch, daemon=True).start()
    assert deep.wait(30), "the thread never went to sleep"
    assert waits_longer_than(1e9), "the thread never began its sleep"
    fired.clear()
    alarm.arm(fired.set, 0.0)
    assert fired.wait(10), "an alarm armed while the thread slept never woke it"
    alarm.close()


def test_an_armed_alarm_keeps_the_sampler_from_counting_as_idle():
    """Unloading one shell's extension stops an idle sampler thread; another shell's run, whose
    live stream may still start, keeps it going (review of the alarm change)."""
    from carbonlab.jupyter.extension import _sampler_idle

    fakes.install([fakes.ScriptedMeter("cpu")], sample_hz=50)
    s = runtime.get().sampler
    alarm = s.alarm()
    assert _sampler_idle(s)
    alarm.arm(lambda: None, 600.0)
    assert not _sampler_idle(s)
    alarm.disarm()
    assert _sampler_idle(s)
    alarm.close()


def test_unused_knows_of_open_windows_and_listeners_only_where_it_counts_them():
    """Sampler.unused(): what a pytest run asks before it ends the runtime it made."""
    polled = Sampler([fakes.ScriptedMeter("ram", sample_period_s=1.0)], hz=4)
    try:
        assert polled.unused()
        polled.acquire_window()
        assert not polled.unused()
        polled.release_window()
        assert polled.unused()
        token = polled.subscribe(lambda sample: None, hz=4, delay_s=60)
        assert not polled.unused()
        polled.unsubscribe(token)
        assert polled.unused()
    finally:
        polled.stop()
    counters = Sampler([fakes.ScriptedMeter("cpu")], hz=4)  # windows are not counted: it can't know
    try:
        assert not counters.unused()
    finally:
        counters.stop()
