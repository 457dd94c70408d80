"""The decision: pure, over plain data, table-tested (``tests/test_plan.py``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from enum import StrEnum

from nodelocaldns_agent.state import NodeState


class Action(StrEnum):
    NONE = "none"
    MIGRATE = "migrate"
    REVERT = "revert"
    BLOCKED = "blocked"


class Goal(StrEnum):
    MIGRATE = "migrate"
    REVERT = "revert"

    @property
    def changing(self) -> NodeState:
        """The node's state while a change towards this goal is under way."""
        return NodeState.MIGRATING if self is Goal.MIGRATE else NodeState.REVERTING

    @property
    def done(self) -> NodeState:
        """The node's state once a change towards this goal was verified."""
        return NodeState.MIGRATED if self is Goal.MIGRATE else NodeState.REVERTED


class Blocker(StrEnum):
    """Why a plan is BLOCKED."""

    #: the local DNS is not bound or does not answer (the node waits for it)
    LOCAL_DNS = "local-dns"
    #: kube-proxy's mode is unknown (migrating could break DNS; ``--force`` overrides)
    PROXY_MODE = "proxy-mode"
    #: kubelet has no cluster DNS to replace
    NO_CLUSTER_DNS = "no-cluster-dns"
    #: a revert has no original value to put back, or the fallback nameserver none to add
    NO_ORIGINAL = "no-original"
    #: the kubelet configuration cannot be found or read
    CONFIG = "config"
    #: an appliance OS renders kubelet's configuration (:mod:`.detect.hostos`)
    APPLIANCE_OS = "appliance-os"
    #: kubelet's cluster DNS has an IPv6 entry and no local IPv6 address is configured
    IP_FAMILY = "ip-family"
    #: the fallback nameservers would make kubelet's list longer than pods can use
    NAMESERVER_LIMIT = "nameserver-limit"


@dataclass(frozen=True)
class Inputs:
    """The facts the decision needs, nothing else."""

    goal: Goal
    local_dns: str
    proxy_mode: str
    local_dns_bound: bool
    local_dns_healthy: bool
    local_dns_error: str
    #: what the configuration on disk makes kubelet use
    cluster_dns: tuple[str, ...]
    #: --cluster-dns of the running kubelet, when it is a flag (None: unknown)
    running_cluster_dns: tuple[str, ...] | None
    #: the value before the agent's first change, from the journal (None: no journal)
    original_cluster_dns: tuple[str, ...] | None
    #: a write the journal says was made but not yet verified: "migrate", "revert" or None
    pending: str | None
    force: bool = False
    #: the local IPv6 address node-cache also listens on ("" when none: IPv4 only)
    local_dns_ipv6: str = ""
    #: the original cluster DNS follows the local addresses (see :func:`fallback_servers`)
    fallback: bool = False

    @property
    def local_addresses(self) -> tuple[str, ...]:
        return local_addresses(self.local_dns, self.local_dns_ipv6)


@dataclass(frozen=True)
class Plan:
    action: Action
    reason: str
    #: the cluster DNS kubelet should end up with (empty for none/blocked)
    target: tuple[str, ...] = ()
    #: whether the file must be written (False: only a restart is owed)
    write: bool = False
    #: why BLOCKED (None otherwise)
    blocker: Blocker | None = None


def local_addresses(local_dns: str, local_dns_ipv6: str = "") -> tuple[str, ...]:
    """Every address node-cache listens on for the agent: the local DNS, and the local
    IPv6 address when one is configured."""
    return (local_dns, local_dns_ipv6) if local_dns_ipv6 else (local_dns,)


#: kubelet passes at most this many nameservers into a pod's resolv.conf and drops the
#: rest with a ``DNSConfigForming`` warning (kubernetes/kubernetes
#: pkg/kubelet/network/dns/dns.go ``formDNSNameserversFitsLimits``, with
#: ``MaxDNSNameservers = 3`` of pkg/apis/core/validation: "derived from restrictions in
#: Linux libc"; glibc's and musl's ``MAXNS`` are 3 too)
MAX_NAMESERVERS = 3


def uses_only_local(cluster_dns: tuple[str, ...], local: tuple[str, ...]) -> bool:
    """Kubelet's cluster DNS is local addresses only (a migrated node)."""
    return bool(cluster_dns) and all(server in local for server in cluster_dns)


def fallback_servers(original: tuple[str, ...], local: tuple[str, ...]) -> tuple[str, ...]:
    """What ``--fallback-nameserver`` puts after the local addresses: the original cluster
    DNS entries, in order, without the local addresses themselves (a node someone pointed
    at 169.254.20.10 by hand) and without duplicates. ``10.96.0.10`` -> ``10.96.0.10``;
    ``169.254.20.10,10.96.0.10`` -> ``10.96.0.10``."""
    out: list[str] = []
    for server in original:
        if server not in local and server not in out:
            out.append(server)
    return tuple(out)


