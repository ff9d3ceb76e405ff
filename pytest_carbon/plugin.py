"""pytest hooks for carbon budgets (``pytest --carbon``, ``--carbon-budget=5J``; see docs/pytest.md).

Loaded on every pytest run where carbonlab is installed. Until a ``--carbon*`` option, the ini file or
``PYTEST_CARBON_BUDGET`` turns it on, it only registers options and markers: nothing from the
carbonlab core is imported and no meter is opened. When on, :class:`CarbonPlugin` is registered; its
hooks delegate to :mod:`.recorder` (measuring, in every process that runs tests), :mod:`.results`
and :mod:`.report` (aggregating and output, on the controller only) and :mod:`.storage` (baselines).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from . import leave_unrewritten, options

if TYPE_CHECKING:  # pragma: no cover
    from .session import CarbonSession

PLUGIN_NAME = "carbon-session"
STATUS_PLUGIN_NAME = "carbon-status"
REPORTS_PLUGIN_NAME = "carbon-reports"
XDIST_PLUGIN_NAME = "carbon-xdist"
# The oldest pytest and pluggy the plugin works with: ``wrapper=True`` hook implementations (pluggy
# 1.2, pytest 7.4 relies on it), ``pytest.StashKey`` (pytest 7.0). Declared as the ``pytest`` extra.
MIN_PYTEST = (7, 4)
MIN_PLUGGY = (1, 2)


def _release(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _pluggy_metadata_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pluggy")
    except PackageNotFoundError:  # vendored or renamed: judge by pytest alone
        return "0" if _release(pytest.__version__) < MIN_PYTEST else "1.2"


def _versions() -> tuple[str, str | None]:
    """pytest's version, and pluggy's: None when pluggy's hookimpl takes ``wrapper`` (1.2 and
    later), which is all the plugin needs to know. Asking importlib.metadata (pluggy's own
    ``__version__`` does) costs ~4 ms, on every pytest run where carbonlab is installed."""
    import pluggy

    try:
        code = getattr(vars(pluggy.HookimplMarker).get("__call__"), "__code__", None)
    except Exception:  # a pluggy without HookimplMarker (vendored, rewritten): ask its metadata
        code = None
    if code is not None and "wrapper" in code.co_varnames:
        return pytest.__version__, None
    return pytest.__version__, _pluggy_metadata_version()


def version_problem() -> str | None:
    """Why this pytest/pluggy cannot run the plugin, in one sentence; None when they can."""
    pt, pl = _versions()
    if _release(pt) >= MIN_PYTEST and (pl is None or _release(pl) >= MIN_PLUGGY):
        return None
    if pl is None:
        pl = _pluggy_metadata_version()
    need = ".".join(map(str, MIN_PYTEST)), ".".join(map(str, MIN_PLUGGY))
    return (
        f"pytest-carbon needs pytest>={need[0]} and pluggy>={need[1]} (found pytest {pt}, pluggy "
        f"{pl}): carbon measurement is off for this run; pip install 'carbonlab[pytest]' updates "
        "them"
    )


_SUPPORTED = version_problem() is None
SESSION_KEY: Any = pytest.StashKey["CarbonSession"]() if hasattr(pytest, "StashKey") else None
# On an older pluggy, hookimpl(wrapper=True) is a TypeError while this module is imported: the
# hooks below are then plain functions, never registered (pytest_configure stops first).
_wrapper: Any = pytest.hookimpl(wrapper=True) if _SUPPORTED else (lambda f: f)


def __dir__() -> list[str]:
    """The hooks alone (see _Hooks): pytest registers this module in every session where
    carbonlab is installed, and pluggy and the fixture manager read every name ``dir()`` gives."""
    return ["pytest_addhooks", "pytest_addoption", "pytest_configure"]


class _Hooks:
    """A plugin object whose ``dir()`` is its hooks alone. pluggy, to find the hooks, and pytest's
    fixture manager, to find fixtures, read every name ``dir()`` gives when an object is
    registered; an instance's ~26 names inherited from ``object`` cost ~1 M instructions a
    registration in pytest 9 (it unwraps each one, looking for a wrapped fixture)."""

    def __dir__(self) -> list[str]:
        return [n for n in dir(type(self)) if n.startswith("pytest_")]


class Hookspecs(_Hooks):
    """Hooks pytest-carbon offers to conftest files and other plugins (a class here, not a module of
    their own: a module import costs ~0.4 M instructions in a pytest session, in every run where
    carbonlab is installed)."""

    @staticmethod
    @pytest.hookspec(firstresult=True)
    def pytest_carbon_meter_set(config: pytest.Config) -> Any:
        """Return the ``carbonlab.meters.MeterSet`` to measure tests with, or None for the default.

        The default is the process-wide meters of ``carbonlab.runtime``: NVML GPUs, RAPL packages
        or the CPU-time model, and the RAM model. Called once per process (on each xdist worker
        too), so a conftest can give every worker scripted meters for exact, hardware-free tests.
        """

    @staticmethod
    @pytest.hookspec
    def pytest_carbon_update_json(config: pytest.Config, document: dict[str, Any]) -> None:
        """Change the ``--carbon-json`` / saved-run document in place before it is written."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    # A second session in this process (pytester) marks the packages again for its own hook.
    leave_unrewritten(getattr(pluginmanager, "rewrite_hook", None))
    pluginmanager.add_hookspecs(Hookspecs())  # an instance: its dir() is the two hooks (_Hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for help_line in options.MARKER_HELP.values():
        config.addinivalue_line("markers", help_line)
    if not options.enabled(config):
        return
    problem = version_problem()
    if problem is not None:  # one warning, nothing registered: the user's run goes on unmeasured
        config.issue_config_time_warning(pytest.PytestConfigWarning(problem), stacklevel=2)
        return
    from .session import CarbonSession

    session = CarbonSession.start(config, options.resolve(config))
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(CarbonPlugin(session), PLUGIN_NAME)
    # The sampler stops after every pytest_unconfigure: a cleanup, not a hook (a hook costs ~0.2 M
    # instructions to register, on every enabled run's start).
    config.add_cleanup(session.close)
    if session.role == "controller":  # it collects nothing: its reports are routed now
        route_reports(config, session, lean=False)
    if session.role == "controller":  # workers' budget failures and regressions are shown here
        register_status_hooks(config, session)
    if session.role == "controller" and config.pluginmanager.hasplugin("xdist"):
        from .xdist import XdistHooks

        config.pluginmanager.register(XdistHooks(session), XDIST_PLUGIN_NAME)


