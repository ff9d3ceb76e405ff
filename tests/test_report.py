"""`carbonlab report` (carbonlab/report/): selection, honesty rules, formats, bad input."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import carbonlab
from carbonlab import footprint
from carbonlab.config import Settings
from carbonlab.measurement import (
    METHOD_CPU_MODEL,
    METHOD_NVML_COUNTER,
    METHOD_NVML_POWER,
    METHOD_RAM_MODEL,
    METHOD_RAPL,
    Component,
    Measurement,
)
from carbonlab.report import (
    FACTOR_UNCERTAINTY,
    UNCERTAINTY,
    InputRun,
    Report,
    ReportError,
    Selection,
    build,
    render,
    report_for,
)
from carbonlab.report.inputs import load_history
from carbonlab.report.render import md, tex
from carbonlab.store import RunRecord, Store
from tests import unavailable
from tests.faults import assert_clean

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "carbonlab.cli"]
HOSTILE = "evil | `tick` *b* _u_ [l](http://x) <b>\nnew: line # % & $ { } ~ ^ \\ _ 'q' \"dq\" - a"


def meas(
    label="train",
    *,
    zone="FR",
    pue=1.0,
    gpu_j=0.0,
    cpu_j=100.0,
    ram_j=5.0,
    cpu_method=METHOD_CPU_MODEL,
    gpu_method=METHOD_NVML_COUNTER,
    gpu_name="NVIDIA H100 80GB HBM3",
    started="2026-12-01T10:00:00.000Z",
    duration=10.0,
    footprinted=True,
) -> Measurement:
    comps = []
    if gpu_j:
        comps.append(Component("gpu", "GPU-0", gpu_j, gpu_method, "device", name=gpu_name))
    comps.append(
        Component(
            "cpu",
            "cpu",
            cpu_j,
            cpu_method,
            "package" if cpu_method == METHOD_RAPL else "process",
            name="Test CPU",
        )
    )
    comps.append(Component("ram", "ram", ram_j, METHOD_RAM_MODEL, "process", name="RAM"))
    m = Measurement(label, started, duration, comps)
    if footprinted:
        footprint.apply(m, Settings(zone=zone, pue=pue))
    return m


def history_with(tmp_path, *ms: Measurement, notebook="nb.ipynb") -> Path:
    path = tmp_path / "history.sqlite"
    s = Store(path)
    s.write([RunRecord.new(m, notebook=notebook, cell_id=f"c{i}") for i, m in enumerate(ms)])
    s.close()
    return path


def write_json(path: Path, m: Measurement) -> Path:
    path.write_text(json.dumps(m.to_dict()), encoding="utf-8")
    return path


def cli(args, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    env["CARBONLAB_HISTORY"] = str(tmp_path / "history.sqlite")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [*CLI, "report", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


# --- honesty rules ---------------------------------------------------------------------------------


def test_totals_equal_the_sum_of_the_selected_runs(tmp_path):
    ms = [
        meas("train", cpu_j=100.0, gpu_j=3000.0, started="2026-12-01T10:00:00Z"),
        meas("train", cpu_j=50.0, gpu_j=1000.0, started="2026-12-01T11:00:00Z"),
        meas("eval", cpu_j=7.0, started="2026-12-01T12:00:00Z"),
        meas("train", cpu_j=9.0, started="2026-12-03T10:00:00Z"),  # outside --until
    ]
    history_with(tmp_path, *ms)
    r = cli(["--label", "train", "--until", "2026-12-02", "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    chosen = ms[:2]
    t = doc["totals"]
    assert _close(t["energy"]["value"], sum(m.energy_j for m in chosen))
    assert _close(t["co2e"]["value"], sum(m.co2e_g for m in chosen))
    assert _close(t["embodied"]["value"], sum(m.embodied_co2e_g for m in chosen))
    assert _close(t["water"]["value"], sum(m.water_l for m in chosen))
    assert _close(t["duration"]["value"], 20.0)
    assert _close(t["gpu_hours"]["value"], 20.0 / 3600)
    assert _close(doc["energy_by_kind_j"]["gpu"], 4000.0)
    assert len(doc["run_ids"]) == 2 and len(set(doc["run_ids"])) == 2
    assert [run["measurement"]["label"] for run in doc["runs"]] == ["train", "train"]


def test_the_same_file_twice_is_counted_once(tmp_path):
    f = write_json(tmp_path / "a.json", meas())
    r = report_for(Selection(files=[str(f), str(f)]))
    assert len(r.runs) == 1 and "counted once" in " ".join(r.notes)


@pytest.mark.parametrize(
    "a, b, needle",
    [
        (dict(zone="FR"), dict(zone="PL"), "zones: FR, PL"),
        (dict(pue=1.0), dict(pue=1.5), "PUEs: 1, 1.5"),
        (dict(gpu_j=10.0), dict(gpu_j=10.0, gpu_method=METHOD_NVML_POWER), "methods:"),
    ],
)
def test_a_mixed_selection_says_so_and_reports_per_group(a, b, needle):
    m1, m2 = meas("x", **a), meas("y", **b)
    rep = build(
        [
            InputRun("r1", "measurement-json", "a", m1),
            InputRun("r2", "measurement-json", "b", m2),
        ]
    )
    assert any(needle in x for x in rep.mixed), rep.mixed
    assert len(rep.groups) == 2
    assert [g.run_ids for g in rep.groups] == [("r1",), ("r2",)]
    assert _close(rep.groups[0].co2e_g, m1.co2e_g) and _close(rep.groups[1].co2e_g, m2.co2e_g)
    text = render(rep, "markdown")
    assert "**Mixed selection:**" in text
    assert text.count("- zone ") == 2
    tex_text = render(rep, "latex")
    assert "The selection mixes" in tex_text and "its 2 groups are given separately" in tex_text


def test_a_uniform_selection_is_one_group_and_not_mixed():
    rep = build([InputRun(f"r{i}", "history", "h", meas(f"c{i}")) for i in range(3)])
    assert rep.mixed == [] and len(rep.groups) == 1
    assert "Mixed selection" not in render(rep, "markdown")


def test_unknown_fields_say_unknown_never_invented():
    # A record with no footprint (co2e, intensity, PUE, water all missing) and a GPU whose driver
    # and CUDA versions were not recorded.
    m = meas(gpu_j=50.0, footprinted=False)
    rep = build([InputRun("r1", "measurement-json", "a.json", m)])
    assert rep.figures["co2e"].value is None
    assert rep.figures["water"].value is None
    assert rep.figures["facility_energy"].value is None
    assert rep.versions["driver"] == ["unknown"] and rep.versions["cuda"] == ["unknown"]
    assert rep.versions["carbonlab_measured"] == ["unknown"]
    assert rep.groups[0].zone == "unknown" and rep.groups[0].pue is None
    text = render(rep, "markdown")
    assert "| Operational CO2e | unknown | unknown |" in text
    assert "NVIDIA driver: unknown" in text and "CUDA: unknown" in text
    card = render(rep, "model-card")
    assert "  emissions: null\n" in card
    assert '  geographical_location: "unknown"' in card
    assert "Operational emissions are unknown" in render(rep, "latex")


def test_missing_says_what_is_not_included():
    rep = build([InputRun("r1", "history", "h", meas())])
    text = " ".join(rep.missing)
    assert "no GPU meter" in text
    assert "host (CPU, memory, board) is not included" in text
    assert "modelled, not measured" in text
    rep = build([InputRun("r1", "history", "h", meas(cpu_method=METHOD_RAPL, gpu_j=10.0))])
    assert any("DRAM" in x for x in rep.missing)
    assert not any("no GPU meter" in x for x in rep.missing)


def test_recorded_versions_are_reported():
    m = meas(gpu_j=10.0)
    m.components[0].params.update(driver_version="550.54.15", cuda_version="12.4")
    rep = build([InputRun("r1", "history", "h", m, meta={"carbonlab": "0.0.9"})])
    assert rep.versions["driver"] == ["550.54.15"] and rep.versions["cuda"] == ["12.4"]
    assert rep.versions["carbonlab_measured"] == ["0.0.9"]


# --- uncertainty --------------------------------------------------------------------------------------


def test_a_counter_is_narrower_than_integrated_power_and_a_model_widest():
    def width(method):
        rep = build([InputRun("r", "history", "h", meas(gpu_j=1000.0, gpu_method=method))])
        [row] = [c for c in rep.components if c.kind == "gpu"]
        return (row.high_j - row.low_j) / row.energy_j

    assert width(METHOD_NVML_COUNTER) < width(METHOD_NVML_POWER) < width(METHOD_CPU_MODEL)


def test_energy_bounds_are_the_sums_of_the_component_bounds():
    m = meas(gpu_j=1000.0, cpu_j=100.0, ram_j=10.0)
    rep = build([InputRun("r", "history", "h", m)])
    f = rep.figures["energy"]
    assert _close(f.low, 1000 * 0.95 + 100 * 0.5 + 10 * 0.5)
    assert _close(f.high, 1000 * 1.05 + 100 * 2 + 10 * 2)
    co2 = rep.figures["co2e"]
    assert co2.low < co2.value < co2.high
    assert _close(co2.low, m.co2e_g * f.low / f.value * 0.7)


def test_the_methodology_page_states_the_same_ranges_as_the_code():
    text = (ROOT / "docs" / "methodology.md").read_text(encoding="utf-8")
    section = text.split("## Uncertainty in reports", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| ([^|]+?) \|", section, re.M))
    for name, rg in {**UNCERTAINTY, **FACTOR_UNCERTAINTY}.items():
        assert rows.get(name) == rg.text(), (name, rows.get(name), rg.text())


# --- counterfactuals ---------------------------------------------------------------------------------


def test_compare_zone_is_a_labelled_counterfactual(tmp_path):
    m = meas(cpu_j=3.6e6, ram_j=0.0, pue=1.2)  # 1 kWh
    f = write_json(tmp_path / "m.json", m)
    rep = report_for(Selection(files=[str(f)]), compare_zones=["PL"])
    [cf] = rep.counterfactuals
    pl = footprint.lookup("PL").gco2e_per_kwh
    assert _close(cf.co2e_g, 1.0 * 1.2 * pl)
    text = render(rep, "markdown")
    assert "## Counterfactual (not measured)" in text
    assert "COUNTERFACTUAL, not measured" in text and "zone PL" in text
    assert "COUNTERFACTUAL" in render(rep, "latex")


def test_the_lowest_window_counterfactual_needs_a_recorded_forecast():
    live = meas(cpu_j=3.6e6, ram_j=0.0)
    live.intensity = {**live.intensity, "provider": "uk-carbon-intensity", "zone": "GB"}
    rep = build([InputRun("r", "history", "h", live)])
    assert rep.counterfactuals == []
    assert "no forecast was recorded" in rep.counterfactual_notes[0]
    live.extra["advice"] = {
        "window_gco2e_per_kwh": 40.0,
        "start_iso": "2026-12-01T02:00:00Z",
        "end_iso": "2026-12-01T03:00:00Z",
        "source": "NESO Carbon Intensity API (live)",
    }
    rep = build([InputRun("r", "history", "h", live)])
    [cf] = rep.counterfactuals
    assert _close(cf.co2e_g, 40.0) and "lowest-intensity window" in cf.what
    # Static data only: no forecast line and no note.
    rep = build([InputRun("r", "history", "h", meas())])
    assert rep.counterfactuals == [] and rep.counterfactual_notes == []


def test_each_forecast_zone_gets_its_own_window_over_its_own_runs():
    # GB's cheapest window must not be applied to a run measured in FR under FR's forecast.
    gb = meas(cpu_j=3.6e6, ram_j=0.0)
    gb.extra["advice"] = {"window_gco2e_per_kwh": 40.0, "zone": "GB", "source": "NESO"}
    fr = meas(cpu_j=7.2e6, ram_j=0.0)
    fr.extra["advice"] = {"window_gco2e_per_kwh": 20.0, "zone": "FR", "source": "EM"}
    static = meas(cpu_j=3.6e6, ram_j=0.0)
    runs = [InputRun(str(i), "history", "h", m) for i, m in enumerate([gb, fr, static])]
    cfs = {cf.what.split(",")[0]: cf for cf in build(runs).counterfactuals}
    gb_cf = cfs["lowest-intensity window of the forecast for GB"]
    fr_cf = cfs["lowest-intensity window of the forecast for FR"]
    assert _close(gb_cf.co2e_g, 40.0) and _close(fr_cf.co2e_g, 2 * 20.0)
    assert "(1 of 3 runs: those with this forecast)" in gb_cf.what
    assert _close(gb_cf.actual_co2e_g, gb.co2e_g) and _close(fr_cf.actual_co2e_g, fr.co2e_g)


# --- formats -----------------------------------------------------------------------------------------


def _front_matter(card: str) -> dict:
    yaml = pytest.importorskip("yaml")
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_model_card_yaml_parses_and_its_emissions_equal_the_history_total(tmp_path):
    ms = [meas("a", gpu_j=500.0), meas("b", cpu_j=40.0), meas("c", cpu_j=1.0)]
    history_with(tmp_path, *ms)
    out = tmp_path / "card.md"
    r = cli(["--format", "model-card", "-o", str(out), "--training-type", "fine-tuning"], tmp_path)
    assert r.returncode == 0, r.stderr
    card = out.read_text(encoding="utf-8")
    meta = _front_matter(card)["co2_eq_emissions"]
    assert _close(meta["emissions"], sum(m.co2e_g for m in ms))
    assert meta["training_type"] == "fine-tuning"
    assert meta["geographical_location"] == "France [FR]"
    assert "1 x NVIDIA H100 80GB HBM3" in meta["hardware_used"]
    assert meta["source"].startswith("carbonlab ")
    assert "\n## Environmental Impact\n" in card
    for field in (
        "Hardware Type",
        "Hours used",
        "Cloud Provider",
        "Compute Region",
        "Carbon Emitted",
    ):
        assert f"- **{field}:**" in card


def _compile(tmp_path, body: str) -> None:
    if shutil.which("pdflatex") is None:
        unavailable("pdflatex not installed (apt-get install texlive-latex-base; .ci/run does)")
    (tmp_path / "report.tex").write_text(body, encoding="utf-8")
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n\\input{report}\n\\end{document}\n",
        encoding="utf-8",
    )
    r = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "doc.pdf").exists()


def test_latex_is_a_table_and_a_methods_paragraph_that_compile(tmp_path):
    rep = build(
        [
            InputRun("r1", "history", "h", meas(gpu_j=1000.0)),
            InputRun("r2", "history", "h", meas(zone="PL")),
        ],
        compare_zones=[footprint.lookup("SE").to_dict()],
    )
    body = render(rep, "latex")
    assert "\\begin{tabular}" in body and "\\paragraph{Energy and carbon.}" in body
    assert "% @software{carbonlab," in body
    assert all(ord(c) < 128 for c in body), "pdflatex needs ASCII or escapes"
    _compile(tmp_path, body)


def test_latex_states_the_factor_sources_and_gpu_software_the_markdown_states(tmp_path):
    # A paper's methods section is often the LaTeX alone: the embodied and water factors' sources
    # and the GPU's driver and CUDA versions must be there, not only in the markdown.
    gpu = meas(gpu_j=3.6e6, zone="aws:us-east-1")
    gpu.components[0].params.update(driver_version="550.54.15", cuda_version="12.4")
    rep = build([InputRun("r1", "history", "h", gpu)])
    body = render(rep, "latex")
    assert "at 164 kgCO2e each (NVIDIA HGX H100 Product Carbon Footprint (via EcoLogits)" in body
    assert "amortised over 4 years (default)" in body
    assert "EcoLogits, WRI method" in body and "on-site WUE 0.15 L/kWh (AWS 2024" in body
    assert "GPU software: NVIDIA driver 550.54.15, CUDA 12.4." in body
    text = render(rep, "markdown")
    assert "at 164 kgCO2e each (NVIDIA HGX H100 Product Carbon Footprint (via EcoLogits)" in text
    assert "WRI method" in text
    assert all(ord(c) < 128 for c in body)
    _compile(tmp_path, body)


def test_factor_sources_are_stated_for_intensity_pue_and_water():
    text = render(build([InputRun("r", "history", "h", meas(zone="PL"))]), "markdown")
    assert "source Ember 2024 (static), year 2024, basis generation-based, lifecycle" in text
    assert "PUE 1 (PUE 1.0 (default: no facility overhead" in text
    assert "consumed generating electricity (Poland, EcoLogits, WRI method)" in text


def test_the_cloud_provider_of_a_mixed_selection_is_given_per_group():
    one = build([InputRun("a", "history", "h", meas(zone="aws:us-east-1"))])
    assert "- **Cloud Provider:** aws\n" in render(one, "model-card")
    mixed = build(
        [
            InputRun("a", "history", "h", meas(zone="aws:us-east-1")),
            InputRun("b", "history", "h", meas(zone="FR")),
        ]
    )
    card = render(mixed, "model-card")
    assert "- **Cloud Provider:** aws (1 of 2 groups); unknown (1 of 2 groups)\n" in card


def test_since_and_until_select_by_start_time(tmp_path):
    ms = [
        meas("a", cpu_j=1.0, started="2026-12-01T10:00:00Z"),
        meas("b", cpu_j=2.0, started="2026-12-02T10:00:00Z"),
        meas("c", cpu_j=4.0, started="2026-12-03T10:00:00Z"),
    ]
    history_with(tmp_path, *ms)
    for args, labels in (
        (["--since", "2026-12-02"], ["b", "c"]),
        (["--until", "2026-12-02T10:00Z"], ["a", "b"]),
        (["--since", "2026-12-01T12:00", "--until", "2026-12-02T23:00+01:00"], ["b"]),
    ):
        r = cli([*args, "--format", "json"], tmp_path)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        got = sorted(run["measurement"]["label"] for run in doc["runs"])
        assert got == labels, args
        chosen = [m for m in ms if m.label in labels]
        assert _close(doc["totals"]["energy"]["value"], sum(m.energy_j for m in chosen))


def test_a_label_with_glob_characters_is_matched_as_written(tmp_path):
    history_with(tmp_path, meas("step[1]", cpu_j=1.0), meas("step1", cpu_j=2.0))
    r = cli(["--label", "step[1]", "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    labels = sorted(run["measurement"]["label"] for run in json.loads(r.stdout)["runs"])
    assert labels == ["step1", "step[1]"]  # as written, and as a pattern ([1] matches "1")
    r = cli(["--label", "step?", "--format", "json"], tmp_path)
    assert [run["measurement"]["label"] for run in json.loads(r.stdout)["runs"]] == ["step1"]


def test_json_round_trip_regenerates_the_same_report(tmp_path):
    ms = [meas("a", gpu_j=500.0), meas("b", zone="PL", pue=1.3)]
    history_with(tmp_path, *ms)
    first = cli(["--format", "json", "--compare-zone", "SE", "-o", "r.json"], tmp_path)
    assert first.returncode == 0, first.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["schema"] == "carbonlab.report/1"
    again = Report.from_dict(doc).to_dict()
    assert json.loads(json.dumps(again)) == doc
    # The JSON is an input too: the regenerated report (any format) has the same figures.
    md1 = render(Report.from_dict(doc), "markdown")
    second = cli(["r.json", "--format", "json", "--compare-zone", "SE"], tmp_path)
    assert second.returncode == 0, second.stderr
    doc2 = json.loads(second.stdout)
    for k in ("totals", "run_ids", "groups", "components", "counterfactuals", "missing"):
        assert doc2[k] == doc[k], k
    md2 = render(Report.from_dict(doc2), "markdown")
    assert md2.split("## Figures")[1] == md1.split("## Figures")[1]


def test_pytest_and_run_json_inputs_together(tmp_path):
    run_json = write_json(tmp_path / "run.json", meas("python train.py", cpu_j=30.0))
    sess = meas("pytest session", cpu_j=12.0)
    doc = {
        "schema": "carbonlab.pytest-run/1",
        "started_at": sess.started_at,
        "environment": {"carbonlab": "0.1.0", "python": "3.12.1", "machine_id": "m"},
        "session": {"measurement": sess.to_dict()},
        "tests": [],
    }
    (tmp_path / "pytest.json").write_text(json.dumps(doc))
    rep = report_for(Selection(files=[str(run_json), str(tmp_path / "pytest.json")]))
    assert sorted(r.source for r in rep.runs) == ["measurement-json", "pytest-json"]
    assert _close(rep.figures["energy"].value, sess.energy_j + 35.0)
    assert rep.versions["python"] == ["3.12.1"]


def test_notebook_selects_by_the_history_key(tmp_path):
    path = tmp_path / "history.sqlite"
    s = Store(path)
    s.write(
        [
            RunRecord.new(meas("a", cpu_j=1.0), notebook="/w/one.ipynb"),
            RunRecord.new(meas("b", cpu_j=2.0), notebook="/w/two.ipynb"),
        ]
    )
    s.close()
    rep = report_for(Selection(history=str(path), notebook="/w/two.ipynb"))
    assert [r.measurement.label for r in rep.runs] == ["b"]
    rep = report_for(Selection(history=str(path)))
    assert len(rep.runs) == 2


def test_markdown_has_every_section(tmp_path):
    rep = build([InputRun("r", "history", "h", meas(gpu_j=100.0))])
    text = render(rep, "markdown")
    for h in (
        "## Figures",
        "## Energy by component and hardware",
        "## Grid, PUE and factors",
        "## How each figure was obtained",
        "## What is missing",
        "## Software",
        "## Runs",
        "## Citation",
        "@software{carbonlab,",
    ):
        assert h in text, h
    assert "1 × NVIDIA H100 80GB HBM3" in text
    assert "Ember" in text and "PUE 1" in text


def test_citation_cff_matches_the_package():
    import carbonlab

    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(cff)
    assert doc["cff-version"].startswith("1.2")
    assert str(doc["version"]) == carbonlab.__version__
    assert doc["title"].startswith("carbonlab")


# --- bad input and injection ----------------------------------------------------------------------


@pytest.mark.fault("cli")
@pytest.mark.parametrize(
    "args, needle",
    [
        (["missing.json"], "cannot read missing.json"),
        (["corrupt.json"], "not JSON"),
        (["foreign.json"], "not a carbonlab record"),
        (["badshape.json"], "not a valid carbonlab.measurement/1 record"),
        (["--since", "yesterday"], "--since 'yesterday': expected a date"),
        (["--until", "2026-13-45"], "--until '2026-13-45'"),
        (["--label", "nothing-has-this"], "no measured runs match"),
        (["--compare-zone", "Atlantis"], "Atlantis"),
        (["--format", "pdf"], "invalid choice"),
        (["-o", "/nonexistent-dir/x/report.md"], "cannot write /nonexistent-dir/x/report.md"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    history_with(tmp_path, meas())
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text('{"schema": "something-else/1"}')
    (tmp_path / "badshape.json").write_text('{"schema": "carbonlab.measurement/1", "label": "x"}')
    r = cli(args, tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert_clean(r.stderr + r.stdout)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carbonlab: error:"), r.stderr
    assert needle in lines[0]


@pytest.mark.fault("cli")
def test_an_empty_selection_is_an_error_not_an_empty_report(tmp_path):
    r = cli([], tmp_path)  # no history file at all
    assert r.returncode == 2 and r.stdout == ""
    assert "no measured runs match the selection" in r.stderr
    assert_clean(r.stderr)
    with pytest.raises(ReportError):
        build([])


@pytest.mark.fault("cli")
def test_corrupt_history_is_a_clear_error(tmp_path):
    (tmp_path / "history.sqlite").write_bytes(b"this is not a database" * 100)
    r = cli([], tmp_path)
    assert r.returncode == 2 and "history" in r.stderr
    assert_clean(r.stderr)


def _hostile_report() -> Report:
    m = meas(HOSTILE, gpu_j=100.0, gpu_name="GPU " + HOSTILE)
    return build(
        [InputRun("r1", "history", "h", m, notebook=HOSTILE)],
        selection={"history": HOSTILE, "notebook": HOSTILE, "labels": [HOSTILE], "files": []},
        title="T " + HOSTILE,
    )


@pytest.mark.fault("injection")
def test_hostile_labels_do_not_break_markdown():
    text = render(_hostile_report(), "markdown")
    # Every table row keeps its number of cells: no unescaped | was added.
    for line in text.splitlines():
        if line.startswith("| r1 |"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 8, line
    assert "[l](http" not in text and "<b>" not in text and "`tick`" not in text
    assert "\nnew: line" not in text  # the newline did not start a line of its own
    assert md(HOSTILE).count("\n") == 0


@pytest.mark.fault("injection")
def test_hostile_labels_do_not_break_latex(tmp_path):
    body = render(_hostile_report(), "latex")
    assert "evil \\textbar{} `tick`" in body
    for bad in ("% &", " $ {", "~ ^"):
        assert bad not in body
    assert tex("a\\b") == "a\\textbackslash{}b"
    _compile(tmp_path, body)


@pytest.mark.fault("injection")
def test_hostile_labels_do_not_break_the_model_card_yaml():
    card = render(_hostile_report(), "model-card")
    meta = _front_matter(card)["co2_eq_emissions"]
    assert meta["hardware_used"].startswith("1 x GPU evil | `tick`")
    assert set(meta) == {
        "emissions",
        "source",
        "training_type",
        "geographical_location",
        "hardware_used",
    }
    assert card.count("\n---\n") == 1  # the front matter is closed once


@pytest.mark.fault("injection")
def test_hostile_labels_survive_json():
    rep = _hostile_report()
    doc = json.loads(render(rep, "json"))
    assert doc["runs"][0]["measurement"]["label"] == HOSTILE
    assert Report.from_dict(doc).runs[0].measurement.label == HOSTILE


def test_real_run_and_pytest_json_files_add_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    (tmp_path / "test_x.py").write_text("def test_a():\n    sum(range(10**5))\n")
    kw = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    r = subprocess.run(
        [*CLI, "run", "--zone", "FR", "--json", "run.json", "-q", "--", sys.executable, "-c", "1"],
        **kw,
    )
    assert r.returncode == 0, r.stderr
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--carbon-json=pt.json"],
        **kw,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    run_doc = json.loads((tmp_path / "run.json").read_text())
    pt_doc = json.loads((tmp_path / "pt.json").read_text())
    r = cli(["run.json", "pt.json", "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    expected = run_doc["energy_j"] + pt_doc["session"]["measurement"]["energy_j"]
    assert _close(doc["totals"]["energy"]["value"], expected)
    assert sorted(x.split(":")[0] for x in doc["run_ids"]) == ["json", "pytest"]
    # Both inputs say which carbonlab and Python measured them: nothing is "unknown".
    assert run_doc["carbonlab_version"] == carbonlab.__version__
    assert doc["versions"]["carbonlab_measured"] == sorted(
        {run_doc["carbonlab_version"], pt_doc["environment"]["carbonlab"]}
    )
    assert doc["versions"]["python"] == [".".join(map(str, sys.version_info[:3]))]


def test_history_rows_carry_the_versions_a_report_states(tmp_path):
    # A history row written by the store (the notebook's path) records carbonlab's and Python's
    # versions; a GPU component measured through NVML records the driver and CUDA versions.
    m = meas(gpu_j=10.0)
    m.components[0].params.update(driver_version="550.54.15", cuda_version="12.4")
    path = tmp_path / "history.sqlite"
    store = Store(path)
    store.write([RunRecord.new(m, notebook="nb.ipynb", cell_id="c1")])
    store.close()
    runs, _ = load_history(str(path), None)
    rep = build(runs)
    assert rep.versions["carbonlab_measured"] == [carbonlab.__version__]
    assert rep.versions["python"] == [".".join(map(str, sys.version_info[:3]))]
    assert rep.versions["driver"] == ["550.54.15"] and rep.versions["cuda"] == ["12.4"]
    text = render(rep, "markdown")
    assert "NVIDIA driver: 550.54.15" in text and "CUDA: 12.4" in text


def test_runs_that_raised_are_included_and_said(tmp_path):
    rep = build(
        [
            InputRun("r1", "history", "h", meas(cpu_j=10.0), error=True),
            InputRun("r2", "history", "h", meas(cpu_j=20.0)),
        ]
    )
    assert _close(rep.figures["energy"].value, 10.0 + 5.0 + 20.0 + 5.0)
    assert "1 of 2 runs raised an exception (measured and included)" in rep.missing


@pytest.mark.fault("cli")
def test_an_unknown_notebook_names_the_ones_in_history(tmp_path):
    history_with(tmp_path, meas(), notebook="/w/real.ipynb")
    r = cli(["--notebook", "/w/other.ipynb"], tmp_path)
    assert r.returncode == 2 and "notebooks in this history: /w/real.ipynb" in r.stderr
    assert_clean(r.stderr)


def test_a_relative_notebook_path_finds_the_absolute_key(tmp_path):
    nb = tmp_path / "train.ipynb"
    history_with(tmp_path, meas(), notebook=str(nb))
    r = cli(["--notebook", "train.ipynb", "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["run_ids"]) == 1


def test_the_latex_sample_in_the_docs_compiles(tmp_path):
    # docs/report.md shows real output; a stale sample (a raw µ) would not compile.
    text = (ROOT / "docs" / "report.md").read_text(encoding="utf-8")
    body = text.split("````latex\n", 1)[1].split("\n````", 1)[0]
    assert "\\begin{tabular}" in body
    assert all(ord(c) < 128 for c in body), "pdflatex needs ASCII or escapes"
    _compile(tmp_path, body)
