"""Strict parsing and formatting of energy (J, Wh) and emissions (gCO2e).

Parsing is strict on purpose: a budget is a promise, and "5 mWh" silently read as "5 MWh" (a factor of
10⁹) would let every test pass. So prefixes are case-sensitive, the whole string must be a quantity, a
unit is required, and the error names the value and lists what is accepted.

>>> parse_energy("1.5 kJ")
1500.0
>>> parse_co2e("0.3gCO2e")
0.3
>>> parse_budget("2 kgCO2eq")
Budget(kind='co2e', value=2000.0, text='2 kgCO2eq')
>>> format_energy(611.2), format_energy(4428.0), format_co2e(0.051)
('611 J', '1.23 Wh', '51 mgCO2e')
"""

from __future__ import annotations

import math
import re
from typing import Literal

from ._record import record

__all__ = [
    "CO2E_UNITS",
    "ENERGY_UNITS",
    "Budget",
    "UnitError",
    "format_co2e",
    "format_duration",
    "format_energy",
    "format_intensity",
    "format_number",
    "format_power",
    "format_water",
    "one_line",
    "parse_budget",
    "parse_co2e",
    "parse_energy",
]


class UnitError(ValueError):
    """A quantity carbonlab cannot read; the message names the value and the accepted units."""


# Joules per unit. Order matters only for messages.
ENERGY_UNITS: dict[str, float] = {
    "mJ": 1e-3,
    "J": 1.0,
    "kJ": 1e3,
    "MJ": 1e6,
    "mWh": 3.6,
    "Wh": 3600.0,
    "kWh": 3.6e6,
    "MWh": 3.6e9,
    "µJ": 1e-6,
}
# Grams per unit; each may carry one of the suffixes below ("gCO2e", "kg CO2eq").
CO2E_UNITS: dict[str, float] = {"mg": 1e-3, "g": 1.0, "kg": 1e3, "t": 1e6, "µg": 1e-6}
_CO2E_SUFFIXES = ("CO2e", "CO2eq", "CO₂e", "CO₂eq")

_ENERGY_ACCEPTED = ", ".join(ENERGY_UNITS)
_CO2E_ACCEPTED = ", ".join(CO2E_UNITS) + " (optionally followed by CO2e or CO2eq, e.g. '0.3 gCO2e')"

# A number (signs, nan and inf are matched so that they get their own message), then the rest.
# Patterns compiled where they are used (re caches them): compiled at import, the two cost ~2 M
# instructions at every pytest --carbon start and first measured region, where no budget is parsed.
_QUANTITY = (
    r"\s*(?P<num>[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|(?i:nan|inf(?:inity)?)))"
    r"\s*(?P<unit>.*?)\s*"
)
_CO2E_UNIT = r"(?P<mass>" + "|".join(CO2E_UNITS) + r")(?:\s*(?:" + "|".join(_CO2E_SUFFIXES) + r"))?"


Kind = Literal["energy", "co2e"]


@record(frozen=True)
class Budget:
    """A parsed limit: ``value`` is in joules when ``kind == "energy"``, in grams CO2e when "co2e".

    >>> b = parse_budget("500 mWh")
    >>> b.kind, b.value, b.describe()
    ('energy', 1800.0, '1800 J')
    """

    kind: Kind
    value: float
    text: str

    def describe(self) -> str:
        """The limit in carbonlab's own display units."""
        return format_energy(self.value) if self.kind == "energy" else format_co2e(self.value)

    def __str__(self) -> str:
        return self.text


def _split(text: object, accepted: str) -> tuple[float, str]:
    if not isinstance(text, str):
        raise UnitError(
            f"{text!r}: expected a string with a unit, e.g. '5 kJ' or '0.3 gCO2e'; accepted units: "
            f"{accepted}"
        )
    m = re.fullmatch(_QUANTITY, text)
    if m is None:
        raise UnitError(
            f"{text!r}: expected a number followed by a unit, e.g. '5 kJ' or '0.3 gCO2e'; "
            f"accepted units: {accepted}"
        )
    value = float(m["num"])
    if not math.isfinite(value):
        raise UnitError(f"{text!r}: the number must be finite")
    if value < 0:
        raise UnitError(f"{text!r}: the quantity must not be negative")
    unit = m["unit"]
    if not unit:
        raise UnitError(
            f"{text!r}: a unit is required (a bare number is ambiguous); accepted: {accepted}"
        )
    return value, unit


