"""pytest_carbon/results.py: a test's figures read back from its report's properties."""

from __future__ import annotations

import pytest

from pytest_carbon import recorder as r
from pytest_carbon.results import TestResult

OWN = [
    (r.P_SETUP, 0.5),
    (r.P_ENERGY, 2.0),
    (r.P_DURATION, 0.1),
    (r.P_CO2E, 1e-3),
    ("carbon_cpu_j", 1.5),
    ("carbon_ram_j", 0.5),
    (r.P_BELOW, False),
    (r.P_ATTRIBUTION, r.ATTR_EXCLUSIVE),
    (r.P_TEARDOWN, 0.25),
]


def filtered(raw):
    """What props means: the prefixed names, first place, last value."""
    return {k: v for k, v in raw if k.__class__ is str and k.startswith(r.PREFIX)}


@pytest.mark.parametrize(
    "raw",
    [
        OWN,
        [("url", "http://x"), *OWN],  # a test's own record_property
        [*OWN, ("worker", 3)],  # another plugin's, after ours
        [*OWN, ("carbon_tpu_j", 4.0)],  # an attached cluster's kind
        [(["unhashable"], 1), *OWN],
        [(7, "a number as a name"), *OWN],
        [*OWN, (r.P_ENERGY, 9.0)],  # a name twice: the last value, in the first place
        [],
    ],
    ids=["own", "before", "after", "cluster-kind", "unhashable", "int-name", "twice", "empty"],
)
def test_props_are_the_prefixed_properties_in_order(raw):
    props = TestResult("t.py::test", raw=raw).props
    assert props == filtered(raw)
    assert list(props) == list(filtered(raw))
    assert all(k.startswith(r.PREFIX) for k in props)


class _Report:
    def __init__(self, nodeid, when, outcome="passed", props=()):
        self.nodeid, self.when, self.outcome = nodeid, when, outcome
        self.location = ("t.py", 0, nodeid)
        self.user_properties = list(props)

    @property
    def failed(self):
        return self.outcome == "failed"


def _attempt(results, nodeid, outcome, energy):
    props = [(r.P_SETUP, 0.5), (r.P_ENERGY, energy), (r.P_TEARDOWN, 0.25)]
    results.add(_Report(nodeid, "setup"))
    results.add(_Report(nodeid, "call", outcome))
    results.add(_Report(nodeid, "teardown", props=props))


def test_results_made_after_the_run_count_reruns_and_renew_the_views():
    """Teardown reports are kept as raw values and made into results when first asked for: a
    rerun's earlier attempt is counted once, and views asked for mid-run see later tests."""
    from pytest_carbon.results import Results

    res = Results()
    _attempt(res, "t.py::a", "failed", 2.0)
    assert res.totals()["call_j"] == 2.0 and len(res.measured()) == 1
    _attempt(res, "t.py::b", "passed", 1.0)
    _attempt(res, "t.py::a", "passed", 3.0)  # the rerun that passed
    assert list(res.tests) == ["t.py::a", "t.py::b"]
    a = res.tests["t.py::a"]
    assert (a.outcome, a.attempts, a.rerun_j, a.energy_j) == ("passed", 2, 2.0 + 0.75, 3.0)
    assert res.totals() == {"call_j": 4.0, "setup_j": 1.0, "teardown_j": 0.5, "rerun_j": 2.75}
    assert [t.nodeid for t in res.top(None)] == ["t.py::a", "t.py::b"]
