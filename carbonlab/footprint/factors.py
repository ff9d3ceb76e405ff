"""The factors between IT energy and a footprint: PUE, embodied carbon, water. Each with its source.

* PUE: the ``pue`` setting. When none is configured and the zone is a cloud region, the provider's
  self-reported fleet PUE (``pue_wue_defaults.csv``) instead of 1.0, which would understate a data
  centre; said in the note.
* Embodied carbon of a GPU (``embodied_carbon.csv``), matched on the product name NVML reports, amortised
  over ``lifetime_years`` of wall time: ``kgCO2e × 1000 × window_s / (lifetime_years × 365.25 d)``. The
  manufacturer's product carbon footprint is preferred where one exists, then a peer-reviewed
  estimate, then BoaviztAPI's bottom-up model; the spread of published figures is stated. The host
  (CPU, memory, board, chassis) is not charged: nothing identifies which server a notebook runs on, and
  published server figures differ by several times, so any default would be a guess.
* Water: ``energy_kWh × (on-site WUE + PUE × EWIF)``, EWIF being the water consumed generating a kWh in
  the zone's country (``water_intensity_electricity_country.csv``, EcoLogits, WRI method).
"""

from __future__ import annotations

import re
from functools import cache

from carbonlab.config import Settings

from .._record import fields, record
from ._data import Row, last_row_where, rows_where, table
from .intensity import KIND_CLOUD, Intensity

__all__ = [
    "SECONDS_PER_YEAR",
    "EmbodiedFigure",
    "Factor",
    "amortised_g",
    "embodied_note",
    "gpu_embodied",
    "grid_water",
    "host_embodied_note",
    "lifetime",
    "onsite_wue",
    "origin",
    "pue",
    "water",
]

EMBODIED_TABLE = "embodied_carbon.csv"
PUE_TABLE = "pue_wue_defaults.csv"
WATER_TABLE = "water_intensity_electricity_country.csv"

SECONDS_PER_YEAR = 365.25 * 86400.0
_WATER_SOURCE = "EcoLogits, WRI method"

_DEFAULTS = {f.name: f.default for f in fields(Settings)}
# The operator named in pue_wue_defaults.csv for each cloud provider of a zone.
_CLOUD_OPERATORS = {"aws": "AWS", "azure": "Microsoft", "gcp": "Google"}


@record(frozen=True)
class Factor:
    """A number, where it came from (short), and the sentence carbonlab shows about it."""

    value: float
    source: str
    note: str


def _is_default(settings: Settings, name: str) -> bool:
    # A Settings built in code (Settings(pue=1.2)) has no recorded source; its value tells.
    return settings.source(name) == "default" and getattr(settings, name) == _DEFAULTS[name]


def origin(settings: Settings, name: str) -> str:
    """ "default", "set in code", or "from environment" / "from pyproject (...)" / "from argument"."""
    if _is_default(settings, name):
        return "default"
    where = settings.source(name)
    return "set in code" if where == "default" else f"from {where}"


def _num(x: float) -> str:
    return f"{x:g}"


# --- PUE and on-site water -------------------------------------------------------------------


@cache
def _cloud_default(provider: str, metric: str) -> Row | None:
    """The provider's own latest fleet figure, else the assumption EcoLogits uses for it."""
    operator = _CLOUD_OPERATORS[provider]
    rows = [r for r in table(PUE_TABLE) if r["metric"] == metric]
    own = [r for r in rows if r["scope"] == "hyperscaler" and r["operator"] == operator]
    if own:
        return max(own, key=lambda r: r["year"])
    assumed = [
        r
        for r in rows
        if r["scope"] == "provider assumption" and r["operator"].startswith(operator)
    ]
    return assumed[0] if assumed else None


def _cloud_source(provider: str, row: Row) -> str:
    if row["scope"] == "provider assumption":
        return f"EcoLogits' assumption for {_CLOUD_OPERATORS[provider]}"
    return f"{row['operator']} {row['year']} fleet average, {row['source']}"


def _pue(x: float) -> str:
    return f"{x:.1f}" if x == int(x) else f"{x:g}"


def _cloud_provider(zone: Intensity | None) -> str | None:
    if zone is None or zone.kind != KIND_CLOUD:
        return None
    return zone.zone.partition(":")[0]


