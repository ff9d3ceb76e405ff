"""The `carbonlab` command end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import socket
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


# ---- zones and intensity: texts a first-time user reads (issue 14) ----


def test_zones_ranks_the_exact_code_then_its_grid_then_prefixes_and_counts_the_rest(tmp_path):
    r = run(["zones", "FR"], tmp_path)
    assert r.returncode == 0, r.stderr
    table, *rest = r.stdout.split("\n\n")
    codes = [line.split()[0] for line in table.splitlines() if not line.startswith(" ")]
    assert codes[0] == "FR"
    assert {"aws:eu-west-3", "azure:francecentral", "FR-COR"} <= set(codes)
    assert codes.index("aws:eu-west-3") < codes.index("FR-COR")  # same grid before prefixes
    # substring matches are not listed, they are counted
    for other in ("Africa", "CF", "aws:eu-central-1", "gcp:europe-west3"):
        assert other not in codes
    left = rest[-1]
    assert re.search(r"^\d+ more zones match 'FR' elsewhere", left) and "--all" in left
    n = int(left.split()[0])
    everything = run(["zones", "FR", "--all"], tmp_path).stdout.split("\n\n")[0]
    listed = [ln.split()[0] for ln in everything.splitlines() if ln and not ln.startswith(" ")]
    assert "Africa" in listed and "CF" in listed
    assert len(set(listed) - set(codes)) == n


def test_zones_explains_two_figures_for_one_grid(tmp_path):
    out = run(["zones", "FR"], tmp_path).stdout
    ember = next(ln for ln in out.splitlines() if ln.startswith("FR "))
    aws = next(ln for ln in out.splitlines() if ln.startswith("aws:eu-west-3 "))
    assert "44.2 gCO2e/kWh" in ember and "Ember 2024" in ember and "generation-based" in ember
    assert "31 gCO2e/kWh" in aws and "Electricity Maps 2025" in aws and "consumption" in aws
    assert "FR's grid has more than one figure here" in out
    assert "generation-based: emissions of the zone's plants" in out


def test_zones_without_a_query_is_a_summary_not_500_lines(tmp_path):
    r = run(["zones"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) < 15
    total = int(lines[0].split()[0])
    counts = [int(ln.split()[0]) for ln in lines[1:] if ln.strip() and ln.split()[0].isdigit()]
    assert sum(counts) == total > 400
    assert "carbonlab zones FR" in r.stdout and "--all" in r.stdout
    full = run(["zones", "--all"], tmp_path).stdout.splitlines()
    assert len([ln for ln in full if not ln.startswith(" ")]) == total


def test_zones_never_shows_an_implausible_figure(tmp_path):
    out = run(["zones", "CF"], tmp_path).stdout
    first = out.splitlines()[0]
    assert first.startswith("CF") and "implausible" in first and "0.0" not in first
    assert "implausible: 0 gCO2e/kWh on a lifecycle basis" in out
    assert "0.0 gCO2e" not in run(["zones", "--all"], tmp_path).stdout
    i = run(["intensity", "CF"], tmp_path).stdout
    assert "implausible" in i and not re.search(r"\b0(\.0)? gCO2e/kWh \(", i)


def test_every_shipped_figure_is_plausible_or_flagged():
    from carbonlab.footprint.intensity import list_zones

    rows = list_zones()
    assert len(rows) > 400
    flagged = {r["zone"]: r["implausible"] for r in rows if r["implausible"]}
    for r in rows:
        v, basis = r["gco2e_per_kwh"], r["basis"]
        bad = v < 0 or v > 2000 or (v < 1 and "lifecycle" in basis)
        assert bad == (r["zone"] in flagged), r
    assert "CF" in flagged  # Ember's 0.0 for the Central African Republic


def test_intensity_of_a_static_zone_points_to_the_live_provider(tmp_path):
    gb = run(["intensity", "GB"], tmp_path)
    assert gb.returncode == 0, gb.stderr
    assert "Ember 2024 (static)" in gb.stdout
    assert "uk-carbon-intensity" in gb.stdout and "carbonlab intensity uk-carbon-intensity:GB" in (
        gb.stdout
    )
    assert "CARBONLAB_INTENSITY" in gb.stdout
    fr = run(["intensity", "FR"], tmp_path).stdout
    assert "electricitymaps:FR" in fr and "CARBONLAB_ELECTRICITYMAPS_TOKEN" in fr
    world = run(["intensity"], tmp_path).stdout
    assert "electricitymaps" not in world  # no provider covers the World average


@pytest.mark.fault("providers")
def test_an_unreachable_provider_is_called_unreachable_with_the_reason(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    env = clean_env(CARBONLAB_UK_CI_URL=f"http://127.0.0.1:{port}")
    r = run(["intensity", "uk-carbon-intensity:GB"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "the provider gave none" not in r.stdout
    assert "unreachable: connection refused" in r.stdout
    assert "the static figure above is charged" in r.stdout
    assert_clean(r.stdout + r.stderr)


@pytest.mark.fault("cli")
@pytest.mark.parametrize("args", [["zones", "--all", "--nope"], ["zones", "FR", "extra"]])
def test_bad_zones_input_is_one_line(tmp_path, args):
    r = run(args, tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("carbonlab: error:")
    assert_clean(r.stdout + r.stderr)


def test_an_implausible_zone_figure_charges_no_co2e(tmp_path):
    """zone CF (Ember's 0 gCO2e/kWh): no confident 0 g, but no CO2e and a note saying why."""
    r = run(
        ["run", "--zone", "CF", "-q", "--json", "-", "--", sys.executable, "-c", "pass"], tmp_path
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["co2e_g"] is None
    assert any("CO2e not computed" in n and "implausible" in n for n in m["notes"])
    assert not any(re.search(r"grid 0(\.0)? gCO2e", n) for n in m["notes"])


def test_python_m_carbonlab_is_the_cli(tmp_path):
    # `python -m carbonlab` (carbonlab/__main__.py), not only `python -m carbonlab.cli`.
    import carbonlab

    r = subprocess.run(
        [sys.executable, "-m", "carbonlab", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"carbonlab {carbonlab.__version__}"
