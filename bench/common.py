"""What every part of the suite shares: paths, statistics, child processes, the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Environment variables a child must not inherit: they would change what is measured.
_DROP_ENV = (
    "PYTHONDONTWRITEBYTECODE",  # installed environments have .pyc files; without them every run recompiles
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_CURRENT_TEST",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_CARBON_BUDGET",
    "PYTEST_CARBON_SESSION_BUDGET",
    "CARBONLAB_HISTORY",
    "CARBONLAB_ZONE",
    "CARBONLAB_INTENSITY",
    "CARBONLAB_PUE",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "LD_LIBRARY_PATH",
    "SIMNVML_CONFIG",
)


@dataclass
class Stat:
    """Median with the smallest and largest value of a sample."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, xs: Sequence[float]) -> Stat:
        xs = list(xs)
        if not xs:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(xs), min(xs), max(xs), len(xs))

    def scaled(self, k: float) -> Stat:
        return Stat(self.median * k, self.lo * k, self.hi * k, self.n)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stat:
        return cls(d["median"], d["lo"], d["hi"], d["n"])


def interleave(
    blocks: dict[str, Callable[[int], list[float]]], sizes: dict[str, int], rounds: int
) -> dict[str, list[list[float]]]:
    """Run each block in turn (A B C A B C ...), ``rounds`` times; samples per round per block."""
    import gc

    out: dict[str, list[list[float]]] = {k: [] for k in blocks}
    for name, fn in blocks.items():  # warm-up, not kept
        fn(max(1, sizes[name] // 10))
    for _ in range(rounds):
        for name, fn in blocks.items():
            gc.collect()
            out[name].append(fn(sizes[name]))
    return out


def pooled(rounds: list[list[float]]) -> list[float]:
    return [x for r in rounds for x in r]


def round_medians(rounds: list[list[float]]) -> list[float]:
    return [statistics.median(r) for r in rounds if r]


def child_env(
    extra: dict[str, str] | None = None, *, scratch: Path | None = None
) -> dict[str, str]:
    """The environment of every process the suite starts: ours without what would skew it, the
    repository on PYTHONPATH, no network for the peers, histories in a scratch folder."""
    env = dict(os.environ)
    for k in _DROP_ENV:
        env.pop(k, None)
    env["PYTHONPATH"] = str(ROOT)
    env["CARBONLAB_BENCH_NO_NETWORK"] = "1"  # read by the peer venv's network guard
    env["CODECARBON_SAVE_TO_API"] = "False"  # codecarbon reads CODECARBON_* settings
    if scratch is not None:
        env["CARBONLAB_HISTORY"] = str(scratch / "history.sqlite")
        env["IPYTHONDIR"] = str(scratch / "ipython")
        env["CARBONLAB_BENCH_NET_LOG"] = str(scratch / "network-attempts.log")
    if extra:
        env.update(extra)
    return env


class ChildFailed(RuntimeError):
    pass


def run_json(
    cmd: list[str], env: dict[str, str], cwd: Path, out: Path, timeout: float = 600
) -> Any:
    """Run ``cmd`` (which writes JSON to ``out``) and return what it wrote."""
    if out.exists():
        out.unlink()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise ChildFailed(
            f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n"
            f"{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(out.read_text())


def run_worker(
    python: str | Path,
    task: str,
    args: dict[str, Any],
    env: dict[str, str],
    scratch: Path,
    timeout: float = 600,
) -> Any:
    """``python -m bench.worker TASK ARGS OUT`` in the scratch folder; returns its JSON result."""
    args_path = scratch / f"{task}.args.json"
    args_path.write_text(json.dumps(args))
    out = scratch / f"{task}.out.json"
    cmd = [str(python), "-m", "bench.worker", task, str(args_path), str(out)]
    return run_json(cmd, env, scratch, out, timeout)


def run_code(python: str | Path, code: str, env: dict[str, str], scratch: Path) -> Any:
    """``python -c CODE OUT`` (CODE writes JSON to sys.argv[1]); a fresh process per call."""
    out = scratch / "code.out.json"
    return run_json([str(python), "-c", code, str(out)], env, scratch, out, timeout=300)


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    """The commit measured; CARBONLAB_BENCH_REVISION names it when ROOT is an exported tree."""
    if os.environ.get("CARBONLAB_BENCH_REVISION"):
        return os.environ["CARBONLAB_BENCH_REVISION"]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "carbonlab", "pytest_carbon", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + (
            " (with uncommitted changes in carbonlab/, pytest_carbon/ or bench/)" if dirty else ""
        )
    except OSError:
        return "unknown"


def machine(python_versions: dict[str, str]) -> dict[str, Any]:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "revision": git_revision(),
        "versions": python_versions,
    }


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="carbonlab-bench-"))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