def register_status_hooks(config: pytest.Config, session: CarbonSession) -> None:
    """The progress letter and word of a test failed by its budget, or of a regression: registered
    only when a test has a budget (after collection), a regression is reported, or on the xdist
    controller, so that runs without budgets pay nothing for it on each report."""
    if not config.pluginmanager.has_plugin(STATUS_PLUGIN_NAME):
        config.pluginmanager.register(StatusHooks(session), STATUS_PLUGIN_NAME)


def route_reports(config: pytest.Config, session: CarbonSession, lean: bool) -> None:
    """Who gets each test report (three a test). ``lean`` (after collection, when no test has a
    budget): on an xdist worker nobody (the controller reads the figures), else the results
    themselves, with no call of the plugin's in between; otherwise the session, which also adds
    a budget's breakdown to a call report and keeps regression reports out of the results."""
    pm = config.pluginmanager
    if lean and session.role != "worker" and session.results is not None:
        hooks: Any = ResultHooks(session.results)
    elif lean and session.role == "worker":
        hooks = None
    else:
        hooks = ReportHooks(session)
    old = pm.get_plugin(REPORTS_PLUGIN_NAME)
    if old is not None:
        if type(old) is type(hooks):
            return
        pm.unregister(old, REPORTS_PLUGIN_NAME)
    if hooks is not None:
        pm.register(hooks, REPORTS_PLUGIN_NAME)


class ReportHooks(_Hooks):
    def __init__(self, session: CarbonSession) -> None:
        self.s = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.s.logreport(report)


class ResultHooks:
    """pytest calls Results.add itself: the cheapest hook implementation there is."""

    def __init__(self, results: Any) -> None:
        self.pytest_runtest_logreport = results.add

    def __dir__(self) -> list[str]:  # as _Hooks: the one hook, an instance attribute
        return ["pytest_runtest_logreport"]


