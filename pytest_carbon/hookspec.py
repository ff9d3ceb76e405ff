"""Hooks pytest-carbon offers to conftest files and other plugins."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_carbon_meter_set(config: pytest.Config) -> Any:
    """Return the ``carbonlab.meters.MeterSet`` to measure tests with, or None for the default.

    The default is the process-wide meters of ``carbonlab.runtime``: NVML GPUs, RAPL packages or
    the CPU-time model, and the RAM model. Called once per process (on each xdist worker too), so a
    conftest can give every worker scripted meters for exact, hardware-free tests.
    """


@pytest.hookspec
def pytest_carbon_update_json(config: pytest.Config, document: dict[str, Any]) -> None:
    """Change the ``--carbon-json`` / saved-run document in place before it is written."""
