"""From IT energy to a footprint: operational CO2e, embodied CO2e, water; each figure with its source.

``apply`` runs at the end of every measured cell and test, so everything that does not depend on the
window's energy or duration (zone lookup, PUE, water factor, GPU embodied figures, the notes) is worked
out once per setting and hardware and cached; a call is then a few multiplications.

Surfaces call :func:`validate` when they load, so a bad zone or provider setting is a usage error
before anything runs (and a live provider starts its first fetch, in the background).

With a live provider (``settings.intensity = "uk-carbon-intensity:GB"``, ...) a window charges the
latest reading the provider holds, never waiting for the network; see
:mod:`carbonlab.footprint.providers`. :func:`current_intensity` and :func:`advice_for` are for
surfaces (``carbonlab intensity``, ``%carbon advise``, the sidebar, the pytest summary).

>>> from carbonlab.config import Settings
>>> from carbonlab.measurement import Component, Measurement
>>> m = Measurement("cell 1", "2026-01-01T00:00:00Z", 2.0,
...                 [Component("cpu", "package-0", 3600.0, "rapl", "package")])
>>> m = apply(m, Settings(zone="FR"))
>>> m.intensity["zone"], round(m.co2e_g, 5)   # 1 Wh × PUE 1.0 × 44.18 g/kWh
('FR', 0.04418)
"""

from __future__ import annotations

from carbonlab import _moved
from carbonlab.config import Settings
from carbonlab.measurement import Measurement
from carbonlab.units import format_intensity

from . import factors
from . import intensity as _intensity_mod
from .intensity import (
    _FACTORIES,
    BUILTIN_PROVIDERS,
    NO_ZONE_NAME,
    Intensity,
    UnknownZoneError,
    implied_zone,
    is_live,
    lookup,
)

__all__ = [
    "Intensity",
    "UnknownZoneError",
    "advice_for",
    "apply",
    "check_zone",
    "current_intensity",
    "list_zones",
    "lookup",
    "validate",
]

_J_PER_KWH = 3.6e6


class _Plan:
    """What a window's footprint needs, worked out once per setting and hardware (a plain class:
    a record class is made at import, ~0.1 M instructions, and nothing compares plans)."""

    __slots__ = (
        "intensity",
        "intensity_dict",
        "pue",
        "water_l_per_kwh",
        "embodied_g_per_s",  # summed over the window's GPUs; None: not estimated
        "notes",
    )

    def __init__(
        self,
        intensity: Intensity,
        intensity_dict: dict,
        pue: float,
        water_l_per_kwh: float,
        embodied_g_per_s: float | None,
        notes: tuple[str, ...],
    ) -> None:
        self.intensity = intensity
        self.intensity_dict = intensity_dict
        self.pue = pue
        self.water_l_per_kwh = water_l_per_kwh
        self.embodied_g_per_s = embodied_g_per_s
        self.notes = notes


_plans: dict[tuple, _Plan] = {}
_MAX_PLANS = 256
# Every note a plan has produced, so that applying again (another zone, say) replaces, not piles up.
_our_notes: set[str] = set()


def validate(settings: Settings) -> None:
    """Raise :class:`UnknownZoneError` (a ConfigError) if ``settings.zone`` names no known zone, or a
    ConfigError if ``settings.intensity`` names an unknown provider or a malformed argument; with a
    live provider, start its first fetch in the background."""
    from carbonlab.config import ConfigError, origin_name

    def named(e: ConfigError, key: str) -> ConfigError:
        src = settings.source(key)
        if src in ("default", "argument"):
            return e
        return type(e)(f"{e} (from {origin_name(src, key)})")

    try:
        lookup(settings.zone)
    except ConfigError as e:
        raise named(e, "zone") from None
    if is_live(settings.intensity):
        from . import providers

        try:
            providers.check_spec(settings)
        except ConfigError as e:
            raise named(e, "intensity") from None
        providers.prefetch(settings)


def drop_unusable(settings: Settings) -> Settings:
    """For a measuring window, which never fails the user's cell over a setting: an unknown zone or
    a malformed intensity setting is dropped (the static no-zone figure, or the zone's static
    figure, is charged), and ``settings.problems`` says so. Starts no fetch."""
    from carbonlab.config import ConfigError, origin_name

    try:
        lookup(settings.zone)
    except ConfigError as e:
        settings.problems.append(
            f"{e} (from {origin_name(settings.source('zone'), 'zone')}); no zone is used (the world average is charged)"
        )
        settings.zone = None
        settings.sources.pop("zone", None)
    if is_live(settings.intensity):
        from . import providers

        try:
            providers.check_spec(settings)
        except ConfigError as e:
            settings.problems.append(
                f"{e} (from {origin_name(settings.source('intensity'), 'intensity')}); the static figure is charged"
            )
            settings.intensity = None
            settings.sources.pop("intensity", None)
    return settings


def current_intensity(settings: Settings, *, wait_s: float = 0.0) -> dict:
    """The grid figure a window would charge now, JSON-ready; see
    :func:`carbonlab.footprint.providers.current_intensity`."""
    from . import providers

    return providers.current_intensity(settings, wait_s=wait_s)


def advice_for(work, settings: Settings, **kwargs):
    """When the same work would emit least; see :func:`carbonlab.footprint.advice.advice_for`."""
    from . import advice

    return advice.advice_for(work, settings, **kwargs)


check_zone = validate  # the name the CLI uses


