"""The per-process side: read the meters at each phase boundary of each test, judge budgets, and put
the figures on ``item.user_properties`` (flat scalars, so they reach the controller under xdist and
appear in JUnit XML as they are).

Each phase (setup, call, teardown) is its own window: the meters are read when it starts and when
it ends. The gaps between phases (pytest building and logging reports, formatting a traceback) are
pytest's own work: they count in the session total, not in any test's figures.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from carbonlab import _clusters as cluster  # carbonlab.cluster's calls, imported when one attaches
from carbonlab import clock
from carbonlab.measurement import (
    SCOPE_DEVICE,
    SCOPE_PACKAGE,
    SCOPE_PROCESS,
    SCOPE_PROCESS_ESTIMATED,
    Measurement,
    components_from_deltas,
)
from carbonlab.meters import MeterSet
from carbonlab.meters.base import Attribution

from .budget import SKIP, STATUS_NONE, VERDICT_OK, Part, TestBudget, Verdict, judge, within

NO_VERDICT = Verdict(STATUS_NONE)

# Flat user_properties: one name per figure, values are numbers, booleans or short strings.
P_ENERGY = "carbon_energy_j"  # call phase, every component (shared ones included)
P_CO2E = "carbon_co2e_g"  # call phase
P_DURATION = "carbon_duration_s"  # call phase
P_SETUP = "carbon_setup_j"
P_TEARDOWN = "carbon_teardown_j"
P_BELOW = "carbon_below_resolution"  # the call was shorter than some meter resolves
P_ATTRIBUTION = "carbon_attribution"  # "exclusive" or "shared" (machine-wide counter, xdist)
P_BUDGET = "carbon_budget"
P_STATUS = "carbon_budget_status"  # ok, over, inconclusive
P_FAILED = "carbon_budget_failed"  # True when the budget (not the test itself) failed the test
P_FIRST_USE = "carbon_first_use"  # modules the call imported (only when > 0): a first-use cost
P_CLAMPED = "carbon_clamped_j"  # joules above a model's ceiling, taken off the call (only when > 0)
KIND_PREFIX = "carbon_"  # + kind + "_j": carbon_gpu_j, carbon_cpu_j, carbon_ram_j
PREFIX = "carbon_"

ATTR_EXCLUSIVE = "exclusive"
ATTR_SHARED = "shared"
MACHINE_WIDE = (SCOPE_DEVICE, SCOPE_PACKAGE)


class Phase:
    """One phase of one test: its duration and the joules of each meter (Recorder.meters order)."""

    __slots__ = (
        "duration_s",
        "deltas",
        "started_at",
        "attributions",
        "remote",
        "imported",
        "clamped",
    )

    def __init__(self, duration_s: float, deltas: list[float], started_at: float = 0.0) -> None:
        self.duration_s = duration_s
        self.deltas = deltas
        self.started_at = started_at  # clock.now() at its start (monotonic)
        # meter index -> what a GPU meter charged to this process (per-process attribution; the
        # call phase only; None: nothing attributed). Its energy replaces the device's difference
        # in ``deltas``.
        self.attributions: dict[int, Attribution] | None = None
        # Attached clusters (carbonlab.cluster), the call phase only: (component dicts, notes).
        self.remote: tuple[list[dict[str, Any]], list[str]] | None = None
        self.imported = 0  # modules imported during the phase (the call phase only)
        # meter index -> joules read before the model's ceiling capped ``deltas[i]`` (None: none)
        self.clamped: dict[int, float] | None = None


Reading = tuple  # (clock.now(), joules of meter 0, joules of meter 1, ...): floats only


def _joules(r0: Reading, r1: Reading) -> float:
    """Every meter's joules between two readings, summed as ``sum(_phase(r0, r1).deltas)``."""
    total = 0
    for i in range(1, len(r0)):
        total += r1[i] - r0[i]
    return total


class Caps:
    """Model meters' ceilings: ``items`` (meter index, W), and the lowest of them, ``low``: a phase
    whose total is under ``low`` × its duration has no meter over its ceiling (joules are never
    negative), which settles nearly every phase with one multiplication."""

    __slots__ = ("items", "low")

    def __init__(self, items: Sequence[tuple[int, float]]) -> None:
        self.items = tuple(items)
        self.low = min((c for _, c in self.items), default=0.0)

    def __bool__(self) -> bool:
        return bool(self.items)


