"""Routing of Kubernetes API paths and the operations behind them (no HTTP plumbing)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from . import resources
from .backend import Backend
from .evictions import admit_by_budgets
from .faults import RequestInfo
from .patch import apply_patch
from .resources import ResourceType
from .selectors import object_predicate
from .status import ApiError, bad_request, conflict, status_object

JSON = dict[str, Any]

# Types whose DELETE answers the deleted object (the others answer a Status), as upstream.
_RETURNS_DELETED_OBJECT = frozenset({"pods"})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""
    content_type: str = ""
    user_agent: str = ""

    def json(self, *, required: bool = True) -> Any:
        if not self.body.strip():
            if required:
                raise bad_request("the request body is empty")
            return None
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise bad_request(f"the request body is not valid JSON: {e}") from e


@dataclass
class Route:
    verb: str  # get list watch create update patch delete evict discovery health
    template: str
    rt: ResourceType | None = None
    namespace: str | None = None
    name: str = ""
    subresource: str = ""
    document: Any = None  # static answer (discovery)
    extra: dict[str, str] = field(default_factory=dict)

    def info(self, req: Request) -> RequestInfo:
        return RequestInfo(
            method=req.method,
            path=req.path,
            verb=self.verb,
            user_agent=req.user_agent,
            resource=self.rt.key if self.rt else "",
            namespace=self.namespace or "",
            name=self.name,
        )


def _not_found() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", "NotFound")


def _method_not_allowed(req: Request) -> ApiError:
    return ApiError(405, f"the server does not allow this method ({req.method}) on {req.path}")


def route(req: Request, server_address: str = "") -> Route:
    """Resolve a request to a :class:`Route`; unknown paths are a 404 Status."""
    path = req.path.rstrip("/") or "/"
    parts = [p for p in path.split("/") if p]
    get = req.method == "GET"
    # --- discovery and health ---
    if path in ("/healthz", "/readyz", "/livez") and get:
        return Route("health", path, document="ok")
    if path == "/openapi/v2" and get:
        # An empty protobuf Document: kubectl's client-side validation then finds no schema
        # for any kind and skips it (so `kubectl create -f` works without --validate=false).
        return Route("openapi", path, document=b"")
    if path == "/version" and get:
        return Route("discovery", path, document=resources.VERSION_INFO)
    if path == "/api" and get:
        return Route("discovery", path, document=resources.api_versions(server_address))
    if path == "/apis" and get:
        return Route("discovery", path, document=resources.api_group_list())
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    elif parts[:1] == ["apis"] and len(parts) == 2 and get:
        document = resources.api_group(parts[1])
        if document is None:
            raise _not_found()
        return Route("discovery", path, document=document)
    else:
        raise _not_found()
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if not rest:
        document = resources.api_resource_list(group, version)
        if document is None or not get:
            raise _not_found()
        return Route("discovery", path, document=document)

    legacy_watch = rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace: str | None = None
    template = base
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and (candidate := resources.find(group, version, rest[2])) is not None
        and candidate.namespaced
    ):
        namespace, rest = rest[1], rest[2:]
        template += "/namespaces/{namespace}"
    if not rest or len(rest) > 3:
        raise _not_found()
    rt = resources.find(group, version, rest[0])
    if rt is None or (namespace is None and rt.namespaced and len(rest) > 1):
        raise _not_found()
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in rt.subresources:
        raise _not_found()
    template += f"/{rt.plural}" + ("/{name}" if name else "") + (f"/{sub}" if sub else "")

    watch = legacy_watch or req.query.get("watch", "").lower() in ("true", "1")
    verb = _verb(req, name, sub, watch)
    if verb is None:
        raise _method_not_allowed(req)
    return Route(verb, template, rt, namespace, name, sub)


def _verb(req: Request, name: str, sub: str, watch: bool) -> str | None:
    if sub == "eviction":
        return "evict" if req.method == "POST" else None
    if watch:
        return "watch" if req.method == "GET" and not name else None
    table: dict[tuple[str, bool], str] = {
        ("GET", True): "get",
        ("GET", False): "list",
        ("POST", False): "create",
        ("PUT", True): "update",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
    }
    verb = table.get((req.method, bool(name)))
    if sub and verb not in ("get", "update", "patch"):
        return None
    return verb


# --- operations ----------------------------------------------------------------------------------


def perform(backend: Backend, req: Request, rt_route: Route) -> tuple[int, Any]:
    """Run a non-watch API operation; returns (HTTP status, JSON body)."""
    if req.query.get("dryRun"):
        raise bad_request("dryRun is not supported by the fake apiserver")
    rt = rt_route.rt
    if rt is None:
        return 200, rt_route.document
    store = backend.store
    ns, name = rt_route.namespace, rt_route.name
    verb = rt_route.verb
    if verb == "get":
        return 200, store.get(rt, ns, name)
    if verb == "list":
        return 200, _list(backend, rt, ns, req.query)
    if verb == "create":
        body = req.json()
        if not isinstance(body, dict):
            raise bad_request("the object must be a JSON object")
        return 201, store.create(rt, body, ns)
    if verb in ("update", "patch"):
        info = rt_route.info(req)
        body = req.json()

        def mutate(current: JSON) -> JSON:
            if backend.faults.take_first_write_conflict(info):
                raise conflict(rt, name)
            if verb == "update":
                if not isinstance(body, dict):
                    raise bad_request("the object must be a JSON object")
                return body
            return apply_patch(req.content_type, current, body)

        return 200, store.update(rt, ns, name, mutate, subresource=rt_route.subresource or None)
    if verb == "delete":
        options = req.json(required=False) or {}
        deleted = store.delete(rt, ns, name, options.get("preconditions"))
        if rt.plural in _RETURNS_DELETED_OBJECT or deleted["metadata"].get("deletionTimestamp"):
            return 200, deleted
        details = {"name": name, "kind": rt.plural, "uid": deleted["metadata"]["uid"]}
        if rt.group:
            details["group"] = rt.group
        success = status_object(200, "", "", details)
        del success["code"]
        return 200, success
    if verb == "evict":
        return _evict(backend, rt, ns, name, req)
    raise _method_not_allowed(req)


def _continue_token(key: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _list(backend: Backend, rt: ResourceType, ns: str | None, query: dict[str, str]) -> JSON:
    predicate = object_predicate(rt, query.get("labelSelector"), query.get("fieldSelector"))
    items, rv = backend.store.list(rt, ns, predicate)

    def key(obj: JSON) -> list[str]:
        return [obj["metadata"].get("namespace", ""), obj["metadata"]["name"]]

    metadata: JSON = {"resourceVersion": str(rv)}
    if token := query.get("continue"):
        try:
            start = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, binascii.Error) as e:
            raise bad_request(f"invalid continue token: {token!r}") from e
        items = [i for i in items if key(i) > start]
    limit = int(query.get("limit") or 0)
    if 0 < limit < len(items):
        metadata["remainingItemCount"] = len(items) - limit
        items = items[:limit]
        metadata["continue"] = _continue_token(key(items[-1]))
    for item in items:  # list items carry no kind/apiVersion on a real server either
        item.pop("kind", None)
        item.pop("apiVersion", None)
    return {
        "kind": f"{rt.kind}List",
        "apiVersion": rt.api_version,
        "metadata": metadata,
        "items": items,
    }


def _evict(
    backend: Backend, rt: ResourceType, ns: str | None, name: str, req: Request
) -> tuple[int, JSON]:
    body = req.json(required=False) or {}
    if body.get("kind", "Eviction") != "Eviction":
        raise bad_request(f"expected an Eviction, got {body.get('kind')}")
    body_name = (body.get("metadata") or {}).get("name")
    if body_name and body_name != name:
        raise bad_request(f"name in URL does not match name in Eviction object: {body_name}")
    pod = backend.store.get(rt, ns, name)
    pdb_type = resources.find("policy", "v1", "poddisruptionbudgets")
    assert pdb_type is not None
    admit_by_budgets(backend.store, pdb_type, pod)
    backend.evictions.admit(pod)
    options = body.get("deleteOptions") or {}
    backend.store.delete(rt, ns, name, options.get("preconditions"))
    return 201, status_object(201, "", "")
