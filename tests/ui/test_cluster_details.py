"""A cell's energy on a Dask cluster, per host, in a sidebar row's details (issue 17).

A real ``distributed.LocalCluster`` (2 worker processes) started in the notebook's kernel, then
``%load_ext carbonlab``, which attaches the default client; a cell keeps one worker busy for a few
seconds. While it runs, the row gets a disclosure ("1 host"): opened with the keyboard, it lists
the host with its workers, energy and power from the live polls; once the cell ends, the same
details list the host with this client's energy from the summary, in J (the sidebar's unit set to
J). Screenshots (light, and the sidebar in the dark theme) go to
.ci/artifacts/cluster-details-*.png.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest

from tests import unavailable
from tests.ui import harness

pytestmark = pytest.mark.ui


@pytest.fixture(autouse=True)
def _distributed() -> None:
    # A dev dependency: under CI a missing one fails the test instead of hiding it.
    try:
        import distributed  # noqa: F401
    except ImportError:
        unavailable("distributed is not installed (pip install -e '.[dev]')")


SIDEBAR = f"#{harness.SIDEBAR_ID}"
CELL = "c-busy"
ROW = f'{SIDEBAR} [data-cell-id="{CELL}"]'
BUSY_S = 4.0

SETUP = """\
import dask
from distributed import Client, LocalCluster
with dask.config.set({"distributed.diagnostics.nvml": False}):
    client = Client(LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                 dashboard_address=None))
%load_ext carbonlab"""

BUSY = f"""\
import time

def busy(seconds):
    t0 = time.thread_time()
    while time.thread_time() - t0 < seconds:
        pass
    return time.thread_time() - t0

client.submit(busy, {BUSY_S}, pure=False).result()"""

TEARDOWN = "client.close(); client.cluster.close()"


def _wait_executed(page: Any, index: int, timeout: float = 120.0) -> None:
    page.wait_for_function(
        """i => {
          const m = window.jupyterapp.shell.currentWidget.content.widgets[i].model;
          return m.executionCount !== null && m.executionState === 'idle';
        }""",
        arg=index,
        timeout=timeout * 1000,
    )


def _hosts(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(
        """sel => [...document.querySelectorAll(`${sel} .jp-carbonlab-host`)].map(li => ({
          host: li.dataset.host,
          engine: li.dataset.engine,
          energy_j: Number(li.dataset.energyJ),
          name: li.querySelector('.jp-carbonlab-host-name').textContent,
          workers: li.querySelector('.jp-carbonlab-host-workers').textContent,
          energy: li.querySelector('.jp-carbonlab-host-energy').textContent,
          power: li.querySelector('.jp-carbonlab-host-power').textContent,
          label: li.getAttribute('aria-label')
        }))""",
        ROW,
    )


def test_a_rows_details_list_the_cluster_per_host_live_then_finished(tmp_path: Any) -> None:
    settings = {"carbonlab/sidebar.jupyterlab-settings": {"energyUnit": "J"}}
    with (
        harness.start_lab(tmp_path / "root", settings=settings) as lab,
        harness.chromium() as browser,
    ):
        page = harness.new_page(browser, width=1500)
        harness.write_notebook(
            lab.root_dir / "cluster.ipynb",
            [("c-setup", SETUP), (CELL, BUSY), ("c-teardown", TEARDOWN)],
        )
        harness.open_notebook(page, lab, "cluster.ipynb")
        harness.open_sidebar(page)
        harness.run_cell(page, 0)
        _wait_executed(page, 0)
        setup_out = harness.cell_output_html(page, 0)
        assert "measuring the dask cluster" in setup_out, setup_out
        try:
            harness.run_cell(page, 1)
            # Live: the disclosure appears once a sample carried the cluster's hosts (a poll).
            button = page.locator(f"{ROW} .jp-carbonlab-disclose")
            button.wait_for(state="visible", timeout=30_000)
            assert page.get_attribute(ROW, "data-status") == "running"
            assert button.get_attribute("aria-expanded") == "false"
            assert page.locator(f"{ROW} .jp-carbonlab-details").count() == 0
            # Keyboard: Tab-reachable, Enter toggles it (not the row's scroll-to-cell).
            button.focus()
            page.keyboard.press("Enter")
            assert button.get_attribute("aria-expanded") == "true"
            details = page.locator(f"{ROW} .jp-carbonlab-details")
            details.wait_for(state="visible")
            assert details.get_attribute("data-cluster-details") == "live"
            assert button.get_attribute("aria-controls") == details.get_attribute("id")
            # Power per host comes from two polls (≤ 1 Hz): wait for it while the cell runs.
            page.wait_for_function(
                """sel => {
                  const p = document.querySelector(`${sel} .jp-carbonlab-host-power`);
                  return !!p && p.textContent.trim() !== '';
                }""",
                arg=ROW,
                timeout=BUSY_S * 1000,
            )
            live = _hosts(page)
            # The disclosure fits the row's second line at the panel's default width.
            fits = page.evaluate(
                """sel => {
                  const l = document.querySelector(`${sel} .jp-carbonlab-line2`);
                  return l.scrollWidth <= l.clientWidth + 1;
                }""",
                ROW,
            )
            running = page.get_attribute(ROW, "data-status")
            live_shot = harness.screenshot(page, "cluster-details-live")
            harness.screenshot(page, "cluster-details-sidebar-live", SIDEBAR)
            assert running == "running", "the cell ended before the host's power was shown"
            assert fits, "the row's second line overflows with the disclosure"
            assert len(live) == 1, live
            (h,) = live
            assert h["engine"] == "dask" and h["host"] == socket.gethostname()
            assert h["name"] == f"dask {socket.gethostname()}"
            assert h["workers"] == "2 workers"
            assert h["energy_j"] > 0 and re.fullmatch(r"[\d.]+ J", h["energy"]), h
            assert re.fullmatch(r"[\d.]+ (mW|W|kW)", h["power"]), h
            assert "now" in h["label"], h

            # Finished: the same details, now from the summary's components.
            page.wait_for_selector(f'{ROW}[data-status="done"]', timeout=60_000)
            page.wait_for_selector(f'{ROW} [data-cluster-details="summary"]', timeout=10_000)
            assert button.get_attribute("aria-expanded") == "true"
            done = _hosts(page)
            text = page.inner_text(f"{ROW} .jp-carbonlab-details")
            done_shot = harness.screenshot(page, "cluster-details-done")
            harness.screenshot(page, "cluster-details-sidebar", SIDEBAR)
            harness.set_theme(page, "dark")  # themed by JupyterLab's variables, as the rest
            harness.screenshot(page, "cluster-details-sidebar-dark", SIDEBAR)
            assert len(done) == 1, done
            (h,) = done
            assert h["host"] == socket.gethostname() and h["workers"] == "2 workers"
            assert h["energy_j"] > 0 and re.fullmatch(r"[\d.]+ J", h["energy"]), h
            assert h["power"] == ""  # power is shown while running only
            assert "this client's share" in text.lower(), text
            # The row's own energy includes what the host's details list.
            row_j = float(page.get_attribute(ROW, "data-energy-j") or 0)
            assert row_j >= h["energy_j"] * 0.999

            # Collapsed again with the mouse; the row keeps its place and status.
            button.click()
            assert button.get_attribute("aria-expanded") == "false"
            assert page.locator(f"{ROW} .jp-carbonlab-details").count() == 0
            assert not page.console_errors, page.console_errors
            print(f"screenshots: {live_shot} {done_shot}")
        finally:
            harness.run_cell(page, 2)
            _wait_executed(page, 2, timeout=60)
