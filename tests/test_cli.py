"""The `carbonlab` command end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from carbonlab.measurement import METHODS, SCHEMA
from tests.faults import assert_clean

CLI = [sys.executable, "-m", "carbonlab.cli"]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update(extra)
    return env


def run(args, tmp_path, env=None):
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env or clean_env(),
        timeout=120,
    )


def test_help_everywhere(tmp_path):
    for args in (["--help"], ["run", "--help"], ["devices", "--help"], ["zones", "--help"]):
        r = run(args, tmp_path)
        assert r.returncode == 0, r.stderr
        assert "usage:" in r.stdout


@pytest.mark.fault("cli")
@pytest.mark.parametrize(
    "args, needle",
    [
        (["bogus"], "invalid choice"),
        (["run"], "needs a command"),
        (["run", "--zone", "Atlantis", "--", "true"], "Atlantis"),
        (["run", "--pue", "0.2", "--", "true"], "pue"),
        (["devices", "--colour"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    r = run(args, tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carbonlab: error:"), r.stderr
    assert needle in lines[0]
    assert_clean(r.stdout + r.stderr)


def test_run_returns_the_commands_exit_code(tmp_path):
    r = run(["run", "-q", "--", sys.executable, "-c", "raise SystemExit(3)"], tmp_path)
    assert r.returncode == 3


def test_run_missing_program(tmp_path):
    r = run(["run", "--", "no-such-program-xyz"], tmp_path)
    assert r.returncode == 2 and "cannot run 'no-such-program-xyz'" in r.stderr


def test_run_prints_labelled_breakdown_and_valid_json(tmp_path):
    out = tmp_path / "m.json"
    r = run(
        [
            "run",
            "--zone",
            "FR",
            "--json",
            str(out),
            "--",
            sys.executable,
            "-c",
            "sum(range(10**7))",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["schema"] == SCHEMA
    assert data["exit_code"] == 0 and data["command"][-1] == "sum(range(10**7))"
    kinds = {c["kind"]: c for c in data["components"]}
    assert {"cpu", "ram"} <= set(kinds)
    for c in data["components"]:
        assert c["method"] in METHODS and c["scope"]
        assert c["method"] in r.stderr  # the summary names every method it used
    # The child burnt real CPU time, which the CPU figure must reflect (model or RAPL).
    assert kinds["cpu"]["energy_j"] > 0
    assert data["energy_j"] == pytest.approx(sum(c["energy_j"] for c in data["components"]))
    assert data["intensity"]["zone"] == "FR"
    assert data["co2e_g"] == pytest.approx(
        data["energy_j"] / 3.6e6 * data["pue"] * data["intensity"]["gco2e_per_kwh"]
    )
    assert "FR" in r.stderr and "gCO2e/kWh" in r.stderr


def test_run_json_to_stdout(tmp_path):
    r = run(["run", "-q", "--json", "-", "--", sys.executable, "-c", "pass"], tmp_path)
    assert r.returncode == 0
    assert json.loads(r.stdout)["schema"] == SCHEMA


def test_no_zone_is_world_average_labelled(tmp_path):
    r = run(["run", "-q", "--json", "-", "--", sys.executable, "-c", "pass"], tmp_path)
    intensity = json.loads(r.stdout)["intensity"]
    assert "world" in json.dumps(intensity).lower()


def test_devices_says_why_gpu_is_missing(tmp_path):
    env = clean_env()
    env.pop("LD_LIBRARY_PATH", None)
    r = run(["devices", "--json"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    kinds = {m["kind"] for m in info["meters"]}
    assert {"cpu", "ram"} <= kinds
    gpu_missing = [u for u in info["unavailable"] if u["kind"] == "gpu"]
    assert gpu_missing and gpu_missing[0]["reason"]
    text = run(["devices"], tmp_path, env=env)
    assert "unavailable:" in text.stdout and gpu_missing[0]["reason"] in text.stdout


def test_zones_lists_with_source_and_year(tmp_path):
    r = run(["zones", "--json", "FR"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    fr = [row for row in rows if row["zone"] == "FR"]
    assert fr and fr[0]["gco2e_per_kwh"] > 0 and fr[0]["source"] and fr[0]["year"]
    assert "FR" in run(["zones", "FR"], tmp_path).stdout
    assert run(["zones", "no-such-zone-anywhere"], tmp_path).returncode == 1


def test_run_charges_the_commands_peak_memory(tmp_path):
    code = "x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096])"
    r = run(["run", "-q", "--json", "-", "--", sys.executable, "-c", code], tmp_path)
    data = json.loads(r.stdout)
    ram = next(c for c in data["components"] if c["device"] == "ram:command")
    assert ram["method"] == "ram-model" and ram["params"]["basis"].startswith("peak")
    assert ram["params"]["peak_rss_gb"] >= 0.19
    expected = ram["params"]["peak_rss_gb"] * ram["params"]["w_per_gb"] * data["duration_s"]
    assert ram["energy_j"] == pytest.approx(expected, rel=1e-3)
