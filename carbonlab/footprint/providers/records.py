"""What a live provider fetched: a :class:`Snapshot` (the current value, its period, a forecast) and
the time arithmetic every provider shares. Times are epoch seconds, UTC; strings are ISO 8601.

>>> parse_time("2020-05-21T20:30Z") == parse_time("2020-05-21T21:30:00+01:00")
True
>>> iso(parse_time("2024-03-06T19:00:00.000Z"))
'2024-03-06T19:00:00Z'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..intensity import Intensity

SIGNAL_AVERAGE = "average"
SIGNAL_MARGINAL = "marginal"
# Plausible grid intensity, gCO2e/kWh: a value outside is a fault, not a reading (lignite plants
# emit ~1,200; marginal coal units ~1,100).
MIN_G_PER_KWH = 0.0
MAX_G_PER_KWH = 2000.0
LB_PER_MWH_TO_G_PER_KWH = 0.45359237  # 1 lb = 453.59237 g; 1 MWh = 1,000 kWh


def parse_time(text: Any) -> float:
    """Epoch seconds from an ISO 8601 time with a zone ("Z", "+00:00", "+01:00"); ValueError if the
    text has no zone (a naive time would be read in the machine's zone, silently)."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO 8601 time, got {text!r}")
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    d = datetime.fromisoformat(t)
    if d.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return d.timestamp()


def iso(t: float | None) -> str | None:
    """``2026-11-21T10:00:00Z`` (whole seconds, UTC)."""
    if t is None:
        return None
    return datetime.fromtimestamp(round(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hhmm(t: float, tz: Any = None) -> str:
    """``02:00`` in UTC (or ``tz``)."""
    return datetime.fromtimestamp(t, tz or timezone.utc).strftime("%H:%M")


@dataclass(frozen=True)
class Period:
    """One step of a forecast or history: the value from ``start`` (inclusive) to ``end``."""

    start: float
    end: float
    gco2e_per_kwh: float


@dataclass(frozen=True)
class Snapshot:
    """One successful fetch: the value now, where it is from, and the forecast if the API gave one."""

    provider: str  # "uk-carbon-intensity"
    spec: str  # the setting: "uk-carbon-intensity:GB"
    zone: str  # "GB", "GB region 13", "FR", "CAISO_NORTH"
    name: str  # for people: "Great Britain (national)", "London (GB region 13)"
    gco2e_per_kwh: float
    signal: str  # SIGNAL_AVERAGE or SIGNAL_MARGINAL
    estimate: str  # "actual", "forecast", "estimated (TIME_SLICER_AVERAGE)", ...
    valid_from: float | None
    valid_to: float | None
    fetched_at: float
    source: str  # "NESO Carbon Intensity API (live)"
    basis: str
    license: str
    forecast: tuple[Period, ...] = ()
    forecast_note: str | None = None  # why there is no forecast, when there is none
    history: tuple[Period, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # index, lb/MWh, ...: JSON values only

    def intensity(self) -> Intensity:
        """The :class:`Intensity` record a window charges (or records, for a marginal signal)."""
        return Intensity(
            gco2e_per_kwh=self.gco2e_per_kwh,
            zone=self.zone,
            name=self.name,
            source=self.source,
            year=None,
            basis=self.basis,
            kind=self.provider,
            country_iso2=None,
            license=self.license,
            at=iso(self.fetched_at),
            provider=self.spec,
            signal=self.signal,
            estimate=self.estimate,
            valid_from=iso(self.valid_from),
            valid_to=iso(self.valid_to),
            fetched_at=self.fetched_at,
        )

    def to_json(self) -> dict[str, Any]:
        def periods(ps: tuple[Period, ...]) -> list[list[float]]:
            return [[p.start, p.end, p.gco2e_per_kwh] for p in ps]

        return {
            "provider": self.provider,
            "spec": self.spec,
            "zone": self.zone,
            "name": self.name,
            "gco2e_per_kwh": self.gco2e_per_kwh,
            "signal": self.signal,
            "estimate": self.estimate,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "fetched_at": self.fetched_at,
            "source": self.source,
            "basis": self.basis,
            "license": self.license,
            "forecast": periods(self.forecast),
            "forecast_note": self.forecast_note,
            "history": periods(self.history),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Snapshot:
        """Inverse of :meth:`to_json`; raises (KeyError, TypeError, ValueError) on a bad record."""

        def periods(rows: Any) -> tuple[Period, ...]:
            return tuple(Period(float(a), float(b), float(v)) for a, b, v in rows or ())

        def opt(v: Any) -> float | None:
            return None if v is None else float(v)

        value = float(d["gco2e_per_kwh"])
        if not MIN_G_PER_KWH <= value <= MAX_G_PER_KWH:
            raise ValueError(f"cached value {value} out of range")
        return cls(
            provider=str(d["provider"]),
            spec=str(d["spec"]),
            zone=str(d["zone"]),
            name=str(d["name"]),
            gco2e_per_kwh=value,
            signal=str(d["signal"]),
            estimate=str(d["estimate"]),
            valid_from=opt(d.get("valid_from")),
            valid_to=opt(d.get("valid_to")),
            fetched_at=float(d["fetched_at"]),
            source=str(d["source"]),
            basis=str(d["basis"]),
            license=str(d.get("license", "")),
            forecast=periods(d.get("forecast")),
            forecast_note=d.get("forecast_note"),
            history=periods(d.get("history")),
            extra=dict(d.get("extra") or {}),
        )
