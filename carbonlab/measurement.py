"""The Measurement record: one schema for the CLI, the magic, the comm summary and the pytest report.

Every figure carries how it was obtained (``method``) and what it covers (``scope``). The names live
here, once; every other module imports them from this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._record import field, record

SCHEMA = "carbonlab.measurement/1"

# How a component's energy was obtained.
METHOD_NVML_COUNTER = "nvml-energy-counter"
METHOD_NVML_POWER = "nvml-power"
METHOD_RAPL = "rapl"
METHOD_CPU_MODEL = "cpu-time-model"
METHOD_RAM_MODEL = "ram-model"
METHODS = (METHOD_NVML_COUNTER, METHOD_NVML_POWER, METHOD_RAPL, METHOD_CPU_MODEL, METHOD_RAM_MODEL)
# Methods that are estimates rather than readings of a hardware counter or sensor.
MODEL_METHODS = frozenset({METHOD_CPU_MODEL, METHOD_RAM_MODEL})

# What a component's energy covers.
SCOPE_DEVICE = "device"  # a whole GPU, whoever used it
SCOPE_PACKAGE = "package"  # a whole CPU package (RAPL), every process on it
SCOPE_PROCESS = "process"  # this process (and its children)
SCOPE_PROCESS_ESTIMATED = "process-estimated"  # this process's estimated share of a device
SCOPE_TASKS = "tasks"  # a cluster worker's share charged to this client's tasks (carbonlab.cluster)
SCOPES = (SCOPE_DEVICE, SCOPE_PACKAGE, SCOPE_PROCESS, SCOPE_PROCESS_ESTIMATED, SCOPE_TASKS)

KINDS = ("gpu", "cpu", "ram")


@record
class Component:
    """Energy of one device (or model) over one window."""

    kind: str
    device: str
    energy_j: float
    method: str
    scope: str
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    below_resolution: bool = False
    notes: list[str] = field(default_factory=list)
    # Where the energy was spent when not in this process's machine: {"engine": "dask" | "ray",
    # "worker": address or node id, "host": hostname}; None for local components.
    location: dict[str, Any] | None = None

    # Written out (the record's generic __init__ is ~4 µs; several are built per window).
    def __init__(
        self,
        kind: str,
        device: str,
        energy_j: float,
        method: str,
        scope: str,
        name: str = "",
        params: dict[str, Any] | None = None,
        below_resolution: bool = False,
        notes: list[str] | None = None,
        location: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.device = device
        self.energy_j = energy_j
        self.method = method
        self.scope = scope
        self.name = name
        self.params = {} if params is None else params
        self.below_resolution = below_resolution
        self.notes = [] if notes is None else notes
        self.location = location

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "device": self.device,
            "name": self.name,
            "energy_j": self.energy_j,
            "method": self.method,
            "scope": self.scope,
        }
        if self.params:
            d["params"] = dict(self.params)
        if self.below_resolution:
            d["below_resolution"] = True
        if self.notes:
            d["notes"] = list(self.notes)
        if self.location:
            d["location"] = dict(self.location)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Component:
        return cls(
            kind=d["kind"],
            device=d["device"],
            energy_j=float(d["energy_j"]),
            method=d["method"],
            scope=d["scope"],
            name=d.get("name", ""),
            params=dict(d.get("params", {})),
            below_resolution=bool(d.get("below_resolution", False)),
            notes=list(d.get("notes", [])),
            location=dict(d["location"]) if d.get("location") else None,
        )


@record
class Measurement:
    """What one measured window cost.

    ``energy_j`` is IT energy (the sum of the components, before PUE). ``co2e_g`` and the other
    footprint figures are filled by :mod:`carbonlab.footprint`; ``intensity`` says which grid figure
    was used and where it came from.

    >>> import carbonlab
    >>> with carbonlab.track("example") as m:
    ...     _ = sum(range(1000))
    >>> m.to_dict()["schema"]
    'carbonlab.measurement/1'

    ``str(m)`` (and so ``print(m)``) is the summary a measured cell shows; ``repr(m)`` lists
    every field, for debugging.
    """

    label: str
    started_at: str  # ISO 8601, UTC, wall clock (for people); durations come from a monotonic clock
    duration_s: float
    components: list[Component]
    below_resolution: bool = False
    co2e_g: float | None = None
    embodied_co2e_g: float | None = None
    water_l: float | None = None
    intensity: dict[str, Any] | None = None
    pue: float | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        label: str,
        started_at: str,
        duration_s: float,
        components: list[Component],
        below_resolution: bool = False,
        co2e_g: float | None = None,
        embodied_co2e_g: float | None = None,
        water_l: float | None = None,
        intensity: dict[str, Any] | None = None,
        pue: float | None = None,
        notes: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.label = label
        self.started_at = started_at
        self.duration_s = duration_s
        self.components = components
        self.below_resolution = below_resolution
        self.co2e_g = co2e_g
        self.embodied_co2e_g = embodied_co2e_g
        self.water_l = water_l
        self.intensity = intensity
        self.pue = pue
        self.notes = [] if notes is None else notes
        self.extra = {} if extra is None else extra

    @property
    def energy_j(self) -> float:
        return sum(c.energy_j for c in self.components)

    @property
    def energy_wh(self) -> float:
        return self.energy_j / 3600.0

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.components:
            out[c.kind] = out.get(c.kind, 0.0) + c.energy_j
        return out

    def methods(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for c in self.components:
            lst = out.setdefault(c.kind, [])
            if c.method not in lst:
                lst.append(c.method)
        return out

    def __str__(self) -> str:
        from .summary import cell_text

        return cell_text(self)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": SCHEMA,
            "label": self.label,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "co2e_g": self.co2e_g,
            "embodied_co2e_g": self.embodied_co2e_g,
            "water_l": self.water_l,
            "below_resolution": self.below_resolution,
            "components": [c.to_dict() for c in self.components],
            "intensity": self.intensity,
            "pue": self.pue,
        }
        if self.notes:
            d["notes"] = list(self.notes)
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} record: schema={d.get('schema')!r}")
        known = {
            "schema",
            "label",
            "started_at",
            "duration_s",
            "energy_j",
            "co2e_g",
            "embodied_co2e_g",
            "water_l",
            "below_resolution",
            "components",
            "intensity",
            "pue",
            "notes",
        }
        return cls(
            label=d["label"],
            started_at=d["started_at"],
            duration_s=float(d["duration_s"]),
            components=[Component.from_dict(c) for c in d["components"]],
            below_resolution=bool(d.get("below_resolution", False)),
            co2e_g=d.get("co2e_g"),
            embodied_co2e_g=d.get("embodied_co2e_g"),
            water_l=d.get("water_l"),
            intensity=d.get("intensity"),
            pue=d.get("pue"),
            notes=list(d.get("notes", [])),
            extra={k: v for k, v in d.items() if k not in known},
        )


def stamp_versions(d: dict[str, Any]) -> dict[str, Any]:
    """Add the versions a report states (``carbonlab_version``, ``python``) to a Measurement's
    JSON dict where it has none: history rows and ``carbonlab run --json`` files carry them."""
    import sys

    from carbonlab import __version__

    d.setdefault("carbonlab_version", __version__)
    d.setdefault("python", ".".join(map(str, sys.version_info[:3])))
    return d


def components_from_deltas(
    deltas: Sequence[float], meters: Sequence[dict[str, Any]], duration_s: float
) -> tuple[list[Component], bool]:
    """Components from per-meter joules and the meters' descriptions (kind, device, method,
    scope, name, params, resolution_s), and whether any of them is below its meter's resolution.
    One place for the pytest recorder and the readers of compact pytest JSON."""
    comps = []
    below = False
    for d, m in zip(deltas, meters):
        br = duration_s < float(m.get("resolution_s", 0.0))
        below = below or br
        c = Component(
            kind=m["kind"],
            device=str(m["device"]),
            energy_j=float(d),
            method=m["method"],
            scope=m["scope"],
            name=m.get("name", ""),
            params=dict(m.get("params", {})),
            below_resolution=br,
        )
        ceiling = m.get("ceiling_w")
        if isinstance(ceiling, (int, float)):
            clamp_component(c, ceiling, duration_s)
        comps.append(c)
    return comps, below


def clamped(energy_j: float, ceiling_w: float | None, duration_s: float) -> float:
    """``energy_j`` capped at ``ceiling_w`` × ``duration_s`` (see :func:`clamp_component`)."""
    if ceiling_w is None or ceiling_w < 0:
        return energy_j
    cap = ceiling_w * duration_s
    return energy_j if energy_j <= cap * (1 + 1e-9) else cap


def clamp_component(c: Component, ceiling_w: float | None, duration_s: float) -> None:
    """Cap a model's figure at its own ceiling (the most power the model can charge × duration).

    A process-wide CPU-time counter can jump by a scheduler tick of another thread, or by a child's
    whole CPU time when it is reaped, inside a window far shorter than that: 28.6 W charged on a
    machine whose model allows 8 W. The excess is not this window's; the clamp is said in the
    component's params and notes, never silent.
    """
    if clamped(c.energy_j, ceiling_w, duration_s) == c.energy_j:
        return
    cap = ceiling_w * duration_s  # type: ignore[operator]
    c.params["ceiling_w"] = ceiling_w
    c.params["clamped_from_j"] = c.energy_j
    c.notes.append(
        f"{c.energy_j:.4g} J over {duration_s * 1e3:.3g} ms is above this model's ceiling of "
        f"{ceiling_w:.3g} W; clamped to {cap:.4g} J (time counted late, e.g. a reaped child's or "
        "another thread's)"
    )
    c.energy_j = cap