def intensity_note(i: Intensity) -> str:
    """The sentence saying which grid figure was used."""
    if i.provider is not None:  # a live reading: what it is, for which period, fetched when
        what = f"{i.estimate} for {_span(i.valid_from, i.valid_to)}" if i.valid_from else i.estimate
        return (
            f"grid {i.gco2e_per_kwh:g} gCO2e/kWh ({i.signal}): {i.name} [{i.zone}], {i.source}; "
            f"{what}; fetched {i.at}; {i.basis}"
        )
    hint = (
        "; set zone (e.g. FR, US-CAL-CISO, aws:eu-west-3) for your grid"
        if i.name == NO_ZONE_NAME
        else ""
    )
    bad = _intensity_mod.implausible(i)
    figure = "figure implausible" if bad else format_intensity(i.gco2e_per_kwh)
    return f"grid {figure}: {i.name} [{i.zone}], {i.source}; {i.basis}{hint}"


def _span(a: str | None, b: str | None) -> str:
    """``2026-11-21 10:00-10:30 UTC`` from two ISO times."""
    if not a:
        return "?"
    if not b:
        return f"{a[:10]} {a[11:16]} UTC"
    day = "" if b[:10] == a[:10] else f"{b[:10]} "
    return f"{a[:10]} {a[11:16]}-{day}{b[11:16]} UTC"


def _gpus(m: Measurement) -> tuple[str, ...]:
    """The GPU product names in the window, one per device."""
    seen: dict[str, str] = {}
    for c in m.components:
        if c.kind == "gpu":
            seen.setdefault(c.device, c.name)
    return tuple(seen.values())


def _plan(settings: Settings, gpus: tuple[str, ...]) -> _Plan:
    # No zone, but a provider that stands for one (uk-carbon-intensity: GB): its static figure is
    # the fallback, and its country the one for water, rather than the World average.
    zone = lookup(settings.zone or implied_zone(settings.intensity))
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
        s.intensity,
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


_choose_fn = None
_last_live_note: tuple[Intensity | None, str] = (None, "")


def _choose():
    """``providers.choose``, imported on first use (not at ``import carbonlab``)."""
    global _choose_fn
    if _choose_fn is None:
        from .providers import choose

        _choose_fn = choose
    return _choose_fn


_failures_said: set[str] = set()


def _failed_choice(settings: Settings, static: Intensity, e: Exception):
    from .providers import Choice

    reason = f"internal error ({type(e).__name__})"
    why = (
        f"live intensity ({settings.intensity}) unavailable: {reason}; used the static figure "
        f"({static.source})"
    )
    rec = static.to_dict()
    rec["fallback"] = {"provider": settings.intensity, "reason": reason}
    once = () if why in _failures_said else (why,)
    _failures_said.add(why)
    return Choice(static, rec, why, once)


def _live_note(i: Intensity) -> str:
    """:func:`intensity_note` of a live reading, made once per reading (windows ask every time)."""
    global _last_live_note
    last, note = _last_live_note
    if last is not i:
        note = intensity_note(i)
        _our_notes.add(note)
        _last_live_note = (i, note)
    return note


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
    once: tuple[str, ...] = ()
    marginal = None
    if is_live(settings.intensity):
        name = settings.intensity.partition(":")[0].strip()
        if name.lower() in BUILTIN_PROVIDERS and name not in _FACTORIES:  # not overridden
            try:
                choice = _choose()(settings, plan.intensity)
            except Exception as e:  # a bug in a provider must not break a cell or a test
                choice = _failed_choice(settings, plan.intensity, e)
            intensity, intensity_d, once = choice.intensity, choice.record, choice.notes_once
            marginal = choice.marginal
            if intensity is not plan.intensity:
                notes = (_live_note(intensity), *notes[1:])
        else:
            live, why = _intensity_mod.current(settings.zone, settings.intensity)
            if live is not intensity:
                intensity, intensity_d = live, live.to_dict()
                notes = (intensity_note(live), *notes[1:])
                _our_notes.add(notes[0])
            if why:
                notes = (*notes, why)
                _our_notes.add(why)
    kwh = measurement.energy_j / _J_PER_KWH
    measurement.co2e_g = kwh * plan.pue * intensity.gco2e_per_kwh
    bad = _intensity_mod.implausible(intensity) if intensity.at is None else None
    if bad:  # a table figure no grid has (Ember's 0 for CF): no CO2e rather than a confident 0
        measurement.co2e_g = None
        note = (
            f"CO2e not computed: the table figure for {intensity.zone} is implausible ({bad}); "
            f"choose another zone (carbonlab zones {intensity.zone})"
        )
        _our_notes.add(note)
        notes = (*notes, note)
    measurement.embodied_co2e_g = (
        None if plan.embodied_g_per_s is None else plan.embodied_g_per_s * measurement.duration_s
    )
    measurement.water_l = kwh * plan.water_l_per_kwh
    measurement.intensity = dict(intensity_d)
    if marginal is not None:  # recorded beside the average figure, never charged silently
        measurement.intensity["marginal"] = {
            **marginal,
            "co2e_g": kwh * plan.pue * marginal["gco2e_per_kwh"],
        }
    measurement.pue = plan.pue
    if measurement.notes:
        measurement.notes = [n for n in measurement.notes if n not in _our_notes]
        measurement.notes.extend(notes)
    else:
        measurement.notes = list(notes)
    # One-time notes (a provider's fault, ...) are not in _our_notes, so a re-apply keeps them.
    if once:
        measurement.notes.extend(once)
    return measurement


# ``list_zones`` and ``current``, from .intensity (whose modules for them load on use).
__getattr__, __dir__ = _moved(globals(), {"list_zones": "intensity", "current": "intensity"})
