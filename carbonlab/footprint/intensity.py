"""Grid carbon intensity: how many gCO2e a kWh from a zone's grid carries, and where that figure is from.

The static tables live here; live providers plug in through :class:`IntensityProvider` (the built-in
ones, GB Carbon Intensity, Electricity Maps and WattTime, are in :mod:`carbonlab.footprint.providers`
and are imported only when a setting names them). A zone is one of

* a country code, ISO 3166 alpha-2, any case: ``FR``, ``gb`` (Ember, latest year, generation-based);
* an Ember aggregate by name, any case: ``World``, ``EU``, ``G20``;
* an Electricity Maps zone, any case: ``US-CAL-CISO``, ``CA-QC`` (latest year, consumption-based);
* a cloud region, ``provider:region``, any case: ``aws:eu-west-3``, ``gcp:europe-west1``,
  ``azure:westeurope``.

A two-letter code always means the Ember country figure, so "FR" has one meaning; Electricity Maps
is used for the codes Ember lacks (e.g. ``AX``). No zone means the World average, labelled so; a
zone is never guessed from the network.

>>> lookup("FR").source
'Ember 2024 (static)'
>>> lookup(None).name
'World average (no zone configured)'
"""

from __future__ import annotations

import math
import sys
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from carbonlab import _moved
from carbonlab.config import ConfigError

from .._record import record, replace
from ._data import Row, last_row_where, rows_where, table  # noqa: F401 - as before the split

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from ._seam import IntensityProvider

__all__ = [
    "CLOUD_PROVIDERS",
    "NO_ZONE_NAME",
    "STATIC",
    "Intensity",
    "IntensityProvider",  # this, current and list_zones: __getattr__, from ._seam and ._zonelist
    "UnknownZoneError",
    "current",  # noqa: F822
    "list_zones",  # noqa: F822
    "lookup",
    "register_provider",
]

COUNTRY_TABLE = "grid_intensity_country.csv"
ZONE_TABLE = "grid_intensity_zones_electricitymaps.csv"
CLOUD_TABLES = {
    "aws": "cloud_regions_electricitymaps.csv",
    "azure": "cloud_regions_electricitymaps.csv",
    "gcp": "cloud_regions_gcp.csv",
}
CLOUD_PROVIDERS = tuple(CLOUD_TABLES)
_CLOUD_LABELS = {"aws": "AWS", "azure": "Azure", "gcp": "Google Cloud"}

WORLD = "World"
NO_ZONE_NAME = "World average (no zone configured)"
STATIC = "static"  # the ``settings.intensity`` value (or None) that means "the shipped tables"

KIND_COUNTRY = "country"
KIND_AGGREGATE = "aggregate"
KIND_ZONE = "electricitymaps"
KIND_CLOUD = "cloud"

_ACCEPTED = (
    "a country code (FR, GB), an Electricity Maps zone (US-CAL-CISO) or a cloud region "
    "(aws:eu-west-3, gcp:europe-west1, azure:westeurope)"
)
# Spellings people type that are not ISO codes; used for suggestions only, never resolved silently.
_SUGGEST_ALIASES = {"UK": "GB", "EL": "GR"}
_ZONELIST = f"{__package__}._zonelist"  # the module with the other tables and listing


class UnknownZoneError(ConfigError):
    """A zone carbonlab has no figure for; the message suggests close matches."""


@record(frozen=True)
class Intensity:
    """One grid intensity figure and its provenance."""

    gco2e_per_kwh: float
    zone: str  # canonical key: "FR", "US-CAL-CISO", "aws:eu-west-3", "World"
    name: str  # for people: "France", "California ISO (USA)", "World average (no zone configured)"
    source: str  # "Ember 2024 (static)"
    year: int | None
    basis: str  # what the figure counts: generation- or consumption-based, lifecycle
    kind: str  # country | aggregate | electricitymaps | cloud | a live provider's name
    country_iso2: str | None = None  # for the country-level factors (water)
    license: str = ""
    at: str | None = None  # ISO 8601 time a live reading was fetched; None for a table figure
    # Live readings only (None / "average" for table figures):
    provider: str | None = None  # the setting that produced it: "uk-carbon-intensity:GB"
    signal: str = "average"  # "average" (attributional) or "marginal" (WattTime MOER)
    estimate: str | None = None  # "actual", "forecast", "estimated", ...: what the provider said
    valid_from: str | None = None  # the period the value is for, ISO 8601 UTC
    valid_to: str | None = None
    fetched_at: float | None = None  # epoch seconds of the fetch (``at``), to compute an age

    def to_dict(self) -> dict[str, Any]:
        """The ``Measurement.intensity`` record."""
        d: dict[str, Any] = {
            "gco2e_per_kwh": self.gco2e_per_kwh,
            "zone": self.zone,
            "name": self.name,
            "source": self.source,
            "year": self.year,
            "basis": self.basis,
            "at": self.at,
        }
        if self.provider is not None:
            d["provider"] = self.provider
            d["signal"] = self.signal
            d["estimate"] = self.estimate
            d["valid_from"] = self.valid_from
            d["valid_to"] = self.valid_to
            d["license"] = self.license
        return d


