"""The in-cell live widget: a long cell's power, energy and CO2e growing in its own output.

Where the JupyterLab sidebar is not there (VS Code, Notebook 7, JupyterLab without carbonlab's
labextension), a measured cell still shows its figures live: an ``ipywidgets.HTML`` in the cell's
output, updated from the sampler thread at most :data:`MAX_UPDATE_HZ` times a second, replaced by
the static summary (:class:`carbonlab.jupyter.display.CellSummary`, with method labels) when the
cell ends, whether it returned, raised or was interrupted.

When it shows:

- ``%%carbon`` cells: once the cell has run :data:`MAGIC_AFTER_S` (1 s);
- automatic mode: once the cell has run :attr:`WidgetConfig.after_s` (2 s by default; a smaller
  value applies to ``%%carbon`` cells too);
- never with ``--quiet``, outside a Jupyter kernel, without ipywidgets, or when turned off.

Quicker cells show the static summary (or nothing, below the threshold) exactly as without widgets,
under the cell's value. A cell that got the widget keeps its summary where the widget was, which
is above the cell's value (the widget was displayed while the cell ran, before its value existed).

**How "a frontend renders widgets" is decided, honestly.** A kernel cannot ask its frontends what
they render. In a kernel started by Jupyter (ipykernel) with ipywidgets importable a widget
frontend is *assumed*, unless turned off (``CARBONLAB_WIDGET=off``, ``%carbon widget off``).
Terminal IPython has no kernel, so it gets the static summary. A frontend with no widget manager
closes the widget's comm (JupyterLab does so for a target nobody registered): the first such close
turns widgets off for the rest of the session, and the run it happened to already got the static
summary (below). nbclient / ``nbconvert --execute`` runs an ipykernel too: it records the widget's
(small, closed) model state in the notebook metadata, and applies the final update, so the executed
notebook's output is the static summary.

**How "the sidebar is showing this notebook" is decided.** ipykernel cannot see which comm
targets a frontend registered, so the sidebar says so: it opens a comm to the kernel on the target
:data:`HELLO_TARGET` (``carbonlab.hello``, data ``{"v": 2, "sidebar": true, "visible": bool}``)
once per kernel connection, and sends ``{"kind": "visible", "visible": bool}`` when its panel is
shown or hidden (labextension/src/tracker.ts). While some hello says visible, the in-cell widget
follows :attr:`WidgetConfig.sidebar` (``compact`` by default: one line; ``full``; or ``off``: no
live widget, the static summary as without widgets); a sidebar never opened, or collapsed, leaves
it full. A v1 hello (no ``visible``) counts as visible. The kernel answers a v2 hello with this
notebook's runs and the runs in flight (:class:`HelloChannel`, docs/sidebar.md). JupyterLab sends
comms over subshells, so ipykernel 7 handles the hello on a subshell thread even while a cell runs:
a widget may start full and turn compact at its next update. A closed tab or a kernel change
closes the comm. (The kernel does not announce itself: a comm left open for that would outlive
every cell.)

**What the saved notebook keeps.** The widget is displayed with a display id; when the run ends the
same output is replaced (``update_display_data``) by the static summary's ``text/html`` and
``text/plain``, and the widget's models are closed. The alternative (keep the widget view, with
fallbacks in its bundle) is worse in JupyterLab: a widget view whose model is gone renders as "Error
displaying widget: model not found" (ipywidgets 8) rather than its fallback, and it keeps widget
state alive for nothing. So the saved notebook has a static summary that renders without a kernel,
and no widget state (JupyterLab does not save closed models). The live bundle still carries
``text/plain`` and ``text/html`` fallbacks, for a frontend that cannot render widgets and for a kernel
that died mid-cell (no final update could come); it is also marked with :data:`LIVE_MIMETYPE`,
which the sidebar looks for to replace the output by a static "interrupted" summary when the
kernel restarts or dies mid-run.

Configuration (environment, read at ``%load_ext``; ``%carbon widget`` changes it for the session):
``CARBONLAB_WIDGET`` = ``auto`` (default) | ``off``; ``CARBONLAB_WIDGET_SIDEBAR`` = ``compact``
(default) | ``full`` | ``off``; ``CARBONLAB_WIDGET_AFTER_S`` = seconds before automatic mode shows
the widget (default 2).
"""

from __future__ import annotations

