"""The in-cell live widget (carbonlab/jupyter/widget.py).

Through a real kernel and jupyter_client (no browser): the widget's models are opened on the
``jupyter.widget`` comm target and updated (``comm_msg`` ``update``) while the cell runs, before the
execute reply; at the end the same output is replaced by the static summary and the models are
closed, whether the cell returned, raised or was interrupted. Without a kernel (terminal IPython)
there is no widget, only the static summary. The widget's logic alone is checked with fakes.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from carbonlab.jupyter import widget as W
from carbonlab.jupyter.comm import TARGET_NAME
from tests.test_comm_kernel import _date, execute
from tests.test_magics import html, ip, meter, run, shown  # noqa: F401 (fixtures)

WIDGET_TARGET = "jupyter.widget"
VIEW = W.WIDGET_VIEW_MIMETYPE


def busy(seconds: float, magic: str = "%%carbon\n") -> str:
    """A cell of real work for ``seconds`` (a busy loop: the CPU model sees it), then a value."""
    return (
        f"{magic}import time\n_t = time.monotonic()\n"
        f"while time.monotonic() - _t < {seconds}:\n    sum(range(10_000))\n'done'"
    )


@pytest.fixture(scope="module")
def km_kc(tmp_path_factory):
    from jupyter_client.manager import start_new_kernel

    tmp = tmp_path_factory.mktemp("widget-kernel")
    env = dict(os.environ)
    env["CARBONLAB_HISTORY"] = str(tmp / "history.sqlite")
    env["JPY_SESSION_NAME"] = str(tmp / "widgets.ipynb")
    for k in ("CARBONLAB_ZONE", W.ENV_WIDGET, W.ENV_SIDEBAR, W.ENV_AFTER):
        env.pop(k, None)
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp))
    try:
        reply = kc.execute_interactive("%load_ext carbonlab", timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture
def kc(km_kc):
    km, kc = km_kc
    yield kc
    # Each test leaves the defaults behind.
    kc.execute_interactive("%carbon widget on --sidebar compact --after 2", timeout=30)


class Seen:
    """What one cell's messages say about its widget."""

    def __init__(self, reply, msgs):
        self.reply, self.msgs = reply, msgs
        self.widget_opens = [
            m
            for m in msgs
            if m["msg_type"] == "comm_open" and m["content"]["target_name"] == WIDGET_TARGET
        ]
        self.widget_ids = {m["content"]["comm_id"] for m in self.widget_opens}
        html_model = [
            m
            for m in self.widget_opens
            if m["content"]["data"]["state"].get("_model_name") == "HTMLModel"
        ]
        self.html_id = html_model[0]["content"]["comm_id"] if html_model else None
        self.updates = [
            m
            for m in msgs
            if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == self.html_id
            and m["content"]["data"].get("method") == "update"
        ]
        self.closed = {
            m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_close"
        } & self.widget_ids
        self.displays = [m for m in msgs if m["msg_type"] == "display_data"]
        self.final = [m for m in msgs if m["msg_type"] == "update_display_data"]
        self.summary = [
            m["content"]["data"]
            for m in msgs
            if m["msg_type"] == "comm_close" and m["content"]["data"].get("kind") == "summary"
        ]

    def values(self) -> list[str]:
        return [m["content"]["data"]["state"]["value"] for m in self.updates]

    def attr(self, name: str) -> list[float]:
        """A numeric data attribute of the live HTML, per update."""
        out = []
        for v in self.values():
            i = v.index(f'{name}="') + len(f'{name}="')
            out.append(float(v[i : v.index('"', i)]))
        return out


def run_cell(kc, code, cell_id, **kw) -> Seen:
    reply, msgs = execute(kc, code, cell_id, **kw)
    return Seen(reply, msgs)


