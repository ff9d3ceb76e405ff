"""The contract every meter keeps.

A meter is probed once, then read many times. ``energy_j()`` is a monotonic, non-decreasing counter in
joules since the meter was opened: a window is the difference of two readings. Meters that can only
read power (NVML power on pre-Volta GPUs) integrate it into such a virtual counter; the sampler thread
calls ``poll()`` often enough to keep the integration (or a wraparound guard) honest.

A meter never raises into user code. When its hardware fails it stops counting, keeps its last value,
sets ``alive = False`` and records one note saying why.

A meter whose counter covers more than this process (a whole GPU) may say, once per window and at
its end, how much of a window's energy was this process's: ``attribute()`` returns an
:class:`Attribution`, or None to leave the component as the counter read it.
"""

from __future__ import annotations

import abc
import threading
from typing import Any

from .._record import field, record


@record
class Unavailable:
    """A meter that could not be opened, and why (shown once, in `carbonlab devices` and status)."""

    kind: str  # gpu, cpu, ram
    source: str  # "nvml", "rapl", ...
    reason: str
    hint: str = ""  # how to fix it, when there is a way

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "source": self.source, "reason": self.reason}
        if self.hint:
            d["hint"] = self.hint
        return d


@record
class Attribution:
    """What part of a window's energy a meter charges to this process, and on what grounds.

    ``scope`` replaces the meter's scope for this window and ``energy_j`` the counter's difference;
    ``params`` are added to the component's (they keep the gross figure, e.g.
    ``device_energy_j``, beside the attributed one: it is never hidden), ``notes`` to its notes.
    """

    scope: str
    energy_j: float
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@record
class Meter(abc.ABC):
    kind: str
    device: str
    name: str
    method: str
    scope: str
    params: dict[str, Any] = field(default_factory=dict)
    # Windows shorter than this cannot be resolved by this meter and are flagged below_resolution.
    resolution_s: float = 0.0
    # Why a window shorter than resolution_s cannot be resolved (shown with the flag).
    resolution_reason: str = ""
    # None: no background sampling needed. Otherwise the sampler calls poll() at least this often
    # while a window is open (power integration, counter wraparound guard).
    sample_period_s: float | None = None
    alive: bool = True
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @abc.abstractmethod
    def energy_j(self) -> float:
        """Cumulative joules since the meter was opened. Thread-safe, never raises."""

    def power_w(self) -> float | None:
        """Latest power estimate in watts, for live display; None when unknown."""
        return None

    def ceiling_w(self) -> float | None:
        """The most power this meter's model can charge (a window's energy never exceeds it times
        the window's duration), or None when the meter reads hardware and has no model ceiling."""
        return None

    def poll(self) -> None:
        """Called from the sampler thread; integrate power or guard against wraparound."""
        self.energy_j()

    def close(self) -> None:
        """Release what the meter holds; later reads return the last value."""

    def attribute(
        self, window_start_wall_us: int, duration_s: float, energy_j: float
    ) -> Attribution | None:
        """This process's part of a window's ``energy_j`` (what this meter counted from a window
        that began at ``window_start_wall_us``, wall-clock microseconds, and lasted
        ``duration_s``), or None: the energy stays as counted, with the meter's own scope.

        Called once at each window's end, off the window's timed span, so it may be slower than
        a read (several driver queries); it never raises.
        """
        return None

    def note_once(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "device": self.device,
            "name": self.name,
            "method": self.method,
            "scope": self.scope,
            "resolution_s": self.resolution_s,
            "alive": self.alive,
        }
        if self.params:
            d["params"] = dict(self.params)
        if self.notes:
            d["notes"] = list(self.notes)
        try:  # a model's ceiling: readers of the description clamp to it as a window does
            ceiling = self.ceiling_w()
        except Exception:
            ceiling = None
        if ceiling is not None:
            d["ceiling_w"] = ceiling
        return d