def on_local_dns(
    cluster_dns: tuple[str, ...], local: tuple[str, ...], original: tuple[str, ...] | None
) -> bool:
    """Kubelet's cluster DNS is one a migration writes: local addresses only, or local
    addresses followed by the :func:`fallback_servers` of the journal's ``original``
    (whether the fallback is configured now or not: a node migrated either way counts as
    migrated, and a change of the setting is converged by a normal restart)."""
    if uses_only_local(cluster_dns, local):
        return True
    head = 0
    while head < len(cluster_dns) and cluster_dns[head] in local:
        head += 1
    extra = fallback_servers(original or (), local)
    return head > 0 and bool(extra) and cluster_dns[head:] == extra


@dataclass(frozen=True)
class LocalTarget:
    """The local counterpart of a cluster DNS list (see :func:`local_target`)."""

    #: one local address per IP family of the list, in the list's order
    target: tuple[str, ...]
    #: entries whose family has no local address (the list cannot be migrated)
    uncovered: tuple[str, ...] = ()
    #: entries that are not IP addresses
    invalid: tuple[str, ...] = ()


def local_target(cluster_dns: tuple[str, ...], local: tuple[str, ...]) -> LocalTarget:
    """Every entry replaced by the local address of its IP family, duplicates dropped, the
    order kept: kubelet writes every entry into each pod's resolv.conf, in order, and the
    resolver tries them in that order (glibc) or all at once (musl), so the families the
    node's pods can reach the cluster DNS over, and which comes first, stay what they were.
    ``10.96.0.10,fd00:10:96::a`` -> ``169.254.20.10,fd00::a`` (with a local IPv6)."""
    by_family = {ipaddress.ip_address(address).version: address for address in local}
    target: list[str] = []
    uncovered: list[str] = []
    invalid: list[str] = []
    for server in cluster_dns:
        try:
            family = ipaddress.ip_address(server).version
        except ValueError:
            invalid.append(server)
            continue
        mapped = by_family.get(family)
        if mapped is None:
            uncovered.append(server)
        elif mapped not in target:
            target.append(mapped)
    return LocalTarget(tuple(target), tuple(uncovered), tuple(invalid))


def _owed_restart(inputs: Inputs, target: tuple[str, ...], goal: str) -> bool:
    """The file already says ``target`` but the running kubelet may not use it yet."""
    if inputs.pending == goal:
        return True
    return inputs.running_cluster_dns is not None and inputs.running_cluster_dns != target


def decide(inputs: Inputs) -> Plan:
    if inputs.goal is Goal.REVERT:
        return _decide_revert(inputs)
    return _decide_migrate(inputs)


