"""One background thread per process: polls meters that need it and keeps a live power timeline.

The thread starts the first time something needs it (a power-only meter, a RAM model or a wraparound
guard inside an open window, or a live listener such as the notebook sidebar). While windows come and
go it looks in four times a second, so that a cell's live stream (started by an :class:`Alarm`
0.25 s into the cell, if it is still running) needs no wake-up of its own and a cell that ends
first costs the thread nothing; half a minute after the last one it sleeps on a condition variable,
using no CPU, until something needs it again. Samples go into a bounded ring buffer and to
listeners.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from . import clock
from ._record import record
from .meters.base import Meter

RING_SIZE = 4096  # samples kept: ~17 minutes at 4 Hz, a few hundred kB at most
URGENT_S = 0.5  # meters polled at least this often get the thread woken as soon as a window opens
LINGER_S = 30.0  # after the last window, the thread looks in every LINGER_CHECK_S for this long
LINGER_CHECK_S = 0.25  # no later than a cell's live stream wants its first sample (OPEN_AFTER_S)
INF = float("inf")


@record(frozen=True)
class Sample:
    """One tick: cumulative energy (J since each meter opened) and power (W) per meter."""

    t: float  # carbonlab.clock.now()
    energy_j: tuple[float, ...]  # same order as Sampler.meters
    power_w: tuple[float | None, ...]

    def __init__(
        self, t: float, energy_j: tuple[float, ...], power_w: tuple[float | None, ...]
    ) -> None:  # written out: one per tick (the record's generic __init__ is slower)
        setattr_ = object.__setattr__
        setattr_(self, "t", t)
        setattr_(self, "energy_j", energy_j)
        setattr_(self, "power_w", power_w)


Listener = Callable[[Sample], None]


class Sampler:
    def __init__(self, meters: Sequence[Meter], hz: float = 4.0) -> None:
        self.meters = list(meters)
        self.hz = hz
        self.ring: deque[Sample] = deque(maxlen=RING_SIZE)
        self._cond = threading.Condition()
        self._window_users = 0
        self._listeners: dict[int, tuple[Listener, float]] = {}
        self._next_id = 0
        self._thread: threading.Thread | None = None
        self._stop = False
        self._last: Sample | None = None
        self.errors = 0  # listener exceptions swallowed (a listener must not kill the sampler)
        self._needs_poll = [m for m in self.meters if m.sample_period_s]
        # Power integration can't wait for the thread's next look-in; a RAM model or a wraparound
        # guard can.
        self._urgent = any(m.sample_period_s <= URGENT_S for m in self._needs_poll)
        self._take_lock = threading.Lock()
        self._last_activity = 0.0
        self._deep_idle = False
        # When the thread, waiting, looks in next (monotonic); 0 while it is not waiting.
        self._wake_at = 0.0
        self._alarms: list[Alarm] = []

    # -- demand ---------------------------------------------------------------------------------
    @property
    def needed_by_windows(self) -> bool:
        return bool(self._needs_poll)

    def acquire_window(self) -> None:
        """An open window needs the meters polled (only when some meter asks for it)."""
        if not self._needs_poll:
            return
        with self._cond:
            self._window_users += 1
            self._last_activity = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._ensure_thread()
            elif self._urgent or self._deep_idle:
                self._cond.notify_all()

    def release_window(self) -> None:
        if not self._needs_poll:
            return
        with self._cond:
            self._window_users = max(0, self._window_users - 1)
            self._last_activity = time.monotonic()

    def unused(self) -> bool:
        """Nothing uses this sampler that it knows of: no window open and no listener. Windows are
        counted only where a meter needs polling; without such a meter it cannot know, and says
        False."""
        with self._cond:
            return bool(self._needs_poll) and not self._window_users and not self._listeners

    def subscribe(self, listener: Listener, hz: float | None = None, delay_s: float = 0.0) -> int:
        """Call ``listener(sample)`` from the sampler thread at up to ``hz`` (default: the
        sampler's), the first time ``delay_s`` from now. A delayed listener (a cell's live stream,
        wanted only if the cell is still running then) does not wake the thread when it is going to
        look in by then anyway: a cell that ends first costs the thread nothing."""
        with self._cond:
            self._next_id += 1
            now = time.monotonic()
            start = now + max(0.0, delay_s)
            self._listeners[self._next_id] = (listener, 1.0 / (hz or self.hz), start)
            self._last_activity = now
            if self._thread is None or not self._thread.is_alive():
                self._ensure_thread()
            elif self._deep_idle or self._wake_at > start:
                self._cond.notify_all()
            return self._next_id

    def unsubscribe(self, token: int) -> None:
        with self._cond:
            self._listeners.pop(token, None)

    def alarm(self) -> Alarm:
        """A reusable one-shot call on this sampler's thread (see :class:`Alarm`)."""
        a = Alarm(self)
        with self._cond:
            self._alarms = [*self._alarms, a]  # (the thread reads the list without the lock)
        return a

    def _drop_alarm(self, a: Alarm) -> None:
        with self._cond:
            self._alarms = [x for x in self._alarms if x is not a]

    def _next_alarm(self) -> float:
        """When the earliest armed alarm is due (monotonic; inf: none is armed)."""
        at = INF
        for a in self._alarms:
            if a._at < at:
                at = a._at
        return at

    def _nudge(self, at: float) -> None:
        """An alarm was armed for ``at``: wake the thread only if it would look in later than that
        (deep idle, or a wait that ends after it) or start it if it is not running. The alarm's
        time is written before ``_wake_at`` is read here, and the thread writes ``_wake_at`` before
        reading the alarms (:meth:`_wait`): one of the two always sees the other."""
        self._last_activity = time.monotonic()  # windows come and go: the thread lingers
        t = self._thread
        if t is None or not t.is_alive():
            with self._cond:
                self._ensure_thread()
        elif self._wake_at > at:
            with self._cond:
                self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)
        self._thread = None

    # -- the thread -----------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="carbonlab-sampler", daemon=True)
            self._thread.start()

    def _period(self, listeners: dict[int, tuple[Listener, float, float]]) -> float:
        periods = [p for _, p, _ in listeners.values()]
        if self._window_users:
            periods += [m.sample_period_s for m in self._needs_poll if m.sample_period_s]
        return max(0.005, min(periods, default=1.0 / self.hz))

    def _wait(self, timeout: float | None) -> None:
        """Wait on the condition (its lock held), keeping :attr:`_wake_at` true; no later than the
        earliest armed alarm."""
        now = time.monotonic()
        self._wake_at = wake = INF if timeout is None else now + timeout
        at = self._next_alarm()  # read after _wake_at is written (see _nudge)
        if at < wake:
            self._wake_at = at
            timeout = max(0.0, at - now)
        try:
            self._cond.wait(timeout=timeout)
        finally:
            self._wake_at = 0.0

    _ceilings: tuple[float | None, ...] | None = None

    def take(self) -> Sample:
        """Read every meter now (also used by windows that want a final live sample)."""
        with self._take_lock:
            return self._take()

    def _take(self) -> Sample:
        energies = []
        powers: list[float | None] = []
        t = clock.now()
        last = self._last
        ceilings = self._ceilings
        if ceilings is None:
            ceilings = self._ceilings = tuple(model_ceiling(m) for m in self.meters)
        for i, m in enumerate(self.meters):
            if m.sample_period_s:
                m.poll()
            e = m.energy_j()
            energies.append(e)
            p = None
            if last is not None and t > last.t:
                p = max(0.0, (e - last.energy_j[i]) / (t - last.t))
            if p is None:
                p = m.power_w()
            ceiling = ceilings[i]
            if p is not None and ceiling is not None and p > ceiling:
                p = ceiling  # a model's counter jumped (a reaped child): never draw above its ceiling
            powers.append(p)
        s = Sample(t, tuple(energies), tuple(powers))
        self._last = s
        self.ring.append(s)
        return s

    def _run(self) -> None:
        next_listener: dict[int, float] = {}
        primed = False
        while True:
            if self._alarms:
                now = time.monotonic()
                for a in self._alarms:
                    if a._at <= now:
                        a._fire(now)
            with self._cond:
                if self._stop:
                    return
                now = time.monotonic()
                if self._alarms and self._next_alarm() <= now:
                    continue  # one came due meanwhile: call it first
                listeners = {k: v for k, v in self._listeners.items() if v[2] <= now}
                # The first delayed listener still to start, if any: look in then.
                later = min((v[2] for v in self._listeners.values() if v[2] > now), default=None)
                until_later = None if later is None else later - now
                if not self._window_users and not listeners:
                    self._last = None  # a gap: don't derive power across it
                    primed = False
                    if until_later is not None:
                        self._wait(until_later)
                    elif now - self._last_activity < LINGER_S:
                        # Windows come and go (cells, tests): look in now and then rather than
                        # being woken by each one, which would cost every window a thread switch.
                        self._wait(LINGER_CHECK_S)
                    else:
                        self._deep_idle = True
                        self._wait(None)
                        self._deep_idle = False
                    continue
                if not primed and not listeners:
                    # Windows read their meters at both edges themselves: the first poll is due
                    # one period after we noticed the window, not now.
                    primed = True
                    self._wait(_sooner(self._period(listeners), until_later))
                    continue
            sample = self.take()
            for token, (fn, p, _) in listeners.items():
                due = next_listener.get(token, 0.0)
                if sample.t + 1e-6 >= due:
                    next_listener[token] = sample.t + p
                    try:
                        fn(sample)
                    except Exception:
                        self.errors += 1
            with self._cond:
                if self._stop:
                    return
                for token in [t for t in next_listener if t not in self._listeners]:
                    del next_listener[token]
                # Listeners may have come (or started) while the sample was taken: subscribe
                # does not wake a busy thread, so the wait is worked out again from what is
                # there now. One that is due and never served is served at once.
                now = time.monotonic()
                current = {k: v for k, v in self._listeners.items() if v[2] <= now}
                if any(k not in next_listener for k in current):
                    continue
                later = min((v[2] for v in self._listeners.values() if v[2] > now), default=None)
                self._wait(_sooner(self._period(current), None if later is None else later - now))


