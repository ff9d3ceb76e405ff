"""The attached clusters as a measuring window sees them, without importing :mod:`carbonlab.cluster`.

A cluster (Dask, Ray) is attached through carbonlab.cluster, which keeps its sources in
:data:`SOURCES`; until one is, a window's begin finds the list empty and reads nothing, so windows
(and a ``pytest --carbon`` session, whose start would otherwise import the module for nothing: ~2.3 M
instructions) need only this module. With a cluster attached each call is carbonlab.cluster's own.
"""

from __future__ import annotations

from typing import Any

from .measurement import SCOPE_TASKS  # noqa: F401 - carbonlab.cluster's name, read by the recorder

SOURCES: list[Any] = []  # carbonlab.cluster._sources: the registered RemoteSource objects


def begin_all() -> list[Any]:
    """:func:`carbonlab.cluster.begin_all`: [] at no cost when no cluster is attached."""
    if not SOURCES:
        return []
    from . import cluster

    return cluster.begin_all()


def live(begun: list[Any]) -> dict[str, Any] | None:
    """:func:`carbonlab.cluster.live` (``begun`` non-empty: the module is imported)."""
    from . import cluster

    return cluster.live(begun)


def end_all(begun: list[Any], duration_s: float) -> tuple[list[Any], list[str]]:
    """:func:`carbonlab.cluster.end_all` (``begun`` non-empty: the module is imported)."""
    from . import cluster

    return cluster.end_all(begun, duration_s)
