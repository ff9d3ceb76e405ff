"""Measure the work a notebook or test sends to a Ray cluster (``pip install carbonlab[ray]``).

>>> import ray, carbonlab.ray                                # doctest: +SKIP
>>> ray.init(address="auto"); carbonlab.ray.attach()         # doctest: +SKIP

``attach`` starts one reader actor per alive node (``num_cpus=0``, pinned to its node with
``NodeAffinitySchedulingStrategy(soft=False)``). Each opens carbonlab's meters in its process on
that node; at every window's edges the driver calls all readers at once and waits at most
:data:`carbonlab.cluster.TIMEOUT_S` for their answers.

What a node's figures cover: its GPUs and RAPL packages (whole devices, every process on the node);
where there is no RAPL, the CPU-time model applied to the CPU time of the node's Ray worker
processes (``ray::`` processes that are children of the reader's own raylet, read from ``/proc``;
another Ray cluster's or raylet's workers on the same host are left out) — every driver's tasks:
Ray tells a task's CPU time only through its dashboard's state API, so this driver's own share is
not told (a note says so). Nodes that join after ``attach`` get a reader once a window's begin
edge sees them (looked for in the background, at most every :data:`NODES_EVERY_S`) and are read
from the next edge on, with a note. Importing this module imports ``ray``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import cluster
from .measurement import METHOD_CPU_MODEL, METHOD_RAM_MODEL

RAY_WORKERS = "ray-worker-processes"
#: How often a reader looks at its node's Ray worker processes while windows are being read (a
#: worker that exits keeps the CPU time of its last look: Ray ends a job's workers with the job, and
#: idle ones after a second, often before the window's end edge).
POLL_S = 0.2
#: A reader looks only this long after the driver's last read (an edge or a live sample).
ACTIVE_S = 5.0
#: The driver looks for nodes that joined (``ray.nodes()``, off the window's thread) at most this
#: often, at a window's begin edge or a live poll.
NODES_EVERY_S = 5.0


def _uptime_s() -> float | None:
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


#: Processes seen not to be Ray's (their command line is read once; a pid leaves the set when a
#: look finds its process gone, and the set is forgotten after a gap between looks longer than
#: ACTIVE_S, so a pid reused meanwhile by a Ray worker is not mistaken for the old process).
_others: set[str] = set()
# Seen once as not Ray's: set aside only if the next look agrees (a child between fork and exec
# still shows its parent's command line; two looks 0.2 s apart never both catch that moment).
_not_ray_once: set[str] = set()
_last_scan = [0.0]
_STARTING_WORKERS = (
    b"ray/_private/workers/default_worker.py",
    b"ray/_private/workers/setup_worker.py",
)


def _scan_ray_workers(
    exclude: int | None = None, parent: int | None = None
) -> dict[int, tuple[float, float]]:
    """CPU seconds (user + system) and start time (seconds after boot) of each of this node's Ray
    worker processes (``ray::`` process titles, the node's agents left out); ``parent``: only the
    children of that process (the reader's raylet: not another Ray cluster's workers on the host)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, float]] = {}
    try:
        pids = {p for p in os.listdir("/proc") if p.isdigit()}
    except OSError:
        return out
    now = time.monotonic()
    if now - _last_scan[0] > 2 * ACTIVE_S:
        _others.clear()
        _not_ray_once.clear()
    _last_scan[0] = now
    _others.intersection_update(pids)
    _not_ray_once.intersection_update(pids)
    for p in pids - _others:
        if exclude is not None and int(p) == exclude:
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmdline = f.read(4096)
            argv0 = cmdline.split(b"\0", 1)[0]
            # A worker in start-up (`python .../ray/_private/workers/default_worker.py`, before
            # it takes its ray:: title) is one already: seen at the first look after its birth,
            # it is counted whole, its imports included.
            starting = any(w in cmdline for w in _STARTING_WORKERS)
            if not starting and (not argv0.startswith(b"ray::") or argv0.endswith(b"Agent")):
                # A worker starts as `python .../default_worker.py` and takes its ray:: title a
                # moment later: only a process with no "ray" in its command line (kernel threads
                # have none) is set aside.
                if b"ray" not in cmdline:
                    if p in _not_ray_once:
                        _others.add(p)
                    else:
                        _not_ray_once.add(p)
                continue
            _not_ray_once.discard(p)
            with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if parent is not None and int(fields[1]) != parent:
                _others.add(p)  # another raylet's (another cluster's) worker: never ours
                continue
            # utime, stime; starttime (clock ticks after boot)
            out[int(p)] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[19]) / tick)
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile, or not ours to read
    return out


