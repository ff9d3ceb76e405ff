"""Fault matrix, family "history": a corrupt, unreadable or locked history never reaches a cell.

Each case runs real cells in an InteractiveShell (as tests/test_magics.py does) against a history
file that is broken one way (random bytes, a directory, a read-only place, a truncated database,
another program's database, ...) or locked by another process, and checks what the family promises:
the cell completes without waiting on the store, ``-o`` binds, the live comm is closed with its
summary, the fault is said once with the path and the reason, and what is kept in memory is bounded.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from carbonlab import store
from carbonlab.jupyter import extension
from tests import fakes
from tests.faults import STALL_LIMIT_S, assert_clean

pytestmark = pytest.mark.fault("history")


# -- broken history files ---------------------------------------------------------------------------
def _valid_history(p: Path, rows: int = 200) -> None:
    from tests.test_store import _measurement

    s = store.Store(p)
    s.write(
        [
            store.RunRecord.new(_measurement(f"r{i}"), notebook="nb", cell_id=f"c{i}")
            for i in range(rows)
        ]
    )
    s.close()
    con = sqlite3.connect(p)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    con.close()


def _random_bytes(tmp: Path) -> tuple[Path, str]:
    p = tmp / "history.sqlite"
    p.write_bytes(random.Random(13).randbytes(8192))
    return p, "not a database"


def _directory(tmp: Path) -> tuple[Path, str]:
    p = tmp / "history.sqlite"
    p.mkdir()
    (p / "something").write_text("x")
    return p, "is a directory"


def _read_only_directory(tmp: Path) -> tuple[Path, str]:
    d = tmp / "ro"
    d.mkdir()
    d.chmod(0o555)
    probe = d / "probe"
    try:
        probe.write_text("x")  # root ignores the mode bits: use a place nobody may write instead
        probe.unlink()
        return Path("/sys/carbonlab-test-history.sqlite"), "unable to open database file"
    except OSError:
        return d / "history.sqlite", "unable to open database file"


def _truncated(tmp: Path) -> tuple[Path, str]:
    p = tmp / "history.sqlite"
    _valid_history(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p, "malformed"


def _truncated_header(tmp: Path) -> tuple[Path, str]:
    p = tmp / "history.sqlite"
    _valid_history(p)
    p.write_bytes(p.read_bytes()[:60])
    return p, "malformed"


def _another_programs_database(tmp: Path) -> tuple[Path, str]:
    p = tmp / "history.sqlite"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.execute("INSERT INTO notes (body) VALUES ('keep me')")
    con.commit()
    con.close()
    return p, "not a carbonlab history (it holds other tables: notes)"


def _wrong_runs_table(tmp: Path) -> tuple[Path, str]:
    p = tmp / "history.sqlite"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE runs (x INTEGER)")
    con.commit()
    con.close()
    return p, "its runs table lacks"


def _newer_schema(tmp: Path) -> tuple[Path, str]:
    p = tmp / "history.sqlite"
    _valid_history(p, rows=3)
    con = sqlite3.connect(p)
    con.execute("PRAGMA user_version = 99")
    con.close()
    return p, "written by a newer carbonlab"


def _parent_is_a_file(tmp: Path) -> tuple[Path, str]:
    (tmp / "data").write_text("a file, not a directory")
    return tmp / "data" / "history.sqlite", "cannot create its directory"


BROKEN = {
    "random-bytes": _random_bytes,
    "directory": _directory,
    "read-only-directory": _read_only_directory,
    "truncated": _truncated,
    "truncated-header": _truncated_header,
    "another-programs-database": _another_programs_database,
    "wrong-runs-table": _wrong_runs_table,
    "newer-schema": _newer_schema,
    "parent-is-a-file": _parent_is_a_file,
}


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    yield shell
    if extension.get(shell) is not None:
        shell.run_line_magic("unload_ext", "carbonlab")
    InteractiveShell.clear_instance()


def load(ip, history: Path) -> tuple[fakes.ScriptedMeter, extension.CarbonExtension]:
    m = fakes.ScriptedMeter("cpu")
    fakes.install([m], history=str(history), threshold_j=1.0, zone="FR")
    ip.user_ns["meter"] = m
    ip.run_line_magic("load_ext", "carbonlab")
    ext = extension.get(ip)
    assert ext is not None
    return m, ext


def checked(ext) -> None:
    """The writer thread checks the file at load, off every cell's path: wait for it, so the first
    cell can say what it found (a store without that step has nothing to wait for)."""
    seeded = getattr(ext.store, "seeded", None)
    if seeded is not None:
        assert seeded.wait(10)


def broken(ip, tmp_path, kind: str):
    path, reason = BROKEN[kind](tmp_path)
    meter, ext = load(ip, path)
    checked(ext)
    return path, reason, meter, ext


def writer_ended(timeout: float = 30.0) -> bool:
    """Every history writer thread of this process has ended (the test waits for them, bounded;
    ``%unload_ext`` does not)."""
    for t in threading.enumerate():
        if t.name == "carbonlab-store":
            t.join(timeout)
    return not any(t.name == "carbonlab-store" for t in threading.enumerate())


def run(ip, code: str):
    with capture_output() as cap:
        t0 = time.perf_counter()
        r = ip.run_cell(code, store_history=True)
        took = time.perf_counter() - t0
    return r, cap, took


def shown(cap) -> str:
    return "\n".join(o.data.get("text/plain", "") for o in cap.outputs)


def html(cap) -> str:
    return "\n".join(o.data.get("text/html", "") for o in cap.outputs)


def everything(cap) -> str:
    return "\n".join([cap.stdout, cap.stderr, shown(cap), html(cap)])


# -- corrupt or unreadable history ------------------------------------------------------------------
@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_history_lets_the_cell_bind_o_and_is_said_once_with_path_and_reason(
    ip, tmp_path, kind
):
    path, reason, meter, ext = broken(ip, tmp_path, kind)
    r, cap, took = run(ip, "%%carbon -o m --label first\nmeter.add(2)\n'body ran'")
    assert r.success, r.error_in_exec
    assert r.result == "body ran"
    assert ip.user_ns["m"].energy_j == 2.0  # -o bound
    text, h = shown(cap), html(cap)
    assert "carbonlab · first" in text
    assert f"history not saved: {path}" in text and reason in text
    assert "history not saved" in h and reason in h
    assert_clean(everything(cap))
    assert took < STALL_LIMIT_S, f"the cell took {took:.3f} s"
    said = 1
    for i in range(3):
        r, cap, took = run(ip, f"%%carbon --label again{i}\nmeter.add(3)")
        assert r.success and took < STALL_LIMIT_S
        assert "carbonlab · again" in shown(cap)
        said += everything(cap).count("history not saved")
        assert_clean(everything(cap))
    assert said == 1  # once, not under every cell
    _, cap, _ = run(ip, "%carbon status")
    status = shown(cap)
    assert f"history not saved: {path}" in status and reason in status


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_history_still_closes_the_live_comm_with_a_summary_that_says_so(
    ip, tmp_path, kind
):
    from carbonlab.jupyter import comm

    path, reason, meter, ext = broken(ip, tmp_path, kind)
    events: list[tuple[str, dict]] = []

    class Sink:
        listening = True

        def open(self, data):
            events.append(("open", data))

        def sample(self, data):
            events.append(("sample", data))

        def close(self, data):
            events.append(("close", data))

    ext.sink_factories.append(lambda run: Sink())
    r, cap, _ = run(ip, "%%carbon --label live\nmeter.add(3)")
    assert r.success
    assert comm.flush()
    kinds = [k for k, _ in events]
    assert kinds[0] == "open" and kinds[-1] == "close" and kinds.count("close") == 1
    summary = events[-1][1]
    assert summary["kind"] == "summary" and summary["measurement"]["energy_j"] == 3.0
    hist = summary["history"]
    assert hist["ok"] is False and hist["path"] == str(path) and reason in hist["reason"]
    assert set(hist) >= {"pending", "dropped"}
    assert_clean(everything(cap))


@pytest.mark.parametrize("kind", ["random-bytes", "directory", "truncated", "parent-is-a-file"])
def test_carbon_followed_by_time_does_not_fail_the_cell(ip, tmp_path, kind):
    broken(ip, tmp_path, kind)
    r, cap, _ = run(ip, "%%carbon --label timed -o t\n%%time\nmeter.add(2)")
    assert r.success, r.error_in_exec
    assert "Wall time" in cap.stdout
    assert ip.user_ns["t"].energy_j == 2.0
    assert_clean(everything(cap))


@pytest.mark.parametrize("kind", ["random-bytes", "directory", "newer-schema"])
def test_automatic_cells_under_the_threshold_still_say_it_once(ip, tmp_path, kind):
    path, reason, meter, ext = broken(ip, tmp_path, kind)
    outs = []
    for _ in range(3):
        r, cap, took = run(ip, "meter.add(0.1)")  # below the 1 J threshold: no summary
        assert r.success and took < STALL_LIMIT_S
        assert_clean(everything(cap))
        outs.append(shown(cap))
    assert sum(o.count("history not saved") for o in outs) == 1
    assert reason in outs[0] and str(path) in outs[0]


def test_failed_rows_are_bounded_counted_and_retried_off_the_cells_path(ip, tmp_path, monkeypatch):
    """More runs than the store keeps: the oldest are dropped and counted; no write is tried on the
    cell's thread (the old store retried every failed row there, before every summary)."""
    path, reason, meter, ext = broken(ip, tmp_path, "directory")
    ext.store.max_pending = 10
    tried_on: list[str] = []
    real_connect = store.connect

    def spy(*a, **k):
        tried_on.append(threading.current_thread().name)
        return real_connect(*a, **k)

    monkeypatch.setattr(store, "connect", spy)
    for i in range(25):
        r, _, took = run(ip, f"%%carbon --label n{i}\nmeter.add(2)")
        assert r.success and took < STALL_LIMIT_S
    s = ext.store
    assert not s.flush(timeout=10)  # the writer tried (and failed) once more
    assert s.pending == 10 and s.dropped == 15
    assert threading.main_thread().name not in tried_on
    assert tried_on and set(tried_on) == {"carbonlab-store"}
    assert s.backoff_s >= store.RETRY_MIN_S  # it waits longer and longer between tries
    fault = s.fault
    assert fault is not None and fault.dropped == 15 and fault.pending == 10
    # The runs kept are the latest ones.
    labels = [json.loads(r["measurement"])["label"] for r in s.pending_rows()]
    assert labels == [f"n{i}" for i in range(15, 25)]
    _, cap, _ = run(ip, "%carbon status")
    assert "10 runs kept in memory, 15 dropped" in shown(cap)


