"""The Report record: the selected runs, and every figure derived from them with its method and range.

A report is a pure function of its input runs and a few options (counterfactual zones, training
type): :func:`build` derives the figures, :meth:`Report.to_dict` writes the inputs beside the figures,
and :meth:`Report.from_dict` derives them again, so a JSON report regenerates the same report.

Uncertainty ranges are bounds on the error of each *method*, not statistical confidence intervals; the
numbers live in :data:`UNCERTAINTY` (energy methods) and :data:`FACTOR_UNCERTAINTY` (intensity,
embodied, water), and docs/methodology.md ("Uncertainty in reports") says why each is what it is.
Bounds of a sum are the sums of the bounds; bounds of a product multiply (worst case, conservative).

>>> from carbonlab.measurement import Component, Measurement
>>> m = Measurement("train", "2026-11-21T10:00:00Z", 2.0,
...                 [Component("cpu", "cpu", 3600.0, "rapl", "package")], co2e_g=0.044,
...                 intensity={"zone": "FR", "gco2e_per_kwh": 44.0, "source": "Ember 2024 (static)"},
...                 pue=1.0)
>>> r = build([InputRun("a1", "measurement-json", "m.json", m)])
>>> r.energy.value, round(r.energy.low, 6), round(r.energy.high, 6)
(3600.0, 3240.0, 3960.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from carbonlab.measurement import (
    METHOD_CPU_MODEL,
    METHOD_NVML_COUNTER,
    METHOD_NVML_POWER,
    METHOD_RAM_MODEL,
    METHOD_RAPL,
    Measurement,
)

SCHEMA_REPORT = "carbonlab.report/1"
UNKNOWN = "unknown"
_J_PER_KWH = 3.6e6

# Sources of an input run.
SOURCE_HISTORY = "history"
SOURCE_MEASUREMENT = "measurement-json"
SOURCE_PYTEST = "pytest-json"
SOURCE_REPORT = "report-json"


class ReportError(ValueError):
    """Bad input for a report (a file, a date, an empty selection); the message says what is
    accepted. The CLI turns it into one line and exit code 2."""


# --- uncertainty: the one place the numbers live ----------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Relative bounds of a figure obtained by one method: ``value × (1 - low_pct/100)`` to
    ``value × (1 + high_pct/100)``."""

    low_pct: float
    high_pct: float
    basis: str

    def bounds(self, value: float) -> tuple[float, float]:
        return value * (1 - self.low_pct / 100.0), value * (1 + self.high_pct / 100.0)

    def text(self) -> str:
        if self.low_pct == self.high_pct:
            return f"±{self.low_pct:g} %"
        return f"-{self.low_pct:g} % / +{self.high_pct:g} %"


UNCERTAINTY: dict[str, Range] = {
    METHOD_NVML_COUNTER: Range(
        5.0,
        5.0,
        "difference of two readings of the GPU's energy counter: no integration error; NVIDIA "
        "publishes no accuracy figure, so ±5 % is a working bound for runs of seconds or more "
        "(short or periodic loads can be off by more; runs below the counter's resolution are "
        "flagged)",
    ),
    METHOD_NVML_POWER: Range(
        25.0,
        25.0,
        "GPU power sampled and integrated: misses what happens between samples and inherits the "
        "sensor's one-second averaging (integrated power and the counter have disagreed by tens of "
        "percent)",
    ),
    METHOD_RAPL: Range(
        10.0,
        10.0,
        "CPU package counter (RAPL): close to external meters on Intel Haswell and newer, less "
        "validated elsewhere; DRAM, board and power supply are outside it",
    ),
    METHOD_CPU_MODEL: Range(
        50.0,
        100.0,
        "CPU-seconds × W per core from TDP or a default: a model good to a factor of about two",
    ),
    METHOD_RAM_MODEL: Range(
        50.0,
        100.0,
        "resident GB × W per GB × time: a model good to a factor of about two",
    ),
}
# A method carbonlab does not know (a record from elsewhere): as wide as a model.
UNKNOWN_METHOD_RANGE = Range(50.0, 100.0, "unknown method: treated as a model")

