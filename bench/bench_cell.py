"""Per-cell overhead of automatic measurement (``%load_ext carbonlab``), against the DESIGN.md budget.

Run: .venv/bin/python bench/bench_cell.py   (prints medians; not a test)

What is timed, on one InteractiveShell, cells that do nothing (``pass``) so only overhead remains:

1. ``run_cell`` per cell without the extension, and with it loaded (automatic mode, a threshold high
   enough that nothing displays). The difference is what a user pays per cell.
2. The two hooks alone (``pre_run_cell`` + ``post_run_cell``), called directly: the same cost without
   the noise of IPython's own ~100 µs per cell. Split into the core window (begin + end, as
   ``bench_core.py`` measures it) and what the Jupyter layer adds (bookkeeping, queueing the history
   row; the SQLite write itself happens on the writer thread).
3. The same hooks with a live sink that drops messages (what the comm costs a cell besides iopub).

Real meters of this machine are used (``carbonlab devices`` lists them), then a scripted meter that
costs nothing to read, to isolate carbonlab's own code from meter reads.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


def _p90_us(samples: list[int]) -> float:
    return sorted(samples)[int(len(samples) * 0.9)] / 1000


def run_cell_loop(ip, n: int) -> list[int]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        ip.run_cell("pass", store_history=True)
        out.append(time.perf_counter_ns() - t0)
    return out


def hooks_loop(ext, n: int) -> list[int]:
    from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult

    out = []
    for i in range(n):
        info = ExecutionInfo("pass", True, False, True, f"cell-{i % 50}", None)
        result = ExecutionResult(info)
        t0 = time.perf_counter_ns()
        ext.pre_run_cell(info)
        ext.post_run_cell(result)
        out.append(time.perf_counter_ns() - t0)
    return out


def window_loop(n: int) -> list[int]:
    from carbonlab.window import Window

    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        w = Window("cell")
        w.begin()
        w.end()
        out.append(time.perf_counter_ns() - t0)
    return out


class _NullSink:
    listening = True

    def open(self, data):
        pass

    def sample(self, data):
        pass

    def close(self, data):
        pass


def measure(label: str, n: int = 3000) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from carbonlab import runtime
    from carbonlab.jupyter import extension

    rt = runtime.get()
    meters = ", ".join(f"{m.kind}:{m.method}" for m in rt.meter_set.meters)
    print(f"\n== {label} [{meters}]")
    ip = InteractiveShell.instance()
    gc.collect()
    run_cell_loop(ip, 200)  # warm up
    base = run_cell_loop(ip, n)
    # The core alone, from the same hooks: a window per cell and nothing else.
    from carbonlab.window import Window

    box: list = []

    def pre(info=None):
        box.append(Window("cell").begin())

    def post(result=None):
        box.pop().end()

    ip.events.register("pre_run_cell", pre)
    ip.events.register("post_run_cell", post)
    run_cell_loop(ip, 200)
    core = run_cell_loop(ip, n)
    ip.events.unregister("pre_run_cell", pre)
    ip.events.unregister("post_run_cell", post)
    ip.run_line_magic("load_ext", "carbonlab")
    ext = extension.get(ip)
    ext.threshold_j = 1e12  # never display: the budget is "without display"
    run_cell_loop(ip, 200)
    loaded = run_cell_loop(ip, n)
    b, c, f = _median_us(base), _median_us(core), _median_us(loaded)
    print(
        f"run_cell('pass'), median of {n}: without {b:.1f} µs; core window only {c:.1f} µs "
        f"(+{c - b:.1f}); %load_ext carbonlab {f:.1f} µs -> overhead {f - b:.1f} µs per cell, of "
        f"which the Jupyter layer {f - c:.1f} µs"
    )
    ext.automatic = False
    hooks_loop(ext, 200)
    ext.automatic = True
    hooks = hooks_loop(ext, n)
    win = window_loop(n)
    print(
        f"hooks pre+post: median {_median_us(hooks):.1f} µs, p90 {_p90_us(hooks):.1f} µs; of which the "
        f"core window (begin+end, footprint) {_median_us(win):.1f} µs -> Jupyter layer "
        f"{_median_us(hooks) - _median_us(win):.1f} µs"
    )
    ext.sink_factories.append(lambda run: _NullSink())
    hooks_loop(ext, 200)
    live = hooks_loop(ext, n)
    print(
        f"hooks with a live sink (sampler subscription, open+summary): median {_median_us(live):.1f} µs, "
        f"p90 {_p90_us(live):.1f} µs"
    )
    ext.sink_factories.pop()
    ext.store.flush()
    ip.run_line_magic("unload_ext", "carbonlab")
    InteractiveShell.clear_instance()


KERNEL_SNIPPET = """
import statistics, time
from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult
from carbonlab.jupyter import extension
_ext = extension.get()
_ext.threshold_j = 1e12
_outer = list(_ext._frames)
_ext._frames.clear()  # time the hooks as for a top-level cell, not nested in this one
def _loop(n):
    out = []
    for i in range(n):
        info = ExecutionInfo("pass", True, False, True, f"cell-{i}", None)
        res = ExecutionResult(info)
        t0 = time.perf_counter_ns()
        _ext.pre_run_cell(info)
        _ext.post_run_cell(res)
        out.append(time.perf_counter_ns() - t0)
    return statistics.median(out) / 1000
