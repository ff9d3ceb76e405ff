"""The RAM model: resident memory of this process × a power per GB, integrated over time.

This is a model, not a measurement (``ram-model``, scope ``process``): DRAM power depends on the
modules and on traffic far more than on how much of it one process holds, and no counter attributes
it to a process. The figure charges each resident GB a constant power (``settings.ram_w_per_gb``,
default 0.375 W, after Green Algorithms' 0.3725 W/GB), so a notebook holding 20 GB for a minute costs
about 450 J. "GB" here is 2**30 bytes, the unit RAM is sold in.

Resident set size (RSS) of this process only: children's memory is not included. The integral is a
trapezoid between consecutive reads; while a window is open the sampler reads the meter every
:data:`SAMPLE_PERIOD_S`, so short-lived peaks between reads are smoothed over, never missed entirely
for longer than that.

>>> from carbonlab.config import Settings
>>> m = open_meter(Settings(ram_w_per_gb=0.5))
>>> m.params, m.method, m.scope
({'w_per_gb': 0.5}, 'ram-model', 'process')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import clock
from ..config import Settings
from ..measurement import METHOD_RAM_MODEL, SCOPE_PROCESS
from .base import Meter

GB = 2**30
SAMPLE_PERIOD_S = 1.0
REREAD_S = 0.01  # resident size re-read at most this often between polls
STATM = "/proc/self/statm"


class _Statm:
    """RSS in bytes from /proc/self/statm through a descriptor kept open (one pread, ~1 µs)."""

    def __init__(self, path: str = STATM) -> None:
        self.path = path
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.pid = os.getpid()
        self.fd = os.open(path, os.O_RDONLY)

    def __call__(self) -> int:
        if os.getpid() != self.pid:  # forked: "/proc/self" resolved to the parent when opened
            self.close()
            self.pid = os.getpid()
            self.fd = os.open(self.path, os.O_RDONLY)
        # statm: size resident shared text lib data dt, in pages
        return int(os.pread(self.fd, 128, 0).split()[1]) * self.page

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def _psutil_rss() -> Callable[[], int]:
    import psutil

    proc = psutil.Process()
    return lambda: proc.memory_info().rss


def rss_reader() -> Callable[[], int]:
    """A cheap callable returning this process's RSS in bytes: /proc/self/statm, else psutil."""
    try:
        reader = _Statm()
        reader()
        return reader
    except (OSError, ValueError, IndexError, AttributeError):  # no procfs (macOS, Windows)
        return _psutil_rss()


def physical_memory_bytes() -> int | None:
    """Installed RAM (resident memory can never exceed it), or None when unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except Exception:
            return None


class RamModelMeter(Meter):
    """∫ RSS × W per GB dt since open, trapezoid between reads."""

    def __init__(
        self,
        w_per_gb: float,
        rss_bytes: Callable[[], int],
        total_bytes: int | None = None,
    ) -> None:
        super().__init__(
            kind="ram",
            device="ram",
            name="RAM (resident memory of this process)",
            method=METHOD_RAM_MODEL,
            scope=SCOPE_PROCESS,
            params={"w_per_gb": w_per_gb},
            resolution_s=0.0,  # a model: exact by construction at any duration
            sample_period_s=SAMPLE_PERIOD_S,
        )
        self._w = w_per_gb
        self._rss = rss_bytes
        self._total = total_bytes if total_bytes is not None else physical_memory_bytes()
        self._t = clock.now()
        self._gb = rss_bytes() / GB
        self._e = 0.0
        self._closed = False

    def energy_j(self) -> float:
        # _advance(force=False)'s usual case written out (no procfs read, no second call): pytest
        # --carbon reads this three times a test.
        with self._lock:
            if not self._closed and self.alive:
                t = clock.now()
                if t - self._t < REREAD_S:
                    if t > self._t:
                        self._e += self._gb * self._w * (t - self._t)
                        self._t = t
                    return self._e
        return self._advance(force=False)

    def poll(self) -> None:
        self._advance(force=True)

    def _advance(self, force: bool) -> float:
        with self._lock:
            if self._closed or not self.alive:
                return self._e
            t = clock.now()
            if not force and t - self._t < REREAD_S:
                # Reads closer together than REREAD_S (a test's phases, back-to-back cells) keep
                # the last resident size: at 0.375 W/GB a 10 ms step is ~4 mJ per GB, and the
                # procfs read it saves is most of a window's cost. The sampler's polls always read.
                if t > self._t:
                    self._e += self._gb * self._w * (t - self._t)
                    self._t = t
                return self._e
            try:
                gb = self._rss() / GB
            except Exception as e:  # never raise into user code
                self.alive = False
                self.note_once(f"resident memory unreadable ({e}); the RAM model stopped counting")
                return self._e
            if t > self._t:
                self._e += (self._gb + gb) / 2 * self._w * (t - self._t)
            self._t, self._gb = t, gb
            return self._e

    def power_w(self) -> float | None:
        return self._gb * self._w

    def ceiling_w(self) -> float | None:
        """All installed RAM × W per GB (the resident size cannot exceed it)."""
        return None if not self._total else self._total / GB * self._w

    def close(self) -> None:
        with self._lock:
            self._closed = True
            close = getattr(self._rss, "close", None)
            if close is not None:
                close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["resident_gb"] = round(self._gb, 3)
        return d


def open_meter(settings: Settings) -> RamModelMeter:
    """Open the RAM model (never fails: without procfs it reads RSS through psutil)."""
    return RamModelMeter(float(settings.ram_w_per_gb), rss_reader())
