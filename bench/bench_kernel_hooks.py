"""Where a cell's time goes on a real kernel's main thread: carbonlab's hooks and their parts.

Run: .venv/bin/python -m bench.bench_kernel_hooks [N_CELLS]   (prints medians; not a test)

One ipykernel through nbclient, ``%load_ext carbonlab``, then a cell that wraps the extension's
hooks and the methods they call so that each adds the main thread's CPU time it took
(``time.thread_time_ns()``) to a list; then ``N_CELLS`` trivial cells (``x = sum(range(2000))``);
a last cell prints each part's median in µs. Nested parts are included in their callers' figures,
and each wrapper adds about a microsecond. Inside a kernel every part costs several times what it
costs in a tight loop (bench_core.py, bench_cell.py): its code runs with cold caches after the
kernel's own work between cells. This is the instrument for issue 14's per-cell cost
(docs/magics.md, "In a real kernel").
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

CELL = "x = sum(range(2000))"

WRAP = """
import functools, statistics, time
from carbonlab import store as _s, window as _w
from carbonlab.jupyter import extension as _e
_x = _e.get()
_parts = {}
def _wrap(owner, name, key):
    fn = getattr(owner, name)
    _parts[key] = []
    @functools.wraps(fn)
    def timed(*a, **k):
        c0 = time.thread_time_ns()
        try:
            return fn(*a, **k)
        finally:
            _parts[key].append(time.thread_time_ns() - c0)
    setattr(owner, name, timed)
for _n in ("pre_run_cell", "post_run_cell", "begin", "finish", "_defer_live", "_end_live",
           "_queue_row", "_store_run", "report"):
    _wrap(_e.CarbonExtension, _n, _n)
for _n in ("begin", "stop", "deferrable", "energy_j"):
    _wrap(_w.Window, _n, "Window." + _n)
for _n in ("_auto_attach_cluster", "_cell_id_from_parent", "_current_count"):
    _wrap(_e, _n, _n)
_wrap(_s.Store, "append", "Store.append")
# The hooks were registered as bound methods of the class's old functions: bind them again.
_cbs = get_ipython().events.callbacks
for _ev in ("pre_run_cell", "post_run_cell"):
    _cbs[_ev] = [getattr(_x, _ev) if getattr(cb, "__self__", None) is _x else cb
                 for cb in _cbs[_ev]]
"""

REPORT = (
    "import json, statistics\n"
    "print(json.dumps({k: statistics.median(v) / 1e3 for k, v in _parts.items() if v}))"
)


def main(n_cells: int = 1000) -> None:
    import nbformat
    from nbclient import NotebookClient

    os.environ["CARBONLAB_HISTORY"] = os.path.join(tempfile.mkdtemp(), "bench.sqlite")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext carbonlab"), nbformat.v4.new_code_cell(WRAP)]
    nb.cells += [nbformat.v4.new_code_cell(CELL) for _ in range(n_cells)]
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    parts = json.loads(out)
    print(
        f"carbonlab's hooks on a kernel's main thread, {n_cells} cells {CELL!r}: thread CPU "
        "time, medians in µs (nested parts are in their callers' figures)"
    )
    for name, us in parts.items():
        print(f"  {name:24s} {us:8.1f}")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:2]))
