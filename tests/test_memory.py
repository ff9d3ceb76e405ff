"""The RAM model: resident memory read cheaply, integrated as a trapezoid."""

from __future__ import annotations

import statistics
import sys
import time

import psutil
import pytest

from carbonlab import clock
from carbonlab.config import Settings
from carbonlab.measurement import METHOD_RAM_MODEL, SCOPE_PROCESS
from carbonlab.meters import memory

GB = memory.GB


class FakeClock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def test_labels_and_params():
    m = memory.open_meter(Settings(ram_w_per_gb=0.5))
    assert (m.kind, m.device, m.method, m.scope) == ("ram", "ram", METHOD_RAM_MODEL, SCOPE_PROCESS)
    assert m.params == {"w_per_gb": 0.5}
    assert m.sample_period_s == memory.SAMPLE_PERIOD_S
    m.close()


def test_rss_reader_agrees_with_psutil_and_sees_an_allocation():
    read = memory.rss_reader()
    before = read()
    assert before == pytest.approx(psutil.Process().memory_info().rss, rel=0.05)
    block = bytearray(64 * 2**20)  # zero-filled: every page touched, so resident
    after = read()
    assert after - before >= 60 * 2**20
    del block
    getattr(read, "close", lambda: None)()


def test_trapezoid_between_reads(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr(clock, "now", now)
    rss = [1 * GB]
    m = memory.RamModelMeter(0.375, lambda: rss[0])
    assert m.energy_j() == 0.0
    now.t += 10.0
    rss[0] = 3 * GB  # 1 GB -> 3 GB over 10 s: 2 GB on average
    assert m.energy_j() == pytest.approx(2 * 0.375 * 10)
    assert m.power_w() == pytest.approx(3 * 0.375)
    now.t += 4.0  # flat at 3 GB
    assert m.energy_j() == pytest.approx(7.5 + 3 * 0.375 * 4)
    assert m.energy_j() == pytest.approx(7.5 + 4.5)  # no time passed, nothing added


@pytest.mark.fault("hardware")
def test_unreadable_rss_stops_counting_without_raising(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr(clock, "now", now)
    rss = [GB]
    m = memory.RamModelMeter(1.0, lambda: rss[0] if rss else 1 // 0)
    now.t += 2.0
    assert m.energy_j() == 2.0
    rss.clear()
    now.t += 2.0
    assert m.energy_j() == 2.0 and not m.alive and "unreadable" in m.notes[0]


def test_close_keeps_the_last_value():
    m = memory.open_meter(Settings())
    e = m.energy_j()
    m.close()
    assert m.energy_j() == e


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs")
def test_statm_reader_reopens_after_fork():
    read = memory._Statm()
    first = read()
    read.pid = -1  # as a forked child sees it: the descriptor belongs to another process
    assert read() == pytest.approx(first, rel=0.05)
    read.close()


def test_psutil_fallback_without_procfs(monkeypatch):
    def no_procfs(*a, **k):
        raise OSError("no /proc")

    monkeypatch.setattr(memory, "_Statm", no_procfs)
    read = memory.rss_reader()
    assert read() == pytest.approx(psutil.Process().memory_info().rss, rel=0.05)


def test_reads_are_cheap():
    m = memory.open_meter(Settings())
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        m.energy_j()
        times.append(time.perf_counter() - t)
    m.close()
    assert statistics.median(times) < 25e-6


def test_close_reads_reuse_the_last_size_and_polls_always_read(monkeypatch):
    from carbonlab import clock
    from carbonlab.meters.memory import GB, REREAD_S, RamModelMeter

    t = [100.0]
    monkeypatch.setattr(clock, "now", lambda: t[0])
    sizes = [1 * GB, 3 * GB]
    reads = []

    def rss():
        reads.append(t[0])
        return sizes[min(len(reads) - 1, 1)]

    m = RamModelMeter(0.5, rss)  # reads 1 GB at open
    t[0] += REREAD_S / 2
    e1 = m.energy_j()  # too soon: no read, 1 GB held
    assert len(reads) == 1 and e1 == pytest.approx(1 * 0.5 * (REREAD_S / 2))
    t[0] += 1.0
    m.poll()  # a poll reads: 3 GB now, trapezoid from the last step
    assert len(reads) == 2
    assert m.energy_j() == pytest.approx(e1 + (1 + 3) / 2 * 0.5 * 1.0)


def test_energy_j_gives_advance_s_figures(monkeypatch):
    """energy_j writes out _advance(force=False)'s usual case (a read too soon after the last
    one): every reading, too soon or not, equals what _advance gives from the same state."""
    from carbonlab.meters.memory import REREAD_S, RamModelMeter

    steps = [REREAD_S / 3, REREAD_S / 3, 0.0, REREAD_S * 2, REREAD_S / 2, 1.0, REREAD_S * 0.99]

    def run(read) -> list[float]:
        sizes = iter([1 * GB, 2 * GB, 5 * GB, 3 * GB, 4 * GB, 2 * GB, 6 * GB, 1 * GB])
        t = [100.0]
        monkeypatch.setattr(clock, "now", lambda: t[0])
        m = RamModelMeter(0.5, lambda: next(sizes))
        out = []
        for dt in steps:
            t[0] += dt
            out.append(read(m))
        return out

    fast = run(lambda m: m.energy_j())
    general = run(lambda m: m._advance(force=False))
    assert fast == general
    assert fast[0] == pytest.approx(1 * 0.5 * (REREAD_S / 3))  # too soon: no read, 1 GB held
