"""carbonlab/footprint (apply) and footprint/factors.py: PUE, embodied, water, computed here from first
principles with figures read from the shipped tables, not from the code under test."""

from __future__ import annotations

import csv
import io
import json
import time
from importlib.resources import files

import pytest

from carbonlab import footprint
from carbonlab.config import Settings, resolve
from carbonlab.footprint import factors
from carbonlab.measurement import Component, Measurement

J_PER_KWH = 3.6e6
SECONDS_PER_YEAR = 365.25 * 24 * 3600


def rows(name):
    text = (files("carbonlab") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def grid(iso2):
    (r,) = [r for r in rows("grid_intensity_country.csv") if r["iso2"] == iso2]
    return float(r["gco2e_per_kwh"])


def world_grid():
    (r,) = [r for r in rows("grid_intensity_country.csv") if r["name"] == "World"]
    return float(r["gco2e_per_kwh"])


def ewif(iso2):
    (r,) = [r for r in rows("water_intensity_electricity_country.csv") if r["iso2"] == iso2]
    return float(r["ewif_l_per_kwh"])


def embodied_kg(predicate):
    (r,) = [r for r in rows("embodied_carbon.csv") if predicate(r)]
    return float(r["kgco2e"])


def h100_pcf_kg():
    return embodied_kg(lambda r: "H100" in r["item"] and "manufacturer" in r["method"])


def a100_kg():
    return embodied_kg(lambda r: r["item"].startswith("NVIDIA A100 (BLOOM"))


def l4_kg():
    return embodied_kg(lambda r: r["item"].startswith("NVIDIA L4 "))


def gpu(device, name, energy_j=100.0):
    return Component("gpu", device, energy_j, "nvml-energy-counter", "device", name=name)


def cpu(energy_j=50.0):
    return Component("cpu", "package-0", energy_j, "rapl", "package")


def window(*components, duration_s=10.0):
    return Measurement("cell 1", "2026-01-01T00:00:00Z", duration_s, list(components))


def amortised(kg, duration_s, years):
    return kg * 1000.0 * duration_s / (years * SECONDS_PER_YEAR)


# --- operational CO2e and PUE ----------------------------------------------------------------


def test_co2e_is_energy_times_pue_times_intensity():
    m = footprint.apply(window(cpu(7200.0), gpu("GPU-0", "NVIDIA L4", 3600.0)), Settings(zone="FR"))
    expected = (7200.0 + 3600.0) / J_PER_KWH * 1.0 * grid("FR")
    assert m.co2e_g == pytest.approx(expected)
    assert m.pue == 1.0
    assert m.intensity["gco2e_per_kwh"] == grid("FR") and m.intensity["zone"] == "FR"


def test_pue_multiplies_operational_co2e_and_water_grid_share():
    base = footprint.apply(window(cpu(3600.0)), Settings(zone="DE", pue=1.0))
    more = footprint.apply(window(cpu(3600.0)), Settings(zone="DE", pue=1.5))
    assert more.pue == 1.5
    assert more.co2e_g == pytest.approx(1.5 * base.co2e_g)
    assert more.co2e_g == pytest.approx(3600.0 / J_PER_KWH * 1.5 * grid("DE"))


def test_world_average_without_zone():
    m = footprint.apply(window(cpu(3600.0)), Settings())
    assert m.intensity["name"] == "World average (no zone configured)"
    assert m.co2e_g == pytest.approx(3600.0 / J_PER_KWH * world_grid())
    assert any("World average (no zone configured)" in n for n in m.notes)


def test_pue_source_is_stated(tmp_path):
    s = resolve(env={"CARBONLAB_PUE": "1.4", "CARBONLAB_ZONE": "FR"}, cwd=tmp_path)
    f = factors.pue(s, footprint.lookup(s.zone))
    assert (f.value, f.source) == (1.4, "from environment")
    m = footprint.apply(window(cpu()), s)
    assert "PUE 1.4 (from environment)" in m.notes
    d = factors.pue(Settings())
    assert d.value == 1.0 and d.source == "default" and "default" in d.note


def test_cloud_region_without_pue_uses_the_providers_fleet_figure(tmp_path):
    aws = [r for r in rows("pue_wue_defaults.csv") if r["operator"] == "AWS"]
    pue = max((r for r in aws if r["metric"] == "PUE"), key=lambda r: r["year"])
    wue = max((r for r in aws if r["metric"] == "WUE"), key=lambda r: r["year"])
    s = Settings(zone="aws:us-east-1")
    m = footprint.apply(window(cpu(3600.0)), s)
    assert m.pue == float(pue["value"])
    assert m.co2e_g == pytest.approx(
        3600.0 / J_PER_KWH * float(pue["value"]) * m.intensity["gco2e_per_kwh"]
    )
    kwh = 3600.0 / J_PER_KWH
    assert m.water_l == pytest.approx(
        kwh * (float(wue["value"]) + float(pue["value"]) * ewif("US"))
    )
    assert any(n.startswith(f"PUE {pue['value']}") and "cloud region" in n for n in m.notes)
    # A configured PUE always wins, even when it equals the default.
    configured = resolve(
        env={"CARBONLAB_PUE": "1.0", "CARBONLAB_ZONE": "aws:us-east-1"}, cwd=tmp_path
    )
    assert footprint.apply(window(cpu()), configured).pue == 1.0
    assert footprint.apply(window(cpu()), Settings(zone="aws:us-east-1", pue=1.3)).pue == 1.3


# --- embodied --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "nvidia h100"]
)
def test_h100_uses_the_manufacturer_footprint(name):
    fig = factors.gpu_embodied(name)
    assert fig is not None and fig.family == "H100"
    assert fig.kgco2e == h100_pcf_kg()
    assert fig.kgco2e_min <= fig.kgco2e <= fig.kgco2e_max
    assert "NVIDIA" in fig.citation


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA A100-SXM4-40GB",
        "NVIDIA A100 80GB PCIe",
        "NVIDIA A100-PCIE-40GB",
    ],
)
def test_a100_names(name):
    fig = factors.gpu_embodied(name)
    assert fig is not None and fig.family == "A100" and fig.kgco2e == a100_kg()


