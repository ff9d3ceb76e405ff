"""GB Carbon Intensity API (NESO, https://api.carbonintensity.org.uk; no key; CC BY 4.0).

``intensity = "uk-carbon-intensity:ARG"`` where ARG is

* ``GB`` (or nothing, or ``national``): national figure, the actual value once NESO has it, else
  the forecast for the current half hour;
* a region: its id 1-17 (``13``, ``region:13``) or short name (``London``, ``north-scotland``,
  ``England``); regional figures are forecasts only (the API has no regional actuals);
* ``postcode:RG10``: the region of an outward postcode.

Each refresh makes two requests: the current half hour, and the 48 h forecast from now.
NESO's figures count direct (operational) emissions of generation, including imports, so they are
lower than Ember's lifecycle figure for GB; the record says so.

>>> parse_arg("london").path, parse_arg("").zone, parse_arg("postcode:rg10").zone
('/regional/regionid/13', 'GB', 'GB postcode RG10')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from carbonlab.config import ConfigError

from .http import SHAPE, Client, Fault, check_range
from .records import SIGNAL_AVERAGE, Period, Snapshot, parse_time

NAME = "uk-carbon-intensity"
DEFAULT_URL = "https://api.carbonintensity.org.uk"
URL_SETTING = "uk_ci_url"
URL_ENV = "CARBONLAB_UK_CI_URL"
SOURCE = "NESO Carbon Intensity API (live)"
LICENSE = "CC BY 4.0 (Carbon Intensity API, National Energy System Operator)"
BASIS = "generation-based, direct emissions incl. imports (NESO method)"

# Region ids of the API (docs table); 15-17 are the nations.
REGIONS = {
    1: "North Scotland",
    2: "South Scotland",
    3: "North West England",
    4: "North East England",
    5: "Yorkshire",
    6: "North Wales",
    7: "South Wales",
    8: "West Midlands",
    9: "East Midlands",
    10: "East England",
    11: "South West England",
    12: "South England",
    13: "London",
    14: "South East England",
    15: "England",
    16: "Scotland",
    17: "Wales",
}
_BY_NAME = {re.sub(r"[\s_-]+", "-", n.lower()): i for i, n in REGIONS.items()}
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")
ACCEPTED = "GB, a region id 1-17 or name (London, north-scotland, England), or postcode:OUTWARD (postcode:RG10)"


@dataclass(frozen=True)
class Target:
    zone: str  # "GB", "GB region 13", "GB postcode RG10"
    name: str
    path: str  # current half hour
    forecast_path: str  # after "/{from}": the 48 h forecast
    regionid: int | None = None
    postcode: str | None = None


def parse_arg(arg: str) -> Target:
    """The target of ``uk-carbon-intensity:ARG``; :class:`ConfigError` naming what is accepted."""
    a = arg.strip()
    low = a.lower()
    if low in ("", "gb", "national", "uk"):
        return Target("GB", "Great Britain (national)", "/intensity", "/fw48h")
    if low.startswith("postcode:"):
        pc = a.partition(":")[2].strip().upper()
        if not _POSTCODE.match(pc):
            raise ConfigError(
                f"uk-carbon-intensity:{arg}: {pc!r} is not an outward postcode (e.g. RG10, SW1A)"
            )
        return Target(
            f"GB postcode {pc}",
            f"postcode {pc} (GB)",
            f"/regional/postcode/{pc}",
            f"/fw48h/postcode/{pc}",
            postcode=pc,
        )
    if low.startswith("region:"):
        low = low.partition(":")[2].strip()
    rid = int(low) if low.isdigit() else _BY_NAME.get(re.sub(r"[\s_-]+", "-", low))
    if rid not in REGIONS:
        raise ConfigError(f"uk-carbon-intensity:{arg}: unknown region; expected {ACCEPTED}")
    return Target(
        f"GB region {rid}",
        f"{REGIONS[rid]} (GB region {rid})",
        f"/regional/regionid/{rid}",
        f"/fw48h/regionid/{rid}",
        regionid=rid,
    )


def _items(payload: Any, target: Target, endpoint: str) -> list[dict[str, Any]]:
    """The half-hour items of any of the API's shapes: national ``data[]``, all regions
    ``data[].regions[]``, one region or postcode ``data[0].data[]``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise Fault(SHAPE, "unexpected response: no 'data' list", endpoint=endpoint)
    out: list[dict[str, Any]] = []
    for item in payload["data"]:
        if not isinstance(item, dict):
            raise Fault(
                SHAPE, "unexpected response: an item of 'data' is not an object", endpoint=endpoint
            )
        if isinstance(item.get("data"), list):  # /regional/regionid/{id}, /regional/postcode/{pc}
            if target.regionid is not None and item.get("regionid") not in (None, target.regionid):
                continue
            out.extend(
                {**x, "_name": item.get("shortname")} for x in item["data"] if isinstance(x, dict)
            )
        elif isinstance(item.get("regions"), list):  # /regional, /regional/intensity/{from}/fw48h
            for r in item["regions"]:
                if isinstance(r, dict) and r.get("regionid") == target.regionid:
                    out.append(
                        {
                            **r,
                            "from": item.get("from"),
                            "to": item.get("to"),
                            "_name": r.get("shortname"),
                        }
                    )
        else:
            out.append(item)
    if not out:
        raise Fault(
            SHAPE, "unexpected response: no half-hour periods for this target", endpoint=endpoint
        )
    return out


