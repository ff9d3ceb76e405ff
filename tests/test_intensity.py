"""carbonlab/footprint/intensity.py: zone strings -> static figures with their source.

Expected figures are read here from the shipped CSV files, independently of the code under test.
"""

from __future__ import annotations

import csv
import io
import json
from importlib.resources import files

import pytest

from carbonlab.config import ConfigError
from carbonlab.footprint import intensity
from carbonlab.footprint.intensity import (
    NO_ZONE_NAME,
    Intensity,
    UnknownZoneError,
    current,
    list_zones,
    lookup,
    register_provider,
)


def rows(name):
    text = (files("carbonlab") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def country_row(iso2=None, name=None):
    for r in rows("grid_intensity_country.csv"):
        if (iso2 and r["iso2"] == iso2) or (name and r["name"] == name):
            return r
    raise LookupError(iso2 or name)


def zone_row(zone):
    found = [r for r in rows("grid_intensity_zones_electricitymaps.csv") if r["zone"] == zone]
    return max(found, key=lambda r: int(r["year"]))


def cloud_row(file, provider, region):
    (r,) = [x for x in rows(file) if x["provider"] == provider and x["region"] == region]
    return r


@pytest.mark.parametrize("spelling", ["FR", "fr", " Fr "])
def test_country_code_any_case(spelling):
    r = country_row("FR")
    i = lookup(spelling)
    assert i.zone == "FR" and i.name == "France" and i.kind == "country"
    assert i.gco2e_per_kwh == float(r["gco2e_per_kwh"])
    assert i.year == int(r["year"])
    assert i.source == f"Ember {r['year']} (static)"
    assert i.at is None and "generation" in i.basis


def test_gb_is_the_ember_country_figure():
    assert lookup("GB").gco2e_per_kwh == float(country_row("GB")["gco2e_per_kwh"])


def test_two_letter_codes_mean_ember_even_where_electricity_maps_has_the_zone():
    # Electricity Maps also has an "FR" zone (consumption-based); one code must have one meaning.
    assert lookup("FR").source.startswith("Ember")
    assert any(r["zone"] == "FR" for r in rows("grid_intensity_zones_electricitymaps.csv"))


def test_cayman_islands_is_ky_and_cyprus_keeps_cy():
    assert lookup("CY").name == "Cyprus"
    assert lookup("KY").name == "Cayman Islands"


@pytest.mark.parametrize("spelling", ["US-CAL-CISO", "us-cal-ciso", "Us-Cal-Ciso"])
def test_electricity_maps_zone_latest_year(spelling):
    r = zone_row("US-CAL-CISO")
    i = lookup(spelling)
    assert i.zone == "US-CAL-CISO" and i.kind == "electricitymaps"
    assert i.gco2e_per_kwh == float(r["gco2e_per_kwh_lifecycle"])
    assert i.year == int(r["year"])
    assert i.source == f"Electricity Maps {r['year']} (static)"
    assert i.country_iso2 == "US" and "consumption" in i.basis


def test_electricity_maps_fills_codes_ember_lacks():
    r = zone_row("AX")
    assert lookup("ax").gco2e_per_kwh == float(r["gco2e_per_kwh_lifecycle"])


@pytest.mark.parametrize(
    "spelling, file, provider, region",
    [
        ("aws:eu-west-3", "cloud_regions_electricitymaps.csv", "aws", "eu-west-3"),
        ("AWS:EU-WEST-3", "cloud_regions_electricitymaps.csv", "aws", "eu-west-3"),
        ("gcp:europe-west1", "cloud_regions_gcp.csv", "gcp", "europe-west1"),
        ("azure:westeurope", "cloud_regions_electricitymaps.csv", "azure", "westeurope"),
        ("Azure:WestEurope", "cloud_regions_electricitymaps.csv", "azure", "westeurope"),
    ],
)
def test_cloud_regions(spelling, file, provider, region):
    r = cloud_row(file, provider, region)
    i = lookup(spelling)
    assert i.zone == f"{provider}:{region}" and i.kind == "cloud"
    assert i.gco2e_per_kwh == float(r["gco2e_per_kwh"])
    assert i.year == int(r["year"])
    assert i.country_iso2 == r["country_iso2"]
    assert i.basis == r["basis"]
    assert str(r["year"]) in i.source


def test_cloud_sources_name_the_data_owner():
    assert lookup("gcp:europe-west1").source.startswith("Google")
    aws = lookup("aws:us-east-1")
    assert aws.source.startswith("Electricity Maps")
    assert (
        cloud_row("cloud_regions_electricitymaps.csv", "aws", "us-east-1")["grid_zone"]
        in aws.source
    )


def test_no_zone_is_the_labelled_world_average():
    w = country_row(name="World")
    for z in (None, "", "  "):
        i = lookup(z)
        assert i.name == "World average (no zone configured)" == NO_ZONE_NAME
        assert i.zone == "World"
        assert i.gco2e_per_kwh == float(w["gco2e_per_kwh"])
        assert i.source == f"Ember {w['year']} (static)"


def test_world_and_aggregates_by_name():
    chosen = lookup("world")
    assert chosen.name == "World average"  # chosen, so not labelled as the fallback
    assert lookup("EU").gco2e_per_kwh == float(country_row(name="EU")["gco2e_per_kwh"])
    assert lookup("g20").zone == "G20"


@pytest.mark.fault("settings")
def test_unknown_zone_names_it_and_suggests():
    with pytest.raises(UnknownZoneError) as e:
        lookup("US-CAL-CIS")
    msg = str(e.value)
    assert "'US-CAL-CIS'" in msg and "US-CAL-CISO" in msg and "carbonlab zones" in msg
    assert isinstance(e.value, ConfigError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "zone, suggestion",
    [
        ("France", "FR (France)"),
        ("UK", "GB (United Kingdom)"),
        ("aws:eu-west-9", "aws:eu-west-3"),
        ("gcp:europe-west99", "gcp:europe-west"),
        ("california", "US-CAL-CISO"),
    ],
)
def test_suggestions(zone, suggestion):
    with pytest.raises(UnknownZoneError, match="did you mean") as e:
        lookup(zone)
    assert suggestion in str(e.value)


def test_unknown_provider_and_unknown_code():
    with pytest.raises(UnknownZoneError, match="unknown cloud provider 'ovh'"):
        lookup("ovh:gra")
    with pytest.raises(UnknownZoneError, match="'XX'.*country code"):
        lookup("XX")


def test_to_dict_is_the_measurement_record():
    d = lookup("FR").to_dict()
    assert set(d) >= {"gco2e_per_kwh", "zone", "source", "year", "basis", "at"}
    assert d["at"] is None and d["zone"] == "FR"


def test_list_zones():
    ciso = list_zones("ciso")
    assert [z["zone"] for z in ciso] == ["US-CAL-CISO"]
    z = ciso[0]
    assert z == {
        "zone": "US-CAL-CISO",
        "name": "California ISO (USA)",
        "kind": "electricitymaps",
        "gco2e_per_kwh": float(zone_row("US-CAL-CISO")["gco2e_per_kwh_lifecycle"]),
        "source": lookup("US-CAL-CISO").source,
        "year": int(zone_row("US-CAL-CISO")["year"]),
        "basis": lookup("US-CAL-CISO").basis,
        "implausible": None,
    }
    assert "aws:eu-west-3" in {z["zone"] for z in list_zones("paris")}
    assert "FR" in [z["zone"] for z in list_zones("FRANCE")]
    everything = list_zones()
    json.dumps(everything)  # the CLI prints it as JSON
    # every zone listed resolves to the figure listed: nothing shown that cannot be used
    for z in everything:
        i = lookup(z["zone"])
        assert (i.zone, i.gco2e_per_kwh, i.source) == (z["zone"], z["gco2e_per_kwh"], z["source"])
    assert len({z["zone"] for z in everything}) == len(everything)
    assert {z["kind"] for z in everything} == {"country", "aggregate", "electricitymaps", "cloud"}
    assert list_zones("no such place at all") == []


def test_only_the_needed_table_is_parsed(monkeypatch):
    from carbonlab.footprint import _data

    read = []

    def spy(name):
        read.append(name)
        return _data.table(name)

    monkeypatch.setattr(intensity, "table", spy)
    for f in (intensity._countries, intensity._zones, intensity._cloud, lookup):
        f.cache_clear()
    try:
        lookup("FR")
        assert read == ["grid_intensity_country.csv"]
        read.clear()
        lookup("US-CAL-CISO")
        assert read == ["grid_intensity_zones_electricitymaps.csv"]
        read.clear()
        lookup("gcp:europe-west1")
        assert read == ["cloud_regions_gcp.csv"]
        read.clear()
        lookup("FR")
        lookup("US-CAL-CISO")
        assert read == []  # cached
    finally:
        for f in (intensity._countries, intensity._zones, intensity._cloud, lookup):
            f.cache_clear()


def test_static_is_the_default_provider():
    assert current("FR") == (lookup("FR"), None)
    assert current("FR", "static") == (lookup("FR"), None)


@pytest.mark.fault("providers")
def test_unavailable_live_provider_falls_back_with_a_note():
    i, why = current("GB", "nosuchprovider:GB")
    assert i == lookup("GB")
    assert "nosuchprovider:GB" in why and "static" in why


def test_registered_provider_is_used():
    live = Intensity(123.0, "GB", "Great Britain", "test live", None, "live", "test", "GB", at="t")

    class Fake:
        name = "fake"

        def __init__(self, arg):
            self.arg = arg
            self.value = None

        def latest(self, zone):
            return self.value

    made = []

    def factory(arg):
        made.append(Fake(arg))
        return made[-1]

    register_provider("fake", factory)
    try:
        i, why = current("GB", "fake:GB")
        assert i == lookup("GB") and "no reading yet" in why
        made[0].value = live
        assert current("GB", "fake:GB") == (live, None)
        assert len(made) == 1 and made[0].arg == "GB"
        assert isinstance(made[0], intensity.IntensityProvider)
    finally:
        intensity._FACTORIES.pop("fake", None)
        intensity._INSTANCES.pop("fake:GB", None)


def test_zone_list_puts_the_exact_key_first():
    from carbonlab.footprint.intensity import list_zones

    rows = list_zones("fr")
    assert rows[0]["zone"] == "FR"
    assert any(
        r["zone"] != "FR" for r in rows[1:]
    )  # name matches (Africa, France's territories) follow


@pytest.mark.parametrize(
    "text",
    [
        "a,b\n1,2\n\n3\n4,5,6\n",  # an empty row (skipped), a short one and a long one
        "",
        "a,b\n",
        'a,b\n"x\ny",2\n',  # a quoted newline
        "a,b\r\n1,2\r\n,\r\n",
    ],
)
def test_table_parser_reads_as_csv_dictreader(text):
    import csv
    import io

    from carbonlab.footprint import _data

    assert _data.parse(text) == tuple(csv.DictReader(io.StringIO(text)))


def test_every_shipped_table_reads_as_csv_dictreader():
    import csv
    import io
    import os

    from carbonlab.footprint import _data

    folder = os.path.join(os.path.dirname(_data.__file__), "..", "data")
    names = [n for n in os.listdir(folder) if n.endswith(".csv")]
    assert names
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            text = f.read()
        assert _data.table(name) == tuple(csv.DictReader(io.StringIO(text))), name