def assert_replaced_by_summary(seen: Seen, *, error: bool) -> None:
    """One widget view, replaced by the static summary; every widget model closed."""
    assert len(seen.displays) == 1, [m["content"]["data"].keys() for m in seen.displays]
    view = seen.displays[0]["content"]
    assert view["data"][VIEW]["model_id"] == seen.html_id
    assert view["data"]["text/plain"].startswith("carbonlab")  # fallbacks in the live bundle
    assert "text/html" in view["data"]
    display_id = view["transient"]["display_id"]
    [final] = seen.final
    assert final["content"]["transient"]["display_id"] == display_id
    data = final["content"]["data"]
    assert VIEW not in data, "the saved output must be the static summary, not a widget view"
    assert "carbonlab-summary" in data["text/html"]
    assert data["text/plain"].startswith("carbonlab · ")
    assert ("the cell raised" in data["text/plain"]) is error
    assert seen.closed == seen.widget_ids, "every widget model is closed at the end"
    # The final update goes out before the kernel reports idle (nbclient stops listening there).
    idle = [
        m
        for m in seen.msgs
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
    ]
    assert seen.msgs.index(final) < seen.msgs.index(idle[0])


# -- through a real kernel ------------------------------------------------------------------------
@pytest.mark.kernel
def test_carbon_cell_widget_updates_live_before_the_reply_then_becomes_the_summary(kc):
    seen = run_cell(kc, busy(3.5), "w-live")
    assert seen.reply["content"]["status"] == "ok"
    # Three small models (the HTML, its layout, its style), opened while the cell runs.
    assert len(seen.widget_opens) == 3 and seen.html_id is not None
    reply_at = _date(seen.reply)
    assert all(_date(m) < reply_at for m in seen.widget_opens)
    live = [m for m in seen.updates if _date(m) < reply_at]
    # Shown after 1 s, then updated at most twice a second: about 5 updates in the 2.5 s left
    # (fewer on a loaded machine; the point is that they come while the cell runs).
    assert len(live) >= 2, "the widget must be updated while the cell runs"
    assert len(seen.updates) <= 2.5 * W.MAX_UPDATE_HZ + 1
    elapsed = seen.attr("data-elapsed-s")  # the sampler's clock, which the throttle uses
    assert min(b - a for a, b in zip(elapsed, elapsed[1:])) >= 1 / W.MAX_UPDATE_HZ - 1e-3
    energies = seen.attr("data-energy-j")
    assert energies == sorted(energies) and energies[-1] > energies[0] > 0  # rising
    first = seen.values()[0]
    assert 'data-carbonlab-state="running"' in first and 'data-mode="full"' in first
    assert "cpu-time-model (process)" in first  # method labels while it runs
    # The widget's state stays small: one short HTML string per update.
    assert max(len(json.dumps(m["content"]["data"])) for m in seen.updates) < 4000
    assert_replaced_by_summary(seen, error=False)
    text = seen.final[0]["content"]["data"]["text/plain"]
    assert "cpu-time-model (process)" in text  # the same summary as the static display
    # Never a widget and a duplicate static block: the only display is the widget's.
    assert [m["msg_type"] for m in seen.msgs].count("display_data") == 1
    # The comm summary carries the advice (null: no live forecast configured in this kernel).
    [summary] = seen.summary
    assert "advice" in summary and summary["advice"] is None


@pytest.mark.kernel
def test_a_raising_cell_leaves_a_final_non_running_summary(kc):
    code = busy(2.0, "%%carbon\n").replace("'done'", "raise ValueError('boom')")
    seen = run_cell(kc, code, "w-raise")
    assert seen.reply["content"]["status"] == "error"
    assert seen.widget_opens, "the widget was up before the exception"
    assert_replaced_by_summary(seen, error=True)
    assert seen.summary[0]["error"] is True


