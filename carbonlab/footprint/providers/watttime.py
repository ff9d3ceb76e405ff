"""WattTime API v3 (https://api.watttime.org): the *marginal* operating emissions rate (MOER).

``intensity = "watttime:REGION"`` (a WattTime region, e.g. ``CAISO_NORTH``; free accounts may read
CAISO_NORTH only). Credentials: ``CARBONLAB_WATTTIME_USERNAME`` and ``CARBONLAB_WATTTIME_PASSWORD``
(or the ``watttime_username`` / ``watttime_password`` arguments). ``GET /login`` with HTTP Basic
gives a bearer token (valid ~30 min), kept in this process's memory only.

A MOER says what one more kWh would emit at the margin; it is not the average intensity carbonlab
charges. Values come in lb CO2/MWh and are converted (× 0.45359237 → g/kWh). Every record says
``signal = "marginal"``; CO2e accounting keeps the average figure unless ``intensity_marginal`` is
set, and records the marginal one beside it.

>>> parse_arg("caiso_north")
'CAISO_NORTH'
>>> round(lb_per_mwh_to_g_per_kwh(1000.0), 2)
453.59
"""

from __future__ import annotations

import re
import time
from typing import Any

from carbonlab.config import ConfigError

from .http import AUTH, SHAPE, Client, Fault, basic_auth, check_range
from .records import LB_PER_MWH_TO_G_PER_KWH, SIGNAL_MARGINAL, Period, Snapshot, parse_time

NAME = "watttime"
DEFAULT_URL = "https://api.watttime.org"
URL_SETTING = "watttime_url"
URL_ENV = "CARBONLAB_WATTTIME_URL"
SOURCE = "WattTime MOER (live, marginal)"
LICENSE = "WattTime API terms (data: WattTime)"
BASIS = "marginal operating emissions rate (MOER), converted from lb/MWh"
HORIZON_H = 24
TOKEN_LIFE_S = 25 * 60.0  # WattTime says ~30 min
DEFAULT_STEP_S = 300.0
_REGION = re.compile(r"^[A-Z0-9_]+$")
# Units WattTime may report for co2_moer, and the factor to g/kWh.
UNITS = {
    "lbs_co2_per_mwh": LB_PER_MWH_TO_G_PER_KWH,
    "lb_co2_per_mwh": LB_PER_MWH_TO_G_PER_KWH,
    "kg_co2_per_mwh": 1.0,
    "g_co2_per_kwh": 1.0,
}


def lb_per_mwh_to_g_per_kwh(lb: float) -> float:
    return lb * LB_PER_MWH_TO_G_PER_KWH


def parse_arg(arg: str) -> str:
    r = arg.strip().upper()
    if not _REGION.match(r):
        raise ConfigError(
            f"watttime:{arg}: expected a WattTime region such as CAISO_NORTH or PJM_DC"
        )
    return r


def parse_forecast(payload: Any, endpoint: str = "") -> tuple[tuple[Period, ...], dict[str, Any]]:
    """``/v3/forecast`` -> (periods in g/kWh, meta); units checked and converted, values checked."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise Fault(SHAPE, "unexpected response: no 'data' list", endpoint=endpoint)
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    units = str(meta.get("units", "lbs_co2_per_mwh"))
    factor = UNITS.get(units)
    if factor is None:
        raise Fault(
            SHAPE,
            f"unexpected units {units!r} (expected lbs_co2_per_mwh; a 'percentile' index has no g/kWh)",
            endpoint=endpoint,
        )
    step = meta.get("data_point_period_seconds", DEFAULT_STEP_S)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
        step = DEFAULT_STEP_S
    out = []
    for d in payload["data"]:
        if not isinstance(d, dict):
            raise Fault(SHAPE, "unexpected response: a point is not an object", endpoint=endpoint)
        try:
            t = parse_time(d["point_time"])
        except (KeyError, ValueError) as e:
            raise Fault(
                SHAPE, f"unexpected response: bad 'point_time' ({e})", endpoint=endpoint
            ) from None
        raw = d.get("value")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise Fault(
                SHAPE, f"unexpected response: value is {raw!r}, not a number", endpoint=endpoint
            )
        out.append(
            Period(t, t + float(step), check_range(raw * factor, f"MOER ({raw} {units})", endpoint))
        )
    if not out:
        raise Fault(SHAPE, "unexpected response: an empty forecast", endpoint=endpoint)
    return tuple(sorted(out, key=lambda p: p.start)), {"units": units, "factor": factor, **meta}


class Session:
    """Login state of one provider instance: the bearer token, in memory only."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.token_at = 0.0

    def bearer(self, client: Client, username: str, password: str, *, renew: bool = False) -> str:
        if renew or self.token is None or time.monotonic() - self.token_at > TOKEN_LIFE_S:
            payload = client.get_json(
                "/login", headers={"Authorization": basic_auth(username, password)}
            )
            token = payload.get("token") if isinstance(payload, dict) else None
            if not isinstance(token, str) or not token:
                raise Fault(
                    SHAPE,
                    "unexpected response: no 'token' in the login answer",
                    endpoint=client.endpoint("/login"),
                )
            self.token, self.token_at = token, time.monotonic()
            client.secrets = (*client.secrets, token)
        return self.token


def fetch(
    region: str,
    client: Client,
    session: Session,
    username: str,
    password: str,
    spec: str,
    now: float,
) -> Snapshot:
    params = {"region": region, "signal_type": "co2_moer", "horizon_hours": str(HORIZON_H)}
    endpoint = client.endpoint("/v3/forecast")
    for attempt in (0, 1):
        bearer = session.bearer(client, username, password, renew=attempt == 1)
        try:
            payload = client.get_json("/v3/forecast", params, {"Authorization": f"Bearer {bearer}"})
            break
        except Fault as f:
            if f.kind == AUTH and f.status == 401 and attempt == 0:
                continue  # the token expired early: log in again, once
            if f.kind == AUTH and f.status == 403:
                f.what += f" (this WattTime account has no access to region {region}; free accounts: CAISO_NORTH)"
                f.args = (f"{f.what} [{f.endpoint}]",)
            raise
    periods, meta = parse_forecast(payload, endpoint)
    # The current value: the point covering now, else the first one (a forecast made just now).
    cur = next((p for p in reversed(periods) if p.start <= now), periods[0])
    future = tuple(p for p in periods if p.end > now)
    lb = cur.gco2e_per_kwh / meta["factor"]
    return Snapshot(
        provider=NAME,
        spec=spec,
        zone=region,
        name=f"{meta.get('region') or region} (WattTime region)",
        gco2e_per_kwh=cur.gco2e_per_kwh,
        signal=SIGNAL_MARGINAL,
        estimate="forecast",
        valid_from=cur.start,
        valid_to=cur.end,
        fetched_at=now,
        source=SOURCE,
        basis=BASIS,
        license=LICENSE,
        forecast=future or periods,
        extra={"units": meta["units"], "value_in_units": round(lb, 3)},
    )