import html
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..measurement import MODEL_METHODS
from ..units import format_co2e, format_duration, format_energy, format_power

HELLO_TARGET = "carbonlab.hello"
# Opened (and closed at once) by the kernel when carbonlab is loaded: a sidebar whose hello came
# before the load found no target, and short runs open no comm, so this tells it to say hello again.
ANNOUNCE_TARGET = "carbonlab.kernel"
HELLO_VERSION = (
    2  # v2: visibility, and the kernel's answer (state, forwarded runs); see docs/sidebar.md
)
MAX_UPDATE_HZ = 2.0  # widget updates; the comm's samples may be up to 4 Hz
# ``%%carbon`` cells show the widget after this long: a sub-second cell would only flash it.
MAGIC_AFTER_S = 1.0
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"
# Marks the live widget's output (with its run id): the sidebar replaces an output still carrying
# it when the kernel restarts or dies mid-run (no final update can come), so the saved notebook
# shows a static "interrupted" summary, never "Error displaying widget: model not found".
LIVE_MIMETYPE = "application/vnd.carbonlab.live+json"

ENV_WIDGET = "CARBONLAB_WIDGET"
ENV_SIDEBAR = "CARBONLAB_WIDGET_SIDEBAR"
ENV_AFTER = "CARBONLAB_WIDGET_AFTER_S"
SIDEBAR_MODES = ("compact", "full", "off")
_ON = ("auto", "on", "1", "true", "yes")
_OFF = ("off", "0", "false", "no")
MAX_AFTER_S = 86400.0

FULL = "full"
COMPACT = "compact"


class WidgetConfigError(ValueError):
    """A widget setting carbonlab cannot use; the message names the value and what is accepted."""


@dataclass
class WidgetConfig:
    """Whether and how the live widget shows (see the module docstring)."""

    enabled: bool = True
    sidebar: str = COMPACT  # with the sidebar active: compact | full | off
    after_s: float = 2.0  # automatic mode: seconds before the widget appears
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")


def parse_enabled(value: str, name: str = ENV_WIDGET) -> bool:
    v = value.strip().lower()
    if v in _ON:
        return True
    if v in _OFF:
        return False
    raise WidgetConfigError(f"{name}={value!r}: expected auto or off")


def parse_sidebar(value: str, name: str = ENV_SIDEBAR) -> str:
    v = value.strip().lower()
    if v not in SIDEBAR_MODES:
        raise WidgetConfigError(f"{name}={value!r}: expected one of {', '.join(SIDEBAR_MODES)}")
    return v


def parse_after(value: str, name: str = ENV_AFTER) -> float:
    """Seconds, ``"2"``, ``"2.5"`` or ``"2s"``."""
    v = value.strip().lower()
    v = v[:-1].strip() if v.endswith("s") else v
    try:
        f = float(v)
    except ValueError:
        f = math.nan
    if not 0.0 <= f <= MAX_AFTER_S:  # also refuses NaN
        raise WidgetConfigError(
            f"{name}={value!r}: expected seconds between 0 and {MAX_AFTER_S:g} (e.g. 2 or 2.5s)"
        )
    return f


def config_from_env(env: Mapping[str, str] | None = None) -> WidgetConfig:
    """The widget settings from the environment; :class:`WidgetConfigError` for a bad value."""
    env = os.environ if env is None else env
    c = WidgetConfig()
    for var, attr, parse in (
        (ENV_WIDGET, "enabled", parse_enabled),
        (ENV_SIDEBAR, "sidebar", parse_sidebar),
        (ENV_AFTER, "after_s", parse_after),
    ):
        raw = env.get(var, "")
        if raw.strip():
            setattr(c, attr, parse(raw))
            c.sources[attr] = f"environment {var}"
    return c


_ipywidgets: bool | None = None


def ipywidgets_available() -> bool:
    """ipywidgets can be imported here (looked up once, not imported)."""
    global _ipywidgets
    if _ipywidgets is None:
        import importlib.util

        try:
            _ipywidgets = importlib.util.find_spec("ipywidgets") is not None
        except (ImportError, ValueError):
            _ipywidgets = False
    return _ipywidgets


