"""When would the same work emit least? The lowest-intensity window of a given length in the next
hours of a provider's forecast, and the saving against running it now.

Only a forecast the provider gave is used: windows that would run past its last period, or across a
gap in it, are not considered, and without a forecast there is no advice (None), never a guess.
Arithmetic is on epoch seconds (UTC); a forecast's periods may be half hours (GB), hours
(Electricity Maps) or five minutes (WattTime). Times are shown in UTC unless a ``tz`` is given.

>>> from carbonlab.footprint.providers.records import Period
>>> h = 3600.0
>>> fc = [Period(0, h, 200.0), Period(h, 2 * h, 100.0), Period(2 * h, 3 * h, 150.0)]
>>> best_window(fc, h, now=0.0, horizon_s=3 * h)
(3600.0, 7200.0, 100.0)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any

from carbonlab.config import Settings

from .providers.records import SIGNAL_MARGINAL, Period, hhmm, iso

__all__ = ["Advice", "advice_for", "best_window", "mean_over", "advice_from_forecast"]

_J_PER_KWH = 3.6e6
MIN_WINDOW_S = 60.0
# Below this, "now" is as good as the best window (forecasts are not that precise).
NEGLIGIBLE_PCT = 1.0


@dataclass(frozen=True)
class Advice:
    """The best window and what it saves. Times are epoch seconds; ``*_iso`` fields are UTC."""

    start: float
    end: float
    start_iso: str
    end_iso: str
    window_h: float
    horizon_h: float
    window_gco2e_per_kwh: float  # time-weighted mean of the forecast over the window
    now_gco2e_per_kwh: float  # the same length starting now (forecast), else the current reading
    baseline: str  # "forecast from now" or "current reading"
    saving_pct: float  # 0 when now is (within 1 %) the best
    energy_kwh: float | None
    co2e_now_g: float | None  # energy × PUE × intensity; None without an energy
    co2e_window_g: float | None
    saved_g: float | None
    signal: str  # "average", or "marginal" (WattTime): a marginal saving, labelled so
    source: str
    zone: str
    provider: str
    fetched_at: str | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalise(periods: Iterable[Period]) -> list[Period]:
    """Sorted, overlap-free periods (an overlap is clipped to the earlier period's end)."""
    out: list[Period] = []
    for p in sorted(periods, key=lambda p: (p.start, p.end)):
        start = max(p.start, out[-1].end) if out else p.start
        if p.end > start and math.isfinite(p.gco2e_per_kwh):
            out.append(Period(start, p.end, p.gco2e_per_kwh))
    return out


class _Integral:
    """Cumulative integral and coverage of a step function, for O(log n) window means."""

    def __init__(self, periods: list[Period]) -> None:
        self.p = periods
        self.starts = [p.start for p in periods]
        self.cum_v = [0.0]  # ∫ value dt up to the start of period i
        self.cum_c = [0.0]  # covered seconds up to the start of period i
        for p in periods:
            d = p.end - p.start
            self.cum_v.append(self.cum_v[-1] + d * p.gco2e_per_kwh)
            self.cum_c.append(self.cum_c[-1] + d)

    def at(self, t: float) -> tuple[float, float]:
        i = bisect.bisect_right(self.starts, t) - 1
        if i < 0:
            return 0.0, 0.0
        p = self.p[i]
        inside = min(t, p.end) - p.start
        return self.cum_v[i] + inside * p.gco2e_per_kwh, self.cum_c[i] + inside

    def mean(self, a: float, b: float) -> float | None:
        va, ca = self.at(a)
        vb, cb = self.at(b)
        if b <= a or (cb - ca) < (b - a) - 1e-6:
            return None  # not covered from a to b: nothing is invented
        return (vb - va) / (b - a)


def mean_over(periods: Iterable[Period], start: float, end: float) -> float | None:
    """Time-weighted mean intensity from ``start`` to ``end``; None unless the periods cover it all.

    >>> mean_over([Period(0, 1800, 100.0), Period(1800, 3600, 200.0)], 900, 2700)
    150.0
    """
    return _Integral(_normalise(periods)).mean(start, end)


def best_window(
    periods: Iterable[Period], duration_s: float, *, now: float, horizon_s: float
) -> tuple[float, float, float] | None:
    """``(start, end, mean)`` of the lowest-mean window of ``duration_s`` that starts at or after
    ``now``, ends within ``now + horizon_s`` and lies wholly inside the forecast; the earliest of
    equals; None if no such window exists.

    For a step function the minimum is reached with the window's start or its end on a period
    edge, so those (and ``now``) are the only candidates.
    """
    ps = _normalise(periods)
    if not ps or duration_s <= 0:
        return None
    integral = _Integral(ps)
    last = min(now + horizon_s, ps[-1].end) - duration_s
    candidates = {now}
    for p in ps:
        candidates.add(p.start)
        candidates.add(p.end - duration_s)
    best: tuple[float, float, float] | None = None
    for s in sorted(c for c in candidates if now <= c <= last + 1e-9):
        m = integral.mean(s, s + duration_s)
        if m is not None and (best is None or m < best[2] - 1e-9):
            best = (s, s + duration_s, m)
    return best


def _work(work: Any) -> tuple[float | None, float | None]:
    """``(energy_j, duration_s)`` of the work: J per hour (a number: one hour), a Measurement, a
    list of Measurements (their energies and durations summed), or None (no energy: the window and
    the percentage only)."""
    if work is None:
        return None, None
    if isinstance(work, bool):
        raise TypeError("work: expected J per hour, a Measurement or a list of them")
    if isinstance(work, (int, float)):
        if not math.isfinite(work) or work < 0:
            raise ValueError(f"work: expected a non-negative energy in J per hour, got {work!r}")
        return float(work), 3600.0
    items = [work] if hasattr(work, "energy_j") else list(work)
    energy = 0.0
    duration = 0.0
    for m in items:
        energy += float(m.energy_j)
        duration += float(getattr(m, "duration_s", 0.0) or 0.0)
    return energy, duration


def _when(t: float, now: float, tz: tzinfo | None) -> str:
    z = tz or timezone.utc
    d, n = datetime.fromtimestamp(t, z), datetime.fromtimestamp(now, z)
    if d.date() == n.date():
        return hhmm(t, z)
    return f"{d.strftime('%a')} {hhmm(t, z)}"


def _span(start: float, end: float, now: float, tz: tzinfo | None) -> str:
    """``02:00 and 03:00 UTC``; the weekday is added to a time that is not on today's date."""
    z = tz or timezone.utc
    same_day = datetime.fromtimestamp(start, z).date() == datetime.fromtimestamp(end, z).date()
    end_s = hhmm(end, z) if same_day else _when(end, now, tz)
    name = "UTC" if tz is None else datetime.fromtimestamp(start, z).tzname() or "local time"
    return f"{_when(start, now, tz)} and {end_s} {name}"


def advice_from_forecast(
    forecast: Sequence[Period],
    *,
    now: float,
    window_s: float,
    horizon_s: float,
    current_gco2e_per_kwh: float,
    energy_kwh: float | None = None,
    pue: float = 1.0,
    signal: str = "average",
    source: str = "",
    zone: str = "",
    provider: str = "",
    fetched_at: float | None = None,
    subject: str = "this work",
    tz: tzinfo | None = None,
) -> Advice | None:
    """The advice record from a forecast (pure arithmetic; :func:`advice_for` gathers the inputs)."""
    window_s = max(window_s, MIN_WINDOW_S)
    best = best_window(forecast, window_s, now=now, horizon_s=horizon_s)
    if best is None:
        return None
    start, end, mean = best
    baseline_v = mean_over(forecast, now, now + window_s)
    baseline = "forecast from now"
    if baseline_v is None:
        baseline_v, baseline = current_gco2e_per_kwh, "current reading"
    saving = 0.0 if baseline_v <= 0 else max(0.0, (baseline_v - mean) / baseline_v * 100.0)
    if saving < NEGLIGIBLE_PCT:  # now is as good: say so, with the now figures
        saving = 0.0
        start, end, mean = now, now + window_s, baseline_v
    co2_now = co2_win = saved = None
    if energy_kwh is not None:
        co2_now = energy_kwh * pue * baseline_v
        co2_win = energy_kwh * pue * mean
        saved = co2_now - co2_win
    marginal = signal == SIGNAL_MARGINAL
    unit = "gCO2e/kWh" + (" marginal" if marginal else "")
    src = f"{source} forecast" + (f" for {zone}" if zone else "")
    hours = f"{horizon_s / 3600:g} h"
    if saving == 0.0:
        sentence = (
            f"now is the lowest-intensity time for {subject} in the next {hours} "
            f"({baseline_v:.0f} {unit}; {src})"
        )
    else:
        verb = "cause" if marginal else "emit"
        less = "less marginal emissions" if marginal else "less"
        grams = f", {saved:.3g} g less" if saved is not None and saved > 0 else ""
        sentence = (
            f"{subject} would {verb} {saving:.0f} % {less} between {_span(start, end, now, tz)} "
            f"({mean:.0f} instead of {baseline_v:.0f} {unit}{grams}; {src})"
        )
    return Advice(
        start=start,
        end=end,
        start_iso=iso(start) or "",
        end_iso=iso(end) or "",
        window_h=window_s / 3600.0,
        horizon_h=horizon_s / 3600.0,
        window_gco2e_per_kwh=mean,
        now_gco2e_per_kwh=baseline_v,
        baseline=baseline,
        saving_pct=round(saving, 1),
        energy_kwh=energy_kwh,
        co2e_now_g=co2_now,
        co2e_window_g=co2_win,
        saved_g=saved,
        signal=signal,
        source=source,
        zone=zone,
        provider=provider,
        fetched_at=iso(fetched_at),
        sentence=sentence,
    )


def advice_for(
    work: Any,
    settings: Settings,
    *,
    window_h: float | None = None,
    horizon_h: float = 24.0,
    now: float | None = None,
    subject: str = "this work",
    tz: tzinfo | None = None,
) -> Advice | None:
    """When the same work would emit least, from the forecast of ``settings.intensity``.

    ``work``: energy in J per hour (the window is then one hour), a Measurement, a list of
    Measurements (energy summed; the window is their summed duration, at least a minute), or None
    (no grams, the percentage only; the window is ``window_h``, default one hour).
    ``window_h`` overrides the window's length; ``horizon_h`` is how far ahead to look; ``subject``
    starts the sentence ("this notebook's last hour of work"). Never blocks: it uses the forecast
    the provider already holds. None without a live provider, without a forecast, or when the
    forecast does not cover a whole window in the horizon.

    >>> advice_for(3600.0, Settings(zone="FR")) is None   # static tables have no forecast
    True
    """
    from . import factors, providers
    from .intensity import implied_zone, lookup

    snap, st = providers.snapshot(settings)
    if snap is None or not snap.forecast:
        return None
    energy_j, duration_s = _work(work)
    if window_h is not None:
        window_s = float(window_h) * 3600.0
    else:
        window_s = duration_s if duration_s else 3600.0
    t = providers.get(settings).clock() if now is None else now
    pue = factors.pue(settings, lookup(settings.zone or implied_zone(settings.intensity))).value
    return advice_from_forecast(
        snap.forecast,
        now=t,
        window_s=window_s,
        horizon_s=horizon_h * 3600.0,
        current_gco2e_per_kwh=snap.gco2e_per_kwh,
        energy_kwh=None if energy_j is None else energy_j / _J_PER_KWH,
        pue=pue,
        signal=snap.signal,
        source=snap.source.replace(" (live)", "").replace(" (live, marginal)", ""),
        zone=snap.zone,
        provider=snap.spec,
        fetched_at=snap.fetched_at,
        subject=subject,
        tz=tz,
    )
