"""The CSV tables shipped in ``carbonlab/data``, parsed once each, on first use.

Only the table a lookup needs is parsed: resolving "FR" never reads the Electricity Maps zones.
"""

from __future__ import annotations

import csv
import io
from functools import cache

Row = dict[str, str]


@cache
def table(name: str) -> tuple[Row, ...]:
    """All rows of ``carbonlab/data/<name>`` as dicts of strings (read-only by convention)."""
    from importlib.resources import files  # a few ms of imports, paid at the first lookup only

    text = (files("carbonlab") / "data" / name).read_text(encoding="utf-8")
    return tuple(csv.DictReader(io.StringIO(text)))