# -- the sidebar's hello ----------------------------------------------------------------------------
class HelloChannel:
    """One sidebar's hello comm, as the kernel answers on it (hello v2): first the ``state``
    message, then the samples and summaries of the runs that were in flight when it said hello
    (forwarded: the page that opened it never saw their comms). Forwarded messages wait for the
    state; samples before it are dropped (a later one follows), a summary is kept."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self._lock = threading.Lock()
        self._ready = False
        self._pending: list[dict[str, Any]] = []
        self.closed = False

    def send(self, data: dict[str, Any]) -> None:
        if not self.closed:
            self.comm.send(data)

    def send_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            self.send(state)
            self._ready = True
            pending, self._pending = self._pending, []
            for m in pending:
                self.send(m)

    def send_runs(self, msg: dict[str, Any]) -> None:
        """Finished short runs (carbonlab.jupyter.comm.RunBatch): after the state, like a summary."""
        self._forward(msg, keep=True)

    def forward(self, run_id: str) -> _Forward:
        return _Forward(self, run_id)

    def _forward(self, msg: dict[str, Any], keep: bool) -> None:
        with self._lock:
            if self._ready:
                self.send(msg)
            elif keep:
                self._pending.append(msg)


class _Forward:
    """A live sink (carbonlab.jupyter.comm.Sink) that forwards one run to a hello channel."""

    def __init__(self, channel: HelloChannel, run_id: str) -> None:
        self._channel = channel
        self._run_id = run_id

    @property
    def listening(self) -> bool:
        return not self._channel.closed

    def open(self, data: dict[str, Any]) -> None:
        pass  # the state message carried it

    def sample(self, data: dict[str, Any]) -> None:
        self._channel._forward({**data, "run_id": self._run_id}, keep=False)

    def close(self, data: dict[str, Any]) -> None:
        self._channel._forward({**data, "run_id": self._run_id}, keep=True)


class SidebarPresence:
    """The ``carbonlab.hello`` comms the carbonlab sidebar opened to this kernel.

    Their handlers run on ipykernel's shell or subshell threads, so the set is guarded by a lock.
    ``state_source(channel)``, when set (the extension sets it), makes the ``state`` answer to a
    v2 hello; it runs on its own thread (it reads the history file), never on a cell's path.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, dict[str, Any]] = {}  # comm id -> hello data
        self._channels: dict[str, HelloChannel] = {}  # comm id -> channel, v2 hellos
        self._manager: Any = None
        self.state_source: Callable[[HelloChannel], dict[str, Any]] | None = None
        self.errors: list[str] = []

    @property
    def active(self) -> bool:
        return bool(self._open)

    @property
    def visible(self) -> bool:
        """Some sidebar showing this kernel's cells is visible (a v1 hello does not say: it
        counts as visible, as before)."""
        with self._lock:
            return any(d.get("visible", True) is not False for d in self._open.values())

    def channels(self) -> list[HelloChannel]:
        """The v2 sidebars' hello channels (they take short runs batched)."""
        with self._lock:
            return [c for c in self._channels.values() if not c.closed]

    def wants_comms(self) -> bool:
        """Some sidebar said a v1 hello: it sees runs only through their own comms."""
        with self._lock:
            return any(d.get("v", HELLO_VERSION) < 2 for d in self._open.values())

    def register(self, manager: Any = None) -> None:
        """Listen for hellos on ``manager`` (default: the kernel's comm manager)."""
        if manager is None:
            import comm

            manager = comm.get_comm_manager()
        manager.register_target(HELLO_TARGET, self.on_open)
        self._manager = manager

    def announce(self) -> None:
        """Tell any sidebar that carbonlab now runs in this kernel (one comm open and close, once
        per load; without a frontend it is one unread iopub message)."""
        import comm

        c = comm.create_comm(target_name=ANNOUNCE_TARGET, data={"v": HELLO_VERSION})
        c.close()

    def unregister(self) -> None:
        m = self._manager
        if m is not None:
            try:
                m.unregister_target(HELLO_TARGET, self.on_open)
            except Exception:
                pass
            self._manager = None
        with self._lock:
            self._open.clear()
            self._channels.clear()

    def on_open(self, comm: Any, msg: dict[str, Any]) -> None:
        """A frontend opened a ``carbonlab.hello`` comm."""
        data = (msg.get("content") or {}).get("data") or {}
        if not isinstance(data, dict) or data.get("sidebar") is not True:
            return  # not a sidebar: not counted
        v = data.get("v", HELLO_VERSION)
        if not isinstance(v, int) or v > HELLO_VERSION:
            return  # a newer protocol may mean something else: not counted
        cid = comm.comm_id
        with self._lock:
            self._open[cid] = dict(data)
        channel = HelloChannel(comm)
        if v >= 2 and self.state_source is not None:  # it gets a state, then batched runs
            with self._lock:
                self._channels[cid] = channel

        def closed(_msg: Any) -> None:
            channel.closed = True
            with self._lock:
                self._open.pop(cid, None)
                self._channels.pop(cid, None)

        def message(msg: dict[str, Any]) -> None:
            d = (msg.get("content") or {}).get("data") or {}
            if isinstance(d, dict) and d.get("kind") == "visible":
                with self._lock:
                    if cid in self._open:
                        self._open[cid]["visible"] = d.get("visible") is True

        comm.on_close(closed)
        if hasattr(comm, "on_msg"):
            comm.on_msg(message)
        source = self.state_source
        if v >= 2 and source is not None:
            threading.Thread(
                target=self._answer, args=(channel, source), name="carbonlab-hello", daemon=True
            ).start()

    def _answer(self, channel: HelloChannel, source: Callable[[HelloChannel], Any]) -> None:
        try:
            channel.send_state(source(channel))
        except Exception as e:  # the sidebar then shows what it sees from now on
            msg = f"sidebar state: {type(e).__name__}: {e}"
            if msg not in self.errors:
                self.errors.append(msg)