def pue(settings: Settings, zone: Intensity | None = None) -> Factor:
    """The PUE to multiply IT energy by, with its source.

    >>> pue(Settings()).value
    1.0
    """
    provider = _cloud_provider(zone)
    if provider and zone is not None and _is_default(settings, "pue"):
        row = _cloud_default(provider, "PUE")
        if row is not None:
            v = float(row["value"])
            source = _cloud_source(provider, row)
            return Factor(
                v,
                source,
                f"PUE {_pue(v)} ({source}), used because {zone.zone} is a cloud region and no pue "
                "is configured",
            )
    where = origin(settings, "pue")
    if where == "default":
        avg = _industry_average()
        hint = (
            f", e.g. {avg['value']}, the industry average ({avg['source'].split(' (')[0]})"
            if avg
            else ""
        )
        return Factor(
            settings.pue,
            where,
            f"PUE {_pue(settings.pue)} (default: no facility overhead, right for a laptop or "
            f"workstation; set pue for a data centre{hint})",
        )
    return Factor(settings.pue, where, f"PUE {_pue(settings.pue)} ({where})")


@cache
def _industry_average() -> Row | None:
    rows = [r for r in rows_where(PUE_TABLE, "scope", "industry average") if r["metric"] == "PUE"]
    return max(rows, key=lambda r: r["year"]) if rows else None


def onsite_wue(settings: Settings, zone: Intensity | None = None) -> Factor:
    """On-site water use effectiveness (L per IT kWh: cooling), with its source."""
    provider = _cloud_provider(zone)
    if provider and _is_default(settings, "wue_l_per_kwh"):
        row = _cloud_default(provider, "WUE")
        if row is not None:
            return Factor(float(row["value"]), _cloud_source(provider, row), "")
    return Factor(settings.wue_l_per_kwh, origin(settings, "wue_l_per_kwh"), "")


@cache
def _water_by_iso2() -> dict[str, Row]:
    return {r["iso2"]: r for r in table(WATER_TABLE)}  # the World row has iso2 ""


def grid_water(country_iso2: str | None) -> Factor:
    """Litres of water consumed generating one kWh in a country (EWIF); the World figure if the
    country has none (said in the source).

    >>> grid_water("US").value
    3.1321
    """
    row = _water_row(country_iso2 or "")
    if row is not None:
        return Factor(float(row["ewif_l_per_kwh"]), f"{row['name']}, {_WATER_SOURCE}", "")
    why = f"no figure for {country_iso2}: World average" if country_iso2 else "World average"
    world = _water_row("")
    if world is None:  # pragma: no cover - the shipped table has it; as _water_by_iso2()[""]
        raise KeyError("")
    return Factor(float(world["ewif_l_per_kwh"]), f"{why}, {_WATER_SOURCE}", "")


@cache
def _water_row(iso2: str) -> Row | None:
    """``_water_by_iso2().get(iso2)`` (the last row of that code), reading only the lines that
    can hold it."""
    if _water_by_iso2.cache_info().currsize:
        return _water_by_iso2().get(iso2)
    return last_row_where(WATER_TABLE, "iso2", iso2)


def water(settings: Settings, zone: Intensity, pue_value: float) -> Factor:
    """Litres per IT kWh: on-site WUE + PUE × the grid's EWIF."""
    w = onsite_wue(settings, zone)
    g = grid_water(zone.country_iso2)
    v = w.value + pue_value * g.value
    note = (
        f"water {_num(round(v, 4))} L/kWh = on-site WUE {_num(w.value)} L/kWh ({w.source}) + "
        f"PUE {_pue(pue_value)} × {_num(g.value)} L/kWh consumed generating electricity "
        f"({g.source})"
    )
    return Factor(v, f"on-site {w.source}; grid {g.source}", note)


# --- embodied carbon -------------------------------------------------------------------------


@record(frozen=True)
class EmbodiedFigure:
    """Embodied carbon of one device, the figure used and the range across sources."""

    family: str  # "H100"
    kgco2e: float
    kgco2e_min: float
    kgco2e_max: float
    item: str  # the table row used
    citation: str  # short: "NVIDIA HGX H100 Product Carbon Footprint (via EcoLogits)"
    source: str  # the table's full source text


