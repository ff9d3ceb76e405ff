"""The on-disk cache every process shares: one JSON entry per provider setting, replaced atomically,
and a lock file so that one process fetches while the others wait and then read its result.

An entry holds the last good :class:`Snapshot` (its own ``fetched_at`` says how old it is), and the
failure state: how many fetches failed in a row, the last fault, and when the next try is allowed
(exponential backoff, or the server's Retry-After). Nothing secret is ever written here.

Reading needs no lock (``os.replace`` is atomic); only the fetch-and-write is serialised. The lock is
``fcntl.flock`` on POSIX and ``msvcrt.locking`` on Windows, polled with a deadline, so a process that
holds it and hangs cannot hang the others: they give up and use what the entry holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import Snapshot

SCHEMA = "carbonlab.intensity-cache/1"
BACKOFF_BASE_S = 30.0
BACKOFF_MAX_S = 3600.0
_POLL_S = 0.02


def default_dir() -> Path:
    if sys.platform == "win32":  # pragma: no cover - not exercised on Linux CI
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carbonlab" / "intensity"


def backoff_s(failures: int, retry_after: float | None = None, *, auth: bool = False) -> float:
    """Seconds to wait after ``failures`` failed fetches in a row: 30 s, 60 s, 120 s ... capped at an
    hour; at least the server's Retry-After; a rejected credential waits the cap at once (it will
    not fix itself).

    >>> [backoff_s(n) for n in (1, 2, 3)], backoff_s(1, 600.0), backoff_s(1, auth=True)
    ([30.0, 60.0, 120.0], 600.0, 3600.0)
    """
    delay = (
        BACKOFF_MAX_S if auth else min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, failures - 1))
    )
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass
class Entry:
    """The shared state of one provider setting."""

    snapshot: Snapshot | None = None
    failures: int = 0  # failed fetches in a row
    retry_at: float = 0.0  # epoch seconds before which nobody fetches
    fault: str | None = None  # the last fault's sentence, while failing
    fault_key: str | None = None  # its kind (the one-time note is keyed on it)
    fault_at: float | None = None
    forecast_retry_at: float = 0.0  # a plan without forecasts: do not ask again before this

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "snapshot": None if self.snapshot is None else self.snapshot.to_json(),
            "failures": self.failures,
            "retry_at": self.retry_at,
            "fault": self.fault,
            "fault_key": self.fault_key,
            "fault_at": self.fault_at,
            "forecast_retry_at": self.forecast_retry_at,
        }

    @classmethod
    def from_json(cls, d: Any) -> Entry | None:
        """None for anything that is not a valid entry (then it is fetched again)."""
        try:
            if d.get("schema") != SCHEMA:
                return None
            snap = d.get("snapshot")
            return cls(
                snapshot=None if snap is None else Snapshot.from_json(snap),
                failures=int(d.get("failures", 0)),
                retry_at=float(d.get("retry_at", 0.0)),
                fault=d.get("fault"),
                fault_key=d.get("fault_key"),
                fault_at=None if d.get("fault_at") is None else float(d["fault_at"]),
                forecast_retry_at=float(d.get("forecast_retry_at", 0.0)),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


class SharedCache:
    """The entry of one provider setting under ``directory``."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = directory
        digest = (
            f"{zlib.crc32(key.encode('utf-8')):08x}"  # stable across processes; cheap to import
        )
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)[:48]
        self.path = directory / f"{slug}-{digest}.json"
        self.lock_path = directory / f"{slug}-{digest}.lock"

    def read(self) -> Entry | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                return Entry.from_json(json.load(f))
        except (OSError, ValueError):
            return None

    def write(self, entry: Entry) -> None:
        """Atomically replace the entry; an unwritable cache is not an error (memory still holds it)."""
        import tempfile  # background threads only; it imports random and shutil

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(entry.to_json(), f)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            pass

    @contextlib.contextmanager
    def locked(self, wait_s: float) -> Iterator[bool]:
        """Hold the lock file (True), or after ``wait_s`` give up (False); never raises for the lock.
        Where no lock file can be made (no writable cache), there is nothing to share: True."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield True
            return
        got = False
        try:
            deadline = time.monotonic() + wait_s
            while True:
                got = _try_lock(fd)
                if got or time.monotonic() >= deadline:
                    break
                time.sleep(_POLL_S)  # waiting for another process's fetch, in a background thread
            yield got
        finally:
            if got:
                _unlock(fd)
            os.close(fd)


if sys.platform == "win32":  # pragma: no cover - not exercised on Linux CI
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError:  # a file system without locks: fetch anyway, the write is still atomic
            return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