def _quantity_text(value: float, unit: str) -> str:
    """A quantity as carbonlab writes it: one space, no trailing zeros ("5J" -> "5 J")."""
    return f"{value:.12g} {unit}"


def normalise_quantity(text: str) -> str:
    """``"5J"`` -> ``"5 J"``, ``" 0.300 gCO2e"`` -> ``"0.3 gCO2e"``; text that does not parse as a
    number and a unit is returned as it is (the parsers say what is wrong with it).

    >>> normalise_quantity("5J"), normalise_quantity("0.001mJ"), normalise_quantity("2.50 Wh")
    ('5 J', '0.001 mJ', '2.5 Wh')
    """
    m = re.fullmatch(_QUANTITY, text) if isinstance(text, str) else None
    if m is None or not m["unit"]:
        return text
    try:
        return _quantity_text(float(m["num"]), m["unit"])
    except ValueError:  # pragma: no cover - the regex only matches numbers
        return text


def _energy_factor(unit: str) -> float | None:
    return ENERGY_UNITS.get(unit)


def _co2e_factor(unit: str) -> float | None:
    m = re.fullmatch(_CO2E_UNIT, unit)
    return CO2E_UNITS[m["mass"]] if m else None


def _case_hint(unit: str, candidates: list[str]) -> str:
    """' (units are case-sensitive: did you mean 'mJ' or 'MJ'?)' when only the case is wrong."""
    folded = "".join(unit.split()).casefold()
    same = [c for c in candidates if c.casefold() == folded]
    if not same:
        return ""
    return " (units are case-sensitive: did you mean " + " or ".join(repr(c) for c in same) + "?)"


def _co2e_spellings() -> list[str]:
    return [m + s for m in CO2E_UNITS for s in ("", *_CO2E_SUFFIXES)]


def _unknown(text: str, unit: str, accepted: str, candidates: list[str]) -> UnitError:
    hint = _case_hint(unit, candidates)
    return UnitError(f"{text!r}: unknown unit {unit!r}{hint}; accepted units: {accepted}")


def parse_energy(text: str) -> float:
    """Parse an energy such as "611 J", "1.5kWh" or "500 mWh"; return joules.

    >>> parse_energy("500 mWh")
    1800.0
    """
    value, unit = _split(text, _ENERGY_ACCEPTED)
    factor = _energy_factor(unit)
    if factor is None:
        raise _unknown(text, unit, _ENERGY_ACCEPTED, list(ENERGY_UNITS))
    return value * factor


def parse_co2e(text: str) -> float:
    """Parse an emission such as "0.3 g", "0.3gCO2e" or "2 kgCO2eq"; return grams CO2e.

    >>> parse_co2e("2 kgCO2eq")
    2000.0
    """
    value, unit = _split(text, _CO2E_ACCEPTED)
    factor = _co2e_factor(unit)
    if factor is None:
        raise _unknown(text, unit, _CO2E_ACCEPTED, _co2e_spellings())
    return value * factor


def parse_budget(text: str) -> Budget:
    """Parse a limit that may be an energy or an emission.

    >>> parse_budget("5 kJ")
    Budget(kind='energy', value=5000.0, text='5 kJ')
    """
    accepted = f"energy {_ENERGY_ACCEPTED}; emissions {_CO2E_ACCEPTED}"
    value, unit = _split(text, accepted)
    factor = _energy_factor(unit)
    if factor is not None:
        return Budget("energy", value * factor, text)
    factor = _co2e_factor(unit)
    if factor is not None:
        return Budget("co2e", value * factor, text)
    raise _unknown(text, unit, accepted, [*ENERGY_UNITS, *_co2e_spellings()])


