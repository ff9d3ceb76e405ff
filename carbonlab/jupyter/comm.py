"""Kernel side of the live sidebar protocol: a comm per measured cell run that lasts, short runs
batched.

The protocol (DESIGN.md, "Live sidebar protocol"); the constants below are its one Python definition,
mirrored by ``labextension/src/protocol.ts``:

- open, target ``carbonlab.cell``: ``{"v": 1, "run_id", "cell_id", "t0" (unix s), "label",
  "labelled" (the user gave it), "devices": [{"kind", "device", "name", "method", "scope"}],
  "zone": <intensity dict or null>, "pue"}``
- while the cell runs, from the sampler thread, at most 4 times a second:
  ``{"kind": "sample", "t" (s since t0), "power_w": {kind: W}, "energy_j": {kind: J since start},
  "co2e_g"}``
- close: ``{"kind": "summary", "measurement": <Measurement JSON>, "error": bool, "status": "done" |
  "error" | "interrupted" (Ctrl-C), "advice": <advice
  dict or null>, "history": {"ok": true} or {"ok": false, "path", "reason", "pending", "dropped"}}``;
  ``history`` says whether runs are being saved (:class:`carbonlab.store.HistoryFault`); ``advice`` (:meth:`carbonlab.footprint.advice.Advice.to_dict`, for this run's
  work) is made on the outbox thread from the forecast the provider already holds, null without one

Fields were only ever added to these messages (``labelled``, ``pue``, ``status``), so ``v`` stays
1. The sidebar's ``carbonlab.hello`` comm (v2, :mod:`.widget`) carries the rest: visibility, and
the kernel's ``state`` answer with the runs a reloaded page missed (docs/sidebar.md).

A run gets its ``carbonlab.cell`` comm only once a sample comes at or after :data:`OPEN_AFTER_S`
into it (:class:`CommSink`): a comm per trivial cell (open, summary, close, each an iopub message)
cost about 2 ms a cell in a real kernel (issue 14). A shorter run goes to the v2 sidebars' hello
comms in a ``{"kind": "runs", "runs": [{"open", "summary"}, ...]}`` message for several runs
(:class:`RunBatch`); with no sidebar listening nothing is sent (its row is in the history); a v1
sidebar still gets a comm per run.

Little of this is on the cell's critical path: the comm is opened by the sampler thread on its first
tick, not by the ``pre_run_cell`` hook, and the summary is sent by the :class:`Outbox` thread after
the cell (a run that ended before the first tick opens its comm there too). Every comm is closed at
the end of its run, and a frontend that closes it first (JupyterLab does so for a target nobody
registered) stops its samples, so nothing piles up where nobody listens.

:class:`LiveRun` fans the same messages out to any number of sinks; the comm is one, the in-cell
widget (:mod:`.widget`) another.
"""

from __future__ import annotations

import contextvars
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..measurement import Measurement
    from ..meters.base import Meter
    from ..sampler import Sample, Sampler

TARGET_NAME = "carbonlab.cell"
PROTOCOL_VERSION = 1
MAX_SAMPLE_HZ = 4.0  # jupyter_server rate-limits iopub; keep samples rare and small
KIND_SAMPLE = "sample"
KIND_SUMMARY = "summary"
KIND_RUNS = "runs"  # short runs, batched on the hello comm (hello v2)
OPEN_AFTER_S = 0.25  # a run gets its own comm once it has run this long
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


def _start_after_s(sink: Any) -> float:
    """How far into the run a sink first wants a sample (optional ``start_after_s``; 0)."""
    try:
        return max(0.0, float(getattr(sink, "start_after_s", 0.0)))
    except (TypeError, ValueError):
        return 0.0


def _asks(obj: Any, name: str) -> bool:
    """``obj.name()``, an optional yes/no question: yes where it is missing or fails."""
    fn = getattr(obj, name, None)
    if fn is None:
        return True
    try:
        return bool(fn())
    except Exception:
        return True


