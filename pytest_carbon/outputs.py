"""pytest-carbon's files and CI outputs: the ``--carbon-json`` and saved-run document, the
``--carbon-summary-json`` document, GitHub Actions annotations and the step summary's Markdown.

Apart from :mod:`.report` (the header and terminal summary every enabled run shows) so that a run
that asks for none of them does not import them: a module's size costs every session's start.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from typing import TYPE_CHECKING, Any

import pytest

from carbonlab.units import format_co2e, format_energy, one_line

from .report import (
    ANNOTATION_LIMIT,
    MARKDOWN_ROWS,
    SUMMARY_LIMIT,
    _flags,
    _methods,
    outside_tests_j,
    per_file,
    session_line,
    tests_line,
)

if TYPE_CHECKING:  # pragma: no cover
    from .results import TestResult
    from .session import CarbonSession


# --- the document (--carbon-json, saved runs) -------------------------------------------------------


def _epoch_iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return (
        datetime.fromtimestamp(epoch, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _details(s: CarbonSession) -> dict[str, tuple[dict[str, Any], float]]:
    """nodeid -> ({when: (duration, deltas, start, remote)}, offset from the monotonic clock of the
    process that ran it to the session start). This process's records are read as they are (no
    copy); an xdist worker's come as lists (Recorder.export)."""
    out: dict[str, tuple[dict[str, Any], float]] = {}
    if s.role != "controller":
        off = s.mono_to_epoch - s.t0_epoch
        for nodeid, r in s.rec.records.items():
            out[nodeid] = (
                {w: (p.duration_s, p.deltas, p.started_at, p.remote) for w, p in r.phases.items()},
                off,
            )
        return out
    for src in s.results.workers.values():
        off = float(src.get("mono_to_epoch", 0.0)) - s.t0_epoch
        for nodeid, t in (src.get("tests") or {}).items():
            phases = {}
            for w, ph in (t.get("phases") or {}).items():
                remote = (ph[3], ph[4]) if len(ph) > 4 else None
                phases[w] = (ph[0], ph[1], ph[2] if len(ph) > 2 else None, remote)
            out[nodeid] = (phases, off)
    return out


def _phase(when: str, phase: tuple[Any, ...], off: float) -> dict[str, Any]:
    """A phase in the compact form (schema v2): carbonlab.compare.expand_phase rebuilds the full
    Measurement record from it and the meters named once in the environment. Joules are rounded
    to 1 nJ and seconds to 0.1 us: far finer than any meter resolves, and half the bytes."""
    duration, deltas, start, remote = phase
    d: dict[str, Any] = {"duration_s": round(duration, 7), "meters": [round(x, 9) for x in deltas]}
    if when == "call":
        total = sum(deltas)
        if remote:  # attached clusters' components and notes (carbonlab.cluster)
            total += sum(float(c["energy_j"]) for c in remote[0])
        d["energy_j"] = round(total, 9)
        if start is not None:
            d["start_s"] = round(start + off, 4)
    if remote:
        d["remote"] = [remote[0], remote[1]]
    return d


def test_entry(s: CarbonSession, t: TestResult, detail: Any) -> dict[str, Any]:
    """One test, compact: defaults are left out (see docs/pytest.md for the schema)."""
    path, line = t.location
    e: dict[str, Any] = {"nodeid": t.nodeid, "outcome": t.outcome, "line": line}
    if path != t.nodeid.split("::", 1)[0]:
        e["path"] = path
    if t.worker:
        e["worker"] = t.worker
    if t.attempts > 1:
        e["attempts"] = t.attempts
        e["rerun_energy_j"] = round(t.rerun_j, 9)
    if t.shared:
        e["attribution"] = "shared"
    if t.below_resolution:
        e["below_resolution"] = True
    if t.first_use:
        e["first_use"] = t.first_use
    if t.clamped_j:
        e["clamped_j"] = round(t.clamped_j, 9)
    if t.budget is not None:
        e["budget"] = {"limit": t.budget, "status": t.status, "failed_test": t.failed_by_budget}
    if detail is not None:
        phases, off = detail
        for when, ph in phases.items():
            e[when] = _phase(when, ph, off)
    elif t.has_call:
        e["call"] = {
            "energy_j": t.energy_j,
            "duration_s": t.duration_s,
            "by_kind": t.by_kind(),
            "notes": ["rebuilt from per-kind totals: the worker's detailed figures were lost"],
        }
    return e


