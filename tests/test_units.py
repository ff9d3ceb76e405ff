"""carbonlab/units.py: strict parsing (case-sensitive, full-match, unit required) and formatting."""

from __future__ import annotations

import pytest

from carbonlab.units import (
    Budget,
    UnitError,
    format_co2e,
    format_duration,
    format_energy,
    format_intensity,
    format_power,
    format_water,
    parse_budget,
    parse_co2e,
    parse_energy,
)

ENERGY_LIST = "mJ, J, kJ, MJ, mWh, Wh, kWh, MWh"


@pytest.mark.parametrize(
    "text, joules",
    [
        ("611 J", 611.0),
        ("611J", 611.0),
        ("4.5 mJ", 4.5e-3),
        ("1.5 kJ", 1500.0),
        ("2 MJ", 2e6),
        ("500 mWh", 1800.0),
        ("1 Wh", 3600.0),
        ("0.5kWh", 1.8e6),
        ("1 MWh", 3.6e9),
        (".5 J", 0.5),
        ("1e3 J", 1000.0),
        ("  12 J  ", 12.0),
        ("0 J", 0.0),
    ],
)
def test_parse_energy(text, joules):
    assert parse_energy(text) == pytest.approx(joules)


def test_prefixes_are_case_sensitive():
    # milli and mega differ by 10^9: reading one as the other must be impossible.
    assert parse_energy("1 mWh") == pytest.approx(3.6)
    assert parse_energy("1 MWh") == pytest.approx(3.6e9)
    assert parse_energy("1 mJ") == pytest.approx(1e-3)
    assert parse_energy("1 MJ") == pytest.approx(1e6)


@pytest.mark.parametrize("text", ["1 mj", "1 j", "1 KJ", "1 kwh", "1 WH", "1 mwh"])
def test_wrong_case_is_rejected_with_a_hint(text):
    with pytest.raises(UnitError) as e:
        parse_energy(text)
    msg = str(e.value)
    assert repr(text) in msg and "case-sensitive" in msg and ENERGY_LIST in msg


def test_case_hint_names_both_candidates():
    with pytest.raises(UnitError, match=r"did you mean 'mJ' or 'MJ'\?"):
        parse_energy("3 mj")


@pytest.mark.parametrize("text", ["5 kWh!", "5 kWh x", "5 kWhh", "about 5 kWh", "5 k Wh", "5 J J"])
def test_full_match_only(text):
    with pytest.raises(UnitError):
        parse_energy(text)


@pytest.mark.parametrize("text", ["5", " 5 ", "0.3", "1e3"])
def test_bare_numbers_are_rejected(text):
    with pytest.raises(UnitError, match="unit is required") as e:
        parse_energy(text)
    assert ENERGY_LIST in str(e.value)
    with pytest.raises(UnitError, match="unit is required"):
        parse_co2e(text)
    with pytest.raises(UnitError, match="unit is required"):
        parse_budget(text)


def test_non_strings_are_rejected():
    with pytest.raises(UnitError, match="expected a string"):
        parse_energy(5)  # type: ignore[arg-type]
    with pytest.raises(UnitError):
        parse_budget(None)  # type: ignore[arg-type]


def test_unknown_unit_lists_accepted_units():
    with pytest.raises(UnitError) as e:
        parse_energy("5 XB")
    msg = str(e.value)
    assert "'5 XB'" in msg and "unknown unit 'XB'" in msg and ENERGY_LIST in msg
    with pytest.raises(UnitError) as e:
        parse_co2e("5 lb")
    assert "mg, g, kg, t" in str(e.value) and "CO2e" in str(e.value)
    with pytest.raises(UnitError) as e:
        parse_budget("5 XB")
    assert ENERGY_LIST in str(e.value) and "mg, g, kg, t" in str(e.value)


def test_energy_units_are_not_emissions_and_back():
    with pytest.raises(UnitError):
        parse_energy("3 g")
    with pytest.raises(UnitError):
        parse_co2e("3 J")