NO_CAPS = Caps(())


def _phase(r0: Reading, r1: Reading, caps: Caps = NO_CAPS) -> Phase:
    p = Phase(r1[0] - r0[0], [b - a for a, b in zip(r0[1:], r1[1:])], r0[0])
    if caps.items and sum(p.deltas) > caps.low * p.duration_s:
        clamp(p, caps.items)
    return p


def clamp(phase: Phase, caps: Sequence[tuple[int, float]]) -> None:
    """Cap each model meter's joules at its ceiling × the phase's duration, as a window does
    (carbonlab.measurement.clamp_component): a reaped child's CPU time, or a tick of another thread's,
    can land in a phase far shorter than the time it was spent in. The excess is kept in
    ``phase.clamped`` and said, never charged to the test."""
    d = phase.duration_s
    deltas = phase.deltas
    for i, ceiling_w in caps:
        cap = ceiling_w * d
        if deltas[i] > cap * (1 + 1e-9):
            if phase.clamped is None:
                phase.clamped = {}
            phase.clamped[i] = deltas[i]
            deltas[i] = cap


def _capped_joules(r0: Reading, r1: Reading, caps: Caps) -> float:
    """``_joules`` with each model meter's share capped at its ceiling (setup, teardown)."""
    total = _joules(r0, r1)
    d = r1[0] - r0[0]
    if not caps.items or total <= caps.low * d:  # every test, every run: nothing to cap
        return total
    for i, ceiling_w in caps.items:
        over = (r1[i + 1] - r0[i + 1]) - ceiling_w * d
        if over > 0:
            total -= over
    return total


class TestRecord:
    """What one attempt of one test used (the last attempt wins).

    While tests run it keeps only raw readings (tuples of floats, which the garbage collector soon
    stops tracking) and the call phase; :attr:`phases` builds the setup and teardown phases when
    first asked for, after the run.
    """

    __test__ = False
    __slots__ = (
        "nodeid",
        "attempts",
        "rerun_j",
        "verdict",
        "budget",
        "r0",
        "r_setup",
        "_call",
        "r_call",
        "r_end",
        "imported",
        "_phases",
        "caps",
    )

    def __init__(
        self,
        nodeid: Any,
        budget: TestBudget | None = None,
        caps: Caps = NO_CAPS,
    ) -> None:
        self.nodeid = nodeid  # the test's key (its pytest item) until Recorder.records names it
        self.caps = caps  # the recorder's model ceilings
        self.attempts = 0
        self.rerun_j = 0.0  # energy of the attempts a rerun plugin threw away
        self.verdict: Verdict | None = None
        self.budget = budget
        self.r0: Reading | None = None  # setup start
        self.r_setup: Reading | None = None  # setup end (call start, or teardown start)
        # The call phase: built at the call's end when something needs it then (a budget, a GPU's
        # attribution, an attached cluster), else from r_setup and r_call when first asked for.
        self._call: Phase | None = None
        self.r_call: Reading | None = None  # call end (teardown start)
        self.r_end: Reading | None = None  # teardown end
        self.imported = 0  # modules the call imported
        self._phases: dict[str, Phase] | None = None

    @property
    def call(self) -> Phase | None:
        """The call phase (None when no call ended)."""
        c = self._call
        if c is None and self.r_call is not None and self.r_setup is not None:
            c = self._call = _phase(self.r_setup, self.r_call, self.caps)
            c.imported = self.imported
        return c

    @property
    def phases(self) -> dict[str, Phase]:
        """setup, call, teardown: those that ended, in that order."""
        if self._phases is None or (self.r_end is not None and "teardown" not in self._phases):
            out: dict[str, Phase] = {}
            caps = self.caps
            if self.r0 is not None and self.r_setup is not None:
                out["setup"] = _phase(self.r0, self.r_setup, caps)
            if self.call is not None:
                out["call"] = self.call
            last = self.r_call if self.r_call is not None else self.r_setup
            if last is not None and self.r_end is not None:
                out["teardown"] = _phase(last, self.r_end, caps)
            self._phases = out
        return self._phases


