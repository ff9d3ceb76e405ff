"""The benchmark suite (bench/) still runs: its carbonlab-only parts at tiny sizes.

Not a timed test: nothing here judges a figure against a budget (docs/benchmarks.md does that, from
a full run). It checks that ``python -m bench --quick --no-peers`` finishes, installs nothing,
leaves docs/benchmarks.md alone, and produces every row of issue 7's table and the accuracy tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ROWS = {
    "first_region": "first measured region in a fresh process",
    "regions": "each later measured region",
    "cells": "per notebook cell, automatic mode",
    "pytest_on": "trivial tests, enabled",
    "pytest_off": "pytest, installed but not enabled",
    "import": "`import`",
    "sampler": "background sampling cost",
}


def test_quick_carbonlab_only_run_has_every_row(tmp_path: Path) -> None:
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes() if docs.exists() else None
    out, raw = tmp_path / "benchmarks.md", tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--no-peers",
            "--out",
            str(out),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(raw.read_text())
    assert res["peers"] is False and res["install_command"] == ""  # nothing installed
    assert [r["key"] for r in res["rows"]] == list(ROWS)
    for r in res["rows"]:
        stat = r["carbonlab"]
        assert stat["n"] > 0 and stat["median"] > 0, r
        assert r["peers"] == []
    text = out.read_text()
    for what in ROWS.values():
        assert what in text
    assert "| carbonlab |" in text  # the CPU model's spread
    acc = res["accuracy"]
    if "skipped" not in acc:  # needs a C compiler for the simulated NVML
        traces = {r["trace"] for r in acc["results"]}
        assert len(traces) == 5
        assert {r["length_s"] for r in acc["results"]} == {0.01, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0}
        short = [
            r["summary"]["energy counter"]
            for r in acc["results"]
            if r["length_s"] < 0.1 and not r["reset"]
        ]
        assert all(s["flagged"] == s["n"] for s in short)  # below the counter's update period
        assert res["crosscheck"]["traces"]
        assert "instant power, 4 Hz" in text
    # the published figures come from full runs only
    assert (docs.read_bytes() if docs.exists() else None) == before
