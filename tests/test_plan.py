"""The decision table: every row is one situation a node can be in."""

from __future__ import annotations

import pytest

from nodelocaldns_agent.plan import (
    Action,
    Blocker,
    Goal,
    Inputs,
    decide,
    fallback_servers,
    local_target,
    on_local_dns,
)
from nodelocaldns_agent.state import NodeState

LOCAL = "169.254.20.10"
KUBE_DNS = ("10.96.0.10",)
LOCAL6 = "fd00::a"
DUAL = ("10.96.0.10", "fd00:10:96::a")
#: the local DNS followed by the original as the fallback nameserver (--fallback-nameserver)
WITH_FALLBACK = (LOCAL, "10.96.0.10")


def inputs(**over: object) -> Inputs:
    base: dict[str, object] = {
        "goal": Goal.MIGRATE,
        "local_dns": LOCAL,
        "proxy_mode": "ipvs",
        "local_dns_bound": True,
        "local_dns_healthy": True,
        "local_dns_error": "",
        "cluster_dns": KUBE_DNS,
        "running_cluster_dns": None,
        "original_cluster_dns": None,
        "pending": None,
        "force": False,
    }
    base.update(over)
    return Inputs(**base)  # type: ignore[arg-type]


# (id, overrides, action, write, target, words in reason)
ROWS = [
    ("ipvs-healthy-migrates", {}, Action.MIGRATE, True, (LOCAL,), "10.96.0.10 -> 169.254.20.10"),
    ("already-local", {"cluster_dns": (LOCAL,)}, Action.NONE, False, (), "already"),
    (
        "already-local-restart-owed-journal",
        {"cluster_dns": (LOCAL,), "pending": "migrate"},
        Action.MIGRATE,
        False,
        (LOCAL,),
        "restart owed",
    ),
    (
        "already-local-restart-owed-running-flag",
        {"cluster_dns": (LOCAL,), "running_cluster_dns": KUBE_DNS},
        Action.MIGRATE,
        False,
        (LOCAL,),
        "restart owed",
    ),
    (
        "already-local-running-agrees",
        {"cluster_dns": (LOCAL,), "running_cluster_dns": (LOCAL,)},
        Action.NONE,
        False,
        (),
        "",
    ),
    ("iptables-not-needed", {"proxy_mode": "iptables"}, Action.NONE, False, (), "iptables"),
    ("nftables-not-needed", {"proxy_mode": "nftables"}, Action.NONE, False, (), "nftables"),
    (
        "iptables-forced",
        {"proxy_mode": "iptables", "force": True},
        Action.MIGRATE,
        True,
        (LOCAL,),
        "",
    ),
    ("unknown-proxy-blocked", {"proxy_mode": "unknown"}, Action.BLOCKED, False, (), "unknown"),
    (
        "unknown-proxy-forced",
        {"proxy_mode": "unknown", "force": True},
        Action.MIGRATE,
        True,
        (LOCAL,),
        "",
    ),
    (
        "dns-not-bound",
        {"local_dns_bound": False, "local_dns_healthy": False, "local_dns_error": "not bound"},
        Action.BLOCKED,
        False,
        (),
        "not bound",
    ),
    (
        "dns-not-answering",
        {"local_dns_healthy": False, "local_dns_error": "timeout"},
        Action.BLOCKED,
        False,
        (),
        "does not answer",
    ),
    (
        "force-never-skips-dns",
        {"local_dns_healthy": False, "force": True},
        Action.BLOCKED,
        False,
        (),
        "does not answer",
    ),
    ("no-cluster-dns", {"cluster_dns": ()}, Action.BLOCKED, False, (), "no cluster DNS"),
    # dual-stack: kubelet writes every clusterDNS entry into the pods' resolv.conf, in order
    # (kubernetes/kubernetes pkg/kubelet/network/dns/dns.go, GetPodDNS), so each family the
    # original has keeps a local address of that family, in the original's order. Upstream
    # node-cache takes one family per process (kubernetes/dns cmd/node-cache/main.go:
    # "unexpected IP Family for localIP"), so the IPv6 address is a second listener.
    (
        "dual-stack-to-both-local",
        {"cluster_dns": DUAL, "local_dns_ipv6": LOCAL6},
        Action.MIGRATE,
        True,
        (LOCAL, LOCAL6),
        "10.96.0.10,fd00:10:96::a -> 169.254.20.10,fd00::a",
    ),
    (
        "dual-stack-ipv6-first-keeps-order",
        {"cluster_dns": DUAL[::-1], "local_dns_ipv6": LOCAL6},
        Action.MIGRATE,
        True,
        (LOCAL6, LOCAL),
        "",
    ),
    (
        "dual-stack-two-v4-one-local",
        {"cluster_dns": ("10.96.0.10", "10.96.0.11", "fd00:10:96::a"), "local_dns_ipv6": LOCAL6},
        Action.MIGRATE,
        True,
        (LOCAL, LOCAL6),
        "",
    ),
    (
        "v4-only-with-local-ipv6-stays-v4",
        {"local_dns_ipv6": LOCAL6},
        Action.MIGRATE,
        True,
        (LOCAL,),
        "",
    ),
    (
        # the IPv6 entry was dropped silently before (169.254.20.10 alone)
        "dual-stack-without-local-ipv6-refused",
        {"cluster_dns": DUAL},
        Action.BLOCKED,
        False,
        (),
        "IPv6 entry fd00:10:96::a and no local IPv6 address is configured (--local-dns-ipv6",
    ),
    (
        "ipv6-only-without-local-ipv6-refused",
        {"cluster_dns": ("fd00:10:96::a",)},
        Action.BLOCKED,
        False,
        (),
        "could not reach",
    ),
    (
        "ipv4-entry-with-ipv6-local-refused",
        {"cluster_dns": KUBE_DNS, "local_dns": LOCAL6},
        Action.BLOCKED,
        False,
        (),
        "no local IPv4 address",
    ),
    (
        "ipv6-only-to-ipv6-local",
        {"cluster_dns": ("fd00:10:96::a",), "local_dns": LOCAL6},
        Action.MIGRATE,
        True,
        (LOCAL6,),
        "",
    ),
    ("not-an-ip-refused", {"cluster_dns": ("kube-dns",)}, Action.BLOCKED, False, (), "not an IP"),
    (
        "dual-stack-already-local",
        {"cluster_dns": (LOCAL, LOCAL6), "local_dns_ipv6": LOCAL6, "original_cluster_dns": DUAL},
        Action.NONE,
        False,
        (),
        "already uses the local DNS 169.254.20.10,fd00::a",
    ),
    (
        "dual-stack-restart-owed",
        {"cluster_dns": (LOCAL, LOCAL6), "local_dns_ipv6": LOCAL6, "pending": "migrate"},
        Action.MIGRATE,
        False,
        (LOCAL, LOCAL6),
        "restart owed",
    ),
    (
        # migrated to 169.254.20.10 alone (before dual-stack support), then a local IPv6 set
        "migrated-v4-alone-gains-local-ipv6",
        {"cluster_dns": (LOCAL,), "local_dns_ipv6": LOCAL6, "original_cluster_dns": DUAL},
        Action.MIGRATE,
        True,
        (LOCAL, LOCAL6),
        "169.254.20.10 -> 169.254.20.10,fd00::a",
    ),
    (
        # ... and without one: what works stays, nothing is taken away
        "migrated-v4-alone-stays-without-local-ipv6",
        {"cluster_dns": (LOCAL,), "original_cluster_dns": DUAL},
        Action.NONE,
        False,
        (),
        "already",
    ),
    (
        "migrated-local-ipv6-needs-a-healthy-dns",
        {
            "cluster_dns": (LOCAL,),
            "local_dns_ipv6": LOCAL6,
            "original_cluster_dns": DUAL,
            "local_dns_healthy": False,
            "local_dns_error": "fd00::a timeout",
        },
        Action.BLOCKED,
        False,
        (),
        "fd00::a timeout",
    ),
    # revert
    (
        "revert-migrated",
        {"goal": Goal.REVERT, "cluster_dns": (LOCAL,), "original_cluster_dns": KUBE_DNS},
        Action.REVERT,
        True,
        KUBE_DNS,
        "original",
    ),
    (
        "revert-dns-down-still-reverts",
        {
            "goal": Goal.REVERT,
            "cluster_dns": (LOCAL,),
            "original_cluster_dns": KUBE_DNS,
            "local_dns_healthy": False,
            "local_dns_bound": False,
        },
        Action.REVERT,
        True,
        KUBE_DNS,
        "",
    ),
    (
        "revert-done",
        {"goal": Goal.REVERT, "original_cluster_dns": KUBE_DNS},
        Action.NONE,
        False,
        (),
        "already",
    ),
    (
        "revert-restart-owed",
        {"goal": Goal.REVERT, "original_cluster_dns": KUBE_DNS, "pending": "revert"},
        Action.REVERT,
        False,
        KUBE_DNS,
        "restart owed",
    ),
    ("revert-never-touched", {"goal": Goal.REVERT}, Action.NONE, False, (), "never changed"),
    (
        "revert-local-without-journal",
        {"goal": Goal.REVERT, "cluster_dns": (LOCAL,)},
        Action.BLOCKED,
        False,
        (),
        "no original",
    ),
    (
        "revert-dual-stack-exact",
        {
            "goal": Goal.REVERT,
            "cluster_dns": (LOCAL, LOCAL6),
            "local_dns_ipv6": LOCAL6,
            "original_cluster_dns": DUAL,
        },
        Action.REVERT,
        True,
        DUAL,
        "169.254.20.10,fd00::a -> original 10.96.0.10,fd00:10:96::a",
    ),
    (
        "revert-local-ipv6-without-journal",
        {"goal": Goal.REVERT, "cluster_dns": (LOCAL6,), "local_dns_ipv6": LOCAL6},
        Action.BLOCKED,
        False,
        (),
        "kubelet uses fd00::a but",
    ),
    (
        "revert-iptables-node",
        {
            "goal": Goal.REVERT,
            "proxy_mode": "iptables",
            "cluster_dns": (LOCAL,),
            "original_cluster_dns": KUBE_DNS,
        },
        Action.REVERT,
        True,
        KUBE_DNS,
        "",
    ),
    # --fallback-nameserver: the local DNS first, then the original (kubelet keeps the order)
    (
        "fallback-migrates-to-local-then-original",
        {"fallback": True},
        Action.MIGRATE,
        True,
        WITH_FALLBACK,
        "10.96.0.10 -> 169.254.20.10,10.96.0.10",
    ),
    (
        "fallback-already-there",
        {"fallback": True, "cluster_dns": WITH_FALLBACK, "original_cluster_dns": KUBE_DNS},
        Action.NONE,
        False,
        (),
        "already uses the local DNS 169.254.20.10,10.96.0.10",
    ),
    (
        "fallback-restart-owed",
        {
            "fallback": True,
            "cluster_dns": WITH_FALLBACK,
            "original_cluster_dns": KUBE_DNS,
            "pending": "migrate",
        },
        Action.MIGRATE,
        False,
        WITH_FALLBACK,
        "restart owed",
    ),
    (
        # the setting turned on for a migrated node: converge, a normal change
        "fallback-turned-on-after-migration",
        {"fallback": True, "cluster_dns": (LOCAL,), "original_cluster_dns": KUBE_DNS},
        Action.MIGRATE,
        True,
        WITH_FALLBACK,
        "169.254.20.10 -> 169.254.20.10,10.96.0.10",
    ),
    (
        # ... and turned off again: the fallback goes, the original stays in the journal
        "fallback-turned-off-after-migration",
        {"cluster_dns": WITH_FALLBACK, "original_cluster_dns": KUBE_DNS},
        Action.MIGRATE,
        True,
        (LOCAL,),
        "169.254.20.10,10.96.0.10 -> 169.254.20.10 ",
    ),
    (
        # a node pointed at 169.254.20.10 by hand: no original to add, refused
        "fallback-without-original-refused",
        {"fallback": True, "cluster_dns": (LOCAL,)},
        Action.BLOCKED,
        False,
        (),
        "no original value to add as the fallback nameserver",
    ),
    (
        # the original holds the local address itself: never a fallback to itself
        "fallback-never-the-local-address",
        {"fallback": True, "cluster_dns": (LOCAL, "10.96.0.10", "10.96.0.10")},
        Action.MIGRATE,
        True,
        WITH_FALLBACK,
        "",
    ),
    (
        "fallback-duplicates-dropped",
        {"fallback": True, "cluster_dns": ("10.96.0.10", "10.96.0.10")},
        Action.MIGRATE,
        True,
        WITH_FALLBACK,
        "",
    ),
    (
        "fallback-dual-stack",
        {"fallback": True, "cluster_dns": ("10.96.0.10",), "local_dns_ipv6": LOCAL6},
        Action.MIGRATE,
        True,
        WITH_FALLBACK,
        "",
    ),
    (
        # 4 nameservers: kubelet would drop the IPv6 fallback
        "fallback-dual-stack-over-the-limit-refused",
        {"fallback": True, "cluster_dns": DUAL, "local_dns_ipv6": LOCAL6},
        Action.BLOCKED,
        False,
        (),
        "gives pods only the first 3",
    ),
    (
        "local-then-a-foreign-entry-is-no-fallback",
        {"cluster_dns": (LOCAL, "10.0.0.53"), "original_cluster_dns": KUBE_DNS},
        Action.MIGRATE,
        True,
        (LOCAL,),
        "",
    ),
    (
        "fallback-revert-restores-the-original",
        {
            "goal": Goal.REVERT,
            "fallback": True,
            "cluster_dns": WITH_FALLBACK,
            "original_cluster_dns": KUBE_DNS,
        },
        Action.REVERT,
        True,
        KUBE_DNS,
        "169.254.20.10,10.96.0.10 -> original 10.96.0.10",
    ),
]


