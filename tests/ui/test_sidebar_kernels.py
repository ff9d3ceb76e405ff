"""What the sidebar says when it cannot measure: a kernel in another language, and a Python
kernel where carbonlab cannot be imported."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ui import harness

pytestmark = pytest.mark.ui

SIDEBAR = "#carbonlab-sidebar"

# Makes `import carbonlab` fail in this kernel as it does where carbonlab is not installed.
HIDE_CARBONLAB = """\
import sys

class HideCarbonlab:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "carbonlab":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, HideCarbonlab())
for m in [m for m in sys.modules if m.split(".")[0] == "carbonlab"]:
    del sys.modules[m]
"""


def test_other_language_kernel_is_explained(tmp_path: Path, browser: Any) -> None:
    spec = {
        "argv": [sys.executable, "-m", "tests.ui.fake_kernel", "-f", "{connection_file}"],
        "display_name": "Fake language",
        "language": "fakelang",
    }
    with harness.start_lab(tmp_path, kernels={"fakelang": spec}) as lab:
        page = harness.new_page(browser)
        harness.write_notebook(
            lab.root_dir / "other.ipynb", [("c1", "1")], ("fakelang", "Fake language", "fakelang")
        )
        harness.open_notebook(page, lab, "other.ipynb")
        harness.open_sidebar(page)
        page.wait_for_function(
            "() => /Python \\(IPython\\) kernels only/.test("
            "document.getElementById('carbonlab-sidebar').innerText)",
            timeout=30_000,
        )
        text = page.inner_text(SIDEBAR)
        assert "Fake language" in text and "fakelang" in text, text
        assert page.locator(f"{SIDEBAR} .jp-carbonlab-load-button").count() == 0
        harness.screenshot(page, "sidebar-other-language", SIDEBAR)
        page.close()


def test_load_without_carbonlab_in_the_kernel(lab: harness.Lab, page: Any) -> None:
    harness.write_notebook(lab.root_dir / "missing.ipynb", [("c1", HIDE_CARBONLAB)])
    harness.open_notebook(page, lab, "missing.ipynb")
    harness.open_sidebar(page)
    harness.run_cell(page, 0)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.widgets[0].model.executionCount === 1"
    )
    page.click(f"{SIDEBAR} .jp-carbonlab-load-button")
    page.wait_for_selector(f"{SIDEBAR} [data-load-result]", timeout=30_000)
    assert page.get_attribute(f"{SIDEBAR} [data-load-result]", "data-load-result") == (
        "not-installed"
    )
    text = page.inner_text(SIDEBAR)
    assert "not installed in this kernel" in text and "ModuleNotFoundError" in text, text
    # Nothing was printed into the notebook: the load ran silently.
    outputs = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets[0].model.outputs.length"
    )
    assert outputs == 0
    harness.screenshot(page, "sidebar-not-installed", SIDEBAR)