@pytest.mark.parametrize(
    "name, family",
    [
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA B200", "B200"),
        ("AMD Instinct MI300X", "MI300X"),
    ],
)
def test_other_gpu_families(name, family):
    fig = factors.gpu_embodied(name)
    assert fig is not None and fig.family == family
    assert fig.kgco2e == embodied_kg(lambda r: r["item"] == fig.item)


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA A10G",
        "NVIDIA GH200 480GB",
        "NVIDIA GB200",
        "NVIDIA L40",
        "NVIDIA GeForce RTX 4090",
        "",
        "NVIDIA H800",
    ],
)
def test_unknown_gpus_have_no_figure(name):
    assert factors.gpu_embodied(name) is None


def test_every_rule_points_at_a_shipped_row():
    items = {r["item"] for r in rows("embodied_carbon.csv")}
    for _, _, rule_items in factors._GPU_RULES:
        assert set(rule_items) <= items


def test_embodied_is_amortised_over_the_lifetime():
    m = window(gpu("GPU-0", "NVIDIA H100 80GB HBM3"), cpu(), duration_s=2.41)
    footprint.apply(m, Settings(zone="FR", lifetime_years=3.0))
    assert m.embodied_co2e_g == pytest.approx(amortised(h100_pcf_kg(), 2.41, 3.0))
    footprint.apply(m, Settings(zone="FR", lifetime_years=6.0))
    assert m.embodied_co2e_g == pytest.approx(amortised(h100_pcf_kg(), 2.41, 6.0))
    assert any("H100" in n and "amortised over 6 years" in n for n in m.notes)


def test_embodied_sums_devices_and_counts_each_device_once():
    m = window(
        gpu("GPU-0", "NVIDIA A100-SXM4-80GB"),
        gpu("GPU-1", "NVIDIA A100-SXM4-80GB"),
        gpu("GPU-1", "NVIDIA A100-SXM4-80GB"),  # a second component for the same device
        gpu("GPU-2", "NVIDIA L4"),
        duration_s=100.0,
    )
    footprint.apply(m, Settings(zone="FR"))
    expected = 2 * amortised(a100_kg(), 100.0, 4.0) + amortised(l4_kg(), 100.0, 4.0)
    assert m.embodied_co2e_g == pytest.approx(expected)
    assert any(n.startswith("embodied: 2 × NVIDIA A100-SXM4-80GB") for n in m.notes)


def test_unknown_gpu_gives_no_embodied_and_says_so():
    m = footprint.apply(window(gpu("GPU-0", "NVIDIA A10G")), Settings(zone="FR"))
    assert m.embodied_co2e_g is None
    assert any("no figure for NVIDIA A10G" in n for n in m.notes)


