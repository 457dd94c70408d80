"""A narrow, typed wrapper around the Kubernetes client: only the calls the agent makes.

Requests go through the official client's generic request path
(``ApiClient.param_serialize`` + ``ApiClient.call_api``): its configuration (API server
URL, bearer token and its refresh, CA, client certificates, proxy), its URL and query
encoding and its urllib3 pool. The typed API classes (``CoreV1Api``, ...) are not used:
the agent sends plain dicts and reads every response raw, and the first use of a typed
class imports its pydantic models (``CoreV1Api``: 254 modules, ~20 MiB of the daemon's
RSS). Responses become the plain types of :mod:`nodelocaldns_agent.kube.types`; errors become
:class:`ApiError` with the HTTP status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
import yaml

# Named modules of the official client. (Any of them runs ``kubernetes/__init__``, which
# loads config, watch, stream, ... but never the typed API classes or their models.)
from kubernetes.client.api_client import ApiClient
from kubernetes.client.configuration import Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import load_incluster_config
from kubernetes.config.kube_config import load_kube_config

from nodelocaldns_agent.errors import ConfigError, TransientError
from nodelocaldns_agent.kube.types import LeaseView, NodeView, PodView, WatchEvent

log = logging.getLogger(__name__)
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
#: seconds any single non-watch request may take
REQUEST_TIMEOUT = 30.0
#: the security scheme of every Kubernetes API operation (the configuration's bearer
#: token, refreshed by its hook, e.g. the rotated in-cluster service account token)
AUTH_SETTINGS = ["BearerToken"]

NODES = "/api/v1/nodes"
NODE = "/api/v1/nodes/{name}"
EVENTS = "/api/v1/namespaces/{namespace}/events"
EVENT = "/api/v1/namespaces/{namespace}/events/{name}"
#: Where Events about the Node go. A Node has no namespace, and kube-apiserver accepts a
#: core/v1 Event without ``eventTime`` about such an object only in "" or "default"
#: (``legacyValidateEvent``, pkg/apis/core/validation/events.go). client-go's recorder
#: (tools/record ``makeEvent``), which kubelet and node-problem-detector use, picks
#: "default"; so do we, whatever namespace the agent runs in.
EVENT_NAMESPACE = "default"
PODS = "/api/v1/pods"
EVICTION = "/api/v1/namespaces/{namespace}/pods/{name}/eviction"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
DAEMONSET = "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"
DAEMONSETS = "/apis/apps/v1/namespaces/{namespace}/daemonsets"
NAMESPACED_PODS = "/api/v1/namespaces/{namespace}/pods"
CONFIGMAP = "/api/v1/namespaces/{namespace}/configmaps/{name}"
SERVICE = "/api/v1/namespaces/{namespace}/services/{name}"
ENDPOINTS = "/api/v1/namespaces/{namespace}/endpoints/{name}"
NAMESPACE = "/api/v1/namespaces/{name}"
ADMISSION_POLICIES = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
ADMISSION_BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
VERSION = "/version"

Query = list[tuple[str, Any]]


class ApiError(TransientError):
    """An API call failed; ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, what: str, status: int, reason: str, delay: float = 5.0) -> None:
        super().__init__(f"{what}: {status or 'no answer'} {reason}".strip(), delay)
        self.status = status
        self.reason = reason


def load_config(kubeconfig: str | None, context: str | None = None) -> ApiClient:
    """In-cluster config by default; a kubeconfig when given: one file, or several joined
    by ``:`` (as ``$KUBECONFIG``; the client merges them as kubectl does, the first file
    that sets a value wins), with ``context`` instead of its current-context."""
    cfg = Configuration()
    try:
        if kubeconfig:
            load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context or None, client_configuration=cfg
            )
        else:
            load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        raise ConfigError(
            f"--kubeconfig {kubeconfig}: {exc}"
            if kubeconfig
            else f"in-cluster Kubernetes config: {exc} (use --kubeconfig outside a pod)"
        ) from exc
    cfg.retries = 0
    return ApiClient(cfg)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _query(**params: Any) -> Query:
    """Query parameters by their API names, without the unset ones (None)."""
    return [(key, value) for key, value in params.items() if value is not None]


