"""Plain-text rendering of :func:`current_intensity` and an :class:`Advice`, for ``carbonlab
intensity`` (and any surface that wants the same lines)."""

from __future__ import annotations

from typing import Any

from ...units import format_intensity


def age_text(seconds: float | None) -> str:
    """``12 s``, ``3 min``, ``2.5 h``.

    >>> age_text(200.0)
    '3 min'
    """
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _period(d: dict[str, Any]) -> str:
    a, b = d.get("valid_from"), d.get("valid_to")
    if not a:
        return ""
    same = b and b[:10] == a[:10]
    end = (b[11:16] if same else f"{b[:10]} {b[11:16]}") if b else "?"
    return f" for {a[:10]} {a[11:16]}-{end} UTC"


def intensity_text(
    d: dict[str, Any], advice: Any = None, *, window_h: float = 1.0, horizon_h: float = 24.0
) -> str:
    """Lines: the figure charged now and its provenance, any fallback or marginal signal, the
    forecast, and the best window (or why there is none)."""
    lines = []
    signal = d.get("signal") or "average"
    what = (
        f"{d.get('estimate')}{_period(d)}"
        if d.get("estimate")
        else (f"{d['year']} yearly figure" if d.get("year") else "")
    )
    lines.append(
        f"{d.get('zone')}: {format_intensity(float(d['gco2e_per_kwh']))} ({signal})"
        + (f", {what}" if what else "")
        + f" - {d.get('name')}"
    )
    src = f"  source: {d.get('source')}"
    if d.get("live"):
        src += f" [{d.get('provider')}], fetched {d.get('at')} ({age_text(d.get('age_s'))} ago)"
    lines.append(src)
    lines.append(f"  basis: {d.get('basis')}")
    from ..intensity import implausible_value

    bad = implausible_value(float(d["gco2e_per_kwh"]), str(d.get("basis") or ""))
    if bad:
        lines[0] = lines[0].replace(
            format_intensity(float(d["gco2e_per_kwh"])), "implausible figure", 1
        )
        lines.append(f"  implausible: {bad}; set another zone (carbonlab zones {d.get('zone')})")
    if d.get("index"):
        lines.append(f"  index: {d['index']}")
    fb = d.get("fallback")
    if fb and d.get("fault"):
        lines.append(
            f"  live {fb['provider']} {_fault_words(str(d['fault']))}: {d['fault']}; the static "
            "figure above is charged"
        )
    elif fb:
        lines.append(f"  live {fb['provider']} not used: {fb['reason']}")
    if d.get("refresh_fault"):
        lines.append(f"  last refresh failed: {d['refresh_fault']}")
    if d.get("next_try_at"):
        lines.append(f"  next try after {d['next_try_at']}")
    m = d.get("marginal")
    if m:
        lines.append(
            f"  marginal signal (not charged): {m['gco2e_per_kwh']:.0f} gCO2e/kWh, {m['source']}, "
            f"fetched {m['at']} ({age_text(m.get('age_s'))} ago); set intensity_marginal = true to charge it"
        )
    h = d.get("history")
    if h:
        lines.append(
            f"  last {h['periods']} periods: {h['min']:g}-{h['max']:g} gCO2e/kWh (mean {h['mean']:g})"
        )
    fc = d.get("forecast")
    if fc:
        lines.append(
            f"  forecast: {fc['periods']} periods, {fc['start']} to {fc['end']} ({fc['signal']})"
        )
    elif d.get("provider") not in (None, "static"):
        lines.append(f"  forecast: none ({_no_forecast_why(d)})")
    if advice is not None:
        lines.append(f"  best {window_h:g} h window in the next {horizon_h:g} h: {advice.sentence}")
    elif d.get("provider") not in (None, "static"):
        lines.append(
            f"  best window: none (no forecast covers a {window_h:g} h window in the next {horizon_h:g} h)"
        )
    if d.get("provider") in (None, "static"):
        hint = live_hint(str(d.get("zone") or ""))
        if hint:
            lines.append(f"  {hint}")
    return "\n".join(lines)


def _fault_words(fault: str) -> str:
    """'unreachable' for a network fault (refused, timed out, name not resolved, no route), else
    'answered with an error' (an HTTP status, a malformed or implausible answer)."""
    network = ("connection refused", "timed out", "cannot resolve", "network error", "connection")
    return "unreachable" if fault.startswith(network) else "answered with an error"


def _no_forecast_why(d: dict[str, Any]) -> str:
    """Why a live provider gave no forecast: unreachable (with the reason), or what it said."""
    if d.get("forecast_note"):
        return str(d["forecast_note"])
    if d.get("fault"):
        return f"the provider {_fault_words(str(d['fault']))}: {d['fault']}"
    fb = d.get("fallback")
    if fb:
        return f"no reading from the provider: {fb.get('reason') if isinstance(fb, dict) else fb}"
    return "the provider sent no forecast"


def live_hint(zone: str) -> str | None:
    """A static figure's pointer to the live provider that covers its zone, and how to enable it.

    >>> live_hint("GB").split(":")[0]
    'live figure and 48 h forecast for GB'
    """
    from ..intensity import KIND_AGGREGATE, UnknownZoneError, lookup

    z = zone.strip()
    if not z or ":" in z:
        return None
    try:
        if lookup(z).kind == KIND_AGGREGATE:  # "World", "Africa": no provider covers those
            return None
    except UnknownZoneError:
        return None
    if z.upper() == "GB" or z.upper().startswith("GB-"):
        return (
            "live figure and 48 h forecast for GB: uk-carbon-intensity (no account needed): "
            "carbonlab intensity uk-carbon-intensity:GB; for cells and tests set intensity = "
            '"uk-carbon-intensity:GB" (CARBONLAB_INTENSITY)'
        )
    return (
        f"live figure for {z}: electricitymaps:{z} (needs CARBONLAB_ELECTRICITYMAPS_TOKEN): "
        f"carbonlab intensity electricitymaps:{z}; for cells and tests set intensity = "
        f'"electricitymaps:{z}" (CARBONLAB_INTENSITY)'
    )
