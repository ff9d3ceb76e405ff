"""The embodied carbon of GPUs (``embodied_carbon.csv``): matched on the product name NVML reports.

Loaded when a window has a GPU; :mod:`carbonlab.footprint.factors` re-exports every name here.
"""

from __future__ import annotations

import re
from functools import cache

from .._record import record
from ._data import Row, table
from .factors import EMBODIED_TABLE, Factor, _num


@record(frozen=True)
class EmbodiedFigure:
    """Embodied carbon of one device, the figure used and the range across sources."""

    family: str  # "H100"
    kgco2e: float
    kgco2e_min: float
    kgco2e_max: float
    item: str  # the table row used
    citation: str  # short: "NVIDIA HGX H100 Product Carbon Footprint (via EcoLogits)"
    source: str  # the table's full source text


# NVML product name pattern -> the table rows for that part, the preferred one first (manufacturer
# PCF, then literature, then BoaviztAPI). Names are matched upper-case with "-" and "_" as spaces, so
# "NVIDIA A100-SXM4-80GB" matches A100; word boundaries keep A10 off A100 and A10G, H200 off GH200.
_GPU_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        r"\bH100\b",
        "H100",
        (
            "NVIDIA H100 SXM5 80GB (one GPU, from HGX H100 PCF)",
            "NVIDIA H100 SXM 80GB (BoaviztAPI 2.5.0 bottom-up)",
            "NVIDIA H100 PCIe 80GB (BoaviztAPI 2.5.0 bottom-up)",
        ),
    ),
    (r"\bH200\b", "H200", ("NVIDIA H200 SXM 141GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bB200\b", "B200", ("NVIDIA B200 180GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (
        r"\bA100\b",
        "A100",
        (
            "NVIDIA A100 (BLOOM study assumption)",
            "NVIDIA A100 SXM4 80GB (BoaviztAPI 2.5.0 bottom-up)",
            "NVIDIA A100 SXM4 40GB (BoaviztAPI 2.5.0 bottom-up)",
            "NVIDIA A100 PCIe 40GB (BoaviztAPI 2.5.0 bottom-up)",
        ),
    ),
    (r"\bA10\b", "A10", ("NVIDIA A10 (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bV100\b", "V100", ("NVIDIA Tesla V100 SXM2 32GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bL40S\b", "L40S", ("NVIDIA L40S 48GB (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bL4\b", "L4", ("NVIDIA L4 (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bT4\b", "T4", ("NVIDIA T4 (BoaviztAPI 2.5.0 bottom-up)",)),
    (r"\bMI300X\b", "MI300X", ("AMD Instinct MI300X 192GB (BoaviztAPI 2.5.0 bottom-up)",)),
)


@cache
def _gpu_patterns() -> tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...]:
    return tuple((re.compile(p), family, items) for p, family, items in _GPU_RULES)


@cache
def _embodied_rows() -> dict[str, Row]:
    return {r["item"]: r for r in table(EMBODIED_TABLE)}


@cache
def gpu_embodied(name: str) -> EmbodiedFigure | None:
    """The embodied figure for a GPU product name, or None when carbonlab has none for it.

    >>> gpu_embodied("NVIDIA H100 80GB HBM3").kgco2e
    164.0
    >>> gpu_embodied("NVIDIA A10G") is None
    True
    """
    key = re.sub(r"[-_]", " ", name).upper()
    for pattern, family, items in _gpu_patterns():
        if pattern.search(key):
            rows = [_embodied_rows()[i] for i in items]
            values = [float(r["kgco2e"]) for r in rows]
            best = rows[0]
            return EmbodiedFigure(
                family=family,
                kgco2e=values[0],
                kgco2e_min=min(values),
                kgco2e_max=max(values),
                item=best["item"],
                citation=best["citation"],
                source=best["source"],
            )
    return None


def embodied_note(name: str, count: int, fig: EmbodiedFigure, lifetime: Factor) -> str:
    """The sentence saying what a GPU is charged and on whose figure."""
    span = (
        f"; published figures for the {fig.family} run {_num(fig.kgco2e_min)}–"
        f"{_num(fig.kgco2e_max)} kg"
        if fig.kgco2e_max > fig.kgco2e_min
        else "; the only figure carbonlab has for it (method spreads of 3× are common)"
    )
    many = f"{count} × " if count > 1 else ""
    return (
        f"embodied: {many}{name} at {_num(fig.kgco2e)} kgCO2e each ({fig.citation}{span}), "
        f"amortised over {_num(lifetime.value)} years ({lifetime.source}) of wall time"
    )
