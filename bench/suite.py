"""The parts of the suite, each returning plain data for bench/report.py.

Speed: every row of issue 7's table, carbonlab beside codecarbon / pytest-codecarbon, run the same
way and interleaved (A B A B ...). Accuracy: GPU methods against exact ground truth, the CPU
model's spread, and a cross-check of the GPU figure against codecarbon's.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    Stat,
    child_env,
    log,
    pooled,
    round_medians,
    run_code,
    run_worker,
)


@dataclass
class Sizes:
    """How much of everything: full runs aim at ~10 minutes, quick ones at a few seconds."""

    fresh_runs: int = 9  # fresh processes per tool (import, first region)
    region_rounds: int = 25  # many short blocks: load from other processes hits every tool alike
    n_carbonlab_regions: int = 200
    n_tracker_regions: int = 6
    n_task_regions: int = 60
    cell_rounds: int = 25
    n_cells: int = 100
    cluster_rounds: int = 10
    n_cluster_windows: int = 30
    kernel_blocks: int = 40
    kernel_cells: int = 50
    n_tracker_cells: int = 10
    pytest_tests: int = 1000
    pytest_rounds: int = 11
    startup_rounds: int = 40
    suite_pairs: int = 12  # a real suite (boltons, 519 tests): pairs of runs, about 1.5 min
    sampler_rounds: int = 3
    sampler_seconds: float = (
        16.0  # > codecarbon's 15 s measure_power_secs: one of its ticks per slot
    )
    accuracy_windows: int = 25
    cpu_runs: int = 20
    cpu_loop_s: float = 0.4
    cross_durations: list[float] = field(default_factory=lambda: [1.0, 5.0])
    cross_reps: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            fresh_runs=2,
            region_rounds=2,
            n_carbonlab_regions=100,
            n_tracker_regions=3,
            n_task_regions=20,
            cell_rounds=2,
            n_cells=60,
            n_tracker_cells=5,
            pytest_tests=50,
            pytest_rounds=1,
            startup_rounds=1,
            suite_pairs=1,
            sampler_rounds=1,
            sampler_seconds=1.0,
            accuracy_windows=2,
            cpu_runs=3,
            cpu_loop_s=0.03,
            cross_durations=[0.3],
            cross_reps=1,
            cluster_rounds=2,
            n_cluster_windows=10,
            kernel_blocks=2,
            kernel_cells=5,
        )


@dataclass
class Ctx:
    python: Path  # the interpreter every side-by-side part runs on
    peers: bool
    sizes: Sizes
    scratch: Path
    sim_lib: Path | None = None  # the built simulated NVML, None without a C compiler
    sim_why: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(extra, scratch=self.scratch)

    def worker(self, task: str, args: dict[str, Any], env: dict[str, str] | None = None) -> Any:
        return run_worker(self.python, task, args, env or self.env(), self.scratch)


def _row(
    key: str,
    what: str,
    peer_today: str,
    goal: str,
    unit: str,
    carbonlab: Stat,
    peers: list[tuple[str, Stat]],
    met: bool,
    how: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "key": key,
        "what": what,
        "peer_today": peer_today,
        "goal": goal,
        "unit": unit,
        "carbonlab": carbonlab.to_dict(),
        "peers": [{"name": n, "stat": s.to_dict()} for n, s in peers],
        "met": met,
        "how": how,
        **extra,
    }


# ---- fresh processes: import, first region ---------------------------------------------------

HEAVY = (
    "pandas",
    "numpy",
    "requests",
    "urllib3",
    "pynvml",
    "psutil",
    "rapidfuzz",
    "pydantic",
    "arrow",
    "cpuinfo",
    "IPython",
    "altair",
    "ipywidgets",
    "sqlite3",
    "rich",
    "typer",
)

IMPORT_CODE = """\
import sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
import json
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
json.dump({{"s": t1 - t0, "heavy": heavy}}, open(sys.argv[1], "w"))
"""

FIRST_CARBONLAB = """\
import sys, time
t0 = time.perf_counter()
import carbonlab
with carbonlab.track():
    pass