class StatusHooks(_Hooks):
    def __init__(self, session: CarbonSession) -> None:
        self.s = session

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        return self.s.teststatus(report)


def _error_line(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


class CarbonPlugin(_Hooks):
    """The hooks of an enabled run; each one hands over to the session object at once (or to its
    recorder, where the session would only pass the call on: a call fewer on a test's path)."""

    def __init__(self, session: CarbonSession) -> None:
        self.s = session
        self.r = session.rec
        # Reports are routed and budgets read from markers after collection; a worker or a single
        # process that reaches its first test without that (another plugin's pytest_collection
        # never called pytest_collection_modifyitems) does both then. The controller routes now.
        self.routed = session.role == "controller"
        from .budget import QUIET

        self.quiet = QUIET  # verdicts with nothing to do at a call's end

    # -- before tests -----------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return self.s.header_lines()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.s.session_started()

    @_wrapper
    def pytest_collection_modifyitems(
        self, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        # After every other implementation, trylast ones included: markers a conftest adds here
        # (the usual way to mark many tests) and deselection are seen.
        result = yield
        try:
            self.s.collected(items)
        except pytest.UsageError:  # a bad marker: the user's to fix, the run stops (exit 4)
            raise
        except Exception as e:  # a fault of ours: measured, never judged, said once
            self.s.judge_none()
            self.s.outcome.notes.append(
                f"the tests' budget markers could not be read ({_error_line(e)}): "
                "every test ran without a budget"
            )
        self._route()
        return result

    def _route(self) -> None:
        # Reports are routed once the budgets are known (each registration costs ~1 M
        # instructions: pytest's fixture manager reads every new plugin), before any test runs.
        self.routed = True
        if self.s.status_hooks_needed():
            register_status_hooks(self.s.config, self.s)
            route_reports(self.s.config, self.s, lean=False)
        else:
            route_reports(self.s.config, self.s, lean=True)

    def _route_late(self, item: pytest.Item) -> None:
        """The first test, when our collection hook never ran: the markers' budgets are read from
        the session's items (this test's alone if there are none), the reports routed, and the
        run told once. Nothing here may fail the test: a marker error becomes the note."""
        self.routed = True
        items = list(getattr(item.session, "items", None) or [item])
        note = (
            "carbonlab's collection hook did not run (another plugin collected the tests "
            "without pytest_collection_modifyitems): budgets were read from markers when the "
            "first test started"
        )
        try:
            self.s.collected(items)
        except pytest.UsageError as e:  # a bad marker; those tests run without a budget
            note += f"; those tests ran without a budget: {' '.join(str(e).split())}"
        except Exception as e:  # a fault of ours: never the test's failure
            self.s.judge_none()
            note += f"; no test was judged: the markers could not be read ({_error_line(e)})"
        self.s.outcome.notes.append(note)
        self._route()

    # -- each test ----------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if not self.routed:
            self._route_late(item)
        self.s.begin_test(item)  # tryfirst: before fixtures, and before skip marks are evaluated

    @_wrapper
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        self.r.begin_call(item)
        try:
            result = yield
        except BaseException:  # noqa: B036 - re-raised: the test keeps its own failure
            self.s.end_call(item, failed=True)
            raise
        # session.end_call written out: on every test, and most verdicts need nothing done.
        verdict = self.r.end_call(item)
        if verdict is not None and verdict.status not in self.quiet:
            self.s.judged(item, verdict, failed=False)  # may fail it: pytest.fail(pytrace=False)
        return result

    @_wrapper
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        self.r.begin_teardown(item)  # closes the setup when no call ran
        try:
            return (yield)
        finally:
            self.s.end_teardown(item)

    # (pytest_runtest_logreport: ReportHooks or ResultHooks, see route_reports)

    # -- after tests --------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # tryfirst: before xdist tears its workers down, and before the terminal summary is written.
        self.s.session_finished(session)

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter, exitstatus: int
    ) -> None:
        self.s.terminal_summary(terminalreporter, exitstatus)
