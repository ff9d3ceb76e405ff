"""carbonlab/footprint/intensity.py: zone strings -> static figures with their source.

Expected figures are read here from the shipped CSV files, independently of the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
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

    def spy_rows(name, *args, **kwargs):  # the lines of one table that can hold a key
        read.append(name)
        return _data.rows_where(name, *args, **kwargs)

    def spy_last(name, *args, **kwargs):  # the same, from the end
        read.append(name)
        return _data.last_row_where(name, *args, **kwargs)

    from carbonlab.footprint import _zonelist

    # the country table is read by intensity itself, the others by _zonelist (loaded on first use)
    for mod in (intensity, _zonelist):
        monkeypatch.setattr(mod, "table", spy)
    monkeypatch.setattr(intensity, "rows_where", spy_rows)
    monkeypatch.setattr(intensity, "last_row_where", spy_last)
    caches = (
        intensity._countries,
        intensity._country_figure,
        intensity._aggregate_figure,
        intensity._zones,
        intensity._cloud,
        lookup,
    )
    for f in caches:
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
        for f in caches:
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


# ---- reading only the rows a lookup needs (issue 16) ----

_SHIPPED = [
    "grid_intensity_country.csv",
    "pue_wue_defaults.csv",
    "embodied_carbon.csv",
    "water_intensity_electricity_country.csv",
    "cloud_regions_electricitymaps.csv",
    "cloud_regions_gcp.csv",
    "grid_intensity_zones_electricitymaps.csv",
    "co2_equivalents.csv",
]


@pytest.mark.parametrize("name", _SHIPPED)
def test_rows_where_gives_the_rows_of_the_full_table_for_every_value(name):
    from carbonlab.footprint import _data

    rows = _data.table(name)
    for column in rows[0]:
        values = {r[column] for r in rows} | {"", "zz-none", "World", "server"}
        for value in values:
            expected = tuple(r for r in rows if r[column] == value)
            assert _data.rows_where(name, column, value) == expected, (column, value)
            last = expected[-1] if expected else None
            assert _data.last_row_where(name, column, value) == last, (column, value)
            folded = value.casefold()
            expected = tuple(r for r in rows if r[column].casefold() == folded)
            assert _data.rows_where(name, column, folded, fold=True) == expected
            assert _data.rows_where(name, column, value.upper().casefold(), fold=True) == tuple(
                r for r in rows if r[column].casefold() == value.upper().casefold()
            )


@pytest.mark.parametrize("name", _SHIPPED)
def test_every_shipped_record_is_one_line(name):
    """What the line-by-line reading relies on: each line parses alone to its full-table row."""
    from carbonlab.footprint import _data

    assert _data._lines(name) is not None
    header, lines = _data._lines(name)
    alone = tuple(dict(zip(header, next(csv.reader([line])))) for line in lines if line)
    assert alone == _data.table(name)


def _table_file(tmp_path, text):
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8"))
    return str(path)  # absolute: os.path.join(data_dir, it) is it


@pytest.mark.parametrize(
    "text",
    [
        'k,v\na,"one\nb,two"\nb,3\n',  # a record over two lines: b is no key of its own
        "k,v\r\na,1\r\nb,2\r\n",  # \r\n: the csv module's endings
        'k,v\na,1\nb,"x""y"\nb,2,extra\n',  # a long row: its extra fields under DictReader's key
        "k,v\n\u212a,1\nk,2\nK,3\n",  # the Kelvin sign folds to k
        "k,v\na,1\n\nb,2\n",  # an empty line
        # (issue 16: the value searched in the file's bytes)
        'k,v\na,"x\n,"\n,b\n',  # a record's second line starts with a comma
        'k,v\na,"1\n\nb,2"\nb,4\n',  # an empty line inside a quoted field
        "k,v\ra,1\nb,2\n",  # a lone CR in the header
        "k,v\na,1\rb,2\n,x\r",  # lone CRs in the data, one ending the file
        "k,v\n,1\na,\nb,2,",  # empty first and last fields; the file ends in a comma
        '"k",v\na,1\nb,2\n',  # a quoted header
        'k,v\na,""\n"",b\n',  # quoted empty fields
        "k,v\na,1",  # no newline at the end
        'k,v\na,x"\nc,"p\nb,2\n"\n',  # a bare quote in a field, then a record over lines
        "k,v",  # a header alone
        "k,v\r\nb,2\nb,3\r\n",  # mixed line ends
        "k,v\nC\u00f4te,b\nb,\u00e9\n\u00e9,x\n",  # non-ASCII
        'k,v\na,"x,""b"",\n",y\nb,1\n',  # a quoted comma, doubled quotes, a line break
    ],
)
def test_rows_where_falls_back_to_the_csv_module_where_lines_are_not_records(tmp_path, text):
    from carbonlab.footprint import _data

    name = _table_file(tmp_path, text)
    rows = _data.table(name)
    for value in ["a", "b", "k", "K", "\u212a", "1", "x", "", ",", "C\u00f4te", "\u00e9"]:
        for column in ("k", "v"):
            got = _data.rows_where(name, column, value)
            assert got == tuple(r for r in rows if r.get(column) == value)
            last = _data.last_row_where(name, column, value)
            assert last == (got[-1] if got else None)
            got = _data.rows_where(name, column, value.casefold(), fold=True)
            assert got == tuple(
                r for r in rows if (r.get(column) or "").casefold() == value.casefold()
            )
    _data._lines.cache_clear()
    _data._file.cache_clear()
    _data.table.cache_clear()


def test_lookups_read_only_their_rows_and_give_the_full_tables_figures():
    """Every country code and aggregate name, in several spellings: the figure read from its
    own lines equals the one from the whole table."""
    intensity._countries.cache_clear()
    intensity._country_figure.cache_clear()
    intensity._aggregate_figure.cache_clear()
    intensity.lookup.cache_clear()
    try:
        from carbonlab.footprint._data import table

        codes = {r["iso2"] for r in table(intensity.COUNTRY_TABLE)} | {"", "ZZ", "UK"}
        names = {r["name"].casefold() for r in table(intensity.COUNTRY_TABLE)} | {"nowhere"}
        fast = {c: intensity._country_figure(c) for c in codes}
        fast_names = {n: intensity._aggregate_figure(n) for n in names}
        world = intensity.lookup(None)
        assert intensity._countries.cache_info().currsize == 0  # the whole table was not built
        by_iso2, aggregates = intensity._countries()
        assert fast == {c: by_iso2.get(c) for c in codes}
        assert fast_names == {n: aggregates.get(n) for n in names}
        assert world == intensity.replace(aggregates["world"], name=intensity.NO_ZONE_NAME)
        assert sum(v is not None for v in fast_names.values()) == len(aggregates)
    finally:
        intensity._countries.cache_clear()
        intensity._country_figure.cache_clear()
        intensity._aggregate_figure.cache_clear()
        intensity.lookup.cache_clear()


def test_listing_and_registered_providers_load_on_first_use():
    """``import carbonlab.footprint`` loads neither the zone listing nor the provider seam; every
    name that moved there is still reachable from intensity (and footprint) as before."""
    code = """
