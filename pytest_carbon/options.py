"""Command-line options, ini keys and environment variables, and how they combine.

Precedence for a test's budget: marker > command line > ``PYTEST_CARBON_BUDGET`` > ini. Every command-line
option that has an ini twin defaults to None, so an ini value is never silently overridden by a CLI
default (pytest-memray's ``--memray`` trap).

This module is imported on every pytest run where carbonlab is installed, so it imports nothing from
the carbonlab core: budget strings are parsed (by :mod:`carbonlab.units`) only when one is given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from carbonlab.units import Budget

GROUP = "carbon"
ENV_BUDGET = "PYTEST_CARBON_BUDGET"
ENV_SESSION_BUDGET = "PYTEST_CARBON_SESSION_BUDGET"
DEFAULT_STORAGE = ".carbonlab"
DEFAULT_COMPARE_RUNS = 5
# Words that switch a budget off, so `--carbon-budget=none` can lift an ini default for one run.
NO_BUDGET = ("none", "off")

MARK_BUDGET = "carbon_budget"
MARK_SKIP = "carbon_skip"
MARKER_HELP = {
    MARK_BUDGET: (
        f"{MARK_BUDGET}(spec=None, *, energy=None, co2e=None): energy or CO2e budget for this test's "
        "call phase, e.g. carbon_budget('5 J') or carbon_budget(energy='2 Wh', co2e='0.3 g'); "
        "overrides --carbon-budget (carbonlab)"
    ),
    MARK_SKIP: f"{MARK_SKIP}: do not measure this test or hold it to a carbon budget (carbonlab)",
}

# Help texts, shared by the command line and the ini file (pytest-timeout's habit).
CARBON_DESC = "measure the energy of every test (setup, call, teardown) and report it"
NO_CARBON_DESC = (
    "turn carbon measurement off for this run even when the ini file or environment turns it on "
    "(markers stay registered, unlike -p no:carbon)"
)
BUDGET_DESC = (
    "default energy or emission budget for each test's call phase, e.g. '5 J', '2 Wh', '0.3 gCO2e' "
    f"('none' for no default); implies --carbon. Env: {ENV_BUDGET}"
)
SESSION_BUDGET_DESC = (
    "budget for the whole run, e.g. '2 kJ' or '1 gCO2e'; over it, pytest exits with code 1. "
    f"Implies --carbon. Env: {ENV_SESSION_BUDGET}"
)
TOP_DESC = (
    "show the N tests that used the most energy in their call phase (0 for all); implies --carbon"
)
JSON_DESC = (
    "write per-test Measurement JSON, session totals and the environment to PATH; implies --carbon"
)
STORAGE_DESC = f"directory for saved runs, relative to the rootdir (default {DEFAULT_STORAGE})"
SAVE_DESC = "save this run as a baseline under the storage directory, optionally named NAME"
COMPARE_DESC = (
    "compare this run with a saved one: NAME, its number, or a path (default: the latest saved on "
    "this machine)"
)
COMPARE_FAIL_DESC = (
    "fail the run when a test's energy regressed beyond EXPR: 'energy:10%', 'energy:0.5J', or "
    "'energy:10%:0.5J' (both: over 10 % and over 0.5 J); also 'co2e:...', and 'session:10%' for "
    "the whole run. Repeatable; implies --carbon-compare"
)
COMPARE_RUNS_DESC = (
    "compare with the last N runs saved under the baseline's name (their median; a figure within "
    f"their spread is never a regression); default {5}"
)
SUMMARY_JSON_DESC = (
    "write a compact summary (totals, top tests, per-file totals, regressions) as JSON to PATH, "
    "for dashboards and pull-request comments; implies --carbon"
)
GPU_PER_WORKER_DESC = (
    "under pytest-xdist, give each worker a GPU of its own (CUDA_VISIBLE_DEVICES), so that GPU "
    "energy is attributed to the test that used it rather than shared between workers"
)
INI_CARBON_DESC = "measure every test's energy (like --carbon)"


def _int_at_least_zero(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 0") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 0")
    return n


def _budget_type(text: str) -> str:
    """Validate a budget on the command line so a typo is a usage error before any test runs."""
    if text.strip().lower() not in NO_BUDGET:
        from carbonlab.units import UnitError, parse_budget

        try:
            b = parse_budget(text)
        except UnitError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        if b.value <= 0:
            raise argparse.ArgumentTypeError(zero_budget_message(text))
    return text


def zero_budget_message(text: str) -> str:
    return (
        f"{text!r}: a zero budget fails every test that uses any energy; give a positive amount, "
        "or 'none' for no budget"
    )


def _compare_fail_type(text: str) -> str:
    from carbonlab.compare import CompareError, parse_fail_spec

    try:
        parse_fail_spec(text)
    except CompareError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _cli(help_text: str) -> str:
    """A help text for the command line, where argparse %-formats it (a bare '%' crashed
    `pytest --help`); ini help is shown as written, so the constants keep a plain '%'."""
    return help_text.replace("%", "%%")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "carbon: energy and CO2e budgets (carbonlab)")
    _addoption = group.addoption

    def addoption(*names: str, help: str, **kw: Any) -> None:  # noqa: A002 - argparse's name
        _addoption(*names, help=_cli(help), **kw)

    addoption("--carbon", action="store_true", default=None, help=CARBON_DESC)
    addoption("--no-carbon", action="store_true", default=None, help=NO_CARBON_DESC)
    addoption("--carbon-budget", metavar="SPEC", default=None, type=_budget_type, help=BUDGET_DESC)
    addoption(
        "--carbon-session-budget",
        metavar="SPEC",
        default=None,
        type=_budget_type,
        help=SESSION_BUDGET_DESC,
    )
    addoption("--carbon-top", metavar="N", default=None, type=_int_at_least_zero, help=TOP_DESC)
    addoption("--carbon-json", metavar="PATH", default=None, help=JSON_DESC)
    addoption("--carbon-storage", metavar="DIR", default=None, help=STORAGE_DESC)
    addoption("--carbon-save", metavar="NAME", nargs="?", const="", default=None, help=SAVE_DESC)
    addoption(
        "--carbon-compare", metavar="NAME", nargs="?", const="", default=None, help=COMPARE_DESC
    )
    addoption(
        "--carbon-compare-fail",
        metavar="EXPR",
        action="append",
        default=None,
        type=_compare_fail_type,
        help=COMPARE_FAIL_DESC,
    )
    addoption(
        "--carbon-compare-runs",
        metavar="N",
        default=None,
        type=_int_at_least_zero,
        help=COMPARE_RUNS_DESC,
    )
    addoption("--carbon-summary-json", metavar="PATH", default=None, help=SUMMARY_JSON_DESC)
    addoption(
        "--carbon-gpu-per-worker", action="store_true", default=None, help=GPU_PER_WORKER_DESC
    )

    parser.addini("carbon", INI_CARBON_DESC, type="bool", default=False)
    parser.addini("carbon_budget", BUDGET_DESC, default="")
    parser.addini("carbon_session_budget", SESSION_BUDGET_DESC, default="")
    parser.addini("carbon_top", TOP_DESC, default="")
    parser.addini("carbon_json", JSON_DESC, default="")
    parser.addini("carbon_storage", STORAGE_DESC, default="")
    parser.addini("carbon_compare_fail", COMPARE_FAIL_DESC, type="linelist", default=[])
    parser.addini("carbon_compare_runs", COMPARE_RUNS_DESC, default="")
    parser.addini("carbon_summary_json", SUMMARY_JSON_DESC, default="")
    parser.addini("carbon_gpu_per_worker", GPU_PER_WORKER_DESC, type="bool", default=False)


class Options:
    """Everything the plugin needs from the command line, the environment and the ini file.

    A plain class (not a carbonlab record): this module is imported by every pytest run where
    carbonlab is installed, enabled or not, and must not import carbonlab.
    """

    def __init__(
        self,
        budget: Budget | None = None,
        budget_source: str = "",  # "command line", "environment (PYTEST_CARBON_BUDGET)", "ini"
        session_budget: Budget | None = None,
        session_budget_source: str = "",
        top: int | None = None,
        json_path: Path | None = None,
        storage: Path | None = None,
        save: str | None = None,  # "" = save without a name
        compare: str | None = None,  # "" = the latest saved run on this machine
        compare_fail: list[str] | None = None,
        compare_runs: int = DEFAULT_COMPARE_RUNS,
        summary_json: Path | None = None,
        gpu_per_worker: bool = False,
    ) -> None:
        self.budget = budget
        self.budget_source = budget_source
        self.session_budget = session_budget
        self.session_budget_source = session_budget_source
        self.top = top
        self.json_path = json_path
        self.storage = Path(DEFAULT_STORAGE) if storage is None else storage
        self.save = save
        self.compare = compare
        self.compare_fail = [] if compare_fail is None else compare_fail
        self.compare_runs = compare_runs
        self.summary_json = summary_json
        self.gpu_per_worker = gpu_per_worker

    def __repr__(self) -> str:
        return f"Options({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def to_workerinput(self) -> dict[str, Any]:
        """Builtins only (execnet): what a worker needs to judge budgets like the controller."""
        return {
            "budget": self.budget.text if self.budget else None,
            "budget_source": self.budget_source,
            "session_budget": self.session_budget.text if self.session_budget else None,
            "session_budget_source": self.session_budget_source,
        }


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file (missing directories are created), else None.

    Checked when pytest starts, so a JSON path that can never be written is a usage error before
    any test runs instead of a run whose figures are lost at the end.
    """
    if path.is_dir():
        return "it is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else "the file is not writable"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent} is not writable"
    return None


