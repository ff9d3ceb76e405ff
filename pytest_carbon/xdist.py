"""pytest-xdist hooks, registered on the controller only when xdist is installed.

Settings go out to workers through ``node.workerinput``; each worker's detailed figures and its own
session window come back through ``workeroutput`` (builtins only: execnet serialises them). Per-test
numbers travel on the test reports as flat ``user_properties``, so the controller has them as each
test finishes even if a worker later crashes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .session import CarbonSession

from .session import WORKER_KEY


class XdistHooks:
    def __init__(self, session: CarbonSession) -> None:
        self.s = session

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_KEY] = self.s.workerinput(node.gateway.id)

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        assert self.s.results is not None
        self.s.results.add_worker(node.gateway.id, output.get(WORKER_KEY))