# --- the static tables -------------------------------------------------------------------------


def _country(r: Row) -> Intensity:
    year = int(r["year"])
    owid = r["source"].startswith("Our World in Data")
    return Intensity(
        gco2e_per_kwh=float(r["gco2e_per_kwh"]),
        zone=r["iso2"] or r["name"],
        name=r["name"] if r["kind"] == KIND_COUNTRY else f"{r['name']} average",
        source=f"{'Our World in Data' if owid else 'Ember'} {year} (static)",
        year=year,
        basis="generation-based, lifecycle",
        kind=r["kind"],
        country_iso2=r["iso2"] or None,
        license=r["license"],
    )


def _built_countries() -> Any:
    """``_countries()`` of :mod:`._zonelist` when listing has already built it, else None."""
    zl = sys.modules.get(_ZONELIST)
    if zl is not None and zl._countries.cache_info().currsize:
        return zl._countries()
    return None


@cache
def _country_figure(iso2: str) -> Intensity | None:
    """``_countries()[0].get(iso2)``, reading only the table lines that can hold it."""
    built = _built_countries()
    if built is not None:
        return built[0].get(iso2)
    r = last_row_where(COUNTRY_TABLE, "iso2", iso2, _not_aggregate)
    return _country(r) if r is not None else None  # the last row wins, as in the dict


def _not_aggregate(r: Row) -> bool:
    return r["kind"] != KIND_AGGREGATE


@cache
def _aggregate_figure(folded_name: str) -> Intensity | None:
    """``_countries()[1].get(folded_name)``, reading only the table lines that can hold it: the
    aggregates' lines (no line need be lowered to be searched), from the last."""
    built = _built_countries()
    if built is not None:
        return built[1].get(folded_name)
    r = last_row_where(
        COUNTRY_TABLE, "kind", KIND_AGGREGATE, lambda r: r["name"].casefold() == folded_name
    )
    return _country(r) if r is not None else None


def world(*, configured: bool = False) -> Intensity:
    """The World average; labelled as the no-zone fallback unless the user chose it."""
    w = _aggregate_figure(WORLD.casefold())
    if w is None:  # pragma: no cover - the shipped table has it; as _countries()[1][...] would
        raise KeyError(WORLD.casefold())
    if configured:
        return w
    return replace(w, name=NO_ZONE_NAME)


@lru_cache(maxsize=128)
def lookup(zone: str | None) -> Intensity:
    """Resolve a zone string to its static figure; raise :class:`UnknownZoneError` if unknown.

    >>> lookup("us-cal-ciso").zone, lookup("AWS:EU-WEST-3").zone
    ('US-CAL-CISO', 'aws:eu-west-3')
    """
    if zone is None or not zone.strip():
        return world()
    z = zone.strip()
    if ":" in z:
        provider, _, region = z.partition(":")
        p = provider.strip().lower()
        if p not in CLOUD_TABLES:
            raise UnknownZoneError(
                f"unknown zone {zone!r}: unknown cloud provider {provider!r}; cloud regions are "
                f"written {', '.join(f'{c}:REGION' for c in CLOUD_PROVIDERS)}"
            )
        from . import _zonelist as zl

        hit = zl._cloud(p).get(region.strip().lower())
        if hit is None:
            raise zl._unknown(zone, zl._cloud_candidates(p))
        return hit
    up = z.upper()
    if len(up) == 2:
        hit = _country_figure(up)
        if hit is not None:
            return hit
    if "-" not in up:  # Electricity Maps keys below country level all have one
        hit = _aggregate_figure(z.casefold())
        if hit is not None:
            return hit if hit.zone != WORLD else world(configured=True)
    from . import _zonelist as zl

    hit = zl._zones().get(up)
    if hit is not None:
        return hit
    raise zl._unknown(zone, zl._all_candidates())