#: the blocker of every BLOCKED row (any other row has none)
BLOCKERS = {
    "unknown-proxy-blocked": Blocker.PROXY_MODE,
    "dns-not-bound": Blocker.LOCAL_DNS,
    "dns-not-answering": Blocker.LOCAL_DNS,
    "force-never-skips-dns": Blocker.LOCAL_DNS,
    "no-cluster-dns": Blocker.NO_CLUSTER_DNS,
    "revert-local-without-journal": Blocker.NO_ORIGINAL,
    "revert-local-ipv6-without-journal": Blocker.NO_ORIGINAL,
    "dual-stack-without-local-ipv6-refused": Blocker.IP_FAMILY,
    "ipv6-only-without-local-ipv6-refused": Blocker.IP_FAMILY,
    "ipv4-entry-with-ipv6-local-refused": Blocker.IP_FAMILY,
    "not-an-ip-refused": Blocker.CONFIG,
    "migrated-local-ipv6-needs-a-healthy-dns": Blocker.LOCAL_DNS,
    "fallback-without-original-refused": Blocker.NO_ORIGINAL,
    "fallback-dual-stack-over-the-limit-refused": Blocker.NAMESERVER_LIMIT,
}


@pytest.mark.parametrize(
    ("name", "over", "action", "write", "target", "words"), ROWS, ids=[row[0] for row in ROWS]
)
def test_decide(
    name: str,
    over: dict[str, object],
    action: Action,
    write: bool,
    target: tuple[str, ...],
    words: str,
) -> None:
    plan = decide(inputs(**over))
    assert plan.action is action, plan.reason
    assert plan.write is write
    assert plan.target == target
    assert words in plan.reason
    assert plan.blocker is BLOCKERS.get(name)
    assert plan.reason


