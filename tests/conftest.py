"""Shared fixtures: sandboxed fake nodes (see testing.sandbox) for the integration tests.

Tests marked ``netns`` build namespaces and need root; they are skipped only when the tests
do not run as root (CI runs as root, so nothing is skipped there).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.sandbox.node import SandboxNode

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: builds pid, mount and network namespaces"
)

#: ``make(**options)`` -> a started SandboxNode (options as for SandboxNode)
NodeFactory = Callable[..., SandboxNode]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the ``netns`` tests when not root."""
    for item in items:
        if item.get_closest_marker("netns") is not None:
            item.add_marker(needs_root)


@pytest.fixture(autouse=True)
def _root_log_handlers() -> Iterator[None]:
    """Give the root logger its handlers back after each test. A test that runs the
    agent's CLI in-process gets ``logs.configure``'s handler on the stderr pytest captured
    for that test; a background thread of the test (a Lease watch returning when the fake
    API server closes) logging after the test then hit "I/O operation on closed file"
    (seen in CI, under xdist)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def sandbox_node(tmp_path: Path) -> Iterator[NodeFactory]:
    """A factory of started sandbox nodes, all closed (and checked empty) after the test."""
    if not IS_ROOT:
        pytest.skip("needs root: builds pid, mount and network namespaces")
    nodes: list[SandboxNode] = []

    def make(**options: Any) -> SandboxNode:
        node = SandboxNode(tmp_path / f"node{len(nodes)}", **options)
        nodes.append(node)
        return node.start()

    yield make
    for node in reversed(nodes):
        node.close()
