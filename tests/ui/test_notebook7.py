"""Notebook 7 (``jupyter notebook``): the carbonlab panel opens from its toolbar button and its
command, where the right panel shows no icon; and carbonlab loads and measures there too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import unavailable
from tests.ui import harness

pytestmark = pytest.mark.ui

SIDEBAR = f"#{harness.SIDEBAR_ID}"


@pytest.fixture(scope="module")
def nb7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Lab]:
    try:
        import notebook  # noqa: F401
    except ImportError:
        unavailable("notebook 7 is not installed (pip install -e '.[dev]')")
    if harness.chromium_path() is None:
        unavailable("no Chromium")
    root = tmp_path_factory.mktemp("nb7-root")
    state = Path(tempfile.mkdtemp(prefix="carbonlab-nb7-"))
    port = harness.free_port()
    (state / "settings").mkdir()
    for rel, value in harness._SETTINGS.items():
        f = state / "settings" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    config = state / "jupyter_server_test_config.py"
    config.write_text(
        harness._CONFIG.format(port=port, root_dir=str(root), workspaces=str(state / "ws"))
        + "c.JupyterNotebookApp.expose_app_in_browser = True\n"
    )
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["JUPYTERLAB_SETTINGS_DIR"] = str(state / "settings")
    env["IPYTHONDIR"] = str(state / "ipython")
    env["CARBONLAB_HISTORY"] = str(state / "history.sqlite")
    env.pop("JUPYTER_TOKEN", None)
    log_path = state / "notebook.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "notebook", "--config", str(config), "--no-browser"],
        cwd=str(root),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = harness.Lab(f"http://127.0.0.1:{port}", root, proc, log_path, state, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/tree", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    else:
        server.stop()
        raise RuntimeError(f"jupyter notebook did not start:\n{server.log()[-3000:]}")
    try:
        yield server
    finally:
        server.stop()


def _open(nb7: harness.Lab, browser: Any, name: str, cells: list[tuple[str, str]]) -> Any:
    """A new page on notebook ``name`` (written with ``cells``) in Notebook 7, its app ready."""
    harness.write_notebook(nb7.root_dir / name, cells)
    page = harness.new_page(browser)
    try:
        page.goto(f"{nb7.url}/notebooks/{name}")
        harness.wait_app(page)
    except BaseException:
        page.close()
        raise
    return page


def test_panel_opens_from_the_toolbar_button_and_the_command(nb7: harness.Lab, browser: Any):
    page = _open(nb7, browser, "seven.ipynb", [("a", "x = sum(range(10**6))")])
    try:
        page.wait_for_function(
            """() => {
              const w = window.jupyterapp.shell.currentWidget;
              const k = w && w.sessionContext && w.sessionContext.session
                && w.sessionContext.session.kernel;
              return !!(k && k.status === 'idle');
            }""",
            timeout=60_000,
        )
        button = page.wait_for_selector(
            '.jp-NotebookPanel-toolbar [data-command="carbonlab:toggle-sidebar"]',
            state="visible",
            timeout=30_000,
        )
        assert page.query_selector(SIDEBAR) is None or not page.is_visible(SIDEBAR)
        button.click()
        page.wait_for_selector(SIDEBAR, state="visible", timeout=15_000)
        # The command hides it again, and shows it.
        page.evaluate("() => window.jupyterapp.commands.execute('carbonlab:toggle-sidebar')")
        page.wait_for_function(
            f"() => {{ const s = document.querySelector('{SIDEBAR}'); "
            "return !s || s.offsetParent === null; }",
            timeout=15_000,
        )
        page.evaluate("() => window.jupyterapp.commands.execute('carbonlab:toggle-sidebar')")
        page.wait_for_selector(SIDEBAR, state="visible", timeout=15_000)
        # Load and measure a cell there.
        page.evaluate("() => window.jupyterapp.commands.execute('carbonlab:load')")
        page.wait_for_function(
            f"() => /measuring in this kernel/.test(document.querySelector('{SIDEBAR}').innerText)",
            timeout=60_000,
        )
        harness.run_cell(page, 0)
        page.wait_for_selector(f'{SIDEBAR} [data-cell-id="a"]', timeout=60_000)
        harness.screenshot(page, "notebook7-panel")  # .ci/artifacts/notebook7-panel.png
    finally:
        page.close()


def test_view_menu_right_sidebar_opens_the_panel(nb7: harness.Lab, browser: Any):
    # What README tells Notebook 7 users (no status bar there, no icon on the right panel):
    # View › Right Sidebar lists the panel, by its caption, and opens it.
    page = _open(nb7, browser, "menu.ipynb", [("a", "1")])
    try:
        assert page.query_selector("#jp-main-statusbar") is None or not page.is_visible(
            "#jp-main-statusbar"
        )
        page.click(".lm-MenuBar-item:has-text('View')")
        page.locator(".lm-Menu-item:has-text('Right Sidebar')").last.hover()
        item = page.locator(
            '.lm-Menu-item[data-command="application:toggle-panel"]:has-text("carbonlab")'
        ).last
        item.wait_for(state="visible", timeout=10_000)
        label = item.inner_text().strip()
        assert label == "Show Energy and CO2e of cells (carbonlab)", label
        harness.screenshot(page, "notebook7-view-right-sidebar")
        item.click()
        page.wait_for_selector(SIDEBAR, state="visible", timeout=15_000)
    finally:
        page.close()
