"""Process-wide state: resolved settings, the meters, and the sampler, created on first use."""

from __future__ import annotations

import threading

from . import config, meters
from ._record import record
from .sampler import Sampler


@record
class Runtime:
    settings: config.Settings
    meter_set: meters.MeterSet
    sampler: Sampler


_lock = threading.Lock()
_runtime: Runtime | None = None


def get() -> Runtime:
    global _runtime
    rt = _runtime
    if rt is None:
        with _lock:
            if _runtime is None:
                # Lenient: a bad setting is a note on every window, never an error in a cell.
                from .footprint import drop_unusable

                settings = drop_unusable(config.resolve(lenient=True))
                ms = meters.get(settings)
                _runtime = Runtime(settings, ms, Sampler(ms.meters, hz=settings.sample_hz))
            rt = _runtime
    return rt


def peek() -> Runtime | None:
    """The runtime if one was created, without creating it (opening meters is not free)."""
    return _runtime


def reset(
    settings: config.Settings | None = None, meter_set: meters.MeterSet | None = None
) -> None:
    """Stop the sampler and forget meters and settings; the next get() starts afresh.

    With arguments, install exactly those (tests use this to inject simulated meters).
    """
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.sampler.stop()
        meters.set_current(meter_set)
        _runtime = None
        if settings is not None and meter_set is not None:
            _runtime = Runtime(
                settings, meter_set, Sampler(meter_set.meters, hz=settings.sample_hz)
            )
