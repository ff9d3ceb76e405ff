"""Compare two saved pytest carbon runs, per test; fail on regressions beyond noise.

A run is the JSON document that ``pytest --carbon-json=PATH`` writes and ``pytest --carbon-save``
stores under ``.carbonlab/pytest/<machine-id>/NNNN_<name>.json``. The same logic serves
``pytest --carbon-compare`` and the ``carbonlab compare`` command::

    carbonlab compare 0001 0002 --fail=energy:10%:0.5J

A threshold ``FIELD:PCT%``, ``FIELD:AMOUNT`` or ``FIELD:PCT%:AMOUNT`` (FIELD ``energy`` or ``co2e``)
fails a test whose figure grew by more than PCT percent *and* more than AMOUNT (an absolute floor, so
a 3 mJ test that takes 4 mJ is not a regression). Tests below their meters' resolution on either side
are listed but never fail.

>>> spec = parse_fail_spec("energy:10%:0.5J")
>>> spec.pct, spec.floor
(10.0, 0.5)
>>> spec.fails(base=5.0, cur=5.6)
True
>>> spec.fails(base=1.0, cur=1.3)     # +30 % but only +0.3 J: noise
False
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbonlab.units import one_line

SCHEMA_RUN = "carbonlab.pytest-run/2"  # compact: shared context once, per-test figures flat
SCHEMA_RUN_V1 = "carbonlab.pytest-run/1"  # every phase a full Measurement (still read)
SCHEMAS_READ = (SCHEMA_RUN, SCHEMA_RUN_V1)
RUNS_DIR = "pytest"  # under the storage directory: <storage>/pytest/<machine-id>/NNNN_<name>.json
FIELDS = ("energy", "co2e", "session")  # session: the whole run's energy
_FILE = re.compile(r"^(?P<num>\d{4})_(?P<name>.*)\.json$")

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2


class CompareError(ValueError):
    """Bad input (a threshold, a run name, a file); the message says what is accepted."""


# --- thresholds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailSpec:
    field: str  # energy | co2e
    pct: float | None  # percent growth allowed
    floor: float | None  # absolute growth allowed, in J (energy) or g (co2e)
    text: str

    def fails(self, base: float, cur: float) -> bool:
        delta = cur - base
        if delta <= 0:
            return False
        if self.pct is not None:
            pct = math.inf if base <= 0 else delta / base * 100.0
            if pct <= self.pct:
                return False
        return not (self.floor is not None and delta <= self.floor)

    def describe(self) -> str:
        from .units import format_co2e, format_energy

        parts = []
        if self.pct is not None:
            parts.append(f"{self.pct:g} %")
        if self.floor is not None:
            parts.append(
                format_co2e(self.floor) if self.field == "co2e" else format_energy(self.floor)
            )
        return " and ".join(parts)


_SPEC_HELP = (
    "expected FIELD:PCT%, FIELD:AMOUNT or FIELD:PCT%:AMOUNT with FIELD energy or co2e (per test) "
    "or session (the whole run's energy), e.g. 'energy:10%', 'energy:0.5J', 'energy:10%:0.5J', "
    "'co2e:5%:0.1g', 'session:10%'"
)


def parse_fail_spec(text: str) -> FailSpec:
    """Parse a regression threshold; CompareError names the value and the accepted forms."""
    from .units import UnitError, parse_co2e, parse_energy

    if not isinstance(text, str):
        raise CompareError(f"{text!r}: {_SPEC_HELP}")
    parts = [p.strip() for p in text.strip().split(":")]
    if len(parts) not in (2, 3) or parts[0] not in FIELDS:
        raise CompareError(f"{text!r}: {_SPEC_HELP}")
    fld, rest = parts[0], parts[1:]
    pct = floor = None
    for i, p in enumerate(rest):
        if p.endswith("%"):
            if pct is not None or i > 0:
                raise CompareError(f"{text!r}: the percentage comes first, once; {_SPEC_HELP}")
            try:
                pct = float(p[:-1])
            except ValueError:
                raise CompareError(f"{text!r}: {p!r} is not a percentage; {_SPEC_HELP}") from None
            if not math.isfinite(pct) or pct < 0:
                raise CompareError(f"{text!r}: the percentage must be >= 0")
        else:
            if floor is not None:
                raise CompareError(f"{text!r}: one absolute amount at most; {_SPEC_HELP}")
            try:
                floor = parse_co2e(p) if fld == "co2e" else parse_energy(p)
            except UnitError as e:
                raise CompareError(f"{text!r}: {e}") from None
    return FailSpec(fld, pct, floor, text.strip())


# --- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    energy_j: float
    co2e_g: float | None
    below_resolution: bool = False
    first_use: bool = False  # the call imported modules: a one-time cost of the process
    # Several baseline runs combined (``combine``): energy_j/co2e_g are their medians, these the
    # highest value seen; a figure within the observed range is never a regression.
    hi_energy_j: float | None = None
    hi_co2e_g: float | None = None
    runs: int = 1

    def get(self, fld: str) -> float | None:
        return self.energy_j if fld == "energy" else self.co2e_g

    def hi(self, fld: str) -> float | None:
        return self.hi_energy_j if fld == "energy" else self.hi_co2e_g


@dataclass
class Run:
    label: str
    machine_id: str = ""
    started_at: str = ""
    methods: dict[str, list[str]] = field(default_factory=dict)
    tests: dict[str, Figure] = field(default_factory=dict)
    session_energy_j: float | None = None
    session_co2e_g: float | None = None
    session_hi_j: float | None = None  # several runs combined: the highest session energy
    name: str = ""  # the name it was saved under, as given (--carbon-save=feature/foo)
    runs: int = 1  # how many saved runs this baseline combines
    locations: dict[str, str] = field(default_factory=dict)  # nodeid -> file (per-file totals)


def _number(value: Any, where: str, *, optional: bool = False) -> float | None:
    """A finite figure >= 0 (bool is not a number here); CompareError says where it is wrong."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CompareError(f"{where} is {value!r}, expected a number")
    f = float(value)
    if not math.isfinite(f) or f < 0:
        raise CompareError(f"{where} is {value!r}, expected a finite number >= 0")
    return f