@pytest.mark.parametrize(
    ("goal", "changing", "done"),
    [
        (Goal.MIGRATE, NodeState.MIGRATING, NodeState.MIGRATED),
        (Goal.REVERT, NodeState.REVERTING, NodeState.REVERTED),
    ],
    ids=["migrate", "revert"],
)
def test_goal_states(goal: Goal, changing: NodeState, done: NodeState) -> None:
    assert (goal.changing, goal.done) == (changing, done)


@pytest.mark.parametrize(
    ("cluster_dns", "local", "target", "uncovered"),
    [
        (("10.96.0.10",), (LOCAL,), (LOCAL,), ()),
        (DUAL, (LOCAL,), (LOCAL,), ("fd00:10:96::a",)),
        (DUAL, (LOCAL, LOCAL6), (LOCAL, LOCAL6), ()),
        (DUAL[::-1], (LOCAL, LOCAL6), (LOCAL6, LOCAL), ()),
        ((LOCAL, "10.96.0.10"), (LOCAL,), (LOCAL,), ()),
        (("fd00:10:96::a", "fd00:10:96::b"), (LOCAL, LOCAL6), (LOCAL6,), ()),
    ],
)
def test_local_target(
    cluster_dns: tuple[str, ...],
    local: tuple[str, ...],
    target: tuple[str, ...],
    uncovered: tuple[str, ...],
) -> None:
    mapped = local_target(cluster_dns, local)
    assert (mapped.target, mapped.uncovered, mapped.invalid) == (target, uncovered, ())


