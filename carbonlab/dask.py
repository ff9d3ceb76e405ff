"""Measure the work a notebook or test sends to a Dask cluster (``pip install carbonlab[dask]``).

>>> import carbonlab.dask                                    # doctest: +SKIP
>>> carbonlab.dask.attach(client)                           # doctest: +SKIP

``attach`` registers two plugins on the cluster (reaching current and future workers):

- :class:`CarbonWorkerPlugin` opens carbonlab's meters in each worker process and adds the thread CPU
  time of every finished task (as distributed itself meters it, ``thread-cpu``) to the worker's
  ledger under the id of the client that submitted the task.
  It also answers the ``carbonlab_read`` message with that snapshot, and as the worker closes
  it sends its last snapshot to the scheduler (the ``carbonlab-left`` event).
- :class:`CarbonSchedulerPlugin` stamps each task a client submits with that client's id (the
  ``carbonlab_client`` annotation), which the scheduler forwards to the worker that runs it, and
  answers the kernel's ``carbonlab_read`` message: it asks every worker at once, each within
  :data:`carbonlab.cluster.WORKER_TIMEOUT_S` (a hung worker is left out, the others answer), and
  adds the last snapshots of workers that left since the window began.

From then on every measured window (a cell, a ``track()`` block, a test) reads every worker's meters
in one message to the scheduler at its begin and at its end, each bounded by
:data:`carbonlab.cluster.TIMEOUT_S`; the begin's is sent without the window waiting for it, and a
window that ends before that answer came back, short against the round trip, is below the
cluster's resolution and not read at its end (see docs/cluster.md). A scheduler without carbonlab's handler (a plugin of an older carbonlab already
registered there) is read with ``Client.run`` instead. Importing this module imports
``distributed`` (it is only imported when you attach a cluster).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import distributed
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from . import cluster

PLUGIN_NAME = "carbonlab"
ANNOTATION = "carbonlab_client"
TRACKING = "dask-thread-cpu"
READ_OP = "carbonlab_read"  # the handler the scheduler and each worker answer
LEFT_TOPIC = "carbonlab-left"  # a closing worker's last snapshot, as a scheduler event


def _worker_read(since_wall: float | None = None) -> dict[str, Any]:
    """The worker's ``carbonlab_read`` handler: its snapshot (runs on its event loop)."""
    return cluster.read_meters(since_wall=since_wall)


class CarbonSchedulerPlugin(SchedulerPlugin):
    """Stamps every task with the id of the client that submitted it (first submitter wins)."""

    idempotent = True
    name = PLUGIN_NAME

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.handlers[READ_OP] = self.read_workers

    async def read_workers(
        self, since_wall: float | None = None, timeout: float = cluster.WORKER_TIMEOUT_S
    ) -> dict[str, Any]:
        """Every worker's snapshot, each asked at once with its own ``timeout``: a worker that does
        not answer in time is left out (``{"ok": False, "unanswered": True}``), the others
        count. With ``since_wall`` (an end edge): workers that left cleanly since then give the
        last snapshot they sent as they closed."""
        scheduler = self.scheduler

        async def one(addr: str) -> dict[str, Any]:
            try:
                r = await asyncio.wait_for(
                    scheduler.rpc(addr).carbonlab_read(since_wall=since_wall), timeout
                )
            except (asyncio.TimeoutError, TimeoutError):
                return {"ok": False, "unanswered": True, "error": f"no answer within {timeout:g} s"}
            except Exception as e:
                return {"ok": False, "error": f"{type(e).__name__}: {e}"}
            if not isinstance(r, dict):  # a worker without carbonlab's handler
                return {"ok": False, "no_reader": True, "error": "no carbonlab reader there"}
            return r

        addrs = list(scheduler.workers)
        res = dict(zip(addrs, await asyncio.gather(*(one(a) for a in addrs))))
        if since_wall is not None:
            for _, msg in scheduler.get_events(LEFT_TOPIC):
                snap = msg.get("snapshot") if isinstance(msg, dict) else None
                addr = msg.get("address") if isinstance(msg, dict) else None
                if not snap or not addr or snap.get("wall", 0.0) <= since_wall:
                    continue
                if not (res.get(addr) or {}).get("ok"):  # gone (or going) since the window began
                    res[addr] = {**snap, "left": True}
        return {"workers": res}

    def update_graph(self, scheduler: Any, *, client: str, tasks: Any, **kwargs: Any) -> None:
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None:
                continue
            ann = ts.annotations
            if ann is None:
                ts.annotations = {ANNOTATION: client}
            elif ANNOTATION not in ann:
                ann[ANNOTATION] = client


