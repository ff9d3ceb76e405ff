"""docs/benchmarks.md, written whole from the suite's results (never edited by hand), and the
summary printed at the end of a run."""

from __future__ import annotations

import math
from typing import Any

from .accuracy import METHODS
from .common import Stat

# What would close each gap, by row key (shown only for goals missed in this run).
FIXES = {
    "first_region": (
        "Nearly all of it is importing modules (the breakdown above). Standard-library modules "
        "that carbonlab's first window pulls in, with what they import in turn: {stdlib}. Fix: "
        "keep them off this path: read the bundled tables with `open()` on a path beside the "
        "module instead of `importlib.resources` (which brings `tempfile`, `shutil`, `bz2`, "
        "`lzma`, `zipfile`), `os.path` instead of `pathlib` in the config (which brings "
        "`urllib.parse`, `ipaddress`), and no runtime `typing` import (the core's records are already "
        "built without `dataclasses`: `carbonlab._record`)."
    ),
    "regions": "Profile `Window.begin`/`end` with the machine's meters; read fewer meters per edge.",
    "cells": (
        "In the cell's hooks the core window alone adds {core} per cell, of which its own begin "
        "and end, timed inside the hooks, take {edges}: about 3× the same window in a tight loop "
        "(the regions row), because its Python code (the `Window`, the `Measurement`, the "
        "footprint) runs with cold caches after the cell's own work; the Jupyter layer adds the "
        "rest ({layer}). Fix: at a cell's edges only read the counters and the clock, and build "
        "the `Measurement`, its footprint and the history row on the writer thread, when shown "
        "or stored."
    ),
    "pytest_on": (
        "On this baseline ({base} of CPU for {n} tests) 5 % is {budget} in all. carbonlab's session "
        "start alone costs {fixed} (importing 23 modules of carbonlab and pytest_carbon is "
        "about two thirds of it; then opening the meters, the grid intensity, registering the "
        "hooks and the summary), then {per} per test: six hook calls, three meter readings and "
        "the list of its figures. These times swing by ±20 % between runs on a shared VM: "
        "`python -m bench.bench_instructions` counts the same runs' instructions, which repeat "
        "(docs/pytest.md, Cost). Fix: a pytest path that imports a fraction of the core (a third "
        "of the bytecode it loads never runs in a one-test run, and trimming those modules "
        "further saves little), and fewer of the plugin's hook calls per test."
    ),
    "pytest_off": "Import nothing beyond the options module until `--carbon` is given.",
    "pytest_suite": (
        "A real suite's tests import and do more than trivial ones, so the plugin's share is "
        "smaller; what is left is its session start and its per-test share (the pytest rows), "
        "and the first-use figures it keeps per test. Fix: the fixes of the pytest row."
    ),
    "cluster": (
        "A window reads the cluster at both edges, each one message to carbonlab's handler on the "
        "scheduler, which asks every worker ({edge} per edge here): client → scheduler → workers "
        "and back, on a machine whose 2 cores also run the scheduler, both workers and the kernel. "
        "The begin's read is sent without waiting; a window that ends before it came back (an "
        "empty one) is below the cluster's resolution and waits for that one round trip only, "
        "not an end read: what is left is mostly distributed's messaging between four processes "
        "on the shared cores. Fix: read the workers directly (no scheduler hop)."
    ),
    "kernel": (
        "carbonlab's two hooks take about twice as long on a kernel's main thread as in a tight "
        "loop (the cells row): their code runs with cold caches after the kernel's own work "
        "between cells. The history writer's rows are built once cells pause. Fix: fewer "
        "objects and calls at a cell's edges (one record for the run and its window, the live "
        "stream's deferral without a per-cell subscription)."
    ),
    "import": "Defer the imports listed as heavy to first use.",
    "sampler": (
        "Compare with the control in the row's notes (a do-nothing thread waking at 4 Hz): most "
        "of the figure is the host's price of a wake-up, which moved from under 1 to over 3 "
        "CPU-ms/s between runs of this suite on the same day. What is carbonlab's own: reading "
        "every meter per tick (~7 µs warm, far more cold); poll only the meters a listener shows "
        "and let a live display tick at 2 Hz."
    ),
}