# -- what the live widget shows ---------------------------------------------------------------------
@dataclass
class LiveState:
    """The figures the widget shows, from the comm's open and sample messages."""

    label: str = ""
    t: float = 0.0  # seconds since the run began
    power_w: dict[str, float] = field(default_factory=dict)
    energy_j: dict[str, float] = field(default_factory=dict)
    co2e_g: float | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    # The "cluster" entry per engine and host (the samples' ``cluster_hosts``, largest first).
    cluster_hosts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def energy_total_j(self) -> float:
        return sum(self.energy_j.values())

    @property
    def power_total_w(self) -> float | None:
        return sum(self.power_w.values()) if self.power_w else None

    def kinds(self) -> list[str]:
        seen: list[str] = []
        for d in self.devices:
            if d.get("kind") not in seen:
                seen.append(str(d.get("kind")))
        for k in self.energy_j:
            if k not in seen:
                seen.append(k)
        return seen

    def methods(self, kind: str) -> tuple[str, str, bool]:
        """(methods with scopes, device names, any model) of one kind."""
        ds = [d for d in self.devices if d.get("kind") == kind]
        methods = list(dict.fromkeys(f"{d.get('method')} ({d.get('scope')})" for d in ds))
        names = list(dict.fromkeys(str(d.get("name") or d.get("device") or "") for d in ds))
        model = any(d.get("method") in MODEL_METHODS for d in ds)
        return ", ".join(methods), ", ".join(n for n in names if n), model


_BOX = (
    "font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.4;"
    "border-left:3px solid var(--carbonlab-accent,#1565c0);padding:2px 8px;margin:2px 0"
)
_RUNNING = (
    '<span class="carbonlab-running" style="color:var(--carbonlab-accent,#1565c0)">● running</span>'
)


def _co2e(g: float | None) -> str:
    return "CO2e …" if g is None else format_co2e(g)


def _power(w: float | None) -> str:
    return "… W" if w is None else format_power(w)


def live_html(s: LiveState, mode: str) -> str:
    """The widget's HTML while the run goes on (escaped: labels come from the user)."""
    e = html.escape
    attrs = (
        f'class="carbonlab-live" data-carbonlab-state="running" data-mode="{mode}" '
        f'data-elapsed-s="{s.t:.3f}" data-energy-j="{s.energy_total_j:.6g}"'
    )
    figures = (
        f"{e(format_duration(s.t))} · {e(_power(s.power_total_w))} · "
        f"{e(format_energy(s.energy_total_j))} · {e(_co2e(s.co2e_g))}"
    )
    label = f" · {e(s.label)}" if s.label else ""
    if mode == COMPACT:
        return (
            f'<div {attrs} style="{_BOX}"><b>carbonlab</b>{label} · {_RUNNING} · {figures}'
            ' <span style="color:var(--carbonlab-muted,var(--jp-content-font-color2,#595959))">'
            "(details in the carbonlab sidebar)</span></div>"
        )
    rows = []
    for kind in s.kinds():
        methods, names, model = s.methods(kind)
        mark = ' <span style="color:var(--carbonlab-warn,#7a5c00)">[model]</span>' if model else ""
        cells = [
            e(kind),
            e(_power(s.power_w.get(kind))),
            e(format_energy(s.energy_j.get(kind, 0.0))),
            e(methods),
            e(names) + mark,
        ]
        rows.append(cells)
        if kind == "cluster":
            rows += _host_rows(s.cluster_hosts)
    from .display import components_table

    table = components_table(rows, right=(1, 2))
    return (
        f'<div {attrs} style="{_BOX}"><div><b>carbonlab</b>{label} · {_RUNNING}</div>'
        f"<div><b>{figures}</b></div>{table}</div>"
    )