class CarbonWorkerPlugin(WorkerPlugin):
    """Opens carbonlab's meters in the worker and charges each task's thread CPU to its client."""

    idempotent = True
    name = PLUGIN_NAME

    def setup(self, worker: Any) -> None:
        cluster.read_meters()  # open the meters now, not at the first window's edge
        worker.handlers[READ_OP] = _worker_read
        try:
            _track_tasks(worker)
        except Exception as e:  # an unknown distributed version: gross figures, said so
            cluster.LEDGER.tracking = None
            cluster.LEDGER.why = f"task CPU not tracked: {type(e).__name__}: {e}"

    async def teardown(self, worker: Any) -> None:
        try:
            # A worker that closes (retired, scaled down, shut down) sends its last snapshot to
            # the scheduler (its connection is still open here): a window it leaves counts it
            # until then. Bounded: a scheduler that does not take it never holds the close up.
            if "closing" in str(getattr(worker, "status", "")):
                snap = cluster.read_meters()
                if snap.get("ok"):
                    msg = {"address": worker.address, "snapshot": snap}
                    await asyncio.wait_for(
                        worker.scheduler.log_event(topic=LEFT_TOPIC, msg=msg),
                        cluster.WORKER_TIMEOUT_S,
                    )
        except Exception:
            pass  # counted until its last live reading instead, as a killed worker is
        _untrack_tasks(worker)


_current = threading.local()


def _track_tasks(worker: Any) -> None:
    """Wrap the worker's metric digest: distributed meters each task's ``thread-cpu`` in the thread
    that ran it and digests it in ``_finalize_metrics(stim, ...)`` on the event loop, where the
    task's key (and so its annotations) is known."""
    if getattr(worker, "_carbonlab_tracked", False):
        return
    finalize = worker._finalize_metrics
    digest = worker.digest_metric

    def finalize_metrics(stim: Any, *args: Any, **kwargs: Any) -> Any:
        _current.key = getattr(stim, "key", None)
        try:
            return finalize(stim, *args, **kwargs)
        finally:
            _current.key = None

    def digest_metric(name: Any, value: float) -> Any:
        try:
            key = getattr(_current, "key", None)
            if (
                key is not None
                and isinstance(name, tuple)
                and len(name) >= 3
                and name[0] == "execute"
                and name[-2:] == ("thread-cpu", "seconds")
            ):
                ts = worker.state.tasks.get(key)
                ann = (ts.annotations or {}) if ts is not None else {}
                cluster.LEDGER.add(ann.get(ANNOTATION), float(value))
        except Exception:
            pass
        return digest(name, value)

    worker._finalize_metrics = finalize_metrics
    worker.digest_metric = digest_metric
    worker._carbonlab_tracked = True
    cluster.LEDGER.tracking = TRACKING


def _untrack_tasks(worker: Any) -> None:
    for attr in ("_finalize_metrics", "digest_metric", "_carbonlab_tracked"):
        worker.__dict__.pop(attr, None)
    cluster.LEDGER.tracking = None


