"""Text of others (test ids, file names, baselines) made safe for one line of our output.

Kept apart so that budgets, the session and the report can all use it without importing each other.
"""

from __future__ import annotations

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x85: "\\x85",
                 0x2028: "\\u2028", 0x2029: "\\u2029"})  # fmt: skip


def one_line(text: str) -> str:
    """Text from test ids, file names or a baseline, shown on one terminal line: control
    characters escaped, so no line of ours can start a workflow command (``::error::``)."""
    return text.translate(_CONTROL)
