"""Measured windows: read every meter at begin and end; the difference is the energy.

Windows are independent objects, so they nest and run on several threads at once: each keeps its own
begin readings. Meters are machine- or process-wide counters, so overlapping windows on different
threads each see all the energy of the overlap (see the scope of each component).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from . import _clusters, clock, runtime
from .config import Settings
from .measurement import Component, Measurement, clamp_component, clamped
from .meters.base import Attribution, Meter
from .sampler import model_ceiling


def wall_us() -> int:
    """Wall-clock microseconds: the time base NVML stamps its utilisation samples with."""
    return time.time_ns() // 1000


def safe_attribute(
    m: Meter, start_wall_us: int, duration: float, energy: float
) -> Attribution | None:
    try:
        return m.attribute(start_wall_us, duration, energy)
    except Exception:  # a meter's attribution never fails a window
        return None


def sync_gpu_frameworks() -> None:
    """Wait for queued GPU work of frameworks that are already imported and hold a GPU context.

    CUDA kernels run after the Python line that queued them returns; without this a cell's GPU
    energy leaks into the next cell. Never imports a framework just to do this.
    """
    mods = sys.modules
    torch = mods.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
        except Exception:
            pass
    cupy = mods.get("cupy")
    if cupy is not None:
        try:
            cupy.cuda.runtime.deviceSynchronize()
        except Exception:
            pass
    jax = mods.get("jax")
    if jax is not None:
        try:
            jax.effects_barrier()
        except Exception:
            pass


_gpu_of: tuple[Any, bool] = (None, False)  # the last meter list asked about, and its answer
_notes_of: tuple[Any, int, tuple[str, ...]] = (None, 0, ())  # the same for unavailable meters
# Window.deferrable's answer for the last meter list and intensity setting asked about.
_deferrable_of: tuple[Any, Any, bool] = (None, None, False)


def _has_gpu(meters: Sequence[Meter]) -> bool:
    """Whether a GPU meter is among ``meters`` (worked out once per meter list: every window asks)."""
    global _gpu_of
    seen, answer = _gpu_of
    if seen is not meters:
        answer = any(m.kind == "gpu" for m in meters)
        _gpu_of = (meters, answer)
    return answer


def _unavailable_notes(unavailable: list) -> tuple[str, ...]:
    """The notes saying which meters are unavailable and why (made once per list and length)."""
    global _notes_of
    seen, n, notes = _notes_of
    if seen is not unavailable or n != len(unavailable):
        notes = tuple(f"{u.kind} via {u.source} unavailable: {u.reason}" for u in unavailable)
        _notes_of = (unavailable, len(unavailable), notes)
    return notes


class Window:
    """One begin → end measurement. Use :func:`carbonlab.track` rather than this directly."""

    __slots__ = (  # (one per cell and per test window: no __dict__ each)
        "rt",
        "label",
        "settings",
        "meters",
        "t0",
        "e0",
        "t0_wall_us",
        "t0_unix",
        "_started_at",
        "measurement",
        "remote",
        "e1",
        "duration_s",
        "ceilings",
    )

    def __init__(
        self,
        label: str = "",
        settings: Settings | None = None,
        *,
        rt: runtime.Runtime | None = None,
    ) -> None:
        self.rt = rt or runtime.get()
        self.label = label
        self.settings = settings or self.rt.settings
        self.meters: Sequence[Meter] = self.rt.meter_set.meters
        self.t0: float | None = None
        self.e0: list[float] = []
        self.t0_wall_us = 0
        self.t0_unix = 0.0  # time.time() at begin
        self._started_at: str | None = ""
        self.measurement: Measurement | None = None
        self.remote: list = []  # remote sources (clusters) read at begin: see carbonlab.cluster

    @property
    def has_gpu(self) -> bool:
        return _has_gpu(self.meters)

    @property
    def started_at(self) -> str:
        """The begin's wall-clock time, ISO 8601 UTC to the millisecond ("" before begin);
        formatted when first asked for, from :attr:`t0_unix`."""
        s = self._started_at
        if s is None:
            s = self._started_at = clock.iso_utc(self.t0_unix)
        return s

    @started_at.setter
    def started_at(self, value: str) -> None:
        self._started_at = value

    def begin(self) -> Window:
        if self.settings.gpu_sync and self.has_gpu:
            sync_gpu_frameworks()
        self.rt.sampler.acquire_window()
        self.remote = _clusters.begin_all()  # attached clusters: reads sent (not waited on) first
        self.t0_unix = time.time()
        self._started_at = None  # (started_at: from t0_unix when first asked for)
        self.t0_wall_us = wall_us()
        # The duration encloses every meter's readings (t0 before the first begin reading, t1 after
        # the last end reading): a figure is never charged for time the duration does not count.
        self.t0 = clock.now()
        self.e0 = [m.energy_j() for m in self.meters]
        return self

    def live(self) -> dict[str, Any]:
        """Energy per kind since begin, and elapsed seconds, read now (cheap; for live displays)."""
        assert self.t0 is not None, "window not begun"
        by_kind: dict[str, float] = {}
        readings = [max(0.0, m.energy_j() - e0) for m, e0 in zip(self.meters, self.e0)]
        elapsed = clock.now() - self.t0
        for m, e in zip(self.meters, readings):
            try:
                ceiling = m.ceiling_w()
            except Exception:
                ceiling = None
            if ceiling is not None:
                e = min(e, ceiling * elapsed)  # the live figure obeys the same ceiling as the end's
            by_kind[m.kind] = by_kind.get(m.kind, 0.0) + e
        return {"elapsed_s": elapsed, "energy_j": by_kind}

    def remote_live(self) -> dict[str, Any] | None:
        """Attached clusters' energy since begin and power, from their live polls (≤ 1 Hz); None
        when no cluster was read at begin or none was polled yet."""
        return _clusters.live(self.remote) if self.remote else None

    def end(self, *, into: Measurement | None = None) -> Measurement:
        self.stop()
        return self.build(into=into)

    def stop(self) -> None:
        """The end edge: every meter's reading, the time, the models' ceilings. :meth:`build` makes
        the Measurement from them, at once or later (another thread): the figures are the same."""
        assert self.t0 is not None, "window not begun"
        if self.settings.gpu_sync and self.has_gpu:
            sync_gpu_frameworks()
        self.e1 = [m.energy_j() for m in self.meters]
        t1 = clock.now()
        self.rt.sampler.release_window()
        self.duration_s = max(0.0, t1 - self.t0)
        self.ceilings = [model_ceiling(m) for m in self.meters]

    def deferrable(self) -> bool:
        """After :meth:`stop`: whether :meth:`build` may run later with the same result, i.e. it
        reads nothing more (no attached cluster to read at this edge, no meter attributing energy
        to processes as they are now, a grid intensity from the tables, not a live provider)."""
        if self.remote:
            return False
        global _deferrable_of
        meters, intensity, answer = _deferrable_of
        if meters is not self.meters or intensity != self.settings.intensity:
            meters, intensity = self.meters, self.settings.intensity
            answer = not any(type(m).attribute is not Meter.attribute for m in meters)
            if answer:
                from .footprint.intensity import is_live

                answer = not is_live(intensity)
            _deferrable_of = (meters, intensity, answer)
        return answer

    def energy_j(self) -> float:
        """After :meth:`stop`, for a :meth:`deferrable` window: the energy its Measurement will
        have (each component clamped at its ceiling, summed in order), without building it."""
        d = self.duration_s
        total = 0.0
        for a, b, ceiling in zip(self.e0, self.e1, self.ceilings):
            total += clamped(max(0.0, b - a), ceiling, d)
        return total

    def build(self, *, into: Measurement | None = None) -> Measurement:
        """The Measurement of a stopped window (its components, notes and footprint)."""
        duration = self.duration_s
        components = []
        for m, a, b, ceiling in zip(self.meters, self.e0, self.e1, self.ceilings):
            c = Component(
                kind=m.kind,
                device=m.device,
                name=m.name,
                energy_j=max(0.0, b - a),
                method=m.method,
                scope=m.scope,
                params=dict(m.params),
                below_resolution=duration < m.resolution_s,
                notes=list(m.notes),
            )
            if c.below_resolution:
                c.params["resolution_s"] = m.resolution_s
                c.params["below_resolution_reason"] = (
                    f"window of {duration * 1e6:.0f} µs is shorter than this meter resolves "
                    f"({m.resolution_s * 1e3:g} ms)"
                    + (f": {m.resolution_reason}" if m.resolution_reason else "")
                )
            clamp_component(c, ceiling, duration)
            # After the end readings: a meter's attribution (GPU process queries) is not timed.
            att = safe_attribute(m, self.t0_wall_us, duration, c.energy_j)
            if att is not None:
                c.scope, c.energy_j = att.scope, att.energy_j
                c.params = {**c.params, **att.params}
                c.notes += [n for n in att.notes if n not in c.notes]
            components.append(c)
        notes = list(_unavailable_notes(self.rt.meter_set.unavailable))
        notes += [p for p in self.settings.problems if p not in notes]
        if self.remote:  # attached clusters, read after the local meters
            remote, remote_notes = _clusters.end_all(self.remote, duration)
            components += remote
            notes += remote_notes
        m = into if into is not None else Measurement(self.label, self.started_at, 0.0, [])
        m.label = self.label
        m.started_at = self.started_at
        m.duration_s = duration
        m.components = components
        m.below_resolution = any(c.below_resolution for c in components)
        m.notes = notes
        from . import footprint

        footprint.apply(m, self.settings)
        self.measurement = m
        return m


class Tracker:
    """Context manager and decorator returned by :func:`carbonlab.track`.

    As a context manager (``with`` or ``async with``), ``__enter__`` returns a :class:`Measurement`
    that is filled in when the block ends (also when it raises). As a decorator (of a function, a
    coroutine function or an async generator function), every call is its own window; the latest
    Measurement is kept on the wrapper as ``last_measurement`` and passed to ``on_measurement``.
    """

    def __init__(self, label: str = "", on_measurement=None, **overrides: Any) -> None:
        self.label = label
        self.overrides = overrides
        self.on_measurement = on_measurement
        self._local = __import__("threading").local()

    def _settings(self, rt: runtime.Runtime) -> Settings:
        if not self.overrides:
            return rt.settings
        from .config import with_overrides

        return with_overrides(rt.settings, **self.overrides)

    def _stack(self) -> list[tuple[Window, Measurement]]:
        st = getattr(self._local, "stack", None)
        if st is None:
            st = self._local.stack = []
        return st

    def __enter__(self) -> Measurement:
        rt = runtime.get()
        w = Window(self.label, self._settings(rt), rt=rt)
        placeholder = Measurement(self.label, "", 0.0, [])
        self._stack().append((w, placeholder))
        w.begin()
        placeholder.started_at = w.started_at
        return placeholder

    def __exit__(self, exc_type, exc, tb) -> None:
        w, placeholder = self._stack().pop()
        m = w.end(into=placeholder)
        if exc_type is not None:
            m.extra["error"] = True
        if self.on_measurement is not None:
            self.on_measurement(m)

    async def __aenter__(self) -> Measurement:
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func):
        import functools
        import inspect

        label = self.label or getattr(func, "__qualname__", "function")
        tracker = self

        def window() -> Tracker:
            return Tracker(label, tracker.on_measurement, **tracker.overrides)

        if inspect.iscoroutinefunction(func):
            # The window spans the awaited coroutine, not its creation (which measured 0 s).
            @functools.wraps(func)
            async def awrapper(*args, **kwargs):
                inner = window()
                with inner as m:
                    try:
                        return await func(*args, **kwargs)
                    finally:
                        awrapper.last_measurement = m

            awrapper.last_measurement = None
            return awrapper

        if inspect.isasyncgenfunction(func):
            # One window from the first step to exhaustion (or close), like a with-block around
            # ``async for``; the time the consumer spends between items is inside it.
            @functools.wraps(func)
            async def agwrapper(*args, **kwargs):
                inner = window()
                with inner as m:
                    try:
                        async for item in func(*args, **kwargs):
                            yield item
                    finally:
                        agwrapper.last_measurement = m

            agwrapper.last_measurement = None
            return agwrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            inner = window()
            with inner as m:
                try:
                    return func(*args, **kwargs)
                finally:
                    wrapper.last_measurement = m

        wrapper.last_measurement = None
        return wrapper


def track(label: str = "", *, on_measurement=None, **overrides: Any) -> Tracker:
    """Measure a block or a function: energy per component, CO2e, duration, and how each was obtained.

    >>> import carbonlab
    >>> with carbonlab.track("sum") as m:
    ...     _ = sum(range(10**5))
    >>> sorted(c.kind for c in m.components)[-1]
    'ram'

    ``overrides`` are settings for this window only (``zone="FR"``, ``pue=1.2``); a bad one is a
    :class:`~carbonlab.config.ConfigError` here, before the block runs. A bad setting from the
    environment or ``[tool.carbonlab]`` never raises in the block: the window uses the layer below
    and says so in its notes.

    On an ``async def`` (or an async generator) the window spans the awaited call, not the creation
    of the coroutine; ``async with carbonlab.track(...)`` works too.
    """
    if overrides:
        from .config import Settings, with_overrides

        s = with_overrides(Settings(), **overrides)  # validate now, before any work runs
        if "zone" in overrides or "intensity" in overrides:
            from .footprint import lookup
            from .footprint.providers import check_spec

            lookup(s.zone)  # UnknownZoneError here, not after the block has run
            check_spec(s)
    return Tracker(label, on_measurement, **overrides)