@pytest.mark.kernel
def test_an_interrupted_cell_leaves_a_final_non_running_summary(km_kc, kc):
    km, _ = km_kc
    interrupted: list[bool] = []

    def interrupt_once_live(m):
        # Interrupt after the widget has been updated at least once (it is surely up and live).
        if (
            not interrupted
            and m["msg_type"] == "comm_msg"
            and m["content"]["data"].get("method") == "update"
        ):
            interrupted.append(True)
            km.interrupt_kernel()

    t = time.monotonic()
    seen = run_cell(kc, busy(30.0), "w-interrupt", on_iopub=interrupt_once_live)
    assert interrupted and time.monotonic() - t < 20
    assert seen.reply["content"]["status"] == "error"
    assert seen.reply["content"]["ename"] == "KeyboardInterrupt"
    assert_replaced_by_summary(seen, error=True)
    # The kernel still works, and the next long cell gets a widget again.
    again = run_cell(kc, busy(2.0), "w-after-interrupt")
    assert again.reply["content"]["status"] == "ok" and again.widget_opens


@pytest.mark.kernel
def test_automatic_mode_shows_the_widget_only_after_the_threshold(kc):
    kc.execute_interactive("%carbon widget --after 0.75", timeout=30)
    quick = run_cell(kc, "sum(range(10**5))", "w-quick", comm=False)  # short: no comm
    assert quick.reply["content"]["status"] == "ok"
    assert quick.widget_opens == [] and quick.final == []  # as without widgets
    slow = run_cell(kc, busy(2.5, ""), "w-slow")
    assert slow.reply["content"]["status"] == "ok" and slow.updates
    [cell_open] = [
        m
        for m in slow.msgs
        if m["msg_type"] == "comm_open" and m["content"]["target_name"] == TARGET_NAME
    ]
    t0 = cell_open["content"]["data"]["t0"]
    shown_at = _date(slow.displays[0]).timestamp()
    assert shown_at - t0 >= 0.75
    assert_replaced_by_summary(slow, error=False)


@pytest.mark.kernel
def test_the_sidebar_hello_keeps_the_widget_small_and_off_means_static(kc):
    import uuid

    comm_id = uuid.uuid4().hex
    kc.shell_channel.send(
        kc.session.msg(
            "comm_open",
            {
                "comm_id": comm_id,
                "target_name": W.HELLO_TARGET,
                "data": {"v": 1, "sidebar": True},
            },
        )
    )
    # Sent on the shell channel like the next execute request, so handled before it.
    try:
        seen = run_cell(kc, busy(2.5), "w-compact")
        assert seen.updates
        assert all('data-mode="compact"' in v for v in seen.values())
        assert "details in the carbonlab sidebar" in seen.values()[0]
        assert_replaced_by_summary(seen, error=False)
        final = seen.final[0]["content"]["data"]
        assert "carbonlab-oneline" in final["text/html"]
        assert (
            "\n" not in final["text/plain"] and "cpu-time-model (cpu, model)" in final["text/plain"]
        )

        kc.execute_interactive("%carbon widget --sidebar off", timeout=30)
        off = run_cell(kc, busy(1.0), "w-off")
        assert off.widget_opens == [] and off.final == []
        assert (
            len(off.displays) == 1
            and "carbonlab-summary" in off.displays[0]["content"]["data"]["text/html"]
        )
    finally:
        kc.shell_channel.send(kc.session.msg("comm_close", {"comm_id": comm_id, "data": {}}))
    # The sidebar is gone: full widgets again.
    kc.execute_interactive("%carbon widget --sidebar compact", timeout=30)
    full = run_cell(kc, busy(2.5), "w-full-again")
    assert full.updates and all('data-mode="full"' in v for v in full.values())


@pytest.mark.kernel
def test_widget_off_gives_the_static_summary_as_before(kc):
    kc.execute_interactive("%carbon widget off", timeout=30)
    seen = run_cell(kc, busy(1.0), "w-disabled")
    assert seen.widget_opens == [] and seen.final == []
    [d] = seen.displays
    assert "carbonlab-summary" in d["content"]["data"]["text/html"]


