"""``%%carbon`` (measure one cell, with options) and ``%carbon on|off|zone|status|report|export``.

:class:`CarbonMagics` is an IPython ``Configurable``: its traits (``threshold``, ``zone``,
``intensity``, ``pue``, ``automatic``, ``widget``, ``widget_sidebar``, ``widget_after``) are set in
``ipython_config.py`` (``c.CarbonMagics.zone = "FR"``) or in a session (``%config
CarbonMagics.threshold = "5 J"``). Precedence, highest first: an option on a cell (``%%carbon
--zone``) > the session's IPython configuration (``%carbon zone``, ``%config``, ``ipython_config.py``)
> ``CARBONLAB_*`` environment variables > ``[tool.carbonlab]`` in pyproject.toml > defaults.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import MagicArgumentParser, argument, kwds, magic_arguments
from traitlets import Bool, Float, TraitError, Unicode, Union, observe, validate

from .extension import BudgetExceeded, CellRun, RunOptions

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from .extension import CarbonExtension

SUBCOMMANDS = ("on", "off", "zone", "status", "report", "export", "advise", "widget", "cluster")


def _sub_parser(name: str, description: str) -> MagicArgumentParser:
    p = MagicArgumentParser(prog=f"carbon {name}", add_help=False, description=description)
    p.allow_abbrev = False
    return p


def _usage(p: MagicArgumentParser) -> str:
    """A parser's one-line usage, as IPython's help formatter writes it, without the code-block
    prefix: ``%carbon zone [zone]``."""
    return " ".join(p.format_usage().split("::", 1)[-1].split())


# The line magic's subcommands: their parsers give both the usage in %carbon? and the parsing.
_ON_PARSER = _sub_parser(
    "on",
    "measure every cell (the default once loaded); show a summary for cells that used at least "
    "the threshold",
)
_ON_PARSER.add_argument("--threshold", metavar="ENERGY", help="energy, e.g. 5J or '0.5 Wh'")
_ZONE_PARSER = _sub_parser(
    "zone",
    "switch the grid zone for this session (no restart); without ZONE: the current zone and "
    "where it comes from. `carbonlab zones QUERY` lists the zones",
)
_ZONE_PARSER.add_argument(
    "zone", nargs="?", metavar="ZONE", help="FR, US-CAL-CISO, aws:eu-west-3, ..."
)
_ADVISE_PARSER = _sub_parser(
    "advise",
    "when this notebook's last hour of measured work would emit least in the next N hours "
    "(default 24), from the configured provider's forecast; without one it says so",
)
_ADVISE_PARSER.add_argument("--hours", type=float, default=24.0, metavar="N")
_ADVISE_PARSER.add_argument("--window", type=float, default=None, metavar="H")
_WIDGET_PARSER = _sub_parser(
    "widget",
    "the in-cell live widget (Jupyter kernels with ipywidgets): on or off, its size while the "
    "carbonlab sidebar is active, and after how long automatic mode shows it (default 2 s)",
)
_WIDGET_PARSER.add_argument("state", nargs="?", choices=("on", "off"))
_WIDGET_PARSER.add_argument("--sidebar", help="full, compact or off")
_WIDGET_PARSER.add_argument("--after", metavar="SECONDS", help="seconds")
_LINE_HELP: list[tuple[str, str]] = [
    (_usage(p), p.description or "") for p in (_ON_PARSER, _ZONE_PARSER)
]
_LINE_HELP += [
    ("%carbon off", "stop measuring every cell (%%carbon still works)"),
    ("%carbon status", "meters and methods, zone, intensity source, PUE, history file"),
    (
        "%carbon report [--all]",
        "totals and a chart (energy per cell run by component, power during the last run); "
        "--all: every notebook",
    ),
    (
        "%carbon report --paper [--format markdown|latex|model-card|json] [-o PATH]",
        "a paper's or model card's energy and carbon with methods and ranges (docs/report.md)",
    ),
    ("%carbon export PATH [--all]", "write history to PATH (.csv or .json)"),
]
_LINE_HELP += [(_usage(p), p.description or "") for p in (_ADVISE_PARSER, _WIDGET_PARSER)]
_LINE_HELP.append(("%carbon cluster [dask|ray|off|status]", "measure a Dask or Ray cluster too"))


def _wrap(text: str, indent: str, width: int = 96) -> str:
    import textwrap

    return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent)


_DESCRIPTION = (
    "Energy and CO2e of notebook cells, with how each figure was obtained.\n\n"
    "Cell magic, on the first line of a cell: runs the cell (its last expression still displays;\n"
    "top-level await works as in any cell), measures it and shows energy, CO2e, duration, the\n"
    "energy of each component with its method, an everyday equivalent, and the change against\n"
    "the previous run of the same cell. A cell that raises is still measured, stored and shown;\n"
    "the exception propagates as usual. Its options are below.\n\n"
    "Line magic:\n\n"
    + "\n".join(f"  {u}\n{_wrap(d, '      ')}" for u, d in _LINE_HELP)
    + "\n\nSettings for the session or ipython_config.py: %config CarbonMagics (list them),\n"
    '%config CarbonMagics.threshold = "5 J", c.CarbonMagics.zone = "FR".\n\n'
    "History: carbonlab.history() returns a DataFrame, one row per measured cell run."
)


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


# Options that take a value, by every spelling: given twice, which one counts would be a guess.
_VALUED = {"-l": "--label", "-b": "--budget", "-z": "--zone", "-o": "--output"}


def _cell_usage() -> str:
    return _usage(_CELL_PARSER)


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
        raise UsageError(f"%%carbon: {e}; usage: {_cell_usage()}") from None
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


# Where a trait's value came from, as %carbon status says it.
SOURCE_CONFIG = "IPython config (ipython_config.py or --CarbonMagics.*)"
SOURCE_SESSION = "%config CarbonMagics"
SOURCE_ZONE_MAGIC = "%carbon zone"
# The settings (carbonlab.config.Settings fields) a trait of the same name overrides.
_SETTINGS_TRAITS = ("zone", "intensity", "pue")


@magics_class
class CarbonMagics(Magics):
    """carbonlab's magics and their settings (``%config CarbonMagics`` lists them)."""

    threshold = Union(
        [Float(), Unicode()],
        default_value=None,
        allow_none=True,
        help="Automatic mode shows a summary for cells that used at least this energy: "
        "'5 J', '0.5 Wh', '2 kJ' (a bare number is joules). Default: the threshold_j setting "
        "(1 J).",
    ).tag(config=True)
    zone = Unicode(
        None,
        allow_none=True,
        help="Grid zone for CO2e: a country code (FR), an Electricity Maps zone (US-CAL-CISO) or "
        "a cloud region (aws:eu-west-3); `carbonlab zones QUERY` lists them. Also %carbon zone.",
    ).tag(config=True)
    intensity = Unicode(
        None,
        allow_none=True,
        help="Carbon-intensity provider: static, uk-carbon-intensity:GB, electricitymaps:FR, "
        "watttime:CAISO_NORTH (credentials come from the environment).",
    ).tag(config=True)
    pue = Float(
        None,
        allow_none=True,
        help="Power usage effectiveness of the data centre, 1.0 to 5.0.",
    ).tag(config=True)
    automatic = Bool(
        True, help="Measure every cell (%carbon on/off); False: only %%carbon cells."
    ).tag(config=True)
    widget = Unicode(
        None,
        allow_none=True,
        help="The in-cell live widget: 'auto' (shown for cells that run long enough) or 'off'.",
    ).tag(config=True)
    widget_sidebar = Unicode(
        None,
        allow_none=True,
        help="The live widget's size while the carbonlab sidebar is active: full, compact, off.",
    ).tag(config=True)
    widget_after = Float(
        None,
        allow_none=True,
        help="Seconds a cell runs before automatic mode shows the live widget (0 to 60).",
    ).tag(config=True)

    def __init__(self, shell: Any, ext: CarbonExtension) -> None:
        self.ext = ext
        self._ready = False  # observers apply changes once the configured values are applied
        self._source = SOURCE_SESSION
        super().__init__(shell)  # loads c.CarbonMagics.* from the shell's config (validated)
        for name in self.trait_names(config=True):
            if name in self.config.get("CarbonMagics", {}):
                self._apply(name, getattr(self, name), SOURCE_CONFIG)
        self._ready = True

    # -- traits: validated when set (a TraitError naming the trait and the accepted form) ---------
    @staticmethod
    def _bad(name: str, value: Any, expected: str) -> TraitError:
        return TraitError(f"CarbonMagics.{name} = {value!r}: expected {expected}")

    @validate("threshold")
    def _check_threshold(self, proposal: Any) -> Any:
        v = proposal["value"]
        if v is None:
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if math.isfinite(v) and v >= 0:
                return float(v)
        elif isinstance(v, str):
            from ..units import UnitError, parse_energy

            try:
                return parse_energy(v)
            except UnitError:
                pass
        raise self._bad("threshold", v, "an energy such as '5 J', '0.5 Wh' or '2 kJ'")

    @validate("zone", "intensity", "pue")
    def _check_setting(self, proposal: Any) -> Any:
        name, v = proposal["trait"].name, proposal["value"]
        if v is None:
            return v
        from .. import footprint
        from ..config import ConfigError, with_overrides

        try:
            s = with_overrides(self.ext.settings, **{name: v})
            footprint.validate(s)
        except ConfigError as e:
            raise TraitError(f"CarbonMagics.{name} = {v!r}: {e}") from None
        return getattr(s, name)

    @validate("widget", "widget_sidebar", "widget_after")
    def _check_widget(self, proposal: Any) -> Any:
        name, v = proposal["trait"].name, proposal["value"]
        if v is None:
            return v
        from .widget import SIDEBAR_MODES, WidgetConfigError, parse_after, parse_enabled

        try:
            if name == "widget":
                parse_enabled(v, "CarbonMagics.widget")
                return v.strip().lower()
            if name == "widget_sidebar":
                if v.strip().lower() not in SIDEBAR_MODES:
                    raise WidgetConfigError(f"one of {', '.join(SIDEBAR_MODES)}")
                return v.strip().lower()
            return parse_after(str(v), "CarbonMagics.widget_after")
        except WidgetConfigError as e:
            raise self._bad(name, v, str(e).split("expected ", 1)[-1]) from None

    @observe(
        "threshold",
        "zone",
        "intensity",
        "pue",
        "automatic",
        "widget",
        "widget_sidebar",
        "widget_after",
    )
    def _changed(self, change: Any) -> None:
        if self._ready:
            self._apply(change["name"], change["new"], self._source)

    def _apply(self, name: str, value: Any, source: str) -> None:
        """Make a trait's value the session's setting (or, set to None, give it back to the
        environment, pyproject.toml or the default)."""
        ext = self.ext
        if name == "threshold":
            ext.threshold_j = value
            ext.threshold_source = source if value is not None else None
        elif name == "automatic":
            ext.automatic = bool(value)
        elif name in _SETTINGS_TRAITS:
            from .. import config, runtime

            rt = runtime.get()
            if value is None:  # back to what the environment or pyproject.toml say
                base = config.resolve(lenient=True)
                value, src = getattr(base, name), base.source(name)
            else:
                src = source
            new = config.with_overrides(rt.settings)  # a copy
            setattr(new, name, value)
            new.sources[name] = src
            rt.settings = new
        elif ext.widgets is not None:
            c = ext.widgets.config
            attr = {"widget": "enabled", "widget_sidebar": "sidebar", "widget_after": "after_s"}[
                name
            ]
            if value is None:
                return
            c.sources[attr] = source
            if name == "widget":
                c.enabled = value != "off"
                if c.enabled:
                    ext.widgets.frontend_without_widgets = False
            else:
                setattr(c, attr, value)

    def _set(self, name: str, value: Any, source: str) -> None:
        """Set a trait as a magic does (the source %carbon status names)."""
        self._source = source
        try:
            setattr(self, name, value)
        finally:
            self._source = SOURCE_SESSION

    @magic_arguments(name="%carbon")
    @kwds(description=_DESCRIPTION)
    @argument("-l", "--label", metavar="NAME", help="name shown in the summary and in history")
    @argument(
        "-b",
        "--budget",
        help="energy (2Wh, 500 J, 500 mWh) or emissions (0.5gCO2e); over it the summary shows a "
        "warning",
    )
    @argument(
        "--strict",
        action="store_true",
        help="with --budget: the cell fails (BudgetExceeded) after it ran over it",
    )
    @argument(
        "-q", "--quiet", action="store_true", help="show no summary (still measured and stored)"
    )
    @argument(
        "-z", "--zone", metavar="Z", help="grid zone for this cell (FR, US-CAL-CISO, aws:eu-west-3)"
    )
    @argument("-o", "--output", metavar="VAR", help="store the Measurement in VAR")
    @no_var_expand
    @line_cell_magic
    def carbon(self, line: str = "", cell: str | None = None) -> Any:
        # The docstring (%carbon?, %%carbon?) is generated from the parsers (magic_arguments).
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
        if sub == "zone":
            return self._zone(rest)
        if sub == "off":
            _no_args("off", rest)
            self._set("automatic", False, "%carbon off")
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
            f"%carbon: unknown command {sub!r}; use one of: on, off, zone, status, report, "
            "export PATH, advise, widget, cluster (%carbon? shows their usage)"
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
        ns = _parse(_ON_PARSER, rest)
        if ns.threshold is not None:
            from ..units import UnitError, parse_energy

            try:
                value = parse_energy(ns.threshold)
            except UnitError as e:
                raise UsageError(f"%carbon on --threshold: {e}") from None
            self._set("threshold", value, "%carbon on --threshold")
        self._set("automatic", True, "%carbon on")
        ext.automatic = True
        from ..units import format_energy

        print(
            "carbonlab: measuring every cell; a summary shows for cells that used at least "
            f"{format_energy(ext.effective_threshold_j())}"
        )

    def _zone(self, rest: list[str]) -> None:
        """``%carbon zone [ZONE]``: switch the session's grid zone, or say which it is."""
        ns = _parse(_ZONE_PARSER, rest)
        if ns.zone is None:
            s = self.ext.settings
            print(f"carbonlab: zone {s.zone or 'none set'} ({s.source('zone')})")
            return
        if not ns.zone.strip():
            raise UsageError("%carbon zone '': expected a zone, e.g. %carbon zone FR")
        try:
            self._set("zone", ns.zone.strip(), SOURCE_ZONE_MAGIC)
        except TraitError as e:
            why = str(e).split(": ", 1)[-1]
            if why.startswith("unknown zone"):  # short: a notification shows about 140 characters
                why = (
                    f"unknown zone; `carbonlab zones {ns.zone.strip()[:2]}` lists the known ones "
                    "(e.g. FR, US-CAL-CISO, aws:eu-west-3)"
                )
            raise UsageError(f"%carbon zone {ns.zone}: {why}") from None
        from .. import footprint

        s = self.ext.settings
        try:
            intensity, _why = footprint.intensity.current(s.zone, s.intensity)
            what = f"{intensity.gco2e_per_kwh:g} gCO2e/kWh, {intensity.source}"
        except Exception as e:  # the zone is set; its figure is shown by the next summary
            what = f"intensity unavailable now: {e}"
        print(f"carbonlab: zone {s.zone} for this session ({what})")

    def _status(self) -> Any:
        from IPython.display import display

        from .display import TextBlock

        display(TextBlock(status_text(self.ext)))

    def _history(self, rest: list[str]) -> tuple[Any, list[str], bool, str | None]:
        """This notebook's runs (every notebook's with ``--all``), and a note when another process
        locks the file (then only this kernel's runs: a cell never waits on that lock)."""
        from ..store import CELL_READ_TIMEOUT_S, StoreError, history_frame

        every = "--all" in rest
        rest = [a for a in rest if a != "--all"]
        try:
            df, note = history_frame(
                notebook=None if every else self.ext.notebook,
                all_notebooks=every,
                path=self.ext.store.path,
                wait_s=CELL_READ_TIMEOUT_S,
            )
        except StoreError as e:
            raise UsageError(f"carbonlab: {e}") from None
        return df, rest, every, note

    def _report(self, rest: list[str]) -> None:
        if "--paper" in rest:
            return self._paper_report([a for a in rest if a != "--paper"])
        from IPython.display import display

        from .display import TextBlock, chart_bundle, report_chart, timeline_rows, totals_text

        df, rest, every, note = self._history(rest)
        if rest:
            raise UsageError(f"%carbon report {' '.join(rest)}: expected %carbon report [--all]")
        ext = self.ext
        totals = totals_text(df, "every notebook" if every else ext.notebook)
        display(TextBlock(totals if note is None else f"{totals}\n{note}"))
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
        try:
            # No flush: the rows the writer has not written yet come from memory, and a file
            # locked by another process is not waited for (from_cell).
            sel = Selection(
                history=str(ext.store.path),
                from_cell=True,
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
        said = "".join(f" ({n})" for n in report.notes if n.startswith("history file "))
        print(
            f"carbonlab: wrote the {ns.format} report of {len(report.runs)} run(s) to {path}{said}"
        )
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
        df, _, _, note = self._history(rest)
        if note is not None:
            # An export stands for the history: a file of this kernel's runs alone would be taken
            # for it once the note is gone.
            raise UsageError(
                f"%carbon export {args[0]}: history file {self.ext.store.path} is locked by "
                "another process; nothing written (try again once it is released)"
            )
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

        ns = _parse(_WIDGET_PARSER, rest)
        try:
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


_CELL_PARSER: MagicArgumentParser = CarbonMagics.carbon.parser
_CELL_PARSER.allow_abbrev = False  # "--lab" is not "--label": a typo must not change meaning


def parse_advise_options(rest: list[str]) -> tuple[float, float | None]:
    """``--hours N`` (horizon, default 24) and ``--window H`` (default: one hour of work)."""
    ns = _parse(_ADVISE_PARSER, rest)
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
    energy, CO2e, duration, and ``note``: None, or why only this kernel's runs were counted (another
    process locks the history file: never waited for)."""
    import time
    from datetime import datetime, timezone

    from ..store import read_merged

    t = time.time() if now is None else now
    since = datetime.fromtimestamp(t - hours * 3600.0, timezone.utc)
    n, energy, co2, duration = 0, 0.0, 0.0, 0.0
    rows, note = read_merged(ext.store.path, ext.notebook)
    for r in rows:
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
    return {"runs": n, "energy_j": energy, "co2e_g": co2, "duration_s": duration, "note": note}


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
        work = {"runs": 0, "energy_j": 0.0, "co2e_g": 0.0, "duration_s": 0.0, "note": None}
    if work["note"]:
        lines.append(f"  {work['note']}")
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


def _parse(p: MagicArgumentParser, rest: list[str]) -> Any:
    """Parse a subcommand's arguments; a UsageError naming the problem and the usage."""
    try:
        return p.parse_args(rest)
    except UsageError as e:
        raise UsageError(f"%{p.prog}: {e}; expected {_usage(p)}") from None


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
    thr_src = ext.threshold_source or s.source("threshold_j")
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
