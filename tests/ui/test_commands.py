"""carbonlab's commands through the command palette (Ctrl+Shift+C), and the status-bar item.

Each command is run as a user would (palette, typed label, Enter; the zone dialog typed into) and
its effect checked: load → the kernel measures the next cell; clear → the rows are gone; toggle →
the panel shown and hidden; copy → the clipboard holds the totals; set zone → the next cell's
summary uses that zone; a malformed zone → an error notification and nothing sent to the kernel.
The status bar: "carbonlab" idle, "⚡ … W · … J" while a cell runs, "Σ …" after, "carbonlab" again
after Clear; on the kernel status's line; a click opens the sidebar; showStatusBar=false hides it,
and changing it live shows and hides it. Screenshots of the status bar in light and dark go to
.ci/artifacts/ (and docs/img/ with UPDATE_DOC_IMAGES=1).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.ui import harness

pytestmark = pytest.mark.ui

SIDEBAR = f"#{harness.SIDEBAR_ID}"
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 4:\n    sum(range(10000))"
CELLS = [
    ("quick", "x = sum(range(100000))"),
    ("zoned", "%%carbon --label zoned\nsum(range(200000))"),
    ("busy", BUSY),
]
ROWS_JS = f"() => document.querySelectorAll('{SIDEBAR} [data-cell-id]').length"


def palette(page: Any, label: str) -> None:
    """Open the command palette with its shortcut, type ``label``, run the first match."""
    page.click(".jp-Notebook")  # focus inside the app, for the shortcut
    page.keyboard.press("Control+Shift+C")
    box = page.wait_for_selector(".lm-CommandPalette-input", state="visible")
    box.fill(label)
    item = page.wait_for_selector(
        f".lm-CommandPalette-item:has-text({label!r})", state="visible", timeout=10_000
    )
    assert item is not None
    page.keyboard.press("Enter")


def toast(page: Any, kind: str, pattern: str, timeout: float = 30.0) -> str:
    """Wait for a notification of ``kind`` (success, error, info) whose text matches."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return _toast(page, kind, pattern, timeout)
    except PlaywrightTimeout:
        seen = page.evaluate(
            "() => [...document.querySelectorAll('.Toastify__toast')]"
            ".map(t => t.className + ': ' + t.innerText)"
        )
        raise AssertionError(
            f"no {kind} notification matching {pattern!r}; shown: {seen}"
        ) from None


def _toast(page: Any, kind: str, pattern: str, timeout: float) -> str:
    handle = page.wait_for_function(
        """([kind, pattern]) => {
          const re = new RegExp(pattern);
          for (const t of document.querySelectorAll('.Toastify__toast--' + kind)) {
            if (re.test(t.innerText)) return t.innerText;
          }
          return null;
        }""",
        arg=[kind, pattern],
        timeout=timeout * 1000,
    )
    return handle.json_value()


def dismiss_toasts(page: Any) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:dismiss-notification')")


def sidebar_visible(page: Any) -> bool:
    return bool(
        page.evaluate(
            f"() => {{ const s = document.querySelector('{SIDEBAR}'); "
            "return !!s && s.offsetParent !== null; }"
        )
    )


def run_and_wait(page: Any, index: int) -> None:
    harness.run_cell(page, index)
    page.wait_for_function(
        """i => {
          const c = window.jupyterapp.shell.currentWidget.content.widgets[i];
          return c.model.executionCount !== null && c.model.executionState === 'idle';
        }""",
        arg=index,
        timeout=60_000,
    )


def output_text(page: Any, index: int) -> str:
    return page.evaluate(
        """i => {
          const a = window.jupyterapp.shell.currentWidget.content.widgets[i].node
            .querySelector('.jp-OutputArea');
          return a ? a.innerText : '';
        }""",
        index,
    )


def status_text(page: Any) -> str:
    return page.inner_text(".jp-carbonlab-status-text")


