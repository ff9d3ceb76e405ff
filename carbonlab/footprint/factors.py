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

import sys
from functools import cache

from carbonlab import _moved
from carbonlab.config import Settings

from .._record import fields, record
from ._data import Row, last_row_where, rows_where, table
from .intensity import KIND_CLOUD, Intensity

__all__ = [
    "SECONDS_PER_YEAR",
    "EmbodiedFigure",  # noqa: F822 - this and the two below: __getattr__, from ._embodied
    "Factor",
    "amortised_g",
    "embodied_note",  # noqa: F822
    "gpu_embodied",  # noqa: F822
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


def amortised_g(kgco2e: float, duration_s: float, lifetime_years: float) -> float:
    """Grams CO2e of a device's embodied carbon charged to ``duration_s`` of its lifetime.

    >>> round(amortised_g(164.0, 3600.0, 4.0), 3)
    4.677
    """
    return kgco2e * 1000.0 * duration_s / (lifetime_years * SECONDS_PER_YEAR)


@cache
def host_embodied_note() -> str:
    """Why the host's embodied carbon is not charged, with the spread of published server figures."""
    emb = sys.modules.get(f"{__package__}._embodied")
    if emb is not None and emb._embodied_rows.cache_info().currsize:
        servers = [r for r in emb._embodied_rows().values() if r["category"] == "server"]
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


# --- the GPU figures, in ._embodied (imported when a window has a GPU) -------------------------

_LAZY = (
    "EmbodiedFigure",
    "_GPU_RULES",
    "_gpu_patterns",
    "_embodied_rows",
    "gpu_embodied",
    "embodied_note",
)


__getattr__, __dir__ = _moved(globals(), dict.fromkeys(_LAZY, "_embodied"))
