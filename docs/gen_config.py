"""Write docs/configuration.md from carbonlab/config.py, so the reference cannot drift from the code.

    .venv/bin/python docs/gen_config.py          # rewrite docs/configuration.md
    .venv/bin/python docs/gen_config.py --check  # exit 1 if the file is not what this would write

Names, types, defaults, accepted ranges, environment variables, pyproject keys, aliases and which
settings are credentials all come from ``carbonlab.config``. Only the sentence saying what each
setting means is written here (``MEANINGS``); a setting without one, or a meaning for a setting
that no longer exists, is an error, so adding a setting to config.py without documenting it fails
``tests/test_docs.py``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "configuration.md"

# What each setting means, and what happens when it is unset (None). One entry per Settings field.
MEANINGS: dict[str, str] = {
    "zone": "Grid zone whose carbon intensity turns energy into CO2e: a country code (`FR`), an "
    "Ember aggregate (`EU`), an Electricity Maps zone (`US-CAL-CISO`) or a cloud region "
    "(`aws:eu-west-3`, `gcp:europe-west1`, `azure:westeurope`); `carbonlab zones QUERY` lists them. "
    "Unset: the World average, labelled *no zone configured* (never guessed from the network). "
    "An unknown zone is a usage error naming close matches.",
    "intensity": "Where the grid intensity comes from: unset or `static` for the shipped yearly "
    "tables, or a live provider: `uk-carbon-intensity:GB` (or a GB region or postcode), "
    "`electricitymaps:FR`, `watttime:CAISO_NORTH`. See [intensity.md](intensity.md).",
    "pue": "Power usage effectiveness of the facility: CO2e and water are charged on IT energy "
    "× PUE. Unset with a cloud-region zone: the provider's published fleet PUE, said in the note.",
    "wue_l_per_kwh": "On-site water use effectiveness (litres evaporated per IT kWh), added to the "
    "water consumed generating the electricity.",
    "embodied": "Charge each GPU's manufacturing footprint, amortised over `lifetime_years` of "
    "wall time, as `embodied_co2e_g`.",
    "lifetime_years": "Amortisation period of embodied carbon.",
    "sample_hz": "Rate of the background sampler while a window is open: power integration "
    "(NVML power meters are polled at least every 0.25 s) and live samples for the sidebar and "
    "widget (sent at most 4 times a second).",
    "gpu_sync": "At each window's edges, wait for queued GPU work of torch, cupy or jax when they "
    "are already imported and hold a GPU context, so asynchronous kernels are charged to the cell "
    "or test that queued them. Never imports a framework.",
    "gpu_idle_baseline": "Measure each GPU's idle power once when the meters open (about half a "
    "second) and report each window's energy above it (`params.active_energy_j`) beside the gross "
    "figure. Read when the meters open.",
    "cpu_w_per_core": "Watts per busy core for the CPU-time model (used when RAPL is not "
    "readable). Unset: the CPU's TDP ÷ physical cores from the TDP table, else 4 W.",
    "ram_w_per_gb": "Watts per resident GB for the RAM model (after Green Algorithms' "
    "0.3725 W/GB).",
    "history": "SQLite file of the notebook history (`carbonlab.history()`). Unset: "
    "`$XDG_DATA_HOME/carbonlab/history.sqlite` (`~/.local/share/...`; `%LOCALAPPDATA%` on "
    "Windows).",
    "threshold_j": "In automatic mode (`%load_ext carbonlab`), cells that used less energy than "
    "this print no summary (they are still measured and stored). `%carbon on --threshold` "
    "overrides it for the session.",
    "intensity_ttl_s": "A live provider fetches at most once per this many seconds, for all "
    "processes together (shared disk cache).",
    "intensity_timeout_s": "Timeout of each HTTP request to a live provider (a whole response "
    "read gets twice this). Requests run in a background thread, never in a cell or a test.",
    "intensity_max_age_s": "A live reading older than this is not charged; the static figure is, "
    "with a note.",
    "intensity_marginal": "Charge a marginal signal (WattTime MOER) instead of the average "
    "intensity. Off: the marginal figure is recorded beside the average one, not charged.",
    "intensity_cache_dir": "Where live readings are cached and shared between processes. Unset: "
    "`$XDG_CACHE_HOME/carbonlab/intensity`.",
    "uk_ci_url": "Base URL of the GB Carbon Intensity API. Unset: "
    "`https://api.carbonintensity.org.uk` (tests point it at 127.0.0.1).",
    "electricitymaps_url": "Base URL of the Electricity Maps API. Unset: "
    "`https://api.electricitymaps.com/v3`.",
    "watttime_url": "Base URL of the WattTime API. Unset: `https://api.watttime.org`.",
    "electricitymaps_token": "Electricity Maps API token, sent in a request header only; never "
    "shown, cached or recorded.",
    "watttime_username": "WattTime account name.",
    "watttime_password": "WattTime password; never shown, cached or recorded.",
}

_KINDS = {
    "_float": "number",
    "_bool": "boolean",
    "_url": "URL",
    "_secret": "string (secret)",
    "_str": "string",
}


def _accepted(conv: Any) -> str:
    kind = conv.__qualname__.split(".")[0]
    nonlocals = inspect.getclosurevars(conv).nonlocals
    if kind == "_float":
        lo, hi = nonlocals["lo"], nonlocals["hi"]
        return f"number, {lo:g} to {hi:g}"
    if kind == "_bool":
        return "`true`/`false` (also yes/no, on/off, 1/0)"
    if kind == "_url":
        return "`http://` or `https://` URL"
    return _KINDS[kind]


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value!r}`"


def rows() -> list[dict[str, str]]:
    """One record per setting, in the order of ``carbonlab.config.Settings``."""
    from carbonlab import config
    from carbonlab._record import fields

    names = list(config.FIELD_NAMES)
    missing = [n for n in names if n not in MEANINGS]
    stale = [n for n in MEANINGS if n not in names]
    if missing or stale:
        raise SystemExit(
            f"docs/gen_config.py: MEANINGS is out of date with carbonlab/config.py: "
            f"undocumented {missing}, no longer settings {stale}"
        )
    unconverted = [n for n in names if n not in config._CONVERTERS]
    if unconverted:
        raise SystemExit(f"docs/gen_config.py: settings without a converter: {unconverted}")
    aliases: dict[str, list[str]] = {}
    for short, name in config._ALIASES.items():
        aliases.setdefault(name, []).append(short)
    defaults = {f.name: f.default for f in fields(config.Settings)}
    out = []
    for name in names:
        spellings = [name, *aliases.get(name, [])]
        env = ", ".join(f"`{config.ENV_PREFIX}{s.upper()}`" for s in spellings)
        if name in config.SECRET_FIELDS:
            key = "refused (credentials stay out of committed files)"
        else:
            key = ", ".join(f"`{s}`" for s in spellings)
        out.append(
            {
                "name": name,
                "env": env,
                "key": key,
                "default": _default(defaults[name]),
                "accepted": _accepted(config._CONVERTERS[name]),
                "meaning": MEANINGS[name],
            }
        )
    return out


HEADER = """\
# Configuration reference

