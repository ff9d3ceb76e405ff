"""carbonlab in IPython and Jupyter: ``%load_ext carbonlab``, ``%%carbon``, the live sidebar comm.

- :mod:`.extension`: load/unload, the pre/post_run_cell hooks (automatic per-cell measurement);
- :mod:`.magics`: ``%%carbon`` and ``%carbon on|off|status|report|export``;
- :mod:`.display`: the in-cell summary (HTML and text) and the report chart;
- :mod:`.comm`: the kernel side of the live sidebar protocol.

Nothing heavy is imported here; IPython is imported by the modules that need it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BudgetExceeded", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    if name == "BudgetExceeded":
        from .extension import BudgetExceeded

        return BudgetExceeded
    raise AttributeError(f"module 'carbonlab.jupyter' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    from .extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .extension import unload_ipython_extension as unload

    unload(ipython)
