"""The process CPU-time model: real CPU burned here, the TDP table, cgroup quotas."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import pytest

from carbonlab import clock
from carbonlab.config import Settings
from carbonlab.measurement import METHOD_CPU_MODEL, SCOPE_PROCESS
from carbonlab.meters import cpu


def burn(cpu_s: float) -> None:
    """Spend about ``cpu_s`` CPU-seconds in this thread (bounded: gives up after 50 M iterations)."""
    start = time.process_time()
    for i in range(50_000_000):
        if i % 10_000 == 0 and time.process_time() - start >= cpu_s:
            return


def test_energy_is_cpu_seconds_of_this_process_times_w_per_core():
    m = cpu.open_meter(Settings(cpu_w_per_core=10.0))
    assert (m.kind, m.device, m.method, m.scope) == ("cpu", "cpu", METHOD_CPU_MODEL, SCOPE_PROCESS)
    assert m.params["source"] == "configured" and m.params["w_per_core"] == 10.0
    c0 = time.process_time()
    e0 = m.energy_j()
    burn(0.2)
    e1 = m.energy_j()
    c1 = time.process_time()
    assert c1 - c0 >= 0.2
    # CLOCK_PROCESS_CPUTIME_ID is an independent reading of the same scheduler runtime.
    assert (e1 - e0) / 10.0 == pytest.approx(c1 - c0, abs=0.005)


@pytest.mark.skipif(not hasattr(os, "waitid"), reason="needs waitid(WNOWAIT)")
def test_children_count_once_reaped():
    m = cpu.open_meter(Settings(cpu_w_per_core=1.0))
    child = (
        "import time\n"
        "t = time.process_time(); x = 0\n"
        "while time.process_time() - t < 0.3: x += 1\n"
        "print(time.process_time())\n"
    )
    e0 = m.energy_j()
    own0 = time.process_time()
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    child_cpu = float(proc.stdout.read())
    e_exited = m.energy_j()
    own1 = time.process_time()
    proc.wait()  # reaped: the kernel adds its CPU time to RUSAGE_CHILDREN
    e_reaped = m.energy_j()
    proc.stdout.close()
    assert child_cpu >= 0.3
    assert e_exited - e0 == pytest.approx(own1 - own0, abs=0.005)  # only our own CPU so far
    # the child's whole CPU time (its own report, plus interpreter start-up and exit)
    assert child_cpu <= e_reaped - e_exited <= child_cpu + 0.5


REAL_MODELS = [
    ("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", "Intel Xeon Gold 6148", 150.0),
    ("Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz", "Intel Xeon E5-2690 v4", 135.0),
    ("Intel(R) Xeon(R) Platinum 8480+", "Intel Xeon Platinum 8480+", 350.0),
    ("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", "Intel Xeon Platinum 8275CL", 240.0),
    ("Intel(R) Xeon(R) CPU Max 9480", "Intel Xeon CPU Max 9480", 350.0),
    ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "Intel Core i7-8700", 65.0),
    ("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", "Intel Core i7-1165G7", 28.0),
    ("13th Gen Intel(R) Core(TM) i9-13900K", "Intel Core i9-13900K", 125.0),
    ("Intel(R) Core(TM)2 Duo CPU     E8400  @ 3.00GHz", "Intel Core 2 Duo E8400", 65.0),
    ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763", 280.0),
    ("AMD EPYC 9654 96-Core Processor", "AMD EPYC 9654", 360.0),
    ("AMD EPYC 7B12", "AMD EPYC 7B12", 240.0),
    ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X", 105.0),
    ("AMD Ryzen 7 PRO 4750U with Radeon Graphics", "AMD Ryzen 7 PRO 4750U", 15.0),
    ("AMD Ryzen 7 7840U w/ Radeon 780M Graphics", "AMD Ryzen 7 7840U", 28.0),
    ("AMD Ryzen Threadripper PRO 5995WX 64-Cores", "AMD Ryzen Threadripper PRO 5995WX", 280.0),
    ("AMD FX(tm)-8350 Eight-Core Processor", "AMD FX-8350", 125.0),
]


@pytest.mark.parametrize(("model", "table_name", "tdp"), REAL_MODELS)
def test_tdp_lookup_of_real_cpuinfo_model_names(model, table_name, tdp):
    match = cpu.lookup_tdp(model)
    assert match is not None
    assert (match.name, match.tdp_w, match.rule) == (table_name, tdp, "exact")


def test_amd_rows_listed_without_vendor():
    match = cpu.lookup_tdp("AMD A10-9600P APU")  # the table's row: "7th Gen A10-9600P APU"
    assert match is not None
    assert (match.name, match.tdp_w, match.rule) == (
        "7th Gen A10-9600P APU",
        15.0,
        "without-vendor",
    )
    # strict: words it cannot explain are not guessed away
    assert cpu.lookup_tdp("AMD A10-9600P RADEON R5, 10 COMPUTE CORES 4C+6G") is None


@pytest.mark.parametrize(
    "model",
    [
        "Intel(R) Xeon(R) CPU @ 2.20GHz",  # GCP hides the model
        "Intel(R) Xeon(R) Processor",
        "AMD EPYC Processor",
        "QEMU Virtual CPU version 2.5+",
        "Intel(R) Core(TM)2 Quad CPU Q6600 @ 2.40GHz",  # two table rows, 95 W and 105 W: ambiguous
        "",
    ],
)
def test_tdp_lookup_refuses_to_guess(model):
    assert cpu.lookup_tdp(model) is None


def cpuinfo_text(model: str, packages: int, cores: int, threads: int, vm: bool = False) -> str:
    blocks = []
    n = 0
    flags = "fpu vme sse2 ht" + (" hypervisor" if vm else "")
    for p in range(packages):
        for c in range(cores):
            for _ in range(threads):
                blocks.append(
                    f"processor\t: {n}\nmodel name\t: {model}\nphysical id\t: {p}\n"
                    f"siblings\t: {cores * threads}\ncore id\t\t: {c}\ncpu cores\t: {cores}\n"
                    f"flags\t\t: {flags}\n"
                )
                n += 1
    return "\n".join(blocks)


def test_w_per_core_is_tdp_over_physical_cores_of_one_package(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo_text("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", 2, 20, 2))
    info = cpu.read_cpuinfo(str(path))
    assert (info.packages, info.cores_per_package, info.logical_cpus) == (2, 20, 80)
    m = cpu.open_meter(Settings(), cpuinfo_path=str(path), proc_root=str(tmp_path / "noproc"))
    assert m.params == {
        "w_per_core": 7.5,
        "source": "tdp-table",
        "cpu_model": "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
        "tdp_w": 150.0,
        "tdp_table_name": "Intel Xeon Gold 6148",
        "cores": 20,
    }
    assert "150 W" in m.describe()["why"]


def test_virtual_machine_uses_the_default_and_says_why(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo_text("AMD EPYC 7B12", 1, 2, 2, vm=True))
    m = cpu.open_meter(Settings(), cpuinfo_path=str(path), proc_root=str(tmp_path / "noproc"))
    assert m.params["source"] == "default"
    assert m.params["w_per_core"] == cpu.DEFAULT_W_PER_CORE
    assert m.params["tdp_w"] == 240.0  # found, and shown, but not divided by 2 visible cores
    assert "virtual machine" in m.describe()["why"]


def test_configured_w_per_core_wins_over_the_table(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo_text("AMD EPYC 7763 64-Core Processor", 1, 64, 2))
    s = Settings(cpu_w_per_core=3.0)
    s.sources["cpu_w_per_core"] = "environment"
    m = cpu.open_meter(s, cpuinfo_path=str(path), proc_root=str(tmp_path / "noproc"))
    assert (m.params["w_per_core"], m.params["source"]) == (3.0, "configured")
    assert "environment" in m.describe()["why"]


def test_unknown_cpu_gets_the_stated_default(tmp_path):
    m = cpu.open_meter(
        Settings(), cpuinfo_path=str(tmp_path / "absent"), proc_root=str(tmp_path / "noproc")
    )
    assert m.params["source"] == "default" and m.params["w_per_core"] == cpu.DEFAULT_W_PER_CORE
    assert m.params["cpu_model"] is None and m.name == "CPU"


# -- cgroup quota ----------------------------------------------------------------------------------


def fake_proc(tmp_path, cgroup: str, mounts: list[tuple[str, str, str, str]]):
    """A /proc with self/cgroup and self/mountinfo; mounts are (root, mountpoint, fstype, opts)."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    lines = [
        f"{30 + i} 23 0:{40 + i} {root} {mnt} rw,nosuid - {fstype} cgroup {opts}"
        for i, (root, mnt, fstype, opts) in enumerate(mounts)
    ]
    (proc / "self" / "mountinfo").write_text("\n".join(lines) + "\n")
    return str(proc)


