"""The CSV tables shipped in ``carbonlab/data``, parsed once each, on first use.

Only the table a lookup needs is parsed: resolving "FR" never reads the Electricity Maps zones.
"""

from __future__ import annotations

import csv
import io
import os
from functools import cache

Row = dict[str, str]


@cache
def table(name: str) -> tuple[Row, ...]:
    """All rows of ``carbonlab/data/<name>`` as dicts of strings (read-only by convention)."""
    # open() beside the package, not importlib.resources (a few ms of imports on the first region)
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return tuple(csv.DictReader(io.StringIO(text)))