def status_centres(page: Any) -> tuple[float, float]:
    """The vertical centres (px) of carbonlab's status text and of the kernel status text
    (JupyterLab's "Python 3 (ipykernel) | Idle" TextItem) in the status bar."""
    got = page.evaluate("""() => {
      const bar = document.querySelector('#jp-main-statusbar');
      const ours = bar.querySelector('.jp-carbonlab-status-text');
      const kernel = [...bar.querySelectorAll('.jp-StatusBar-TextItem')]
        .find(e => e !== ours && e.innerText.includes('Python 3'));
      if (!ours || !kernel) return null;
      const mid = e => { const r = e.getBoundingClientRect(); return r.top + r.height / 2; };
      return [mid(ours), mid(kernel)];
    }""")
    assert got is not None, "no carbonlab or kernel status text in the status bar"
    return float(got[0]), float(got[1])


def assert_status_aligned(page: Any) -> None:
    """carbonlab's text sits on the kernel status's line (it once sat 3 px higher: no 24px
    line height), and its widget does not carry the sidebar's run-status class."""
    ours, kernel = status_centres(page)
    assert abs(ours - kernel) <= 1, f"carbonlab status centre {ours} px, kernel status {kernel} px"
    assert page.query_selector("#jp-main-statusbar .jp-carbonlab-status") is None
    assert page.query_selector("#jp-main-statusbar .jp-carbonlab-statusbar") is not None


def shoot_status(page: Any, theme: str) -> None:
    """The status bar's picture, in .ci/artifacts/; into docs/img/ only when asked
    (UPDATE_DOC_IMAGES=1), so a test run never changes tracked files."""
    bar = page.query_selector("#jp-main-statusbar")
    assert bar is not None
    path = harness.screenshot(page, f"statusbar-{theme}", "#jp-main-statusbar")
    if os.environ.get("UPDATE_DOC_IMAGES") == "1":
        shutil.copy(path, harness.ROOT / "docs" / "img" / f"statusbar-{theme}.png")


def zone_by_dialog(page: Any, text: str) -> None:
    """Set carbonlab Grid Zone from the palette, typing ``text`` into its dialog."""
    dismiss_toasts(page)
    palette(page, "Set carbonlab Grid Zone")
    page.wait_for_selector(".jp-Dialog input", state="visible").fill(text)
    page.keyboard.press("Enter")


def test_every_command_from_the_palette(lab: harness.Lab, page: Any) -> None:
    harness.write_notebook(lab.root_dir / "commands.ipynb", CELLS)
    harness.open_notebook(page, lab, "commands.ipynb")
    page.evaluate("""() => {
      window.__copied = [];
      window.addEventListener('copy', e => window.__copied.push(e.clipboardData.getData('text')));
    }""")
    assert status_text(page) == "carbonlab"  # idle: not loaded yet

    # toggle: shown, then hidden
    palette(page, "Show carbonlab Sidebar")
    page.wait_for_selector(SIDEBAR, state="visible")
    assert sidebar_visible(page)
    palette(page, "Show carbonlab Sidebar")
    page.wait_for_function(
        f"() => {{ const s = document.querySelector('{SIDEBAR}'); "
        "return !s || s.offsetParent === null; }"
    )
    palette(page, "Show carbonlab Sidebar")
    page.wait_for_selector(SIDEBAR, state="visible")

    # load: the kernel measures the next cell
    palette(page, "Load carbonlab in the Kernel")
    toast(page, "success", "carbonlab is measuring every cell")
    run_and_wait(page, 0)
    page.wait_for_selector(f'{SIDEBAR} [data-cell-id="quick"]', timeout=30_000)

    # set zone by typing into the dialog, then the next cell's summary uses it
    zone_by_dialog(page, "FR")
    said = toast(page, "success", "zone FR")
    assert "zone FR for this session" in said, said
    run_and_wait(page, 1)
    assert "grid: France" in output_text(page, 1), output_text(page, 1)

    # set zone with the command's argument
    page.evaluate("() => window.jupyterapp.commands.execute('carbonlab:set-zone', {zone: 'DE'})")
    toast(page, "success", "zone DE")
    run_and_wait(page, 1)
    assert "grid: Germany" in output_text(page, 1)

    # a malformed zone: an error notification, nothing sent (the zone stays DE)
    zone_by_dialog(page, "FR; import os")
    said = toast(page, "error", "is not a zone code")
    assert "FR; import os" in said
    # a well-formed zone the kernel does not know: the kernel's one-line UsageError
    page.evaluate("() => window.jupyterapp.commands.execute('carbonlab:set-zone', {zone: 'XX'})")
    said = toast(page, "error", "unknown zone")
    assert "%carbon zone XX: unknown zone; `carbonlab zones XX` lists" in said, said
    run_and_wait(page, 1)
    assert "grid: Germany" in output_text(page, 1)

    # copy: the clipboard holds the notebook's totals
    dismiss_toasts(page)
    palette(page, "Copy carbonlab Summary of the Notebook")
    toast(page, "info", "summary copied")
    copied = page.evaluate("() => window.__copied")
    assert copied, "no copy event"
    text = copied[-1]
    assert "commands.ipynb" in text and re.search(r"\d+(\.\d+)? (m?J|kJ|Wh)", text), text
    assert "CO2e" in text, text

    # clear: the rows are gone
    assert page.evaluate(ROWS_JS) >= 2
    palette(page, "Clear carbonlab Sidebar")
    page.wait_for_function(f"{ROWS_JS} === 0", timeout=10_000)
    # ... and the status bar is back to its idle text by then, not the old total (it once
    # waited out a 500 ms throttle, and the picture after Clear still showed "Σ …")
    idle = page.evaluate(
        "() => { const s = document.querySelector('.jp-carbonlab-status-text'); "
        "return [s.innerText.trim(), s.dataset.state]; }"
    )
    assert idle == ["carbonlab", "idle"], idle
    harness.screenshot(page, "commands-after-clear")


