"""``print(m)`` in a script reads like the cell's summary, not a raw dataclass (issue 14)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from carbonlab.jupyter.display import CellSummary
from carbonlab.measurement import METHOD_CPU_MODEL, SCOPE_PROCESS, Component, Measurement

ROOT = Path(__file__).resolve().parent.parent


def _m() -> Measurement:
    return Measurement(
        label="train",
        started_at="2026-01-01T00:00:00.000Z",
        duration_s=0.000457,
        components=[Component("cpu", "cpu", 0.0015, METHOD_CPU_MODEL, SCOPE_PROCESS, name="Xeon")],
        co2e_g=7.48e-8,
        intensity={"zone": "FR", "gco2e_per_kwh": 44.2, "source": "Ember"},
        pue=1.0,
    )


def test_str_is_the_cells_summary_text():
    m = _m()
    text = str(m)
    assert text == CellSummary(m).text()
    assert text.splitlines()[0] == "carbonlab · train · 457 µs · 1.5 mJ · < 1 µgCO2e"
    assert "cpu-time-model (process)" in text and "FR 44.2 gCO2e/kWh" in text
    assert "Measurement(" not in text and not re.search(r"\de[+-]?\d", text)


def test_repr_keeps_every_field():
    r = repr(_m())
    assert r.startswith("Measurement(label='train'") and "components=[Component(" in r


def test_print_in_a_script(tmp_path):
    script = (
        "import carbonlab\nwith carbonlab.track('script') as m:\n    sum(range(1000))\nprint(m)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "", "HOME": str(tmp_path), "CARBONLAB_HISTORY": str(tmp_path / "h.sqlite")},
    )
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("carbonlab · script · ") and "J" in first, out.stdout
    assert "Measurement(" not in out.stdout
