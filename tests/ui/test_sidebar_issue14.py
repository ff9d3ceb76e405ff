"""Issue 14's sidebar and in-cell widget cases, each in a real JupyterLab, kernel and Chromium.

- the panel opened before any notebook (fresh workspace) follows the notebook opened after it;
- a page reload mid-run: the sidebar shows the run in flight, then done, with the earlier runs;
- a kernel restart mid-cell: the live widget's output becomes a static "interrupted" summary, and
  the saved notebook renders without a kernel (no widget-only output);
- Run All on ~40 cells: newest first, the running cell on top; a --label shows in its row.

Screenshots go to .ci/artifacts/ and /tmp/shots/h14ui/.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.ui import harness

pytestmark = pytest.mark.ui

SIDEBAR = "#carbonlab-sidebar"
SHOTS = Path("/tmp/shots/h14ui")


def shot(page: Any, name: str, selector: str | None = None) -> Path:
    path = harness.screenshot(page, name, selector)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return SHOTS / path.name


def busy(seconds: float) -> str:
    return (
        "import time\n_t = time.monotonic()\n"
        f"while time.monotonic() - _t < {seconds}:\n    sum(range(10_000))\n"
    )


def row_status(page: Any, cell_id: str) -> str | None:
    return page.evaluate(
        """id => {
          const r = document.querySelector(`#carbonlab-sidebar [data-cell-id="${id}"]`);
          return r ? r.dataset.status : null;
        }""",
        cell_id,
    )


def wait_row(page: Any, cell_id: str, status: str, timeout: float = 60.0) -> None:
    page.wait_for_function(
        """([id, st]) => {
          const r = document.querySelector(`#carbonlab-sidebar [data-cell-id="${id}"]`);
          return !!r && r.dataset.status === st;
        }""",
        arg=[cell_id, status],
        timeout=timeout * 1000,
    )


def open_loaded(page: Any, lab: harness.Lab, name: str, cells: list[tuple[str, str]]) -> None:
    """Write and open notebook ``name`` with the sidebar shown, and run its first cell (which
    loads carbonlab)."""
    harness.write_notebook(lab.root_dir / name, cells)
    harness.open_notebook(page, lab, name)
    harness.open_sidebar(page)
    harness.run_cell(page, 0)
    wait_executed(page, 0, 1)


def run_all_below_first(page: Any) -> None:
    """Start running every cell after the first (not awaited)."""
    page.evaluate(
        """() => {
          const nb = window.jupyterapp.shell.currentWidget.content;
          nb.activeCellIndex = 1;
          void window.jupyterapp.commands.execute('notebook:run-all-below');
        }"""
    )


def wait_executed(page: Any, index: int, count: int, timeout: float = 60.0) -> None:
    page.wait_for_function(
        """([i, n]) => {
          const w = window.jupyterapp.shell.currentWidget;
          return w.content.widgets[i].model.executionCount === n;
        }""",
        arg=[index, count],
        timeout=timeout * 1000,
    )


def test_the_panel_opened_first_follows_the_notebook_opened_after(
    lab: harness.Lab, page: Any
) -> None:
    # Fresh workspace: click the leaf, then open a notebook. JupyterLab's tracker signals
    # currentChanged before widgetAdded; the panel stayed on "Open a notebook to see...".
    harness.write_notebook(
        lab.root_dir / "first.ipynb", [("f-load", "%load_ext carbonlab"), ("f-1", "1 + 1")]
    )
    page.goto(f"{lab.url}/lab?reset")
    harness.wait_app(page)
    harness.open_sidebar(page)
    assert "Open a notebook" in page.inner_text(SIDEBAR)
    page.evaluate(
        "() => window.jupyterapp.commands.execute('docmanager:open', {path: 'first.ipynb'})"
    )
    page.wait_for_function(
        """() => {
          const w = window.jupyterapp.shell.currentWidget;
          const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
          return !!(k && k.status === 'idle' && w.context.path === 'first.ipynb');
        }""",
        timeout=60_000,
    )
    harness.run_cell(page, 0)
    wait_executed(page, 0, 1)
    harness.run_cell(page, 1)
    wait_row(page, "f-1", "done")
    text = page.inner_text(SIDEBAR)
    assert "Open a notebook" not in text and "first.ipynb" in text, text
    shot(page, "issue14-panel-first-then-notebook", SIDEBAR)


def open_busy_notebook(page: Any, lab: Any, name: str) -> None:
    """Open ``name`` when its kernel may be busy (a cell of an earlier page is running)."""
    page.goto(f"{lab.url}/lab/tree/{name}")
    harness.wait_app(page)
    page.wait_for_function(
        """name => {
          const w = window.jupyterapp.shell.currentWidget;
          const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
          return !!(k && w.context.path === name && w.content.widgets.length > 0);
        }""",
        arg=name,
        timeout=60_000,
    )


def test_a_reload_mid_run_shows_the_run_in_flight_then_done_with_the_earlier_runs(
    lab: harness.Lab, page: Any
) -> None:
    harness.write_notebook(
        lab.root_dir / "reload.ipynb",
        [
            ("r-load", "%load_ext carbonlab"),
            ("r-1", "sum(range(10**6))"),
            ("r-2", "sum(range(2 * 10**6))"),
            ("r-long", busy(12) + "'long done'"),
        ],
    )
    harness.open_notebook(page, lab, "reload.ipynb")
    harness.open_sidebar(page)
    harness.run_cell(page, 0)
    wait_executed(page, 0, 1)
    harness.run_cell(page, 1)
    wait_row(page, "r-1", "done")
    harness.run_cell(page, 2)
    wait_row(page, "r-2", "done")
    harness.run_cell(page, 3)
    wait_row(page, "r-long", "running")
    page.reload()
    open_busy_notebook(page, lab, "reload.ipynb")
    harness.open_sidebar(page)
    # The kernel's answer to the hello: the run in flight, and the two earlier runs.
    try:
        wait_row(page, "r-long", "running", timeout=30)
    except Exception:
        print("SIDEBAR:", page.inner_text(SIDEBAR))
        print("CONSOLE:", page.console_errors)
        print("LOG:", lab.log()[-3000:])
        raise
    assert row_status(page, "r-1") == "done" and row_status(page, "r-2") == "done"
    text = page.inner_text(SIDEBAR)
    assert "Load carbonlab" not in text and "not loaded" not in text, text
    energy_before = float(
        page.get_attribute(f'{SIDEBAR} [data-cell-id="r-long"]', "data-energy-j") or 0
    )
    shot(page, "issue14-reload-running", SIDEBAR)
    # Samples keep coming (forwarded on the hello comm), then the summary.
    page.wait_for_function(
        """e => {
          const r = document.querySelector('#carbonlab-sidebar [data-cell-id="r-long"]');
          return !!r && Number(r.dataset.energyJ) > e;
        }""",
        arg=energy_before,
        timeout=30_000,
    )
    wait_row(page, "r-long", "done", timeout=60)
    assert page.get_attribute(f"{SIDEBAR} .jp-carbonlab-totals", "data-runs") == "3"
    shot(page, "issue14-reload-done", SIDEBAR)


def test_a_kernel_restart_mid_cell_leaves_a_static_output_that_renders_without_a_kernel(
    lab: harness.Lab, page: Any
) -> None:
    import nbformat

    harness.write_notebook(
        lab.root_dir / "restart.ipynb",
        [("k-load", "%load_ext carbonlab"), ("k-long", "%%carbon --label longrun\n" + busy(60))],
    )
    harness.open_notebook(page, lab, "restart.ipynb")
    harness.run_cell(page, 0)
    wait_executed(page, 0, 1)
    harness.run_cell(page, 1)
    # The live widget (the sidebar is not shown: full) appears after 1 s.
    page.wait_for_function(
        """() => {
          const w = window.jupyterapp.shell.currentWidget.content.widgets[1];
          return !!w.node.querySelector('.carbonlab-live');
        }""",
        timeout=60_000,
    )
    assert 'data-mode="full"' in harness.cell_output_html(page, 1)
    page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()"
    )
    page.wait_for_function(
        """() => {
          const w = window.jupyterapp.shell.currentWidget.content.widgets[1];
          return !!w.node.querySelector('.carbonlab-interrupted');
        }""",
        timeout=60_000,
    )
    html = harness.cell_output_html(page, 1)
    assert "interrupted" in html and "model not found" not in html, html
    shot(page, "issue14-restart-static-output")
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    nb = nbformat.read(str(lab.root_dir / "restart.ipynb"), as_version=4)
    outputs = nb.cells[1].outputs
    assert outputs, "the cell kept no output"
    for out in outputs:
        data = out.get("data", {})
        assert "application/vnd.jupyter.widget-view+json" not in data, out
        assert "application/vnd.carbonlab.live+json" not in data, out
    text = "".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "interrupted" in text and "longrun" in text, text
    assert any("text/html" in o.get("data", {}) for o in outputs)


def test_run_all_on_40_cells_lists_newest_first_and_shows_the_label(
    lab: harness.Lab, page: Any
) -> None:
    cells = [("a-load", "%load_ext carbonlab")]
    cells += [(f"a-{i}", f"x{i} = sum(range(2000))") for i in range(40)]
    cells[30] = (
        "a-29",
        "%%carbon --label a-rather-long-label-for-the-slow-cell-of-this-run\n" + busy(4),
    )
    open_loaded(page, lab, "many.ipynb", cells)
    # Not awaited: the command's promise resolves when every cell has run.
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    # Mid-run: the slow cell is running and it is the first row, in view.
    wait_row(page, "a-29", "running")
    first = page.evaluate(
        "() => document.querySelector('#carbonlab-sidebar [data-cell-id]').dataset.cellId"
    )
    assert first == "a-29"
    box = page.locator(f'{SIDEBAR} [data-cell-id="a-29"]').bounding_box()
    assert box is not None and 0 <= box["y"] < 860
    label = page.locator(f'{SIDEBAR} [data-cell-id="a-29"] .jp-carbonlab-label')
    assert label.get_attribute("title") == "a-rather-long-label-for-the-slow-cell-of-this-run"
    shot(page, "issue14-run-all-running-on-top")
    wait_row(page, "a-39", "done", timeout=120)
    first = page.evaluate(
        "() => document.querySelector('#carbonlab-sidebar [data-cell-id]').dataset.cellId"
    )
    assert first == "a-39"
    shot(page, "issue14-run-all-done", SIDEBAR)


def test_runs_made_while_the_panel_was_hidden_show_when_it_opens(
    lab: harness.Lab, page: Any
) -> None:
    """The panel renders nothing while hidden (a Run All must not re-render rows nobody sees) and
    renders afresh when shown: every run made meanwhile is there, none stale."""
    cells = [("h-load", "%load_ext carbonlab")] + [(f"h-{i}", f"x = {i}") for i in range(1, 13)]
    open_loaded(page, lab, "hidden-runs.ipynb", cells)
    # Hide the panel (collapse the right area), then run every other cell.
    page.evaluate("() => window.jupyterapp.shell.collapseRight()")
    page.wait_for_function(
        f"() => {{ const s = document.querySelector('{SIDEBAR}'); "
        "return !s || s.offsetParent === null; }"
    )
    run_all_below_first(page)
    wait_executed(page, 12, 13)
    # Let the batched runs arrive while the panel is still hidden.
    page.wait_for_timeout(1500)
    harness.open_sidebar(page)
    for i in range(1, 13):
        wait_row(page, f"h-{i}", "done", timeout=30)
    shot(page, "sidebar-after-hidden-run-all", SIDEBAR)


def test_a_long_run_all_lists_the_newest_50_cells_and_shows_all_on_request(
    lab: harness.Lab, page: Any
) -> None:
    n = 60
    cells = [("m-load", "%load_ext carbonlab")] + [(f"m-{i}", f"x = {i}") for i in range(1, n + 1)]
    # (a name of its own: another test's notebook of that name would bring its kernel session)
    open_loaded(page, lab, "newest-50.ipynb", cells)
    run_all_below_first(page)
    wait_executed(page, n, n + 1)
    wait_row(page, f"m-{n}", "done", timeout=30)
    rows = f"{SIDEBAR} .jp-carbonlab-row[data-cell-id]"
    page.wait_for_function(
        "() => document.querySelector('#carbonlab-sidebar .jp-carbonlab-more') !== null",
        timeout=30_000,
    )
    ids = page.eval_on_selector_all(rows, "rs => rs.map(r => r.dataset.cellId)")
    assert ids == [f"m-{i}" for i in range(n, n - 50, -1)]  # the newest 50, newest first
    more = page.inner_text(f"{SIDEBAR} .jp-carbonlab-more")
    assert "10 more cells not listed" in more, more
    assert f"{n} runs" in page.inner_text(SIDEBAR)  # the totals count every run
    shot(page, "sidebar-newest-50", SIDEBAR)
    page.locator(f"{SIDEBAR} .jp-carbonlab-more").scroll_into_view_if_needed()
    shot(page, "sidebar-newest-50-footer", SIDEBAR)
    page.click(f"{SIDEBAR} .jp-carbonlab-more button")
    page.wait_for_function(
        f"() => document.querySelectorAll('{rows}').length === {n}", timeout=10_000
    )
    assert page.query_selector(f"{SIDEBAR} .jp-carbonlab-more") is None
