"""Plain-text rendering of :func:`current_intensity` and an :class:`Advice`, for ``carbonlab
intensity`` (and any surface that wants the same lines)."""

from __future__ import annotations

from typing import Any


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
        f"{d.get('zone')}: {d['gco2e_per_kwh']:g} gCO2e/kWh ({signal})"
        + (f", {what}" if what else "")
        + f" - {d.get('name')}"
    )
    src = f"  source: {d.get('source')}"
    if d.get("live"):
        src += f" [{d.get('provider')}], fetched {d.get('at')} ({age_text(d.get('age_s'))} ago)"
    lines.append(src)
    lines.append(f"  basis: {d.get('basis')}")
    if d.get("index"):
        lines.append(f"  index: {d['index']}")
    fb = d.get("fallback")
    if fb:
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
        lines.append(f"  forecast: none ({d.get('forecast_note') or 'the provider gave none'})")
    if advice is not None:
        lines.append(f"  best {window_h:g} h window in the next {horizon_h:g} h: {advice.sentence}")
    elif d.get("provider") not in (None, "static"):
        lines.append(
            f"  best window: none (no forecast covers a {window_h:g} h window in the next {horizon_h:g} h)"
        )
    return "\n".join(lines)
