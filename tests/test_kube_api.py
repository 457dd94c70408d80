"""``KubeApi`` on the wire: the requests it sends through the client's generic request path
(``ApiClient.param_serialize`` + ``call_api``) against the fake API server, the auth it
takes from a kubeconfig or the in-cluster service account (loopback servers only), and that
no typed API class or model module gets loaded."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import pytest
from kubernetes.client.api_client import ApiClient

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kube.api import (
    JSON,
    JSON_PATCH,
    LEASE_LABEL,
    LEASE_LABEL_VALUE,
    MERGE_PATCH,
    ApiError,
    KubeApi,
    load_config,
)
from nodelocaldns_agent.kube.types import NodeView
from testing.fake_apiserver import FakeApiServer

REPO = Path(__file__).resolve().parent.parent
NS = "nodelocaldns"
SELECTOR = f"{LEASE_LABEL}={LEASE_LABEL_VALUE}"


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        srv.add_node("node-a")
        yield srv


@pytest.fixture
def client(server: FakeApiServer, tmp_path: Path) -> Iterator[ApiClient]:
    """Through ``load_config`` as ``run`` does (kubeconfig, urllib3 retries off)."""
    api_client = load_config(str(server.write_kubeconfig(tmp_path / "kc")))
    yield api_client
    api_client.close()


@pytest.fixture
def api(client: ApiClient) -> KubeApi:
    return KubeApi(client, request_timeout=5.0)


def last(server: FakeApiServer, verb: str) -> tuple[str, str, dict[str, str], str]:
    rec = server.requests.records(verb=verb)[-1]
    query = {k: v[-1] for k, v in parse_qs(rec.query, keep_blank_values=True).items()}
    return rec.method, rec.path, query, rec.content_type


def test_nodes_events_and_content_types(server: FakeApiServer, api: KubeApi) -> None:
    own, rv = api.list_own_node("node-a")
    assert own.name == "node-a" and own.uid and rv
    assert last(server, "list")[2] == {"fieldSelector": "metadata.name=node-a"}
    with pytest.raises(ApiError) as err:
        api.list_own_node("nobody")
    assert err.value.status == 404

    patched = api.patch_node_metadata("node-a", {"a.io/x": "1"}, {"a.io/l": "v"})
    assert (patched.annotations["a.io/x"], patched.labels["a.io/l"]) == ("1", "v")
    assert last(server, "patch") == ("PATCH", "/api/v1/nodes/node-a", {}, MERGE_PATCH)
    removed = api.patch_node_metadata("node-a", {"a.io/x": None}, {})
    assert "a.io/x" not in removed.annotations and removed.labels["a.io/l"] == "v"

    name = api.create_node_event(patched, "Migrated", "m" * 2000, False, "agent")
    (event,) = server.objects("events", "default")
    assert event["metadata"]["name"] == name and name.startswith("node-a.")
    assert event["involvedObject"]["name"] == "node-a" and len(event["message"]) == 1024
    assert (event["count"], event["type"], event["source"]["host"]) == (1, "Normal", "node-a")
    method, path, _, content_type = last(server, "create")
    assert (method, path, content_type) == ("POST", "/api/v1/namespaces/default/events", JSON)
    api.repeat_node_event(name, 2, "again")
    (event,) = server.objects("events", "default")
    assert (event["count"], event["message"]) == (2, "again")
    assert last(server, "patch")[:2] == ("PATCH", f"/api/v1/namespaces/default/events/{name}")
    with pytest.raises(ApiError) as gone:
        api.repeat_node_event("node-a.gone", 2, "x")
    assert gone.value.status == 404


def test_list_nodes_follows_continue(server: FakeApiServer, api: KubeApi) -> None:
    for i in range(600):
        server.add_node(f"n{i:03}")
    server.requests.clear()
    names = [n["metadata"]["name"] for n in api.list_nodes()]
    assert len(names) == len(set(names)) == 601
    first, second = (parse_qs(r.query) for r in server.requests.records(verb="list"))
    assert first == {"limit": ["500"]}
    assert second["limit"] == ["500"] and second["continue"] != [""]


def test_list_nodes_starts_over_when_its_continue_token_expired(
    server: FakeApiServer, api: KubeApi
) -> None:
    """kube-apiserver answers 410 Expired to a ``continue`` token whose revision was
    compacted (its pages are one snapshot): the list starts over instead of failing."""
    for i in range(5):
        server.add_node(f"n{i}")
    pages = 0
    real = api._call

    def compact_after_first_page(*args: object, **kwargs: object) -> object:
        nonlocal pages
        page = real(*args, **kwargs)  # type: ignore[arg-type]
        pages += 1
        if pages == 1:  # the token's revision is compacted away, then a node joins
            server.compact()
            server.add_node("late")
        return page

    api._call = compact_after_first_page  # type: ignore[method-assign]
    names = sorted(n["metadata"]["name"] for n in api.list_nodes(page_size=2))
    assert names == sorted(["node-a", "late", *(f"n{i}" for i in range(5))])
    statuses = [r.status for r in server.requests.records(verb="list")]
    assert statuses[:2] == [200, 410] and set(statuses[2:]) == {200}


def test_leases_create_replace_watch_delete(server: FakeApiServer, api: KubeApi) -> None:
    assert api.get_lease(NS, "slot-0") is None
    created = api.create_lease(NS, "slot-0", "node-a", 30)
    assert (created.holder, created.duration_seconds) == ("node-a", 30)
    assert last(server, "create")[1:] == (
        f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases",
        {},
        JSON,
    )
    leases, rv = api.list_leases(NS, SELECTOR)
    assert [lease.name for lease in leases] == ["slot-0"]
    assert last(server, "list")[2] == {"labelSelector": SELECTOR}

    events = api.watch_leases(NS, SELECTOR, rv, timeout_seconds=5)
    renewed = api.replace_lease(NS, "slot-0", "node-a", 30, created.resource_version)
    assert last(server, "update")[:2] == (
        "PUT",
        f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/slot-0",
    )
    kind, lease = next(events)
    assert (kind, lease.resource_version) == ("MODIFIED", renewed.resource_version)
    events.close()
    assert last(server, "watch")[2] == {
        "allowWatchBookmarks": "true",
        "labelSelector": SELECTOR,
        "resourceVersion": rv,
        "timeoutSeconds": "5",
        "watch": "true",
    }

    again = api.renew_lease(NS, "slot-0", "node-a", 30, renewed.resource_version)
    assert last(server, "patch")[::3] == (
        "PATCH",
        MERGE_PATCH,
    )
    with pytest.raises(ApiError) as stale:  # the renewal's resourceVersion is a precondition
        api.renew_lease(NS, "slot-0", "node-a", 30, renewed.resource_version)
    assert stale.value.status == 409

    with pytest.raises(ApiError) as err:  # the stale resourceVersion is a precondition
        api.delete_lease(NS, "slot-0", created.resource_version)
    assert err.value.status == 409
    with pytest.raises(ApiError) as empty:  # so is an empty one
        api.delete_lease(NS, "slot-0", "")
    assert empty.value.status == 409
    api.delete_lease(NS, "slot-0", again.resource_version)
    assert api.get_lease(NS, "slot-0") is None
    assert last(server, "delete")[3] == JSON
    with pytest.raises(ApiError) as gone:  # a renewal never re-creates a deleted Lease
        api.renew_lease(NS, "slot-0", "node-a", 30, again.resource_version)
    assert gone.value.status == 404 and api.get_lease(NS, "slot-0") is None
    api.create_lease(NS, "slot-0", "node-b", 30)
    api.delete_lease(NS, "slot-0", None)  # unconditional
    assert api.get_lease(NS, "slot-0") is None


def test_watch_node_and_410(server: FakeApiServer, api: KubeApi) -> None:
    _, rv = api.list_own_node("node-a")
    events = api.watch_node("node-a", rv, timeout_seconds=5)
    api.patch_node_metadata("node-a", {"a.io/x": "1"}, {})
    ev = next(events)
    assert (ev.type, ev.node.annotations.get("a.io/x")) == ("MODIFIED", "1")
    events.close()
    assert last(server, "watch")[2]["fieldSelector"] == "metadata.name=node-a"
    server.compact()
    with pytest.raises(ApiError) as err:
        list(api.watch_node("node-a", rv, timeout_seconds=5))
    assert err.value.status == 410


def test_pods_evictions_and_daemonsets(server: FakeApiServer, api: KubeApi) -> None:
    server.add_pod("web-1", node_name="node-a", labels={"app": "web"})
    server.add_pod("elsewhere", node_name="node-b")
    assert [p.name for p in api.list_pods_on_node("node-a")] == ["web-1"]
    assert last(server, "list")[1:3] == ("/api/v1/pods", {"fieldSelector": "spec.nodeName=node-a"})
    (web,) = api.list_pods_on_node("node-a")
    assert (web.phase, web.deleting) == ("Running", False)
    api.evict_pod("default", "web-1")
    assert last(server, "evict")[:2] == ("POST", "/api/v1/namespaces/default/pods/web-1/eviction")
    # graceful deletion: listed, terminating, for its grace period
    (web,) = api.list_pods_on_node("node-a")
    assert (web.name, web.deleting) == ("web-1", True)

    server.put_object(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": NS},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "env": []}]}}},
        }
    )
    assert api.get_daemonset(NS, "agent")["kind"] == "DaemonSet"
    op = {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "M"}}
    api.json_patch_daemonset(NS, "agent", [op])
    assert last(server, "patch")[3] == JSON_PATCH
    ds = server.get("daemonsets", "agent", NS)
    assert ds is not None
    assert ds["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "M"}]


def test_errors_carry_status_reason_and_retry_after(
    server: FakeApiServer, client: ApiClient
) -> None:
    statuses: list[int] = []
    counted = KubeApi(client, on_request=statuses.append)
    server.faults.fail(429, count=1, retry_after=7)
    with pytest.raises(ApiError) as err:
        counted.list_own_node("node-a")
    assert (err.value.status, err.value.reason, err.value.delay) == (429, "TooManyRequests", 7.0)
    with pytest.raises(ApiError) as err:
        counted.get_daemonset(NS, "missing")
    assert (err.value.status, err.value.reason) == (404, "NotFound")
    counted.list_own_node("node-a")
    assert statuses == [429, 404, 200]
    server.stop()
    with pytest.raises(ApiError) as err:
        counted.list_own_node("node-a")
    assert err.value.status == 0 and statuses[-1] == 0


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET with a list of one Node; keeps the request line and headers."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        node = {"kind": "Node", "metadata": {"name": "n"}}
        body = json.dumps({"kind": "NodeList", "metadata": {}, "items": [node]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def recorder(tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A loopback HTTP(S) server: (port, the requests it saw)."""
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_port, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_bearer_token_from_the_kubeconfig(tmp_path: Path) -> None:
    """The kubeconfig's token goes out as the Authorization header (the client's auth)."""
    with recorder() as (port, seen):
        kc = tmp_path / "kc"
        kc.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "users: [{name: u, user: {token: s3cret}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        )
        client = load_config(str(kc))
        node, _ = KubeApi(client).list_own_node("n")
        client.close()
    assert node == NodeView(name="n", resource_version="")
    (req,) = seen
    assert req["path"] == "/api/v1/nodes?fieldSelector=metadata.name%3Dn"
    assert req["authorization"] == "Bearer s3cret"
    assert req["accept"] == "application/json"


