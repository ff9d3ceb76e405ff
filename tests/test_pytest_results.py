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
