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
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.bench_pytest import make_project  # noqa: E402

_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(argv: list[str], cwd: Path) -> int:
    """Instructions executed by ``argv`` (every thread), counted by callgrind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_CARBON")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONHASHSEED"] = "0"
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)  # caches
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out", *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    m = _COLLECTED.search(out.stderr)
    if m is None:
        raise SystemExit(f"callgrind gave no count for {argv}:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=200)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    py = args.python
    with tempfile.TemporaryDirectory() as d:
        one = make_project(Path(d) / "one", 1)
        many = make_project(Path(d) / "many", args.tests)
        pytest = [py, "-m", "pytest", "-q"]
        base1 = instructions([*pytest, "-p", "no:carbon"], one)
        idle1 = instructions(pytest, one)
        on1 = instructions([*pytest, "--carbon"], one)
        base_n = instructions([*pytest, "-p", "no:carbon"], many)
        on_n = instructions([*pytest, "--carbon"], many)
        bare = instructions([py, "-c", "pass"], Path(d))
        region = instructions([py, "-c", "import carbonlab\nwith carbonlab.track(): pass"], Path(d))
    n = args.tests
    fixed = on1 - base1
    per_test = ((on_n - on1) - (base_n - base1)) / n
    base_per_test = (base_n - base1) / n
    base_1000 = base1 + 1000 * base_per_test
    ratio = (base_1000 + fixed + 1000 * per_test) / base_1000
    print(f"python {sys.version.split()[0]}; instructions (callgrind, PYTHONHASHSEED=0)")
    print(
        f"pytest, 1 test: no plugin {base1 / 1e6:.1f} M; installed, not enabled "
        f"{(idle1 - base1) / 1e6:+.1f} M; --carbon {fixed / 1e6:+.1f} M (fixed cost)"
    )
    print(
        f"pytest, {n} tests: no plugin {base_per_test / 1e3:.0f} k per test; --carbon "
        f"{per_test / 1e3:+.0f} k per test"
    )
    print(f"projected on 1,000 trivial tests: --carbon x{ratio:.3f} of no plugin")
    print(
        f"first measured region: {(region - bare) / 1e6:.1f} M over a bare interpreter "
        f"({bare / 1e6:.1f} M)"
    )


if __name__ == "__main__":
    main()