def environment(s: CarbonSession) -> dict[str, Any]:
    import carbonlab

    from . import storage

    meters = s.meter_set.meters
    env_meters = s.rec.describe_meters()
    env: dict[str, Any] = {
        "machine_id": storage.machine_id(meters),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "carbonlab": carbonlab.__version__,
        "cpu_model": storage.cpu_model(),
        "gpus": storage.gpu_models(meters),
        "methods": _methods(meters),
        "meters": env_meters,
        "unavailable": [u.to_dict() for u in s.meter_set.unavailable],
        "xdist_workers": s.worker_count,
        "gpu_per_worker": s.gpu_assignment or None,
        "worker_meters": {
            wid: out.get("meters", [])
            for wid, out in sorted(s.results.workers.items())
            if out.get("meters") != env_meters
        }
        or None,
        "settings": {
            "zone": s.settings.zone,
            "intensity": s.settings.intensity,
            "pue": s.settings.pue,
        },
        "commit": storage.git_commit(s.config.rootpath),
        "argv": sys.argv[1:],
    }
    return env


def document(s: CarbonSession) -> dict[str, Any]:
    cached = getattr(s, "_document", None)
    if cached is not None:
        return cached
    out = s.outcome
    res = s.results
    details = _details(s)
    tests = [test_entry(s, t, details.get(t.nodeid)) for t in res.tests.values()]
    sums = res.totals()
    from carbonlab.compare import SCHEMA_RUN

    doc: dict[str, Any] = {
        "schema": SCHEMA_RUN,
        "name": s.opts.save or None,  # as given (--carbon-save=feature/foo); files use a safe form
        "started_at": _epoch_iso(s.t0_epoch),
        "environment": environment(s),
        "intensity": s.intensity,
        "pue": s.pue,
        "g_per_j": s.g_per_j,
        "budgets": {
            "test": s.opts.budget.text if s.opts.budget else None,
            "test_source": s.opts.budget_source or None,
            "session": s.opts.session_budget.text if s.opts.session_budget else None,
        },
        "session": {
            "measurement": out.measurement.to_dict() if out.measurement else None,
            "budget_exceeded": out.budget_over,
            "tests": len(res.tests),
            "measured": len(res.measured()),
            "over_budget": len(res.over()),
            "inconclusive": len(res.inconclusive()),
            "below_resolution": len(res.below_resolution()),
            "sums": sums,
            "outside_tests_j": outside_tests_j(s, sums),
            "first_use": len(res.first_use()),
        },
        "tests": tests,
    }
    s.config.hook.pytest_carbon_update_json(config=s.config, document=doc)
    s._document = doc  # type: ignore[attr-defined]
    return doc


def summary_document(s: CarbonSession) -> dict[str, Any]:
    """--carbon-summary-json: totals, the top tests, per-file totals and the comparison, small
    enough for a dashboard or a pull-request comment (no per-phase detail)."""
    m = s.outcome.measurement
    res = s.results
    n = s.opts.top or MARKDOWN_ROWS
    doc = document(s)
    return {
        "schema": "carbonlab.pytest-summary/1",
        "name": s.opts.save or None,
        "started_at": doc.get("started_at"),
        "machine_id": doc["environment"]["machine_id"],
        "commit": doc["environment"].get("commit"),
        "session": {
            "energy_j": m.energy_j if m else None,
            "co2e_g": m.co2e_g if m else None,
            "duration_s": m.duration_s if m else None,
            "by_kind_j": m.by_kind() if m else None,
            "outside_tests_j": outside_tests_j(s),
        },
        "intensity": s.intensity,
        "tests": doc["session"]["tests"],
        "measured": doc["session"]["measured"],
        "over_budget": [t.nodeid for t in res.over()],
        "sums": res.totals(),
        "top": [
            {"nodeid": t.nodeid, "call_j": t.energy_j, "setup_teardown_j": t.setup_j + t.teardown_j}
            for t in res.top(n)
        ],
        "files": [
            {"path": p, "call_j": c, "setup_teardown_j": f, "tests": k}
            for p, (c, f, k) in per_file(s)
        ],
        "comparison": doc.get("comparison"),
        "budget_exceeded": s.outcome.budget_over,
    }


