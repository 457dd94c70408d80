"""NodeStatus against the fake API server (real HTTP, kube-apiserver's Event rules): the
Node's own keys only, patched on change; Events in "default", a repeat counted on the
same object (as client-go's EventCorrelator does) instead of a new one per back-off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nodelocaldns_agent.kube.api import EVENT_NAMESPACE, KubeApi
from nodelocaldns_agent.kube.status import NodeStatus
from nodelocaldns_agent.state import STATE_LABEL, Detail, NodeState
from testing.fake_apiserver import FakeApiServer


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        srv.add_node("node-a", labels={"keep": "me"})
        yield srv


@pytest.fixture
def status(server: FakeApiServer) -> Iterator[tuple[NodeStatus, KubeApi]]:
    with server.api_client() as client:
        api = KubeApi(client)
        yield NodeStatus(api, "node-a"), api


def node_events(server: FakeApiServer) -> list[dict]:  # type: ignore[type-arg]
    return server.objects("events", EVENT_NAMESPACE)


def test_a_repeated_reason_counts_on_one_event(
    server: FakeApiServer, status: tuple[NodeStatus, KubeApi]
) -> None:
    st, api = status
    node, _ = api.list_own_node("node-a")
    for text in ("local DNS does not answer", "local DNS does not answer", "still down"):
        st.emit(node, "Blocked", text, warning=True)
    (event,) = node_events(server)
    assert (event["reason"], event["type"], event["count"]) == ("Blocked", "Warning", 3)
    assert event["message"] == "still down"
    assert event["involvedObject"]["uid"] == node.uid
    verbs = [r.verb for r in server.requests.records(path="/events")]
    assert verbs == ["create", "patch", "patch"]


def test_another_reason_or_type_is_another_event(
    server: FakeApiServer, status: tuple[NodeStatus, KubeApi]
) -> None:
    st, api = status
    node, _ = api.list_own_node("node-a")
    st.emit(node, "Blocked", "waiting for the local DNS", warning=False)
    st.emit(node, "Blocked", "bad kubelet configuration", warning=True)
    st.emit(node, "Migrated", "cluster DNS -> 169.254.20.10")
    kinds = sorted((e["reason"], e["type"], e["count"]) for e in node_events(server))
    assert kinds == [("Blocked", "Normal", 1), ("Blocked", "Warning", 1), ("Migrated", "Normal", 1)]


def test_an_expired_event_is_made_again(
    server: FakeApiServer, status: tuple[NodeStatus, KubeApi]
) -> None:
    st, api = status
    node, _ = api.list_own_node("node-a")
    st.emit(node, "Blocked", "x", warning=True)
    (first,) = node_events(server)
    server.delete_object("events", first["metadata"]["name"], EVENT_NAMESPACE)  # TTL
    st.emit(node, "Blocked", "x", warning=True)
    (again,) = node_events(server)
    assert again["metadata"]["name"] != first["metadata"]["name"] and again["count"] == 1
    st.emit(node, "Blocked", "x", warning=True)
    assert [e["count"] for e in node_events(server)] == [2]


def test_state_is_patched_only_on_change(
    server: FakeApiServer, status: tuple[NodeStatus, KubeApi]
) -> None:
    st, _ = status
    st.set(NodeState.MIGRATED, Detail(reason="done"))
    st.set(NodeState.MIGRATED, Detail(reason="done"))
    node = server.get("nodes", "node-a")
    assert node is not None
    labels = node["metadata"]["labels"]
    assert (labels["keep"], labels[STATE_LABEL]) == ("me", "migrated")
    assert len(server.requests.records(verb="patch")) == 1
