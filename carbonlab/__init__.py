"""carbonlab: energy and CO2e of every notebook cell and every test, measured while you work.

>>> import carbonlab
>>> with carbonlab.track("my step") as m:
...     _ = sum(range(10**6))
>>> m.energy_j >= 0
True

Nothing heavy is imported here: meters, pandas and IPython load when first used.

PYTEST_DONT_REWRITE (pytest_carbon takes carbonlab off pytest's assertion rewriting; this marker
keeps pytest from warning when carbonlab was imported before a session began)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Measurement",
    "Component",
    "track",
    "history",
    "load_ipython_extension",
    "unload_ipython_extension",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from .measurement import Component, Measurement
    from .window import track


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # Read when asked for (a module less on every pytest --carbon start and first region).
        # carbonlab/_version.py is written by the build (hatch's version hook) from
        # labextension/package.json, the one place the version is typed.
        try:
            from ._version import __version__ as version
        except ImportError:  # pragma: no cover - a checkout imported without `pip install`
            version = "0+unknown"
        globals()["__version__"] = version
        return version
    if name in ("Measurement", "Component"):
        from . import measurement

        return getattr(measurement, name)
    if name == "track":
        from .window import track

        return track
    if name == "history":
        from .store import history

        return history
    raise AttributeError(f"module 'carbonlab' has no attribute {name!r}")


def _moved(namespace: dict[str, Any], where: dict[str, str]) -> tuple[Any, Any]:
    """``__getattr__`` and ``__dir__`` for a module some of whose names live in modules of its
    package that load on first use (``where``: name -> module, relative to the package). A name is
    fetched from its module the first time it is asked for and kept in the namespace; ``dir()``
    lists it. Here, not in a module of its own: an import costs ~0.4 M instructions in a pytest
    session, and every module that uses this imports carbonlab anyway."""
    package, module = namespace["__package__"], namespace["__name__"]

    def __getattr__(name: str) -> Any:
        source = where.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f".{source}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "carbonlab"}]


def load_ipython_extension(ipython: Any) -> None:
    from .jupyter.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .jupyter.extension import unload_ipython_extension as unload

    unload(ipython)
