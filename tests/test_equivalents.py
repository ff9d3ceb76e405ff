"""carbonlab/footprint/equivalents.py: a human-scale comparison for an emission, with its source."""

from __future__ import annotations

import csv
import io
import math
from importlib.resources import files

import pytest

from carbonlab.footprint.equivalents import all_equivalents, equivalent


def value(key):
    text = (files("carbonlab") / "data" / "co2_equivalents.csv").read_text(encoding="utf-8")
    (r,) = [r for r in csv.DictReader(io.StringIO(text)) if r["key"] == key]
    return float(r["value"])


def test_small_amounts_are_driving_distance():
    g = 0.3 / 1000 * value("car_km_eu")  # the emission of 0.3 m by car
    e = equivalent(g)
    assert e.key == "car_km_eu"
    assert e.count == pytest.approx(0.3e-3)
    assert e.text == "≈ 30 cm by car (EU average)"
    assert "Green Algorithms" in e.source and e.license


def test_us_zone_uses_the_us_car():
    g = 2 * value("car_km_us") / 1000  # 2 m
    e = equivalent(g, "US")
    assert e.key == "car_km_us" and e.text == "≈ 2 m by car (US average)"


def test_grams_are_smartphone_charges():
    e = equivalent(12 * value("smartphone_charge"))
    assert e.key == "smartphone_charge" and e.count == pytest.approx(12)
    assert e.text == "≈ 12 smartphone charges"
    assert equivalent(value("smartphone_charge")).text == "≈ 1 smartphone charge"


def test_kilograms_are_kilometres():
    e = equivalent(20 * value("car_km_eu"))
    assert e.key == "car_km_eu" and e.text == "≈ 20 km by car (EU average)"


def test_large_amounts_are_flights():
    e = equivalent(2 * value("flight_par_lon"))
    assert e.key == "flight_par_lon" and e.text.startswith("≈ 2 flights Paris–London")
    e = equivalent(3 * value("flight_nyc_lon_oneway"))
    assert e.key == "flight_nyc_lon_oneway" and e.count == pytest.approx(3)


@pytest.mark.parametrize("g", [0.0, -1.0, None, math.nan, math.inf])
def test_nothing_to_compare(g):
    assert equivalent(g) is None


def test_every_scale_gives_one_readable_text():
    g = 1e-6
    while g < 1e8:
        e = equivalent(g)
        assert (
            e is not None and e.text.startswith("≈ ") and "e-" not in e.text and "e+" not in e.text
        )
        g *= 3.7


def test_all_equivalents():
    es = all_equivalents(100.0)
    assert [e.key for e in es] == ["car_km_eu", "smartphone_charge", "tree_year", "flight_par_lon"]
    tree = es[2]
    assert tree.count == pytest.approx(100.0 / (value("tree_year") / 365.25))
    assert all(e.source for e in es)
    assert all_equivalents(0.0) == []
