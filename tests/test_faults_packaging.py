"""Packaging metadata that fails silently (issue 13): every third-party import of carbonlab and
pytest_carbon is declared in pyproject.toml (in the dependencies, or in the extra its module belongs
to, with the environment marker it needs), and the bounds match what the code relies on."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.fault("packaging")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
OWN = {"carbonlab", "pytest_carbon"}
# Import name -> distribution name, where they differ.
DISTRIBUTION = {"IPython": "ipython", "pynvml": "nvidia-ml-py", "yaml": "pyyaml"}
# Modules whose imports may come from an extra (they are only imported when that extra's feature
# is used): the notebook side, carbonlab.history() (a pandas DataFrame), and the cluster engines
# (carbonlab.cluster serves both, importing each engine only when that engine is attached).
EXTRA_OF = {
    "carbonlab/jupyter/": ("jupyter",),
    "carbonlab/store.py": ("jupyter",),
    "carbonlab/dask.py": ("dask",),
    "carbonlab/ray.py": ("ray",),
    "carbonlab/cluster.py": ("dask", "ray"),
}
# Provided by the host that loads the module: pytest loads pytest_carbon (the pytest11 entry point),
# and brings pluggy with it.
HOST = {("pytest_carbon/", "pytest"), ("pytest_carbon/", "pluggy")}


def third_party_imports() -> set[tuple[str, str]]:
    """(file, top-level import name) of every absolute import of a module outside the standard
    library and our packages, wherever it is (module level, in a function, under try or if)."""
    out: set[tuple[str, str]] = set()
    stdlib = set(sys.stdlib_module_names)
    for pkg in sorted(OWN):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in stdlib or top in OWN:
                        continue
                    out.add((rel, top))
    return out


def requirements(group: str | None) -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    reqs = [Requirement(r) for r in raw]
    return {r.name.lower(): r for r in reqs}


def extras_for(rel: str) -> tuple[str, ...]:
    for prefix, extras in EXTRA_OF.items():
        if rel == prefix or (prefix.endswith("/") and rel.startswith(prefix)):
            return extras
    return ()


IMPORTS = third_party_imports()


def test_the_scan_finds_the_imports_we_know_of():
    tops = {top for _, top in IMPORTS}
    assert {"psutil", "pynvml", "tomli", "comm", "altair", "pandas", "IPython"} <= tops


@pytest.mark.parametrize("rel, top", sorted(IMPORTS), ids=[f"{r}:{t}" for r, t in sorted(IMPORTS)])
def test_every_third_party_import_is_declared(rel, top):
    if any(rel.startswith(prefix) and top == name for prefix, name in HOST):
        return
    dist = DISTRIBUTION.get(top, top).lower()
    base = requirements(None)
    extras = extras_for(rel)
    found = base.get(dist) or next(
        (requirements(e)[dist] for e in extras if dist in requirements(e)), None
    )
    assert found is not None, (
        f"{rel} imports {top!r} but pyproject.toml declares no {dist!r} in dependencies"
        + (f" or the [{', '.join(extras)}] extras" if extras else "")
    )


def test_tomli_is_declared_for_the_pythons_that_import_it():
    # config.py imports tomli only below 3.11 (tomllib is in the standard library from 3.11).
    tomli = requirements(None).get("tomli")
    assert tomli is not None, "tomli is imported on Python 3.10 but not declared"
    assert tomli.marker is not None
    assert tomli.marker.evaluate({"python_version": "3.10"})
    assert not tomli.marker.evaluate({"python_version": "3.11"})
    assert tomli.specifier.contains("1.1") or tomli.specifier.contains("2.0")
    assert Version("3.10") in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_ipykernel_is_one_that_wires_the_comm_package():
    jupyter = requirements("jupyter")
    assert "comm" in jupyter, "carbonlab.jupyter imports comm but does not declare it"
    lowest = min(
        (Version(s.version) for s in jupyter["ipykernel"].specifier if s.operator in (">=", "==")),
        default=Version("0"),
    )
    # 6.18.0 extracted the comm package; before it comm.create_comm sends to no frontend.
    assert lowest >= Version("6.18.3"), f"ipykernel>={lowest} predates kernels that use comm"


def test_altair_is_bounded_to_the_vega_lite_version_the_report_is_sent_as():
    display = (ROOT / "carbonlab" / "jupyter" / "display.py").read_text(encoding="utf-8")
    major = int(re.search(r"vnd\.vegalite\.v(\d+)\+json", display).group(1))
    # altair N writes Vega-Lite N (altair 5: v5, altair 6: v6).
    spec = requirements("jupyter")["altair"].specifier
    assert not spec.contains(f"{major + 1}.0"), f"altair {major + 1} emits Vega-Lite {major + 1}"
    assert spec.contains(f"{major}.4")
