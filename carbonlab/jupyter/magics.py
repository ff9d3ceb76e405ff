"""``%%carbon`` (measure one cell, with options) and ``%carbon on|off|status|report|export``."""

from __future__ import annotations

import ast
import inspect
import keyword
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import MagicArgumentParser

from .extension import BudgetExceeded, CellRun, RunOptions

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from .extension import CarbonExtension

SUBCOMMANDS = ("on", "off", "status", "report", "export", "advise", "widget", "cluster")


def _cell_parser() -> MagicArgumentParser:
    p = MagicArgumentParser(prog="%%carbon", add_help=False)
    p.allow_abbrev = False  # "--lab" is not "--label": a typo must not change meaning
    p.add_argument("-l", "--label", help="name shown in the summary and stored in history")
    p.add_argument(
        "-b",
        "--budget",
        help="energy (2Wh, 500 J) or emissions (0.5gCO2e); over it shows a warning",
    )
    p.add_argument(
        "--strict", action="store_true", help="with --budget: raise after the cell ran over it"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="show no summary (still stored)")
    p.add_argument("-z", "--zone", help="grid zone for this cell (FR, US-CAL-CISO, aws:eu-west-3)")
    p.add_argument("-o", "--output", metavar="VAR", help="store the Measurement in VAR")
    return p


_CELL_PARSER = _cell_parser()
CELL_USAGE = (
    "%%carbon [--label NAME] [--budget 2Wh|0.5gCO2e [--strict]] [--quiet] [--zone Z] [-o VAR]"
)
# Options that take a value, by every spelling: given twice, which one counts would be a guess.
_VALUED = {"-l": "--label", "-b": "--budget", "-z": "--zone", "-o": "--output"}


def split_line(line: str, prog: str) -> list[str]:
    """A magic's line split as a shell would (``--budget "500 J"``, ``--label 'my run'``); a
    UsageError for unbalanced quotes."""
    from IPython.utils.process import arg_split

    try:
        return arg_split(line, posix=True, strict=True)
    except ValueError as e:
        raise UsageError(
            f"{prog} {line}: {str(e).lower()} (quote a value with spaces: --label 'my run')"
        ) from None


def _refuse_repeats(argv: list[str]) -> None:
    seen: set[str] = set()
    for a in argv:
        if a == "--":
            break
        name = a.split("=", 1)[0] if a.startswith("--") else a[:2]
        name = _VALUED.get(name, name)
        if name in _VALUED.values():
            if name in seen:
                raise UsageError(f"%%carbon: {name} given twice; give it once")
            seen.add(name)


def parse_cell_options(line: str, settings: Settings | None = None) -> RunOptions:
    """Parse and check ``%%carbon`` options; raise UsageError naming the bad value.

    >>> parse_cell_options("--label train --budget 2Wh --strict").budget.value
    7200.0
    """
    argv = split_line(line, "%%carbon")
    _refuse_repeats(argv)
    try:
        ns = _CELL_PARSER.parse_args(argv)
    except UsageError as e:  # argparse's message names the option ("argument -b/--budget: ...")
        raise UsageError(f"%%carbon: {e}; usage: {CELL_USAGE}") from None
    for name, value, what in (
        ("--label", ns.label, "a name, e.g. --label 'my run'"),
        ("--zone", ns.zone, "a grid zone, e.g. --zone FR"),
    ):
        if value is not None and not value.strip():
            raise UsageError(f"%%carbon {name} {value!r}: expected {what}")
    opts = RunOptions(label=ns.label, strict=ns.strict, quiet=ns.quiet, zone=ns.zone)
    if ns.budget is not None:
        from ..units import UnitError, parse_budget

        try:
            opts.budget = parse_budget(ns.budget)
        except UnitError as e:
            raise UsageError(f"%%carbon --budget: {e}") from None
    if opts.strict and opts.budget is None:
        raise UsageError("%%carbon --strict needs a --budget (e.g. --budget 2Wh --strict)")
    if ns.output is not None:
        if not ns.output.isidentifier() or keyword.iskeyword(ns.output):
            raise UsageError(f"%%carbon -o/--output {ns.output!r}: expected a Python variable name")
        opts.output = ns.output
    if ns.zone is not None:
        from .. import footprint
        from ..config import ConfigError, Settings, with_overrides

        try:
            s = with_overrides(settings or Settings(), zone=ns.zone)
            footprint.validate(s)
        except ConfigError as e:
            raise UsageError(f"%%carbon --zone: {e}") from None
        opts.settings = s if settings is not None else None
    return opts


