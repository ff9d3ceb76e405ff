"""The wheel built from this checkout, as a user gets it: one version everywhere, the prebuilt
JupyterLab extension, licences, typing marker; and installed into a fresh virtual environment with
no Node on PATH and no checkout on sys.path, ``jupyter labextension list`` shows carbonlab enabled.

Slow (a wheel build, and a fresh venv that installs JupyterLab from the package index: about
2 minutes on the 2-core dev machine). One test (marked ``ui``) then starts that venv's own
``jupyter lab`` in Chromium and checks the sidebar, the status bar and the five commands, and
that a cell is measured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import unavailable

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_JSON = json.loads((ROOT / "labextension" / "package.json").read_text(encoding="utf-8"))
PREBUILT = ROOT / "carbonlab" / "labextension" / "static" / "style.js"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not PREBUILT.exists():
        unavailable("the labextension is not built here: run dev/labextension.sh first")
    for mod in ("hatchling", "hatch_jupyter_builder", "hatch_nodejs_version"):
        try:
            __import__(mod)
        except ImportError:
            unavailable(f"{mod} is not installed (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + [str(ROOT), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("carbonlab-*.whl")
    return whl


def _names(whl: Path) -> list[str]:
    with zipfile.ZipFile(whl) as z:
        return z.namelist()


def _read(whl: Path, name: str) -> str:
    with zipfile.ZipFile(whl) as z:
        return z.read(name).decode("utf-8")


def test_one_version_in_the_wheel_the_package_and_package_json(wheel: Path):
    import carbonlab

    version = PACKAGE_JSON["version"]
    assert carbonlab.__version__ == version
    assert wheel.name.startswith(f"carbonlab-{version}-py3-none-any")
    ext = f"carbonlab-{version}.data/data/share/jupyter/labextensions/carbonlab"
    assert json.loads(_read(wheel, f"{ext}/package.json"))["version"] == version
    assert re.search(
        rf"""__version__ = .*['"]{re.escape(version)}['"]""", _read(wheel, "carbonlab/_version.py")
    )
    meta = _read(wheel, f"carbonlab-{version}.dist-info/METADATA")
    assert re.search(rf"^Version: {re.escape(version)}$", meta, re.M)


def test_the_prebuilt_extension_schemas_and_install_json_are_in_the_wheel(wheel: Path):
    names = _names(wheel)
    ext = f"carbonlab-{PACKAGE_JSON['version']}.data/data/share/jupyter/labextensions/carbonlab"
    assert f"{ext}/schemas/carbonlab/sidebar.json" in names
    schema = json.loads(_read(wheel, f"{ext}/schemas/carbonlab/sidebar.json"))
    assert "showStatusBar" in schema["properties"] and "jupyter.lab.setting-icon" in schema
    assert f"{ext}/static/style.js" in names
    assert any(re.match(rf"{re.escape(ext)}/static/remoteEntry\.[0-9a-f]+\.js$", n) for n in names)
    install = json.loads(_read(wheel, f"{ext}/install.json"))
    assert install["packageName"] == "carbonlab"


def test_licences_expression_py_typed_and_the_pytest_extra(wheel: Path):
    names = _names(wheel)
    version = PACKAGE_JSON["version"]
    lic = f"carbonlab-{version}.dist-info/licenses"
    for f in (
        "LICENSE",
        "carbonlab/data/LICENSE-CC-BY-4.0.txt",
        "carbonlab/data/LICENSE-ODbL-1.0.txt",
        "carbonlab/data/LICENSE-MPL-2.0.txt",
        "carbonlab/data/LICENSE-Apache-2.0.txt",
    ):
        assert f"{lic}/{f}" in names, f
    meta = _read(wheel, f"carbonlab-{version}.dist-info/METADATA")
    expr = re.search(r"^License-Expression: (.+)$", meta, re.M)
    assert expr is not None
    for spdx in ("CC-BY-4.0", "ODbL-1.0", "MPL-2.0", "Apache-2.0"):
        assert spdx in expr.group(1)
    assert "carbonlab/py.typed" in names
    assert "Requires-Dist: pluggy>=1.2; extra == 'pytest'" in meta
    assert "Requires-Dist: pytest>=7.4; extra == 'pytest'" in meta
    entry = _read(wheel, f"carbonlab-{version}.dist-info/entry_points.txt")
    assert "carbon = pytest_carbon.plugin" in entry


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_project_urls_name_the_five_places_a_user_looks():
    # Cheap (no wheel): what PyPI shows beside the project, from pyproject.toml.
    urls = _pyproject()["project"]["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    for name, url in urls.items():
        assert url.startswith("https://"), (name, url)
    assert urls["Changelog"].endswith("/CHANGELOG.md")
    assert (ROOT / "CHANGELOG.md").is_file()


def test_classifiers_say_pythons_ipython_jupyterlab_4_prebuilt_and_typed():
    project = _pyproject()["project"]
    classifiers = set(project["classifiers"])
    pythons = {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)}
    assert pythons <= classifiers
    assert {
        "Framework :: IPython",
        "Framework :: Jupyter :: JupyterLab :: 4",
        "Framework :: Jupyter :: JupyterLab :: Extensions :: Prebuilt",
        "Typing :: Typed",
    } <= classifiers
    # The oldest Python classified is the one required.
    assert project["requires-python"] == ">=3.10"
    assert (ROOT / "carbonlab" / "py.typed").is_file()


