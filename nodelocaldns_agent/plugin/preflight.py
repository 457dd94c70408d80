"""``kubectl nodelocaldns preflight``: the cluster checked from outside before the first
migration. Pure: :class:`ClusterFacts` is what was read (raw API objects, None where
one is missing), :func:`run_checks` one :class:`Check` per question, each with the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from nodelocaldns_agent.plugin.rollout import some
from nodelocaldns_agent.state import NodeState

#: the chart's admission policies need the token's node-name claim (Kubernetes >= 1.30)
ADMISSION_MIN_VERSION = (1, 30)
#: the label the chart puts on everything it renders (``_helpers.tpl``)
NAME_LABEL = "app.kubernetes.io/name"
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str
    fix: str = ""

    def line(self, width: int) -> str:
        fix = f" -> fix: {self.fix}" if self.fix and self.level is not Level.OK else ""
        return f"{self.level.value:<7}  {self.name:<{width}}  {self.message}{fix}"


@dataclass
class ClusterFacts:
    namespace: str
    app: str
    nodes: list[dict[str, Any]]
    #: ``fleet.node_rows`` plus ``reason`` and ``mode`` from the detail annotation
    rows: list[dict[str, Any]]
    kube_proxy: dict[str, Any] | None
    kube_dns: dict[str, Any] | None
    upstream_name: str
    upstream_endpoints: dict[str, Any] | None
    node_cache_pods: list[dict[str, Any]]
    agent_pods: list[dict[str, Any]]
    admission_policies: list[dict[str, Any]]
    version: dict[str, Any]
    namespace_object: dict[str, Any] | None


def proxy_mode(configmap: dict[str, Any] | None) -> str | None:
    """``mode:`` of kube-proxy's configuration (kubeadm's ConfigMap kube-system/kube-proxy,
    key ``config.conf``, a KubeProxyConfiguration); "" is kube-proxy's default (iptables
    on Linux); None when there is no such ConfigMap or it cannot be read."""
    if configmap is None:
        return None
    for text in (configmap.get("data") or {}).values():
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "KubeProxyConfiguration":
            return str(doc.get("mode") or "")
    return None


def server_version(version: dict[str, Any]) -> tuple[int, int] | None:
    try:
        return int(version["major"]), int(re.sub(r"\D.*", "", str(version["minor"])))
    except (KeyError, ValueError):
        return None


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _node_names(facts: ClusterFacts) -> list[str]:
    return sorted(str((n.get("metadata") or {}).get("name", "")) for n in facts.nodes)


def _pods_on_every_node(name: str, pods: list[dict[str, Any]], nodes: list[str], fix: str) -> Check:
    ready = {str((p.get("spec") or {}).get("nodeName")) for p in pods if _ready(p)}
    missing = [n for n in nodes if n not in ready]
    if not pods:
        return Check(name, Level.FAILED, "no pods found", fix)
    if missing:
        shown = some(missing)
        return Check(
            name, Level.FAILED, f"not ready on {len(missing)}/{len(nodes)} nodes: {shown}", fix
        )
    return Check(name, Level.OK, f"ready on all {len(nodes)} nodes")


def check_proxy_mode(facts: ClusterFacts) -> Check:
    """kube-proxy's ConfigMap, and what the agents found on the nodes (plan.py's reasons):
    no kube-ipvs0 and a /proxyMode that named another mode, or neither answer."""
    name = "kube-proxy mode"
    mode = proxy_mode(facts.kube_proxy)
    unknown = [
        r["node"]
        for r in facts.rows
        if "kube-proxy mode is unknown" in r.get("reason", "") + r.get("error", "")
    ]
    non_ipvs = [r["node"] for r in facts.rows if "kube-proxy runs in" in r.get("reason", "")]
    if unknown:
        return Check(
            name,
            Level.FAILED,
            f"{len(unknown)} node(s) show neither kube-ipvs0 nor kube-proxy's /proxyMode: "
            f"{some(unknown, 5)}; the agents block them",
            "check kube-proxy on those nodes (127.0.0.1:10249 must answer), or migrate them "
            "with --force (docs/troubleshooting.md)",
        )
    evidence = f"; {len(non_ipvs)} node(s) report no kube-ipvs0: {some(non_ipvs, 5)}"
    if mode == "ipvs":
        if non_ipvs:
            return Check(
                name,
                Level.WARNING,
                "ConfigMap kube-system/kube-proxy says ipvs" + evidence,
                "those nodes stay not-needed; check kube-proxy on them",
            )
        return Check(name, Level.OK, "ipvs (ConfigMap kube-system/kube-proxy)")
    if mode is None:
        return Check(
            name,
            Level.WARNING,
            "no ConfigMap kube-system/kube-proxy (a managed or kube-proxy-less cluster?)"
            + (evidence if non_ipvs else ""),
            "the agents decide per node from kube-ipvs0 and kube-proxy's /proxyMode; "
            "run the chart in observe mode first and read `kubectl nodelocaldns status`",
        )
    return Check(
        name,
        Level.WARNING,
        f"{mode or 'iptables (default)'}: the agent migrates only IPVS nodes; every node "
        "will be not-needed",
        "nothing to do in iptables/nftables mode: node-cache alone intercepts the kube-dns "
        "ClusterIP there",
    )


def check_kube_dns(facts: ClusterFacts) -> Check:
    name = "kube-dns Service"
    if facts.kube_dns is None:
        return Check(
            name,
            Level.FAILED,
            "kube-system/kube-dns not found",
            "node-cache forwards to the cluster DNS; install CoreDNS with its kube-dns Service",
        )
    ip = (facts.kube_dns.get("spec") or {}).get("clusterIP") or "-"
    return Check(name, Level.OK, f"kube-system/kube-dns ClusterIP {ip}")


def check_upstream(facts: ClusterFacts) -> Check:
    name = f"{facts.upstream_name} endpoints"
    where = f"{facts.namespace}/{facts.upstream_name}"
    fix = (
        f"install the chart with nodeLocalDNS.enabled in {facts.namespace}; its upstream "
        "Service selects the CoreDNS pods (nodeLocalDNS.upstreamService.selector)"
    )
    if facts.upstream_endpoints is None:
        return Check(name, Level.FAILED, f"Endpoints {where} not found", fix)
    addresses = [
        a for s in facts.upstream_endpoints.get("subsets") or [] for a in s.get("addresses") or []
    ]
    if not addresses:
        return Check(name, Level.FAILED, f"{where} has no ready addresses", fix)
    return Check(name, Level.OK, f"{where}: {len(addresses)} ready address(es)")


def check_admission(facts: ClusterFacts) -> Check:
    name = "admission policy"
    version = server_version(facts.version)
    shown = ".".join(map(str, version)) if version else str(facts.version.get("gitVersion"))
    ours = [
        str((p.get("metadata") or {}).get("name"))
        for p in facts.admission_policies
        if ((p.get("metadata") or {}).get("labels") or {}).get(NAME_LABEL) == facts.app
    ]
    if version is not None and version < ADMISSION_MIN_VERSION:
        return Check(
            name,
            Level.WARNING,
            f"Kubernetes {shown} < 1.30: no node-name claim in tokens, so no policy; every "
            "agent may patch every Node",
            "upgrade to >= 1.30 (agent.nodeAdmissionPolicy=never meanwhile; docs/security.md)",
        )
    if not ours:
        return Check(
            name,
            Level.FAILED,
            f"Kubernetes {shown} but no ValidatingAdmissionPolicy labelled "
            f"{NAME_LABEL}={facts.app}",
            "helm upgrade with agent.nodeAdmissionPolicy=auto|always (the default is auto)",
        )
    return Check(name, Level.OK, f"Kubernetes {shown}: {', '.join(sorted(ours))}")


def check_pod_security(facts: ClusterFacts) -> Check:
    name = "Pod Security"
    if facts.namespace_object is None:
        return Check(
            name, Level.FAILED, f"namespace {facts.namespace} not found", "create it, install"
        )
    labels = (facts.namespace_object.get("metadata") or {}).get("labels") or {}
    enforce = labels.get(ENFORCE_LABEL)
    fix = f"kubectl label namespace {facts.namespace} {ENFORCE_LABEL}=privileged --overwrite"
    if enforce in (None, "privileged"):
        how = "unlabelled (the cluster default applies)" if enforce is None else "privileged"
        level = Level.OK if enforce else Level.WARNING
        return Check(name, level, f"namespace {facts.namespace}: enforce {how}", fix)
    return Check(
        name,
        Level.FAILED,
        f"namespace {facts.namespace}: enforce={enforce}; the agent and node-cache need "
        "privileged (hostNetwork, hostPID, hostPath, SYS_ADMIN, NET_ADMIN)",
        fix,
    )


def check_observe(facts: ClusterFacts) -> Check:
    """Nodes in observe mode report what they would do; those that would not migrate."""
    name = "observe"
    observed = [r for r in facts.rows if r.get("mode") == "observe"]
    blocked = [
        r
        for r in observed
        if r["state"] in (NodeState.WAITING_FOR_LOCAL_DNS, NodeState.FAILED)
        or (
            r["state"] == NodeState.PENDING
            and " -> " not in r.get("reason", "")
            and "restart owed" not in r.get("reason", "")
        )
    ]
    if not observed:
        return Check(name, Level.OK, "no node reports observe mode")
    if blocked:
        shown = "; ".join(
            f"{r['node']}: {r.get('reason') or r['error'] or r['state']}" for r in blocked[:5]
        )
        return Check(
            name,
            Level.WARNING,
            f"{len(blocked)}/{len(observed)} observed node(s) would be blocked: {shown}",
            "see docs/troubleshooting.md for each reason before `kubectl nodelocaldns resume`",
        )
    return Check(name, Level.OK, f"all {len(observed)} observed node(s) would migrate")


def run_checks(facts: ClusterFacts) -> list[Check]:
    nodes = _node_names(facts)
    return [
        check_proxy_mode(facts),
        check_kube_dns(facts),
        check_upstream(facts),
        _pods_on_every_node(
            "node-cache pods",
            facts.node_cache_pods,
            nodes,
            f"kubectl -n {facts.namespace} get pods -l app.kubernetes.io/component=node-cache "
            "-o wide; the agents wait for a local DNS that answers",
        ),
        _pods_on_every_node(
            "agent pods",
            facts.agent_pods,
            nodes,
            f"kubectl -n {facts.namespace} get pods -l app.kubernetes.io/component=agent -o wide "
            "(taints without a toleration? agent.tolerations)",
        ),
        check_admission(facts),
        check_pod_security(facts),
        check_observe(facts),
    ]


def report(checks: list[Check]) -> tuple[str, bool]:
    """One line per check, and whether any failed."""
    width = max(len(c.name) for c in checks)
    failed = any(c.level is Level.FAILED for c in checks)
    return "\n".join(c.line(width) for c in checks), failed
