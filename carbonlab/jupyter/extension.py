"""The IPython extension: ``%load_ext carbonlab`` measures every cell from then on.

Loading registers the ``%carbon`` / ``%%carbon`` magics, a ``pre_run_cell`` and a ``post_run_cell``
hook, and an input transformer for ``%%carbon`` cells; ``%unload_ext carbonlab`` removes all of them,
asks the history writer thread to write what is pending and end (without waiting for it), and stops
the sampler thread.

Per cell (automatic mode, ``%carbon on``, the default): the ``pre_run_cell`` hook begins a window, the
``post_run_cell`` hook ends it, queues the row for the history store, closes the live comm, and shows a
summary when the cell used at least ``threshold_j`` (settings; ``%carbon on --threshold 5J``).

Load it in every kernel: put it in IPython's startup configuration, e.g.
``~/.ipython/profile_default/ipython_config.py`` (``ipython profile create`` makes one)::

    c.InteractiveShellApp.extensions = ["carbonlab"]

or ``c.InteractiveShellApp.exec_lines = ["%load_ext carbonlab"]``. Both apply to terminal IPython and
to every Jupyter kernel using that profile (ipykernel reads the same file). See docs/magics.md.

>>> from IPython.testing.globalipapp import get_ipython  # doctest: +SKIP
>>> ip = get_ipython(); ip.run_line_magic("load_ext", "carbonlab")  # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import functools
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import cluster as _cluster
from .. import runtime
from .. import store as _store
from ..measurement import Measurement
from ..window import Window

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from ..sampler import Alarm
    from ..units import Budget
    from .comm import LiveRun, RunBatch
    from .widget import LiveWidget, WidgetConfig, Widgets

# A cell that starts with this line is measured by the magic's options, not by automatic mode.
MAGIC_LINE = re.compile(r"^%%carbon(?:[ \t]+(?P<args>.*))?$")

_EXTENSIONS: dict[int, CarbonExtension] = {}  # id(shell) -> loaded extension
_MODULES = sys.modules
# The sidebar's hello gets at most this many finished runs of its notebook (the latest).
STATE_MAX_RUNS = 300


class BudgetExceeded(Exception):
    """Raised after a ``%%carbon --budget ... --strict`` cell that used more than its budget."""


@dataclass
class RunOptions:
    """How one run is measured and shown (``%%carbon`` options, or automatic mode's defaults)."""

    label: str | None = None
    budget: Budget | None = None
    strict: bool = False
    quiet: bool = False
    zone: str | None = None
    output: str | None = None
    automatic: bool = False
    settings: Settings | None = None  # with the zone override applied


@dataclass(slots=True)
class CellRun:
    """One measured cell run in progress, then finished (slots: one is made per cell)."""

    run_id: str
    options: RunOptions
    window: Window
    cell_id: str | None
    source: str
    execution_count: int | None
    t0_unix: float
    live: LiveRun | None = None
    error: bool = False
    status: str = "done"  # done | error | interrupted (KeyboardInterrupt, or no result at all)
    over_budget: bool = False
    previous_energy_j: float | None = None
    show: bool = False  # a summary is displayed (decided at the end: the threshold needs energy)
    history_note: str | None = None  # why history is not saved, said once (the first run after)
    t1: float | None = None  # clock.now() at the end (for the power timeline)
    widget: LiveWidget | None = None  # the in-cell live widget's sink, when one may show
    deferred: _DeferredLive | None = None  # the live stream's start, until the run ends
    finished: bool = False
    _measurement: Measurement | None = None
    _build: Callable[[], Measurement] | None = None  # makes the Measurement when first asked for
    build_error: Exception | None = None  # why it could not be made (then it stays None)

    @property
    def measurement(self) -> Measurement | None:
        """The run's Measurement (None until it finished). A quick cell's is made when first asked
        for (by the history writer thread, or here), from the readings taken at its end."""
        if self._measurement is None and self._build is not None:
            with _BUILD_LOCK:  # (another thread may be building it: wait for that one)
                build = self._build
                if self._measurement is None and build is not None:
                    self._build = None
                    try:
                        self._measurement = build()
                    except Exception as e:  # a bug of ours: no figures for this run, never a raise
                        self.build_error = e  # into a cell; the writer says it (_Later)
        return self._measurement

    @measurement.setter
    def measurement(self, m: Measurement | None) -> None:
        self._measurement = m


_BUILD_LOCK = threading.Lock()


class _Later:
    """A run's Measurement for its history row, made by the writer thread when it writes the row
    (``to_dict``); its energy was worked out at the end without building it."""

    __slots__ = ("run", "energy_j")

    def __init__(self, run: CellRun, energy_j: float) -> None:
        self.run = run
        self.energy_j = energy_j

    def to_dict(self) -> dict[str, Any]:
        m = self.run.measurement
        if m is None:  # the writer gives this row up and says why (Store.unwritable)
            raise self.run.build_error or RuntimeError("the run's Measurement was not made")
        return m.to_dict()


class _DeferredLive:
    """Starts a run's live stream on the sampler thread, ``delay_s`` into the run, if it is still
    going (see ``CarbonExtension._defer_live``): one :class:`~carbonlab.sampler.Alarm`, armed at
    the start and disarmed at the end (:meth:`end`, the main thread), after which it either did or
    never will."""

    __slots__ = ("ext", "run", "rt", "settings", "alarm", "_ctx")

    def __init__(
        self,
        ext: CarbonExtension,
        run: CellRun,
        rt: Any,
        settings: Settings,
        alarm: Alarm,
        delay_s: float,
    ) -> None:
        self.ext = ext
        self.run = run
        self.rt = rt
        self.settings = settings
        self.alarm = alarm
        # The sinks are made in the cell's context: what they send carries the cell's request.
        self._ctx = contextvars.copy_context()
        alarm.arm(self._fire, delay_s)

    def _fire(self) -> None:  # the sampler thread, holding the alarm's lock
        try:
            self.run.live = self._ctx.run(self.ext._start_live, self.run, self.rt, self.settings)
        except Exception as e:  # never break the cell: it is measured without its stream
            self.ext._error("live sink", e)

    def end(self) -> None:
        self.alarm.disarm()  # waits for a start in progress: its stream is there to be ended


class _Frame:
    """One ``run_cell`` in progress (they nest when code runs cells)."""

    __slots__ = ("info", "runs", "done")

    def __init__(self, info: Any) -> None:
        self.info = info
        self.runs: list[CellRun] = []
        # Runs the magic itself ran and finished (not through the transformer): shown at
        # post_run_cell.
        self.done: list[CellRun] = []


class CarbonExtension:
    """The state of carbonlab in one IPython shell. Use ``%load_ext carbonlab``."""

    def __init__(self, shell: Any, widget_config: WidgetConfig | None = None) -> None:
        self.shell = shell
        self.automatic = True
        self.threshold_j: float | None = None  # None: settings.threshold_j
        self.magics: Any = None  # the CarbonMagics instance (its traits are the session's config)
        self.threshold_source: str | None = None  # where threshold_j came from (%carbon status)
        self.notebook, self.notebook_source = _store.notebook_key(getattr(shell, "user_ns", None))
        self._frames: list[_Frame] = []
        self._store: _store.Store | None = None
        self._fault_said: tuple[str, str] | None = None  # the history fault already said
        self.last: CellRun | None = None
        self.runs_measured = 0
        self.errors: list[str] = []  # failures inside hooks (shown by %carbon status)
        self.in_kernel = getattr(shell, "kernel", None) is not None
        # Factories of live sinks for each run (the comm in a kernel; tests add fakes; the in-cell
        # widget adds its own). A factory may return None: no sink for that run.
        self.sink_factories: list[Any] = []
        self._free_alarms: list[Alarm] = []  # for the runs' live streams (_defer_live)
        # The in-cell live widget (carbonlab/jupyter/widget.py): in a kernel only.
        self.widgets: Widgets | None = None
        self.batch: RunBatch | None = None
        if self.in_kernel:
            from .comm import OPEN_AFTER_S, CommSink, RunBatch, SinkFactory
            from .widget import Widgets

            widgets = self.widgets = Widgets(widget_config)
            presence = widgets.presence
            # Short runs reach v2 sidebars batched on their hello comms; a run gets a comm of
            # its own only once it has run OPEN_AFTER_S (carbonlab/jupyter/comm.py).
            batch = self.batch = RunBatch(presence.channels, presence.wants_comms)
            self.sink_factories.append(
                SinkFactory(
                    lambda run: CommSink(batch=batch, open_after_s=OPEN_AFTER_S),
                    lambda run: OPEN_AFTER_S,
                    lambda: batch.takes_runs() or batch.wants_comms(),
                )
            )
            # The widget shows only for a run still going after its delay: never for a short one.
            self.sink_factories.append(
                SinkFactory(widgets.sink, widgets.sink_after_s, lambda: False)
            )

    # -- load / unload --------------------------------------------------------------------------
    def register(self) -> None:
        from .magics import CarbonMagics

        sh = self.shell
        # First: reading c.CarbonMagics.* may refuse a value (TraitError), before any hook is added.
        self.magics = CarbonMagics(sh, self)
        sh.events.register("pre_run_cell", self.pre_run_cell)
        sh.events.register("post_run_cell", self.post_run_cell)
        sh.input_transformers_cleanup.append(self.transform_magic_cell)
        sh.register_magics(self.magics)
        _EXTENSIONS[id(sh)] = self
        try:
            # The writer thread checks the file and reads each cell's latest run (for "vs previous
            # run") now, off every cell's path.
            self.store.start(self.notebook)
        except Exception as e:
            self._error("history", e)
        if self.widgets is not None:
            try:  # listen for the sidebar's hello (carbonlab.hello), answer with this notebook's runs
                self.widgets.presence.state_source = self.hello_state
                self.widgets.presence.register()
                if self.in_kernel:
                    self.widgets.presence.announce()
            except Exception as e:
                self._error("sidebar hello", e)

    def unregister(self) -> None:
        sh = self.shell
        for event, cb in (
            ("pre_run_cell", self.pre_run_cell),
            ("post_run_cell", self.post_run_cell),
        ):
            try:
                sh.events.unregister(event, cb)
            except ValueError:
                pass
        try:
            sh.input_transformers_cleanup.remove(self.transform_magic_cell)
        except ValueError:
            pass
        mm = sh.magics_manager
        for kind in ("line", "cell"):
            mm.magics[kind].pop("carbon", None)
        mm.registry.pop("CarbonMagics", None)
        try:  # %config no longer lists or sets it
            sh.configurables.remove(self.magics)
        except (AttributeError, ValueError):
            pass
        # Runs still open (the cell that unloads us): finish them, so nothing measured is lost and
        # no comm stays open; their post_run_cell will not come.
        for frame in reversed(self._frames):
            for run in reversed(frame.runs):
                try:
                    self.finish(run, _NO_ERROR)
                except Exception as e:
                    self._error("unload", e)
        self._frames.clear()
        for alarm in self._free_alarms:
            alarm.close()
        self._free_alarms.clear()
        if self.widgets is not None:
            from .comm import OUTBOX as _outbox

            _outbox.flush(5.0)  # the summaries still queued, then the short runs batched
            if self.batch is not None:
                self.batch.flush()
            self.widgets.close()
        if self._store is not None:
            # Never waits (this runs in a cell): the writer writes the pending rows and ends on its
            # own, retrying while another process holds the lock; interpreter exit waits for it.
            self._store.stop()
            self._store = None
        from .comm import OUTBOX

        OUTBOX.stop()  # after sending the summaries still queued
        rt = runtime.peek()
        if rt is not None and _sampler_idle(rt.sampler):
            rt.sampler.stop()  # our windows and live runs started it; it restarts on demand
        _EXTENSIONS.pop(id(sh), None)

    def hello_state(self, channel: Any) -> dict[str, Any]:
        """The answer to a sidebar's hello (v2), on the hello's own thread: the runs in flight
        (their later samples and summary are forwarded to ``channel``) and this notebook's latest
        :data:`STATE_MAX_RUNS` finished runs, from this kernel's memory and the history file."""
        import json

        running = []
        for frame in list(self._frames):
            for run in list(frame.runs):
                if run.live is None or run.measurement is not None:
                    continue
                opened = run.live.attach(channel.forward(run.run_id))
                if opened is not None:
                    running.append(opened)
        runs: list[dict[str, Any]] = []
        history: dict[str, Any] = {"ok": True}
        try:
            rows = self.store.rows(self.notebook, limit=STATE_MAX_RUNS)
        except Exception as e:  # a broken file: the sidebar shows what it sees from now on
            rows = self.store.pending_rows(self.notebook)[-STATE_MAX_RUNS:]
            history = {"ok": False, "path": str(self.store.path), "reason": str(e)}
        for r in rows:
            try:
                m = json.loads(r["measurement"])
            except (TypeError, ValueError):
                continue
            status = m.get("status") or ("error" if r["error"] else "done")
            runs.append(
                {"run_id": r["run_id"], "cell_id": r["cell_id"], "status": status, "measurement": m}
            )
        return {
            "kind": "state",
            "notebook": self.notebook,
            "runs": runs,
            "running": running,
            "history": history,
        }

    # -- settings -------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return runtime.get().settings

    def effective_threshold_j(self) -> float:
        return self.settings.threshold_j if self.threshold_j is None else self.threshold_j

    @property
    def store(self) -> _store.Store:
        if self._store is None:
            self._store = _store.Store(_store.resolve_path(settings=self.settings))
        return self._store

    # -- the hooks ------------------------------------------------------------------------------
    def pre_run_cell(self, info: Any = None) -> None:
        """IPython ``pre_run_cell`` hook (always takes the ExecutionInfo, possibly None)."""
        frame = _Frame(info)
        self._frames.append(frame)
        if len(self._frames) > 1 or not self.automatic:
            return  # a cell run by code inside a cell: the outer cell's window covers it
        raw = getattr(info, "raw_cell", None) or ""
        if raw.startswith("%%carbon") and MAGIC_LINE.match(raw.split("\n", 1)[0].rstrip()):
            return  # measured by its own options (see transform_magic_cell)
        try:
            frame.runs.append(self.begin(RunOptions(automatic=True), info, raw))
        except Exception as e:  # never break a cell
            self._error("pre_run_cell", e)

    def post_run_cell(self, result: Any = None) -> None:
        """IPython ``post_run_cell`` hook (always takes the ExecutionResult, possibly None)."""
        info = getattr(result, "info", None)
        idx = None
        for i in range(len(self._frames) - 1, -1, -1):
            if self._frames[i].info is info:
                idx = i
                break
        if idx is None:
            if not self._frames:
                return
            raw = getattr(info, "raw_cell", None)
            if result is not None and (raw is None or not raw.strip()):
                return  # an empty cell: IPython fires post_run_cell without pre_run_cell
            # IPython made a new result (its runner raised, e.g. on KeyboardInterrupt), or none:
            # it belongs to the innermost cell. Leaving that frame open would make every later
            # cell look nested, and unmeasured.
            idx = len(self._frames) - 1
        popped = self._frames[idx:]
        del self._frames[idx:]
        for frame in reversed(popped):
            for run in reversed(frame.runs):
                try:
                    self.finish(run, result)
                except Exception as e:
                    self._error("post_run_cell", e)
            for run in frame.done + frame.runs:
                try:
                    self.report(run)
                except Exception as e:
                    self._error("post_run_cell", e)
            for run in frame.runs:
                if run.over_budget and run.options.strict and result is not None:
                    # After the summary, so the error is the last thing the cell shows.
                    _fail_result(self.shell, result, _budget_error(run))

    def _error(self, where: str, e: BaseException) -> None:
        msg = f"{where}: {type(e).__name__}: {e}"
        if msg not in self.errors:
            self.errors.append(msg)
            print(f"carbonlab: {msg} (the cell itself was not affected)", file=sys.stderr)

    # -- %%carbon cells -------------------------------------------------------------------------
    def transform_magic_cell(self, lines: list[str]) -> list[str]:
        """Input transformer: ``%%carbon OPTS`` as a cell's first line becomes a call that begins the
        measurement, and the body runs as an ordinary cell (its last expression displays, top-level
        ``await`` works as in any cell, tracebacks point at the user's lines).

        Bad options, or a body that starts with another cell magic, are left to the ``%%carbon``
        magic itself (which raises the UsageError, or runs the body the way ``%%time`` does).
        """
        if not lines or not lines[0].startswith("%%carbon"):
            return lines
        m = MAGIC_LINE.match(lines[0].rstrip("\r\n").rstrip())
        if m is None:
            return lines
        body = [ln for ln in lines[1:] if ln.strip()]
        if body and body[0].lstrip().startswith("%%"):
            return lines
        args = m.group("args") or ""
        try:
            from .magics import parse_cell_options

            parse_cell_options(args)
        except Exception:
            return lines
        call = f"__import__('carbonlab.jupyter.extension').jupyter.extension.begin_cell({args!r})\n"
        return [call, *lines[1:]]

    # IPython's completeness check (terminal IPython, after each Enter) applies the cleanup
    # transformers before its rule "a cell magic ends at a blank line"; applied there, this one made
    # a bare "%%carbon --label x" line a complete Python call and ran an empty cell at once. Marked
    # as having side effects, check_complete skips it and sees the "%%" line, as for %%time.
    transform_magic_cell.has_side_effects = True  # type: ignore[attr-defined]

    def begin_magic_cell(self, line: str) -> None:
        """Called by the first line of a transformed ``%%carbon`` cell."""
        from .magics import parse_cell_options

        opts = parse_cell_options(line, settings=self.settings)
        if not self._frames:
            return  # run silently (no hooks fire): nothing would finish the measurement
        frame = self._frames[-1]
        raw = getattr(frame.info, "raw_cell", None) or ""
        frame.runs.append(self.begin(opts, frame.info, raw, executing=True))

    # -- measuring ------------------------------------------------------------------------------
    def begin(
        self, opts: RunOptions, info: Any, source: str, *, executing: bool = False
    ) -> CellRun:
        """Begin measuring a run of the cell ``info``: from ``pre_run_cell``, or from the cell's own
        code (``executing``: the ``%%carbon`` paths)."""
        rt = runtime.get()
        settings = opts.settings or rt.settings
        cell_id = getattr(info, "cell_id", None)
        if cell_id is None and self.in_kernel:
            cell_id = _cell_id_from_parent(self.shell)
        count = _current_count(self.shell, info, executing)
        label = opts.label if opts.label is not None else _default_label(count)
        if _cluster._said_later or (
            "distributed" in _MODULES and not (_cluster._sources or _cluster._auto_off)
        ):
            _auto_attach_cluster()  # (only Dask's default client is attached automatically)
        w = Window(label, settings, rt=rt)
        run = CellRun(
            run_id=_store.new_run_id(),
            options=opts,
            window=w,
            cell_id=cell_id,
            source=source,
            execution_count=count,
            t0_unix=0.0,
        )
        w.begin()
        run.t0_unix = w.t0_unix
        if self.sink_factories:
            self._defer_live(run, rt, settings)
        return run

    def _defer_live(self, run: CellRun, rt: Any, settings: Settings) -> None:
        """Arrange the run's live stream: its sinks are made, and it starts, on the sampler thread
        once the run has gone on as long as its first sink wants (0.25 s for the sidebar's comm,
        the widget's delay), and only if it is still going then. Most cells end before that, and
        cost arming and disarming one reused alarm here instead of their sinks and stream."""
        delay: float | None = None
        for make in self.sink_factories:
            after = _start_after_s(make, run)
            if after is not None and (delay is None or after < delay):
                delay = after
        if delay is None:
            return
        alarm = None
        free = self._free_alarms
        while free:  # one alarm, reused by every run (more only while runs nest)
            a = free.pop()
            if a.sampler is rt.sampler:
                alarm = a
                break
            a.close()  # a runtime reset since: its sampler is not the current one
        if alarm is None:
            alarm = rt.sampler.alarm()
        run.deferred = _DeferredLive(self, run, rt, settings, alarm, delay)

    def _end_live(self, run: CellRun) -> LiveRun | None:
        """At the run's end: its live stream, if it started; else, where a sink wants the end of a
        run that ended before its first sample (a sidebar takes batched runs), one made now."""
        d = run.deferred
        if d is None:
            return run.live
        run.deferred = None
        d.end()  # after this, the sampler thread starts nothing for this run
        self._free_alarms.append(d.alarm)
        if run.live is not None:
            return run.live
        wanting = [make for make in self.sink_factories if _wants_short_runs(make)]
        if not wanting:
            return None
        run.live = self._start_live(run, d.rt, d.settings, factories=wanting, start=False)
        return run.live

    def _start_live(
        self,
        run: CellRun,
        rt: Any,
        settings: Settings,
        *,
        factories: list[Any] | None = None,
        start: bool = True,
    ) -> LiveRun | None:
        from .comm import OUTBOX, LiveRun

        sinks = []
        for make in self.sink_factories if factories is None else factories:
            try:
                sink = make(run)
            except Exception as e:
                self._error("live sink", e)
                continue
            if sink is not None:
                sinks.append(sink)
        if not sinks:
            return None
        live = LiveRun(
            sampler=rt.sampler,
            window=run.window,
            sinks=sinks,
            open_data=lambda measurement: _open_data(run, rt, settings, measurement),
            hz=settings.sample_hz,
            context=contextvars.copy_context(),
            outbox=OUTBOX,
            advice=lambda measurement: run_advice(measurement, settings),
        )
        return live.start() if start else live

    def finish(self, run: CellRun, result: Any) -> None:
        """End the window, store the row, close the live run, apply ``-o``, check the budget.

        ``result`` is the ExecutionResult (or anything with ``error_before_exec`` and
        ``error_in_exec``); None means the run was interrupted before it produced one.
        """
        if run.finished:
            return
        run.finished = True
        count = getattr(result, "execution_count", None)
        if count is not None and count != run.execution_count:
            run.execution_count = count  # IPython's own figure beats the guess made at the start
            if run.options.label is None:
                run.window.label = _default_label(count)
        w = run.window
        w.stop()
        live = self._end_live(run)  # first: the sampler thread may be making the widget
        if run.widget is not None:
            run.widget.stop()  # from here on it cannot appear: whether it showed is settled
        run.t1 = w.t0 + w.duration_s if w.t0 is not None else None
        opts = run.options
        if (
            live is None
            and run.widget is None
            and opts.automatic
            and opts.budget is None
            and not opts.output
            and w.deferrable()
        ):
            # A quick automatic cell nobody watches live: if it shows nothing, its Measurement
            # (components, notes, footprint) and JSON are made off the cell's path, from the
            # readings just taken, when the history writer (or anyone) first asks for it.
            energy = w.energy_j()
            run.show = not opts.quiet and energy >= self.effective_threshold_j()
            if not run.show:
                run.status = _status(result)
                run.error = run.status != "done"
                run._build = lambda: self._complete(run, w.build())
                self._queue_row(run, _Later(run, energy), energy)
                self.last = run
                return
        m = w.build()
        energy = m.energy_j
        b = opts.budget
        if b is not None:
            used = energy if b.kind == "energy" else m.co2e_g
            run.over_budget = used is not None and used > b.value
        run.status = _status(result, strict_over=run.over_budget and opts.strict)
        # A --strict cell over its budget fails (post_run_cell makes it so): it is an error here
        # too, in the summary, the sidebar and the history. Ctrl-C is "interrupted", not "error".
        run.error = error = run.status != "done"
        run.measurement = self._complete(run, m)
        # A live widget that showed always becomes the summary, whatever the threshold.
        widget_shown = run.widget is not None and run.widget.shown
        run.show = not opts.quiet and (
            not opts.automatic or energy >= self.effective_threshold_j() or widget_shown
        )
        # The Measurement JSON is made by the writer and outbox threads, unless the object may
        # change before they get to it (-o hands it to the user).
        data: Measurement | dict[str, Any] = m.to_dict() if opts.output else m
        history = self._queue_row(run, data, energy)
        if live is not None:
            live.finish(
                data, error, extra={"history": history, "status": run.status}
            )  # no sample after this
        if run.widget is not None:
            self._end_widget(run)
        if opts.output:
            self.shell.user_ns[opts.output] = m
        self.last = run

    @staticmethod
    def _complete(run: CellRun, m: Measurement) -> Measurement:
        """Add the run's own fields to its Measurement's extra."""
        extra = m.extra
        extra["run_id"] = run.run_id
        extra["cell_id"] = run.cell_id
        extra["execution_count"] = run.execution_count
        if run.error:
            extra["error"] = True
        extra["status"] = run.status
        return m

    def _queue_row(self, run: CellRun, data: Any, energy: float) -> dict[str, Any]:
        """Queue the run's history row; what the summary says of history (``{"ok": True}`` or the
        store's fault). Nothing here waits on the history file, its writer thread or its lock; a
        fault of the store is recorded and said, and never stops the comm's summary or -o."""
        history: dict[str, Any] = {"ok": True}
        try:
            self._store_run(run, data, energy)
            fault = self.store.fault
            if fault is not None:
                history = fault.to_dict()
        except Exception as e:
            self._error("history", e)
        self.runs_measured += 1
        return history

    def _store_run(self, run: CellRun, data: Any, energy: float) -> None:
        """Queue the row and take "vs previous run" from memory (never from the file here)."""
        store = self.store
        cell_id = run.cell_id
        record = _store.RunRecord(  # (RunRecord.new, written out: every cell comes here)
            run.run_id,
            self.notebook,
            cell_id,
            cell_id or _store.cell_key(cell_id, run.source),
            run.execution_count,
            data,
            run.error,
            _store.kernel_name(),
        )
        settings = run.window.settings
        if settings is not None and settings.intensity and _live(settings.intensity):
            # The history row keeps the forecast's best window for this run (a report's
            # counterfactual); worked out by the writer thread, never here.
            record.annotate = functools.partial(_record_advice, settings=settings)
        run.previous_energy_j = store.previous_energy(self.notebook, record.cell_key)
        store.append(record)
        fault = store.fault
        if fault is None:
            self._fault_said = None  # said again if it breaks again
        elif (fault.path, fault.reason) != self._fault_said:
            self._fault_said = (fault.path, fault.reason)
            run.history_note = fault.text()

    def _end_widget(self, run: CellRun) -> None:
        """Replace a live widget that showed by the static summary (here, on the main thread and
        before the execute reply, so every frontend and nbclient apply it), whatever the outcome."""
        w = run.widget
        if w is None:
            return
        if not w.shown:
            w.end(None)  # never shown (a quick automatic cell): nothing to replace
            return
        compact = self.widgets is not None and self.widgets.mode() == "compact"
        try:
            w.end(self._summary(run, force=True, oneline=compact))
        except Exception as e:
            self._error("live widget", e)

    def _summary(self, run: CellRun, *, force: bool = False, oneline: bool = False) -> Any:
        """The static summary of a finished run, or None when none shows (quiet, below the
        threshold); ``force``: the full one even then (it replaces a live widget)."""
        if not (run.show or force or run.over_budget or run.history_note):
            return None  # (before asking for the Measurement, which a quick cell has not made)
        from .display import CellSummary

        m = run.measurement
        if m is None:
            return None
        if run.show or force:
            return CellSummary(
                m,
                previous_energy_j=run.previous_energy_j,
                budget=run.options.budget,
                over_budget=run.over_budget,
                error=run.error,
                oneline=oneline,
                history_note=run.history_note,
            )
        if run.over_budget or run.history_note:
            return CellSummary(
                m,
                budget=run.options.budget,
                over_budget=run.over_budget,
                compact=True,
                history_note=run.history_note,
            )
        return None

    def report(self, run: CellRun) -> None:
        """Show the summary of a finished run (or nothing: quiet, or below the threshold, or its
        live widget already became the summary)."""
        if run.widget is not None and run.widget.replaced:
            return  # never a widget and a second, static block
        summary = self._summary(run)
        if summary is None:
            return
        from IPython.display import display

        display(summary)


def _start_after_s(factory: Any, run: Any) -> float | None:
    """comm.factory_start_after_s, imported when first needed (it runs at every cell's start)."""
    global _start_after_s
    from .comm import factory_start_after_s

    _start_after_s = factory_start_after_s
    return factory_start_after_s(factory, run)


def _wants_short_runs(factory: Any) -> bool:
    """comm.factory_wants_short_runs, imported when first needed (it runs at every cell's end)."""
    global _wants_short_runs
    from .comm import factory_wants_short_runs

    _wants_short_runs = factory_wants_short_runs
    return factory_wants_short_runs(factory)


def _sampler_idle(sampler: Any) -> bool:
    """Nothing else (a window open elsewhere, another listener, another shell's run whose live
    stream may still start) needs the sampler thread now."""
    return (
        not getattr(sampler, "_listeners", None)
        and not getattr(sampler, "_window_users", 0)
        and not any(a.armed for a in getattr(sampler, "_alarms", ()))
    )


def _budget_error(run: CellRun) -> BudgetExceeded:
    from .display import CellSummary

    s = CellSummary(run.measurement, budget=run.options.budget, over_budget=True)  # type: ignore[arg-type]
    return BudgetExceeded(s._budget_line() or "over budget")


def _fail_result(shell: Any, result: Any, exc: BaseException) -> None:
    """Make the cell fail after it ran (``--strict``): IPython and ipykernel build the reply (and
    nbclient, "Run All" stop) from the ExecutionResult that post_run_cell receives."""
    if getattr(result, "error_in_exec", None) is not None or getattr(
        result, "error_before_exec", None
    ):
        return  # it failed already; that error is the one to show
    result.error_in_exec = exc
    shell.last_execution_succeeded = False
    try:
        raise exc
    except BudgetExceeded:
        shell.showtraceback(exception_only=True)


class _NoError:
    error_before_exec = None
    error_in_exec = None


_NO_ERROR = _NoError()


def _status(result: Any, *, strict_over: bool = False) -> str:
    """``done``, ``error`` or ``interrupted`` (Ctrl-C: a KeyboardInterrupt; or no result: the run
    was cut short before IPython produced one)."""
    if result is None:
        return "interrupted"
    exc = getattr(result, "error_in_exec", None)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if exc is not None or getattr(result, "error_before_exec", None) is not None:
        return "error"
    return "error" if strict_over else "done"


def _failed(result: Any) -> bool:
    if result is None:
        return True  # the run was interrupted before it produced a result
    return (
        getattr(result, "error_before_exec", None) is not None
        or getattr(result, "error_in_exec", None) is not None
    )


def _default_label(count: int | None) -> str:
    return f"In [{count}]" if count else "cell"


def _current_count(shell: Any, info: Any, executing: bool = False) -> int | None:
    """The execution count of the running cell, at ``pre_run_cell`` time or while it executes.

    ``shell.execution_count`` is the next cell's in IPython >= 9.8 and this cell's before, so read
    the input history instead: IPython stores the cell at index ``execution_count`` (the list starts
    with a placeholder) after ``pre_run_cell`` and before running it. ``post_run_cell``'s result has
    the exact figure, which replaces this guess.
    """
    if info is not None and not getattr(info, "store_history", True):
        return None
    try:
        n = len(shell.history_manager.input_hist_raw)
    except (AttributeError, TypeError):
        return None
    return n - 1 if executing else n


def _cell_id_from_parent(shell: Any) -> str | None:
    """Older IPython (< 8.3) lacks ExecutionInfo.cell_id; the execute request's metadata has it."""
    try:
        return shell.kernel.get_parent().get("metadata", {}).get("cellId")
    except Exception:
        return None


def _live(spec: str) -> bool:
    from ..footprint.intensity import is_live

    return is_live(spec)


def _record_advice(d: dict[str, Any], settings: Settings) -> None:
    if d.get("advice") is None:
        d["advice"] = run_advice(d, settings)


def run_advice(measurement: Measurement | dict[str, Any], settings: Settings) -> dict | None:
    """The forecast advice for one run's work (its energy, over its duration, at least a minute),
    as a dict for the comm summary; None without a live forecast. On the outbox thread."""
    from ..footprint.intensity import is_live

    if not is_live(settings.intensity):
        return None  # static tables have no forecast (and importing providers would cost)
    from .. import footprint

    if isinstance(measurement, dict):
        from types import SimpleNamespace

        work: Any = SimpleNamespace(
            energy_j=float(measurement.get("energy_j") or 0.0),
            duration_s=float(measurement.get("duration_s") or 0.0),
        )
        label = measurement.get("label") or "this cell"
    else:
        work, label = measurement, measurement.label or "this cell"
    advice = footprint.advice_for(work, settings, subject=f"this run of {label}")
    return None if advice is None else advice.to_dict()


def _open_data(
    run: CellRun, rt: Any, settings: Settings, measurement: dict[str, Any] | None
) -> tuple[dict[str, Any], float | None]:
    """The comm's open message and grams CO2e per joule (on the sampler thread, or at the end)."""
    from .comm import grams_per_joule, open_message

    zone: dict[str, Any] | None = None
    g_per_j = None
    pue: float | None = None
    if measurement is not None:
        zone = measurement.get("intensity")
        pue = measurement.get("pue")
    else:
        try:
            from .. import footprint

            intensity, _why = footprint.intensity.current(settings.zone, settings.intensity)
            zone = intensity.to_dict()
            pue = footprint.factors.pue(settings, intensity).value
            g_per_j = grams_per_joule(intensity.gco2e_per_kwh, pue)
        except Exception:
            zone = None
    return (
        open_message(
            run_id=run.run_id,
            cell_id=run.cell_id,
            t0=run.t0_unix,
            label=run.window.label,
            labelled=run.options.label is not None,
            meters=rt.sampler.meters,
            zone=zone,
            pue=pue,
        ),
        g_per_j,
    )


# -- entry points -----------------------------------------------------------------------------------
def get(shell: Any = None) -> CarbonExtension | None:
    """The extension loaded in ``shell`` (default: the running IPython), or None."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    return _EXTENSIONS.get(id(shell))


def begin_cell(line: str) -> None:
    """First line of a transformed ``%%carbon`` cell (see CarbonExtension.transform_magic_cell)."""
    ext = get()
    if ext is None:
        from IPython.core.error import UsageError

        raise UsageError("%%carbon: carbonlab is not loaded; run %load_ext carbonlab first")
    ext.begin_magic_cell(line)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext carbonlab``: register the magics and start measuring every cell."""
    if id(ipython) in _EXTENSIONS:
        return  # loaded twice: keep one set of hooks
    from .. import footprint
    from ..config import ConfigError
    from .widget import WidgetConfigError, config_from_env

    try:
        footprint.validate(runtime.get().settings)  # a bad zone fails here, before any cell runs
        widget_config = config_from_env()
    except (ConfigError, WidgetConfigError) as e:
        from IPython.core.error import UsageError

        raise UsageError(f"carbonlab: {e}") from None
    from traitlets import TraitError

    try:
        CarbonExtension(ipython, widget_config).register()
    except TraitError as e:  # a bad c.CarbonMagics.* value: said in one line, nothing registered
        from IPython.core.error import UsageError

        raise UsageError(f"carbonlab: {e}") from None
    try:  # a default Dask client already there: measure its cluster too (free when there is none)
        from .. import cluster

        said = cluster.auto_attach(at_load=True)
        if said:
            print(said)
    except Exception as e:  # (auto_attach says its own failures; this is a bug of ours)
        print(f"carbonlab: the default Dask client was not attached ({type(e).__name__}: {e})")


def _auto_attach_cluster() -> None:
    """At a measured cell's start with no cluster attached: the default Dask client made since
    ``%load_ext`` (the usual order), attached once and said in one line, as at load time. One
    ``sys.modules`` lookup when distributed was never imported. An attach that went on in the
    background after an earlier cell is said here, once it has ended."""
    if _cluster._said_later:
        for line in _cluster.take_said():
            print(line)
    if _cluster._sources:
        return
    try:
        said = _cluster.auto_attach()
    except Exception as e:  # tried once per client: said once, the cell runs unmeasured remotely
        said = f"carbonlab: the default Dask client was not attached ({type(e).__name__}: {e})"
    if said:
        print(said)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext carbonlab``: remove every hook, magic and thread carbonlab added."""
    ext = _EXTENSIONS.get(id(ipython))
    if ext is not None:
        ext.unregister()
