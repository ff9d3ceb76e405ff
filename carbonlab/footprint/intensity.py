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
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache, lru_cache
from typing import Any, Protocol, runtime_checkable

from carbonlab.config import ConfigError

from .._record import record, replace
from ._data import Row, rows_where, table

__all__ = [
    "CLOUD_PROVIDERS",
    "NO_ZONE_NAME",
    "STATIC",
    "Intensity",
    "IntensityProvider",
    "UnknownZoneError",
    "current",
    "list_zones",
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


class _Figures(Mapping[str, Intensity]):
    """Key -> figure, each record built from its table row when first asked for: a window with no
    zone asks for one (the World's), not all 227 (about 2 ms)."""

    def __init__(self, rows: dict[str, Row]) -> None:
        self._rows = rows
        self._built: dict[str, Intensity] = {}

    def __getitem__(self, key: str) -> Intensity:
        hit = self._built.get(key)
        if hit is None:
            hit = self._built[key] = _country(self._rows[key])
        return hit

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@cache
def _countries() -> tuple[Mapping[str, Intensity], Mapping[str, Intensity]]:
    """(ISO2 -> figure, casefolded aggregate name -> figure) from the Ember table."""
    by_iso2: dict[str, Row] = {}
    aggregates: dict[str, Row] = {}
    for r in table(COUNTRY_TABLE):
        if r["kind"] == KIND_AGGREGATE:
            aggregates[r["name"].casefold()] = r
        else:
            by_iso2[r["iso2"]] = r
    return _Figures(by_iso2), _Figures(aggregates)


@cache
def _country_figure(iso2: str) -> Intensity | None:
    """``_countries()[0].get(iso2)``, reading only the table lines that can hold it."""
    if _countries.cache_info().currsize:
        return _countries()[0].get(iso2)
    rows = [r for r in rows_where(COUNTRY_TABLE, "iso2", iso2) if r["kind"] != KIND_AGGREGATE]
    return _country(rows[-1]) if rows else None  # the last row wins, as in the dict


@cache
def _aggregate_figure(folded_name: str) -> Intensity | None:
    """``_countries()[1].get(folded_name)``, reading only the table lines that can hold it."""
    if _countries.cache_info().currsize:
        return _countries()[1].get(folded_name)
    rows = [
        r
        for r in rows_where(COUNTRY_TABLE, "name", folded_name, fold=True)
        if r["kind"] == KIND_AGGREGATE
    ]
    return _country(rows[-1]) if rows else None


@cache
def _zones() -> dict[str, Intensity]:
    """Electricity Maps zone key -> its latest yearly figure."""
    out: dict[str, Intensity] = {}
    for r in table(ZONE_TABLE):
        year = int(r["year"])
        if r["zone"] in out and (out[r["zone"]].year or 0) >= year:
            continue
        name = r["display_name"] or r["zone_name"]
        if r["country_name"] and r["country_name"] not in name:
            name = f"{name} ({r['country_name']})"
        out[r["zone"]] = Intensity(
            gco2e_per_kwh=float(r["gco2e_per_kwh_lifecycle"]),
            zone=r["zone"],
            name=name,
            source=f"Electricity Maps {year} (static)",
            year=year,
            basis="consumption-based (flow-traced), lifecycle",
            kind=KIND_ZONE,
            country_iso2=r["country_iso2"] or None,
            license="ODbL-1.0 (Electricity Maps)",
        )
    return out


@cache
def _cloud(provider: str) -> dict[str, Intensity]:
    """Lower-case region id -> figure, for one provider."""
    out: dict[str, Intensity] = {}
    for r in table(CLOUD_TABLES[provider]):
        if r["provider"] != provider:
            continue
        year = int(r["year"])
        if provider == "gcp":
            source = f"Google Cloud region-carbon-info {year} (static)"
        else:
            source = f"Electricity Maps {year}, zone {r['grid_zone']} (static)"
        out[r["region"].lower()] = Intensity(
            gco2e_per_kwh=float(r["gco2e_per_kwh"]),
            zone=f"{provider}:{r['region']}",
            name=f"{_CLOUD_LABELS[provider]} {r['region']} ({r['location']})",
            source=source,
            year=year,
            basis=r["basis"],
            kind=KIND_CLOUD,
            country_iso2=r["country_iso2"] or None,
            license=r["license"],
        )
    return out


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
        hit = _cloud(p).get(region.strip().lower())
        if hit is None:
            raise _unknown(zone, _cloud_candidates(p))
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
    hit = _zones().get(up)
    if hit is not None:
        return hit
    raise _unknown(zone, _all_candidates())


# --- errors and listing ------------------------------------------------------------------------


def _cloud_candidates(provider: str) -> list[tuple[str, str]]:
    return [(i.zone, i.name) for i in _cloud(provider).values()]


def _reachable_zones() -> list[Intensity]:
    """Every figure a zone string can reach, in listing order (Electricity Maps country-level
    zones that an Ember country code shadows are left out: "FR" means Ember's figure)."""
    by_iso2, aggregates = _countries()
    rows = [*aggregates.values(), *by_iso2.values()]
    rows += [z for k, z in _zones().items() if k not in by_iso2]
    for p in CLOUD_PROVIDERS:
        rows += _cloud(p).values()
    return rows


def _all_candidates() -> list[tuple[str, str]]:
    return [(i.zone, i.name) for i in _reachable_zones()]


def _suggest(zone: str, candidates: list[tuple[str, str]], n: int = 5) -> list[str]:
    import difflib  # only on the error path

    q = zone.strip().casefold()
    out: list[str] = []

    def add(key: str, name: str) -> None:
        label = f"{key} ({name})"
        if label not in out:
            out.append(label)

    names = {key: name for key, name in candidates}
    alias = _SUGGEST_ALIASES.get(zone.strip().upper())
    if alias in names:
        add(alias, names[alias])
    for key, name in candidates:  # the user typed a name: "France", "california"
        if q and (q == name.casefold() or (len(q) >= 3 and q in name.casefold())):
            add(key, name)
    folded = {key.casefold(): (key, name) for key, name in candidates}
    for k in difflib.get_close_matches(q, list(folded), n=n, cutoff=0.6):
        add(*folded[k])
    return out[:n]


def _unknown(zone: str, candidates: list[tuple[str, str]]) -> UnknownZoneError:
    hints = _suggest(zone, candidates)
    did = f"; did you mean {', '.join(hints)}?" if hints else ""
    return UnknownZoneError(
        f"unknown zone {zone!r}: expected {_ACCEPTED}{did} (`carbonlab zones QUERY` lists them)"
    )


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


# Compiled where it is used (re caches it): `carbonlab zones`, never a window.
_GRID_ZONE = r", zone (?P<zone>[A-Za-z0-9-]+) \(static\)$"


def grid_zone(i: Intensity) -> str | None:
    """The grid a cloud region's figure is for ("FR" for aws:eu-west-3), when its table says."""
    m = re.search(_GRID_ZONE, i.source)
    if m:
        return m["zone"]
    return i.country_iso2 if i.kind == KIND_CLOUD else None


def _row(z: Intensity) -> dict[str, Any]:
    return {
        "zone": z.zone,
        "name": z.name,
        "kind": z.kind,
        "gco2e_per_kwh": z.gco2e_per_kwh,
        "source": z.source,
        "year": z.year,
        "basis": z.basis,
        "implausible": implausible(z),
    }


def _tier(z: Intensity, q: str, exact: str | None) -> int:
    """0 the exact key, 1 the same grid in another table, 2 a key prefix, 3 a word of the name
    starting with the query, 4 the query anywhere else."""
    key = z.zone.casefold()
    if key == q:
        return 0
    if exact is not None and z.kind == KIND_CLOUD and (grid_zone(z) or "").upper() == exact:
        return 1
    if key.startswith(q) or key.partition(":")[2].startswith(q):
        return 2
    if any(w.startswith(q) for w in re.split(r"[^\w]+", z.name.casefold()) if w):
        return 3
    return 4


def _matches(query: str | None) -> list[tuple[int, Intensity]]:
    q = (query or "").strip().casefold()
    hits = [
        z for z in _reachable_zones() if not q or q in z.zone.casefold() or q in z.name.casefold()
    ]
    exact = next((z.zone.upper() for z in hits if z.zone.casefold() == q), None)
    if exact is not None and ":" in exact:
        exact = None
    ranked = [(_tier(z, q, exact) if q else 0, z) for z in hits]
    # The cloud regions on the exact zone's grid match by grid, not by text: add them.
    if exact is not None:
        seen = {z.zone for _, z in ranked}
        for p in CLOUD_PROVIDERS:
            for z in _cloud(p).values():
                if z.zone not in seen and (grid_zone(z) or "").upper() == exact:
                    ranked.append((1, z))
    ranked.sort(key=lambda tz: tz[0])  # stable: table order within a tier
    return ranked


def list_zones(query: str | None = None) -> list[dict[str, Any]]:
    """Zones whose key or name contains ``query`` (any case); all of them without one.

    Ranked: the exact key, the cloud regions on that grid, key prefixes, names with a word starting
    with the query, then the rest. Each row is JSON-ready: ``zone``, ``name``, ``kind``,
    ``gco2e_per_kwh``, ``source``, ``year``, ``basis``, ``implausible`` (why the figure cannot be a
    real grid's, else None). Every ``zone`` listed is accepted by :func:`lookup`.

    >>> [z["zone"] for z in list_zones("ciso")]
    ['US-CAL-CISO']
    """
    return [_row(z) for _, z in _matches(query)]


def search_zones(query: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(shown, left out) for ``carbonlab zones QUERY``: with an exact key, that zone, its grid's
    cloud regions and key prefixes are shown ("FR": FR, aws:eu-west-3, FR-COR, not Africa); else
    key prefixes and name words; the rest is left out (counted). All matches are shown when those
    rules would show none.

    >>> shown, left = search_zones("FR")
    >>> shown[0]["zone"], "Africa" in [r["zone"] for r in left]
    ('FR', True)
    """
    ranked = _matches(query)
    has_exact = any(t == 0 for t, _ in ranked)
    keep = {0, 1, 2} if has_exact else {2, 3}
    shown = [_row(z) for t, z in ranked if t in keep]
    if not shown:
        return [_row(z) for _, z in ranked], []
    return shown, [_row(z) for t, z in ranked if t not in keep]


def table_figures(code: str) -> list[Intensity]:
    """Other tables' figures for a country code's grid that ``lookup(code)`` does not give: the
    Electricity Maps zone an Ember country code shadows ("FR" means Ember's figure)."""
    z = _zones().get(code.upper())
    by_iso2 = _countries()[0]
    return [z] if z is not None and code.upper() in by_iso2 else []


def zone_counts() -> dict[str, int]:
    """How many zones of each kind ``carbonlab zones`` can list."""
    out: dict[str, int] = {}
    for z in _reachable_zones():
        out[z.kind] = out.get(z.kind, 0) + 1
    return out


# --- live providers: the seam ------------------------------------------------------------------


@runtime_checkable
class IntensityProvider(Protocol):
    """A live intensity source (GB Carbon Intensity, Electricity Maps, ...), selected by
    ``settings.intensity = "<name>[:<argument>]"``.

    ``latest`` is called at the end of every measured window, so it must not block: it returns the
    freshest value the provider already holds (fetched off the critical path, with a timeout), or
    None, and carbonlab then uses the static figure and says so.
    """

    name: str

    def latest(self, zone: str | None) -> Intensity | None: ...


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


def current(
    zone: str | None, spec: str | None = None, settings: Any = None
) -> tuple[Intensity, str | None]:
    """The intensity to charge now, and why a live provider asked for was not used (else None).

    Never blocks: a live provider answers from what it already holds. ``settings`` (a
    :class:`carbonlab.config.Settings`) configures the built-in providers; without it they use the
    resolved settings of this process.

    >>> current("FR")[0].gco2e_per_kwh == lookup("FR").gco2e_per_kwh
    True
    """
    if spec is None or spec.strip() in ("", STATIC):
        return lookup(zone), None
    name, _, arg = spec.partition(":")
    if name.strip().lower() in BUILTIN_PROVIDERS and name not in _FACTORIES:
        from carbonlab.config import with_overrides

        from . import providers

        s = with_overrides(
            settings if settings is not None else providers.process_settings(), intensity=spec
        )
        s.zone = zone
        choice = providers.choose(s, lookup(zone or implied_zone(spec)))
        return choice.intensity, choice.why
    static = lookup(zone)
    provider = _INSTANCES.get(spec)
    if provider is None:
        factory = _FACTORIES.get(name)
        if factory is None:
            known = ", ".join([STATIC, *sorted(_FACTORIES)])
            return static, (
                f"intensity provider {spec!r} is not available in this version (available: "
                f"{known}); used the static figure"
            )
        provider = _INSTANCES[spec] = factory(arg)
    try:
        live = provider.latest(zone)
    except Exception as e:  # a registered provider's bug never breaks a window
        return static, (
            f"intensity provider {spec!r} failed ({type(e).__name__}); used the static figure"
        )
    if live is None:
        return static, f"intensity provider {spec!r} has no reading yet; used the static figure"
    # A registered provider's answer crosses the same boundary as the built-in ones': no
    # configured credential, URL userinfo or query secret goes further.
    from .providers import all_secrets, process_settings
    from .providers.scrub import scrub, secret_values

    return scrub(live, secret_values(all_secrets(settings or process_settings()))), None
