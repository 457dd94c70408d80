"""The control API under ``/_fake/`` (JSON in, JSON out; never faulted or logged).

=======  ===================================  ==================================================
method   path                                 body / effect
=======  ===================================  ==================================================
GET      /_fake/state                         objects, resourceVersion, faults, rules, watches
POST     /_fake/reset                         drop objects, history, faults, log, evict rules
POST     /_fake/compact                       forget watch history (older RVs now get 410)
POST     /_fake/objects                       an object (apiVersion+kind): create or overwrite
GET      /_fake/objects/{kind}                the objects of a kind (``?namespace=``)
GET      /_fake/faults                        the active fault rules
POST     /_fake/faults/fail                   {status, count, method, path, verb, userAgent,
                                              reason, message, retryAfter, afterCommit}
POST     /_fake/faults/delay                  {seconds, count, method, path, verb, userAgent}
POST     /_fake/faults/conflict-first-write   {enabled: true, resources: ["nodes"]}
POST     /_fake/faults/clear                  remove all faults, wake stalled requests
DELETE   /_fake/faults/{id}                   remove one rule
POST     /_fake/watches/drop                  {graceful: false}: end every open watch now
POST     /_fake/watches/expire-next           {count: 1, resumeOnly: true}: next watch(es) 410
GET      /_fake/requests                      counters (``?recent=N`` records, default 100)
POST     /_fake/requests/clear                reset the request log
GET      /_fake/evictions                     the eviction-blocking rules
POST     /_fake/evictions/block               {namespace, selector, disruptionsAllowed}
POST     /_fake/evictions/clear               remove all eviction rules
POST     /_fake/terminations/finish           {namespace, name}: end pods' grace periods now
POST     /_fake/settings                      {bookmarkInterval, watchTimeout, historySize,
                                              historyWindow, gracePeriodScale, tooLargeWait}
=======  ===================================  ==================================================

Keys may be camelCase or snake_case. Answers are ``{"ok": true, ...}`` or a Status.
"""

from __future__ import annotations

import re
from typing import Any

from . import resources
from .api import Request
from .backend import Backend
from .status import ApiError, bad_request

