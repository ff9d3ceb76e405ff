"""Shared test configuration."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester", "tests.simnvml.fixtures"]


def pytest_addoption(parser):
    parser.addoption(
        "--fault-matrix",
        metavar="PATH",
        default=None,
        help="write each fault case's family and outcome to PATH as JSON (tests/faults.py)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fault(family): a fault carbonlab must survive as a guest (tests/faults.py)"
    )
    path = config.getoption("--fault-matrix")
    if path:
        from tests.faults import MatrixRecorder

        config.pluginmanager.register(MatrixRecorder(path), "fault-matrix")


def pytest_collection_modifyitems(items):
    from tests.faults import family_of

    for item in items:
        family_of(item)  # an unknown family is an error at collection, not a silent gap


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped browser test fails: CI must prove the sidebar works, not skip it."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and item.get_closest_marker("ui") is not None:
        report.outcome = "failed"
        report.longrepr = f"browser test skipped under CI (must run there): {report.longrepr}"


@pytest.fixture(autouse=True)
def _fresh_runtime():
    """Every test starts with no process-wide meters or sampler left by another test."""
    from carbonlab import runtime

    runtime.reset()
    yield
    runtime.reset()
