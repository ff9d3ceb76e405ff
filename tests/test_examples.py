"""Every notebook in examples/, executed by nbclient in a real kernel, outputs checked.

Figures depend on the machine; what is checked is what the notebook promises: which cells show a
summary, with which label and methods, the budget warning and failure, the raising cell, history and
the report chart.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests import unavailable

pytestmark = pytest.mark.kernel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from nbclient import NotebookClient

    work = tmp_path_factory.mktemp("quickstart")
    _checkout_before()
    # Run where a user runs it: in examples/ (the working directory), history elsewhere; the
    # notebook itself is never written back.
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("CARBONLAB_HISTORY", str(work / "history.sqlite"))
    mp.setenv("JPY_SESSION_NAME", str(work / "quickstart.ipynb"))  # as jupyter_server does
    mp.delenv("CARBONLAB_ZONE", raising=False)
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
        ).execute()
    finally:
        mp.undo()
    return {c.id: c for c in nb.cells}, work


_BEFORE: dict[str, str | None] = {}


def _git_status() -> str | None:
    """``git status --porcelain`` of examples/ (untracked and ignored files included), or None
    outside a git checkout."""
    if shutil.which("git") is None:
        return None
    r = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", "."],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
    )
    return r.stdout if r.returncode == 0 else None


def _checkout_before() -> None:
    """Remember examples/' git status before the first notebook runs."""
    if "status" not in _BEFORE:
        _BEFORE["status"] = _git_status()


def _summaries(cell) -> list[dict]:
    return [
        o["data"]
        for o in cell.outputs
        if o.output_type == "display_data"
        and o["data"].get("text/plain", "").startswith("carbonlab · ")
    ]


def _errors(cell) -> list:
    return [o for o in cell.outputs if o.output_type == "error"]


def test_notebook_runs_without_unexpected_errors(executed):
    cells, _ = executed
    for cid, cell in cells.items():
        if cell.cell_type != "code":
            continue
        expected = "raises-exception" in cell.metadata.get("tags", [])
        assert bool(_errors(cell)) == expected, (cid, _errors(cell))
    assert cells["load"].outputs == []  # loading prints nothing


def test_status_names_meters_and_methods(executed):
    cells, work = executed
    [out] = [o for o in cells["status"].outputs if o.output_type == "display_data"]
    text = out["data"]["text/plain"]
    assert "automatic measurement: on" in text
    assert "cpu" in text and "ram-model" in text
    assert f"notebook: {work / 'quickstart.ipynb'} (from JPY_SESSION_NAME)" in text
    assert "comm target 'carbonlab.cell'" in text
    assert "<pre" in out["data"]["text/html"]


def test_a_trivial_cell_prints_nothing(executed):
    cells, _ = executed
    assert cells["auto-trivial"].outputs == []


def test_magic_cell_shows_its_value_then_a_summary_with_methods(executed):
    cells, _ = executed
    cell = cells["magic-label"]
    kinds = [o.output_type for o in cell.outputs]
    assert kinds == ["execute_result", "display_data"]  # the value, then the summary under it
    assert cell.outputs[0]["data"]["text/plain"] == str(sum(i * i for i in range(2_000_000)))
    [s] = _summaries(cell)
    assert s["text/plain"].startswith("carbonlab · squares · ")
    assert "cpu-time-model (process)" in s["text/plain"] or "rapl (package)" in s["text/plain"]
    assert "ram-model (process)" in s["text/plain"] and "[model]" in s["text/plain"]
    assert "≈ " in s["text/plain"]  # an everyday equivalent
    html = s["text/html"]
    assert html.startswith('<div class="carbonlab-summary"') and "squares" in html


def test_the_second_run_of_the_same_cell_is_compared_with_the_first(executed):
    cells, _ = executed
    [s] = _summaries(cells["magic-again"])
    assert "vs previous run" in s["text/plain"] or "same energy as previous run" in s["text/plain"]


def test_output_variable(executed):
    cells, _ = executed
    text = cells["measurement"].outputs[0]["data"]["text/plain"]
    assert "('ram', 'ram-model', 'process')" in text


def test_budgets(executed):
    cells, _ = executed
    [ok] = _summaries(cells["budget-ok"])
    assert "over budget" not in ok["text/plain"]
    [over] = _summaries(cells["budget-over"])
    assert "⚠ over budget:" in over["text/plain"] and "(--budget 1mJ)" in over["text/plain"]
    assert "carbonlab-over" in over["text/html"]
    strict = cells["budget-strict"]
    [err] = _errors(strict)
    assert err.ename == "BudgetExceeded" and "over budget" in err.evalue
    assert _summaries(strict)  # shown as well