def test_cgroup_v2_tightest_quota_over_ancestors(tmp_path):
    cg = tmp_path / "cg"
    (cg / "a" / "b").mkdir(parents=True)
    (cg / "a" / "cpu.max").write_text("max 100000\n")
    (cg / "a" / "b" / "cpu.max").write_text("150000 100000\n")
    proc = fake_proc(tmp_path, "0::/a/b\n", [("/", str(cg), "cgroup2", "rw")])
    limit = cpu.cgroup_cpu_limit(proc)
    assert limit is not None and limit.cores == 1.5 and limit.burst_s == 0.0
    assert limit.path == str(cg / "a" / "b" / "cpu.max")
    (cg / "a" / "cpu.max").write_text("50000 100000\n")
    (cg / "a" / "cpu.max.burst").write_text("20000\n")
    limit = cpu.cgroup_cpu_limit(proc)
    assert (limit.cores, limit.burst_s) == (0.5, 0.02)


def test_cgroup_v2_unlimited(tmp_path):
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "cpu.max").write_text("max 100000\n")
    proc = fake_proc(tmp_path, "0::/\n", [("/", str(cg), "cgroup2", "rw")])
    assert cpu.cgroup_cpu_limit(proc) is None


def test_cgroup_v1_cfs_quota_in_a_container(tmp_path):
    # Docker without a cgroup namespace: /proc/self/cgroup names the host path, and the mount's root
    # is that same path, so the container sees its own cgroup at the mount point.
    mnt = tmp_path / "cpu,cpuacct"
    mnt.mkdir()
    (mnt / "cpu.cfs_quota_us").write_text("200000\n")
    (mnt / "cpu.cfs_period_us").write_text("100000\n")
    proc = fake_proc(
        tmp_path,
        "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
        [
            ("/docker/abc", str(mnt), "cgroup", "rw,cpu,cpuacct"),
            ("/docker/abc", str(tmp_path / "memory"), "cgroup", "rw,memory"),
        ],
    )
    limit = cpu.cgroup_cpu_limit(proc)
    assert limit is not None and limit.cores == 2.0
    (mnt / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu.cgroup_cpu_limit(proc) is None


def test_cgroup_hybrid_without_limits(tmp_path):
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    v2 = tmp_path / "unified"
    v2.mkdir()  # no cpu controller there: no cpu.max
    proc = fake_proc(
        tmp_path,
        "1:cpu:/\n0::/\n",
        [("/", str(v1), "cgroup", "rw,cpu"), ("/", str(v2), "cgroup2", "rw")],
    )
    assert cpu.cgroup_cpu_limit(proc) is None


def test_open_meter_records_the_quota(tmp_path):
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "cpu.max").write_text("250000 100000\n")
    proc = fake_proc(tmp_path, "0::/\n", [("/", str(cg), "cgroup2", "rw")])
    m = cpu.open_meter(Settings(cpu_w_per_core=5.0), proc_root=proc)
    assert m.params["cpu_limit_cores"] == 2.5
    assert m.params["w_per_core"] == 5.0  # the quota caps CPU-seconds; it never rescales W per core


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.fault("figures")
def test_quota_caps_counted_cpu_seconds(monkeypatch):
    now = FakeClock()
    monkeypatch.setattr(clock, "now", now)
    used = [50.0]  # CPU-seconds before open don't count
    m = cpu.CpuTimeMeter(
        name="test",
        params={"w_per_core": 2.0},
        limit=cpu.CpuLimit(cores=2.0, burst_s=0.5, path="cpu.max"),
        cpu_seconds=lambda: used[0],
    )
    now.t += 1.0
    used[0] += 1.5
    assert m.energy_j() == 3.0 and not m.notes  # within quota: 1.5 CPU-s × 2 W
    used[0] += (
        8.0  # a child reaped now brings 8 CPU-s: at most 2 CPUs × 1 s + 0.5 s burst is possible
    )
    assert m.energy_j() == pytest.approx((2.0 * 1.0 + 0.5) * 2.0)
    assert "cgroup quota" in m.notes[0]
    now.t += 10.0  # later, the time since open allows it all: nothing lost, counter monotonic
    assert m.energy_j() == pytest.approx(9.5 * 2.0)