class DaskSource(cluster.RemoteSource):
    """One Dask client's cluster, read at every window's edges."""

    engine = "dask"

    def __init__(
        self,
        client: distributed.Client,
        timeout_s: float = cluster.TIMEOUT_S,
        *,
        own_tasks: bool = True,
    ) -> None:
        super().__init__()
        self.client = client
        # own_tasks=False (``carbonlab run --dask``): the work comes from other clients (the
        # command's), which cannot be told from anyone else's: the workers' gross figures.
        self.client_id = client.id if own_tasks else None
        if not own_tasks:
            self.untracked_note = (
                f"{self.describe()}: the command's own Dask clients cannot be told from other "
                "clients of the cluster: the workers' gross figures, every client's work included"
            )
        self.timeout_s = min(timeout_s, cluster.TIMEOUT_S)
        # Whether the scheduler answers carbonlab's read message (None: not known yet).
        self.direct: bool | None = None

    def describe(self) -> str:
        addr = getattr(self.client.scheduler, "address", None) or "?"
        return f"dask cluster {addr}"

    def _check(self) -> None:
        if self.client.asynchronous:
            raise RuntimeError("an asynchronous Client cannot be read from a synchronous window")
        if self.client.status in ("closing", "closed"):
            cluster.unregister(self)  # said once, in this window's notes; not again every cell
            raise RuntimeError(f"the client is {self.client.status}; the cluster is detached")
        if self.client.status != "running":
            raise RuntimeError(f"the client is {self.client.status}")

    async def _read(self, since_wall: float | None) -> dict[str, dict[str, Any]]:
        """One message to the scheduler's handler (it asks the workers), or ``Client.run`` where
        the scheduler has none."""
        if self.direct is not False:
            try:
                res = await self.client.scheduler.carbonlab_read(
                    since_wall=since_wall, timeout=min(cluster.WORKER_TIMEOUT_S, self.timeout_s)
                )
            except (OSError, asyncio.CancelledError):
                raise
            except Exception:
                if self.direct:
                    raise  # the handler answered before: a fault of this read, said as one
                res = None
            workers = res.get("workers") if isinstance(res, dict) else None
            # Workers whose carbonlab plugin is an older one (no handler) are read by Client.run.
            if isinstance(workers, dict) and not (
                workers and all(w.get("no_reader") for w in workers.values())
            ):
                self.direct = True
                return self._snapshots(workers)
            self.direct = False  # an older carbonlab's plugin is registered there
        out = await self.client._run(cluster.read_meters, since_wall=since_wall, on_error="return")
        return self._snapshots(out)

    @staticmethod
    def _snapshots(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            addr: (r if isinstance(r, dict) else {"ok": False, "error": repr(r)})
            for addr, r in out.items()
        }

    def send(self, since_wall: float | None = None) -> concurrent.futures.Future:
        self._check()
        coro = asyncio.wait_for(self._read(since_wall), self.timeout_s)
        return asyncio.run_coroutine_threadsafe(coro, self.client.loop.asyncio_loop)

    def answered(self, sent: concurrent.futures.Future) -> bool:
        return sent.done()

    def discard(self, e: cluster.Edge) -> None:
        if e.pending is not None:
            e.pending.cancel()
        e.pending = None

    def collect(
        self, sent: concurrent.futures.Future, timeout_s: float
    ) -> dict[str, dict[str, Any]]:
        try:
            return sent.result(timeout=timeout_s)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            sent.cancel()
            raise TimeoutError(f"no answer within {self.timeout_s:g} s") from None

    def read(self, since_wall: float | None = None) -> dict[str, dict[str, Any]]:
        return self.collect(self.send(since_wall), self.timeout_s)


def _register_plugins(client: distributed.Client, timeout_s: float | None) -> None:
    plugins = (CarbonSchedulerPlugin(), CarbonWorkerPlugin())
    if timeout_s is None or not hasattr(client, "_register_worker_plugin"):
        # (a distributed without these private coroutines: register_plugin, unbounded)
        for p in plugins:
            client.register_plugin(p, name=PLUGIN_NAME)
        return
    # Bounded, both together: the same calls register_plugin makes, with distributed's own
    # timeout on each, the second given what the first left.
    deadline = time.monotonic() + timeout_s
    for p, reg in zip(plugins, (client._register_scheduler_plugin, client._register_worker_plugin)):
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            client.sync(reg, plugin=p, name=PLUGIN_NAME, idempotent=True, callback_timeout=left)
        except TimeoutError:
            raise TimeoutError(f"the scheduler did not answer within {timeout_s:g} s") from None


def attach(
    client: distributed.Client | None = None,
    *,
    register: bool = True,
    own_tasks: bool = True,
    timeout_s: float | None = None,
) -> DaskSource:
    """Measure ``client``'s cluster (default: the current default client) in every window.

    Registers the plugins (idempotent: attaching again is harmless) and returns the source; windows
    read it until :func:`detach`. ``own_tasks=False`` charges the workers' gross figures instead
    of this client's tasks' share (for work submitted by other clients, as under ``carbonlab run``).
    ``timeout_s``: the longest the plugins' registration may wait for the scheduler, both together
    (TimeoutError past it; the notebook's automatic attach uses it, so a hung scheduler cannot
    stall a cell).
    """
    if client is None:
        client = distributed.default_client()
    if client.asynchronous:
        raise ValueError(
            "carbonlab.dask.attach: an asynchronous Client cannot be read at a window's edges "
            "(they are synchronous); attach a synchronous Client to the same scheduler"
        )
    for src in cluster.sources():
        if isinstance(src, DaskSource) and src.client is client:
            return src
    _register_plugins(client, timeout_s)
    src = DaskSource(client, own_tasks=own_tasks)
    if register:
        cluster.register(src)
    return src


def detach(client: distributed.Client | None = None) -> None:
    """Stop reading ``client``'s cluster (every Dask cluster with no argument); plugins stay. The
    notebook extension no longer attaches the default client by itself from then on."""
    cluster.user_detached()
    for src in cluster.sources():
        if isinstance(src, DaskSource) and (client is None or src.client is client):
            cluster.unregister(src)


def default_client_if_any() -> distributed.Client | None:
    """The default client, or None (never creates one)."""
    try:
        return distributed.default_client()
    except ValueError:
        return None
