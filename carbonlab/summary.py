"""Plain-text renderings shared by the CLI and every text surface: measurements, devices, zones."""

from __future__ import annotations

from typing import Any

from .measurement import MODEL_METHODS, Component, Measurement
from .units import (
    format_co2e,
    format_duration,
    format_energy,
    format_intensity,
    format_number,
    format_power,
    format_water,
)


def attribution_text(params: dict[str, Any]) -> str:
    """A GPU component's share of its device and its energy above idle, e.g. "70% of the
    device's 3500 J, shared with 1 other process"; "" when it has neither.

    >>> attribution_text({"share": 0.7, "device_energy_j": 3500.0, "other_processes": 1})
    "70% of the device's 3500 J, shared with 1 other process"
    """
    bits = []
    if "share" in params and "device_energy_j" in params:
        n = int(params.get("other_processes", 0))
        whose = (
            f"shared with {n} other process{'' if n == 1 else 'es'}" if n else "no other process"
        )
        bits.append(
            f"{format_number(params['share'] * 100)}% of the device's "
            f"{format_energy(params['device_energy_j'])}, {whose}"
        )
    if "active_energy_j" in params and "idle_w" in params:
        bits.append(
            f"{format_energy(params['active_energy_j'])} above idle ({format_power(params['idle_w'])})"
        )
    return "; ".join(bits)


def _params_text(params: dict[str, Any]) -> str:
    bits = []
    if "w_per_core" in params:
        bits.append(f"{format_number(params['w_per_core'])} W/core")
    if "w_per_gb" in params:
        bits.append(f"{format_number(params['w_per_gb'])} W/GB")
    if params.get("source"):
        bits.append(str(params["source"]))
    attributed = attribution_text(params)
    if attributed:
        bits.append(attributed)
    return ", ".join(bits)


def component_marks(c: Component) -> list[str]:
    """The caveats every rendering of a component shows: estimated by a model, below resolution."""
    marks = []
    if c.method in MODEL_METHODS:
        marks.append("model")
    if c.below_resolution:
        marks.append("below resolution")
    return marks


def intensity_text(intensity: dict[str, Any] | None) -> str:
    if not intensity:
        return "no grid intensity"
    where = intensity.get("zone") or "World"
    src = intensity.get("source") or "unknown source"
    year = intensity.get("year")
    inten = format_intensity(float(intensity["gco2e_per_kwh"]))
    return f"{where} {inten} ({src}{', ' + str(year) if year else ''})"


def cell_text(m: Measurement) -> str:
    """The summary a measured cell shows, for ``str(m)`` / ``print(m)`` in a script.

    The same text as under a cell (without a cell's context: previous run, budget), from the one
    renderer the cell uses.
    """
    from .jupyter.display import CellSummary

    return CellSummary(m).text()


def measurement_text(m: Measurement) -> str:
    """A multi-line human summary; every figure with its method and scope."""
    lines = [f"carbonlab: {m.label}" if m.label else "carbonlab"]
    flag = "  (below resolution: shorter than a meter can resolve)" if m.below_resolution else ""
    lines.append(f"  duration  {format_duration(m.duration_s)}{flag}")
    lines.append(f"  energy    {format_energy(m.energy_j)}  (IT energy, before PUE)")
    for c in m.components:
        marks = component_marks(c)
        params = _params_text(c.params)
        extra = f"  [{', '.join(marks)}]" if marks else ""
        what = c.name or c.device
        if c.location:  # energy spent on a cluster worker (carbonlab.cluster)
            loc = c.location
            what += f" @ {loc.get('engine')} {loc.get('worker')} on {loc.get('host')}"
        lines.append(
            f"    {c.kind:<4} {format_energy(c.energy_j):>10}  {c.method} ({c.scope}) {what}"
            + (f"; {params}" if params else "")
            + extra
        )
    if m.co2e_g is not None:
        lines.append(
            f"  CO2e      {format_co2e(m.co2e_g)}  (PUE {m.pue if m.pue is not None else '?'}; "
            f"{intensity_text(m.intensity)})"
        )
    if m.embodied_co2e_g is not None:
        lines.append(f"  embodied  {format_co2e(m.embodied_co2e_g)}")
    if m.water_l is not None:
        lines.append(f"  water     {format_water(m.water_l)}")
    eq = m.extra.get("equivalent")
    if eq:
        lines.append(f"  ≈ {eq if isinstance(eq, str) else eq.get('text', '')}")
    seen = set()
    for note in [*m.notes, *(n for c in m.components for n in c.notes)]:
        if note not in seen:
            seen.add(note)
            lines.append(f"  note: {note}")
    return "\n".join(lines)


