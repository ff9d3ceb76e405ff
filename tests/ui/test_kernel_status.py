"""The host's kernel indicator stays true while a measured cell runs.

JupyterLab 4.4+ opens a kernel subshell when the kernel opens a comm during a cell (carbonlab's
run comm, its live widget); the kernel's busy/idle answer to that housekeeping request made
JupyterLab show the kernel "Idle" about 0.3 s into a cell that was still running. The labextension
marks subshell requests as untracked (labextension/src/kernelstatus.ts).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.ui import harness

pytestmark = pytest.mark.ui

CELL = (
    "import time\n_t = time.monotonic()\nwhile time.monotonic() - _t < 4:\n    sum(range(10_000))\n"
)


def _statuses_while_running(page: Any, lab: harness.Lab, name: str) -> tuple[list, list]:
    harness.open_notebook(page, lab, name)
    page.evaluate(
        """() => {
          const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
          window.__parents = [];
          k.iopubMessage.connect((_, m) => {
            if (m.header.msg_type === 'status') window.__parents.push(m.parent_header.msg_type);
          });
        }"""
    )
    harness.run_cell(page, 0)  # %load_ext carbonlab (or nothing)
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.content.widgets[0].model.executionCount !== null",
        timeout=60_000,
    )
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
    )
    harness.run_cell(page, 1)
    seen = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:  # the cell runs 4 s
        seen.append(
            page.evaluate(
                "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
            )
        )
        page.wait_for_timeout(100)
    return seen, page.evaluate("window.__parents")


def test_the_kernel_reads_busy_for_the_whole_of_a_measured_cell(lab, page):
    harness.write_notebook(
        lab.root_dir / "busy.ipynb", [("c0", "%load_ext carbonlab"), ("c1", CELL)]
    )
    seen, parents = _statuses_while_running(page, lab, "busy.ipynb")
    # What flipped it happened: JupyterLab asked for subshells during the cell, and the
    # sidebar's hello (a comm) was answered on one while the cell ran.
    assert "create_subshell_request" in parents and "comm_open" in parents, parents
    # Polled every 0.1 s from the cell's start for 3 s: busy throughout, once it said busy.
    first = seen.index("busy")
    assert first <= 5 and set(seen[first:]) == {"busy"}, seen
    harness.screenshot(page, "kernel-busy-while-measured")