def _needs_close(sink: Any) -> bool:
    """Whether a sink that was never opened still wants the run's open and summary messages
    (optional ``needs_close()``; yes). A trivial cell nobody watches costs no message then."""
    return _asks(sink, "needs_close")


class SinkFactory:
    """Makes one run's sink, and says before making it what the deferred start of a run's stream
    needs (``CarbonExtension.begin``): ``start_after_s(run)``, how far into the run its sink first
    wants a sample (None: it would make none for this run), and ``wants_short_runs()``, whether a run
    that ended before then still wants its open and summary messages. A plain callable used as a
    factory is taken as wanting a sample at once and every run's end."""

    __slots__ = ("_make", "start_after_s", "wants_short_runs")

    def __init__(
        self,
        make: Callable[[Any], Any],
        start_after_s: Callable[[Any], float | None],
        wants_short_runs: Callable[[], bool],
    ) -> None:
        self._make = make
        self.start_after_s = start_after_s
        self.wants_short_runs = wants_short_runs

    def __call__(self, run: Any) -> Any:
        return self._make(run)


def factory_start_after_s(factory: Any, run: Any) -> float | None:
    """A sink factory's first sample time for ``run`` (see :class:`SinkFactory`; 0 for others)."""
    fn = getattr(factory, "start_after_s", None)
    if fn is None:
        return 0.0
    try:
        after = fn(run)
        return None if after is None else max(0.0, float(after))
    except Exception:
        return 0.0


def factory_wants_short_runs(factory: Any) -> bool:
    """Whether a factory's sink wants the end of a run that ended before its first sample."""
    return _asks(factory, "wants_short_runs")


class CommSink:
    """A ``carbonlab.cell`` comm, opened only for a run still going after ``open_after_s``.

    :meth:`open` only keeps the open message; the comm itself is created by the first sample at
    or after ``open_after_s`` seconds into the run (the sampler thread), so a trivial cell costs no
    comm at all. A run that ends before that goes, with a ``batch`` (:class:`RunBatch`), to the
    sidebars' hello comms in one ``{"kind": "runs"}`` message for several runs; without one
    (tests, a caller that wants every run on its own comm) its comm is opened and closed at the
    end, as before.
    """

    def __init__(
        self,
        create_comm: Callable[..., Any] | None = None,
        *,
        batch: RunBatch | None = None,
        open_after_s: float = 0.0,
    ) -> None:
        if create_comm is None:
            import comm

            create_comm = comm.create_comm
        self._create = create_comm
        self._batch = batch
        self._open_after_s = open_after_s
        self._open_data: dict[str, Any] | None = None
        self._comm: Any = None
        self._closed_by_frontend = False

    @property
    def listening(self) -> bool:
        return not self._closed_by_frontend

    @property
    def start_after_s(self) -> float:
        return self._open_after_s

    def needs_close(self) -> bool:
        """A run that ended before its comm opened is sent only where a sidebar listens."""
        if self._comm is not None or self._batch is None:
            return True
        return self._batch.takes_runs() or self._batch.wants_comms()

    def open(self, data: dict[str, Any]) -> None:
        self._open_data = data
        if self._open_after_s <= 0:
            self._open_comm()

    def _open_comm(self) -> None:
        if self._comm is not None or self._open_data is None:
            return
        if self._batch is not None:
            self._batch.flush()  # the runs before this one reach the sidebar first
        self._comm = self._create(target_name=TARGET_NAME, data=self._open_data)
        self._comm.on_close(self._on_close)

    def _on_close(self, msg: Any) -> None:
        self._closed_by_frontend = True

    def sample(self, data: dict[str, Any]) -> None:
        if self._comm is None:
            if float(data.get("t") or 0.0) < self._open_after_s:
                return  # too early to tell a long run from a trivial one
            self._open_comm()
        if self._comm is not None and not self._closed_by_frontend:
            self._comm.send(data)

    def close(self, data: dict[str, Any]) -> None:
        if self._comm is None:
            b = self._batch
            if b is not None and self._open_data is not None:
                if b.takes_runs():
                    b.add(self._open_data, data)
                    return
                if not b.wants_comms():
                    return  # no sidebar is listening: the row is in the history
            self._open_comm()
        c = self._comm
        if c is None:
            return
        if self._closed_by_frontend:
            # The frontend dropped it; closing again would only send to nobody.
            return
        c.close(data)