def test_the_writer_backs_off_between_failed_tries(tmp_path):
    p = tmp_path / "history.sqlite"
    p.mkdir()
    s = store.Store(p)
    from tests.test_store import _measurement

    s.append(store.RunRecord.new(_measurement("a"), notebook="nb"))
    delays = []
    for _ in range(8):
        assert not s.flush(timeout=10)
        delays.append(s.backoff_s)
    assert delays == sorted(delays) and delays[0] == store.RETRY_MIN_S
    assert delays[-1] == store.RETRY_MAX_S
    p.rmdir()
    assert s.flush(timeout=10) and s.backoff_s == 0 and s.fault is None
    assert s.close()


def test_an_empty_file_becomes_a_history(ip, tmp_path):
    """A 0-byte file is an empty SQLite database: it is used, and nothing is said."""
    p = tmp_path / "history.sqlite"
    p.write_bytes(b"")
    meter, ext = load(ip, p)
    checked(ext)
    r, cap, _ = run(ip, "%%carbon --label e\nmeter.add(2)")
    assert r.success and "history not saved" not in everything(cap)
    assert ext.store.flush(timeout=30)
    assert store.read_rows(p)[0]["label"] == "e"


def test_a_history_that_recovers_gets_the_runs_kept_in_memory(ip, tmp_path):
    path, reason, meter, ext = broken(ip, tmp_path, "directory")
    run(ip, "%%carbon --label kept\nmeter.add(2)")
    assert not ext.store.flush(timeout=30)
    (path / "something").unlink()
    path.rmdir()
    assert ext.store.flush(timeout=30)
    assert [r["label"] for r in store.read_rows(path)] == ["kept"]
    assert ext.store.fault is None
    r, cap, _ = run(ip, "%%carbon --label fine\nmeter.add(2)")
    assert "history not saved" not in everything(cap)
    _, cap, _ = run(ip, "%carbon status")
    assert "history not saved" not in shown(cap)


