"""Kernel side of the live sidebar protocol: one comm per measured cell run.

The protocol (DESIGN.md, "Live sidebar protocol"); the constants below are its one Python definition,
mirrored by ``labextension/src/protocol.ts``:

- open, target ``carbonlab.cell``: ``{"v": 1, "run_id", "cell_id", "t0" (unix s), "label",
  "devices": [{"kind", "device", "name", "method", "scope"}], "zone": <intensity dict or null>}``
- while the cell runs, from the sampler thread, at most 4 times a second:
  ``{"kind": "sample", "t" (s since t0), "power_w": {kind: W}, "energy_j": {kind: J since start},
  "co2e_g"}``
- close: ``{"kind": "summary", "measurement": <Measurement JSON>, "error": bool}``

Nothing here is on the cell's critical path at its start: the comm is opened by the sampler thread on
its first tick, not by the ``pre_run_cell`` hook. A run that ends before that tick opens and closes its
comm at the end. A frontend without the target closes the comm (JupyterLab does so for unknown
targets); the run then stops streaming, so nothing piles up where nobody listens.

:class:`LiveRun` fans the same messages out to any number of sinks; the comm is one, the in-cell
widget can be another.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..meters.base import Meter
    from ..sampler import Sample, Sampler

TARGET_NAME = "carbonlab.cell"
PROTOCOL_VERSION = 1
MAX_SAMPLE_HZ = 4.0  # jupyter_server rate-limits iopub; keep samples rare and small
KIND_SAMPLE = "sample"
KIND_SUMMARY = "summary"
_J_PER_KWH = 3.6e6


class Sink(Protocol):
    """Where a live run's messages go. Called from the sampler thread (``sample``) and the main
    thread (``open`` possibly, ``close``); the run serialises the calls."""

    def open(self, data: dict[str, Any]) -> None: ...

    def sample(self, data: dict[str, Any]) -> None: ...

    def close(self, data: dict[str, Any]) -> None: ...

    @property
    def listening(self) -> bool:
        """False once nobody wants more samples (the frontend closed the comm)."""
        ...


class CommSink:
    """A ``carbonlab.cell`` comm, opened lazily with :meth:`open`."""

    def __init__(self, create_comm: Callable[..., Any] | None = None) -> None:
        if create_comm is None:
            import comm

            create_comm = comm.create_comm
        self._create = create_comm
        self._comm: Any = None
        self._closed_by_frontend = False

    @property
    def listening(self) -> bool:
        return not self._closed_by_frontend

    def open(self, data: dict[str, Any]) -> None:
        self._comm = self._create(target_name=TARGET_NAME, data=data)
        self._comm.on_close(self._on_close)

    def _on_close(self, msg: Any) -> None:
        self._closed_by_frontend = True

    def sample(self, data: dict[str, Any]) -> None:
        if self._comm is not None and not self._closed_by_frontend:
            self._comm.send(data)

    def close(self, data: dict[str, Any]) -> None:
        c = self._comm
        if c is None:
            return
        if self._closed_by_frontend:
            # The frontend dropped it; closing again would only send to nobody.
            return
        c.close(data)


def devices(meters: Sequence[Meter]) -> list[dict[str, str]]:
    return [
        {"kind": m.kind, "device": m.device, "name": m.name, "method": m.method, "scope": m.scope}
        for m in meters
    ]


def _num(x: float, digits: int = 6) -> float:
    """Small JSON: round, and never send NaN or infinity (JSON has neither)."""
    if not math.isfinite(x):
        return 0.0
    return round(x, digits)


class LiveRun:
    """One cell run, streamed live to its sinks until :meth:`finish`.

    ``window`` is the begun :class:`carbonlab.window.Window` (its begin readings give "energy since
    start"). ``open_data(measurement)`` returns the open message and the grams CO2e per joule for
    live figures; it is called once, by the sampler thread on its first tick (``measurement`` None),
    or at :meth:`finish` with the finished Measurement JSON when the run ended before that tick (so
    the zone can be read from it rather than looked up).
    """

    def __init__(
        self,
        *,
        sampler: Sampler,
        window: Any,
        sinks: Sequence[Sink],
        open_data: Callable[[dict[str, Any] | None], tuple[dict[str, Any], float | None]],
        hz: float = MAX_SAMPLE_HZ,
    ) -> None:
        self.sampler = sampler
        self.window = window
        self.sinks = list(sinks)
        self._open_data = open_data
        self.hz = min(hz, MAX_SAMPLE_HZ)
        self._lock = threading.Lock()
        self._token: int | None = None
        self._opened = False
        self._finished = False
        self._g_per_j: float | None = None
        self._kinds = [m.kind for m in sampler.meters]
        self.samples_sent = 0
        self.errors: list[str] = []

    def start(self) -> LiveRun:
        self._token = self.sampler.subscribe(self._on_sample, hz=self.hz)
        return self

    # -- sampler thread -------------------------------------------------------------------------
    def _open_locked(self, measurement: dict[str, Any] | None = None) -> None:
        self._opened = True
        try:
            data, self._g_per_j = self._open_data(measurement)
        except Exception as e:
            self.errors.append(f"open data: {e}")
            self.sinks = []
            return
        for s in list(self.sinks):
            try:
                s.open(data)
            except Exception as e:  # a sink must never break the cell
                self.errors.append(f"{type(s).__name__}.open: {e}")
                self.sinks.remove(s)

    def _on_sample(self, sample: Sample) -> None:
        with self._lock:
            if self._finished:
                return
            if not self._opened:
                self._open_locked()
            listening = [s for s in self.sinks if s.listening]
            if not listening:
                return
            msg = self.sample_message(sample)
            for s in listening:
                try:
                    s.sample(msg)
                except Exception as e:
                    self.errors.append(f"{type(s).__name__}.sample: {e}")
                    self.sinks.remove(s)
            self.samples_sent += 1

    def sample_message(self, sample: Sample) -> dict[str, Any]:
        w = self.window
        power: dict[str, float] = {}
        energy: dict[str, float] = {}
        for kind, e, e0, p in zip(self._kinds, sample.energy_j, w.e0, sample.power_w):
            energy[kind] = energy.get(kind, 0.0) + max(0.0, e - e0)
            if p is not None:
                power[kind] = power.get(kind, 0.0) + p
        total = sum(energy.values())
        g = self._g_per_j
        return {
            "kind": KIND_SAMPLE,
            "t": _num(max(0.0, sample.t - w.t0), 3),
            "power_w": {k: _num(v, 3) for k, v in power.items()},
            "energy_j": {k: _num(v, 4) for k, v in energy.items()},
            "co2e_g": None if g is None else _num(total * g, 9),
        }

    # -- main thread ----------------------------------------------------------------------------
    def finish(self, measurement: dict[str, Any], error: bool) -> None:
        """Stop streaming and close every sink with the summary."""
        if self._token is not None:
            self.sampler.unsubscribe(self._token)
            self._token = None
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if not self._opened:
                self._open_locked(measurement)
            summary = {"kind": KIND_SUMMARY, "measurement": measurement, "error": bool(error)}
            for s in self.sinks:
                try:
                    s.close(summary)
                except Exception as e:
                    self.errors.append(f"{type(s).__name__}.close: {e}")

    def abandon(self) -> None:
        """Stop streaming without a summary (the extension is being unloaded)."""
        if self._token is not None:
            self.sampler.unsubscribe(self._token)
            self._token = None
        with self._lock:
            self._finished = True


def open_message(
    *,
    run_id: str,
    cell_id: str | None,
    t0: float,
    label: str,
    meters: Sequence[Meter],
    zone: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "run_id": run_id,
        "cell_id": cell_id,
        "t0": t0,
        "label": label,
        "devices": devices(meters),
        "zone": zone,
    }


def grams_per_joule(intensity_gco2e_per_kwh: float | None, pue: float | None) -> float | None:
    if intensity_gco2e_per_kwh is None:
        return None
    return intensity_gco2e_per_kwh * (pue or 1.0) / _J_PER_KWH
