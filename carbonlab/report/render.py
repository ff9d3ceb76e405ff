"""Renderers of a :class:`~carbonlab.report.model.Report`: markdown, LaTeX, model card, JSON.

Every piece of text that came from a user or a file (labels, notebook paths, zone names, notes) goes
through the format's escaping (:func:`md`, :func:`tex`, :func:`yaml_str`): a label with backticks,
``|``, newlines, LaTeX specials or ``: #`` cannot break a table, a document or the YAML front matter.

>>> md("a|b `c`")
'a\\\\|b \\\\`c\\\\`'
>>> tex("50% of $x_1")
'50\\\\% of \\\\$x\\\\_1'
>>> yaml_str('a: b # c')
'"a: b # c"'
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable

from carbonlab.units import (
    format_co2e,
    format_duration,
    format_energy,
    format_intensity,
    format_water,
)

from .model import (
    FACTOR_UNCERTAINTY,
    UNKNOWN,
    Figure,
    Report,
    method_range,
)

FORMATS = ("markdown", "latex", "model-card", "json")
# Named, not linked: a report travels (a paper, a model hub) where a relative link would break.
METHODOLOGY_REF = 'carbonlab\'s docs/methodology.md, section "Uncertainty in reports"'
CITATION_KEY = "carbonlab"
PROJECT_TITLE = "carbonlab: energy and CO2e of notebook cells, tests and commands"
PROJECT_AUTHORS = "carbonlab developers"


# --- escaping -------------------------------------------------------------------------------------

# Brackets are escaped, so no link can form; parentheses need no escape then.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&$])")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def md(text: object) -> str:
    """Text for a Markdown paragraph or table cell: one line, every markup character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _one_line(text))


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "µ": r"$\mu$",
    "–": "--",
    "—": "---",
    "³": r"$^{3}$",
    "²": r"$^{2}$",
    "₂": r"$_{2}$",
    "≈": r"$\approx$",
    "→": r"$\rightarrow$",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
}