class WorkerCpuCounter:
    """A monotonic counter of the CPU seconds the node's Ray worker processes spent since the
    reader's first scan. A process that started after the previous scan is counted whole (all its
    CPU time is newer than that scan: a job's new workers' start-up is not lost); one that was
    already running at the first scan is counted from then; one that exits keeps what it had
    when last seen."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.gone = 0.0
        self.scanned_at: float | None = None  # uptime of the previous scan
        self._lock = threading.Lock()  # the reader's poller and its snapshot calls

    def read(self, exclude: int | None = None, parent: int | None = None) -> tuple[float, int]:
        with self._lock:
            return self._read(exclude, parent)

    def _read(self, exclude: int | None, parent: int | None) -> tuple[float, int]:
        before = self.scanned_at
        self.scanned_at = _uptime_s()
        now = _scan_ray_workers(exclude, parent)
        for pid in list(self.last):
            if pid not in now:
                self.gone += self.last.pop(pid) - self.first.pop(pid)
        for pid, (cpu, started) in now.items():
            if pid not in self.first:
                born_since = before is not None and started >= before
                self.first[pid] = 0.0 if born_since else cpu
            self.last[pid] = cpu
        return self.gone + sum(self.last[p] - self.first[p] for p in self.last), len(now)


_counter = WorkerCpuCounter()


def ray_workers_cpu_s(exclude: int | None = None, parent: int | None = None) -> tuple[float, int]:
    """The node's Ray worker processes' CPU seconds (see :class:`WorkerCpuCounter`), and how
    many there are now; ``parent``: only that raylet's."""
    return _counter.read(exclude, parent)


def node_snapshot(since_wall: float | None = None) -> dict[str, Any]:
    """A reader's snapshot: carbonlab's meters, the process models swapped for the node's Ray
    worker processes' CPU time (the reader's own process does no work worth reading)."""
    # The reader computes nothing on the GPU: a per-process share of its own would mean nothing.
    snap = cluster.read_meters()
    if not snap.get("ok"):
        return snap
    # The reader's parent is its raylet: the workers it started are this node's (a second Ray
    # cluster or raylet on the host has its own).
    cpu_s, n = ray_workers_cpu_s(exclude=os.getpid(), parent=os.getppid())
    meters = []
    for m in snap["meters"]:
        if m["method"] == METHOD_RAM_MODEL:
            continue  # the reader's own memory: not the workers'; said in the source's note
        if m["method"] == METHOD_CPU_MODEL:
            w = float(m["params"].get("w_per_core", 0.0))
            m = {
                **m,
                "name": f"Ray worker processes ({m['name']})",
                "energy_j": cpu_s * w,
                "params": {**m["params"], "basis": RAY_WORKERS, "worker_processes": n},
            }
        meters.append(m)
    snap["meters"] = meters
    snap["ray_workers_cpu_s"] = cpu_s
    return snap