@dataclass
class FreshVenv:
    """The wheel with JupyterLab, pip-installed into a new virtual environment."""

    env_dir: Path
    bindir: Path
    env: dict[str, str]
    work: Path

    def run(self, *args: str, timeout: float = 600) -> str:
        r = subprocess.run(
            args, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert r.returncode == 0, f"{args}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
        return r.stdout + r.stderr


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    """pip install of the wheel with JupyterLab, with only the venv's bin on PATH (no node, no
    jlpm), from a directory outside the checkout, with no PYTHONPATH. Shared by the tests below
    (the install is the slow part: about 2 minutes)."""
    tmp_path = tmp_path_factory.mktemp("fresh-venv")
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / "bin"
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("PIP_") or k in ("HOME", "LANG", "SSL_CERT_FILE", "TMPDIR")
    }
    env["PATH"] = str(bindir)
    assert shutil.which("node", path=env["PATH"]) is None
    work = tmp_path / "elsewhere"
    work.mkdir()
    fresh = FreshVenv(env_dir, bindir, env, work)
    fresh.run(
        str(bindir / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        f"{wheel}[jupyter]",
        "jupyterlab",
    )
    return fresh


@pytest.mark.fault("packaging")
def test_a_fresh_venv_without_node_or_checkout_lists_the_extension_enabled(fresh_venv: FreshVenv):
    run, bindir, env_dir = fresh_venv.run, fresh_venv.bindir, fresh_venv.env_dir
    where = run(str(bindir / "python"), "-c", "import carbonlab; print(carbonlab.__file__)")
    assert str(env_dir) in where and str(ROOT) not in where
    listed = re.sub(r"\x1b\[[0-9;]*m", "", run(str(bindir / "jupyter"), "labextension", "list"))
    version = PACKAGE_JSON["version"]
    assert re.search(
        rf"carbonlab v{re.escape(version)} enabled OK \(python, carbonlab\)", listed
    ), listed
    # The kernel side loads from the installed wheel too.
    out = run(
        str(bindir / "python"),
        "-c",
        "from IPython.core.interactiveshell import InteractiveShell as S; s = S.instance(); "
        "s.run_line_magic('load_ext', 'carbonlab'); s.run_line_magic('carbon', 'zone FR'); "
        "s.run_line_magic('carbon', 'zone')",
    )
    assert "carbonlab: zone FR (%carbon zone)" in out, out


COMMANDS = (
    "carbonlab:load",
    "carbonlab:clear",
    "carbonlab:toggle-sidebar",
    "carbonlab:copy-summary",
    "carbonlab:set-zone",
)


@pytest.mark.ui
def test_the_fresh_venv_jupyter_lab_has_the_sidebar_status_bar_and_commands(
    fresh_venv: FreshVenv, tmp_path: Path
):
    """That venv's own ``jupyter lab`` (no Node, no checkout) in Chromium: the carbonlab plugin is
    active, its panel is in the right sidebar, its status-bar item renders, its five commands
    exist; and loading it in the kernel and running a cell gives a row and a total."""
    from tests.ui import harness

    if harness.chromium_path() is None:
        unavailable("no Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        unavailable("python playwright is not installed (pip install -e '.[dev]')")
    python = fresh_venv.bindir / "python"
    with (
        harness.start_lab(tmp_path / "root", python=python) as lab,
        harness.chromium() as browser,
    ):
        page = harness.new_page(browser)
        harness.write_notebook(lab.root_dir / "fresh.ipynb", [("a", "x = sum(range(10**6))")])
        harness.open_notebook(page, lab, "fresh.ipynb")
        assert harness.plugin_active(page, "carbonlab:sidebar")
        # the server, and so the labextension it serves, is the fresh venv's, not this checkout's
        log = lab.log()
        assert f"JupyterLab application directory is {fresh_venv.env_dir}" in log, log[-2000:]
        assert str(ROOT) not in log, log[-2000:]
        page.wait_for_selector(f"#{harness.SIDEBAR_ID}", state="attached")
        item = page.wait_for_selector(
            "#jp-main-statusbar .jp-carbonlab-status-text", state="visible"
        )
        assert item is not None and item.inner_text().strip() == "carbonlab"
        missing = page.evaluate(
            "ids => ids.filter(id => !window.jupyterapp.commands.hasCommand(id))", list(COMMANDS)
        )
        assert missing == [], missing
        page.evaluate("() => window.jupyterapp.commands.execute('carbonlab:load')")
        harness.open_sidebar(page)
        page.wait_for_function(
            f"() => /measuring in this kernel/.test("
            f"document.getElementById('{harness.SIDEBAR_ID}').innerText)",
            timeout=60_000,
        )
        harness.run_cell(page, 0)
        page.wait_for_selector(f'#{harness.SIDEBAR_ID} [data-cell-id="a"]', timeout=60_000)
        page.wait_for_function(
            "() => /^Σ /.test(document.querySelector('.jp-carbonlab-status-text').innerText)",
            timeout=30_000,
        )
        page.wait_for_selector(
            f'#{harness.SIDEBAR_ID} [data-cell-id="a"][data-status="done"]', timeout=30_000
        )
        harness.screenshot(page, "fresh-venv-lab")
        page.close()