@pytest.mark.fault("hardware")
@pytest.mark.parametrize("damage", ["corrupt-stream", "not-gzip", "empty", "directory"])
def test_a_damaged_kernel_config_gives_the_default_tick(tmp_path, damage):
    # Read at import of carbonlab.meters.cpu (a pytest session's start, a notebook's first window):
    # a damaged /proc/config.gz must not raise (a corrupt deflate stream is zlib.error, neither
    # OSError nor ValueError).
    import gzip

    path = tmp_path / "config.gz"
    good = gzip.compress(b"CONFIG_A=y\n" * 5000 + b"CONFIG_HZ=300\n")
    if damage == "corrupt-stream":
        bad = bytearray(good)
        bad[30:60] = b"\0" * 30
        path.write_bytes(bytes(bad))
    elif damage == "not-gzip":
        path.write_bytes(b"CONFIG_HZ=300 but not gzip")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.mkdir()
    assert cpu.scheduler_tick_s((str(path),)) == cpu.DEFAULT_TICK_S
    path2 = tmp_path / "plain-config"
    path2.write_text("CONFIG_HZ=300\n")
    assert cpu.scheduler_tick_s((str(path), str(path2))) == pytest.approx(1 / 300)  # the next path


@pytest.mark.fault("hardware")
def test_unreadable_cpu_time_stops_counting_without_raising():
    calls = [0.0]

    def cpu_seconds() -> float:
        if calls[0] >= 2.0:
            raise OSError("gone")
        calls[0] += 1.0
        return calls[0]

    m = cpu.CpuTimeMeter(name="t", params={"w_per_core": 1.0}, cpu_seconds=cpu_seconds)
    assert m.energy_j() == 1.0
    assert m.energy_j() == 1.0 and not m.alive and "unreadable" in m.notes[0]


