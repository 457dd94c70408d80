"""The resource types the fake server serves, and their discovery documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")

# Field selectors kube-apiserver accepts per resource (anything else is a 400, like the real
# server). Values are the dotted path read from the object; ``metadata.name`` and
# ``metadata.namespace`` are always accepted.
_POD_FIELDS = {
    f: f
    for f in (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    )
}
_CORE_EVENT_FIELDS = {
    **{
        f"involvedObject.{f}": f"involvedObject.{f}"
        for f in (
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        )
    },
    "reason": "reason",
    "reportingComponent": "reportingComponent",
    "source": "source.component",
    "type": "type",
}
# events.k8s.io/v1 Events live in the core Event storage (see ``conversion``), so its field
# labels are mapped onto the core fields, as the field label conversion registered for
# events.k8s.io/v1 does (pkg/apis/events/v1/conversion.go, AddFieldLabelConversionsForEvent).
_NEW_EVENT_FIELDS = {
    **{
        f"regarding.{f}": f"involvedObject.{f}"
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
    "reason": "reason",
    "reportingController": "reportingComponent",
    "source": "source.component",
    "type": "type",
}


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # Subresources served besides the main resource ("status" keeps spec and status apart).
    subresources: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    #: the storage this type lives in ("" = its own); events.k8s.io/v1 Events share "events"
    shares_storage_of: str = ""
    #: PUT to a missing object creates it (the strategy's AllowCreateOnUpdate)
    allow_create_on_update: bool = False
    #: PUT without metadata.resourceVersion overwrites (the strategy's AllowUnconditionalUpdate)
    allow_unconditional_update: bool = True
    #: DELETE is graceful: the object stays, Terminating, for its grace period (pods)
    graceful_delete: bool = False
    #: how names are validated: "subdomain" (RFC 1123), "label" (RFC 1123, no dots), or
    #: "segment" (any name that is a valid path segment)
    name_rule: str = "subdomain"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``leases.coordination.k8s.io``, or ``nodes`` for the core group (as in messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> str:
        """The type's own key (``plural.group``), as faults and the request log name it."""
        return self.qualified

    @property
    def storage(self) -> str:
        """The storage key: one store per resource, except where upstream shares one."""
        return self.shares_storage_of or self.qualified

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def field_path(self, label: str) -> str | None:
        if label == "metadata.name" or (self.namespaced and label == "metadata.namespace"):
            return label
        return self.fields.get(label)


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        False,
        ("no",),
        ("status",),
        {"spec.unschedulable": "spec.unschedulable"},
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        ("po",),
        ("status", "eviction"),
        _POD_FIELDS,
        graceful_delete=True,  # pkg/registry/core/pod/strategy.go, CheckGracefulDelete
    ),
    # Event strategy: AllowCreateOnUpdate and AllowUnconditionalUpdate are both true
    # (pkg/registry/core/event/strategy.go); core/v1 Event names are only path segments.
    ResourceType(
        "",
        "v1",
        "events",
        "event",
        "Event",
        True,
        ("ev",),
        (),
        _CORE_EVENT_FIELDS,
        allow_create_on_update=True,
        name_rule="segment",
    ),
    ResourceType(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        False,
        ("ns",),
        ("status",),
        {"status.phase": "status.phase"},
        name_rule="label",  # ValidateNamespaceName: an RFC 1123 label
    ),
    # Lease strategy: AllowCreateOnUpdate true, AllowUnconditionalUpdate false
    # (pkg/registry/coordination/lease/strategy.go).
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        True,
        allow_create_on_update=True,
        allow_unconditional_update=False,
    ),
    ResourceType("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True, ("ds",), ("status",)),
    # The events.k8s.io/v1 REST storage is the core Event storage (pkg/registry/events/rest),
    # converted on the way in and out (pkg/apis/events/v1/conversion.go).
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        True,
        ("ev",),
        (),
        _NEW_EVENT_FIELDS,
        shares_storage_of="events",
        allow_create_on_update=True,
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        ("status",),
    ),
    # Read by `kubectl nodelocaldns preflight` (kube-proxy's ConfigMap, the kube-dns and
    # upstream Services and Endpoints, the admission policies): stored and served, no
    # controller behind them (no Endpoints are made for a Service; a test puts them).
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "services", "service", "Service", True, ("svc",), ("status",)),
    ResourceType("", "v1", "endpoints", "endpoints", "Endpoints", True, ("ep",)),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "validatingadmissionpolicy",
        "ValidatingAdmissionPolicy",
        False,
        (),
        ("status",),
    ),
)


def group_versions() -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for rt in RESOURCES:
        if rt.group and (rt.group, rt.version) not in seen:
            seen.append((rt.group, rt.version))
    return seen


def find(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def resolve(kind: str) -> ResourceType:
    """Find a type by kind (``Node``), plural, singular, short name or ``plural.group``.

    The core group wins ambiguities: ``events`` is core/v1, ``events.events.k8s.io`` the other.
    """
    wanted = kind.strip()
    lowered = wanted.lower()
    for rt in RESOURCES:
        if lowered == rt.qualified or wanted == f"{rt.kind}.{rt.group}":
            return rt
    for rt in RESOURCES:
        names = {rt.kind.lower(), rt.plural, rt.singular, *rt.short_names}
        if lowered in names:
            return rt
    raise KeyError(f"unknown resource kind {kind!r}")


def resolve_object(obj: dict[str, Any]) -> ResourceType:
    """The type of an object from its ``apiVersion`` and ``kind``."""
    api_version = obj.get("apiVersion", "v1")
    group, _, version = api_version.rpartition("/")
    for rt in RESOURCES:
        if rt.kind == obj.get("kind") and (rt.group, rt.version) == (group, version):
            return rt
    raise KeyError(f"unknown apiVersion/kind {api_version}/{obj.get('kind')}")


# --- discovery documents -------------------------------------------------------------------


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    gv = f"{group}/{version}" if group else version
    if (group, version) not in [("", "v1"), *group_versions()]:
        return None
    resources: list[dict[str, Any]] = []
    for rt in RESOURCES:
        if (rt.group, rt.version) != (group, version):
            continue
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(ALL_VERBS),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        resources.append(entry)
        for sub in rt.subresources:
            if sub == "eviction":
                resources.append(
                    {
                        "name": f"{rt.plural}/eviction",
                        "singularName": "",
                        "namespaced": True,
                        "group": "policy",
                        "version": "v1",
                        "kind": "Eviction",
                        "verbs": ["create"],
                    }
                )
            else:
                resources.append(
                    {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, version in group_versions():
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    for g in api_group_list()["groups"]:
        if g["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
