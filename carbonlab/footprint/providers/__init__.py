"""Live grid intensity: GB Carbon Intensity, Electricity Maps, WattTime.

Chosen by ``settings.intensity``::

    intensity = "uk-carbon-intensity:GB"      # or a region: ":London", ":13", ":postcode:RG10"
    intensity = "electricitymaps:FR"          # token: CARBONLAB_ELECTRICITYMAPS_TOKEN
    intensity = "watttime:CAISO_NORTH"        # CARBONLAB_WATTTIME_USERNAME / _PASSWORD; marginal

Nothing here runs at ``import carbonlab``. A measured window calls :func:`choose`, which answers from
memory (or, the first time in a process, a small local cache file) and starts a background refresh
when one is due; it never waits for the network. Fetches are cached on disk for
``intensity_ttl_s`` and shared by every process (kernels, pytest workers): one fetch per TTL.

A fault (timeout, refused connection, 401, 429, 5xx, malformed or truncated JSON, a value out of
range, no credentials) never raises into a window: the static figure is charged, the intensity
record says why (``fallback``), and the Measurement's notes say it once per kind of fault.

>>> from carbonlab.config import Settings
>>> current_intensity(Settings(zone="FR"))["source"]
'Ember 2024 (static)'
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, NamedTuple

from carbonlab.config import ConfigError, Settings

from .. import intensity as _intensity
from ..intensity import STATIC, Intensity, implied_zone, is_live, lookup
from . import electricitymaps, uk_carbon_intensity, watttime
from .cache import default_dir
from .http import CREDENTIALS, Client, Fault
from .live import Config, LiveProvider, Status
from .records import SIGNAL_MARGINAL, Snapshot, hhmm, iso

__all__ = [
    "PROVIDERS",
    "Choice",
    "check_spec",
    "choose",
    "current_intensity",
    "get",
    "prefetch",
    "snapshot",
]

PROVIDERS = {m.NAME: m for m in (uk_carbon_intensity, electricitymaps, watttime)}
SPEC_EXAMPLES = "uk-carbon-intensity:GB, electricitymaps:FR, watttime:CAISO_NORTH"

_instances: dict[tuple, LiveProvider] = {}
_instances_lock = threading.Lock()
_process_settings: Settings | None = None


def process_settings() -> Settings:
    """The settings of this process (for callers that pass none): the runtime's, else resolved."""
    global _process_settings
    from carbonlab import runtime

    rt = runtime.peek()
    if rt is not None:
        return rt.settings
    if _process_settings is None:
        from carbonlab import config

        try:
            _process_settings = config.resolve()
        except ConfigError:
            _process_settings = Settings()
    return _process_settings


# --- settings -> a provider ----------------------------------------------------------------------


def parse_spec(spec: str, zone: str | None = None) -> tuple[str, Any, str]:
    """``(provider name, target, normalised spec)`` of a live setting; :class:`ConfigError` if the
    provider is unknown or its argument malformed. An empty argument means the ``zone`` setting
    (GB for the UK API).

    >>> parse_spec("UK-Carbon-Intensity:london")[2]
    'uk-carbon-intensity:13'
    """
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    mod = PROVIDERS.get(name)
    if mod is None:
        raise ConfigError(
            f"intensity={spec!r}: unknown provider {name!r}; expected {STATIC} or one of "
            f"{', '.join(PROVIDERS)} (e.g. {SPEC_EXAMPLES})"
        )
    arg = arg.strip()
    if mod is uk_carbon_intensity:
        t = uk_carbon_intensity.parse_arg(arg)
        norm = (
            t.regionid
            if t.regionid is not None
            else f"postcode:{t.postcode}"
            if t.postcode
            else "GB"
        )
        return name, t, f"{name}:{norm}"
    if not arg:
        if mod is watttime or not zone:
            raise ConfigError(
                f"intensity={spec!r}: {name} needs a "
                + (
                    "region, e.g. watttime:CAISO_NORTH"
                    if mod is watttime
                    else "zone, e.g. electricitymaps:FR"
                )
            )
        arg = zone
    t = mod.parse_arg(arg)
    return name, t, f"{name}:{t}"


