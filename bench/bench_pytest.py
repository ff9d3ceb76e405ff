"""What the pytest plugin costs, against the DESIGN.md budgets.

Run: .venv/bin/python bench/bench_pytest.py [--runs N] [--tests N]   (prints medians; not a test)

Budgets: pytest startup with the plugin installed but not enabled ≤ 20 ms extra; ``--carbon`` on
1,000 trivial tests ≤ 5 % slower than without the plugin.

Each configuration is a fresh ``python -m pytest`` subprocess on a generated project, timed wall to
wall and in CPU time (user + system of the child: steadier than wall time on a shared machine);
runs are interleaved (a, b, c, a, b, c, ...) so drift in machine load hits all of them alike, and
the median of each is reported. ``PYTHONDONTWRITEBYTECODE`` is removed from the children's
environment, so bytecode and pytest's assertion-rewrite caches are written in the warm-up run and
used after, as in any installed environment (without them every run recompiles carbonlab).

- ``-p no:carbon``: the plugin is not loaded at all (the baseline);
- installed, not enabled: the entry point loads, registers its options and markers, and stops;
- ``--carbon``: every test measured (setup, call, teardown) with this machine's real meters
  (``carbonlab devices`` lists them), a header line and the session summary;
- ``--carbon --carbon-budget=1kJ``: the same, every call judged against a budget.

Startup alone is timed on a project with a single test (``-p no:carbon`` vs not enabled). The
suite is also run under ``python -X importtime`` once, to list what the plugin imports when it is
not enabled.

Peer: ``--codecarbon-python PATH`` also times pytest-codecarbon (the only other pytest energy plugin
on PyPI; its flag is also ``--carbon``) on the same suite, with the Python of a separate
environment where it is installed (it cannot share ours: same option name), e.g.
``python -m venv /tmp/cc && /tmp/cc/bin/pip install pytest codecarbon pytest-codecarbon``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def make_project(root: Path, n_tests: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    per_file = 100
    for f in range(max(1, n_tests // per_file)):
        body = "\n".join(f"def test_{i}():\n    pass\n" for i in range(min(per_file, n_tests)))
        (root / f"test_trivial_{f:03d}.py").write_text(body)
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in (
        "PYTEST_CARBON_BUDGET",
        "PYTEST_CARBON_SESSION_BUDGET",
        "PYTEST_ADDOPTS",
        "PYTHONDONTWRITEBYTECODE",
    ):
        env.pop(var, None)
    return env


def run(root: Path, args: list[str], py: str = PY) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pytest run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [py, "-m", "pytest", "-q", *args], cwd=root, env=_env(), capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(
            f"pytest {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return wall, cpu


def bench(
    root: Path, configs: dict[str, list[str]], runs: int, py: str = PY
) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    for args in configs.values():  # warm the file cache, .pyc files and rewrite caches
        run(root, args, py)
    for _ in range(runs):
        for name, args in configs.items():
            times[name].append(run(root, args, py))
    return times


def report(times: dict[str, list[tuple[float, float]]]) -> None:
    """Medians (the budget's measure) and minima (least disturbed by other load on the machine)."""
    base = {
        "wall": statistics.median(w for w, _ in times["no plugin"]),
        "cpu": statistics.median(c for _, c in times["no plugin"]),
        "wall min": min(w for w, _ in times["no plugin"]),
        "cpu min": min(c for _, c in times["no plugin"]),
    }
    print(f"  {'':<14}" + "".join(f"{k:>24}" for k in base))
    for name, xs in times.items():
        got = {
            "wall": statistics.median(x for x, _ in xs),
            "cpu": statistics.median(x for _, x in xs),
            "wall min": min(x for x, _ in xs),
            "cpu min": min(x for _, x in xs),
        }
        cells = "".join(
            f"{got[k] * 1000:9.1f} ms {(got[k] / base[k] - 1) * 100:+6.1f} %     " for k in base
        )
        print(f"  {name:<14}{cells}")


def plugin_imports(root: Path) -> list[str]:
    proc = subprocess.run(
        [PY, "-X", "importtime", "-m", "pytest", "-q", "--co"],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
    )
    mods = []
    for line in proc.stderr.splitlines():
        if "|" not in line:
            continue
        name = line.rsplit("|", 1)[1].strip()
        if name.startswith(("carbonlab", "pytest_carbon", "pynvml", "psutil")):
            cumulative_us = int(line.split("|")[1])
            mods.append(f"{name} ({cumulative_us} µs cumulative)")
    return mods


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument(
        "--codecarbon-python",
        metavar="PATH",
        help="Python of an environment with pytest-codecarbon",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        suite = make_project(Path(tmp) / "suite", args.tests)
        single = make_project(Path(tmp) / "single", 1)

        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.runs} interleaved runs "
            "per configuration"
        )
        print("\nstartup (1 trivial test):")
        report(bench(single, {"no plugin": ["-p", "no:carbon"], "not enabled": []}, args.runs * 2))

        print(f"\n{args.tests} trivial tests:")
        configs = {
            "no plugin": ["-p", "no:carbon"],
            "not enabled": [],
            "--carbon": ["--carbon"],
            "+ budget": ["--carbon", "--carbon-budget=1kJ"],
        }
        report(bench(suite, configs, args.runs))

        if args.codecarbon_python:
            print(f"\npytest-codecarbon, {args.tests} trivial tests ({args.codecarbon_python}):")
            cc = {"no plugin": ["-p", "no:codecarbon"], "--carbon (cc)": ["--carbon"]}
            report(bench(suite, cc, max(3, args.runs // 3), args.codecarbon_python))

        print("\nmodules the plugin imports when not enabled (python -X importtime):")
        for line in plugin_imports(single) or ["  (none)"]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
