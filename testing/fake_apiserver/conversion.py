"""Conversion between an API version's JSON and the JSON the fake stores.

Every type is stored as it is served, except ``events.k8s.io/v1`` Events: upstream serves
them from the core Event storage (``pkg/registry/events/rest/storage_events.go`` builds the
events.k8s.io REST storage from ``pkg/registry/core/event/storage``), converting each object
between the two schemas (``pkg/apis/events/v1/conversion.go``). The fake does the same, so an
Event written through either API is one object, with one resourceVersion, visible (and
watched) through both.

The events.k8s.io/v1 fields that are renamed in core/v1 (everything else keeps its name):

=============================  =====================
events.k8s.io/v1               core/v1
=============================  =====================
regarding                      involvedObject
note                           message
reportingController            reportingComponent
deprecatedSource               source
deprecatedFirstTimestamp       firstTimestamp
deprecatedLastTimestamp        lastTimestamp
deprecatedCount                count
=============================  =====================
"""

from __future__ import annotations

from typing import Any

from .resources import ResourceType

JSON = dict[str, Any]

#: events.k8s.io/v1 field -> core/v1 field, for the fields whose names differ
EVENTS_V1_TO_CORE: dict[str, str] = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
CORE_TO_EVENTS_V1: dict[str, str] = {core: new for new, core in EVENTS_V1_TO_CORE.items()}
#: fields the two schemas share under the same name (besides apiVersion/kind/metadata)
_SHARED_EVENT_FIELDS = frozenset(
    {"reason", "type", "eventTime", "series", "action", "related", "reportingInstance"}
)


def _is_events_v1(rt: ResourceType) -> bool:
    return rt.group == "events.k8s.io"


def to_storage(rt: ResourceType, obj: JSON) -> JSON:
    """``obj`` (as served by ``rt``) in the stored schema; a new dict, values shared."""
    if not _is_events_v1(rt):
        return obj
    out: JSON = {"apiVersion": "v1", "kind": "Event"}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key in EVENTS_V1_TO_CORE:
            out[EVENTS_V1_TO_CORE[key]] = value
        elif key == "metadata" or key in _SHARED_EVENT_FIELDS:
            out[key] = value
        # core/v1-only names (message, count, ...) sent to events.k8s.io are unknown
        # fields there: dropped, as a non-strict decode drops them.
    return out


def from_storage(rt: ResourceType, obj: JSON) -> JSON:
    """A stored object as ``rt`` serves it; a new dict, values shared (copy before mutating)."""
    if not _is_events_v1(rt):
        return obj
    out: JSON = {"apiVersion": rt.api_version, "kind": rt.kind}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key in CORE_TO_EVENTS_V1:
            out[CORE_TO_EVENTS_V1[key]] = value
        elif key == "metadata" or key in _SHARED_EVENT_FIELDS:
            out[key] = value
    return out