def test_unknown_gpu_beside_a_known_one_is_left_out():
    m = window(gpu("GPU-0", "NVIDIA A10G"), gpu("GPU-1", "NVIDIA L4"), duration_s=60.0)
    footprint.apply(m, Settings(zone="FR"))
    assert m.embodied_co2e_g == pytest.approx(amortised(l4_kg(), 60.0, 4.0))
    assert any("no figure for NVIDIA A10G" in n for n in m.notes)


def test_cpu_only_has_no_embodied_and_explains_the_host():
    m = footprint.apply(window(cpu()), Settings(zone="FR"))
    assert m.embodied_co2e_g is None
    assert any("host" in n and "not included" in n for n in m.notes)


def test_embodied_off():
    m = footprint.apply(window(gpu("GPU-0", "NVIDIA H100 80GB HBM3")), Settings(embodied=False))
    assert m.embodied_co2e_g is None
    assert any("embodied: not estimated" in n for n in m.notes)


# --- water -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone, iso2",
    [("FR", "FR"), ("US-CAL-CISO", "US"), ("gcp:europe-west1", "BE"), ("azure:westeurope", "NL")],
)
def test_water_is_onsite_plus_pue_times_grid(zone, iso2):
    s = Settings(zone=zone, pue=1.2, wue_l_per_kwh=0.5)
    m = footprint.apply(window(cpu(7200.0)), s)
    kwh = 7200.0 / J_PER_KWH
    assert m.water_l == pytest.approx(kwh * (0.5 + 1.2 * ewif(iso2)))
    assert any(n.startswith("water") and "PUE 1.2" in n for n in m.notes)


def test_water_falls_back_to_world_where_the_country_has_no_figure():
    assert not [r for r in rows("water_intensity_electricity_country.csv") if r["iso2"] == "ZA"]
    m = footprint.apply(window(cpu(3600.0)), Settings(zone="ZA"))
    assert m.water_l == pytest.approx(3600.0 / J_PER_KWH * ewif(""))
    assert any("no figure for ZA: World average" in n for n in m.notes)
    m = footprint.apply(window(cpu(3600.0)), Settings())
    assert m.water_l == pytest.approx(3600.0 / J_PER_KWH * ewif(""))


# --- the record ------------------------------------------------------------------------------


def test_every_figure_says_where_it_came_from():
    m = footprint.apply(window(gpu("GPU-0", "NVIDIA H100 80GB HBM3"), cpu()), Settings(zone="FR"))
    text = "\n".join(m.notes)
    assert m.intensity["source"] in text  # operational: the grid figure and its source
    assert "PUE 1.0 (default" in text
    assert "NVIDIA HGX H100" in text  # embodied
    assert "EcoLogits" in text  # water
    assert set(m.intensity) >= {"gco2e_per_kwh", "zone", "source", "year", "basis", "at"}


def test_apply_again_replaces_its_notes_and_keeps_others():
    m = window(cpu())
    m.notes.append("cpu: RAPL not readable; process model used")
    footprint.apply(m, Settings(zone="FR"))
    n = len(m.notes)
    footprint.apply(m, Settings(zone="DE"))
    assert len(m.notes) == n
    assert m.notes[0] == "cpu: RAPL not readable; process model used"
    assert not any("France" in x for x in m.notes) and any("Germany" in x for x in m.notes)


def test_result_round_trips_as_json():
    m = footprint.apply(window(gpu("GPU-0", "NVIDIA L4"), cpu()), Settings(zone="GB"))
    again = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.co2e_g == m.co2e_g and again.intensity == m.intensity and again.notes == m.notes
    # the intensity record is the caller's own copy
    m.intensity["zone"] = "changed"
    assert footprint.apply(window(cpu()), Settings(zone="GB")).intensity["zone"] == "GB"


def test_unknown_zone_is_a_usage_error_before_and_during_apply():
    with pytest.raises(footprint.UnknownZoneError):
        footprint.validate(Settings(zone="Atlantis"))
    with pytest.raises(footprint.UnknownZoneError):
        footprint.apply(window(cpu()), Settings(zone="Atlantis"))