def test_status_bar_idle_live_total_click_and_themes(lab: harness.Lab, page: Any) -> None:
    harness.write_notebook(lab.root_dir / "status.ipynb", [("busy", BUSY), ("q", "1 + 1")])
    harness.open_notebook(page, lab, "status.ipynb")
    assert status_text(page) == "carbonlab"
    assert_status_aligned(page)
    palette(page, "Load carbonlab in the Kernel")
    toast(page, "success", "carbonlab is measuring every cell")
    harness.run_cell(page, 0)
    page.wait_for_function(
        "() => /^⚡ .+ W · .+J$/.test("
        "document.querySelector('.jp-carbonlab-status-text').innerText.trim())",
        timeout=30_000,
    )
    assert page.get_attribute(".jp-carbonlab-status-text", "data-state") == "running"
    harness.set_theme(page, "light")
    assert_status_aligned(page)
    shoot_status(page, "running-light")
    page.wait_for_function(
        "() => /^Σ /.test(document.querySelector('.jp-carbonlab-status-text').innerText)",
        timeout=60_000,
    )
    assert re.match(r"^Σ \S+ \S*J · \S+ \S*gCO2e$", status_text(page)), status_text(page)
    shoot_status(page, "light")
    assert_status_aligned(page)
    harness.set_theme(page, "dark")
    assert_status_aligned(page)
    shoot_status(page, "dark")
    harness.set_theme(page, "light")
    # a click opens the sidebar
    if sidebar_visible(page):
        page.evaluate("() => window.jupyterapp.commands.execute('carbonlab:toggle-sidebar')")
        page.wait_for_function(
            f"() => {{ const s = document.querySelector('{SIDEBAR}'); "
            "return !s || s.offsetParent === null; }"
        )
    page.click(".jp-carbonlab-status-text")
    page.wait_for_selector(SIDEBAR, state="visible")


def set_setting(page: Any, key: str, value: Any) -> None:
    """Change one carbonlab setting live, through JupyterLab's setting registry (as the Settings
    editor does; the plugin hears it through its settings' ``changed`` signal)."""
    page.evaluate(
        """async ([key, value]) => {
          const p = window.jupyterapp.pluginRegistry._plugins
            .get('@jupyterlab/apputils-extension:settings');
          await p.service.set('carbonlab:sidebar', key, value);
        }""",
        [key, value],
    )


def status_item_visible(page: Any) -> bool:
    return bool(
        page.evaluate(
            "() => { const e = document.querySelector('#jp-main-statusbar .jp-carbonlab-status-text');"
            " return !!e && e.offsetParent !== null && e.getBoundingClientRect().width > 0; }"
        )
    )


