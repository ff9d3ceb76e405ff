"""One enabled pytest run: meters, budgets, the session window, and who reports what.

Roles: ``single`` (no xdist: this process measures and reports), ``worker`` (an xdist worker: it
measures its tests and sends the figures back, it prints and writes nothing) and ``controller`` (the
xdist controller: it runs no test; it measures the session once, aggregates and owns all output).
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from carbonlab import clock
from carbonlab._record import field, record
from carbonlab.config import ConfigError
from carbonlab.measurement import (
    METHOD_CPU_MODEL,
    SCOPE_PROCESS,
    Component,
    Measurement,
)
from carbonlab.units import Budget, UnitError, parse_budget

from . import recorder as rec_mod
from .budget import (
    QUIET,
    SKIP,
    STATUS_INCONCLUSIVE,
    STATUS_OVER,
    TestBudget,
    Verdict,
    item_budgets,
    marker_error_message,
)
from .options import Options
from .recorder import Recorder
from .results import Results

ROLE_SINGLE = "single"
ROLE_WORKER = "worker"
ROLE_CONTROLLER = "controller"
WORKER_KEY = "carbon"  # in workerinput and workeroutput
_J_PER_KWH = 3.6e6


def _role(config: pytest.Config) -> str:
    if hasattr(config, "workerinput"):
        return ROLE_WORKER
    dist = getattr(config.option, "dist", "no")
    if (
        dist not in (None, "no")
        and getattr(config.option, "tx", None)
        and not config.option.collectonly
    ):
        return ROLE_CONTROLLER
    return ROLE_SINGLE


def _budget_or_none(text: str | None) -> Budget | None:
    return parse_budget(text) if text else None


@record
class SessionOutcome:
    """What the controller found at the end, for the terminal summary and the JSON."""

    measurement: Measurement | None = None
    budget_message: str = ""
    budget_over: bool = False
    compare_lines: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    regressed: list[tuple[str, str]] = field(default_factory=list)  # (nodeid, message)
    notes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    usage_error: str = ""
    compare_error: str = ""  # the baseline could not be read: "cannot compare: <path>: <why>"
    compare_failed: bool = False  # ... and --carbon-compare-fail could not be checked
    output_errors: list[str] = field(default_factory=list)  # outputs asked for, not written


class CarbonSession:
    def __init__(
        self,
        config: pytest.Config,
        opts: Options,
        role: str,
        settings: Any,
        meter_set: Any,
        sampler: Any,
        own_sampler: bool,
    ) -> None:
        self.config = config
        self.opts = opts
        self.role = role
        self.settings = settings
        self.meter_set = meter_set
        self.sampler = sampler
        self.own_sampler = own_sampler
        self.worker_count = 0
        self.exclusive_gpu = False
        self.g_per_j: float | None = None
        self.intensity: dict[str, Any] | None = None
        self.pue: float | None = None
        self.rec: Recorder = None  # type: ignore[assignment]  # set by start()
        self.results = Results() if role != ROLE_WORKER else None
        self.default_budget: TestBudget | None = None
        self.budgets: dict[str, TestBudget | None] = {}
        self.t0_wall = ""
        self.t0_epoch = 0.0
        self.s0: tuple[float, ...] | None = None  # the session's first reading (Recorder.read)
        self.outcome = SessionOutcome()
        self.gpu_assignment: dict[str, str] = {}  # worker id -> GPU uuid (controller)
        self.marker_errors: list[str] = []
        self.baseline: Any = None  # carbonlab.compare.Run, read at start (--carbon-compare)
        self.baseline_path: Any = None
        self.baseline_paths: list[Any] = []
        self._sections: set[str] = set()  # tests whose call report gets the budget breakdown
        self.regressing = False  # report.report_regressions is sending its reports
        # The run made carbonlab's process-wide runtime (its meters and 4 Hz sampler thread):
        # close() ends it, so nothing of ours runs on in a process that called pytest.main().
        self.made_runtime = False

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def start(cls, config: pytest.Config, opts: Options) -> CarbonSession:
        role = _role(config)
        wi: dict[str, Any] = {}
        if role == ROLE_WORKER:
            wi = dict(config.workerinput.get(WORKER_KEY) or {})
            gpu = wi.get("gpu")
            if gpu:
                # Before any meter or framework opens the GPU: this worker sees only its own.
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        from carbonlab import runtime  # (_open imports it anyway)

        made = runtime.peek() is None  # no runtime yet: the run's, if it opens the meters
        settings, meter_set, sampler, own = cls._open(config)
        s = cls(config, opts, role, settings, meter_set, sampler, own)
        s.made_runtime = made and not own
        try:
            s._start(config, opts, role, wi)
        except BaseException:  # a usage error (exit 4): the run ends here, and so does the runtime
            s.close()
            raise
        return s

    def _start(self, config: pytest.Config, opts: Options, role: str, wi: dict[str, Any]) -> None:
        """The rest of the start, once the meters are open (start() closes them if this raises)."""
        if role == ROLE_WORKER:
            self.worker_count = int(config.workerinput.get("workercount", 1))
            self.exclusive_gpu = bool(wi.get("gpu_exclusive"))
            self.g_per_j = wi.get("g_per_j")
            self.intensity = wi.get("intensity")
            self.pue = wi.get("pue")
            try:  # the controller's budgets, so every worker judges alike
                opts.budget = _budget_or_none(wi.get("budget"))
                opts.session_budget = _budget_or_none(wi.get("session_budget"))
            except UnitError as e:  # pragma: no cover - validated on the controller
                raise pytest.UsageError(f"carbon: {e}") from None
            opts.budget_source = wi.get("budget_source", opts.budget_source)
        else:
            self._footprint_factor()
            if role == ROLE_CONTROLLER:
                self.worker_count = len(config.option.tx or [])
            if opts.compare is not None:
                from .report import load_baseline

                load_baseline(self)
        self.default_budget = TestBudget.of(opts.budget, opts.budget_source)
        self.rec = Recorder(
            self.meter_set,
            gpu_sync=bool(getattr(self.settings, "gpu_sync", True)),
            g_per_j=self.g_per_j,
            worker_count=self.worker_count,
            exclusive_gpu=self.exclusive_gpu,
        )

    @staticmethod
    def _open(config: pytest.Config) -> tuple[Any, Any, Any, bool]:
        """Settings, meters and sampler: a conftest's (hook) or carbonlab's process-wide ones.

        Settings come from pytest's rootdir (``[tool.carbonlab]`` of the project under test), not
        from the current directory: ``cd .. && pytest proj`` judges budgets as ``cd proj && pytest``.
        """
        from carbonlab import config as cl_config
        from carbonlab import runtime

        ms = config.hook.pytest_carbon_meter_set(config=config)
        try:
            settings = cl_config.resolve(cwd=config.rootpath)
            if ms is None:
                rt = runtime.peek()
                if rt is None:
                    from carbonlab import meters

                    # The meters are opened with the project's settings too (cpu_w_per_core ...).
                    runtime.reset(settings, meters.get(settings))
                rt = runtime.get()
                return settings, rt.meter_set, rt.sampler, False
            from carbonlab.sampler import Sampler
        except ConfigError as e:
            raise pytest.UsageError(f"carbon: {e}") from None
        return settings, ms, Sampler(ms.meters, hz=settings.sample_hz), True

    def _footprint_factor(self) -> None:
        """gCO2e per J (PUE included) and the intensity record, worked out once for the run."""
        from carbonlab import footprint

        try:
            footprint.validate(self.settings)
            probe = Measurement(
                "probe",
                "",
                0.0,
                [Component("cpu", "probe", _J_PER_KWH, METHOD_CPU_MODEL, SCOPE_PROCESS)],
            )
            footprint.apply(probe, self.settings)
        except ConfigError as e:
            raise pytest.UsageError(f"carbon: {e}") from None
        if probe.co2e_g is not None:
            self.g_per_j = probe.co2e_g / _J_PER_KWH
        self.intensity = probe.intensity
        self.pue = probe.pue

    def workerinput(self, worker_id: str) -> dict[str, Any]:
        """Builtins only: what a worker needs to measure and judge as the controller would."""
        d = self.opts.to_workerinput()
        d.update(g_per_j=self.g_per_j, intensity=self.intensity, pue=self.pue)
        if self.opts.gpu_per_worker:
            gpus = [m.device for m in self.meter_set.meters if m.kind == "gpu"]
            if gpus:
                k = int("".join(ch for ch in worker_id if ch.isdigit()) or 0)
                d["gpu"] = gpus[k % len(gpus)]
                d["gpu_exclusive"] = self.worker_count <= len(gpus)
                self.gpu_assignment[worker_id] = d["gpu"]
        return d

    # -- header -----------------------------------------------------------------------------------
    def header_lines(self) -> list[str]:
        if self.role == ROLE_WORKER:
            return []
        from . import report

        return report.header_lines(self)

    # -- session window ---------------------------------------------------------------------------
    def session_started(self) -> None:
        self.sampler.acquire_window()  # keeps power-integrating meters polled for the whole run
        self.t0_wall = clock.utc_now_iso()
        self.t0_epoch = time.time()
        self.s0 = self.rec.read()
        self.mono_to_epoch = self.t0_epoch - self.s0[0]

    def judge_none(self) -> None:
        """After an unexpected error reading the markers: no test has a budget. A marker's generous
        budget or carbon_skip may have gone unread, so the default must not judge them either."""
        self.budgets = {}
        self.default_budget = None

    def collected(self, items: list[pytest.Item]) -> None:
        budgets, errors = item_budgets(items, self.default_budget)
        default = self.default_budget
        # Only the exceptions to the default: without markers begin_test looks nothing up.
        self.budgets = {k: b for k, b in budgets.items() if b is not default}
        if not errors:
            return
        if self.role == ROLE_WORKER:
            # A UsageError raised on a worker is an INTERNALERROR on the controller: run nothing,
            # and let the controller report the error and exit with code 4.
            self.marker_errors = errors
            items[:] = []
            return
        raise pytest.UsageError(marker_error_message(errors))

    # -- per test ---------------------------------------------------------------------------------
    # On every test's path: three readings (four when the previous test's last one is too old to
    # reuse), kept on the recorder, and the figures put on the item once, at its end. Nothing
    # else unless a budget needs judging or explaining. The recorder knows the open test by its
    # item: no nodeid is read (a property, two calls in pytest 9) unless a marker needs it. The
    # call's and the teardown's start go from the plugin to the recorder directly.
    def begin_test(self, item: pytest.Item) -> bool:
        budgets = self.budgets  # only the tests whose budget is not the default (collected)
        budget = budgets.get(item.nodeid, self.default_budget) if budgets else self.default_budget
        if budget is SKIP:
            self.rec.forget_last_reading()  # its energy must not become the next test's setup
            return False
        ups = item.user_properties
        if ups:  # a rerun of the same item: replace our figures, never add a second set
            ups[:] = [p for p in ups if not str(p[0]).startswith(rec_mod.PREFIX)]
        self.rec.start_test(item, budget)
        return True

    def end_call(self, item: pytest.Item, failed: bool) -> None:
        verdict = self.rec.end_call(item)
        if verdict is not None:
            self.judged(item, verdict, failed)

    def judged(self, item: pytest.Item, verdict: Verdict, failed: bool) -> None:
        """A call's verdict: over budget fails a passing test; over or inconclusive gets the
        breakdown on its call report. (The plugin calls this only for a verdict other than "ok"
        or none, after a call that passed: CarbonPlugin.pytest_runtest_call.)"""
        status = verdict.status
        if status in QUIET:
            return
        if status in (STATUS_OVER, STATUS_INCONCLUSIVE):
            self._sections.add(item.nodeid)  # the breakdown goes on its call report (logreport)
        if status == STATUS_OVER and not failed:
            item.user_properties.append((rec_mod.P_FAILED, True))
            pytest.fail(verdict.message, pytrace=False)

    def end_teardown(self, item: pytest.Item) -> None:
        props = self.rec.end_teardown(item)
        if props is not None:
            item.user_properties.extend(props)

    def add_section(self, report: pytest.TestReport) -> None:
        """The breakdown, on the call report of a test over (or possibly over) its budget."""
        record = self.rec.record_of(report.nodeid)
        if record is None or record.verdict is None:
            return
        if record.verdict.status not in (STATUS_OVER, STATUS_INCONCLUSIVE):
            return
        report.sections.append(("carbon budget", self.rec.section(record, record.verdict)))

    def status_hooks_needed(self) -> bool:
        """Does any test have a budget (so it may fail on one)?"""
        if self.default_budget is not None:
            return True
        return any(b is not None and b is not SKIP for b in self.budgets.values())

    def teststatus(self, report: pytest.TestReport) -> Any:
        if getattr(report, "carbon_regression", False):
            # counted as failed; no progress letter (the progress line is complete by now)
            if report.when == "call":
                return "failed", "", ("FAILED", {"red": True})
            return "", "", ""
        if report.when == "call" and report.failed:
            for k, v in report.user_properties:
                if k == rec_mod.P_FAILED and v:
                    return "failed", "C", ("FAILED", {"red": True})
        return None

    def logreport(self, report: pytest.TestReport) -> None:
        if self.regressing and getattr(report, "carbon_regression", False):
            return
        if self._sections and report.when == "call" and report.nodeid in self._sections:
            if self.role != ROLE_CONTROLLER:
                self.add_section(report)  # before xdist sends the report, and before it is printed
            self._sections.discard(report.nodeid)
        if self.results is not None:
            self.results.add(report)

    # -- end ----------------------------------------------------------------------------------------
    def session_phase(self) -> tuple[float, list[float]]:
        assert self.s0 is not None
        t1, *e1 = self.rec.read()
        t0, *e0 = self.s0
        return max(0.0, t1 - t0), [max(0.0, b - a) for a, b in zip(e0, e1)]

    def session_finished(self, session: pytest.Session) -> None:
        if self.s0 is None:
            return
        duration, deltas = self.session_phase()
        self.sampler.release_window()
        if self.role == ROLE_WORKER:
            out = self.rec.export()
            out["session"] = [duration, deltas]
            out["mono_to_epoch"] = self.mono_to_epoch
            out["marker_errors"] = self.marker_errors
            self.config.workeroutput[WORKER_KEY] = out
            return
        if self.role == ROLE_CONTROLLER:
            errors = sorted(
                {e for w in self.results.workers.values() for e in w.get("marker_errors", [])}
            )
            if errors:
                self.outcome.usage_error = marker_error_message(errors)
                session.exitstatus = pytest.ExitCode.USAGE_ERROR
                return
        from . import report

        self.outcome.measurement = report.session_measurement(self, duration, deltas)
        failed = report.check_session(self)
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.outcome.regressed:
            from .plugin import route_reports

            route_reports(self.config, self, lean=False)  # regression reports: not results
            report.report_regressions(self)  # failed test cases of their own: terminal, JUnit
        report.write_outputs(self)  # each output on its own; failures in outcome.output_errors
        if self.outcome.output_errors and session.exitstatus == pytest.ExitCode.OK:
            # An output the user asked for is missing: the run must not look green.
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def terminal_summary(self, tr: pytest.TerminalReporter, exitstatus: int) -> None:
        if self.role == ROLE_WORKER or self.s0 is None:
            return
        if self.outcome.usage_error:
            tr.write_line(f"ERROR: {self.outcome.usage_error}", red=True, bold=True)
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR or self.config.option.collectonly:
            return
        from . import report

        report.terminal_summary(self, tr)

    def close(self) -> None:
        if self.own_sampler:
            self.sampler.stop()
        elif self.made_runtime:
            # Ours alone (a notebook's runtime, made before the run, is left running): its sampler
            # thread stops, and a later carbonlab.track() in this process starts afresh. Not while
            # something still uses it (a window a test left open in a thread of its own): its
            # meters must not close under it.
            from carbonlab import runtime

            rt = runtime.peek()
            if rt is not None and rt.sampler is self.sampler and self.sampler.unused():
                runtime.reset()
            self.made_runtime = False
