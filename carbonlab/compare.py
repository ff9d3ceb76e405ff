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

SCHEMA_RUN = "carbonlab.pytest-run/1"
RUNS_DIR = "pytest"  # under the storage directory: <storage>/pytest/<machine-id>/NNNN_<name>.json
FIELDS = ("energy", "co2e")
_FILE = re.compile(r"^(?P<num>\d{4})_(?P<name>.*)\.json$")

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2


class CompareError(ValueError):
    """Bad input (a threshold, a run name, a file); the message says what is accepted."""


# --- text ---------------------------------------------------------------------------------------

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x85: "\\x85",
                 0x2028: "\\u2028", 0x2029: "\\u2029"})  # fmt: skip


def one_line(text: str) -> str:
    """Text from test ids, file names or a run file, shown on one terminal line: control
    characters escaped, so no line of ours can start a workflow command (``::error::``).

    >>> one_line("t.py::test[a\\n::error::x]")
    't.py::test[a\\\\n::error::x]'
    """
    return text.translate(_CONTROL)


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
                format_energy(self.floor) if self.field == "energy" else format_co2e(self.floor)
            )
        return " and ".join(parts)


_SPEC_HELP = (
    "expected FIELD:PCT%, FIELD:AMOUNT or FIELD:PCT%:AMOUNT with FIELD energy or co2e, "
    "e.g. 'energy:10%', 'energy:0.5J', 'energy:10%:0.5J', 'co2e:5%:0.1g'"
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
                floor = parse_energy(p) if fld == "energy" else parse_co2e(p)
            except UnitError as e:
                raise CompareError(f"{text!r}: {e}") from None
    return FailSpec(fld, pct, floor, text.strip())


# --- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    energy_j: float
    co2e_g: float | None
    below_resolution: bool = False

    def get(self, fld: str) -> float | None:
        return self.energy_j if fld == "energy" else self.co2e_g


@dataclass
class Run:
    label: str
    machine_id: str = ""
    started_at: str = ""
    methods: dict[str, list[str]] = field(default_factory=dict)
    tests: dict[str, Figure] = field(default_factory=dict)
    session_energy_j: float | None = None
    session_co2e_g: float | None = None


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
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_RUN:
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
        run = Run(
            label=label,
            machine_id=machine,
            started_at=started if isinstance(started, str) else "",
            methods=dict(methods),
        )
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
            run.tests[nodeid] = Figure(
                energy, _number(call.get("co2e_g"), f"{where}.call.co2e_g", optional=True), below
            )
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


def resolve_run(name: str, storage: Path, machine_id: str | None = None) -> Path:
    """A run by path, number (``3`` or ``0003``), name (``main``) or "" (the latest).

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
    matches = []
    for p in runs:
        m = _FILE.match(p.name)
        assert m is not None
        if (name.isdigit() and int(m["num"]) == int(name)) or m["name"] == name or p.stem == name:
            matches.append(p)
    if not matches:
        known = ", ".join(p.stem for p in runs[-5:])
        raise CompareError(f"no saved run {name!r} under {where}; latest: {known}")
    if len({p.parent for p in matches}) > 1:
        raise CompareError(
            f"{name!r} names runs of several machines; give a path: "
            + ", ".join(str(p) for p in matches)
        )
    return matches[-1]


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


def regressions(rows: Sequence[Row], specs: Sequence[FailSpec]) -> list[Regression]:
    from .units import format_co2e, format_energy

    out = []
    for row in rows:
        if row.base is None or row.cur is None or row.noisy:
            continue
        for spec in specs:
            a, b = row.base.get(spec.field), row.cur.get(spec.field)
            if a is None or b is None or not spec.fails(a, b):
                continue
            fmt = format_energy if spec.field == "energy" else format_co2e
            pct = row.pct(spec.field)
            pct_s = "new energy" if pct is None or math.isinf(pct) else f"{pct:+.1f} %"
            out.append(
                Regression(
                    row,
                    spec,
                    f"{row.nodeid}: {spec.field} {fmt(a)} -> {fmt(b)} ({pct_s}, "
                    f"+{fmt(b - a)}) beyond {spec.describe()}",
                )
            )
            break
    return out


def format_rows(rows: Sequence[Row], limit: int | None = None) -> list[str]:
    """A plain table, biggest absolute change first."""
    from .units import format_energy

    def key(r: Row) -> float:
        d = r.delta()
        return -abs(d) if d is not None else 0.0

    shown = sorted(rows, key=key)
    if limit:
        shown = shown[:limit]
    lines = [f"{'baseline':>10} {'now':>10} {'change':>9}  test"]
    for r in shown:
        a = format_energy(r.base.energy_j) if r.base else "-"
        b = format_energy(r.cur.energy_j) if r.cur else "-"
        pct = r.pct()
        if r.base is None:
            ch = "new"
        elif r.cur is None:
            ch = "gone"
        elif pct is None:
            ch = "0 %"
        elif math.isinf(pct):
            ch = "+inf"
        else:
            ch = f"{pct:+.1f} %"
        flag = "  (below resolution)" if r.noisy else ""
        lines.append(f"{a:>10} {b:>10} {ch:>9}  {r.nodeid}{flag}")
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
    regs = regressions(rows, specs)
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
        for line in format_rows(rows, args.top or None):
            print(one_line(line))
        if regs:
            print(f"\n{len(regs)} regression(s):")
            for g in regs:
                print(one_line(f"  {g.message}"))
        elif specs:
            print(f"\nno regression beyond {', '.join(s.text for s in specs)}")
    return EXIT_REGRESSION if regs else EXIT_OK