#: Hosts listed under the cluster's line; the rest are summed on one more line.
MAX_HOST_ROWS = 8


def _host_rows(hosts: list[dict[str, Any]]) -> list[list[str]]:
    """One row per engine and host under the cluster's line (as the sidebar row's details): its
    power, energy and the workers measured there; past :data:`MAX_HOST_ROWS`, one line for the
    rest. Gross figures, every client's work: the summary gives this cell's share."""
    e = html.escape
    rows = []
    for h in hosts[:MAX_HOST_ROWS]:
        n = int(h.get("workers") or 0)
        p = h.get("power_w")
        rows.append(
            [
                f"&nbsp;&nbsp;↳ {e(str(h.get('engine', '?')))} {e(str(h.get('host', '?')))}",
                e(_power(float(p) if isinstance(p, (int, float)) else None)),
                e(format_energy(float(h.get("energy_j") or 0.0))),
                "gross, every client's work",
                f"{n} worker{'s' if n != 1 else ''}",
            ]
        )
    rest = hosts[MAX_HOST_ROWS:]
    if rest:
        powers = [h.get("power_w") for h in rest]
        p_rest = (
            sum(float(p) for p in powers)
            if all(isinstance(p, (int, float)) for p in powers)
            else None
        )
        workers = sum(int(h.get("workers") or 0) for h in rest)
        rows.append(
            [
                f"&nbsp;&nbsp;↳ {len(rest)} more hosts",
                e(_power(p_rest)),
                e(format_energy(sum(float(h.get("energy_j") or 0.0) for h in rest))),
                "gross, every client's work",
                f"{workers} workers",
            ]
        )
    return rows


def live_text(s: LiveState) -> str:
    """Plain-text fallback of the live view (what a frontend without widgets keeps)."""
    label = f" {s.label}" if s.label else ""
    return (
        f"carbonlab ·{label} measuring live (needs a widget frontend; the summary replaces this "
        "when the cell ends)"
    )


# -- the widget itself ------------------------------------------------------------------------------
class HTMLView:
    """An ``ipywidgets.HTML`` (three small models: the HTML, its layout and its style)."""

    def __init__(self, value: str, on_frontend_close: Callable[[], None]) -> None:
        import ipywidgets

        self.widget = ipywidgets.HTML(value=value)
        self._closing = False
        c = getattr(self.widget, "comm", None)
        if c is not None and hasattr(c, "on_close"):
            c.on_close(lambda _msg: None if self._closing else on_frontend_close())

    @property
    def model_id(self) -> str:
        return str(self.widget.model_id)

    def set(self, value: str) -> None:
        self.widget.value = value

    def close(self) -> None:
        self._closing = True
        w = self.widget
        for x in (w, getattr(w, "layout", None), getattr(w, "style", None)):
            if x is not None:
                try:
                    x.close()
                except Exception:
                    pass


def _display(bundle: dict[str, Any]) -> Any:
    from IPython.display import display

    return display(bundle, raw=True, display_id=True)