FACTOR_UNCERTAINTY: dict[str, Range] = {
    "intensity-static": Range(
        30.0,
        30.0,
        "a yearly average: sources differ by 10-30 % for one country and hourly intensity varies "
        "by a factor of two on many grids",
    ),
    "intensity-live": Range(
        10.0,
        10.0,
        "a live reading for the period of the run (provider's estimate or forecast)",
    ),
    "embodied": Range(
        50.0,
        250.0,
        "published embodied figures for one GPU differ by more than 3× (H100: 164 to 575 kg)",
    ),
    "water": Range(
        50.0,
        50.0,
        "country-level water intensity of electricity (WRI method) and a configured on-site WUE",
    ),
}


def method_range(method: str) -> Range:
    return UNCERTAINTY.get(method, UNKNOWN_METHOD_RANGE)


def intensity_range(intensity: dict[str, Any] | None) -> Range:
    live = bool(intensity and intensity.get("provider") and not intensity.get("fallback"))
    return FACTOR_UNCERTAINTY["intensity-live" if live else "intensity-static"]


# --- inputs ---------------------------------------------------------------------------------------


@dataclass
class InputRun:
    """One selected run: where it came from and its Measurement."""

    run_id: str
    source: str  # SOURCE_*
    origin: str  # the history file or the JSON file
    measurement: Measurement
    notebook: str | None = None
    error: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. a pytest run's environment

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "origin": self.origin,
            "notebook": self.notebook,
            "error": self.error,
            "meta": dict(self.meta),
            "measurement": self.measurement.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputRun:
        return cls(
            run_id=str(d["run_id"]),
            source=str(d["source"]),
            origin=str(d.get("origin", "")),
            measurement=Measurement.from_dict(d["measurement"]),
            notebook=d.get("notebook"),
            error=bool(d.get("error", False)),
            meta=dict(d.get("meta") or {}),
        )


# --- derived figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A total with its bounds, how it was obtained, and how sure it is."""

    name: str
    value: float | None  # None: unknown
    low: float | None
    high: float | None
    method: str
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "method": self.method,
            "basis": self.basis,
        }


@dataclass(frozen=True)
class ComponentRow:
    """Energy of one kind of hardware measured one way, summed over the runs."""

    kind: str
    name: str
    method: str
    scope: str
    devices: int
    runs: int
    energy_j: float
    low_j: float
    high_j: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Group:
    """Runs that share a zone, an intensity source, a PUE and the methods per kind."""

    zone: str
    zone_name: str
    intensity_source: str
    intensity_year: str
    intensity_basis: str
    gco2e_per_kwh: float | None  # effective: CO2e / (kWh × PUE) over the group; None if unknown
    live: bool
    pue: float | None
    pue_source: str
    methods: str  # "cpu: rapl; gpu: nvml-energy-counter"
    run_ids: tuple[str, ...]
    energy_j: float
    co2e_g: float | None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["run_ids"] = list(self.run_ids)
        return d


@dataclass(frozen=True)
class Counterfactual:
    """The same energy under another grid figure: not measured, labelled so."""

    what: str  # "zone FR" / "lowest-intensity window 02:00-03:00 UTC"
    gco2e_per_kwh: float
    source: str
    co2e_g: float
    actual_co2e_g: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sum(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    return math.fsum(vals) if vals else None


def _methods_sig(m: Measurement) -> str:
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(m.methods().items())) or "none"


def _note(m: Measurement, prefix: str) -> str | None:
    for n in m.notes:
        if n.startswith(prefix):
            return n
    return None


def pue_source(m: Measurement) -> str:
    """The PUE note footprint wrote ("PUE 1.0 (default: ...)"), else unknown."""
    return _note(m, "PUE ") or UNKNOWN


def _year(intensity: dict[str, Any]) -> str:
    y = intensity.get("year")
    return UNKNOWN if y in (None, "") else str(y)


def _str(d: dict[str, Any] | None, key: str) -> str:
    v = (d or {}).get(key)
    return UNKNOWN if v in (None, "") else str(v)


