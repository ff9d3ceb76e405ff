"""Settings resolution: explicit arguments > CARBONLAB_* environment > [tool.carbonlab] > defaults.

Every resolved value remembers where it came from, so `carbonlab devices` and `%carbon status` can say
"PUE 1.0 (default)" rather than a bare number.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from ._record import field, fields, record

ENV_PREFIX = "CARBONLAB_"


class ConfigError(ValueError):
    """A setting with a value carbonlab cannot use; the message names the value and what is accepted."""


def _float(name: str, lo: float, hi: float):
    def conv(v: Any) -> float:
        if isinstance(v, bool):  # TOML `pue = true` is not a number (float(True) would be 1.0)
            raise ConfigError(f"{name}={v!r}: expected a number between {lo} and {hi}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={v!r}: expected a number between {lo} and {hi}") from None
        if not lo <= f <= hi:
            raise ConfigError(f"{name}={v!r}: expected a number between {lo} and {hi}")
        return f

    return conv


def _bool(name: str):
    def conv(v: Any) -> bool:
        if isinstance(v, bool):
            return v
        s = str(v).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={v!r}: expected one of true/false, yes/no, on/off, 1/0")

    return conv


def redact_url(url: str) -> str:
    """``url`` without userinfo and query string, for messages (they may hold credentials).

    >>> redact_url("https://user:pw@example.org/v3/x?token=abc#f")
    'https://***@example.org/v3/x?***'
    """
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)?([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$", url.strip())
    if m is None:  # pragma: no cover - the pattern matches any string
        return "***"
    scheme, netloc, path, query, _ = m.groups()
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme or ''}{netloc}{path}{'?***' if query else ''}"


def _url(name: str):
    def conv(v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str):
            raise ConfigError(
                f"{name}: expected an http:// or https:// URL, got a {type(v).__name__}"
            )
        u = v.strip().rstrip("/")
        if not u:
            return None
        shown = redact_url(u)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@", u):
            # Userinfo would travel into messages, notes, the cache and history: refused, not used.
            raise ConfigError(
                f"{name}={shown!r}: a user:password@ in the URL is refused (it would be shown and "
                "stored); give the credential in its own setting (a token or password variable)"
            )
        if "?" in u or "#" in u:
            raise ConfigError(
                f"{name}={shown!r}: a query string or fragment is refused (it may hold a "
                "credential); give the credential in its own setting"
            )
        if not re.match(r"^https?://[^/\s?#@]+(/[^\s?#]*)?$", u):
            raise ConfigError(
                f"{name}={shown!r}: expected an http:// or https:// URL, e.g. http://127.0.0.1:8080"
            )
        return u

    return conv


class Secret:
    """A credential (API token, password): kept out of every repr, str and message.

    >>> Secret("abc")
    Secret('***')
    >>> Secret("abc").reveal()
    'abc'
    """

    __slots__ = ("_hash", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._hash = hash(("carbonlab.Secret", value))

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self._value == other._value

    def __hash__(self) -> int:
        return self._hash


def _secret(name: str):
    def conv(v: Any) -> Secret | None:
        if v is None or isinstance(v, Secret):
            return v
        if not isinstance(v, str):
            raise ConfigError(f"{name}: expected a string")  # never echo the value
        return Secret(v.strip()) if v.strip() else None

    return conv


def _str(name: str):
    def conv(v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str):
            raise ConfigError(f"{name}={v!r}: expected a string")
        return v.strip() or None

    return conv


@record
class Settings:
    """Resolved settings. ``sources`` maps each field to where its value came from."""

    # Grid zone: country code (FR), Electricity Maps zone (US-CAL-CISO) or cloud region (aws:eu-west-3).
    zone: str | None = None
    # Intensity provider, e.g. "static", "uk-carbon-intensity:GB", "electricitymaps:FR".
    intensity: str | None = None
    pue: float = 1.0
    wue_l_per_kwh: float = 0.0  # on-site water use effectiveness
    embodied: bool = True
    lifetime_years: float = 4.0  # amortisation period for embodied carbon
    sample_hz: float = 4.0  # background sampler rate while a window is open
    gpu_sync: bool = True  # synchronise torch/jax/cupy (already imported) at window edges
    # Measure each GPU's idle power once, when the meters open (about half a second), and report
    # each window's energy above it beside the gross figure. Read when the meters open (environment
    # or pyproject), not per window.
    gpu_idle_baseline: bool = False
    cpu_w_per_core: float | None = None  # overrides the TDP table
    ram_w_per_gb: float = 0.375
    history: str | None = None  # SQLite path for notebook history
    threshold_j: float = 1.0  # automatic mode prints nothing for cells below this energy
    # Live intensity providers (carbonlab.footprint.providers): fetched in the background, cached on
    # disk and shared by every process for intensity_ttl_s; a reading older than intensity_max_age_s
    # is not charged (the static figure is, with a note).
    intensity_ttl_s: float = 900.0
    intensity_timeout_s: float = 3.0  # per HTTP request, off the critical path
    intensity_max_age_s: float = 10800.0
    # True: a marginal signal (WattTime) is charged instead of the average intensity.
    intensity_marginal: bool = False
    intensity_cache_dir: str | None = None  # default: $XDG_CACHE_HOME/carbonlab/intensity
    uk_ci_url: str | None = None  # default https://api.carbonintensity.org.uk
    electricitymaps_url: str | None = None  # default https://api.electricitymaps.com/v3
    watttime_url: str | None = None  # default https://api.watttime.org
    # Credentials: from the environment or an explicit argument, never from pyproject.toml; never
    # shown (Secret hides them from repr, str and messages).
    electricitymaps_token: Secret | None = field(default=None, repr=False)
    watttime_username: str | None = None
    watttime_password: Secret | None = field(default=None, repr=False)
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Settings that could not be used (lenient resolution only): one sentence each, naming the setting,
    # its source and the fallback. Windows carry them as notes.
    problems: list[str] = field(default_factory=list, compare=False, repr=False)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")


_CONVERTERS = {
    "zone": _str("zone"),
    "intensity": _str("intensity"),
    "pue": _float("pue", 1.0, 5.0),
    "wue_l_per_kwh": _float("wue_l_per_kwh", 0.0, 20.0),
    "embodied": _bool("embodied"),
    "lifetime_years": _float("lifetime_years", 0.1, 30.0),
    "sample_hz": _float("sample_hz", 0.1, 50.0),
    "gpu_sync": _bool("gpu_sync"),
    "gpu_idle_baseline": _bool("gpu_idle_baseline"),
    "cpu_w_per_core": _float("cpu_w_per_core", 0.0, 1000.0),
    "ram_w_per_gb": _float("ram_w_per_gb", 0.0, 100.0),
    "history": _str("history"),
    "threshold_j": _float("threshold_j", 0.0, 1e12),
    "intensity_ttl_s": _float("intensity_ttl_s", 10.0, 86400.0),
    "intensity_timeout_s": _float("intensity_timeout_s", 0.01, 60.0),
    "intensity_max_age_s": _float("intensity_max_age_s", 60.0, 7 * 86400.0),
    "intensity_marginal": _bool("intensity_marginal"),
    "intensity_cache_dir": _str("intensity_cache_dir"),
    "uk_ci_url": _url("uk_ci_url"),
    "electricitymaps_url": _url("electricitymaps_url"),
    "watttime_url": _url("watttime_url"),
    "electricitymaps_token": _secret("electricitymaps_token"),
    "watttime_username": _str("watttime_username"),
    "watttime_password": _secret("watttime_password"),
}
# Credentials are refused in pyproject.toml, which is usually committed.
SECRET_FIELDS = frozenset({"electricitymaps_token", "watttime_password"})
FIELD_NAMES = tuple(f.name for f in fields(Settings) if f.name not in ("sources", "problems"))
# Short spellings accepted in pyproject and the environment.
_ALIASES = {"wue": "wue_l_per_kwh", "lifetime": "lifetime_years"}


def find_pyproject(start: Path | None = None) -> Path | None:
    d = (start or Path.cwd()).resolve()
    for p in (d, *d.parents):
        candidate = p / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


# `[tool.carbonlab]`, `[tool.carbonlab.x]`, or a `[tool]` table that may hold `carbonlab = {...}`.
# A pattern, compiled where it is used (re caches it): a project without pyproject.toml never
# needs it (~0.7 M instructions at import).
_MAY_HAVE_TABLE = rb"tool\s*\.\s*\"?carbonlab|^\s*\[\s*tool\s*\]"


def read_pyproject_table(path: Path) -> dict[str, Any]:
    try:
        if not re.search(_MAY_HAVE_TABLE, path.read_bytes(), re.MULTILINE):
            return {}  # the common case: no [tool.carbonlab]; skip importing and running a TOML parser
    except OSError as e:
        raise ConfigError(f"{path}: cannot read [tool.carbonlab]: {e}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: cannot read [tool.carbonlab]: not UTF-8 (byte {e.start}); TOML files are UTF-8"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read [tool.carbonlab]: {e}") from None
    tool = data.get("tool", {})
    table = tool.get("carbonlab", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.carbonlab] must be a table")
    return table


def _canonical(key: str) -> str:
    k = key.strip().lower().replace("-", "_")
    return _ALIASES.get(k, k)


def origin_name(origin: str, raw_key: str) -> str:
    if origin == "environment":
        return f"environment variable {ENV_PREFIX}{raw_key.upper()}"
    if origin.startswith("pyproject"):
        return f"[tool.carbonlab] {raw_key} in {origin[len('pyproject (') : -1]}"
    return origin


def _default(key: str) -> Any:
    return getattr(Settings(), key)


def resolve(
    overrides: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    lenient: bool = False,
) -> Settings:
    """Resolve settings; raise ConfigError naming the bad value and its source.

    ``lenient=True`` (a measuring window, which must never fail the user's cell over a setting)
    raises nothing: a setting that cannot be used keeps the value of the layer below (the default
    when none), and ``Settings.problems`` says which, where from and what is used instead. An
    unreadable pyproject.toml is skipped whole, with one problem.
    """
    env = os.environ if env is None else env
    s = Settings()
    layers: list[tuple[str, dict[str, Any]]] = []
    pp = find_pyproject(cwd)
    if pp is not None:
        try:
            table = read_pyproject_table(pp)
        except ConfigError as e:
            if not lenient:
                raise
            s.problems.append(f"{e}; its settings are ignored")
            table = {}
        layers.append((f"pyproject ({pp})", table))
    env_layer = {
        k[len(ENV_PREFIX) :].lower(): v
        for k, v in env.items()
        if k.startswith(ENV_PREFIX) and v != ""
    }
    layers.append(("environment", env_layer))
    layers.append(("argument", {k: v for k, v in (overrides or {}).items() if v is not None}))
    for origin, layer in layers:
        for raw_key, value in layer.items():
            key = _canonical(str(raw_key))
            try:
                if key not in _CONVERTERS:
                    if origin == "environment":
                        continue  # other CARBONLAB_* variables belong to other modules
                    raise ConfigError(
                        f"unknown setting {raw_key!r} in {origin}; known: {', '.join(FIELD_NAMES)}"
                    )
                if key in SECRET_FIELDS and origin.startswith("pyproject"):
                    raise ConfigError(
                        f"{raw_key} in {origin}: credentials do not belong in pyproject.toml (it "
                        f"is usually committed); set {ENV_PREFIX}{key.upper()} in the environment "
                        "instead"
                    )
                try:
                    value = _CONVERTERS[key](value)
                except ConfigError as e:
                    raise ConfigError(f"{e} (from {origin_name(origin, str(raw_key))})") from None
            except ConfigError as e:
                if not lenient:
                    raise
                if key in _CONVERTERS:
                    kept = getattr(s, key)
                    shown = "not set" if kept is None else repr(kept)
                    if key in SECRET_FIELDS:
                        shown = "not set" if kept is None else "the earlier value"
                    s.problems.append(f"{e}; using {shown} ({s.source(key)})")
                else:
                    s.problems.append(f"{e}; ignored")
                continue
            setattr(s, key, value)
            s.sources[key] = origin
    return s


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """A copy of ``settings`` with validated overrides (None values are ignored)."""
    from ._record import replace

    out = replace(settings, sources=dict(settings.sources))
    for raw_key, value in overrides.items():
        if value is None:
            continue
        key = _canonical(raw_key)
        if key not in _CONVERTERS:
            raise ConfigError(f"unknown setting {raw_key!r}; known: {', '.join(FIELD_NAMES)}")
        setattr(out, key, _CONVERTERS[key](value))
        out.sources[key] = "argument"
    return out
