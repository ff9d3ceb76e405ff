"""What a measured cell shows: a compact HTML block in JupyterLab, plain text everywhere else.

Every figure says how it was obtained (method, scope); model-based figures and figures below a meter's
resolution are marked. Everything that came from the user (labels, zone names, notes) is escaped.

>>> from carbonlab.measurement import Component, Measurement
>>> m = Measurement("<b>train</b>", "2026-11-21T10:00:00.000Z", 2.41,
...                 [Component("cpu", "package-0", 18.4, "cpu-time-model", "process")], co2e_g=0.051)
>>> s = CellSummary(m, previous_energy_j=13.6)
>>> print(s.text().splitlines()[0])
carbonlab · <b>train</b> · 2.41 s · 18.4 J · 51 mgCO2e · +35 % energy vs previous run
>>> "&lt;b&gt;train&lt;/b&gt;" in s._repr_html_() and "<b>train</b>" not in s._repr_html_()
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..measurement import MODEL_METHODS, Measurement
from ..units import (
    Budget,
    format_co2e,
    format_duration,
    format_energy,
    format_intensity,
    format_number,
    format_water,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from ..sampler import Sample

# A relative change smaller than this is "same as previous run" (meters are not that precise).
SAME_WITHIN = 0.005


def change_text(energy_j: float, previous_j: float | None) -> str | None:
    """ "+35 % energy vs previous run", or None when there is nothing to compare with.

    >>> change_text(135.0, 100.0), change_text(50.0, 100.0), change_text(1.0, None)
    ('+35 % energy vs previous run', '−50 % energy vs previous run', None)
    """
    if previous_j is None or previous_j <= 0:
        return None
    r = energy_j / previous_j - 1.0
    if abs(r) < SAME_WITHIN:
        return "same energy as previous run"
    pct = r * 100
    digits = 0 if abs(pct) >= 10 else 1
    sign = "+" if pct > 0 else "−"
    return f"{sign}{abs(pct):.{digits}f} % energy vs previous run"


def _equivalent(m: Measurement) -> str | None:
    if m.co2e_g is None:
        return None
    try:
        from ..footprint.equivalents import equivalent
    except ImportError:  # pragma: no cover - footprint without equivalents
        return None
    country = None
    if m.intensity:
        zone = str(m.intensity.get("zone") or "")
        country = zone[:2] if len(zone) >= 2 and zone[:2].isalpha() and zone[:2].isupper() else None
    try:
        eq = equivalent(m.co2e_g, country)
    except Exception:
        return None
    return eq.text if eq is not None else None


@dataclass
class CellSummary:
    """The summary shown under a measured cell (``display(summary)`` picks HTML or text)."""

    measurement: Measurement
    previous_energy_j: float | None = None
    budget: Budget | None = None
    over_budget: bool = False
    error: bool = False
    compact: bool = False  # only the warning line (``--quiet`` with a budget exceeded)
    # One line with the methods (what a live widget becomes while the carbonlab sidebar shows the
    # details).
    oneline: bool = False
    notes: list[str] = field(default_factory=list)
    # Why history is not being saved (said once, in the first summary after it is known).
    history_note: str | None = None

    # -- pieces ---------------------------------------------------------------------------------
    def _budget_line(self) -> str | None:
        if self.budget is None or not self.over_budget:
            return None
        m = self.measurement
        used = format_energy(m.energy_j) if self.budget.kind == "energy" else _co2e(m.co2e_g)
        return f"over budget: {used} > {self.budget.describe()} (--budget {self.budget.text})"

    def _header(self) -> list[str]:
        m = self.measurement
        bits = ["carbonlab"]
        if m.label:
            bits.append(m.label)
        bits += [format_duration(m.duration_s), format_energy(m.energy_j), _co2e(m.co2e_g)]
        change = change_text(m.energy_j, self.previous_energy_j)
        if change:
            bits.append(change)
        return bits

    def _component_rows(self) -> list[tuple[str, str, str, str, list[str]]]:
        from ..summary import attribution_text, component_marks

        rows = []
        for c in self.measurement.components:
            what = c.name or c.device
            share = attribution_text(c.params)  # a shared GPU: this process's share of the device
            if share:
                what = f"{what}; {share}"
            rows.append(
                (
                    c.kind,
                    format_energy(c.energy_j),
                    f"{c.method} ({c.scope})",
                    what,
                    component_marks(c),
                )
            )
        return rows

    def _grid_line(self) -> str | None:
        m = self.measurement
        i = m.intensity
        if not i:
            return None
        where = i.get("name") or i.get("zone") or "?"
        src = i.get("source") or "unknown source"
        pue = f" · PUE {format_number(m.pue)}" if m.pue is not None else ""
        inten = format_intensity(float(i.get("gco2e_per_kwh", 0)))
        return f"grid: {where} {inten} ({src}){pue}"

    def _extra_line(self) -> str | None:
        m = self.measurement
        bits = []
        if m.embodied_co2e_g is not None:
            bits.append(f"embodied {_co2e(m.embodied_co2e_g)}")
        if m.water_l is not None:
            bits.append(f"water {format_water(m.water_l)}")
        return " · ".join(bits) if bits else None

    def _methods_line(self) -> str:
        """``cpu-time-model (cpu, model), nvml-energy-counter (gpu)``."""
        seen: dict[str, list[str]] = {}
        for c in self.measurement.components:
            tags = seen.setdefault(c.method, [])
            if c.kind not in tags:
                tags.append(c.kind)
            if c.method in MODEL_METHODS and "model" not in tags:
                tags.append("model")
        return ", ".join(f"{m} ({', '.join(t)})" for m, t in seen.items())

    def _flags(self) -> list[str]:
        out = []
        if self.measurement.below_resolution:
            out.append(
                "shorter than a meter can resolve: figures marked 'below resolution' are not "
                "reliable"
            )
        if self.error:
            out.append("the cell raised: the figures cover the run up to the exception")
        return out

    # -- renderings -----------------------------------------------------------------------------
    def text(self) -> str:
        warn = self._budget_line()
        hist = self.history_note
        # Colours: carbonlab's theme variables (labextension/style/base.css), else JupyterLab's,
        # else one that passes WCAG AA on white (GitHub, nbviewer).

        if self.compact:
            return "\n".join(f"carbonlab ⚠ {w}" for w in (warn, hist) if w)
        if self.oneline:
            bits = [*self._header(), self._methods_line()]
            if self.error:
                bits.append("the cell raised")
            return (
                " · ".join(b for b in bits if b)
                + (f" · ⚠ {warn}" if warn else "")
                + (f" · ⚠ {hist}" if hist else "")
            )
        lines = [" · ".join(self._header())]
        for kind, energy, method, what, marks in self._component_rows():
            mark = f"  [{', '.join(marks)}]" if marks else ""
            lines.append(f"  {kind:<4} {energy:>10}  {method}  {what}{mark}")
        for line in (self._extra_line(), _equivalent(self.measurement), self._grid_line()):
            if line:
                lines.append(f"  {line}")
        for f in self._flags():
            lines.append(f"  note: {f}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        if warn:
            lines.append(f"  ⚠ {warn}")
        if hist:
            lines.append(f"  ⚠ {hist}")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        e = html.escape
        warn = self._budget_line()
        style = (
            "font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.4;"
            "border-left:3px solid {c};padding:2px 8px;margin:2px 0"
        )
        hist = self.history_note
        hist_html = f'<div class="carbonlab-history" style="color:{_ERROR}">⚠ {e(hist or "")}</div>'
        if self.compact:
            if not warn and not hist:
                return ""
            return (
                f'<div class="carbonlab-summary carbonlab-over" style="{style.format(c=_ERROR)}">'
                + (f'<b style="color:{_ERROR}">⚠ {e(warn)}</b>' if warn else "")
                + (hist_html if hist else "")
                + "</div>"
            )
        color = _ERROR if warn or self.error else _OK
        head = self._header()
        head_html = "<b>carbonlab</b>" + "".join(f" · {e(b)}" for b in head[1:])
        if self.oneline:
            tail = f' · <span style="color:{_MUTED}">{e(self._methods_line())}</span>'
            if self.error:
                tail += f' · <span style="color:{_ERROR}">the cell raised</span>'
            if warn:
                tail += f' · <b style="color:{_ERROR}">⚠ {e(warn)}</b>'
            if hist:
                tail += (
                    f' · <span class="carbonlab-history" style="color:{_ERROR}">⚠ {e(hist)}</span>'
                )
            return (
                f'<div class="carbonlab-summary carbonlab-oneline" '
                f'style="{style.format(c=color)}">{head_html}{tail}</div>'
            )
        rows = []
        for kind, energy, method, what, marks in self._component_rows():
            mark = "".join(
                f' <span class="carbonlab-mark" style="color:{_WARN}">[{e(mk)}]</span>'
                for mk in marks
            )
            rows.append([e(kind), e(energy), e(method), e(what), mark])
        table = components_table(rows, right=(1,))
        lines = [
            f"<div>{e(x)}</div>"
            for x in (self._extra_line(), _equivalent(self.measurement), self._grid_line())
            if x
        ]
        lines += [f'<div style="color:{_WARN}">note: {e(f)}</div>' for f in self._flags()]
        lines += [f'<div style="color:{_MUTED}">note: {e(n)}</div>' for n in self.notes]
        if warn:
            lines.append(f'<div style="color:{_ERROR}"><b>⚠ {e(warn)}</b></div>')
        if hist:
            lines.append(hist_html)
        cls = "carbonlab-summary" + (" carbonlab-over" if warn else "")
        return (
            f'<div class="{cls}" style="{style.format(c=color)}"><div>{head_html}</div>'
            f"{table}{''.join(lines)}</div>"
        )


# Text colours (see _repr_html_): each var() falls back to a colour that passes AA on white.
_ERROR = "var(--carbonlab-error,var(--jp-error-color0,#c62828))"
_MUTED = "var(--carbonlab-muted,var(--jp-content-font-color2,#595959))"
_WARN = "var(--carbonlab-warn,#7a5c00)"
_OK = "var(--carbonlab-ok,var(--jp-success-color0,#2e7d32))"
_ACCENT = "var(--carbonlab-accent,#1565c0)"

# JupyterLab styles tables in outputs (padding, striped rows); a summary wants a compact grid.
_TD = "padding:0 1em 0 0;border:none;text-align:left;"


def components_table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """An HTML table of already-escaped cells, one row per component; ``right``: right-aligned
    columns. Shared by the summary and the live widget so both look the same."""
    if not rows:
        return ""
    body = "".join(
        '<tr style="background:transparent">'
        + "".join(
            f'<td style="{_TD}{"text-align:right;" if i in right else ""}">{c}</td>'
            for i, c in enumerate(cells)
        )
        + "</tr>"
        for cells in rows
    )
    return (
        '<table class="carbonlab-components" style="border-collapse:collapse;margin:0">'
        + body
        + "</table>"
    )


def _co2e(g: float | None) -> str:
    return "CO2e n/a" if g is None else format_co2e(g)


# -- %carbon status ---------------------------------------------------------------------------------
@dataclass
class TextBlock:
    """Preformatted text that renders the same in every frontend (``%carbon status``)."""

    body: str

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.body)

    def __repr__(self) -> str:
        return self.body

    def _repr_html_(self) -> str:
        return f'<pre class="carbonlab-text">{html.escape(self.body)}</pre>'


# -- %carbon report ---------------------------------------------------------------------------------
def totals_text(df: pandas.DataFrame, notebook: str) -> str:
    """Totals of a history frame, for ``%carbon report``."""
    if df.empty:
        return f"carbonlab: no measured cell runs yet for {notebook}"
    kinds = [
        c for c in df.columns if c.startswith("energy_") and c.endswith("_j") and c != "energy_j"
    ]
    parts = []
    for col in kinds:
        s = df[col].dropna()
        if len(s):
            parts.append(f"{col[len('energy_') : -len('_j')]} {format_energy(float(s.sum()))}")
    co2 = df["co2e_g"].dropna()
    lines = [
        f"carbonlab report · {notebook}",
        f"  {len(df)} measured runs · {format_duration(float(df['duration_s'].sum()))} · "
        f"{format_energy(float(df['energy_j'].sum()))}"
        + (f" ({', '.join(parts)})" if parts else "")
        + (f" · {format_co2e(float(co2.sum()))}" if len(co2) else ""),
    ]
    emb = df["embodied_co2e_g"].dropna()
    if len(emb):
        lines.append(f"  embodied {format_co2e(float(emb.sum()))}")
    errors = int(df["error"].sum())
    if errors:
        lines.append(f"  {errors} of them raised")
    top = df.sort_values("energy_j", ascending=False).head(3)
    lines.append("  most energy:")
    for _, r in top.iterrows():
        lines.append(f"    {_run_name(r)}: {format_energy(float(r['energy_j']))}")
    return "\n".join(lines)


def _run_name(r: Any) -> str:
    """ "squares (In [5])" for a labelled run, "In [7]" for an automatic one."""
    import pandas as pd

    label = r.get("label") or ""
    n = r.get("execution_count")
    count = None if n is None or pd.isna(n) else int(n)
    auto = not label or label == "cell" or label.startswith("In [")
    if auto:
        return f"In [{count}]" if count is not None else (label or "cell")
    return f"{label} (In [{count}])" if count is not None else label


def timeline_rows(
    samples: Sequence[Sample], kinds: Sequence[str], t0: float, t1: float
) -> list[dict[str, Any]]:
    """Power per kind over [t0, t1] from sampler ticks (one row per tick and kind)."""
    rows = []
    for s in samples:
        if s.t < t0 or s.t > t1:
            continue
        by_kind: dict[str, float] = {}
        for kind, p in zip(kinds, s.power_w):
            if p is not None:
                by_kind[kind] = by_kind.get(kind, 0.0) + p
        for kind, p in by_kind.items():
            rows.append({"t_s": round(s.t - t0, 3), "kind": kind, "power_w": p})
    return rows


# Charts embed their data in the notebook: keep them small (altair refuses more than 5000 rows).
CHART_MAX_RUNS = 200
CHART_MAX_TICKS = 600
# JupyterLab 4 and VS Code render this mimetype natively (no CDN, works offline and in nbconvert).
VEGALITE_MIMETYPE = "application/vnd.vegalite.v5+json"


def report_chart(df: pandas.DataFrame, timeline: list[dict[str, Any]], last_label: str) -> Any:
    """Altair: energy per cell run stacked by component, and the last run's power timeline.

    Only the latest :data:`CHART_MAX_RUNS` runs are drawn (the totals cover all of them).
    """
    import altair as alt
    import pandas as pd

    kinds = [
        c for c in df.columns if c.startswith("energy_") and c.endswith("_j") and c != "energy_j"
    ]
    d = df.reset_index(drop=True).copy()
    first = max(0, len(d) - CHART_MAX_RUNS)
    d["run"] = [f"{i + 1}: {_run_name(r)}" for i, r in d.iterrows()]
    d = d.iloc[first:]
    if len(timeline) > CHART_MAX_TICKS * 3:
        step = -(-len(timeline) // (CHART_MAX_TICKS * 3))
        keep = set(sorted({r["t_s"] for r in timeline})[::step])
        timeline = [r for r in timeline if r["t_s"] in keep]
    long = d.melt(
        id_vars=["run", "started_at"], value_vars=kinds, var_name="component", value_name="energy_J"
    ).dropna(subset=["energy_J"])
    long["component"] = long["component"].str[len("energy_") : -len("_j")]
    long["started_at"] = long["started_at"].astype(str)
    bars = (
        alt.Chart(long, title="Energy per cell run")
        .mark_bar()
        .encode(
            x=alt.X("run:N", sort=list(d["run"]), title="cell run"),
            y=alt.Y("energy_J:Q", stack="zero", title="energy (J)"),
            color=alt.Color("component:N", title="component"),
            tooltip=["run", "component", alt.Tooltip("energy_J:Q", format=".4g"), "started_at"],
        )
        .properties(width=max(240, 28 * len(d)), height=220)
    )
    if first:
        bars = bars.properties(title=f"Energy per cell run (latest {CHART_MAX_RUNS})")
    title = (
        f"Power during the last run ({last_label})" if last_label else "Power during the last run"
    )
    if timeline:
        tl = pd.DataFrame(timeline)
        line = (
            alt.Chart(tl, title=title)
            .mark_line(point=True)
            .encode(
                x=alt.X("t_s:Q", title="seconds since start"),
                y=alt.Y("power_w:Q", title="power (W)"),
                color=alt.Color("kind:N", title="component"),
                tooltip=["t_s", "kind", alt.Tooltip("power_w:Q", format=".4g")],
            )
            .properties(width=360, height=180)
        )
        return alt.vconcat(bars, line)
    return bars


def chart_bundle(chart: Any, text: str) -> dict[str, Any]:
    """A display bundle frontends render without fetching anything: the Vega-Lite spec under the
    mimetype JupyterLab and VS Code render natively, and ``text`` for terminals and plain viewers."""
    return {VEGALITE_MIMETYPE: chart.to_dict(), "text/plain": text}