def check_spec(settings: Settings) -> None:
    """Raise :class:`ConfigError` if ``settings.intensity`` names an unknown provider or a malformed
    argument (credentials are not checked: a missing token is a fault with a note, not an error).
    Providers registered with :func:`~carbonlab.footprint.intensity.register_provider` pass."""
    spec = settings.intensity
    if not is_live(spec):
        return
    name = spec.strip().partition(":")[0].strip()
    if name in _intensity._FACTORIES:
        return
    parse_spec(spec, settings.zone)


def _base_url(mod: Any, settings: Settings) -> str:
    """The provider's base URL; :class:`ConfigError` (which never repeats the URL's userinfo or
    query) for one carrying ``user:password@`` or a query string, wherever it came from (a Settings
    built in code, or the raw environment variable)."""
    from carbonlab import config as _config

    url = getattr(settings, mod.URL_SETTING, None)
    origin = "settings"
    if not url:
        url, origin = os.environ.get(mod.URL_ENV), f"environment variable {mod.URL_ENV}"
    if not url:
        return mod.DEFAULT_URL
    try:
        checked = _config._CONVERTERS[mod.URL_SETTING](url)
    except ConfigError as e:
        raise ConfigError(f"{e} (from {origin})") from None
    if checked is None:
        return mod.DEFAULT_URL
    return checked


def all_secrets(settings: Settings) -> tuple[str, ...]:
    """Every credential configured for any provider (settings or environment), and the WattTime
    Basic header made of them: what must never appear in anything a provider returns."""
    tok = _secret(settings.electricitymaps_token, electricitymaps.TOKEN_ENV)
    pw = _secret(settings.watttime_password, "CARBONLAB_WATTTIME_PASSWORD")
    user = settings.watttime_username or os.environ.get("CARBONLAB_WATTTIME_USERNAME")
    out = [tok, pw]
    if user and pw:
        from .http import basic_auth

        out.append(basic_auth(user, pw).split(" ", 1)[1])
    return tuple(v for v in out if v)


def _secret(value: Any, env: str) -> str | None:
    if value is not None:
        return value.reveal() if hasattr(value, "reveal") else str(value)
    return os.environ.get(env) or None


def _credentials(mod: Any, settings: Settings) -> tuple[str, ...] | None:
    """The secrets a provider needs, or None when none are configured."""
    if mod is electricitymaps:
        tok = _secret(settings.electricitymaps_token, electricitymaps.TOKEN_ENV)
        return (tok,) if tok else None
    if mod is watttime:
        user = settings.watttime_username or os.environ.get("CARBONLAB_WATTTIME_USERNAME")
        pw = _secret(settings.watttime_password, "CARBONLAB_WATTTIME_PASSWORD")
        return (user, pw) if user and pw else None
    return ()


_MISSING = {
    "electricitymaps": "no Electricity Maps token (set CARBONLAB_ELECTRICITYMAPS_TOKEN)",
    "watttime": "no WattTime credentials (set CARBONLAB_WATTTIME_USERNAME and CARBONLAB_WATTTIME_PASSWORD)",
}
_AUTH_HINTS = {
    "electricitymaps": "check CARBONLAB_ELECTRICITYMAPS_TOKEN",
    "watttime": "check CARBONLAB_WATTTIME_USERNAME and CARBONLAB_WATTTIME_PASSWORD",
}


def _memo_key(s: Settings) -> tuple:
    return (
        s.intensity,
        s.zone,
        s.uk_ci_url,
        s.electricitymaps_url,
        s.watttime_url,
        s.intensity_ttl_s,
        s.intensity_timeout_s,
        s.intensity_max_age_s,
        s.intensity_cache_dir,
        s.electricitymaps_token,
        s.watttime_username,
        s.watttime_password,
    )


_memo: dict[tuple, LiveProvider] = {}
_said: set[str] = set()  # one-time notes that belong to no provider instance