class LiveWidget:
    """A live sink of one run (see :class:`carbonlab.jupyter.comm.Sink`) that shows a widget.

    ``open`` and ``sample`` run on the sampler thread (inside the cell's context, so the display and
    the widget's comm messages belong to the cell); ``end`` runs on the main thread when the run is
    measured, after the live run stopped sampling; ``close`` (the outbox thread) does nothing: the
    final view is the static summary that ``end`` puts in place.
    """

    def __init__(
        self,
        owner: Widgets,
        *,
        label: str,
        show_after_s: float,
        run_id: str = "",
        make_view: Callable[[str, Callable[[], None]], Any] = HTMLView,
        display: Callable[[dict[str, Any]], Any] = _display,
    ) -> None:
        self._owner = owner
        self.run_id = run_id
        self.state = LiveState(label=label)
        self.show_after_s = show_after_s
        self._make_view = make_view
        self._display = display
        self._lock = threading.Lock()
        self.view: Any = None
        self.handle: Any = None
        self.updates = 0  # values pushed to the widget after it was displayed
        self._last_push: float | None = None
        self._prev: tuple[float, dict[str, float]] | None = None
        self.stopped = False  # the run ended: no more showing or updating
        self.ended = False  # end() ran
        self.replaced = False  # the view became the summary
        self.error: str | None = None

    @property
    def shown(self) -> bool:
        return self.handle is not None

    @property
    def listening(self) -> bool:
        return not self.stopped and self.error is None

    @property
    def start_after_s(self) -> float:
        """No sample is wanted before the widget may show."""
        return self.show_after_s

    def needs_close(self) -> bool:
        """The summary that replaces a widget is put in place by ``end``, not by ``close``."""
        return False

    # -- sampler thread ------------------------------------------------------------------------
    def open(self, data: dict[str, Any]) -> None:
        devices = data.get("devices")
        if isinstance(devices, list):
            self.state.devices = [d for d in devices if isinstance(d, dict)]
        label = data.get("label")
        if isinstance(label, str) and label:
            self.state.label = label

    def sample(self, data: dict[str, Any]) -> None:
        with self._lock:
            if self.stopped:
                return
            self._update_state(data)
            t = self.state.t
            if self.handle is None:
                if t < self.show_after_s or not self._owner.showing():
                    return
                self._show()
                return
            if self._last_push is not None and t - self._last_push < 1.0 / MAX_UPDATE_HZ:
                return  # at most MAX_UPDATE_HZ updates a second
            self.view.set(live_html(self.state, self._owner.mode()))
            self._last_push = t
            self.updates += 1

    def _update_state(self, data: dict[str, Any]) -> None:
        s = self.state
        t = float(data.get("t") or 0.0)
        energy = {k: float(v) for k, v in (data.get("energy_j") or {}).items()}
        power = {k: float(v) for k, v in (data.get("power_w") or {}).items()}
        # Meters without a power reading (counters, models): the mean power since the last tick.
        prev = self._prev
        if prev is not None and t > prev[0]:
            for k, e in energy.items():
                if k not in power and k in prev[1]:
                    power[k] = max(0.0, e - prev[1][k]) / (t - prev[0])
        self._prev = (t, energy)
        s.t, s.energy_j, s.power_w = t, energy, power
        hosts = data.get("cluster_hosts")
        s.cluster_hosts = (
            [h for h in hosts if isinstance(h, dict)] if isinstance(hosts, list) else []
        )
        co2 = data.get("co2e_g")
        s.co2e_g = float(co2) if isinstance(co2, (int, float)) else None

    def _show(self) -> None:
        try:
            value = live_html(self.state, self._owner.mode())
            self.view = self._make_view(value, self._owner.frontend_closed_widget)
            bundle = {
                WIDGET_VIEW_MIMETYPE: {
                    "version_major": 2,
                    "version_minor": 0,
                    "model_id": self.view.model_id,
                },
                "text/plain": live_text(self.state),
                "text/html": f"<pre>{html.escape(live_text(self.state))}</pre>",
                LIVE_MIMETYPE: {"v": 1, "run_id": self.run_id, "label": self.state.label},
            }
            self.handle = self._display(bundle)
            self._last_push = self.state.t
        except Exception as e:  # never break the cell; the static summary still comes
            self.error = f"{type(e).__name__}: {e}"
            self._owner.failed(self.error)
            if self.view is not None:
                self.view.close()
                self.view = None

    def close(self, data: dict[str, Any]) -> None:
        pass  # the main thread already replaced the view (see end)

    # -- main thread ---------------------------------------------------------------------------
    def stop(self) -> None:
        """The run ended: from now on the widget neither appears nor changes."""
        with self._lock:
            self.stopped = True

    def end(self, summary: Any) -> bool:
        """Replace the live view by ``summary`` (a displayable, or None: nothing) and close the
        widget's models. True when the view was replaced (the caller then shows nothing more),
        False when there was none. If replacing fails the error propagates, the models are closed
        all the same (widget frontends then drop the live view) and :attr:`replaced` stays False,
        so the caller can show the static summary instead."""
        with self._lock:
            if self.ended:
                return self.replaced
            self.stopped = self.ended = True
            handle, view = self.handle, self.view
        if handle is None:
            return False
        try:
            if summary is None:
                handle.update({"text/plain": ""}, raw=True)
            else:
                handle.update(summary)
            self.replaced = True
        finally:
            if view is not None:
                view.close()
        return True


