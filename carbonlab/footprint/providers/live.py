"""A live provider as a window sees it: :meth:`LiveProvider.latest` returns at once with what is
already known (memory, else the shared disk cache), and starts a background refresh when one is due.

The refresh (:meth:`LiveProvider.refresh`, run by a daemon thread) takes the cache's lock, re-reads
the entry (another process may just have fetched), fetches only if the entry is older than the TTL
and no backoff is running, and writes the result. A fault keeps the last good snapshot, counts the
failure and sets the next try (exponential backoff, Retry-After).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from .cache import Entry, SharedCache, backoff_s
from .http import AUTH, CREDENTIALS, RATE_LIMITED, Client, Fault
from .records import Snapshot
from .scrub import scrub, scrub_text, secret_values

FORECAST_SKIP_S = 86400.0  # a plan without forecasts is asked again after a day
MIN_RECHECK_S = 1.0
_STICKY = frozenset({"marginal-unused", "marginal-used"})  # said once per process, whatever happens


@dataclass(frozen=True)
class Config:
    """What a provider instance needs from the settings (secrets stay out of repr)."""

    spec: str  # normalised: "uk-carbon-intensity:GB"
    base_url: str
    ttl_s: float
    timeout_s: float
    max_age_s: float
    cache_dir: Path


class Status(
    NamedTuple
):  # a NamedTuple: made at every window end, and 10x cheaper than a dataclass
    """What the provider holds now, for a window or the CLI."""

    snapshot: Snapshot | None  # the last good one (may be older than the TTL)
    usable: bool  # within max_age: a window may charge it
    age_s: float | None
    fault: str | None  # the last fault's sentence, while failing (None once a fetch succeeds)
    fault_key: str | None
    fault_at: float | None
    retry_at: float  # no fetch before this (backoff)
    pending: bool  # nothing known yet and a fetch is under way or due


class LiveProvider:
    """Implements :class:`carbonlab.footprint.intensity.IntensityProvider` for one setting.

    ``fetch(client, now, want_forecast, secrets)`` does the API's requests and returns a Snapshot or
    raises :class:`Fault`; ``credentials()`` returns the secrets it needs (scrubbed from every fault
    text), raising a CREDENTIALS fault when none are configured.
    """

    def __init__(
        self,
        name: str,
        config: Config,
        fetch: Callable[[Client, float, bool, tuple[str, ...]], Snapshot],
        credentials: Callable[[], tuple[str, ...]] = tuple,
        *,
        clock: Callable[[], float] = time.time,
        auth_hint: str = "",
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.config = config
        self._fetch = fetch
        self._credentials = credentials
        self.clock = clock
        self.auth_hint = auth_hint
        # Every configured credential (all providers'), plus what a login hands out: masked in
        # everything this provider returns or stores (see scrub.py).
        self._secrets = secret_values(secrets)
        self.cache = SharedCache(config.cache_dir, f"{config.spec}@{config.base_url}")
        self._lock = threading.Lock()
        self._entry: Entry | None = None
        self._disk_read = False
        self._next_check = 0.0  # epoch seconds; 0: due now
        self._thread: threading.Thread | None = None
        self._local_fault: Fault | None = None  # credentials missing: this process only
        self._local_fault_at: float | None = None
        self.fetches = 0  # fetches this instance made (tests, the CLI)
        self._memo: tuple[Snapshot, Any] | None = None
        self._announced: set[str] = set()

    # --- what windows call: never blocks on the network ---------------------------------------

    def latest(self, zone: str | None = None) -> Any:
        """The Intensity of the last good snapshot if usable (see :meth:`status`), else None."""
        st = self.status()
        return self.intensity_of(st.snapshot) if st.usable else None

    def intensity_of(self, snap: Snapshot | None) -> Any:
        """``snap.intensity()``, made once per snapshot (windows ask for it every time)."""
        if snap is None:
            return None
        memo = self._memo
        if memo is None or memo[0] is not snap:
            memo = self._memo = (snap, snap.intensity())
        return memo[1]

    def status(self, *, kick: bool = True) -> Status:
        """What is known now. Reads the disk cache once if memory holds nothing (a small local file,
        no network); starts a background refresh when one is due (``kick``)."""
        now = self.clock()
        if self._entry is None and not self._disk_read:
            self._disk_read = True
            entry = self.cache.read()
            if entry is not None:
                self._adopt(entry, now)
        if kick and now >= self._next_check:
            self.start_refresh()
        e = self._entry or Entry()
        snap = e.snapshot
        age = None if snap is None else max(0.0, now - snap.fetched_at)
        fault, key, at = e.fault, e.fault_key, e.fault_at
        if self._local_fault is not None:
            fault, key, at = str(self._local_fault), self._local_fault.key, self._local_fault_at
        return Status(
            snapshot=snap,
            usable=snap is not None and age is not None and age <= self.config.max_age_s,
            age_s=age,
            fault=fault,
            fault_key=key,
            fault_at=at,
            retry_at=e.retry_at,
            pending=snap is None and fault is None,
        )

    def start_refresh(self) -> threading.Thread | None:
        """Start the background refresh unless one is running; returns its thread (or None)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return None
            # Until the thread has decided, do not start another from the next window.
            self._next_check = self.clock() + self._wait_s() + MIN_RECHECK_S
            t = threading.Thread(
                target=self._run, name=f"carbonlab-intensity-{self.name}", daemon=True
            )
            self._thread = t
        t.start()
        return t

    def wait(self, timeout_s: float) -> bool:
        """Join a running refresh for at most ``timeout_s`` (the CLI and tests); True if none runs."""
        t = self._thread
        if t is not None:
            t.join(timeout_s)
            return not t.is_alive()
        return True

    # --- one-time notes ----------------------------------------------------------------------

    def once(self, key: str, text: str) -> tuple[str, ...]:
        """``(text,)`` the first time ``key`` (a fault kind, "pending", "stale", ...) is seen since
        the last good reading; ``()`` after that."""
        with self._lock:
            if key in self._announced:
                return ()
            self._announced.add(key)
            return (text,)

    def recovered(self) -> None:
        """A good reading is held: a fault seen again is worth a new note."""
        if self._announced - _STICKY:
            with self._lock:
                self._announced &= _STICKY

    # --- the background part ------------------------------------------------------------------

    def _wait_s(self) -> float:
        """How long a refresh may take at most: a few requests, each bounded by the timeout."""
        return 8 * 2 * self.config.timeout_s + 1.0

    def _run(self) -> None:
        try:
            self.refresh()
        except Exception as e:  # never let a bug in a provider kill anything but this thread
            now = self.clock()
            self._local_fault = Fault("internal", f"internal error ({type(e).__name__})")
            self._local_fault_at = now
            self._next_check = now + self.config.ttl_s

    def refresh(self) -> Entry:
        """One refresh (blocking, bounded): use the shared entry if fresh, else fetch. Returns the
        entry now held."""
        now = self.clock()
        try:
            secrets = self._credentials()
        except Fault as f:  # nothing configured here; another process may have credentials
            self._local_fault, self._local_fault_at = f, now
            self._next_check = now + self.config.ttl_s
            entry = self.cache.read()
            if entry is not None:
                self._adopt(entry, now, keep_next=True)
            return self._entry or Entry()
        self._local_fault = None
        with self.cache.locked(self._wait_s()) as got:
            # The disk entry, else (no cache, or an unreadable one) what this process holds.
            entry = self.cache.read() or self._entry or Entry()
            now = self.clock()
            fresh = (
                entry.snapshot is not None and now - entry.snapshot.fetched_at < self.config.ttl_s
            )
            if fresh or now < entry.retry_at:
                self._adopt(entry, now)
                return entry
            if not got:  # another process holds the lock far too long: use what it left
                self._adopt(entry, now, keep_next=True)
                self._next_check = now + self._wait_s()
                return entry
            entry = self._fetch_into(entry, secrets, now)
            self.cache.write(entry)
        self._adopt(entry, self.clock())
        return entry

    def _learn(self, values: tuple[str, ...]) -> tuple[str, ...]:
        new = secret_values((*self._secrets, *values))
        if new != self._secrets:
            self._secrets = new
        return self._secrets

    def _fetch_into(self, entry: Entry, secrets: tuple[str, ...], now: float) -> Entry:
        client = Client(self.config.base_url, self.config.timeout_s, secrets)
        want_forecast = now >= entry.forecast_retry_at
        self.fetches += 1
        try:
            snap = self._fetch(client, now, want_forecast, secrets)
        except Fault as f:
            known = self._learn((*secrets, *client.secrets))
            f.what = scrub_text(f.what, known)
            f.endpoint = scrub_text(f.endpoint, known)
            if f.kind == AUTH and self.auth_hint:
                f.what += f" ({self.auth_hint})"
            f.args = (f"{f.what} [{f.endpoint}]" if f.endpoint else f.what,)
            failures = entry.failures + 1
            delay = backoff_s(failures, f.retry_after, auth=f.kind == AUTH)
            return Entry(
                snapshot=entry.snapshot,
                failures=failures,
                retry_at=now + delay,
                fault=str(f),
                fault_key=f.key,
                fault_at=now,
                forecast_retry_at=entry.forecast_retry_at,
            )
        if not want_forecast:
            forecast_retry_at = entry.forecast_retry_at  # still skipping
        elif snap.extra.get("forecast_not_in_plan"):
            forecast_retry_at = now + FORECAST_SKIP_S
        else:
            forecast_retry_at = 0.0
        # The provider boundary: nothing of the answer goes further unscrubbed (a server that
        # echoes the token in a zone name, an estimation method, a units field).
        snap = scrub(snap, self._learn((*secrets, *client.secrets)))
        return Entry(snapshot=snap, forecast_retry_at=forecast_retry_at)

    def _adopt(self, entry: Entry, now: float, *, keep_next: bool = False) -> None:
        """Hold ``entry`` (unless memory has a newer snapshot) and schedule the next check."""
        entry = scrub(entry, self._secrets)  # a cache file written by an older carbonlab
        cur = self._entry
        if (
            cur is not None
            and cur.snapshot is not None
            and (entry.snapshot is None or entry.snapshot.fetched_at < cur.snapshot.fetched_at)
        ):
            entry = replace(entry, snapshot=cur.snapshot)  # never trade a reading for an older one
        self._entry = entry
        if keep_next:
            return
        due = now + self.config.ttl_s
        if entry.snapshot is not None:
            due = entry.snapshot.fetched_at + self.config.ttl_s
        if entry.retry_at > now:
            due = entry.retry_at
        self._next_check = max(due, now + MIN_RECHECK_S)


__all__ = ["CREDENTIALS", "RATE_LIMITED", "Config", "LiveProvider", "Status"]
