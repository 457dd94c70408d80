"""Type-specific rules kube-apiserver applies on create and update, for the types the agent
writes (Events, Leases), and the decoding rules that come before them.

Two kinds of refusal, as upstream:

* **Decoding** (HTTP 400 BadRequest, before any validation): a field of the wrong JSON type,
  or a timestamp the Go type cannot parse. ``metav1.MicroTime`` (Lease ``acquireTime``/
  ``renewTime``, Event ``eventTime``/``series.lastObservedTime``) only parses RFC 3339 with
  exactly six fractional digits (layout ``RFC3339Micro``,
  ``staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/micro_time.go``); ``metav1.Time``
  parses RFC 3339 with any fraction (``time.go``). The decode error is turned into
  ``"<Kind> in version "<v>" cannot be handled as a <Kind>: <error>"``
  (``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go``, transformDecodeError).
* **Validation** (HTTP 422 Invalid): a ``Status`` whose ``details.causes`` lists every field
  error, and whose message is ``<Kind> "<name>" is invalid: <error>`` or, with several,
  ``... is invalid: [<error>, <error>]`` (``apimachinery/pkg/api/errors``, NewInvalid).

Each rule below names the upstream function it mirrors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .resources import ResourceType
from .status import ApiError, bad_request

JSON = dict[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# IsQualifiedName: an optional DNS subdomain prefix and "/", then a 63-character name of
# alphanumerics, '-', '_', '.', starting and ending with an alphanumeric.
_QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([.,]\d+)?(Z|[+-]\d{2}:\d{2})$")
MICRO_TIME_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
INT32 = (-(2**31), 2**31 - 1)

# pkg/apis/core/validation/events.go
REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024


# --- field errors -------------------------------------------------------------------------------


class Literal(str):
    """A field error value printed as is (e.g. ``0x0``, Go's ``%#v`` of a uint64 zero)."""

    __slots__ = ()


def _go_value(value: Any) -> str:
    """A value as a field error prints it: strings quoted, numbers and bools bare."""
    if isinstance(value, Literal):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error`` (``apimachinery/pkg/util/validation/field/errors.go``)."""

    type: str  # FieldValueInvalid | FieldValueRequired | FieldValueForbidden | ...
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        if self.type == "FieldValueRequired":
            text = "Required value"
        elif self.type == "FieldValueForbidden":
            text = "Forbidden"
        elif self.type == "FieldValueNotSupported":
            text = f"Unsupported value: {_go_value(self.value)}"
        else:
            text = f"Invalid value: {_go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid_value(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, "", detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, None, detail)


def invalid_error(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """The 422 ``Status`` of NewInvalid for ``errors`` (at least one)."""
    listed = [str(e) for e in errors]
    joined = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    qualified = f"{kind}.{group}" if group else kind
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    return ApiError(
        422,
        f"{qualified} {json.dumps(name)} is invalid: {joined}",
        "Invalid",
        {"name": name, "group": group, "kind": kind, "causes": causes},
    )


# --- names -------------------------------------------------------------------------------------


def name_errors(rule: str, name: str, field: str = "metadata.name") -> list[FieldError]:
    """Name rules: ``NameIsDNSSubdomain``, ``NameIsDNSLabel`` (namespaces), and the path
    segment rule every name must pass (``apimachinery/pkg/api/validation/path``)."""
    if rule == "segment":
        if name in (".", ".."):
            return [invalid_value(field, name, f"may not be '{name}'")]
        for bad in ("/", "%"):
            if bad in name:
                return [invalid_value(field, name, f"may not contain '{bad}'")]
        return []
    if rule == "label":
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return [
                invalid_value(
                    field,
                    name,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character",
                )
            ]
        return []
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [
            invalid_value(
                field,
                name,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        ]
    return []


def qualified_name_errors(field: str, value: str) -> list[FieldError]:
    """``IsQualifiedName`` (``apimachinery/pkg/util/validation``): ``[prefix/]name``."""
    prefix, slash, name = value.rpartition("/")
    if value.count("/") > 1:
        return [invalid_value(field, value, "a qualified name may have at most one '/'")]
    errors: list[FieldError] = []
    if not name or len(name) > 63 or not _QUALIFIED_NAME_PART.match(name):
        errors.append(
            invalid_value(
                field,
                value,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character",
            )
        )
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(invalid_value(field, value, "prefix part must be a DNS-1123 subdomain"))
    return errors


# --- decoding ---------------------------------------------------------------------------------


class DecodeError(Exception):
    pass


def _check_time(path: str, value: Any, micro: bool) -> None:
    if value is None:
        return  # null is the zero time
    if not isinstance(value, str):
        raise DecodeError(
            f"json: cannot unmarshal {type(value).__name__} into {path} of type string"
        )
    pattern, layout = (_MICRO_TIME, MICRO_TIME_LAYOUT) if micro else (_TIME, TIME_LAYOUT)
    ok = bool(pattern.match(value))
    if ok:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00").replace(",", "."))
        except ValueError:
            ok = False
    if not ok:
        need = "exactly six fractional digits" if micro else "an optional fraction"
        raise DecodeError(
            f'parsing time "{value}" as "{layout}": {path} must be RFC 3339 with {need}'
        )


def _check_int32(path: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into {path} of type int32")
    if not INT32[0] <= value <= INT32[1]:
        raise DecodeError(f"json: cannot unmarshal number {value} into {path} of type int32")


def _check_string(path: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into {path} of type string")


def _check_object(path: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into {path} of type object")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_LEASE_SPEC_STRINGS = ("holderIdentity", "strategy", "preferredHolder")
_EVENT_STRINGS = ("reason", "message", "type", "action", "reportingComponent", "reportingInstance")


def check_decodable(rt: ResourceType, served: JSON, stored: JSON) -> None:
    """Raise the 400 a Go decode of ``served`` (the request body, as ``rt`` serves it) would
    give. ``stored`` is the same object in the stored schema (checked field by field)."""
    try:
        if rt.plural == "leases":
            spec = _check_object("LeaseSpec.spec", stored.get("spec"))
            for name in _LEASE_SPEC_STRINGS:
                _check_string(f"LeaseSpec.spec.{name}", spec.get(name))
            _check_int32("LeaseSpec.spec.leaseDurationSeconds", spec.get("leaseDurationSeconds"))
            _check_int32("LeaseSpec.spec.leaseTransitions", spec.get("leaseTransitions"))
            for name in ("acquireTime", "renewTime"):
                _check_time(f"LeaseSpec.spec.{name}", spec.get(name), micro=True)
        elif rt.plural == "events":
            for name in _EVENT_STRINGS:
                _check_string(f"Event.{name}", stored.get(name))
            _check_int32("Event.count", stored.get("count"))
            _check_time("Event.eventTime", stored.get("eventTime"), micro=True)
            for name in ("firstTimestamp", "lastTimestamp"):
                _check_time(f"Event.{name}", stored.get(name), micro=False)
            series = _check_object("Event.series", stored.get("series"))
            _check_int32("EventSeries.series.count", series.get("count"))
            _check_time("EventSeries.series.lastObservedTime", series.get("lastObservedTime"), True)
            for ref in ("involvedObject", "related", "source"):
                _check_object(f"Event.{ref}", stored.get(ref))
    except DecodeError as e:
        kind = served.get("kind") or rt.kind
        raise bad_request(
            f"{kind} in version {json.dumps(rt.version)} cannot be handled as a {rt.kind}: {e}"
        ) from e


# --- Leases: pkg/apis/coordination/validation/validation.go -------------------------------------

_LEASE_STRATEGIES = ("OldestEmulationVersion",)


def lease_errors(lease: JSON) -> list[FieldError]:
    """ValidateLeaseSpec (the same on create and update)."""
    spec = lease.get("spec") or {}
    errors: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errors.append(
            invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0")
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errors.append(
            invalid_value(
                "spec.leaseTransitions", transitions, "must be greater than or equal to 0"
            )
        )
    strategy = spec.get("strategy")
    if strategy is not None:
        if "/" not in strategy:
            if strategy not in _LEASE_STRATEGIES:
                supported = ", ".join(json.dumps(s) for s in _LEASE_STRATEGIES)
                errors.append(
                    FieldError(
                        "FieldValueNotSupported",
                        "spec.strategy.strategy",
                        strategy,
                        f"supported values: {supported}",
                    )
                )
        else:
            errors += qualified_name_errors("spec.strategy.strategy", strategy)
    if spec.get("preferredHolder") and not strategy:
        errors.append(
            forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined")
        )
    return errors


# --- Events: pkg/apis/core/validation/events.go ---------------------------------------------------


def _is_zero_time(value: Any) -> bool:
    return value in (None, "")


def _legacy_event_errors(event: JSON) -> list[FieldError]:
    """legacyValidateEvent: every Event, whichever API version writes it."""
    errors: list[FieldError] = []
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    involved = event.get("involvedObject") or {}
    involved_ns = involved.get("namespace") or ""
    if _is_zero_time(event.get("eventTime")):
        # An old-style Event: its namespace must be the involved object's; for a
        # cluster-scoped object "" or "default" (old clients).
        if not involved_ns:
            if namespace not in ("", "default"):
                errors.append(
                    invalid_value(
                        "involvedObject.namespace", involved_ns, "does not match event.namespace"
                    )
                )
        elif namespace != involved_ns:
            errors.append(
                invalid_value(
                    "involvedObject.namespace", involved_ns, "does not match event.namespace"
                )
            )
    else:
        # A new-style Event (eventTime set): a cluster-scoped object's Events go to
        # "default" or "kube-system", and the reporting fields are required.
        if not involved_ns and namespace not in ("default", "kube-system"):
            errors.append(
                invalid_value(
                    "involvedObject.namespace", involved_ns, "does not match event.namespace"
                )
            )
        controller = event.get("reportingComponent") or ""
        if not controller:
            errors.append(required("reportingController"))
        else:
            errors += qualified_name_errors("reportingController", controller)
        instance = event.get("reportingInstance") or ""
        if not instance:
            errors.append(required("reportingInstance"))
        if len(instance) > REPORTING_INSTANCE_LIMIT:
            errors.append(
                invalid_value(
                    "reportingInstance",
                    "",
                    f"can have at most {REPORTING_INSTANCE_LIMIT} characters",
                )
            )
        action = event.get("action") or ""
        if not action:
            errors.append(required("action"))
        if len(action) > ACTION_LIMIT:
            errors.append(
                invalid_value("action", "", f"can have at most {ACTION_LIMIT} characters")
            )
        reason = event.get("reason") or ""
        if not reason:
            errors.append(required("reason"))
        if len(reason) > REASON_LIMIT:
            errors.append(
                invalid_value("reason", "", f"can have at most {REASON_LIMIT} characters")
            )
        if len(event.get("message") or "") > NOTE_LIMIT:
            errors.append(invalid_value("message", "", f"can have at most {NOTE_LIMIT} characters"))
    errors += [
        FieldError(e.type, "namespace", namespace, e.detail)
        for e in name_errors("subdomain", namespace, "namespace")
    ]
    return errors


def _series_errors(event: JSON) -> list[FieldError]:
    """validateV1EventSeries."""
    series = event.get("series")
    if series is None:
        return []
    errors: list[FieldError] = []
    if (series.get("count") or 0) < 2:
        errors.append(invalid_value("series.count", "", "should be at least 2"))
    if _is_zero_time(series.get("lastObservedTime")):
        errors.append(required("series.lastObservedTime"))
    return errors


def _strict(request: ResourceType) -> bool:
    # events.k8s.io/v1 (and newer) get the strict rules; core/v1 (and events.k8s.io/v1beta1)
    # only the legacy ones, for backwards compatibility.
    return request.group == "events.k8s.io" and request.version != "v1beta1"


def event_create_errors(event: JSON, request: ResourceType) -> list[FieldError]:
    """ValidateEventCreate, ``event`` in the stored (core/v1) schema."""
    errors = _legacy_event_errors(event)
    if not _strict(request):
        return errors
    errors += name_errors("subdomain", (event.get("metadata") or {}).get("name") or "")
    errors += _series_errors(event)
    if _is_zero_time(event.get("eventTime")):
        errors.append(required("eventTime"))
    if event.get("type") not in ("Normal", "Warning"):
        errors.append(invalid_value("type", "", f"has invalid value: {event.get('type') or ''}"))
    if not _is_zero_time(event.get("firstTimestamp")):
        errors.append(invalid_value("firstTimestamp", "", "needs to be unset"))
    if not _is_zero_time(event.get("lastTimestamp")):
        errors.append(invalid_value("lastTimestamp", "", "needs to be unset"))
    if event.get("count"):
        errors.append(invalid_value("count", "", "needs to be unset"))
    source = event.get("source") or {}
    if source.get("component") or source.get("host"):
        errors.append(invalid_value("source", "", "needs to be unset"))
    return errors


#: ValidateEventUpdate: fields an events.k8s.io/v1 update may not change (internal names)
_IMMUTABLE_EVENT_FIELDS = (
    ("involvedObject", "involvedObject"),
    ("reason", "reason"),
    ("message", "message"),
    ("source", "source"),
    ("firstTimestamp", "firstTimestamp"),
    ("lastTimestamp", "lastTimestamp"),
    ("count", "count"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("related", "related"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
)
_EMPTY_VALUES: tuple[Any, ...] = (None, "", 0, {})


def _same(new: Any, old: Any) -> bool:
    # An absent field and its zero value are the same Go value.
    if new in _EMPTY_VALUES and old in _EMPTY_VALUES:
        return True
    return bool(new == old)


def event_update_errors(event: JSON, old: JSON, request: ResourceType) -> list[FieldError]:
    """ValidateEventUpdate, both objects in the stored (core/v1) schema."""
    errors = _legacy_event_errors(event)
    if not _strict(request):
        return errors
    if event.get("series") != old.get("series"):
        errors += _series_errors(event)
    for key, field in _IMMUTABLE_EVENT_FIELDS:
        if not _same(event.get(key), old.get(key)):
            errors.append(invalid_value(field, event.get(key), "field is immutable"))
    return errors
