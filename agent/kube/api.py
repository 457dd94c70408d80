"""A narrow, typed wrapper around the Kubernetes client: only the calls the agent makes.

Responses are read raw (``_preload_content=False``) and turned into the plain types of
:mod:`agent.kube.types`, which keeps the daemon's memory and CPU low and keeps client
models out of the rest of the code. Errors become :class:`ApiError` with the HTTP status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from agent.errors import ConfigError, TransientError
from agent.kube.types import LeaseView, NodeView, PodView, WatchEvent

log = logging.getLogger(__name__)
T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
#: seconds any single non-watch request may take
REQUEST_TIMEOUT = 30.0


class ApiError(TransientError):
    """An API call failed; ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, what: str, status: int, reason: str, delay: float = 5.0) -> None:
        super().__init__(f"{what}: {status or 'no answer'} {reason}".strip(), delay)
        self.status = status
        self.reason = reason


def load_config(kubeconfig: str | None) -> client.ApiClient:
    """In-cluster config by default; a kubeconfig file when given."""
    try:
        if kubeconfig:
            cfg = client.Configuration()
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=cfg
            )
        else:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(
            f"--kubeconfig {kubeconfig}: {exc}"
            if kubeconfig
            else f"in-cluster Kubernetes config: {exc} (use --kubeconfig outside a pod)"
        ) from exc
    cfg.retries = 0
    return client.ApiClient(cfg)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class KubeApi:
    """The calls the agent makes, nothing else."""

    def __init__(
        self,
        api_client: client.ApiClient,
        on_request: Callable[[int], None] | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._timeout = request_timeout
        self._core = client.CoreV1Api(api_client)
        self._coord = client.CoordinationV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._on_request = on_request or (lambda status: None)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self._timeout)
        kwargs.setdefault("_preload_content", False)
        try:
            resp = fn(*args, **kwargs)
        except ApiException as exc:
            self._on_request(exc.status or 0)
            reason = _status_reason(exc)
            delay = 5.0
            if exc.status == 429 and exc.headers and exc.headers.get("Retry-After"):
                try:
                    delay = float(exc.headers["Retry-After"])
                except ValueError:
                    delay = 5.0
            raise ApiError(what, exc.status or 0, reason, delay) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._on_request(0)
            raise ApiError(what, 0, f"{type(exc).__name__}: {exc}") from exc
        self._on_request(getattr(resp, "status", 200))
        if not kwargs["_preload_content"]:
            try:
                return json.loads(resp.data) if resp.data else {}
            except ValueError as exc:
                raise ApiError(what, 200, f"response is not JSON: {exc}") from exc
        return resp

    # ------------------------------------------------------------ nodes
    def get_node(self, name: str) -> tuple[NodeView, dict[str, Any]]:
        obj = self._call(f"get node {name}", self._core.read_node, name)
        return NodeView.from_object(obj), obj

    def list_own_node(self, name: str) -> tuple[NodeView, str]:
        """The Node and the list's resourceVersion to resume a watch from after a 410."""
        page = self._call(
            f"list node {name}", self._core.list_node, field_selector=f"metadata.name={name}"
        )
        items = page.get("items") or []
        if not items:
            raise ApiError(f"list node {name}", 404, "NotFound")
        rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
        return NodeView.from_object(items[0]), rv

    def list_nodes(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            page = self._call("list nodes", self._core.list_node, limit=500, _continue=cont)
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
            f"patch node {name}", self._core.patch_node, name, body, _content_type=MERGE_PATCH
        )
        return NodeView.from_object(obj)

    def watch_node(self, name: str, rv: str, timeout_seconds: int) -> Iterator[WatchEvent]:
        """Watch one node from resourceVersion ``rv``; ApiError(410) when it expired."""
        for kind, obj in self._watch(
            f"watch node {name}",
            self._core.list_node,
            (),
            rv,
            timeout_seconds,
            field_selector=f"metadata.name={name}",
        ):
            yield WatchEvent(kind, NodeView.from_object(obj))

    def _watch(
        self,
        what: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        rv: str,
        timeout_seconds: int,
        **selectors: str,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            resp = fn(
                *args,
                resource_version=rv,
                watch=True,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=(self._timeout, timeout_seconds + 30.0),
                **selectors,
            )
        except ApiException as exc:
            self._on_request(exc.status or 0)
            raise ApiError(what, exc.status or 0, _status_reason(exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._on_request(0)
            raise ApiError(what, 0, f"{type(exc).__name__}: {exc}") from exc
        self._on_request(resp.status)
        try:
            for line in _lines(resp):
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
            resp.release_conn()

    # ------------------------------------------------------------ events
    def create_node_event(
        self,
        namespace: str,
        node: NodeView,
        reason: str,
        message: str,
        warning: bool,
        component: str,
    ) -> None:
        now = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{node.name}.", "namespace": namespace},
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
        self._call(f"create event {reason}", self._core.create_namespaced_event, namespace, body)

    # ------------------------------------------------------------ leases
    def get_lease(self, namespace: str, name: str) -> LeaseView | None:
        try:
            obj = self._call(
                f"get lease {name}", self._coord.read_namespaced_lease, name, namespace
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return _lease(obj)

    def list_leases(self, namespace: str, selector: str) -> tuple[list[LeaseView], str]:
        page = self._call(
            "list leases", self._coord.list_namespaced_lease, namespace, label_selector=selector
        )
        rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
        return [_lease(item) for item in page.get("items") or []], rv

    def watch_leases(
        self, namespace: str, selector: str, rv: str, timeout_seconds: int
    ) -> Iterator[tuple[str, LeaseView]]:
        for kind, obj in self._watch(
            "watch leases",
            self._coord.list_namespaced_lease,
            (namespace,),
            rv,
            timeout_seconds,
            label_selector=selector,
        ):
            yield kind, _lease(obj)

    def create_lease(self, namespace: str, name: str, holder: str, duration: int) -> LeaseView:
        body = _lease_body(name, holder, duration, None)
        obj = self._call(
            f"create lease {name}", self._coord.create_namespaced_lease, namespace, body
        )
        return _lease(obj)

    def replace_lease(
        self, namespace: str, name: str, holder: str, duration: int, resource_version: str
    ) -> LeaseView:
        body = _lease_body(name, holder, duration, resource_version)
        obj = self._call(
            f"replace lease {name}", self._coord.replace_namespaced_lease, name, namespace, body
        )
        return _lease(obj)

    def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        body = {"preconditions": {"resourceVersion": resource_version}}
        self._call(
            f"delete lease {name}", self._coord.delete_namespaced_lease, name, namespace, body=body
        )

    # ------------------------------------------------------------ pods
    def list_pods_on_node(self, node: str) -> list[PodView]:
        page = self._call(
            f"list pods on {node}",
            self._core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={node}",
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
            self._core.create_namespaced_pod_eviction,
            name,
            namespace,
            body,
        )

    # ------------------------------------------------------------ daemonsets
    def get_daemonset(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            f"get daemonset {namespace}/{name}",
            self._apps.read_namespaced_daemon_set,
            name,
            namespace,
        )
        return result

    def json_patch_daemonset(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        self._call(
            f"patch daemonset {namespace}/{name}",
            self._apps.patch_namespaced_daemon_set,
            name,
            namespace,
            ops,
            _content_type=JSON_PATCH,
        )


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


def _lease_body(name: str, holder: str, duration: int, rv: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {LEASE_LABEL: LEASE_LABEL_VALUE}}
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
    )
