"""``carbonlab report``: a paper's or a model card's energy and carbon, from measured runs.

Selection (:mod:`.inputs`) → a typed :class:`Report` (:mod:`.model`, every figure with its method and
range) → a renderer (:mod:`.render`: markdown, latex, model-card, json).

>>> from carbonlab.report import Selection, report_for, render  # doctest: +SKIP
>>> r = report_for(Selection(history="history.sqlite", labels=["train"]))  # doctest: +SKIP
>>> print(render(r, "latex"))  # doctest: +SKIP
"""

from __future__ import annotations

from .inputs import Selection, load_file, parse_when, report_for, select
from .model import (
    FACTOR_UNCERTAINTY,
    SCHEMA_REPORT,
    UNCERTAINTY,
    InputRun,
    Report,
    ReportError,
    build,
)
from .render import FORMATS, render

__all__ = [
    "FACTOR_UNCERTAINTY",
    "FORMATS",
    "SCHEMA_REPORT",
    "UNCERTAINTY",
    "InputRun",
    "Report",
    "ReportError",
    "Selection",
    "build",
    "load_file",
    "parse_when",
    "render",
    "report_for",
    "select",
]
