"""Budget markers and verdicts: what a test may use, and whether its call phase stayed within it.

Markers, on a test, a class or a module (the closest wins, and replaces the default entirely)::

    @pytest.mark.carbon_budget("5 J")                      # an energy or an emission
    @pytest.mark.carbon_budget(energy="2 Wh", co2e="0.3 g")  # both limits apply
    @pytest.mark.carbon_skip                                # not measured, no budget

Markers are read and validated at collection (:func:`item_budgets`): a bad unit is one UsageError that
names every offending test and lists the accepted units, before any test runs.

A :class:`Verdict` knows its one-line failure message and its report section:

>>> from carbonlab.units import parse_budget
>>> b = TestBudget(energy=parse_budget("5 J"), source="marker")
>>> calls = [Part("gpu", 6.10, "nvml-energy-counter"), Part("cpu", 1.02, "cpu-time-model"),
...          Part("ram", 0.19, "ram-model")]
>>> print(judge(b, calls, g_per_j=None).message)
carbon budget exceeded: 7.31 J > 5 J (call; gpu 6.10 J nvml-energy-counter, cpu 1.02 J cpu-time-model, ram 0.19 J)
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from carbonlab._record import record
from carbonlab.units import (
    CO2E_UNITS,
    ENERGY_UNITS,
    Budget,
    UnitError,
    format_energy,
    normalise_quantity,
    one_line,
    parse_budget,
    parse_co2e,
    parse_energy,
)

from .options import MARK_BUDGET, MARK_SKIP

STATUS_OK = "ok"
STATUS_OVER = "over"
STATUS_INCONCLUSIVE = (
    "inconclusive"  # over only through shared or unresolved figures: warned, not failed
)
STATUS_NONE = "none"  # no budget
QUIET = (STATUS_OK, STATUS_NONE)  # verdicts with nothing to do at a call's end
METHOD_OBVIOUS = {"ram": "ram-model"}  # left out of the one-line message; the section has it


@record(frozen=True)
class TestBudget:
    """The limits that apply to one test's call phase, and where they came from."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    energy: Budget | None = None
    co2e: Budget | None = None
    source: str = ""

    @functools.cached_property
    def label(self) -> str:
        """'5 J', or '2 Wh, 0.3 g' (computed once: every test's properties carry it)."""
        return ", ".join(b.text for b in (self.energy, self.co2e) if b is not None)

    def describe(self) -> str:
        return self.label

    @classmethod
    def of(cls, budget: Budget | None, source: str) -> TestBudget | None:
        if budget is None:
            return None
        if budget.kind == "energy":
            return cls(energy=budget, source=source)
        return cls(co2e=budget, source=source)


class MarkerError(ValueError):
    pass


def accepted_units() -> str:
    return (
        f"energy {', '.join(ENERGY_UNITS)}; emissions {', '.join(CO2E_UNITS)} "
        "(optionally followed by CO2e, e.g. '0.3 gCO2e')"
    )


def _call_form(mark: pytest.Mark) -> str:
    parts = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"{mark.name}({', '.join(parts)})"


def budget_from_marker(mark: pytest.Mark) -> TestBudget:
    """Read a ``carbon_budget`` marker; MarkerError says what is wrong and what is accepted."""
    args, kwargs = mark.args, dict(mark.kwargs)
    unknown = set(kwargs) - {"energy", "co2e"}
    if unknown:
        raise MarkerError(
            f"unknown argument(s) {', '.join(sorted(unknown))}; accepted: one positional budget, "
            "energy=..., co2e=..."
        )
    if len(args) > 1:
        raise MarkerError("takes at most one positional budget")
    if not args and not kwargs:
        raise MarkerError("needs a budget, e.g. carbon_budget('5 J')")
    energy = co2e = None
    try:
        if args:
            b = parse_budget(args[0])
            b = Budget(b.kind, b.value, normalise_quantity(b.text))
            if b.kind == "energy":
                energy = b
            else:
                co2e = b
        if "energy" in kwargs:
            if energy is not None:
                raise MarkerError("energy given twice (positional and energy=)")
            text = kwargs["energy"]
            energy = Budget("energy", parse_energy(text), normalise_quantity(text))
        if "co2e" in kwargs:
            if co2e is not None:
                raise MarkerError("co2e given twice (positional and co2e=)")
            text = kwargs["co2e"]
            co2e = Budget("co2e", parse_co2e(text), normalise_quantity(text))
    except UnitError as e:
        # The caller lists the accepted units once, after every bad marker.
        raise MarkerError(str(e).split("; accepted units:")[0]) from None
    for b in (energy, co2e):
        if b is not None and b.value <= 0:
            raise MarkerError(
                f"{b.text!r}: a zero budget fails every test that uses any energy; give a "
                "positive amount, or carbon_skip for no measurement"
            )
    return TestBudget(energy=energy, co2e=co2e, source=f"marker {_call_form(mark)}")


SKIP = TestBudget(source="carbon_skip")  # sentinel: not measured


