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

SUBCOMMANDS = ("on", "off", "status", "report", "export")


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


def parse_cell_options(line: str, settings: Settings | None = None) -> RunOptions:
    """Parse and check ``%%carbon`` options; raise UsageError naming the bad value.

    >>> parse_cell_options("--label train --budget 2Wh --strict").budget.value
    7200.0
    """
    try:
        ns = _CELL_PARSER.parse_argstring(line)
    except ValueError as e:  # unbalanced quotes
        raise UsageError(f"%%carbon {line}: {e}") from None
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
            raise UsageError(f"%%carbon -o {ns.output!r}: expected a Python variable name")
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
          %carbon export PATH [--all]   write history to PATH (.csv or .json)

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
        from IPython.utils._process_common import arg_split

        try:
            args = arg_split(line, strict=True)
        except ValueError as e:
            raise UsageError(f"%carbon {line}: {e}") from None
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
        raise UsageError(
            f"%carbon: unknown command {sub!r}; use one of: on, off, status, report, export PATH"
        )

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
        from ..store import history

        every = "--all" in rest
        rest = [a for a in rest if a != "--all"]
        df = history(
            notebook=None if every else self.ext.notebook,
            all_notebooks=every,
            path=self.ext.store.path,
        )
        return df, rest, every

    def _report(self, rest: list[str]) -> None:
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

    def _export(self, rest: list[str]) -> None:
        df, rest, _ = self._history(rest)
        if len(rest) != 1:
            raise UsageError(
                "%carbon export: expected %carbon export PATH [--all] (PATH: .csv or .json)"
            )
        path = Path(rest[0]).expanduser()
        suffix = path.suffix.lower()
        if suffix == ".csv":
            df.to_csv(path, index=False)
        elif suffix == ".json":
            df.to_json(path, orient="records", date_format="iso", indent=1)
        else:
            raise UsageError(f"%carbon export {rest[0]}: the file must end in .csv or .json")
        print(f"carbonlab: wrote {len(df)} runs to {path}")


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
        f"history: {ext.store.path} ({ext.runs_measured} runs measured in this session"
        + (f", {ext.store.pending} waiting to be written" if ext.store.pending else "")
        + ")",
        "live sidebar: "
        + (
            f"comm target {TARGET_NAME!r}, one comm per cell run"
            if ext.in_kernel
            else "off (not in a Jupyter kernel)"
        ),
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
    if ext.store.last_error:
        lines.append(f"history error: {ext.store.last_error}")
    for err in ext.errors:
        lines.append(f"error: {err}")
    return "\n".join(lines)


__all__ = ["BudgetExceeded", "CarbonMagics", "parse_cell_options", "status_text"]
