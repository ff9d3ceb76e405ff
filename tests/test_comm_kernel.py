"""The live sidebar protocol, kernel side, through a real kernel and jupyter_client (no browser).

The client sends execute requests with ``cellId`` in the metadata, as JupyterLab does, and reads the
``carbonlab.cell`` comm messages the kernel publishes on iopub.
"""

from __future__ import annotations

import json
import queue
import time
from datetime import datetime

import pytest

from carbonlab.jupyter.comm import MAX_SAMPLE_HZ, PROTOCOL_VERSION, TARGET_NAME
from carbonlab.measurement import SCHEMA

WORK_S = 2.0
# Real work for WORK_S seconds (a busy loop, so the CPU model sees it).
BUSY_CELL = (
    "import time\n"
    "_t = time.monotonic()\n"
    f"while time.monotonic() - _t < {WORK_S}:\n"
    "    sum(range(10_000))\n"
    "'done'"
)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from jupyter_client.manager import start_new_kernel

    tmp = tmp_path_factory.mktemp("kernel")
    import os

    env = dict(os.environ)
    env["CARBONLAB_HISTORY"] = str(tmp / "history.sqlite")
    env["JPY_SESSION_NAME"] = str(tmp / "analysis.ipynb")
    env.pop("CARBONLAB_ZONE", None)
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp))
    try:
        reply = kc.execute_interactive("%load_ext carbonlab", timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        # A v1 sidebar: it sees runs only through their own comms, so every run, short or long,
        # gets one (the protocol these tests check). Without a sidebar, or with a v2 one, short
        # runs get none: see the tests of short runs below.
        _hello_on_shell(kc, {"v": 1, "sidebar": True})
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _hello_on_shell(kc, data: dict) -> str:
    """Open a carbonlab.hello comm on the main shell (handled before the next request)."""
    import uuid

    comm_id = uuid.uuid4().hex
    kc.shell_channel.send(
        kc.session.msg(
            "comm_open", {"comm_id": comm_id, "target_name": "carbonlab.hello", "data": data}
        )
    )
    return comm_id


def _date(msg) -> datetime:
    d = msg["header"]["date"]
    return d if isinstance(d, datetime) else datetime.fromisoformat(d)


def execute(
    kc,
    code: str,
    cell_id: str,
    on_iopub=None,
    client_closed=(),
    timeout: float = 60.0,
    comm: bool = True,
):
    """Send an execute_request like JupyterLab's; return (reply, iopub messages of that request
    and of the comms it opened, in arrival order).

    A measured cell opens one comm; its open and summary may come after the reply and the idle
    status (a cell shorter than one sampler tick gets both just after it ends), so this waits until
    that comm is closed, by the kernel or by the client (``client_closed``)."""
    msg = kc.session.msg(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        metadata={"cellId": cell_id, "deletedCells": [], "recordTiming": False},
    )
    kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    deadline = time.monotonic() + timeout
    reply = None
    ours: list[dict] = []
    comm_ids: set[str] = set()
    closed: set[str] = set()
    idle = False

    # The summary is sent just after the cell, possibly after the idle status: wait for it too.
    def done() -> bool:
        return bool(
            reply is not None
            and idle
            and (comm_ids or not comm)
            and not comm_ids - closed - set(client_closed)
        )

    while not done() and time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            m = None
        if m is not None:
            content = m["content"]
            if m["msg_type"] == "comm_open" and m["parent_header"].get("msg_id") == msg_id:
                comm_ids.add(content["comm_id"])
            if m["msg_type"] == "comm_close":
                closed.add(content["comm_id"])
            if m["parent_header"].get("msg_id") == msg_id or content.get("comm_id") in comm_ids:
                ours.append(m)
                if on_iopub is not None:
                    on_iopub(m)
                if m["msg_type"] == "status" and content["execution_state"] == "idle":
                    idle = True
        if reply is None:
            try:
                r = kc.get_shell_msg(timeout=0.01)
            except queue.Empty:
                continue
            if r["parent_header"].get("msg_id") == msg_id:
                reply = r
    assert reply is not None and idle, "the kernel did not finish the request in time"
    assert comm_ids or not comm, "no comm was opened for the measured cell"
    assert not comm_ids - closed - set(client_closed), "a comm was not closed"
    return reply, ours


def in_kernel(kc, expr: str):
    """Evaluate a JSON-returning expression in the kernel (a silent request: not measured)."""
    r = kc.execute_interactive(
        "", silent=True, user_expressions={"v": expr}, store_history=False, timeout=30
    )
    v = r["content"]["user_expressions"]["v"]
    assert v["status"] == "ok", v
    return json.loads(eval(v["data"]["text/plain"]))  # a repr of a JSON string


COMMS_OPEN = (
    "__import__('json').dumps(sum(c.target_name == 'carbonlab.cell' for c in "
    "__import__('comm').get_comm_manager().comms.values()))"
)
HISTORY_ROW = (
    "__import__('carbonlab').history().assign(started_at=lambda d: d.started_at.astype(str))"
    ".iloc[-1].to_json()"
)


@pytest.mark.kernel
def test_a_two_second_cell_streams_samples_and_closes_with_its_measurement(kernel):
    t_sent = time.time()
    reply, msgs = execute(kernel, BUSY_CELL, "cell-abc-123")
    assert reply["content"]["status"] == "ok"

    opens = [m for m in msgs if m["msg_type"] == "comm_open"]
    assert len(opens) == 1, "one comm per measured cell run"
    o = opens[0]["content"]
    assert o["target_name"] == TARGET_NAME
    data = o["data"]
    assert data["v"] == PROTOCOL_VERSION and data["cell_id"] == "cell-abc-123"
    assert data["run_id"] and data["label"] == f"In [{reply['content']['execution_count']}]"
    assert abs(data["t0"] - t_sent) < 5
    assert {d["kind"] for d in data["devices"]} >= {"cpu", "ram"}
    assert all(set(d) == {"kind", "device", "name", "method", "scope"} for d in data["devices"])
    assert data["zone"]["gco2e_per_kwh"] > 0

    comm_id = o["comm_id"]
    samples = [
        m for m in msgs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
    ]
    before_reply = [m for m in samples if _date(m) < _date(reply)]
    # At most 4 Hz over ~2 s: several, and not more than the rate allows.
    assert len(before_reply) >= 4
    assert len(samples) <= WORK_S * MAX_SAMPLE_HZ + 3
    payloads = [m["content"]["data"] for m in samples]
    assert all(p["kind"] == "sample" for p in payloads)
    ts = [p["t"] for p in payloads]
    assert ts == sorted(ts) and ts[-1] <= WORK_S + 1
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert min(gaps) >= 1 / MAX_SAMPLE_HZ * 0.8  # throttled
    cpu = [p["energy_j"]["cpu"] for p in payloads]
    assert cpu == sorted(cpu) and cpu[-1] > 0
    assert payloads[-1]["power_w"]["cpu"] > 0 and payloads[-1]["co2e_g"] > 0

    closes = [m for m in msgs if m["msg_type"] == "comm_close"]
    assert len(closes) == 1 and closes[0]["content"]["comm_id"] == comm_id
    # Sent from other threads, yet every message belongs to the cell's request.
    request = reply["parent_header"]["msg_id"]
    assert {m["parent_header"]["msg_id"] for m in msgs if m["msg_type"].startswith("comm_")} == {
        request
    }
    summary = closes[0]["content"]["data"]
    assert summary["kind"] == "summary" and summary["error"] is False
    meas = summary["measurement"]
    assert meas["schema"] == SCHEMA
    assert meas["run_id"] == data["run_id"] and meas["cell_id"] == "cell-abc-123"
    assert meas["duration_s"] == pytest.approx(WORK_S, abs=0.5)
    assert meas["energy_j"] >= cpu[-1]

    row = in_kernel(kernel, HISTORY_ROW)
    assert row["run_id"] == meas["run_id"]
    assert row["cell_id"] == "cell-abc-123"
    assert row["execution_count"] == reply["content"]["execution_count"]
    assert row["label"] == meas["label"]
    assert row["energy_j"] == pytest.approx(meas["energy_j"])
    assert row["energy_cpu_j"] == pytest.approx(
        sum(c["energy_j"] for c in meas["components"] if c["kind"] == "cpu")
    )
    assert row["co2e_g"] == pytest.approx(meas["co2e_g"])
    assert row["duration_s"] == pytest.approx(meas["duration_s"])
    assert row["notebook"].endswith("analysis.ipynb")
    assert row["error"] is False


@pytest.mark.kernel
def test_a_raising_cell_closes_its_comm_with_error_true(kernel):
    reply, msgs = execute(kernel, "x = 1\nraise ValueError('no')", "cell-err")
    assert reply["content"]["status"] == "error"
    [close] = [m for m in msgs if m["msg_type"] == "comm_close"]
    assert close["content"]["data"]["error"] is True
    row = in_kernel(kernel, HISTORY_ROW)
    assert row["cell_id"] == "cell-err" and row["error"] is True
    assert row["run_id"] == close["content"]["data"]["measurement"]["run_id"]


@pytest.mark.kernel
def test_a_strict_cell_over_its_budget_is_an_error_in_the_summary_and_the_history(kernel):
    # It fails (BudgetExceeded after it ran): its row must not say "done", nor its history row
    # error=False.
    reply, msgs = execute(
        kernel, "%%carbon --budget 1mJ --strict\nsum(range(3 * 10**6))", "cell-strict"
    )
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "BudgetExceeded"
    [close] = [m for m in msgs if m["msg_type"] == "comm_close"]
    data = close["content"]["data"]
    assert data["error"] is True and data["status"] == "error"
    row = in_kernel(kernel, HISTORY_ROW)
    assert row["cell_id"] == "cell-strict"
    assert row["error"] is True and row["status"] == "error"


@pytest.mark.kernel
def test_ctrl_c_is_interrupted_not_error_in_the_summary_and_the_history(kernel):
    # A KeyboardInterrupt is what Ctrl-C (the kernel's SIGINT) raises in the cell.
    reply, msgs = execute(kernel, "x = 1\nraise KeyboardInterrupt", "cell-ctrl-c")
    assert reply["content"]["status"] == "error"
    [close] = [m for m in msgs if m["msg_type"] == "comm_close"]
    data = close["content"]["data"]
    assert data["status"] == "interrupted"
    assert data["measurement"]["status"] == "interrupted"
    row = in_kernel(kernel, HISTORY_ROW)
    assert row["cell_id"] == "cell-ctrl-c" and row["status"] == "interrupted"


PREVIOUS = (
    "__import__('json').dumps(__import__('carbonlab.jupyter.extension').jupyter.extension"
    ".get().last.previous_energy_j)"
)


@pytest.mark.kernel
def test_vs_previous_run_compares_with_the_previous_successful_run_only(kernel):
    _, msgs = execute(kernel, "sum(range(10**6))", "cell-prev")
    [ok] = [m for m in msgs if m["msg_type"] == "comm_close"]
    first_j = ok["content"]["data"]["measurement"]["energy_j"]
    reply, _ = execute(kernel, "sum(range(10**5))\nraise ValueError('x')", "cell-prev")
    assert reply["content"]["status"] == "error"
    reply, _ = execute(kernel, "raise KeyboardInterrupt", "cell-prev")
    assert reply["content"]["status"] == "error"
    execute(kernel, "sum(range(10**6))", "cell-prev")
    assert in_kernel(kernel, PREVIOUS) == pytest.approx(first_j)


@pytest.mark.kernel
def test_the_open_message_carries_the_pue(kernel):
    # "How measured" keeps the PUE while a row is running: the open message says it.
    _, msgs = execute(kernel, BUSY_CELL.replace(str(WORK_S), "0.6"), "cell-pue")
    [o] = [m for m in msgs if m["msg_type"] == "comm_open"]
    [close] = [m for m in msgs if m["msg_type"] == "comm_close"]
    assert o["content"]["data"]["pue"] == close["content"]["data"]["measurement"]["pue"]
    assert o["content"]["data"]["pue"] >= 1.0


@pytest.mark.kernel
def test_a_frontend_that_closes_the_comm_breaks_nothing(kernel):
    # JupyterLab closes a comm whose target nobody registered (the sidebar is not installed, a
    # second client without carbonlab). ipykernel routes that close to the shell that opened the
    # comm, so it is handled after the cell; the run must finish, be stored, and leave no comm.
    closed: list[str] = []

    def close_on_open(m):
        if m["msg_type"] == "comm_open" and not closed:
            comm_id = m["content"]["comm_id"]
            kernel.shell_channel.send(
                kernel.session.msg("comm_close", {"comm_id": comm_id, "data": {}})
            )
            closed.append(comm_id)

    reply, msgs = execute(
        kernel, "z = sum(range(10**6))", "cell-nobody", on_iopub=close_on_open, client_closed=closed
    )
    assert reply["content"]["status"] == "ok" and closed
    row = in_kernel(kernel, HISTORY_ROW)
    assert row["cell_id"] == "cell-nobody"
    reply, _ = execute(kernel, "z", "cell-after")
    assert reply["content"]["status"] == "ok"
    assert in_kernel(kernel, COMMS_OPEN) == 0


@pytest.mark.kernel
def test_no_comm_is_left_open_after_many_quick_cells(kernel):
    for i in range(20):
        reply, msgs = execute(kernel, f"y = {i}", f"quick-{i}")
        assert reply["content"]["status"] == "ok"
        kinds = [m["msg_type"] for m in msgs if m["msg_type"].startswith("comm_")]
        assert kinds[0] == "comm_open" and kinds[-1] == "comm_close"
    assert in_kernel(kernel, COMMS_OPEN) == 0


@pytest.mark.kernel
def test_ipython_startup_config_loads_carbonlab_in_every_kernel(tmp_path):
    # docs/magics.md: one line in the profile's ipython_config.py, read by terminal IPython and by
    # ipykernel alike.
    import os

    from jupyter_client.manager import start_new_kernel

    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text('c.InteractiveShellApp.extensions = ["carbonlab"]\n')
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))
    env["CARBONLAB_HISTORY"] = str(tmp_path / "history.sqlite")
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        _hello_on_shell(kc, {"v": 1, "sidebar": True})  # a v1 sidebar: a comm per run
        reply, msgs = execute(kc, "1 + 1", "first-cell")
        assert reply["content"]["status"] == "ok"
        assert [m["content"]["data"]["cell_id"] for m in msgs if m["msg_type"] == "comm_open"] == [
            "first-cell"
        ]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.kernel