class RunBatch:
    """Short runs' open and summary messages, sent together to the sidebars' hello comms (v2) as
    ``{"kind": "runs", "runs": [{"open": <open message>, "summary": <summary message>}, ...]}``,
    oldest first, by a timer ``delay_s`` after the first one waiting (never on a cell's path), or
    before the next run's own comm opens.

    ``channels()`` gives the hello channels that take batches (v2 sidebars); ``wants_comms()``
    says whether some frontend still wants a comm per run (a v1 sidebar)."""

    def __init__(
        self,
        channels: Callable[[], Sequence[Any]],
        wants_comms: Callable[[], bool],
        delay_s: float = 0.2,
        max_runs: int = 200,
    ) -> None:
        self._channels = channels
        self._wants_comms = wants_comms
        self.delay_s = delay_s
        self.max_runs = max_runs
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._runs: list[dict[str, Any]] = []
        self._timer: threading.Timer | None = None
        self.errors: list[str] = []

    def takes_runs(self) -> bool:
        return bool(self._channels())

    def wants_comms(self) -> bool:
        return self._wants_comms()

    def add(self, open_msg: dict[str, Any], summary: dict[str, Any]) -> None:
        with self._lock:
            self._runs.append({"open": open_msg, "summary": summary})
            full = len(self._runs) >= self.max_runs
            if not full and self._timer is None:
                t = threading.Timer(self.delay_s, self.flush)
                t.name = "carbonlab-runs"
                t.daemon = True
                self._timer = t
                t.start()
        if full:
            self.flush()

    def flush(self) -> None:
        """Send the waiting runs now (from any thread; the sends are serialised)."""
        with self._send_lock:
            with self._lock:
                runs, self._runs = self._runs, []
                t, self._timer = self._timer, None
            if t is not None and t is not threading.current_thread():
                t.cancel()
            if not runs:
                return
            msg = {"kind": KIND_RUNS, "runs": runs}
            for ch in list(self._channels()):
                try:
                    ch.send_runs(msg)
                except Exception as e:  # a sidebar gone mid-send must not stop the others
                    err = f"runs: {type(e).__name__}: {e}"
                    if err not in self.errors:
                        self.errors.append(err)


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


class Outbox:
    """One daemon thread ("carbonlab-live") that sends the end of each run: the summary (and the open
    message of a run shorter than one sampler tick). Serialising, signing and sending two messages
    costs a few hundred µs in ipykernel; the cell does not wait for it."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="carbonlab-live", daemon=True
                    )
                    self._thread.start()
        self._queue.put((fn, args))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args = item
                try:
                    fn(*args)
                except Exception:  # LiveRun records its sinks' errors; nothing may kill this loop
                    pass
            finally:
                self._queue.task_done()

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every submitted summary is sent; True when none is pending."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def stop(self) -> None:
        """Send what is pending, then end the thread (it starts again on the next submit)."""
        t = self._thread
        if t is not None and t.is_alive():
            self._queue.put(None)
            t.join(timeout=10)
        self._thread = None


OUTBOX = Outbox()


def flush(timeout: float | None = 5.0) -> bool:
    """Wait until every finished run's summary has been sent."""
    return OUTBOX.flush(timeout)