def test_zone_quiet_await_and_raise(executed):
    cells, _ = executed
    [fr] = _summaries(cells["zone"])
    assert "grid: France" in fr["text/plain"]
    assert _summaries(cells["quiet"]) == []
    aw = cells["await"]
    assert aw.outputs[0]["data"]["text/plain"] == "'slept'" and _summaries(aw)
    raises = cells["raises"]
    assert _errors(raises)[0].ename == "ZeroDivisionError"
    [s] = _summaries(raises)
    assert "the cell raised" in s["text/plain"]


def test_history_and_report(executed):
    cells, work = executed
    table = cells["history"].outputs[0]["data"]["text/html"]
    for label in ("squares", "over-budget", "strict", "in-france", "quiet", "async", "raises"):
        assert f">{label}<" in table
    report = cells["report"].outputs
    text = report[0]["data"]["text/plain"]
    assert text.startswith("carbonlab report · ") and "measured runs" in text
    [chart] = [o for o in report if "application/vnd.vegalite.v5+json" in o.get("data", {})]
    spec = chart["data"]["application/vnd.vegalite.v5+json"]
    assert len(spec["vconcat"]) == 2
    # exported outside the checkout, into the directory the cell before moved to
    [line] = [ln for ln in _text(cells["exportdir"]).splitlines() if ln.startswith("export dir")]
    out = Path(line.split(": ", 1)[1])
    assert not out.is_relative_to(EXAMPLES.parent)
    assert (out / "quickstart-history.csv").read_text().startswith("run_id,notebook,cell_id")
    assert not (EXAMPLES / "quickstart-history.csv").exists()


# --- every notebook in examples/ -----------------------------------------------------------------
# Each is executed by nbclient in a real kernel, with its own history file and no zone or provider
# from the developer's environment; the checks below are what each notebook promises.

NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _execute(name: str, work: Path, env: dict[str, str] | None = None) -> dict:
    """Run examples/NAME in ``work`` (history there, JPY_SESSION_NAME as jupyter_server sets it);
    return its cells by id."""
    from nbclient import NotebookClient

    _checkout_before()
    nb = nbformat.read(EXAMPLES / name, as_version=4)  # run in examples/, never written back
    mp = pytest.MonkeyPatch()
    for k in list(os.environ):
        if k.startswith("CARBONLAB_"):
            mp.delenv(k)
    mp.setenv("CARBONLAB_HISTORY", str(work / "history.sqlite"))
    mp.setenv("CARBONLAB_INTENSITY_CACHE_DIR", str(work / "intensity-cache"))
    mp.setenv("JPY_SESSION_NAME", str(work / name))
    for k, v in (env or {}).items():
        mp.setenv(k, v)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
        ).execute()
    finally:
        mp.undo()
    return {c.id: c for c in nb.cells}


_runs: dict[str, dict] = {}


@pytest.fixture
def run_example(request, tmp_path_factory):
    """examples/NAME executed once per test session (quickstart: by the fixture above)."""

    def run(name: str) -> dict:
        if name == "quickstart.ipynb":
            return request.getfixturevalue("executed")[0]
        if name not in _runs:
            _runs[name] = _execute(name, tmp_path_factory.mktemp(name.split(".")[0]))
        return _runs[name]

    return run


def _text(cell) -> str:
    """Everything a cell printed or displayed, as plain text."""
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o["data"].get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_is_committed_clean(name):
    """No outputs or execution counts in the repository, ids on every cell, a heading first."""
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        assert cell.get("id"), (name, cell.source[:40])
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.id)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_runs_without_unexpected_errors(name, run_example):
    cells = run_example(name)
    for cid, cell in cells.items():
        if cell.cell_type != "code":
            continue
        expected = "raises-exception" in cell.metadata.get("tags", [])
        assert bool(_errors(cell)) == expected, (name, cid, _errors(cell))