_OURS = (MARK_SKIP, MARK_BUDGET)


def _closest_marks(
    node: pytest.Item | pytest.Collector, cache: dict[int, tuple[Any, Any]]
) -> tuple[Any, Any]:
    """(closest carbon_skip, closest carbon_budget) of a node, as ``get_closest_marker`` finds them:
    the first in the node's own markers, else its parent's. Parents (modules, classes) are shared by
    many tests, so their answer is cached: a marker lookup per test costs pytest ~20 µs, this ~1 µs.
    """
    key = id(node)
    hit = cache.get(key)
    if hit is not None:
        return hit
    parent = node.parent
    skip, budget = _closest_marks(parent, cache) if parent is not None else (None, None)
    own_skip = own_budget = None
    for mark in node.own_markers:
        if mark.name == MARK_SKIP and own_skip is None:
            own_skip = mark
        elif mark.name == MARK_BUDGET and own_budget is None:
            own_budget = mark
    result = (own_skip or skip, own_budget or budget)
    cache[key] = result
    return result


def item_budgets(
    items: Sequence[pytest.Item], default: TestBudget | None
) -> tuple[dict[str, TestBudget | None], list[str]]:
    """Budget per nodeid (``SKIP`` for carbon_skip) and the errors, one line per bad marker.

    Marker objects are shared by every test of a class or module, so each is parsed once.
    """
    out: dict[str, TestBudget | None] = {}
    errors: list[str] = []
    parsed: dict[int, TestBudget | MarkerError] = {}
    parents: dict[int, tuple[Any, Any]] = {}
    for item in items:
        parent = item.parent
        skip, mark = _closest_marks(parent, parents) if parent is not None else (None, None)
        for own in item.own_markers:
            if own.name in _OURS:
                skip, mark = _closest_marks(item, {id(parent): (skip, mark)})
                break
        if skip is not None:
            out[item.nodeid] = SKIP
            continue
        if mark is None:
            out[item.nodeid] = default
            continue
        key = id(mark)
        got = parsed.get(key)
        if got is None:
            try:
                got = budget_from_marker(mark)
            except MarkerError as e:
                got = e
            parsed[key] = got
        if isinstance(got, MarkerError):
            errors.append(one_line(f"{item.nodeid}: {_call_form(mark)}: {got}"))
            out[item.nodeid] = None
        else:
            out[item.nodeid] = got
    return out, errors


def marker_error_message(errors: Sequence[str]) -> str:
    """One UsageError for every bad marker: each names its test, then the accepted units once."""
    return (
        f"carbon: bad {MARK_BUDGET} marker{'s' if len(errors) > 1 else ''}:\n  "
        + "\n  ".join(errors)
        + f"\naccepted units: {accepted_units()}; e.g. {MARK_BUDGET}('5 J') or "
        f"{MARK_BUDGET}(energy='2 Wh', co2e='0.3 g')"
    )


# --- verdicts ---------------------------------------------------------------------------------


@record(frozen=True)
class Part:
    """One component's share of a phase, as the verdict sees it."""

    kind: str
    energy_j: float
    method: str
    shared: bool = False  # a machine-wide counter that parallel tests also moved (xdist)
    below_resolution: bool = False

    @property
    def counted(self) -> bool:
        """Whether this figure can fail a test: attributable to it and resolved by its meter."""
        return not self.shared and not self.below_resolution


# Compiled where it is used (re caches it): a budget to explain, not every session's start.
_NUMBER = r"\s*[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*"


def _unit_of(budget: Budget) -> tuple[str, float]:
    """The unit the budget was written in, and its size in J or g ("5 kJ" -> ("kJ", 1000))."""
    m = re.match(_NUMBER, budget.text)
    if m is not None:
        try:
            number = float(m.group())
        except ValueError:
            number = 0.0
        unit = budget.text[m.end() :].strip()
        if number > 0 and unit:
            if budget.kind == "co2e" and "CO" not in unit:
                unit += "CO2e"
            return unit, budget.value / number
    return ("J", 1.0) if budget.kind == "energy" else ("gCO2e", 1.0)


def _decimals(limit_in_unit: float) -> int:
    """Enough decimals to show three significant figures of the limit (5 J -> 2: '7.31 J')."""
    if limit_in_unit <= 0:
        return 2
    return max(0, min(6, 2 - math.floor(math.log10(limit_in_unit))))


def _flags(p: Part) -> str:
    flags = [f for f, on in (("shared", p.shared), ("below resolution", p.below_resolution)) if on]
    return f" ({', '.join(flags)})" if flags else ""


def _merge(parts: Iterable[Part]) -> list[Part]:
    """One entry per kind, method and flags, in first-seen order (two GPUs read as one 'gpu')."""
    merged: dict[tuple, Part] = {}
    for p in parts:
        key = (p.kind, p.method, p.shared, p.below_resolution)
        q = merged.get(key)
        merged[key] = p if q is None else Part(*key[:1], q.energy_j + p.energy_j, *key[1:])
    return list(merged.values())


