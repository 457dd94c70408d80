"""Writes the node's state to its Node object (our keys only) and Events, retrying."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from nodelocaldns_agent.kube.api import ApiError
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
        self, node: NodeView, reason: str, message: str, warning: bool, component: str
    ) -> str: ...
    def repeat_node_event(self, name: str, count: int, message: str) -> None: ...


@dataclass
class _Sent:
    """An Event already on the API server: its name, how often it happened, last text."""

    name: str
    count: int
    message: str


class NodeStatus:
    """Remembers what it last wrote and patches only on a change (a steady node costs no
    requests). A failed write is kept pending and retried by :meth:`flush`."""

    def __init__(self, api: StatusApi, node_name: str) -> None:
        self.api = api
        self.node_name = node_name
        self.written: tuple[str, str] | None = None
        self.wanted: tuple[str, str] | None = None
        #: the state last set (what the Node shows once :meth:`flush` succeeded)
        self.state: NodeState = NodeState.PENDING
        #: the Events sent, by (reason, warning): a repeat updates the same object
        self._sent: dict[tuple[str, bool], _Sent] = {}

    def set(self, state: NodeState, detail: Detail) -> None:
        self.state = state
        self.wanted = (state.value, detail.to_json())
        self.flush()

    def adopt(self, node: NodeView) -> Detail | None:
        """Take what the Node already shows as written and as the current state, so an
        agent restart on a node where nothing changed patches nothing. Returns the detail
        it adopted (None: the Node shows no consistent state of ours). The annotations are
        anyone's with node patch rights: they are only compared and echoed, never acted on
        (:meth:`Detail.from_json` keeps known fields; the caller checks what it reuses)."""
        state = node.annotations.get(STATE_ANNOTATION)
        detail = node.annotations.get(DETAIL_ANNOTATION)
        if state is None or detail is None or node.labels.get(STATE_LABEL) != state:
            return None
        try:
            self.state = NodeState(state)
        except ValueError:
            return None
        self.written = (state, detail)
        return Detail.from_json(detail)

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
        """An Event on the Node. A repeat of the same reason (and type) does not make a
        new object: the first one's count goes up and its message and last time move on,
        like client-go's EventCorrelator, so a node blocked for a day has one Event with
        a count, not one per back-off. If the Event is gone (expired), a new one is made."""
        key = (reason, warning)
        sent = self._sent.get(key)
        if sent is not None:
            try:
                self.api.repeat_node_event(sent.name, sent.count + 1, message)
            except ApiError as exc:
                if exc.status != 404:
                    raise
            else:
                self._sent[key] = _Sent(sent.name, sent.count + 1, message)
                event(log, "event repeated", reason=reason, count=sent.count + 1, text=message)
                return
        name = self.api.create_node_event(node, reason, message, warning, COMPONENT)
        self._sent[key] = _Sent(name, 1, message)
        event(log, "event", reason=reason, text=message)
