"""Everything the controller shows or writes: the header line, the session total and its budget,
the ``--carbon-top`` table, the ``--carbon-json`` document, baselines and comparisons, and, under
GitHub Actions, a step summary and annotations.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from carbonlab import _moved
from carbonlab.measurement import SCOPE_PROCESS, Component, Measurement
from carbonlab.units import format_co2e, format_energy, format_intensity, one_line

from .budget import STATUS_INCONCLUSIVE, STATUS_OVER
from .recorder import measurement_from
from .results import TestResult

if TYPE_CHECKING:  # pragma: no cover
    from .session import CarbonSession

SUMMARY_LIMIT = 1_000_000  # GitHub caps a step summary at 1 MiB
ANNOTATION_LIMIT = 10  # GitHub shows only a few annotations per step
MARKDOWN_ROWS = 20


# --- header ---------------------------------------------------------------------------------------


def _methods(meters: list[Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in meters:
        lst = out.setdefault(m.kind, [])
        if m.method not in lst:
            lst.append(m.method)
    return out


def meters_phrase(meters: list[Any]) -> str:
    """'gpu=nvml-energy-counter(2) cpu=cpu-time-model ram=ram-model'."""
    parts = []
    for kind in ("gpu", "cpu", "ram"):
        ms = [m for m in meters if m.kind == kind]
        if not ms:
            continue
        by_method: dict[str, int] = {}
        for m in ms:
            by_method[m.method] = by_method.get(m.method, 0) + 1
        parts.append(
            f"{kind}="
            + ",".join(
                f"{meth}({n})" if n > 1 or kind == "gpu" else meth for meth, n in by_method.items()
            )
        )
    return " ".join(parts) or "no meters"


def intensity_phrase(intensity: dict[str, Any] | None, pue: float | None) -> str:
    if not intensity:
        return "no grid intensity"
    src = str(intensity.get("source", "")).replace(" (static)", "")
    s = f"zone {intensity.get('zone')} {format_intensity(float(intensity['gco2e_per_kwh']))}"
    if src:
        s += f" ({src})"
    if pue and pue != 1.0:
        s += f", PUE {pue:g}"
    return s


def header_lines(s: CarbonSession) -> list[str]:
    meters = s.meter_set.meters
    parts = [f"carbon: {meters_phrase(meters)}", intensity_phrase(s.intensity, s.pue)]
    if s.opts.budget is not None:
        parts.append(f"budget {s.opts.budget.text}/test")
    if s.opts.session_budget is not None:
        parts.append(f"session budget {s.opts.session_budget.text}")
    if s.role == "controller" and s.worker_count > 1:
        gpus = sum(1 for m in meters if m.kind == "gpu")
        own_gpu = s.opts.gpu_per_worker and gpus >= s.worker_count
        shared = {
            m.kind
            for m in meters
            if m.scope in ("device", "package") and not (own_gpu and m.kind == "gpu")
        }
        if shared:
            parts.append(f"{s.worker_count} xdist workers: {'/'.join(sorted(shared))} shared")
    lines = ["; ".join(parts)]
    for u in s.meter_set.unavailable:
        lines.append(f"carbon: {u.kind} via {u.source} unavailable: {u.reason}")
    return lines


# --- session total ------------------------------------------------------------------------------


def session_measurement(s: CarbonSession, duration: float, deltas: list[float]) -> Measurement:
    """The whole run: machine-wide counters read once here; process models summed over processes."""
    from carbonlab import footprint

    meters = s.rec.describe_meters()
    m = measurement_from("pytest session", s.t0_wall, duration, deltas, meters)
    if s.role == "controller":
        comps = list(m.components)
        for wid, out in sorted(s.results.workers.items()):
            sess = out.get("session")
            if not sess:
                continue
            for d, meter in zip(sess[1], out.get("meters", [])):
                if meter.get("scope") != SCOPE_PROCESS:
                    continue  # a device or package counter: the controller's reading covers it
                comps.append(
                    Component(
                        kind=meter["kind"],
                        device=f"{meter['device']}@{wid}",
                        energy_j=float(d),
                        method=meter["method"],
                        scope=meter["scope"],
                        name=meter.get("name", ""),
                        params=dict(meter.get("params", {})),
                    )
                )
        m.components = comps
        if s.results.lost_workers:
            m.notes.append(
                "no figures from crashed worker(s) "
                + ", ".join(s.results.lost_workers)
                + ": their own CPU and RAM energy is missing from the total"
            )
    notes = list(m.notes)
    footprint.apply(m, s.settings)
    m.notes = notes + m.notes
    return m


def _budget_value(m: Measurement, kind: str) -> float | None:
    return m.energy_j if kind == "energy" else m.co2e_g


def check_session(s: CarbonSession) -> bool:
    """Session budget and --carbon-compare-fail; True when the run must exit with code 1."""
    out = s.outcome
    m = out.measurement
    failed = False
    b = s.opts.session_budget
    if b is not None and m is not None:
        value = _budget_value(m, b.kind)
        if value is not None and value > b.value:
            amount = format_energy(value) if b.kind == "energy" else format_co2e(value)
            by = ", ".join(f"{k} {format_energy(v)}" for k, v in m.by_kind().items())
            out.budget_over = True
            out.budget_message = (
                f"carbon session budget exceeded: {amount} > {b.text} (whole run; {by})"
            )
            failed = True
    if s.opts.compare is not None:
        failed = _compare(s) or failed
    return failed


def load_baseline(s: CarbonSession) -> None:
    """Find and read the run to compare with, before any test runs.

    A named baseline that does not exist is a usage error (a typo: nothing to run for). A baseline
    that exists but cannot be read (corrupt, wrong shape, a directory) does not stop the tests: the
    run finishes and says which file and why; with --carbon-compare-fail the run then fails, since
    the gate it asked for could not be checked. No saved run at all (a new CI machine) is a note.
    """
    from carbonlab.compare import CompareError, combine, load_run, resolve_runs

    from . import storage

    name = s.opts.compare
    if name is None:
        return
    machine = None if _is_path(name) else storage.machine_id(s.meter_set.meters)
    try:
        paths = resolve_runs(name, s.opts.storage, machine, s.opts.compare_runs)
    except CompareError as e:
        if name == "":
            s.outcome.notes.append(f"nothing to compare with: {e}")
            return
        raise pytest.UsageError(f"carbon: --carbon-compare: {e}") from None
    s.baseline_path = paths[-1]
    s.baseline_paths = paths
    try:
        runs = [load_run(p) for p in paths]
    except CompareError as e:
        s.outcome.compare_error = f"cannot compare: {e}"
        return
    s.baseline = combine(runs, str(paths[-1]))


def _compare(s: CarbonSession) -> bool:
    from carbonlab.compare import (
        diff,
        format_rows,
        mismatch_notes,
        parse_fail_spec,
        regressions,
        run_from_document,
    )

    from .outputs import document

    out = s.outcome
    base, path = s.baseline, s.baseline_path
    if out.compare_error:
        out.compare_failed = bool(s.opts.compare_fail)
        document(s)["comparison"] = {
            "baseline": str(path),
            "fail": list(s.opts.compare_fail),
            "error": out.compare_error,
            "regressions": None,  # not checked
        }
        return out.compare_failed
    if base is None:
        return False
    doc = document(s)
    cur = run_from_document(doc, "this run")
    rows = diff(base, cur)
    paths = getattr(s, "baseline_paths", [path])
    what = f"compared with {path}"
    if len(paths) > 1:
        what = f"compared with the median of {len(paths)} runs saved as {base.name or '?'}: " + (
            ", ".join(p.name for p in paths)
        )
    out.compare_lines = [what] + [f"note: {n}" for n in mismatch_notes(base, cur)]
    limit = 20 if s.opts.top is None else s.opts.top  # --carbon-top=0: every row
    out.compare_lines += format_rows(rows, limit, base, cur)
    first_use = [r for r in rows if r.cur is not None and r.cur.first_use]
    if first_use and s.opts.compare_fail:
        out.compare_lines.append(
            f"{len(first_use)} test(s) imported modules during their call (first use in this "
            "process): listed, not gated per test; the session threshold still counts them"
        )
    specs = [parse_fail_spec(t) for t in s.opts.compare_fail]
    regs = regressions(rows, specs, base, cur)
    out.regressions = [g.message for g in regs]
    out.regressed = [(g.row.nodeid, g.message) for g in regs]
    doc["comparison"] = {
        "baseline": str(path),
        "baselines": [str(p) for p in paths],
        "fail": [sp.text for sp in specs],
        "regressions": out.regressions,
        "regressed_tests": [g.row.nodeid for g in regs],
        "notes": mismatch_notes(base, cur),
        "session": {"baseline_j": base.session_energy_j, "current_j": cur.session_energy_j},
    }
    return bool(regs)


REGRESSION_SUFFIX = " (carbon regression)"
P_REGRESSION = "carbon_regression"


def report_regressions(s: CarbonSession) -> None:
    """Each regressed test as a failed test case of its own, ``<nodeid> (carbon regression)``,
    so that CI shows what failed: counted in pytest's "N failed", listed in its short summary,
    and a <testcase> with a <failure> (and a ``carbon_regression`` property) in JUnit XML. The
    test itself keeps its own outcome: it passed; its energy, compared with the baseline, did not.
    A session-level regression is reported as ``carbon session (carbon regression)``.
    """
    from carbonlab.compare import SESSION_ROW

    from .plugin import register_status_hooks

    hook = s.config.hook
    s.regressing = True
    register_status_hooks(s.config, s)
    for nodeid, message in s.outcome.regressed:
        t = s.results.tests.get(nodeid)
        if nodeid == SESSION_ROW or t is None:
            location: tuple[str, int | None, str] = ("carbon", None, "carbon session")
            rid = "carbon session"
        else:
            location = t._location
            rid = nodeid
        props = [(P_REGRESSION, message)]
        prefix = f"{nodeid}: "
        text = message[len(prefix) :] if message.startswith(prefix) else message
        for when, outcome in (("call", "failed"), ("teardown", "passed")):
            rep = pytest.TestReport(
                nodeid=rid + REGRESSION_SUFFIX,
                location=(location[0], location[1], location[2] + REGRESSION_SUFFIX),
                keywords={},
                outcome=outcome,  # type: ignore[arg-type]
                longrepr=text if outcome == "failed" else None,
                when=when,  # type: ignore[arg-type]
                user_properties=props,
            )
            rep.carbon_regression = True  # type: ignore[attr-defined]
            try:
                hook.pytest_runtest_logreport(report=rep)
            except Exception as e:  # a guest: another plugin's trouble must not hide our line
                s.outcome.notes.append(f"could not report the regression of {nodeid}: {e}")
                break


def _is_path(name: str | None) -> bool:
    """A file rather than a run name (a branch name such as feature/foo is a name)."""
    return bool(name) and (name.endswith(".json") or os.path.isfile(name))


def write_outputs(s: CarbonSession) -> None:
    """Write every output asked for, each on its own: one that fails (said in
    ``outcome.output_errors``, and the run's exit status) never keeps the others from being written.
    """
    out = s.outcome
    files = s.opts.json_path is not None or s.opts.save is not None
    files = files or s.opts.summary_json is not None
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not files and not summary:
        return  # the usual run: not even the outputs' module is imported
    from .outputs import document, markdown, summary_document

    if files:
        from . import storage  # only then: it brings subprocess, tempfile and the compare module

    if s.opts.json_path is not None:
        try:
            storage.write_json_atomic(s.opts.json_path, document(s))
            out.written.append(f"carbon JSON: {s.opts.json_path}")
        except (OSError, ValueError) as e:
            out.output_errors.append(
                f"could not write the carbon JSON {s.opts.json_path}: {_os_reason(e)}"
            )
    if s.opts.save is not None:
        try:
            name = s.opts.save or storage.default_name(s.config.rootpath)
            path = storage.save(
                document(s), s.opts.storage, storage.machine_id(s.meter_set.meters), name
            )
            out.written.append(f"carbon baseline saved: {path}")
        except (OSError, ValueError) as e:
            out.output_errors.append(
                f"could not save the baseline under {s.opts.storage}: {_os_reason(e)}"
            )
    if s.opts.summary_json is not None:
        try:
            storage.write_json_atomic(s.opts.summary_json, summary_document(s))
            out.written.append(f"carbon summary JSON: {s.opts.summary_json}")
        except (OSError, ValueError) as e:
            out.output_errors.append(
                f"could not write the carbon summary JSON {s.opts.summary_json}: {_os_reason(e)}"
            )
    if summary:
        try:
            try:
                earlier = os.path.getsize(summary)
            except FileNotFoundError:
                earlier = 0
            text = markdown(s, room=SUMMARY_LIMIT - earlier)
            if text:
                with open(summary, "a", encoding="utf-8") as f:
                    f.write(text)
            else:
                out.notes.append(
                    f"no carbon step summary: earlier steps filled {summary} to GitHub's 1 MiB cap"
                )
        except OSError as e:
            out.output_errors.append(
                f"could not write the GitHub step summary {summary}: {_os_reason(e)}"
            )


def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# --- terminal ----------------------------------------------------------------------------------------


def _flags(t: TestResult, budget: bool = True) -> str:
    flags = []
    if budget and t.status == STATUS_OVER:
        flags.append(f"over budget {t.budget}")
    elif budget and t.status == STATUS_INCONCLUSIVE:
        flags.append(f"possibly over budget {t.budget}")
    if t.below_resolution:
        flags.append("below resolution")
    if t.shared:
        flags.append("shared")
    if t.attempts > 1:
        flags.append(f"{t.attempts} attempts")
    return f"  [{'; '.join(flags)}]" if flags else ""


def top_rows(s: CarbonSession, n: int) -> list[tuple[float, str, TestResult]]:
    """(energy, phase, test), the biggest first, setup and teardown listed apart, as --durations."""
    rows = []
    for t in s.results.tests.values():
        if t.has_call:
            rows.append((t.energy_j, "call", t))
        if t.setup_j:
            rows.append((t.setup_j, "setup", t))
        if t.teardown_j:
            rows.append((t.teardown_j, "teardown", t))
    rows.sort(key=lambda r: r[0], reverse=True)
    return rows if n == 0 else rows[:n]


def session_line(s: CarbonSession) -> str:
    m = s.outcome.measurement
    if m is None:
        return "session: not measured"
    by = ", ".join(
        f"{k} {format_energy(v)} {'/'.join(m.methods().get(k, []))}" for k, v in m.by_kind().items()
    )
    co2 = f", {format_co2e(m.co2e_g)}" if m.co2e_g is not None else ""
    return (
        f"session: {format_energy(m.energy_j)}{co2} in {m.duration_s:.2f} s "
        f"({by}); {intensity_phrase(s.intensity, s.pue)}"
    )


def advice_line(s: CarbonSession) -> str | None:
    """When this session's work would emit least, from a live forecast; None without one.

    Runs after the tests, from the forecast the provider already holds: no network call here.
    """
    m = s.outcome.measurement
    if m is None or not s.settings.intensity:
        return None
    from carbonlab import footprint

    try:
        advice = footprint.advice_for(m, s.settings, subject="this test session")
    except Exception:  # advice is a nicety: never let it break the summary
        return None
    return f"advice: {advice.sentence}" if advice is not None else None


def tests_line(s: CarbonSession) -> str:
    res = s.results
    sums = res.totals()
    n = len(res.measured())
    parts = [
        f"{n} test{'' if n == 1 else 's'} measured: call {format_energy(sums['call_j'])}, "
        f"setup {format_energy(sums['setup_j'])}, teardown {format_energy(sums['teardown_j'])}"
    ]
    if sums["rerun_j"]:
        parts.append(f"discarded rerun attempts {format_energy(sums['rerun_j'])}")
    for n, what in (
        (len(res.over()), "over budget"),
        (len(res.inconclusive()), "possibly over budget (not failed)"),
        (len(res.below_resolution()), "below the meters' resolution"),
    ):
        if n:
            parts.append(f"{n} {what}")
    if res.any_shared():
        parts.append("per-test figures of shared counters overlap between xdist workers")
    return "; ".join(parts)


def per_file(s: CarbonSession) -> list[tuple[str, tuple[float, float, int]]]:
    """(file, (call J, setup + teardown J, tests)), the biggest call total first."""
    acc: dict[str, list[float]] = {}
    for t in s.results.tests.values():
        a = acc.setdefault(t.location[0] or t.nodeid.split("::", 1)[0], [0.0, 0.0, 0])
        a[0] += t.energy_j
        a[1] += t.setup_j + t.teardown_j
        a[2] += 1
    ranked = sorted(acc.items(), key=lambda kv: -kv[1][0])
    return [(k, (v[0], v[1], int(v[2]))) for k, v in ranked]


def outside_tests_j(s: CarbonSession, sums: dict[str, float] | None = None) -> float | None:
    """The session's energy not in any test's setup, call or teardown."""
    m = s.outcome.measurement
    if m is None:
        return None
    sums = sums or s.results.totals()
    return max(
        0.0, m.energy_j - sums["call_j"] - sums["setup_j"] - sums["teardown_j"] - sums["rerun_j"]
    )


def outside_line(s: CarbonSession) -> str | None:
    j = outside_tests_j(s)
    m = s.outcome.measurement
    if j is None or m is None:
        return None
    share = f" ({j / m.energy_j * 100:.0f} % of the session)" if m.energy_j > 0 else ""
    workers = ", xdist workers starting and collecting" if s.role == "controller" else ""
    return (
        f"outside tests: {format_energy(j)}{share}: collection{workers}, pytest's own work "
        "between test phases (reports, tracebacks, output) and the summary; session-scoped "
        "fixtures count in the setup of the first test that uses them"
    )


def model_lines(s: CarbonSession) -> list[str]:
    """What the CPU model assumed, when it is an assumption (default W per core, unknown CPU)."""
    lines = []
    for m in s.meter_set.meters:
        if m.kind != "cpu":
            continue
        params = getattr(m, "params", {}) or {}
        w = params.get("w_per_core")
        source = params.get("source")
        if w is None or source in (None, "configured", "table"):
            continue
        model = params.get("cpu_model")
        why = (
            (f"CPU model {model!r} not recognised" if model else "CPU model unknown")
            if not params.get("tdp_w")
            else f"{model}: TDP known, core count unknown"
        )
        lines.append(
            f"cpu: assumed {w:g} W per core ({why}); set cpu_w_per_core in [tool.carbonlab] "
            "for better figures"
        )
    return lines


def terminal_summary(s: CarbonSession, tr: pytest.TerminalReporter) -> None:
    out = s.outcome
    res = s.results

    def line(text: str, **markup: bool) -> None:
        tr.write_line(one_line(text), **markup)

    tr.write_sep("=", "carbon")
    line(session_line(s))
    advice = advice_line(s)
    if advice:
        line(advice)
    line(tests_line(s))
    outside = outside_line(s)
    if outside:
        line(outside)
    for text in model_lines(s):
        line(text)
    for n in out.notes + (out.measurement.notes if out.measurement and tr.verbosity > 0 else []):
        line(f"note: {n}")
    if s.opts.top is not None:
        rows = top_rows(s, s.opts.top)
        title = "all tests" if s.opts.top == 0 else f"top {s.opts.top}"
        tr.write_sep("-", f"carbon: {title} by energy")
        for e, when, t in rows:
            co2 = f" {format_co2e(e * s.g_per_j):>14}" if s.g_per_j is not None else ""
            line(
                f"{format_energy(e):>10}{co2}  {when:<8} {t.nodeid}"
                + (_flags(t) if when == "call" else "")
            )
    inc = res.inconclusive()
    if inc:
        tr.write_sep("-", "carbon: possibly over budget, not failed")
        for t in inc:
            line(f"{t.nodeid}: {format_energy(t.energy_j)} > {t.budget}{_flags(t, False)}")
    if out.compare_lines:
        tr.write_sep("-", "carbon: comparison")
        for text in out.compare_lines:
            line(text)
    if out.compare_failed:
        line(f"carbon: --carbon-compare-fail not checked: {out.compare_error}", red=True, bold=True)
    elif out.compare_error:
        line(f"carbon: {out.compare_error}", yellow=True)
    if out.regressions:
        line(f"carbon: energy regressed in {len(out.regressions)} test(s):", red=True, bold=True)
        for msg in out.regressions:
            line(f"  {msg}", red=True)
    for w in out.written:
        line(w)
    for err in out.output_errors:
        line(f"carbon: {err}", red=True, bold=True)
    if out.budget_over:
        line(out.budget_message, red=True, bold=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from .outputs import annotations

        for text in annotations(s):
            tr.write_line(text)  # escaped per GitHub's workflow-command rules


# Moved to .outputs (the JSON documents, annotations, the step summary); still read from here.
_MOVED = frozenset(
    {
        "annotations",
        "document",
        "environment",
        "markdown",
        "summary_document",
        "test_entry",
    }
)


__getattr__, __dir__ = _moved(globals(), dict.fromkeys(_MOVED, "outputs"))
