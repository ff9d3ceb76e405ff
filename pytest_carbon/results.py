"""The controller's side: per-test results rebuilt from test reports, and the session total.

Everything here is fed by ``pytest_runtest_logreport``, which fires on the controller for every
report whether the test ran in this process or on an xdist worker, so one code path serves both.
"""

from __future__ import annotations

from typing import Any

from . import recorder as r
from .budget import STATUS_INCONCLUSIVE, STATUS_OVER


class TestResult:
    """One test as the controller saw it (its last attempt; earlier attempts only in ``rerun_j``)."""

    __test__ = False
    __slots__ = (
        "nodeid",
        "location",
        "outcome",
        "props",
        "attempts",
        "rerun_j",
        "worker",
        "has_call",
        "failed_by_budget",
    )

    def __init__(
        self,
        nodeid: str,
        location: tuple[str, int | None] = ("", None),
        outcome: str = "",
        props: dict[str, Any] | None = None,
        worker: str | None = None,
        has_call: bool = False,
        failed_by_budget: bool = False,
    ) -> None:
        self.nodeid = nodeid
        self.location = location  # path relative to rootdir, 1-based line
        self.outcome = outcome  # passed, failed, skipped, error
        self.props = props or {}
        self.attempts = 0
        self.rerun_j = 0.0
        self.worker = worker
        self.has_call = has_call
        self.failed_by_budget = failed_by_budget

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


_NOT_KINDS = {r.P_ENERGY, r.P_SETUP, r.P_TEARDOWN}


def carbon_props(report: Any) -> dict[str, Any]:
    return {k: v for k, v in report.user_properties if k.startswith(r.PREFIX)}


def _worker_of(report: Any) -> str | None:
    node = getattr(report, "node", None)  # set by xdist on the controller
    gw = getattr(node, "gateway", None)
    return getattr(gw, "id", None)


class Results:
    def __init__(self) -> None:
        self.tests: dict[str, TestResult] = {}
        self._outcome: dict[str, str] = {}  # the attempt in progress: its outcome so far
        self.workers: dict[str, dict[str, Any]] = {}  # workeroutput["carbon"] by worker id
        self.lost_workers: list[str] = []

    def add(self, report: Any) -> None:
        when = report.when
        nodeid = report.nodeid
        if when == "call":
            self._outcome[nodeid] = (
                report.outcome
            )  # "rerun" under pytest-rerunfailures, but the last
            return
        if when == "setup":
            self._outcome[nodeid] = (
                "error" if report.failed else "skipped" if report.skipped else ""
            )
            return
        # teardown: the attempt is complete, and its report carries every figure
        outcome = self._outcome.pop(nodeid, "")
        if report.failed and outcome != "failed":
            outcome = "error"
        props = {k: v for k, v in report.user_properties if k.startswith(r.PREFIX)}
        if not props:
            return  # carbon_skip, or not measured
        path, lineno, _ = report.location
        cur = TestResult(
            nodeid,
            location=(path, None if lineno is None else lineno + 1),
            outcome=outcome,
            props=props,
            worker=_worker_of(report),
            has_call=r.P_ENERGY in props,
            failed_by_budget=bool(props.get(r.P_FAILED)),
        )
        prev = self.tests.get(nodeid)
        cur.attempts = 1
        if prev is not None:  # an earlier attempt (pytest-rerunfailures): don't count it twice
            cur.attempts = prev.attempts + 1
            cur.rerun_j = prev.rerun_j + prev.total_j
        self.tests[nodeid] = cur

    def add_worker(self, worker_id: str, output: dict[str, Any] | None) -> None:
        if output is None:
            self.lost_workers.append(worker_id)
        else:
            self.workers[worker_id] = output

    # -- views --------------------------------------------------------------------------------------
    def measured(self) -> list[TestResult]:
        return [t for t in self.tests.values() if t.has_call]

    def over(self) -> list[TestResult]:
        return [t for t in self.tests.values() if t.status == STATUS_OVER]

    def inconclusive(self) -> list[TestResult]:
        return [t for t in self.tests.values() if t.status == STATUS_INCONCLUSIVE]

    def below_resolution(self) -> list[TestResult]:
        return [t for t in self.measured() if t.below_resolution]

    def top(self, n: int | None) -> list[TestResult]:
        ranked = sorted(self.measured(), key=lambda t: t.energy_j, reverse=True)
        return ranked if not n else ranked[:n]

    def totals(self) -> dict[str, float]:
        tests = list(self.tests.values())
        return {
            "call_j": sum(t.energy_j for t in tests),
            "setup_j": sum(t.setup_j for t in tests),
            "teardown_j": sum(t.teardown_j for t in tests),
            "rerun_j": sum(t.rerun_j for t in tests),
        }