class Widgets:
    """The live widget's settings and state in one kernel, and the factory of :class:`LiveWidget`."""

    def __init__(
        self,
        config: WidgetConfig | None = None,
        presence: SidebarPresence | None = None,
        *,
        available: bool | None = None,
        make_view: Callable[[str, Callable[[], None]], Any] = HTMLView,
        display: Callable[[dict[str, Any]], Any] = _display,
    ) -> None:
        self.config = config or WidgetConfig()
        self.presence = presence or SidebarPresence()
        self.available = ipywidgets_available() if available is None else available
        self.make_view = make_view
        self.display = display
        self.frontend_without_widgets = False
        self.errors: list[str] = []

    # -- decisions -----------------------------------------------------------------------------
    def wanted(self) -> bool:
        """A live widget would show now (before the sidebar's mode is applied)."""
        return self.config.enabled and self.available and not self.frontend_without_widgets

    def showing(self) -> bool:
        """A live widget shows now: wanted, and not turned off while the sidebar is visible."""
        return self.wanted() and not (self.presence.visible and self.config.sidebar == "off")

    def mode(self) -> str:
        """``full``, or ``compact`` while a sidebar is visible (its ``off`` shows nothing new;
        a widget already up when the sidebar shows is kept, small). A sidebar that is there but
        collapsed, or never opened, leaves the widget full."""
        if self.presence.visible and self.config.sidebar != FULL:
            return COMPACT
        return FULL

    def sink_after_s(self, run: Any) -> float | None:
        """How far into ``run`` its live widget may show, or None where none should show."""
        opts = run.options
        if opts.quiet or not self.showing():
            return None
        return self.config.after_s if opts.automatic else min(self.config.after_s, MAGIC_AFTER_S)

    def sink(self, run: Any) -> LiveWidget | None:
        """A live widget for ``run`` (a CellRun), or None where none should show."""
        after = self.sink_after_s(run)
        if after is None:
            return None
        w = LiveWidget(
            self,
            label=run.window.label,
            run_id=str(getattr(run, "run_id", "") or ""),
            show_after_s=after,
            make_view=self.make_view,
            display=self.display,
        )
        run.widget = w
        return w

    # -- events --------------------------------------------------------------------------------
    def frontend_closed_widget(self) -> None:
        """A frontend closed a widget's comm before the run ended: it has no widget manager."""
        self.frontend_without_widgets = True

    def failed(self, error: str) -> None:
        if error not in self.errors:
            self.errors.append(error)

    def status_line(self) -> str:
        c = self.config
        if not self.available:
            return "in-cell live widget: off (ipywidgets is not installed in this kernel)"
        if not c.enabled:
            return f"in-cell live widget: off ({c.source('enabled')}; %carbon widget on)"
        if self.frontend_without_widgets:
            return "in-cell live widget: off (a frontend closed the widget: no widget manager)"
        p = self.presence
        sidebar = ("visible" if p.visible else "hidden") if p.active else "not seen"
        return (
            f"in-cell live widget: on (cells running longer than "
            f"{min(c.after_s, MAGIC_AFTER_S):g} s with %%carbon, {c.after_s:g} s otherwise "
            f"[{c.source('after_s')}]); with the sidebar: {c.sidebar} "
            f"[{c.source('sidebar')}]; carbonlab sidebar: {sidebar}"
        )

    def close(self) -> None:
        self.presence.unregister()


__all__ = [
    "HELLO_TARGET",
    "ANNOUNCE_TARGET",
    "MAX_UPDATE_HZ",
    "LiveState",
    "LiveWidget",
    "SidebarPresence",
    "WidgetConfig",
    "WidgetConfigError",
    "Widgets",
    "config_from_env",
    "live_html",
]
