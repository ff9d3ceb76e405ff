"""Persistent notebook history: one row per measured cell run, in SQLite, shared by every kernel.

Where: ``settings.history`` (``CARBONLAB_HISTORY`` or ``[tool.carbonlab] history``) when set, else
``$XDG_DATA_HOME/carbonlab/history.sqlite`` (``~/.local/share/carbonlab/history.sqlite``; on Windows
``%LOCALAPPDATA%\\carbonlab\\history.sqlite``).

How: the database is in WAL mode with a busy timeout, every batch of rows is one ``BEGIN IMMEDIATE``
transaction, and rows are keyed by a unique ``run_id`` (a retried batch cannot duplicate a row). Several
kernels (processes) may write at once; SQLite serialises the writers and none loses a row.

Cells do not wait for the disk: :meth:`Store.append` hands the row to a writer thread (so a kernel
holding the write lock elsewhere never stalls a cell). Pending rows are written before every read in
this process (:func:`history`, :meth:`Store.previous`), on :meth:`Store.close` (``%unload_ext``), and at
interpreter exit.

>>> import tempfile, os
>>> from carbonlab.measurement import Component, Measurement
>>> path = os.path.join(tempfile.mkdtemp(), "h.sqlite")
>>> m = Measurement("demo", "2026-11-21T10:00:00.000Z", 1.5,
...                 [Component("cpu", "package-0", 12.0, "cpu-time-model", "process")])
>>> s = Store(path)
>>> s.write([RunRecord.new(m, notebook="demo.ipynb", cell_id="c1")])
>>> history(notebook="demo.ipynb", path=path)[["cell_id", "energy_cpu_j"]].values.tolist()
[['c1', 12.0]]
>>> s.close()
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import queue
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .measurement import KINDS, Measurement

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from .config import Settings

FILENAME = "history.sqlite"
# The writer thread gathers rows for this long before one transaction: a burst of quick cells costs
# one commit, and the thread does not wake (and compete for the GIL) after every cell.
WRITE_DELAY_S = 0.2
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
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
    """History could not be written or read; the message names the file."""


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
@dataclass
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
        )

    def row(self) -> tuple[Any, ...]:
        d = self.data if isinstance(self.data, dict) else self.data.to_dict()
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


_kernel_name: tuple[int, str] | None = None


def kernel_name() -> str:
    """``host:pid`` of this process (cached: gethostname is a system call)."""
    global _kernel_name
    pid = os.getpid()
    if _kernel_name is None or _kernel_name[0] != pid:
        _kernel_name = (pid, f"{socket.gethostname()}:{pid}")
    return _kernel_name[1]


_run_ids: tuple[int, str, Iterator[int]] | None = None


def new_run_id() -> str:
    """A unique run id: random per process, then a counter (uuid4 reads the OS entropy pool on
    every call, which costs tens of µs in some VMs)."""
    global _run_ids
    pid = os.getpid()
    if _run_ids is None or _run_ids[0] != pid:
        _run_ids = (pid, uuid.uuid4().hex[:20], itertools.count())
    return f"{_run_ids[1]}{next(_run_ids[2]):012x}"


# -- the database -----------------------------------------------------------------------------------
def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a history database in WAL mode with the current schema."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the history directory {path.parent}: {e}") from None
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        con = None
        try:
            con = sqlite3.connect(
                str(path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit is atomic and durable against a process crash (not against power
            # loss between checkpoints), without an fsync per row.
            con.execute("PRAGMA synchronous = NORMAL")
            if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                con.execute("BEGIN IMMEDIATE")
                # Statement by statement: executescript() would commit, and the DDL must be one
                # transaction when several kernels create the file at once.
                for stmt in filter(None, (s.strip() for s in _DDL.split(";"))):
                    con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            return con
        except sqlite3.OperationalError as e:
            if con is not None:
                con.close()
            if _is_busy(e) and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            raise StoreError(f"cannot open history {path}: {e}") from None
        except sqlite3.DatabaseError as e:
            if con is not None:
                con.close()
            raise StoreError(f"cannot open history {path}: {e}") from None


def _write(con: sqlite3.Connection, records: list[RunRecord]) -> None:
    rows = [r.row() for r in records]
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(_INSERT, rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return
        except sqlite3.OperationalError as e:
            if _is_busy(e) and time.monotonic() < deadline:
                time.sleep(0.005)
                continue
            raise


_STOP = object()


class Store:
    """A history file, with a writer thread that starts on the first :meth:`append`."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = resolve_path(path)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failed: list[RunRecord] = []  # rows a write failed for, retried with the next batch
        self._wake = threading.Event()
        self.last_error: str | None = None
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
            raise StoreError(f"cannot write history {self.path}: {e}") from None
        finally:
            con.close()

    def append(self, record: RunRecord) -> None:
        """Queue a row for the writer thread (cheap; never blocks on the database)."""
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="carbonlab-store", daemon=True
                    )
                    self._thread.start()
        self._queue.put(record)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every appended row is written (or failed); True when nothing is pending."""
        if self._thread is None:
            return not self._failed
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        if self._failed:  # one more synchronous try: the caller is about to read
            self._retry_failed()
        return not self._failed

    def close(self) -> None:
        """Write what is pending and stop the writer thread."""
        t = self._thread
        if t is not None and t.is_alive():
            self._queue.put(_STOP)
            self._wake.set()
            t.join(timeout=BUSY_TIMEOUT_MS / 1000 + 5)
        self._thread = None
        if self._failed:
            self._retry_failed()
        _unregister(self)

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks + len(self._failed)

    def _retry_failed(self) -> None:
        failed, self._failed = self._failed, []
        try:
            self.write(failed)
            self.last_error = None
        except StoreError as e:
            self._failed = failed + self._failed
            self.last_error = str(e)

    def _run(self) -> None:
        con: sqlite3.Connection | None = None
        try:
            while True:
                item = self._queue.get()
                if item is not _STOP and self._queue.empty():
                    self._wake.wait(WRITE_DELAY_S)  # flush() and close() cut the wait short
                self._wake.clear()
                batch, stop = [], item is _STOP
                if not stop:
                    batch.append(item)
                n = 1
                while not stop:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    n += 1
                    if item is _STOP:
                        stop = True
                    else:
                        batch.append(item)
                todo = self._failed + batch
                if todo:
                    try:
                        if con is None:
                            con = connect(self.path)
                        _write(con, todo)
                        self._failed = []
                        self.last_error = None
                    except (sqlite3.Error, StoreError) as e:
                        # Keep the rows; the next batch, flush() or close() tries again.
                        self._failed = todo
                        self.last_error = f"cannot write history {self.path}: {e}"
                        if con is not None:
                            con.close()
                            con = None
                for _ in range(n):
                    self._queue.task_done()
                if stop:
                    return
        finally:
            if con is not None:
                con.close()

    # -- reading --------------------------------------------------------------------------------
    def rows(
        self, notebook: str | None = None, *, cell_key: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Rows as dicts, oldest first (this store's pending rows are written first)."""
        self.flush()
        return read_rows(self.path, notebook, cell_key=cell_key, limit=limit)

    def previous(self, notebook: str, key: str) -> dict[str, Any] | None:
        """The latest stored run of this cell, or None."""
        rows = self.rows(notebook, cell_key=key, limit=1)
        return rows[-1] if rows else None