def _group_key(m: Measurement) -> tuple[Any, ...]:
    i = m.intensity or {}
    return (_str(i, "zone"), _str(i, "source"), m.pue, _methods_sig(m))


def derive_groups(runs: Sequence[InputRun]) -> list[Group]:
    order: dict[tuple[Any, ...], list[InputRun]] = {}
    for r in runs:
        order.setdefault(_group_key(r.measurement), []).append(r)
    groups = []
    for (zone, source, pue, methods), rs in order.items():
        ms = [r.measurement for r in rs]
        i = ms[0].intensity or {}
        energy = math.fsum(m.energy_j for m in ms)
        co2e = None if any(m.co2e_g is None for m in ms) else math.fsum(m.co2e_g for m in ms)
        kwh_pue = energy / _J_PER_KWH * (pue if pue is not None else math.nan)
        eff: float | None = None
        if co2e is not None and kwh_pue > 0:
            eff = co2e / kwh_pue
        elif (
            i.get("gco2e_per_kwh") is not None
            and len({m.intensity and m.intensity.get("gco2e_per_kwh") for m in ms}) == 1
        ):
            eff = float(i["gco2e_per_kwh"])
        pue_src = {pue_source(m) for m in ms}
        groups.append(
            Group(
                zone=zone,
                zone_name=_str(i, "name"),
                intensity_source=source,
                intensity_year=_year(i),
                intensity_basis=_str(i, "basis"),
                gco2e_per_kwh=eff,
                live=bool(i.get("provider")) and not i.get("fallback"),
                pue=pue,
                pue_source=pue_src.pop() if len(pue_src) == 1 else "; ".join(sorted(pue_src)),
                methods=methods,
                run_ids=tuple(r.run_id for r in rs),
                energy_j=energy,
                co2e_g=co2e,
            )
        )
    return groups


def derive_components(runs: Sequence[InputRun]) -> list[ComponentRow]:
    acc: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for r in runs:
        for c in r.measurement.components:
            a = acc.setdefault(
                (c.kind, c.name or UNKNOWN, c.method, c.scope),
                {"devices": set(), "runs": set(), "e": [], "lo": [], "hi": []},
            )
            a["devices"].add(c.device)
            a["runs"].add(r.run_id)
            lo, hi = method_range(c.method).bounds(c.energy_j)
            a["e"].append(c.energy_j)
            a["lo"].append(lo)
            a["hi"].append(hi)
    rows = [
        ComponentRow(
            kind=k,
            name=n,
            method=meth,
            scope=sc,
            devices=len(a["devices"]),
            runs=len(a["runs"]),
            energy_j=math.fsum(a["e"]),
            low_j=math.fsum(a["lo"]),
            high_j=math.fsum(a["hi"]),
        )
        for (k, n, meth, sc), a in acc.items()
    ]
    kind_order = {"gpu": 0, "cpu": 1, "ram": 2}
    rows.sort(key=lambda r: (kind_order.get(r.kind, 9), r.name, r.method))
    return rows


def _energy_bounds(m: Measurement) -> tuple[float, float]:
    lo = hi = 0.0
    for c in m.components:
        a, b = method_range(c.method).bounds(c.energy_j)
        lo += a
        hi += b
    return lo, hi


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 1.0


