"""Remote meters: a cell's or test's energy on the workers of a Dask or Ray cluster.

Two halves, neither of which imports an engine:

- Worker side, :func:`read_meters`: opens carbonlab's own meters in the worker process (NVML devices,
  RAPL packages or the CPU-time model of the worker process, the RAM model) and answers one
  snapshot of their counters, the worker process's CPU time, the host's busy CPU time and the
  thread CPU time of finished tasks per client (:data:`LEDGER`, fed by the engine's plugin).
- Kernel side, :class:`RemoteSource` and :func:`components`: the window reads every worker once at
  its begin and once at its end (one round trip each, with a timeout; the begin's is sent without
  the window waiting for it and collected at its end), and turns the two snapshots into
  components with a ``location``. A window that ends before its begin's answer came back, short
  against the cluster's round trip, is not read at its end: below the cluster's resolution
  (:func:`below_resolution_components`). Device-wide meters (a GPU, a RAPL package) that several
  workers of one host all read are counted once per host.

:mod:`carbonlab.dask` and :mod:`carbonlab.ray` supply the round trips; the window calls every
registered source through :func:`begin_all` / :func:`end_all` (nothing registered: nothing done).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from . import _clusters, clock
from ._record import field, record
from .measurement import SCOPE_DEVICE, SCOPE_PACKAGE, SCOPE_TASKS, Component


def _hostname() -> str:
    import socket  # here, not at import: a first measured region never needs it

    return socket.gethostname()


# The gross of a whole remote worker process or device, when no share can be told.
ATTR_TASK_CPU = "task-cpu-share"
# A remote GPU: each worker process's NVML SM share × this client's part of its tasks' CPU time.
ATTR_SM_TASK_CPU = "sm-share-x-task-cpu"
# Meters whose counter covers the whole host, not the worker process: counted once per host.
HOST_WIDE_SCOPES = frozenset({SCOPE_DEVICE, SCOPE_PACKAGE})

TIMEOUT_S = 1.0  # the longest a window edge waits for a cluster (the ceiling)
# The longest the scheduler waits for each worker's answer (Dask): under TIMEOUT_S, so that one hung
# worker is left out of an edge (noted) and the scheduler still answers with the others in time.
WORKER_TIMEOUT_S = 0.7
# After a window edge that got no answer, the source is not read for BACKOFF_FIRST_S, then tried
# again; each further failure doubles the wait, up to BACKOFF_MAX_S. An answer resets it.
BACKOFF_FIRST_S = 30.0
BACKOFF_MAX_S = 300.0
# The longest a cell (or %load_ext) waits for an automatic attach (the notebook, once per client):
# the scheduler taking carbonlab's plugins, both together, while the workers open their meters.
# Past it the attach goes on in the background, for up to ATTACH_BACKGROUND_S in all, and is said
# at a later cell's start.
ATTACH_TIMEOUT_S = 1.0
ATTACH_BACKGROUND_S = 10.0
# A window whose begin read has not come back at its end is shorter than that round trip: when it
# is also shorter than SHORT_WINDOW_ROUND_TRIPS of the cluster's usual round trip (the median of
# its last ROUND_TRIP_SAMPLES reads that every worker answered) and than SHORT_WINDOW_MAX_S, it
# is below what the cluster's readings resolve (each worker's reading is taken anywhere within a
# round trip of the window's edge): the begin's answer is collected, the end is not read, and the
# cluster's components say below resolution (see :func:`below_resolution_components`).
SHORT_WINDOW_ROUND_TRIPS = 2.0
SHORT_WINDOW_MAX_S = 0.1  # longer windows are read at both edges, whatever the round trip
ROUND_TRIP_SAMPLES = 8

# (engine, host) -> (joules, the workers measured there): a host's live figures.
HostKey = tuple[str, str]
HostFigures = tuple[float, frozenset[str]]


# ---- worker side ---------------------------------------------------------------------------------


class TaskLedger:
    """Thread CPU seconds of finished tasks, per client id, since the worker process began."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_client: dict[str, float] = {}
        self.total = 0.0
        self.tracking: str | None = None  # None: not tracking; else how ("dask-thread-cpu", ...)
        self.why: str | None = None  # why tracking failed, when it did

    def add(self, client: str | None, cpu_s: float) -> None:
        with self._lock:
            key = client or "?"
            self.by_client[key] = self.by_client.get(key, 0.0) + cpu_s
            self.total += cpu_s

    def snapshot(self) -> tuple[dict[str, float], float]:
        with self._lock:
            return dict(self.by_client), self.total


LEDGER = TaskLedger()

_reader_lock = threading.Lock()
_reader: dict[str, Any] | None = None


def _open_reader() -> dict[str, Any]:
    """This worker process's meters, opened once (the process-wide set carbonlab.track uses)."""
    global _reader
    if _reader is None:
        with _reader_lock:
            if _reader is None:
                from . import runtime
                from .meters.cpu import process_cpu_seconds

                rt = runtime.get()
                _reader = {
                    "opened_process_cpu_s": process_cpu_seconds(),
                    "meters": rt.meter_set.meters,
                    "unavailable": [u.to_dict() for u in rt.meter_set.unavailable],
                    "opened_wall": time.time(),
                    "host": _hostname(),
                }
    return _reader