@pytest.mark.fault("hardware")
def test_unreadable_cpu_time_on_the_usual_path_stops_counting_without_raising(monkeypatch):
    """The usual meter (process_cpu_seconds, no quota) reads getrusage itself: the same end."""
    from types import SimpleNamespace

    calls = []

    def rusage(who):
        calls.append(who)
        if len(calls) > 2:
            raise OSError("gone")
        return SimpleNamespace(ru_utime=0.0, ru_stime=0.0)

    times = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(cpu, "_getrusage", rusage)
    monkeypatch.setattr(cpu, "_process_time", lambda: next(times))
    m = cpu.CpuTimeMeter(name="t", params={"w_per_core": 2.0}, cpus=1)
    assert m._plain
    assert m.energy_j() == 2.0
    assert m.energy_j() == 2.0 and not m.alive and "unreadable" in m.notes[0]
    assert m.energy_j() == 2.0 and len(calls) == 3  # not read again


def _plain_meter(monkeypatch, own, kids=None):
    """The usual meter (no lock on its reads) over scripted counters: ``own`` process CPU
    seconds, ``kids`` (children's user, system) or none."""
    from types import SimpleNamespace

    own = iter(own)
    kids = iter(kids) if kids is not None else None

    def rusage(who):
        u, s = next(kids) if kids is not None else (0.0, 0.0)
        return SimpleNamespace(ru_utime=u, ru_stime=s)

    monkeypatch.setattr(cpu, "_process_time", lambda: next(own))
    monkeypatch.setattr(cpu, "_getrusage", rusage)
    m = cpu.CpuTimeMeter(name="t", params={"w_per_core": 1.0}, cpus=1)
    assert m._plain  # the path under test
    return m


@pytest.mark.parametrize("reader", ["opening thread", "another thread"])
def test_a_thread_is_never_given_less_than_it_was_given_before(monkeypatch, reader):
    """The opening thread reads the usual meter without its lock, any other under it; should the
    counters ever go back, either keeps the figure it was given."""
    import threading

    m = _plain_meter(monkeypatch, [1.0, 3.0, 2.0, 4.5])  # opened at 1.0 CPU-s
    got: list[float] = []
    read_three = lambda: got.extend([m.energy_j(), m.energy_j(), m.energy_j()])  # noqa: E731
    if reader == "opening thread":
        read_three()
    else:
        t = threading.Thread(target=read_three)
        t.start()
        t.join()
    assert got == [2.0, 2.0, 3.5]


@pytest.mark.fault("hardware")
def test_a_meter_that_stops_stops_at_the_largest_figure_any_thread_was_given(monkeypatch):
    """Two threads read the usual meter (no lock); the other thread was given 6 J, this one 2 J,
    when a read fails: both are given 6 J from then on (neither figure ever goes back)."""
    import threading

    m = _plain_meter(monkeypatch, [1.0, 2.0, 7.0, 3.0])
    assert m.energy_j() == 1.0
    other: list[float] = []
    t = threading.Thread(target=lambda: other.append(m.energy_j()))
    t.start()
    t.join()
    assert other == [6.0]
    assert m.energy_j() >= 2.0  # this thread's own figure (2 J), or the larger stored one
    assert m.energy_j() == 6.0 and not m.alive and "unreadable" in m.notes[0]  # counters gone
    t = threading.Thread(target=lambda: other.append(m.energy_j()))
    t.start()
    t.join()
    assert other == [6.0, 6.0] and len(m.notes) == 1


