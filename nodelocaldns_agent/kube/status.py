"""Writes the node's state to its Node object (our keys only) and Events, retrying."""

from __future__ import annotations

import logging
from typing import Protocol

from nodelocaldns_agent.kube.types import NodeView
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.state import (
    DETAIL_ANNOTATION,
    STATE_ANNOTATION,
    STATE_LABEL,
    Detail,
    NodeState,
)

log = logging.getLogger(__name__)
COMPONENT = "nodelocaldns-agent"


class StatusApi(Protocol):
    def patch_node_metadata(
        self, name: str, annotations: dict[str, str | None], labels: dict[str, str | None]
    ) -> NodeView: ...
    def create_node_event(
        self,
        namespace: str,
        node: NodeView,
        reason: str,
        message: str,
        warning: bool,
        component: str,
    ) -> None: ...


class NodeStatus:
    """Remembers what it last wrote and patches only on a change (a steady node costs no
    requests). A failed write is kept pending and retried by :meth:`flush`."""

    def __init__(self, api: StatusApi, node_name: str, namespace: str) -> None:
        self.api = api
        self.node_name = node_name
        self.namespace = namespace
        self.written: tuple[str, str] | None = None
        self.wanted: tuple[str, str] | None = None
        #: the state last set (what the Node shows once :meth:`flush` succeeded)
        self.state: NodeState = NodeState.PENDING
        self._last_event: tuple[str, str] | None = None

    def set(self, state: NodeState, detail: Detail) -> None:
        self.state = state
        self.wanted = (state.value, detail.to_json())
        self.flush()

    def adopt(self, node: NodeView) -> None:
        """Take what the Node already shows as written (no patch after an agent restart
        when nothing changed)."""
        state = node.annotations.get(STATE_ANNOTATION)
        detail = node.annotations.get(DETAIL_ANNOTATION)
        if state is not None and detail is not None and node.labels.get(STATE_LABEL) == state:
            self.written = (state, detail)

    def flush(self) -> None:
        """Write what is wanted if it differs from what was written; ApiError propagates."""
        if self.wanted is None or self.wanted == self.written:
            return
        state, detail = self.wanted
        self.api.patch_node_metadata(
            self.node_name,
            annotations={STATE_ANNOTATION: state, DETAIL_ANNOTATION: detail},
            labels={STATE_LABEL: state},
        )
        self.written = self.wanted
        event(log, "node status written", state=state)

    def emit(self, node: NodeView, reason: str, message: str, warning: bool = False) -> None:
        """An Event on the Node; the same reason+message twice in a row is sent once."""
        if self._last_event == (reason, message):
            return
        self.api.create_node_event(self.namespace, node, reason, message, warning, COMPONENT)
        self._last_event = (reason, message)
        event(log, "event", reason=reason, text=message)
