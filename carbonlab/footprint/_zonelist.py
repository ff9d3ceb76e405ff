"""The zone tables and listing behind :mod:`carbonlab.footprint.intensity`, imported on first use.

A window with no zone, or a country code, needs only the country table's row (see
:func:`carbonlab.footprint.intensity.lookup`); the Electricity Maps zones, the cloud regions, the
whole country table as a mapping, ``carbonlab zones`` listing and the suggestions for an unknown
zone are here, so that ``import carbonlab.footprint`` does not load them. Every public name is
re-exported by :mod:`carbonlab.footprint.intensity`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from ._data import Row, table
from .intensity import (
    _ACCEPTED,
    _CLOUD_LABELS,
    _SUGGEST_ALIASES,
    CLOUD_PROVIDERS,
    CLOUD_TABLES,
    COUNTRY_TABLE,
    KIND_AGGREGATE,
    KIND_CLOUD,
    KIND_ZONE,
    ZONE_TABLE,
    Intensity,
    UnknownZoneError,
    _country,
    implausible,
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
