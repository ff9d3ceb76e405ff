"""Everyday equivalents of an emission, so "0.05 gCO2e" means something to a person.

Figures come from ``co2_equivalents.csv`` (Green Algorithms, US EPA, carbonfootprint.com), each with its
source. The scale picks the comparison: driving distance for small amounts, smartphone charges for
grams, kilometres driven for kilograms, flights beyond.

>>> equivalent(0.0525).text
'≈ 30 cm by car (EU average)'
>>> equivalent(41.1).text
'≈ 5 smartphone charges'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from ._data import Row, table

__all__ = ["Equivalent", "all_equivalents", "equivalent"]

EQUIVALENTS_TABLE = "co2_equivalents.csv"

# Keys of co2_equivalents.csv this module reads.
CAR_EU = "car_km_eu"
CAR_US = "car_km_us"
PHONE = "smartphone_charge"
TREE_YEAR = "tree_year"
SHORT_FLIGHT = "flight_par_lon"
LONG_FLIGHT = "flight_nyc_lon_oneway"
# Smartphone charges read well from one to a hundred; beyond that, kilometres.
_MAX_CHARGES = 100


@dataclass(frozen=True)
class Equivalent:
    """One comparison: ``count`` units of ``key`` emit as much as the amount given."""

    key: str
    count: float
    text: str  # "≈ 0.3 m by car (EU average)"
    source: str
    license: str


@cache
def _rows() -> dict[str, Row]:
    return {r["key"]: r for r in table(EQUIVALENTS_TABLE)}


def _value(key: str) -> float:
    return float(_rows()[key]["value"])


def _about(x: float) -> str:
    """Two significant digits, whole numbers from 10 up: people read these, not audit them."""
    if x >= 10:
        return f"{x:,.0f}"
    return f"{float(f'{x:.2g}'):g}"


def _distance(km: float) -> str:
    if km >= 1:
        return f"{_about(km)} km"
    if km >= 1e-3:
        return f"{_about(km * 1e3)} m"
    if km >= 1e-5:
        return f"{_about(km * 1e5)} cm"
    return f"{_about(km * 1e6)} mm"


def _make(key: str, count: float, text: str) -> Equivalent:
    r = _rows()[key]
    return Equivalent(key, count, text, r["source"], r["license"])


def _car(g: float, country: str | None) -> Equivalent:
    key, label = (CAR_US, "US average") if country == "US" else (CAR_EU, "EU average")
    km = g / _value(key)
    return _make(key, km, f"≈ {_distance(km)} by car ({label})")


def _phones(g: float) -> Equivalent:
    n = g / _value(PHONE)
    plural = "" if _about(n) == "1" else "s"
    return _make(PHONE, n, f"≈ {_about(n)} smartphone charge{plural}")


def _flights(g: float) -> Equivalent:
    key, label = (
        (LONG_FLIGHT, "New York–London, one way")
        if g >= _value(LONG_FLIGHT)
        else (SHORT_FLIGHT, "Paris–London")
    )
    n = g / _value(key)
    plural = "" if _about(n) == "1" else "s"
    return _make(key, n, f"≈ {_about(n)} flight{plural} {label} (one passenger)")


def _tree_days(g: float) -> Equivalent:
    days = g / (_value(TREE_YEAR) / 365.25)
    return _make(TREE_YEAR, days, f"≈ {_about(days)} days of CO2 uptake by one mature tree")


def equivalent(gco2e: float | None, country: str | None = None) -> Equivalent | None:
    """The one comparison that reads best for ``gco2e``; None for nothing (zero, None, nan).

    ``country`` (ISO2, e.g. the zone's) picks the US car average for "US", the EU one otherwise.

    >>> equivalent(2000.0).text
    '≈ 11 km by car (EU average)'
    >>> equivalent(175_000.0).text
    '≈ 3.5 flights Paris–London (one passenger)'
    """
    if gco2e is None or not math.isfinite(gco2e) or gco2e <= 0:
        return None
    if gco2e < _value(PHONE):
        return _car(gco2e, country)
    if gco2e < _MAX_CHARGES * _value(PHONE):
        return _phones(gco2e)
    if gco2e < _value(SHORT_FLIGHT):
        return _car(gco2e, country)
    return _flights(gco2e)


def all_equivalents(gco2e: float, country: str | None = None) -> list[Equivalent]:
    """Every comparison carbonlab offers for ``gco2e`` (for a tooltip or a report).

    >>> [e.key for e in all_equivalents(10.0)]
    ['car_km_eu', 'smartphone_charge', 'tree_year', 'flight_par_lon']
    """
    if not math.isfinite(gco2e) or gco2e <= 0:
        return []
    return [_car(gco2e, country), _phones(gco2e), _tree_days(gco2e), _flights(gco2e)]