# A test's setup starts where the previous test's teardown ended when that reading is this recent:
# what lies between is pytest logging the previous report, and one reading fewer per test is a
# quarter of the plugin's per-test cost. Older readings (an xdist worker waiting for work) are not
# reused, so idle time is never charged to a test.
REUSE_READING_S = 0.001


class Recorder:
    """Reads one process's meters at test phase boundaries."""

    def __init__(
        self,
        meter_set: MeterSet,
        *,
        gpu_sync: bool = True,
        g_per_j: float | None = None,
        worker_count: int = 0,
        exclusive_gpu: bool = False,
    ) -> None:
        self.meter_set = meter_set
        self.meters = list(meter_set.meters)
        self.kinds = [m.kind for m in self.meters]
        self.kind_names = {k: f"{KIND_PREFIX}{k}_j" for k in self.kinds}
        self.resolution = [m.resolution_s for m in self.meters]
        self.sync = gpu_sync and "gpu" in self.kinds
        self.g_per_j = g_per_j
        # Under xdist with several workers a device or package counter also counts the tests running
        # beside this one; a GPU of this worker's own (--carbon-gpu-per-worker) does not.
        self.shared = [
            worker_count > 1 and m.scope in MACHINE_WIDE and not (m.kind == "gpu" and exclusive_gpu)
            for m in self.meters
        ]
        self.any_shared = any(self.shared)
        self.max_resolution = max(self.resolution, default=0.0)
        # Per-kind sums for the flat properties: (property name, meter indices).
        groups: dict[str, list[int]] = {}
        for i, k in enumerate(self.kinds):
            groups.setdefault(k, []).append(i)
        self._groups = [(self.kind_names[k], idx) for k, idx in groups.items()]
        # GPU meters can say how much of the device's energy was this process's (several xdist
        # workers or notebooks on one GPU): asked once per call phase, after its end reading.
        self.gpus = [i for i, k in enumerate(self.kinds) if k == "gpu"]
        # carbonlab.window's GPU helpers (syncing frameworks, the wall clock NVML stamps samples
        # with, attribution), imported only with a GPU: a module less at a CPU-only start.
        self._window: Any = None
        if self.gpus or self.sync:
            from carbonlab import window

            self._window = window
        # The common case, one meter per kind: (property name, meter index), no sums to do.
        self._single = (
            [(name, idx[0]) for name, idx in self._groups]
            if all(len(idx) == 1 for _, idx in self._groups)
            else None
        )
        # Model meters' ceilings (meter index, W): no phase is charged more than a model allows.
        self.caps = Caps(
            [(i, c) for i, c in enumerate(_ceiling(m) for m in self.meters) if c is not None]
        )
        self._readers = [m.energy_j for m in self.meters]
        # end_teardown's lean path: two meters of two kinds (CPU and RAM, the usual pair), no GPU:
        # each kind's property name, in meter order (as ``_single`` lists them).
        self._lean: tuple[str, str] | None = None
        if len(self.meters) == 2 and self._single is not None and not self.gpus:
            by_index = {i: name for name, i in self._single}
            self._lean = (by_index[0], by_index[1])
        self._pair = tuple(self._readers) if len(self._readers) == 2 else None
        # The lean path's properties that take one of a few values, made once and shared by every
        # test's list (tuples: nobody can change them; a tuple fewer for the collector each).
        self._below = {False: (P_BELOW, False), True: (P_BELOW, True)}
        self._attribution = (P_ATTRIBUTION, ATTR_SHARED if self.any_shared else ATTR_EXCLUSIVE)
        self._last_end: Reading | None = None  # the latest teardown-end reading
        # The open test (a process runs one at a time): its key (the pytest item, or a nodeid;
        # compared by identity), its readings so far, and its TestRecord only when something needs
        # one while it runs (a budget, a GPU's attribution, an attached cluster).
        self._key: Any = None
        self._budget: TestBudget | None = None
        self._r0: Reading | None = None
        self._rs: Reading | None = None  # setup end (call start, or teardown start)
        self._rc: Reading | None = None  # call end
        self._imported = 0
        self._rec: TestRecord | None = None
        self._begun: list | None = None  # attached clusters read at the call's start
        self._wall_us: int | None = None  # window.wall_us() at the call's start (GPU meters)
        self._modules = 0  # len(sys.modules) when the current call began
        # Finished tests, in the order they ended: the key of a test that took the lean path, whose
        # four readings and imported count are appended to ``_flat`` (floats and ints: no object
        # per test for the garbage collector to track), or its TestRecord. ``records`` builds the
        # records from them when first asked for.
        self._done: list[Any] = []
        self._flat: list[float] = []
        self._records: dict[str, TestRecord] = {}
        self._built = 0  # entries of _done already in _records
        self._flat_at = 0  # where the next lean test's readings start in _flat

    # -- readings -------------------------------------------------------------------------------
    def read(self) -> Reading:
        if self.sync:
            self._window.sync_gpu_frameworks()  # charge queued GPU work to the phase that queued it
        if self._pair is not None:  # the usual two meters (CPU, RAM): no list to build
            f0, f1 = self._pair
            return (clock.now(), f0(), f1())
        return (clock.now(), *[f() for f in self._readers])

    def active(self, key: Any) -> bool:
        return key is self._key and key is not None

    # -- phases (called by the plugin's hooks) -----------------------------------------------------
    # Four readings per test: setup start, call start, call end, teardown end. The call is exact;
    # setup also holds pytest's reporting of the setup, teardown the building of the call's report
    # (a failure's traceback, say): pytest's own work, never charged to the budget. ``key`` is the
    # test's pytest item (or its nodeid): the methods after start_test do nothing for any other.
    def start_test(self, key: Any, budget: TestBudget | None) -> None:
        if self._key is not None:  # the previous test never reached its teardown's end
            self._done.append(self._open_record())
        self._key = key
        self._budget = budget
        self._rec = self._rs = self._rc = self._begun = self._wall_us = None
        self._imported = 0
        last = self._last_end
        if last is not None and clock.now() - last[0] < REUSE_READING_S:
            self._r0 = last
        else:
            self._r0 = self.read()
        self._last_end = None

    def forget_last_reading(self) -> None:
        self._last_end = None

    def begin_call(self, key: Any) -> None:
        if key is not self._key:
            return
        self._rs = self.read()
        begun = cluster.begin_all()  # attached clusters; [] at no cost when there is none
        if begun:
            self._begun = begun
        if self.gpus:
            self._wall_us = self._window.wall_us()  # (a module attribute: tests move it)
        self._modules = len(sys.modules)

    def end_call(self, key: Any) -> Verdict | None:
        """The call's verdict; None when ``key`` is not the open test."""
        if key is not self._key:
            return None
        self._rc = r1 = self.read()
        self._imported = max(0, len(sys.modules) - self._modules)
        begun = self._begun
        if not begun and not self.gpus and self._budget is None:
            # every test, every run: nothing to attribute or judge; the figures are worked out
            # from the readings at the teardown's end, the phases only when asked for
            return NO_VERDICT
        self._begun = None
        rec = self._rec = self._open_record()
        rec._call = phase = _phase(rec.r_setup, r1, self.caps)
        phase.imported = rec.imported
        if begun:
            comps, notes = cluster.end_all(begun, phase.duration_s)
            phase.remote = ([c.to_dict() for c in comps], notes)
        if self.gpus:
            self._attribute(phase)
        b = rec.budget
        if b is None:
            verdict = NO_VERDICT
        elif within(b, sum(phase.deltas) + remote_j(phase), self.g_per_j):
            verdict = VERDICT_OK  # nothing to explain: no message or section is built
        else:
            verdict = judge(b, self.parts(phase), self.g_per_j)
        rec.verdict = verdict
        return verdict

    def begin_teardown(self, key: Any) -> None:
        """Close the setup when no call ran (setup failed or skipped); else nothing to read."""
        if key is self._key and self._rs is None:
            self._rs = self.read()

    def end_teardown(self, key: Any) -> list[tuple[str, Any]] | None:
        """Close the test; its figures as flat properties, in one list (for its teardown report,
        the one JUnit XML and xdist read them from). None when ``key`` is not the open test."""
        if key is not self._key:
            return None
        r1 = self._last_end = self.read()
        rec = self._rec
        lean = self._lean
        if lean is not None and rec is None and self._rc is not None:
            props = self._lean_properties(r1, lean)
            if props is not None:
                self._key = None
                self._done.append(key)
                flat = self._flat
                flat += self._r0
                flat += self._rs
                flat += self._rc
                flat += r1
                flat.append(self._imported)
                return props
        if rec is None:
            rec = self._open_record()
        self._key = None
        rec.r_end = r1
        self._done.append(rec)
        caps = self.caps
        rs = rec.r_setup
        props: list[tuple[str, Any]] = [(P_SETUP, _capped_joules(rec.r0, rs, caps))]
        call = rec.call
        if call is not None:
            self.call_properties(call, rec.verdict or NO_VERDICT, rec.budget, props)
            rs = rec.r_call
        props.append((P_TEARDOWN, _capped_joules(rs, r1, caps)))
        return props

    def _open_record(self) -> TestRecord:
        """The open test's TestRecord: the one its call made, else a new one from its readings."""
        rec = self._rec
        if rec is None:
            rec = TestRecord(self._key, budget=self._budget, caps=self.caps)
            rec.r0, rec.r_setup, rec.r_call = self._r0, self._rs, self._rc
            rec.imported = self._imported
            if self._rc is not None:
                rec.verdict = NO_VERDICT
        return rec

    def record_of(self, nodeid: str) -> TestRecord | None:
        """The record of ``nodeid``: the open test's, else the last attempt's (None: none)."""
        if self._key is not None and _nodeid(self._key) == nodeid:
            return self._open_record()
        return self.records.get(nodeid)

    @property
    def records(self) -> dict[str, TestRecord]:
        """Every test's TestRecord (its last attempt; earlier ones in ``attempts`` and
        ``rerun_j``), in the order the tests first ended, and the open test's, if any."""
        done = self._done
        if self._built < len(done):
            self._build()
        if self._key is None:
            return self._records
        out = dict(self._records)  # a test still open: the run was interrupted, or mid-test
        self._add(out, self._open_record())
        return out

    def _build(self) -> None:
        out = self._records
        flat = self._flat
        n = len(self.meters) + 1  # a reading's length
        at = self._flat_at
        done = self._done
        for i in range(self._built, len(done)):
            k = done[i]
            if k.__class__ is TestRecord:
                rec = k
            else:  # a lean test: its readings and imported count, as end_teardown appended them
                rec = TestRecord(k, caps=self.caps)
                rec.r0 = tuple(flat[at : at + n])
                rec.r_setup = tuple(flat[at + n : at + 2 * n])
                rec.r_call = tuple(flat[at + 2 * n : at + 3 * n])
                rec.r_end = tuple(flat[at + 3 * n : at + 4 * n])
                rec.imported = flat[at + 4 * n]
                rec.verdict = NO_VERDICT
                at += 4 * n + 1
            self._add(out, rec)
        self._flat_at = at
        self._built = len(done)

    @staticmethod
    def _add(out: dict[str, TestRecord], rec: TestRecord) -> None:
        """``rec`` under its nodeid; an earlier attempt of the same test (a rerun plugin runs the
        protocol again) is counted in its attempts and rerun energy, and replaced."""
        rec.nodeid = nodeid = _nodeid(rec.nodeid)
        prev = out.get(nodeid)
        rec.attempts = 1
        rec.rerun_j = 0.0
        if prev is not None:
            rec.attempts = prev.attempts + 1
            rec.rerun_j = prev.rerun_j + sum(sum(p.deltas) for p in prev.phases.values())
        out[nodeid] = rec

    def _lean_properties(self, r1: Reading, names: tuple[str, str]) -> list[tuple[str, Any]] | None:
        """end_teardown's properties for the usual test: two meters of two kinds, no budget, no
        GPU, no cluster, and no meter over its ceiling; None for any other test (the general path).
        The same figures, in the same order and with the same arithmetic, as the general path."""
        r0, rs, rc = self._r0, self._rs, self._rc
        d = rc[0] - rs[0]
        a = rc[1] - rs[1]
        b = rc[2] - rs[2]
        total = a + b  # == sum([a, b])
        caps = self.caps
        low = caps.low
        if caps.items:
            if total > low * d:
                return None  # a meter may be over its ceiling: the general path clamps
            setup = (rs[1] - r0[1]) + (rs[2] - r0[2])
            teardown = (r1[1] - rc[1]) + (r1[2] - rc[2])
            if setup > low * (rs[0] - r0[0]) or teardown > low * (r1[0] - rc[0]):
                return None
        else:
            setup = (rs[1] - r0[1]) + (rs[2] - r0[2])
            teardown = (r1[1] - rc[1]) + (r1[2] - rc[2])
        g = self.g_per_j
        below = self._below[d < self.max_resolution]
        if g is None:
            props = [(P_SETUP, setup), (P_ENERGY, total), (P_DURATION, d), (names[0], a)]
        else:
            props = [
                (P_SETUP, setup),
                (P_ENERGY, total),
                (P_DURATION, d),
                (P_CO2E, total * g),
                (names[0], a),
            ]
        props += ((names[1], b), below)
        if self._imported:
            props.append((P_FIRST_USE, self._imported))
        props += (self._attribution, (P_TEARDOWN, teardown))
        return props

    def _attribute(self, phase: Phase) -> None:
        start = self._wall_us
        self._wall_us = None
        if start is None:
            return
        for i in self.gpus:
            att = self._window.safe_attribute(
                self.meters[i], start, phase.duration_s, phase.deltas[i]
            )
            if att is not None:
                if phase.attributions is None:
                    phase.attributions = {}
                phase.attributions[i] = att
                phase.deltas[i] = att.energy_j

    def shared_in(self, phase: Phase) -> list[bool]:
        """Per meter: does this phase's figure include parallel tests' energy? Not a GPU figure
        that NVML attributed to this process."""
        if not phase.attributions:
            return self.shared
        own = (SCOPE_PROCESS, SCOPE_PROCESS_ESTIMATED)
        return [
            sh and not (i in phase.attributions and phase.attributions[i].scope in own)
            for i, sh in enumerate(self.shared)
        ]

    # -- figures --------------------------------------------------------------------------------
    def parts(self, phase: Phase) -> list[Part]:
        d = phase.duration_s
        parts = [
            Part(k, e, m.method, sh, d < r)
            for k, e, m, sh, r in zip(
                self.kinds, phase.deltas, self.meters, self.shared_in(phase), self.resolution
            )
        ]
        # Attached clusters: a test's own tasks' share counts; a gross figure (every client's
        # work) is shared like a machine-wide counter under xdist.
        for c in phase.remote[0] if phase.remote else []:
            shared = c["scope"] != cluster.SCOPE_TASKS
            parts.append(
                Part(
                    c["kind"], c["energy_j"], c["method"], shared, c.get("below_resolution", False)
                )
            )
        return parts

    def call_properties(
        self,
        phase: Phase,
        verdict: Verdict,
        budget: TestBudget | None,
        props: list[tuple[str, Any]] | None = None,
    ) -> list[tuple[str, Any]]:
        """The call's flat properties, appended to ``props`` (a new list when None)."""
        if props is None:
            props = []
        deltas = phase.deltas
        d = phase.duration_s
        g = self.g_per_j
        if phase.remote is None and self._single is not None:  # every test, every run: lean
            total = sum(deltas)
            props.append((P_ENERGY, total))
            props.append((P_DURATION, d))
            if g is not None:
                props.append((P_CO2E, total * g))
            props += [(name, deltas[i]) for name, i in self._single]
        else:
            remote = remote_by_kind(phase)  # attached clusters (carbonlab.cluster), counted in
            total = sum(deltas) + sum(remote.values())
            props.append((P_ENERGY, total))
            props.append((P_DURATION, d))
            if g is not None:
                props.append((P_CO2E, total * g))
            for name, idx in self._groups:
                local = deltas[idx[0]] if len(idx) == 1 else sum(deltas[i] for i in idx)
                props.append((name, local + remote.pop(name[len(KIND_PREFIX) : -2], 0.0)))
            for kind, j in remote.items():  # a kind only the cluster has (a remote GPU)
                props.append((f"{KIND_PREFIX}{kind}_j", j))
        below = d < self.max_resolution
        if not below and phase.remote is not None:  # a cluster's parts too (as in notebooks)
            below = any(c.get("below_resolution") for c in phase.remote[0])
        props.append((P_BELOW, below))
        if phase.imported:
            props.append((P_FIRST_USE, phase.imported))
        if phase.clamped:
            props.append((P_CLAMPED, sum(j - phase.deltas[i] for i, j in phase.clamped.items())))
        shared = self.any_shared and any(self.shared_in(phase))
        props.append((P_ATTRIBUTION, ATTR_SHARED if shared else ATTR_EXCLUSIVE))
        if budget is not None and verdict.status != STATUS_NONE:
            props.append((P_BUDGET, budget.label))
            props.append((P_STATUS, verdict.status))
        return props

    def section(self, rec: TestRecord, verdict: Verdict) -> str:
        """The report section: the verdict, then every component of the call, then setup."""
        call = rec.phases.get("call")
        lines = [verdict.section] if verdict.section else []
        if call is not None:
            lines.append(f"call: {_fmt_j(sum(call.deltas))} in {call.duration_s:.3f} s")
            for i, (m, e, sh) in enumerate(zip(self.meters, call.deltas, self.shared_in(call))):
                flags = []
                scope = m.scope
                att = call.attributions.get(i) if call.attributions else None
                if att is not None:
                    from carbonlab.summary import attribution_text

                    scope = att.scope
                    if attribution_text(att.params):
                        flags.append(attribution_text(att.params))
                if call.clamped and i in call.clamped:
                    flags.append(
                        f"clamped from {_fmt_j(call.clamped[i])} to the model's ceiling "
                        f"({e / call.duration_s if call.duration_s else 0:.3g} W): time counted "
                        "late (a reaped child's or another thread's)"
                    )
                if call.duration_s < m.resolution_s:
                    flags.append(f"below resolution ({m.resolution_s:g} s)")
                if sh:
                    flags.append("shared with parallel tests")
                params = ", ".join(
                    f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in m.params.items()
                    if k in ("w_per_core", "w_per_gb", "source")
                )
                lines.append(
                    f"  {m.kind:<4} {_fmt_j(e):>10}  {m.method:<20} {scope:<8} {m.device}"
                    + (f" ({params})" if params else "")
                    + (f"  [{'; '.join(flags)}]" if flags else "")
                )
        setup = rec.phases.get("setup")
        if setup is not None:
            lines.append(
                f"setup: {_fmt_j(sum(setup.deltas))} in {setup.duration_s:.3f} s "
                "(measured apart; not charged to the budget)"
            )
        return "\n".join(lines)

    # -- whole-record export (workeroutput, JSON) ------------------------------------------------
    def describe_meters(self) -> list[dict[str, Any]]:
        out = []
        for m, sh in zip(self.meters, self.shared):
            d = m.describe()
            d["shared"] = sh
            out.append(d)
        return out

    def export(self) -> dict[str, Any]:
        """Builtins only (execnet can send it): meters and every test's phases."""
        return {
            "meters": self.describe_meters(),
            "tests": {
                nodeid: {
                    "attempts": r.attempts,
                    "rerun_j": r.rerun_j,
                    "phases": {
                        w: [p.duration_s, list(p.deltas), p.started_at]
                        + ([p.remote[0], p.remote[1]] if p.remote else [])
                        for w, p in r.phases.items()
                    },
                }
                for nodeid, r in self.records.items()
            },
        }


