"""``.venv/bin/python -m bench``: the whole suite; writes docs/benchmarks.md.

Options:
  --quick       tiny sizes (seconds; the smoke test uses it)
  --no-peers    carbonlab alone: no peers' venv, nothing installed
  --out PATH    where to write the Markdown (default: docs/benchmarks.md for a full run with peers,
                nowhere otherwise, so a smoke run never overwrites the published figures)
  --json PATH   also write the raw results
  --only A,B    run only these parts: import, first_region, regions, cells, pytest,
                pytest_suite, sampler, accuracy, cpu_model, crosscheck, cluster, kernel (for
                working on the suite; the file then lacks rows). cluster (a 2-worker Dask
                cluster), kernel (two ipykernels through nbclient) and pytest_suite (boltons's
                own tests; its sdist is downloaded once into bench/.cache) are left out of
                --quick unless named
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from . import report, suite
from .common import ROOT, log, machine, scratch_dir

PARTS = [
    "import",
    "first_region",
    "regions",
    "cells",
    "pytest",
    "pytest_suite",
    "sampler",
    "accuracy",
    "cpu_model",
    "crosscheck",
    "cluster",
    "kernel",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", default="")
    args = ap.parse_args(argv)
    only = [p for p in args.only.split(",") if p]
    unknown = set(only) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    want = only or PARTS
    out_path = args.out
    if out_path is None and not (args.quick or args.no_peers or only):
        out_path = ROOT / "docs" / "benchmarks.md"

    started = time.perf_counter()
    load_start = _loadavg()
    scratch = scratch_dir()
    sizes = suite.Sizes.quick() if args.quick else suite.Sizes()
    install_command = ""
    if args.no_peers:
        python = Path(sys.executable)
        versions = _our_versions()
    else:
        from . import peers

        env = peers.ensure()
        python, versions, install_command = env.python, env.versions, env.install_command
    ctx = suite.Ctx(python=python, peers=not args.no_peers, sizes=sizes, scratch=scratch)
    if "accuracy" in want or "crosscheck" in want:
        suite.build_sim(ctx)

    rows = []
    if "first_region" in want:
        rows.append(suite.first_region_row(ctx))
    if "regions" in want:
        rows.append(suite.regions_row(ctx))
    if "cells" in want:
        rows.append(suite.cells_row(ctx))
    if "pytest" in want:
        rows += suite.pytest_rows(ctx)
    if "pytest_suite" in want and (not args.quick or "pytest_suite" in only):
        row = suite.real_suite_row(ctx)
        if row is not None:
            rows.append(row)
    if "import" in want:
        rows.append(suite.import_row(ctx))
    if "sampler" in want:
        rows.append(suite.sampler_row(ctx))
    if "kernel" in want and (not args.quick or "kernel" in only):
        row = suite.kernel_row(ctx)
        if row is not None:
            rows.append(row)
    if "cluster" in want and (not args.quick or "cluster" in only):
        row = suite.cluster_row(ctx)
        if row is not None:
            rows.append(row)
    skipped = {"skipped": "not asked for (--only)"}
    res = {
        "command": _command(args),
        "machine": machine(versions),
        "load_start": load_start,
        "rows": rows,
        "accuracy": suite.accuracy(ctx) if "accuracy" in want else skipped,
        "cpu_model": suite.cpu_model(ctx) if "cpu_model" in want else skipped,
        "crosscheck": suite.crosscheck(ctx) if "crosscheck" in want else skipped,
        "install_command": install_command,
        "network_attempts": _network_attempts(scratch),
        "peers": not args.no_peers,
        "quick": args.quick,
    }
    res["load_end"] = _loadavg()
    res["elapsed_s"] = time.perf_counter() - started
    if out_path is not None:
        text = report.render(res)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text)
        log(f"wrote {out_path}")
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    print("\n".join(report.summary_lines(res)))
    log(f"done in {res['elapsed_s'] / 60:.1f} min")
    return 0


def _command(args: argparse.Namespace) -> str:
    cmd = ".venv/bin/python -m bench"
    extra = []
    if args.quick:
        extra.append("--quick")
    if args.no_peers:
        extra.append("--no-peers")
    if args.only:
        extra.append(f"--only {shlex.quote(args.only)}")
    return " ".join([cmd, *extra])


def _loadavg() -> str:
    from .common import loadavg

    return loadavg()


def _our_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for d in ("carbonlab", "pytest", "ipython", "nvidia-ml-py", "psutil"):
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return out


def _network_attempts(scratch: Path) -> int:
    p = scratch / "network-attempts.log"
    return len(p.read_text().splitlines()) if p.exists() else 0


if __name__ == "__main__":
    raise SystemExit(main())
