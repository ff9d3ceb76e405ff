"""The sidebar writes figures as every other surface does, and never cuts a unit off (issue 14).

A hand-made ``carbonlab.cell`` comm (the kernel side of the protocol, no extension) closes runs with
long figures; at the default sidebar width each figure must be whole (``scrollWidth <=
clientWidth``) and read exactly what the Python formatter writes for the cell and the terminal.
Screenshots go to .ci/artifacts/ and /tmp/shots/h14cli/.

The second test opens a copy of examples/quickstart.ipynb: JupyterLab must not mark it modified.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from carbonlab.units import format_co2e, format_duration, format_energy
from tests.ui import harness

pytestmark = pytest.mark.ui


# (cell id, energy J, CO2e g, duration s)
RUNS = [
    ("cell-a", 0.00848, 7.5812e-6, 65.2),
    ("cell-b", 3599.0, 0.8884, 7380.0),
    ("cell-c", 0.000457, 4.2e-9, 0.000457),
]


def _source(energy: float, co2: float, duration: float) -> str:
    return textwrap.dedent(
        f"""\
        import time, uuid
        from ipykernel.comm import Comm

        cell_id = get_ipython().kernel.get_parent()["metadata"]["cellId"]
        zone = {{"gco2e_per_kwh": 56.0, "zone": "FR", "source": "Ember 2024 (static)", "at": None}}
        c = Comm(target_name="carbonlab.cell", data={{
            "v": 1, "run_id": uuid.uuid4().hex, "cell_id": cell_id, "t0": time.time(),
            "label": None, "devices": [], "zone": zone}})
        c.close({{"kind": "summary", "error": False, "measurement": {{
            "schema": "carbonlab.measurement/1", "label": None, "started_at": None,
            "duration_s": {duration!r}, "energy_j": {energy!r}, "co2e_g": {co2!r},
            "embodied_co2e_g": None, "water_l": None, "below_resolution": False,
            "components": [{{"kind": "cpu", "device": "package-0", "energy_j": {energy!r},
                            "method": "rapl", "scope": "package"}}],
            "intensity": zone, "pue": 1.0}}}})
        """
    )


def _shot(page, name: str, selector: str | None = None) -> Path:
    return harness.screenshot(page, name, selector)  # .ci/artifacts/<name>.png


def test_long_figures_are_whole_and_read_as_in_the_cell(tmp_path):
    with harness.start_lab(tmp_path / "root") as lab, harness.chromium() as browser:
        page = harness.new_page(browser)
        harness.write_notebook(
            lab.root_dir / "units.ipynb", [(cid, _source(e, g, d)) for cid, e, g, d in RUNS]
        )
        harness.open_notebook(page, lab, "units.ipynb")
        harness.open_sidebar(page)
        for i, (cid, *_rest) in enumerate(RUNS):
            harness.run_cell(page, i)
            page.wait_for_selector(
                f'#{harness.SIDEBAR_ID} [data-cell-id="{cid}"][data-status="done"]', timeout=60000
            )
        width = page.evaluate(
            f"document.getElementById({harness.SIDEBAR_ID!r}).getBoundingClientRect().width"
        )
        cells = page.evaluate(
            """ids => ids.map(id => {
              const row = document.querySelector(`#carbonlab-sidebar [data-cell-id="${id}"]`);
              return [...row.querySelectorAll('.jp-carbonlab-num')].map(el => ({
                text: el.textContent.trim(),
                scroll: el.scrollWidth,
                client: el.clientWidth,
                lines: (() => {
                  const r = document.createRange();
                  r.selectNodeContents(el);
                  return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size;
                })(),
              }));
            })""",
            [cid for cid, *_ in RUNS],
        )
        shot = _shot(page, "sidebar-units", f"#{harness.SIDEBAR_ID}")
        assert shot.exists()
        print(f"sidebar width {width}px; cells {cells}")
        for (cid, energy, co2, duration), nums in zip(RUNS, cells):
            e, g, d = nums
            # the same text as the Python formatter writes under the cell and in the terminal
            assert e["text"] == format_energy(energy), cid
            assert g["text"] == format_co2e(co2), cid
            assert d["text"] == format_duration(duration), cid
            for n in nums:  # never clipped, and on one line at the default width
                assert n["scroll"] <= n["client"], (cid, n, width)
                assert n["lines"] == 1, (cid, n, width)
        assert [c[1]["text"] for c in cells] == ["7.58 µgCO2e", "888 mgCO2e", "< 1 µgCO2e"]
        assert cells[2][2]["text"] == "457 µs"  # not "0 ms"


def test_dev_labs_copy_of_an_example_opens_unmodified(tmp_path):
    """dev/lab seeds its copies with this environment's kernel language_info: JupyterLab marks a
    notebook modified on open exactly when the kernel reports a different one (the tracked
    notebooks keep only its name, as the Python version differs per machine)."""
    import os
    import subprocess
    import sys

    root = tmp_path / "lab"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    env.update(DEV_LAB_DIR=str(root), DEV_LAB_DRY_RUN="1", DEV_LAB_NO_SETUP="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(
        ["bash", str(harness.ROOT / "dev" / "lab")], env=env, check=True, capture_output=True
    )
    with harness.start_lab(root) as lab, harness.chromium() as browser:
        page = harness.new_page(browser)
        harness.open_notebook(page, lab, "quickstart.ipynb")
        # the kernel's info has reached the model once language_info carries a version
        page.wait_for_function(
            """() => {
              const w = window.jupyterapp.shell.currentWidget;
              const li = w && w.model && w.model.getMetadata('language_info');
              return !!(li && li.version);
            }""",
            timeout=60000,
        )
        state = page.evaluate(
            """() => {
              const w = window.jupyterapp.shell.currentWidget;
              return {dirty: w.model.dirty, nbformatMinor: w.model.nbformatMinor};
            }"""
        )
        _shot(page, "example-opened")
        print(f"after open: {state}")
        assert state == {"dirty": False, "nbformatMinor": 5}
