"""The seam for live intensity providers registered by the user (:func:`register_provider`), and
:func:`current`; imported on first use, re-exported by :mod:`carbonlab.footprint.intensity`."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .intensity import (
    _FACTORIES,
    _INSTANCES,
    BUILTIN_PROVIDERS,
    STATIC,
    Intensity,
    implied_zone,
    lookup,
)


@runtime_checkable
class IntensityProvider(Protocol):
    """A live intensity source (GB Carbon Intensity, Electricity Maps, ...), selected by
    ``settings.intensity = "<name>[:<argument>]"``.

    ``latest`` is called at the end of every measured window, so it must not block: it returns the
    freshest value the provider already holds (fetched off the critical path, with a timeout), or
    None, and carbonlab then uses the static figure and says so.
    """

    name: str

    def latest(self, zone: str | None) -> Intensity | None: ...


def current(
    zone: str | None, spec: str | None = None, settings: Any = None
) -> tuple[Intensity, str | None]:
    """The intensity to charge now, and why a live provider asked for was not used (else None).

    Never blocks: a live provider answers from what it already holds. ``settings`` (a
    :class:`carbonlab.config.Settings`) configures the built-in providers; without it they use the
    resolved settings of this process.

    >>> current("FR")[0].gco2e_per_kwh == lookup("FR").gco2e_per_kwh
    True
    """
    if spec is None or spec.strip() in ("", STATIC):
        return lookup(zone), None
    name, _, arg = spec.partition(":")
    if name.strip().lower() in BUILTIN_PROVIDERS and name not in _FACTORIES:
        from carbonlab.config import with_overrides

        from . import providers

        s = with_overrides(
            settings if settings is not None else providers.process_settings(), intensity=spec
        )
        s.zone = zone
        choice = providers.choose(s, lookup(zone or implied_zone(spec)))
        return choice.intensity, choice.why
    static = lookup(zone)
    provider = _INSTANCES.get(spec)
    if provider is None:
        factory = _FACTORIES.get(name)
        if factory is None:
            known = ", ".join([STATIC, *sorted(_FACTORIES)])
            return static, (
                f"intensity provider {spec!r} is not available in this version (available: "
                f"{known}); used the static figure"
            )
        provider = _INSTANCES[spec] = factory(arg)
    try:
        live = provider.latest(zone)
    except Exception as e:  # a registered provider's bug never breaks a window
        return static, (
            f"intensity provider {spec!r} failed ({type(e).__name__}); used the static figure"
        )
    if live is None:
        return static, f"intensity provider {spec!r} has no reading yet; used the static figure"
    # A registered provider's answer crosses the same boundary as the built-in ones': no
    # configured credential, URL userinfo or query secret goes further.
    from .providers import all_secrets, process_settings
    from .providers.scrub import scrub, secret_values

    return scrub(live, secret_values(all_secrets(settings or process_settings()))), None
