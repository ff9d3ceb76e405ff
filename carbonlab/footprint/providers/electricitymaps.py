"""Electricity Maps API v3 (https://api.electricitymaps.com/v3; header ``auth-token``).

``intensity = "electricitymaps:ZONE"`` (``FR``, ``DE``, ``US-CAL-CISO``; without ZONE the ``zone``
setting). The token comes from ``CARBONLAB_ELECTRICITYMAPS_TOKEN`` (or the ``electricitymaps_token``
argument); it is sent in a header only, never logged, never written to the cache, never put in a
Measurement or a message.

Each refresh asks for the latest value (a fault there fails the refresh), the last 24 h (history)
and the forecast; the last two are best-effort, since free plans do not include the forecast: a
401/403 there means "not in this plan" and it is not asked again for a day.

>>> parse_arg("us-cal-ciso")
'US-CAL-CISO'
"""

from __future__ import annotations

import re
from typing import Any

from carbonlab.config import ConfigError

from .http import AUTH, SHAPE, Client, Fault, check_range
from .records import SIGNAL_AVERAGE, Period, Snapshot, parse_time

NAME = "electricitymaps"
DEFAULT_URL = "https://api.electricitymaps.com/v3"
URL_SETTING = "electricitymaps_url"
URL_ENV = "CARBONLAB_ELECTRICITYMAPS_URL"
TOKEN_ENV = "CARBONLAB_ELECTRICITYMAPS_TOKEN"
SOURCE = "Electricity Maps API (live)"
LICENSE = "Electricity Maps API terms (data: Electricity Maps)"
_ZONE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]+)*$")
DEFAULT_STEP_S = 3600.0


def parse_arg(arg: str) -> str:
    """The zone key of ``electricitymaps:ZONE``; :class:`ConfigError` if it cannot be one."""
    z = arg.strip().upper()
    if not _ZONE.match(z):
        raise ConfigError(
            f"electricitymaps:{arg}: expected an Electricity Maps zone key such as FR, DE, "
            "US-CAL-CISO (`carbonlab zones QUERY` lists them)"
        )
    return z


def headers(token: str) -> dict[str, str]:
    return {"auth-token": token}


def _point(d: Any, what: str, endpoint: str) -> tuple[float, Any]:
    if not isinstance(d, dict):
        raise Fault(SHAPE, f"unexpected response: {what} is not an object", endpoint=endpoint)
    try:
        t = parse_time(d["datetime"])
    except (KeyError, ValueError) as e:
        raise Fault(
            SHAPE, f"unexpected response: {what} has no valid 'datetime' ({e})", endpoint=endpoint
        ) from None
    return t, d.get("carbonIntensity")


def parse_latest(payload: Any, endpoint: str = "") -> dict[str, Any]:
    t, v = _point(payload, "the latest value", endpoint)
    value = check_range(v, "carbonIntensity", endpoint)
    estimated = bool(payload.get("isEstimated"))
    method = payload.get("estimationMethod")
    return {
        "value": value,
        "at": t,
        "zone": payload.get("zone"),
        "estimate": (f"estimated ({method})" if method else "estimated")
        if estimated
        else "measured",
        "factor": payload.get("emissionFactorType") or "lifecycle",
    }


def _series(points: list[tuple[float, float]]) -> tuple[Period, ...]:
    """Hourly points -> periods [t, next t); the last one lasts the usual step."""
    pts = sorted(points)
    steps = sorted(b[0] - a[0] for a, b in zip(pts, pts[1:]) if b[0] > a[0])
    step = steps[len(steps) // 2] if steps else DEFAULT_STEP_S
    out = []
    for i, (t, v) in enumerate(pts):
        end = pts[i + 1][0] if i + 1 < len(pts) and pts[i + 1][0] > t else t + step
        out.append(Period(t, end, v))
    return tuple(out)


def parse_points(payload: Any, key: str, endpoint: str = "") -> tuple[Period, ...]:
    """``{"forecast": [...]}`` or ``{"history": [...]}`` -> periods, values checked."""
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise Fault(SHAPE, f"unexpected response: no {key!r} list", endpoint=endpoint)
    pts = []
    for d in payload[key]:
        t, v = _point(d, f"a {key} point", endpoint)
        if v is None and key == "history":
            continue  # an hour without data: a gap, not a fault
        pts.append((t, check_range(v, f"{key}.carbonIntensity", endpoint)))
    return _series(pts)


def fetch(
    zone: str, client: Client, token: str, spec: str, now: float, *, want_forecast: bool = True
) -> Snapshot:
    h = headers(token)
    q = {"zone": zone}
    latest = parse_latest(
        client.get_json("/carbon-intensity/latest", q, h),
        client.endpoint("/carbon-intensity/latest"),
    )
    history: tuple[Period, ...] = ()
    try:
        history = parse_points(
            client.get_json("/carbon-intensity/history", q, h),
            "history",
            client.endpoint("/carbon-intensity/history"),
        )
    except Fault:
        pass  # history is a nicety (the CLI's last-24 h line); its absence is not a fault
    forecast: tuple[Period, ...] = ()
    note: str | None = None
    extra: dict[str, Any] = {}
    if want_forecast:
        try:
            forecast = parse_points(
                client.get_json("/carbon-intensity/forecast", q, h),
                "forecast",
                client.endpoint("/carbon-intensity/forecast"),
            )
        except Fault as f:
            if f.kind == AUTH:
                note = f"forecast not available with this token's plan: {f}"
                extra["forecast_not_in_plan"] = True
            else:
                note = f"forecast unavailable: {f}"
    else:
        note = "forecast not available with this token's plan (not asked again today)"
    factor = latest["factor"]
    step = history[-1].end - history[-1].start if history else DEFAULT_STEP_S
    return Snapshot(
        provider=NAME,
        spec=spec,
        zone=zone,
        name=f"{zone} (Electricity Maps zone)",
        gco2e_per_kwh=latest["value"],
        signal=SIGNAL_AVERAGE,
        estimate=latest["estimate"],
        valid_from=latest["at"],
        valid_to=latest["at"] + step,
        fetched_at=now,
        source=SOURCE,
        basis=f"consumption-based (flow-traced), {factor}",
        license=LICENSE,
        forecast=forecast,
        forecast_note=note,
        history=history,
        extra=extra,
    )