def test_gpu_training_says_what_it_needs_and_skips_cleanly(run_example):
    cells = run_example("gpu_training.ipynb")
    setup = "".join(o.text for o in cells["setup"].outputs if o.output_type == "stream")
    if HAVE_TORCH:
        assert setup.startswith("PyTorch ")
    else:
        assert "PyTorch is not installed" in setup and "pip install torch" in setup
    gpu = HAVE_TORCH and __import__("torch").cuda.is_available()
    for cid, device in [
        ("cpu-32", "cpu"),
        ("cpu-512", "cpu"),
        ("gpu-32", "cuda"),
        ("gpu-512", "cuda"),
        ("gpu-512-amp", "cuda"),
    ]:
        cell = cells[cid]
        [summary] = _summaries(cell)  # measured whether it trained or skipped
        trains = HAVE_TORCH and (device == "cpu" or gpu)
        if trains:
            assert "skipped" not in _text(cell)
            assert "'samples': 8192" in _text(cell)
        else:
            [line] = [o.text for o in cell.outputs if o.output_type == "stream"]
            why = "PyTorch is not installed" if not HAVE_TORCH else "no CUDA GPU"
            assert line.startswith(f"skipped ({device}, batch size ") and why in line
    compare = _text(cells["compare"])
    history = _text(cells["history"])
    if HAVE_TORCH:
        assert "mJ/sample" in compare
        assert "cpu: batch size 512 used " in compare and "x less energy per sample" in compare
        assert "cpu-batch-32" in history and "mj_per_sample" in history
    else:
        assert "cpu: nothing to compare, skipped: cpu-batch-32, cpu-batch-512" in compare
        assert "No training ran" in history
    if not gpu:
        assert "gpu: nothing to compare, skipped: gpu-batch-32" in compare


def test_carbon_aware_offline(run_example):
    cells = run_example("carbon_aware.ipynb")
    zones = _text(cells["zones"])
    assert "FR" in zones and "44 gCO2e/kWh  France [Ember 2024 (static)]" in zones
    assert "US-CAL-CISO" in zones and "Electricity Maps 2025 (static)" in zones
    per_zone = _text(cells["per-zone"]).splitlines()
    assert [line.split(":")[0] for line in per_zone] == ["SE", "FR", "GB", "US", "PL"]
    grams = [float(line.split("-> ")[1].split(" ")[0]) for line in per_zone]
    assert grams[0] < grams[1] < grams[2] < grams[3] < grams[4]  # same energy, dirtier grids
    live = _text(cells["live"])
    assert live.startswith("No live provider configured") and "CARBONLAB_INTENSITY=" in live
    assert "'source': 'Ember 2024 (static)'" in _text(cells["record"])
    assert _text(cells["advice"]).startswith("No advice: no live provider is configured")
    advise = _text(cells["advise"])
    assert advise.startswith("carbonlab advice · ") and "measured in the last hour: " in advise
    assert "no advice: no carbon-intensity forecast is configured" in advise


def test_paper_report_writes_a_model_card_and_latex_outside_the_checkout(run_example):
    cells = run_example("paper_report.ipynb")
    out = Path(_text(cells["outdir"]).split("report directory: ")[1].strip())
    assert not out.is_relative_to(EXAMPLES.parent)
    assert "training accuracy: " in _text(cells["evaluate"])
    md = "\n".join(o["data"].get("text/markdown", "") for o in cells["paper"].outputs)
    assert "## Figures" in md and "COUNTERFACTUAL, not measured" in md and "zone SE" in md
    assert "wrote the model-card report of 1 run(s) to model_card.md" in _text(cells["card"])
    assert "wrote the latex report of 1 run(s) to paper_energy.tex" in _text(cells["latex"])
    card = (out / "model_card.md").read_text(encoding="utf-8")
    assert card.startswith("---\nco2_eq_emissions:\n") and "\n## Environmental Impact\n" in card
    check = _text(cells["check"])
    declared = check.split("model card emissions: ")[1].split(" g")[0]
    total = check.split("history total (train): ")[1].split(" g")[0]
    assert float(declared) == pytest.approx(float(total), rel=1e-12) and float(total) > 0
    tex = (out / "paper_energy.tex").read_text(encoding="utf-8")
    assert "\\begin{tabular}" in tex and "\\paragraph{Energy and carbon.}" in tex
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert len(doc["run_ids"]) == 1 and doc["runs"][0]["measurement"]["label"] == "train"


def _shifted(path: Path, first_end: float) -> dict:
    """An API sample with every half hour moved so that its first period ends at ``first_end``."""
    from datetime import datetime, timezone

    fmt = "%Y-%m-%dT%H:%MZ"

    def t(s: str) -> float:
        return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc).timestamp()

    doc = json.loads(path.read_text())
    delta = first_end - t(doc["data"][0]["to"])
    for item in doc["data"]:
        for k in ("from", "to"):
            item[k] = datetime.fromtimestamp(t(item[k]) + delta, timezone.utc).strftime(fmt)
    return doc