def derive_figures(runs: Sequence[InputRun]) -> dict[str, Figure]:
    ms = [r.measurement for r in runs]
    energy = math.fsum(m.energy_j for m in ms)
    bounds = [_energy_bounds(m) for m in ms]
    e_lo, e_hi = math.fsum(b[0] for b in bounds), math.fsum(b[1] for b in bounds)
    methods = sorted({c.method for m in ms for c in m.components})
    figs: dict[str, Figure] = {}
    figs["energy"] = Figure(
        "IT energy",
        energy,
        e_lo,
        e_hi,
        ", ".join(methods) or UNKNOWN,
        "sum of the components' energy; each component's range from its method",
    )
    # Facility energy: IT energy × PUE, for the runs whose PUE is known.
    fac = [(m.energy_j * m.pue, b) for m, b in zip(ms, bounds) if m.pue is not None]
    figs["facility_energy"] = Figure(
        "Facility energy (IT × PUE)",
        _sum(f for f, _ in fac) if len(fac) == len(ms) else None,
        _sum(b[0] * m.pue for m, b in zip(ms, bounds) if m.pue is not None)
        if len(fac) == len(ms)
        else None,
        _sum(b[1] * m.pue for m, b in zip(ms, bounds) if m.pue is not None)
        if len(fac) == len(ms)
        else None,
        "IT energy × PUE",
        "the PUE is a stated assumption (see PUE), not measured: no range of its own",
    )
    # Operational CO2e: energy bounds × intensity bounds, run by run.
    co2 = [m.co2e_g for m in ms]
    if all(c is not None for c in co2) and ms:
        lo = hi = 0.0
        for m, (blo, bhi) in zip(ms, bounds):
            ir = intensity_range(m.intensity)
            ilo, ihi = ir.bounds(1.0)
            lo += m.co2e_g * _ratio(blo, m.energy_j) * ilo
            hi += m.co2e_g * _ratio(bhi, m.energy_j) * ihi
        live = any(intensity_range(m.intensity) is FACTOR_UNCERTAINTY["intensity-live"] for m in ms)
        figs["co2e"] = Figure(
            "Operational CO2e",
            math.fsum(co2),  # type: ignore[arg-type]
            lo,
            hi,
            "IT energy × PUE × grid intensity",
            "energy range × intensity range ("
            + FACTOR_UNCERTAINTY["intensity-static"].text()
            + " for a yearly static figure"
            + (
                ", " + FACTOR_UNCERTAINTY["intensity-live"].text() + " for a live reading"
                if live
                else ""
            )
            + ")",
        )
    else:
        figs["co2e"] = Figure(
            "Operational CO2e",
            None,
            None,
            None,
            "IT energy × PUE × grid intensity",
            f"not recorded for {sum(c is None for c in co2)} of {len(ms)} runs",
        )
    emb = [m.embodied_co2e_g for m in ms]
    er = FACTOR_UNCERTAINTY["embodied"]
    emb_total = _sum(emb)
    figs["embodied"] = Figure(
        "Embodied CO2e (amortised GPUs)",
        emb_total,
        None if emb_total is None else er.bounds(emb_total)[0],
        None if emb_total is None else er.bounds(emb_total)[1],
        "device embodied kgCO2e × run time / lifetime",
        er.text() + ": " + er.basis,
    )
    wr = FACTOR_UNCERTAINTY["water"]
    water = [m.water_l for m in ms]
    if all(w is not None for w in water) and ms:
        wlo = math.fsum(
            w * _ratio(b[0], m.energy_j) * wr.bounds(1.0)[0] for m, w, b in zip(ms, water, bounds)
        )
        whi = math.fsum(
            w * _ratio(b[1], m.energy_j) * wr.bounds(1.0)[1] for m, w, b in zip(ms, water, bounds)
        )
        figs["water"] = Figure(
            "Water consumed",
            math.fsum(water),  # type: ignore[arg-type]
            wlo,
            whi,
            "IT energy × (on-site WUE + PUE × grid water intensity)",
            "energy range × " + wr.text() + ": " + wr.basis,
        )
    else:
        figs["water"] = Figure(
            "Water consumed",
            None,
            None,
            None,
            "IT energy × (on-site WUE + PUE × grid water intensity)",
            f"not recorded for {sum(w is None for w in water)} of {len(ms)} runs",
        )
    dur = math.fsum(m.duration_s for m in ms)
    figs["duration"] = Figure(
        "Duration (sum of runs)",
        dur,
        dur,
        dur,
        "monotonic clock",
        "clock error is negligible against the other figures",
    )
    gpu_h = (
        math.fsum(
            m.duration_s * len({c.device for c in m.components if c.kind == "gpu"}) for m in ms
        )
        / 3600.0
    )
    figs["gpu_hours"] = Figure(
        "GPU-hours",
        gpu_h,
        gpu_h,
        gpu_h,
        "run duration × GPUs measured in the run",
        "counts each measured GPU for the whole run, busy or not",
    )
    return figs


