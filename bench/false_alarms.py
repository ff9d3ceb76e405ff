"""False alarms of the pytest regression gate on an unchanged suite (a bench, not a test).

    .venv/bin/python -m bench.false_alarms SUITE_DIR [--runs 10] [--warmup 5] [--xdist 0,2]

Runs the suite under ``pytest --carbon-save`` ``warmup + runs`` times per mode (serial, ``-n 2``),
nothing changed between runs, then replays the gate offline: each of the last ``runs`` runs is
compared with the runs saved before it, as CI would compare a pull request with its base branch.
Every regression found is a false alarm. It is counted for each threshold and for two ways of
comparing:

- ``last run``: with the single latest run, every test judged (the gate before issue 16);
- ``median of 5``: with the median of the last 5 runs and above their highest figure, tests that
  imported modules during their call (first use) not judged per test (the gate now).

The suite is a real project's test suite, e.g. an sdist from PyPI::

    pip download --no-binary :all: --no-deps boltons && tar xzf boltons-*.tar.gz
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from carbonlab.compare import (
    combine,
    diff,
    load_run,
    parse_fail_spec,
    regressions,
    saved_runs,
)

SPREAD = float(os.environ.get("FA_SPREAD", "2"))  # carbonlab.compare.SPREAD_FACTOR by default
SPECS = (
    "energy:20%:200mJ",
    "energy:20%:500mJ",
    "energy:10%:50mJ",
    "energy:20%",
    "session:10%",
    "session:20%",
)


def _run_suite(suite: Path, storage: Path, xdist: int) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    if xdist:
        cmd += ["-n", str(xdist)]
    cmd += ["--carbon-save=bench", f"--carbon-storage={storage}", "tests"]
    proc = subprocess.run(cmd, cwd=suite, capture_output=True, text=True, timeout=900)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pytest failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr}")


def _old_style(run):  # the gate before: first use unknown, every test judged
    run = dataclasses.replace(run)
    run.tests = {k: dataclasses.replace(f, first_use=False) for k, f in run.tests.items()}
    return run


def replay(paths: list[Path], runs: int, show: bool = False) -> dict[str, dict[str, list[int]]]:
    """{spec: {"last run": [alarms per run], "median of 5": [...]}}."""
    loaded = [load_run(p) for p in paths]
    out: dict[str, dict[str, list[int]]] = {}
    for text in SPECS:
        spec = parse_fail_spec(text)
        per = out.setdefault(text, {"last run": [], "median of 5": []})
        for i in range(len(loaded) - runs, len(loaded)):
            cur = loaded[i]
            old_base, old_cur = loaded[i - 1], _old_style(cur)
            per["last run"].append(
                len(regressions(diff(old_base, old_cur), [spec], old_base, old_cur))
            )
            base = combine(loaded[max(0, i - 5) : i], "median")
            regs = regressions(diff(base, cur), [spec], base, cur, spread=SPREAD)
            per["median of 5"].append(len(regs))
            if show and spec.floor is not None:
                for g in regs:
                    print(f"    [{text}] run {i + 1}: {g.message}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.false_alarms", description=__doc__)
    ap.add_argument("suite", type=Path, help="a project directory with a tests/ folder")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5, help="baseline runs saved first")
    ap.add_argument("--xdist", default="0,2", help="worker counts, 0 for serial")
    ap.add_argument(
        "--keep", type=Path, help="keep the saved runs here (reused, not rerun, when present)"
    )
    ap.add_argument("--list", action="store_true", help="print each false alarm")
    args = ap.parse_args(argv)
    print(f"suite {args.suite}; {args.warmup} baseline runs, then {args.runs} compared runs")
    for n in [int(x) for x in args.xdist.split(",") if x != ""]:
        with tempfile.TemporaryDirectory(prefix="carbon-fa-") as tmp:
            storage = (args.keep / f"n{n}") if args.keep else Path(tmp) / "store"
            if not saved_runs(storage):
                suite = Path(tmp) / "suite"
                shutil.copytree(args.suite, suite, ignore=shutil.ignore_patterns("__pycache__"))
                for k in range(args.warmup + args.runs):
                    _run_suite(suite, storage, n)
                    print(f"  {'-n ' + str(n) if n else 'serial'}: run {k + 1} saved", flush=True)
            res = replay(saved_runs(storage), args.runs, args.list)
        mode = f"-n {n}" if n else "serial"
        print(f"\n{mode}: false alarms in {args.runs} unchanged runs (sum; runs with any)")
        print(f"  {'threshold':<20} {'last run':>16} {'median of 5':>16}")
        for text, per in res.items():
            cells = [f"{sum(v)} ({sum(1 for x in v if x)})" for v in per.values()]
            print(f"  {text:<20} {cells[0]:>16} {cells[1]:>16}")
    return 0


if __name__ == "__main__":
    os.environ.pop("PYTEST_ADDOPTS", None)
    raise SystemExit(main())