class KubeApi:
    """The calls the agent makes, nothing else."""

    def __init__(
        self,
        api_client: ApiClient,
        on_request: Callable[[int], None] | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._timeout = request_timeout
        self._client = api_client
        self._on_request = on_request or (lambda status: None)

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        query: Query,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> RESTResponse:
        """One request through the client's generic path; ApiException unless 2xx.

        The response body is not read (a watch streams it)."""
        headers: dict[str, str] = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self._client.param_serialize(
            method=method,
            resource_path=path,
            path_params=params,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=AUTH_SETTINGS,
        )
        resp = self._client.call_api(*request, _request_timeout=timeout)
        if not 200 <= resp.status <= 299:
            resp.read()  # type: ignore[no-untyped-call]
            raise ApiException(http_resp=resp)
        return resp

    def _call(
        self,
        what: str,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        query: Query | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """A request whose JSON answer is returned as plain dicts and lists."""
        with self._errors(what):
            resp = self._send(
                method, path, params or {}, query or [], body, content_type, self._timeout
            )
            data = resp.read()  # type: ignore[no-untyped-call]
        self._on_request(resp.status)
        try:
            return json.loads(data) if data else {}
        except ValueError as exc:
            raise ApiError(what, 200, f"response is not JSON: {exc}") from exc

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """The client's errors as :class:`ApiError` (and counted), for every request."""
        try:
            yield
        except ApiException as exc:
            self._on_request(exc.status or 0)
            delay = 5.0
            if exc.status == 429 and exc.headers and exc.headers.get("Retry-After"):
                try:
                    delay = float(exc.headers["Retry-After"])
                except ValueError:
                    delay = 5.0
            raise ApiError(what, exc.status or 0, _status_reason(exc), delay) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._on_request(0)
            raise ApiError(what, 0, f"{type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------ nodes
    def list_own_node(self, name: str) -> tuple[NodeView, str]:
        """The Node and the list's resourceVersion, to start (or resume) its watch from."""
        page = self._call(
            f"list node {name}", "GET", NODES, query=_query(fieldSelector=f"metadata.name={name}")
        )
        items = page.get("items") or []
        if not items:
            raise ApiError(f"list node {name}", 404, "NotFound")
        rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
        return NodeView.from_object(items[0]), rv

    def list_nodes(self, page_size: int = 500) -> list[dict[str, Any]]:
        """Every Node, in pages. A ``continue`` token expires once the API server has
        compacted past its revision (410 Expired): the list then starts over, once. The
        pages of one list are one snapshot; mixing pages of two lists could miss nodes."""
        try:
            return self._all_nodes(page_size)
        except ApiError as exc:
            if exc.status != 410:
                raise
            log.info("the node list expired between two pages; listing again")
            return self._all_nodes(page_size)

    def _all_nodes(self, page_size: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            page = self._call(
                "list nodes", "GET", NODES, query=_query(**{"continue": cont}, limit=page_size)
            )
            items += page.get("items") or []
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items

    def patch_node_metadata(
        self, name: str, annotations: dict[str, str | None], labels: dict[str, str | None]
    ) -> NodeView:
        """Merge-patch only the given keys (None removes a key); other keys are untouched."""
        body: dict[str, Any] = {"metadata": {}}
        if annotations:
            body["metadata"]["annotations"] = annotations
        if labels:
            body["metadata"]["labels"] = labels
        obj = self._call(
            f"patch node {name}", "PATCH", NODE, {"name": name}, body=body, content_type=MERGE_PATCH
        )
        return NodeView.from_object(obj)

    def watch_node(self, name: str, rv: str, timeout_seconds: int) -> Iterator[WatchEvent]:
        """Watch one node from resourceVersion ``rv``; ApiError(410) when it expired."""
        for kind, obj in self._watch(
            f"watch node {name}",
            NODES,
            {},
            rv,
            timeout_seconds,
            fieldSelector=f"metadata.name={name}",
        ):
            yield WatchEvent(kind, NodeView.from_object(obj))

    def _watch(
        self,
        what: str,
        path: str,
        params: dict[str, str],
        rv: str,
        timeout_seconds: int,
        **selectors: str,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        query = _query(
            allowWatchBookmarks=True,
            **selectors,
            resourceVersion=rv,
            timeoutSeconds=timeout_seconds,
            watch=True,
        )
        with self._errors(what):
            resp = self._send(
                "GET", path, params, query, None, JSON, (self._timeout, timeout_seconds + 30.0)
            )
        self._on_request(resp.status)
        stream = resp.response  # the urllib3 response, its body not read yet
        try:
            for line in _lines(stream):
                try:
                    ev = json.loads(line)
                except ValueError as exc:
                    raise ApiError(what, 200, f"bad watch event: {exc}") from exc
                kind = ev.get("type")
                obj = ev.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 500)
                    raise ApiError(what, code, str(obj.get("reason") or obj.get("message")))
                if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    yield kind, obj
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(what, 0, f"stream broken: {type(exc).__name__}") from exc
        finally:
            stream.release_conn()

    # ------------------------------------------------------------ events
    def create_node_event(
        self, node: NodeView, reason: str, message: str, warning: bool, component: str
    ) -> str:
        """A core/v1 Event about ``node`` (count 1), as client-go's recorder makes it;
        returns its name, for :meth:`repeat_node_event`."""
        now = now_rfc3339()
        # client-go names Events <object>.<creation time in hex nanoseconds>
        name = f"{node.name}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": EVENT_NAMESPACE},
            # kubectl describe node finds events by the Node's uid
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Node",
                "name": node.name,
                "uid": node.uid or node.name,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": component, "host": node.name},
            "reportingComponent": component,
            "reportingInstance": node.name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        obj = self._call(
            f"create event {reason}", "POST", EVENTS, {"namespace": EVENT_NAMESPACE}, body=body
        )
        return str((obj.get("metadata") or {}).get("name") or name)

    def repeat_node_event(self, name: str, count: int, message: str) -> None:
        """The same Event again: its count, last time and message move on (what client-go's
        EventCorrelator patches for a repeat). ApiError 404 when it is gone (Events expire
        after an hour by default)."""
        body = {"count": count, "lastTimestamp": now_rfc3339(), "message": message[:1024]}
        self._call(
            f"update event {name}",
            "PATCH",
            EVENT,
            {"namespace": EVENT_NAMESPACE, "name": name},
            body=body,
            content_type=MERGE_PATCH,
        )

    # ------------------------------------------------------------ leases
    def get_lease(self, namespace: str, name: str) -> LeaseView | None:
        try:
            obj = self._call(
                f"get lease {name}", "GET", LEASE, {"namespace": namespace, "name": name}
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return _lease(obj)

    def list_leases(self, namespace: str, selector: str) -> tuple[list[LeaseView], str]:
        page = self._call(
            "list leases",
            "GET",
            LEASES,
            {"namespace": namespace},
            query=_query(labelSelector=selector),
        )
        rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
        return [_lease(item) for item in page.get("items") or []], rv

    def watch_leases(
        self, namespace: str, selector: str, rv: str, timeout_seconds: int
    ) -> Iterator[tuple[str, LeaseView]]:
        for kind, obj in self._watch(
            "watch leases",
            LEASES,
            {"namespace": namespace},
            rv,
            timeout_seconds,
            labelSelector=selector,
        ):
            yield kind, _lease(obj)

    def create_lease(self, namespace: str, name: str, holder: str, duration: int) -> LeaseView:
        body = _lease_body(name, holder, duration, None)
        obj = self._call(
            f"create lease {name}", "POST", LEASES, {"namespace": namespace}, body=body
        )
        return _lease(obj)

    def replace_lease(
        self, namespace: str, name: str, holder: str, duration: int, resource_version: str
    ) -> LeaseView:
        body = _lease_body(name, holder, duration, resource_version)
        obj = self._call(
            f"replace lease {name}",
            "PUT",
            LEASE,
            {"namespace": namespace, "name": name},
            body=body,
        )
        return _lease(obj)

    def renew_lease(
        self, namespace: str, name: str, holder: str, duration: int, resource_version: str
    ) -> LeaseView:
        """Renew a Lease we hold: a merge patch whose resourceVersion is a precondition
        (409 when it changed). Not a PUT: kube-apiserver creates a missing Lease on PUT
        (``AllowCreateOnUpdate`` is true in pkg/registry/coordination/lease/strategy.go),
        so a renewal that arrives after the Lease was deleted would bring it back as an
        orphan slot; a patch of a missing object is a 404 (a merge patch never creates:
        ``createNewObject`` of the patch handler, k8s.io/apiserver endpoints/handlers/
        patch.go, answers NotFound). The fake API server enforces both."""
        body = {
            "metadata": {"resourceVersion": resource_version},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": duration,
                "renewTime": now_rfc3339(),
            },
        }
        obj = self._call(
            f"renew lease {name}",
            "PATCH",
            LEASE,
            {"namespace": namespace, "name": name},
            body=body,
            content_type=MERGE_PATCH,
        )
        return _lease(obj)

    def delete_lease(self, namespace: str, name: str, resource_version: str | None) -> None:
        """Delete a Lease; only at ``resource_version`` when one is given (409 otherwise).
        None deletes whatever is there (an empty string is a precondition too)."""
        body = (
            None
            if resource_version is None
            else {"preconditions": {"resourceVersion": resource_version}}
        )
        self._call(
            f"delete lease {name}",
            "DELETE",
            LEASE,
            {"namespace": namespace, "name": name},
            body=body,
        )

    # ------------------------------------------------------------ pods
    def list_pods_on_node(self, node: str) -> list[PodView]:
        page = self._call(
            f"list pods on {node}", "GET", PODS, query=_query(fieldSelector=f"spec.nodeName={node}")
        )
        return [_pod(item) for item in page.get("items") or []]

    def evict_pod(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        self._call(
            f"evict pod {namespace}/{name}",
            "POST",
            EVICTION,
            {"namespace": namespace, "name": name},
            body=body,
        )

    # ------------------------------------------------------------ daemonsets
    def get_daemonset(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            f"get daemonset {namespace}/{name}",
            "GET",
            DAEMONSET,
            {"namespace": namespace, "name": name},
        )
        return result

    def list_daemonsets(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._items("daemonsets", DAEMONSETS, namespace, selector)

    def json_patch_daemonset(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        self._call(
            f"patch daemonset {namespace}/{name}",
            "PATCH",
            DAEMONSET,
            {"namespace": namespace, "name": name},
            body=ops,
            content_type=JSON_PATCH,
        )

    # ------------------------------------------------------------ cluster reads
    # (``kubectl nodelocaldns``: the operator's view and preflight; raw objects)
    def read(self, path: str, **params: str) -> dict[str, Any] | None:
        """GET one object or list by its API path template (``CONFIGMAP``, ``SERVICE``,
        ...) and ``params``; None when it does not exist (404)."""
        what = f"get {path.format(**params)}"
        try:
            result: dict[str, Any] = self._call(what, "GET", path, params)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._items("pods", NAMESPACED_PODS, namespace, selector)

    def _items(self, kind: str, path: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The raw items of ``kind`` in ``namespace`` matching the label ``selector``."""
        page = self._call(
            f"list {kind} in {namespace}",
            "GET",
            path,
            {"namespace": namespace},
            query=_query(labelSelector=selector),
        )
        return list(page.get("items") or [])


def _lines(resp: Any) -> Iterator[str]:
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line.decode("utf-8", "replace")
    if buf.strip():
        yield buf.decode("utf-8", "replace")


def _status_reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("reason") or body.get("message") or exc.reason or "")
    except (ValueError, TypeError):
        return str(exc.reason or "")


#: label on the agent's restart-slot leases (so waiters can list/watch only those)
LEASE_LABEL = "app.kubernetes.io/component"
LEASE_LABEL_VALUE = "nodelocaldns-agent-restart-slot"
#: label with the slot Lease's own name, so a waiter can watch just the slots it may take
SLOT_LABEL = "nodelocaldns-agent.io/slot"


def _lease_body(name: str, holder: str, duration: int, rv: str | None) -> dict[str, Any]:
    labels = {LEASE_LABEL: LEASE_LABEL_VALUE, SLOT_LABEL: name}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if rv is not None:
        meta["resourceVersion"] = rv
    now = now_rfc3339()
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": now,
            "renewTime": now,
        },
    }


def _lease(obj: dict[str, Any]) -> LeaseView:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    return LeaseView(
        name=str(meta.get("name", "")),
        holder=str(spec.get("holderIdentity") or ""),
        resource_version=str(meta.get("resourceVersion", "")),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        renew_time=str(spec.get("renewTime") or ""),
    )


def _pod(obj: dict[str, Any]) -> PodView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
    return PodView(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        dns_policy=str(spec.get("dnsPolicy") or "ClusterFirst"),
        host_network=bool(spec.get("hostNetwork")),
        started=parse_time(status.get("startTime") or meta.get("creationTimestamp")),
        controller_kind=str(owners[0].get("kind", "")) if owners else "",
        mirror="kubernetes.io/config.mirror" in (meta.get("annotations") or {}),
        phase=str(status.get("phase") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def current_context(kubeconfig: str) -> str | None:
    """kubectl's current context of ``:``-joined kubeconfig files: the first file that sets
    one wins (client-go ``tools/clientcmd/loader.go``, ``ClientConfigLoadingRules.Load``:
    "the first file to set a particular map key wins"; the Python client's
    ``KubeConfigMerger`` keeps the last one instead). Missing files are skipped."""
    for name in kubeconfig.split(os.pathsep):
        path = Path(name).expanduser()
        if not name or not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"kubeconfig {path}: {exc}") from exc
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


def context_namespace(kubeconfig: str, context: str | None) -> str | None:
    """The namespace ``context`` (default: the current context) of ``kubeconfig`` names,
    as kubectl uses it when no ``-n`` is given; None when it names none."""
    from kubernetes.config.kube_config import list_kube_config_contexts

    try:
        contexts, current = list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        raise ConfigError(f"--kubeconfig {kubeconfig}: {exc}") from exc
    wanted = context or (current or {}).get("name")
    for item in contexts or []:
        if item.get("name") == wanted:
            namespace = (item.get("context") or {}).get("namespace")
            return str(namespace) if namespace else None
    raise ConfigError(f"--context {wanted}: no such context in {kubeconfig}")