def tex(text: object) -> str:
    """Text for LaTeX (pdflatex, base packages only): specials escaped, non-ASCII folded to ASCII
    (accents dropped; what has no ASCII form becomes '?')."""
    out = []
    for ch in _one_line(text):
        if ch in _TEX:
            out.append(_TEX[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            folded = "".join(
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            )
            ascii_ = folded.encode("ascii", "ignore").decode()
            out.append("".join(_TEX.get(c, c) for c in ascii_) if ascii_ else "?")
    return "".join(out)


def yaml_str(text: object) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML): safe for ``: # ' " \\n``."""
    return json.dumps(_one_line(text), ensure_ascii=True)


# --- figures as text ------------------------------------------------------------------------------

_FORMATTERS: dict[str, Callable[[float], str]] = {
    "energy": format_energy,
    "facility_energy": format_energy,
    "co2e": format_co2e,
    "embodied": format_co2e,
    "water": format_water,
    "duration": format_duration,
    "gpu_hours": lambda h: "0 h" if h == 0 else f"{h:.3g} h",
}


def value_text(key: str, f: Figure) -> str:
    return UNKNOWN if f.value is None else _FORMATTERS[key](f.value)


def range_text(key: str, f: Figure) -> str:
    if f.value is None or f.low is None or f.high is None:
        return UNKNOWN if f.value is None else "n/a"
    if f.low == f.high == f.value:
        return "exact" if key != "gpu_hours" else "exact (by definition)"
    fmt = _FORMATTERS[key]
    return f"{fmt(f.low)} to {fmt(f.high)}"


def _gpus_text(r: Report) -> str:
    gpus = r.hardware.get("gpus") or []
    return ", ".join(f"{g['count']} × {g['name']}" for g in gpus) or "none measured"


def _cpus_text(r: Report) -> str:
    return ", ".join(c["name"] for c in r.hardware.get("cpus") or []) or "none measured"


def hardware_text(r: Report) -> str:
    ram = "; ".join(r.hardware.get("ram") or []) or "not measured"
    return f"GPU: {_gpus_text(r)}; CPU: {_cpus_text(r)}; RAM: {ram}"


def _zones_text(r: Report) -> str:
    seen = []
    for g in r.groups:
        z = f"{g.zone_name} [{g.zone}]" if g.zone_name != UNKNOWN else g.zone
        if z not in seen:
            seen.append(z)
    return "; ".join(seen)


def _cloud(r: Report) -> str:
    """The cloud providers of the groups' zones; on a mixed selection, how many groups each
    covers, and the rest said unknown (an aws group beside an FR one is not "aws")."""
    providers = [g.zone.partition(":")[0] if ":" in g.zone else None for g in r.groups]
    named = sorted({p for p in providers if p})
    if not named:
        return UNKNOWN
    n = len(providers)
    if all(providers) and len(named) == 1:
        return named[0]
    parts = [f"{p} ({providers.count(p)} of {n} groups)" for p in named]
    rest = providers.count(None)
    if rest:
        parts.append(f"unknown ({rest} of {n} groups)")
    return "; ".join(parts)


def _group_sentence(g) -> str:
    """Everything about a group's grid and PUE, with the PUE's full note (for the factors list)."""
    inten = UNKNOWN if g.gco2e_per_kwh is None else format_intensity(g.gco2e_per_kwh)
    kind = "live reading" if g.live else "static figure"
    pue = UNKNOWN if g.pue is None else f"{g.pue:g}"
    return (
        f"zone {g.zone_name} [{g.zone}]: {inten} ({kind}; source {g.intensity_source}, year "
        f"{g.intensity_year}, basis {g.intensity_basis}); PUE {pue} ({g.pue_source}); methods "
        f"{g.methods}; {len(g.run_ids)} run(s), {format_energy(g.energy_j)}, "
        f"{UNKNOWN if g.co2e_g is None else format_co2e(g.co2e_g)}"
    )


def short_pue_source(note: str) -> str:
    """ "default" from "PUE 1.0 (default: no facility overhead, ...)"; the note itself otherwise.

    >>> short_pue_source("PUE 1.14 (AWS 2025 fleet average, AWS page (2025 figure)), used because")
    'AWS 2025 fleet average, AWS page (2025 figure)'
    """
    m = re.match(r"PUE [^ ]+ \(", note)
    if not m:
        return note
    depth, start = 1, m.end()
    for i in range(start, len(note)):
        depth += {"(": 1, ")": -1}.get(note[i], 0)
        if depth == 0:
            return note[start:i].split(":", 1)[0]
    return note[start:].split(":", 1)[0]


def _group_phrase(g) -> str:
    """A group's grid and PUE in a sentence for a paper."""
    inten = UNKNOWN if g.gco2e_per_kwh is None else format_intensity(g.gco2e_per_kwh)
    kind = "live" if g.live else "static"
    pue = UNKNOWN if g.pue is None else f"{g.pue:g}"
    return (
        f"{g.zone_name} [{g.zone}] at {inten} ({g.intensity_source}, {kind}, year "
        f"{g.intensity_year}, {g.intensity_basis}) and PUE {pue} ({short_pue_source(g.pue_source)})"
    )


def _method_phrases(r: Report) -> list[str]:
    seen: dict[str, list[str]] = {}
    for c in r.components:
        seen.setdefault(c.method, [])
        if c.kind not in seen[c.method]:
            seen[c.method].append(c.kind)
    out = []
    for method, kinds in seen.items():
        rg = method_range(method)
        out.append(f"{'/'.join(kinds).upper()} by {method} ({rg.text()}: {rg.basis})")
    return out


def _when(iso: str) -> str:
    """``2026-12-06 04:34 UTC`` from an ISO time in UTC; as given otherwise."""
    if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d", iso) and iso.endswith(("Z", "+00:00")):
        return iso[:10] + " " + iso[11:16] + " UTC"
    return iso


def factor_notes(r: Report) -> list[str]:
    """Where the embodied and water factors come from (the runs' own notes), once each."""
    return sorted(
        {
            n
            for run in r.runs
            for n in run.measurement.notes
            if n.startswith(("embodied: ", "water "))
        }
    )


def _gpu_software(r: Report) -> str:
    """ "NVIDIA driver 550.54.15, CUDA 12.4" when a GPU was measured; "" otherwise."""
    v = r.versions
    if not any(c.kind == "gpu" for run in r.runs for c in run.measurement.components):
        return ""
    return f"NVIDIA driver {', '.join(v.get('driver') or [UNKNOWN])}, CUDA " + ", ".join(
        v.get("cuda") or [UNKNOWN]
    )


def methods_paragraph(r: Report) -> list[str]:
    """Sentences for a paper's methods section (plain text; the caller escapes)."""
    f = r.figures
    n = len(r.runs)
    first, last = (_when(t) for t in r.period())
    s = [
        f"We measured {n} run(s) started between {first} and {last} (total duration "
        f"{value_text('duration', f['duration'])}, {value_text('gpu_hours', f['gpu_hours'])} "
        f"GPU-hours) with carbonlab {r.carbonlab_version}.",
        f"Hardware: {hardware_text(r)}"
        + (f"; GPU software: {_gpu_software(r)}." if _gpu_software(r) else "."),
        "Energy was obtained as follows: " + "; ".join(_method_phrases(r)) + ".",
        f"The IT energy was {value_text('energy', f['energy'])} "
        f"(range {range_text('energy', f['energy'])}).",
    ]
    if r.mixed:
        s.append(
            "The selection mixes "
            + "; ".join(r.mixed)
            + f"; its {len(r.groups)} groups are given separately."
        )
    if f["co2e"].value is not None:
        per_group = "; ".join(
            f"{_group_phrase(g)}: {UNKNOWN if g.co2e_g is None else format_co2e(g.co2e_g)}"
            for g in r.groups
        )
        s.append(
            f"Operational emissions, IT energy × PUE × grid intensity, were "
            f"{value_text('co2e', f['co2e'])} (range {range_text('co2e', f['co2e'])}): "
            + per_group
            + "."
        )
    else:
        s.append(f"Operational emissions are unknown: {f['co2e'].basis}.")
    if f["embodied"].value is not None:
        s.append(
            f"Embodied emissions of the GPUs, amortised over their lifetime, were "
            f"{value_text('embodied', f['embodied'])} (range {range_text('embodied', f['embodied'])})."
        )
    if f["water"].value is not None:
        s.append(
            f"Water consumed: {value_text('water', f['water'])} "
            f"(range {range_text('water', f['water'])})."
        )
    notes = factor_notes(r)
    if notes:
        s.append("Factors: " + "; ".join(notes) + ".")
    s.append(
        "Ranges are bounds on each method's error, not confidence intervals; their basis is in "
        f"{METHODOLOGY_REF}."
    )
    if r.missing:
        s.append("Not included: " + "; ".join(r.missing) + ".")
    return s


def bibtex(r: Report) -> str:
    year = (r.generated_at or "")[:4] or UNKNOWN
    return (
        f"@software{{{CITATION_KEY},\n"
        f"  title = {{{PROJECT_TITLE}}},\n"
        f"  author = {{{{{PROJECT_AUTHORS}}}}},\n"
        f"  version = {{{r.carbonlab_version}}},\n"
        f"  year = {{{year}}},\n"
        f"  note = {{See CITATION.cff in the carbonlab repository}}\n"
        "}"
    )


def _counterfactual_lines(r: Report) -> list[str]:
    out = []
    for c in r.counterfactuals:
        actual = "" if c.actual_co2e_g is None else f" (measured: {format_co2e(c.actual_co2e_g)})"
        out.append(
            f"COUNTERFACTUAL, not measured: the same energy at the same PUE in {c.what}, at "
            f"{format_intensity(c.gco2e_per_kwh)} ({c.source}), would have emitted "
            f"{format_co2e(c.co2e_g)}{actual}."
        )
    return out + list(r.counterfactual_notes)


_FIGURE_ORDER = ("energy", "facility_energy", "co2e", "embodied", "water", "duration", "gpu_hours")


# --- markdown -------------------------------------------------------------------------------------


def _md_body(r: Report, h: str) -> list[str]:
    """Every section but the title; ``h`` is the heading prefix ("##" or "###")."""
    L: list[str] = []
    if r.mixed:
        L += [
            f"**Mixed selection:** the runs differ in {md('; '.join(r.mixed))}. "
            "Totals add the runs as they were measured; per-group figures are below.",
            "",
        ]
    L += [f"{h} Figures", "", "| figure | value | range | method | basis of the range |"]
    L.append("|---|---|---|---|---|")
    for k in _FIGURE_ORDER:
        f = r.figures[k]
        L.append(
            f"| {md(f.name)} | {md(value_text(k, f))} | {md(range_text(k, f))} | "
            f"{md(f.method)} | {md(f.basis)} |"
        )
    L += ["", f"{h} Energy by component and hardware", ""]
    L.append("| kind | hardware | devices | method | scope | energy | range |")
    L.append("|---|---|---|---|---|---|---|")
    for c in r.components:
        model = " (model)" if method_range(c.method).high_pct >= 100 else ""
        L.append(
            f"| {md(c.kind)} | {md(c.name)} | {c.devices} | {md(c.method + model)} | "
            f"{md(c.scope)} | {md(format_energy(c.energy_j))} | "
            f"{md(format_energy(c.low_j))} to {md(format_energy(c.high_j))} |"
        )
    L += ["", f"Hardware: {md(hardware_text(r))}", ""]
    L += [f"{h} Grid, PUE and factors", ""]
    L += [f"- {md(_group_sentence(g))}" for g in r.groups]
    L += [f"- {md(n)}" for n in factor_notes(r)]
    L += ["", f"{h} How each figure was obtained", ""]
    L += [f"- {md(p)}" for p in _method_phrases(r)]
    for key in ("intensity-static", "intensity-live", "embodied", "water"):
        rg = FACTOR_UNCERTAINTY[key]
        L.append(f"- {md(key)}: {md(rg.text())}: {md(rg.basis)}")
    L.append(
        f"- Ranges are bounds on each method's error, not confidence intervals; basis: "
        f"{md(METHODOLOGY_REF)}."
    )
    L += ["", f"{h} What is missing", ""]
    L += [f"- {md(m)}" for m in r.missing] or ["- nothing known"]
    cf = _counterfactual_lines(r)
    if cf:
        L += ["", f"{h} Counterfactual (not measured)", ""]
        L += [f"- {md(x)}" for x in cf]
    L += ["", f"{h} Methods paragraph", "", md(" ".join(methods_paragraph(r)))]
    v = r.versions
    L += ["", f"{h} Software", ""]
    L += [
        f"- carbonlab (this report): {md(v.get('carbonlab_report', UNKNOWN))}",
        f"- carbonlab (measurements): {md(', '.join(v.get('carbonlab_measured', [UNKNOWN])))}",
        f"- NVIDIA driver: {md(', '.join(v.get('driver', [UNKNOWN])))}",
        f"- CUDA: {md(', '.join(v.get('cuda', [UNKNOWN])))}",
        f"- Python: {md(', '.join(v.get('python', [UNKNOWN])))}",
    ]
    L += ["", f"{h} Runs", "", "| run id | source | label | started | duration | energy | CO2e |"]
    L.append("|---|---|---|---|---|---|---|")
    for run in r.runs:
        m = run.measurement
        L.append(
            f"| {md(run.run_id)} | {md(run.source)} | {md(m.label)} | {md(m.started_at or UNKNOWN)} "
            f"| {md(format_duration(m.duration_s))} | {md(format_energy(m.energy_j))} | "
            f"{md(UNKNOWN if m.co2e_g is None else format_co2e(m.co2e_g))} |"
        )
    if r.notes:
        L += [""] + [f"Note: {md(n)}" for n in r.notes]
    L += ["", f"{h} Citation", "", "```bibtex", bibtex(r), "```", ""]
    return L


def to_markdown(r: Report) -> str:
    sel = r.selection
    from .inputs import Selection

    what = Selection(**{k: sel[k] for k in Selection().to_dict() if k in sel}).describe()
    L = [f"# {md(r.title)}", "", f"Selection: {md(what)}; {len(r.runs)} run(s).", ""]
    if r.generated_at:
        L += [f"Generated {md(r.generated_at)} by carbonlab {md(r.carbonlab_version)}.", ""]
    return "\n".join(L + _md_body(r, "##"))


# --- LaTeX ----------------------------------------------------------------------------------------


def to_latex(r: Report) -> str:
    """A table and a methods paragraph for ``\\input{}`` (base LaTeX only: no packages needed)."""
    L = [
        f"% {tex(r.title)}: generated by carbonlab {tex(r.carbonlab_version)}"
        + (f" at {tex(r.generated_at)}" if r.generated_at else ""),
        "% \\input{} this file; it needs no package.",
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        # Paragraph columns wrap long labels and methods instead of running off the page.
        "\\begin{tabular}{p{0.25\\linewidth}p{0.15\\linewidth}p{0.2\\linewidth}p{0.24\\linewidth}}",
        "\\hline",
        "Figure & Value & Range & Method \\\\",
        "\\hline",
    ]
    for k in _FIGURE_ORDER:
        f = r.figures[k]
        L.append(
            f"{tex(f.name)} & {tex(value_text(k, f))} & {tex(range_text(k, f))} & "
            f"{tex(f.method)} \\\\"
        )
    L.append("\\hline")
    for c in r.components:
        L.append(
            f"{tex(c.kind.upper())}: {tex(c.name)} ({c.devices}) & {tex(format_energy(c.energy_j))} "
            f"& {tex(format_energy(c.low_j))} to {tex(format_energy(c.high_j))} & "
            f"{tex(c.method)}, {tex(c.scope)} \\\\"
        )
    L += [
        "\\hline",
        "\\end{tabular}",
        f"\\caption{{{tex(r.title)} of {len(r.runs)} run(s), measured with carbonlab. Ranges bound "
        "each method's error; they are not confidence intervals.}",
        "\\label{tab:carbonlab}",
        "\\end{table}",
        "",
        "\\paragraph{Energy and carbon.}",
        tex(" ".join(methods_paragraph(r))),
        "",
    ]
    cf = _counterfactual_lines(r)
    if cf:
        L += ["\\paragraph{Counterfactual (not measured).}", tex(" ".join(cf)), ""]
    L.append("% Cite carbonlab with this BibTeX entry (add it to your .bib file):")
    L += ["% " + line for line in bibtex(r).splitlines()]
    L.append("")
    return "\n".join(L)


# --- model card -----------------------------------------------------------------------------------


def _emissions_number(g: float | None) -> str:
    if g is None or not math.isfinite(g):
        return "null"
    return repr(float(g))


def to_model_card(r: Report) -> str:
    """Hugging Face model-card metadata (``co2_eq_emissions``, grams) and its Environmental Impact
    section."""
    f = r.figures
    methods = sorted({c.method for c in r.components})
    source = f"carbonlab {r.carbonlab_version} ({', '.join(methods) or UNKNOWN})"
    hw = []
    for g in r.hardware.get("gpus") or []:
        hw.append(f"{g['count']} x {g['name']}")
    hw += [c["name"] for c in r.hardware.get("cpus") or []]
    fm = [
        "---",
        "co2_eq_emissions:",
        f"  emissions: {_emissions_number(f['co2e'].value)}",
        f"  source: {yaml_str(source)}",
        f"  training_type: {yaml_str(r.training_type or UNKNOWN)}",
        f"  geographical_location: {yaml_str(_zones_text(r) or UNKNOWN)}",
        f"  hardware_used: {yaml_str(', '.join(hw) or UNKNOWN)}",
        "---",
        "",
    ]
    hours = f["duration"].value / 3600.0 if f["duration"].value is not None else None
    carbon = value_text("co2e", f["co2e"])
    if f["co2e"].value is not None:
        carbon += f" operational (range {range_text('co2e', f['co2e'])})"
    if f["embodied"].value is not None:
        carbon += (
            f"; {value_text('embodied', f['embodied'])} embodied, amortised GPUs "
            f"(range {range_text('embodied', f['embodied'])})"
        )
    L = fm + [
        "## Environmental Impact",
        "",
        "Energy and carbon measured with carbonlab; every figure states how it was obtained and a "
        "range bounding its method's error. `co2_eq_emissions.emissions` is the operational total "
        "in grams.",
        "",
        f"- **Hardware Type:** {md(hardware_text(r))}",
        f"- **Hours used:** {'unknown' if hours is None else f'{hours:.3g}'} (sum of run "
        f"durations); GPU-hours: {md(value_text('gpu_hours', f['gpu_hours']))}",
        f"- **Cloud Provider:** {md(_cloud(r))}",
        f"- **Compute Region:** {md(_zones_text(r) or UNKNOWN)}",
        f"- **Carbon Emitted:** {md(carbon)}",
        f"- **Energy:** {md(value_text('energy', f['energy']))} IT energy "
        f"(range {md(range_text('energy', f['energy']))})",
        f"- **Water:** {md(value_text('water', f['water']))}",
        "",
    ]
    return "\n".join(L + _md_body(r, "###"))


# --- JSON -----------------------------------------------------------------------------------------


def to_json(r: Report) -> str:
    return json.dumps(r.to_dict(), indent=1, default=str) + "\n"


RENDERERS: dict[str, Callable[[Report], str]] = {
    "markdown": to_markdown,
    "latex": to_latex,
    "model-card": to_model_card,
    "json": to_json,
}


def render(r: Report, fmt: str = "markdown") -> str:
    from .model import ReportError

    try:
        fn = RENDERERS[fmt]
    except KeyError:
        raise ReportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}") from None
    return fn(r)


__all__ = ["FORMATS", "bibtex", "md", "methods_paragraph", "render", "tex", "yaml_str"]