def _hardware(runs: Sequence[InputRun]) -> dict[str, Any]:
    gpus: dict[str, set[str]] = {}
    cpus: dict[str, str] = {}
    ram: list[str] = []
    for r in runs:
        for c in r.measurement.components:
            if c.kind == "gpu":
                gpus.setdefault(c.name or UNKNOWN, set()).add(c.device)
            elif c.kind == "cpu":
                name = str(c.params.get("cpu_model") or c.name or UNKNOWN)
                cpus.setdefault(name, c.method)
            elif c.kind == "ram":
                w = c.params.get("w_per_gb")
                what = f"{c.method}" + (f" at {w:g} W/GB" if isinstance(w, (int, float)) else "")
                if what not in ram:
                    ram.append(what)
    return {
        "gpus": [{"name": n, "count": len(d)} for n, d in sorted(gpus.items())],
        "cpus": [{"name": n, "method": m} for n, m in sorted(cpus.items())],
        "ram": ram,
    }


_VERSION_KEYS = {
    "driver": ("driver_version", "nvml_driver_version", "driver"),
    "cuda": ("cuda_version", "cuda_driver_version", "cuda"),
}


def _versions(runs: Sequence[InputRun], this_version: str) -> dict[str, Any]:
    measured: set[str] = set()
    found: dict[str, set[str]] = {"driver": set(), "cuda": set()}
    for r in runs:
        v = r.meta.get("carbonlab") or r.measurement.extra.get("carbonlab_version")
        measured.add(str(v) if v else UNKNOWN)
        for c in r.measurement.components:
            if c.kind != "gpu":
                continue
            for what, keys in _VERSION_KEYS.items():
                for k in keys:
                    if c.params.get(k):
                        found[what].add(str(c.params[k]))
                        break
        for what, keys in _VERSION_KEYS.items():
            for k in keys:
                if r.measurement.extra.get(k):
                    found[what].add(str(r.measurement.extra[k]))
    has_gpu = any(c.kind == "gpu" for r in runs for c in r.measurement.components)
    out = {"carbonlab_report": this_version, "carbonlab_measured": sorted(measured)}
    for what, vs in found.items():
        out[what] = sorted(vs) if vs else [UNKNOWN if has_gpu else "n/a (no GPU measured)"]
    py = {
        str(r.meta.get("python") or r.measurement.extra.get("python"))
        for r in runs
        if r.meta.get("python") or r.measurement.extra.get("python")
    }
    out["python"] = sorted(py) or [UNKNOWN]
    return out


def _missing(runs: Sequence[InputRun], figs: dict[str, Figure]) -> list[str]:
    ms = [r.measurement for r in runs]
    out: list[str] = []
    n = len(ms)
    with_gpu = sum(any(c.kind == "gpu" for c in m.components) for m in ms)
    if with_gpu == 0:
        reasons = sorted({x for m in ms for x in m.notes if x.startswith("gpu via")})
        out.append(
            "no GPU meter in any run: GPU energy, if a GPU was used, is not included"
            + (" (" + "; ".join(reasons) + ")" if reasons else "")
        )
    elif with_gpu < n:
        out.append(f"no GPU meter in {n - with_gpu} of {n} runs: their GPU energy is not included")
    if not any(c.kind == "cpu" for m in ms for c in m.components):
        out.append("no CPU meter: CPU energy is not included")
    if any(c.method == METHOD_RAPL for m in ms for c in m.components):
        out.append(
            "RAPL covers the CPU package only: DRAM, board, fans and power supply are not included"
        )
    if any(c.method in (METHOD_CPU_MODEL, METHOD_RAM_MODEL) for m in ms for c in m.components):
        out.append("CPU and/or RAM energy is modelled, not measured")
    skipped = sorted(
        {
            x
            for m in ms
            for x in m.notes
            if x.startswith(("embodied: no figure", "embodied: not estimated"))
        }
    )
    if figs["embodied"].value is None:
        out.append(
            "embodied carbon: not estimated"
            + (
                " (" + "; ".join(skipped) + ")"
                if skipped
                else " (no GPU with a published figure in the runs; carbonlab amortises GPUs only)"
            )
        )
    else:
        out += skipped
    out.append("embodied carbon of the host (CPU, memory, board) is not included")
    for key in ("co2e", "water"):
        if figs[key].value is None:
            out.append(f"{figs[key].name}: unknown ({figs[key].basis})")
    below = sum(m.below_resolution for m in ms)
    if below:
        out.append(
            f"{below} of {n} runs were shorter than a meter's resolution (flagged below resolution)"
        )
    errs = sum(r.error for r in runs)
    if errs:
        out.append(f"{errs} of {n} runs raised an exception (measured and included)")
    shared = sorted({c.scope for m in ms for c in m.components if c.scope in ("device", "package")})
    if shared:
        out.append(
            "scope " + " and ".join(shared) + ": whole-device/package readings include other "
            "processes that ran at the same time"
        )
    lost = sorted({x for m in ms for x in m.notes if "missing from the total" in x})
    out += lost
    return out