# --- GitHub Actions ---------------------------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation_file(s: CarbonSession, t: TestResult) -> str:
    path = s.config.rootpath / t.location[0]
    ws = os.environ.get("GITHUB_WORKSPACE")
    if ws:
        try:
            return os.path.relpath(path, ws)
        except ValueError:
            pass
    return t.location[0]


def annotations(s: CarbonSession) -> list[str]:
    """::error for tests the budget failed, ::warning for the ones possibly over; worst first."""
    res = s.results

    def excess(t: TestResult) -> float:
        return t.energy_j

    lines = []
    for level, tests, what in (
        ("error", sorted(res.over(), key=excess, reverse=True), "carbon budget exceeded"),
        (
            "warning",
            sorted(res.inconclusive(), key=excess, reverse=True),
            "carbon budget possibly exceeded",
        ),
    ):
        for t in tests[:ANNOTATION_LIMIT]:
            line = f",line={t.location[1]}" if t.location[1] else ""
            msg = f"{t.nodeid}: {what}: {format_energy(t.energy_j)} > {t.budget}{_flags(t, False)}"
            lines.append(
                f"::{level} file={_escape_prop(_annotation_file(s, t))}{line},"
                f"title={_escape_prop('carbon budget')}::{_escape_data(msg)}"
            )
    if s.outcome.budget_over:
        lines.append(
            f"::error title=carbon session budget::{_escape_data(s.outcome.budget_message)}"
        )
    for msg in s.outcome.regressions[:ANNOTATION_LIMIT]:
        lines.append(f"::error title=carbon regression::{_escape_data(msg)}")
    if s.outcome.compare_failed:
        msg = f"--carbon-compare-fail not checked: {s.outcome.compare_error}"
        lines.append(f"::error title=carbon comparison::{_escape_data(msg)}")
    for err in s.outcome.output_errors:
        lines.append(f"::error title=carbon output::{_escape_data(err)}")
    return lines


_MD_ESCAPE = set("\\`*[]|~")
_MD_ENTITIES = {"<": "&lt;", "&": "&amp;"}


def _md(text: str) -> str:
    """Prose (messages that may quote test ids or paths) as literal GitHub Markdown on one line:
    what could open a code span, emphasis, strikethrough, a link, HTML or a table column is
    escaped, and line breaks are shown as ``\\n`` so a table row or a list item stays one line."""
    t = one_line(text)
    out = []
    for i, ch in enumerate(t):
        if ch in _MD_ENTITIES:
            out.append(_MD_ENTITIES[ch])
        elif ch in _MD_ESCAPE:
            out.append("\\" + ch)
        elif ch == "_" and not (0 < i < len(t) - 1 and t[i - 1].isalnum() and t[i + 1].isalnum()):
            out.append("\\_")  # snake_case stays readable; an _emphasis_ cannot open
        else:
            out.append(ch)
    return "".join(out)


