"""pytest_carbon/budget.py: markers, verdicts, messages."""

from __future__ import annotations

import pytest

from carbonlab.units import parse_budget
from pytest_carbon.budget import (
    SKIP,
    STATUS_INCONCLUSIVE,
    STATUS_NONE,
    STATUS_OK,
    STATUS_OVER,
    MarkerError,
    Part,
    TestBudget,
    budget_from_marker,
    item_budgets,
    judge,
    within,
)

CALL = [
    Part("gpu", 6.10, "nvml-energy-counter"),
    Part("cpu", 1.02, "cpu-time-model"),
    Part("ram", 0.19, "ram-model"),
]


def energy(text: str) -> TestBudget:
    return TestBudget(energy=parse_budget(text), source="test")


def test_the_documented_message():
    v = judge(energy("5 J"), CALL, None)
    assert v.status == STATUS_OVER and v.failed
    assert v.message == (
        "carbon budget exceeded: 7.31 J > 5 J (call; gpu 6.10 J nvml-energy-counter, "
        "cpu 1.02 J cpu-time-model, ram 0.19 J)"
    )
    assert v.section.splitlines()[0] == "budget: 5 J per call (test)"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("5000 mJ", "7310 mJ > 5000 mJ"),  # the unit the budget was written in
        ("0.001 Wh", "0.00203 Wh > 0.001 Wh"),
        ("1 kJ", None),
    ],
)
def test_amounts_use_the_budgets_unit(spec, expected):
    v = judge(energy(spec), CALL, None)
    if expected is None:
        assert v.status == STATUS_OK
    else:
        assert v.message.startswith(f"carbon budget exceeded: {expected} (call; ")


def test_tiny_components_are_not_shown_as_zero():
    parts = [Part("gpu", 400.0, "nvml-energy-counter"), Part("ram", 0.033, "ram-model")]
    v = judge(energy("150 J"), parts, None)
    assert v.message.endswith("(call; gpu 400 J nvml-energy-counter, ram 33 mJ)")


def test_two_gpus_read_as_one_kind():
    parts = [Part("gpu", 3.0, "nvml-energy-counter"), Part("gpu", 4.0, "nvml-energy-counter")]
    assert "(call; gpu 7.00 J nvml-energy-counter)" in judge(energy("5 J"), parts, None).message


def test_shared_and_unresolved_parts_warn_but_never_fail():
    shared = [
        Part("gpu", 10.0, "nvml-energy-counter", shared=True),
        Part("cpu", 1.0, "cpu-time-model"),
    ]
    v = judge(energy("5 J"), shared, None)
    assert v.status == STATUS_INCONCLUSIVE and not v.failed
    assert v.message.startswith("carbon budget possibly exceeded: 11.0 J > 5 J")
    assert v.message.endswith("not failed: part of it is shared with parallel tests")
    unresolved = [Part("gpu", 10.0, "nvml-energy-counter", below_resolution=True)]
    v = judge(energy("5 J"), unresolved, None)
    assert v.status == STATUS_INCONCLUSIVE
    assert "(below resolution)" in v.message and "below the meters' resolution" in v.message
    # what is attributable and resolved still fails on its own
    mixed = [*shared, Part("cpu", 6.0, "cpu-time-model")]
    assert judge(energy("5 J"), mixed, None).status == STATUS_OVER


def test_co2e_budgets():
    b = TestBudget(co2e=parse_budget("0.5 mgCO2e"), source="test")
    g_per_j = 44.18 / 3.6e6
    v = judge(b, [Part("cpu", 100.0, "cpu-time-model")], g_per_j)
    assert v.status == STATUS_OVER
    assert v.message.startswith("carbon budget exceeded: 1.23 mgCO2e > 0.5 mgCO2e (call; 100 J: ")
    assert judge(b, [Part("cpu", 10.0, "cpu-time-model")], g_per_j).status == STATUS_OK
    v = judge(b, [Part("cpu", 100.0, "cpu-time-model")], None)
    assert v.status == STATUS_INCONCLUSIVE and "no grid intensity known" in v.message


