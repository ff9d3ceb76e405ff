"""GPU energy accuracy against exact ground truth, on the simulated NVML with its manual clock.

Runs inside a worker process (``python -m bench.worker accuracy``). The simulator
(tests/simnvml/simnvml.c) is loaded in this process and the real pynvml talks to it. Its clock only
moves when we move it, so a 60 s window takes milliseconds: carbonlab reads time through
``carbonlab.clock.now`` (the seam its tests use), which is pointed at the simulator's clock, as are
the windows' wall clock and the NVML meters' waits (what ``sim.use_sim_clock()`` does in the tests).

Three ways to get a window's energy, each carbonlab's own code path:

- ``energy counter``: ``NvmlCounterMeter`` (``nvmlDeviceGetTotalEnergyConsumption``), read at the
  window's begin and end, as carbonlab does on Volta and newer;
- ``instant power, 4 Hz``: ``NvmlPowerMeter`` on ``NVML_FI_DEV_POWER_INSTANT``, read at both edges
  and polled every 0.25 s in between (the sampler's schedule at 4 Hz: first poll one period after
  the window begins), trapezoidal integration;
- ``averaged power, 4 Hz``: the same integration fed with a 1 s trailing mean of power, what
  ``nvmlDeviceGetPowerUsage`` returns on Ampere and newer (except the A100). The simulator's
  ``nvmlDeviceGetPowerUsage`` is instantaneous, so its ``NVML_FI_DEV_POWER_AVERAGE`` field (the
  exact mean over the last second) is what this reader returns.

The windows are carbonlab's real ``Window`` (so ``below_resolution`` is carbonlab's own verdict)
over a runtime holding just these three meters and a sampler that we drive by hand. Ground truth is
the simulator's exact integral of the scripted power over the window. Windows start at random
phases (seeded) and last 1.0 to 1.1 times their nominal length, so they are not aligned on the
counter's 100 ms updates or on the traces' periods.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

LENGTHS = [0.01, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0]
POLL_S = 0.25  # carbonlab's sampler at 4 Hz
SOURCE_AVERAGE = "bench-power-average-field"
FIELD_POWER_AVERAGE = 185  # NVML_FI_DEV_POWER_AVERAGE

# name, the simulator's power script, whether a driver reload falls inside each window
TRACES: list[tuple[str, str, bool]] = [
    ("constant 250 W", "250", False),
    ("square wave 1 Hz, 100/300 W", "step 0:100 0.5:300 period 1", False),
    ("square wave 5 Hz, 100/300 W", "step 0:100 0.1:300 period 0.2", False),
    (
        "bursts: 30 ms at 400 W every 0.7 s on 60 W (shorter than the counter update)",
        "step 0:400 0.03:60 period 0.7",
        False,
    ),
    ("counter reset (driver reload) inside the window, 200 W", "200", True),
]
METHODS = ["energy counter", "instant power, 4 Hz", "averaged power, 4 Hz"]


class _HandDrivenSampler:
    """Stands in for carbonlab's sampler thread: the bench polls the meters on its schedule."""

    def acquire_window(self) -> None:
        pass

    def release_window(self) -> None:
        pass


def _read_average_mw(nv: Any, handle: Any) -> float:
    v = nv.nvmlDeviceGetFieldValues(handle, [FIELD_POWER_AVERAGE])[0]
    if v.nvmlReturn != nv.NVML_SUCCESS:
        raise nv.NVMLError(v.nvmlReturn)
    return float(v.value.uiVal)


def _config(script: str, resets: list[float]) -> str:
    lines = ["clock manual", "gpu", "name NVIDIA A100-SXM4-40GB", "arch ampere", f"power {script}"]
    lines += [f"counter_reset {t:.9f}" for t in resets]
    return "\n".join(lines) + "\n"


