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


@cache
def _lines(name: str) -> tuple[list[str], list[str]] | None:
    """The header and data lines of a table whose every record is one line (no ``\\r``, quotes
    balanced on each line), else None: only the csv module reads that one exactly."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", name)
    with open(path, "rb") as f:
        data = f.read()
    return _lines_of(_text(data))


def _text(data: bytes) -> str:
    """What ``open(path, encoding="utf-8").read()`` gives for the file's bytes (universal newlines:
    ``\\r\\n`` and ``\\r`` read as ``\\n``), without a text-mode file object (~20-35 k instructions less a table)."""
    text = data.decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _lines_of(text: str) -> tuple[list[str], list[str]] | None:
    if "\r" in text:
        return None
    lines = text.split("\n")
    quoted = '"' in text
    if quoted and any(line.count('"') % 2 for line in lines):
        return None
    header = next(csv.reader(lines[:1]), None) if quoted else lines[0].split(",")
    if not header:
        return None
    return header, lines[1:]


def rows_where(name: str, column: str, value: str, *, fold: bool = False) -> tuple[Row, ...]:
    """The rows of ``table(name)`` whose ``column`` equals ``value`` (its casefold equals it, with
    ``fold``; give ``value`` casefolded), in table order: the same rows (equal dicts) as filtering
    :func:`table`, but only the lines that contain ``value`` are parsed (the World row of the
    country table is ~0.2 M instructions instead of ~5 M for all of it)."""
    got = _lines(name)
    if got is None or '"' in value or (fold and not value.isascii()):
        return _filtered(name, column, value, fold)
    header, lines = got
    n = len(header)
    try:
        i = header.index(column)
    except ValueError:
        return _filtered(name, column, value, fold)
    out: list[Row] = []
    for line in lines:
        if not line:
            continue  # csv skips empty rows
        # An ASCII field casefolds as it lowers, so it holds the value in the lowered line; a
        # field with other characters may fold to it ("K", the Kelvin sign): those lines are read.
        if not value:  # an empty field: at either end, between two commas, or quoted ("")
            if not (line[0] == "," or line[-1] == "," or ",," in line or '""' in line):
                continue
        elif value not in line if not fold else (line.isascii() and value not in line.lower()):
            continue
        fields = next(csv.reader((line,))) if '"' in line else line.split(",")
        if len(fields) != n:
            return _filtered(name, column, value, fold)  # restkey/restval: table()'s rules
        field = fields[i]
        if (field.casefold() if fold else field) == value:
            out.append(dict(zip(header, fields)))
    return tuple(out)


def _filtered(name: str, column: str, value: str, fold: bool) -> tuple[Row, ...]:
    return tuple(r for r in table(name) if (r[column].casefold() if fold else r[column]) == value)