t1 = time.perf_counter()
import json
json.dump({"s": t1 - t0}, open(sys.argv[1], "w"))
"""

FIRST_CODECARBON = """\
import sys, time
t0 = time.perf_counter()
from codecarbon import OfflineEmissionsTracker
tracker = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error")
tracker.start()
tracker.stop()
t1 = time.perf_counter()
import json, os
json.dump({"s": t1 - t0}, open(sys.argv[1], "w"))
os._exit(0)
"""


def _fresh(ctx: Ctx, codes: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    env = ctx.env()
    for code in codes.values():  # warm-up: .pyc files written, file cache filled
        run_code(ctx.python, code, env, ctx.scratch)
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in codes}
    for _ in range(ctx.sizes.fresh_runs):
        for name, code in codes.items():
            out[name].append(run_code(ctx.python, code, env, ctx.scratch))
    return out


def import_row(ctx: Ctx) -> dict[str, Any]:
    log("import time (fresh processes)")
    codes = {"carbonlab": IMPORT_CODE.format(module="carbonlab", heavy=HEAVY)}
    if ctx.peers:
        codes["codecarbon"] = IMPORT_CODE.format(module="codecarbon", heavy=HEAVY)
    runs = _fresh(ctx, codes)
    cl = Stat.of([r["s"] for r in runs["carbonlab"]])
    heavy = {k: v[-1]["heavy"] for k, v in runs.items()}
    peers = [("codecarbon", Stat.of([r["s"] for r in runs["codecarbon"]]))] if ctx.peers else []
    return _row(
        "import",
        "`import`",
        "codecarbon ~100 ms",
        "≤ 100 ms, nothing heavy at import",
        "ms",
        cl,
        peers,
        cl.median <= 0.100 and not heavy["carbonlab"],
        "`import carbonlab` / `import codecarbon` timed inside a fresh interpreter "
        "(`time.perf_counter()` around the import statement), one process per sample.",
        heavy=heavy,
    )


def first_region_row(ctx: Ctx) -> dict[str, Any]:
    log("first measured region in a fresh process")
    codes = {"carbonlab": FIRST_CARBONLAB}
    if ctx.peers:
        codes["codecarbon"] = FIRST_CODECARBON
    runs = _fresh(ctx, codes)
    cl = Stat.of([r["s"] for r in runs["carbonlab"]])
    breakdown = _importtime(ctx, FIRST_CARBONLAB)
    peers = (
        [
            (
                "codecarbon (import, OfflineEmissionsTracker(), start, stop)",
                Stat.of([r["s"] for r in runs["codecarbon"]]),
            )
        ]
        if ctx.peers
        else []
    )
    return _row(
        "first_region",
        "first measured region in a fresh process",
        "codecarbon 1.4 s (a subprocess to read the CPU name, a TDP table load)",
        "≤ 40 ms (issue 16; issue 7 asked ≤ 50 ms)",
        "ms",
        cl,
        peers,
        cl.median <= 0.040,
        "From before the import to the end of the first measured (empty) region, in a fresh "
        "interpreter: `import carbonlab; with carbonlab.track(): pass` against `from codecarbon "
        "import OfflineEmissionsTracker; t = OfflineEmissionsTracker(country_iso_code='FRA', "
        "save_to_file=False); t.start(); t.stop()`.",
        breakdown=breakdown,
    )


STDLIB_ON_FIRST_WINDOW = (
    "typing",
    "dataclasses",
    "pathlib",
    "importlib.resources",
    "importlib.readers",
    "csv",
    "ctypes",
    "datetime",
    "threading",
)


def _importtime(ctx: Ctx, code: str, runs: int = 3) -> dict[str, Any]:
    """Where carbonlab's first region spends its time: ``runs`` runs under ``python -X importtime``
    (imports after a marker written just before the timer starts); medians per module."""
    import json

    out = ctx.scratch / "importtime.json"
    marked = code.replace(
        "t0 = time.perf_counter()",
        "sys.stderr.write('BENCH-T0\\n'); sys.stderr.flush()\nt0 = time.perf_counter()",
    )
    totals: list[float] = []
    counts: list[int] = []
    self_us: dict[str, list[int]] = {}
    cum_us: dict[str, list[int]] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [str(ctx.python), "-X", "importtime", "-c", marked, str(out)],
            env=ctx.env(),
            cwd=ctx.scratch,
            capture_output=True,
            text=True,
            timeout=120,
        )
        n = 0
        for line in proc.stderr.split("BENCH-T0", 1)[-1].splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            parts = line[len("import time:") :].split("|")
            self_us.setdefault(parts[2].strip(), []).append(int(parts[0]))
            cum_us.setdefault(parts[2].strip(), []).append(int(parts[1]))
            n += 1
        counts.append(n)
        try:
            totals.append(json.loads(out.read_text())["s"])
        except (OSError, ValueError, KeyError):
            pass
    med = {k: statistics.median(v) for k, v in self_us.items()}
    top = sorted(med.items(), key=lambda kv: -kv[1])[:10]
    return {
        "total_s": statistics.median(totals) if totals else float("nan"),
        "modules": statistics.median(counts) if counts else 0,
        "self_s": sum(med.values()) / 1e6,
        "top_self": [{"module": m, "self_ms": us / 1000} for m, us in top],
        # standard-library modules carbonlab's first window pulls in, with all they import
        "stdlib_cumulative_ms": {
            m: statistics.median(cum_us[m]) / 1000 for m in STDLIB_ON_FIRST_WINDOW if m in cum_us
        },
        "runs": runs,
    }


# ---- in-process: later regions, cells -------------------------------------------------------


def regions_row(ctx: Ctx) -> dict[str, Any]:
    log("each later measured region (in one process)")
    s = ctx.sizes
    res = ctx.worker(
        "regions",
        {
            "peers": ctx.peers,
            "rounds": s.region_rounds,
            "n_carbonlab": s.n_carbonlab_regions,
            "n_tracker": s.n_tracker_regions,
            "n_task": s.n_task_regions,
        },
    )
    smp = res["samples"]

    def st(name: str) -> Stat:
        m = statistics.median(pooled(smp[name]))
        rm = round_medians(smp[name])
        return Stat(m, min(rm), max(rm), len(pooled(smp[name])))

    cl = st("carbonlab")
    peers = []
    if ctx.peers:
        peers = [
            ("codecarbon, a tracker per region (init + start + stop)", st("codecarbon tracker")),
            ("codecarbon, start + stop of a made tracker", st("codecarbon start/stop")),
            ("codecarbon task API (start_task + stop_task)", st("codecarbon task")),
        ]
    return _row(
        "regions",
        "each later measured region (cell/test window)",
        "codecarbon 2.7–5.8 ms per tracker, 0.35–0.44 ms with its task API",
        "≤ 0.1 ms",
        "ms",
        cl,
        peers,
        cl.median <= 0.0001,
        "An empty region, timed with `perf_counter_ns`, after a warm-up, in one process: "
        "`with carbonlab.track(): pass` against codecarbon's tracker (a new "
        "`OfflineEmissionsTracker` per region: a stopped one cannot be started again) and its "
        "task API (`start_task()`/`stop_task()` on one tracker). Blocks of each alternate; median "
        "of every sample, min–max of the blocks' medians.",
        meters=res["meters"],
    )


def cells_row(ctx: Ctx) -> dict[str, Any]:
    log("per notebook cell, automatic mode (IPython InteractiveShell)")
    s = ctx.sizes
    res = ctx.worker(
        "cells",
        {
            "peers": ctx.peers,
            "rounds": s.cell_rounds,
            "n_cells": s.n_cells,
            "n_tracker_cells": s.n_tracker_cells,
        },
    )
    smp = res["samples"]
    base_rounds = round_medians(smp["no measurement"])
    base = statistics.median(pooled(smp["no measurement"]))

    def overhead(name: str) -> Stat:
        # each block's median minus the baseline block's just before it, then their median
        rm = [m - b for m, b in zip(round_medians(smp[name]), base_rounds)]
        return Stat(statistics.median(rm), min(rm), max(rm), len(pooled(smp[name])))

    cl = overhead("carbonlab")
    peers = []
    if ctx.peers:
        peers = [
            ("codecarbon task API in pre/post_run_cell", overhead("codecarbon task")),
            ("codecarbon tracker per cell in pre/post_run_cell", overhead("codecarbon tracker")),
        ]
    return _row(
        "cells",
        "per notebook cell, automatic mode",
        "codecarbon in cell hooks +0.7 to +4 ms",
        "≤ 0.1 ms",
        "ms",
        cl,
        peers,
        cl.median <= 0.0001,
        "One IPython `InteractiveShell`, `run_cell('pass')` timed; the figure is the time added "
        "per cell over the same shell with nothing loaded. carbonlab: `%load_ext carbonlab` "
        "(automatic mode, defaults: the summary shows only above 1 J, so nothing is displayed; a "
        "history row is queued per cell). codecarbon: `start_task`/`stop_task` of one offline "
        "tracker, or a new tracker's `start`/`stop`, in `pre_run_cell`/`post_run_cell` hooks. "
        "Blocks of each alternate; each block's median minus the baseline block's run just "
        "before it; the median of those differences, and their min–max.",
        baseline_s=base,
        core_only=overhead("carbonlab core window only").to_dict(),
        core_edges_s=res["core_edges_s"],
        last_cell_measured=res["last_cell_measured"],
        last_cell_shown=res["last_cell_shown"],
    )


def _project_worker(
    ctx: Ctx, task: str, module: str, install: str, what: str, args: dict[str, Any]
) -> Any:
    """Run ``task`` on the project's interpreter (the peers' venv lacks ``module``, or any of
    its comma-separated modules); None, said, when one is not installed."""
    import importlib.util

    for name in module.split(","):
        if importlib.util.find_spec(name) is None:
            log(f"{task}: {name} is not installed; row skipped ({install})")
            return None
    log(what)
    return run_worker(sys.executable, task, args, ctx.env(), ctx.scratch)


def kernel_row(ctx: Ctx) -> dict[str, Any] | None:
    """Issue 14: what a trivial cell costs through a real kernel (nbclient, no front end). Run on
    the project's interpreter (nbclient and ipykernel are development dependencies); None
    without them."""
    s = ctx.sizes
    res = _project_worker(
        ctx,
        "kernel",
        "nbclient,ipykernel",
        "pip install -e '.[dev]'",
        "per notebook cell through a real kernel (nbclient)",
        {"blocks": s.kernel_blocks, "cells": s.kernel_cells},
    )
    if res is None:
        return None
    added = res["added_s"]
    cl = Stat(statistics.median(added), min(added), max(added), len(added))
    q = statistics.quantiles(added, n=4) if len(added) > 1 else [added[0]] * 3
    return _row(
        "kernel",
        "per notebook cell through a real kernel (nbclient, no front end)",
        "not measured for peers; carbonlab before issue 14: +1.9 ms",
        "≤ 0.3 ms",
        "ms",
        cl,
        [],
        cl.median <= 0.0003,
        "Two ipykernels side by side driven by nbclient, one with nothing loaded and one after "
        "`%load_ext carbonlab` (defaults: nothing displayed, a history row per cell); blocks of "
        f"{s.kernel_cells} cells `x = sum(range(2000))` alternate between them (ABBA), each "
        "followed by an untimed 0.5 s pause (where the history writer, which waits for the cells "
        "to pause, does its work, not in the other kernel's block). The figure is the median "
        "over block pairs of the time per cell with carbonlab minus without, as nbclient sees "
        "it (execute request to reply, outputs and all). The writer's own CPU time is in the "
        "kernels' CPU below (carbonlab-store), not in the figure; cells that never pause for 2 s "
        "would have it write between them.",
        quartiles_s=[q[0], q[2]],
        # Each block's median cell instead of its mean (a cell stalled by another process moves
        # only the mean; carbonlab's hooks shift every cell): for information.
        median_cell_added_s=statistics.median(res["added_median_cell_s"])
        if res.get("added_median_cell_s")
        else None,
        per_cell_s={
            "without": statistics.median(res["without_s"]),
            "with": statistics.median(res["with_s"]),
        },
        kernel_cpu_s=res["kernel_cpu_s"],
        kernel_cpu_threads_s=res["kernel_cpu_threads_s"],
    )


def cluster_row(ctx: Ctx) -> dict[str, Any] | None:
    """A measured window's added time with a 2-worker Dask cluster attached (issue 17). Run on the
    project's interpreter (the peers' venv has no distributed); None without distributed."""
    s = ctx.sizes
    res = _project_worker(
        ctx,
        "cluster",
        "distributed",
        "pip install 'carbonlab[dask]'",
        "a measured window with a 2-worker Dask cluster attached",
        {"rounds": s.cluster_rounds, "n": s.n_cluster_windows},
    )
    if res is None:
        return None
    smp = res["samples"]
    none_rounds, att_rounds = round_medians(smp["none"]), round_medians(smp["attached"])
    added = [a - b for a, b in zip(att_rounds, none_rounds)]
    cl = Stat(statistics.median(added), min(added), max(added), len(pooled(smp["attached"])))
    edge = Stat.of(res["edges_s"])
    none = Stat.of(pooled(smp["none"]))
    busy = None
    if smp.get("attached_20ms"):
        busy_added = [
            a - b
            for a, b in zip(round_medians(smp["attached_20ms"]), round_medians(smp["none_20ms"]))
        ]
        busy = Stat(
            statistics.median(busy_added), min(busy_added), max(busy_added), len(busy_added)
        ).to_dict()
    return _row(
        "cluster",
        "a measured window with a 2-worker Dask cluster attached (added time)",
        "no tool measures a cell's cluster energy",
        "≤ 5 ms at the edges, 0 with none",
        "ms",
        cl,
        [],
        # The goal is a cell's added time at its edges: this row's figure (both edges), not one
        # edge alone (listed in the row's details, with the empty window).
        cl.median <= 0.005,
        "`LocalCluster(processes=True, n_workers=2, threads_per_worker=1)` and a `Client` in one "
        "process, `carbonlab.dask.attach(client)`; an empty `with carbonlab.track(): pass` timed "
        "with `perf_counter_ns`, blocks with the cluster attached and detached alternating; the "
        "figure is each attached block's median minus the detached block's just before it (the "
        "begin's read, one round trip through the scheduler to both workers, is sent without "
        "waiting; an empty window ends before it came back, is below the cluster's resolution "
        "and waits for that read only, with no end read: docs/cluster.md), and the "
        "goal is judged on it. With no cluster attached the hook costs one test of an empty list at each edge: the "
        "whole empty window is listed below, not a difference.",
        edge_s=edge.to_dict(),
        none_s=none.to_dict(),
        busy_added_s=busy,
        measurement_bytes=res["measurement_bytes"],
    )


# ---- pytest ---------------------------------------------------------------------------------


def _make_project(root: Path, n_tests: int) -> Path:
    from bench.bench_pytest import make_project

    return make_project(root, n_tests)


def _pytest_once(ctx: Ctx, root: Path, args: list[str]) -> tuple[float, float, str]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(ctx.python), "-m", "pytest", "-q", *args],
        cwd=root,
        env=ctx.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(
            f"pytest {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), proc.stdout


def _pytest_bench(
    ctx: Ctx,
    root: Path,
    configs: dict[str, list[str]],
    rounds: int,
    check: Callable[[str, str], None],
) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    for name, args in configs.items():  # warm-up: .pyc and assertion-rewrite caches
        check(name, _pytest_once(ctx, root, args)[2])
    for _ in range(rounds):
        for name, args in configs.items():
            w, c, _ = _pytest_once(ctx, root, args)
            out[name].append((w, c))
    return out


def _ratios(times: dict[str, list[tuple[float, float]]], name: str, base: str, i: int) -> Stat:
    return Stat.of([t[i] / b[i] for t, b in zip(times[name], times[base])])


def pytest_rows(ctx: Ctx) -> list[dict[str, Any]]:
    s = ctx.sizes
    log(f"pytest: {s.pytest_tests} trivial tests, {s.pytest_rounds} interleaved rounds")
    suite = _make_project(ctx.scratch / "pytest-suite", s.pytest_tests)
    single = _make_project(ctx.scratch / "pytest-single", 1)
    cc_dir = ctx.scratch / "pytest-codecarbon-out"
    cc_dir.mkdir(exist_ok=True)
    if ctx.peers:
        configs = {
            "no plugin": ["-p", "no:carbon", "-p", "no:codecarbon"],
            "carbonlab installed, not enabled": ["-p", "no:codecarbon"],
            "carbonlab --carbon": ["-p", "no:codecarbon", "--carbon"],
            "pytest-codecarbon installed, not enabled": ["-p", "no:carbon"],
            "pytest-codecarbon --carbon": [
                "-p",
                "no:carbon",
                "-p",
                "_carbonlab_bench_offline",
                "--carbon",
                f"--carbon-dir={cc_dir}",
            ],
        }
    else:
        configs = {
            "no plugin": ["-p", "no:carbon"],
            "carbonlab installed, not enabled": [],
            "carbonlab --carbon": ["--carbon"],
        }

    def check(name: str, stdout: str) -> None:
        if name == "carbonlab --carbon" and " measured: call " not in stdout:
            raise RuntimeError(f"carbonlab's plugin did not report:\n{stdout[-1500:]}")
        if name == "pytest-codecarbon --carbon" and not (cc_dir / "emissions.csv").exists():
            raise RuntimeError("pytest-codecarbon wrote no emissions.csv: was it enabled?")

    times = _pytest_bench(ctx, suite, configs, s.pytest_rounds, check)
    startup_cfg = dict(configs)  # --carbon too: its fixed cost at session start
    log(f"pytest startup: 1 test, {s.startup_rounds} interleaved rounds")
    startup = _pytest_bench(ctx, single, startup_cfg, s.startup_rounds, check)

    def wall(name: str, t: dict[str, list[tuple[float, float]]]) -> Stat:
        return Stat.of([w for w, _ in t[name]])

    def startup_extra(name: str, i: int = 0) -> Stat:
        return Stat.of([a[i] - b[i] for a, b in zip(startup[name], startup["no plugin"])])

    detail = {
        "n_tests": s.pytest_tests,
        "wall_s": {k: wall(k, times).to_dict() for k in times},
        "cpu_s": {k: Stat.of([c for _, c in v]).to_dict() for k, v in times.items()},
        "startup_wall_s": {k: wall(k, startup).to_dict() for k in startup},
    }
    # Headline: CPU time (user + system) of the pytest process. On a shared machine wall time
    # also counts waiting for a core while other processes run, and swings by tens of percent
    # between neighbouring runs; CPU time counts the work each configuration adds. Wall time is
    # reported beside it.
    cpu, wall_i = 1, 0
    on = _ratios(times, "carbonlab --carbon", "no plugin", cpu)
    off = _ratios(times, "carbonlab installed, not enabled", "no plugin", cpu)
    peer_on_name, peer_off_name = (
        "pytest-codecarbon --carbon",
        "pytest-codecarbon installed, not enabled",
    )
    peers_on, peers_off, walls = [], [], {}
    for name in times:
        if name != "no plugin":
            walls[name] = _ratios(times, name, "no plugin", wall_i).to_dict()
    if ctx.peers:
        peers_on = [(peer_on_name, _ratios(times, peer_on_name, "no plugin", cpu))]
        peers_off = [(peer_off_name, _ratios(times, peer_off_name, "no plugin", cpu))]
    extra_ms = {k: startup_extra(k).to_dict() for k in startup if k != "no plugin"}
    extra_cpu = {k: startup_extra(k, 1).to_dict() for k in startup if k != "no plugin"}
    # Issue 16's split: the session's start (the single-test project's extra CPU time) and each
    # test's share: per round, the N-test run's extra CPU over the baseline run made just before
    # it, less the start's median, over the tests after the first.
    fixed = Stat.from_dict(extra_cpu["carbonlab --carbon"]).median
    per_test = Stat.of(
        [
            ((t[cpu] - b[cpu]) - fixed) / max(s.pytest_tests - 1, 1)
            for t, b in zip(times["carbonlab --carbon"], times["no plugin"])
        ]
    )
    split = {
        "start_s": extra_cpu["carbonlab --carbon"],
        "per_test_s": per_test.to_dict(),
        "start_met": fixed <= START_GOAL_S,
        "per_test_met": per_test.median <= PER_TEST_GOAL_S,
    }
    how = (
        f"`python -m pytest -q` on a generated project of {s.pytest_tests:,} trivial tests "
        "(`def test_i(): pass`, 100 per file), a fresh process per run. The figure is each "
        "run's CPU time (user + system of the pytest process, from `getrusage`) over that of "
        "the baseline run made just before it (no plugin: "
        + " ".join(f"`{a}`" for a in configs["no plugin"])
        + "), median and min–max of those ratios; wall-time ratios are listed below. CPU time "
        "is the headline because this machine is shared: wall time also counts the waits for a "
        "core while others' test suites run, and it swung by tens of percent between "
        "neighbouring runs."
    )
    if ctx.peers:
        how += (
            " Both plugins are installed in the same venv and would clash on `--carbon`, so each "
            "configuration blocks the other with `-p no:...`. pytest-codecarbon's tracker is made "
            "offline by a 4-line shim plugin (`-p _carbonlab_bench_offline`)."
        )
    return [
        _row(
            "pytest_on",
            f"pytest, {s.pytest_tests:,} trivial tests, enabled",
            "pytest-codecarbon 3.2× slower",
            "≤ 1.05×",
            "x",
            on,
            peers_on,
            on.median <= 1.05,
            how,
            wall_ratios=walls,
            detail=detail,
            startup_extra_s=extra_ms,
            startup_extra_cpu_s=extra_cpu,
            split=split,
        ),
        _row(
            "pytest_off",
            "pytest, installed but not enabled",
            "pytest-codecarbon 1.45× slower",
            "≤ 1.02× (and ≤ 20 ms extra at startup)",
            "x",
            off,
            peers_off,
            off.median <= 1.02
            and Stat.from_dict(extra_cpu["carbonlab installed, not enabled"]).median <= 0.020,
            how + " Startup: the same configurations on a project with a single test; the extra "
            "CPU time over the baseline run is what the 20 ms goal is judged on (wall time "
            "listed too).",
            wall_ratios=walls,
            startup_extra_s=extra_ms,
            startup_extra_cpu_s=extra_cpu,
        ),
    ]


START_GOAL_S = 0.015  # issue 16: the session's start
PER_TEST_GOAL_S = 25e-6  # issue 16: each test's share

# A real suite: boltons (pure Python, BSD licence, 519 tests in 26.2.0, about 2.5 s of CPU), as
# issue 16 measured it. Its sdist comes from the package index on first use (pip, as the peers'
# venv does) and is kept in bench/.cache.
REAL_SUITE = ("boltons", "26.2.0")


def _real_suite(ctx: Ctx) -> tuple[Path | None, str]:
    import tarfile

    from .common import ROOT

    name, version = REAL_SUITE
    cache = ROOT / "bench" / ".cache"
    src = cache / f"{name}-{version}"
    if (src / "tests").is_dir():
        return src, ""
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
         f"{name}=={version}", "-d", str(cache)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    sdist = cache / f"{name}-{version}.tar.gz"
    if proc.returncode != 0 or not sdist.exists():
        return None, f"pip download {name}=={version} failed: {proc.stderr.strip()[-300:]}"
    with tarfile.open(sdist) as tar:
        tar.extractall(cache, filter="data")
    return (src, "") if (src / "tests").is_dir() else (None, f"{sdist} has no tests/")


def real_suite_row(ctx: Ctx) -> dict[str, Any] | None:
    name, version = REAL_SUITE
    src, why = _real_suite(ctx)
    if src is None:
        log(f"real suite: skipped ({why})")
        return None
    pairs = ctx.sizes.suite_pairs
    log(f"pytest on a real suite: {name} {version}, {pairs} pairs")
    # carbonlab's own venv (no peer runs here): the peers' venv refuses every connection, which
    # leaves boltons's socket tests waiting for ever.
    ctx = dataclasses.replace(ctx, python=Path(sys.executable))
    off = ["-p", "no:cacheprovider", "-p", "no:carbon", "tests"]
    on = ["-p", "no:cacheprovider", "--carbon", "tests"]
    ratios, cpu = [], {"no plugin": [], "--carbon": []}
    try:
        for args in (off, on):  # warm-up: .pyc and assertion-rewrite caches
            _pytest_once(ctx, src, args)
        for i in range(pairs):
            got = {}
            for args in (off, on) if i % 2 == 0 else (on, off):
                got[args is on] = _pytest_once(ctx, src, args)[1]
            cpu["no plugin"].append(got[False])
            cpu["--carbon"].append(got[True])
            ratios.append(got[True] / got[False])
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        log(f"real suite: skipped ({str(e)[:300]})")
        return None
    stat = Stat.of(ratios)
    how = (
        f"`python -m pytest -q -p no:cacheprovider tests` in {name} {version}'s source (its own "
        f"test suite, {name} from that source), serially, on carbonlab's own venv: pairs of runs, one with `--carbon` "
        "and one without the plugin (`-p no:carbon`), made one after the other in alternating "
        "order; the figure is each pair's CPU-time ratio (user + system of the pytest "
        "process), median and min–max over the pairs. The sdist comes from the package index "
        "on first use and is kept in `bench/.cache` "
        f"(`pip download --no-binary :all: --no-deps {name}=={version}`)."
    )
    return _row(
        "pytest_suite",
        f"pytest on a real suite ({name} {version}), enabled",
        "not measured for peers; carbonlab before issue 16: 1.05–1.065× CPU on two real suites",
        "≤ 1.02×",
        "x",
        stat,
        [],
        stat.median <= 1.02,
        how,
        cpu_s={k: Stat.of(v).to_dict() for k, v in cpu.items()},
        suite=f"{name} {version}",
    )


# ---- background sampling --------------------------------------------------------------------


def sampler_row(ctx: Ctx) -> dict[str, Any]:
    s = ctx.sizes
    log(f"background sampling: {s.sampler_rounds} rounds of {s.sampler_seconds:g} s per tool")
    tools = ["control", "carbonlab"] + (["codecarbon"] if ctx.peers else [])
    res: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    for _ in range(s.sampler_rounds):
        for t in tools:
            res[t].append(
                ctx.worker("sampler", {"tool": t, "seconds": s.sampler_seconds, "warm": 0.5})
            )
    cl = Stat.of([r["cpu_ms_per_s"] for r in res["carbonlab"]])
    # Issue 16: within 1 CPU-ms/s of the do-nothing thread, round by round (the price of a wake-up
    # moves with the host's load, and both ran in the same round).
    over = Stat.of(
        [c["cpu_ms_per_s"] - k["cpu_ms_per_s"] for c, k in zip(res["carbonlab"], res["control"])]
    )
    peers = (
        [
            (
                "codecarbon tracker started (defaults: 15 s measurement, 1 s power monitor)",
                Stat.of([r["cpu_ms_per_s"] for r in res["codecarbon"]]),
            )
        ]
        if ctx.peers
        else []
    )
    return _row(
        "sampler",
        "background sampling cost",
        "codecarbon 0.6–11 CPU-ms per second",
        "≤ 5 CPU-ms per second at 4 Hz, and within 1 CPU-ms/s of a do-nothing 4 Hz thread",
        "cpu_ms",
        cl,
        peers,
        cl.median <= 5.0 and over.median <= 1.0,
        f"A fresh process per sample: the tool is started, then the main thread sleeps "
        f"{s.sampler_seconds:g} s and the process's CPU time over that span (every thread; the "
        "sleeping main thread costs none) is divided by it. carbonlab: its sampler thread "
        "with a live listener at 4 Hz (what the notebook sidebar asks for; with no listener and "
        "only counter meters the thread does not run at all). codecarbon: `tracker.start()` "
        "with its defaults (a measurement every 15 s, a power monitor every 1 s; each tick a "
        "new `threading.Timer` thread). Control, same rounds: a do-nothing Python thread waking "
        f"at 4 Hz cost {Stat.of([r['cpu_ms_per_s'] for r in res['control']]).median:.2f} CPU-ms/s "
        "here: the price of a wake-up on this machine at the time, which varies severalfold "
        "with the host's load and bounds what any sampler can reach.",
        over_control=over.to_dict(),
        samples=[r["samples"] for r in res["carbonlab"]],
        meters=res["carbonlab"][0]["meters"],
    )


# ---- accuracy -------------------------------------------------------------------------------


def build_sim(ctx: Ctx) -> None:
    try:
        from tests.simnvml import BuildError, build, find_compiler
    except ImportError as e:
        ctx.sim_why = f"tests/simnvml is not importable: {e}"
        return
    if find_compiler() is None:
        ctx.sim_why = "no C compiler to build the simulated NVML (tests/simnvml/simnvml.c)"
        return
    try:
        ctx.sim_lib = build(ctx.scratch / "simnvml")
    except BuildError as e:
        ctx.sim_why = str(e)


def accuracy(ctx: Ctx) -> dict[str, Any]:
    if ctx.sim_lib is None:
        return {"skipped": ctx.sim_why}
    log("GPU accuracy on the simulated NVML (manual clock)")
    from bench.accuracy import summarise

    res = run_worker(
        sys.executable,  # carbonlab alone: the project's interpreter
        "accuracy",
        {"windows": ctx.sizes.accuracy_windows, "lib": str(ctx.sim_lib)},
        ctx.env(),
        ctx.scratch,
    )
    for r in res["results"]:
        r["summary"] = {m: summarise(c) for m, c in r["cells"].items()}
        del r["cells"]
    return res


def cpu_model(ctx: Ctx) -> dict[str, Any]:
    s = ctx.sizes
    log(f"CPU model spread: {s.cpu_runs} runs alone, {s.cpu_runs} with the other core loaded")
    res = ctx.worker("cpu_model", {"peers": ctx.peers, "runs": s.cpu_runs, "loop_s": s.cpu_loop_s})
    summary = {}
    for tool, conds in res["energy_j"].items():
        row = {}
        for cond, xs in conds.items():
            mean = statistics.fmean(xs)
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            row[cond] = {
                "mean_j": mean,
                "cv_pct": sd / mean * 100 if mean else float("nan"),
                "n": len(xs),
                "lo": min(xs),
                "hi": max(xs),
            }
        a, b = row["alone"]["mean_j"], row["loaded"]["mean_j"]
        row["loaded_over_alone"] = b / a if a else float("nan")
        allx = conds["alone"] + conds["loaded"]
        m = statistics.fmean(allx)
        row["cv_all_pct"] = (
            statistics.stdev(allx) / m * 100 if m and len(allx) > 1 else float("nan")
        )
        summary[tool] = row
    res["summary"] = summary
    return res


def crosscheck(ctx: Ctx) -> dict[str, Any]:
    if ctx.sim_lib is None:
        return {"skipped": ctx.sim_why}
    s = ctx.sizes
    log("cross-check on the simulated NVML (real clock)")
    fake_bin = ctx.scratch / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    smi = fake_bin / "nvidia-smi"  # codecarbon looks for GPUs only where `nvidia-smi --help` runs
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    traces = {
        "constant 300 W": "300",
        "square wave 1 Hz, 100/300 W": "step 0:100 0.5:300 period 1",
    }
    out = {}
    for name, script in traces.items():
        conf = ctx.scratch / f"cross-{len(out)}.conf"
        conf.write_text(
            f"clock real\ngpu\nname NVIDIA A100-SXM4-40GB\narch ampere\npower {script}\n"
        )
        import os

        env = ctx.env(
            LD_LIBRARY_PATH=str(ctx.sim_lib.parent),
            SIMNVML_CONFIG=str(conf),
            PATH=f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        out[name] = ctx.worker(
            "crosscheck",
            {"peers": ctx.peers, "durations": s.cross_durations, "reps": s.cross_reps},
            env=env,
        )
    return {"traces": out}
