"""The fake kube-apiserver's rules, each checked against what the real server does.

Every test names, in its docstring, the upstream code (kubernetes/kubernetes) or document the
rule mirrors; the fake's README lists the same sources. Driven through the real ``kubernetes``
client (configured like production: no urllib3 retries) or raw HTTP where the client would
hide the wire format.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from testing.fake_apiserver import FakeApiServer
from tests.tooling import ROOT, tool

pytestmark = pytest.mark.timeout(15)

NS = "kube-system"
MERGE = "application/merge-patch+json"


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0.2, grace_period_scale=0.01, too_large_wait=0.3) as srv:
        yield srv
    assert srv.active_watches == 0


@pytest.fixture
def api(server: FakeApiServer) -> Iterator[client.ApiClient]:
    with server.api_client(user_agent="rules-test") as api_client:
        yield api_client


@pytest.fixture
def v1(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def events_v1(api: client.ApiClient) -> client.EventsV1Api:
    return client.EventsV1Api(api)


@pytest.fixture
def leases(api: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(api)


def status_of(err: ApiException) -> dict[str, Any]:
    assert err.body, err
    parsed: dict[str, Any] = json.loads(err.body)
    return parsed


def causes(err: ApiException) -> list[tuple[str, str]]:
    details = status_of(err).get("details") or {}
    return [(c["field"], c["reason"]) for c in details.get("causes") or []]


def micro_now(offset: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Answer:
    """An API answer read raw (the typed client validates bodies client-side, so payloads
    the server must refuse, or objects its models cannot hold, go through this)."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    @property
    def causes(self) -> list[tuple[str, str]]:
        return [
            (c["field"], c["reason"]) for c in (self.body.get("details") or {}).get("causes") or []
        ]


def send(
    api: client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, Any]] | None = None,
) -> Answer:
    """One request through the production-configured client, any status returned."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=[],
    )
    response = api.call_api(*request)
    data = response.read()
    return Answer(response.status, json.loads(data) if data else {}, dict(response.getheaders()))


EVENTS_V1 = "/apis/events.k8s.io/v1/namespaces/{}/events"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


def raw(
    server: FakeApiServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        f"{server.url}{path}", data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def in_background(fn: Any, delay: float = 0.2) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def node_event(namespace: str, **fields: Any) -> dict[str, Any]:
    """A core/v1 Event about Node n1 (cluster-scoped), as the agent posts them."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "n1.", "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u-n1"},
        "reason": "Migrated",
        "message": "kubelet now uses NodeLocal DNSCache",
        "type": "Normal",
        "source": {"component": "nodelocaldns-agent", "host": "n1"},
        **fields,
    }


def new_event(name: str, namespace: str = NS, **fields: Any) -> dict[str, Any]:
    """A valid events.k8s.io/v1 Event about Node n1."""
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "eventTime": micro_now(),
        "reportingController": "nodelocaldns-agent.io/agent",
        "reportingInstance": "nodelocaldns-agent-n1",
        "action": "Migrate",
        "reason": "Migrated",
        "note": "kubelet now uses NodeLocal DNSCache",
        "type": "Normal",
        "regarding": {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u-n1"},
        **fields,
    }


def lease(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 15, **spec},
    }


def pdb(name: str, selector: dict[str, str], generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": "default", "generation": generation},
        "spec": {"selector": {"matchLabels": selector}, "minAvailable": 1},
        "status": {"observedGeneration": generation, **status},
    }


def evict(v1: client.CoreV1Api, name: str, namespace: str = "default") -> None:
    v1.create_namespaced_pod_eviction(
        name,
        namespace,
        client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace)),
    )


# --- the test clients are production's ------------------------------------------------------------