# Lifecycle figures (plants' construction, fuel supply) put every real grid well above zero: the
# cleanest (hydro, nuclear, wind) are around 10-30 gCO2e/kWh; the dirtiest (lignite, oil) below 1500.
_LIFECYCLE_FLOOR = 1.0
_CEILING = 2000.0


def implausible(i: Intensity) -> str | None:
    """Why a table figure cannot be a real grid's, or None when it can.

    >>> implausible(lookup("CF"))
    '0 gCO2e/kWh on a lifecycle basis: no grid emits nothing over its lifecycle (the source has no data for it)'
    >>> implausible(lookup("FR")) is None
    True
    """
    return implausible_value(i.gco2e_per_kwh, i.basis)


def implausible_value(v: float, basis: str) -> str | None:
    """:func:`implausible` for a bare figure and its basis."""
    if not math.isfinite(v) or v < 0:
        return f"{v} gCO2e/kWh: not a possible intensity"
    if v < _LIFECYCLE_FLOOR and "lifecycle" in basis:
        return (
            f"{v:g} gCO2e/kWh on a lifecycle basis: no grid emits nothing over its lifecycle "
            "(the source has no data for it)"
        )
    if v > _CEILING:
        return f"{v:g} gCO2e/kWh: above any fuel's lifecycle intensity"
    return None


# --- live providers: the seam (IntensityProvider and current are in ._seam) -------------------


_FACTORIES: dict[str, Callable[[str], IntensityProvider]] = {}
_INSTANCES: dict[str, IntensityProvider] = {}
# Providers shipped with carbonlab (carbonlab.footprint.providers); they need the settings (URLs,
# TTL, credentials), so they are reached through ``providers.choose``, not a bare factory.
BUILTIN_PROVIDERS = ("uk-carbon-intensity", "electricitymaps", "watttime")


def is_live(spec: str | None) -> bool:
    """Whether ``settings.intensity`` asks for a live provider (not None, "" or "static")."""
    return spec is not None and spec.strip() not in ("", STATIC)


@lru_cache(maxsize=64)
def implied_zone(spec: str | None) -> str | None:
    """The static zone a provider setting stands for, used when no zone is set: the fallback for
    ``uk-carbon-intensity:*`` is GB, for ``electricitymaps:FR`` it is FR; None when there is none.

    >>> implied_zone("uk-carbon-intensity:London"), implied_zone("electricitymaps:us-cal-ciso")
    ('GB', 'US-CAL-CISO')
    """
    if not is_live(spec):
        return None
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name == "uk-carbon-intensity":
        return "GB"
    if name == "electricitymaps" and arg.strip():
        try:
            return lookup(arg.strip()).zone
        except UnknownZoneError:
            return None
    return None


def register_provider(name: str, factory: Callable[[str], IntensityProvider]) -> None:
    """Make ``settings.intensity = "name:ARG"`` use ``factory(ARG)`` (one instance per setting)."""
    _FACTORIES[name] = factory
    for spec in [s for s in _INSTANCES if s.partition(":")[0] == name]:
        del _INSTANCES[spec]


# --- the names defined in modules imported on first use --------------------------------------

_LAZY = {
    # the other tables, listing and suggestions (carbonlab zones, an unknown zone's error)
    "_Figures": "_zonelist",
    "_countries": "_zonelist",
    "_zones": "_zonelist",
    "_cloud": "_zonelist",
    "_cloud_candidates": "_zonelist",
    "_reachable_zones": "_zonelist",
    "_all_candidates": "_zonelist",
    "_suggest": "_zonelist",
    "_unknown": "_zonelist",
    "_GRID_ZONE": "_zonelist",
    "grid_zone": "_zonelist",
    "_row": "_zonelist",
    "_tier": "_zonelist",
    "_matches": "_zonelist",
    "list_zones": "_zonelist",
    "search_zones": "_zonelist",
    "table_figures": "_zonelist",
    "zone_counts": "_zonelist",
    # registered live providers
    "IntensityProvider": "_seam",
    "current": "_seam",
}


__getattr__, __dir__ = _moved(globals(), _LAZY)  # the names above, from their modules
