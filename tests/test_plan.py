"""The decision table: every row is one situation a node can be in."""

from __future__ import annotations

import pytest

from nodelocaldns_agent.plan import Action, Blocker, Goal, Inputs, decide
from nodelocaldns_agent.state import NodeState

LOCAL = "169.254.20.10"
KUBE_DNS = ("10.96.0.10",)


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
    (
        "dual-stack-to-local",
        {"cluster_dns": ("10.96.0.10", "fd00::a")},
        Action.MIGRATE,
        True,
        (LOCAL,),
        "",
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
]


#: the blocker of every BLOCKED row (any other row has none)
BLOCKERS = {
    "unknown-proxy-blocked": Blocker.PROXY_MODE,
    "dns-not-bound": Blocker.LOCAL_DNS,
    "dns-not-answering": Blocker.LOCAL_DNS,
    "force-never-skips-dns": Blocker.LOCAL_DNS,
    "no-cluster-dns": Blocker.NO_CLUSTER_DNS,
    "revert-local-without-journal": Blocker.NO_ORIGINAL,
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
