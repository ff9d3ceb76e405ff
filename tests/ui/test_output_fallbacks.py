"""The colours cell outputs fall back to where JupyterLab's CSS variables are not defined (GitHub,
nbviewer, an HTML export): no browser needed. Every ``var(--…, #hex)`` in the HTML that the summary
(carbonlab/jupyter/display.py) and the live widget (widget.py) emit ends in a hex colour with at
least 4.5:1 contrast on white (WCAG AA for text; the border colours are held to it too). The
rendered contrast inside JupyterLab's own themes is measured in test_theme_contrast.py.
"""

from __future__ import annotations

import re

from carbonlab.jupyter.display import CellSummary
from tests.ui.test_theme_contrast import _outputs_html

# The innermost fallback of a var() chain: var(--a,var(--b,#hex)) -> #hex.
FALLBACK = re.compile(r"var\(\s*--[\w-]+\s*,\s*(?:var\(\s*--[\w-]+\s*,\s*)*(#[0-9a-fA-F]{3,6})\b")


def _luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = []
    for i in (0, 2, 4):
        v = int(h[i : i + 2], 16) / 255
        channels.append(v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = _luminance(a), _luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def _plain_summary_html() -> str:
    """A summary that neither failed nor went over budget: its border is the OK colour."""
    from carbonlab.measurement import Component, Measurement

    m = Measurement(
        "ok",
        "2026-12-06T00:00:00Z",
        0.5,
        [Component("cpu", "cpu-0", 3.0, "cpu-time-model", "process", name="Xeon")],
        co2e_g=0.0004,
        intensity={"zone": "FR", "name": "France", "gco2e_per_kwh": 44.2, "source": "Ember 2024"},
        pue=1.0,
    )
    return CellSummary(m)._repr_html_()


def test_the_contrast_formula():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # the classic just-too-light grey


def test_every_fallback_colour_in_the_outputs_passes_aa_on_white():
    html = _outputs_html() + _plain_summary_html()
    found = FALLBACK.findall(html)
    # every var() with a colour fallback was parsed (none missed by the pattern)
    assert len(found) == len(re.findall(r"var\(--[\w-]+,(?:var\(--[\w-]+,)*#", html))
    low = {f: round(contrast(f, "#ffffff"), 2) for f in set(found) if contrast(f, "#ffffff") < 4.5}
    assert not low, f"fallback colours under 4.5:1 on #ffffff: {low}"
    # the summary's error, muted, warn and ok colours and the widget's accent were all seen
    assert len({f.lower() for f in found}) >= 5, sorted(set(found))