ACCURACY_FIX = (
    "NVML's energy counter only changes every ~100 ms. carbonlab learns each counter's update "
    "period and phase once (polling it every 1 ms for at most 0.3 s) and adds instant power × "
    "the time since the last update at each edge, which brings steady and stepped loads within "
    "0.05 % at 1 s. What remains is bursts shorter than the update period: the instant power "
    "read at an edge misses a burst that the counter has not yet booked. Fix: integrate the "
    "instant power field from the last update to the edge with the sampler's samples (faster "
    "polling while a short window is open), or wait for the next update at a short window's "
    "end; and flag windows shorter than ~10 update periods with their uncertainty."
)
RESET_FIX = (
    "After a driver reload carbonlab counts from the counter's new zero, so the energy between "
    "the window's begin and the reload is missing (it says so in a note, but the figure is low). "
    "Fix: while a window is open, have the sampler read the counter every 0.25 s (as it does "
    "for power meters) so at most one poll period is lost, and fill that gap with the instant "
    "power field times the gap."
)


def _len(v: float) -> str:
    return f"{v * 1000:g} ms" if v < 1 else f"{v:g} s"


def _fmt_s(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    if a < 1e-3:
        return f"{v * 1e6:.1f} µs"
    if a < 1.0:
        return f"{v * 1e3:.3g} ms" if a < 0.1 else f"{v * 1e3:.0f} ms"
    return f"{v:.2f} s"


def fmt(v: float, unit: str) -> str:
    if unit == "x":
        return f"{v:.3f}×"
    if unit == "cpu_ms":
        return f"{v:.3g} CPU-ms/s"
    return _fmt_s(v)


def fmt_stat(d: dict[str, Any], unit: str) -> str:
    s = Stat.from_dict(d)
    return f"**{fmt(s.median, unit)}** ({fmt(s.lo, unit)} – {fmt(s.hi, unit)})"


def _ratio(peer: dict[str, Any], cl: dict[str, Any]) -> str:
    p, c = peer["median"], cl["median"]
    if not c or c <= 0 or p is None:
        return "n/a"
    r = p / c
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×"


def speed_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| what | peer today (issue 7) | peer, measured here: median (min – max) | carbonlab: median (min – max) | peer ÷ carbonlab | carbonlab goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        u = r["unit"]
        peers = (
            "<br>".join(f"{p['name']}: {fmt_stat(p['stat'], u)}" for p in r["peers"]) or "(not run)"
        )
        ratios = "<br>".join(_ratio(p["stat"], r["carbonlab"]) for p in r["peers"]) or "–"
        met = "yes" if r["met"] else "**no**"
        out.append(
            f"| {r['what']} | {r['peer_today']} | {peers} | {fmt_stat(r['carbonlab'], u)} | {ratios} | {r['goal']} | {met} |"
        )
    return out


def row_details(r: dict[str, Any]) -> list[str]:
    out = [f"**{r['what']}.** {r['how']}"]
    if r["key"] == "import":
        for tool, mods in r["heavy"].items():
            out.append(
                f"- modules loaded by `import {tool}` among {', '.join('`' + m + '`' for m in ('pandas', 'numpy', 'requests', 'pynvml', 'psutil', 'IPython'))}…: {', '.join(mods) if mods else 'none'}"
            )
    if r["key"] == "first_region" and r.get("breakdown"):
        b = r["breakdown"]
        top = ", ".join(f"`{t['module']}` {t['self_ms']:.1f} ms" for t in b["top_self"])
        out.append(
            f"- under `python -X importtime` ({b['runs']} runs, medians; the option slows imports "
            f"itself): {_fmt_s(b['total_s'])} in all, {b['modules']:.0f} modules imported after the "
            f"timer starts, their own import time adding up to {_fmt_s(b['self_s'])}; the largest: {top}."
        )
    if r["key"] == "regions":
        out.append(f"- carbonlab's meters on this machine: {', '.join(r['meters'])}.")
    if r["key"] == "cells":
        if r.get("core_edges_s"):
            out.append(
                f"- the core window's begin and end, timed inside the hooks: {_fmt_s(r['core_edges_s'])} "
                "per cell (against the regions row's tight loop)."
            )
        out.append(
            f"- of carbonlab's overhead, the core window alone (a `Window` begun in `pre_run_cell` and "
            f"ended in `post_run_cell`, nothing else) is {fmt_stat(r['core_only'], 'ms')}; the rest is "
            "the Jupyter layer (run bookkeeping, the history row queued for the writer thread)."
        )
        out.append(
            f"- baseline `run_cell('pass')` without measurement: {_fmt_s(r['baseline_s'])} per cell; "
            f"carbonlab measured the cells ({'yes' if r['last_cell_measured'] else 'NO'}) and displayed "
            f"{'a summary' if r['last_cell_shown'] else 'nothing'}."
        )
    if r["key"] in ("pytest_on", "pytest_off"):
        want_on = r["key"] == "pytest_on"
        ws = "; ".join(
            f"{k} {fmt_stat(v, 'x')}"
            for k, v in r["wall_ratios"].items()
            if ("--carbon" in k) == want_on
        )
        out.append(f"- wall time over the baseline run's: {ws}.")
    if r["key"] == "pytest_on":
        d = r["detail"]
        per_run = "; ".join(
            f"{k} {fmt_stat(d['cpu_s'][k], 's')} CPU, {fmt_stat(v, 's')} wall"
            for k, v in d["wall_s"].items()
        )
        out.append(f"- per run: {per_run}.")
    if r["key"] in ("pytest_on", "pytest_off"):
        ex = "; ".join(
            f"{k} {fmt_stat(r['startup_extra_cpu_s'][k], 's')} CPU, {fmt_stat(v, 's')} wall"
            for k, v in r["startup_extra_s"].items()
            if ("--carbon" in k) == (r["key"] == "pytest_on")
        )
        out.append(f"- a project with a single test, extra time over no plugin: {ex}.")
    if r["key"] == "pytest_on":
        d = r["detail"]
        base = d["cpu_s"]["no plugin"]["median"]
        per = "; ".join(
            f"{k}: {_fmt_s(r['startup_extra_cpu_s'][k]['median'])} at session start, "
            f"{_fmt_s((v['median'] - base - r['startup_extra_cpu_s'][k]['median']) / max(d['n_tests'] - 1, 1))} per test"
            for k, v in d["cpu_s"].items()
            if "--carbon" in k
        )
        out.append(
            f"- split, in CPU time (single-test extra = fixed cost; the {d['n_tests']:,}-test extra "
            f"minus it, over the tests = per test): {per}."
        )
        sp = r.get("split")
        if sp:
            out.append(
                "- issue 16's split goals, the same runs paired round by round (each "
                f"{d['n_tests']:,}-test run's extra CPU over the baseline run just before it, less "
                f"the session start's median, over the tests): session start "
                f"{fmt_stat(sp['start_s'], 's')} against ≤ 15 ms: "
                f"**{'met' if sp['start_met'] else 'not met'}**; per test "
                f"{fmt_stat(sp['per_test_s'], 's')} against ≤ 25 µs: "
                f"**{'met' if sp['per_test_met'] else 'not met'}**."
            )
    if r["key"] == "pytest_suite":
        c = r["cpu_s"]
        out.append(
            f"- CPU time a run: no plugin {fmt_stat(c['no plugin'], 's')}, --carbon "
            f"{fmt_stat(c['--carbon'], 's')}."
        )
    if r["key"] == "sampler" and r.get("over_control"):
        out.append(
            "- over the do-nothing thread of the same round (issue 16's goal: within 1 CPU-ms/s): "
            f"{fmt_stat(r['over_control'], 'cpu_ms')}."
        )
    if r["key"] == "sampler":
        out.append(
            f"- carbonlab's sampler ticks per slot: {r['samples']}; meters polled: {', '.join(r['meters'])}."
        )
    if r["key"] == "kernel":
        k, pc = r["kernel_cpu_s"], r["per_cell_s"]
        out.append(
            f"- per cell: without carbonlab {_fmt_s(pc['without'])}, with {_fmt_s(pc['with'])} "
            f"(medians of the blocks); added, quartiles over the block pairs: "
            f"{_fmt_s(r['quartiles_s'][0])} to {_fmt_s(r['quartiles_s'][1])}."
        )
        if r.get("median_cell_added_s") is not None:
            out.append(
                "- the same pairs, each block's median cell instead of its mean (every cell pays "
                "carbonlab's hooks; a cell stalled by another process on this shared machine "
                f"moves only the mean): added {_fmt_s(r['median_cell_added_s'])} a cell."
            )
        threads = "; ".join(
            f"{name}: "
            + ", ".join(f"{t} {_fmt_s(v)}" for t, v in r["kernel_cpu_threads_s"][name].items())
            for name in ("without", "with")
        )
        out.append(
            f"- the kernels' CPU time a cell (every thread, from /proc/PID/task/*/schedstat, over "
            f"each block and its pause): without {_fmt_s(k['without'])}, with "
            f"{_fmt_s(k['with'])}; by thread: {threads}."
        )
    if r["key"] == "cluster" and r.get("edge_s"):
        out.append(
            f"- one edge alone (one round trip through the scheduler's carbonlab handler to "
            f"both workers, the source's `read()`): {fmt_stat(r['edge_s'], 'ms')}; the whole empty window with no cluster "
            f"attached: {fmt_stat(r['none_s'], 'ms')}; the Measurement JSON of a window with 2 "
            f"workers: {r['measurement_bytes'] / 1000:.1f} kB."
        )
        if r.get("busy_added_s"):
            out.append(
                "- a window around 20 ms of work (`time.sleep(0.02)`, the begin's read travels "
                "while it runs), added time, attached over detached, the same way: "
                f"{fmt_stat(r['busy_added_s'], 'ms')} (for information: the goal is judged on the "
                "empty window above, the worst case)."
            )
    return out


# ---- accuracy -------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 0.01:
        return "< 0.01 %"
    return f"{v:.2g} %" if v < 10 else f"{v:.0f} %"


def _acc_cell(s: dict[str, Any], reset: bool) -> str:
    parts = []
    if s["median_abs"] is not None:
        parts.append(f"{_pct(s['median_abs'])} / {_pct(s['max_abs'])}")
    if s["flagged"]:
        parts.append(
            f"flagged {s['flagged']}/{s['n']} (their error {_pct(s['flagged_median_abs'])})"
        )
    if reset and s["reset_noted"]:
        parts.append(f"reset noted {s['reset_noted']}/{s['n']}")
    return "; ".join(parts) or "–"


def accuracy_verdicts(acc: dict[str, Any]) -> dict[str, Any]:
    """The goals: counter within 1 % at ≥ 1 s (traces without a reset); short windows flagged."""
    long_worst: dict[float, float] = {}
    short_unflagged = 0
    short_total = 0
    confident_wrong: list[tuple[str, float, float]] = []
    for r in acc["results"]:
        s = r["summary"]["energy counter"]
        if r["length_s"] >= 1.0 and not r["reset"] and s["max_abs"] is not None:
            long_worst[r["length_s"]] = max(long_worst.get(r["length_s"], 0.0), s["max_abs"])
        if r["length_s"] < 0.1:
            short_total += s["n"]
            short_unflagged += s["n"] - s["flagged"]
        if not r["reset"] and s["max_abs"] is not None and s["max_abs"] > 10:
            confident_wrong.append((r["trace"], r["length_s"], s["max_abs"]))
    return {
        "long_worst": long_worst,
        "long_met": all(v <= 1.0 for v in long_worst.values()),
        "long_met_from": min(
            (
                L
                for L, v in long_worst.items()
                if all(w <= 1.0 for LL, w in long_worst.items() if LL >= L)
            ),
            default=None,
        ),
        "short_met": short_unflagged == 0,
        "short_total": short_total,
        "short_unflagged": short_unflagged,
        "confident_wrong": confident_wrong,
    }


def accuracy_section(acc: dict[str, Any]) -> list[str]:
    if "skipped" in acc:
        return [f"Not run: {acc['skipped']}."]
    out = [
        "Each cell: median / largest |error| against the exact integral over the windows carbonlab did "
        "not flag `below_resolution`; then how many it flagged (and their median |error|: the figure "
        f"it would have given). {acc['windows_per_cell']} windows per cell, nominal length L (each "
        "lasts L to 1.1 L), random start phases.",
        "",
    ]
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for r in acc["results"]:
        by_trace.setdefault(r["trace"], []).append(r)
    for trace, rs in by_trace.items():
        out += [
            f"**{trace}**",
            "",
            "| window | " + " | ".join(METHODS) + " |",
            "|---|" + "---|" * len(METHODS),
        ]
        for r in rs:
            cells = " | ".join(_acc_cell(r["summary"][m], r["reset"]) for m in METHODS)
            out.append(f"| {_len(r['length_s'])} | {cells} |")
        out.append("")
    return out


# ---- CPU model, cross-check -----------------------------------------------------------------


def cpu_section(cpu: dict[str, Any]) -> list[str]:
    if "skipped" in cpu:
        return [f"Not run: {cpu['skipped']}."]
    p = cpu["carbonlab_cpu_meter"]
    out = [
        f"The same single-threaded Python loop ({cpu['iterations']:,} iterations, ~{cpu['wall_s']['alone']:.2f} s "
        f"alone) measured {cpu['summary']['carbonlab']['alone']['n']} times alone, then "
        f"{cpu['summary']['carbonlab']['loaded']['n']} times while another process spins on the "
        "other core (`python -c 'while True: pass'`); the tools alternate run by run, each run "
        "its own window (carbonlab: `with carbonlab.track()`; codecarbon: a new offline tracker's "
        f"`start()`/`stop()`). carbonlab's CPU meter here: `{p['method']}` with {p['params']}.",
        "",
        "| tool | alone: mean, CV | neighbour busy: mean, CV | busy ÷ alone | CV of all runs |",
        "|---|---|---|---|---|",
    ]
    for tool, r in cpu["summary"].items():
        a, b = r["alone"], r["loaded"]
        out.append(
            f"| {tool} | {a['mean_j']:.3g} J, {a['cv_pct']:.1f} % | {b['mean_j']:.3g} J, {b['cv_pct']:.1f} % | "
            f"{r['loaded_over_alone']:.2f}× | {r['cv_all_pct']:.1f} % |"
        )
    return out


def _err(v: float, truth: float) -> str:
    return f"{(v - truth) / truth * 100:+.2f} %" if truth else "n/a"


def cross_section(cross: dict[str, Any]) -> list[str]:
    if "skipped" in cross:
        return [f"Not run: {cross['skipped']}."]
    first = next(iter(cross["traces"].values()))
    stubbed = first.get("stubbed_nvml_calls") or []
    out = [
        "Both tools measure the same windows in one process that found the simulated NVML by "
        "`LD_LIBRARY_PATH` (real clock, counter updated every 100 ms): codecarbon's task "
        "(`start_task` … `stop_task`) encloses carbonlab's window around a `time.sleep`. Each "
        "figure is compared with the exact integral over that tool's own span (between the middles "
        "of its begin and end calls; the calls last well under a millisecond to a few ms).",
    ]
    if stubbed:
        out.append(
            "codecarbon only looks for GPUs where `nvidia-smi --help` runs (a 2-line script on "
            "`PATH` here), and at start it asks NVML for a few things the simulator does not "
            f"export ({', '.join('`' + s + '`' for s in stubbed)}): those get static answers in that "
            "process. Its energy figure comes from `nvmlDeviceGetTotalEnergyConsumption` through "
            "pynvml to the simulator, as carbonlab's does."
        )
    rows = [row for res in cross["traces"].values() for row in res["rows"]]
    cl_err = [
        abs(r["carbonlab_j"] - r["carbonlab_truth_j"]) / r["carbonlab_truth_j"] * 100
        for r in rows
        if r["carbonlab_truth_j"]
    ]
    summary = f"carbonlab's largest |error| {max(cl_err, default=float('nan')):.2f} %"
    both = [r for r in rows if "codecarbon_j" in r]
    if both:
        same = sum(
            1
            for r in both
            if abs(r["carbonlab_j"] - r["codecarbon_j"]) <= 1e-6 * abs(r["codecarbon_j"]) + 1e-9
        )
        cc_err = [
            abs(r["codecarbon_j"] - r["codecarbon_truth_j"]) / r["codecarbon_truth_j"] * 100
            for r in both
            if r["codecarbon_truth_j"]
        ]
        summary += (
            f", codecarbon's {max(cc_err, default=float('nan')):.2f} %; the two figures are identical in "
            f"{same} of {len(both)} windows: both difference the same counter, and where they differ "
            "codecarbon's span (which encloses carbonlab's) took in one more 100 ms counter update"
        )
    out += [
        "",
        f"Result: {summary}.",
        "",
        "| trace | window | carbonlab (vs truth) | codecarbon (vs truth) | carbonlab − codecarbon |",
        "|---|---|---|---|---|",
    ]
    for name, res in cross["traces"].items():
        for row in res["rows"]:
            cl = (
                f"{row['carbonlab_j']:.2f} J ({_err(row['carbonlab_j'], row['carbonlab_truth_j'])})"
            )
            if "codecarbon_j" in row:
                cc = f"{row['codecarbon_j']:.2f} J ({_err(row['codecarbon_j'], row['codecarbon_truth_j'])})"
                d = (
                    (row["carbonlab_j"] - row["codecarbon_j"]) / row["codecarbon_j"] * 100
                    if row["codecarbon_j"]
                    else None
                )
                diff = "n/a" if d is None else ("0 %" if abs(d) < 0.005 else f"{d:+.2f} %")
            else:
                cc, diff = "(not run)", "–"
            out.append(f"| {name} | {row['duration_s']:g} s | {cl} | {cc} | {diff} |")
    return out


# ---- the whole file -------------------------------------------------------------------------


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    v = m["versions"]
    out = [
        "# Benchmarks: carbonlab against codecarbon and pytest-codecarbon",
        "",
        f"<!-- Generated by `{res['command']}`. Do not edit by hand: rerun the suite. -->",
        "",
        f"Generated by `{res['command']}` on {m['date']}, in {res['elapsed_s'] / 60:.1f} minutes. "
        "Issue 7 asks two questions: does carbonlab slow your work down, and can you believe its "
        "numbers. Figures are medians, with the smallest and largest in brackets; *peer ÷ "
        "carbonlab* is how many times the peer's median is carbonlab's.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores visible; memory {m['memory']}; {m['os']}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- carbonlab revision {m['revision']}",
        f"- load average (1, 5, 15 min) at the start: {res['load_start']}; at the end: {res['load_end']}. "
        "This machine is shared (others run test suites on it), so every comparison is interleaved "
        "and repeated, and each ratio pairs runs made next to each other.",
        "",
        "## How to reproduce",
        "",
        "```sh",
        f"{res['command']}" + ("" if res["command"].endswith("bench") else ""),
        "```",
        "",
        "- `.venv/bin/python -m bench` runs everything (about 10 minutes) and rewrites this file. "
        "It creates `bench/.venv-peers` on first use: "
        f"`{res.get('install_command') or 'bench/.venv-peers/bin/pip install codecarbon pytest-codecarbon ...'}` "
        "(the same pytest and IPython versions as the project's venv), and makes carbonlab "
        "importable there from this checkout, so both tools run on one interpreter.",
        "- `.venv/bin/python -m bench --quick --no-peers` is the smoke run (carbonlab alone, tiny "
        "sizes, seconds; `tests/test_bench_smoke.py`).",
        "- Peers run offline: `OfflineEmissionsTracker(country_iso_code='FRA')`, no API, and a "
        "network guard in every process of the peers' venv refuses name lookups and connections "
        f"(refused in this run: {res.get('network_attempts', 0)}).",
        "- Child processes get no `PYTHONDONTWRITEBYTECODE` (installed environments have `.pyc` "
        "files); every configuration runs once untimed first.",
        "",
        "## Speed, side by side",
        "",
    ]
    out += speed_table(res["rows"])
    out += ["", "### What each row runs", ""]
    for r in res["rows"]:
        out += row_details(r) + [""]
    out += ["## Accuracy", "", "### GPU energy on the simulated NVML", ""]
    acc = res["accuracy"]
    if "skipped" not in acc:
        from . import accuracy as _acc

        out += [_acc.__doc__.split("\n\n", 1)[1].strip(), ""]
        verdict = accuracy_verdicts(acc)
        res["accuracy_verdict"] = verdict
        worst = ", ".join(f"{_len(L)}: {_pct(w)}" for L, w in sorted(verdict["long_worst"].items()))
        out += [
            f"- Goal, energy counter within 1 % for windows ≥ 1 s: **{'met' if verdict['long_met'] else 'missed'}**. "
            f"Largest |error| over the traces without a reset, by length: {worst}.",
            f"- Goal, short windows flagged: **{'met' if verdict['short_met'] else 'missed'}**: "
            f"{verdict['short_total'] - verdict['short_unflagged']} of {verdict['short_total']} windows "
            "under 100 ms came out `below_resolution` on the counter path.",
        ]
        if verdict["confident_wrong"]:
            cw = "; ".join(
                f"{t} at {_len(L)}: up to {_pct(e)}"
                for t, L, e in verdict["confident_wrong"]
                if L <= 1
            )
            if cw:
                out.append(f"- Not flagged but more than 10 % off (counter path, ≤ 1 s): {cw}.")
        out.append("")
    out += accuracy_section(acc)
    out += ["### CPU model: spread with a busy neighbour", ""]
    out += cpu_section(res["cpu_model"]) + [""]
    out += ["### Cross-check against codecarbon on the simulated NVML", ""]
    out += cross_section(res["crosscheck"]) + [""]
    out += ["## Goals missed, and what would fix them", ""]
    missed = missed_goals(res)
    out += missed or ["None in this run."]
    out.append("")
    return "\n".join(out)


def _fix(r: dict[str, Any]) -> str:
    text = FIXES.get(r["key"], "")
    if r["key"] == "cells":
        core = r["core_only"]["median"]
        text = text.format(
            core=_fmt_s(core),
            edges=_fmt_s(r["core_edges_s"]) if r.get("core_edges_s") else "n/a",
            layer=_fmt_s(r["carbonlab"]["median"] - core),
        )
    if r["key"] == "pytest_on":
        d = r["detail"]
        base = d["cpu_s"]["no plugin"]["median"]
        fixed = r["startup_extra_cpu_s"]["carbonlab --carbon"]["median"]
        on = d["cpu_s"]["carbonlab --carbon"]["median"]
        text = text.format(
            base=_fmt_s(base),
            n=f"{d['n_tests']:,}",
            budget=_fmt_s(base * 0.05),
            fixed=_fmt_s(fixed),
            per=_fmt_s((on - base - fixed) / max(d["n_tests"] - 1, 1)),
        )
    if r["key"] == "cluster":
        text = text.format(edge=fmt(r["edge_s"]["median"], "ms") if r.get("edge_s") else "n/a")
    if r["key"] == "first_region":
        cum = (r.get("breakdown") or {}).get("stdlib_cumulative_ms", {})
        text = text.format(stdlib=", ".join(f"`{m}` {v:.1f} ms" for m, v in cum.items()) or "n/a")
    return text


def missed_goals(res: dict[str, Any]) -> list[str]:
    out = []
    for r in res["rows"]:
        if not r["met"]:
            out.append(
                f"- **{r['what']}**: {fmt_stat(r['carbonlab'], r['unit'])} against a goal of {r['goal']}. "
                + _fix(r)
            )
    acc = res["accuracy"]
    if "skipped" not in acc:
        v = res.get("accuracy_verdict") or accuracy_verdicts(acc)
        if not v["long_met"]:
            worst = ", ".join(f"{_len(L)}: {_pct(w)}" for L, w in sorted(v["long_worst"].items()))
            out.append(
                f"- **GPU energy counter within 1 % at ≥ 1 s** (worst |error| {worst}). "
                + ACCURACY_FIX
            )
        if not v["short_met"]:
            out.append(
                f"- **short GPU windows flagged**: {v['short_unflagged']} windows under 100 ms were not."
            )
        resets = [r for r in acc["results"] if r["reset"] and r["length_s"] >= 1.0]
        if resets and any((r["summary"]["energy counter"]["max_abs"] or 0) > 1.0 for r in resets):
            out.append(
                "- **GPU counter reset inside a window** (errors in the reset table above). "
                + RESET_FIX
            )
    return out


def summary_lines(res: dict[str, Any]) -> list[str]:
    """What the terminal shows at the end: the speed table in plain text."""
    out = []
    for r in res["rows"]:
        u = r["unit"]
        s = Stat.from_dict(r["carbonlab"])
        peers = "; ".join(
            f"{p['name']} {fmt(p['stat']['median'], u)} ({_ratio(p['stat'], r['carbonlab'])})"
            for p in r["peers"]
        )
        out.append(
            f"{r['what']}: carbonlab {fmt(s.median, u)} [{fmt(s.lo, u)}–{fmt(s.hi, u)}] "
            f"goal {r['goal']} {'ok' if r['met'] else 'MISSED'}" + (f" | {peers}" if peers else "")
        )
    acc = res["accuracy"]
    if "skipped" not in acc:
        v = accuracy_verdicts(acc)
        out.append(
            f"GPU counter ≥ 1 s within 1 %: {'ok' if v['long_met'] else 'MISSED'} "
            f"(worst {', '.join(f'{L:g} s {w:.2g} %' for L, w in sorted(v['long_worst'].items()))}); "
            f"short windows flagged: {v['short_total'] - v['short_unflagged']}/{v['short_total']}"
        )
    else:
        out.append(f"GPU accuracy: skipped ({acc['skipped']})")
    for tool, r in res["cpu_model"].get("summary", {}).items():
        out.append(
            f"CPU model {tool}: CV alone {r['alone']['cv_pct']:.1f} %, busy {r['loaded']['cv_pct']:.1f} %, busy/alone {r['loaded_over_alone']:.2f}x"
        )
    return out
