"""Core costs against the DESIGN.md budgets: window overhead, sampler CPU, import time.

Run: .venv/bin/python bench/bench_core.py   (prints medians; not a test, nothing here passes or fails)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time


def window_overhead(n: int = 20000) -> dict:
    import carbonlab
    from carbonlab import runtime

    rt = runtime.get()
    with carbonlab.track():  # first window: opens meters and tables
        pass
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        with carbonlab.track():
            pass
        samples.append(time.perf_counter_ns() - t0)
    meters = ", ".join(f"{m.kind}:{m.method}" for m in rt.meter_set.meters)
    return {
        "median_us": statistics.median(samples) / 1000,
        "p90_us": sorted(samples)[int(n * 0.9)] / 1000,
        "n": n,
        "meters": meters,
    }


def first_window_in_fresh_process(repeat: int = 7) -> float:
    code = (
        "import time; t=time.perf_counter(); import carbonlab\n"
        "with carbonlab.track(): pass\n"
        "print(time.perf_counter()-t)"
    )
    runs = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(repeat)]
    return statistics.median(runs) * 1000


def import_time(repeat: int = 11) -> float:
    code = "import time; t=time.perf_counter(); import carbonlab; print(time.perf_counter()-t)"
    runs = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(repeat)]
    return statistics.median(runs) * 1000


def _thread_cpu_s(native_id: int) -> float:
    # schedstat's first field is the thread's time on CPU in ns (stat's utime is in 10 ms ticks)
    with open(f"/proc/self/task/{native_id}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def sampler_cpu(seconds: float = 10.0, hz: float = 4.0) -> dict:
    from carbonlab import config, runtime

    runtime.reset()
    rt = runtime.get()
    rt.sampler.hz = hz
    n = [0]
    token = rt.sampler.subscribe(lambda s: n.__setitem__(0, n[0] + 1), hz=hz)
    time.sleep(0.2)
    th = next(t for t in threading.enumerate() if t.name == "carbonlab-sampler")
    c0, t0 = _thread_cpu_s(th.native_id), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = _thread_cpu_s(th.native_id), time.perf_counter()
    rt.sampler.unsubscribe(token)
    cpu_ms_per_s = (c1 - c0) * 1000 / (t1 - t0)
    del config
    return {
        "hz": hz,
        "samples": n[0],
        "cpu_ms_per_s": cpu_ms_per_s,
        "pct_of_core": cpu_ms_per_s / 10,
    }


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    imp = import_time()
    print(f"import carbonlab: median {imp:.1f} ms (budget <= 100 ms)")
    first = first_window_in_fresh_process()
    print(f"import + first window in a fresh process: median {first:.1f} ms (goal <= 50 ms)")
    w = window_overhead()
    print(
        f"window overhead: median {w['median_us']:.1f} us, p90 {w['p90_us']:.1f} us over {w['n']} "
        f"windows [{w['meters']}] (budget <= 100 us)"
    )
    s = sampler_cpu()
    print(
        f"sampler at {s['hz']:.0f} Hz: {s['cpu_ms_per_s']:.2f} CPU-ms per s = {s['pct_of_core']:.3f} % of a core "
        f"({s['samples']} samples; budget <= 0.5 % of a core, <= 5 CPU-ms/s)"
    )


if __name__ == "__main__":
    main()
