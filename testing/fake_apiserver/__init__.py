"""A fake kube-apiserver for tests: real HTTP, in-memory objects, fault injection.

The real ``kubernetes`` client talks to it unmodified::

    with FakeApiServer() as server:
        server.add_node("n1")
        with server.api_client() as api:
            CoreV1Api(api).read_node("n1")

Stdlib only (the ``kubernetes`` package is imported lazily, for the client helpers).
Modules: ``store`` (objects, resourceVersions, watch history), ``watch`` (watch streams),
``api``/``handlers`` (routing, operations, HTTP), ``patch``, ``selectors``, ``faults``,
``requestlog``, ``evictions``, ``control`` (the ``/_fake/`` API), ``cli``.
"""

from .evictions import EvictionPolicy
from .faults import Faults
from .requestlog import RequestLog, RequestRecord
from .resources import RESOURCES, ResourceType
from .server import FakeApiServer
from .status import ApiError
from .store import Store

__all__ = [
    "RESOURCES",
    "ApiError",
    "EvictionPolicy",
    "FakeApiServer",
    "Faults",
    "RequestLog",
    "RequestRecord",
    "ResourceType",
    "Store",
]