@pytest.mark.fault("hardware")
def test_two_threads_failing_at_once_say_so_once(monkeypatch):
    """The opening thread's read (no lock) fails while another thread's read (under the lock) is
    failing too, with another error: one note, the first to stop the meter."""
    import threading

    m = _plain_meter(monkeypatch, [1.0])
    main = threading.current_thread()
    entered, main_failing = threading.Event(), threading.Event()

    def rusage(who):
        if threading.current_thread() is not main:
            entered.set()
            assert main_failing.wait(10)
            raise OSError("EINTR")
        main_failing.set()
        raise OSError("EFAULT")

    monkeypatch.setattr(cpu, "_getrusage", rusage)
    other: list[float] = []
    t = threading.Thread(target=lambda: other.append(m.energy_j()))
    t.start()
    assert entered.wait(10)
    assert m.energy_j() == 0.0 and not m.alive
    t.join(10)
    assert other == [0.0]
    assert m.notes == ["CPU time unreadable (EINTR); the CPU model stopped counting"]


def test_reads_are_cheap():
    m = cpu.open_meter(Settings())
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        m.energy_j()
        times.append(time.perf_counter() - t)
    assert statistics.median(times) < 25e-6


def _text_reader_hz(path):
    """scheduler_tick's reading as it was written (gzip module, text lines), for one path: the
    tick's figure, or None where it went on to the next path."""
    import gzip
    import re

    try:
        if path.endswith(".gz"):
            f = gzip.open(path, "rt", encoding="ascii", errors="replace")  # noqa: SIM115
        else:
            f = open(path, encoding="ascii", errors="replace")  # noqa: SIM115
        with f:
            for line in f:
                if line.startswith("CONFIG_HZ="):
                    m = re.match(r"CONFIG_HZ=(\d+)$", line.strip())
                    if m and int(m.group(1)) > 0:
                        return m.group(1)
                    break
    except Exception:
        return None
    return None


_FILLER = b"".join(b"CONFIG_OPTION_%d=y\n" % i for i in range(3000))


@pytest.mark.parametrize(
    "content",
    [
        _FILLER + b"CONFIG_HZ=300\n" + _FILLER,
        b"CONFIG_HZ=100\n",
        b"CONFIG_HZ=100",  # no end of line
        _FILLER + b"CONFIG_HZ=1000",
        _FILLER + b"# CONFIG_HZ=100 is not set\nCONFIG_HZ=250\n",
        b"XCONFIG_HZ=100\nCONFIG_HZ=250\n",
        b"CONFIG_HZ_250=y\nCONFIG_HZ=250\n",
        b"CONFIG_HZ=abc\nCONFIG_HZ=250\n",  # the first such line decides
        b"CONFIG_HZ=0\n",
        b"CONFIG_HZ=-5\n",
        b"CONFIG_HZ=\n",
        b"CONFIG_HZ=2 50\n",
        b"CONFIG_HZ=250 \t\n",
        b"CONFIG_HZ=250\xc2\xa0\n",  # not whitespace once decoded as ASCII
        b"CONFIG_HZ=\xd9\xa3\n",  # an Arabic-Indic digit in UTF-8: no ASCII digit
        b"CONFIG_A=y\r\nCONFIG_HZ=300\r\n",
        b"CONFIG_A=y\rCONFIG_HZ=300\rCONFIG_B=y\r",
        b"CONFIG_A=y\x0cCONFIG_HZ=300\n",  # a form feed is no line break here
        b"\xff\xfe" + _FILLER + b"CONFIG_HZ=300\n",
        _FILLER,  # none
        b"",
    ],
)
@pytest.mark.parametrize("form", ["gzip", "plain", "two-members", "truncated"])
def test_kernel_config_is_read_as_the_text_reader_read_it(tmp_path, content, form):
    """The tick from the bytes (zlib, no gzip module, no ASCII codec) is the one the gzip module's
    text lines gave, for every shape of line, in every form of file."""
    import gzip

    if form == "plain":
        path = tmp_path / "config"
        path.write_bytes(content)
    else:
        path = tmp_path / "config.gz"
        if form == "gzip":
            path.write_bytes(gzip.compress(content))
        elif form == "two-members":
            half = len(content) // 2
            path.write_bytes(gzip.compress(content[:half]) + gzip.compress(content[half:]))
        else:
            path.write_bytes(gzip.compress(content)[:-12])  # the stream's end and trailer lost
    expected = _text_reader_hz(str(path))
    got = cpu.scheduler_tick((str(path),))
    if expected is None:
        assert got[0] == cpu.DEFAULT_TICK_S and got[1].startswith("assumed")
    else:
        assert got == (1 / int(expected), f"CONFIG_HZ={expected} in {path}")