def breakdown(
    parts: Sequence[Part], unit: str | None = None, scale: float = 1.0, dec: int = 2
) -> str:
    """'gpu 6.10 J nvml-energy-counter, cpu 1.02 J cpu-time-model, ram 0.19 J'."""
    out = []
    for p in _merge(parts):
        amount = f"{p.energy_j / scale:.{dec}f} {unit}" if unit else format_energy(p.energy_j)
        if unit and p.energy_j > 0 and round(p.energy_j / scale, dec) == 0:
            amount = format_energy(p.energy_j)  # "ram 33 mJ", not a misleading "ram 0 J"
        method = "" if METHOD_OBVIOUS.get(p.kind) == p.method else f" {p.method}"
        out.append(f"{p.kind} {amount}{method}{_flags(p)}")
    return ", ".join(out)


@record(frozen=True)
class Verdict:
    """A call phase judged against its budget; knows its one-line message and report section."""

    status: str
    message: str = ""  # one line; the failure message when status is "over"
    section: str = ""  # the report section: every figure, and why

    @property
    def failed(self) -> bool:
        return self.status == STATUS_OVER


def _check(budget: Budget, parts: Sequence[Part], factor: float) -> tuple[str, float, float]:
    """(status, counted, total) for one limit; ``factor`` converts J to the budget's quantity."""
    total = sum(p.energy_j for p in parts) * factor
    counted = sum(p.energy_j for p in parts if p.counted) * factor
    if counted > budget.value:
        return STATUS_OVER, counted, total
    if total > budget.value:
        return STATUS_INCONCLUSIVE, counted, total
    return STATUS_OK, counted, total


VERDICT_OK = Verdict(STATUS_OK)


def within(budget: TestBudget, total_j: float, g_per_j: float | None) -> bool:
    """Fast path (every test, every run): True when even the total, shared and unresolved figures
    included, is within every limit, so there is nothing to explain."""
    e, c = budget.energy, budget.co2e
    if e is not None and total_j > e.value:
        return False
    if c is None:
        return True
    return g_per_j is not None and total_j * g_per_j <= c.value


def judge(budget: TestBudget | None, parts: Sequence[Part], g_per_j: float | None) -> Verdict:
    """Judge one call phase.

    Only figures the test can be held to count towards a failure: a component below its meter's
    resolution, or a machine-wide counter shared with parallel tests, can make the verdict
    inconclusive (a warning in the report), never a failure on noise.
    """
    if budget is None or budget is SKIP:
        return Verdict(STATUS_NONE)
    worst: tuple[str, Budget, float, float] | None = None
    notes = []
    for b in (budget.energy, budget.co2e):
        if b is None:
            continue
        if b.kind == "co2e" and g_per_j is None:
            notes.append(f"{b.text}: no grid intensity known, CO2e budget not checked")
            continue
        factor = 1.0 if b.kind == "energy" else float(g_per_j or 0.0)
        status, counted, total = _check(b, parts, factor)
        rank = {STATUS_OK: 0, STATUS_INCONCLUSIVE: 1, STATUS_OVER: 2}[status]
        if worst is None or rank > {STATUS_OK: 0, STATUS_INCONCLUSIVE: 1, STATUS_OVER: 2}[worst[0]]:
            worst = (status, b, counted, total)
    if worst is None:
        return Verdict(STATUS_INCONCLUSIVE, "; ".join(notes), "\n".join(notes))
    status, b, counted, total = worst
    unit, scale = _unit_of(b)
    shown_total = (counted if status == STATUS_OVER else total) / scale
    # Three significant figures of the limit, and no more than three of the figure shown
    # ("819 mJ > 0.001 mJ", not "818.59351 mJ").
    dec = min(_decimals(b.value / scale), _decimals(shown_total))
    if b.kind == "energy":
        detail = breakdown(parts, unit, scale, dec)
    else:
        detail = f"{format_energy(sum(p.energy_j for p in parts))}: {breakdown(parts)}"
    shown = counted if status == STATUS_OVER else total
    if status == STATUS_OVER:
        message = (
            f"carbon budget exceeded: {shown / scale:.{dec}f} {unit} > {b.text} (call; {detail})"
        )
    elif status == STATUS_INCONCLUSIVE:
        why = sorted(
            {
                "shared with parallel tests" if p.shared else "below the meters' resolution"
                for p in parts
                if not p.counted
            }
        )
        message = (
            f"carbon budget possibly exceeded: {shown / scale:.{dec}f} {unit} > {b.text} "
            f"(call; {detail}); not failed: part of it is {' and '.join(why)}"
        )
    else:
        message = f"within carbon budget: {shown / scale:.{dec}f} {unit} <= {b.text} (call)"
    section = "\n".join(
        [
            f"budget: {budget.describe()} per call ({budget.source})",
            *notes,
            message,
        ]
    )
    return Verdict(status, message, section)