# --- formatting -------------------------------------------------------------------------------
#
# One rule for every surface (cell text and HTML, terminal, markdown, CLI, widget, sidebar); the
# sidebar's TypeScript twin is labextension/src/format.ts and both are tested on the same table,
# tests/fixtures/format_cases.json. The rule:
#
# - the magnitude is rounded half-up (on the exact binary value) to 3 significant digits, or to a
#   whole number from 100 up; it is written in plain decimals, never with an exponent;
# - auto-scaled quantities use the largest unit of their ladder not bigger than the value, stepping
#   up one unit when rounding reaches it (999.7 mJ reads "1 J"); zero reads "0" in the unit of size 1;
# - a value below 1 of the smallest unit reads "< 1 µJ" (never a confident 0, never "1e-09 J");
# - in a unit the user fixed (J, Wh, g, kg), plain decimals however small.


def _round(x: float, sig: int = 3) -> tuple[str, int]:
    """``abs(x)`` rounded half-up to ``sig`` significant digits: (digits, exponent of the first)."""
    from decimal import ROUND_HALF_UP, Decimal  # here: formatting only, not a window's path

    d = Decimal(abs(x))
    q = d.quantize(Decimal(1).scaleb(d.adjusted() - sig + 1), rounding=ROUND_HALF_UP)
    digits = str(q.scaleb(-q.as_tuple().exponent))  # the integer mantissa
    return digits, q.adjusted()


def _plain(digits: str, exp: int) -> str:
    """The plain decimal for 0.d1d2d3... × 10^(exp+1), trailing zeros after the point dropped."""
    digits = digits.rstrip("0") or "0"
    if exp >= len(digits) - 1:
        return digits + "0" * (exp - len(digits) + 1)
    if exp >= 0:
        return digits[: exp + 1] + "." + digits[exp + 1 :]
    return "0." + "0" * (-exp - 1) + digits


