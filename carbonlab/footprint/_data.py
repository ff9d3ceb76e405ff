"""The CSV tables shipped in ``carbonlab/data``, parsed once each, on first use.

Only the table a lookup needs is parsed: resolving "FR" never reads the Electricity Maps zones.
"""

from __future__ import annotations

import csv
import io
import os
from functools import cache
from typing import Any

Row = dict[str, str]


@cache
def table(name: str) -> tuple[Row, ...]:
    """All rows of ``carbonlab/data/<name>`` as dicts of strings (read-only by convention)."""
    # open() beside the package, not importlib.resources (a few ms of imports on the first region)
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return parse(text)


def parse(text: str) -> tuple[Row, ...]:
    """``tuple(csv.DictReader(io.StringIO(text)))``, at a third of its cost: the C reader's rows are
    zipped with the header directly; a row of another length than the header (none in the shipped
    tables) is handed to DictReader's own rules."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        return ()
    n = len(header)
    out: list[Row] = []
    for row in rows:
        if len(row) == n:
            out.append(dict(zip(header, row)))
        elif row:  # DictReader skips empty rows; a short or long one gets restval/restkey
            reader = csv.DictReader([], fieldnames=header)
            d: Any = dict(zip(header, row))
            if len(row) > n:
                d[reader.restkey] = row[n:]
            else:
                for key in header[len(row) :]:
                    d[key] = reader.restval
            out.append(d)
    return tuple(out)