def read_rows(
    path: Path,
    notebook: str | None = None,
    *,
    cell_key: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Stored rows as dicts, oldest first; the ``limit`` latest when given."""
    if not path.exists():
        return []
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
    con = connect(path)
    try:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute(sql, args)]
    except sqlite3.Error as e:
        raise StoreError(f"cannot read history {path}: {e}") from None
    finally:
        con.close()
    rows.reverse()
    return rows


# Stores of this process, so that history() and interpreter exit write their pending rows.
_open: list[Store] = []
_open_lock = threading.Lock()
_atexit_registered = False


def _register(store: Store) -> None:
    global _atexit_registered
    with _open_lock:
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
            s.close()
        except Exception:
            pass


def flush_all(path: Path | None = None) -> None:
    """Write every pending row of this process (only those bound for ``path`` when given)."""
    for s in list(_open):
        if path is None or s.path == path:
            s.flush()


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
        kernel=r["kernel"],
    )
    return out


def history(
    notebook: str | None = None,
    *,
    all_notebooks: bool = False,
    path: str | os.PathLike[str] | None = None,
) -> pandas.DataFrame:
    """Measured cell runs as a DataFrame, one row per run, oldest first.

    ``notebook``: whose runs (default: the notebook this kernel serves, see :func:`notebook_key`);
    ``all_notebooks=True`` returns every notebook's. Columns: run_id, notebook, cell_id,
    execution_count, label, started_at (UTC), duration_s, energy_j, energy_gpu_j / energy_cpu_j /
    energy_ram_j (NaN where that kind was not measured), co2e_g, embodied_co2e_g, water_l, methods
    ("cpu:cpu-time-model, ram:ram-model"), zone, intensity_gco2e_per_kwh, intensity_source, pue,
    below_resolution, error, kernel.

    >>> import carbonlab
    >>> df = carbonlab.history()  # doctest: +SKIP
    >>> df.groupby("label")["energy_j"].sum()  # doctest: +SKIP
    """
    import pandas as pd

    p = resolve_path(path)
    flush_all(p)
    if notebook is None and not all_notebooks:
        try:
            from IPython import get_ipython

            ip = get_ipython()
        except ImportError:  # pragma: no cover - IPython is optional
            ip = None
        notebook = notebook_key(getattr(ip, "user_ns", None))[0]
    rows = read_rows(p, None if all_notebooks else notebook)
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
    return df