class Poller:
    """Looks at the node's worker processes every :data:`POLL_S` for :data:`ACTIVE_S` after each
    :meth:`touch` (a driver's read), so that a worker that exits between two edges keeps the CPU
    time it had a moment before, not at the previous edge."""

    def __init__(self, look: Any) -> None:
        self.look = look
        self.touched = 0.0
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="carbonlab-ray-poll", daemon=True)
        self.thread.start()

    def touch(self) -> None:
        self.touched = time.monotonic()
        self.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (the reader actor's process ends it anyway: it is a daemon)."""
        self.stopped.set()
        self.wake.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.wake.wait()
            self.wake.clear()
            while time.monotonic() - self.touched < ACTIVE_S:
                if self.stopped.wait(POLL_S):
                    return
                try:
                    self.look()
                except Exception:
                    pass  # the next edge reads (and reports) the node anyway


@ray.remote(num_cpus=0, max_concurrency=2)
class NodeReader:
    """One per node: carbonlab's meters opened in a process on that node."""

    def __init__(self) -> None:
        cluster.read_meters()  # open the meters now, not at the first window's edge
        pid, raylet = os.getpid(), os.getppid()
        self.poller = Poller(lambda: ray_workers_cpu_s(exclude=pid, parent=raylet))

    def snapshot(self, since_wall: float | None = None) -> dict[str, Any]:
        self.poller.touch()
        return node_snapshot(since_wall)


class RaySource(cluster.RemoteSource):
    """The Ray cluster this driver is connected to, read through one reader per node."""

    engine = "ray"
    untracked_note = (
        "ray: the figures are each node's gross (every driver's tasks): Ray tells a task's CPU time "
        "only through its dashboard's state API; RAM of Ray's worker processes is not modelled"
    )

    def __init__(self, readers: dict[str, Any]) -> None:
        super().__init__()
        self.readers = readers  # node id -> actor handle
        self.client_id = ray.get_runtime_context().get_job_id()
        self._nodes_lock = threading.Lock()
        self._nodes_at = time.monotonic()  # when nodes were last looked for (attach did)
        self.nodes_thread: threading.Thread | None = None
        self._joined: list[str] = []  # nodes given a reader after attach, not yet said

    def describe(self) -> str:
        return f"ray cluster ({len(self.readers)} node{'s' if len(self.readers) != 1 else ''})"

    def look_for_nodes(self) -> None:
        """Start readers on nodes that joined since attach, on a thread of their own (a new
        reader's start takes ~0.1 s): read from the next edge on. At most every
        :data:`NODES_EVERY_S`; never blocks."""
        with self._nodes_lock:
            busy = self.nodes_thread is not None and self.nodes_thread.is_alive()
            if busy or time.monotonic() - self._nodes_at < NODES_EVERY_S:
                return
            self._nodes_at = time.monotonic()
            self.nodes_thread = threading.Thread(
                target=self._add_new_nodes, name="carbonlab-ray-nodes", daemon=True
            )
            self.nodes_thread.start()

    def _add_new_nodes(self) -> None:
        try:
            new = {
                n["NodeID"]: _reader(n["NodeID"])
                for n in ray.nodes()
                if n.get("Alive") and n["NodeID"] not in self.readers
            }
            if not new:
                return
            refs = {nid: a.snapshot.remote() for nid, a in new.items()}  # started, meters open
            ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=60)
            ready_set = set(ready)
            started = {nid: new[nid] for nid, ref in refs.items() if ref in ready_set}
            with self._nodes_lock:
                self.readers = {**self.readers, **started}
                self._joined += sorted(started)
        except Exception:
            pass  # looked for again NODES_EVERY_S later

    def components(
        self, begin: cluster.Edge, end: cluster.Edge, duration_s: float
    ) -> tuple[list[Any], list[str]]:
        comps, notes = cluster.components(self, begin, end, duration_s)
        with self._nodes_lock:
            said = [nid for nid in self._joined if (begin.snapshots.get(nid) or {}).get("ok")]
            self._joined = [nid for nid in self._joined if nid not in said]
        notes += [
            f"ray: node {nid} joined the cluster after attach(); read from this window on"
            for nid in said
        ]
        return comps, notes

    def send(self, since_wall: float | None = None) -> dict[str, Any]:
        if since_wall is None:  # a begin edge or a live poll: any new node, for the next edge
            self.look_for_nodes()
        return {node: a.snapshot.remote(since_wall) for node, a in self.readers.items()}

    def answered(self, sent: dict[str, Any]) -> bool:
        refs = list(sent.values())
        if not refs:
            return True
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return len(ready) == len(refs)

    def collect(self, sent: dict[str, Any], timeout_s: float) -> dict[str, dict[str, Any]]:
        refs = sent
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        if refs and not ready:  # no node answered: the edge failed (the window backs off)
            raise TimeoutError(f"no reader answered within {self.timeout_s:g} s")
        ready_set = set(ready)
        out: dict[str, dict[str, Any]] = {}
        for node, ref in refs.items():
            if ref not in ready_set:  # a hung node: left out of this edge, and said
                out[node] = {
                    "ok": False,
                    "unanswered": True,
                    "error": f"no answer within {timeout_s:g} s",
                }
                continue
            try:
                out[node] = ray.get(ref, timeout=0)
            except Exception as e:
                out[node] = {"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}
        return out

    def read(self, since_wall: float | None = None) -> dict[str, dict[str, Any]]:
        return self.collect(self.send(since_wall), self.timeout_s)

    timeout_s = cluster.TIMEOUT_S


def _reader(nid: str) -> Any:
    """The reader actor pinned to node ``nid`` (this driver's; the existing one if there is)."""
    return NodeReader.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False),
        name=f"carbonlab-reader-{nid[:12]}-{os.getpid()}",
        get_if_exists=True,
    ).remote()


def attach() -> RaySource:
    """Measure the Ray cluster this driver is connected to (``ray.init`` first) in every window."""
    if not ray.is_initialized():
        raise RuntimeError("carbonlab.ray.attach(): call ray.init() first")
    for src in cluster.sources():
        if isinstance(src, RaySource):
            return src
    readers = {n["NodeID"]: _reader(n["NodeID"]) for n in ray.nodes() if n.get("Alive")}
    src = RaySource(readers)
    ray.get([a.snapshot.remote() for a in readers.values()])  # started, meters open
    return cluster.register(src)


def detach() -> None:
    """Stop reading the Ray cluster and end the readers."""
    for src in cluster.sources():
        if isinstance(src, RaySource):
            cluster.unregister(src)
            for a in src.readers.values():
                try:
                    ray.kill(a)
                except Exception:
                    pass
