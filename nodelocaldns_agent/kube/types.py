"""Plain types the rest of the agent uses instead of Kubernetes client models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeView:
    name: str
    resource_version: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    uid: str = ""

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> NodeView:
        meta = obj.get("metadata") or {}
        return cls(
            name=str(meta.get("name", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            uid=str(meta.get("uid", "")),
        )


@dataclass(frozen=True)
class WatchEvent:
    #: ADDED, MODIFIED, DELETED, BOOKMARK
    type: str
    node: NodeView


@dataclass(frozen=True)
class LeaseView:
    name: str
    holder: str
    resource_version: str
    duration_seconds: int
    renew_time: str


@dataclass(frozen=True)
class PodView:
    namespace: str
    name: str
    dns_policy: str
    host_network: bool
    #: epoch seconds the pod sandbox was created (status.startTime or creation time)
    started: float
    controller_kind: str
    mirror: bool
    #: status.phase: Pending, Running, Succeeded, Failed or Unknown
    phase: str
    #: metadata.deletionTimestamp is set: the pod is terminating (it goes by itself)
    deleting: bool