def _mixed(groups: Sequence[Group]) -> list[str]:
    out = []
    zones = sorted({g.zone for g in groups})
    if len(zones) > 1:
        out.append("zones: " + ", ".join(zones))
    sources = sorted({g.intensity_source for g in groups})
    if len(sources) > 1:
        out.append("intensity sources: " + "; ".join(sources))
    pues = sorted({UNKNOWN if g.pue is None else f"{g.pue:g}" for g in groups})
    if len(pues) > 1:
        out.append("PUEs: " + ", ".join(pues))
    methods = sorted({g.methods for g in groups})
    if len(methods) > 1:
        out.append("methods: " + " | ".join(methods))
    return out


def _counterfactuals(
    runs: Sequence[InputRun], compare: Sequence[dict[str, Any]], actual: float | None
) -> tuple[list[Counterfactual], list[str]]:
    """The same energy × each run's own PUE under another grid figure."""
    ms = [r.measurement for r in runs]
    kwh_pue = math.fsum(m.energy_j / _J_PER_KWH * (m.pue if m.pue is not None else 1.0) for m in ms)
    out: list[Counterfactual] = []
    notes: list[str] = []
    for z in compare:
        g = float(z["gco2e_per_kwh"])
        what = f"zone {z.get('zone')} ({z.get('name', z.get('zone'))})"
        src = f"{z.get('source', UNKNOWN)}" + (f", {z['basis']}" if z.get("basis") else "")
        out.append(Counterfactual(what, g, src, kwh_pue * g, actual))
    # The lowest-intensity window a live forecast offered, when one was recorded with the runs:
    # one line per forecast zone, over the energy of that zone's runs only (a window of GB's
    # forecast says nothing about a run in FR).
    by_zone: dict[str, list[tuple[Measurement, dict[str, Any]]]] = {}
    for m in ms:
        a = m.extra.get("advice")
        if isinstance(a, dict) and a.get("window_gco2e_per_kwh") is not None:
            by_zone.setdefault(str(a.get("zone") or UNKNOWN), []).append((m, a))
    for zone, pairs in sorted(by_zone.items()):
        best = min(pairs, key=lambda p: float(p[1]["window_gco2e_per_kwh"]))[1]
        g = float(best["window_gco2e_per_kwh"])
        kwh = math.fsum(
            m.energy_j / _J_PER_KWH * (m.pue if m.pue is not None else 1.0) for m, _ in pairs
        )
        what = (
            f"lowest-intensity window of the forecast for {zone}, "
            f"{best.get('start_iso', '?')} to {best.get('end_iso', '?')}"
        )
        if len(pairs) < len(ms):
            what += f" ({len(pairs)} of {len(ms)} runs: those with this forecast)"
        out.append(
            Counterfactual(
                what,
                g,
                f"{best.get('source', UNKNOWN)} forecast",
                kwh * g,
                _sum(m.co2e_g for m, _ in pairs),
            )
        )
    if not by_zone and any((m.intensity or {}).get("provider") for m in ms):
        notes.append(
            "live intensity was used, but no forecast was recorded with these runs: no "
            "lowest-intensity-window counterfactual"
        )
    return out, notes


