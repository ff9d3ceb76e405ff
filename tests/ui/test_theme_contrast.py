"""WCAG AA contrast of carbonlab's text in JupyterLab's light and dark themes, measured in the page.

A notebook cell displays real summaries (``CellSummary._repr_html_``) and live-widget HTML
(``live_html``) with every styled element: the methods line, "over budget", "the cell raised",
"[model]", "[below resolution]", the notes, the "≈" equivalent, the history fault line, "● running"
and "(details in the carbonlab sidebar)". For each element that holds text, the browser computes
its colour against its effective background (the first ancestor with a non-transparent
background, composited over the page) and the test asserts at least 4.5:1. The sidebar (its marks,
with the "≈" of a modelled figure) and the status-bar item are measured the same way: the item
both with the notebook's total (Σ) and while a cell runs (⚡, in the accent colour).
"""

from __future__ import annotations

import json

import pytest

from tests.ui import harness

pytestmark = pytest.mark.ui

SHOTS = harness.ARTIFACTS
# Long enough to measure the running status item in both themes (each switch waits for its CSS).
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 20:\n    sum(range(10000))"
STATUS = "#jp-main-statusbar .jp-carbonlab-status-text"

# Per element: [selector-ish description, text, fg rgba, bg rgba, ratio].
MEASURE_JS = """
root => {
  const parse = s => {
    const m = s.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3] + bottom[3] * (1 - top[3]);
    if (a === 0) return [0, 0, 0, 0];
    return [0, 1, 2].map(i => (top[i] * top[3] + bottom[i] * bottom[3] * (1 - top[3])) / a).concat([a]);
  };
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) {
        layers.push(c);
        if (c[3] >= 1) break;
      }
    }
    let bg = [255, 255, 255, 1];  // the canvas, under everything
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  const lum = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const out = [];
  for (const el of root.querySelectorAll('*')) {
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
    if (!own || own === '·') continue;
    const bg = background(el);
    const fg = over(parse(getComputedStyle(el).color), bg);
    const a = lum(fg), b = lum(bg);
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    out.push({text: own.slice(0, 60), fg: fg.map(Math.round), bg: bg.map(Math.round), ratio: Math.round(ratio * 100) / 100});
  }
  return out;
}
"""


def _outputs_html() -> str:
    from carbonlab.jupyter.display import CellSummary
    from carbonlab.jupyter.widget import COMPACT, FULL, LiveState, live_html
    from carbonlab.measurement import Component, Measurement
    from carbonlab.units import parse_budget

    comps = [
        Component("cpu", "cpu-0", 120.0, "cpu-time-model", "process", name="Xeon"),
        Component(
            "gpu", "GPU-0", 0.5, "nvml-energy-counter", "device", name="H100", below_resolution=True
        ),
    ]
    m = Measurement(
        "train",
        "2026-12-06T00:00:00Z",
        0.05,
        comps,
        below_resolution=True,
        co2e_g=0.9,
        intensity={"zone": "FR", "name": "France", "gco2e_per_kwh": 44.2, "source": "Ember 2024"},
        pue=1.0,
    )
    full = CellSummary(
        m,
        previous_energy_j=60.0,
        budget=parse_budget("10J"),
        over_budget=True,
        notes=["PUE 1.0 (default)"],
        history_note="history is not being saved: /x/history.sqlite is read-only",
    )
    oneline = CellSummary(m, error=True, oneline=True, history_note="history fault line")
    live = LiveState(
        label="train",
        t=3.0,
        power_w={"cpu": 40.0},
        energy_j={"cpu": 120.0},
        co2e_g=0.9,
        devices=[{"kind": "cpu", "method": "cpu-time-model", "scope": "process", "name": "Xeon"}],
    )
    return (
        full._repr_html_()
        + oneline._repr_html_()
        + live_html(live, FULL)
        + live_html(live, COMPACT)
    )


def _check(rows: list[dict], where: str) -> None:
    assert rows, f"{where}: no text measured"
    low = [r for r in rows if r["ratio"] < 4.5]
    assert not low, f"{where}: under 4.5:1: " + json.dumps(low, ensure_ascii=False)


