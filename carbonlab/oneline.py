"""One line of others' text (test ids, file names, run files) in our output.

Kept apart from ``carbonlab.compare`` so that the pytest plugin can escape ids without importing the
comparison (about 7 ms of a run's start on a slow machine).
"""

from __future__ import annotations

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x85: "\\x85",
                 0x2028: "\\u2028", 0x2029: "\\u2029"})  # fmt: skip


def one_line(text: str) -> str:
    """Text from test ids, file names or a run file, shown on one terminal line: control
    characters escaped, so no line of ours can start a workflow command (``::error::``).

    >>> one_line("t.py::test[a\\n::error::x]")
    't.py::test[a\\\\n::error::x]'
    """
    return text.translate(_CONTROL)
