"""Persistent notebook history: one row per measured cell run, in SQLite, shared by every kernel.

Where: ``settings.history`` (``CARBONLAB_HISTORY`` or ``[tool.carbonlab] history``) when set, else
``$XDG_DATA_HOME/carbonlab/history.sqlite`` (``~/.local/share/carbonlab/history.sqlite``; on Windows
``%LOCALAPPDATA%\\carbonlab\\history.sqlite``).

How: the database is in WAL mode with a busy timeout, every batch of rows is one ``BEGIN IMMEDIATE``
transaction, and rows are keyed by a unique ``run_id`` (a retried batch cannot duplicate a row). Several
kernels (processes) may write at once; SQLite serialises the writers and none loses a row.

Cells never wait for the store: :meth:`Store.append` hands the row to a writer thread (so another
process holding the write lock, or a broken file, never stalls a cell), and "vs previous run" comes from
memory (:meth:`Store.previous_energy`). Rows that cannot be written stay in memory (at most
``MAX_PENDING``; the oldest beyond that are dropped and counted) and are retried in the background with a
growing delay; :attr:`Store.fault` says why. Reads in this process (:func:`history`) include the rows
not written yet. A read asked for in a cell (:func:`history` in IPython, ``%carbon report``, ``export``,
``advise``, ``report --paper``) waits at most ``CELL_READ_TIMEOUT_S`` for another process's lock; while
the file stays locked it answers with this kernel's own runs and says so (:func:`read_merged`).
``%unload_ext`` asks the writer to write the pending rows and end (:meth:`Store.stop`, it returns at
once; the writer keeps retrying while the file is locked); interpreter exit waits for it, bounded
(:meth:`Store.close`).

>>> import tempfile, os
>>> from carbonlab.measurement import Component, Measurement
>>> path = os.path.join(tempfile.mkdtemp(), "h.sqlite")
>>> m = Measurement("demo", "2026-11-21T10:00:00.000Z", 1.5,
...                 [Component("cpu", "package-0", 12.0, "cpu-time-model", "process")])
>>> s = Store(path)
>>> s.write([RunRecord.new(m, notebook="demo.ipynb", cell_id="c1")])
>>> history(notebook="demo.ipynb", path=path)[["cell_id", "energy_cpu_j"]].values.tolist()
[['c1', 12.0]]
>>> s.close()  # the writer thread (none started here) has ended
True
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .measurement import KINDS, Measurement, stamp_versions

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from .config import Settings

FILENAME = "history.sqlite"
# The writer thread writes once rows have stopped coming for this long: a burst of quick cells (a
# Run All) costs one commit after it, and the thread does not wake, build rows and compete for the
# GIL with the kernel while cells follow one another...
WRITE_DELAY_S = 0.2
# ...and at the latest this long after the first row waiting (cells that never pause).
MAX_WRITE_DELAY_S = 2.0
SCHEMA_VERSION = 1
# How long a direct write (Store.write, several processes at once) waits for another's lock.
BUSY_TIMEOUT_MS = 30_000
# The writer thread waits this long for a lock per try, then retries after a growing delay.
WRITE_TIMEOUT_S = 5.0
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
# Rows kept in memory while they cannot be written; beyond that the oldest are dropped (counted).
MAX_PENDING = 1000
# Reads outside a cell (carbonlab report in a terminal) wait this long for a lock held elsewhere.
READ_TIMEOUT_S = 5.0
# Reads asked for in a cell (history(), %carbon report/export/advise, report --paper) wait at most this
# long, then answer with this kernel's own runs (read_merged): a cell never waits seconds on a lock.
CELL_READ_TIMEOUT_S = 0.05
# The writer thread's first read of the latest runs (for "vs previous run") waits this long.
SEED_TIMEOUT_S = 2.0
# Store.close waits this long for the writer thread (%unload_ext does not wait: Store.stop);
# interpreter exit waits EXIT_TIMEOUT_S.
CLOSE_TIMEOUT_S = 2.0
EXIT_TIMEOUT_S = 10.0
# Cells remembered for "vs previous run".
RECENT_MAX = 20_000
# How the notebook is named when jupyter_server did not tell the kernel (terminal IPython, nbclient,
# kernels started by hand): the working directory, marked so nobody mistakes it for a file.
FALLBACK_NOTEBOOK = "<ipython in {cwd}>"

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    notebook        TEXT NOT NULL,
    cell_id         TEXT,
    cell_key        TEXT NOT NULL,
    execution_count INTEGER,
    label           TEXT NOT NULL DEFAULT '',
    started_at      TEXT NOT NULL,
    duration_s      REAL NOT NULL,
    energy_j        REAL NOT NULL,
    co2e_g          REAL,
    error           INTEGER NOT NULL DEFAULT 0,
    kernel          TEXT NOT NULL DEFAULT '',
    written_at      REAL NOT NULL,
    measurement     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_cell ON runs (notebook, cell_key, started_at);
"""


class StoreError(RuntimeError):
    """History could not be written or read; the message (one line) names the file and the reason.

    ``busy``: another process held the file's lock for longer than we waited (not a fault of the
    file; the rows wait and are retried).
    """

    def __init__(
        self, path: str | os.PathLike[str], reason: str, what: str = "cannot use history", *,
        busy: bool = False,
    ) -> None:  # fmt: skip
        self.path = str(path)
        self.reason = reason
        self.what = what
        self.busy = busy
        super().__init__(f"{what} {self.path}: {reason}")

    def __reduce__(self) -> Any:  # picklable (multiprocessing), with its fields
        return (_store_error, (self.path, self.reason, self.what, self.busy))

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the message is all a user needs.
        return [f"StoreError: {self}"]