@pytest.mark.parametrize(
    ("original", "local", "servers"),
    [
        (KUBE_DNS, (LOCAL,), KUBE_DNS),
        ((LOCAL, "10.96.0.10"), (LOCAL,), KUBE_DNS),
        (("10.96.0.10", "10.96.0.10"), (LOCAL,), KUBE_DNS),
        (DUAL, (LOCAL, LOCAL6), DUAL),
        ((LOCAL,), (LOCAL,), ()),
    ],
)
def test_fallback_servers(
    original: tuple[str, ...], local: tuple[str, ...], servers: tuple[str, ...]
) -> None:
    assert fallback_servers(original, local) == servers


@pytest.mark.parametrize(
    ("cluster_dns", "original", "migrated"),
    [
        ((LOCAL,), None, True),
        ((LOCAL,), KUBE_DNS, True),
        (WITH_FALLBACK, KUBE_DNS, True),
        (WITH_FALLBACK, (LOCAL, "10.96.0.10"), True),
        # without the journal the second entry may be anyone's
        (WITH_FALLBACK, None, False),
        ((LOCAL, "10.0.0.53"), KUBE_DNS, False),
        (("10.96.0.10", LOCAL), KUBE_DNS, False),
        (KUBE_DNS, KUBE_DNS, False),
        ((), KUBE_DNS, False),
        ((LOCAL, LOCAL6, *DUAL), DUAL, True),
    ],
)
def test_on_local_dns(
    cluster_dns: tuple[str, ...], original: tuple[str, ...] | None, migrated: bool
) -> None:
    assert on_local_dns(cluster_dns, (LOCAL, LOCAL6), original) is migrated