def get(settings: Settings) -> LiveProvider:
    """The provider instance for ``settings.intensity`` (one per setting, URL, TTL ... and
    credentials, per process); :class:`ConfigError` for a bad setting.

    Windows call this every time, so the answer is memoised on the raw setting values; the
    ``CARBONLAB_*`` URL and credential variables are read when a setting is first seen.
    """
    k = _memo_key(settings)
    p = _memo.get(k)
    if p is None:
        p = _get(settings)
        if len(_memo) >= 64:
            _memo.clear()
        _memo[k] = p
    return p


def _get(settings: Settings) -> LiveProvider:
    name, target, spec = parse_spec(settings.intensity or "", settings.zone)
    mod = PROVIDERS[name]
    config = Config(
        spec=spec,
        base_url=_base_url(mod, settings),
        ttl_s=settings.intensity_ttl_s,
        timeout_s=settings.intensity_timeout_s,
        max_age_s=settings.intensity_max_age_s,
        cache_dir=Path(settings.intensity_cache_dir).expanduser()
        if settings.intensity_cache_dir
        else default_dir(),
    )
    creds = _credentials(mod, settings)
    secrets = all_secrets(settings)
    # Instances differ by credentials too; the key holds their hash, not them.
    key = (config, hash(creds), hash(secrets))
    p = _instances.get(key)
    if p is not None:
        return p
    with _instances_lock:
        p = _instances.get(key)
        if p is None:
            p = _instances[key] = _make(mod, target, config, creds, secrets)
    return p


def _make(
    mod: Any,
    target: Any,
    config: Config,
    creds: tuple[str, ...] | None,
    secrets: tuple[str, ...] = (),
) -> LiveProvider:
    def credentials() -> tuple[str, ...]:
        if creds is None:
            raise Fault(CREDENTIALS, _MISSING[mod.NAME])
        return creds

    if mod is uk_carbon_intensity:

        def fetch_uk(client: Client, now: float, want: bool, secrets: tuple[str, ...]) -> Snapshot:
            return uk_carbon_intensity.fetch(target, client, config.spec, now, want_forecast=want)

        return LiveProvider(mod.NAME, config, fetch_uk, secrets=secrets)
    if mod is electricitymaps:

        def fetch_em(client: Client, now: float, want: bool, secrets: tuple[str, ...]) -> Snapshot:
            return electricitymaps.fetch(
                target, client, secrets[0], config.spec, now, want_forecast=want
            )

        return LiveProvider(
            mod.NAME,
            config,
            fetch_em,
            credentials,
            auth_hint=_AUTH_HINTS[mod.NAME],
            secrets=secrets,
        )
    session = watttime.Session()  # the bearer token lives here, in memory only

    def fetch_wt(client: Client, now: float, want: bool, secrets: tuple[str, ...]) -> Snapshot:
        return watttime.fetch(target, client, session, secrets[0], secrets[1], config.spec, now)

    return LiveProvider(
        mod.NAME, config, fetch_wt, credentials, auth_hint=_AUTH_HINTS[mod.NAME], secrets=secrets
    )


def prefetch(settings: Settings) -> None:
    """Start the background refresh for ``settings.intensity`` now (surfaces call this when they
    load, so the first window already has a reading); a no-op for static or a bad setting."""
    if not is_live(settings.intensity):
        return
    try:
        get(settings).status()
    except ConfigError:
        pass


def reset() -> None:
    """Forget every provider instance of this process (tests)."""
    global _process_settings
    with _instances_lock:
        _instances.clear()
        _memo.clear()
        _said.clear()
    _process_settings = None


# --- what a window charges -----------------------------------------------------------------------


class Choice(NamedTuple):  # made at every window end: a NamedTuple is cheap
    """The intensity a window charges, its record, and what to tell the user."""

    intensity: Intensity  # charged: ``co2e = kWh × PUE × intensity.gco2e_per_kwh``
    record: dict[str, Any]  # the Measurement.intensity record (a fresh dict; age included)
    why: str | None  # why the live value was not charged (every time), else None
    notes_once: tuple[str, ...] = ()  # notes this process has not shown yet
    marginal: dict[str, Any] | None = None  # a marginal signal recorded beside the average
    status: Status | None = None


