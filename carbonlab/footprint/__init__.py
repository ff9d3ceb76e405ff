"""From IT energy to a footprint: operational CO2e, embodied CO2e, water; each figure with its source.

``apply`` runs at the end of every measured cell and test, so everything that does not depend on the
window's energy or duration (zone lookup, PUE, water factor, GPU embodied figures, the notes) is worked
out once per setting and hardware and cached; a call is then a few multiplications.

Surfaces call :func:`validate` when they load, so a bad zone is a usage error before anything runs.

>>> from carbonlab.config import Settings
>>> from carbonlab.measurement import Component, Measurement
>>> m = Measurement("cell 1", "2026-01-01T00:00:00Z", 2.0,
...                 [Component("cpu", "package-0", 3600.0, "rapl", "package")])
>>> m = apply(m, Settings(zone="FR"))
>>> m.intensity["zone"], round(m.co2e_g, 5)   # 1 Wh × PUE 1.0 × 44.18 g/kWh
('FR', 0.04418)
"""

from __future__ import annotations

from dataclasses import dataclass

from carbonlab.config import Settings
from carbonlab.measurement import Measurement

from . import factors
from .intensity import NO_ZONE_NAME, Intensity, UnknownZoneError, current, list_zones, lookup

__all__ = [
    "Intensity",
    "UnknownZoneError",
    "apply",
    "check_zone",
    "list_zones",
    "lookup",
    "validate",
]

_J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class _Plan:
    intensity: Intensity
    intensity_dict: dict
    pue: float
    water_l_per_kwh: float
    embodied_g_per_s: float | None  # summed over the window's GPUs; None: not estimated
    notes: tuple[str, ...]


_plans: dict[tuple, _Plan] = {}
_MAX_PLANS = 256
# Every note a plan has produced, so that applying again (another zone, say) replaces, not piles up.
_our_notes: set[str] = set()


def validate(settings: Settings) -> None:
    """Raise :class:`UnknownZoneError` (a ConfigError) if ``settings.zone`` names no known zone."""
    lookup(settings.zone)


check_zone = validate  # the name the CLI uses


def intensity_note(i: Intensity) -> str:
    """The sentence saying which grid figure was used."""
    hint = (
        "; set zone (e.g. FR, US-CAL-CISO, aws:eu-west-3) for your grid"
        if i.name == NO_ZONE_NAME
        else ""
    )
    return f"grid {i.gco2e_per_kwh:g} gCO2e/kWh: {i.name} [{i.zone}], {i.source}; {i.basis}{hint}"


def _gpus(m: Measurement) -> tuple[str, ...]:
    """The GPU product names in the window, one per device."""
    seen: dict[str, str] = {}
    for c in m.components:
        if c.kind == "gpu":
            seen.setdefault(c.device, c.name)
    return tuple(seen.values())


def _plan(settings: Settings, gpus: tuple[str, ...]) -> _Plan:
    zone = lookup(settings.zone)
    pue = factors.pue(settings, zone)
    water = factors.water(settings, zone, pue.value)
    notes = [intensity_note(zone), pue.note]
    per_s: float | None = None
    if not settings.embodied:
        notes.append(
            f"embodied: not estimated (embodied = false, {factors.origin(settings, 'embodied')})"
        )
    else:
        life = factors.lifetime(settings)
        counts: dict[str, int] = {}
        for name in gpus:
            counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            fig = factors.gpu_embodied(name)
            if fig is None:
                notes.append(
                    f"embodied: no figure for {name or 'an unnamed GPU'}, so it is not included"
                )
                continue
            g = n * factors.amortised_g(fig.kgco2e, 1.0, life.value)
            per_s = g if per_s is None else per_s + g
            notes.append(factors.embodied_note(name, n, fig, life))
        notes.append(factors.host_embodied_note())
    notes.append(water.note)
    _our_notes.update(notes)
    return _Plan(zone, zone.to_dict(), pue.value, water.value, per_s, tuple(notes))


def _key(settings: Settings, gpus: tuple[str, ...]) -> tuple:
    s = settings
    return (
        s.zone,
        s.pue,
        s.source("pue"),
        s.wue_l_per_kwh,
        s.source("wue_l_per_kwh"),
        s.embodied,
        s.source("embodied"),
        s.lifetime_years,
        s.source("lifetime_years"),
        gpus,
    )


def apply(measurement: Measurement, settings: Settings) -> Measurement:
    """Fill ``co2e_g``, ``embodied_co2e_g``, ``water_l``, ``intensity``, ``pue`` and the notes saying
    where each came from; return the same measurement.

    ``co2e_g = energy_kWh × PUE × intensity``; ``embodied_co2e_g = Σ_GPUs kgCO2e × duration /
    lifetime`` (None when no GPU in the window has a figure); ``water_l = energy_kWh × (on-site WUE +
    PUE × grid water intensity)``. Raises :class:`UnknownZoneError` for an unknown zone.
    """
    gpus = _gpus(measurement)
    key = _key(settings, gpus)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        plan = _plans[key] = _plan(settings, gpus)
    intensity, intensity_d, notes = plan.intensity, plan.intensity_dict, plan.notes
    if settings.intensity is not None:
        live, why = current(settings.zone, settings.intensity)
        if live is not intensity:
            intensity, intensity_d = live, live.to_dict()
            notes = (intensity_note(live), *notes[1:])
            _our_notes.add(notes[0])
        if why:
            notes = (*notes, why)
            _our_notes.add(why)
    kwh = measurement.energy_j / _J_PER_KWH
    measurement.co2e_g = kwh * plan.pue * intensity.gco2e_per_kwh
    measurement.embodied_co2e_g = (
        None if plan.embodied_g_per_s is None else plan.embodied_g_per_s * measurement.duration_s
    )
    measurement.water_l = kwh * plan.water_l_per_kwh
    measurement.intensity = dict(intensity_d)
    measurement.pue = plan.pue
    if measurement.notes:
        measurement.notes = [n for n in measurement.notes if n not in _our_notes]
        measurement.notes.extend(notes)
    else:
        measurement.notes = list(notes)
    return measurement