# NVML product name pattern -> the table rows for that part, the preferred one first (manufacturer
# PCF, then literature, then BoaviztAPI). Names are matched upper-case with "-" and "_" as spaces, so
# "NVIDIA A100-SXM4-80GB" matches A100; word boundaries keep A10 off A100 and A10G, H200 off GH200.
_GPU_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        r"\bH100\b",
        "H100",
        (
            "NVIDIA H100 SXM5 80GB (one GPU, from HGX H100 PCF)",
            "NVIDIA H100 SXM 80GB (BoaviztAPI 2.5.0 bottom-up)",
            "NVIDIA H100 PCIe 80GB (BoaviztAPI 2.5.0 bottom-up)",
        ),
    ),
    (r"\bH200\b", "H200", ("NVIDIA H200 SXM 141GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bB200\b", "B200", ("NVIDIA B200 180GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (
        r"\bA100\b",
        "A100",
        (
            "NVIDIA A100 (BLOOM study assumption)",
            "NVIDIA A100 SXM4 80GB (BoaviztAPI 2.5.0 bottom-up)",
            "NVIDIA A100 SXM4 40GB (BoaviztAPI 2.5.0 bottom-up)",
            "NVIDIA A100 PCIe 40GB (BoaviztAPI 2.5.0 bottom-up)",
        ),
    ),
    (r"\bA10\b", "A10", ("NVIDIA A10 (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bV100\b", "V100", ("NVIDIA Tesla V100 SXM2 32GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bL40S\b", "L40S", ("NVIDIA L40S 48GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bL4\b", "L4", ("NVIDIA L4 (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bT4\b", "T4", ("NVIDIA T4 (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bMI300X\b", "MI300X", ("AMD Instinct MI300X 192GB (BoaviztAPI 2.5.0 bottom-up)",)),
)


@cache
def _gpu_patterns() -> tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...]:
    return tuple((re.compile(p), family, items) for p, family, items in _GPU_RULES)


@cache
def _embodied_rows() -> dict[str, Row]:
    return {r["item"]: r for r in table(EMBODIED_TABLE)}


@cache
def gpu_embodied(name: str) -> EmbodiedFigure | None:
    """The embodied figure for a GPU product name, or None when carbonlab has none for it.

    >>> gpu_embodied("NVIDIA H100 80GB HBM3").kgco2e
    164.0
    >>> gpu_embodied("NVIDIA A10G") is None
    True
    """
    key = re.sub(r"[-_]", " ", name).upper()
    for pattern, family, items in _gpu_patterns():
        if pattern.search(key):
            rows = [_embodied_rows()[i] for i in items]
            values = [float(r["kgco2e"]) for r in rows]
            best = rows[0]
            return EmbodiedFigure(
                family=family,
                kgco2e=values[0],
                kgco2e_min=min(values),
                kgco2e_max=max(values),
                item=best["item"],
                citation=best["citation"],
                source=best["source"],
            )
    return None


def amortised_g(kgco2e: float, duration_s: float, lifetime_years: float) -> float:
    """Grams CO2e of a device's embodied carbon charged to ``duration_s`` of its lifetime.

    >>> round(amortised_g(164.0, 3600.0, 4.0), 3)
    4.677
    """
    return kgco2e * 1000.0 * duration_s / (lifetime_years * SECONDS_PER_YEAR)


def embodied_note(name: str, count: int, fig: EmbodiedFigure, lifetime: Factor) -> str:
    """The sentence saying what a GPU is charged and on whose figure."""
    span = (
        f"; published figures for the {fig.family} run {_num(fig.kgco2e_min)}–"
        f"{_num(fig.kgco2e_max)} kg"
        if fig.kgco2e_max > fig.kgco2e_min
        else "; the only figure carbonlab has for it (method spreads of 3× are common)"
    )
    many = f"{count} × " if count > 1 else ""
    return (
        f"embodied: {many}{name} at {_num(fig.kgco2e)} kgCO2e each ({fig.citation}{span}), "
        f"amortised over {_num(lifetime.value)} years ({lifetime.source}) of wall time"
    )


@cache
def host_embodied_note() -> str:
    """Why the host's embodied carbon is not charged, with the spread of published server figures."""
    if _embodied_rows.cache_info().currsize:
        servers = [r for r in _embodied_rows().values() if r["category"] == "server"]
    else:  # the server rows that _embodied_rows() keeps (each item's last row), GPUs' unread
        servers = [
            r
            for r in rows_where(EMBODIED_TABLE, "category", "server")
            if last_row_where(EMBODIED_TABLE, "item", r["item"]) == r
        ]
    values = sorted(float(r["kgco2e"]) for r in servers)
    spread = f" (published servers: {_num(values[0])}–{_num(values[-1])} kg)" if values else ""
    return (
        "embodied: the host's CPU, memory and board are not included: carbonlab cannot tell which "
        f"machine this is and published figures differ by several times{spread}"
    )


def lifetime(settings: Settings) -> Factor:
    """The amortisation period in years, with its source."""
    return Factor(settings.lifetime_years, origin(settings, "lifetime_years"), "")