def _age(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def marginal_record(live: Intensity, age_s: float | None, snap: Snapshot | None) -> dict[str, Any]:
    d = {
        "gco2e_per_kwh": live.gco2e_per_kwh,
        "signal": SIGNAL_MARGINAL,
        "zone": live.zone,
        "source": live.source,
        "basis": live.basis,
        "provider": live.provider,
        "at": live.at,
        "age_s": None if age_s is None else round(age_s, 1),
        "valid_from": live.valid_from,
        "valid_to": live.valid_to,
    }
    if snap is not None and "value_in_units" in snap.extra:
        d["value_in_units"] = snap.extra["value_in_units"]
        d["units"] = snap.extra.get("units")
    return d


def choose(settings: Settings, static: Intensity | None = None) -> Choice:
    """What a window ending now charges under ``settings`` (a live ``settings.intensity``).

    Never blocks on the network and never raises for a fault; ``static`` is the fallback (default:
    the static figure of the zone, or of the zone the provider implies).
    """
    if static is None:
        static = lookup(settings.zone or implied_zone(settings.intensity))
    spec = (settings.intensity or "").strip()
    try:
        p = get(settings)
    except ConfigError as e:  # validate() was not called: say it once, charge the static figure
        why = f"live intensity ({spec}) not used: {e}; used the static figure ({static.source})"
        rec = static.to_dict()
        rec["fallback"] = {"provider": spec, "reason": str(e)}
        once = () if why in _said else (why,)
        _said.add(why)
        return Choice(static, rec, why, once)
    st = p.status()
    once = p.once
    now = p.clock()
    spec = p.config.spec
    if st.usable and st.snapshot is not None:
        live = p.intensity_of(st.snapshot)
        notes: tuple[str, ...] = ()
        if st.fault is None:
            p.recovered()
        else:
            notes += once(
                st.fault_key or "fault",
                f"live intensity ({spec}) refresh failed: {st.fault}; kept the reading fetched at "
                f"{hhmm(st.snapshot.fetched_at)} UTC ({_age(st.age_s or 0.0)} old)"
                + _next_try(st, now),
            )
        if live.signal == SIGNAL_MARGINAL and not settings.intensity_marginal:
            m = marginal_record(live, st.age_s, st.snapshot)
            notes += once(
                "marginal-unused",
                f"marginal signal recorded, not charged: {live.source} {live.gco2e_per_kwh:.0f} "
                f"gCO2e/kWh for {live.zone}; CO2e uses the average figure ({static.source}); "
                "set intensity_marginal = true to charge the marginal signal",
            )
            rec = static.to_dict()
            rec["marginal"] = m
            return Choice(static, rec, None, notes, m, st)
        rec = live.to_dict()
        rec["age_s"] = round(st.age_s or 0.0, 1)
        if st.fault is not None:
            rec["refresh_fault"] = st.fault
        if live.signal == SIGNAL_MARGINAL:
            notes += once(
                "marginal-used",
                f"CO2e charged at a marginal signal ({live.source}), not an average intensity "
                "(intensity_marginal = true)",
            )
        return Choice(live, rec, None, notes, None, st)
    if st.snapshot is not None:  # too old to charge
        reason, key = (
            f"the last reading is {_age(st.age_s or 0.0)} old (intensity_max_age_s = "
            f"{settings.intensity_max_age_s:g} s)",
            "stale",
        )
        if st.fault:
            reason += f"; last fault: {st.fault}"
    elif st.fault is not None:
        reason, key = st.fault, st.fault_key or "fault"
    else:
        reason, key = "no reading yet (the first fetch is under way)", "pending"
    why = f"live intensity ({spec}) unavailable: {reason}; used the static figure ({static.source})"
    rec = static.to_dict()
    rec["fallback"] = {"provider": spec, "reason": reason}
    return Choice(static, rec, why, once(key, why + _next_try(st, now)), None, st)


def _next_try(st: Status, now: float) -> str:
    if st.retry_at > now:
        return f"; next try in {_age(st.retry_at - now)}"
    return ""


# --- for surfaces: the figure now, and the forecast ---------------------------------------------


def snapshot(settings: Settings) -> tuple[Snapshot | None, Status | None]:
    """The provider's last good snapshot and status (non-blocking); (None, None) when
    ``settings.intensity`` is not live."""
    if not is_live(settings.intensity):
        return None, None
    try:
        p = get(settings)
    except ConfigError:
        return None, None
    st = p.status()
    return st.snapshot, st


def current_intensity(settings: Settings, *, wait_s: float = 0.0) -> dict[str, Any]:
    """The grid figure a window would charge now, as a JSON-ready dict, for a surface to show:
    ``gco2e_per_kwh``, ``zone``, ``name``, ``source``, ``basis``, ``at`` (fetched), ``age_s``,
    ``provider`` ("static" or the setting), ``live`` (bool), ``signal``, ``fallback`` / ``marginal``
    when they apply, ``fault`` and ``next_try_at`` while failing, ``forecast`` (a summary, or None)
    and ``forecast_note``, ``index`` (GB API), ``history`` (Electricity Maps, last 24 h).

    Non-blocking unless ``wait_s`` > 0 (the CLI): then it waits at most that long for a refresh that
    is due. Raises :class:`ConfigError` for an unknown zone or a malformed provider setting.
    """
    lookup(settings.zone)  # an unknown zone is a usage error, whichever provider
    if not is_live(settings.intensity):
        d = lookup(settings.zone).to_dict()
        d.update(provider=STATIC, live=False, signal="average", age_s=None)
        d.update(fault=None, next_try_at=None, forecast=None, forecast_note=None)
        return d
    check_spec(settings)
    name = settings.intensity.strip().partition(":")[0].strip()
    if name in _intensity._FACTORIES:  # a provider registered by the user
        i, why = _intensity.current(settings.zone, settings.intensity, settings)
        d = i.to_dict()
        d.update(provider=settings.intensity, live=why is None, fallback=why)
        return d
    p = get(settings)
    if wait_s > 0:
        st = p.status(kick=False)
        stale = st.snapshot is None or p.clock() - st.snapshot.fetched_at >= p.config.ttl_s
        if stale and (st.snapshot is None or p.clock() >= st.retry_at):
            p.start_refresh()
        p.wait(wait_s)
    c = choose(settings)
    st = c.status
    d = dict(c.record)
    snap = st.snapshot if st is not None else None
    d["provider"] = p.config.spec
    d["live"] = c.why is None and c.marginal is None
    d.setdefault("signal", "average")
    d.setdefault("age_s", None)
    d["fault"] = st.fault if st is not None else None
    d["next_try_at"] = iso(st.retry_at) if st is not None and st.retry_at > p.clock() else None
    d["forecast"] = None
    d["forecast_note"] = None
    if snap is not None:
        if snap.forecast:
            d["forecast"] = {
                "periods": len(snap.forecast),
                "start": iso(snap.forecast[0].start),
                "end": iso(snap.forecast[-1].end),
                "signal": snap.signal,
                "source": snap.source,
            }
        d["forecast_note"] = snap.forecast_note
        if "index" in snap.extra:
            d["index"] = snap.extra["index"]
        if snap.history:
            vals = [x.gco2e_per_kwh for x in snap.history]
            d["history"] = {
                "periods": len(vals),
                "start": iso(snap.history[0].start),
                "end": iso(snap.history[-1].end),
                "min": min(vals),
                "max": max(vals),
                "mean": round(sum(vals) / len(vals), 1),
            }
    return d


def wait_time(settings: Settings) -> float:
    """How long the CLI waits for a refresh: every request of one refresh at its timeout, plus a
    margin; bounded."""
    return min(60.0, 4 * 2 * settings.intensity_timeout_s + 1.0)
