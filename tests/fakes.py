"""Test-only meters whose energy the test scripts exactly (no hardware, no sleeping)."""

from __future__ import annotations

import threading

from carbonlab import config, runtime
from carbonlab.measurement import METHOD_CPU_MODEL, METHOD_NVML_COUNTER, SCOPE_DEVICE, SCOPE_PROCESS
from carbonlab.meters import MeterSet
from carbonlab.meters.base import Meter


class ScriptedMeter(Meter):
    """A counter the test moves by hand: ``add(joules)``."""

    def __init__(
        self,
        kind="cpu",
        device="fake-0",
        method=METHOD_CPU_MODEL,
        scope=SCOPE_PROCESS,
        name="scripted",
        resolution_s=0.0,
        sample_period_s=None,
    ):
        super().__init__(
            kind=kind,
            device=device,
            name=name,
            method=method,
            scope=scope,
            resolution_s=resolution_s,
            sample_period_s=sample_period_s,
        )
        self._e = 0.0
        self._elock = threading.Lock()
        self.reads = 0

    def add(self, joules: float) -> None:
        with self._elock:
            self._e += joules

    def energy_j(self) -> float:
        with self._elock:
            self.reads += 1
            return self._e

    def power_w(self):
        return None


def install(meters, **settings_overrides) -> MeterSet:
    """Make ``meters`` the process-wide meters (undo with ``runtime.reset()``)."""
    ms = MeterSet(list(meters))
    runtime.reset(config.with_overrides(config.Settings(), **settings_overrides), ms)
    return ms


def gpu_counter(device="GPU-fake", resolution_s=0.1) -> ScriptedMeter:
    return ScriptedMeter("gpu", device, METHOD_NVML_COUNTER, SCOPE_DEVICE, "Fake GPU", resolution_s)