def _ini_str(config: pytest.Config, name: str) -> str:
    v = config.getini(name)
    return v.strip() if isinstance(v, str) else ""


def _output_path(config: pytest.Config, cli: str | None, ini: str, flag: str) -> Path | None:
    """An output file from the command line or the ini file (relative to the ini file's
    directory, as pytest's own ini paths are); a path that can never be written is a usage error."""
    if cli is not None and not cli.strip():
        raise pytest.UsageError(f"carbon: {flag} needs a PATH, e.g. {flag}=carbon.json")
    text = cli or _ini_str(config, ini)
    if not text:
        return None
    path = Path(text)
    if not path.is_absolute() and not cli:
        path = (config.inipath.parent if config.inipath else config.rootpath) / text
    why = unwritable(path)
    if why:
        what = "the carbon JSON" if ini == "carbon_json" else "the carbon summary JSON"
        raise pytest.UsageError(f"carbon: cannot write {what} to {text}: {why}")
    return path


def _first(*layers: tuple[str | None, str]) -> tuple[str | None, str]:
    """The first (value, source) whose value is a non-empty string."""
    for value, source in layers:
        if value is not None and value.strip() != "":
            return value, source
    return None, ""


def enabled(config: pytest.Config) -> bool:
    """Whether this run measures anything. Cheap: called on every pytest run."""
    opt = config.option
    if getattr(opt, "no_carbon", None):
        return False
    if (
        opt.carbon
        or opt.carbon_budget is not None
        or opt.carbon_session_budget is not None
        or opt.carbon_top is not None
        or opt.carbon_json is not None
        or opt.carbon_save is not None
        or opt.carbon_compare is not None
        or opt.carbon_compare_fail
        or opt.carbon_summary_json is not None
    ):
        return True
    if os.environ.get(ENV_BUDGET, "").strip() or os.environ.get(ENV_SESSION_BUDGET, "").strip():
        return True
    return bool(
        config.getini("carbon")
        or _ini_str(config, "carbon_budget")
        or _ini_str(config, "carbon_session_budget")
    )