# --- the record -----------------------------------------------------------------------------------


@dataclass
class Report:
    """A report over selected runs; every derived field is a function of ``runs`` and the options."""

    runs: list[InputRun]
    selection: dict[str, Any] = field(default_factory=dict)
    compare_zones: list[dict[str, Any]] = field(default_factory=list)
    training_type: str | None = None
    title: str = "Energy and carbon footprint"
    generated_at: str = ""
    carbonlab_version: str = ""
    # derived by build()
    figures: dict[str, Figure] = field(default_factory=dict)
    components: list[ComponentRow] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    hardware: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    counterfactuals: list[Counterfactual] = field(default_factory=list)
    counterfactual_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def energy(self) -> Figure:
        return self.figures["energy"]

    @property
    def co2e_g(self) -> float | None:
        return self.figures["co2e"].value

    def energy_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.components:
            out[c.kind] = out.get(c.kind, 0.0) + c.energy_j
        return out

    def period(self) -> tuple[str, str]:
        starts = sorted(r.measurement.started_at for r in self.runs if r.measurement.started_at)
        return (starts[0], starts[-1]) if starts else (UNKNOWN, UNKNOWN)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_REPORT,
            "title": self.title,
            "generated_at": self.generated_at,
            "carbonlab_version": self.carbonlab_version,
            "selection": self.selection,
            "options": {
                "compare_zones": self.compare_zones,
                "training_type": self.training_type,
            },
            "run_ids": [r.run_id for r in self.runs],
            "totals": {k: f.to_dict() for k, f in self.figures.items()},
            "energy_by_kind_j": self.energy_by_kind(),
            "components": [c.to_dict() for c in self.components],
            "groups": [g.to_dict() for g in self.groups],
            "mixed": self.mixed,
            "missing": self.missing,
            "hardware": self.hardware,
            "versions": self.versions,
            "counterfactuals": [c.to_dict() for c in self.counterfactuals],
            "counterfactual_notes": self.counterfactual_notes,
            "notes": self.notes,
            "uncertainty_basis": {
                "methods": {k: r.__dict__ for k, r in UNCERTAINTY.items()},
                "factors": {k: r.__dict__ for k, r in FACTOR_UNCERTAINTY.items()},
            },
            "runs": [r.to_dict() for r in self.runs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """Regenerate a report from its JSON (the inputs it carries; derived figures are redone)."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA_REPORT:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ReportError(f"not a {SCHEMA_REPORT} document (schema {got!r})")
        opts = d.get("options") or {}
        return build(
            [InputRun.from_dict(r) for r in d["runs"]],
            selection=d.get("selection") or {},
            compare_zones=opts.get("compare_zones") or [],
            training_type=opts.get("training_type"),
            title=d.get("title") or cls.title,
            generated_at=d.get("generated_at") or "",
            notes=d.get("notes") or [],
        )


def build(
    runs: Sequence[InputRun],
    *,
    selection: dict[str, Any] | None = None,
    compare_zones: Sequence[dict[str, Any]] = (),
    training_type: str | None = None,
    title: str = "Energy and carbon footprint",
    generated_at: str = "",
    notes: Sequence[str] = (),
) -> Report:
    """Derive every figure of a report from its runs. Raises ReportError when there are none."""
    from carbonlab import __version__

    if not runs:
        raise ReportError("no runs selected: nothing to report")
    runs = list(runs)
    figs = derive_figures(runs)
    groups = derive_groups(runs)
    cf, cf_notes = _counterfactuals(runs, compare_zones, figs["co2e"].value)
    return Report(
        runs=runs,
        selection=dict(selection or {}),
        compare_zones=[dict(z) for z in compare_zones],
        training_type=training_type,
        title=title,
        generated_at=generated_at,
        carbonlab_version=__version__,
        figures=figs,
        components=derive_components(runs),
        groups=groups,
        mixed=_mixed(groups),
        missing=_missing(runs, figs),
        hardware=_hardware(runs),
        versions=_versions(runs, __version__),
        counterfactuals=cf,
        counterfactual_notes=cf_notes,
        notes=list(notes),
    )