def _period(item: dict[str, Any], endpoint: str) -> tuple[float, float, dict[str, Any]]:
    try:
        start, end = parse_time(item["from"]), parse_time(item["to"])
    except (KeyError, ValueError) as e:
        raise Fault(SHAPE, f"unexpected response: bad period ({e})", endpoint=endpoint) from None
    if not end > start:
        raise Fault(SHAPE, "unexpected response: a period ends before it starts", endpoint=endpoint)
    i = item.get("intensity")
    if not isinstance(i, dict):
        raise Fault(SHAPE, "unexpected response: a period has no 'intensity'", endpoint=endpoint)
    return start, end, i


def parse_current(payload: Any, target: Target, endpoint: str = "") -> dict[str, Any]:
    """The current half hour: value, what it is (actual or forecast), period, index, region name."""
    items = _items(payload, target, endpoint)
    start, end, i = _period(items[0], endpoint)
    if i.get("actual") is not None:
        value, estimate = check_range(i["actual"], "intensity.actual", endpoint), "actual"
    else:
        value, estimate = check_range(i.get("forecast"), "intensity.forecast", endpoint), "forecast"
    return {
        "value": value,
        "estimate": estimate,
        "from": start,
        "to": end,
        "index": i.get("index"),
        "name": items[0].get("_name"),
    }


def parse_forecast(payload: Any, target: Target, endpoint: str = "") -> tuple[Period, ...]:
    """Every half hour of a forecast response, in time order (values checked, like the current)."""
    out = []
    for item in _items(payload, target, endpoint):
        start, end, i = _period(item, endpoint)
        out.append(
            Period(start, end, check_range(i.get("forecast"), "intensity.forecast", endpoint))
        )
    return tuple(sorted(out, key=lambda p: p.start))


def fmt_from(t: float) -> str:
    """The API's ``{from}``: ``YYYY-MM-DDThh:mmZ``, UTC."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def fetch(
    target: Target, client: Client, spec: str, now: float, *, want_forecast: bool = True
) -> Snapshot:
    """Fetch the current half hour (a fault here fails the refresh) and the forecast (a fault there
    leaves ``forecast`` empty and says why in ``forecast_note``)."""
    cur = parse_current(client.get_json(target.path), target, client.endpoint(target.path))
    name = target.name
    if target.regionid is None and target.postcode is not None and cur["name"]:
        name = f"{cur['name']}, postcode {target.postcode} (GB)"
    forecast: tuple[Period, ...] = ()
    note: str | None = None
    if want_forecast:
        base = "/regional/intensity" if target.path.startswith("/regional") else "/intensity"
        path = f"{base}/{fmt_from(now)}{target.forecast_path}"
        try:
            forecast = parse_forecast(client.get_json(path), target, client.endpoint(path))
        except Fault as f:
            note = f"forecast unavailable: {f}"
    return Snapshot(
        provider=NAME,
        spec=spec,
        zone=target.zone,
        name=name,
        gco2e_per_kwh=cur["value"],
        signal=SIGNAL_AVERAGE,
        estimate=cur["estimate"],
        valid_from=cur["from"],
        valid_to=cur["to"],
        fetched_at=now,
        source=SOURCE,
        basis=BASIS,
        license=LICENSE,
        forecast=forecast,
        forecast_note=note,
        extra={"index": cur["index"]} if cur["index"] else {},
    )
