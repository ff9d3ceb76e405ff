"""Tests with energy budgets. Run `pytest` in examples/pytest_budgets (see its README)."""

import pytest
from primes import sieve, trial_division


def test_small_sieve():
    # held to the default budget from pyproject.toml (20 J)
    assert sieve(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


def test_table_fixture(table):
    # the fixture's cost is this test's *setup*, not its call
    assert len(table) == 148933


@pytest.mark.carbon_budget("50 J")
def test_trial_division_agrees(table):
    # a heavier test with a budget of its own
    assert trial_division(30_000) == [p for p in table if p < 30_000]


@pytest.mark.carbon_budget(energy="5 J", co2e="0.1 mg")
class TestQuick:
    """Both limits apply to every test of the class."""

    def test_sieve_100k(self):
        assert len(sieve(100_000)) == 9592

    def test_empty(self):
        assert sieve(2) == []


@pytest.mark.xfail(
    reason="over its 1 mJ budget on purpose: shows what a budget failure looks like", strict=True
)
@pytest.mark.carbon_budget("1 mJ")
def test_over_budget_on_purpose():
    trial_division(20_000)


@pytest.mark.carbon_skip
def test_not_measured():
    # e.g. a test that talks to other machines: its energy is not its own
    assert sieve(10) == [2, 3, 5, 7]
