"""carbonlab's test suite."""

from __future__ import annotations

import os


def unavailable(reason: str) -> None:
    """What a test needs is missing here: skip it, except under CI (env CI set), where the set-up
    (dev/test: .venv, the labextension build, chromium) must provide it and a skip would hide it."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: this test must run)", pytrace=False)
    pytest.skip(reason)
