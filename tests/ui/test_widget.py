"""The in-cell live widget in a real JupyterLab (ipywidgets' own renderer), driven by Chromium.

Without the carbonlab sidebar (the labextension disabled in this server's page config): a
``%%carbon`` cell of about 3.5 s of real work shows the widget, its energy rises while the cell
runs, and the widget then becomes the static summary, which is what the saved notebook keeps.
With the sidebar: the widget stays one line. Screenshots go to .ci/artifacts/.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui import harness
from tests.ui.conftest import _unavailable

pytestmark = pytest.mark.ui

WORK_S = 3.5
BUSY = (
    "%%carbon --label train\nimport time\n_t = time.monotonic()\n"
    f"while time.monotonic() - _t < {WORK_S}:\n    sum(range(10_000))\n'done'"
)
CELLS = [("load", "%load_ext carbonlab"), ("train", BUSY)]

LIVE = ".jp-Notebook .carbonlab-live"
RISING_WHILE_RUNNING = """([index, e]) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  const el = cell.node.querySelector('.carbonlab-live');
  return !!el && Number(el.dataset.energyJ) > e && cell.model.executionState === 'running';
}"""
REPLACED = """index => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  return cell.model.executionState === 'idle' && !cell.node.querySelector('.carbonlab-live')
    && !!cell.node.querySelector('.carbonlab-summary');
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Lab]:
    """JupyterLab with carbonlab's labextension disabled (overrides tests/ui/conftest.py's)."""
    if harness.chromium_path() is None:
        _unavailable("no Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    with harness.start_lab(
        tmp_path_factory.mktemp("lab-no-sidebar"), disabled_extensions=["carbonlab"]
    ) as server:
        yield server


def _run_and_wait(page: Any, index: int) -> None:
    harness.run_cell(page, index)
    page.wait_for_function(
        """index => {
          const m = window.jupyterapp.shell.currentWidget.content.widgets[index].model;
          return m.executionCount !== null && m.executionState === 'idle';
        }""",
        arg=index,
        timeout=60_000,
    )


def _live_energy(page: Any) -> float:
    return float(page.get_attribute(LIVE, "data-energy-j") or "nan")


def test_widget_updates_live_without_the_sidebar_then_becomes_the_summary(
    lab: harness.Lab, page: Any
) -> None:
    harness.write_notebook(lab.root_dir / "widget.ipynb", CELLS)
    harness.open_notebook(page, lab, "widget.ipynb")
    assert not harness.plugin_active(page, "carbonlab:sidebar")
    assert page.query_selector("#carbonlab-sidebar") is None
    assert harness.plugin_active(page, "@jupyter-widgets/jupyterlab-manager:plugin")
    _run_and_wait(page, 0)

    harness.run_cell(page, 1)
    page.wait_for_selector(LIVE, timeout=30_000)  # rendered by ipywidgets' HTML view
    assert page.get_attribute(LIVE, "data-carbonlab-state") == "running"
    assert page.get_attribute(LIVE, "data-mode") == "full"
    first = _live_energy(page)
    page.wait_for_function(RISING_WHILE_RUNNING, arg=[1, first], timeout=15_000)
    assert _live_energy(page) > first
    text = page.inner_text(LIVE)
    assert "train" in text and "● running" in text and "cpu-time-model (process)" in text
    harness.screenshot(page, "widget-live-no-sidebar")

    page.wait_for_function(REPLACED, arg=1, timeout=30_000)
    out = harness.cell_output_html(page, 1)
    assert "Error displaying widget" not in out
    assert out.count("carbonlab-summary") == 1  # the widget became the summary: no second block
    summary = page.inner_text(".jp-Notebook .carbonlab-summary")
    assert summary.startswith("carbonlab · train · ") and "cpu-time-model (process)" in summary
    harness.screenshot(page, "widget-done-no-sidebar")

    # The saved notebook keeps the static summary, not a widget view.
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    saved = json.loads((lab.root_dir / "widget.ipynb").read_text())
    outputs = saved["cells"][1]["outputs"]
    displays = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(displays) == 1
    assert "application/vnd.jupyter.widget-view+json" not in displays[0]["data"]
    assert "carbonlab-summary" in "".join(displays[0]["data"]["text/html"])


def test_with_the_sidebar_the_widget_stays_one_line(browser: Any, tmp_path: Path) -> None:
    ext = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "carbonlab" / "package.json"
    if not ext.exists():
        _unavailable(f"carbonlab labextension not installed in {sys.prefix}: dev/labextension.sh")
    cells = [*CELLS, ("again", BUSY.replace("train", "again"))]
    with harness.start_lab(tmp_path / "root") as lab:
        page = harness.new_page(browser)
        try:
            harness.write_notebook(lab.root_dir / "compact.ipynb", cells)
            harness.open_notebook(page, lab, "compact.ipynb")
            assert harness.plugin_active(page, "carbonlab:sidebar")
            harness.open_sidebar(page)
            _run_and_wait(page, 0)
            # The session's first measured cell: the sidebar says hello when its first comm
            # arrives, which ipykernel handles on a subshell while the cell runs.
            harness.run_cell(page, 1)
            page.wait_for_selector(LIVE, timeout=30_000)
            page.wait_for_function(
                RISING_WHILE_RUNNING, arg=[1, _live_energy(page)], timeout=15_000
            )
            assert page.get_attribute(LIVE, "data-mode") == "compact"
            assert "details in the carbonlab sidebar" in page.inner_text(LIVE)
            harness.screenshot(page, "widget-live-with-sidebar")
            page.wait_for_function(REPLACED, arg=1, timeout=30_000)
            line = page.inner_text(".jp-Notebook .carbonlab-oneline")
            assert line.startswith("carbonlab · train · ") and "\n" not in line.strip()
            # And the next one too (the hello stays open).
            harness.run_cell(page, 2)
            page.wait_for_selector(LIVE, timeout=30_000)
            assert page.get_attribute(LIVE, "data-mode") == "compact"
            page.wait_for_function(REPLACED, arg=2, timeout=30_000)
            page.wait_for_function(  # the sidebar has the summary too (sent just after the cell)
                """() => [...document.querySelectorAll('#carbonlab-sidebar [data-cell-id]')]
                       .every(r => r.dataset.status === 'done')""",
                timeout=30_000,
            )
            harness.screenshot(page, "widget-done-with-sidebar")
        finally:
            page.close()
