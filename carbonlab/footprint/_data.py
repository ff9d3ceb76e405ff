"""The CSV tables shipped in ``carbonlab/data``, parsed once each, on first use.

Only the table a lookup needs is parsed: resolving "FR" never reads the Electricity Maps zones.
"""

from __future__ import annotations

import csv
import io
import os
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

Row = dict[str, str]


_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")  # carbonlab/data


def _path(name: str) -> str:
    """``carbonlab/data/<name>`` (``name`` itself when absolute)."""
    return os.path.join(_DATA_DIR, name)


@cache
def table(name: str) -> tuple[Row, ...]:
    """All rows of ``carbonlab/data/<name>`` as dicts of strings (read-only by convention)."""
    # open() beside the package, not importlib.resources (a few ms of imports on the first region)
    with open(_path(name), encoding="utf-8") as f:
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
    with open(_path(name), "rb") as f:
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
    if not fold:
        found = _found(name, column, value, None, False)
        if found is not None:
            return found
    return _rows_in_lines(name, column, value, fold)


def last_row_where(
    name: str, column: str, value: str, keep: Callable[[Row], bool] | None = None
) -> Row | None:
    """The last of ``rows_where(name, column, value)`` (of those ``keep`` keeps, with it), or None;
    the file is searched from its end, so the World row, last in its table, is the only one read."""
    found = _found(name, column, value, keep, True)
    if found is None:
        found = rows_where(name, column, value)
        if keep is not None:
            found = tuple([r for r in found if keep(r)])
    return found[-1] if found else None


# --- the value searched in the file's bytes (memchr and the C search), each line a record -------
# Each C call costs ~1 k instructions here, whatever it reads: few calls per line, none per byte.

# Where an empty field can be: between two commas, quoted (""), first or last on its line.
_EMPTY_FIELD = (b",,", b'""', b"\n,", b",\n", b",\r")


@cache
def _file(name: str) -> tuple[bytes, list[str], int, bool, bool, dict[int, Any]] | None:
    """(the table's bytes, its header, where its data lines start, whether it has a CR, whether it
    has a quote, the lines read so far (fields, row) by where they start), or None where :func:`_lines` would not read it line by line (a line with an odd
    number of quotes) or its header is not a plain line (a quote or a lone CR in it, no line after
    it): the text lines are read for those."""
    with open(_path(name), "rb") as f:
        data = f.read()
    if not data.isascii():
        data.decode("utf-8")  # a file that is not UTF-8 raises, as table() and _lines() do
    nl = data.find(b"\n")
    head = data[:nl]
    cr = b"\r" in data
    if cr and head[-1:] == b"\r":
        head = head[:-1]
    if nl < 0 or not head or b"\r" in head or b'"' in head:
        return None
    quoted = b'"' in data
    if quoted:
        # Every line holds an even number of quotes (_lines' rule) if and only if the quotes pair
        # up in order with no line break (LF, or CR: universal newlines) inside a pair.
        parts = data.split(b'"')
        inside = b"".join(parts[1::2])
        if not len(parts) % 2 or b"\n" in inside or b"\r" in inside:
            return None
    return data, head.decode("utf-8").split(","), nl + 1, cr, quoted, {}


def _found(
    name: str, column: str, value: str, keep: Callable[[Row], bool] | None, last: bool
) -> tuple[Row, ...] | None:
    """The rows :func:`rows_where` gives (that ``keep`` keeps; only the last, with ``last``), read
    from the lines of the file's bytes that hold ``value``; None where the text lines must be read
    instead (a value with a quote or line break, a table :func:`_file` does not take, a lone CR in
    the line, a field count other than the header's): the same rules as :func:`_lines`'s reader."""
    if '"' in value or "\n" in value or "\r" in value:
        return None
    t = _file(name)
    if t is None:
        return None
    data, header, start, cr, quoted, read = t
    try:
        i = header.index(column)
        needle = value.encode("utf-8")
    except (ValueError, UnicodeEncodeError):  # no such column; a lone surrogate
        return None
    out: list[Row] = []
    end = len(data)
    while True:
        # The start of the next line (from the end, with ``last``) that can hold the value.
        if not needle:
            a = _empty_field_line(data, start, end, last)
        else:
            p = data.rfind(needle, start, end) if last else data.find(needle, start, end)
            a = data.rfind(b"\n", 0, p) + 1 if p >= 0 else -1
        if a < 0:
            return tuple(out)
        b = data.find(b"\n", a)
        if b < 0:
            b = len(data)
        got = read.get(a)  # a line read before (the host note reads the server rows twice)
        if got is None:
            line = data[a:b]
            if cr:
                if line[-1:] == b"\r":
                    line = line[:-1]
                if b"\r" in line:  # a lone CR: universal newlines make this two lines
                    return None
            text = line.decode("utf-8")
            fields = next(csv.reader((text,))) if quoted and '"' in text else text.split(",")
            if len(fields) != len(header):
                return None  # restkey/restval: table()'s rules
            got = read[a] = (fields, dict(zip(header, fields)))
        fields, row = got
        # fields[i]: the first column of that name, as _lines' reader compares (not row[column])
        if fields[i] == value and (keep is None or keep(row)):
            out.append(row)
            if last:
                return tuple(out)
        if last:
            end = a
        else:
            start = b + 1


def _empty_field_line(data: bytes, start: int, end: int, last: bool) -> int:
    """Where the first (the last, with ``last``) line in ``data[start:end]`` with an empty field
    can be starts; -1 for none. Lines start at ``start`` or after a newline."""
    best = -1
    for n in _EMPTY_FIELD:
        if last:  # only the part after the best line so far can hold a later one
            p = data.rfind(n, max(start - 1, best), end)
        else:
            p = data.find(n, start - 1, end if best < 0 else best)
        if p >= 0:
            a = p + 1 if n[0] == 10 else data.rfind(b"\n", 0, p) + 1  # b"\n,": the next line's
            if start <= a < end and (best < 0 or (a > best if last else a < best)):
                best = a
    if end == len(data) and data[-1:] == b"," and start < end:  # the last line ends the file
        a = data.rfind(b"\n", 0, end - 1) + 1
        if a >= start and (best < 0 or (a > best if last else a < best)):
            best = a
    return best


def _rows_in_lines(name: str, column: str, value: str, fold: bool) -> tuple[Row, ...]:
    """:func:`rows_where` from the table's text lines (any value, ``fold``)."""
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