class Alarm:
    """One call at a time, made on the sampler thread once its delay has passed, unless disarmed
    first: a cell's live stream, wanted only if the cell is still running then. Arming and disarming
    take one uncontended lock; arming wakes the thread only when it would look in later than the
    alarm (it looks in four times a second while windows come and go), where a subscription per cell
    cost a listener and its bookkeeping. The call runs holding the alarm's lock (so that
    :meth:`disarm` waits for it): it must never arm, disarm or close its own alarm. The handshake
    with the thread relies on the GIL's ordering of plain attribute reads and writes."""

    __slots__ = ("sampler", "_lock", "_fn", "_at")

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self._lock = threading.Lock()
        self._fn: Callable[[], None] | None = None
        self._at = INF  # when it is due (monotonic); inf while disarmed

    @property
    def armed(self) -> bool:
        return self._fn is not None

    def arm(self, fn: Callable[[], None], delay_s: float) -> None:
        """Call ``fn()`` on the sampler thread ``delay_s`` from now (replacing any armed call)."""
        at = time.monotonic() + max(0.0, delay_s)
        with self._lock:
            self._fn = fn
            self._at = at
        self.sampler._nudge(at)

    def disarm(self) -> None:
        """After this returns the call is neither running nor going to run (a call in progress is
        waited for: what it made is there to be ended)."""
        with self._lock:
            self._fn = None
            self._at = INF

    def close(self) -> None:
        self.disarm()
        self.sampler._drop_alarm(self)

    def _fire(self, now: float) -> None:  # the sampler thread
        with self._lock:
            fn = self._fn
            if fn is None or self._at > now:
                return
            self._fn = None
            self._at = INF
            try:
                fn()
            except Exception:  # an alarm must not kill the sampler
                self.sampler.errors += 1


def _sooner(a: float, b: float | None) -> float:
    return a if b is None else max(0.0, min(a, b))


def model_ceiling(m: Meter) -> float | None:
    """A meter's model ceiling in watts (see Meter.ceiling_w), or None; never raises."""
    try:
        c = m.ceiling_w()
    except Exception:
        return None
    return c if isinstance(c, (int, float)) and c >= 0 else None