def test_api_client_is_built_like_production(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    """``FakeApiServer.api_client()`` goes through ``nodelocaldns_agent.kube.api.load_config``
    (urllib3 ``retries = 0``): a 503 with ``Retry-After`` reaches the caller, as in
    production, instead of being retried by urllib3's default ``Retry``."""
    assert server.client_configuration().retries == 0
    server.add_node("n1")
    server.faults.fail(503, count=1, verb="get", retry_after=0)
    with pytest.raises(ApiException) as err:
        v1.read_node("n1")
    assert err.value.status == 503
    assert server.requests.count(verb="get") == 1
    assert v1.read_node("n1").metadata.name == "n1"


# --- Events: pkg/apis/core/validation/events.go ---------------------------------------------------


def test_node_event_without_event_time_must_be_in_default_namespace(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """legacyValidateEvent: an Event without ``eventTime`` whose involvedObject has no
    namespace (a Node) must be in namespace "" or "default" - the agent's own namespace
    (kube-system) gets 422 ``involvedObject.namespace: ... does not match event.namespace``."""
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_event(NS, node_event(NS))
    assert err.value.status == 422
    assert causes(err.value) == [("involvedObject.namespace", "FieldValueInvalid")]
    assert "does not match event.namespace" in status_of(err.value)["message"]
    assert status_of(err.value)["details"]["kind"] == "Event"

    created = v1.create_namespaced_event("default", node_event("default"))
    assert created.metadata.name.startswith("n1.")


def test_event_with_event_time_goes_to_default_or_kube_system_with_reporting_fields(
    v1: client.CoreV1Api,
) -> None:
    """legacyValidateEvent, eventTime set: a cluster-scoped object's Event must be in
    "default" or "kube-system", and reportingController (core/v1: reportingComponent),
    reportingInstance, action and reason are required, with length limits."""
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_event(NS, node_event(NS, eventTime=micro_now()))
    assert err.value.status == 422
    assert causes(err.value) == [
        ("reportingController", "FieldValueRequired"),
        ("reportingInstance", "FieldValueRequired"),
        ("action", "FieldValueRequired"),
    ]
    reporting = {
        "eventTime": micro_now(),
        "reportingComponent": "nodelocaldns-agent",
        "reportingInstance": "n1",
        "action": "Migrate",
    }
    assert v1.create_namespaced_event(NS, node_event(NS, **reporting)).reason == "Migrated"
    assert v1.create_namespaced_event("default", node_event("default", **reporting))
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_event("apps", node_event("apps", **reporting))
    assert causes(err.value) == [("involvedObject.namespace", "FieldValueInvalid")]

    too_long = {**reporting, "reason": "R" * 129, "message": "m" * 1025}
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_event(NS, node_event(NS, **too_long))
    assert causes(err.value) == [("reason", "FieldValueInvalid"), ("message", "FieldValueInvalid")]
    bad_controller = {**reporting, "reportingComponent": "not a qualified name"}
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_event(NS, node_event(NS, **bad_controller))
    assert causes(err.value) == [("reportingController", "FieldValueInvalid")]


def test_event_about_a_namespaced_object_must_share_its_namespace(v1: client.CoreV1Api) -> None:
    """legacyValidateEvent: without eventTime, a namespaced involvedObject's namespace must
    equal the Event's."""
    about_pod = node_event(NS, involvedObject={"kind": "Pod", "name": "p", "namespace": "apps"})
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_event(NS, about_pod)
    assert causes(err.value) == [("involvedObject.namespace", "FieldValueInvalid")]
    about_pod["metadata"]["namespace"] = "apps"
    assert v1.create_namespaced_event("apps", about_pod).involved_object.namespace == "apps"


def test_events_k8s_io_v1_strict_create_rules(api: client.ApiClient) -> None:
    """ValidateEventCreate for events.k8s.io/v1: eventTime required, type Normal|Warning,
    the deprecated fields unset, a series needs count >= 2 and lastObservedTime, and the name
    must be a DNS subdomain (core/v1 only needs a path segment)."""
    path = EVENTS_V1.format(NS)
    assert send(api, "POST", path, new_event("n1.a")).status == 201
    cases = [
        (  # without eventTime the legacy namespace rule applies too
            {"eventTime": None},
            [
                ("involvedObject.namespace", "FieldValueInvalid"),
                ("eventTime", "FieldValueRequired"),
            ],
        ),
        ({"type": "Info"}, [("type", "FieldValueInvalid")]),
        ({"deprecatedCount": 3}, [("count", "FieldValueInvalid")]),
        (
            {"deprecatedLastTimestamp": "2024-01-01T00:00:00Z"},
            [("lastTimestamp", "FieldValueInvalid")],
        ),
        ({"deprecatedSource": {"component": "x"}}, [("source", "FieldValueInvalid")]),
        (
            {"series": {"count": 1}},
            [
                ("series.count", "FieldValueInvalid"),
                ("series.lastObservedTime", "FieldValueRequired"),
            ],
        ),
    ]
    for i, (fields, expected) in enumerate(cases):
        answer = send(api, "POST", path, new_event(f"n1.bad{i}", **fields))
        assert answer.status == 422, fields
        assert answer.causes == expected, fields
    answer = send(api, "POST", path, new_event("N1.Upper"))
    assert answer.causes == [("metadata.name", "FieldValueInvalid")]


def test_core_event_names_only_need_to_be_path_segments(v1: client.CoreV1Api) -> None:
    """BeforeCreate's generic name check (path.ValidatePathSegmentName): core/v1 Event
    validation does not ask for a DNS subdomain, so "N1.Upper_case" is a valid name there."""
    named = node_event("default")
    named["metadata"] = {"name": "N1.Upper_case", "namespace": "default"}
    assert v1.create_namespaced_event("default", named).metadata.name == "N1.Upper_case"
    named["metadata"]["name"] = "a/b"
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_event("default", named)
    assert err.value.status in (404, 422)  # "/" cannot even be routed as one name


def test_event_times_are_micro_time(api: client.ApiClient) -> None:
    """eventTime is a metav1.MicroTime: RFC 3339 with exactly six fractional digits
    (micro_time.go, RFC3339Micro); anything else fails to decode: 400 BadRequest.
    firstTimestamp is a metav1.Time: RFC 3339, fraction optional."""
    path = EVENTS_V1.format(NS)
    for bad in (
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.123Z",
        "2024-01-01T00:00:00.123456789Z",
    ):
        answer = send(api, "POST", path, new_event("n1.t", eventTime=bad))
        assert (answer.status, answer.body["reason"]) == (400, "BadRequest"), bad
        assert "cannot be handled as a Event" in answer.body["message"]
    core = "/api/v1/namespaces/default/events"
    for good in ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+02:00"):
        answer = send(api, "POST", core, node_event("default", firstTimestamp=good))
        assert answer.status == 201, good
    answer = send(api, "POST", core, node_event("default", firstTimestamp="2024-01-01"))
    assert answer.status == 400


def test_event_update_rules_per_api_version(
    v1: client.CoreV1Api, events_v1: client.EventsV1Api
) -> None:
    """ValidateEventUpdate: through events.k8s.io/v1 the note, reason, regarding, ... are
    immutable and a changed series is validated; through core/v1 only the legacy rules apply."""
    created = events_v1.create_namespaced_event(NS, new_event("n1.u"))
    with pytest.raises(ApiException) as err:
        events_v1.patch_namespaced_event("n1.u", NS, {"note": "other"}, _content_type=MERGE)
    assert err.value.status == 422
    assert causes(err.value) == [("message", "FieldValueInvalid")]
    series = {"series": {"count": 2, "lastObservedTime": micro_now()}}
    patched = events_v1.patch_namespaced_event("n1.u", NS, series, _content_type=MERGE)
    assert patched.series.count == 2
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(ApiException) as err:
        events_v1.patch_namespaced_event("n1.u", NS, {"series": {"count": 1}}, _content_type=MERGE)
    assert ("series.count", "FieldValueInvalid") in causes(err.value)
    # the same object through core/v1: the message may change
    core = v1.patch_namespaced_event("n1.u", NS, {"message": "other"}, _content_type=MERGE)
    assert core.message == "other"


def test_core_and_events_k8s_io_events_are_one_storage(
    server: FakeApiServer, v1: client.CoreV1Api, events_v1: client.EventsV1Api
) -> None:
    """One storage, converted (pkg/registry/events/rest uses the core event storage;
    pkg/apis/events/v1/conversion.go): an Event written through either API is the same
    object, with the same resourceVersion, listed and watched through both, and the
    events.k8s.io field labels map onto core fields (AddFieldLabelConversionsForEvent)."""
    core = v1.create_namespaced_event("default", node_event("default"))
    # (raw: the typed EventsV1Event model insists on an eventTime, which core Events lack)
    seen = send(v1.api_client, "GET", f"{EVENTS_V1.format('default')}/{core.metadata.name}").body
    assert seen["metadata"]["resourceVersion"] == core.metadata.resource_version
    assert (seen["regarding"]["kind"], seen["note"]) == ("Node", core.message)
    assert seen["deprecatedSource"]["component"] == "nodelocaldns-agent"
    assert "involvedObject" not in seen and "message" not in seen
    new = events_v1.create_namespaced_event(NS, new_event("n1.b"))
    assert v1.read_namespaced_event("n1.b", NS).reporting_component == new.reporting_controller
    listed = send(
        v1.api_client,
        "GET",
        "/apis/events.k8s.io/v1/events",
        query=[("fieldSelector", "regarding.name=n1")],
    ).body
    assert sorted(e["metadata"]["name"] for e in listed["items"]) == sorted(
        [core.metadata.name, "n1.b"]
    )
    by_controller = events_v1.list_namespaced_event(
        NS, field_selector="reportingController=nodelocaldns-agent.io/agent"
    )
    assert [e.metadata.name for e in by_controller.items] == ["n1.b"]
    assert [e["metadata"]["name"] for e in server.objects("events")] == [
        core.metadata.name,
        "n1.b",
    ]

    # a watch through events.k8s.io/v1 sees an Event written through core/v1, converted
    before = str(server.resource_version)
    in_background(lambda: v1.create_namespaced_event("default", node_event("default")))
    answer = send(
        v1.api_client,
        "GET",
        EVENTS_V1.format("default"),
        query=[("watch", "true"), ("resourceVersion", before), ("timeoutSeconds", "1")],
    )
    # (one line: the ADDED event; the watch ends after its timeout)
    assert answer.body["type"] == "ADDED"
    streamed = answer.body["object"]
    assert (streamed["apiVersion"], streamed["regarding"]["name"]) == ("events.k8s.io/v1", "n1")
    assert "involvedObject" not in streamed


def test_put_creates_events_and_leases_only(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    """AllowCreateOnUpdate: true for Events (pkg/registry/core/event/strategy.go) and Leases
    (pkg/registry/coordination/lease/strategy.go), false for Nodes, Pods, DaemonSets,
    Namespaces, PodDisruptionBudgets: PUT to a missing one is 201 Created or 404."""
    event = node_event("default")
    event["metadata"] = {"name": "n1.put", "namespace": "default", "resourceVersion": "1"}
    _, status, _ = v1.replace_namespaced_event_with_http_info("n1.put", "default", event)
    assert status == 201
    assert server.get("events", "n1.put", "default") is not None
    with pytest.raises(ApiException) as err:
        v1.replace_node(
            "ghost", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ghost"}}
        )
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        v1.replace_namespaced_pod(
            "ghost", "default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ghost"}}
        )
    assert err.value.status == 404
    ghost = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ghost"}}
    answer = send(v1.api_client, "PUT", f"/apis/apps/v1/namespaces/{NS}/daemonsets/ghost", ghost)
    assert answer.status == 404


# --- Leases ---------------------------------------------------------------------------------------


def test_put_to_a_missing_lease_creates_it(
    server: FakeApiServer, leases: client.CoordinationV1Api
) -> None:
    """Lease strategy AllowCreateOnUpdate is true: PUT to a missing Lease runs the create
    flow (generic registry Store.Update), which ignores the body's resourceVersion - so a
    renewal carrying the resourceVersion of a since-deleted Lease re-creates it (201). A uid
    in the body is a precondition the missing object cannot meet: 409."""
    created = leases.create_namespaced_lease(NS, lease("slot-0"))
    stale_rv = created.metadata.resource_version
    leases.delete_namespaced_lease("slot-0", NS)
    renewal = lease("slot-0", holderIdentity="node-b")
    renewal["metadata"]["resourceVersion"] = stale_rv
    revived, status, _ = leases.replace_namespaced_lease_with_http_info("slot-0", NS, renewal)
    assert status == 201
    assert revived.spec.holder_identity == "node-b"
    assert revived.metadata.uid != created.metadata.uid
    assert int(revived.metadata.resource_version) > int(stale_rv)

    nameless = lease("slot-1")
    del nameless["metadata"]["name"]
    answer = send(leases.api_client, "PUT", f"{LEASES}/slot-1", nameless)
    assert answer.status == 400  # handlers/update.go checkName: the body must name it too

    with_uid = lease("slot-1")
    with_uid["metadata"]["uid"] = created.metadata.uid
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease("slot-1", NS, with_uid)
    assert err.value.status == 409
    assert server.get("lease", "slot-1", NS) is None


def test_lease_update_needs_a_resource_version(leases: client.CoordinationV1Api) -> None:
    """Lease strategy AllowUnconditionalUpdate is false: a PUT to an existing Lease without
    metadata.resourceVersion is 422 "must be specified for an update" (Store.Update)."""
    leases.create_namespaced_lease(NS, lease("l1"))
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease("l1", NS, lease("l1", holderIdentity="node-b"))
    assert err.value.status == 422
    message = status_of(err.value)["message"]
    assert message.startswith(
        'leases.coordination.k8s.io "l1" is invalid: metadata.resourceVersion'
    )
    assert "must be specified for an update" in message


def test_lease_spec_validation(leases: client.CoordinationV1Api) -> None:
    """ValidateLeaseSpec (pkg/apis/coordination/validation/validation.go):
    leaseDurationSeconds > 0 when set, leaseTransitions >= 0, strategy a known or qualified
    name, preferredHolder only with a strategy. holderIdentity has no rule of its own."""
    cases = [
        ({"leaseDurationSeconds": 0}, [("spec.leaseDurationSeconds", "FieldValueInvalid")]),
        ({"leaseDurationSeconds": -5}, [("spec.leaseDurationSeconds", "FieldValueInvalid")]),
        ({"leaseTransitions": -1}, [("spec.leaseTransitions", "FieldValueInvalid")]),
        ({"strategy": "Newest"}, [("spec.strategy.strategy", "FieldValueNotSupported")]),
        ({"preferredHolder": "node-b"}, [("spec.preferredHolder", "FieldValueForbidden")]),
    ]
    for i, (spec, expected) in enumerate(cases):
        with pytest.raises(ApiException) as err:
            leases.create_namespaced_lease(NS, lease(f"bad-{i}", **spec))
        assert err.value.status == 422, spec
        assert causes(err.value) == expected, spec
        assert status_of(err.value)["message"].startswith(f'Lease.coordination.k8s.io "bad-{i}"')
    ok = lease(
        "ok", holderIdentity="h" * 300, strategy="OldestEmulationVersion", preferredHolder="x"
    )
    assert leases.create_namespaced_lease(NS, ok).spec.holder_identity == "h" * 300
    # the same rules on update
    with pytest.raises(ApiException) as err:
        leases.patch_namespaced_lease(
            "ok", NS, {"spec": {"leaseDurationSeconds": 0}}, _content_type=MERGE
        )
    assert causes(err.value) == [("spec.leaseDurationSeconds", "FieldValueInvalid")]


def test_lease_times_are_micro_time(api: client.ApiClient) -> None:
    """acquireTime/renewTime are metav1.MicroTime (layout RFC3339Micro, exactly six
    fractional digits; micro_time.go): other forms fail to decode, 400; leaseDurationSeconds
    is an int32."""
    for bad in (
        {"renewTime": "2024-01-01T00:00:00Z"},
        {"acquireTime": "2024-01-01T00:00:00.5Z"},
        {"renewTime": "yesterday"},
        {"leaseDurationSeconds": 1.5},
        {"leaseDurationSeconds": 2**31},
    ):
        answer = send(api, "POST", LEASES, lease("t", **bad))
        assert answer.status == 400, bad
        assert answer.body["message"].startswith(
            'Lease in version "v1" cannot be handled as a Lease'
        ), bad
    good = lease("t", renewTime=micro_now(), acquireTime="2024-01-01T00:00:00.000000+02:00")
    assert send(api, "POST", LEASES, good).status == 201


# --- DELETE preconditions: staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go ---------------


def test_empty_delete_preconditions_are_compared(
    server: FakeApiServer, leases: client.CoordinationV1Api
) -> None:
    """rest.BeforeDelete compares a precondition whenever the pointer is set: JSON "" is a
    set pointer to the empty string, so ``{"resourceVersion": ""}`` (or ``"uid": ""``) is a
    409 Conflict; only an absent or null precondition is skipped."""
    current = leases.create_namespaced_lease(NS, lease("l1")).metadata
    for preconditions in ({"resourceVersion": ""}, {"uid": ""}):
        with pytest.raises(ApiException) as err:
            leases.delete_namespaced_lease("l1", NS, body={"preconditions": preconditions})
        assert err.value.status == 409, preconditions
        status = status_of(err.value)
        assert status["reason"] == "Conflict"
        assert status["message"].startswith(
            'Operation cannot be fulfilled on Lease.coordination.k8s.io "l1": the '
        )
        assert "does not match" in status["message"]
    assert server.get("lease", "l1", NS) is not None
    leases.delete_namespaced_lease(
        "l1", NS, body={"preconditions": {"resourceVersion": None, "uid": current.uid}}
    )
    assert server.get("lease", "l1", NS) is None


# --- evictions: pkg/registry/core/pod/storage/eviction.go -----------------------------------------


def test_eviction_is_a_graceful_deletion(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    """An evicted running pod gets a DisruptionTarget condition, then a graceful DELETE
    (pod strategy CheckGracefulDelete): it stays listed, Terminating, with deletionTimestamp
    = now + spec.terminationGracePeriodSeconds (30 when unset: the v1 default) and
    deletionGracePeriodSeconds, and goes (DELETED) when the grace period is over."""
    server.add_pod("p1", node_name="n1")
    rv = str(server.resource_version)
    started = datetime.now(UTC)
    evict(v1, "p1")
    pod = v1.read_namespaced_pod("p1", "default")
    assert pod.metadata.deletion_grace_period_seconds == 30
    remaining = (pod.metadata.deletion_timestamp - started).total_seconds()
    assert 28 <= remaining <= 31
    assert [(c.type, c.reason) for c in pod.status.conditions][-1] == (
        "DisruptionTarget",
        "EvictionByEvictionAPI",
    )
    assert [p.metadata.name for p in v1.list_namespaced_pod("default").items] == ["p1"]
    # scale 0.01: 30 s of grace is 0.3 s here
    server.wait_for(lambda: server.get("pod", "p1", "default") is None, timeout=3)
    w = watch.Watch()
    kinds = [
        e["type"]
        for e in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=1)
    ]
    assert kinds == ["MODIFIED", "MODIFIED", "DELETED"]


def test_grace_period_sources_and_immediate_deletions(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """CheckGracefulDelete: the grace period is DeleteOptions.gracePeriodSeconds, else
    spec.terminationGracePeriodSeconds; 0 (gone at once) for a pod never scheduled or
    already Succeeded/Failed. A second DELETE may only shorten a pending grace period."""
    spec = {"containers": [{"name": "c", "image": "i"}], "terminationGracePeriodSeconds": 5}
    server.add_pod("five", node_name="n1", spec=spec)
    v1.delete_namespaced_pod("five", "default")
    assert v1.read_namespaced_pod("five", "default").metadata.deletion_grace_period_seconds == 5
    v1.delete_namespaced_pod("five", "default", grace_period_seconds=60)  # longer: ignored
    assert v1.read_namespaced_pod("five", "default").metadata.deletion_grace_period_seconds == 5
    v1.delete_namespaced_pod("five", "default", grace_period_seconds=0)  # shorter: now
    assert server.get("pod", "five", "default") is None

    server.add_pod("unscheduled")
    server.add_pod("done", node_name="n1", phase="Succeeded")
    for name in ("unscheduled", "done"):
        v1.delete_namespaced_pod(name, "default")
        assert server.get("pod", name, "default") is None, name

    slow = FakeApiServer(grace_period_scale=1.0)  # real time: finish_terminations ends it
    with slow, slow.api_client() as api:
        slow.add_pod("p", node_name="n1")
        client.CoreV1Api(api).delete_namespaced_pod("p", "default")
        assert slow.get("pod", "p", "default") is not None
        assert slow.finish_terminations("default", "p") == 1
        assert slow.get("pod", "p", "default") is None


def test_budgets_are_ignored_for_pods_that_are_not_running(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """canIgnorePDB: Pending, Succeeded and Failed pods and pods already being deleted are
    evicted whatever the budget says; a running, ready pod under a budget with no disruption
    left gets 429 (no Retry-After: retryAfterSeconds is 0)."""
    server.put_object(
        pdb("web", {"app": "web"}, disruptionsAllowed=0, desiredHealthy=3, currentHealthy=3)
    )
    for name, phase in (("pending", "Pending"), ("done", "Succeeded"), ("failed", "Failed")):
        server.add_pod(name, node_name="n1", labels={"app": "web"}, phase=phase)
        evict(v1, name)
    server.add_pod("running", node_name="n1", labels={"app": "web"})
    server.add_pod("leaving", node_name="n1", labels={"app": "web"})
    v1.delete_namespaced_pod("leaving", "default")
    evict(v1, "leaving")  # terminating: no budget check
    with pytest.raises(ApiException) as err:
        evict(v1, "running")
    assert err.value.status == 429
    assert "Retry-After" not in (err.value.headers or {})
    assert status_of(err.value)["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 3 healthy pods and has 3 currently",
        }
    ]


def test_unready_pods_are_evictable_when_the_budget_is_healthy(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """An unready pod does not count as healthy: with unhealthyPodEvictionPolicy unset or
    IfHealthyBudget it is evicted without spending a disruption when currentHealthy >=
    desiredHealthy > 0; with AlwaysAllow always; otherwise the budget decides."""
    server.put_object(
        pdb("web", {"app": "web"}, disruptionsAllowed=0, desiredHealthy=2, currentHealthy=2)
    )
    server.add_pod("unready", node_name="n1", labels={"app": "web"}, ready=False)
    evict(v1, "unready")
    assert server.get("pdb", "web", "default")["status"]["disruptionsAllowed"] == 0

    server.put_object(
        pdb("web", {"app": "web"}, disruptionsAllowed=0, desiredHealthy=2, currentHealthy=1)
    )
    server.add_pod("unready-2", node_name="n1", labels={"app": "web"}, ready=False)
    with pytest.raises(ApiException) as err:
        evict(v1, "unready-2")
    assert err.value.status == 429

    always = pdb("web", {"app": "web"}, disruptionsAllowed=0, desiredHealthy=2, currentHealthy=1)
    always["spec"]["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    server.put_object(always)
    evict(v1, "unready-2")


def test_eviction_spends_a_disruption(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    """checkAndDecrement: disruptionsAllowed goes down by one and the pod is recorded in
    status.disruptedPods; a second budget over the same pod is a 500; an empty selector
    selects nothing."""
    server.put_object(
        pdb("web", {"app": "web"}, disruptionsAllowed=1, desiredHealthy=1, currentHealthy=2)
    )
    server.add_pod("w1", node_name="n1", labels={"app": "web"})
    evict(v1, "w1")
    status = server.get("pdb", "web", "default")["status"]
    assert status["disruptionsAllowed"] == 0
    assert list(status["disruptedPods"]) == ["w1"]
    empty = pdb("everything", {})
    server.put_object(empty)
    server.add_pod("w2", node_name="n1", labels={"app": "web"})
    with pytest.raises(ApiException) as err:
        evict(v1, "w2")
    assert err.value.status == 429  # "everything" did not match: only "web" (0 left)
    server.put_object(pdb("web-2", {"app": "web"}))
    with pytest.raises(ApiException) as err:
        evict(v1, "w2")
    assert err.value.status == 500


def test_budget_still_being_processed_gets_429_with_retry_after(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """checkAndDecrement: a budget whose status.observedGeneration is behind
    metadata.generation has not been processed by the disruption controller yet: 429 with
    retryAfterSeconds 10 and a Retry-After: 10 header (createTooManyRequestsError)."""
    stale = pdb("web", {"app": "web"}, disruptionsAllowed=5)
    stale["metadata"]["generation"] = 2
    stale["status"]["observedGeneration"] = 1
    server.put_object(stale)
    server.add_pod("w1", node_name="n1", labels={"app": "web"})
    with pytest.raises(ApiException) as err:
        evict(v1, "w1")
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "10"
    details = status_of(err.value)["details"]
    assert details["retryAfterSeconds"] == 10
    assert details["causes"][0]["message"] == (
        "The disruption budget web is still being processed by the server."
    )
    assert server.get("pod", "w1", "default")["metadata"].get("deletionTimestamp") is None


# --- watch cache realism: staging/src/k8s.io/apiserver/pkg/storage/cacher -------------------------


def test_defaults_are_kube_apiservers() -> None:
    """Defaults: bookmarks about every minute (cacher.go defaultBookmarkFrequency), watch
    history for 75 s (DefaultEventFreshDuration), up to 100*1024 events
    (defaultUpperBoundCapacity), etcd compaction every 5 minutes (--etcd-compaction-interval),
    3 s before "Too large resource version" (watch_cache.go blockTimeout)."""
    fake = FakeApiServer()
    assert fake.bookmark_interval == 60.0
    assert (fake.store.history_window, fake.store.history_size) == (75.0, 100 * 1024)
    assert fake.compaction_interval == 300.0
    assert fake.backend.too_large_wait == 3.0
    assert fake.store.grace_period_scale == 1.0


def test_watch_history_is_a_time_window() -> None:
    """The watch cache keeps events for eventFreshDuration (75 s), not a fixed count: a
    resourceVersion whose successors are older than that gets 410 Expired; one inside the
    window still resumes. (A test clock stands in for 76 s.)"""
    now = [1000.0]
    with FakeApiServer(clock=lambda: now[0]) as fake, fake.api_client() as api:
        core = client.CoreV1Api(api)
        fake.add_node("n1")
        old = str(fake.resource_version)
        core.patch_node("n1", {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE)
        now[0] += 60
        recent = str(fake.resource_version)
        core.patch_node("n1", {"metadata": {"labels": {"a": "2"}}}, _content_type=MERGE)
        now[0] += 16  # the first patch is now 76 s old, the second 16 s
        with pytest.raises(ApiException) as err:
            list(watch.Watch().stream(core.list_node, resource_version=old, timeout_seconds=1))
        assert err.value.status == 410
        events = list(
            watch.Watch().stream(core.list_node, resource_version=recent, timeout_seconds=1)
        )
        assert [e["raw_object"]["metadata"]["labels"]["a"] for e in events] == ["2"]


def test_bookmark_before_the_deadline_and_every_interval(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """cacheWatcher.nextBookmarkTime: a bookmark every interval and one 2 s before the
    watch's deadline, none after it; a bookmark carries a resourceVersion the watch has not
    passed (the first may repeat the watch's own)."""
    server.add_node("n1")
    server.bookmark_interval = 60.0
    started = time.monotonic()
    arrivals = []
    for event in watch.Watch().stream(
        v1.list_node,
        resource_version=str(server.resource_version),
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    ):
        assert event["type"] == "BOOKMARK"
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 1
    assert 0.8 <= arrivals[0] <= 1.6  # 3 s timeout - 2 s


def test_watch_from_a_future_resource_version_waits(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """A plain watch from a resourceVersion the server has not reached is accepted and
    delivers nothing until the server passes it (cache_watcher only sends newer events; API
    concepts: watches of unrecognized versions "may wait indefinitely")."""
    server.add_node("n0")
    future = server.resource_version + 2
    in_background(lambda: [server.add_node(f"n{i}") for i in (1, 2, 3)])
    w = watch.Watch()
    names = []
    for event in w.stream(v1.list_node, resource_version=str(future), timeout_seconds=3):
        names.append(event["raw_object"]["metadata"]["name"])
        w.stop()
    assert names == ["n3"]


def test_too_large_resource_version(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    """A GET/LIST at a resourceVersion the server has not reached waits (3 s upstream), then
    is a 504 Timeout "Too large resource version" with cause ResourceVersionTooLarge and
    Retry-After: 1 (storage.NewTooLargeResourceVersionError); a watch with
    sendInitialEvents=true gets the same Status as an ERROR event (Cacher.Watch)."""
    server.add_node("n1")
    ahead = server.resource_version + 100
    for path in ("/api/v1/nodes/n1", "/api/v1/nodes"):
        answer = send(v1.api_client, "GET", path, query=[("resourceVersion", str(ahead))])
        assert answer.status == 504
        assert answer.headers["Retry-After"] == "1"
        status = answer.body
        assert status["reason"] == "Timeout"
        assert status["message"] == (
            f"Timeout: Too large resource version: {ahead}, current: {server.resource_version}"
        )
        assert status["details"]["causes"] == [
            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
        ]
    code, _, body = raw(
        server,
        "GET",
        f"/api/v1/nodes?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
        f"&resourceVersionMatch=NotOlderThan&resourceVersion={ahead}&timeoutSeconds=2",
    )
    assert code == 200
    (line,) = body.splitlines()
    event = json.loads(line)
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (504, "Timeout")


def test_continue_tokens_expire_after_compaction(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    """A continue token pins the first page's revision; once etcd has compacted it away
    the next page is 410 Expired, with an "inconsistent" token (rv -1) to go on from the
    newest revision (etcd3 store: handleCompactedErrorForPaging). Tokens are
    base64({"v": "meta.k8s.io/v1", "rv": N, "start": key}) (storage/continue.go); the
    compactor only drops revisions older than its previous round (etcd3/compact.go)."""
    for name in ("n1", "n2", "n3"):
        server.add_node(name)
    page = v1.list_node(limit=1)
    token = page.metadata._continue
    decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert decoded == {
        "v": "meta.k8s.io/v1",
        "rv": int(page.metadata.resource_version),
        "start": "n1\x00",
    }
    server.store.compaction_tick()  # remembers the revision; compacts nothing yet
    server.add_node("n4")
    server.store.compaction_tick()  # compacts to the first page's revision: still readable
    assert [n.metadata.name for n in v1.list_node(limit=1, _continue=token).items] == ["n2"]
    server.store.compaction_tick()  # compacts past it
    with pytest.raises(ApiException) as err:
        v1.list_node(limit=1, _continue=token)
    assert err.value.status == 410
    status = status_of(err.value)
    assert status["reason"] == "Expired"
    inconsistent = status["metadata"]["continue"]
    rest = v1.list_node(_continue=inconsistent)
    assert [n.metadata.name for n in rest.items] == ["n2", "n3", "n4"]
    with pytest.raises(ApiException) as err:
        v1.list_node(limit=1, _continue=token, resource_version="5")
    assert err.value.status == 400


# --- media types: handlers/negotiation ------------------------------------------------------------


def test_protobuf_bodies_are_415_and_protobuf_only_accept_is_406(server: FakeApiServer) -> None:
    """The fake has no protobuf serializer: a protobuf request body is refused like any body
    without a serializer, 415 UnsupportedMediaType (NegotiateInputSerializer); an Accept that
    allows only protobuf is 406 NotAcceptable. client-go falls back to JSON after a 415 only
    for CBOR (requestClientContentConfigProvider.UnsupportedMediaType), not protobuf."""
    code, _, body = raw(
        server,
        "POST",
        "/api/v1/namespaces",
        b"k8s\x00\x0a\x0f",
        {"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    status = json.loads(body)
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    assert status["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json"
    )
    code, _, body = raw(
        server, "GET", "/api/v1/nodes", headers={"Accept": "application/vnd.kubernetes.protobuf"}
    )
    assert (code, json.loads(body)["reason"]) == (406, "NotAcceptable")
    code, _, _ = raw(
        server,
        "GET",
        "/api/v1/nodes",
        headers={"Accept": "application/vnd.kubernetes.protobuf,application/json"},
    )
    assert code == 200
    code, _, body = raw(
        server,
        "PATCH",
        "/api/v1/nodes/n1",
        b"{}",
        {"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    assert (code, json.loads(body)["reason"]) == (415, "UnsupportedMediaType")


def test_kubectl_fails_on_protobuf_like_against_a_server_without_it(
    server: FakeApiServer, tmp_path: Path
) -> None:
    """kubectl 1.34's typed commands (``create namespace``) send protobuf bodies: one
    request, a 415, no JSON retry, "Error from server (UnsupportedMediaType)", exit 1 -
    what it does against any server without protobuf. Manifest commands send JSON."""
    kubectl = tool("kubectl", ROOT / ".tools" / "bin" / "kubectl")
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    run = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "create", "namespace", "x"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert run.returncode == 1
    assert "Error from server (UnsupportedMediaType)" in run.stderr
    (post,) = server.requests.records(method="POST")
    assert (post.status, post.content_type) == (415, "application/vnd.kubernetes.protobuf")
    manifest = tmp_path / "ns.json"
    manifest.write_text('{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}}')
    run = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "create", "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert server.get("namespace", "y") is not None