def _store_error(path: str, reason: str, what: str, busy: bool) -> StoreError:
    return StoreError(path, reason, what, busy=busy)


# -- where ------------------------------------------------------------------------------------------
def default_path() -> Path:
    """The per-user history file (not created here)."""
    if sys.platform == "win32":  # pragma: no cover - not exercised on Linux CI
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "carbonlab" / FILENAME


def resolve_path(
    path: str | os.PathLike[str] | None = None, settings: Settings | None = None
) -> Path:
    """Explicit ``path`` > ``settings.history`` (``CARBONLAB_HISTORY``, pyproject) > the default."""
    if path is not None:
        return Path(path).expanduser()
    if settings is None:
        from . import runtime

        rt = runtime.peek()
        if rt is not None:
            settings = rt.settings
        else:
            from . import config

            settings = config.resolve()
    if settings.history:
        return Path(settings.history).expanduser()
    return default_path()


def notebook_key(user_ns: dict[str, Any] | None = None) -> tuple[str, str]:
    """The notebook this kernel serves, and where that name came from.

    jupyter_server sets ``JPY_SESSION_NAME`` (the notebook path) in the kernel's environment; VS Code
    puts ``__vsc_ipynb_file__`` in the user namespace. Elsewhere the name is the working directory,
    written ``<ipython in /path>``.

    >>> notebook_key({})[1] in ("JPY_SESSION_NAME", "fallback")
    True
    """
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name, "JPY_SESSION_NAME"
    vsc = (user_ns or {}).get("__vsc_ipynb_file__")
    if isinstance(vsc, str) and vsc:
        return vsc, "VS Code (__vsc_ipynb_file__)"
    return FALLBACK_NOTEBOOK.format(cwd=os.getcwd()), "fallback"


def cell_key(cell_id: str | None, source: str | None) -> str:
    """What "the same cell" means across runs: the frontend's cell id, else a hash of the source."""
    if cell_id:
        return cell_id
    digest = hashlib.sha1((source or "").strip().encode("utf-8", "replace")).hexdigest()
    return "source:" + digest[:16]


# -- rows -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class RunRecord:
    """One measured cell run, as written to the store."""

    run_id: str
    notebook: str
    cell_id: str | None
    cell_key: str
    execution_count: int | None
    # The Measurement JSON, or the Measurement itself (turned into JSON by the writer thread: the
    # cell does not wait for it; the caller must not change the object afterwards).
    data: dict[str, Any] | Measurement
    error: bool = False
    kernel: str = ""
    # Called by the writer thread with the row's Measurement JSON before it is written, to add
    # what is too slow for the cell's path (the forecast advice of a live zone); it never costs
    # the row: a failure leaves the JSON as it was.
    annotate: Callable[[dict[str, Any]], Any] | None = None

    @classmethod
    def new(
        cls,
        measurement: Measurement | dict[str, Any],
        *,
        notebook: str,
        cell_id: str | None = None,
        source: str | None = None,
        execution_count: int | None = None,
        error: bool = False,
        run_id: str | None = None,
        annotate: Callable[[dict[str, Any]], Any] | None = None,
    ) -> RunRecord:
        return cls(
            run_id=run_id or new_run_id(),
            notebook=notebook,
            cell_id=cell_id,
            cell_key=cell_key(cell_id, source),
            execution_count=execution_count,
            data=measurement,
            error=error,
            kernel=kernel_name(),
            annotate=annotate,
        )

    def row(self, annotate: bool = True) -> tuple[Any, ...]:
        """The row as written; ``annotate=False`` (a read of rows not written yet, on a cell's
        thread) leaves out what the annotation adds, which may ask a provider."""
        # A dict is the caller's (the comm may be sending it): add to a copy.
        d = stamp_versions(dict(self.data) if isinstance(self.data, dict) else self.data.to_dict())
        if annotate and self.annotate is not None:
            try:
                self.annotate(d)
            except Exception:  # the row is written without what the annotation would have added
                pass
        return (
            self.run_id,
            self.notebook,
            self.cell_id,
            self.cell_key,
            self.execution_count,
            d.get("label") or "",
            d["started_at"],
            float(d["duration_s"]),
            float(d["energy_j"]),
            d.get("co2e_g"),
            int(bool(self.error)),
            self.kernel,
            time.time(),
            json.dumps(d, default=str),
        )


_INSERT = (
    "INSERT OR IGNORE INTO runs (run_id, notebook, cell_id, cell_key, execution_count, label, "
    "started_at, duration_s, energy_j, co2e_g, error, kernel, written_at, measurement) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = (
    "run_id, notebook, cell_id, cell_key, execution_count, label, started_at, duration_s, "
    "energy_j, co2e_g, error, kernel, measurement"
)
# The fields of RunRecord.row(), in order.
_ROW_COLUMNS = [
    "run_id",
    "notebook",
    "cell_id",
    "cell_key",
    "execution_count",
    "label",
    "started_at",
    "duration_s",
    "energy_j",
    "co2e_g",
    "error",
    "kernel",
    "written_at",
    "measurement",
]


_kernel_name: tuple[int, str] | None = None


def kernel_name() -> str:
    """``host:pid`` of this process (cached: gethostname is a system call; a forked child starts
    again, :func:`_forked`)."""
    global _kernel_name
    if _kernel_name is None:
        pid = os.getpid()
        _kernel_name = (pid, f"{socket.gethostname()}:{pid}")
    return _kernel_name[1]


_run_ids: tuple[int, str, Iterator[int]] | None = None