def test_this_machines_kernel_config_gives_the_text_readers_tick():
    import os

    paths = ("/proc/config.gz", f"/boot/config-{os.uname().release}")
    expected = next((hz for hz in map(_text_reader_hz, paths) if hz is not None), None)
    got = cpu.scheduler_tick()
    assert got[0] == (1 / int(expected) if expected else cpu.DEFAULT_TICK_S)


@pytest.mark.parametrize(
    "content", [b"max 100000\n", b"50000 100000\r\n", b" 1\r2 \n", b"\xff 3\n", b""]
)
def test_cgroup_files_are_read_as_ascii_text(tmp_path, content):
    path = tmp_path / "cpu.max"
    path.write_bytes(content)
    with open(path, encoding="ascii", errors="replace") as f:
        expected = f.read().strip()
    assert cpu._read(str(path)) == expected
    assert cpu._read(str(tmp_path / "missing")) is None


def test_read_bytes_reads_what_a_binary_file_object_reads(tmp_path):
    """carbonlab.meters.read_bytes (os.open and os.read, for the sysfs and procfs files a meter
    opens) gives open(path, "rb").read()'s bytes, and raises the same error where that raises."""
    from carbonlab.meters import read_bytes

    def via_file(path):
        with open(path, "rb") as f:
            return f.read()

    for i, content in enumerate([b"", b"0x10de\n", bytes(range(256)) * 700, b"x" * 65536]):
        path = tmp_path / f"f{i}"
        path.write_bytes(content)
        assert read_bytes(str(path)) == via_file(path) == content
    for path in ["/proc/self/mountinfo", "/proc/self/cgroup"]:
        try:
            expected = via_file(path)
        except OSError:
            continue
        assert read_bytes(path) == expected
    for path in [tmp_path, tmp_path / "missing", tmp_path / "f0" / "below-a-file"]:
        with pytest.raises(OSError) as by_file:
            via_file(path)
        with pytest.raises(type(by_file.value)):
            read_bytes(str(path))


@pytest.mark.parametrize("pad", [0, 8190, 8191, 8192])
def test_cpuinfo_is_read_as_a_utf8_text_file_reads_it(tmp_path, pad):
    """read_cpuinfo decodes the bytes itself: the same text as open(encoding="utf-8",
    errors="replace") with universal newlines, also where an invalid or split UTF-8 sequence or a
    CR LF falls on the text reader's 8 KiB chunk boundary."""
    raw = (
        b"processor\t: 0\r\n"
        + b"x" * pad
        + b": y\r\nmodel name\t: Intel\xc3(R) \xe2\x84\xa2 \xffCore\r"
        b"cpu cores\t: 4\r\r\nphysical id\t: 0\ncore id\t: 1\n\nprocessor\t: 1\r\n"
        b"physical id\t: 0\ncore id\t: 2\nflags\t: fpu hypervisor\xe2\x84\n"
    )
    path, clean = tmp_path / "cpuinfo", tmp_path / "clean"
    path.write_bytes(raw)
    with open(path, encoding="utf-8", errors="replace") as f:
        clean.write_bytes(f.read().encode("utf-8"))
    got = cpu.read_cpuinfo(str(path))
    assert got == cpu.read_cpuinfo(str(clean))
    assert got.packages == 1 and got.cores_per_package == 2 and got.virtualised is False
    assert cpu.read_cpuinfo(str(tmp_path)) == cpu.read_cpuinfo(str(tmp_path / "missing"))