def _parse_budget(text: str | None, source: str, what: str) -> Budget | None:
    if text is None or text.strip().lower() in NO_BUDGET:
        return None
    from carbonlab.units import UnitError, parse_budget

    try:
        b = parse_budget(text.strip())
    except UnitError as e:
        raise pytest.UsageError(f"carbon: bad {what} from {source}: {e}") from None
    if b.value <= 0:
        raise pytest.UsageError(f"carbon: bad {what} from {source}: {zero_budget_message(text)}")
    return normalised(b)


def normalised(b: Budget) -> Budget:
    """The budget as the plugin shows it everywhere: '5J' -> '5 J' (carbonlab.units)."""
    from carbonlab._record import replace
    from carbonlab.units import normalise_quantity

    return replace(b, text=normalise_quantity(b.text))


def resolve(config: pytest.Config) -> Options:
    """Combine the layers; a bad value is a UsageError naming it and where it came from."""
    opt = config.option
    o = Options()
    text, o.budget_source = _first(
        (opt.carbon_budget, "command line (--carbon-budget)"),
        (os.environ.get(ENV_BUDGET), f"environment ({ENV_BUDGET})"),
        (_ini_str(config, "carbon_budget"), "ini (carbon_budget)"),
    )
    o.budget = _parse_budget(text, o.budget_source, "budget")
    text, o.session_budget_source = _first(
        (opt.carbon_session_budget, "command line (--carbon-session-budget)"),
        (os.environ.get(ENV_SESSION_BUDGET), f"environment ({ENV_SESSION_BUDGET})"),
        (_ini_str(config, "carbon_session_budget"), "ini (carbon_session_budget)"),
    )
    o.session_budget = _parse_budget(text, o.session_budget_source, "session budget")

    if opt.carbon_top is not None:
        o.top = opt.carbon_top
    elif _ini_str(config, "carbon_top"):
        try:
            o.top = _int_at_least_zero(_ini_str(config, "carbon_top"))
        except argparse.ArgumentTypeError as e:
            raise pytest.UsageError(f"carbon: bad carbon_top in the ini file: {e}") from None

    if opt.carbon_json is not None and not opt.carbon_json.strip():
        raise pytest.UsageError(
            "carbon: --carbon-json needs a PATH, e.g. --carbon-json=carbon.json"
        )
    o.json_path = _output_path(config, opt.carbon_json, "carbon_json", "--carbon-json")
    o.summary_json = _output_path(
        config, opt.carbon_summary_json, "carbon_summary_json", "--carbon-summary-json"
    )

    storage = opt.carbon_storage or _ini_str(config, "carbon_storage") or DEFAULT_STORAGE
    o.storage = Path(storage)
    if not o.storage.is_absolute():
        o.storage = config.rootpath / o.storage

    o.save = opt.carbon_save
    if o.save and o.save.startswith("."):
        raise pytest.UsageError(
            f"carbon: --carbon-save name {o.save!r}: must not start with a dot "
            "(runs are stored under --carbon-storage)"
        )
    if o.save and o.save.lstrip("#").isdigit():
        raise pytest.UsageError(
            f"carbon: --carbon-save name {o.save!r}: all digits would read as a run number in "
            f"--carbon-compare; give a name with a letter, e.g. 'run-{o.save.lstrip('#')}'"
        )
    if o.save is not None:
        why = unwritable(o.storage / "pytest" / "run.json")
        if why:
            raise pytest.UsageError(f"carbon: --carbon-save: cannot save under {o.storage}: {why}")
    o.compare = opt.carbon_compare
    if opt.carbon_compare_fail:
        o.compare_fail = list(opt.carbon_compare_fail)
    else:
        o.compare_fail = [s.strip() for s in config.getini("carbon_compare_fail") if s.strip()]
        for spec in o.compare_fail:
            try:
                _compare_fail_type(spec)
            except argparse.ArgumentTypeError as e:
                raise pytest.UsageError(
                    f"carbon: bad carbon_compare_fail in the ini file: {e}"
                ) from None
    if opt.carbon_compare_runs is not None:
        o.compare_runs = opt.carbon_compare_runs
    elif _ini_str(config, "carbon_compare_runs"):
        try:
            o.compare_runs = _int_at_least_zero(_ini_str(config, "carbon_compare_runs"))
        except argparse.ArgumentTypeError as e:
            raise pytest.UsageError(
                f"carbon: bad carbon_compare_runs in the ini file: {e}"
            ) from None
    o.gpu_per_worker = bool(
        opt.carbon_gpu_per_worker
        if opt.carbon_gpu_per_worker is not None
        else config.getini("carbon_gpu_per_worker")
    )
    if o.compare_fail and o.compare is None:
        o.compare = ""
    return o
