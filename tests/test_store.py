"""carbonlab/store.py: where history lives, atomic rows, several writers at once, the DataFrame."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading

import pandas as pd
import pytest

from carbonlab import store
from carbonlab.measurement import (
    METHOD_CPU_MODEL,
    METHOD_NVML_COUNTER,
    METHOD_RAM_MODEL,
    Component,
    Measurement,
)


def _measurement(label="cell", cpu=10.0, gpu=None, co2e=0.5) -> Measurement:
    comps = [Component("cpu", "package-0", cpu, METHOD_CPU_MODEL, "process")]
    if gpu is not None:
        comps.insert(0, Component("gpu", "GPU-1", gpu, METHOD_NVML_COUNTER, "device", name="Sim"))
    comps.append(Component("ram", "ram", 1.0, METHOD_RAM_MODEL, "process"))
    return Measurement(
        label,
        "2026-11-21T10:00:00.000Z",
        2.0,
        comps,
        co2e_g=co2e,
        embodied_co2e_g=0.01,
        water_l=0.002,
        intensity={"gco2e_per_kwh": 56.0, "zone": "FR", "source": "test table", "at": None},
        pue=1.1,
    )


def test_default_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store.default_path() == tmp_path / "xdg" / "carbonlab" / "history.sqlite"


def test_env_and_settings_override_the_default(monkeypatch, tmp_path):
    from carbonlab import config

    monkeypatch.setenv("CARBONLAB_HISTORY", str(tmp_path / "env.sqlite"))
    assert store.resolve_path() == tmp_path / "env.sqlite"
    s = config.with_overrides(config.Settings(), history=str(tmp_path / "s.sqlite"))
    assert store.resolve_path(settings=s) == tmp_path / "s.sqlite"
    assert store.resolve_path(tmp_path / "x.sqlite", settings=s) == tmp_path / "x.sqlite"


def test_notebook_key_prefers_jupyter_server_then_vscode_then_a_marked_fallback(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/u/analysis.ipynb")
    assert store.notebook_key({"__vsc_ipynb_file__": "/v.ipynb"}) == (
        "/home/u/analysis.ipynb",
        "JPY_SESSION_NAME",
    )
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert store.notebook_key({"__vsc_ipynb_file__": "/v.ipynb"})[0] == "/v.ipynb"
    monkeypatch.chdir(tmp_path)
    name, how = store.notebook_key({})
    assert how == "fallback" and name == f"<ipython in {tmp_path}>"


def test_cell_key_is_the_cell_id_or_a_source_hash():
    assert store.cell_key("abc", "x = 1") == "abc"
    assert store.cell_key(None, "x = 1") == store.cell_key(None, "x = 1\n")
    assert store.cell_key(None, "x = 1") != store.cell_key(None, "x = 2")


def test_a_forked_child_names_itself_and_makes_run_ids_of_its_own():
    """The run id prefix and the kernel name are cached without asking the pid on every cell; a
    forked child (multiprocessing's fork start method) still gets its own."""
    import os

    parent_ids = [store.new_run_id(), store.new_run_id()]
    parent_kernel = store.kernel_name()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's exit handlers
        try:
            os.write(w, f"{store.new_run_id()} {store.kernel_name()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    child_id, child_kernel = os.read(r, 1000).decode().split()
    os.close(r)
    os.waitpid(pid, 0)
    assert child_kernel.endswith(f":{pid}") and parent_kernel.endswith(f":{os.getpid()}")
    assert child_id[:20] != parent_ids[0][:20]  # its own random prefix: no id can repeat
    assert parent_ids[0][:20] == parent_ids[1][:20] and parent_ids[0] != parent_ids[1]
    assert store.new_run_id()[:20] == parent_ids[0][:20]  # the parent's are unchanged


def test_database_is_wal_with_a_busy_timeout(tmp_path):
    p = tmp_path / "h.sqlite"
    con = store.connect(p)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_MS
        assert con.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    finally:
        con.close()


def _header(p) -> tuple[int, int]:
    """(write version: 2 for WAL, user_version) from a SQLite file's header."""
    b = p.read_bytes()[:100]
    return b[18], int.from_bytes(b[60:64], "big")


def test_a_new_history_file_appears_whole(tmp_path, monkeypatch):
    """A new file is made under another name and linked into place: whoever opens it (a read from
    a cell, which waits CELL_READ_TIMEOUT_S at most) never finds it half-made or meets the lock of
    its making (the old connect made it in place: its first commits blocked readers)."""
    p = tmp_path / "h.sqlite"
    seen: list[tuple[int, int] | None] = []
    real = sqlite3.connect

    def spy(database, *a, **k):
        if str(database) == str(p):
            seen.append(_header(p) if p.exists() else None)
        return real(database, *a, **k)

    monkeypatch.setattr(sqlite3, "connect", spy)
    store.connect(p).close()
    assert seen and seen[0] == (2, store.SCHEMA_VERSION)  # WAL, the schema: before it is opened
    assert sorted(x.name for x in tmp_path.iterdir()) == ["h.sqlite"]  # no temporary file left


def test_a_new_history_file_is_made_in_place_where_it_cannot_be_linked(tmp_path, monkeypatch):
    import os

    def no_link(*a, **k):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_link)
    p = tmp_path / "h.sqlite"
    con = store.connect(p)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    finally:
        con.close()
    assert [x.name for x in tmp_path.iterdir() if x.name.endswith(".tmp")] == []


def test_history_frame_has_one_row_per_run_with_every_column(tmp_path):
    p = tmp_path / "h.sqlite"
    s = store.Store(p)
    s.write(
        [
            store.RunRecord.new(
                _measurement("a", gpu=100.0), notebook="nb.ipynb", cell_id="c1", execution_count=3
            ),
            store.RunRecord.new(_measurement("b"), notebook="nb.ipynb", source="y = 2", error=True),
            store.RunRecord.new(_measurement("other"), notebook="other.ipynb", cell_id="c9"),
        ]
    )
    df = store.history(notebook="nb.ipynb", path=p)
    assert list(df.columns) == list(store.HISTORY_COLUMNS)
    assert df["label"].tolist() == ["a", "b"]
    a, b = df.iloc[0], df.iloc[1]
    assert a["cell_id"] == "c1" and a["execution_count"] == 3
    assert a["energy_gpu_j"] == 100.0 and a["energy_cpu_j"] == 10.0 and a["energy_ram_j"] == 1.0
    assert a["energy_j"] == 111.0
    assert a["methods"] == "gpu:nvml-energy-counter, cpu:cpu-time-model, ram:ram-model"
    assert a["zone"] == "FR" and a["intensity_gco2e_per_kwh"] == 56.0
    assert a["intensity_source"] == "test table" and a["pue"] == 1.1
    assert a["co2e_g"] == 0.5 and a["embodied_co2e_g"] == 0.01 and a["water_l"] == 0.002
    assert not a["error"] and b["error"]
    assert pd.isna(b["cell_id"]) and pd.isna(b["energy_gpu_j"])  # not measured: missing, not 0
    assert str(df["started_at"].dt.tz) == "UTC"
    assert len(store.history(all_notebooks=True, path=p)) == 3


def test_history_of_a_missing_file_is_an_empty_frame(tmp_path):
    df = store.history(notebook="x", path=tmp_path / "none.sqlite")
    assert df.empty and list(df.columns) == list(store.HISTORY_COLUMNS)


def test_append_goes_through_the_writer_thread_and_reads_see_it(tmp_path):
    p = tmp_path / "h.sqlite"
    s = store.Store(p)
    for i in range(50):
        s.append(store.RunRecord.new(_measurement(f"r{i}"), notebook="nb", cell_id="c"))
    # Reading flushes this process's pending rows first.
    assert len(store.history(notebook="nb", path=p)) == 50
    prev = s.previous("nb", "c")
    assert prev is not None and prev["label"] == "r49"
    assert any(t.name == "carbonlab-store" for t in threading.enumerate())
    s.close()
    assert not any(t.name == "carbonlab-store" for t in threading.enumerate())


def test_close_writes_pending_rows(tmp_path):
    p = tmp_path / "h.sqlite"
    s = store.Store(p)
    for i in range(20):
        s.append(store.RunRecord.new(_measurement(f"r{i}"), notebook="nb"))
    s.close()
    con = sqlite3.connect(p)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 20
    con.close()


def test_rows_wait_until_cells_pause_and_at_most_the_longest_delay(tmp_path, monkeypatch):
    """A Run All of quick cells is written once its cells pause, not while they follow one
    another (the writer would build rows and hold the GIL between the kernel's cells), and never
    later than MAX_WRITE_DELAY_S after the first row waiting; a burst still writes at once."""
    now = [1000.0]
    s = store.Store(tmp_path / "h.sqlite", max_pending=400)
    s._clock = lambda: now[0]  # this store's clock only (other tests' writers keep theirs)
    monkeypatch.setattr(s, "_ensure_thread", lambda: None)  # only the schedule, no writer

    def cell(dt: float) -> float:
        now[0] += dt
        s.append(store.RunRecord.new(_measurement(), notebook="nb"))
        return s._due

    assert cell(0.0) == pytest.approx(1000.0 + store.WRITE_DELAY_S)
    # Cells 5 ms apart: the write moves on with each, until the longest delay.
    dues = [cell(0.005) for _ in range(40)]
    assert dues == sorted(dues) and dues[-1] == pytest.approx(1000.2 + store.WRITE_DELAY_S)
    while now[0] < 1000.0 + store.MAX_WRITE_DELAY_S + 1.0:
        cell(0.05)
    assert s._due == pytest.approx(1000.0 + store.MAX_WRITE_DELAY_S)
    # Half of max_pending waiting: a burst, written now rather than dropped.
    assert len(s._pending) < 200
    while len(s._pending) <= 200:
        cell(0.001)
    assert s._due == 0.0
    cell(0.001)
    assert s._due == 0.0  # and a later row does not put it off again


def test_a_write_that_succeeds_during_a_backoff_lets_the_next_row_wait_only_the_delay(
    tmp_path, monkeypatch
):
    """A flush that wrote while the writer was backing off (a lock held elsewhere, now gone)
    ends the backoff: the next row is written after the usual delay, not the backoff's 30 s."""
    now = [1000.0]
    s = store.Store(tmp_path / "h.sqlite")
    s._clock = lambda: now[0]
    monkeypatch.setattr(s, "_ensure_thread", lambda: None)
    s.append(store.RunRecord.new(_measurement(), notebook="nb"))
    batch = list(s._pending)
    s._done(
        batch,
        store.StoreError(str(s.path), "database is locked", "cannot write history", busy=True),
        1,
    )
    assert s._backoff > 0 and s._due == pytest.approx(1000.0 + s._backoff)
    s._done(batch, None, 2, rows=[])  # a flush wrote them after all
    now[0] += 1.0
    s.append(store.RunRecord.new(_measurement(), notebook="nb"))
    assert s._due == pytest.approx(1001.0 + store.WRITE_DELAY_S)


def test_a_retried_row_is_not_duplicated(tmp_path):
    p = tmp_path / "h.sqlite"
    s = store.Store(p)
    r = store.RunRecord.new(_measurement(), notebook="nb")
    s.write([r])
    s.write([r])
    assert len(store.history(notebook="nb", path=p)) == 1


@pytest.mark.fault("history")
def test_a_failed_write_keeps_the_rows_and_retries(tmp_path):
    p = tmp_path / "h.sqlite"
    p.mkdir()  # a directory where the database should be: SQLite cannot open it
    s = store.Store(p)
    s.append(store.RunRecord.new(_measurement("kept"), notebook="nb"))
    assert not s.flush()
    assert s.pending == 1 and "cannot" in (s.last_error or "")
    p.rmdir()
    assert s.flush()
    assert store.history(notebook="nb", path=p)["label"].tolist() == ["kept"]
    s.close()


def _writer(path: str, worker: int, n: int, barrier) -> None:
    s = store.Store(path)
    barrier.wait()
    # Half the rows through the writer thread, half written directly: both paths contend.
    for i in range(n):
        r = store.RunRecord.new(
            _measurement(f"w{worker}-{i}"), notebook="shared.ipynb", cell_id=f"c{i % 7}"
        )
        if i % 2:
            s.append(r)
        else:
            s.write([r])
    s.close()


def test_several_processes_writing_at_once_lose_nothing(tmp_path):
    p = tmp_path / "shared.sqlite"
    workers, n = 8, 60
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(str(p), w, n, barrier)) for w in range(workers)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(120)
    assert [pr.exitcode for pr in procs] == [0] * workers
    df = store.history(notebook="shared.ipynb", path=p)
    assert len(df) == workers * n
    assert df["run_id"].is_unique
    assert set(df["label"]) == {f"w{w}-{i}" for w in range(workers) for i in range(n)}