def _num(x: float, sig: int = 3) -> str:
    """``sig`` significant digits (a whole number from 10**(sig-1) up), plain decimals, half-up."""
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    if abs(x) >= 10 ** (sig - 1):
        from decimal import ROUND_HALF_UP, Decimal

        return sign + str(Decimal(abs(x)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    digits, exp = _round(x, sig)
    return sign + _plain(digits, exp)


def format_number(x: float) -> str:
    """A bare number by the same rule (3 significant digits, plain decimals), e.g. a share or PUE.

    >>> format_number(0.000012345), format_number(1.125), format_number(1234.5)
    ('0.0000123', '1.13', '1235')
    """
    return _NA if _bad(x) else _num(x)


def _scaled(x: float, ladder: tuple[tuple[str, float], ...], zero: str | None = None) -> str:
    """Use the largest unit not bigger than ``x``; zero in the unit of size 1 (or ``zero``).

    Steps up one unit when rounding reaches it, so 999.7 mJ reads "1 J", not "1000 mJ"; below 1 of
    the smallest unit reads "< 1 <unit>".
    """
    mag = abs(x)
    if mag == 0:
        return "0 " + (zero or next(u for u, size in ladder if size == 1.0))
    if mag < ladder[0][1]:
        return "< 1 " + ladder[0][0]
    i = 0
    for j, (_, size) in enumerate(ladder):
        if mag >= size:
            i = j
    unit, size = ladder[i]
    text = _num(mag / size)
    if i + 1 < len(ladder) and float(text) * size >= ladder[i + 1][1]:
        unit, size = ladder[i + 1]
        text = _num(mag / size)
    return ("-" if x < 0 else "") + f"{text} {unit}"


_NA = "n/a"
# Below 1 J: mJ (µJ below that); then J up to one Wh (so "611 J", "1800 J"); then the Wh family.
_ENERGY_LADDER = (
    ("µJ", 1e-6),
    ("mJ", 1e-3),
    ("J", 1.0),
    ("Wh", 3600.0),
    ("kWh", 3.6e6),
    ("MWh", 3.6e9),
)
_CO2E_LADDER = (
    ("µgCO2e", 1e-6),
    ("mgCO2e", 1e-3),
    ("gCO2e", 1.0),
    ("kgCO2e", 1e3),
    ("tCO2e", 1e6),
)
_POWER_LADDER = (("µW", 1e-6), ("mW", 1e-3), ("W", 1.0), ("kW", 1e3), ("MW", 1e6))
_WATER_LADDER = (("µL", 1e-6), ("mL", 1e-3), ("L", 1.0), ("m³", 1e3))
_DURATION_LADDER = (("µs", 1e-6), ("ms", 1e-3), ("s", 1.0))


def _fixed(x: float, size: float, unit: str) -> str:
    """``x`` in a unit the user fixed (plain decimals however small)."""
    return f"{_num(x / size)} {unit}"


def _bad(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def format_energy(joules: float, unit: str | None = None) -> str:
    """A readable energy: auto-scaled ("4.5 mJ", "611 J", "1.23 Wh") or in a fixed unit.

    Tiny values go down to µJ, then read "< 1 µJ"; never an exponent.

    >>> format_energy(4428.0), format_energy(4428.0, "J"), format_energy(0.0045)
    ('1.23 Wh', '4428 J', '4.5 mJ')
    """
    if _bad(joules):
        return _NA
    if unit is None:
        return _scaled(joules, _ENERGY_LADDER)
    if unit not in ENERGY_UNITS:
        raise UnitError(f"unknown energy unit {unit!r}; accepted: {_ENERGY_ACCEPTED}")
    return _fixed(joules, ENERGY_UNITS[unit], unit)


def format_co2e(grams: float, unit: str | None = None) -> str:
    """A readable emission: "7.58 µgCO2e", "51 mgCO2e", "1.5 kgCO2e"; ``unit`` fixes the mass unit.

    >>> format_co2e(1500.0), format_co2e(0.051, "g")
    ('1.5 kgCO2e', '0.051 gCO2e')
    """
    if _bad(grams):
        return _NA
    if unit is None:
        return _scaled(grams, _CO2E_LADDER)
    if unit not in CO2E_UNITS:
        raise UnitError(f"unknown mass unit {unit!r}; accepted: {', '.join(CO2E_UNITS)}")
    return _fixed(grams, CO2E_UNITS[unit], unit + "CO2e")


def format_intensity(gco2e_per_kwh: float) -> str:
    """A grid intensity, e.g. "44.2 gCO2e/kWh".

    >>> format_intensity(44.2)
    '44.2 gCO2e/kWh'
    """
    return _NA if _bad(gco2e_per_kwh) else f"{_num(gco2e_per_kwh)} gCO2e/kWh"


def format_water(litres: float) -> str:
    """A water volume: "300 µL", "2.5 L".

    >>> format_water(0.0003), format_water(2.5)
    ('300 µL', '2.5 L')
    """
    if _bad(litres):
        return _NA
    return _scaled(litres, _WATER_LADDER)


def format_power(watts: float) -> str:
    """A power: "45 mW", "350 W", "1.2 kW".

    >>> format_power(0.045), format_power(350.0), format_power(1200.0)
    ('45 mW', '350 W', '1.2 kW')
    """
    if _bad(watts):
        return _NA
    return _scaled(watts, _POWER_LADDER)


def format_duration(seconds: float) -> str:
    """A duration: "850 µs", "2.41 s", "1 min 05 s", "2 h 03 min".

    >>> format_duration(0.00085), format_duration(2.412), format_duration(65), format_duration(7380)
    ('850 µs', '2.41 s', '1 min 05 s', '2 h 03 min')
    """
    if _bad(seconds):
        return _NA
    sign, s = ("-", -seconds) if seconds < 0 else ("", seconds)
    if s == 0:
        return "0 s"
    if s < 60:
        return sign + _scaled(s, _DURATION_LADDER)
    from decimal import ROUND_HALF_UP, Decimal

    whole = int(Decimal(s).quantize(Decimal(1), rounding=ROUND_HALF_UP))  # half-up, as in format.ts
    if whole < 3600:
        m, sec = divmod(whole, 60)
        return f"{sign}{m} min {sec:02d} s"
    h, rest = divmod(whole, 3600)
    return f"{sign}{h} h {rest // 60:02d} min"


# ---- others' text on one line (test ids, file names, run files): the pytest plugin and the
# comparison escape with it; here, not a module of its own, because both import units anyway ----
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x85: "\\x85",
                 0x2028: "\\u2028", 0x2029: "\\u2029"})  # fmt: skip


def one_line(text: str) -> str:
    """Text from test ids, file names or a run file, shown on one terminal line: control
    characters escaped, so no line of ours can start a workflow command (``::error::``).

    >>> one_line("t.py::test[a\\n::error::x]")
    't.py::test[a\\\\n::error::x]'
    """
    return text.translate(_CONTROL)