class _Outcome:
    """What post_run_cell would have seen, for a body the magic ran itself."""

    def __init__(self, error: BaseException | None) -> None:
        self.error_before_exec = None
        self.error_in_exec = error


@magics_class
class CarbonMagics(Magics):
    def __init__(self, shell: Any, ext: CarbonExtension) -> None:
        super().__init__(shell)
        self.ext = ext

    @no_var_expand
    @line_cell_magic
    def carbon(self, line: str = "", cell: str | None = None) -> Any:
        """Energy and CO2e of notebook cells, with how each figure was obtained.

        Cell magic, on the first line of a cell::

          %%carbon [--label NAME] [--budget 2Wh|0.5gCO2e [--strict]] [--quiet] [--zone Z] [-o VAR]

        runs the cell (its last expression still displays; top-level ``await`` works as in any
        cell), measures it and shows energy, CO2e, duration, the energy of each component with its
        method, an everyday equivalent, and the change against the previous run of the same cell.

          -l, --label NAME   name in the summary and in history
          -b, --budget B     energy (J, kJ, Wh, kWh; "500 mWh") or emissions (mg, g, kg + CO2e);
                             over it the summary shows a warning
          --strict           with --budget: the cell fails (BudgetExceeded) after it ran over it
          -q, --quiet        no summary (still measured and stored; a budget warning still shows)
          -z, --zone Z       grid zone for this cell (FR, DE, US-CAL-CISO, aws:eu-west-3)
          -o, --output VAR   store the Measurement in VAR

        A cell that raises is still measured, stored and shown; the exception propagates as usual.

        Line magic::

          %carbon on [--threshold 5J]   measure every cell (the default once loaded); show a summary
                                        for cells that used at least the threshold
          %carbon off                   stop measuring every cell (%%carbon still works)
          %carbon status                meters and methods, zone, intensity source, PUE, history file
          %carbon report [--all]        totals and a chart (energy per cell run by component, power
                                        during the last run); --all: every notebook
          %carbon report --paper [--format markdown|latex|model-card|json] [-o PATH]
                                        a paper's or model card's energy and carbon with methods
                                        and ranges (docs/report.md)
          %carbon export PATH [--all]   write history to PATH (.csv or .json)
          %carbon advise [--hours N] [--window H]
                                        when this notebook's last hour of measured work would
                                        emit least in the next N hours (default 24), from the
                                        configured provider's forecast; without one it says so
          %carbon widget [on|off] [--sidebar full|compact|off] [--after SECONDS]
                                        the in-cell live widget (Jupyter kernels with ipywidgets):
                                        on or off, its size while the carbonlab sidebar is active,
                                        and after how long automatic mode shows it (default 2 s)

        History: ``carbonlab.history()`` returns a DataFrame, one row per measured cell run.
        """
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    # -- %%carbon, when the transformer left the cell to us ------------------------------------
    def _cell(self, line: str, cell: str) -> Any:
        ext = self.ext
        opts = parse_cell_options(line, settings=ext.settings)
        shell = self.shell
        # As IPython's %%time: transform, parse, split off a trailing expression so it displays.
        src = shell.transform_cell(cell)
        tree = shell.transform_ast(shell.compile.ast_parse(src))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        # Compiled as IPython compiles cells (top-level await allowed) so that an await is found
        # here and reported, instead of a SyntaxError that blames the user's code.
        with shell.compile.extra_flags(ast.PyCF_ALLOW_TOP_LEVEL_AWAIT):
            code = shell.compile(ast.Module(tree.body, []), "<carbon cell>", "exec")
            code_last = shell.compile(last, "<carbon cell>", "eval") if last else None
        if any(c is not None and c.co_flags & inspect.CO_COROUTINE for c in (code, code_last)):
            raise UsageError(
                "%%carbon: top-level await works when %%carbon is the first line of a cell and is "
                "not followed by another cell magic"
            )
        frame = ext._frames[-1] if ext._frames else None
        raw = (getattr(frame.info, "raw_cell", None) if frame else None) or cell
        run: CellRun = ext.begin(opts, frame.info if frame else None, raw, executing=True)
        glob = shell.user_ns
        err: BaseException | None = None
        out = None
        try:
            exec(code, glob)
            if code_last is not None:
                out = eval(code_last, glob)
        except BaseException as e:
            err = e
        ext.finish(run, _Outcome(err))
        if frame is not None:
            frame.done.append(run)  # shown by post_run_cell, under the cell's output
        else:
            ext.report(run)
        if err is not None:
            raise err
        if run.over_budget and opts.strict:
            from .extension import _budget_error

            raise _budget_error(run)
        return out

    # -- %carbon ... ---------------------------------------------------------------------------
    def _line(self, line: str) -> Any:
        args = split_line(line, "%carbon")
        if not args:
            return self._status()
        sub, rest = args[0], args[1:]
        if sub.startswith("-"):
            raise UsageError(
                f"%carbon {line}: options such as {sub} go on a %%carbon cell magic (first line of "
                f"a cell); %carbon takes one of: {', '.join(SUBCOMMANDS)}"
            )
        if sub == "on":
            return self._on(rest)
        if sub == "off":
            _no_args("off", rest)
            self.ext.automatic = False
            print("carbonlab: automatic measurement off (%%carbon still measures a cell)")
            return None
        if sub == "status":
            _no_args("status", rest)
            return self._status()
        if sub == "report":
            return self._report(rest)
        if sub == "export":
            return self._export(rest)
        if sub == "advise":
            return self._advise(rest)
        if sub == "widget":
            return self._widget(rest)
        if sub == "cluster":
            return self._cluster(rest)
        raise UsageError(
            f"%carbon: unknown command {sub!r}; use one of: on, off, status, report, export PATH, "
            "advise, widget, cluster"
        )

    def _cluster(self, rest: list[str]) -> None:
        """%carbon cluster [dask|ray|off|status]: see carbonlab.cluster.cluster_command."""
        from .. import cluster

        try:
            print(cluster.cluster_command(rest))
        except ValueError as e:
            raise UsageError(str(e)) from None

    def _on(self, rest: list[str]) -> None:
        ext = self.ext
        if rest:
            if len(rest) == 2 and rest[0] == "--threshold":
                value = rest[1]
            elif len(rest) == 1 and rest[0].startswith("--threshold="):
                value = rest[0].split("=", 1)[1]
            else:
                raise UsageError(
                    f"%carbon on {' '.join(rest)}: expected %carbon on [--threshold 5J]"
                )
            from ..units import UnitError, parse_energy

            try:
                ext.threshold_j = parse_energy(value)
            except UnitError as e:
                raise UsageError(f"%carbon on --threshold: {e}") from None
        ext.automatic = True
        from ..units import format_energy

        print(
            "carbonlab: measuring every cell; a summary shows for cells that used at least "
            f"{format_energy(ext.effective_threshold_j())}"
        )

    def _status(self) -> Any:
        from IPython.display import display

        from .display import TextBlock

        display(TextBlock(status_text(self.ext)))

    def _history(self, rest: list[str]) -> tuple[Any, list[str], bool]:
        from ..store import StoreError, history

        every = "--all" in rest
        rest = [a for a in rest if a != "--all"]
        try:
            df = history(
                notebook=None if every else self.ext.notebook,
                all_notebooks=every,
                path=self.ext.store.path,
            )
        except StoreError as e:
            raise UsageError(f"carbonlab: {e}") from None
        return df, rest, every

    def _report(self, rest: list[str]) -> None:
        if "--paper" in rest:
            return self._paper_report([a for a in rest if a != "--paper"])
        from IPython.display import display

        from .display import TextBlock, chart_bundle, report_chart, timeline_rows, totals_text

        df, rest, every = self._history(rest)
        if rest:
            raise UsageError(f"%carbon report {' '.join(rest)}: expected %carbon report [--all]")
        ext = self.ext
        display(TextBlock(totals_text(df, "every notebook" if every else ext.notebook)))
        if df.empty:
            return
        timeline: list[dict[str, Any]] = []
        last = ext.last
        label = ""
        if last is not None and last.measurement is not None and last.t1 is not None:
            from .. import runtime

            rt = runtime.peek()
            label = last.measurement.label
            if rt is not None:
                kinds = [m.kind for m in rt.sampler.meters]
                timeline = timeline_rows(list(rt.sampler.ring), kinds, last.window.t0, last.t1)
            if len({r["t_s"] for r in timeline}) < 2:
                timeline = average_timeline(last.measurement)
        chart = report_chart(df, timeline, label)
        text = "[chart: energy per cell run by component; power during the last run]"
        display(chart_bundle(chart, text), raw=True)

    def _paper_report(self, rest: list[str]) -> None:
        """``%carbon report --paper [--format F] [-o PATH] [--label L] [--since T] [--until T]
        [--compare-zone Z] [--training-type T] [--all]``: carbonlab.report over this notebook's
        history."""
        from ..report import ReportError, Selection, parse_when, render, report_for

        p = MagicArgumentParser(prog="%carbon report --paper", add_help=False)
        p.allow_abbrev = False
        p.add_argument("-f", "--format", default="markdown")
        p.add_argument("-o", "--output")
        p.add_argument("--label", action="append", default=[])
        p.add_argument("--since")
        p.add_argument("--until")
        p.add_argument("--compare-zone", action="append", default=[])
        p.add_argument("--training-type")
        p.add_argument("--title")
        p.add_argument("--all", action="store_true")
        try:
            ns = p.parse_args(rest)
        except (UsageError, SystemExit, ValueError) as e:
            raise UsageError(
                f"%carbon report --paper {' '.join(rest)}: {e}; expected [--format "
                "markdown|latex|model-card|json] [-o PATH] [--label L] [--since T] [--until T] "
                "[--compare-zone Z] [--training-type T] [--all]"
            ) from None
        ext = self.ext
        ext.store.flush()
        try:
            sel = Selection(
                history=str(ext.store.path),
                notebook=None if ns.all else ext.notebook,
                labels=list(ns.label),
                since=None if ns.since is None else parse_when(ns.since, "--since"),
                until=None if ns.until is None else parse_when(ns.until, "--until"),
            )
            report = report_for(
                sel,
                compare_zones=ns.compare_zone,
                training_type=ns.training_type,
                title=ns.title,
            )
            text = render(report, ns.format)
        except ReportError as e:
            raise UsageError(f"%carbon report --paper: {e}") from None
        if ns.output is None:
            from IPython.display import Markdown, display

            if ns.format in ("markdown", "model-card"):
                display(Markdown(text))
            else:
                print(text)
            return None
        path = Path(ns.output).expanduser()
        try:
            path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as e:
            raise UsageError(
                f"%carbon report --paper: cannot write {path}: {e.strerror or e}"
            ) from None
        print(f"carbonlab: wrote the {ns.format} report of {len(report.runs)} run(s) to {path}")
        return None

    def _export(self, rest: list[str]) -> None:
        args = [a for a in rest if a != "--all"]
        if len(args) != 1:
            raise UsageError(
                "%carbon export: expected %carbon export PATH [--all] (PATH: .csv or .json)"
            )
        path = Path(args[0]).expanduser()
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".json"):
            raise UsageError(f"%carbon export {args[0]}: the file must end in .csv or .json")
        # Checked before reading history: a path that cannot be written is said at once.
        parent = path.parent
        if not parent.is_dir():
            what = "is not a directory" if parent.exists() else "does not exist"
            raise UsageError(f"%carbon export {args[0]}: the directory {parent} {what}")
        if path.is_dir():
            raise UsageError(f"%carbon export {args[0]}: {path} is a directory")
        df, _, _ = self._history(rest)
        try:
            if suffix == ".csv":
                df.to_csv(path, index=False)
            else:
                df.to_json(path, orient="records", date_format="iso", indent=1)
        except OSError as e:
            raise UsageError(
                f"%carbon export {args[0]}: cannot write {path}: {e.strerror or e}"
            ) from None
        print(f"carbonlab: wrote {len(df)} runs to {path}")

    # -- %carbon advise ---------------------------------------------------------------------------
    def _advise(self, rest: list[str]) -> None:
        from IPython.display import display

        from .display import TextBlock

        hours, window = parse_advise_options(rest)
        display(TextBlock(advise_text(self.ext, hours=hours, window_h=window)))

    # -- %carbon widget ---------------------------------------------------------------------------
    def _widget(self, rest: list[str]) -> None:
        w = self.ext.widgets
        if w is None:
            if rest:
                raise UsageError(
                    "%carbon widget: the live widget needs a Jupyter kernel (this is terminal "
                    "IPython, which shows the static summary)"
                )
            print("carbonlab: in-cell live widget: off (not in a Jupyter kernel)")
            return
        from .widget import WidgetConfigError, parse_after, parse_sidebar

        p = MagicArgumentParser(prog="%carbon widget", add_help=False)
        p.allow_abbrev = False
        p.add_argument("state", nargs="?", choices=("on", "off"))
        p.add_argument("--sidebar", help="full, compact or off")
        p.add_argument("--after", help="seconds")
        try:
            ns = p.parse_args(rest)
            c = w.config
            if ns.sidebar is not None:
                c.sidebar = parse_sidebar(ns.sidebar, "--sidebar")
                c.sources["sidebar"] = "%carbon widget"
            if ns.after is not None:
                c.after_s = parse_after(ns.after, "--after")
                c.sources["after_s"] = "%carbon widget"
            if ns.state is not None:
                c.enabled = ns.state == "on"
                c.sources["enabled"] = "%carbon widget"
                if c.enabled:
                    w.frontend_without_widgets = False  # the user says this frontend renders them
        except WidgetConfigError as e:
            raise UsageError(f"%carbon widget: {e}") from None
        print(f"carbonlab: {w.status_line()}")


