"""The decision: pure, over plain data, table-tested (``tests/test_plan.py``)."""

from __future__ import annotations

from dataclasses import dataclass
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
    #: a revert has no original value to put back
    NO_ORIGINAL = "no-original"
    #: the kubelet configuration cannot be found or read
    CONFIG = "config"
    #: an appliance OS renders kubelet's configuration (:mod:`.detect.hostos`)
    APPLIANCE_OS = "appliance-os"


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
    local = (inputs.local_dns,)
    if inputs.cluster_dns == local:
        if _owed_restart(inputs, local, "migrate"):
            return Plan(
                Action.MIGRATE,
                f"the configuration already points at {inputs.local_dns} but kubelet was not "
                "restarted since; restart owed",
                local,
            )
        return Plan(Action.NONE, f"kubelet already uses the local DNS {inputs.local_dns}")
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
    if not inputs.cluster_dns:
        return Plan(
            Action.BLOCKED,
            "kubelet has no cluster DNS configured; nothing to replace",
            blocker=Blocker.NO_CLUSTER_DNS,
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
        f"cluster DNS {','.join(inputs.cluster_dns)} -> {inputs.local_dns} "
        f"(kube-proxy {inputs.proxy_mode}, local DNS healthy)",
        local,
        write=True,
    )


def _decide_revert(inputs: Inputs) -> Plan:
    original = inputs.original_cluster_dns
    if not original:
        if inputs.local_dns in inputs.cluster_dns:
            return Plan(
                Action.BLOCKED,
                f"kubelet uses {inputs.local_dns} but the agent's journal has no original "
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