class _Session:
    """One NVML session on the simulator (the config is read at nvmlInit) and the three meters."""

    def __init__(self, sim: Any, script: str, resets: list[float]) -> None:
        from carbonlab import config, meters, runtime
        from carbonlab.meters import nvml

        nvml._reset_for_tests()
        sim.configure(text=_config(script, resets))
        settings = config.Settings()
        counters, unavailable = nvml.open_meters(settings)
        if len(counters) != 1 or counters[0].method != "nvml-energy-counter":
            raise RuntimeError(f"expected one energy-counter meter, got {counters} {unavailable}")
        session = nvml._open_session()
        gpu = session.gpus[0]
        instant = nvml.NvmlPowerMeter(session, gpu, nvml.SOURCE_POWER_FIELD, POLL_S)
        average = nvml.NvmlPowerMeter(session, gpu, SOURCE_AVERAGE, POLL_S)
        self.meters = [counters[0], instant, average]
        self.polled = [instant, average]
        self.settings = settings
        self.rt = runtime.Runtime(
            settings, meters.MeterSet(list(self.meters)), _HandDrivenSampler()
        )

    def window(self, sim: Any, t0: float, t1: float) -> list[Any]:
        from carbonlab.window import Window

        sim.set_now(t0)
        w = Window("accuracy", self.settings, rt=self.rt).begin()
        t = t0 + POLL_S
        while t < t1:
            sim.set_now(t)
            for m in self.polled:
                m.poll()
            t += POLL_S
        sim.set_now(t1)
        return w.end().components


def run(a: dict[str, Any]) -> dict[str, Any]:
    from carbonlab import clock, window
    from carbonlab.meters import nvml
    from tests.simnvml import CONFIG_ENV, build, load_in_process

    rng = random.Random(a.get("seed", 7))
    n = a["windows"]
    lengths = a.get("lengths", LENGTHS)
    lib = Path(a["lib"]) if a.get("lib") else build(Path(tempfile.mkdtemp()) / "simnvml")
    cfg = Path(tempfile.mkdtemp()) / "sim.conf"
    cfg.write_text("clock manual\n")
    os.environ[CONFIG_ENV] = str(cfg)  # the simulator reads its config from there at nvmlInit
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    nvml._POWER_READERS[SOURCE_AVERAGE] = _read_average_mw
    results: list[dict[str, Any]] = []
    nvml._reset_for_tests()
    with load_in_process(lib, cfg) as sim:
        clock.now = sim.now  # carbonlab's clock seam: durations and integration in simulated time
        window.wall_us = sim.wall_us
        nvml._sleep = sim.advance
        try:
            for name, script, reset in TRACES:
                for length in lengths:
                    cells = {m: [] for m in METHODS}
                    session = None if reset else _Session(sim, script, [])
                    t = 1.0
                    for _ in range(n):
                        t0 = (1.0 if reset else t) + rng.uniform(0.05, 1.05)
                        t1 = t0 + length * rng.uniform(1.0, 1.1)
                        if reset:  # a session per window: the reload falls inside this one
                            session = _Session(
                                sim, script, [t0 + rng.uniform(0.2, 0.8) * (t1 - t0)]
                            )
                        assert session is not None
                        comps = session.window(sim, t0, t1)
                        truth = sim.exact_energy_j(0, t0, t1)
                        for method, c in zip(METHODS, comps):
                            cells[method].append(
                                {
                                    "err_pct": (c.energy_j - truth) / truth * 100.0,
                                    "flagged": bool(c.below_resolution),
                                    "reset_noted": any("went backwards" in x for x in c.notes),
                                    "duration_s": t1 - t0,
                                }
                            )
                        t = t1
                    results.append(
                        {"trace": name, "reset": reset, "length_s": length, "cells": cells}
                    )
        finally:
            nvml._reset_for_tests()
    return {"results": results, "windows_per_cell": n, "lengths": lengths}


def summarise(cell: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and largest |error| over the windows carbonlab did not flag; how many it flagged."""
    conf = [abs(x["err_pct"]) for x in cell if not x["flagged"]]
    flagged = [abs(x["err_pct"]) for x in cell if x["flagged"]]
    return {
        "n": len(cell),
        "flagged": len(flagged),
        "median_abs": statistics.median(conf) if conf else None,
        "max_abs": max(conf) if conf else None,
        "flagged_median_abs": statistics.median(flagged) if flagged else None,
        "reset_noted": sum(1 for x in cell if x["reset_noted"]),
    }
