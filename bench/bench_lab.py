"""Run All in JupyterLab: what carbonlab adds to a notebook of trivial cells (issue 14).

Run: .venv/bin/python -m bench.bench_lab [N_CELLS] [ROUNDS]   (prints medians; not a test; needs
the labextension built and Debian's chromium, as the browser tests do)

One JupyterLab server (tests/ui/harness.py: this venv, a throwaway state directory), one headless
Chromium page. Each round opens a fresh notebook of ``N_CELLS`` cells ``x = sum(range(2000))``
after a first cell that is ``pass`` (without carbonlab) or ``%load_ext carbonlab``; the first cell
runs on its own, then the time from "run all below" to the last cell's execution count is taken in
the page (``performance.now()``). Three configurations, interleaved round by round so that drift in
the machine's load hits them alike:

- without carbonlab;
- with carbonlab, its sidebar closed (the in-cell widget and the kernel's hooks only);
- with carbonlab and the sidebar open (short runs reach it batched on its hello comm).

Goal (issue 14): <= 1.05x on this Run All.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

CELL = "x = sum(range(2000))"

RUN_ALL_BELOW = """async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const nb = panel.content;
  nb.activeCellIndex = 1;
  const t0 = performance.now();
  await app.commands.execute('notebook:run-all-below');
  const last = nb.widgets[nb.widgets.length - 1].model;
  while (last.executionCount === null || last.executionState === 'running') {
    await new Promise(r => setTimeout(r, 5));
  }
  return (performance.now() - t0) / 1000;
}"""

SHUTDOWN_ALL = "async () => { await window.jupyterapp.serviceManager.sessions.shutdownAll(); }"


def one_run(page, lab, name: str, first: str, n_cells: int, sidebar: bool) -> float:
    from tests.ui import harness

    cells = [("c0", first)] + [(f"c{i}", CELL) for i in range(1, n_cells + 1)]
    harness.write_notebook(lab.root_dir / name, cells)
    page.evaluate(SHUTDOWN_ALL)
    harness.open_notebook(page, lab, name)
    if sidebar:
        harness.open_sidebar(page)
    harness.run_cell(page, 0)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.widgets[0].model.executionCount !== null",
        timeout=120_000,
    )
    return float(page.evaluate(RUN_ALL_BELOW))


def main(n_cells: int = 300, rounds: int = 5) -> dict[str, float]:
    from tests.ui import harness

    if harness.chromium_path() is None:
        raise SystemExit("bench_lab needs chromium (apt-get install -y chromium)")
    configs = {
        "without carbonlab": ("pass", False),
        "carbonlab, sidebar closed": ("%load_ext carbonlab", False),
        "carbonlab, sidebar open": ("%load_ext carbonlab", True),
    }
    if os.environ.get("BENCH_LAB_NO_RUNS"):  # diagnosis: the kernel sends the sidebar no runs
        configs["carbonlab, no runs sent"] = (
            "%load_ext carbonlab\nfrom carbonlab.jupyter.extension import _EXTENSIONS\n"
            "_EXTENSIONS[id(get_ipython())].batch._channels = lambda: []",
            False,
        )
    times: dict[str, list[float]] = {k: [] for k in configs}
    root = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    os.environ["CARBONLAB_HISTORY"] = str(root / "history.sqlite")
    with harness.start_lab(root / "lab") as lab, harness.chromium() as browser:
        page = harness.new_page(browser)
        page.goto(f"{lab.url}/lab?reset")
        harness.wait_app(page)
        k = 0
        for r in range(rounds + 1):  # round 0 warms the server, the kernels and the page
            for name, (first, sidebar) in configs.items():
                k += 1
                t = one_run(page, lab, f"run{k}.ipynb", first, n_cells, sidebar)
                if r:
                    times[name].append(t)
        page.evaluate(SHUTDOWN_ALL)
    base = statistics.median(times["without carbonlab"])
    print(
        f"\n== JupyterLab Run All, {n_cells} trivial cells ({CELL!r}), {rounds} interleaved rounds, "
        f"medians ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs; goal <= 1.05x):"
    )
    out = {}
    for name, xs in times.items():
        m = statistics.median(xs)
        out[name] = m
        print(
            f"  {name:<28} {m:7.3f} s  {(m - base) / n_cells * 1000:+6.2f} ms per cell  "
            f"{m / base:.3f}x   rounds {[round(x, 3) for x in xs]}"
        )
    return out


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:3]))