def parse_advise_options(rest: list[str]) -> tuple[float, float | None]:
    """``--hours N`` (horizon, default 24) and ``--window H`` (default: one hour of work)."""
    p = MagicArgumentParser(prog="%carbon advise", add_help=False)
    p.allow_abbrev = False
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--window", type=float, default=None)
    try:
        ns = p.parse_args(rest)
    except UsageError as e:
        raise UsageError(f"{e}; expected %carbon advise [--hours N] [--window H]") from None
    for name, v in (("--hours", ns.hours), ("--window", ns.window)):
        if v is not None and not 0 < v <= 168:  # also refuses NaN
            raise UsageError(f"%carbon advise {name} {v:g}: expected hours between 0 and 168")
    if ns.window is not None and ns.window > ns.hours:
        raise UsageError(
            f"%carbon advise: --window {ns.window:g} is longer than --hours {ns.hours:g}"
        )
    return ns.hours, ns.window


# How to get a forecast, for a notebook with none (docs/intensity.md has the details).
NO_FORECAST_HELP = (
    "  To get advice, configure a live carbon-intensity provider with a forecast, e.g.\n"
    "    CARBONLAB_INTENSITY=uk-carbon-intensity:GB   (Great Britain and its regions; no key)\n"
    "    CARBONLAB_INTENSITY=electricitymaps:FR       (with CARBONLAB_ELECTRICITYMAPS_TOKEN)\n"
    "    CARBONLAB_INTENSITY=watttime:CAISO_NORTH     (marginal signal; WattTime credentials)\n"
    '  in the kernel\'s environment, or intensity = "uk-carbon-intensity:GB" under\n'
    "  [tool.carbonlab] in pyproject.toml; then restart the kernel (settings are read when\n"
    "  carbonlab loads). See docs/intensity.md."
)