@pytest.mark.kernel
def test_nbclient_saves_the_static_summary_not_a_widget_view(tmp_path, monkeypatch):
    # nbconvert --execute runs an ipykernel too: the widget is assumed, and its final update
    # leaves the static summary in the saved notebook.
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CARBONLAB_HISTORY", str(tmp_path / "h.sqlite"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext carbonlab"),
        nbformat.v4.new_code_cell(busy(2.0)),
    ]
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = nb.cells[1].outputs
    summaries = [o for o in outputs if o.get("output_type") == "display_data"]
    assert len(summaries) == 1
    data = summaries[0]["data"]
    assert VIEW not in data and "carbonlab-summary" in data["text/html"]
    assert data["text/plain"].startswith("carbonlab · ")
    assert any(o.get("output_type") == "execute_result" for o in outputs)


# -- terminal IPython: no widget --------------------------------------------------------------------
def test_terminal_ipython_gets_the_static_summary_and_no_widget(meter, ip):  # noqa: F811
    from carbonlab.jupyter import extension

    ext = extension.get(ip)
    assert ext.widgets is None  # no kernel: no widget, no hello target
    r, cap = run(ip, "%%carbon --label t\nmeter.add(5.0)")
    assert r.success
    assert all(VIEW not in o.data for o in cap.outputs)
    assert len(cap.outputs) == 1 and "carbonlab · t · " in shown(cap)
    assert "carbonlab-summary" in html(cap)
    r, cap = run(ip, "%carbon status")
    assert "in-cell live widget: off (not in a Jupyter kernel" in shown(cap)


# -- the widget's logic, with fakes -----------------------------------------------------------------
class FakeView:
    def __init__(self, value, on_close):
        self.values = [value]
        self.on_close = on_close
        self.closed = False
        self.model_id = "m-1"

    def set(self, value):
        self.values.append(value)

    def close(self):
        self.closed = True


class FakeHandle:
    def __init__(self, bundle):
        self.bundle = bundle
        self.updates = []

    def update(self, obj, raw=False):
        self.updates.append(obj)


class FakeRun:
    class options:
        quiet = False
        automatic = False

    class window:
        label = "In [3]"

    widget = None


def _widgets(**config):
    handles: list[FakeHandle] = []
    views: list[FakeView] = []

    def make_view(value, on_close):
        views.append(FakeView(value, on_close))
        return views[-1]

    def display(bundle):
        handles.append(FakeHandle(bundle))
        return handles[-1]

    ws = W.Widgets(W.WidgetConfig(**config), available=True, make_view=make_view, display=display)
    return ws, views, handles


def sample(t, cpu_j, co2=None, power=None):
    return {
        "kind": "sample",
        "t": t,
        "power_w": power or {},
        "energy_j": {"cpu": cpu_j},
        "co2e_g": co2,
    }


DEVICES = {
    "label": "In [3]",
    "devices": [
        {
            "kind": "cpu",
            "device": "pkg",
            "name": "Xeon",
            "method": "cpu-time-model",
            "scope": "process",
        }
    ],
}


def test_updates_are_throttled_to_two_a_second_and_end_replaces_the_view():
    ws, views, handles = _widgets()
    run = FakeRun()
    w = ws.sink(run)
    assert run.widget is w
    w.open(DEVICES)
    for i in range(1, 13):  # 4 Hz for 3 s
        w.sample(sample(i * 0.25, i * 10.0, co2=i * 1e-3))
    [view], [handle] = views, handles
    assert handle.bundle[VIEW]["model_id"] == "m-1" and "text/plain" in handle.bundle
    # Shown after 1 s (a %%carbon cell), then updated at most every 0.5 s.
    assert w.updates == 4 and len(view.values) == 5
    last = view.values[-1]
    assert 'data-energy-j="120"' in last and "cpu-time-model (process)" in last
    assert "40 W" in last  # no power reading: the mean since the last tick (10 J / 0.25 s)
    w.stop()
    w.sample(sample(3.5, 200.0))
    assert len(view.values) == 5  # nothing after the run ended
    assert w.end("the summary") is True
    assert handle.updates == ["the summary"] and view.closed
    assert w.end("again") is True and handle.updates == ["the summary"]