def test_importing_the_cpu_meter_imports_neither_gzip_nor_the_ascii_codec():
    import subprocess
    import sys

    code = (
        "import sys; import carbonlab.meters.cpu as c; c.cgroup_cpu_limit(); "
        "print(sorted(m for m in ('gzip', 'encodings.ascii') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _normalise_with_every_pattern(name):
    """normalise_cpu_name as it was written: all seven patterns applied to every name."""
    import re

    s = re.sub(r"\((?:r|tm|c)\)|®|™", "", name, flags=re.IGNORECASE).casefold()
    s = " ".join(s.split())
    s = re.sub(r"^\d+(?:st|nd|rd|th) gen ", "", s)
    s = re.sub(r"\([^)]*\)", " ", s)
    s = re.sub(r"@.*$|\b\d+(?:\.\d+)?\s*[gm]hz\b", " ", s)
    s = re.sub(r"\s(?:with|w/)\s.*$", "", s)
    s = re.sub(r"\b(?:\d+|dual|triple|quad|six|eight|ten|twelve|sixteen)-cores?\b", " ", s)
    s = re.sub(r"\b(?:cpu|processor)\b", " ", s)
    s = s.replace("core2 ", "core 2 ")
    return " ".join(s.split()).strip(" ,")


def test_normalising_applies_only_the_patterns_that_can_match_with_the_same_result():
    """Every name of the TDP table and a set of /proc/cpuinfo spellings: normalise_cpu_name (string
    methods, each step only where its pattern's literal part occurs) gives what applying all seven
    patterns gave."""
    lines, _ = cpu._tdp_lines()
    names = [line.rsplit(",", 1)[0].strip('"') for line in lines]
    names += [
        "Intel(R) Xeon(R) Processor",
        "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
        "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz",
        "AMD Ryzen 7 PRO 4750U with Radeon Graphics",
        "AMD Ryzen 5 3500U w/ Radeon Vega Mobile Gfx",
        "AMD EPYC 7763 64-Core Processor",
        "AMD Ryzen Threadripper PRO 5995WX 64-Cores",
        "AMD FX(tm)-8350 Eight-Core Processor",
        "Intel(R) Core(TM)2 Duo CPU     E8400  @ 3.00GHz",
        "Intel® Core™ i9-13900K",
        "INTEL(TM) (c) ÇPU 3 GHZ",
        "Apple M2 Max",
        "ARMv8 Processor rev 1 (v8l)",
        "Genuine Intel(R) CPU 0000 @ 2.00GHz",
        "Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz",
        "1st gen something",
        "",
    ]
    assert len(names) > 4000
    for name in names:
        assert cpu.normalise_cpu_name(name) == _normalise_with_every_pattern(name), name


_FUZZ_WORDS = (  # "|" between pieces
    "®|™|٣|²|Ç|İ|ß|\u00a0|\u2028|\u212a|R|T|M|C|G|H"
    "|(r)|(R)|(tm)|(Tm)|(c)|@| @ |ghz|mhz|GHz| with | w/ |with|w/|-core|-cores|8-core"
    "|64-Cores|quad-core|sixteen-core|six|ten|1st gen |11th gen |2nd|cpu|processor"
    "|CPU|Processor|core2 |2.40|1.2.5|3 |x|_|.|  |٣"
)
_FUZZ_PIECES = [*"0123456789abcdeghimnoprstuwxz().@/-_ ,\t\n", *_FUZZ_WORDS.split("|")]


def test_normalising_without_patterns_gives_the_patterns_result_on_random_names():
    """normalise_cpu_name uses string methods, not the seven patterns: on random strings made of
    the pieces each pattern looks for (and Unicode digits, spaces and letters that case-fold or
    lower oddly), it gives what the patterns give."""
    import random

    rng = random.Random(16)
    for _ in range(20_000):
        name = "".join(rng.choice(_FUZZ_PIECES) for _ in range(rng.randint(0, 12)))
        assert cpu.normalise_cpu_name(name) == _normalise_with_every_pattern(name), name


def test_the_character_classes_the_normaliser_relies_on_are_re_s():
    """\\d, \\w and \\s of re are str.isdecimal, str.isalnum or "_", and str.isspace, on every code
    point; and only ASCII r, t, m, c match those letters ignoring case."""
    import re
    import sys

    every = "".join(chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i < 0xE000)
    assert re.findall(r"\d", every) == [c for c in every if c.isdecimal()]
    assert re.findall(r"\w", every) == [c for c in every if c.isalnum() or c == "_"]
    assert re.findall(r"\s", every) == [c for c in every if c.isspace()]
    for letter in "rtmc":
        assert re.findall(letter, every, flags=re.IGNORECASE) == [letter.upper(), letter]


def test_lookup_without_a_digit_answers_as_the_table_lookup_without_importing_it():
    """cpu.lookup_tdp answers None for a name whose case-folded characters hold no digit, without
    importing carbonlab.meters._tdp: the table lookup (_tdp.lookup_tdp) answers the same for every
    name of the table, cpuinfo spellings and random names."""
    import random

    from carbonlab.meters import _tdp

    lines, _ = _tdp._tdp_lines()
    names = [line.rsplit(",", 1)[0].strip('"') for line in lines]
    names += ["Intel(R) Xeon(R) Processor", "Intel(R) Xeon(R) CPU", "AMD EPYC Processor", "٣", "²"]
    rng = random.Random(17)
    names += [
        "".join(rng.choice(_FUZZ_PIECES) for _ in range(rng.randint(0, 8))) for _ in range(3000)
    ]
    for name in names:
        # case folding is one character at a time: a name's part folds into the fold's part
        assert "".join(ch.casefold() for ch in name) == name.casefold()
        assert cpu.lookup_tdp(name) == _tdp.lookup_tdp(name), name
    assert cpu.lookup_tdp("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz").tdp_w == 150.0
    assert cpu.TdpMatch is _tdp.TdpMatch and cpu.normalise_cpu_name is _tdp.normalise_cpu_name
    with pytest.raises(AttributeError):
        cpu.no_such_name  # noqa: B018


def test_a_cpu_without_a_part_number_does_not_import_the_table_code():
    import subprocess
    import sys

    code = (
        "import sys; import carbonlab.meters.cpu as c; from carbonlab.config import Settings; "
        "c.choose_w_per_core(Settings(), c.CpuInfo('Intel(R) Xeon(R) Processor', 1, 2, 2, True)); "
        "print('carbonlab.meters._tdp' in sys.modules); "
        "from carbonlab.meters.cpu import normalise_cpu_name, TdpMatch; "
        "print('carbonlab.meters._tdp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("field", ["/sys/fs/cgroup", "/a\\040b", "/a\\134b\\011", "\\0", "\\"])
def test_mountinfo_fields_unescape_as_before(field):
    import re

    assert cpu._unescape(field) == re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def test_energy_j_reads_as_process_cpu_seconds_does(monkeypatch):
    """energy_j writes process_cpu_seconds() out when it is the meter's clock: the same figures,
    to the bit, as the meter given a copy of that function (the general path)."""
    from types import SimpleNamespace

    own = iter([1.0, 1.25, 1.2500001, 2.0, 2.0, 7.5] * 2)
    kids = iter([(0.5, 0.25), (0.5, 0.25), (0.75, 0.3), (0.75, 0.3), (3.0, 1.0), (3.0, 1.5)] * 2)

    def rusage(who):
        u, s = next(kids)
        return SimpleNamespace(ru_utime=u, ru_stime=s)

    monkeypatch.setattr(cpu, "_process_time", lambda: next(own))
    monkeypatch.setattr(cpu, "_getrusage", rusage)
    params = {"w_per_core": 3.3}

    def readings(cpu_seconds, plain):
        m = cpu.CpuTimeMeter(name="t", params=params, cpu_seconds=cpu_seconds, cpus=1)
        assert m._plain is plain  # the path under test
        return [m.energy_j() for _ in range(5)]

    fast = readings(cpu.process_cpu_seconds, True)
    general = readings(lambda: cpu.process_cpu_seconds(), False)  # not the function: called
    assert fast == general
    assert fast[-1] == (7.5 + 3.0 + 1.5 - (1.0 + 0.5 + 0.25)) * 3.3


@pytest.mark.parametrize("chunk", [1, 7, 4096, 8192, 1 << 20])
@pytest.mark.parametrize("form", ["gzip", "plain", "two-members"])
def test_kernel_config_tick_does_not_depend_on_the_read_size(tmp_path, monkeypatch, chunk, form):
    """The bytes are read _CHUNK at a time (4 KB: CONFIG_HZ is usually in the first one); any
    read size gives the text reader's figure, a line split across reads included."""
    import gzip

    content = _FILLER + b"CONFIG_A=y\r\nCONFIG_HZ=300\r\n" + _FILLER
    path = tmp_path / ("config" if form == "plain" else "config.gz")
    if form == "plain":
        path.write_bytes(content)
    elif form == "gzip":
        path.write_bytes(gzip.compress(content))
    else:
        half = len(_FILLER) + 15  # the second member starts inside CONFIG_HZ's line
        path.write_bytes(gzip.compress(content[:half]) + gzip.compress(content[half:]))
    monkeypatch.setattr(cpu, "_CHUNK", chunk)
    assert _text_reader_hz(str(path)) == "300"
    assert cpu.scheduler_tick((str(path),)) == (1 / 300, f"CONFIG_HZ=300 in {path}")
