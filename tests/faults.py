"""The fault matrix: every fault of ours that must not reach the user's cell, test run or terminal.

carbonlab is a guest in other people's kernels and pytest sessions. Each test that feeds it a fault (bad
input, a corrupt or locked file, an unwritable path, a provider that misbehaves, text that could inject
markup) carries ``@pytest.mark.fault("family")``; every collected case (each parametrisation counts) is
one row of the matrix. The families and what every case of a family asserts are below.

Regenerate docs/reliability.md (runs the fault tests, about a minute)::

    .venv/bin/python -m tests.faults

``tests/test_docs.py`` fails when the page's case counts no longer match the collected fault tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reliability.md"

TRACEBACK = "Traceback (most recent call last)"
INTERNALERROR = "INTERNALERROR"
# A cell or test may not wait on carbonlab longer than this for any fault of ours.
STALL_LIMIT_S = 0.1


@dataclass(frozen=True)
class Family:
    title: str
    asserts: str


FAMILIES: dict[str, Family] = {
    "cli": Family(
        "Bad `carbonlab` command input",
        "exit 2 with one line naming the value and what is accepted; no traceback; a measured command's "
        "figures are never discarded",
    ),
    "magic": Family(
        "Bad `%%carbon` / `%carbon` options",
        "the usage error names the option; the user's cell body is not run half-way; no traceback",
    ),
    "pytest": Family(
        "Bad pytest options, markers and ini",
        "a UsageError (exit 4) naming the value, or the documented behaviour; never INTERNALERROR",
    ),
    "settings": Family(
        "Bad settings (environment, `[tool.carbonlab]`)",
        "a clear error naming the setting and its source, or the documented fallback with a note",
    ),
    "history": Family(
        "Corrupt, locked or unwritable history",
        f"the cell completes and its output appears without waiting on the store (< {STALL_LIMIT_S * 1000:.0f} ms "
        "added); the fault is said once with the path and reason; nothing unbounded",
    ),
    "baselines": Family(
        "Corrupt or wrong-shaped baselines",
        "pytest reports the file and the reason and finishes its run (no INTERNALERROR); "
        "`carbonlab compare` exits 2 with one line",
    ),
    "outputs": Family(
        "Unwritable or missing output paths",
        "a clear error before work when it can be known, else the result is still shown and the exit "
        "code says the output failed; no traceback",
    ),
    "providers": Family(
        "Live-intensity provider faults and secrets",
        "static fallback with a one-time note; no secret (token, URL userinfo) in any output, file or "
        "message",
    ),
    "injection": Family(
        "Injection into Markdown, workflow commands and HTML",
        "user-controlled text (test ids, labels, file names) is escaped: no markup, link or `::` "
        "command is created",
    ),
    "figures": Family(
        "Impossible figures",
        "no figure exceeds its model's ceiling; windows shorter than a meter resolves are flagged "
        "below_resolution; energy and duration come from the same instants",
    ),
    "hardware": Family(
        "Meter faults (NVML, RAPL, procfs)",
        "the next method or a labelled note; never an exception into the host, never a silent 0",
    ),
    "packaging": Family(
        "Packaging and environment",
        "declared dependencies cover every import; `pytest --help` and `--markers` work with the plugin "
        "installed",
    ),
}


def assert_clean(text: str) -> None:
    """No traceback and no INTERNALERROR in what the user sees."""
    assert TRACEBACK not in text, text
    assert INTERNALERROR not in text, text


# --- the pytest side: registered by tests/conftest.py ------------------------------------------


def family_of(item) -> str | None:
    marker = item.get_closest_marker("fault")
    if marker is None:
        return None
    family = marker.args[0] if marker.args else marker.kwargs.get("family")
    if family not in FAMILIES:
        raise ValueError(
            f"{item.nodeid}: unknown fault family {family!r}; known: {', '.join(FAMILIES)}"
        )
    return family


class MatrixRecorder:
    """Collects each fault case's outcome; writes them as JSON at the end of the session."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}

    def pytest_collection_modifyitems(self, items) -> None:
        for item in items:
            family = family_of(item)
            if family is not None:
                self.rows[item.nodeid] = {"family": family, "outcome": "not run"}

    def pytest_runtest_logreport(self, report) -> None:
        row = self.rows.get(report.nodeid)
        if row is None:
            return
        if (report.when == "call" or report.outcome != "passed") and row["outcome"] in (
            "not run",
            "passed",
        ):
            row["outcome"] = report.outcome

    def pytest_sessionfinish(self) -> None:
        Path(self.path).write_text(json.dumps(self.rows, indent=1), encoding="utf-8")


# --- the page ------------------------------------------------------------------------------------


def collect_counts() -> Counter:
    """Fault cases per family, from pytest's collection (no test runs)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "m.json"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "fault", "-p", "no:randomly",
             f"--fault-matrix={out}", str(ROOT / "tests")],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        rows = json.loads(out.read_text(encoding="utf-8"))
    return Counter(r["family"] for r in rows.values())


def counts_in_page(text: str) -> Counter:
    counts: Counter = Counter()
    for line in text.splitlines():
        if line.startswith("| `") and "` |" in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            key = cells[0].strip("`")
            if key in FAMILIES:
                counts[key] = int(cells[2])
    return counts


def render(rows: dict[str, dict]) -> str:
    by_family: dict[str, list[tuple[str, str]]] = {k: [] for k in FAMILIES}
    for nodeid, row in sorted(rows.items()):
        by_family[row["family"]].append((nodeid, row["outcome"]))
    total = sum(len(v) for v in by_family.values())
    outcomes = Counter(o for v in by_family.values() for _, o in v)
    lines = [
        "# Reliability: the fault matrix",
        "",
        "carbonlab runs inside other people's kernels and pytest sessions, so none of its own faults may",
        "fail, stall or clutter the host's cell or test. Each row below is a family of faults; each case",
        'is a test in `tests/` marked `@pytest.mark.fault("family")` that feeds carbonlab one fault and',
        "asserts what the family promises. Generated by `.venv/bin/python -m tests.faults` (it runs the",
        "fault tests); `tests/test_docs.py` fails when a case is added or removed without regenerating.",
        "",
        f"**{total} cases: {outcomes['passed']} passed, {outcomes['failed']} failed, "
        f"{outcomes['skipped']} skipped.** Every case asserts no traceback and no INTERNALERROR in what "
        "the user sees.",
        "",
        "| family | what | cases | passed | every case asserts |",
        "|---|---|---:|---:|---|",
    ]
    for key, fam in FAMILIES.items():
        cases = by_family[key]
        passed = sum(1 for _, o in cases if o == "passed")
        lines.append(f"| `{key}` | {fam.title} | {len(cases)} | {passed} | {fam.asserts} |")
    lines += ["", "## Cases", ""]
    for key, fam in FAMILIES.items():
        cases = by_family[key]
        if not cases:
            continue
        lines += [f"### `{key}`: {fam.title}", ""]
        for nodeid, outcome in cases:
            mark = "" if outcome == "passed" else f" **{outcome}**"
            lines.append(f"- `{nodeid}`{mark}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "m.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "fault", "-p", "no:randomly",
               f"--fault-matrix={out}", str(ROOT / "tests"), *(argv or [])]  # fmt: skip
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=False)
        rows = json.loads(out.read_text(encoding="utf-8"))
    PAGE.write_text(render(rows) + "\n", encoding="utf-8")
    outcomes = Counter(r["outcome"] for r in rows.values())
    print(f"wrote {PAGE.relative_to(ROOT)}: {len(rows)} cases, {dict(outcomes)}")
    return 0 if outcomes.get("failed", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
