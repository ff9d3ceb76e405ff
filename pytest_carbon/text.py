"""Text of others (test ids, file names, baselines) made safe for one line of our output.

Kept apart so that budgets, the session and the report can all use it without importing each other.
The escaping itself is the core's (``carbonlab compare`` prints the same ids).
"""

from __future__ import annotations

from carbonlab.units import one_line

__all__ = ["one_line"]