def _table(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CompareError(f"{where} is a {type(value).__name__}, expected an object")
    return value


def run_from_document(doc: Any, label: str) -> Run:
    """The figures compare needs from a run document (as written by --carbon-json).

    The one validator of runs read back from disk (``pytest --carbon-compare`` and ``carbonlab
    compare``): a document of the wrong shape is a CompareError naming ``label`` and what is wrong,
    never a KeyError or TypeError, and no figure is read as a silent 0.
    """
    if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS_READ:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise CompareError(
            f"{label}: not a pytest carbon run (schema {got!r}, expected {SCHEMA_RUN!r})"
        )
    try:
        env = _table(doc.get("environment"), "environment")
        machine = env.get("machine_id", "")
        if not isinstance(machine, str):
            raise CompareError(f"environment.machine_id is {machine!r}, expected a string")
        methods = _table(env.get("methods"), "environment.methods")
        started = doc.get("started_at", "")
        name = doc.get("name", "")
        run = Run(
            label=label,
            machine_id=machine,
            started_at=started if isinstance(started, str) else "",
            methods=dict(methods),
            name=name if isinstance(name, str) else "",
        )
        g_per_j = _number(doc.get("g_per_j"), "g_per_j", optional=True)
        tests = doc.get("tests")
        if tests is None:
            tests = []
        if not isinstance(tests, list):
            raise CompareError(f"tests is a {type(tests).__name__}, expected a list")
        for i, t in enumerate(tests):
            where = f"tests[{i}]"
            if not isinstance(t, dict):
                raise CompareError(f"{where} is {t!r}, expected an object with a nodeid")
            nodeid = t.get("nodeid")
            if not isinstance(nodeid, str) or not nodeid:
                raise CompareError(f"{where}.nodeid is {nodeid!r}, expected a test id")
            call = t.get("call")
            if call is None:
                continue  # not run (skipped, deselected): nothing to compare
            call = _table(call, f"{where}.call")
            below = call.get("below_resolution", False)
            if not isinstance(below, bool):
                raise CompareError(
                    f"{where}.call.below_resolution is {below!r}, expected true/false"
                )
            energy = _number(call.get("energy_j"), f"{where}.call.energy_j")
            assert energy is not None
            first_use = t.get("first_use", 0)
            co2e = _number(call.get("co2e_g"), f"{where}.call.co2e_g", optional=True)
            if doc["schema"] == SCHEMA_RUN and co2e is None and g_per_j is not None:
                co2e = energy * g_per_j
            run.tests[nodeid] = Figure(
                energy,
                co2e,
                below,
                first_use=bool(first_use) and not isinstance(first_use, str),
            )
            loc = t.get("location") if doc["schema"] == SCHEMA_RUN_V1 else t
            path = loc.get("path") if isinstance(loc, dict) else None
            run.locations[nodeid] = path if isinstance(path, str) and path else _file_of(nodeid)
        sess = _table(
            _table(doc.get("session"), "session").get("measurement"), "session.measurement"
        )
        run.session_energy_j = _number(
            sess.get("energy_j"), "session.measurement.energy_j", optional=True
        )
        run.session_co2e_g = _number(
            sess.get("co2e_g"), "session.measurement.co2e_g", optional=True
        )
    except CompareError as e:
        raise CompareError(f"{label}: {e}") from None
    return run


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def combine(runs: Sequence[Run], label: str) -> Run:
    """Several saved runs as one baseline: per test the median, and the highest figure seen.

    A test is compared with the median of the runs that have it; the gate then needs the current
    figure to be beyond the thresholds *and* above every baseline run (the observed spread).
    """
    if len(runs) == 1:
        return runs[0]
    import statistics

    last = runs[-1]
    out = Run(
        label=label,
        machine_id=last.machine_id,
        started_at=last.started_at,
        methods=last.methods,
        name=last.name,
        runs=len(runs),
    )
    order: dict[str, None] = {}
    for r in runs:
        order.update(dict.fromkeys(r.tests))
        out.locations.update(r.locations)
    for nodeid in order:
        figs = [r.tests[nodeid] for r in runs if nodeid in r.tests]
        es = [f.energy_j for f in figs]
        cs = [f.co2e_g for f in figs if f.co2e_g is not None]
        out.tests[nodeid] = Figure(
            statistics.median(es),
            statistics.median(cs) if len(cs) == len(figs) else None,
            any(f.below_resolution for f in figs),
            first_use=False,
            hi_energy_j=max(f.hi_energy_j or f.energy_j for f in figs),
            hi_co2e_g=max(f.hi_co2e_g or f.co2e_g for f in figs) if len(cs) == len(figs) else None,  # type: ignore[type-var]
            runs=len(figs),
        )
    sess = [r.session_energy_j for r in runs if r.session_energy_j is not None]
    if sess:
        out.session_energy_j = statistics.median(sess)
        out.session_hi_j = max(sess)
    co2 = [r.session_co2e_g for r in runs if r.session_co2e_g is not None]
    if co2:
        out.session_co2e_g = statistics.median(co2)
    return out


def _iso_plus(started_at: str, seconds: float) -> str:
    from datetime import datetime, timedelta

    try:
        t0 = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return ""
    t = t0 + timedelta(seconds=seconds)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expand_phase(doc: dict[str, Any], entry: dict[str, Any], when: str) -> dict[str, Any] | None:
    """One phase of one test of a pytest run as a full Measurement JSON record
    (``carbonlab.measurement/1``), from either schema: a v1 document stores it as it is; a v2
    document stores the per-meter joules and names the meters once (``environment.meters``, or
    ``environment.worker_meters[worker]`` under xdist), with the intensity, PUE and gCO2e per J
    once at the top."""
    ph = entry.get(when)
    if not isinstance(ph, dict) or doc.get("schema") != SCHEMA_RUN:
        return ph
    from .measurement import Component, Measurement, components_from_deltas

    env = doc.get("environment") or {}
    meters = (env.get("worker_meters") or {}).get(entry.get("worker") or "") or env.get("meters")
    meters = meters or []
    duration = float(ph.get("duration_s", 0.0))
    comps, below = components_from_deltas(ph.get("meters") or [], meters, duration)
    below = below or bool(ph.get("below_resolution", False))
    if when == "call" and entry.get("below_resolution"):
        below = True
    for kind, j in (ph.get("by_kind") or {}).items():  # rebuilt from per-kind totals
        comps.append(Component(kind, kind, float(j), "unknown", "unknown"))
    remote = ph.get("remote") or [[], []]
    comps += [Component.from_dict(c) for c in remote[0]]
    label = f"{entry.get('nodeid', '')} ({when})"
    start = ph.get("start_s")
    call = entry.get("call") if isinstance(entry.get("call"), dict) else {}
    if start is None and call.get("start_s") is not None:  # setup and teardown sit around the call
        c0 = float(call["start_s"])
        start = c0 - duration if when == "setup" else c0 + float(call.get("duration_s", 0.0))
    started = _iso_plus(doc.get("started_at", ""), float(start or 0.0))
    m = Measurement(label, started, duration, comps, below_resolution=below)
    m.notes += [n for n in (remote[1] if len(remote) > 1 else []) if n not in m.notes]
    m.notes += list(ph.get("notes") or [])
    g = doc.get("g_per_j")
    if isinstance(g, (int, float)):
        m.co2e_g = m.energy_j * g
    m.intensity = doc.get("intensity")
    m.pue = doc.get("pue")
    return m.to_dict()


def expand_run(doc: dict[str, Any]) -> dict[str, Any]:
    """A pytest run document in the v1 shape (every phase a full Measurement record), whichever
    schema it was written in; for readers that want every figure rather than the compact form."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_RUN:
        return doc
    out = dict(doc)
    tests = []
    for t in doc.get("tests") or []:
        e = {
            "nodeid": t.get("nodeid"),
            "location": {
                "path": t.get("path") or _file_of(t.get("nodeid") or ""),
                "line": t.get("line"),
            },
            "outcome": t.get("outcome"),
            "attempts": t.get("attempts", 1),
            "rerun_energy_j": t.get("rerun_energy_j", 0.0),
            "worker": t.get("worker"),
            "attribution": t.get("attribution", "exclusive"),
            "below_resolution": t.get("below_resolution", False),
            "first_use": t.get("first_use", 0),
            "budget": t.get("budget"),
        }
        for when in ("setup", "call", "teardown"):
            e[when] = expand_phase(doc, t, when)
        tests.append(e)
    out["tests"] = tests
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a figure")


def load_run(path: Path | str) -> Run:
    """Read and validate a run file; every way it can be unreadable is a CompareError naming it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise CompareError(f"{p}: cannot read: {e.strerror or e}") from None
    if not raw.strip():
        raise CompareError(f"{p}: empty file, expected a run document (JSON)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CompareError(f"{p}: not UTF-8 text (byte {e.start})") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        raise CompareError(f"{p}: not JSON ({e})") from None
    return run_from_document(doc, str(p))


def runs_dir(storage: Path, machine_id: str | None = None) -> Path:
    d = storage / RUNS_DIR
    return d / machine_id if machine_id else d


def saved_runs(storage: Path, machine_id: str | None = None) -> list[Path]:
    """Saved runs, oldest first: of one machine, or of every machine (then by machine)."""
    base = runs_dir(storage, machine_id)
    dirs = [base] if machine_id else sorted(p for p in base.glob("*") if p.is_dir())
    out: list[Path] = []
    for d in dirs:
        out += sorted(p for p in d.glob("*.json") if _FILE.match(p.name))
    return out


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def file_name(name: str) -> str:
    """A run name as it can appear in a file name: ``feature/foo`` -> ``feature_foo``.

    >>> file_name("feature/foo"), file_name("release 1.2"), file_name("main")
    ('feature_foo', 'release_1.2', 'main')
    """
    return _UNSAFE.sub("_", name).strip("_").lstrip(".") or "run"


def resolve_run(name: str, storage: Path, machine_id: str | None = None) -> Path:
    """A run by path, number (``3``, ``#3`` or ``0003``), name (``main``) or "" (the latest).

    With ``machine_id`` only that machine's runs are searched; without, all machines', and a name
    found on several machines is an error listing them.
    """
    if name and (Path(name).is_file() or name.endswith(".json")):
        p = Path(name)
        if not p.exists():
            raise CompareError(f"{name}: no such file")
        return p  # a directory or unreadable file: load_run says what is wrong with it
    runs = saved_runs(storage, machine_id)
    where = runs_dir(storage, machine_id)
    if not runs:
        raise CompareError(f"no saved runs under {where} (save one with pytest --carbon-save)")
    if name == "":
        if machine_id is None and len({p.parent for p in runs}) > 1:
            raise CompareError(
                f"runs of several machines under {where}; name one by path: "
                + ", ".join(str(p) for p in runs[-3:])
            )
        return runs[-1]
    matches = _matching(runs, name)
    if not matches:
        known = ", ".join(p.stem for p in runs[-5:])
        raise CompareError(f"no saved run {name!r} under {where}; latest: {known}")
    if len({p.parent for p in matches}) > 1:
        raise CompareError(
            f"{name!r} names runs of several machines; give a path: "
            + ", ".join(str(p) for p in matches)
        )
    return matches[-1]


def _matching(runs: Sequence[Path], name: str) -> list[Path]:
    """Runs named ``name``: by number (``3``, ``#3``, ``0003``) first, else by name or stem.

    A number is tried before names: a run saved as "3" (refused by --carbon-save since) can then
    still be named by its file stem ``0007_3``.
    """
    num = name[1:] if name.startswith("#") else name
    if num.isdigit():
        by_num = [p for p in runs if (m := _FILE.match(p.name)) and int(m["num"]) == int(num)]
        if by_num or name.startswith("#"):
            return by_num
    safe = file_name(name)
    out = []
    for p in runs:
        m = _FILE.match(p.name)
        assert m is not None
        if m["name"] in (name, safe) or p.stem == name:
            out.append(p)
    return out


def resolve_runs(name: str, storage: Path, machine_id: str | None, count: int) -> list[Path]:
    """The last ``count`` saved runs sharing the name of the run ``name`` resolves to (oldest
    first): ``--carbon-compare=main`` against the last few runs saved as main. A path, a number,
    or runs saved without a name (timestamps) resolve to that one run."""
    first = resolve_run(name, storage, machine_id)
    m = _FILE.match(first.name)
    if count <= 1 or m is None or (name and (first == Path(name) or name.lstrip("#").isdigit())):
        return [first]
    stem_name = m["name"]
    if re.fullmatch(r"(?:[0-9a-f]{7,40}(?:_dirty)?_)?\d{8}_\d{6}", stem_name):
        return [first]  # an unnamed run (commit and timestamp): unique by construction
    same = [p for p in saved_runs(storage, machine_id) if p.parent == first.parent]
    same = [p for p in same if (q := _FILE.match(p.name)) and q["name"] == stem_name]
    return same[-count:] or [first]


# --- comparing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    nodeid: str
    base: Figure | None
    cur: Figure | None

    @property
    def noisy(self) -> bool:
        return bool(
            (self.base and self.base.below_resolution) or (self.cur and self.cur.below_resolution)
        )

    def delta(self, fld: str = "energy") -> float | None:
        if self.base is None or self.cur is None:
            return None
        a, b = self.base.get(fld), self.cur.get(fld)
        return None if a is None or b is None else b - a

    def pct(self, fld: str = "energy") -> float | None:
        d = self.delta(fld)
        if d is None or self.base is None:
            return None
        a = self.base.get(fld) or 0.0
        if a <= 0:
            return None if d == 0 else math.inf
        return d / a * 100.0


def diff(base: Run, cur: Run) -> list[Row]:
    """One row per test of either run, the current run's order first."""
    rows = [Row(n, base.tests.get(n), f) for n, f in cur.tests.items()]
    rows += [Row(n, f, None) for n, f in base.tests.items() if n not in cur.tests]
    return rows


@dataclass(frozen=True)
class Regression:
    row: Row
    spec: FailSpec
    message: str


SPREAD_FACTOR = 2.0


def regressions(
    rows: Sequence[Row],
    specs: Sequence[FailSpec],
    base: Run | None = None,
    cur: Run | None = None,
    spread: float = SPREAD_FACTOR,
) -> list[Regression]:
    """Tests (and, with ``session:`` specs and both runs given, the whole run) beyond the thresholds.

    Never a regression: a test below its meters' resolution on either side, a test whose call
    imported modules (``first_use``: a one-time cost of its process, which lands on whichever test
    first needs the module), and, against several combined baseline runs, a figure within
    ``spread`` times their spread above the median (``median + spread * (highest - median)``: with
    ``spread`` 1, anything above the highest run counts; a new run of an unchanged test is above the
    highest of 5 runs one time in 6, so 2 leaves room for the tail the 5 runs did not show).
    """
    from .units import format_co2e, format_energy

    out = []
    for row in rows:
        if row.base is None or row.cur is None or row.noisy or row.cur.first_use:
            continue
        for spec in specs:
            if spec.field == "session":
                continue
            a, b = row.base.get(spec.field), row.cur.get(spec.field)
            if a is None or b is None or not spec.fails(a, b):
                continue
            hi = row.base.hi(spec.field)
            if hi is not None and b <= a + spread * (hi - a):
                continue  # within what the baseline runs themselves spread over
            fmt = format_energy if spec.field == "energy" else format_co2e
            pct = row.pct(spec.field)
            pct_s = "new energy" if pct is None or math.isinf(pct) else f"{pct:+.1f} %"
            of = f" (median of {row.base.runs} runs, highest {fmt(hi)})" if hi is not None else ""
            out.append(
                Regression(
                    row,
                    spec,
                    f"{row.nodeid}: {spec.field} {fmt(a)}{of} -> {fmt(b)} ({pct_s}, "
                    f"+{fmt(b - a)}) beyond {spec.describe()}",
                )
            )
            break
    if base is not None and cur is not None:
        a, b = base.session_energy_j, cur.session_energy_j
        for spec in specs:
            if spec.field != "session" or a is None or b is None or not spec.fails(a, b):
                continue
            if base.session_hi_j is not None and b <= a + spread * (base.session_hi_j - a):
                continue
            pct = (b - a) / a * 100.0 if a > 0 else math.inf
            pct_s = "new energy" if math.isinf(pct) else f"{pct:+.1f} %"
            row = Row(SESSION_ROW, Figure(a, base.session_co2e_g), Figure(b, cur.session_co2e_g))
            out.append(
                Regression(
                    row,
                    spec,
                    f"whole session: energy {format_energy(a)} -> {format_energy(b)} ({pct_s}, "
                    f"+{format_energy(b - a)}) beyond {spec.describe()}",
                )
            )
            break
    return out


SESSION_ROW = "(session)"


def _change(base: float | None, cur: float | None) -> str:
    if base is None:
        return "new"
    if cur is None:
        return "removed"
    d = cur - base
    if base <= 0:
        return "0 %" if d == 0 else "+inf"
    return f"{d / base * 100.0:+.1f} %"


def _line(a: float | None, b: float | None, what: str, flag: str = "") -> str:
    from .units import format_energy

    fa = format_energy(a) if a is not None else "-"
    fb = format_energy(b) if b is not None else "-"
    return f"{fa:>10} {fb:>10} {_change(a, b):>9}  {what}{flag}"


def format_rows(
    rows: Sequence[Row],
    limit: int | None = None,
    base: Run | None = None,
    cur: Run | None = None,
) -> list[str]:
    """A plain table: the biggest absolute changes first (``limit`` rows, None or 0 for all), then
    every new and removed test (also up to ``limit`` each, with a count of the rest), then per-file
    totals and the session total when both runs are given."""
    both = [r for r in rows if r.base is not None and r.cur is not None]
    new = [r for r in rows if r.base is None]
    gone = [r for r in rows if r.cur is None]
    both.sort(key=lambda r: -abs(r.delta() or 0.0))
    lines = [f"{'baseline':>10} {'now':>10} {'change':>9}  test"]

    def some(xs: list[Row]) -> tuple[list[Row], int]:
        return (xs, 0) if not limit else (xs[:limit], max(0, len(xs) - limit))

    shown, more = some(both)
    for r in shown:
        flag = "  (below resolution)" if r.noisy else ""
        if r.cur is not None and r.cur.first_use:
            flag += "  (first use: imported modules; not gated)"
        lines.append(_line(r.base.energy_j, r.cur.energy_j, r.nodeid, flag))  # type: ignore[union-attr]
    if more:
        lines.append(f"({more} more compared tests not shown; --carbon-top=0 for all)")
    for what, xs in (("new", new), ("removed", gone)):
        shown, more = some(xs)
        for r in shown:
            lines.append(
                _line(
                    r.base.energy_j if r.base else None, r.cur.energy_j if r.cur else None, r.nodeid
                )
            )
        if more:
            lines.append(f"({more} more {what} tests not shown)")
    if base is not None and cur is not None:
        files: dict[str, list[float | None]] = {}
        for r in rows:
            loc = cur.locations.get(r.nodeid) or base.locations.get(r.nodeid) or _file_of(r.nodeid)
            acc = files.setdefault(loc, [None, None])
            if r.base is not None:
                acc[0] = (acc[0] or 0.0) + r.base.energy_j
            if r.cur is not None:
                acc[1] = (acc[1] or 0.0) + r.cur.energy_j
        if files:
            lines.append("by file (sum of the tests' call phases):")
            ranked = sorted(
                files.items(),
                key=lambda kv: -abs((kv[1][1] or 0.0) - (kv[1][0] or 0.0)),
            )
            shown_files = ranked if not limit else ranked[:limit]
            for path, (a, b) in shown_files:
                lines.append(_line(a, b, path))
            if limit and len(ranked) > limit:
                lines.append(f"({len(ranked) - limit} more files not shown)")
        tests_a = sum(r.base.energy_j for r in rows if r.base is not None)
        tests_b = sum(r.cur.energy_j for r in rows if r.cur is not None)
        lines.append(_line(tests_a, tests_b, "all tests (call phases)"))
        runs = f" (median of {base.runs} runs)" if base.runs > 1 else ""
        lines.append(
            _line(base.session_energy_j, cur.session_energy_j, f"session (whole run){runs}")
        )
    return lines


def mismatch_notes(base: Run, cur: Run) -> list[str]:
    notes = []
    if base.machine_id and cur.machine_id and base.machine_id != cur.machine_id:
        notes.append(
            f"the runs come from different machines ({base.machine_id} vs {cur.machine_id}): "
            "energy figures may not be comparable"
        )
    if base.methods and cur.methods and base.methods != cur.methods:
        notes.append(f"the runs were measured differently ({base.methods} vs {cur.methods})")
    return notes


# --- the command ------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"carbonlab compare: error: {message}\n")


def _rows(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 0")
    return n


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="carbonlab compare",
        description=(
            "Compare two pytest carbon runs test by test (saved with pytest --carbon-save, or "
            "written with --carbon-json). Exit 1 when a --fail threshold is crossed, 2 on bad input."
        ),
    )
    p.add_argument("baseline", help="path, number or name of a saved run ('' for the latest)")
    p.add_argument("current", help="path, number or name of a saved run ('' for the latest)")
    p.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="SPEC",
        help="fail on a regression: energy:10%%, energy:0.5J, energy:10%%:0.5J, co2e:... (repeatable)",
    )
    p.add_argument(
        "--storage",
        default=".carbonlab",
        help="storage directory that names refer to (default .carbonlab)",
    )
    p.add_argument("--top", type=_rows, default=20, help="rows to show, 0 for all (default 20)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    return p


def compare_main(argv: Sequence[str]) -> int:
    """``carbonlab compare BASELINE CURRENT [--fail=SPEC]...``: 0 no regression, 1 regression, 2 bad
    input. ``argv`` excludes the program and subcommand names.
    """
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    try:
        specs = [parse_fail_spec(s) for s in args.fail]
        storage = Path(args.storage)
        base = load_run(resolve_run(args.baseline, storage))
        cur = load_run(resolve_run(args.current, storage))
    except CompareError as e:
        print(f"carbonlab compare: error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    rows = diff(base, cur)
    regs = regressions(rows, specs, base, cur)
    if args.json:
        print(
            json.dumps(
                {
                    "baseline": base.label,
                    "current": cur.label,
                    "notes": mismatch_notes(base, cur),
                    "rows": [
                        {
                            "nodeid": r.nodeid,
                            "baseline_j": r.base.energy_j if r.base else None,
                            "current_j": r.cur.energy_j if r.cur else None,
                            "change_pct": r.pct(),
                            "below_resolution": r.noisy,
                        }
                        for r in rows
                    ],
                    "regressions": [g.message for g in regs],
                },
                indent=2,
                default=lambda x: None,
            )
        )
    else:
        print(one_line(f"baseline: {base.label}"))
        print(one_line(f"current:  {cur.label}"))
        for n in mismatch_notes(base, cur):
            print(one_line(f"note: {n}"))
        for line in format_rows(rows, args.top or None, base, cur):
            print(one_line(line))
        if regs:
            print(f"\n{len(regs)} regression(s):")
            for g in regs:
                print(one_line(f"  {g.message}"))
        elif specs:
            print(f"\nno regression beyond {', '.join(s.text for s in specs)}")
    return EXIT_REGRESSION if regs else EXIT_OK
