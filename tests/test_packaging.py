"""The wheel built from this checkout, as a user gets it: one version everywhere, the prebuilt
JupyterLab extension, licences, typing marker; and installed into a fresh virtual environment with
no Node on PATH and no checkout on sys.path, ``jupyter labextension list`` shows carbonlab enabled.

Slow (a wheel build, and a fresh venv that installs JupyterLab from the local package index: about
2 minutes on the 2-core dev machine), not a browser test. The browser check of that fresh venv
(sidebar, status bar, commands) was done by hand; see docs/sidebar.md.
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


@pytest.mark.fault("packaging")
def test_a_fresh_venv_without_node_or_checkout_lists_the_extension_enabled(
    wheel: Path, tmp_path: Path
):
    """pip install of the wheel with JupyterLab, with only the venv's bin on PATH (no node, no
    jlpm), from a directory outside the checkout, with no PYTHONPATH."""
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

    def run(*args: str, timeout: float = 600) -> str:
        r = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{args}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
        return r.stdout + r.stderr

    run(
        str(bindir / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        f"{wheel}[jupyter]",
        "jupyterlab",
    )
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