def test_both_limits_the_worst_wins():
    b = TestBudget(energy=parse_budget("1 kJ"), co2e=parse_budget("0.5 mg"), source="test")
    assert judge(b, [Part("cpu", 100.0, "cpu-time-model")], 44.18 / 3.6e6).status == STATUS_OVER


def test_no_budget():
    assert judge(None, CALL, None).status == STATUS_NONE
    assert judge(SKIP, CALL, None).status == STATUS_NONE


def test_within_is_the_fast_path_of_judge():
    b = energy("5 J")
    assert within(b, 4.9, None) and not within(b, 5.1, None)
    c = TestBudget(co2e=parse_budget("1 g"), source="test")
    assert within(c, 1000.0, 1e-4) and not within(c, 1000.0, 1e-2)
    assert not within(c, 1.0, None)  # unknown intensity: let judge() explain


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("5 XB",), {}, "unknown unit 'XB'"),
        ((), {}, "needs a budget"),
        (("1 J", "2 J"), {}, "at most one positional budget"),
        (("1 J",), {"energy": "2 J"}, "energy given twice"),
        (("1 g",), {"co2e": "2 g"}, "co2e given twice"),
        ((), {"energy": "1 g"}, "unknown unit 'g'"),
        ((), {"co2e": "1 J"}, "unknown unit 'J'"),
        ((), {"power": "1 W"}, "unknown argument(s) power"),
        ((5,), {}, "expected a string with a unit"),
    ],
)
def test_bad_markers(args, kwargs, error):
    with pytest.raises(MarkerError, match=error.replace("(", r"\(").replace(")", r"\)")):
        budget_from_marker(pytest.mark.carbon_budget(*args, **kwargs).mark)


def test_good_markers():
    b = budget_from_marker(pytest.mark.carbon_budget("2 Wh").mark)
    assert (b.energy.value, b.co2e, b.describe()) == (7200.0, None, "2 Wh")
    b = budget_from_marker(pytest.mark.carbon_budget(energy="2 Wh", co2e="0.3 g").mark)
    assert (b.energy.value, b.co2e.value, b.describe()) == (7200.0, 0.3, "2 Wh, 0.3 g")
    b = budget_from_marker(pytest.mark.carbon_budget("0.3 gCO2e", energy="1 kJ").mark)
    assert (b.energy.value, b.co2e.value) == (1000.0, 0.3)
    assert b.source == "marker carbon_budget('0.3 gCO2e', energy='1 kJ')"


def test_item_budgets_agree_with_get_closest_marker(pytester):
    pytester.makepyfile(
        test_layout="""
        import pytest
        pytestmark = [pytest.mark.carbon_budget("100 J"), pytest.mark.other]

        def test_module(): pass

        @pytest.mark.carbon_budget("1 J")
        @pytest.mark.carbon_budget("2 J")
        def test_two_markers(): pass

        @pytest.mark.carbon_skip
        def test_skipped(): pass

        @pytest.mark.carbon_budget("3 J")
        class TestClass:
            def test_class(self): pass

            @pytest.mark.carbon_budget("4 J")
            @pytest.mark.parametrize("x", [1, pytest.param(2, marks=pytest.mark.carbon_budget("5 J"))])
            def test_param(self, x): pass

            @pytest.mark.carbon_skip
            def test_class_skip(self): pass

        class TestPlain:
            def test_plain(self): pass
        """
    )
    items, _ = pytester.inline_genitems()
    default = TestBudget(energy=parse_budget("9 J"), source="default")
    got, errors = item_budgets(items, default)
    assert not errors
    for item in items:
        if item.get_closest_marker("carbon_skip") is not None:
            assert got[item.nodeid] is SKIP, item.nodeid
            continue
        mark = item.get_closest_marker("carbon_budget")
        want = mark.args[0] if mark is not None else "9 J"
        assert got[item.nodeid].describe() == want, item.nodeid
    by_name = {k.split("::", 1)[1]: v for k, v in got.items()}
    assert by_name["test_two_markers"].describe() == "2 J"  # pytest: the innermost decorator
    assert by_name["TestClass::test_param[2]"].describe() == "4 J"  # as get_closest_marker
    assert by_name["TestPlain::test_plain"].describe() == "100 J"
