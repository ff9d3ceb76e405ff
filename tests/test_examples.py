"""examples/quickstart.ipynb, executed by nbclient in a real kernel, outputs checked.

Figures depend on the machine; what is checked is what the notebook promises: which cells show a
summary, with which label and methods, the budget warning and failure, the raising cell, history and
the report chart.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.kernel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from nbclient import NotebookClient

    work = tmp_path_factory.mktemp("quickstart")
    shutil.copy(EXAMPLES / "quickstart.ipynb", work / "quickstart.ipynb")
    nb = nbformat.read(work / "quickstart.ipynb", as_version=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("CARBONLAB_HISTORY", str(work / "history.sqlite"))
    mp.setenv("JPY_SESSION_NAME", str(work / "quickstart.ipynb"))  # as jupyter_server does
    mp.delenv("CARBONLAB_ZONE", raising=False)
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(work)}}
        ).execute()
    finally:
        mp.undo()
    return {c.id: c for c in nb.cells}, work


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
    assert (work / "quickstart-history.csv").read_text().startswith("run_id,notebook,cell_id")