def test_show_status_bar_false_hides_the_item(tmp_path: Path, browser: Any) -> None:
    settings = {"carbonlab/sidebar.jupyterlab-settings": {"showStatusBar": False}}
    with harness.start_lab(tmp_path / "root", settings=settings) as lab:
        harness.write_notebook(lab.root_dir / "hidden.ipynb", [("a", "1")])
        page = harness.new_page(browser)
        try:
            harness.open_notebook(page, lab, "hidden.ipynb")
            # the control: the plugin is active and the status bar is there, with its items
            assert harness.plugin_active(page, "carbonlab:sidebar")
            page.wait_for_selector("#jp-main-statusbar .jp-StatusBar-TextItem", state="visible")
            page.wait_for_selector(SIDEBAR, state="attached")
            assert not status_item_visible(page)
            # flipped live: shown when true, hidden again when false, without a reload
            set_setting(page, "showStatusBar", True)
            page.wait_for_function(
                "() => { const e = document.querySelector("
                "'#jp-main-statusbar .jp-carbonlab-status-text');"
                " return !!e && e.offsetParent !== null && e.innerText.trim() === 'carbonlab'; }",
                timeout=10_000,
            )
            assert status_item_visible(page)
            set_setting(page, "showStatusBar", False)
            page.wait_for_function(
                "() => { const e = document.querySelector("
                "'#jp-main-statusbar .jp-carbonlab-status-text');"
                " return !e || e.offsetParent === null; }",
                timeout=10_000,
            )
            assert not status_item_visible(page)
        finally:
            page.close()


def open_main_menu(page: Any, label: str) -> Any:
    """Click ``label`` in the menu bar; returns the open menu's locator."""
    page.keyboard.press("Escape")
    page.click(f".lm-MenuBar-item:has-text({label!r})")
    menu = page.locator(".lm-Menu").last
    menu.wait_for(state="visible")
    return menu


def menu_commands(menu: Any) -> list[str]:
    return [
        c
        for c in menu.locator(".lm-Menu-item[data-command]").evaluate_all(
            "items => items.filter(i => i.offsetParent !== null).map(i => i.dataset.command)"
        )
        if c.startswith("carbonlab:")
    ]


def test_menus_context_menu_and_toolbar_button(lab: harness.Lab, page: Any) -> None:
    harness.write_notebook(lab.root_dir / "menus.ipynb", [("a", "1 + 1")])
    harness.open_notebook(page, lab, "menus.ipynb")

    # Main menus: Kernel (load, set zone), View (toggle the panel), Edit (copy the summary).
    assert menu_commands(open_main_menu(page, "Kernel")) == ["carbonlab:load", "carbonlab:set-zone"]
    assert menu_commands(open_main_menu(page, "Edit")) == ["carbonlab:copy-summary"]
    view = open_main_menu(page, "View")
    assert menu_commands(view) == ["carbonlab:toggle-sidebar"]
    # ... and the View item works: it shows the panel
    was = sidebar_visible(page)
    view.locator('.lm-Menu-item[data-command="carbonlab:toggle-sidebar"]').click()
    page.wait_for_function(
        f"was => {{ const s = document.querySelector('{SIDEBAR}'); "
        "return (!!s && s.offsetParent !== null) !== was; }",
        arg=was,
    )
    if not sidebar_visible(page):
        harness.open_sidebar(page)

    # The panel's context menu offers copy and clear.
    page.click(f"{SIDEBAR}", button="right")
    context = page.locator(".lm-Menu.lm-ContextMenu, .lm-Menu").last
    context.wait_for(state="visible")
    assert set(menu_commands(context)) == {"carbonlab:copy-summary", "carbonlab:clear"}
    harness.screenshot(page, "commands-context-menu")
    page.keyboard.press("Escape")

    # The notebook toolbar's leaf button hides the panel, and shows it again.
    leaf = page.locator(
        '.jp-NotebookPanel-toolbar [data-jp-item-name="carbonlab"] button, '
        '.jp-NotebookPanel-toolbar [data-jp-item-name="carbonlab"]'
    ).first
    assert leaf.is_visible()
    leaf.click()
    page.wait_for_function(
        f"() => {{ const s = document.querySelector('{SIDEBAR}'); "
        "return !s || s.offsetParent === null; }"
    )
    leaf.click()
    page.wait_for_selector(SIDEBAR, state="visible")
    harness.screenshot(page, "commands-toolbar-leaf")