@pytest.mark.parametrize("text", ["-1 J", "-0.5 gCO2e", "nan J", "NaN g", "inf kWh", "-inf J"])
def test_negative_nan_inf_rejected(text):
    with pytest.raises(UnitError, match="negative|finite"):
        parse_budget(text)


@pytest.mark.parametrize(
    "text, grams",
    [
        ("0.3gCO2e", 0.3),
        ("0.3 g", 0.3),
        ("0.3 gCO2e", 0.3),
        ("0.3 g CO2e", 0.3),
        ("2 kgCO2eq", 2000.0),
        ("12 mgCO2e", 0.012),
        ("1 t", 1e6),
        ("1.5 tCO2e", 1.5e6),
        ("3 kgCO₂e", 3000.0),
    ],
)
def test_parse_co2e(text, grams):
    assert parse_co2e(text) == pytest.approx(grams)


@pytest.mark.parametrize("text", ["1 G", "1 KG", "1 gco2e", "1 gCO2", "1 gCO2E", "1 Mg", "1 T"])
def test_co2e_strict(text):
    with pytest.raises(UnitError):
        parse_co2e(text)


def test_parse_budget():
    assert parse_budget("5 kJ") == Budget("energy", 5000.0, "5 kJ")
    b = parse_budget("0.3gCO2e")
    assert (b.kind, b.value, b.text, str(b)) == ("co2e", 0.3, "0.3gCO2e", "0.3gCO2e")
    assert parse_budget("1 Wh").describe() == "1 Wh"
    assert parse_budget("2 kgCO2eq").describe() == "2 kgCO2e"


@pytest.mark.parametrize(
    "joules, text",
    [
        (611.2, "611 J"),
        (4428.0, "1.23 Wh"),
        (0.0045, "4.5 mJ"),
        (0.0, "0 J"),
        (1.0, "1 J"),
        (1800.0, "1800 J"),
        (3600.0, "1 Wh"),
        (3.6e6 * 2.5, "2.5 kWh"),
        (3.6e9 * 7, "7 MWh"),
        (0.9999, "1 J"),  # rounding reaches the next unit: not "1000 mJ"
        (12.345, "12.3 J"),
    ],
)
def test_format_energy_auto(joules, text):
    assert format_energy(joules) == text


def test_format_energy_fixed_unit():
    assert format_energy(4428.0, "J") == "4428 J"
    assert format_energy(4428.0, "Wh") == "1.23 Wh"
    assert format_energy(1800.0, "kWh") == "0.0005 kWh"
    with pytest.raises(UnitError):
        format_energy(1.0, "wh")


def test_formatted_values_parse_back():
    for j in (0.0042, 3.3, 611.2, 5000.0, 4.2e6):
        assert parse_energy(format_energy(j)) == pytest.approx(j, rel=5e-3)
    for g in (0.00042, 0.051, 3.3, 1234.0, 5e6):
        assert parse_co2e(format_co2e(g)) == pytest.approx(g, rel=5e-3)


def test_format_co2e():
    assert format_co2e(0.051) == "51 mgCO2e"
    assert format_co2e(3.21) == "3.21 gCO2e"
    assert format_co2e(1500.0) == "1.5 kgCO2e"
    assert format_co2e(2.1e6) == "2.1 tCO2e"
    assert format_co2e(0.0) == "0 gCO2e"
    assert format_co2e(0.051, "g") == "0.051 gCO2e"
    assert format_co2e(float("nan")) == "n/a"


def test_format_duration_power_water_intensity():
    assert format_duration(0.00085) == "850 µs"
    assert format_duration(0.012) == "12 ms"
    assert format_duration(2.412) == "2.41 s"
    assert format_duration(65) == "1 min 05 s"
    assert format_duration(7380) == "2 h 03 min"
    assert format_duration(0) == "0 s"
    assert format_power(0.045) == "45 mW"
    assert format_power(350.0) == "350 W"
    assert format_power(1200.0) == "1.2 kW"
    assert format_water(0.0003) == "0.3 mL"
    assert format_water(2.5) == "2.5 L"
    assert format_intensity(44.18) == "44.2 gCO2e/kWh"