def test_apply_is_fast_once_warm():
    m = window(gpu("GPU-0", "NVIDIA H100 80GB HBM3"), cpu())
    s = Settings(zone="US-CAL-CISO")
    footprint.apply(m, s)
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        footprint.apply(m, s)
    per_call = (time.perf_counter() - t) / n
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} µs per apply"


def test_water_and_host_figures_read_from_their_own_rows_equal_the_whole_tables():
    """grid_water for every code (and none, and an unknown one) and the host's embodied note,
    read from the lines that can hold them, are those the whole tables give."""
    from carbonlab.footprint import _data, factors

    codes = {r["iso2"] for r in _data.table(factors.WATER_TABLE)} | {"", "ZZ", None}
    for f in (factors._water_by_iso2, factors._water_row, factors._embodied_rows):
        f.cache_clear()
    factors.host_embodied_note.cache_clear()
    try:
        fast = {c: factors.grid_water(c) for c in codes}
        note = factors.host_embodied_note()
        assert factors._water_by_iso2.cache_info().currsize == 0
        assert factors._embodied_rows.cache_info().currsize == 0
        factors._water_row.cache_clear()
        factors._water_by_iso2()
        factors._embodied_rows()
        factors.host_embodied_note.cache_clear()
        assert fast == {c: factors.grid_water(c) for c in codes}
        assert note == factors.host_embodied_note()
    finally:
        for f in (factors._water_by_iso2, factors._water_row, factors._embodied_rows):
            f.cache_clear()
        factors.host_embodied_note.cache_clear()


def _lines_as_before(path):
    """carbonlab.footprint._data._lines as it read a table in text mode."""
    import csv

    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "\r" in text:
        return None
    lines = text.split("\n")
    quoted = '"' in text
    if quoted and any(line.count('"') % 2 for line in lines):
        return None
    header = next(csv.reader(lines[:1]), None) if quoted else lines[0].split(",")
    if not header:
        return None
    return header, lines[1:]


def test_tables_read_as_bytes_give_the_text_mode_lines(tmp_path):
    """Every shipped table (some with CRLF line ends), and texts with lone CRs, CRLF, quotes and
    non-ASCII: the decoded bytes are what a text-mode read gives, and _lines is what it was."""
    import os

    from carbonlab.footprint import _data

    data_dir = os.path.join(os.path.dirname(_data.__file__), "..", "data")
    names = sorted(n for n in os.listdir(data_dir) if n.endswith(".csv"))
    assert len(names) >= 9
    for name in names:
        path = os.path.join(data_dir, name)
        with open(path, "rb") as f:
            raw = f.read()
        with open(path, encoding="utf-8") as f:
            assert _data._text(raw) == f.read(), name
        assert _data._lines(name) == _lines_as_before(path), name
    samples = [
        b"a,b\r\n1,2\r\n",
        b"a,b\r1,2\r\r\n3,4",
        b'a,b\n"x,\r\ny",2\n',
        "name,v\nC\u00f4te d'Ivoire,1\r\n\u212a,2\n".encode(),
        b"",
        b"\r",
        b'h\n"\n',
    ]
    for raw in samples:
        path = tmp_path / "t.csv"
        path.write_bytes(raw)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert _data._text(raw) == text, raw
        assert _data._lines_of(text) == _lines_as_before(path), raw


def test_gpu_figures_load_with_the_first_gpu_and_stay_reachable_from_factors():
    """``import carbonlab.footprint`` leaves the GPU embodied figures unloaded (a window with no
    GPU never needs them); factors' names for them still work, and a GPU window gets them."""
    import subprocess
    import sys

    code = """
import sys
from carbonlab import footprint
from carbonlab.config import Settings
from carbonlab.footprint import factors
from carbonlab.measurement import Component, Measurement
m = footprint.apply(Measurement("w", "", 1.0, [Component("cpu", "0", 1.0, "rapl", "package")]), Settings())
print("carbonlab.footprint._embodied" in sys.modules)
m = Measurement("w", "", 1.0, [Component("gpu", "0", 1.0, "nvml", "device", name="NVIDIA H100 80GB HBM3")])
footprint.apply(m, Settings())
print("carbonlab.footprint._embodied" in sys.modules, m.embodied_co2e_g > 0)
from carbonlab.footprint.factors import EmbodiedFigure, embodied_note, gpu_embodied, _GPU_RULES
assert isinstance(gpu_embodied("NVIDIA H100 80GB HBM3"), EmbodiedFigure)
assert set(factors.__all__) <= set(dir(factors))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True", "True"]