def host_busy_cpu_s(path: str = "/proc/stat") -> float | None:
    """CPU seconds every CPU of this host spent busy since boot (all processes), or None."""
    try:
        with open(path, encoding="ascii") as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = [int(x) for x in first[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    busy = sum(ticks[i] for i in (0, 1, 2, 5, 6, 7) if i < len(ticks))
    return busy / os.sysconf("SC_CLK_TCK")


def _process_share(m: Any, since_wall: float | None) -> dict[str, Any] | None:
    """This worker process's part of a GPU since ``since_wall`` (unix s), as the meter's own
    per-process attribution tells it (NVML SM utilisation), or None."""
    if since_wall is None or m.kind != "gpu":
        return None
    from .window import safe_attribute

    duration = max(0.0, time.time() - since_wall)
    att = safe_attribute(m, int(since_wall * 1e6), duration, 1.0)
    if att is None or "share" not in att.params:
        return None
    return {"share": float(att.params["share"]), "attribution": att.params.get("attribution")}


def read_meters(dask_worker: Any = None, since_wall: float | None = None) -> dict[str, Any]:
    """One snapshot of this worker process's meters (runs on the worker; never raises).

    ``since_wall`` (a window's begin, unix seconds; at its end edge): GPU meters also say this
    process's share of the device since then, where NVML has per-process utilisation."""
    try:
        from .meters.cpu import process_cpu_seconds

        r = _open_reader()
        meters = []
        for m in r["meters"]:
            meters.append(
                {
                    "kind": m.kind,
                    "device": m.device,
                    "name": m.name,
                    "method": m.method,
                    "scope": m.scope,
                    "params": dict(m.params),
                    "resolution_s": m.resolution_s,
                    "energy_j": m.energy_j(),
                    "notes": list(m.notes),
                }
            )
        for d, m in zip(meters, r["meters"]):
            share = _process_share(m, since_wall)
            if share is not None:
                d["process_share"] = share
        tasks, total = LEDGER.snapshot()
        return {
            "ok": True,
            "host": r["host"],
            "pid": os.getpid(),
            "wall": time.time(),
            "opened_wall": r["opened_wall"],
            "opened_process_cpu_s": r["opened_process_cpu_s"],
            "meters": meters,
            "unavailable": r["unavailable"],
            "process_cpu_s": process_cpu_seconds(),
            "host_busy_cpu_s": host_busy_cpu_s(),
            "tasks_cpu_s": tasks,
            "tasks_total_cpu_s": total,
            "task_tracking": LEDGER.tracking,
        }
    except Exception as e:  # a reader never fails the worker nor the cell
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


# ---- kernel side ---------------------------------------------------------------------------------


@record
class Edge:
    """What one source read at one window edge: snapshots keyed by worker, or why none."""

    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall: float = 0.0
    error: str | None = None
    # The latest live-poll snapshot of each worker (end edges only): a worker that left during the
    # window is counted until its last one.
    last_seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A failed window edge: what the window says about it, once (None: nothing to say, e.g. a
    # begin edge skipped while the source backs off after a failure another window said).
    note: str | None = None
    skipped: bool = False  # not read at all: the source was backing off
    # A begin edge sent without waiting (:meth:`RemoteSource.begin_edge`): the engine's handle
    # until :meth:`RemoteSource.settle` collects the answer (``snapshots`` or ``error``);
    # ``sent_at``: monotonic seconds when it was sent; ``polled``: the live poller took it.
    pending: Any = field(default=None, repr=False, compare=False)
    sent_at: float = 0.0
    which: str = "begin"
    polled: bool = False
    # Seconds from sending to the answer, when the answer was waited for (None: answered before
    # it was looked at, or not answered).
    round_trip_s: float | None = None
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)


def _why(e: BaseException) -> str:
    """A failed read, in a few words (a timeout: how long was waited)."""
    if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
        return f"no answer within {TIMEOUT_S:g} s"
    return f"{type(e).__name__}: {e}".rstrip(": ") or type(e).__name__


class RemoteSource:
    """A cluster the windows read at their edges. Engines subclass it and implement ``read``."""

    engine = "remote"
    untracked_note: str | None = None  # what to say when workers give no per-client task CPU

    def __init__(self) -> None:
        self.client_id: str | None = None
        # Back-off after a failed window edge (see :meth:`window_edge`). ``clock``: the monotonic
        # seconds it counts in (None: carbonlab.clock.now; tests put their own here).
        self.clock: Any = None
        self.retry_at: float | None = None
        self.backoff_s = 0.0
        self.down_since: float | None = None  # unix seconds of the first failed edge, if down
        self._backoff_lock = threading.Lock()
        # Round trips (s) of recent reads that every worker answered (see :meth:`round_trip_s`).
        self.round_trips: collections.deque[float] = collections.deque(maxlen=ROUND_TRIP_SAMPLES)

    def describe(self) -> str:
        return self.engine

    def location(self, worker: str, snap: dict[str, Any]) -> dict[str, Any]:
        return {"engine": self.engine, "worker": worker, "host": snap.get("host", "?")}

    def read(self, since_wall: float | None = None) -> dict[str, dict[str, Any]]:
        """Every worker's snapshot in one round trip, within :data:`TIMEOUT_S`; raises on failure.
        ``since_wall``: passed to :func:`read_meters` (end edges)."""
        raise NotImplementedError

    def send(self, since_wall: float | None = None) -> Any:
        """Start a read of every worker without waiting for its answer (:meth:`collect` waits);
        may raise. Engines that can send a read asynchronously override ``send``, ``answered``
        and ``collect``; this default reads at once."""
        try:
            return (self.read(since_wall) if since_wall is not None else self.read()), None
        except Exception as e:  # kept for collect(), as an asynchronous read would
            return None, e

    def answered(self, sent: Any) -> bool:
        """Whether :meth:`collect` would return ``sent``'s answer without waiting."""
        return True

    def collect(self, sent: Any, timeout_s: float) -> dict[str, dict[str, Any]]:
        """The answer of a read :meth:`send` sent, waiting at most ``timeout_s``; raises as
        :meth:`read` does."""
        snaps, error = sent
        if error is not None:
            raise error
        return snaps

    def edge(self, since_wall: float | None = None) -> Edge:
        wall, t = time.time(), time.monotonic()
        try:
            snaps = self.read(since_wall) if since_wall is not None else self.read()
        except BaseException as e:  # noqa: BLE001 - a cluster never fails the cell
            if isinstance(e, KeyboardInterrupt):
                raise
            return Edge({}, wall, _why(e))
        rt = time.monotonic() - t
        self.sample_round_trip(rt, snaps)
        return Edge(snaps, wall, round_trip_s=rt)

    def sample_round_trip(self, seconds: float, snaps: dict[str, dict[str, Any]]) -> None:
        """Keep the round trip of a read that every worker answered (one a hung worker held up
        for its timeout says nothing of how far the cluster is)."""
        if snaps and all(x.get("ok") for x in snaps.values()):
            self.round_trips.append(seconds)

    def round_trip_s(self) -> float | None:
        """The cluster's usual round trip: the median of its recent fully answered reads."""
        rts = sorted(self.round_trips)
        return rts[len(rts) // 2] if rts else None

    def resolution_s(self) -> float | None:
        """The shortest window this cluster's readings resolve: a window shorter, whose begin read
        has not come back at its end, is below it (see :data:`SHORT_WINDOW_ROUND_TRIPS`); None
        until a round trip was seen (then every window is read at both edges)."""
        rt = self.round_trip_s()
        return None if rt is None else min(SHORT_WINDOW_MAX_S, SHORT_WINDOW_ROUND_TRIPS * rt)

    def below_resolution(self, duration_s: float) -> bool:
        """Whether a window of ``duration_s`` whose begin read has not come back yet is below
        what this cluster's readings resolve (:meth:`resolution_s`)."""
        res = self.resolution_s()
        return res is not None and duration_s < res

    def _now(self) -> float:
        return (self.clock or clock.now)()

    def backing_off(self) -> float | None:
        """Seconds until this source is read again after a failed edge, or None when it is read."""
        with self._backoff_lock:
            retry_at = self.retry_at
        if retry_at is None:
            return None
        left = retry_at - self._now()
        return left if left > 0 else None

    def _skipped(self, which: str, left: float) -> Edge:
        e = Edge({}, time.time(), "backing off after a failed read", skipped=True)
        # Every window that goes without this cluster's figures says so (a figure that leaves
        # work out silently is worse than none), briefly: the failure itself was said once.
        if which == "end":  # this window's begin was read: its figures are lost, say why
            e.note = (
                f"{self.describe()}: not read at the window's end (it did not answer a read moments "
                f"before; retrying in {left:.0f} s): no cluster figures for this window, "
                "local figures complete"
            )
        else:
            e.note = (
                f"{self.describe()}: not read (it did not answer; retrying in {left:.0f} s): "
                "cluster work not measured, local figures complete"
            )
        return e

    def _account(self, e: Edge, which: str) -> Edge:
        """The back-off's bookkeeping after an edge was read (or failed), and its note."""
        with self._backoff_lock:
            if e.error is None:
                self.retry_at, self.backoff_s, self.down_since = None, 0.0, None
                return e
            again = self.down_since is not None
            if not again:
                self.down_since = e.wall
            self.backoff_s = (
                min(BACKOFF_MAX_S, self.backoff_s * 2)
                if again and self.backoff_s
                else BACKOFF_FIRST_S
            )
            self.retry_at = self._now() + self.backoff_s
            wait = self.backoff_s
        still = "still " if again else ""
        e.note = (
            f"{self.describe()}: {still}not read at the window's {which} ({e.error}): cluster work not "
            "measured, local figures complete"
        )
        if self in _sources:  # a source that detached itself (a closed client) is not retried
            e.note += f"; retrying in {wait:.0f} s"
        return e

    def window_edge(self, which: str, since_wall: float | None = None) -> Edge:
        """A window's ``which`` ("begin" or "end") edge, read now, within the back-off: after an
        edge that got no answer the source is not read (each window would wait the whole timeout
        again) for :data:`BACKOFF_FIRST_S`, doubling at each further failure up to
        :data:`BACKOFF_MAX_S`; the first answer resets it. A failed edge carries its note, said
        once; a begin edge skipped while backing off carries none (the failure was said)."""
        left = self.backing_off()
        if left is not None:
            return self._skipped(which, left)
        return self._account(
            self.edge(since_wall) if since_wall is not None else self.edge(), which
        )

    def send_edge(self, which: str, since_wall: float | None = None) -> Edge:
        """A window's ``which`` edge, sent without waiting: the read runs alongside the window
        (the workers' answers carry the time they were read) and :meth:`settle` collects it.
        Within the back-off, as :meth:`window_edge`."""
        left = self.backing_off()
        if left is not None:
            return self._skipped(which, left)
        wall, t = time.time(), time.monotonic()
        try:
            sent = self.send(since_wall) if since_wall is not None else self.send()
        except Exception as x:  # refused at once (a closed client): said as a failed read
            return self._account(Edge({}, wall, _why(x)), which)
        return Edge({}, wall, pending=sent, sent_at=t, which=which)

    def begin_edge(self) -> Edge:
        """A window's begin edge (:meth:`send_edge`), collected at the latest at its end."""
        return self.send_edge("begin")

    def discard(self, e: Edge) -> None:
        """An edge sent whose answer is no longer wanted (its window's begin failed)."""
        e.pending = None

    def settle(self, e: Edge, *, wait: bool = True) -> bool:
        """Collect the answer of an edge :meth:`send_edge` sent, waiting at most what is left of
        :data:`TIMEOUT_S` since it was sent (``wait=False``: only if it is there, never
        blocking). True once settled: ``e.snapshots`` or ``e.error`` (and its note) are set."""
        if e.pending is None:
            return True
        if not e.lock.acquire(blocking=wait):
            return False
        try:
            if e.pending is None:
                return True
            ready = self.answered(e.pending)
            if not wait and not ready:
                return False
            left = max(0.0, TIMEOUT_S - (time.monotonic() - e.sent_at))
            try:
                e.snapshots = self.collect(e.pending, left)
                if not ready:  # waited for: it came back just now
                    e.round_trip_s = time.monotonic() - e.sent_at
                    self.sample_round_trip(e.round_trip_s, e.snapshots)
            except Exception as x:  # a cluster never fails the cell
                e.error = _why(x)
            e.pending = None
            self._account(e, e.which)
            return True
        finally:
            e.lock.release()

    def components(
        self, begin: Edge, end: Edge, duration_s: float
    ) -> tuple[list[Component], list[str]]:
        return components(self, begin, end, duration_s)


# The registered sources: the list windows look at without importing this module (_clusters).
_sources: list[RemoteSource] = _clusters.SOURCES
_sources_lock = threading.Lock()


def register(source: RemoteSource) -> RemoteSource:
    with _sources_lock:
        if source not in _sources:
            _sources.append(source)
    return source


def unregister(source: RemoteSource | None = None) -> None:
    """Forget one source, or every one."""
    with _sources_lock:
        if source is None:
            _sources.clear()
        elif source in _sources:
            _sources.remove(source)


def sources() -> list[RemoteSource]:
    return list(_sources)


class LivePoller:
    """Reads the clusters that open windows read at their begin, each at most once per
    :data:`PERIOD_S`, on its own thread, and only while such a window is open (a cluster whose
    begin edge failed or has not answered yet, or that backs off after a failure, is not polled).
    The latest readings give live power and energy (:func:`live`) and the last sight of a worker
    that leaves mid-window."""

    PERIOD_S = 1.0
    LINGER_S = 10.0  # the thread ends after this long with no window reading a cluster

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        # id(source) -> [source, the begin edges of the open windows that read it]
        self._active: dict[int, list[Any]] = {}
        # Set when the last window reading a cluster ends; None while none is open. One thread
        # polls for every stretch of open windows, started once (starting a thread costs a window
        # about 1 ms): it waits on ``_runs`` for the next stretch's stop event.
        self._stop: threading.Event | None = None
        self._runs: Any = None  # queue.SimpleQueue of stop events, made with the thread
        self._thread: threading.Thread | None = None
        self.latest: dict[int, Edge] = {}  # id(source) -> latest successful poll
        self.previous: dict[int, Edge] = {}
        self.seen: dict[int, dict[str, dict[str, Any]]] = {}  # id(source) -> worker -> snapshot
        self.polls = 0
        self._cache: dict[tuple[int, int, float], tuple[float, dict[HostKey, HostFigures]]] = {}

    def polled(self) -> list[RemoteSource]:
        """The sources the open windows read at their begin (their begin edge answered)."""
        with self._lock:
            active = [(s, list(edges)) for s, edges in self._active.values()]
        out = []
        for s, edges in active:
            for b in edges:
                try:
                    if s.settle(b, wait=False) and b.error is None:
                        out.append(s)
                        break
                except Exception:
                    pass
        return out

    def acquire(self, begun: Iterable[tuple[RemoteSource, Edge]]) -> None:
        """A window begun with these edges sent: poll their sources (once the begin answered)
        until it :meth:`release` s them."""
        with self._lock:
            for s, b in begun:
                self._active.setdefault(id(s), [s, []])[1].append(b)
                b.polled = True
            self._users += 1
            if self._stop is None:
                self._stop = threading.Event()
                if self._thread is None or not self._thread.is_alive():
                    import queue

                    self._runs = queue.SimpleQueue()
                    self._thread = threading.Thread(
                        target=self._serve,
                        args=(self._runs,),
                        name="carbonlab-cluster",
                        daemon=True,
                    )
                    self._thread.start()
                self._runs.put(self._stop)

    def release(self, begun: Iterable[tuple[RemoteSource, Edge]]) -> None:
        with self._lock:
            for s, b in begun:
                entry = self._active.get(id(s))
                if entry is not None:
                    entry[1] = [x for x in entry[1] if x is not b]
                    if not entry[1]:
                        del self._active[id(s)]
            self._users = max(0, self._users - 1)
            if self._users == 0 and self._stop is not None:
                self._stop.set()
                self._stop = None
                self.latest.clear()
                self.previous.clear()
                self.seen.clear()
                self._cache.clear()

    def _serve(self, runs: Any) -> None:
        import queue

        while True:
            try:
                stop = runs.get(timeout=self.LINGER_S)
            except queue.Empty:
                with self._lock:  # (acquire starts another thread once this one is gone)
                    if self._stop is None and runs.empty():
                        self._thread = None
                        return  # no window read a cluster for a while: no thread left behind
                continue
            try:
                self._run(stop)
            except Exception:
                pass  # a bug of ours: this stretch goes unpolled (the edges still read)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.PERIOD_S):
            for src in self.polled():
                if stop.is_set():
                    return
                if src not in _sources or src.backing_off() is not None:
                    continue  # detached, or not answering: the window's end edge says so
                try:
                    e = src.edge()
                except Exception:
                    continue
                if e.error:
                    continue
                with self._lock:
                    if stop.is_set():
                        return
                    k = id(src)
                    if k in self.latest:
                        self.previous[k] = self.latest[k]
                    self.latest[k] = e
                    seen = self.seen.setdefault(k, {})
                    seen.update({a: x for a, x in e.snapshots.items() if x.get("ok")})
                    self.polls += 1

    def energy_since(
        self, src: RemoteSource, begin: Edge, edge: Edge
    ) -> tuple[float, dict[HostKey, HostFigures]]:
        """The cluster's gross joules from ``begin`` to ``edge``, in all and per (engine, host)
        (joules, and the workers measured there)."""
        key = (id(src), id(begin), edge.wall)
        hit = self._cache.get(key)
        if hit is None:
            comps, _ = components(src, begin, edge, max(0.0, edge.wall - begin.wall))
            # Gross: tasks are charged to their client when they finish, so a live share would
            # jump; live figures are the cluster's own power and energy (the summary attributes).
            for c in comps:
                c.energy_j = float(c.params.get("gross_energy_j", c.energy_j))
            hit = (sum(c.energy_j for c in comps), figures_by_host(comps))
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = hit
        return hit


POLLER = LivePoller()


def begin_all() -> list[tuple[RemoteSource, Edge]]:
    """Send a read to every registered cluster (the window's begin) without waiting for the
    answers (:meth:`RemoteSource.begin_edge`; :func:`end_all` collects them); [] at no cost when
    there is none. A cluster that backs off after a failed edge is not read; only those whose
    begin answered are polled live while the window is open."""
    if not _sources:
        return []
    begun = [(s, s.begin_edge()) for s in list(_sources)]
    sent = [(s, b) for s, b in begun if b.error is None]
    if sent:
        POLLER.acquire(sent)
    return begun


def live(begun: list[tuple[RemoteSource, Edge]]) -> dict[str, Any] | None:
    """The clusters' gross energy since the window began and their power (every client's work:
    the share is told at the window's end), from the latest live polls (at most 1 Hz); None
    before the first poll. Never raises.

    ``by_host``: joules per host name; ``hosts``: one entry per engine and host, largest energy
    first: ``{"engine", "host", "workers" (those measured there), "energy_j", "power_w"}``
    (``power_w`` None until two polls, as for the whole)."""
    try:
        energy, power, have_power, any_poll = 0.0, 0.0, False, False
        hosts: dict[HostKey, dict[str, Any]] = {}
        for s, b in begun:
            if not s.settle(b, wait=False) or b.error:
                continue  # its begin has not answered yet (or failed): no figures from it
            with POLLER._lock:
                latest = POLLER.latest.get(id(s))
                prev = POLLER.previous.get(id(s))
            if latest is None or latest.wall <= b.wall:
                continue
            any_poll = True
            e1, by1 = POLLER.energy_since(s, b, latest)
            energy += e1
            p_edge = prev if prev is not None and prev.wall > b.wall else b
            e0, by0 = POLLER.energy_since(s, b, p_edge) if p_edge is not b else (0.0, {})
            dt = latest.wall - p_edge.wall
            if dt > 0:
                power += max(0.0, e1 - e0) / dt
                have_power = True
            for k, (j, workers) in by1.items():
                h = hosts.setdefault(
                    k,
                    {"engine": k[0], "host": k[1], "workers": 0, "energy_j": 0.0, "power_w": None},
                )
                h["energy_j"] += j
                h["workers"] += len(workers)
                if dt > 0:
                    j0 = by0.get(k, (0.0, ()))[0]
                    h["power_w"] = (h["power_w"] or 0.0) + max(0.0, j - j0) / dt
        if not any_poll:
            return None
        rows = sorted(hosts.values(), key=lambda h: (-h["energy_j"], h["engine"], h["host"]))
        by_host: dict[str, float] = {}
        for h in rows:
            by_host[h["host"]] = by_host.get(h["host"], 0.0) + h["energy_j"]
        return {
            "energy_j": energy,
            "power_w": power if have_power else None,
            "by_host": by_host,
            "hosts": rows,
        }
    except Exception:
        return None


def end_all(
    begun: list[tuple[RemoteSource, Edge]], duration_s: float
) -> tuple[list[Component], list[str]]:
    """Read the clusters begun again and return their components and notes (the window's end)."""
    comps: list[Component] = []
    notes: list[str] = []
    polled = [(s, b) for s, b in begun if b.polled]
    try:
        # Each end read is sent before any answer is waited on: a begin still on its way (a
        # short window) and the end then travel together, one round trip's wait for both.
        # A window that ends before its begin's read came back, and is short against the
        # cluster's usual round trip, is below what the cluster resolves: its end is not read
        # (the begin's answer is still collected below: a cluster that does not answer says so).
        ends: dict[int, Edge] = {}
        short: set[int] = set()
        for i, (s, b) in enumerate(begun):
            try:
                if not s.settle(b, wait=False):
                    # (not settled also while the poller holds the edge, collecting an answer
                    # that came: only a begin still on its way makes the window short)
                    pending = b.pending
                    if (
                        pending is not None
                        and not s.answered(pending)
                        and s.below_resolution(duration_s)
                    ):
                        short.add(i)
                        continue
                if b.error is None:
                    ends[i] = s.send_edge("end", since_wall=b.wall)
            except Exception:
                pass  # said below, by the settle that waits
        for i, (s, b) in enumerate(begun):
            end = ends.get(i)
            try:  # the begin's answer: waits what is left of its timeout
                s.settle(b)
            except Exception as e:  # a bug of ours never fails the cell
                b.pending, b.error = None, f"{type(e).__name__}: {e}"
                b.note = f"{s.describe()}: not read at the window's begin ({b.error})"
            if b.error is not None:
                # Not read at the begin: no figures whatever the end gives, so the end is not
                # waited on (it would wait the timeout again); the begin's note, if any, says why.
                if end is not None:
                    s.discard(end)
                if b.note and b.note not in notes:
                    notes.append(b.note)
                continue
            try:
                if i in short:
                    c, n = below_resolution_components(s, b, duration_s)
                    comps += c
                    notes += [x for x in n if x not in notes]
                    continue
                if end is None:  # (its send failed above: read it now, said if it fails)
                    end = s.window_edge("end", since_wall=b.wall)
                s.settle(end)
                if end.error is not None:
                    if end.note and end.note not in notes:
                        notes.append(end.note)
                    continue
                with POLLER._lock:
                    seen = dict(POLLER.seen.get(id(s), {}))
                end.last_seen = {a: x for a, x in seen.items() if x.get("wall", 0.0) > b.wall}
                c, n = s.components(b, end, duration_s)
            except Exception as e:  # a bug of ours here never fails the cell: say it, keep local
                c, n = [], [f"{s.describe()}: cluster figures failed ({type(e).__name__}: {e})"]
            comps += c
            notes += [x for x in n if x not in notes]
    finally:
        if polled:
            POLLER.release(polled)
    return comps, notes


def _fmt_s(x: float) -> str:
    return f"{x:.3g} s"


def below_resolution_components(
    source: RemoteSource, begin: Edge, duration_s: float
) -> tuple[list[Component], list[str]]:
    """The remote components of a window that ended before its begin read came back (and is
    short against the cluster's round trip: :meth:`RemoteSource.below_resolution`): one per
    worker and meter as :func:`components` gives them (device-wide meters once per host), each
    0 J, ``below_resolution``, the meter's own method and scope (no share is told: nothing was
    read at the end), ``params.resolution_s`` the rule's threshold
    (:meth:`RemoteSource.resolution_s`), ``params.round_trip_s`` the begin read's round trip and
    ``params.below_resolution_reason`` why."""
    from .units import format_duration

    name = source.describe()
    rt = begin.round_trip_s or source.round_trip_s() or 0.0
    res = source.resolution_s() or rt
    reason = (
        f"window of {format_duration(duration_s)} ended before the cluster's begin reading came "
        f"back (a round trip of {format_duration(rt)}; windows under {format_duration(res)} are "
        "not read at their end): the cluster's energy in it is below what a round trip can "
        "resolve"
    )
    notes = [
        f"{name}: {reason}; not read at the window's end: its components are 0 J, marked below "
        "resolution (a task that finished on the cluster meanwhile is charged to no window)"
    ]
    seen: set[tuple[str, str, str]] = set()
    comps: list[Component] = []
    for addr in sorted(begin.snapshots):
        b = begin.snapshots[addr]
        if not b.get("ok"):
            why = f" ({b['error']})" if b.get("error") else ""
            notes.append(f"{name}: worker {addr} was not read at the window's begin{why}")
            continue
        for m in b["meters"]:
            params = dict(m["params"])
            if m["scope"] in HOST_WIDE_SCOPES:
                key = (b["host"], m["kind"], m["device"])
                if key in seen:
                    continue  # counted once per host, by the first worker that reads it
                seen.add(key)
                params["counted_once_per_host"] = True
            params["resolution_s"] = res
            params["round_trip_s"] = rt
            params["below_resolution_reason"] = reason
            comps.append(
                Component(
                    kind=m["kind"],
                    device=m["device"],
                    name=m["name"],
                    energy_j=0.0,
                    method=m["method"],
                    scope=m["scope"],
                    params=params,
                    below_resolution=True,
                    notes=list(m.get("notes", [])),
                    location=source.location(addr, b),
                )
            )
    return comps, notes


def components(
    source: RemoteSource, begin: Edge, end: Edge, duration_s: float
) -> tuple[list[Component], list[str]]:
    """The remote components of one window from its two edges.

    Per worker present at both edges: its process-scoped meters (CPU-time model, RAM model), and
    per host once: its device-wide meters (GPU, RAPL package), read by the host's first worker.
    Each carries the window's gross figure in ``params["gross_energy_j"]`` and, where the worker
    tracks its tasks' CPU time per client, this client's part: scope ``tasks``, ``share``.
    """
    name = source.describe()
    notes: list[str] = []
    if begin.error or end.error:
        why = begin.error or end.error
        edge = "begin" if begin.error else "end"
        notes.append(
            f"{name}: not read at the window's {edge} ({why}); no cluster figures for this "
            "window, local figures complete"
        )
        return [], notes
    pairs: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {}
    for addr, e in end.snapshots.items():
        b = begin.snapshots.get(addr)
        if not e.get("ok"):
            if b is None or not b.get("ok"):  # (read at the begin: said with those missing below)
                notes.append(f"{name}: worker {addr} could not read its meters: {e.get('error')}")
            continue
        if b is not None and not b.get("ok"):
            why = f" ({b['error']})" if b.get("error") else ""
            notes.append(
                f"{name}: worker {addr} was not read at the window's begin{why}; not counted"
            )
            continue
        if b is None:
            if e.get("opened_wall", 0.0) >= begin.wall:
                notes.append(
                    f"{name}: worker {addr} joined during the window; counted from when it joined"
                    + ("; it left again before the window's end" if e.get("left") else "")
                )
                pairs[addr] = (None, e)
            else:
                notes.append(
                    f"{name}: worker {addr} was not read at the window's begin; not counted"
                )
            continue
        if b.get("wall", 0.0) > e.get("wall", 0.0):
            b, e = e, b  # the two reads crossed on their way (a very short window)
        elif e.get("left"):
            notes.append(
                f"{name}: worker {addr} left during the window; counted until it left (the "
                f"reading it sent as it closed, {max(0.0, end.wall - e['wall']):.1f} s before the "
                "window's end)"
            )
        pairs[addr] = (b, e)
    for addr, b in begin.snapshots.items():
        if not b.get("ok") or (end.snapshots.get(addr) or {}).get("ok"):
            continue  # not read at the begin (said above when read at the end), or paired
        err = (end.snapshots.get(addr) or {}).get("error")
        gone = (
            f"did not answer at the window's end ({err})"
            if err
            else "left during the window (or did not answer at its end)"
        )
        last = end.last_seen.get(addr)
        if last is not None and last.get("ok"):
            pairs[addr] = (b, last)
            notes.append(
                f"{name}: worker {addr} {gone}; counted until its last live reading, "
                f"{end.wall - last['wall']:.1f} s before the window's end"
            )
        else:
            notes.append(f"{name}: worker {addr} {gone}; its energy in this window is not counted")

    # Per host: this client's and every client's task CPU, the host's busy CPU, its workers.
    hosts: dict[str, dict[str, Any]] = {}
    client = source.client_id
    tracked_all = True
    for addr in sorted(pairs):
        b, e = pairs[addr]
        h = hosts.setdefault(e["host"], {"workers": [], "mine": 0.0, "tasks": 0.0, "busy": None})
        h["workers"].append(addr)
        if not e.get("task_tracking"):
            tracked_all = False
        bt = (b or {}).get("tasks_cpu_s", {})
        mine = e["tasks_cpu_s"].get(client, 0.0) - bt.get(client, 0.0) if client else 0.0
        total = e["tasks_total_cpu_s"] - (b or {}).get("tasks_total_cpu_s", 0.0)
        h["mine"] += max(0.0, mine)
        h["tasks"] += max(0.0, total)
        # Per GPU of the host: each worker process's NVML share and its tasks' CPU split.
        for m in e["meters"]:
            if m["kind"] == "gpu":
                h.setdefault("gpu", {}).setdefault(m["device"], []).append(
                    ((m.get("process_share") or {}).get("share"), max(0.0, mine), max(0.0, total))
                )
        e_busy, b_busy = e.get("host_busy_cpu_s"), (b or {}).get("host_busy_cpu_s")
        if e_busy is not None and b_busy is not None and h["busy"] is None:
            h["busy"] = max(0.0, e_busy - b_busy)
    if pairs and source.untracked_note and not client:
        notes.append(source.untracked_note)
    elif pairs and not tracked_all:
        notes.append(
            source.untracked_note
            or f"{name}: some workers do not track their tasks' CPU time per client; their "
            "figures are the worker's gross, every client's work included"
        )

    # Which workers of a host read each device-wide meter: dask-cuda gives each worker its own
    # GPU (CUDA_VISIBLE_DEVICES), a plain LocalCluster shows every worker every GPU.
    seen_by: dict[tuple[str, str, str], list[str]] = {}
    for addr in sorted(pairs):
        e = pairs[addr][1]
        for m in e["meters"]:
            if m["scope"] in HOST_WIDE_SCOPES:
                seen_by.setdefault((e["host"], m["kind"], m["device"]), []).append(addr)

    comps: list[Component] = []
    for addr in sorted(pairs):
        b, e = pairs[addr]
        h = hosts[e["host"]]
        b_meters = {(m["kind"], m["device"]): m for m in (b or {}).get("meters", [])}
        # A worker that joined mid-window: from when its meters opened (its start-up left out).
        proc_cpu = e["process_cpu_s"] - (
            b["process_cpu_s"] if b else e.get("opened_process_cpu_s", 0.0)
        )
        bt = (b or {}).get("tasks_cpu_s", {})
        mine = max(0.0, e["tasks_cpu_s"].get(client, 0.0) - bt.get(client, 0.0)) if client else 0
        for m in e["meters"]:
            host_wide = m["scope"] in HOST_WIDE_SCOPES
            readers = seen_by.get((e["host"], m["kind"], m["device"]), [])
            if host_wide and readers[0] != addr:
                continue  # counted once per host, by the first worker that reads it
            bm = b_meters.get((m["kind"], m["device"]))
            e0 = bm["energy_j"] if bm is not None else 0.0
            gross = max(0.0, m["energy_j"] - e0)
            params = dict(m["params"])
            params["gross_energy_j"] = gross
            c_notes = list(m.get("notes", []))
            scope = m["scope"]
            energy = gross
            if host_wide:
                params["counted_once_per_host"] = True
                params["host_workers"] = len(readers)
                if len(readers) > 1:
                    c_notes.append(
                        f"{m['kind']} {m['device']} on {e['host']} is shared by "
                        f"{len(readers)} workers there: counted once for the host"
                    )
            gpu_split = h.get("gpu", {}).get(m["device"], []) if m["kind"] == "gpu" else []
            by_sm = bool(gpu_split) and all(sh is not None for sh, _, _ in gpu_split)
            if e.get("task_tracking") and client and host_wide and by_sm:
                # NVML's SM share of each worker process on this GPU, times this client's part
                # of that worker's task CPU time.
                share = min(1.0, sum(sh * (mi / to if to > 0 else 0.0) for sh, mi, to in gpu_split))
                scope, energy = SCOPE_TASKS, gross * share
                params.update(
                    {
                        "attribution": ATTR_SM_TASK_CPU,
                        "share": share,
                        "tasks_cpu_s": h["mine"],
                        "worker_sm_shares": [sh for sh, _, _ in gpu_split],
                        "share_of": "each worker process's SM share (NVML) × this client's part "
                        "of its tasks' CPU time",
                    }
                )
                c_notes.append(
                    f"this client's tasks: {share * 100:.3g}% of the GPU (the workers' SM shares "
                    f"from NVML × this client's part of their task CPU time) → {energy:.4g} J of "
                    f"the gross {gross:.4g} J"
                )
            elif e.get("task_tracking") and client:
                if host_wide:
                    # A device of the host: this client's task CPU over the host's busy CPU
                    # (RAPL: every process's), or over every client's task CPU (GPU).
                    if m["kind"] == "cpu":
                        denom, mine_here = h["busy"], h["mine"]
                        base = "the host's busy CPU time"
                    else:  # the tasks of the workers that see this GPU
                        denom = sum(to for _, _, to in gpu_split)
                        mine_here = sum(mi for _, mi, _ in gpu_split)
                        base = "the CPU time of every client's tasks on the workers that see it"
                else:
                    denom, mine_here = proc_cpu, mine
                    base = "the worker process's CPU time"
                share = min(1.0, mine_here / denom) if denom and denom > 0 else 0.0
                scope, energy = SCOPE_TASKS, gross * share
                params.update(
                    {
                        "attribution": ATTR_TASK_CPU,
                        "share": share,
                        "tasks_cpu_s": mine_here,
                        "share_of": base,
                    }
                )
                c_notes.append(
                    f"this client's tasks: {share * 100:.3g}% of {base} "
                    f"({_fmt_s(mine_here)} of {_fmt_s(denom or 0.0)}) → "
                    f"{energy:.4g} J of the gross {gross:.4g} J"
                )
            comps.append(
                Component(
                    kind=m["kind"],
                    device=m["device"],
                    name=m["name"],
                    energy_j=energy,
                    method=m["method"],
                    scope=scope,
                    params=params,
                    below_resolution=duration_s < m.get("resolution_s", 0.0),
                    notes=c_notes,
                    location=source.location(addr, e),
                )
            )
    return comps, notes


def figures_by_host(comps: Iterable[Component]) -> dict[HostKey, HostFigures]:
    """Joules and workers per (engine, host) of remote components (the live breakdown; the
    labextension's ``clusterBreakdown`` does the same from a finished run's components)."""
    out: dict[HostKey, tuple[float, set[str]]] = {}
    for c in comps:
        if c.location:
            k = (str(c.location.get("engine", "?")), str(c.location.get("host", "?")))
            j, workers = out.get(k, (0.0, set()))
            workers.add(str(c.location.get("worker", "?")))
            out[k] = (j + c.energy_j, workers)
    return {k: (j, frozenset(w)) for k, (j, w) in out.items()}


def total_by_host(comps: Iterable[Component]) -> dict[str, float]:
    """Joules per host of remote components (for a per-host breakdown)."""
    out: dict[str, float] = {}
    for c in comps:
        if c.location:
            h = str(c.location.get("host", "?"))
            out[h] = out.get(h, 0.0) + c.energy_j
    return out


# ---- notebook helpers (%carbon cluster, %load_ext) -----------------------------------------------


def _dask_default_client() -> Any:
    """The default Dask client when ``distributed`` is already imported and one exists; never
    imports distributed."""
    import sys

    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.default_client()
    except Exception:
        return None


def _ray_connected() -> bool:
    import sys

    ray = sys.modules.get("ray")
    try:
        return ray is not None and bool(ray.is_initialized())
    except Exception:
        return False


# Automatic attach (the notebook extension): off once the user detached (``%carbon cluster off``,
# ``carbonlab.dask.detach()``), until they attach again or load the extension again; each default
# client is tried once (an attach that failed is not retried at every cell).
_auto_off = False
_auto_tried: set[str] = set()


def user_detached(off: bool = True) -> None:
    """The user detached (``off``) or attached a cluster by hand: automatic attach stops or
    resumes."""
    global _auto_off
    _auto_off = off


_said_later: list[str] = []  # lines of background attaches that ended after their cell went on
_attach_lock = threading.Lock()
attaching: threading.Thread | None = None  # the latest automatic attach's thread (tests join it)


def take_said() -> list[str]:
    """The lines of automatic attaches that ended after the cell that began them went on."""
    with _attach_lock:
        out = list(_said_later)
        _said_later.clear()
    return out


def auto_attach(*, at_load: bool = False) -> str | None:
    """Attach the default Dask client if there is one and nothing is attached: at ``%load_ext``
    (``at_load``) and at each measured cell's start, so a Client made after ``%load_ext`` is
    measured from the next cell on. Costs a ``sys.modules`` lookup when distributed was never
    imported, and a look at distributed's default client otherwise; a client is tried once. Never
    after the user detached (:func:`user_detached`), unless the extension is loaded again.

    The attach runs on a thread of its own; the caller waits for it at most
    :data:`ATTACH_TIMEOUT_S`. Returns one line to show, or None: what the attach did when it
    ended in time (attached, or why not), else that it goes on in the background; its outcome is
    then given by :func:`take_said` at a later cell."""
    global attaching
    if at_load:
        user_detached(False)
    if _sources or _auto_off:
        return None
    client = _dask_default_client()
    if client is None:
        return None
    key = str(getattr(client, "id", id(client)))
    if key in _auto_tried:
        return None
    if getattr(client, "asynchronous", False):
        _auto_tried.add(key)
        return None  # an asynchronous client cannot be read from a synchronous cell's edges
    if getattr(client, "status", "running") != "running":
        return None  # still connecting (or closing): looked at again at the next cell
    _auto_tried.add(key)
    box: dict[str, Any] = {}
    done = threading.Event()

    def attach() -> None:
        try:
            from . import dask as cl_dask

            src = cl_dask.attach(client, timeout_s=ATTACH_BACKGROUND_S, register=False)
            with _attach_lock:
                if _auto_off or _sources:  # the user detached, or attached by hand, meanwhile
                    return
                register(src)
            said = f"carbonlab: measuring the {src.describe()} too (%carbon cluster off to stop)"
        except Exception as e:
            said = f"carbonlab: the default Dask client was not attached ({type(e).__name__}: {e})"
        with _attach_lock:
            if box.get("gone_on"):
                _said_later.append(said)
            else:
                box["said"] = said
            done.set()

    attaching = threading.Thread(target=attach, name="carbonlab-attach", daemon=True)
    attaching.start()
    done.wait(ATTACH_TIMEOUT_S)
    with _attach_lock:
        if done.is_set():
            return box.get("said")
        box["gone_on"] = True
    return (
        f"carbonlab: the Dask scheduler did not take carbonlab's plugins within "
        f"{ATTACH_TIMEOUT_S:g} s; attaching in the background (this cell is not measured on the "
        "cluster; a later cell says how it went)"
    )


def status_text() -> str:
    srcs = sources()
    if not srcs:
        return "carbonlab: no cluster attached (%carbon cluster attaches the default Dask client or Ray)"

    def one(s: RemoteSource) -> str:
        left = s.backing_off()
        if left is None:
            return s.describe()
        return f"{s.describe()} (did not answer its last read; retrying in {left:.0f} s)"

    return "carbonlab: measuring " + "; ".join(one(s) for s in srcs)


def cluster_command(rest: list[str]) -> str:
    """``%carbon cluster [dask|ray|off|status]``: attach a cluster, stop, or say what is attached.

    Raises ValueError with a message for the user when there is nothing to attach or the word is
    unknown."""
    word = rest[0] if rest else ""
    if len(rest) > 1 or word not in ("", "dask", "ray", "off", "status"):
        raise ValueError(
            f"%carbon cluster {' '.join(rest)}: expected no argument, dask, ray, off or status"
        )
    if word == "status":
        return status_text()
    if word == "off":
        user_detached()  # and no automatic attach from now on
        n = len(sources())
        for s in sources():
            s_mod = type(s).__module__
            if s_mod.endswith(".ray"):
                from . import ray as cl_ray

                cl_ray.detach()
            else:
                unregister(s)
        return f"carbonlab: stopped measuring {n} cluster{'s' if n != 1 else ''}"
    done = []
    if word in ("", "dask"):
        client = _dask_default_client()
        if client is not None:
            from . import dask as cl_dask

            done.append(cl_dask.attach(client).describe())
        elif word == "dask":
            raise ValueError("%carbon cluster dask: no default Dask client (create a Client first)")
    if word in ("", "ray"):
        if _ray_connected():
            from . import ray as cl_ray

            done.append(cl_ray.attach().describe())
        elif word == "ray":
            raise ValueError("%carbon cluster ray: Ray is not initialised (call ray.init() first)")
    if not done:
        raise ValueError(
            "%carbon cluster: no Dask default client and no Ray connection in this kernel: create a "
            "distributed.Client or call ray.init() first"
        )
    user_detached(False)
    return "carbonlab: measuring " + "; ".join(done) + " at every cell's edges"


# ---- carbonlab run --dask / --ray ----------------------------------------------------------------


class AttachError(Exception):
    """A cluster named on the command line that cannot be attached (a usage error)."""


def attach_for_command(dask: str | None = None, ray: str | None = None) -> Any:
    """Connect to and attach the clusters ``carbonlab run`` was given; returns a function that
    detaches them. The command's work reaches them through its own clients: gross figures."""
    undo: list[Any] = []
    try:
        if dask:
            try:
                import distributed
            except ImportError:
                raise AttachError(
                    "--dask needs distributed: pip install 'carbonlab[dask]'"
                ) from None
            from . import dask as cl_dask

            try:
                client = distributed.Client(dask, timeout="5s", set_as_default=False)
            except Exception as e:
                raise AttachError(
                    f"--dask {dask}: cannot connect ({type(e).__name__}: {e})"
                ) from None
            src = cl_dask.attach(client, own_tasks=False)
            undo += [lambda: unregister(src), client.close]
        if ray:
            try:
                import ray as ray_mod
            except ImportError:
                raise AttachError("--ray needs ray: pip install 'carbonlab[ray]'") from None
            from . import ray as cl_ray

            try:
                ray_mod.init(address=ray, log_to_driver=False)
            except Exception as e:
                raise AttachError(
                    f"--ray {ray}: cannot connect ({type(e).__name__}: {e})"
                ) from None
            cl_ray.attach()
            undo += [cl_ray.detach, ray_mod.shutdown]
    except AttachError:
        _undo(undo)
        raise

    def detach() -> None:
        _undo(undo)

    return detach


def _undo(steps: list[Any]) -> None:
    for step in steps:
        try:
            step()
        except Exception:
            pass