def _md_code(text: str) -> str:
    """A test id as a code span in a table cell: nothing inside renders (no link, HTML or
    emphasis); the fence is longer than any run of backticks in the id, and ``|`` is escaped,
    which GitHub's tables require even inside code spans."""
    t = one_line(text).replace("|", "\\|")
    longest = max((len(run) for run in re.findall("`+", t)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if t.startswith("`") or t.endswith("`") else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def markdown(s: CarbonSession, room: int = SUMMARY_LIMIT) -> str:
    """The step summary, in at most ``room`` bytes (GitHub's cap less what earlier steps wrote);
    "" when not even the heading fits. Rows that do not fit are counted, never cut in half."""
    res = s.results
    out = s.outcome
    lines = ["## carbonlab: energy of the test run", ""]
    lines.append(_md(session_line(s)))
    lines.append("")
    lines.append(_md(tests_line(s)))
    lines.append("")
    if out.budget_over:
        lines += [f"**{_md(out.budget_message)}**", ""]
    over = res.over()
    if over:
        lines += [f"**{len(over)} test(s) over their carbon budget**", ""]
    if out.compare_failed:
        lines += [f"**--carbon-compare-fail not checked: {_md(out.compare_error)}**", ""]
    elif out.compare_error:
        lines += [_md(out.compare_error), ""]
    for err in out.output_errors:
        lines += [f"**{_md(err)}**", ""]
    if out.regressions:
        lines += [f"**{len(out.regressions)} energy regression(s)**", ""]
        lines += [f"- {_md(m)}" for m in out.regressions] + [""]

    def row(e: float, when: str, r: TestResult) -> str:
        co2 = format_co2e(e * s.g_per_j) if s.g_per_j is not None else ""
        flags = _flags(r).strip(" []")
        fixtures = format_energy(r.setup_j + r.teardown_j)
        return f"| {format_energy(e)} | {co2} | {fixtures} | {_md_code(r.nodeid)} | {_md(flags)} |"

    def size(xs: list[str]) -> int:
        return sum(len(x.encode()) + 1 for x in xs)

    reserve = 400  # for the closing lines and the "rows not shown" sentence
    if size(lines) + reserve > room:
        return ""
    header = ["| call | CO2e | setup + teardown | test | notes |", "|---:|---:|---:|---|---|"]
    # One row per test (its call; setup and teardown beside it), the biggest first.
    rows = [(t.energy_j, "call", t) for t in res.top(None)]
    files = per_file(s)
    if files:
        lines += [
            "### By file",
            "",
            "| call | setup + teardown | tests | file |",
            "|---:|---:|---:|---|",
        ]
        for path, (call_j, fix_j, n) in files[:MARKDOWN_ROWS]:
            lines.append(
                f"| {format_energy(call_j)} | {format_energy(fix_j)} | {n} | {_md_code(path)} |"
            )
        if len(files) > MARKDOWN_ROWS:
            lines.append(f"\n({len(files) - MARKDOWN_ROWS} more files in --carbon-json)")
        lines.append("")
    budget = room - reserve
    used = size(lines)

    def fill(body: list[str], candidates: list[tuple[float, str, TestResult]]) -> int:
        nonlocal used
        shown = 0
        for r in candidates:
            text = row(*r)
            if used + len(text.encode()) + 1 > budget:
                break
            body.append(text)
            used += len(text.encode()) + 1
            shown += 1
        return shown

    top_body: list[str] = []
    used += size([f"### Top {MARKDOWN_ROWS} by energy", "", *header, ""])
    top_shown = fill(top_body, rows[:MARKDOWN_ROWS])
    lines += [f"### Top {top_shown} by energy", "", *header, *top_body, ""]
    text = "\n".join(lines) + "\n"
    if top_shown < min(len(rows), MARKDOWN_ROWS):
        text += (
            f"({len(rows) - top_shown} more rows not shown: GitHub caps a step summary at 1 MiB; "
            "--carbon-json has them all)\n"
        )
        return text
    if len(rows) > MARKDOWN_ROWS and s.opts.top == 0:
        # --carbon-top=0: every test, as long as the summary stays under GitHub's cap.
        body = ["<details><summary>All tests</summary>", "", *header]
        used += size(body)
        shown = fill(body, rows)
        if shown < len(rows):
            body += [
                "",
                f"({len(rows) - shown} more rows not shown: GitHub caps a step summary at 1 MiB; "
                "--carbon-json has them all)",
            ]
        body += ["", "</details>", ""]
        text += "\n".join(body) + "\n"
    return text