def test_carbon_aware_with_a_live_provider(tmp_path):
    """The GB Carbon Intensity API replayed from tests/fixtures/api-samples by a local server,
    its half hours moved to now, so the notebook shows a live reading and advice."""
    from tests.test_providers import UK, ApiServer, Reply

    now = time.time()
    half = now - now % 1800
    server = ApiServer()
    server.routes["/intensity"] = Reply(_shifted(UK / "intensity.json", half + 1800))
    server.routes["/intensity/*"] = Reply(
        _shifted(UK / "intensity_from_fw24h_real_2020-05-21.json", half)
    )
    server.start()
    try:
        cells = _execute(
            "carbon_aware.ipynb",
            tmp_path,
            {"CARBONLAB_INTENSITY": "uk-carbon-intensity:GB", "CARBONLAB_UK_CI_URL": server.url},
        )
    finally:
        server.stop()
    assert "/intensity" in server.paths()
    live = _text(cells["live"])
    assert live.startswith("GB: 263 gCO2e/kWh (average), actual for ")
    assert "NESO Carbon Intensity API (live) [uk-carbon-intensity:GB], fetched " in live
    assert "forecast: 48 periods" in live and "best 1 h window in the next 24 h: " in live
    [summary] = _summaries(cells["charged"])
    assert (
        "Great Britain (national) 263 gCO2e/kWh (NESO Carbon Intensity API (live))"
        in (summary["text/plain"])
    )
    record = _text(cells["record"])
    assert "'provider': 'uk-carbon-intensity:GB'" in record and "'estimate': 'actual'" in record
    advice = _text(cells["advice"])
    assert advice.startswith("a 2 h job at 300 W would emit ") and "% less between " in advice
    assert "NESO Carbon Intensity API forecast for GB" in advice
    advise = _text(cells["advise"])
    assert "this notebook's last hour of work would emit " in advise
    assert "grid now: 263 gCO2e/kWh, Great Britain (national) [GB], fetched " in advise


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_running_the_examples_leaves_the_checkout_clean(name, run_example):
    """Run in examples/ as a user would, every notebook leaves git status of examples/ as it was:
    no outputs saved into tracked notebooks, no export or report written beside them."""
    run_example(name)
    before = _BEFORE.get("status")
    if before is None:
        unavailable("not a git checkout")
    assert _git_status() == before
    assert not list(EXAMPLES.glob("*.csv")) and not list(EXAMPLES.glob("*.json"))


# --- dev/lab: JupyterLab on copies, and the URL of the notebook itself ----------------------------

DEV_LAB = EXAMPLES.parent / "dev" / "lab"


def _dev_lab_env(work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBONLAB_", "JUPYTER"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DEV_LAB_DIR=str(work), DEV_LAB_NO_SETUP="1", **extra)
    return env


def test_dev_lab_prints_the_notebooks_url_and_runs_on_copies(tmp_path):
    work = tmp_path / "lab"
    before = _git_status()
    r = subprocess.run(
        ["bash", str(DEV_LAB), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_dev_lab_env(work, DEV_LAB_DRY_RUN="1"),
    )
    assert r.returncode == 0, r.stderr
    [url] = re.findall(r"carbonlab: open (\S+)", r.stdout)
    assert re.fullmatch(r"http://localhost:\d+/lab/tree/quickstart\.ipynb\?token=[0-9a-f]{48}", url)
    port = url.split(":")[2].split("/")[0]
    assert f"--port={port}" in r.stdout and "--ServerApp.port_retries=0" in r.stdout
    assert f"--ServerApp.root_dir={work}" in r.stdout
    assert sorted(p.name for p in work.glob("*.ipynb")) == NOTEBOOKS
    assert _git_status() == before


def test_dev_lab_starts_and_its_url_opens_the_notebook(tmp_path):
    """A real JupyterLab, stopped once the printed URL has been fetched."""
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        unavailable("jupyter is not installed in this environment")
    work = tmp_path / "lab"
    p = subprocess.Popen(
        ["bash", str(DEV_LAB), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_dev_lab_env(work),
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "JupyterLab is up" in line:
                break
        up = [ln for ln in lines if "JupyterLab is up" in ln]
        assert up, "".join(lines)
        url = up[0].rsplit(" ", 1)[1].strip()
        assert "/lab/tree/quickstart.ipynb?token=" in url
        import urllib.request

        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200
        api = url.replace("/lab/tree/", "/api/contents/")
        with urllib.request.urlopen(api, timeout=30) as resp:  # the copy, served from work
            assert json.loads(resp.read())["path"] == "quickstart.ipynb"
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
