"""Routing of Kubernetes API paths and the operations behind them (no HTTP plumbing)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from . import resources
from .backend import Backend
from .evictions import evict
from .faults import RequestInfo
from .patch import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, apply_patch
from .resources import ResourceType
from .selectors import object_predicate
from .status import ApiError, bad_request, conflict, status_object, too_large_resource_version

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
    accept: str = ""

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


# --- media types ---------------------------------------------------------------------------------

#: what the fake decodes and encodes: JSON only (no protobuf, CBOR or YAML)
SUPPORTED_MEDIA_TYPES = ("application/json",)
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)


def _media_type(header: str) -> tuple[str, dict[str, str]]:
    media, _, rest = header.partition(";")
    params = {}
    for part in rest.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip()
    return media.strip().lower(), params


def check_body_media_type(req: Request) -> None:
    """Refuse a body the fake cannot decode the way kube-apiserver refuses one it has no
    serializer for: 415 UnsupportedMediaType (``negotiation.NegotiateInputSerializer``,
    ``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/negotiation``). An empty
    Content-Type means the first supported type (JSON)."""
    media, _ = _media_type(req.content_type)
    if media and media not in SUPPORTED_MEDIA_TYPES:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(SUPPORTED_MEDIA_TYPES)}",
            "UnsupportedMediaType",
        )


def check_patch_media_type(req: Request) -> None:
    """The patch handler's own check: a Content-Type that is no patch type is a 415 listing
    the patch types (``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go``)."""
    media, _ = _media_type(req.content_type)
    if media not in PATCH_TYPES:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(PATCH_TYPES)}",
            "UnsupportedMediaType",
        )


def check_acceptable(req: Request) -> None:
    """406 NotAcceptable when the Accept header allows nothing the fake can send (JSON as
    a plain object, not a Table or other conversion) - ``negotiation.NegotiateOutput...``."""
    if not req.accept.strip():
        return
    for part in req.accept.split(","):
        media, params = _media_type(part)
        if media in ("application/json", "application/*", "*/*") and "as" not in params:
            return
    raise ApiError(
        406,
        f"only the following media types are accepted: {', '.join(SUPPORTED_MEDIA_TYPES)}",
        "NotAcceptable",
    )


# --- operations ----------------------------------------------------------------------------------


def perform(backend: Backend, req: Request, rt_route: Route) -> tuple[int, Any]:
    """Run a non-watch API operation; returns (HTTP status, JSON body)."""
    if req.query.get("dryRun"):
        raise bad_request("dryRun is not supported by the fake apiserver")
    rt = rt_route.rt
    if rt is None:
        return 200, rt_route.document
    check_acceptable(req)
    store = backend.store
    ns, name = rt_route.namespace, rt_route.name
    verb = rt_route.verb
    if verb == "get":
        _wait_for_resource_version(backend, req.query.get("resourceVersion"))
        return 200, store.get(rt, ns, name)
    if verb == "list":
        return 200, _list(backend, rt, ns, req.query)
    if verb == "create":
        check_body_media_type(req)
        body = req.json()
        if not isinstance(body, dict):
            raise bad_request("the object must be a JSON object")
        return 201, store.create(rt, body, ns)
    if verb == "update":
        check_body_media_type(req)
        body = req.json()
        if not isinstance(body, dict):
            raise bad_request("the object must be a JSON object")
        if backend.faults.take_first_write_conflict(rt_route.info(req)):
            raise conflict(rt, name)
        obj, created = store.replace(rt, ns, name, body, subresource=rt_route.subresource or None)
        return (201 if created else 200), obj
    if verb == "patch":
        check_patch_media_type(req)
        info = rt_route.info(req)
        body = req.json()

        def mutate(current: JSON) -> JSON:
            if backend.faults.take_first_write_conflict(info):
                raise conflict(rt, name)
            return apply_patch(req.content_type, current, body)

        # store.update never creates: a json/merge/strategic patch of a missing object is a
        # 404 whatever the type's AllowCreateOnUpdate (createNewObject of the patch mechanisms
        # answers NotFound, staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go);
        # only server-side apply may create, and the fake does not support apply (README).
        return 200, store.update(rt, ns, name, mutate, subresource=rt_route.subresource or None)
    if verb == "delete":
        options = _delete_options(req)
        deleted = store.delete(rt, ns, name, options)
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


def _delete_options(req: Request) -> JSON:
    """DeleteOptions from the body (JSON) or, for the fields a client may send as query
    parameters, from the query (``gracePeriodSeconds``)."""
    options: JSON = {}
    if req.body.strip():
        check_body_media_type(req)
        body = req.json()
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        options = body
    if "gracePeriodSeconds" in req.query and options.get("gracePeriodSeconds") is None:
        try:
            options["gracePeriodSeconds"] = int(req.query["gracePeriodSeconds"])
        except ValueError as e:
            raise bad_request(
                f"invalid gracePeriodSeconds: {req.query['gracePeriodSeconds']!r}"
            ) from e
    preconditions = options.get("preconditions")
    if preconditions is not None and not isinstance(preconditions, dict):
        raise bad_request("preconditions must be a JSON object")
    return options


def _wait_for_resource_version(backend: Backend, resource_version: str | None) -> None:
    """A read at ``resourceVersion=N`` (not ""/"0") from the watch cache waits up to 3 s for
    the cache to reach N, then answers 504 "Too large resource version" (``watchCache.
    waitUntilFreshAndBlock``, blockTimeout; staging/src/k8s.io/apiserver/pkg/storage/cacher)."""
    if resource_version in (None, "", "0"):
        return
    assert resource_version is not None
    if not resource_version.isdigit():
        raise bad_request(f"invalid resource version: {resource_version!r}")
    wanted = int(resource_version)
    if not backend.store.wait_until_fresh(wanted, backend.too_large_wait):
        raise too_large_resource_version(wanted, backend.store.resource_version)


# --- continue tokens: staging/src/k8s.io/apiserver/pkg/storage/continue.go ----------------------


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    start = f"{key[0]}/{key[1]}" if key[0] else key[1]
    data = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"})
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("v") != "meta.k8s.io/v1":
            raise ValueError("continue key is not valid: incorrect encoded start resourceVersion")
        rv, start = data.get("rv"), data.get("start")
        if not isinstance(rv, int) or rv == 0 or not isinstance(start, str):
            raise ValueError("continue key is not valid: incorrect encoded start resourceVersion")
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise bad_request(f"invalid continue token: {e}") from e
    start = start.removesuffix("\x00")
    namespace, _, name = start.rpartition("/")
    return rv, (namespace, name)


def _list(backend: Backend, rt: ResourceType, ns: str | None, query: dict[str, str]) -> JSON:
    label_selector, field_selector = query.get("labelSelector"), query.get("fieldSelector")
    predicate = object_predicate(rt, label_selector, field_selector)
    token = query.get("continue")
    requested_rv = query.get("resourceVersion")
    if token and requested_rv not in (None, "", "0"):
        raise bad_request("specifying resource version is not allowed when using continue")
    if not token:
        _wait_for_resource_version(backend, requested_rv)
    items, rv = backend.store.list(rt, ns, predicate)

    def key(obj: JSON) -> tuple[str, str]:
        return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    metadata: JSON = {"resourceVersion": str(rv)}
    list_rv = rv
    if token:
        token_rv, start = _decode_continue(token)
        if 0 < token_rv < backend.store.compacted_revision:
            # etcd no longer has the revision the first page was read at
            # (etcd3 store, interpretListError / handleCompactedErrorForPaging): 410, with
            # a token to go on inconsistently from the latest revision.
            err = ApiError(
                410,
                "The provided continue parameter is too old to display a consistent list "
                "result. Start a new list without it, or continue from the newest revision "
                "with the continue token of this answer (objects changed since the first "
                "page may then be missing or repeated).",
                "Expired",
            )
            err.list_continue = _encode_continue(-1, start)
            raise err
        if token_rv > 0:
            list_rv = token_rv  # every page reports the first page's resourceVersion
            metadata["resourceVersion"] = str(token_rv)
        items = [i for i in items if key(i) > start]
    limit = int(query.get("limit") or 0)
    if 0 < limit < len(items):
        if not label_selector and not field_selector:
            # only an unfiltered list knows how many items remain
            metadata["remainingItemCount"] = len(items) - limit
        items = items[:limit]
        metadata["continue"] = _encode_continue(list_rv, key(items[-1]))
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
    check_body_media_type(req)
    body = req.json()
    if not isinstance(body, dict):
        raise bad_request("the object must be a JSON object")
    api_version = body.get("apiVersion", "policy/v1")
    if body.get("kind", "Eviction") != "Eviction" or api_version not in (
        "policy/v1",
        "policy/v1beta1",
    ):
        raise bad_request(f"not a Eviction object: {api_version}/{body.get('kind')}")
    body_name = (body.get("metadata") or {}).get("name") or ""
    if body_name != name:
        raise bad_request("name in URL does not match name in Eviction object")
    pdb_type = resources.find("policy", "v1", "poddisruptionbudgets")
    assert pdb_type is not None and ns is not None
    evict(backend.store, backend.evictions, rt, pdb_type, ns, name, body.get("deleteOptions") or {})
    return 201, status_object(201, "", "")