def devices_text(info: dict[str, Any]) -> str:
    lines = ["meters:"]
    for d in info["meters"]:
        params = _params_text(d.get("params", {}))
        state = "" if d.get("alive", True) else "  [stopped]"
        lines.append(
            f"  {d['kind']:<4} {d['device']:<14} {d['method']:<20} scope={d['scope']:<8} "
            f"{d.get('name', '')}{'; ' + params if params else ''}{state}"
        )
        for n in d.get("notes", []):
            lines.append(f"       note: {n}")
    if info["unavailable"]:
        lines.append("unavailable:")
        for u in info["unavailable"]:
            lines.append(f"  {u['kind']:<4} {u['source']:<6} {u['reason']}")
            if u.get("hint"):
                lines.append(f"       how to fix: {u['hint']}")
    return "\n".join(lines)


def _zone_figure(r: dict[str, Any]) -> str:
    return "implausible" if r.get("implausible") else format_intensity(r["gco2e_per_kwh"])


def zones_text(rows: list[dict[str, Any]]) -> str:
    """One line per zone: key, figure, year, name, [source; basis]; an implausible figure is not
    shown as a figure but flagged, with the reason, on the next line."""
    width = max(len(str(r["zone"])) for r in rows)
    fig = max(len(_zone_figure(r)) for r in rows)
    out = []
    for r in rows:
        out.append(
            f"{r['zone']:<{width}}  {_zone_figure(r):>{fig}}  {r.get('year') or '':<4}  "
            f"{r.get('name', '')}  [{r.get('source', '')}; {r.get('basis', '')}]"
        )
        if r.get("implausible"):
            out.append(f"{'':<{width}}  implausible: {r['implausible']}")
    return "\n".join(out)


_KIND_WORDS = {
    "country": "countries (Ember, Our World in Data)",
    "aggregate": "aggregates (World, continents, EU, ...)",
    "electricitymaps": "Electricity Maps zones (grids below country level: US-CAL-CISO, SE-SE1, ...)",
    "cloud": "cloud regions (aws:, azure:, gcp:)",
}


def zones_summary_text(counts: dict[str, int]) -> str:
    """``carbonlab zones`` with no query: what there is and how to search it (not 500 lines)."""
    total = sum(counts.values())
    kinds = "\n".join(f"  {n:>4} {_KIND_WORDS.get(k, k)}" for k, n in counts.items())
    return (
        f"{total} zones:\n{kinds}\n"
        "Search by code, name or provider:\n"
        "  carbonlab zones FR        a code: that zone, the cloud regions on its grid, FR-...\n"
        "  carbonlab zones paris     a name\n"
        "  carbonlab zones aws:      a provider's regions\n"
        "  carbonlab zones --all     every zone (--json for JSON)"
    )


def zones_search_text(
    query: str,
    shown: list[dict[str, Any]],
    left_out: list[dict[str, Any]],
    other_tables: list[dict[str, Any]] | None = None,
) -> str:
    """``carbonlab zones QUERY``: the ranked matches, what the different figures for one grid mean,
    and how many matches were left out."""
    q = query.strip()
    lines = [zones_text(shown)]
    exact = next((r for r in shown if r["zone"].casefold() == q.casefold()), None)
    same_grid = [r for r in shown if exact is not None and r is not exact and ":" in r["zone"]]
    if exact is not None and (same_grid or other_tables):
        lines += [
            "",
            f"{exact['zone']}'s grid has more than one figure here; they differ by source, year "
            "and basis:",
            f"  {exact['zone']}: {_zone_figure(exact)}, {exact['source']}, {exact['basis']} "
            f"(what --zone {exact['zone']} charges)",
        ]
        for r in other_tables or []:
            use = (
                "the figure the aws/azure regions above take"
                if any(not r2["zone"].startswith("gcp:") for r2 in same_grid)
                else "not selectable: a country code means the Ember figure"
            )
            lines.append(f"  {r['zone']}: {_zone_figure(r)}, {r['source']}, {r['basis']} ({use})")
        lines.append(
            "  generation-based: emissions of the zone's plants per kWh they produce; "
            "consumption-based (flow-traced): per kWh consumed there, imports included; "
            "Google Cloud publishes its own figures."
        )
    if left_out:
        some = ", ".join(r["zone"] for r in left_out[:6]) + (", ..." if len(left_out) > 6 else "")
        n = len(left_out)
        lines += [
            "",
            f"{n} more zone{'' if n == 1 else 's'} match {q!r} elsewhere in the code or name "
            f"({some}): carbonlab zones {q} --all lists them",
        ]
    return "\n".join(lines)
