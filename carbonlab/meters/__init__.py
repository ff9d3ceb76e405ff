"""Meter discovery: every meter this process can read, opened once, and why any is missing.

GPU through NVML; CPU through RAPL where readable, else the process CPU-time model; RAM by a model.
"""

from __future__ import annotations

import threading

from .._record import field, record
from ..config import Settings
from .base import Meter, Unavailable


@record
class MeterSet:
    meters: list[Meter]
    unavailable: list[Unavailable] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "meters": [m.describe() for m in self.meters],
            "unavailable": [u.to_dict() for u in self.unavailable],
        }


_lock = threading.Lock()
_current: MeterSet | None = None


def discover(settings: Settings) -> MeterSet:
    """Open every meter (no caching; see get())."""
    from . import cpu, memory, nvml, rapl

    meters: list[Meter] = []
    unavailable: list[Unavailable] = []
    gpus, why = nvml.open_meters(settings)
    meters += gpus
    unavailable += why
    packages, why = rapl.open_meters(settings)
    unavailable += why
    if packages:
        meters += packages
    else:
        meters.append(cpu.open_meter(settings))
    meters.append(memory.open_meter(settings))
    return MeterSet(meters, unavailable)


def get(settings: Settings) -> MeterSet:
    """The process-wide meters, opened on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = discover(settings)
    return _current


def set_current(meter_set: MeterSet | None) -> None:
    """Replace the process-wide meters (tests, and `reset()`)."""
    global _current
    with _lock:
        if _current is not None and meter_set is not _current:
            for m in _current.meters:
                m.close()
        _current = meter_set
