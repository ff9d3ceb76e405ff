"""The pytest plugin's and the first region's cost in instructions: the same figure on every run.

Run: .venv/bin/python -m bench.bench_instructions [--tests N] [--python PY]   (not a test; needs
valgrind: ``apt-get install -y valgrind``)

On a shared VM, wall and CPU times of a 1 s pytest run swing by ±20 % from one run to the next
(docs/benchmarks.md), which hides any change smaller than that. Instructions executed, counted by
valgrind's callgrind with a fixed ``PYTHONHASHSEED``, repeat to within about 0.5 % and so show a
change of a few percent at once. They are not time (a cache miss costs more than an add), so the
goals stay in CPU time (``python -m bench``); this is the instrument for the work towards them.

Each figure is one ``python -m pytest -q`` (or ``python -c``) under callgrind, on a project of one
trivial test and one of ``--tests`` trivial tests (``bench/bench_pytest.py``'s generator), with
bytecode caches written by an untimed first run:

- fixed cost: instructions of ``--carbon`` minus ``-p no:carbon`` on the one-test project;
- per test: the same difference on the N-test project, less the fixed cost, divided by N;
- the ratio the plugin would give on 1,000 trivial tests: (fixed + 1,000 × per test) over the
  no-plugin run projected to 1,000 tests;
- installed but not enabled: the one-test project without ``-p no:carbon`` and without ``--carbon``;
- ``import carbonlab; with carbonlab.track(): pass`` in a fresh interpreter, against ``pass``.

Under callgrind a run is some 30-50 times slower, and the plugin has two thresholds in wall time
that a real run's tests fall on the cheap side of: a test's first reading reuses the previous
test's last one when it is under ``REUSE_READING_S`` (1 ms) old, and the RAM model re-reads the
resident size at most every ``REREAD_S`` (10 ms). Left as they are, every test under callgrind
would take the dear side of both, an extra reading and a procfs read a test, which a real run
pays perhaps once in ten tests. So the projects get a ``conftest.py`` (in every run, with the
plugin or without) that multiplies both thresholds by the slowdown measured on the no-plugin run
(its wall time under callgrind over its wall time without); ``--time-scale 1`` leaves them as
they are. The figures are the main thread's (``--separate-threads``): the sampler thread's polls
come with wall time, so under callgrind they are multiplied by the slowdown too; its count is
listed apart, and ``python -m bench``'s sampling row measures it in real time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.bench_pytest import make_project  # noqa: E402

_THREAD = re.compile(r"^thread: (\d+)", re.M)
_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)

# In every generated project: the plugin's wall-time thresholds scaled by the callgrind slowdown.
CONFTEST = """\
import os
import sys

_SCALE = float(os.environ.get("CARBON_BENCH_TIME_SCALE") or 0)


def pytest_sessionstart(session):
    if not _SCALE:
        return
    for mod, name in (
        ("pytest_carbon.recorder", "REUSE_READING_S"),
        ("carbonlab.meters.memory", "REREAD_S"),
    ):
        m = sys.modules.get(mod)
        if m is not None:
            setattr(m, name, getattr(m, name) * _SCALE)
"""


def _env(scale: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_CARBON")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONHASHSEED"] = "0"
    env["CARBON_BENCH_TIME_SCALE"] = repr(scale)
    return env


def instructions(argv: list[str], cwd: Path, scale: float = 0.0) -> tuple[int, int, float, float]:
    """Instructions executed by ``argv`` under callgrind: the main thread's, the other threads'
    together, and the wall seconds of a run without callgrind (made first: it also writes the
    bytecode caches) and of the run under it."""
    env = _env(scale)
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    native = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={d}/cg.out",
                *argv,
            ],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        slow = time.perf_counter() - t
        per_thread: dict[int, int] = {}
        for f in Path(d).glob("cg.out*"):
            text = f.read_text(errors="replace")
            total = _TOTAL.search(text)
            thread = _THREAD.search(text)
            if total is not None:
                per_thread[int(thread.group(1)) if thread else 1] = int(total.group(1))
    if 1 not in per_thread:
        raise SystemExit(f"callgrind gave no count for {argv}:\n{out.stderr[-2000:]}")
    others = sum(v for k, v in per_thread.items() if k != 1)
    return per_thread[1], others, native, slow


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=200)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="multiply the plugin's wall-time thresholds by this (default: the measured slowdown)",
    )
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    py = args.python
    n = args.tests
    with tempfile.TemporaryDirectory() as d:
        one = make_project(Path(d) / "one", 1)
        many = make_project(Path(d) / "many", n)
        for project in (one, many):
            (project / "conftest.py").write_text(CONFTEST)
        pytest = [py, "-m", "pytest", "-q"]
        base_n, _, native, slow = instructions([*pytest, "-p", "no:carbon"], many)
        scale = args.time_scale if args.time_scale is not None else slow / native
        base1 = instructions([*pytest, "-p", "no:carbon"], one, scale)[0]
        idle1 = instructions(pytest, one, scale)[0]
        on1, on1_others, *_ = instructions([*pytest, "--carbon"], one, scale)
        on_n, on_n_others, *_ = instructions([*pytest, "--carbon"], many, scale)
        bare = instructions([py, "-c", "pass"], Path(d))[0]
        region = instructions([py, "-c", "import carbonlab\nwith carbonlab.track(): pass"], Path(d))
    fixed = on1 - base1
    per_test = ((on_n - on1) - (base_n - base1)) / n
    base_per_test = (base_n - base1) / n
    base_1000 = base1 + 1000 * base_per_test
    ratio = (base_1000 + fixed + 1000 * per_test) / base_1000
    print(
        f"python {sys.version.split()[0]}; instructions (callgrind, PYTHONHASHSEED=0), main thread"
    )
    print(
        f"callgrind slowdown {slow / native:.0f}x ({n}-test run without the plugin: {native:.2f} s, "
        f"{slow:.0f} s under callgrind); wall-time thresholds scaled by {scale:.0f}"
    )
    print(
        f"pytest, 1 test: no plugin {base1 / 1e6:.1f} M; installed, not enabled "
        f"{(idle1 - base1) / 1e6:+.1f} M; --carbon {fixed / 1e6:+.1f} M (fixed cost)"
    )
    print(
        f"pytest, {n} tests: no plugin {base_per_test / 1e3:.0f} k per test; --carbon "
        f"{per_test / 1e3:+.1f} k per test"
    )
    print(f"projected on 1,000 trivial tests: --carbon x{ratio:.3f} of no plugin")
    print(
        f"other threads with --carbon (the sampler; wall-time driven, so {slow / native:.0f}x "
        f"inflated here): {on1_others / 1e6:.1f} M (1 test), {on_n_others / 1e6:.1f} M ({n} tests)"
    )
    print(
        f"first measured region: {(region[0] + region[1] - bare) / 1e6:.1f} M over a bare "
        f"interpreter ({bare / 1e6:.1f} M), every thread"
    )


if __name__ == "__main__":
    main()
