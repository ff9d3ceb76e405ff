"""Measure the work a notebook or test sends to a Dask cluster (``pip install carbonlab[dask]``).

>>> import carbonlab.dask                                    # doctest: +SKIP
>>> carbonlab.dask.attach(client)                           # doctest: +SKIP

``attach`` registers two plugins on the cluster (reaching current and future workers):

- :class:`CarbonWorkerPlugin` opens carbonlab's meters in each worker process and adds the thread CPU
  time of every finished task (as distributed itself meters it, ``thread-cpu``) to the worker's
  ledger under the id of the client that submitted the task.
- :class:`CarbonSchedulerPlugin` stamps each task a client submits with that client's id (the
  ``carbonlab_client`` annotation), which the scheduler forwards to the worker that runs it.

From then on every measured window (a cell, a ``track()`` block, a test) reads every worker's meters
in one ``Client.run`` round trip at its begin and at its end, each bounded by
:data:`carbonlab.cluster.TIMEOUT_S`. Importing this module imports ``distributed`` (it is only
imported when you attach a cluster).
"""

from __future__ import annotations

import threading
from typing import Any

import distributed
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from . import cluster

PLUGIN_NAME = "carbonlab"
ANNOTATION = "carbonlab_client"
TRACKING = "dask-thread-cpu"


class CarbonSchedulerPlugin(SchedulerPlugin):
    """Stamps every task with the id of the client that submitted it (first submitter wins)."""

    idempotent = True
    name = PLUGIN_NAME

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
        try:
            _track_tasks(worker)
        except Exception as e:  # an unknown distributed version: gross figures, said so
            cluster.LEDGER.tracking = None
            cluster.LEDGER.why = f"task CPU not tracked: {type(e).__name__}: {e}"

    def teardown(self, worker: Any) -> None:
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

    def describe(self) -> str:
        addr = getattr(self.client.scheduler, "address", None) or "?"
        return f"dask cluster {addr}"

    def read(self, since_wall: float | None = None) -> dict[str, dict[str, Any]]:
        if self.client.asynchronous:
            raise RuntimeError("an asynchronous Client cannot be read from a synchronous window")
        if self.client.status in ("closing", "closed"):
            cluster.unregister(self)  # said once, in this window's notes; not again every cell
            raise RuntimeError(f"the client is {self.client.status}; the cluster is detached")
        if self.client.status != "running":
            raise RuntimeError(f"the client is {self.client.status}")
        out = self.client.sync(
            self.client._run,
            cluster.read_meters,
            since_wall=since_wall,
            on_error="return",
            callback_timeout=self.timeout_s,
        )
        return {
            addr: (r if isinstance(r, dict) else {"ok": False, "error": repr(r)})
            for addr, r in out.items()
        }


def _register_plugins(client: distributed.Client, timeout_s: float | None) -> None:
    plugins = (CarbonSchedulerPlugin(), CarbonWorkerPlugin())
    if timeout_s is None or not hasattr(client, "_register_worker_plugin"):
        # (a distributed without these private coroutines: register_plugin, unbounded)
        for p in plugins:
            client.register_plugin(p, name=PLUGIN_NAME)
        return
    # Bounded: the same calls register_plugin makes, with distributed's own timeout on each.
    for p, reg in zip(plugins, (client._register_scheduler_plugin, client._register_worker_plugin)):
        try:
            client.sync(
                reg, plugin=p, name=PLUGIN_NAME, idempotent=True, callback_timeout=timeout_s
            )
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
    ``timeout_s``: the longest each plugin's registration may wait for the scheduler (TimeoutError
    past it; the notebook's automatic attach uses it, so a hung scheduler cannot stall a cell).
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