def _decide_migrate(inputs: Inputs) -> Plan:
    local = inputs.local_addresses
    current = inputs.cluster_dns
    migrated = on_local_dns(current, local, inputs.original_cluster_dns)
    # a migrated node's target comes from the original, so that a local IPv6 address
    # configured after the migration is added (10.96.0.10,fd00:10:96::a migrated to
    # 169.254.20.10 alone, then --local-dns-ipv6 set), and so does its fallback; an
    # unmigrated node's original is what it uses now (the journal keeps it before the write)
    base = inputs.original_cluster_dns if migrated and inputs.original_cluster_dns else current
    mapped = local_target(base, local)
    if migrated and (mapped.uncovered or mapped.invalid):
        # never take away what works: the original cannot be mapped completely, so the
        # local addresses the node already uses stay
        mapped = LocalTarget(current)
    elif inputs.fallback and not mapped.invalid:
        extra = fallback_servers(base, local)
        if current and not extra:
            return Plan(
                Action.BLOCKED,
                f"kubelet's cluster DNS {','.join(current)} is the local DNS already and the "
                "agent's journal has no original value to add as the fallback nameserver "
                "(--fallback-nameserver, the chart's agent.fallbackNameserver); put the "
                "original cluster DNS back by hand, or turn the fallback off",
                blocker=Blocker.NO_ORIGINAL,
            )
        mapped = replace(mapped, target=mapped.target + extra)
    if current and mapped.target == current:
        shown = ",".join(current)
        if _owed_restart(inputs, current, "migrate"):
            return Plan(
                Action.MIGRATE,
                f"the configuration already points at {shown} but kubelet was not "
                "restarted since; restart owed",
                current,
            )
        return Plan(Action.NONE, f"kubelet already uses the local DNS {shown}")
    if not inputs.force:
        if inputs.proxy_mode == "unknown":
            return Plan(
                Action.BLOCKED,
                "kube-proxy mode is unknown (no kube-ipvs0 interface and kube-proxy's "
                "/proxyMode did not answer); use --force to migrate anyway",
                blocker=Blocker.PROXY_MODE,
            )
        if inputs.proxy_mode != "ipvs":
            return Plan(
                Action.NONE,
                f"not needed: kube-proxy runs in {inputs.proxy_mode} mode, where node-cache "
                "also serves the kube-dns ClusterIP (use --force to migrate anyway)",
            )
    if not current:
        return Plan(
            Action.BLOCKED,
            "kubelet has no cluster DNS configured; nothing to replace",
            blocker=Blocker.NO_CLUSTER_DNS,
        )
    if mapped.invalid:
        return Plan(
            Action.BLOCKED,
            f"kubelet's cluster DNS {','.join(base)}: {', '.join(mapped.invalid)} is not an "
            "IP address",
            blocker=Blocker.CONFIG,
        )
    if mapped.uncovered:
        return Plan(Action.BLOCKED, _uncovered_reason(base, mapped), blocker=Blocker.IP_FAMILY)
    if len(mapped.target) > MAX_NAMESERVERS:
        return Plan(
            Action.BLOCKED,
            f"cluster DNS {','.join(mapped.target)} with the fallback nameserver has "
            f"{len(mapped.target)} entries; kubelet gives pods only the first "
            f"{MAX_NAMESERVERS} (and glibc and musl read no more), so the last fallback "
            "would be dropped: turn --fallback-nameserver (the chart's "
            "agent.fallbackNameserver) off",
            blocker=Blocker.NAMESERVER_LIMIT,
        )
    if not inputs.local_dns_bound:
        return Plan(
            Action.BLOCKED,
            f"local DNS not ready: {inputs.local_dns_error}",
            blocker=Blocker.LOCAL_DNS,
        )
    if not inputs.local_dns_healthy:
        return Plan(
            Action.BLOCKED,
            f"local DNS does not answer: {inputs.local_dns_error}",
            blocker=Blocker.LOCAL_DNS,
        )
    return Plan(
        Action.MIGRATE,
        f"cluster DNS {','.join(current)} -> {','.join(mapped.target)} "
        f"(kube-proxy {inputs.proxy_mode}, local DNS healthy)",
        mapped.target,
        write=True,
    )


def _uncovered_reason(base: tuple[str, ...], mapped: LocalTarget) -> str:
    family = ipaddress.ip_address(mapped.uncovered[0]).version
    setting = (
        "--local-dns-ipv6, the chart's nodeLocalDNS.localIPv6"
        if family == 6
        else "--local-dns, the chart's nodeLocalDNS.localIP"
    )
    left = (
        f"migrating to {','.join(mapped.target)} alone would leave the node's pods without "
        f"an IPv{family} nameserver"
        if mapped.target
        else "the node's pods could not reach a local DNS of another family"
    )
    return (
        f"kubelet's cluster DNS {','.join(base)} has the IPv{family} entry "
        f"{', '.join(mapped.uncovered)} and no local IPv{family} address is configured "
        f"({setting}); {left}"
    )


def _decide_revert(inputs: Inputs) -> Plan:
    original = inputs.original_cluster_dns
    if not original:
        used = [server for server in inputs.cluster_dns if server in inputs.local_addresses]
        if used:
            return Plan(
                Action.BLOCKED,
                f"kubelet uses {','.join(used)} but the agent's journal has no original "
                "value to put back; set the cluster DNS by hand",
                blocker=Blocker.NO_ORIGINAL,
            )
        return Plan(Action.NONE, "nothing to revert: the agent never changed this node")
    if inputs.cluster_dns == original:
        if _owed_restart(inputs, original, "revert"):
            return Plan(
                Action.REVERT,
                f"the configuration already holds the original {','.join(original)} but "
                "kubelet was not restarted since; restart owed",
                original,
            )
        return Plan(Action.NONE, f"kubelet already uses the original {','.join(original)}")
    return Plan(
        Action.REVERT,
        f"cluster DNS {','.join(inputs.cluster_dns) or '(none)'} -> original {','.join(original)}",
        original,
        write=True,
    )


def on_appliance(plan: Plan, goal: Goal, refusal: str) -> Plan:
    """``plan`` on an appliance OS, which renders kubelet's configuration itself: a
    migration is refused with ``refusal`` (nothing written; a node already on the local
    DNS, set the OS's way, needs nothing). A revert is made only when it puts back what
    the agent itself wrote there before it knew better; anything else has nothing to
    revert."""
    if goal is Goal.MIGRATE:
        if plan.action is Action.NONE:
            return plan
        return Plan(Action.BLOCKED, refusal, blocker=Blocker.APPLIANCE_OS)
    if plan.action is Action.REVERT:
        return plan
    return Plan(Action.NONE, f"nothing to revert: {refusal}")
