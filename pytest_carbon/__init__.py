"""pytest-carbon: per-test energy budgets.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of every module of a distribution that declares a
pytest11 entry point (carbonlab and pytest_carbon here), and loading a module through its rewrite
hook costs several times a plain import: ~5 M instructions each, about a third of the plugin's
start-up. Nothing here needs a rewritten assert, so :func:`leave_unrewritten` takes both packages off
pytest's list as soon as pytest imports this one; this marker keeps pytest from warning, in a later
session in the same process (pytester), that it cannot rewrite what is already imported.
"""

from __future__ import annotations

import sys
from typing import Any

# The distribution's top-level packages, the names pytest marks for it.
PACKAGES = ("pytest_carbon", "carbonlab")


def leave_unrewritten(hook: Any) -> None:
    """Take :data:`PACKAGES` off an ``AssertionRewritingHook``'s marks (a name marked on its own,
    ``pytest.register_assert_rewrite("carbonlab.x")``, stays). Private attributes of pytest since
    3.0, read defensively: a pytest without them keeps rewriting, nothing else changes."""
    try:  # runs in every pytest session with the plugin installed: it may cost, never fail
        marked = getattr(hook, "_must_rewrite", None)
        if not isinstance(marked, set) or not marked.intersection(PACKAGES):
            return
        marked.difference_update(PACKAGES)
        cache = getattr(hook, "_marked_for_rewrite_cache", None)
        if isinstance(cache, dict):
            cache.clear()  # pytest's own mark_rewrite clears it too; it refills as modules import
    except (
        Exception
    ):  # a pytest whose internals changed shape: its modules are rewritten, as before
        return


def _leave_unrewritten_now() -> None:
    # pytest is importing this package through its hook: what it imports next loads plainly.
    for finder in sys.meta_path:
        if type(finder).__name__ == "AssertionRewritingHook":
            leave_unrewritten(finder)


_leave_unrewritten_now()
