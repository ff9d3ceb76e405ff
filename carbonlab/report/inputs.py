"""Selecting the runs a report covers: notebook history, ``carbonlab run --json`` files, pytest
``--carbon-json`` files and earlier JSON reports, filtered by label and time.

Every bad input is a :class:`~carbonlab.report.model.ReportError` naming the value and what is
accepted; nothing here prints or exits.

>>> parse_when("2026-12-01", "--since")
'2026-12-01T00:00:00Z'
>>> parse_when("2026-12-01T10:30+01:00", "--until")
'2026-12-01T09:30:00Z'
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from carbonlab.measurement import SCHEMA as SCHEMA_MEASUREMENT
from carbonlab.measurement import Measurement

from .model import (
    SCHEMA_REPORT,
    SOURCE_HISTORY,
    SOURCE_MEASUREMENT,
    SOURCE_PYTEST,
    InputRun,
    ReportError,
)

SCHEMA_PYTEST = "carbonlab.pytest-run/2"  # carbonlab.compare.SCHEMA_RUN, without importing compare
SCHEMAS_PYTEST = (SCHEMA_PYTEST, "carbonlab.pytest-run/1")  # v1 still read
_ACCEPTED = (
    f"accepted: a Measurement JSON ({SCHEMA_MEASUREMENT}, `carbonlab run --json`), a pytest run "
    f"({SCHEMA_PYTEST}, `pytest --carbon-json`) or a report ({SCHEMA_REPORT}, `carbonlab report "
    "--format json`)"
)


@dataclass
class Selection:
    """What to report on. ``history`` is a history file path, or None to leave history out."""

    history: str | None = None
    notebook: str | None = None  # None: every notebook in the history file
    labels: list[str] = field(default_factory=list)  # exact labels or glob patterns ("train*")
    since: str | None = None  # ISO 8601 UTC, as parse_when gives
    until: str | None = None
    files: list[str] = field(default_factory=list)
    # Read from a cell (%carbon report --paper): this process's history rows not written yet are
    # included, and a file locked by another process is not waited for (its place is taken by this
    # kernel's runs, with a note). Not part of the report's record of its selection.
    from_cell: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "notebook": self.notebook,
            "labels": list(self.labels),
            "since": self.since,
            "until": self.until,
            "files": list(self.files),
        }

    def describe(self) -> str:
        parts = []
        if self.history is not None:
            where = f"notebook {self.notebook}" if self.notebook else "every notebook"
            parts.append(f"history {self.history} ({where})")
        parts += [f"file {f}" for f in self.files]
        if self.labels:
            parts.append("label " + " or ".join(self.labels))
        if self.since:
            parts.append(f"since {self.since}")
        if self.until:
            parts.append(f"until {self.until}")
        return "; ".join(parts) or "nothing"


def parse_when(text: str, option: str = "time") -> str:
    """A date (``2026-12-01``, midnight UTC) or ISO 8601 time (a time without zone is UTC), as an
    ISO string in UTC; ReportError otherwise."""
    t = (text or "").strip()
    try:
        if t.endswith(("Z", "z")):
            t = t[:-1] + "+00:00"
        d = datetime.fromisoformat(t)
    except ValueError:
        raise ReportError(
            f"{option} {text!r}: expected a date (2026-12-01) or an ISO 8601 time "
            "(2026-12-01T10:00Z; UTC when no zone is given)"
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(iso: str) -> float | None:
    if not iso:
        return None
    t = iso[:-1] + "+00:00" if iso.endswith(("Z", "z")) else iso
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def _digest(d: Any) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _measurement(d: Any, where: str) -> Measurement:
    try:
        return Measurement.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise ReportError(f"{where}: not a valid {SCHEMA_MEASUREMENT} record ({what})") from None


def load_file(path: str) -> list[InputRun]:
    """The runs in one JSON file; ReportError for a missing, unreadable or foreign file."""
    p = Path(path).expanduser()
    try:
        with open(p, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not JSON ({e})") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema == SCHEMA_MEASUREMENT:
        m = _measurement(doc, path)
        return [InputRun("json:" + _digest(doc), SOURCE_MEASUREMENT, path, m)]
    if schema in SCHEMAS_PYTEST:
        sess = (doc.get("session") or {}).get("measurement")
        if not isinstance(sess, dict):
            raise ReportError(f"{path}: this pytest run has no session measurement to report")
        m = _measurement(sess, f"{path} (session)")
        env = doc.get("environment") if isinstance(doc.get("environment"), dict) else {}
        meta = {k: env[k] for k in ("carbonlab", "python", "platform", "machine_id") if k in env}
        if env.get("commit"):
            meta["commit"] = env["commit"]
        return [InputRun("pytest:" + _digest(sess), SOURCE_PYTEST, path, m, meta=meta)]
    if schema == SCHEMA_REPORT:
        runs = doc.get("runs")
        if not isinstance(runs, list):
            raise ReportError(f"{path}: a {SCHEMA_REPORT} document without its runs")
        out = []
        for i, r in enumerate(runs):
            try:
                out.append(InputRun.from_dict(r))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ReportError(f"{path}: run {i} is malformed ({e})") from None
        return out
    got = schema if isinstance(doc, dict) else type(doc).__name__
    raise ReportError(f"{path}: not a carbonlab record (schema {got!r}); {_ACCEPTED}")


def load_history(
    path: str, notebook: str | None, *, from_cell: bool = False
) -> tuple[list[InputRun], list[str]]:
    """Rows of a history file (none if the file does not exist), and notes on rows skipped.

    ``from_cell``: with this process's rows not written yet, waiting at most
    ``store.CELL_READ_TIMEOUT_S`` for another process's lock; while the file stays locked, this
    kernel's runs only, and a note that says so (:func:`carbonlab.store.read_merged`).
    """
    from carbonlab.store import StoreError, read_merged, read_rows

    notes: list[str] = []
    try:
        if from_cell:
            rows, note = read_merged(Path(path).expanduser(), notebook)
            notes += [note] if note else []
        else:
            rows = read_rows(Path(path).expanduser(), notebook)
    except StoreError as e:
        raise ReportError(str(e)) from None
    out, bad = [], 0
    for r in rows:
        try:
            m = Measurement.from_dict(json.loads(r["measurement"]))
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        out.append(
            InputRun(
                r["run_id"], SOURCE_HISTORY, path, m, notebook=r["notebook"], error=bool(r["error"])
            )
        )
    notes += [f"{bad} unreadable history row(s) skipped"] if bad else []
    return out, notes


def _known_notebooks(history: str, most: int = 5, *, from_cell: bool = False) -> str:
    """'; notebooks in this history: a, b' (for the error when --notebook matches nothing)."""
    from carbonlab.store import CELL_READ_TIMEOUT_S, READ_TIMEOUT_S, StoreError, read_rows

    wait = CELL_READ_TIMEOUT_S if from_cell else READ_TIMEOUT_S
    try:
        names = sorted(
            {r["notebook"] for r in read_rows(Path(history).expanduser(), timeout_s=wait)}
        )
    except StoreError:
        return ""
    if not names:
        return ""
    more = f" (and {len(names) - most} more)" if len(names) > most else ""
    return "; notebooks in this history: " + ", ".join(names[:most]) + more


def _keep(run: InputRun, sel: Selection, since: float | None, until: float | None) -> bool:
    label = run.measurement.label
    # A label is matched as written first: "step[1]" selects the run labelled so, not "step1".
    if sel.labels and not any(
        label == pat or fnmatch.fnmatchcase(label, pat) for pat in sel.labels
    ):
        return False
    if since is not None or until is not None:
        t = _epoch(run.measurement.started_at)
        if t is None:
            return False
        if since is not None and t < since:
            return False
        if until is not None and t > until:
            return False
    return True


def select(sel: Selection) -> tuple[list[InputRun], list[str]]:
    """The runs of a selection, oldest first, each once; ReportError when none match."""
    runs: list[InputRun] = []
    notes: list[str] = []
    for f in sel.files:
        runs += load_file(f)
    hint = ""
    if sel.history is not None:
        got, n = load_history(sel.history, sel.notebook, from_cell=sel.from_cell)
        if not got and sel.notebook:
            # The key is the path jupyter_server gave the kernel; try the absolute path too.
            absolute = str(Path(sel.notebook).expanduser().resolve())
            if absolute != sel.notebook:
                got, n = load_history(sel.history, absolute, from_cell=sel.from_cell)
            if not got:
                hint = _known_notebooks(sel.history, from_cell=sel.from_cell)
        runs += got
        notes += n
    since = None if sel.since is None else _epoch(sel.since)
    until = None if sel.until is None else _epoch(sel.until)
    seen: set[str] = set()
    kept: list[InputRun] = []
    dup = 0
    for r in runs:
        if r.run_id in seen:
            dup += 1
            continue
        seen.add(r.run_id)
        if _keep(r, sel, since, until):
            kept.append(r)
    if dup:
        notes.append(f"{dup} run(s) given more than once, counted once")
    if not kept:
        raise ReportError(f"no measured runs match the selection ({sel.describe()}){hint}")
    kept.sort(key=lambda r: r.measurement.started_at or "")
    return kept, notes


def report_for(
    sel: Selection,
    *,
    compare_zones: Sequence[str] = (),
    training_type: str | None = None,
    title: str | None = None,
):
    """Select, then build: the one entry point the CLI and the magic share."""
    from carbonlab.config import ConfigError
    from carbonlab.footprint.intensity import lookup

    zones = []
    for z in compare_zones:
        try:
            zones.append(lookup(z).to_dict())
        except ConfigError as e:
            raise ReportError(f"--compare-zone: {e}") from None
    runs, notes = select(sel)
    from .model import build

    return build(
        runs,
        selection=sel.to_dict(),
        compare_zones=zones,
        training_type=training_type,
        title=title or "Energy and carbon footprint",
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        notes=notes,
    )