def test_the_cluster_is_shown_per_host_as_in_the_sidebars_details():
    """A sample with an attached cluster's ``cluster_hosts``: the widget lists each engine and
    host under the cluster's line (power, energy, workers), not one line for the whole cluster;
    past eight hosts the rest share one line."""
    ws, views, handles = _widgets()
    w = ws.sink(FakeRun())
    w.open(DEVICES)
    hosts = [
        {"engine": "dask", "host": "gpu-a", "workers": 2, "energy_j": 30.0, "power_w": 20.0},
        {"engine": "ray", "host": "<b>b</b>", "workers": 1, "energy_j": 12.0, "power_w": None},
    ]
    msg = sample(1.5, 1.0, power={"cluster": 20.0})
    msg["energy_j"]["cluster"] = 42.0
    w.sample({**msg, "cluster_hosts": hosts})
    (view,) = views
    out = view.values[-1]
    rows = out.split("<tr")[1:]
    (line,) = [r for r in rows if ">cluster<" in r]
    a, b = [r for r in rows if "↳" in r]
    assert rows.index(a) == rows.index(line) + 1 and rows.index(b) == rows.index(line) + 2
    assert "dask gpu-a" in a and "20 W" in a and "30 J" in a and "2 workers" in a
    assert "ray &lt;b&gt;b&lt;/b&gt;" in b and "… W" in b and "1 worker<" in b
    assert "<b>b</b>" not in out
    many = [
        {"engine": "dask", "host": f"h{i}", "workers": 1, "energy_j": 1.0, "power_w": 1.0}
        for i in range(10)
    ]
    s = W.LiveState(t=2.0, energy_j={"cluster": 10.0}, cluster_hosts=many)
    out = W.live_html(s, W.FULL)
    assert out.count("↳") == W.MAX_HOST_ROWS + 1
    assert "↳ 2 more hosts" in out and "2 workers" in out


def test_a_failed_replacement_still_closes_the_widget_and_lets_the_summary_show():
    ws, views, handles = _widgets()
    w = ws.sink(FakeRun())
    w.sample(sample(1.25, 1.0))

    def fail(obj, raw=False):
        raise RuntimeError("iopub is gone")

    handles[0].update = fail
    w.stop()
    with pytest.raises(RuntimeError, match="iopub is gone"):
        w.end("summary")
    assert views[0].closed and not w.replaced  # report() then displays the static summary


def test_labels_are_escaped_in_the_live_html():
    s = W.LiveState(label="<b>x</b>", t=1.0, energy_j={"cpu": 1.0})
    out = W.live_html(s, W.FULL)
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "<b>x</b>" not in out


def test_automatic_runs_show_only_after_the_threshold_and_quiet_never():
    ws, views, handles = _widgets(after_s=2.0)
    run = FakeRun()
    run.options = type("O", (), {"quiet": False, "automatic": True})
    w = ws.sink(run)
    w.sample(sample(1.0, 1.0))
    w.sample(sample(1.9, 2.0))
    assert handles == []
    w.sample(sample(2.1, 3.0))
    assert len(handles) == 1
    quiet = FakeRun()
    quiet.options = type("O", (), {"quiet": True, "automatic": False})
    assert ws.sink(quiet) is None
    # A run that ended before the widget showed has nothing to replace.
    w2 = ws.sink(run)
    w2.stop()
    assert w2.end("summary") is False