def test_every_styled_element_passes_aa_in_light_and_dark(lab, page, tmp_path):
    out_dir = SHOTS
    out_dir.mkdir(parents=True, exist_ok=True)
    body = _outputs_html()
    for needle in (
        "over budget",
        "[model]",
        "[below resolution]",
        "≈",
        "the cell raised",
        "history fault line",
        "● running",
        "(details in the carbonlab sidebar)",
        "note: shorter than a meter",
    ):
        assert needle in body.replace("&#x27;", "'"), needle
    # The cell lasts 50 ms, longer than any meter's resolution (the CPU model's is a scheduler tick,
    # 1-10 ms): its sidebar row is marked "≈" (modelled), never "≥" (below resolution), however
    # fast the machine displays the HTML.
    source = (
        "import time\n"
        "t0 = time.perf_counter()\n"
        "while time.perf_counter() - t0 < 0.05:\n"
        "    pass\n"
        f"from IPython.display import HTML, display\ndisplay(HTML({body!r}))"
    )
    harness.write_notebook(
        lab.root_dir / "theme.ipynb", [("theme-cell", source), ("busy-cell", BUSY)]
    )
    harness.open_notebook(page, lab, "theme.ipynb")
    harness.open_sidebar(page)
    # Loaded, so the sidebar shows a row with its marks (the "≈" of a modelled CPU figure).
    page.click(f"#{harness.SIDEBAR_ID} .jp-carbonlab-load-button")
    page.wait_for_function(
        f"() => /measuring in this kernel/.test(document.getElementById("
        f"'{harness.SIDEBAR_ID}').innerText)",
        timeout=60_000,
    )
    harness.run_cell(page, 0)
    page.wait_for_selector(".jp-OutputArea .carbonlab-live", timeout=60_000)
    page.wait_for_selector(
        f'#{harness.SIDEBAR_ID} [data-cell-id="theme-cell"][data-status="done"]', timeout=60_000
    )
    results = {}
    for theme in ("light", "dark"):
        harness.set_theme(page, theme)
        rows = page.evaluate(MEASURE_JS, page.query_selector(".jp-OutputArea-output").as_element())
        texts = " | ".join(r["text"] for r in rows)
        for needle in ("over budget", "[model]", "≈", "the cell raised", "● running", "note:"):
            assert needle in texts, (theme, needle, texts)
        _check(rows, f"cell output, {theme}")
        status = page.query_selector(".jp-carbonlab-status-text")
        assert status is not None
        srows = page.evaluate(MEASURE_JS, status.evaluate_handle("e => e.parentElement"))
        _check(srows, f"status bar, {theme}")
        side = page.query_selector(f"#{harness.SIDEBAR_ID}")
        sidebar_rows = page.evaluate(MEASURE_JS, side)
        assert any(r["text"] == "≈" for r in sidebar_rows), sidebar_rows
        _check(sidebar_rows, f"sidebar, {theme}")
        results[theme] = {"output": rows, "status": srows, "sidebar": sidebar_rows}
        harness.screenshot(page, f"theme-contrast-{theme}")
    # The status item while a cell runs: "⚡ … W · … J" in the accent colour.
    harness.run_cell(page, 1)
    page.wait_for_function(
        f"() => {{ const e = document.querySelector('{STATUS}'); return !!e && "
        "e.dataset.state === 'running' && /^⚡ .+ W · .+J$/.test(e.innerText.trim()); }",
        timeout=60_000,
    )
    for theme in ("light", "dark"):
        harness.set_theme(page, theme)
        status = page.query_selector(STATUS)
        assert status is not None
        srows = page.evaluate(MEASURE_JS, status.evaluate_handle("e => e.parentElement"))
        assert status.get_attribute("data-state") == "running", "the cell ended too soon"
        assert any(r["text"].startswith("⚡") for r in srows), srows
        _check(srows, f"status bar while running, {theme}")
        results[theme]["status-running"] = srows
        harness.screenshot(page, f"theme-contrast-status-running-{theme}", "#jp-main-statusbar")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:interrupt-kernel')")
    (out_dir / "contrast.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