@pytest.mark.fault("history")
def test_a_corrupt_history_in_a_real_kernel_still_closes_the_comm_with_the_fault(tmp_path):
    """Through ipykernel and jupyter_client: with random bytes for a history file, the ``%%carbon
    -o`` cell succeeds, binds its variable, shows the fault once, and its comm is closed with a
    summary whose ``history`` says why runs are not saved."""
    import os
    import random
    from pathlib import Path

    from jupyter_client.manager import start_new_kernel

    from tests.faults import assert_clean

    history = tmp_path / "history.sqlite"
    history.write_bytes(random.Random(5).randbytes(4096))
    env = dict(os.environ)  # PYTHONPATH too: the kernel imports this checkout's carbonlab
    env["CARBONLAB_HISTORY"] = str(history)
    env["JPY_SESSION_NAME"] = str(tmp_path / "analysis.ipynb")
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        reply = kc.execute_interactive("%load_ext carbonlab", timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        here = Path(__file__).resolve().parent.parent / "carbonlab" / "__init__.py"
        assert in_kernel(kc, "__import__('json').dumps(__import__('carbonlab').__file__)") == str(
            here
        )
        seeded = "__import__('json').dumps((lambda s: s.seeded.wait(10) if hasattr(s, 'seeded') "
        seeded += (
            "else True)(__import__('carbonlab.jupyter.extension').jupyter.extension.get().store))"
        )
        assert in_kernel(kc, seeded) is True  # the kernel has checked its history file
        _hello_on_shell(kc, {"v": 1, "sidebar": True})  # a v1 sidebar: a comm per run
        for i, cell in enumerate(["%%carbon -o m --label k\nx = 1", "%%carbon --label k2\ny = 2"]):
            reply, msgs = execute(kc, cell, f"cell-h{i}")
            assert reply["content"]["status"] == "ok", reply["content"]
            [close] = [m for m in msgs if m["msg_type"] == "comm_close"]
            data = close["content"]["data"]
            assert data["kind"] == "summary" and data["error"] is False
            h = data["history"]
            assert h["ok"] is False and h["path"] == str(history)
            assert "not a database" in h["reason"]
            shown = "\n".join(json.dumps(m["content"]) for m in msgs if m["msg_type"] != "comm_msg")
            assert_clean(shown)
            assert ("history not saved" in shown) == (i == 0)  # said once
        assert in_kernel(kc, "__import__('json').dumps(m.energy_j >= 0)") is True
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- LiveRun without a kernel: what the sampler thread sends, and when it stops -------------------
class FakeSink:
    def __init__(self, fail_on: str | None = None) -> None:
        self.events: list[tuple[str, dict]] = []
        self.listening = True
        self.fail_on = fail_on

    def _record(self, what: str, data: dict) -> None:
        if what == self.fail_on:
            raise RuntimeError(f"{what} failed")
        self.events.append((what, data))

    def open(self, data):
        self._record("open", data)

    def sample(self, data):
        self._record("sample", data)

    def close(self, data):
        self._record("close", data)


class FakeSampler:
    def __init__(self, meters):
        self.meters = meters
        self.subscribed: dict[int, tuple] = {}

    def subscribe(self, fn, hz=None, delay_s=0.0):
        self.subscribed[1] = (fn, hz)
        self.delay_s = delay_s
        return 1

    def unsubscribe(self, token):
        self.subscribed.pop(token, None)


class FakeWindow:
    t0 = 100.0
    e0 = [10.0, 5.0, 1.0]


def _live(sinks, g_per_j=0.001):
    from carbonlab.jupyter.comm import LiveRun
    from tests import fakes

    meters = [fakes.gpu_counter(), fakes.ScriptedMeter("cpu"), fakes.ScriptedMeter("ram")]
    opened: list = []

    def open_data(measurement):
        opened.append(measurement)
        return {"v": PROTOCOL_VERSION, "run_id": "r1"}, g_per_j

    run = LiveRun(
        sampler=FakeSampler(meters), window=FakeWindow(), sinks=sinks, open_data=open_data, hz=10
    )
    return run, opened


def test_live_run_sends_energy_since_start_per_kind_at_most_4_hz():
    from carbonlab.sampler import Sample

    sink = FakeSink()
    run, opened = _live([sink])
    run.start()
    fn, hz = run.sampler.subscribed[1]
    assert hz == MAX_SAMPLE_HZ  # asked for 10 Hz: capped
    fn(Sample(100.25, (110.0, 7.0, 1.5), (400.0, None, 2.0)))
    assert opened == [None]  # opened by the first tick, with the zone looked up there
    assert sink.events[0] == ("open", {"v": PROTOCOL_VERSION, "run_id": "r1"})
    kind, msg = sink.events[1]
    assert kind == "sample"
    assert msg == {
        "kind": "sample",
        "t": 0.25,
        # cpu has no power reading at this first sample: its mean since the run began (2 J / 0.25 s)
        "power_w": {"gpu": 400.0, "cpu": 8.0, "ram": 2.0},
        "energy_j": {"gpu": 100.0, "cpu": 2.0, "ram": 0.5},
        "co2e_g": pytest.approx(0.1025),
    }
    run.finish({"schema": SCHEMA, "energy_j": 103.0}, error=False)
    assert run.sampler.subscribed == {}
    assert sink.events[-1] == (
        "close",
        {"kind": "summary", "measurement": {"schema": SCHEMA, "energy_j": 103.0}, "error": False},
    )
    fn(Sample(100.5, (120.0, 8.0, 2.0), (400.0, None, 2.0)))  # a tick in flight after the end
    assert len(sink.events) == 3


def test_live_sample_carries_the_clusters_figures_per_host():
    """An attached cluster (carbonlab.cluster.live): the "cluster" entry, and its breakdown per
    engine and host for the sidebar row's details; without one, no ``cluster_hosts`` key."""
    from carbonlab.sampler import Sample

    class ClusterWindow(FakeWindow):
        remote = [object()]

        def remote_live(self):
            return {
                "energy_j": 30.123456,
                "power_w": 12.5,
                "by_host": {"node-a": 20.0, "node-b": 10.123456},
                "hosts": [
                    {
                        "engine": "dask",
                        "host": "node-a",
                        "workers": 2,
                        "energy_j": 20.0,
                        "power_w": 8.25,
                    },
                    {
                        "engine": "dask",
                        "host": "node-b",
                        "workers": 1,
                        "energy_j": 10.123456,
                        "power_w": None,
                    },
                ],
            }

    sink = FakeSink()
    run, _ = _live([sink])
    run.window = ClusterWindow()
    msg = run.sample_message(Sample(100.5, (110.0, 7.0, 1.5), (400.0, 4.0, 2.0)))
    assert msg["power_w"]["cluster"] == 12.5
    assert msg["energy_j"]["cluster"] == pytest.approx(30.1235)
    assert msg["cluster_hosts"] == [
        {"engine": "dask", "host": "node-a", "workers": 2, "energy_j": 20.0, "power_w": 8.25},
        {"engine": "dask", "host": "node-b", "workers": 1, "energy_j": 10.1235, "power_w": None},
    ]
    json.dumps(msg, allow_nan=False)  # what the comm sends
    run.window = FakeWindow()
    assert "cluster_hosts" not in run.sample_message(
        Sample(100.5, (110.0, 7.0, 1.5), (400.0, 4.0, 2.0))
    )


def test_live_run_stops_streaming_when_the_frontend_closes():
    from carbonlab.sampler import Sample

    sink = FakeSink()
    run, _ = _live([sink])
    run.start()
    fn, _ = run.sampler.subscribed[1]
    fn(Sample(100.25, (110.0, 7.0, 1.5), (None, None, None)))
    sink.listening = False
    fn(Sample(100.5, (120.0, 8.0, 2.0), (None, None, None)))
    assert [e[0] for e in sink.events] == ["open", "sample"]


def test_a_run_shorter_than_one_tick_opens_and_closes_at_the_end():
    sink = FakeSink()
    run, opened = _live([sink])
    run.start()
    run.finish({"intensity": {"zone": "FR"}}, error=True)
    assert opened == [{"intensity": {"zone": "FR"}}]  # the zone comes from the measurement
    assert [e[0] for e in sink.events] == ["open", "close"]
    assert sink.events[1][1]["error"] is True


def test_a_failing_sink_is_dropped_and_the_others_still_get_everything():
    from carbonlab.sampler import Sample

    bad, good = FakeSink(fail_on="sample"), FakeSink()
    run, _ = _live([bad, good])
    run.start()
    fn, _ = run.sampler.subscribed[1]
    fn(Sample(100.25, (110.0, 7.0, 1.5), (None, None, None)))
    fn(Sample(100.5, (120.0, 8.0, 2.0), (None, None, None)))
    run.finish({}, error=False)
    assert [e[0] for e in good.events] == ["open", "sample", "sample", "close"]
    assert [e[0] for e in bad.events] == ["open"]
    assert run.errors == ["FakeSink.sample: sample failed"]


def test_comm_sink_uses_the_one_target_name_and_honours_a_frontend_close():
    from carbonlab.jupyter.comm import CommSink

    _FakeComm.made = []
    s = CommSink(create_comm=_FakeComm)
    s.open({"v": 1})
    s.sample({"kind": "sample"})
    [c] = _FakeComm.made
    assert c.target_name == TARGET_NAME == "carbonlab.cell" and c.sent == [{"kind": "sample"}]
    c.cb({"content": {}})  # the frontend closed it
    assert not s.listening
    s.sample({"kind": "sample"})
    s.close({"kind": "summary"})
    assert len(c.sent) == 1 and c.closed is None


class _FakeComm:
    made: list = []

    def __init__(self, target_name, data):
        self.target_name, self.data, self.sent, self.closed = target_name, data, [], None
        _FakeComm.made.append(self)

    def on_close(self, cb):
        self.cb = cb

    def send(self, data):
        self.sent.append(data)

    def close(self, data):
        self.closed = data


class _Channel:
    def __init__(self):
        self.got: list[dict] = []

    def send_runs(self, msg):
        self.got.append(msg)


def test_a_comm_opens_only_for_a_run_still_going_after_the_delay():
    from carbonlab.jupyter.comm import CommSink, RunBatch

    _FakeComm.made = []
    ch = _Channel()
    batch = RunBatch(lambda: [ch], lambda: False, delay_s=60)
    s = CommSink(create_comm=_FakeComm, batch=batch, open_after_s=0.25)
    s.open({"v": 1, "run_id": "r"})
    s.sample({"kind": "sample", "t": 0.1})
    assert _FakeComm.made == []  # too early: maybe a trivial cell
    batch.add({"run_id": "before"}, {"kind": "summary"})
    s.sample({"kind": "sample", "t": 0.3})
    [c] = _FakeComm.made
    assert c.data == {"v": 1, "run_id": "r"} and c.sent == [{"kind": "sample", "t": 0.3}]
    # The runs batched before it were sent first, so the sidebar gets runs in order.
    assert [r["open"]["run_id"] for m in ch.got for r in m["runs"]] == ["before"]
    s.close({"kind": "summary"})
    assert c.closed == {"kind": "summary"}


def test_short_runs_are_batched_for_v2_sidebars_dropped_without_one_a_comm_each_for_v1():
    import threading

    from carbonlab.jupyter.comm import KIND_RUNS, CommSink, RunBatch

    _FakeComm.made = []
    ch = _Channel()
    channels: list = [ch]
    v1 = [False]
    batch = RunBatch(lambda: channels, lambda: v1[0], delay_s=0.05)
    for i in range(3):
        s = CommSink(create_comm=_FakeComm, batch=batch, open_after_s=0.25)
        s.open({"run_id": f"r{i}"})
        s.close({"kind": "summary", "i": i})
    assert _FakeComm.made == []
    # Sent by the timer, off the cells' path: poll, bounded.
    done = threading.Event()
    for _ in range(200):
        if ch.got:
            done.set()
            break
        done.wait(0.05)
    assert done.is_set()
    [msg] = ch.got
    assert msg["kind"] == KIND_RUNS == "runs"
    assert msg["runs"] == [
        {"open": {"run_id": f"r{i}"}, "summary": {"kind": "summary", "i": i}} for i in range(3)
    ]
    # No sidebar at all: nothing is sent, no comm opened.
    channels.clear()
    s = CommSink(create_comm=_FakeComm, batch=batch, open_after_s=0.25)
    s.open({"run_id": "alone"})
    s.close({"kind": "summary"})
    batch.flush()
    assert _FakeComm.made == [] and len(ch.got) == 1
    # A v1 sidebar sees runs only through comms: a short run still gets one, opened and closed.
    v1[0] = True
    s = CommSink(create_comm=_FakeComm, batch=batch, open_after_s=0.25)
    s.open({"run_id": "v1"})
    s.close({"kind": "summary"})
    [c] = _FakeComm.made
    assert c.data == {"run_id": "v1"} and c.closed == {"kind": "summary"}


def test_a_failing_hello_channel_does_not_stop_the_batch_for_the_others():
    from carbonlab.jupyter.comm import RunBatch

    class Broken:
        def send_runs(self, msg):
            raise RuntimeError("gone")

    ch = _Channel()
    batch = RunBatch(lambda: [Broken(), ch], lambda: False, delay_s=60)
    batch.add({"run_id": "r"}, {"kind": "summary"})
    batch.flush()
    assert len(ch.got) == 1 and batch.errors == ["runs: RuntimeError: gone"]


# -- the sidebar's hello, v2: a page reloaded mid-run gets this notebook's runs and the run in flight
def _hello_over_subshell(kc, data: dict) -> str:
    """Open a carbonlab.hello comm as JupyterLab 4 does with ipykernel 7: over a subshell, so the
    kernel handles it while a cell runs on the main shell. Returns the comm id."""
    import uuid

    req = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(req)
    deadline = time.monotonic() + 30
    sid = None
    while sid is None and time.monotonic() < deadline:
        r = kc.get_control_msg(timeout=30)
        if r["parent_header"].get("msg_id") == req["header"]["msg_id"]:
            sid = r["content"]["subshell_id"]
    assert sid, "no subshell"
    comm_id = uuid.uuid4().hex
    msg = kc.session.msg(
        "comm_open", {"comm_id": comm_id, "target_name": "carbonlab.hello", "data": data}
    )
    msg["header"]["subshell_id"] = sid
    kc.shell_channel.send(msg)
    return comm_id


@pytest.mark.kernel
def test_a_hello_mid_run_gets_the_notebooks_runs_and_the_run_in_flight(tmp_path):
    # After a page reload the new page never saw the running cell's comm: the kernel's answer to
    # its hello lists the earlier runs (for the rows and totals) and the run in flight, then
    # forwards that run's samples and summary on the hello comm, tagged with its run id.
    import os

    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ)
    env["CARBONLAB_HISTORY"] = str(tmp_path / "history.sqlite")
    env["JPY_SESSION_NAME"] = str(tmp_path / "reload.ipynb")
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        assert (
            kc.execute_interactive("%load_ext carbonlab", timeout=60)["content"]["status"] == "ok"
        )
        earlier = []
        for i in range(2):  # short runs, and no sidebar yet: no comm, only the history rows
            _, msgs = execute(kc, f"sum(range({i + 1} * 10**5))", f"early-{i}", comm=False)
            assert not [m for m in msgs if m["msg_type"].startswith("comm_")]
            earlier.append(in_kernel(kc, HISTORY_ROW))
        hello: list[str] = []

        def say_hello(m):
            if m["msg_type"] == "comm_open" and not hello:
                hello.append(_hello_over_subshell(kc, {"v": 2, "sidebar": True, "visible": True}))

        seen: list[dict] = []
        get = kc.get_iopub_msg

        def get_and_keep(*args, **kwargs):  # execute() drops what is not its cell's
            m = get(*args, **kwargs)
            if m["msg_type"] == "comm_msg" and hello and m["content"]["comm_id"] == hello[0]:
                seen.append(m["content"]["data"])
            return m

        kc.get_iopub_msg = get_and_keep
        reply, msgs = execute(kc, BUSY_CELL, "long-one", on_iopub=say_hello)
        kc.get_iopub_msg = get
        assert reply["content"]["status"] == "ok" and hello
        # The run's own comm (the cell runs about as long as the in-cell widget's 2 s delay, so
        # that widget's comm may open too, or not).
        [opened] = [
            m
            for m in msgs
            if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "carbonlab.cell"
        ]
        [closed] = [
            m
            for m in msgs
            if m["msg_type"] == "comm_close"
            and m["content"]["comm_id"] == opened["content"]["comm_id"]
        ]
        run_id = opened["content"]["data"]["run_id"]
        # The hello's messages (on its own comm id) may come after the cell: collect them.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(d.get("kind") == "summary" for d in seen):
            try:
                m = kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == hello[0]:
                seen.append(m["content"]["data"])
        assert seen and seen[0]["kind"] == "state", [d.get("kind") for d in seen]
        state = seen[0]
        assert state["notebook"].endswith("reload.ipynb")
        assert [r["run_id"] for r in state["runs"]] == [m["run_id"] for m in earlier]
        assert [r["measurement"]["energy_j"] for r in state["runs"]] == pytest.approx(
            [m["energy_j"] for m in earlier]
        )
        assert {r["status"] for r in state["runs"]} == {"done"}
        assert [r["run_id"] for r in state["running"]] == [run_id]
        assert state["running"][0]["cell_id"] == "long-one"
        forwarded = seen[1:]
        assert all(d["run_id"] == run_id for d in forwarded)
        assert any(d["kind"] == "sample" for d in forwarded)
        assert forwarded[-1]["kind"] == "summary"
        # Exactly the figures the run's own comm closed with.
        assert forwarded[-1]["measurement"] == closed["content"]["data"]["measurement"]
        assert forwarded[-1]["status"] == "done"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.kernel