def test_presence_counts_sidebar_hellos_and_modes_follow_it():
    ws, views, handles = _widgets(sidebar="compact")
    p = ws.presence

    class Comm:
        def __init__(self, cid):
            self.comm_id = cid
            self.close_cb = None

        def on_close(self, cb):
            self.close_cb = cb

    assert ws.mode() == W.FULL and not p.active
    other = Comm("c0")
    p.on_open(other, {"content": {"data": {"v": 1}}})  # not a sidebar: not counted
    assert not p.active and other.close_cb is None
    c = Comm("c1")
    p.on_open(c, {"content": {"data": {"v": 1, "sidebar": True}}})
    assert p.active and ws.mode() == W.COMPACT and ws.showing()
    ws.config.sidebar = "full"
    assert ws.mode() == W.FULL
    ws.config.sidebar = "off"
    assert not ws.showing() and ws.sink(FakeRun()) is None
    c.close_cb({})
    assert not p.active and ws.showing()


def test_the_widget_is_compact_only_while_a_sidebar_is_visible():
    # Issue 14: the labextension being there is not enough; the panel must be showing. It says
    # so in its hello (v2) and in {"kind": "visible"} messages when it is shown or hidden.
    ws, views, handles = _widgets(sidebar="compact")
    p = ws.presence

    class Comm:
        def __init__(self, cid):
            self.comm_id = cid

        def on_close(self, cb):
            self.close_cb = cb

        def on_msg(self, cb):
            self.msg_cb = cb

    c = Comm("h1")
    p.on_open(c, {"content": {"data": {"v": 2, "sidebar": True, "visible": False}}})
    assert p.active and not p.visible and ws.mode() == W.FULL
    assert "carbonlab sidebar: hidden" in ws.status_line()
    c.msg_cb({"content": {"data": {"kind": "visible", "visible": True}}})
    assert p.visible and ws.mode() == W.COMPACT
    c.msg_cb({"content": {"data": {"kind": "visible", "visible": False}}})
    assert ws.mode() == W.FULL
    ws.config.sidebar = "off"
    assert ws.showing()  # "off" applies beside a visible sidebar only
    c.msg_cb({"content": {"data": {"kind": "visible", "visible": True}}})
    assert not ws.showing()
    c.close_cb({})
    assert not p.active and ws.showing()


def test_a_hello_v2_gets_the_state_first_then_the_forwarded_run():
    # The answer runs on its own thread; samples forwarded before the state are dropped, the
    # summary waits for it.
    import threading

    ws, views, handles = _widgets()
    p = ws.presence
    sent: list = []
    go = threading.Event()

    class Comm:
        comm_id = "h2"

        def on_close(self, cb):
            self.close_cb = cb

        def on_msg(self, cb):
            pass

        def send(self, data):
            sent.append(data)

    forwards = []

    def state(channel):
        forwards.append(channel.forward("r9"))
        go.wait(10)
        return {"kind": "state", "runs": [], "running": [{"run_id": "r9"}]}

    p.state_source = state
    p.on_open(Comm(), {"content": {"data": {"v": 2, "sidebar": True, "visible": True}}})
    for _ in range(500):
        if forwards:
            break
        threading.Event().wait(0.01)
    [f] = forwards
    f.sample({"kind": "sample", "t": 1.0})
    f.close({"kind": "summary", "status": "done"})
    assert sent == []
    go.set()
    for _ in range(500):
        if len(sent) == 2:
            break
        threading.Event().wait(0.01)
    assert [d["kind"] for d in sent] == ["state", "summary"]
    assert sent[1]["run_id"] == "r9"
    f.sample({"kind": "sample", "t": 2.0})
    assert sent[-1] == {"kind": "sample", "t": 2.0, "run_id": "r9"}


def test_a_frontend_that_closes_the_widget_turns_widgets_off():
    ws, views, handles = _widgets()
    w = ws.sink(FakeRun())
    w.sample(sample(1.25, 1.0))
    views[0].on_close()  # the frontend closed the widget's comm: no widget manager there
    assert ws.frontend_without_widgets and ws.sink(FakeRun()) is None
    assert "no widget manager" in ws.status_line()