# -- reading a broken history: one line, no traceback -------------------------------------------
@pytest.mark.parametrize("kind", ["random-bytes", "directory", "truncated", "another-programs-database", "newer-schema"])  # fmt: skip
def test_history_and_report_and_export_on_a_broken_store_are_one_line_errors(ip, tmp_path, kind):
    path, reason, meter, ext = broken(ip, tmp_path, kind)
    run(ip, "%%carbon --label a\nmeter.add(2)")
    for line in (
        "import carbonlab; carbonlab.history()",
        "%carbon report",
        f"%carbon export {tmp_path / 'out.csv'}",
    ):
        r, cap, _ = run(ip, line)
        assert not r.success, line
        out = everything(cap)
        assert_clean(out)
        assert str(path) in str(r.error_in_exec) and reason in str(r.error_in_exec)
        assert len(str(r.error_in_exec).splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_advise_on_a_broken_store_says_so_and_still_answers(ip, tmp_path):
    path, reason, meter, ext = broken(ip, tmp_path, "random-bytes")
    r, cap, _ = run(ip, "%carbon advise")
    assert r.success, r.error_in_exec
    text = shown(cap)
    assert f"cannot read history {path}: file is not a database" in text
    assert "no advice: no carbon-intensity forecast is configured" in text
    assert_clean(everything(cap))


def test_a_store_error_renders_as_one_line_in_ipython(ip, tmp_path):
    path, reason, meter, ext = broken(ip, tmp_path, "random-bytes")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        r = ip.run_cell("import carbonlab; carbonlab.history()")
    assert not r.success
    out = buf.getvalue()
    assert_clean(out)
    assert f"StoreError: cannot read history {path}" in out
    assert "File " not in out  # no stack frames


# -- a lock held by another process -----------------------------------------------------------------
LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    exclusive_mode = sys.argv[2:] == ["exclusive-mode"]
    if exclusive_mode:  # a WAL file's readers are blocked too
        con.execute("PRAGMA locking_mode = EXCLUSIVE")
    con.execute("BEGIN EXCLUSIVE")
    con.execute("SELECT count(*) FROM sqlite_master").fetchall()
    if exclusive_mode:
        con.execute("INSERT INTO runs SELECT * FROM runs WHERE 0")
    print("locked", flush=True)
    sys.stdin.readline()
    con.execute("COMMIT")
    con.close()
    """
)


def _history_file(p: Path, journal: str) -> None:
    con = store.connect(p)
    con.close()
    if journal != "wal":  # as a backup tool or another program might leave it
        con = sqlite3.connect(p, isolation_level=None)
        con.execute(f"PRAGMA journal_mode = {journal}")
        con.close()


def _lock(p: Path, mode: str = "plain") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(p), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _unlock(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("journal", ["wal", "delete"])
@pytest.mark.parametrize("when", ["before-load", "after-load"])
def test_a_history_locked_by_another_process_never_stalls_a_cell(
    ip, tmp_path, monkeypatch, journal, when
):
    """Another kernel or a backup tool holds the history's write lock (BEGIN EXCLUSIVE): cells that
    show a summary (and compare with their previous run) do not wait for it; once it is released
    every run is written."""
    # The writer gives up a try after 0.3 s (5 s in use), so the test sees it fail on the lock.
    monkeypatch.setattr(store, "WRITE_TIMEOUT_S", 0.3, raising=False)
    from carbonlab.jupyter.display import CellSummary
    from tests.test_store import _measurement

    CellSummary(_measurement())._repr_html_()  # imports done before timing
    p = tmp_path / "history.sqlite"
    _history_file(p, journal)
    locker = _lock(p) if when == "before-load" else None
    meter, ext = load(ip, p)
    if locker is None:
        checked(ext)
        r, _, _ = run(ip, "%%carbon --label warm\nmeter.add(1)")
        assert r.success
        locker = _lock(p)
    try:
        cells = [f"%%carbon --label c{i}\nmeter.add({i + 2})" for i in range(4)]
        cells += ["%%carbon -o m --label out\nmeter.add(2)", "meter.add(5)", cells[0]]
        worst = 0.0
        for code in cells:
            r, cap, took = run(ip, code)
            assert r.success, r.error_in_exec
            assert "carbonlab ·" in shown(cap)  # a summary was shown
            assert "history not saved" not in everything(cap)  # a lock is not a broken file
            assert_clean(everything(cap))
            worst = max(worst, took)
        assert "same energy as previous run" in shown(cap)  # c0 again: compared, from memory
        assert ip.user_ns["m"].energy_j == 2.0
        # The writer has tried, and met the lock (a bounded poll, not a sleep to pass).
        deadline = time.monotonic() + 20
        while "locked" not in (ext.store.last_error or "") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "locked" in (ext.store.last_error or ""), ext.store.last_error
        _, cap, took = run(ip, "%carbon status")  # says the rows wait, without waiting itself
        status = shown(cap)
        assert "waiting to be written" in status and "database is locked" in status, status
        assert "history not saved" not in status  # a lock is not a broken file
        r, cap, took = run(ip, cells[1])  # after a failed try: still no wait, still compared
        assert took < STALL_LIMIT_S and "same energy as previous run" in shown(cap)
        worst = max(worst, took)
        print(f"locked ({journal}, {when}): slowest cell {worst * 1000:.1f} ms")
        assert worst < STALL_LIMIT_S, f"a cell waited {worst:.3f} s on the locked history"
    finally:
        _unlock(locker)
    s = ext.store
    assert s.flush(timeout=60), s.last_error  # bounded: the writer gets the lock once it is free
    written = {r["label"] for r in store.read_rows(p)}
    assert {"c0", "c1", "c2", "c3", "out"} <= written
    # every cell, the status cell, c1 again, and the warm-up cell
    assert len(store.read_rows(p)) == len(cells) + 2 + (when == "after-load")
    ip.run_line_magic("unload_ext", "carbonlab")
    assert writer_ended()  # unload did not wait for it: it ends on its own, nothing pending


def test_history_reads_do_not_wait_on_the_writer(ip, tmp_path):
    """Runs not written yet (the file is locked) are in history() all the same, at once."""
    p = tmp_path / "history.sqlite"
    _history_file(p, "wal")
    meter, ext = load(ip, p)
    checked(ext)
    locker = _lock(p)
    try:
        for i in range(3):
            run(ip, f"%%carbon --label h{i}\nmeter.add(1)")
        import carbonlab

        # The old history() waited for the writer (30 s busy timeout), then read without them.
        assert carbonlab.history()["label"].tolist() == ["h0", "h1", "h2"]
    finally:
        _unlock(locker)
    assert ext.store.flush(timeout=60)
    assert os.path.exists(p)


# -- reading from a cell while another process holds the lock -------------------------------------
# How another process may hold the file: (journal mode, locker). A plain BEGIN EXCLUSIVE does not
# block a WAL file's readers; it blocks a rollback-journal file's, and so does a WAL holder in
# locking_mode=EXCLUSIVE.
LOCKS = {
    "wal": ("wal", "plain"),
    "delete": ("delete", "plain"),
    "wal-exclusive-mode": ("wal", "exclusive-mode"),
}
READS_BLOCKED = {"delete", "wal-exclusive-mode"}
LOCKED_NOTE = "is locked by another process: showing only this kernel's"


def _read_waits(monkeypatch) -> list[float]:
    """The busy timeouts the history reads are opened with: the longest a read can wait for another
    process's lock (the old reads waited READ_TIMEOUT_S, 5 s)."""
    waits: list[float] = []
    real = store._open_read

    def spy(path, *timeout):
        waits.append(timeout[0] if timeout else store.READ_TIMEOUT_S)
        return real(path, *timeout)

    monkeypatch.setattr(store, "_open_read", spy)
    return waits


def _flushes_on_this_thread(monkeypatch) -> list[float | None]:
    """Store.flush calls made on the test's (the cell's) thread: each waits on the writer."""
    calls: list[float | None] = []
    real = store.Store.flush
    me = threading.current_thread()

    def spy(self, timeout=30.0):
        if threading.current_thread() is me:
            calls.append(timeout)
        return real(self, timeout)

    monkeypatch.setattr(store.Store, "flush", spy)
    return calls


@pytest.mark.parametrize("lock", LOCKS)
def test_history_reads_in_a_cell_never_wait_on_another_process_lock(
    ip, tmp_path, monkeypatch, lock
):
    """carbonlab.history(), %carbon report, export and advise while another process holds the
    history's lock. The old reads waited 5 s on a rollback-journal file (or a WAL holder in
    exclusive locking mode), then failed. Now no read waits longer than CELL_READ_TIMEOUT_S; where
    the file cannot be read they answer with this kernel's runs and say so once, and an export,
    which would be taken for the whole history, writes nothing and says why in one line."""
    monkeypatch.setattr(store, "WRITE_TIMEOUT_S", 0.3, raising=False)
    journal, mode = LOCKS[lock]
    blocked = lock in READS_BLOCKED
    p = tmp_path / "history.sqlite"
    _history_file(p, journal)
    # Before load: a holder in exclusive locking mode cannot lock a WAL file a kernel has open.
    locker = _lock(p, mode)
    try:
        meter, ext = load(ip, p)
        checked(ext)
        for i in range(3):
            run(ip, f"%%carbon --label h{i}\nmeter.add(1)")
        for warm in ("import carbonlab; carbonlab.history()", "%carbon report", "%carbon advise"):
            assert run(ip, warm)[0].success  # imports and the chart's first render, before timing
        waits = _read_waits(monkeypatch)
        r, cap, took = run(ip, "carbonlab.history()['label'].tolist()")
        assert r.success, r.error_in_exec
        assert [x for x in r.result if x.startswith("h")] == ["h0", "h1", "h2"]
        assert everything(cap).count(LOCKED_NOTE) == (1 if blocked else 0)
        assert_clean(everything(cap))
        assert took < 1.0, f"history() took {took:.2f} s"

        r, cap, _ = run(ip, "%carbon report")  # its chart's render is not timed: the waits are
        assert r.success, r.error_in_exec
        assert "carbonlab report" in shown(cap)
        assert everything(cap).count(LOCKED_NOTE) == (1 if blocked else 0)
        assert_clean(everything(cap))

        out = tmp_path / "out.csv"
        r, cap, took = run(ip, f"%carbon export {out}")
        assert took < 1.0, f"export took {took:.2f} s"
        assert_clean(everything(cap))
        if blocked:
            assert not r.success and not out.exists()
            msg = str(r.error_in_exec)
            assert len(msg.splitlines()) == 1
            assert f"{p} is locked by another process; nothing written" in msg
        else:
            assert r.success, r.error_in_exec
            assert "h2" in out.read_text()

        r, cap, took = run(ip, "%carbon advise")
        assert r.success, r.error_in_exec
        text = shown(cap)
        assert "measured in the last hour:" in text
        assert text.count(LOCKED_NOTE) == (1 if blocked else 0)
        assert_clean(everything(cap))
        assert took < 1.0, f"advise took {took:.2f} s"

        if blocked:  # nothing of this kernel's to show: one line, at once
            r, cap, took = run(ip, "carbonlab.history(notebook='another.ipynb')")
            assert not r.success and took < 1.0
            msg = str(r.error_in_exec)
            assert len(msg.splitlines()) == 1
            assert f"cannot read history {p}: locked by another process" in msg
            assert "this kernel has no runs of its own to show" in msg
            assert_clean(everything(cap))
    finally:
        _unlock(locker)
    assert waits and max(waits) <= STALL_LIMIT_S, waits  # the old reads: 5 s
    assert ext.store.flush(timeout=60)


def test_a_lock_taken_after_this_kernel_wrote_still_shows_its_written_runs(
    ip, tmp_path, monkeypatch
):
    """Where WAL cannot be used (SQLite keeps the rollback journal, as on some network
    filesystems), a lock taken after this kernel wrote blocks reads too: history() then answers
    with every run of this kernel's session, those written before the lock and those waiting."""
    monkeypatch.setattr(store, "WRITE_TIMEOUT_S", 0.3, raising=False)
    real_connect = store.connect

    def without_wal(path, timeout_s=store.BUSY_TIMEOUT_MS / 1000):
        con = real_connect(path, timeout_s)
        con.execute("PRAGMA journal_mode = DELETE")  # as where WAL cannot be used
        return con

    monkeypatch.setattr(store, "connect", without_wal)
    p = tmp_path / "history.sqlite"
    _history_file(p, "delete")
    meter, ext = load(ip, p)
    checked(ext)
    run(ip, "%%carbon --label w0\nmeter.add(1)")
    assert ext.store.flush(timeout=30)
    assert "w0" in [r["label"] for r in store.read_rows(p)]  # written before the lock
    run(ip, "import carbonlab; carbonlab.history()")  # imports, before timing
    locker = _lock(p)
    try:
        for i in (1, 2):
            run(ip, f"%%carbon --label w{i}\nmeter.add(1)")
        r, cap, took = run(ip, "carbonlab.history()['label'].tolist()")
        assert r.success, r.error_in_exec
        assert [x for x in r.result if x.startswith("w")] == ["w0", "w1", "w2"]
        n = len(r.result)
        assert everything(cap).count(f"{LOCKED_NOTE} {n} runs") == 1
        assert_clean(everything(cap))
        assert took < 1.0, f"history() took {took:.2f} s"
    finally:
        _unlock(locker)
    assert ext.store.flush(timeout=60)


@pytest.mark.parametrize("lock", LOCKS)
def test_paper_report_under_a_lock_reports_this_kernels_runs_at_once(
    ip, tmp_path, monkeypatch, lock
):
    """The old %carbon report --paper flushed the store on the cell's thread (waiting on the writer,
    which waited on the lock), then read only the file: ~10 s, then "no measured runs match". Now it
    never waits and includes this kernel's rows not written yet."""
    monkeypatch.setattr(store, "WRITE_TIMEOUT_S", 0.3, raising=False)
    journal, mode = LOCKS[lock]
    p = tmp_path / "history.sqlite"
    _history_file(p, journal)
    locker = _lock(p, mode)  # before load (see the test above)
    try:
        meter, ext = load(ip, p)
        checked(ext)
        run(ip, "%carbon report --paper -f json")  # imports, before timing
        waits = _read_waits(monkeypatch)
        flushes = _flushes_on_this_thread(monkeypatch)
        for i in range(3):
            run(ip, f"%%carbon --label p{i}\nmeter.add({i + 1})")
        r, cap, took = run(ip, "%carbon report --paper -f json --label 'p*'")
        assert r.success, r.error_in_exec
        assert_clean(everything(cap))
        doc = json.loads(cap.stdout)
        assert [x["measurement"]["label"] for x in doc["runs"]] == ["p0", "p1", "p2"]
        assert doc["energy_by_kind_j"]["cpu"] == pytest.approx(6.0)
        said = [n for n in doc["notes"] if LOCKED_NOTE in n]
        assert len(said) == (1 if lock in READS_BLOCKED else 0), doc["notes"]
        assert took < 1.0, f"report --paper took {took:.2f} s"
    finally:
        _unlock(locker)
    assert flushes == []  # it never waited on the writer
    assert waits and max(waits) <= STALL_LIMIT_S, waits  # the old reads: 5 s
    assert ext.store.flush(timeout=60)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_unload_under_a_lock_returns_at_once_and_the_rows_are_written_once_it_is_released(
    ip, tmp_path, monkeypatch, journal
):
    """The old %unload_ext joined the writer (up to 2 s), whose one last try failed on the lock:
    the rows were lost. Now it asks the writer to write them and returns; the writer keeps
    retrying while the lock is held (this process's reads still see the rows), and writes them
    once it is released."""
    monkeypatch.setattr(store, "WRITE_TIMEOUT_S", 0.3, raising=False)
    p = tmp_path / "history.sqlite"
    _history_file(p, journal)
    meter, ext = load(ip, p)
    checked(ext)
    closes: list[float] = []
    real_close = store.Store.close
    monkeypatch.setattr(
        store.Store,
        "close",
        lambda self, timeout=2.0: closes.append(timeout) or real_close(self, timeout),
    )
    s = ext.store
    locker = _lock(p)
    try:
        for i in range(3):
            run(ip, f"%%carbon --label u{i}\nmeter.add(1)")
        r, cap, took = run(ip, "%unload_ext carbonlab")
        assert r.success, r.error_in_exec
        assert_clean(everything(cap))
        assert closes == []  # nothing joined the writer
        assert took < 1.0, f"unload took {took:.2f} s"
        assert extension.get(ip) is None
        # Still waiting for the lock: the writer is alive, and this process still sees the rows.
        assert any(t.name == "carbonlab-store" for t in threading.enumerate())
        assert s.pending == 4  # u0..u2 and the cell that unloaded
        seen = store.history(notebook=ext.notebook, path=p, wait_s=0.05)["label"].tolist()
        assert [x for x in seen if x.startswith("u")] == ["u0", "u1", "u2"]
    finally:
        _unlock(locker)
    assert writer_ended()  # it got the lock, wrote the rows and ended
    labels = [r["label"] for r in store.read_rows(p)]
    assert len(labels) == 4 and [x for x in labels if x.startswith("u")] == ["u0", "u1", "u2"]
    assert s not in store._open


EXIT_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from carbonlab import store
    from tests.test_store import _measurement

    s = store.Store(sys.argv[1])
    for i in range(3):
        s.append(store.RunRecord.new(_measurement(f"x{i}"), notebook="nb"))
    deadline = time.monotonic() + 30
    while "locked" not in (s.last_error or "") and time.monotonic() < deadline:
        time.sleep(0.02)  # until the writer has met the lock
    assert "locked" in (s.last_error or ""), s.last_error
    assert s.stop() is False  # as %unload_ext does: returns at once, the writer still retrying
    print("exiting", flush=True)
    """
)


def test_rows_left_by_unload_under_a_lock_are_written_at_interpreter_exit(tmp_path):
    """A process that ends right after %unload_ext, while the lock is still held: its exit handler
    waits (bounded) for the writer, which writes the rows once the lock is released."""
    p = tmp_path / "history.sqlite"
    _history_file(p, "delete")
    locker = _lock(p)
    root = str(Path(__file__).resolve().parent.parent)
    child = subprocess.Popen(
        [sys.executable, "-c", EXIT_CHILD, str(p), root],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "exiting"
    finally:
        _unlock(locker)  # while the child's exit handler waits for its writer
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert_clean(err)
    assert [r["label"] for r in store.read_rows(p)] == ["x0", "x1", "x2"]


def test_vs_previous_run_learns_of_earlier_sessions_after_a_lock_at_load(ip, tmp_path, monkeypatch):
    """The writer's first read (each cell's latest run, for "vs previous run") met another process's
    lock: it is read again after the writer's next successful write, so a cell run in an earlier
    session is still compared with (the old store never read it again)."""
    monkeypatch.setattr(store, "SEED_TIMEOUT_S", 0.2, raising=False)
    monkeypatch.setattr(store, "WRITE_TIMEOUT_S", 0.3, raising=False)
    p = tmp_path / "history.sqlite"
    _history_file(p, "wal")
    cell = "%%carbon --label old\nmeter.add(2)"
    meter, ext = load(ip, p)
    checked(ext)
    run(ip, cell)  # an earlier session
    ip.run_line_magic("unload_ext", "carbonlab")
    assert writer_ended()
    assert [r["label"] for r in store.read_rows(p)] == ["old"]
    locker = _lock(p, "exclusive-mode")  # blocks the first read, WAL or not
    try:
        meter, ext = load(ip, p)
        checked(ext)
        assert "locked" in (ext.store.last_error or ""), ext.store.last_error
    finally:
        _unlock(locker)
    r, cap, _ = run(ip, "%%carbon --label new\nmeter.add(1)")
    assert r.success and "previous run" not in shown(cap)
    assert ext.store.flush(timeout=30)  # written; the latest runs were read again
    r, cap, took = run(ip, cell)
    assert r.success and took < STALL_LIMIT_S
    assert "same energy as previous run" in shown(cap)
    assert_clean(everything(cap))


def _fail_build_of(label: str, monkeypatch) -> None:
    """Building the Measurement of the window labelled ``label`` raises (a bug of ours)."""
    from carbonlab import window

    real_build = window.Window.build

    def build(self, **kw):
        if self.label == label:
            raise RuntimeError("no footprint for this run")
        return real_build(self, **kw)

    monkeypatch.setattr(window.Window, "build", build)


def test_a_quick_cell_whose_measurement_cannot_be_built_costs_only_its_own_row(
    ip, tmp_path, monkeypatch
):
    """A quick cell's Measurement is built by the history writer (issue 14). If that build fails
    (a bug of ours), neither the cell nor carbonlab.history() raises, the other runs of the batch
    are written, and the run given up is counted and said (%carbon status), not retried forever."""
    import carbonlab
    from carbonlab import store as _store

    _fail_build_of("In [2]", monkeypatch)
    meter, ext = load(ip, tmp_path / "h.sqlite")
    checked(ext)
    for j in (0.25, 0.5, 0.75):
        r, cap, _ = run(ip, f"meter.add({j})")
        assert r.success and "Traceback" not in everything(cap)
    assert [round(e, 2) for e in carbonlab.history()["energy_j"]] == [0.25, 0.75]  # no raise
    assert ext.store.flush(30)
    rows = _store.read_rows(tmp_path / "h.sqlite")
    assert [r["energy_j"] for r in rows] == [0.25, 0.75]
    fault = ext.store.fault
    assert fault is not None and fault.dropped == 1
    assert "a run could not be recorded (RuntimeError: no footprint for this run)" in fault.reason
    r, cap, _ = run(ip, "%carbon status")
    assert "no footprint for this run" in shown(cap) and "Traceback" not in everything(cap)
    r, cap, _ = run(ip, "meter.add(0.5)")  # the next runs are written as before
    assert ext.store.flush(30) and len(_store.read_rows(tmp_path / "h.sqlite")) == 4


def test_a_quick_cell_whose_measurement_cannot_be_built_leaves_no_raise_in_later_cells(
    ip, tmp_path, monkeypatch
):
    """The last run's Measurement is read by later cells (%carbon report's power timeline): when
    building it failed, those cells run as usual, without it, and the writer says why."""
    _fail_build_of("In [2]", monkeypatch)
    meter, ext = load(ip, tmp_path / "h.sqlite")
    checked(ext)
    run(ip, "meter.add(0.25)")
    run(ip, "meter.add(0.5)")
    assert ext.last.measurement is None  # (not a raise)
    r, cap, _ = run(ip, "%carbon report")
    assert r.success, r.error_in_exec
    assert "Traceback" not in everything(cap)
    assert ext.store.flush(30)
    assert "no footprint for this run" in ext.store.fault.reason
