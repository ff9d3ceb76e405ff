"""Fixtures for the browser tests: one JupyterLab and one Chromium per module.

Outside CI a missing Chromium skips these tests; under CI (env CI set) it is a failure, as is a
labextension that was not built (dev/labextension.sh builds it): see tests.unavailable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import unavailable as _unavailable
from tests.ui import harness


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Lab]:
    if harness.chromium_path() is None:
        _unavailable("no Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    ext = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "carbonlab" / "package.json"
    if not ext.exists():
        _unavailable(
            f"carbonlab labextension not installed in {sys.prefix}: run dev/labextension.sh"
        )
    with harness.start_lab(tmp_path_factory.mktemp("lab-root")) as server:
        yield server


@pytest.fixture(scope="module")
def browser(lab: harness.Lab) -> Iterator[Any]:
    try:
        import playwright  # noqa: F401
    except ImportError:
        _unavailable("python playwright is not installed (pip install -e '.[dev]')")
    with harness.chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    p = harness.new_page(browser)
    yield p
    p.close()
