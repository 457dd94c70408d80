"""Kubernetes ``Status`` objects and the exception that carries them.

Every error the fake server returns is a ``meta/v1 Status`` with ``status: Failure``, a
``reason`` and a ``code`` equal to the HTTP status, exactly like kube-apiserver, so the real
``kubernetes`` client raises ``ApiException`` with the right ``.status`` and ``.reason``.
"""

from __future__ import annotations

from typing import Any

from .resources import ResourceType

JSON = dict[str, Any]

REASONS: dict[int, str] = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
    403: "Forbidden",
}


def status_object(
    code: int,
    reason: str | None = None,
    message: str = "",
    details: JSON | None = None,
) -> JSON:
    """A ``Status`` with ``status: Failure`` (or ``Success`` for 2xx codes)."""
    obj: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if 200 <= code < 300 else "Failure",
        "message": message,
        "code": code,
    }
    reason = reason if reason is not None else REASONS.get(code, "")
    if reason:
        obj["reason"] = reason
    if details:
        obj["details"] = details
    return obj


class ApiError(Exception):
    """An error answered as a ``Status`` object with HTTP status ``code``."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason if reason is not None else REASONS.get(code, "")
        self.message = message
        self.details = details
        self.headers = headers or {}
        #: a Status can carry list metadata: the continue token of an expired list
        self.list_continue = ""

    def to_status(self) -> JSON:
        status = status_object(self.code, self.reason, self.message, self.details)
        if self.list_continue:
            status["metadata"] = {"continue": self.list_continue}
        return status


def _details(rt: ResourceType, name: str, **extra: Any) -> JSON:
    details: JSON = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    details.update(extra)
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.qualified} "{name}" not found', "NotFound", _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, f'{rt.qualified} "{name}" already exists', "AlreadyExists", _details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        "Conflict",
        _details(rt, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def expired(message: str) -> ApiError:
    """The 410 a watch receives (as an ``ERROR`` event) when its resourceVersion is too old."""
    return ApiError(410, message, "Expired")


def conflict_on_kind(rt: ResourceType, name: str, why: str) -> ApiError:
    """A 409 whose "resource" is the Kind, as the checks in ``rest.BeforeDelete``
    (``staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go``) build it."""
    qualified = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    details: JSON = {"name": name, "kind": rt.kind}
    if rt.group:
        details["group"] = rt.group
    return ApiError(
        409, f'Operation cannot be fulfilled on {qualified} "{name}": {why}', "Conflict", details
    )


def too_many_requests(
    message: str, retry_after: int = 0, causes: list[JSON] | None = None
) -> ApiError:
    """``errors.NewTooManyRequests``: 429 with ``details.retryAfterSeconds``; the HTTP layer
    adds a ``Retry-After`` header only when that is positive (``responsewriters``)."""
    details: JSON = {}
    if causes:
        details["causes"] = causes
    headers: dict[str, str] = {}
    if retry_after > 0:
        details["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return ApiError(429, message, "TooManyRequests", details or None, headers)


def too_large_resource_version(requested: int, current: int) -> ApiError:
    """``storage.NewTooLargeResourceVersionError`` with kube-apiserver's retry of 1 s
    (``staging/src/k8s.io/apiserver/pkg/storage/errors.go``, cacher's
    ``resourceVersionTooHighRetrySeconds``): a 504 Timeout."""
    return ApiError(
        504,
        f"Timeout: Too large resource version: {requested}, current: {current}",
        "Timeout",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
        {"Retry-After": "1"},
    )