def new_run_id() -> str:
    """A unique run id: random per process, then a counter (uuid4 reads the OS entropy pool on
    every call, which costs tens of µs in some VMs)."""
    global _run_ids
    if _run_ids is None:
        _run_ids = (os.getpid(), uuid.uuid4().hex[:20], itertools.count())
    return f"{_run_ids[1]}{next(_run_ids[2]):012x}"


def _forked() -> None:
    """In a forked child: its own pid in the kernel name, and run ids of its own."""
    global _kernel_name, _run_ids
    _kernel_name = None
    _run_ids = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


# -- the database -----------------------------------------------------------------------------------
def _is_busy(e: BaseException) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


_NEEDED_COLUMNS = frozenset(c.strip() for c in _COLUMNS.split(","))


def _check_schema(con: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; StoreError when it is not a carbonlab history (another program's
    database, a newer carbonlab's, a ``runs`` table of another shape): never write into it."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            path,
            f"written by a newer carbonlab (history schema {version}; this one knows "
            f"{SCHEMA_VERSION})",
            "cannot use history",
        )
    tables = {
        r[0]
        for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    others = sorted(tables - {"runs"})
    if others:
        raise StoreError(
            path,
            f"not a carbonlab history (it holds other tables: {', '.join(others[:5])})",
            "cannot use history",
        )
    if "runs" in tables:
        columns = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
        missing = sorted(_NEEDED_COLUMNS - columns)
        if missing:
            raise StoreError(
                path,
                f"not a carbonlab history (its runs table lacks {', '.join(missing[:5])})",
                "cannot use history",
            )
    return version


def connect(path: Path, timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> sqlite3.Connection:
    """Open (creating if needed) a history database in WAL mode with the current schema; wait at
    most ``timeout_s`` for another process's lock (StoreError after that, or on any fault)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            path,
            f"cannot create its directory {path.parent}: {e.strerror or e}",
            "cannot open history",
        ) from None
    if path.is_dir():
        raise StoreError(path, "it is a directory", "cannot open history")
    if not path.exists():
        _create(path)
    deadline = time.monotonic() + timeout_s
    busy_ms = max(1, int(timeout_s * 1000))
    while True:
        con = None
        try:
            con = sqlite3.connect(
                str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            con.execute(f"PRAGMA busy_timeout = {busy_ms}")
            # Before anything that writes: a file that is not ours is left as it is.
            version = _check_schema(con, path)
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit is atomic and durable against a process crash (not against power
            # loss between checkpoints), without an fsync per row.
            con.execute("PRAGMA synchronous = NORMAL")
            if version < SCHEMA_VERSION:
                con.execute("BEGIN IMMEDIATE")
                # Statement by statement: executescript() would commit, and the DDL must be one
                # transaction when several kernels create the file at once.
                for stmt in filter(None, (s.strip() for s in _DDL.split(";"))):
                    con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            return con
        except StoreError:
            if con is not None:
                con.close()
            raise
        except sqlite3.OperationalError as e:
            if con is not None:
                con.close()
            if _is_busy(e) and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            raise StoreError(path, _one_line(e), "cannot open history", busy=_is_busy(e)) from None
        except sqlite3.Error as e:
            if con is not None:
                con.close()
            raise StoreError(path, _one_line(e), "cannot open history") from None


def _create(path: Path) -> None:
    """Make a new history file whole (WAL mode, the schema) under a temporary name, then link it
    into place: a reader never finds it half-made, nor meets the lock of its making (a read from a
    cell waits CELL_READ_TIMEOUT_S at most). Best effort: where this fails (no hard links, ...)
    :func:`connect` makes it in place, and says why if that fails too."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        con = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("BEGIN IMMEDIATE")
            for stmt in filter(None, (s.strip() for s in _DDL.split(";"))):
                con.execute(stmt)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        finally:
            con.close()  # the last connection: the WAL is checkpointed into the file and removed
        os.link(tmp, path)  # never replaces a file another process made meanwhile
    except (OSError, sqlite3.Error):
        pass
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{tmp}{suffix}")
            except OSError:
                pass


def _write(
    con: sqlite3.Connection,
    records: list[RunRecord],
    timeout_s: float = BUSY_TIMEOUT_MS / 1000,
    unwritable: list[str] | None = None,
) -> list[tuple[Any, ...]]:
    """Write the rows in one transaction; the rows written (as :meth:`RunRecord.row` gave them).
    With ``unwritable``, a record whose row cannot be made (its Measurement fails to build: a bug
    of ours) is left out and its reason added there, and the others are written."""
    rows = []
    for r in records:
        if unwritable is None:
            rows.append(r.row())
        else:
            try:
                rows.append(r.row())
            except Exception as e:
                unwritable.append(f"{type(e).__name__}: {_one_line(e)}")
        # Making a row (and a quick cell's Measurement) is pure Python, holding the GIL: let the
        # kernel's own threads in between rows, so a cell never waits on a whole batch of them
        # (CPython would make it wait up to its 5 ms switch interval).
        time.sleep(0)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(_INSERT, rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return rows
        except sqlite3.OperationalError as e:
            if _is_busy(e) and time.monotonic() < deadline:
                time.sleep(0.005)
                continue
            raise


@dataclass(frozen=True)
class HistoryFault:
    """Why history is not being saved: said once in a cell summary, in the sidebar's summary
    message (:meth:`to_dict`) and in ``%carbon status``."""

    path: str
    reason: str
    pending: int = 0  # rows kept in memory, retried in the background
    dropped: int = 0  # rows given up (more than MAX_PENDING were waiting)

    def text(self) -> str:
        counts = f"{self.pending} run{'s' if self.pending != 1 else ''} kept in memory"
        if self.dropped:
            counts += f", {self.dropped} dropped"
        return (
            f"history not saved: {self.path}: {self.reason} ({counts}; retried in the background)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": False,
            "path": self.path,
            "reason": self.reason,
            "pending": self.pending,
            "dropped": self.dropped,
        }


class Store:
    """A history file, with a writer thread (started by :meth:`start` or the first :meth:`append`).

    Nothing a cell calls waits on the disk, the writer thread or another process's lock:
    :meth:`append` queues the row (at most ``max_pending`` are kept; beyond that the oldest are
    dropped and counted), :meth:`previous_energy` answers from memory (the runs of this process,
    and the latest run of each cell read by the writer thread when it starts, see :meth:`start`).
    A write that fails is retried by the writer thread with a growing delay (0.5 s to 30 s).
    The rows it wrote in this session (the latest ``max_pending``) stay in memory too, so that a
    read from a cell can answer with this kernel's runs while another process locks the file
    (:meth:`kernel_rows`).
    """

    # The writer's schedule reads this clock (a test gives one store a clock of its own).
    _clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, max_pending: int = MAX_PENDING
    ) -> None:
        self.path = resolve_path(path)
        self.max_pending = max_pending
        self._cv = threading.Condition()
        self._pending: deque[RunRecord] = deque()
        self._thread: threading.Thread | None = None
        self._stop = False  # stop(): write what is pending (retrying while locked), then end
        self._final = False  # close(): one last try at what is pending, then end
        # The rows written by this store in this session, newest last (RunRecord.row() tuples).
        self._written: deque[tuple[Any, ...]] = deque(maxlen=max_pending)
        self._due = 0.0  # monotonic time of the next write
        self._first_t = 0.0  # monotonic time the oldest row waiting came
        self._backoff = 0.0
        self._flush_asked = 0
        self._flush_done = 0
        self._attempts = 0
        self._last_failed = False
        self.dropped = 0
        self.unwritable: str | None = None  # why the latest row given up could not be made
        self.last_error: str | None = None
        # Why this history cannot be used (not merely locked by another process), or None.
        self.broken: str | None = None
        self._recent: dict[tuple[str, str], float] = {}
        self._recent_lock = threading.Lock()
        self._seed_notebook: str | None = None
        self.seeded = threading.Event()  # the writer thread has read the latest runs (or failed)
        # The first read failed (the file was locked or broken): read again after the writer's
        # next successful write, so "vs previous run" still learns of earlier sessions' runs.
        self._reseed = False
        # The writer thread is using the file (not waiting for rows): a lock a read meets may be
        # its own, held for milliseconds (creating the file, a commit, the checkpoint at close).
        self.in_file = False
        _register(self)

    # -- writing --------------------------------------------------------------------------------
    def write(self, records: Iterable[RunRecord]) -> None:
        """Write rows now, in one transaction (raises StoreError)."""
        records = list(records)
        if not records:
            return
        con = connect(self.path)
        try:
            _write(con, records)
        except sqlite3.Error as e:
            raise StoreError(
                self.path, _one_line(e), "cannot write history", busy=_is_busy(e)
            ) from None
        finally:
            con.close()

    def start(self, notebook: str | None = None) -> None:
        """Start the writer thread; with ``notebook``, it first reads the latest run of each of that
        notebook's cells (for "vs previous run"), waiting at most SEED_TIMEOUT_S for a lock."""
        if notebook is not None and self._seed_notebook is None:
            self._seed_notebook = notebook
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        t = self._thread
        if t is None or not t.is_alive():
            with self._cv:
                t = self._thread
                if t is None or not t.is_alive():
                    self._stop = False
                    self._final = False
                    _register(self)  # again, when rows come after stop() or close()
                    self._thread = threading.Thread(
                        target=self._run, name="carbonlab-store", daemon=True
                    )
                    self._thread.start()

    def append(self, record: RunRecord) -> None:
        """Queue a row for the writer thread (never blocks on the database or the thread)."""
        energy = _energy_of(record)
        if energy is not None and not record.error:  # "vs previous run": successful runs only
            self.remember(record.notebook, record.cell_key, energy)
        with self._cv:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped += 1
            # The writer, waiting for rows or for a due time, is woken only when that changes:
            # not for each row of a burst of quick cells.
            wake = False
            now = self._clock()
            if not self._pending:
                self._first_t = now
                self._due = max(self._due, now + WRITE_DELAY_S)
                wake = True
            elif len(self._pending) >= self.max_pending // 2 and not self._backoff:
                wake = self._due != 0.0
                self._due = 0.0  # a burst: write now rather than drop rows
            elif self._due != 0.0 and not self._backoff:
                # Cells still following one another: the write waits until they pause (or for
                # MAX_WRITE_DELAY_S). A later due needs no wake-up: the writer, waking at the
                # earlier one, waits again.
                self._due = max(
                    self._due, min(now + WRITE_DELAY_S, self._first_t + MAX_WRITE_DELAY_S)
                )
            self._pending.append(record)
            if wake:
                self._cv.notify_all()
        self._ensure_thread()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Ask the writer thread to write now and wait (at most ``timeout``) until it has written
        every pending row or failed once; True when nothing is pending. Never call it from a cell."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            if not self._pending:
                return True
            self._flush_asked += 1
            asked = self._flush_asked
            self._cv.notify_all()
        self._ensure_thread()
        with self._cv:
            while self._pending and not (self._flush_done >= asked and self._last_failed):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cv.wait(left)
            return not self._pending

    def stop(self) -> bool:
        """Ask the writer thread to write the pending rows now and then end; return at once (never
        waits on the thread or on a lock: ``%unload_ext`` calls it from a cell). While another
        process holds the file's lock the thread keeps retrying, with a growing delay, until the rows
        are written; it gives up on a broken file after one try. Until it ends, this process's
        reads still see those rows, and interpreter exit waits for it (EXIT_TIMEOUT_S). True when
        the thread had already ended."""
        t = self._thread
        with self._cv:
            self._stop = True
            self._due = 0.0  # now, not after the delay of a burst or of a failed try
            self._cv.notify_all()
        if t is None or not t.is_alive():
            self._thread = None
            _unregister(self)
            return True
        return False

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Stop the writer thread after one last try at the pending rows; wait at most ``timeout``
        for it (a thread still waiting on a lock finishes on its own; interpreter exit waits
        again). True when the thread has ended. Not for a cell: see :meth:`stop`."""
        t = self._thread
        with self._cv:
            self._stop = True
            self._final = True
            self._cv.notify_all()
        if t is not None and t.is_alive():
            t.join(timeout)
            if t.is_alive():
                return False
        self._thread = None
        _unregister(self)
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def fault(self) -> HistoryFault | None:
        """Why history is not being saved, or None (a lock held elsewhere is not a fault: the rows
        wait, see :attr:`pending` and :attr:`last_error`)."""
        reason = self.broken
        if reason is None and not self.dropped:
            return None
        return HistoryFault(
            str(self.path),
            reason or self.last_error or self.unwritable or "too many runs waiting",
            pending=len(self._pending),
            dropped=self.dropped,
        )

    @property
    def backoff_s(self) -> float:
        """The writer's delay before its next try after a failed write (0 after a success)."""
        return self._backoff

    @property
    def attempts(self) -> int:
        """Writes the writer thread has tried."""
        return self._attempts

    def _next_batch(self) -> tuple[list[RunRecord], bool, int]:
        """The rows to write now, and whether the thread ends after this try."""
        with self._cv:
            self.in_file = False
            while True:
                if self._final or (self._stop and not self._pending):
                    self.in_file = True
                    return list(self._pending), True, self._flush_asked
                if self._pending and (
                    self._flush_asked > self._flush_done or self._clock() >= self._due
                ):
                    self.in_file = True
                    return list(self._pending), False, self._flush_asked
                wait = None if not self._pending else max(0.0, self._due - self._clock())
                self._cv.wait(wait)

    def _run(self) -> None:
        con: sqlite3.Connection | None = None
        self.in_file = True
        try:
            if self._seed_notebook is not None and not self.seeded.is_set():
                con = self._seed(self._seed_notebook)
                self._reseed = con is None
            while True:
                batch, stop, asked = self._next_batch()
                error: StoreError | None = None
                written: list[tuple[Any, ...]] = []
                unwritable: list[str] = []
                if batch:
                    try:
                        if con is None:
                            con = connect(self.path, WRITE_TIMEOUT_S)
                        try:
                            written = _write(con, batch, WRITE_TIMEOUT_S, unwritable)
                        except sqlite3.Error as e:
                            raise StoreError(
                                self.path, _one_line(e), "cannot write history", busy=_is_busy(e)
                            ) from None
                    except StoreError as e:
                        error = e
                        if con is not None:
                            con.close()
                            con = None
                    except (
                        Exception
                    ) as e:  # a row that cannot be serialised, ...: never kill the thread
                        error = StoreError(self.path, _one_line(e), "cannot write history")
                if con is not None and error is None and self._reseed and self._seed_notebook:
                    # The first read failed: the file answers now (before _done, so a flush
                    # that returns has it).
                    self._reseed = not self._read_latest(con, self._seed_notebook)
                self._done(batch, error, asked, written)
                if unwritable and error is None:
                    with self._cv:  # given up (a retry would fail the same way), and said
                        self.dropped += len(unwritable)
                        self.unwritable = f"a run could not be recorded ({unwritable[-1]})"
                if stop:
                    return
                if self._stop and error is not None and not error.busy:
                    return  # stop(): a broken file is not retried once nobody shows its fault
        finally:
            if con is not None:
                con.close()
            self.in_file = False
            self.seeded.set()
            if self._stop:
                _unregister(self)

    def _done(
        self,
        batch: list[RunRecord],
        error: StoreError | None,
        asked: int,
        rows: list[tuple[Any, ...]] | None = None,  # the rows written (RunRecord.row() tuples)
    ) -> None:
        with self._cv:
            if batch:
                self._attempts += 1
            self._flush_done = max(self._flush_done, asked)
            self._last_failed = error is not None
            if error is None:
                self._written.extend(rows or ())
                if batch:
                    written = {id(r) for r in batch}
                    before = len(self._pending)
                    self._pending = deque(r for r in self._pending if id(r) not in written)
                    # Rows dropped for room while they were being written were saved after all.
                    self.dropped = max(
                        0, self.dropped - (len(batch) - (before - len(self._pending)))
                    )
                if self._pending:  # rows that came during the write: the next one in a moment
                    self._first_t = self._clock()
                    self._due = self._first_t + WRITE_DELAY_S
                else:  # (a flush that wrote during a backoff: the next row waits no longer)
                    self._due = 0.0
                self._backoff = 0.0
                self.last_error = None
                self.broken = None
            else:
                self.last_error = str(error)
                if not error.busy:
                    self.broken = error.reason
                self._backoff = min(max(RETRY_MIN_S, self._backoff * 2), RETRY_MAX_S)
                self._due = self._clock() + self._backoff
            self._cv.notify_all()

    # -- "vs previous run", from memory ----------------------------------------------------------
    def remember(self, notebook: str, key: str, energy_j: float) -> None:
        # The lock is only ever held for a few dict operations (never during I/O).
        with self._recent_lock:
            recent = self._recent
            recent.pop((notebook, key), None)
            recent[(notebook, key)] = energy_j
            if len(recent) > RECENT_MAX:
                recent.pop(next(iter(recent)), None)

    def previous_energy(self, notebook: str, key: str) -> float | None:
        """The energy of the latest successful run of this cell that this store knows of (memory
        only): runs that raised, went over a --strict budget or were interrupted are not compared."""
        return self._recent.get((notebook, key))

    def _seed(self, notebook: str) -> sqlite3.Connection | None:
        """On the writer thread: open the file (it is checked here, so a broken history is known
        before the first row) and read the latest run of each cell of ``notebook``."""
        self._inherit(notebook)
        con = None
        try:
            con = connect(self.path, SEED_TIMEOUT_S)
            self._latest_runs(con, notebook)
            return con
        except StoreError as e:
            self._seed_failed(e)
        except sqlite3.Error as e:
            self._seed_failed(
                StoreError(self.path, _one_line(e), "cannot read history", busy=_is_busy(e))
            )
        finally:
            self.seeded.set()
        if con is not None:
            con.close()
        return None

    def _inherit(self, notebook: str) -> None:
        """What the other stores of this process for this file remember of ``notebook`` (after
        ``%unload_ext`` and ``%load_ext`` their rows may not be written yet); read before the file,
        so a row is in one or the other."""
        got: dict[tuple[str, str], float] = {}
        for s in list(_open):
            if s is not self and s.path == self.path:
                with s._recent_lock:
                    got.update((k, v) for k, v in s._recent.items() if k[0] == notebook)
        if got:
            with self._recent_lock:
                got.update(self._recent)
                self._recent = got

    def _latest_runs(self, con: sqlite3.Connection, notebook: str) -> None:
        found = con.execute(
            "SELECT cell_key, energy_j, max(started_at) FROM runs WHERE notebook = ? "
            "AND error = 0 GROUP BY cell_key",
            (notebook,),
        ).fetchall()
        seed = {(notebook, k): float(e) for k, e, _ in found[-RECENT_MAX:] if e is not None}
        with self._recent_lock:
            # A run of this process (made while this was read) is newer: it stays.
            seed.update(self._recent)
            self._recent = seed

    def _read_latest(self, con: sqlite3.Connection, notebook: str) -> bool:
        """The seeding read again, after it failed at start (True when it worked)."""
        try:
            self._latest_runs(con, notebook)
        except sqlite3.Error:
            return False  # tried again after the next write
        return True

    def _seed_failed(self, e: StoreError) -> None:
        with self._cv:
            self.last_error = str(e)
            if not e.busy:
                self.broken = e.reason

    # -- reading --------------------------------------------------------------------------------
    def pending_rows(self, notebook: str | None = None) -> list[dict[str, Any]]:
        """Rows not written yet, as :func:`read_rows` gives them (oldest first)."""
        with self._cv:
            records = list(self._pending)
        out = []
        for r in records:
            if notebook is None or r.notebook == notebook:
                try:
                    out.append(_row_dict(r.row(annotate=False)))
                except Exception:  # not recordable (the writer gives it up and says why)
                    continue
        return out

    def kernel_rows(self, notebook: str | None = None) -> list[dict[str, Any]]:
        """This store's runs of this session, as :func:`read_rows` gives them: those written
        (the latest ``max_pending``), then those not written yet (memory only)."""
        with self._cv:
            written = list(self._written)
        written_ids = {t[0] for t in written}
        out = [_row_dict(t) for t in written if notebook is None or t[1] == notebook]
        out += [r for r in self.pending_rows(notebook) if r["run_id"] not in written_ids]
        return out

    def rows(
        self,
        notebook: str | None = None,
        *,
        cell_key: str | None = None,
        limit: int | None = None,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> list[dict[str, Any]]:
        """Rows as dicts, oldest first: the file's, then this store's rows not written yet."""
        rows = read_rows(self.path, notebook, timeout_s=timeout_s)
        seen = {r["run_id"] for r in rows}
        rows += [r for r in self.pending_rows(notebook) if r["run_id"] not in seen]
        if cell_key is not None:
            rows = [r for r in rows if r["cell_key"] == cell_key]
        rows.sort(key=lambda r: r["started_at"])
        return rows[-limit:] if limit else rows

    def previous(self, notebook: str, key: str) -> dict[str, Any] | None:
        """The latest stored run of this cell, or None (reads the file: not for a cell's path)."""
        rows = self.rows(notebook, cell_key=key, limit=1)
        return rows[-1] if rows else None


_NAMES = [c.strip() for c in _COLUMNS.split(",")]


def _row_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A :meth:`RunRecord.row` tuple as :func:`read_rows` gives a row."""
    d = dict(zip(_ROW_COLUMNS, row))
    return {k: d[k] for k in _NAMES}


def _energy_of(record: RunRecord) -> float | None:
    d = record.data
    try:
        return float(d["energy_j"] if isinstance(d, dict) else d.energy_j)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _open_read(path: Path, timeout_s: float = READ_TIMEOUT_S) -> sqlite3.Connection:
    """A read-only connection (reading never creates, converts or locks the file for writing)
    that waits at most ``timeout_s`` for another process's lock."""
    if path.is_dir():
        raise StoreError(path, "it is a directory", "cannot read history")
    try:
        con = sqlite3.connect(
            path.resolve().as_uri() + "?mode=ro",
            uri=True,
            timeout=timeout_s,
            check_same_thread=False,
        )
    except sqlite3.Error as e:
        raise StoreError(path, _one_line(e), "cannot read history", busy=_is_busy(e)) from None
    try:
        _check_schema(con, path)
    except StoreError as e:
        con.close()
        raise StoreError(path, e.reason, "cannot read history") from None
    except sqlite3.Error as e:
        con.close()
        raise StoreError(path, _one_line(e), "cannot read history", busy=_is_busy(e)) from None
    return con


def read_rows(
    path: Path,
    notebook: str | None = None,
    *,
    cell_key: str | None = None,
    limit: int | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Stored rows as dicts, oldest first; the ``limit`` latest when given. StoreError (one line,
    naming the file and the reason; ``busy`` when another process held the lock for longer than
    ``timeout_s``) when the file cannot be read."""
    if not path.exists():
        if not path.parent.exists() or path.parent.is_dir():
            return []
        raise StoreError(path, f"{path.parent} is not a directory", "cannot read history")
    where, args = [], []
    if notebook is not None:
        where.append("notebook = ?")
        args.append(notebook)
    if cell_key is not None:
        where.append("cell_key = ?")
        args.append(cell_key)
    sql = f"SELECT {_COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, written_at DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    con = _open_read(path, timeout_s)
    try:
        con.row_factory = sqlite3.Row
        tables = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone()
        rows = [dict(r) for r in con.execute(sql, args)] if tables else []
    except sqlite3.Error as e:
        raise StoreError(path, _one_line(e), "cannot read history", busy=_is_busy(e)) from None
    finally:
        con.close()
    rows.reverse()
    return rows


# Stores of this process, so that history() sees their pending rows and interpreter exit writes them.
_open: list[Store] = []
_open_lock = threading.Lock()
_atexit_registered = False


def _register(store: Store) -> None:
    global _atexit_registered
    with _open_lock:
        if store not in _open:
            _open.append(store)
        if not _atexit_registered:
            atexit.register(_flush_all_at_exit)
            _atexit_registered = True


def _unregister(store: Store) -> None:
    with _open_lock:
        if store in _open:
            _open.remove(store)


def _flush_all_at_exit() -> None:
    for s in list(_open):
        try:
            s.close(timeout=EXIT_TIMEOUT_S)
        except Exception:
            pass


def flush_all(path: Path | None = None, timeout: float | None = 30.0) -> None:
    """Write every pending row of this process (only those bound for ``path`` when given)."""
    for s in list(_open):
        if path is None or s.path == path:
            s.flush(timeout)


def pending_rows(path: Path, notebook: str | None = None) -> list[dict[str, Any]]:
    """The rows this process's stores for ``path`` have not written yet."""
    out: list[dict[str, Any]] = []
    for s in list(_open):
        if s.path == path:
            out += s.pending_rows(notebook)
    return out


def _writer_in(path: Path) -> bool:
    """A writer thread of this process is using ``path`` now (see :attr:`Store.in_file`)."""
    return any(s.in_file for s in list(_open) if s.path == path)


def kernel_rows(path: Path, notebook: str | None = None) -> list[dict[str, Any]]:
    """This process's runs for ``path`` that its stores know of (written in this session, or not
    written yet), oldest first, each once: memory only."""
    out: dict[str, dict[str, Any]] = {}
    for s in list(_open):
        if s.path == path:
            for r in s.kernel_rows(notebook):
                out.setdefault(r["run_id"], r)
    return sorted(out.values(), key=lambda r: r["started_at"])


def locked_note(path: Path, n: int) -> str:
    """What a read from a cell says when another process held the file's lock."""
    return (
        f"history file {path} is locked by another process: showing only this kernel's {n} "
        f"run{'s' if n != 1 else ''}"
    )


def read_merged(
    path: Path, notebook: str | None = None, *, timeout_s: float = CELL_READ_TIMEOUT_S
) -> tuple[list[dict[str, Any]], str | None]:
    """For a read from a cell: the file's rows and this process's rows not written yet, oldest
    first, and None.

    Waits at most ``timeout_s`` for another process's lock (twice that when this process's own
    writer thread is using the file, whose lock lasts milliseconds). While the file stays locked, the
    answer is this process's runs (memory: :func:`kernel_rows`) and a note that says so
    (:func:`locked_note`); StoreError (one line) when there are none, or when the file is broken.
    """
    try:
        try:
            rows = read_rows(path, notebook, timeout_s=timeout_s)
        except StoreError as e:
            if not (e.busy and _writer_in(path)):
                raise
            # Maybe this process's own writer (it holds the lock for milliseconds when it creates
            # the file or checkpoints it): once more, as briefly. Another process's lock: not again.
            rows = read_rows(path, notebook, timeout_s=timeout_s)
    except StoreError as e:
        if not e.busy:
            raise
        rows = kernel_rows(path, notebook)
        if not rows:
            raise StoreError(
                path,
                f"locked by another process ({e.reason}), and this kernel has no runs of its own "
                "to show",
                "cannot read history",
                busy=True,
            ) from None
        return rows, locked_note(path, len(rows))
    seen = {r["run_id"] for r in rows}
    rows += [r for r in pending_rows(path, notebook) if r["run_id"] not in seen]
    rows.sort(key=lambda r: r["started_at"])
    return rows, None


# -- the DataFrame ----------------------------------------------------------------------------------
HISTORY_COLUMNS = (
    "run_id",
    "notebook",
    "cell_id",
    "execution_count",
    "label",
    "started_at",
    "duration_s",
    "energy_j",
    *(f"energy_{k}_j" for k in KINDS),
    "co2e_g",
    "embodied_co2e_g",
    "water_l",
    "methods",
    "zone",
    "intensity_gco2e_per_kwh",
    "intensity_source",
    "pue",
    "below_resolution",
    "error",
    "status",
    "kernel",
)


def _frame_row(r: dict[str, Any]) -> dict[str, Any]:
    m = json.loads(r["measurement"])
    by_kind: dict[str, float] = {}
    methods: list[str] = []
    for c in m.get("components", []):
        by_kind[c["kind"]] = by_kind.get(c["kind"], 0.0) + float(c["energy_j"])
        tag = f"{c['kind']}:{c['method']}"
        if tag not in methods:
            methods.append(tag)
    intensity = m.get("intensity") or {}
    out = {
        "run_id": r["run_id"],
        "notebook": r["notebook"],
        "cell_id": r["cell_id"],
        "execution_count": r["execution_count"],
        "label": r["label"],
        "started_at": r["started_at"],
        "duration_s": r["duration_s"],
        "energy_j": r["energy_j"],
    }
    for k in KINDS:
        # A kind that was not measured is missing (NaN), not zero.
        out[f"energy_{k}_j"] = by_kind.get(k)
    out.update(
        co2e_g=m.get("co2e_g"),
        embodied_co2e_g=m.get("embodied_co2e_g"),
        water_l=m.get("water_l"),
        methods=", ".join(methods),
        zone=intensity.get("zone"),
        intensity_gco2e_per_kwh=intensity.get("gco2e_per_kwh"),
        intensity_source=intensity.get("source"),
        pue=m.get("pue"),
        below_resolution=bool(m.get("below_resolution", False)),
        error=bool(r["error"]),
        # done | error | interrupted (Ctrl-C); rows written before the field: from ``error``
        status=m.get("status") or ("error" if r["error"] else "done"),
        kernel=r["kernel"],
    )
    return out


def history(
    notebook: str | None = None,
    *,
    all_notebooks: bool = False,
    path: str | os.PathLike[str] | None = None,
    wait_s: float | None = None,
) -> pandas.DataFrame:
    """Measured cell runs as a DataFrame, one row per run, oldest first.

    ``notebook``: whose runs (default: the notebook this kernel serves, see :func:`notebook_key`);
    ``all_notebooks=True`` returns every notebook's. Columns: run_id, notebook, cell_id,
    execution_count, label, started_at (UTC), duration_s, energy_j, energy_gpu_j / energy_cpu_j /
    energy_ram_j (NaN where that kind was not measured), co2e_g, embodied_co2e_g, water_l, methods
    ("cpu:cpu-time-model, ram:ram-model"), zone, intensity_gco2e_per_kwh, intensity_source, pue,
    below_resolution, error, status (``done``, ``error``, ``interrupted``: Ctrl-C), kernel.

    The runs of this process not written yet come from memory (never a wait on the writer).
    ``wait_s``: how long to wait for another process's lock on the file; by default
    ``CELL_READ_TIMEOUT_S`` in IPython (a cell never waits seconds), ``READ_TIMEOUT_S`` elsewhere.
    While the file stays locked, the frame holds this kernel's own runs only, and a note says so
    (on stderr, and in ``df.attrs["note"]``); a StoreError (one line) when there are none.

    >>> import carbonlab
    >>> df = carbonlab.history()  # doctest: +SKIP
    >>> df.groupby("label")["energy_j"].sum()  # doctest: +SKIP
    """
    df, note = history_frame(notebook, all_notebooks=all_notebooks, path=path, wait_s=wait_s)
    if note:
        print(f"carbonlab: {note}", file=sys.stderr)
    return df


def history_frame(
    notebook: str | None = None,
    *,
    all_notebooks: bool = False,
    path: str | os.PathLike[str] | None = None,
    wait_s: float | None = None,
) -> tuple[pandas.DataFrame, str | None]:
    """:func:`history`, and its note (None, or why only this kernel's runs are in it), unsaid."""
    import pandas as pd

    p = resolve_path(path)
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:  # pragma: no cover - IPython is optional
        ip = None
    if notebook is None and not all_notebooks:
        notebook = notebook_key(getattr(ip, "user_ns", None))[0]
    if wait_s is None:
        wait_s = CELL_READ_TIMEOUT_S if ip is not None else READ_TIMEOUT_S
    nb = None if all_notebooks else notebook
    rows, note = read_merged(p, nb, timeout_s=wait_s)
    df = pd.DataFrame([_frame_row(r) for r in rows], columns=list(HISTORY_COLUMNS))
    try:
        df["started_at"] = pd.to_datetime(df["started_at"], utc=True, format="ISO8601")
    except (TypeError, ValueError):  # pandas < 2 has no "ISO8601" format
        df["started_at"] = pd.to_datetime(df["started_at"], utc=True)
    df["execution_count"] = df["execution_count"].astype("Int64")
    for col in ("duration_s", "energy_j", *(f"energy_{k}_j" for k in KINDS), "co2e_g"):
        df[col] = df[col].astype("float64")
    for col in ("embodied_co2e_g", "water_l", "intensity_gco2e_per_kwh", "pue"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["below_resolution"] = df["below_resolution"].astype(bool)
    df["error"] = df["error"].astype(bool)
    if note:
        df.attrs["note"] = note
    return df, note