class LiveRun:
    """One cell run, streamed live to its sinks until :meth:`finish`.

    ``window`` is the begun :class:`carbonlab.window.Window` (its begin readings give "energy since
    start"). ``open_data(measurement)`` returns the open message and the grams CO2e per joule for
    live figures; it is called once, by the sampler thread on its first tick (``measurement`` None),
    or at the end with the finished Measurement JSON when the run ended before that tick (so the zone
    is read from it rather than looked up).

    ``context`` (``contextvars.copy_context()`` taken in the cell) is entered for every call to a
    sink, so that messages sent from other threads carry the cell's request as their parent (ipykernel
    keeps the parent in a context variable). With an ``outbox`` the summary is sent by its thread.
    With ``advice(measurement)``, the summary carries its result as ``"advice"`` (made on the
    thread that sends the summary; a failure gives null).
    """

    def __init__(
        self,
        *,
        sampler: Sampler,
        window: Any,
        sinks: Sequence[Sink],
        open_data: Callable[[dict[str, Any] | None], tuple[dict[str, Any], float | None]],
        hz: float = MAX_SAMPLE_HZ,
        context: contextvars.Context | None = None,
        outbox: Outbox | None = None,
        advice: Callable[[Measurement | dict[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        self.sampler = sampler
        self.window = window
        self.sinks = list(sinks)
        self._open_data = open_data
        self.hz = min(hz, MAX_SAMPLE_HZ)
        self._ctx = context
        self._outbox = outbox
        self._advice = advice
        self._lock = threading.Lock()  # one thread at a time in the sinks (and in the context)
        self._token: int | None = None
        self._opened = False
        self._finished = False
        self._closed = False  # the summary went to the sinks
        self.open_msg: dict[str, Any] | None = None  # what the sinks were opened with
        self._g_per_j: float | None = None
        self._kinds = [m.kind for m in sampler.meters]
        self.samples_sent = 0
        self.errors: list[str] = []

    def start(self) -> LiveRun:
        delay = min((_start_after_s(s) for s in self.sinks), default=0.0)
        self._token = self.sampler.subscribe(self._on_sample, hz=self.hz, delay_s=delay)
        return self

    def _in_context(self, fn: Callable[..., None], *args: Any) -> None:
        if self._ctx is None:
            fn(*args)
        else:
            self._ctx.run(fn, *args)

    def _open_locked(self, measurement: dict[str, Any] | None = None) -> None:
        self._opened = True
        try:
            data, self._g_per_j = self._open_data(measurement)
        except Exception as e:
            self.errors.append(f"open data: {e}")
            self.sinks = []
            return
        self.open_msg = data
        for s in list(self.sinks):
            try:
                s.open(data)
            except Exception as e:  # a sink must never break the cell
                self.errors.append(f"{type(s).__name__}.open: {e}")
                self.sinks.remove(s)

    def attach(self, sink: Sink) -> dict[str, Any] | None:
        """Add a sink to a run already streaming (a sidebar that said hello after a page reload):
        it gets the later samples and the summary, not ``open``. Returns the open message it
        missed, or None when the run is not streaming (not opened yet: its comm is still to come,
        and reaches every frontend; or already closed: its row is in the history)."""
        with self._lock:
            if not self._opened or self._closed or self.open_msg is None:
                return None
            self.sinks.append(sink)
            return self.open_msg

    # -- sampler thread -------------------------------------------------------------------------
    def _on_sample(self, sample: Sample) -> None:
        with self._lock:
            if not self._finished:
                self._in_context(self._sample_locked, sample)

    def _sample_locked(self, sample: Sample) -> None:
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
        elapsed = sample.t - w.t0
        for kind, e, e0, p in zip(self._kinds, sample.energy_j, w.e0, sample.power_w):
            energy[kind] = energy.get(kind, 0.0) + max(0.0, e - e0)
            if p is None and elapsed > 0:
                # The stream's first sample (it starts into the run, after a gap in the sampler's
                # timeline): the mean power since the run began.
                p = max(0.0, e - e0) / elapsed
            if p is not None:
                power[kind] = power.get(kind, 0.0) + p
        remote = w.remote_live() if getattr(w, "remote", None) else None
        hosts: list[dict[str, Any]] | None = None
        if remote is not None:  # attached clusters (carbonlab.cluster), polled at ≤ 1 Hz
            energy["cluster"] = remote["energy_j"]
            if remote["power_w"] is not None:
                power["cluster"] = remote["power_w"]
            hosts = [
                {
                    "engine": h["engine"],
                    "host": h["host"],
                    "workers": int(h["workers"]),
                    "energy_j": _num(h["energy_j"], 4),
                    "power_w": None if h["power_w"] is None else _num(h["power_w"], 3),
                }
                for h in remote.get("hosts", ())
            ]
        total = sum(energy.values())
        g = self._g_per_j
        msg = {
            "kind": KIND_SAMPLE,
            "t": _num(max(0.0, sample.t - w.t0), 3),
            "power_w": {k: _num(v, 3) for k, v in power.items()},
            "energy_j": {k: _num(v, 4) for k, v in energy.items()},
            "co2e_g": None if g is None else _num(total * g, 9),
        }
        if hosts is not None:
            # The "cluster" entry per engine and host (gross, like it): the sidebar row's details.
            msg["cluster_hosts"] = hosts
        return msg

    # -- the end --------------------------------------------------------------------------------
    def finish(
        self,
        measurement: Measurement | dict[str, Any],
        error: bool,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Stop streaming now; close every sink with the summary (on the outbox thread if any);
        ``extra``: more fields of the summary message (``history``).

        ``measurement`` may be the Measurement itself: its JSON is then made off the cell's path
        (the caller must not change it afterwards).
        """
        if self._token is not None:
            self.sampler.unsubscribe(self._token)
            self._token = None
        with self._lock:
            if self._finished:
                return
            self._finished = True  # a tick already under way sends nothing more
            if not self._opened and not any(_needs_close(s) for s in self.sinks):
                self._closed = True  # ended before any sink wanted it, and none wants its end
                return
        if self._outbox is not None:
            self._outbox.submit(self._send_summary, measurement, error, extra)
        else:
            self._send_summary(measurement, error, extra)

    def _send_summary(
        self,
        measurement: Measurement | dict[str, Any],
        error: bool,
        more: dict[str, Any] | None = None,
    ) -> None:
        data = measurement if isinstance(measurement, dict) else measurement.to_dict()
        extra: dict[str, Any] = dict(more or {})
        if self._advice is not None:
            try:
                extra["advice"] = self._advice(measurement)
            except Exception as e:
                self.errors.append(f"advice: {e}")
                extra["advice"] = None
        with self._lock:
            self._in_context(self._close_locked, data, error, extra)

    def _close_locked(
        self, data: dict[str, Any], error: bool, extra: dict[str, Any] | None = None
    ) -> None:
        if not self._opened:
            self._open_locked(data)
        self._closed = True
        summary = {"kind": KIND_SUMMARY, "measurement": data, "error": bool(error), **(extra or {})}
        for s in self.sinks:
            try:
                s.close(summary)
            except Exception as e:
                self.errors.append(f"{type(s).__name__}.close: {e}")


def open_message(
    *,
    run_id: str,
    cell_id: str | None,
    t0: float,
    label: str,
    meters: Sequence[Meter],
    labelled: bool = False,
    zone: dict[str, Any] | None,
    pue: float | None = None,
) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "run_id": run_id,
        "cell_id": cell_id,
        "t0": t0,
        "label": label,
        "labelled": labelled,
        "devices": devices(meters),
        "zone": zone,
        "pue": pue,
    }


def grams_per_joule(intensity_gco2e_per_kwh: float | None, pue: float | None) -> float | None:
    if intensity_gco2e_per_kwh is None:
        return None
    return intensity_gco2e_per_kwh * (pue or 1.0) / _J_PER_KWH