def test_in_cluster_config_tls_and_service_account_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --kubeconfig: KUBERNETES_SERVICE_HOST/PORT, the service account token as
    the bearer token and its CA verifying the API server's certificate (HTTPS)."""
    from kubernetes.config import incluster_config

    cert, key = tmp_path / "ca.crt", tmp_path / "key.pem"
    subprocess.run(
        [
            *["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"],
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    token = tmp_path / "token"
    token.write_text("sa-token")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(cert))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with recorder(tls) as (port, seen):
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
        client = load_config(None)
        assert client.configuration.host == f"https://127.0.0.1:{port}"
        KubeApi(client).list_own_node("n")
        client.close()
    (req,) = seen
    assert req["authorization"] == "bearer sa-token"

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ConfigError, match="in-cluster Kubernetes config: Service host/port"):
        load_config(None)


def test_no_typed_api_class_or_model_module_is_loaded(
    server: FakeApiServer, tmp_path: Path
) -> None:
    """The memory win (~25 MiB of RSS): a fresh interpreter doing the daemon's calls loads
    neither ``kubernetes.client.api.*`` nor ``kubernetes.client.models.*`` modules."""
    kubeconfig = server.write_kubeconfig(tmp_path / "kc")
    script = (
        "import sys\n"
        "from nodelocaldns_agent.kube.api import KubeApi, load_config\n"
        f"api = KubeApi(load_config({str(kubeconfig)!r}))\n"
        "_, rv = api.list_own_node('node-a')\n"
        "api.patch_node_metadata('node-a', {'a.io/x': '1'}, {})\n"
        "api.list_leases('ns', 'a=b')\n"
        "next(iter(api.watch_node('node-a', rv, 1)), None)\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith(\n"
        "    ('kubernetes.client.api.', 'kubernetes.client.models.', 'aiohttp'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == [], out.stdout
