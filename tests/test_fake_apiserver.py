"""The fake kube-apiserver, driven only through the real ``kubernetes`` client over HTTP.

(The ``/_fake/`` control API is not part of Kubernetes; it is exercised with urllib.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from testing.fake_apiserver import FakeApiServer

pytestmark = pytest.mark.timeout(10)

# The client's API modules are huge and imported lazily (CoreV1Api alone takes ~0.6 s):
# pay that once at collection rather than in whichever test happens to run first.
_API_CLASSES = (client.CoreV1Api, client.CoordinationV1Api, client.AppsV1Api, client.EventsV1Api)

REPO = Path(__file__).resolve().parent.parent
AGENT_UA = "nodelocaldns-agent-test/1.0"
MERGE = "application/merge-patch+json"


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0.2) as srv:
        yield srv
    assert srv.active_watches == 0


@pytest.fixture
def api(server: FakeApiServer) -> Iterator[client.ApiClient]:
    with server.api_client(user_agent=AGENT_UA) as api_client:
        yield api_client


@pytest.fixture
def v1(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def leases(api: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(api)


def body(err: ApiException) -> dict[str, Any]:
    assert err.body, err
    parsed: dict[str, Any] = json.loads(err.body)
    return parsed


def stored(server: FakeApiServer, kind: str, name: str, namespace: str | None = None) -> Any:
    obj = server.get(kind, name, namespace)
    assert obj is not None, f"{kind} {name} not stored"
    return obj


def control(server: FakeApiServer, method: str, path: str, payload: Any = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        f"{server.url}{path}", data=data, method=method
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def in_background(fn: Callable[[], object], delay: float = 0.0) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def watch_until_synced(
    server: FakeApiServer, list_func: Callable[..., Any], **kwargs: Any
) -> list[dict[str, Any]]:
    """Watch events (bookmarks excluded) until a BOOKMARK says the stream is up to date.

    ``timeoutSeconds`` only takes whole seconds, so bookmarks (every 0.2 s here) are the fast
    way to know nothing else is coming.
    """
    target = server.resource_version
    w = watch.Watch()
    events = []
    for event in w.stream(list_func, allow_watch_bookmarks=True, timeout_seconds=2, **kwargs):
        if event["type"] != "BOOKMARK":
            events.append(event)
        elif int(event["raw_object"]["metadata"]["resourceVersion"]) >= target:
            w.stop()
    return events


def lease_body(name: str, holder: str = "node-a") -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=15),
    )


# --- nodes: create, read, patch -------------------------------------------------------------------


def test_node_create_and_read(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    created = v1.create_node(
        client.V1Node(metadata=client.V1ObjectMeta(name="n1", labels={"role": "worker"}))
    )
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) == server.resource_version

    node = v1.read_node("n1")
    assert node.metadata.labels == {"role": "worker"}
    assert node.metadata.resource_version == created.metadata.resource_version

    with pytest.raises(ApiException) as err:
        v1.read_node("missing")
    assert err.value.status == 404
    assert body(err.value)["reason"] == "NotFound"
    assert body(err.value)["message"] == 'nodes "missing" not found'

    with pytest.raises(ApiException) as err:
        v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="n1")))
    assert err.value.status == 409
    assert body(err.value)["reason"] == "AlreadyExists"


def test_merge_patch_only_touches_given_annotation_keys(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add_node("n1", annotations={"other.io/keep": "1", "agent.io/state": "old"})
    before = stored(server, "node", "n1")

    patched = v1.patch_node(
        "n1",
        {"metadata": {"annotations": {"agent.io/state": "new", "agent.io/extra": "x"}}},
        _content_type=MERGE,
    )
    assert patched.metadata.annotations == {
        "other.io/keep": "1",
        "agent.io/state": "new",
        "agent.io/extra": "x",
    }
    assert int(patched.metadata.resource_version) > int(before["metadata"]["resourceVersion"])
    # null deletes one key and nothing else
    patched = v1.patch_node(
        "n1", {"metadata": {"annotations": {"agent.io/extra": None}}}, _content_type=MERGE
    )
    assert patched.metadata.annotations == {"other.io/keep": "1", "agent.io/state": "new"}
    assert patched.metadata.labels == before["metadata"]["labels"]
    assert server.requests.records(verb="patch")[-1].content_type == MERGE


def test_dict_patch_is_sent_as_strategic_merge(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1", annotations={"keep": "1"})
    patched = v1.patch_node("n1", {"metadata": {"annotations": {"a": "b"}}})
    assert patched.metadata.annotations == {"keep": "1", "a": "b"}
    (record,) = server.requests.records(verb="patch")
    assert record.content_type == "application/strategic-merge-patch+json"


def test_list_patch_is_sent_as_json_patch(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1", annotations={"a/b": "1"})
    patched = v1.patch_node(
        "n1",
        [
            {"op": "test", "path": "/metadata/annotations/a~1b", "value": "1"},
            {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
            {"op": "add", "path": "/metadata/labels/agent.io~1managed", "value": "true"},
        ],
    )
    assert patched.metadata.annotations == {"a/b": "2"}
    assert patched.metadata.labels["agent.io/managed"] == "true"
    assert server.requests.records(verb="patch")[-1].content_type == "application/json-patch+json"

    with pytest.raises(ApiException) as err:  # a failed "test" op is a 422, nothing applied
        v1.patch_node(
            "n1",
            [
                {"op": "remove", "path": "/metadata/annotations/a~1b"},
                {"op": "test", "path": "/metadata/labels/agent.io~1managed", "value": "no"},
            ],
        )
    assert err.value.status == 422
    assert stored(server, "node", "n1")["metadata"]["annotations"] == {"a/b": "2"}


def test_patch_with_stale_resource_version_conflicts(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    rv = server.add_node("n1")["metadata"]["resourceVersion"]
    v1.patch_node("n1", {"metadata": {"annotations": {"a": "1"}}}, _content_type=MERGE)
    with pytest.raises(ApiException) as err:
        v1.patch_node(
            "n1",
            {"metadata": {"resourceVersion": rv, "annotations": {"a": "2"}}},
            _content_type=MERGE,
        )
    assert err.value.status == 409
    assert body(err.value)["reason"] == "Conflict"
    assert stored(server, "node", "n1")["metadata"]["annotations"] == {"a": "1"}


def test_noop_patch_keeps_resource_version(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1", annotations={"a": "1"})
    rv = server.resource_version
    same = v1.patch_node("n1", {"metadata": {"annotations": {"a": "1"}}}, _content_type=MERGE)
    assert same.metadata.resource_version == str(rv) == str(server.resource_version)


def test_status_only_changes_through_the_status_subresource(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add_node("n1")
    unschedulable = {"spec": {"unschedulable": True}, "status": {"phase": "Terminated"}}
    patched = v1.patch_node("n1", unschedulable, _content_type=MERGE)
    assert patched.spec.unschedulable is True
    assert patched.status.phase is None  # ignored on the main resource, as upstream
    patched = v1.patch_node_status("n1", {"status": {"phase": "Running"}}, _content_type=MERGE)
    assert patched.status.phase == "Running"
    assert patched.status.conditions[0].type == "Ready"  # merge patch kept the rest


def test_finalizers_delay_deletion(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    v1.create_node(
        client.V1Node(metadata=client.V1ObjectMeta(name="n1", finalizers=["agent.io/revert"]))
    )
    v1.delete_node("n1")
    marked = v1.read_node("n1")
    assert marked.metadata.deletion_timestamp is not None
    v1.patch_node("n1", {"metadata": {"finalizers": None}}, _content_type=MERGE)
    assert server.get("node", "n1") is None


def test_invalid_label_value_is_rejected(v1: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="n1", labels={"a": "b c"})))
    assert err.value.status == 422
    assert body(err.value)["reason"] == "Invalid"


# --- lists and selectors --------------------------------------------------------------------------


def test_list_selectors_and_resource_version(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1", labels={"pool": "a"})
    server.add_node("n2", labels={"pool": "b", "gpu": "true"})
    server.add_node("n3", labels={"pool": "c"})

    listed = v1.list_node(field_selector="metadata.name=n2")
    assert [n.metadata.name for n in listed.items] == ["n2"]
    assert listed.metadata.resource_version == str(server.resource_version)
    listed = v1.list_node(label_selector="pool in (a,b),!gpu")
    assert [n.metadata.name for n in listed.items] == ["n1"]
    listed = v1.list_node(label_selector="pool!=a")
    assert [n.metadata.name for n in listed.items] == ["n2", "n3"]

    with pytest.raises(ApiException) as err:
        v1.list_node(field_selector="status.phase=Ready")
    assert err.value.status == 400

    page = v1.list_node(limit=2)
    assert [n.metadata.name for n in page.items] == ["n1", "n2"]
    assert page.metadata.remaining_item_count == 1
    rest = v1.list_node(limit=2, _continue=page.metadata._continue)
    assert [n.metadata.name for n in rest.items] == ["n3"]
    assert rest.metadata._continue is None


def test_pods_on_a_node_across_namespaces(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_pod("dns-1", "kube-system", node_name="n1")
    server.add_pod("app-1", "default", node_name="n1")
    server.add_pod("app-2", "default", node_name="n2")
    pods = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert sorted(p.metadata.name for p in pods.items) == ["app-1", "dns-1"]
    assert [p.metadata.name for p in v1.list_namespaced_pod("default").items] == [
        "app-1",
        "app-2",
    ]


# --- watch ----------------------------------------------------------------------------------------


def test_watch_with_field_selector_sees_modified_after_patch(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add_node("n1")
    server.add_node("other")
    rv = v1.list_node(field_selector="metadata.name=n1").metadata.resource_version

    def patch_both() -> None:
        server.wait_for(lambda: server.active_watches == 1)
        server.put_object({**stored(server, "node", "other"), "spec": {"unschedulable": True}})
        v1.patch_node("n1", {"metadata": {"annotations": {"x": "1"}}}, _content_type=MERGE)

    patcher = in_background(patch_both)
    w = watch.Watch()
    seen = []
    for event in w.stream(
        v1.list_node, field_selector="metadata.name=n1", resource_version=rv, timeout_seconds=2
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "MODIFIED":
            assert event["object"].metadata.annotations == {"x": "1"}
            w.stop()
    patcher.join()
    assert seen == [("MODIFIED", "n1")]


def test_watch_without_resource_version_starts_with_added(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add_node("n1")
    server.add_node("n2")
    events = watch_until_synced(server, v1.list_node)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "n1"),
        ("ADDED", "n2"),
    ]


def test_watch_resumes_from_resource_version(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1")
    rv = v1.list_node().metadata.resource_version
    v1.patch_node("n1", {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE)
    server.add_node("n2")
    v1.delete_node("n1")

    events = watch_until_synced(server, v1.list_node, resource_version=rv)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("MODIFIED", "n1"),
        ("ADDED", "n2"),
        ("DELETED", "n1"),
    ]
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and rvs[-1] == server.resource_version


def test_watch_label_selector_transitions(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1")
    rv = str(server.resource_version)
    v1.patch_node("n1", {"metadata": {"labels": {"dns": "local"}}}, _content_type=MERGE)
    v1.patch_node("n1", {"metadata": {"labels": {"dns": None}}}, _content_type=MERGE)
    events = watch_until_synced(
        server, v1.list_node, label_selector="dns=local", resource_version=rv
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


def test_stale_resource_version_gets_410(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1")
    stale = str(server.resource_version)
    v1.patch_node("n1", {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE)
    server.compact()

    # On the wire: HTTP 200, then one ERROR event carrying a 410 Expired Status.
    response = v1.list_node(watch=True, resource_version=stale, _preload_content=False)
    try:
        assert response.status == 200
        lines = [json.loads(line) for line in response.read().splitlines()]
    finally:
        response.release_conn()
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")

    # kubernetes.watch.Watch turns it into ApiException(410) ...
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(v1.list_node, resource_version=stale, timeout_seconds=1))
    assert err.value.status == 410
    assert err.value.reason.startswith("Expired: too old resource version")
    # ... at once with timeout_seconds; without it, after one retry from the same version.
    server.requests.clear()
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(v1.list_node, resource_version=stale))
    assert err.value.status == 410
    assert server.requests.count(verb="watch") == 2


def test_history_window_expires_old_versions() -> None:
    with FakeApiServer(history_size=3, bookmark_interval=0.1) as small, small.api_client() as api:
        core = client.CoreV1Api(api)
        small.add_node("n1")
        start = str(small.resource_version)
        for i in range(3):
            core.patch_node("n1", {"metadata": {"labels": {"i": str(i)}}}, _content_type=MERGE)
        ok = watch_until_synced(small, core.list_node, resource_version=start)
        assert len(ok) == 3
        core.patch_node("n1", {"metadata": {"labels": {"i": "x"}}}, _content_type=MERGE)
        with pytest.raises(ApiException) as err:
            list(watch.Watch().stream(core.list_node, resource_version=start, timeout_seconds=1))
        assert err.value.status == 410


def test_forced_expiry_hits_only_resumes(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1")
    rv = str(server.resource_version)
    server.faults.expire_next_watch()
    fresh = watch_until_synced(server, v1.list_node)
    assert [e["type"] for e in fresh] == ["ADDED"]  # not a resume: unaffected
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(v1.list_node, resource_version=rv, timeout_seconds=1))
    assert err.value.status == 410
    assert watch_until_synced(server, v1.list_node, resource_version=rv) == []


def test_bookmarks(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1")
    rv = str(server.resource_version)
    in_background(lambda: server.add_node("elsewhere-changes-rv"), delay=0.05)
    w = watch.Watch()
    bookmarks = []
    for event in w.stream(
        v1.list_node,
        field_selector="metadata.name=n1",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,  # bookmarks stop 2 s before the deadline
    ):
        assert event["type"] == "BOOKMARK"
        bookmarks.append(event["raw_object"]["metadata"]["resourceVersion"])
        if len(bookmarks) == 2:
            w.stop()
    assert bookmarks[-1] == str(server.resource_version)
    assert w.resource_version == bookmarks[-1]  # the client resumes from the bookmark


def test_drop_watches_cuts_the_stream(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1")
    in_background(
        lambda: (server.wait_for(lambda: server.active_watches), server.faults.drop_watches()),
    )
    w = watch.Watch()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for _ in w.stream(v1.list_node, resource_version="1", timeout_seconds=5):
            pass

    in_background(
        lambda: (
            server.wait_for(lambda: server.active_watches),
            server.faults.drop_watches(graceful=True),
        ),
    )
    started = time.monotonic()
    assert list(w.stream(v1.list_node, resource_version="1", timeout_seconds=5)) == []
    assert time.monotonic() - started < 1.5


def test_stop_ends_open_watches_and_idle_connections() -> None:
    threads_before = set(threading.enumerate())
    srv = FakeApiServer().start()
    with srv.api_client() as api:
        core = client.CoreV1Api(api)
        core.list_node()  # leaves an idle keep-alive connection
        errors: list[BaseException] = []

        def watch_forever() -> None:
            try:
                for _ in watch.Watch().stream(
                    core.list_node, resource_version="0", timeout_seconds=30
                ):
                    pass
            except BaseException as e:
                errors.append(e)

        watcher = threading.Thread(target=watch_forever)
        watcher.start()
        srv.wait_for(lambda: srv.active_watches == 1)
        started = time.monotonic()
        srv.stop()
        watcher.join(2)
        assert not watcher.is_alive() and errors == []  # the stream ended cleanly
        assert time.monotonic() - started < 1.5
    assert set(threading.enumerate()) <= threads_before


# --- leases ---------------------------------------------------------------------------------------


def test_lease_create_twice_conflicts(leases: client.CoordinationV1Api) -> None:
    created = leases.create_namespaced_lease("kube-system", lease_body("l1"))
    assert created.spec.holder_identity == "node-a"
    with pytest.raises(ApiException) as err:
        leases.create_namespaced_lease("kube-system", lease_body("l1"))
    assert err.value.status == 409
    status = body(err.value)
    assert status["reason"] == "AlreadyExists"
    assert status["details"] == {"name": "l1", "kind": "leases", "group": "coordination.k8s.io"}
    assert [item.metadata.name for item in leases.list_namespaced_lease("kube-system").items] == [
        "l1"
    ]


def test_lease_replace_requires_current_resource_version(
    leases: client.CoordinationV1Api,
) -> None:
    first = leases.create_namespaced_lease("kube-system", lease_body("l1"))
    first.spec.holder_identity = "node-b"
    second = leases.replace_namespaced_lease("l1", "kube-system", first)
    assert second.spec.holder_identity == "node-b"
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)

    first.spec.holder_identity = "node-c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease("l1", "kube-system", first)
    assert err.value.status == 409
    assert body(err.value)["reason"] == "Conflict"
    assert leases.read_namespaced_lease("l1", "kube-system").spec.holder_identity == "node-b"


def test_lease_delete_with_precondition(leases: client.CoordinationV1Api) -> None:
    stale_rv = leases.create_namespaced_lease(
        "kube-system", lease_body("l1")
    ).metadata.resource_version
    lease = leases.patch_namespaced_lease(
        "l1", "kube-system", {"spec": {"holderIdentity": "node-b"}}, _content_type=MERGE
    )
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=stale_rv))
    with pytest.raises(ApiException) as err:
        leases.delete_namespaced_lease("l1", "kube-system", body=stale)
    assert err.value.status == 409
    assert body(err.value)["message"] == (
        'Operation cannot be fulfilled on Lease.coordination.k8s.io "l1": the ResourceVersion '
        f"in the precondition ({stale_rv}) does not match the ResourceVersion in record "
        f"({lease.metadata.resource_version}). The object might have been modified"
    )

    current = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=lease.metadata.resource_version)
    )
    result = leases.delete_namespaced_lease("l1", "kube-system", body=current)
    assert result["status"] == "Success"  # the v37 client returns the Status as a dict
    with pytest.raises(ApiException) as err:
        leases.read_namespaced_lease("l1", "kube-system")
    assert err.value.status == 404


def test_lease_merge_patch(leases: client.CoordinationV1Api) -> None:
    leases.create_namespaced_lease("kube-system", lease_body("l1"))
    patched = leases.patch_namespaced_lease(
        "l1", "kube-system", {"spec": {"holderIdentity": "node-z"}}, _content_type=MERGE
    )
    assert patched.spec.holder_identity == "node-z"
    assert patched.spec.lease_duration_seconds == 15


# --- evictions ------------------------------------------------------------------------------------


def eviction(name: str, namespace: str = "default") -> client.V1Eviction:
    return client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))


def test_eviction_deletes_the_pod(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_pod("p1", node_name="n1")
    v1.create_namespaced_pod_eviction("p1", "default", eviction("p1"))
    (record,) = server.requests.records(verb="evict")
    assert record.status == 201
    # a graceful deletion: Terminating until the grace period ends (or kubelet is done)
    assert stored(server, "pod", "p1", "default")["metadata"]["deletionTimestamp"]
    v1.create_namespaced_pod_eviction("p1", "default", eviction("p1"))  # terminating: fine
    assert server.finish_terminations() == 1
    assert server.get("pod", "p1", "default") is None
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod_eviction("p1", "default", eviction("p1"))
    assert err.value.status == 404


def test_eviction_blocked_by_rule_gets_429(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_pod("dns-1", "kube-system", labels={"k8s-app": "kube-dns"})
    server.add_pod("dns-2", "kube-system", labels={"k8s-app": "kube-dns"})
    server.add_pod("done", "kube-system", labels={"k8s-app": "kube-dns"}, phase="Succeeded")
    server.block_evictions("kube-system", {"k8s-app": "kube-dns"}, disruptions_allowed=1)

    v1.create_namespaced_pod_eviction("dns-1", "kube-system", eviction("dns-1", "kube-system"))
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod_eviction("dns-2", "kube-system", eviction("dns-2", "kube-system"))
    assert err.value.status == 429
    status = body(err.value)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "TooManyRequests", 429)
    assert server.get("pod", "dns-2", "kube-system") is not None
    # terminal pods are always evictable
    v1.create_namespaced_pod_eviction("done", "kube-system", eviction("done", "kube-system"))


def test_eviction_honours_pod_disruption_budget_objects(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add_pod("web-1", labels={"app": "web"})
    server.put_object(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1},
            "status": {"observedGeneration": 1, "disruptionsAllowed": 0, "desiredHealthy": 1},
        }
    )
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod_eviction("web-1", "default", eviction("web-1"))
    assert err.value.status == 429
    assert body(err.value)["details"]["causes"][0]["reason"] == "DisruptionBudget"


# --- events and daemonsets ------------------------------------------------------------------------


def test_events_core_and_events_k8s_io(server: FakeApiServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_event(
        "default",
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="n1."),
            involved_object=client.V1ObjectReference(kind="Node", name="n1"),
            reason="ClusterDNSSwitched",
            message="kubelet now uses 169.254.20.10",
            type="Normal",
        ),
    )
    listed = core.list_namespaced_event("default", field_selector="involvedObject.name=n1")
    assert [e.reason for e in listed.items] == ["ClusterDNSSwitched"]
    assert listed.items[0].metadata.name.startswith("n1.")

    client.EventsV1Api(api).create_namespaced_event(
        "default",
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(name="n1.2"),
            event_time=datetime.now(UTC),
            reporting_controller="nodelocaldns-agent",
            reporting_instance="n1",
            action="Switch",
            reason="ClusterDNSSwitched",
            type="Normal",
            regarding=client.V1ObjectReference(kind="Node", name="n1"),
        ),
    )
    # one storage upstream: both Events through both APIs
    names = [e["metadata"]["name"] for e in server.objects("events.events.k8s.io")]
    assert names == sorted([listed.items[0].metadata.name, "n1.2"])
    assert [e["metadata"]["name"] for e in server.objects("events")] == names


def test_daemonset_env_flip_with_strategic_merge(
    server: FakeApiServer, api: client.ApiClient
) -> None:
    apps = client.AppsV1Api(api)
    container = {
        "name": "agent",
        "image": "agent:1",
        "env": [{"name": "MODE", "value": "install"}, {"name": "KEEP", "value": "1"}],
    }
    apps.create_namespaced_daemon_set(
        "kube-system",
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [container]},
                },
            },
        },
    )
    flip = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "agent", "env": [{"name": "MODE", "value": "uninstall"}]}
                    ]
                }
            }
        }
    }
    patched = apps.patch_namespaced_daemon_set("agent", "kube-system", flip)
    (agent,) = patched.spec.template.spec.containers
    assert agent.image == "agent:1"  # merged by container name, not replaced
    assert [(e.name, e.value) for e in agent.env] == [("MODE", "uninstall"), ("KEEP", "1")]
    assert patched.metadata.generation == 2
    read = apps.read_namespaced_daemon_set("agent", "kube-system")
    assert read.metadata.resource_version == patched.metadata.resource_version


# --- fault injection ------------------------------------------------------------------------------


def test_fail_next_requests_then_succeed(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add_node("n1")
    server.faults.fail(503, count=2, method="GET", path=r"^/api/v1/nodes/n1$")
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            v1.read_node("n1")
        assert err.value.status == 503
        assert body(err.value)["reason"] == "ServiceUnavailable"
    assert v1.read_node("n1").metadata.name == "n1"
    assert [r.status for r in server.requests.records(verb="get")] == [503, 503, 200]


def test_fail_matching_user_agent_only(server: FakeApiServer, api: client.ApiClient) -> None:
    server.add_node("n1")
    server.faults.fail(500, count=None, user_agent="^nodelocaldns-agent")
    with server.api_client(user_agent="someone-else") as other:
        assert client.CoreV1Api(other).read_node("n1").metadata.name == "n1"
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api).read_node("n1")
    assert err.value.status == 500
    assert body(err.value)["reason"] == "InternalError"


def test_fail_after_commit_loses_only_the_response(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add_node("n1")
    server.faults.fail(500, verb="patch", after_commit=True)
    with pytest.raises(ApiException):
        v1.patch_node("n1", {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE)
    assert stored(server, "node", "n1")["metadata"]["labels"]["a"] == "1"


def test_conflict_on_first_write_of_each_object(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add_node("n1")
    server.add_node("n2")
    server.faults.conflict_on_first_write(resources=["nodes"])
    patch = {"metadata": {"annotations": {"a": "1"}}}
    for name in ("n1", "n2"):
        with pytest.raises(ApiException) as err:
            v1.patch_node(name, patch, _content_type=MERGE)
        assert err.value.status == 409
        assert v1.patch_node(name, patch, _content_type=MERGE).metadata.annotations == {"a": "1"}


def test_latency_and_interruptible_stalls(server: FakeApiServer, api: client.ApiClient) -> None:
    server.add_node("n1")
    v1 = client.CoreV1Api(api)
    server.faults.delay(0.3, count=1, verb="get")
    started = time.monotonic()
    v1.read_node("n1")
    assert 0.3 <= time.monotonic() - started < 1.0

    server.faults.delay(30, verb="list")  # a 30-second stall, cut by the client's timeout
    config_ = server.client_configuration()
    config_.retries = False
    with client.ApiClient(config_) as impatient:
        started = time.monotonic()
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            client.CoreV1Api(impatient).list_node(_request_timeout=0.2)
        assert time.monotonic() - started < 1.0
    server.faults.clear()  # wakes the stalled handler; teardown joins it


def test_request_counting_per_user_agent(server: FakeApiServer, api: client.ApiClient) -> None:
    server.add_node("n1")
    server.requests.clear()
    v1 = client.CoreV1Api(api)
    for _ in range(3):
        v1.read_node("n1")
    v1.list_node()
    with server.api_client(user_agent="kubectl/v1.30") as other:
        client.CoreV1Api(other).read_node("n1")

    counts = server.requests.counts()
    assert counts[("GET", "/api/v1/nodes/{name}", AGENT_UA)] == 3
    assert counts[("GET", "/api/v1/nodes", AGENT_UA)] == 1
    assert counts[("GET", "/api/v1/nodes/{name}", "kubectl/v1.30")] == 1
    assert server.requests.by_user_agent() == {AGENT_UA: 4, "kubectl/v1.30": 1}
    assert server.requests.total == 5
    assert server.requests.count(verb="get", user_agent="^nodelocaldns") == 3
    assert server.requests.rate(60, user_agent="^nodelocaldns") == pytest.approx(4 / 60)


# --- control API, discovery, CLI ------------------------------------------------------------------


def test_control_api_over_http(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    control(
        server,
        "POST",
        "/_fake/objects",
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}},
    )
    rule = control(server, "POST", "/_fake/faults/fail", {"status": 429, "count": 1})
    with pytest.raises(ApiException) as err:
        v1.read_node("n1")
    assert err.value.status == 429
    assert v1.read_node("n1").metadata.name == "n1"
    assert rule["id"] > 0
    # The client is configured like production (urllib3 retries off): a 503 with a
    # Retry-After header reaches the caller too.
    control(server, "POST", "/_fake/faults/fail", {"status": 503, "count": 1, "retryAfter": 0})
    with pytest.raises(ApiException) as err:
        v1.read_node("n1")
    assert (err.value.status, err.value.headers["Retry-After"]) == (503, "0")
    assert v1.read_node("n1").metadata.name == "n1"
    assert [r.status for r in server.requests.records(verb="get")] == [429, 200, 503, 200]

    control(server, "POST", "/_fake/evictions/block", {"namespace": "default", "selector": "app=x"})
    server.add_pod("p1", labels={"app": "x"})
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod_eviction("p1", "default", eviction("p1"))
    assert err.value.status == 429

    state = control(server, "GET", "/_fake/state")
    assert [n["metadata"]["name"] for n in state["objects"]["nodes"]] == ["n1"]
    assert state["requests"]["byUserAgent"][AGENT_UA] == 5
    counts = control(server, "GET", "/_fake/requests")
    assert counts["total"] == 5

    server.add_node("n2")
    rv = str(server.resource_version)
    control(server, "POST", "/_fake/watches/expire-next", {"count": 1, "resumeOnly": True})
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(v1.list_node, resource_version=rv, timeout_seconds=1))
    assert err.value.status == 410

    with pytest.raises(urllib.error.HTTPError) as http_err:
        control(server, "POST", "/_fake/faults/fail", {"stauts": 500})
    assert http_err.value.code == 400
    http_err.value.close()

    control(server, "POST", "/_fake/reset")
    assert server.objects("nodes") == [] and server.requests.total == 0
    assert server.evictions.rules() == []


def test_discovery_documents(api: client.ApiClient) -> None:
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"coordination.k8s.io", "apps", "policy", "events.k8s.io"} <= groups
    core = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"nodes", "pods", "pods/eviction", "events", "nodes/status"} <= core
    leases = client.CoordinationV1Api(api).get_api_resources().resources
    assert [(r.name, r.kind, r.namespaced) for r in leases] == [("leases", "Lease", True)]
    assert client.VersionApi(api).get_code().major == "1"


def test_cli_serves_and_writes_a_usable_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testing.fake_apiserver",
            "--port",
            "0",
            "--kubeconfig-out",
            str(kubeconfig),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith(
                "fake apiserver listening on http://127.0.0.1:"
            )
            configuration = client.Configuration()
            config.load_kube_config(str(kubeconfig), client_configuration=configuration)
            with client.ApiClient(configuration) as api:
                v1 = client.CoreV1Api(api)
                v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="n1")))
                assert [n.metadata.name for n in v1.list_node().items] == ["n1"]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=5)
        assert proc.returncode == 0, stderr


@pytest.mark.parametrize(
    ("selector", "name"),
    [
        (None, None),
        ("", None),
        ("metadata.name=node-a", "node-a"),
        ("metadata.name==node-a", "node-a"),
        ("spec.nodeName=x,metadata.name=node-b", "node-b"),
        ("metadata.name!=node-a", None),
        ("metadata.namespace=default", None),
    ],
)
def test_the_name_a_field_selector_pins_a_watch_to(selector: str | None, name: str | None) -> None:
    from testing.fake_apiserver.watch import _pinned_name

    assert _pinned_name(selector) == name