import sys
from carbonlab import footprint
from carbonlab.footprint import intensity
assert footprint.lookup(None).zone == "World" and footprint.lookup("fr").zone == "FR"
loaded = sorted(m for m in sys.modules if m.startswith("carbonlab.footprint."))
print(loaded)
from carbonlab.footprint.intensity import IntensityProvider, current, list_zones, search_zones
from carbonlab.footprint import list_zones as l2, current as c2
assert l2 is list_zones and c2 is current and footprint.current is current
for name in intensity._LAZY:
    assert getattr(intensity, name) is not None, name
assert set(intensity.__all__) <= set(dir(intensity))
try:
    intensity.no_such_name
except AttributeError as e:
    assert "no_such_name" in str(e)
else:
    raise AssertionError("no AttributeError")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == (
        "['carbonlab.footprint._data', 'carbonlab.footprint.factors', 'carbonlab.footprint.intensity']"
    )


def test_lookup_of_other_tables_loads_the_zone_list():
    assert lookup("US-CAL-CISO").kind == "electricitymaps"
    assert lookup("aws:eu-west-3").zone == "aws:eu-west-3"
    with pytest.raises(UnknownZoneError, match=r"did you mean FR \(France\)"):
        lookup("france")
    with pytest.raises(UnknownZoneError, match=r"did you mean aws:eu-west-3 "):
        lookup("aws:eu-wst-3")