def recent_work(ext: CarbonExtension, hours: float = 1.0, now: float | None = None) -> dict:
    """This notebook's measured runs that started in the last ``hours`` (wall clock): count,
    energy, CO2e, duration."""
    import time
    from datetime import datetime, timezone

    t = time.time() if now is None else now
    since = datetime.fromtimestamp(t - hours * 3600.0, timezone.utc)
    n, energy, co2, duration = 0, 0.0, 0.0, 0.0
    for r in ext.store.rows(ext.notebook):
        try:
            started = datetime.fromisoformat(str(r["started_at"]).replace("Z", "+00:00"))
        except ValueError:
            continue
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        if started < since:
            continue
        n += 1
        energy += float(r["energy_j"] or 0.0)
        co2 += float(r["co2e_g"] or 0.0)
        duration += float(r["duration_s"] or 0.0)
    return {"runs": n, "energy_j": energy, "co2e_g": co2, "duration_s": duration}


def advise_text(ext: CarbonExtension, *, hours: float = 24.0, window_h: float | None = None) -> str:
    """``%carbon advise``: the advice sentence for this notebook's last hour of measured work, or
    plainly why there is none (never a guess)."""
    from .. import footprint, runtime
    from ..config import ConfigError
    from ..footprint import providers
    from ..footprint.providers.text import age_text
    from ..store import StoreError
    from ..units import format_co2e, format_energy, format_intensity

    settings = runtime.get().settings
    lines = [f"carbonlab advice · {ext.notebook}"]
    try:
        work = recent_work(ext)
    except StoreError as e:  # advice does not need the history: say so and go on without it
        lines.append(f"  {e}")
        work = {"runs": 0, "energy_j": 0.0, "co2e_g": 0.0, "duration_s": 0.0}
    if work["runs"]:
        lines.append(
            f"  measured in the last hour: {work['runs']} cell run{'s' if work['runs'] > 1 else ''}, "
            f"{format_energy(work['energy_j'])}, {format_co2e(work['co2e_g'])}"
        )
        energy: float | None = work["energy_j"]
        subject = "this notebook's last hour of work"
    else:
        lines.append("  no measured cell run in this notebook in the last hour")
        energy = None
        subject = f"{window_h or 1:g} h of work"
    try:
        d = footprint.current_intensity(settings, wait_s=providers.wait_time(settings))
        advice = footprint.advice_for(
            energy, settings, window_h=window_h, horizon_h=hours, subject=subject
        )
    except ConfigError as e:
        lines.append(f"  no advice: {e}")
        return "\n".join(lines)
    where = f"{d.get('name') or d.get('zone')} [{d.get('zone')}]"
    if advice is not None:
        lines.append(f"  {advice.sentence}")
        fetched = f", fetched {d.get('at')} ({age_text(d.get('age_s'))} ago)" if d.get("at") else ""
        lines.append(f"  grid now: {format_intensity(float(d['gco2e_per_kwh']))}, {where}{fetched}")
        return "\n".join(lines)
    provider = d.get("provider")
    if provider in (None, "static"):
        lines.append(
            f"  no advice: no carbon-intensity forecast is configured. CO2e uses the static "
            f"figure for {where} ({d.get('source')}), which says nothing about when to run."
        )
        lines.append(NO_FORECAST_HELP)
        return "\n".join(lines)
    fc = d.get("forecast")
    if fc:
        length = f"{window_h:g} h" if window_h else "1 h"
        lines.append(
            f"  no advice: the {provider} forecast ({fc['periods']} periods, {fc['start']} to "
            f"{fc['end']}) covers no whole {length} window in the next {hours:g} h"
        )
        return "\n".join(lines)
    why = d.get("forecast_note") or d.get("fault")
    fb = d.get("fallback")
    if not why and isinstance(fb, dict):
        why = fb.get("reason")
    lines.append(
        f"  no advice: {provider} has given no forecast"
        + (f" ({why})" if why else " yet (no reading so far; try again in a moment)")
    )
    if d.get("next_try_at"):
        lines.append(f"  next try after {d['next_try_at']}")
    return "\n".join(lines)


