"""Browser test helpers: JupyterLab from this venv, driven by Debian's Chromium through Playwright.

No browser is downloaded (never run ``playwright install``): the system Chromium is used, with the
flags it needs as root in a container. JupyterLab runs as Galata configures it (no token, no XSRF,
``window.jupyterapp`` exposed) on 127.0.0.1 and a free port, with throwaway settings, workspaces
and root directories, so a test neither reads nor changes the user's JupyterLab state.

Example (what ``test_sidebar_protocol.py`` does)::

    with start_lab(tmp_path) as lab, chromium() as browser:
        page = new_page(browser)
        write_notebook(lab.root_dir / "t.ipynb", [("cell-1", "1 + 1")])
        open_notebook(page, lab, "t.ipynb")
        open_sidebar(page)
        run_cell(page, 0)
        screenshot(page, "sidebar-light")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".ci" / "artifacts"
SIDEBAR_ID = "carbonlab-sidebar"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


def chromium_path() -> str | None:
    """The system Chromium (``CHROMIUM_PATH`` or /usr/bin/chromium), or None when absent."""
    for candidate in (
        os.environ.get("CHROMIUM_PATH"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    root_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    state_dir: Path
    _log: Any = field(repr=False, default=None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the server (and its kernels): SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_CONFIG = """\
