"""``--carbon`` against ``-p no:carbon`` on a real test suite, in CPU time (issue 16: ≤ 1.02×).

Run: .venv/bin/python -m bench.bench_suite_ratio DIR [--pairs N] [-- PYTEST ARGS]   (not a test)

e.g. on boltons 26.2.0 (519 tests; docs/pytest.md, "Cost"):

    pip download --no-binary :all: --no-deps boltons==26.2.0 && tar xzf boltons-26.2.0.tar.gz
    .venv/bin/python -m bench.bench_suite_ratio boltons-26.2.0 --pairs 15

Each run is a fresh ``python -m pytest -q -p no:cacheprovider`` in DIR, serially (no xdist), timed
as the child's user + system CPU time (getrusage): steadier than wall time on a shared machine. The
two runs of a pair follow each other, in alternating order, so drift in the machine's load hits
both alike; the figure is the median of the pairs' ratios, with their range. A first, untimed
pair writes bytecode and assertion-rewrite caches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.bench_pytest import run  # noqa: E402

OFF = ["-p", "no:cacheprovider", "-p", "no:carbon"]
ON = ["-p", "no:cacheprovider", "--carbon"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite", type=Path)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    extra = list(args.pytest_args)
    run(args.suite, OFF + extra)
    run(args.suite, ON + extra)
    ratios, off_s, on_s = [], [], []
    for i in range(args.pairs):
        order = (OFF, ON) if i % 2 == 0 else (ON, OFF)
        got = {}
        for a in order:
            got[a is ON] = run(args.suite, a + extra)[1]
        off_s.append(got[False])
        on_s.append(got[True])
        ratios.append(got[True] / got[False])
        print(f"pair {i + 1}: no plugin {got[False]:.3f} s, --carbon {got[True]:.3f} s, "
              f"x{ratios[-1]:.3f}", flush=True)  # fmt: skip
    print(
        f"{args.suite.name}: {args.pairs} pairs, CPU time (user + system of the child): no plugin "
        f"median {statistics.median(off_s):.3f} s, --carbon median {statistics.median(on_s):.3f} s;"
        f" ratio median x{statistics.median(ratios):.3f} (x{min(ratios):.3f} - x{max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