def _nodeid(key: Any) -> str:
    """A test's nodeid from its key: the pytest item's, or the key itself."""
    return key if key.__class__ is str else key.nodeid


def _ceiling(m: Any) -> float | None:
    try:
        c = m.ceiling_w()
    except Exception:  # a meter's ceiling never fails a session
        return None
    return float(c) if c is not None and c >= 0 else None


def remote_by_kind(phase: Phase) -> dict[str, float]:
    """Joules per kind of a phase's cluster components (none: {})."""
    out: dict[str, float] = {}
    for c in phase.remote[0] if phase.remote else []:
        out[c["kind"]] = out.get(c["kind"], 0.0) + float(c["energy_j"])
    return out


def remote_j(phase: Phase) -> float:
    return sum(remote_by_kind(phase).values())


def _fmt_j(j: float) -> str:
    from carbonlab.units import format_energy

    return format_energy(j)


def measurement_from(
    label: str,
    started_at: str,
    duration_s: float,
    deltas: Sequence[float],
    meters: Sequence[dict[str, Any]],
) -> Measurement:
    """A Measurement from per-meter deltas and meter descriptions (as in Recorder.describe_meters)."""
    comps, below = components_from_deltas(deltas, meters, duration_s)
    return Measurement(label, started_at, duration_s, comps, below_resolution=below)


__all__ = ["Recorder", "TestRecord", "Phase", "SKIP", "measurement_from"]
