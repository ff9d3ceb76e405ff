"""The clocks carbonlab reads. Durations come from a monotonic clock, timestamps from the wall clock.

Callers use ``clock.now()`` (not ``from clock import now``) so tests driving a simulated device can
replace the clock with the device's own.
"""

from __future__ import annotations

import time

now = time.monotonic


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def iso_utc(t: float) -> str:
    """Unix time ``t`` as UTC to the millisecond (truncated), e.g. ``2026-12-06T15:44:21.933Z``.
    Every window stamps its start: the date and time of day are formatted once a second."""
    global _second
    s = int(t)
    sec, text = _second
    if sec != s:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        _second = (s, text)
    return f"{text}.{int((t - s) * 1000):03d}Z"


def utc_now_iso() -> str:
    return iso_utc(time.time())