def test_a_failing_widget_never_breaks_the_run():
    def broken_view(value, on_close):
        raise RuntimeError("no ipywidgets here")

    ws = W.Widgets(W.WidgetConfig(), available=True, make_view=broken_view, display=lambda b: None)
    w = ws.sink(FakeRun())
    w.sample(sample(1.25, 1.0))
    assert not w.shown and not w.listening and "no ipywidgets here" in ws.errors[0]
    assert w.end("summary") is False  # the caller shows the static summary


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({W.ENV_WIDGET: "maybe"}, "expected auto or off"),
        ({W.ENV_SIDEBAR: "tiny"}, "expected one of compact, full, off"),
        ({W.ENV_AFTER: "-1"}, "expected seconds between 0"),
        ({W.ENV_AFTER: "soon"}, "expected seconds between 0"),
    ],
)
def test_bad_widget_settings_name_the_value(env, message):
    with pytest.raises(W.WidgetConfigError, match=message):
        W.config_from_env(env)


def test_widget_settings_from_the_environment():
    c = W.config_from_env({W.ENV_WIDGET: "off", W.ENV_SIDEBAR: "FULL", W.ENV_AFTER: "2.5s"})
    assert (c.enabled, c.sidebar, c.after_s) == (False, "full", 2.5)
    assert c.source("after_s") == f"environment {W.ENV_AFTER}"
    assert W.config_from_env({}) == W.WidgetConfig()


def test_a_bad_widget_setting_is_a_usage_error_at_load(ip, tmp_path, monkeypatch):  # noqa: F811
    from IPython.core.error import UsageError

    from carbonlab.jupyter import extension
    from tests import fakes

    fakes.install([fakes.ScriptedMeter("cpu")], history=str(tmp_path / "h.sqlite"))
    monkeypatch.setenv(W.ENV_SIDEBAR, "tiny")
    with pytest.raises(UsageError, match="CARBONLAB_WIDGET_SIDEBAR='tiny'"):
        ip.run_line_magic("load_ext", "carbonlab")
    assert extension.get(ip) is None


def test_run_advice_and_the_summary_field():
    from carbonlab.config import Settings
    from carbonlab.jupyter.comm import LiveRun
    from carbonlab.jupyter.extension import run_advice
    from tests.test_comm_kernel import FakeSampler, FakeSink, FakeWindow

    assert run_advice({"energy_j": 5.0, "duration_s": 1.0}, Settings(zone="FR")) is None
    sink = FakeSink()
    live = LiveRun(
        sampler=FakeSampler([]),
        window=FakeWindow(),
        sinks=[sink],
        open_data=lambda m: ({"v": 1}, None),
        advice=lambda m: {"sentence": "later is greener"},
    )
    live.start()
    live.finish({"energy_j": 1.0}, error=False)
    assert sink.events[-1][1]["advice"] == {"sentence": "later is greener"}

    def broken(m):
        raise RuntimeError("no forecast math today")

    sink2 = FakeSink()
    live2 = LiveRun(
        sampler=FakeSampler([]),
        window=FakeWindow(),
        sinks=[sink2],
        open_data=lambda m: ({"v": 1}, None),
        advice=broken,
    )
    live2.start()
    live2.finish({"energy_j": 1.0}, error=False)
    assert sink2.events[-1][1]["advice"] is None and "no forecast math today" in live2.errors[0]


def test_loading_in_a_kernel_announces_itself_once_to_the_sidebar(monkeypatch):
    """A sidebar's hello sent before `%load_ext` found no target, and short runs open no comm:
    the load itself opens (and closes) one `carbonlab.kernel` comm so the sidebar says hello."""
    import comm

    opened: list[tuple[str, dict]] = []

    class Recorded:
        def __init__(self, target_name, data):
            opened.append((target_name, data))
            self.closed = False

        def close(self):
            self.closed = True
            opened.append(("closed", {}))

    monkeypatch.setattr(comm, "create_comm", lambda target_name, data: Recorded(target_name, data))
    W.SidebarPresence().announce()
    assert opened == [(W.ANNOUNCE_TARGET, {"v": W.HELLO_VERSION}), ("closed", {})]