def _no_args(sub: str, rest: list[str]) -> None:
    if rest:
        raise UsageError(f"%carbon {sub} takes no arguments (got {' '.join(rest)!r})")


def average_timeline(m: Any) -> list[dict[str, Any]]:
    """A flat line at each component's average power, when the run was too short for samples."""
    if m.duration_s <= 0:
        return []
    rows = []
    for kind, e in m.by_kind().items():
        p = e / m.duration_s
        rows += [
            {"t_s": 0.0, "kind": f"{kind} (average)", "power_w": p},
            {"t_s": round(m.duration_s, 3), "kind": f"{kind} (average)", "power_w": p},
        ]
    return rows


def history_status(ext: CarbonExtension) -> str:
    """The ``history:`` line of ``%carbon status`` (from memory: never waits on the file)."""
    s = ext.store
    line = f"history: {s.path} ({ext.runs_measured} runs measured in this session"
    fault = s.fault
    if fault is not None:
        return line + f")\n  ⚠ {fault.text()}"
    if s.pending:
        line += f", {s.pending} waiting to be written"
        if s.last_error:
            line += f": {s.last_error}"
    return line + ")"


def status_text(ext: CarbonExtension) -> str:
    """``%carbon status``: what is measured, how, and where it goes."""
    from .. import __version__, runtime
    from ..summary import devices_text, intensity_text
    from ..units import format_energy
    from .comm import TARGET_NAME

    rt = runtime.get()
    s = rt.settings
    thr = ext.effective_threshold_j()
    thr_src = "%carbon on --threshold" if ext.threshold_j is not None else s.source("threshold_j")
    lines = [
        f"carbonlab {__version__}",
        "automatic measurement: "
        + (
            f"on (a summary shows for cells of at least {format_energy(thr)}; {thr_src})"
            if ext.automatic
            else "off (%carbon on to resume; %%carbon still measures a cell)"
        ),
        f"notebook: {ext.notebook} (from {ext.notebook_source})",
        history_status(ext),
        "live sidebar: "
        + (
            f"comm target {TARGET_NAME!r}, one comm per cell run"
            if ext.in_kernel
            else "off (not in a Jupyter kernel)"
        ),
        ext.widgets.status_line()
        if ext.widgets is not None
        else "in-cell live widget: off (not in a Jupyter kernel: static summaries)",
    ]
    lines.append(devices_text(rt.meter_set.describe()))
    try:
        from .. import footprint

        intensity, why = footprint.intensity.current(s.zone, s.intensity)
        pue = footprint.factors.pue(s, intensity)
        lines.append(f"zone: {s.zone or 'none set'} ({s.source('zone')})")
        lines.append(f"intensity: {intensity_text(intensity.to_dict())}")
        if why:
            lines.append(f"  note: {why}")
        lines.append(pue.note)  # "PUE 1.0 (default: ...)"
    except Exception as e:  # footprint failures must not hide the rest of the status
        lines.append(f"footprint: unavailable ({e})")
    for err in ext.errors:
        lines.append(f"error: {err}")
    return "\n".join(lines)


__all__ = [
    "BudgetExceeded",
    "CarbonMagics",
    "advise_text",
    "parse_advise_options",
    "parse_cell_options",
    "status_text",
]
