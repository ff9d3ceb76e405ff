"""The clocks carbonlab reads. Durations come from a monotonic clock, timestamps from the wall clock.

Callers use ``clock.now()`` (not ``from clock import now``) so tests driving a simulated device can
replace the clock with the device's own.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

now = time.monotonic


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
