"""The controller's side: per-test results rebuilt from test reports, and the session total.

Everything here is fed by ``pytest_runtest_logreport``, which fires on the controller for every
report whether the test ran in this process or on an xdist worker, so one code path serves both.
"""

from __future__ import annotations

from typing import Any

from . import recorder as r
from .budget import STATUS_INCONCLUSIVE, STATUS_OVER

# Every property name the recorder writes for local meters (a cluster's other kinds are not here).
_OWN_NAMES = frozenset(
    (
        r.P_ENERGY,
        r.P_CO2E,
        r.P_DURATION,
        r.P_SETUP,
        r.P_TEARDOWN,
        r.P_BELOW,
        r.P_ATTRIBUTION,
        r.P_BUDGET,
        r.P_STATUS,
        r.P_FAILED,
        r.P_FIRST_USE,
        r.P_CLAMPED,
        *(f"{r.KIND_PREFIX}{kind}_j" for kind in ("gpu", "cpu", "ram")),
    )
)


class TestResult:
    """One test as the controller saw it (its last attempt; earlier attempts only in ``rerun_j``).

    Only references are kept while tests run (this is on every test's path); the properties are
    read into a dict the first time a figure is asked for, after the run.
    """

    __test__ = False
    __slots__ = ("nodeid", "_location", "outcome", "_raw", "_props", "attempts", "rerun_j", "_node")

    def __init__(
        self,
        nodeid: str,
        location: tuple[str, int | None, str] = ("", None, ""),
        outcome: str = "",
        raw: list[tuple[str, Any]] | None = None,
        node: Any = None,
    ) -> None:
        self.nodeid = nodeid
        self._location = location  # the report's: path relative to rootdir, 0-based line, domain
        self.outcome = outcome  # passed, failed, skipped, error, xfailed, xpassed
        self._raw = raw or []
        self._props: dict[str, Any] | None = None
        self.attempts = 1
        self.rerun_j = 0.0
        self._node = node  # xdist's WorkerController on the controller, else None

    @property
    def props(self) -> dict[str, Any]:
        """The plugin's figures: the report's properties named with its prefix, in order."""
        if self._props is None:
            # The usual report holds only the plugin's own names: dict() and one set comparison,
            # both in C, give the same dict (first place, last value) as the filter, at a third of
            # its cost over thousands of tests; any other name takes the filter.
            try:
                props = dict(self._raw)
            except (TypeError, ValueError):  # another plugin's unhashable name: the filter skips it
                props = None
            if props is None or not props.keys() <= _OWN_NAMES:
                prefix = r.PREFIX
                props = {k: v for k, v in self._raw if k.__class__ is str and k.startswith(prefix)}
            self._props = props
        return self._props

    @property
    def location(self) -> tuple[str, int | None]:
        """Path relative to the rootdir, and the 1-based line of the test."""
        path, lineno = self._location[0], self._location[1]
        return path, None if lineno is None else lineno + 1

    @property
    def worker(self) -> str | None:
        return getattr(getattr(self._node, "gateway", None), "id", None)

    @property
    def has_call(self) -> bool:
        return r.P_ENERGY in self.props

    @property
    def failed_by_budget(self) -> bool:
        return bool(self.props.get(r.P_FAILED))

    @property
    def energy_j(self) -> float:
        return float(self.props.get(r.P_ENERGY, 0.0))

    @property
    def co2e_g(self) -> float | None:
        v = self.props.get(r.P_CO2E)
        return None if v is None else float(v)

    @property
    def duration_s(self) -> float:
        return float(self.props.get(r.P_DURATION, 0.0))

    @property
    def setup_j(self) -> float:
        return float(self.props.get(r.P_SETUP, 0.0))

    @property
    def teardown_j(self) -> float:
        return float(self.props.get(r.P_TEARDOWN, 0.0))

    @property
    def total_j(self) -> float:
        return self.energy_j + self.setup_j + self.teardown_j

    @property
    def first_use(self) -> int:
        """Modules the call imported (0: none): a one-time cost of its process, not the test's."""
        return int(self.props.get(r.P_FIRST_USE, 0))

    @property
    def clamped_j(self) -> float:
        """Joules above a model's ceiling taken off the call (0: none), e.g. a reaped child's."""
        return float(self.props.get(r.P_CLAMPED, 0.0))

    @property
    def below_resolution(self) -> bool:
        return bool(self.props.get(r.P_BELOW, False))

    @property
    def shared(self) -> bool:
        return self.props.get(r.P_ATTRIBUTION) == r.ATTR_SHARED

    @property
    def budget(self) -> str | None:
        return self.props.get(r.P_BUDGET)

    @property
    def status(self) -> str | None:
        return self.props.get(r.P_STATUS)

    def by_kind(self) -> dict[str, float]:
        out = {}
        for k, v in self.props.items():
            if k.endswith("_j") and k not in _NOT_KINDS:
                out[k[len(r.KIND_PREFIX) : -2]] = float(v)
        return out


