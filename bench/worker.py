"""The measuring half of the suite: ``python -m bench.worker TASK ARGS.json OUT.json``.

Each task runs in its own process (the peers' venv for side-by-side tasks, the project's for
carbonlab alone) and writes raw samples as JSON; bench/__main__.py turns them into statistics.
Only the standard library is imported at the top, so a task's process holds nothing it did not ask
for.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

NS = 1e-9


def _cc_tracker(**kw: Any) -> Any:
    """codecarbon's offline tracker: a fixed country, no file, no API, quiet."""
    from codecarbon import OfflineEmissionsTracker

    kw.setdefault("log_level", "error")
    return OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, **kw)


def _interleave(
    blocks: dict[str, Callable[[int], list[float]]], sizes: dict[str, int], rounds: int
) -> dict[str, list[list[float]]]:
    from bench.common import interleave

    return interleave(blocks, sizes, rounds)


# ---- each later measured region -------------------------------------------------------------


def task_regions(a: dict[str, Any]) -> dict[str, Any]:
    import carbonlab

    def cl(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            with carbonlab.track():
                pass
            out.append((time.perf_counter_ns() - t0) * NS)
        return out

    blocks: dict[str, Callable[[int], list[float]]] = {"carbonlab": cl}
    sizes = {"carbonlab": a["n_carbonlab"]}
    if a["peers"]:
        task_tracker = _cc_tracker()

        def cc_tracker(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                t = _cc_tracker()
                t.start()
                t.stop()
                out.append((time.perf_counter_ns() - t0) * NS)
            return out

        def cc_startstop(n: int) -> list[float]:
            trackers = [_cc_tracker() for _ in range(n)]  # made outside the timed span
            out = []
            for t in trackers:
                t0 = time.perf_counter_ns()
                t.start()
                t.stop()
                out.append((time.perf_counter_ns() - t0) * NS)
            return out

        def cc_task(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                task_tracker.start_task()
                task_tracker.stop_task()
                out.append((time.perf_counter_ns() - t0) * NS)
            return out

        blocks.update(
            {
                "codecarbon tracker": cc_tracker,
                "codecarbon start/stop": cc_startstop,
                "codecarbon task": cc_task,
            }
        )
        sizes.update(
            {
                "codecarbon tracker": a["n_tracker"],
                "codecarbon start/stop": a["n_tracker"],
                "codecarbon task": a["n_task"],
            }
        )
    from carbonlab import runtime

    meters = [f"{m.kind}:{m.method}" for m in runtime.get().meter_set.meters]
    return {"samples": _interleave(blocks, sizes, a["rounds"]), "meters": meters}


# ---- per notebook cell ----------------------------------------------------------------------


def task_cells(a: dict[str, Any]) -> dict[str, Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    em = ip.extension_manager

    def cells(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            ip.run_cell("pass", store_history=True)
            out.append((time.perf_counter_ns() - t0) * NS)
        return out

    def with_carbonlab(n: int) -> list[float]:
        em.load_extension("carbonlab")  # automatic mode, as %load_ext carbonlab leaves it
        try:
            return cells(n)
        finally:
            from carbonlab import store

            # Untimed: the history writer, which writes once cells pause, writes this block's
            # rows here rather than during the next block (another configuration's).
            store.flush_all(timeout=30)
            em.unload_extension("carbonlab")

    def hooked(pre: Callable[..., None], post: Callable[..., None]) -> Callable[[int], list[float]]:
        def run(n: int) -> list[float]:
            ip.events.register("pre_run_cell", pre)
            ip.events.register("post_run_cell", post)
            try:
                return cells(n)
            finally:
                ip.events.unregister("pre_run_cell", pre)
                ip.events.unregister("post_run_cell", post)

        return run

    from carbonlab.window import Window

    windows: list[Any] = []
    edges: list[float] = []  # begin + end of each core window, timed inside the hooks

    def core_pre(info: Any = None) -> None:
        t0 = time.perf_counter_ns()
        windows.append(Window("cell").begin())
        edges.append((time.perf_counter_ns() - t0) * NS)

    def core_post(result: Any = None) -> None:
        t0 = time.perf_counter_ns()
        windows.pop().end()
        edges[-1] += (time.perf_counter_ns() - t0) * NS

    blocks: dict[str, Callable[[int], list[float]]] = {
        "no measurement": cells,
        "carbonlab": with_carbonlab,
        # the core alone, from the same hooks: what the Jupyter layer adds is the difference
        "carbonlab core window only": hooked(core_pre, core_post),
    }
    sizes = {k: a["n_cells"] for k in blocks}
    if a["peers"]:
        task_tracker = _cc_tracker()
        box: list[Any] = []

        def tracker_pre(info: Any = None) -> None:
            t = _cc_tracker()
            t.start()
            box.append(t)

        def tracker_post(result: Any = None) -> None:
            box.pop().stop()

        blocks["codecarbon task"] = hooked(
            lambda info=None: task_tracker.start_task(),
            lambda result=None: task_tracker.stop_task(),
        )
        blocks["codecarbon tracker"] = hooked(tracker_pre, tracker_post)
        sizes["codecarbon task"] = a["n_cells"]
        sizes["codecarbon tracker"] = a["n_tracker_cells"]
    samples = _interleave(blocks, sizes, a["rounds"])
    # what the extension did: it measured every cell of its blocks and showed nothing
    from carbonlab.jupyter import extension

    em.load_extension("carbonlab")
    ext = extension.get(ip)
    ip.run_cell("pass")
    shown = bool(ext.last and getattr(ext.last, "show", False))
    measured = ext.last is not None and ext.last.measurement is not None
    em.unload_extension("carbonlab")
    return {
        "samples": samples,
        "core_edges_s": statistics.median(edges) if edges else None,
        "last_cell_measured": measured,
        "last_cell_shown": shown,
    }


# ---- background sampling --------------------------------------------------------------------


def task_sampler(a: dict[str, Any]) -> dict[str, Any]:
    """CPU time of the whole process while its main thread sleeps: the background threads' cost."""
    seconds, warm = a["seconds"], a["warm"]
    ticks = [0]
    if a["tool"] == "carbonlab":
        from carbonlab import runtime

        rt = runtime.get()
        rt.sampler.hz = 4.0
        token = rt.sampler.subscribe(lambda s: ticks.__setitem__(0, ticks[0] + 1), hz=4.0)
        stop: Callable[[], None] = lambda: rt.sampler.unsubscribe(token)  # noqa: E731
        meters = [f"{m.kind}:{m.method}" for m in rt.meter_set.meters]
    elif a["tool"] == "codecarbon":
        tracker = _cc_tracker()
        tracker.start()
        stop = tracker.stop
        meters = []
    elif a["tool"] == "control":
        # A do-nothing Python thread waking at 4 Hz: what a wake-up itself costs on this machine
        # now (it varies severalfold with the host's load), to read the two tools' figures against.
        import threading

        done = threading.Event()

        def idle() -> None:
            while not done.wait(0.25):
                ticks[0] += 1

        threading.Thread(target=idle, daemon=True).start()
        stop = done.set
        meters = []
    else:
        stop = lambda: None  # noqa: E731
        meters = []
    time.sleep(warm)
    t0, c0, n0 = time.perf_counter(), time.process_time(), ticks[0]
    time.sleep(seconds)
    t1, c1, n1 = time.perf_counter(), time.process_time(), ticks[0]
    stop()
    return {
        "cpu_ms_per_s": (c1 - c0) * 1000 / (t1 - t0),
        "wall_s": t1 - t0,
        "samples": n1 - n0,
        "meters": meters,
    }


# ---- CPU model spread -----------------------------------------------------------------------


def _work(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def task_cpu_model(a: dict[str, Any]) -> dict[str, Any]:
    import subprocess

    import carbonlab

    # one loop length for every run: about a["loop_s"] of CPU on this machine, measured once
    t0 = time.process_time()
    _work(200_000)
    per = (time.process_time() - t0) / 200_000
    n = max(10_000, int(a["loop_s"] / max(per, 1e-9)))

    def cl() -> float:
        with carbonlab.track() as m:
            _work(n)
        return sum(c.energy_j for c in m.components if c.kind == "cpu")

    tools: dict[str, Callable[[], float]] = {"carbonlab": cl}
    if a["peers"]:

        def cc(mode: str) -> Callable[[], float]:
            def run() -> float:
                t = _cc_tracker(tracking_mode=mode)
                t.start()
                _work(n)
                t.stop()
                return t.final_emissions_data.cpu_energy * 3.6e6

            return run

        tools["codecarbon (default, machine mode)"] = cc("machine")
        tools["codecarbon (process mode)"] = cc("process")
    for fn in tools.values():  # warm-up: codecarbon's first tracker detects the hardware
        fn()
    out: dict[str, dict[str, list[float]]] = {k: {"alone": [], "loaded": []} for k in tools}
    wall: dict[str, list[float]] = {"alone": [], "loaded": []}
    for cond in ("alone", "loaded"):
        loader = None
        if cond == "loaded":
            loader = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.3)
        try:
            for _ in range(a["runs"]):
                for name, fn in tools.items():
                    w0 = time.perf_counter()
                    out[name][cond].append(fn())
                    wall[cond].append(time.perf_counter() - w0)
        finally:
            if loader is not None:
                loader.kill()
                loader.wait()
    meter = next(m for m in carbonlab.runtime.get().meter_set.meters if m.kind == "cpu")
    return {
        "energy_j": out,
        "iterations": n,
        "wall_s": {k: statistics.median(v) for k, v in wall.items()},
        "carbonlab_cpu_meter": {"method": meter.method, "params": dict(meter.params)},
    }


# ---- cross-check on the simulated NVML (this process found it by LD_LIBRARY_PATH) -----------


def _stub_missing_nvml(lib: Any) -> list[str]:
    """Static answers for NVML calls codecarbon makes at start that the simulator does not export
    (memory, temperature, power limit, utilisation, compute mode, graphics processes). Only
    those: the energy counter and every call the simulator has go through pynvml to it."""
    import pynvml

    def memory(handle: Any) -> Any:
        m = pynvml.c_nvmlMemory_t()
        m.total, m.free, m.used = 40 << 30, 39 << 30, 1 << 30
        return m

    def utilization(handle: Any) -> Any:
        u = pynvml.c_nvmlUtilization_t()
        u.gpu, u.memory = 0, 0
        return u

    stubs = {
        "nvmlDeviceGetMemoryInfo": memory,
        "nvmlDeviceGetTemperature": lambda handle, sensor=0: 40,
        "nvmlDeviceGetEnforcedPowerLimit": lambda handle: 400_000,
        "nvmlDeviceGetUtilizationRates": utilization,
        "nvmlDeviceGetComputeMode": lambda handle: 0,
        "nvmlDeviceGetGraphicsRunningProcesses": lambda handle: [],
    }
    stubbed = []
    for name, fn in stubs.items():
        try:
            getattr(lib, name)
        except AttributeError:
            setattr(pynvml, name, fn)
            stubbed.append(name)
    return stubbed


def task_crosscheck(a: dict[str, Any]) -> dict[str, Any]:
    import ctypes

    lib = ctypes.CDLL("libnvidia-ml.so.1")  # the simulator, found by soname as pynvml finds it
    lib.simnvml_now_ns.restype = ctypes.c_longlong
    lib.simnvml_exact_energy_mj.argtypes = [ctypes.c_uint, ctypes.c_longlong, ctypes.c_longlong]
    lib.simnvml_exact_energy_mj.restype = ctypes.c_double
    stubbed = _stub_missing_nvml(lib) if a["peers"] else []

    from carbonlab import runtime
    from carbonlab.window import Window

    rt = runtime.get()
    gpu = [m for m in rt.meter_set.meters if m.kind == "gpu"]
    if not gpu:
        raise SystemExit(f"carbonlab found no simulated GPU: {rt.meter_set.describe()}")
    tracker = None
    cc_hw: dict[str, Any] = {}
    if a["peers"]:
        tracker = _cc_tracker()
        tracker.start_task()  # warm-up: hardware detection
        tracker.stop_task()
        cc_hw = tracker.get_detected_hardware()

    def now() -> int:
        return lib.simnvml_now_ns()

    def exact(t0: float, t1: float) -> float:
        return lib.simnvml_exact_energy_mj(0, round(t0), round(t1)) / 1e3

    rows = []
    for d in a["durations"]:
        for _ in range(a["reps"]):
            s_a = now()
            if tracker is not None:
                tracker.start_task()
            s_b = now()
            w = Window("cross-check").begin()
            s_c = now()
            time.sleep(d)
            s_d = now()
            m = w.end()
            s_e = now()
            cc_j = None
            if tracker is not None:
                cc_j = tracker.stop_task().gpu_energy * 3.6e6
            s_f = now()
            comp = next(c for c in m.components if c.kind == "gpu")
            row = {
                "duration_s": d,
                "carbonlab_j": comp.energy_j,
                "carbonlab_method": comp.method,
                "carbonlab_below_resolution": comp.below_resolution,
                # each tool read the counter somewhere inside its begin and end calls: truth is
                # taken between the middles of those calls, the bounds between their far ends
                "carbonlab_truth_j": exact((s_b + s_c) / 2, (s_d + s_e) / 2),
                "carbonlab_truth_bounds_j": [exact(s_c, s_d), exact(s_b, s_e)],
            }
            if cc_j is not None:
                row.update(
                    {
                        "codecarbon_j": cc_j,
                        "codecarbon_truth_j": exact((s_a + s_b) / 2, (s_e + s_f) / 2),
                        "codecarbon_truth_bounds_j": [exact(s_b, s_e), exact(s_a, s_f)],
                    }
                )
            rows.append(row)
            time.sleep(0.05)
    return {"rows": rows, "stubbed_nvml_calls": stubbed, "codecarbon_hardware": cc_hw}


# ---- GPU accuracy on the simulated NVML, manual clock ---------------------------------------


def task_accuracy(a: dict[str, Any]) -> dict[str, Any]:
    from bench.accuracy import run

    return run(a)


def task_kernel(a: dict[str, Any]) -> dict[str, Any]:
    """Trivial cells through nbclient, two kernels side by side (bench/bench_cell.py)."""
    from bench.bench_cell import measure_nbclient

    return measure_nbclient(a["blocks"], a["cells"], quiet=True)


def task_cluster(a: dict[str, Any]) -> dict[str, Any]:
    """An empty measured window with no cluster attached and with a 2-worker Dask LocalCluster
    attached (worker processes, 1 thread each), in alternating blocks; and one edge read alone."""
    from distributed import Client, LocalCluster

    import carbonlab
    import carbonlab.dask
    from carbonlab import cluster

    rounds, n = a["rounds"], a["n"]
    with (
        LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as lc,
        Client(lc) as client,
    ):
        src = carbonlab.dask.attach(client)
        samples: dict[str, list[list[float]]] = {"none": [], "attached": []}
        edges: list[float] = []
        for _ in range(3):  # warm-up: pickles, connections, meters opened on the workers
            with carbonlab.track():
                pass
        for _ in range(rounds):
            for name in ("none", "attached"):
                if name == "none":
                    cluster.unregister()
                else:
                    cluster.register(src)
                block = []
                for _ in range(n):
                    t0 = time.perf_counter_ns()
                    with carbonlab.track():
                        pass
                    block.append((time.perf_counter_ns() - t0) / 1e9)
                samples[name].append(block)
            for _ in range(n):
                t0 = time.perf_counter_ns()
                src.read()
                edges.append((time.perf_counter_ns() - t0) / 1e9)
            # A cell that runs: the begin's read travels while the cell works (20 ms here).
            for name in ("none_20ms", "attached_20ms"):
                if name == "none_20ms":
                    cluster.unregister()
                else:
                    cluster.register(src)
                block = []
                for _ in range(max(1, n // 3)):
                    t0 = time.perf_counter_ns()
                    with carbonlab.track():
                        time.sleep(0.02)
                    block.append((time.perf_counter_ns() - t0) / 1e9)
                samples.setdefault(name, []).append(block)
        with carbonlab.track() as m:
            pass
        size = len(json.dumps(m.to_dict()))
        cluster.unregister()
    return {"samples": samples, "edges_s": edges, "measurement_bytes": size, "workers": 2}


def main() -> None:
    task, args_path, out_path = sys.argv[1:4]
    with open(args_path) as f:
        args = json.load(f)
    result = globals()[f"task_{task}"](args)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, out_path)
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: peers' atexit hooks and threads are not ours to wait on


if __name__ == "__main__":
    main()
