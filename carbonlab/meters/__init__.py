"""Meter discovery: every meter this process can read, opened once, and why any is missing.

GPU through NVML; CPU through RAPL where readable, else the process CPU-time model; RAM by a model.
"""

from __future__ import annotations

import os
import sys
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

POWERCAP_ROOT = "/sys/class/powercap"  # where rapl looks (carbonlab.meters.rapl.POWERCAP_ROOT)


def no_powercap(root: str) -> Unavailable:
    """Why there is no RAPL meter on a machine without the powercap interface."""
    return Unavailable(
        "cpu",
        "rapl",
        f"no powercap interface at {root}",
        "RAPL is absent in most cloud VMs and in containers that do not mount "
        "/sys/class/powercap; CPU energy comes from the CPU-time model.",
    )


def _rapl_meters(settings: Settings) -> tuple[list[Meter], list[Unavailable]]:
    """rapl.open_meters(settings); on a machine without powercap (most VMs and containers), its
    answer without importing the module (~2 M instructions at a pytest session's start). Once
    rapl is imported (tests replace its parts), it is always asked."""
    if "carbonlab.meters.rapl" not in sys.modules and not os.path.isdir(POWERCAP_ROOT):
        return [], [no_powercap(POWERCAP_ROOT)]
    from . import rapl

    return rapl.open_meters(settings)


def _nvml_meters(settings: Settings) -> tuple[list[Meter], list[Unavailable]]:
    """nvml.open_meters(settings); where the NVIDIA driver library cannot be loaded (most machines)
    or CUDA_VISIBLE_DEVICES hides every GPU, its answer without importing the module (~3.5 M
    instructions at a pytest session's start; see nvml_probe). Once nvml is imported (tests
    replace its parts, and it remembers its NVML session), it is always asked."""
    if "carbonlab.meters.nvml" not in sys.modules:
        from .nvml_probe import unavailable_without_nvml

        why = unavailable_without_nvml(os.environ)
        if why is not None:
            return [], [why]
    from . import nvml

    return nvml.open_meters(settings)


def discover(settings: Settings) -> MeterSet:
    """Open every meter (no caching; see get())."""
    from . import cpu, memory

    meters: list[Meter] = []
    unavailable: list[Unavailable] = []
    gpus, why = _nvml_meters(settings)
    meters += gpus
    unavailable += why
    packages, why = _rapl_meters(settings)
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