def _attrs(report: Any) -> Any:
    """A report's attributes (its __dict__: cheaper than hasattr() on a missing name)."""
    try:
        return report.__dict__
    except AttributeError:  # pragma: no cover - a report type with __slots__
        return {k: None for k in dir(report)}


_NOT_KINDS = {r.P_ENERGY, r.P_SETUP, r.P_TEARDOWN}  # (P_FIRST_USE does not end in _j)


class Results:
    def __init__(self) -> None:
        self.tests: dict[str, TestResult] = {}
        self._outcome: dict[str, str] = {}  # the attempt in progress: its outcome so far
        self.workers: dict[str, dict[str, Any]] = {}  # workeroutput["carbon"] by worker id
        self.lost_workers: list[str] = []
        self._views: dict[str, Any] | None = None  # measured, over, ...: one pass, after the run

    def add(self, report: Any) -> None:
        when = report.when
        if when == "call":
            # "rerun" under pytest-rerunfailures, but the last attempt's call report decides
            outcome = report.outcome
            try:  # _attrs(report) written out: on every test
                attrs = report.__dict__
            except AttributeError:  # pragma: no cover - a report type with __slots__
                attrs = _attrs(report)
            if "wasxfail" in attrs:
                outcome = "xfailed" if outcome == "skipped" else "xpassed"
            self._outcome[report.nodeid] = outcome
            return
        if when == "setup":
            if report.outcome != "passed":
                outcome = "error" if report.failed else "skipped"
                if report.skipped and "wasxfail" in _attrs(report):
                    outcome = "xfailed"  # xfail(run=False)
                self._outcome[report.nodeid] = outcome
            return
        # teardown: the attempt is complete, and its report carries every figure
        ups = report.user_properties
        if not ups or ups[-1][0] != r.P_TEARDOWN:  # the plugin puts it last; another may add after
            for k, _ in reversed(ups):
                if k == r.P_TEARDOWN:
                    break
            else:
                return  # carbon_skip, or not measured
        nodeid = report.nodeid
        outcome = self._outcome.pop(nodeid, "")
        if outcome != "failed" and report.failed:
            outcome = "error"
        try:  # _attrs(report) written out: on every test
            node = report.__dict__.get("node")
        except AttributeError:  # pragma: no cover - a report type with __slots__
            node = _attrs(report).get("node")
        cur = TestResult(nodeid, report.location, outcome, ups, node)
        prev = self.tests.get(nodeid)
        if prev is not None:  # an earlier attempt (pytest-rerunfailures): don't count it twice
            cur.attempts = prev.attempts + 1
            cur.rerun_j = prev.rerun_j + prev.total_j
        self.tests[nodeid] = cur
        self._views = None

    def add_worker(self, worker_id: str, output: dict[str, Any] | None) -> None:
        if output is None:
            self.lost_workers.append(worker_id)
        else:
            self.workers[worker_id] = output

    # -- views --------------------------------------------------------------------------------------
    # The summary, JSON and step summary ask for these many times over thousands of tests: one pass
    # works them all out, again only after a new test result.
    def _view(self, name: str) -> Any:
        views = self._views
        if views is None:
            measured, over, inconclusive, below, first_use = [], [], [], [], []
            call = setup = teardown = rerun = 0.0
            shared = False
            for t in self.tests.values():
                p = t.props
                call += float(p.get(r.P_ENERGY, 0.0))
                setup += float(p.get(r.P_SETUP, 0.0))
                teardown += float(p.get(r.P_TEARDOWN, 0.0))
                rerun += t.rerun_j
                status = p.get(r.P_STATUS)
                if status == STATUS_OVER:
                    over.append(t)
                elif status == STATUS_INCONCLUSIVE:
                    inconclusive.append(t)
                if not shared and p.get(r.P_ATTRIBUTION) == r.ATTR_SHARED:
                    shared = True
                if r.P_ENERGY in p:
                    measured.append(t)
                    if p.get(r.P_BELOW, False):
                        below.append(t)
                    if p.get(r.P_FIRST_USE, 0):
                        first_use.append(t)
            views = self._views = {
                "measured": measured,
                "over": over,
                "inconclusive": inconclusive,
                "below": below,
                "first_use": first_use,
                "shared": shared,
                "totals": {
                    "call_j": call,
                    "setup_j": setup,
                    "teardown_j": teardown,
                    "rerun_j": rerun,
                },
            }
        return views[name]

    def measured(self) -> list[TestResult]:
        return list(self._view("measured"))

    def over(self) -> list[TestResult]:
        return list(self._view("over"))

    def inconclusive(self) -> list[TestResult]:
        return list(self._view("inconclusive"))

    def below_resolution(self) -> list[TestResult]:
        return list(self._view("below"))

    def first_use(self) -> list[TestResult]:
        return list(self._view("first_use"))

    def any_shared(self) -> bool:
        return bool(self._view("shared"))

    def top(self, n: int | None) -> list[TestResult]:
        ranked = sorted(self._view("measured"), key=lambda t: t.energy_j, reverse=True)
        return ranked if not n else ranked[:n]

    def totals(self) -> dict[str, float]:
        return dict(self._view("totals"))
