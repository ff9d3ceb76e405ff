"""The sidebar with carbonlab's own IPython extension in the kernel (no hand-made comm).

Loads the extension with the sidebar's button, runs all cells, and checks queued → running (energy
rising) → done / error, as a user would see it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui import harness

pytestmark = pytest.mark.ui

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 2.5:\n    sum(range(10000))\n'done'"
CELLS = [("busy", BUSY), ("quick", "1 + 1"), ("fails", "raise ValueError('boom')")]

STATUS_JS = """() => Object.fromEntries([...document.querySelectorAll(
  '#carbonlab-sidebar [data-cell-id]')].map(r => [r.dataset.cellId, r.dataset.status]))"""


def test_load_button_then_run_all(lab: harness.Lab, page: Any) -> None:
    harness.write_notebook(lab.root_dir / "extension.ipynb", CELLS)
    harness.open_notebook(page, lab, "extension.ipynb")
    harness.open_sidebar(page)
    sidebar = "#carbonlab-sidebar"

    page.click(f"{sidebar} .jp-carbonlab-load-button")
    page.wait_for_function(
        """() => {
          const s = document.getElementById('carbonlab-sidebar');
          // A successful load shows its message for a frame before the model's re-render
          // replaces the button by the 'measuring' text: wait for that, or for a failure.
          const r = s.querySelector('[data-load-result]');
          return /measuring in this kernel/.test(s.innerText) || (r && r.dataset.loadResult !== 'ok');
        }""",
        timeout=60_000,
    )
    assert "measuring in this kernel" in page.inner_text(sidebar), page.inner_text(sidebar)

    page.evaluate("void window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # The first cell runs while the others wait in the kernel's queue.
    page.wait_for_function(
        """() => {
          const r = document.querySelector('#carbonlab-sidebar [data-cell-id="busy"]');
          return r && r.dataset.status === 'running' && Number(r.dataset.sampleCount) >= 2;
        }""",
        timeout=30_000,
    )
    statuses = page.evaluate(STATUS_JS)
    assert statuses == {"busy": "running", "quick": "queued", "fails": "queued"}, statuses
    first = float(page.get_attribute(f'{sidebar} [data-cell-id="busy"]', "data-energy-j") or 0)
    page.wait_for_function(
        """e => Number(document.querySelector(
             '#carbonlab-sidebar [data-cell-id="busy"]').dataset.energyJ) > e""",
        arg=first,
        timeout=10_000,
    )
    harness.screenshot(page, "extension-running-light", sidebar)

    page.wait_for_function(
        """() => {
          const r = document.querySelector('#carbonlab-sidebar [data-cell-id="fails"]');
          return r && r.dataset.status === 'error';
        }""",
        timeout=60_000,
    )
    statuses = page.evaluate(STATUS_JS)
    assert statuses == {"busy": "done", "quick": "done", "fails": "error"}, statuses
    energy = float(page.get_attribute(f'{sidebar} [data-cell-id="busy"]', "data-energy-j") or 0)
    assert energy > 0
    harness.screenshot(page, "extension-done-light", sidebar)