def test_short_runs_get_no_comm_and_reach_a_v2_sidebar_batched_a_long_run_keeps_its_comm(
    tmp_path,
):
    # Issue 14: a comm per trivial cell cost ~2 ms of iopub traffic. A run shorter than
    # OPEN_AFTER_S gets no comm; a v2 sidebar gets it in a {"kind": "runs"} message on its hello
    # comm (open + summary, the summary equal to the history row); a long run still streams.
    import os

    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ)
    env["CARBONLAB_HISTORY"] = str(tmp_path / "history.sqlite")
    env["JPY_SESSION_NAME"] = str(tmp_path / "batch.ipynb")
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        assert (
            kc.execute_interactive("%load_ext carbonlab", timeout=60)["content"]["status"] == "ok"
        )
        # No sidebar: a short run sends nothing at all.
        _, msgs = execute(kc, "x = sum(range(2000))", "alone", comm=False)
        assert not [m for m in msgs if m["msg_type"].startswith("comm_")]
        hello = _hello_on_shell(kc, {"v": 2, "sidebar": True, "visible": True})
        seen: list[dict] = []
        get = kc.get_iopub_msg

        def get_and_keep(*args, **kwargs):  # execute() drops what is not its cell's
            m = get(*args, **kwargs)
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == hello:
                seen.append(m["content"]["data"])
            return m

        kc.get_iopub_msg = get_and_keep
        for i in range(5):
            reply, msgs = execute(kc, f"x = sum(range({i} + 2000))", f"short-{i}", comm=False)
            assert reply["content"]["status"] == "ok"
            assert (
                not [  # the batches go on the hello comm (they may carry a cell as parent)
                    m
                    for m in msgs
                    if m["msg_type"].startswith("comm_") and m["content"]["comm_id"] != hello
                ]
            )

        def batched() -> list[dict]:
            return [r for d in seen if d.get("kind") == "runs" for r in d["runs"]]

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(batched()) < 5:
            try:
                kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                pass
        assert seen and seen[0]["kind"] == "state"
        runs = batched()
        rows = in_kernel(  # (not earlier: execute_interactive would eat the hello's messages)
            kc,
            HISTORY_ROW.replace(
                ".iloc[-1].to_json()", ".iloc[-5:].to_json(orient='records', double_precision=15)"
            ),
        )
        assert [r["open"]["cell_id"] for r in runs] == [f"short-{i}" for i in range(5)]
        for r, row in zip(runs, rows):
            assert r["open"]["run_id"] == row["run_id"] == r["summary"]["measurement"]["run_id"]
            assert r["summary"]["kind"] == "summary" and r["summary"]["status"] == "done"
            assert r["summary"]["measurement"]["energy_j"] == pytest.approx(row["energy_j"])
            assert r["summary"]["measurement"]["co2e_g"] == pytest.approx(row["co2e_g"])
        # A long run still gets its own comm, with samples before the execute reply.
        order: list[str] = []
        reply, msgs = execute(kc, BUSY_CELL, "long", on_iopub=lambda m: order.append(m["msg_type"]))
        kc.get_iopub_msg = get
        assert reply["content"]["status"] == "ok"
        kinds = [
            m["msg_type"]
            for m in msgs
            if m["msg_type"].startswith("comm_") and m["content"]["comm_id"] != hello
        ]
        assert kinds[0] == "comm_open" and kinds[-1] == "comm_close"
        assert "comm_msg" in kinds
        assert order.index("comm_msg") < order.index("execute_result")
        [close] = [m for m in msgs if m["msg_type"] == "comm_close"]
        assert close["content"]["data"]["measurement"]["cell_id"] == "long"
        assert in_kernel(kc, COMMS_OPEN) == 0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_run_nobody_watches_that_ends_before_its_stream_starts_costs_no_message():
    """Issue 14: with no sidebar, a trivial cell's end built its Measurement JSON, advice and open
    message on the outbox thread for nobody. Now the stream waits for the sinks' delay, and a run
    that ends first with no sink wanting its end submits nothing."""
    from carbonlab.jupyter.comm import CommSink, LiveRun, RunBatch
    from carbonlab.jupyter.widget import LiveWidget
    from tests import fakes

    class CountingOutbox:
        def __init__(self):
            self.jobs = []

        def submit(self, fn, *args):
            self.jobs.append(args)
            fn(*args)

    channels: list = []
    batch = RunBatch(lambda: channels, lambda: False, delay_s=60)
    owner = type("Owner", (), {"showing": lambda self: True, "mode": lambda self: "full"})()

    def run_once():
        _FakeComm.made = []
        opened: list = []
        comm_sink = CommSink(create_comm=_FakeComm, batch=batch, open_after_s=0.25)
        widget = LiveWidget(owner, label="[1]", show_after_s=2.0)
        outbox = CountingOutbox()
        run = LiveRun(
            sampler=FakeSampler([fakes.ScriptedMeter("cpu")]),
            window=FakeWindow(),
            sinks=[comm_sink, widget],
            open_data=lambda m: (opened.append(m) or {"run_id": "r"}, None),
            outbox=outbox,
        ).start()
        assert run.sampler.delay_s == 0.25  # the soonest any sink wants a sample
        run.finish({"schema": SCHEMA, "energy_j": 1.0}, error=False)
        return outbox.jobs, opened

    jobs, opened = run_once()
    assert jobs == [] and opened == [] and _FakeComm.made == []
    # A v2 sidebar listening: the same run is sent, batched.
    ch = _Channel()
    channels.append(ch)
    jobs, opened = run_once()
    assert len(jobs) == 1 and len(opened) == 1
    batch.flush()
    assert [r["open"]["run_id"] for m in ch.got for r in m["runs"]] == ["r"]