<!-- Generated by docs/gen_config.py from carbonlab/config.py: edit those, then run
     .venv/bin/python docs/gen_config.py (tests/test_docs.py fails when this file is stale). -->

Every carbonlab surface (`%load_ext carbonlab`, `%%carbon`, `carbonlab run`, `carbonlab.track()`,
the pytest plugin) reads the same settings. Each value is taken from the first of:

1. an explicit argument: `carbonlab.track(zone="FR")`, `%%carbon --zone FR`, `carbonlab run --zone FR`;
2. in IPython and Jupyter kernels, the session's IPython configuration of `CarbonMagics` (below):
   `%carbon zone FR`, `%config CarbonMagics.zone = "FR"`, or `c.CarbonMagics.zone = "FR"` in
   `ipython_config.py`: the user configured this kernel explicitly, so it beats the environment
   and the project's defaults; the last one set wins;
3. the environment: `CARBONLAB_` + the setting's name in upper case (`CARBONLAB_ZONE=FR`); an empty
   variable counts as unset;
4. `[tool.carbonlab]` in the nearest `pyproject.toml`, looking up from the working directory (for a
   notebook: the kernel's working directory, usually the notebook's folder);
5. the default below.

Each resolved value remembers where it came from: `%carbon status` says `zone: FR (environment)`
or `zone: none set (default)`, and every Measurement's notes name the source of its grid intensity
and PUE (`PUE 1.0 (default: ...)`). A bad value (a PUE of 0.5, an unknown zone, an unknown key in
`[tool.carbonlab]`, a `pyproject.toml` that is not valid UTF-8 TOML) is a usage error naming the
value, where it came from (`CARBONLAB_PUE`, or the `pyproject.toml` path) and what is accepted,
raised before any work runs by the `carbonlab` commands and pytest. A measuring window in a cell or a
decorated function (`carbonlab.track()`, `%%carbon`) never fails the user's code over a setting: the
bad value is skipped (the layer below, or the default, is used) and every window's notes say which
setting, where from and what was used instead. Base URLs (`*_url`) refuse a `user:password@` and a
query string, without repeating them: credentials go in their own settings. Unknown `CARBONLAB_*`
variables are ignored (other modules own some, below). Keys in `pyproject.toml` may use `-` for `_` (`lifetime-years`).