_loop(100)
_with = _loop(__N__)
_sinks = list(_ext.sink_factories)
_ext.sink_factories.clear()
_loop(100)
_without = _loop(__N__)
_ext.sink_factories[:] = _sinks
_ext._frames[:] = _outer
print(f"{_without:.1f} {_with:.1f}")
"""


def measure_kernel(n: int = 1000) -> None:
    """The hooks inside a real ipykernel, with and without the comm (messages really go to iopub)."""
    import queue

    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ)
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        kc.execute_interactive("%load_ext carbonlab", timeout=60)
        out: list[str] = []
        kc.execute_interactive(
            KERNEL_SNIPPET.replace("__N__", str(n)),
            timeout=300,
            output_hook=lambda m: (
                out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
            ),
        )
        without, with_comm = map(float, "".join(out).split())
        print(
            f"\n== in a real kernel (ipykernel, real meters), hooks pre+post, median of {n}: without "
            f"the comm {without:.1f} µs, with the comm (open + summary on iopub) {with_comm:.1f} µs "
            f"-> the comm costs {with_comm - without:.1f} µs per cell"
        )
        while True:  # drain iopub
            try:
                kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


NB_TRIVIAL_CELL = "x = sum(range(2000))"


def _nbclient_run(n_cells: int, carbonlab: bool) -> float:
    """Seconds to run ``n_cells`` trivial cells through nbclient in a fresh ipykernel (kernel start
    and the first cell, which loads carbonlab or not, excluded)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    first = "%load_ext carbonlab" if carbonlab else "pass"
    nb.cells = [nbformat.v4.new_code_cell(first)] + [
        nbformat.v4.new_code_cell(NB_TRIVIAL_CELL) for _ in range(n_cells)
    ]
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        t0 = time.perf_counter()
        for i, cell in enumerate(nb.cells[1:], start=1):
            client.execute_cell(cell, i)
        return time.perf_counter() - t0


def measure_nbclient(n_cells: int = 300, rounds: int = 3) -> dict[str, float]:
    """Issue 14's "what a cell costs in a real notebook": Run All of ``n_cells`` trivial cells
    through nbclient (a real kernel, no front end), without and with carbonlab, interleaved over
    ``rounds`` rounds; medians. Goal: <= 0.3 ms added per cell and <= 1.05x."""
    import statistics

    without: list[float] = []
    with_: list[float] = []
    for _ in range(rounds):
        without.append(_nbclient_run(n_cells, carbonlab=False))
        with_.append(_nbclient_run(n_cells, carbonlab=True))
    a, b = statistics.median(without), statistics.median(with_)
    added_ms = (b - a) / n_cells * 1000
    print(
        f"\n== nbclient, {n_cells} trivial cells ({NB_TRIVIAL_CELL!r}), {rounds} interleaved rounds, "
        f"medians: without carbonlab {a:.3f} s, with {b:.3f} s -> {added_ms:+.2f} ms per cell, "
        f"{b / a:.3f}x (goal <= 0.3 ms, <= 1.05x); rounds without {[round(x, 3) for x in without]}"
        f", with {[round(x, 3) for x in with_]}"
    )
    return {"without_s": a, "with_s": b, "added_ms_per_cell": added_ms, "ratio": b / a}


def main() -> None:
    os.environ["CARBONLAB_HISTORY"] = os.path.join(tempfile.mkdtemp(), "bench.sqlite")
    import IPython

    print(
        f"python {sys.version.split()[0]}, IPython {IPython.__version__}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}; budget: window overhead <= 100 µs median without display"
    )
    from carbonlab import runtime

    runtime.reset()
    measure("real meters")
    from tests import fakes

    fakes.install([fakes.ScriptedMeter("cpu")])
    measure("one scripted meter (no meter cost)")
    runtime.reset()
    measure_kernel()
    measure_nbclient()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--nbclient"]:  # just issue 14's case: [--nbclient N_CELLS ROUNDS]
        os.environ["CARBONLAB_HISTORY"] = os.path.join(tempfile.mkdtemp(), "bench.sqlite")
        measure_nbclient(*(int(x) for x in sys.argv[2:4]))
    else:
        main()