from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = {port}
c.ServerApp.port_retries = 0
c.ServerApp.root_dir = {root_dir!r}
c.ServerApp.allow_root = True
c.LabApp.workspaces_dir = {workspaces!r}
"""

# Settings the tests start from: no news toast over the screenshots, no update check (no network).
_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def start_lab(
    root_dir: Path,
    *,
    timeout: float = 90.0,
    settings: dict[str, dict[str, Any]] | None = None,
    extra_args: Sequence[str] = (),
    kernels: dict[str, dict[str, Any]] | None = None,
    disabled_extensions: Sequence[str] = (),
    python: str | os.PathLike[str] | None = None,
) -> Lab:
    """Start ``jupyter lab`` from this interpreter's environment, serving ``root_dir``.

    ``python`` runs it from another environment instead (e.g. a fresh venv a wheel was installed
    into): that interpreter's ``-m jupyterlab``, with only its ``bin`` on ``PATH`` (no Node, no
    jlpm) and no ``PYTHONPATH``, so nothing of this checkout or its venv is used.

    ``settings`` maps ``<plugin path>.jupyterlab-settings`` to JSON, written into a fresh
    settings directory (e.g. ``{"carbonlab/sidebar.jupyterlab-settings": {"energyUnit": "J"}}``).
    ``kernels`` maps kernelspec names to ``kernel.json`` contents, added to the server's kernels.
    ``disabled_extensions`` names labextensions (e.g. ``"carbonlab"``) or plugin ids to disable, as
    ``jupyter labextension disable`` would, but in a page config of this server only (a
    ``labconfig/page_config.json`` in a config directory added through ``JUPYTER_CONFIG_PATH``).
    Returns once ``/lab`` answers; raises with the server log when it does not.
    """
    root_dir = Path(root_dir).resolve()
    root_dir.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="carbonlab-ui-"))
    port = free_port()
    (state / "settings").mkdir()
    for rel, value in {**_SETTINGS, **(settings or {})}.items():
        f = state / "settings" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    config = state / "jupyter_server_test_config.py"
    config.write_text(
        _CONFIG.format(port=port, root_dir=str(root_dir), workspaces=str(state / "workspaces"))
    )
    env = dict(os.environ)
    interpreter = str(python) if python is not None else sys.executable
    bindir = str(Path(interpreter).parent)
    if python is not None:
        env["PATH"] = bindir
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
    else:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["JUPYTERLAB_SETTINGS_DIR"] = str(state / "settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(state / "workspaces")
    env["IPYTHONDIR"] = str(state / "ipython")  # no user startup files in the kernel
    # Kernels measure into a throwaway history, not the user's.
    env.setdefault("CARBONLAB_HISTORY", str(state / "history.sqlite"))
    env.pop("JUPYTER_TOKEN", None)
    if disabled_extensions:
        labconfig = state / "config" / "labconfig"
        labconfig.mkdir(parents=True)
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {name: True for name in disabled_extensions}})
        )
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            p for p in (str(state / "config"), env.get("JUPYTER_CONFIG_PATH", "")) if p
        )
    if kernels:
        for kname, spec in kernels.items():
            kdir = state / "jupyter" / "kernels" / kname
            kdir.mkdir(parents=True)
            (kdir / "kernel.json").write_text(json.dumps(spec))
        env["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (str(state / "jupyter"), env.get("JUPYTER_PATH", "")) if p
        )
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    log_path = state / "jupyter-lab.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [interpreter, "-m", "jupyterlab", "--config", str(config), "--no-browser", *extra_args],
        cwd=str(root_dir),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    lab = Lab(f"http://127.0.0.1:{port}", root_dir, proc, log_path, state, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log_path.read_text(errors="replace")
            lab.stop()
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{text[-4000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/lab", timeout=2) as r:
                if r.status == 200:
                    return lab
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    text = lab.log()
    lab.stop()
    raise RuntimeError(
        f"jupyter lab did not answer on {lab.url} in {timeout:.0f} s:\n{text[-4000:]}"
    )


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[Any]:
    """A Playwright Chromium browser on the system Chromium; closed on exit."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium: apt-get install -y chromium (or set CHROMIUM_PATH)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=headless, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, width: int = 1400, height: int = 860) -> Any:
    """A page with its console errors collected in ``page.console_errors``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.console_errors = errors
    return page


def write_notebook(
    path: Path,
    cells: Sequence[tuple[str, str]],
    kernel: tuple[str, str, str] = ("python3", "Python 3", "python"),
) -> Path:
    """Write an nbformat 4.5 notebook of code cells ``(cell_id, source)`` for ``kernel``
    (kernelspec name, display name, language)."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": cell_id,
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for cell_id, source in cells
        ],
        "metadata": {
            "kernelspec": {"display_name": kernel[1], "language": kernel[2], "name": kernel[0]},
            "language_info": {"name": kernel[2]},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = Path(path)
    path.write_text(json.dumps(nb, indent=1))
    return path


def wait_app(page: Any, timeout: float = 60.0) -> None:
    """Wait until JupyterLab has started and restored its layout. A page that navigates meanwhile
    (a reload still settling) destroys the context an evaluation ran in: wait again, bounded."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    while True:
        try:
            page.wait_for_function(
                "window.jupyterapp !== undefined && window.jupyterapp.started !== undefined",
                timeout=max(1.0, deadline - time.monotonic()) * 1000,
            )
            page.evaluate("window.jupyterapp.started")
            page.evaluate("window.jupyterapp.restored")
            return
        except PlaywrightError as e:
            navigating = "garbage collected" in str(e) or "context was destroyed" in str(e)
            if not navigating or time.monotonic() > deadline:
                raise
            page.wait_for_load_state("load")


def open_notebook(page: Any, lab: Lab, name: str, timeout: float = 60.0) -> None:
    """Open ``name`` (relative to the lab's root) alone, in a fresh workspace (``?reset``: no
    notebook restored from an earlier page), and wait for its kernel to be idle."""
    page.goto(f"{lab.url}/lab/tree/{name}?reset")
    wait_app(page, timeout)
    page.wait_for_function(
        """name => {
          const w = window.jupyterapp.shell.currentWidget;
          const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
          return !!(k && k.status === 'idle' && w.context.path === name && w.content.widgets.length > 0);
        }""",
        arg=name,
        timeout=timeout * 1000,
    )


def open_sidebar(page: Any) -> None:
    page.evaluate(f"window.jupyterapp.shell.activateById({SIDEBAR_ID!r})")
    page.wait_for_selector(f"#{SIDEBAR_ID}", state="visible")


def set_theme(page: Any, theme: str) -> None:
    """Switch to ``light`` or ``dark`` and wait until the theme's CSS applied."""
    name = THEMES[theme]
    page.evaluate(
        "name => window.jupyterapp.commands.execute('apputils:change-theme', {theme: name})", name
    )
    page.wait_for_function(
        "light => document.body.dataset.jpThemeLight === String(light)",
        arg=theme == "light",
        timeout=30_000,
    )
    page.wait_for_timeout(300)


def run_cell(page: Any, index: int) -> None:
    """Select the cell at ``index`` of the current notebook and start running it (without moving
    on). Returns at once: the command's promise, which resolves when the cell is done, is not
    awaited."""
    page.evaluate(
        """index => {
          const nb = window.jupyterapp.shell.currentWidget.content;
          nb.activeCellIndex = index;
          void window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )


def plugin_active(page: Any, plugin_id: str) -> bool:
    """Whether JupyterLab loaded and activated ``plugin_id`` (False when it is disabled)."""
    return bool(
        page.evaluate(
            "id => window.jupyterapp.hasPlugin(id) && window.jupyterapp.isPluginActivated(id)",
            plugin_id,
        )
    )


def cell_output_html(page: Any, index: int) -> str:
    """The rendered output area of the cell at ``index`` of the current notebook, as HTML."""
    return page.evaluate(
        """index => {
          const nb = window.jupyterapp.shell.currentWidget.content;
          const area = nb.widgets[index].node.querySelector('.jp-OutputArea');
          return area ? area.innerHTML : '';
        }""",
        index,
    )


def cell_execution_state(page: Any, index: int) -> str | None:
    """'running' or 'idle' per JupyterLab's own cell model, for cross-checking the sidebar."""
    return page.evaluate(
        """index => {
          const nb = window.jupyterapp.shell.currentWidget.content;
          return nb.widgets[index].model.executionState;
        }""",
        index,
    )


def screenshot(page: Any, name: str, selector: str | None = None) -> Path:
    """Save a PNG under .ci/artifacts/ (the whole page, or one element)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    return path