```toml
[tool.carbonlab]
zone = "FR"
pue = 1.2
history = "~/notebook-energy.sqlite"
```

Settings are read once per process, when carbonlab first measures (the kernel's `%load_ext`, the
first `track()`, the start of a pytest run): after changing the environment or `pyproject.toml`,
restart the kernel. In a kernel, `%carbon zone FR` and `%config CarbonMagics.*` (below) change the
zone, intensity provider, PUE, threshold and widget settings for the session without a restart.

## Settings

| setting | environment | `[tool.carbonlab]` key | default | accepted | meaning |
|---|---|---|---|---|---|
"""

FOOTER = """
## Other environment variables

Not settings of `carbonlab.config`, but read by carbonlab:

| variable | read by | meaning |
|---|---|---|
| `PYTEST_CARBON_BUDGET`, `PYTEST_CARBON_SESSION_BUDGET` | pytest plugin | default per-test and session budgets; see [pytest.md](pytest.md) for every option and ini key |
| `JPY_SESSION_NAME` | IPython extension | the notebook path, set by jupyter_server in the kernel's environment: the key of the notebook's history |
| `CUDA_VISIBLE_DEVICES`, `CUDA_DEVICE_ORDER` | NVML meters | which GPUs this process measures (indices or UUIDs; `MIG-` entries measure their whole GPU, with a note) |
| `CARBONLAB_WIDGET` | IPython extension, at `%load_ext` | the in-cell live widget: `auto` (default) or `off` |
| `CARBONLAB_WIDGET_SIDEBAR` | IPython extension, at `%load_ext` | the widget beside the JupyterLab sidebar: `compact` (default), `full` or `off` |
| `CARBONLAB_WIDGET_AFTER_S` | IPython extension, at `%load_ext` | seconds a cell runs before automatic mode shows the widget (default 2) |
| `XDG_DATA_HOME`, `XDG_CACHE_HOME` (`LOCALAPPDATA` on Windows) | history, intensity cache | where the default history file and live-intensity cache live |

`%carbon widget` (or the `CarbonMagics.widget*` traits below) changes the widget's settings for a session ([magics.md](magics.md)); the sidebar's
own settings are in JupyterLab's settings editor ([sidebar.md](sidebar.md#settings)).

## Credentials

`electricitymaps_token` and `watttime_password` are refused in `pyproject.toml`, which is usually
committed: set them in the environment or pass them as arguments. They are held as
`carbonlab.config.Secret`, which shows `Secret('***')` in every repr, message and note, and are sent in
request headers only.
"""


MAGICS_HEADER = """
## IPython configuration: `CarbonMagics`

In IPython and Jupyter kernels, these traits of `carbonlab.jupyter.magics.CarbonMagics` (an IPython
`Configurable`) set carbonlab for the session: in `ipython_config.py` (`c.CarbonMagics.zone = "FR"`,
read when `%load_ext carbonlab` runs), with `%config CarbonMagics.threshold = "5 J"` at any time
(`%config CarbonMagics` lists them with their current values), or on the kernel's command line
(`--CarbonMagics.zone=FR`). Each value is checked when it is set: a bad one is a one-line error
naming the trait and what is accepted (`CarbonMagics.threshold = 'lots': expected an energy such as
'5 J', ...`), and the setting keeps its value; in `ipython_config.py` it stops `%load_ext carbonlab`
with that line, before any hook is added. Set back to `None`, a setting comes from the environment,
`pyproject.toml` or the default again. `%carbon status` names where each value came from.

| trait | type | default | meaning |
|---|---|---|---|
"""


def magics_rows() -> list[str]:
    from carbonlab.jupyter.magics import CarbonMagics

    out = []
    for name, trait in sorted(CarbonMagics.class_traits(config=True).items()):
        default = trait.default_value
        shown = "unset" if default is None else f"`{default!r}`"
        help_ = " ".join(str(trait.help).split()).replace("|", "\\|")
        out.append(f"| `{name}` | {type(trait).__name__} | {shown} | {help_} |\n")
    return out


def render() -> str:
    lines = [HEADER]
    for r in rows():
        cells = [f"`{r['name']}`", r["env"], r["key"], r["default"], r["accepted"], r["meaning"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n")
    lines.append(MAGICS_HEADER)
    lines += magics_rows()
    lines.append(FOOTER)
    return "".join(lines)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    text = render()
    if "--check" in argv:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run .venv/bin/python docs/gen_config.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