JSON = dict[str, Any]


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _args(req: Request, allowed: set[str]) -> dict[str, Any]:
    body = req.json(required=False) or {}
    if not isinstance(body, dict):
        raise bad_request("the control API takes a JSON object")
    args = {_snake(k): v for k, v in body.items()}
    unknown = set(args) - allowed
    if unknown:
        raise bad_request(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return args


def state(backend: Backend) -> JSON:
    return {
        **backend.store.dump(),
        "faults": backend.faults.snapshot(),
        "evictionRules": backend.evictions.rules(),
        "activeWatches": backend.active_watches,
        "requests": backend.requests.snapshot(recent=0),
        "settings": settings(backend),
    }


def settings(backend: Backend) -> JSON:
    return {
        "bookmarkInterval": backend.bookmark_interval,
        "watchTimeout": backend.watch_timeout,
        "historySize": backend.store.history_size,
        "historyWindow": backend.store.history_window,
        "gracePeriodScale": backend.store.grace_period_scale,
        "tooLargeWait": backend.too_large_wait,
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def handle(backend: Backend, req: Request) -> tuple[int, Any]:
    path = req.path.rstrip("/")
    method = req.method
    faults = backend.faults
    ok: JSON = {"ok": True}
    if (method, path) == ("GET", "/_fake/state"):
        return 200, state(backend)
    if (method, path) == ("POST", "/_fake/reset"):
        backend.reset()
        return 200, ok
    if (method, path) == ("POST", "/_fake/compact"):
        return 200, {**ok, "resourceVersion": str(backend.store.compact())}
    if (method, path) == ("POST", "/_fake/objects"):
        obj = req.json()
        if not isinstance(obj, dict):
            raise bad_request("expected an object")
        try:
            rt = resources.resolve_object(obj)
        except KeyError as e:
            raise bad_request(str(e)) from e
        return 200, backend.store.put(rt, obj)
    if method == "GET" and path.startswith("/_fake/objects/"):
        try:
            rt = resources.resolve(path.rsplit("/", 1)[1])
        except KeyError as e:
            raise ApiError(404, str(e)) from e
        items, rv = backend.store.list(rt, req.query.get("namespace"))
        return 200, {"resourceVersion": str(rv), "items": items}
    if (method, path) == ("GET", "/_fake/faults"):
        return 200, faults.snapshot()
    if (method, path) == ("POST", "/_fake/faults/fail"):
        allowed = {"status", "count", "method", "path", "verb", "user_agent", "reason"}
        allowed |= {"message", "retry_after", "after_commit"}
        args = _args(req, allowed)
        return 200, {**ok, "id": faults.fail(**args)}
    if (method, path) in (("POST", "/_fake/faults/delay"), ("POST", "/_fake/faults/latency")):
        args = _args(req, {"seconds", "count", "method", "path", "verb", "user_agent"})
        if "seconds" not in args:
            raise bad_request("seconds is required")
        return 200, {**ok, "id": faults.delay(**args)}
    if (method, path) == ("POST", "/_fake/faults/conflict-first-write"):
        faults.conflict_on_first_write(**_args(req, {"enabled", "resources"}))
        return 200, ok
    if (method, path) == ("POST", "/_fake/faults/clear"):
        faults.clear()
        return 200, ok
    if method == "DELETE" and (m := re.fullmatch(r"/_fake/faults/(\d+)", path)):
        faults.remove(int(m.group(1)))
        return 200, ok
    if (method, path) == ("POST", "/_fake/watches/drop"):
        faults.drop_watches(**_args(req, {"graceful"}))
        return 200, ok
    if (method, path) == ("POST", "/_fake/watches/expire-next"):
        faults.expire_next_watch(**_args(req, {"count", "resume_only"}))
        return 200, ok
    if (method, path) == ("GET", "/_fake/requests"):
        recent = int(req.query.get("recent") or 100)
        return 200, backend.requests.snapshot(recent=recent)
    if (method, path) == ("POST", "/_fake/requests/clear"):
        backend.requests.clear()
        return 200, ok
    if (method, path) == ("GET", "/_fake/evictions"):
        return 200, {"rules": backend.evictions.rules()}
    if (method, path) == ("POST", "/_fake/evictions/block"):
        args = _args(req, {"namespace", "selector", "disruptions_allowed", "name"})
        if "namespace" not in args or "selector" not in args:
            raise bad_request("namespace and selector are required")
        return 200, {**ok, "id": backend.evictions.block(**args)}
    if (method, path) == ("POST", "/_fake/evictions/clear"):
        backend.evictions.clear()
        return 200, ok
    if (method, path) == ("POST", "/_fake/terminations/finish"):
        args = _args(req, {"namespace", "name"})
        return 200, {**ok, "finished": backend.store.reap_terminations(force=True, **args)}
    if (method, path) == ("POST", "/_fake/settings"):
        allowed = {"bookmark_interval", "watch_timeout", "history_size", "history_window"}
        args = _args(req, allowed | {"grace_period_scale", "too_large_wait"})
        if "bookmark_interval" in args:
            backend.bookmark_interval = float(args["bookmark_interval"])
        if "watch_timeout" in args:
            backend.watch_timeout = _optional_float(args["watch_timeout"])
        if "history_size" in args:
            backend.store.history_size = int(args["history_size"])
        if "history_window" in args:
            backend.store.history_window = _optional_float(args["history_window"])
        if "grace_period_scale" in args:
            backend.store.grace_period_scale = float(args["grace_period_scale"])
        if "too_large_wait" in args:
            backend.too_large_wait = float(args["too_large_wait"])
        return 200, {**ok, "settings": settings(backend)}
    raise ApiError(404, f"unknown control endpoint: {method} {path}", "NotFound")
