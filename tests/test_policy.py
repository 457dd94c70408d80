"""The daemon's policy, one table per decision: every row is one situation, and the whole
decision is compared (state, reason, error, Event, stale pods, metrics), not one field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nodelocaldns_agent import policy
from nodelocaldns_agent.detect.localdns import LocalDns
from nodelocaldns_agent.detect.proxymode import ProxyMode
from nodelocaldns_agent.engine import Facts, Outcome
from nodelocaldns_agent.plan import Action, Blocker, Goal, Plan
from nodelocaldns_agent.policy import (
    AfterChange,
    Change,
    Counts,
    Drift,
    Drifted,
    EventReason,
    JournalEntry,
    Notice,
    Planned,
    ProbeStep,
    StalePods,
    Verdict,
)
from nodelocaldns_agent.state import Mode, NodeState, Result, Stage

LABEL = "nodelocaldns-agent.io/opt-out"
SKIPPED = Verdict(NodeState.SKIPPED, f"label {LABEL}=true")
#: wall-clock seconds "now" in every row
NOW = 1_700_010_000.0
HOUR = 3600.0
ERROR = "kubelet not healthy within 120s after the restart: connection refused"

MIGRATE = Plan(
    Action.MIGRATE, "cluster DNS 10.96.0.10 -> 169.254.20.10", ("169.254.20.10",), write=True
)
OWED = Plan(Action.MIGRATE, "restart owed", ("169.254.20.10",))
REVERT = Plan(Action.REVERT, "cluster DNS 169.254.20.10 -> original", ("10.96.0.10",), write=True)
NOTHING = Plan(Action.NONE, "kubelet already uses the local DNS 169.254.20.10")
WAITING = Plan(Action.BLOCKED, "local DNS does not answer: timeout", blocker=Blocker.LOCAL_DNS)
UNKNOWN_PROXY = Plan(Action.BLOCKED, "kube-proxy mode is unknown", blocker=Blocker.PROXY_MODE)
#: nothing trustworthy says how kubelet runs (issue 13): failed with the reason, never edited
UNTRUSTED = Plan(
    Action.BLOCKED,
    "kubelet configuration: kubelet.service's MainPID 4242 is not the host's kubelet: it "
    "runs in mount namespace mnt:[4026532500], not in PID 1's mnt:[4026531841]",
    blocker=Blocker.CONFIG,
)

BLOCKED_WAITING = Verdict(
    NodeState.WAITING_FOR_LOCAL_DNS,
    WAITING.reason,
    notice=Notice(EventReason.BLOCKED, WAITING.reason, warning=False),
)
BLOCKED_FAILED = Verdict(
    NodeState.FAILED,
    UNKNOWN_PROXY.reason,
    error=UNKNOWN_PROXY.reason,
    notice=Notice(EventReason.BLOCKED, UNKNOWN_PROXY.reason, warning=True),
)
UNTRUSTED_FAILED = Verdict(
    NodeState.FAILED,
    UNTRUSTED.reason,
    error=UNTRUSTED.reason,
    notice=Notice(EventReason.BLOCKED, UNTRUSTED.reason, warning=True),
)


def entry(
    state: NodeState, *, pending: bool = False, age: float = 0.0, error: str = ""
) -> JournalEntry:
    """A journal entry last updated ``age`` seconds before NOW, from 10.96.0.10."""
    return JournalEntry(state, pending, NOW - age, error, ("10.96.0.10",))


# ---------------------------------------------------------------- opt-out
# (id, mode, opted out, journal, decision: None = go on with the pass)
SKIP_ROWS = [
    ("not-opted-out", Mode.MIGRATE, False, None, None),
    ("not-opted-out-revert", Mode.REVERT, False, entry(NodeState.MIGRATED), None),
    ("opted-out-migrate", Mode.MIGRATE, True, entry(NodeState.MIGRATED), SKIPPED),
    ("opted-out-observe", Mode.OBSERVE, True, None, SKIPPED),
    ("opted-out-revert-never-changed", Mode.REVERT, True, None, SKIPPED),
    ("opted-out-revert-already-reverted", Mode.REVERT, True, entry(NodeState.REVERTED), SKIPPED),
    ("opted-out-revert-migrated-by-us", Mode.REVERT, True, entry(NodeState.MIGRATED), None),
    ("opted-out-revert-failed-change-by-us", Mode.REVERT, True, entry(NodeState.FAILED), None),
]


@pytest.mark.parametrize(
    ("mode", "out", "journal", "decision"),
    [row[1:] for row in SKIP_ROWS],
    ids=[row[0] for row in SKIP_ROWS],
)
def test_skip(
    mode: Mode, out: bool, journal: JournalEntry | None, decision: Verdict | None
) -> None:
    assert policy.skip(mode, out, journal, LABEL) == decision


# ---------------------------------------------------------------- goal
GOAL_ROWS = [
    ("migrate", Mode.MIGRATE, False, Goal.MIGRATE),
    ("migrate-failsafe-active-reverts", Mode.MIGRATE, True, Goal.REVERT),
    ("revert", Mode.REVERT, False, Goal.REVERT),
    ("observe-plans-a-migration", Mode.OBSERVE, False, Goal.MIGRATE),
    ("observe-ignores-the-failsafe", Mode.OBSERVE, True, Goal.MIGRATE),
]


@pytest.mark.parametrize(
    ("mode", "failsafe", "goal"), [row[1:] for row in GOAL_ROWS], ids=[row[0] for row in GOAL_ROWS]
)
def test_goal_for(mode: Mode, failsafe: bool, goal: Goal) -> None:
    assert policy.goal_for(mode, failsafe) is goal


# ---------------------------------------------------------------- drift
LOCAL = "169.254.20.10"
WHERE = "/etc/kubernetes/kubelet/config.json"
BACK = (
    f"{WHERE}: kubelet's cluster DNS is the original 10.96.0.10 again, not {LOCAL} as the "
    "agent set it: something rewrote the file (a platform's boot or upgrade step); "
    "migrating it again"
)


def changed(now: str) -> str:
    return (
        f"{WHERE}: kubelet's cluster DNS was changed to {now} after the agent set {LOCAL} "
        "(original 10.96.0.10): someone else's choice, left alone. To hand the node back, put "
        "10.96.0.10 back, or run 'nodelocaldns-agent migrate --once' on the node (it keeps "
        f"{now} as the original)"
    )


TO_ORIGINAL = Drifted(Drift.ORIGINAL, Notice(EventReason.DRIFTED, BACK), announce=True)
TO_OTHER = Drifted(
    Drift.OTHER, Notice(EventReason.DRIFTED, changed("10.96.0.20"), warning=True), announce=True
)
TO_NONE = Drifted(
    Drift.NONE,
    Notice(EventReason.DRIFTED, changed("no cluster DNS"), warning=True),
    announce=True,
)
SEEN = {"announce": False}
MIGRATED = entry(NodeState.MIGRATED)
# (id, state the Node shows, journal, goal, cluster DNS on disk, decision)
DRIFT_ROWS = [
    # nodeadm/configure-helper at boot, kubeadm upgrade node, a kubespray re-run
    ("platform-rewrote-the-original", NodeState.MIGRATED, MIGRATED, Goal.MIGRATE,
     ("10.96.0.10",), TO_ORIGINAL),
    ("an-admin-chose-another-value", NodeState.MIGRATED, MIGRATED, Goal.MIGRATE,
     ("10.96.0.20",), TO_OTHER),
    ("the-cluster-dns-was-removed", NodeState.MIGRATED, MIGRATED, Goal.MIGRATE, (), TO_NONE),
    # known already (announced when the Node still said migrated): no second Event or count
    ("waiting-for-the-slot-after-drift", NodeState.WAITING_FOR_LOCK, MIGRATED, Goal.MIGRATE,
     ("10.96.0.10",), replace(TO_ORIGINAL, **SEEN)),
    ("waiting-for-local-dns-after-drift", NodeState.WAITING_FOR_LOCAL_DNS, MIGRATED,
     Goal.MIGRATE, ("10.96.0.10",), replace(TO_ORIGINAL, **SEEN)),
    ("left-alone-stays-left-alone", NodeState.FAILED, MIGRATED, Goal.MIGRATE,
     ("10.96.0.20",), replace(TO_OTHER, **SEEN)),
    # after an agent restart the Node's state is adopted: a reboot's rewrite is announced
    ("still-on-the-local-dns", NodeState.MIGRATED, MIGRATED, Goal.MIGRATE, (LOCAL,), None),
    # --fallback-nameserver's form, whether the setting is on now or not: the plan
    # converges it to the configured form through the restart slot, no drift
    ("on-the-local-dns-with-the-original-as-fallback", NodeState.MIGRATED, MIGRATED,
     Goal.MIGRATE, (LOCAL, "10.96.0.10"), None),
    ("local-dns-then-someone-elses-server", NodeState.MIGRATED, MIGRATED, Goal.MIGRATE,
     (LOCAL, "10.96.0.20"), replace(TO_OTHER, notice=Notice(
         EventReason.DRIFTED, changed(f"{LOCAL},10.96.0.20"), warning=True))),
    ("kubelet-config-unreadable", NodeState.MIGRATED, MIGRATED, Goal.MIGRATE, None, None),
    ("never-migrated-by-the-agent", NodeState.PENDING, None, Goal.MIGRATE, ("10.96.0.10",),
     None),
    # the fail-safe's revert: the goal is revert, and the journal says reverted after it
    ("failsafe-reverting", NodeState.MIGRATED, MIGRATED, Goal.REVERT, ("10.96.0.10",), None),
    ("failsafe-reverted", NodeState.REVERTED, entry(NodeState.REVERTED), Goal.MIGRATE,
     ("10.96.0.10",), None),
    ("mode-revert", NodeState.MIGRATED, MIGRATED, Goal.REVERT, ("10.96.0.10",), None),
    # a change of the agent's own in flight (killed mid-way) is no drift
    ("change-in-flight", NodeState.MIGRATING, entry(NodeState.MIGRATED, pending=True),
     Goal.MIGRATE, ("10.96.0.10",), None),
    ("last-change-failed", NodeState.FAILED, entry(NodeState.FAILED), Goal.MIGRATE,
     ("10.96.0.10",), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reported", "journal", "goal", "cluster_dns", "decision"),
    [row[1:] for row in DRIFT_ROWS],
    ids=[row[0] for row in DRIFT_ROWS],
)
def test_drift(
    reported: NodeState,
    journal: JournalEntry | None,
    goal: Goal,
    cluster_dns: tuple[str, ...] | None,
    decision: Drifted | None,
) -> None:
    assert policy.drift(reported, journal, goal, cluster_dns, (LOCAL,), WHERE) == decision


def test_a_dual_stack_node_on_both_local_addresses_has_not_drifted() -> None:
    both = (LOCAL, "fd00::a")
    assert policy.drift(NodeState.MIGRATED, MIGRATED, Goal.MIGRATE, both, both, WHERE) is None
    back = policy.drift(NodeState.MIGRATED, MIGRATED, Goal.MIGRATE, ("10.96.0.10",), both, WHERE)
    assert back is not None and back.to is Drift.ORIGINAL
    assert f"not {LOCAL},fd00::a as the agent set it" in back.notice.message


# ---------------------------------------------------------------- after planning
def planned(**over: object) -> Planned:
    base: dict[str, object] = {
        "mode": Mode.MIGRATE,
        "goal": Goal.MIGRATE,
        "plan": MIGRATE,
        "steady": NodeState.NOT_NEEDED,
        "journal": None,
        "now": NOW,
        "retry_failed_after": HOUR,
    }
    base.update(over)
    return Planned(**base)  # type: ignore[arg-type]


# (id, overrides of planned(), decision)
PLAN_ROWS = [
    ("migrate", {}, Change(Goal.MIGRATE)),
    (
        "revert",
        {"mode": Mode.REVERT, "goal": Goal.REVERT, "plan": REVERT},
        Change(Goal.REVERT),
    ),
    (
        "observe-would-migrate",
        {"mode": Mode.OBSERVE},
        Verdict(NodeState.PENDING, f"observe: {MIGRATE.reason}"),
    ),
    (
        "observe-already-migrated",
        {"mode": Mode.OBSERVE, "plan": NOTHING, "steady": NodeState.MIGRATED},
        Verdict(NodeState.MIGRATED, f"observe: {NOTHING.reason}"),
    ),
    (
        "observe-waiting-for-local-dns",
        {"mode": Mode.OBSERVE, "plan": WAITING},
        Verdict(NodeState.WAITING_FOR_LOCAL_DNS, f"observe: {WAITING.reason}"),
    ),
    (
        "observe-other-blocker-is-pending",
        {"mode": Mode.OBSERVE, "plan": UNKNOWN_PROXY},
        Verdict(NodeState.PENDING, f"observe: {UNKNOWN_PROXY.reason}"),
    ),
    (
        "nothing-to-do-migrated-counts-stale-pods",
        {"plan": NOTHING, "steady": NodeState.MIGRATED},
        Verdict(NodeState.MIGRATED, NOTHING.reason, stale_pods=StalePods.COUNT),
    ),
    (
        "nothing-to-do-not-needed",
        {"plan": NOTHING, "steady": NodeState.NOT_NEEDED},
        Verdict(NodeState.NOT_NEEDED, NOTHING.reason),
    ),
    ("blocked-by-local-dns-waits", {"plan": WAITING}, BLOCKED_WAITING),
    ("blocked-otherwise-fails-with-a-warning", {"plan": UNKNOWN_PROXY}, BLOCKED_FAILED),
    ("untrusted-kubelet-fails-with-the-reason", {"plan": UNTRUSTED}, UNTRUSTED_FAILED),
    (
        # never "reverted" (uninstall would then delete node-cache under the node)
        "untrusted-kubelet-fails-a-revert-too",
        {"mode": Mode.REVERT, "goal": Goal.REVERT, "plan": UNTRUSTED},
        UNTRUSTED_FAILED,
    ),
    (
        "failed-recently-waits-for-the-retry",
        {"journal": entry(NodeState.FAILED, age=600, error=ERROR)},
        Verdict(NodeState.FAILED, "last attempt failed; next try in 3000s", error=ERROR),
    ),
    (
        "failed-an-hour-ago-is-tried-again",
        {"journal": entry(NodeState.FAILED, age=HOUR, error=ERROR)},
        Change(Goal.MIGRATE),
    ),
    (
        "failed-with-a-restart-owed-is-not-held-back",
        {"plan": OWED, "journal": entry(NodeState.FAILED, pending=True, age=10)},
        Change(Goal.MIGRATE),
    ),
    (
        "failed-recently-but-blocked-reports-the-blocker",
        {"plan": UNKNOWN_PROXY, "journal": entry(NodeState.FAILED, age=10)},
        BLOCKED_FAILED,
    ),
    (
        "drift-back-to-the-original-migrates-again",
        {"journal": MIGRATED, "steady": NodeState.NOT_NEEDED, "drift": TO_ORIGINAL},
        Change(Goal.MIGRATE),
    ),
    (
        # once the local DNS answers, the migration is made (the Event was sent already)
        "drift-back-to-the-original-waits-for-the-local-dns",
        {"plan": WAITING, "journal": MIGRATED, "drift": TO_ORIGINAL},
        BLOCKED_WAITING,
    ),
    (
        "drift-to-another-value-is-left-alone",
        {"journal": MIGRATED, "drift": TO_OTHER},
        Verdict(NodeState.FAILED, changed("10.96.0.20"), error=changed("10.96.0.20")),
    ),
    (
        "drift-to-another-value-is-left-alone-whatever-blocks",
        {"plan": WAITING, "journal": MIGRATED, "drift": replace(TO_OTHER, announce=False)},
        Verdict(NodeState.FAILED, changed("10.96.0.20"), error=changed("10.96.0.20")),
    ),
    (
        "drift-to-no-cluster-dns-is-left-alone",
        {"plan": UNKNOWN_PROXY, "journal": MIGRATED, "drift": TO_NONE},
        Verdict(NodeState.FAILED, changed("no cluster DNS"), error=changed("no cluster DNS")),
    ),
    (
        "drift-observed-only",
        {"mode": Mode.OBSERVE, "journal": MIGRATED, "drift": TO_OTHER},
        Verdict(NodeState.PENDING, f"observe: {MIGRATE.reason}"),
    ),
    (
        "failsafe-revert-of-a-migrated-node",
        {"goal": Goal.REVERT, "plan": REVERT, "journal": entry(NodeState.MIGRATED, age=10)},
        Change(Goal.REVERT),
    ),
]


@pytest.mark.parametrize(
    ("over", "decision"), [row[1:] for row in PLAN_ROWS], ids=[row[0] for row in PLAN_ROWS]
)
def test_after_plan(over: dict[str, object], decision: Verdict | Change) -> None:
    assert policy.after_plan(planned(**over)) == decision


# ---------------------------------------------------------------- after a change
FACTS = Facts(
    ProxyMode("ipvs", "kube-ipvs0"),
    "other",
    LocalDns("169.254.20.10", True, "nodelocaldns", True, 0.001, "", ""),
    None,
    "",
    None,
)


def outcome(state: Result, plan: Plan = MIGRATE, **over: object) -> Outcome:
    return Outcome(state, plan, FACTS, **over)  # type: ignore[arg-type]


def failed(reason: str, event: EventReason, stage: Stage | None) -> Verdict:
    return Verdict(
        NodeState.FAILED,
        reason,
        error=ERROR,
        notice=Notice(event, ERROR, warning=True),
        failed_stage=stage,
    )


ROLLED_BACK = "kubelet did not come back; rolled back"
# (id, outcome, counts, verdict: None = detect again and report settled())
CHANGE_ROWS = [
    (
        "migrated",
        outcome(Result.MIGRATED, restarted=True),
        Counts(rewrite_ok=True, restart_ok=True),
        None,
    ),
    ("owed-restart-made", outcome(Result.MIGRATED, OWED, restarted=True), Counts(None, True), None),
    ("nothing-to-do-after-all", outcome(Result.NOT_NEEDED, NOTHING), Counts(), None),
    ("blocked-meanwhile", outcome(Result.BLOCKED, WAITING), Counts(), BLOCKED_WAITING),
    (
        "write-failed",
        outcome(Result.FAILED, error=ERROR, stage=Stage.WRITE),
        Counts(rewrite_ok=False),
        failed("the configuration could not be written", EventReason.BLOCKED, Stage.WRITE),
    ),
    (
        "verify-failed-rolled-back",
        outcome(Result.FAILED, restarted=True, rolled_back=True, error=ERROR, stage=Stage.VERIFY),
        Counts(rewrite_ok=True, restart_ok=False, rollback_ok=True),
        failed(ROLLED_BACK, EventReason.ROLLED_BACK, Stage.VERIFY),
    ),
    (
        "owed-restart-failed-rollback-failed-too",
        outcome(Result.FAILED, OWED, restarted=True, error=ERROR, stage=Stage.RESTART),
        Counts(restart_ok=False, rollback_ok=False),
        failed(ROLLED_BACK, EventReason.ROLLED_BACK, Stage.RESTART),
    ),
    (
        "failed-without-a-stage-counts-as-verify",
        outcome(Result.FAILED, restarted=True, error=ERROR),
        Counts(rewrite_ok=True, restart_ok=False, rollback_ok=False),
        failed(ROLLED_BACK, EventReason.ROLLED_BACK, Stage.VERIFY),
    ),
]


@pytest.mark.parametrize(
    ("attempt", "counts", "verdict"),
    [row[1:] for row in CHANGE_ROWS],
    ids=[row[0] for row in CHANGE_ROWS],
)
def test_after_change(attempt: Outcome, counts: Counts, verdict: Verdict | None) -> None:
    assert policy.after_change(attempt) == AfterChange(counts, verdict)


NOT_MADE_ROWS = [
    (
        "bad-kubelet-configuration",
        True,
        failed("bad kubelet configuration", EventReason.BLOCKED, None),
    ),
    (
        "journal-not-written",
        False,
        failed("the change could not be made", EventReason.BLOCKED, Stage.WRITE),
    ),
]


@pytest.mark.parametrize(
    ("bad_config", "verdict"),
    [row[1:] for row in NOT_MADE_ROWS],
    ids=[row[0] for row in NOT_MADE_ROWS],
)
def test_not_made(bad_config: bool, verdict: Verdict) -> None:
    assert policy.not_made(ERROR, bad_config=bad_config) == verdict


# (id, goal, outcome, steady state after the change, fail-safe active, verdict)
SETTLED_ROWS = [
    (
        "migrated-event-and-fresh-stale-count",
        Goal.MIGRATE,
        outcome(Result.MIGRATED, restarted=True),
        NodeState.MIGRATED,
        False,
        Verdict(
            NodeState.MIGRATED,
            MIGRATE.reason,
            notice=Notice(EventReason.MIGRATED, MIGRATE.reason),
            stale_pods=StalePods.RECOUNT,
        ),
    ),
    (
        "migrated-without-restart-no-event",
        Goal.MIGRATE,
        outcome(Result.MIGRATED, NOTHING),
        NodeState.MIGRATED,
        False,
        Verdict(NodeState.MIGRATED, NOTHING.reason, stale_pods=StalePods.RECOUNT),
    ),
    (
        "reverted",
        Goal.REVERT,
        outcome(Result.REVERTED, REVERT, restarted=True),
        NodeState.REVERTED,
        False,
        Verdict(
            NodeState.REVERTED, REVERT.reason, notice=Notice(EventReason.REVERTED, REVERT.reason)
        ),
    ),
    (
        "failsafe-revert-is-a-warning",
        Goal.REVERT,
        outcome(Result.REVERTED, REVERT, restarted=True),
        NodeState.REVERTED,
        True,
        Verdict(
            NodeState.REVERTED,
            REVERT.reason,
            notice=Notice(EventReason.FAILSAFE_REVERT, REVERT.reason, warning=True),
        ),
    ),
    (
        "not-needed",
        Goal.MIGRATE,
        outcome(Result.NOT_NEEDED, NOTHING),
        NodeState.NOT_NEEDED,
        False,
        Verdict(NodeState.NOT_NEEDED, NOTHING.reason),
    ),
]


@pytest.mark.parametrize(
    ("goal", "attempt", "steady", "failsafe", "verdict"),
    [row[1:] for row in SETTLED_ROWS],
    ids=[row[0] for row in SETTLED_ROWS],
)
def test_settled(
    goal: Goal, attempt: Outcome, steady: NodeState, failsafe: bool, verdict: Verdict
) -> None:
    assert policy.settled(goal, attempt, steady, failsafe) == verdict


# ---------------------------------------------------------------- between full passes
# (id, reported state, fail-safe active, probe the local DNS?)
PROBE_DUE_ROWS = [
    ("migrated-depends-on-it", NodeState.MIGRATED, False, True),
    ("waiting-for-it", NodeState.WAITING_FOR_LOCAL_DNS, False, True),
    ("failsafe-reverted-watches-recovery", NodeState.REVERTED, True, True),
    ("reverted", NodeState.REVERTED, False, False),
    ("failed", NodeState.FAILED, False, False),
    ("skipped", NodeState.SKIPPED, False, False),
]


@pytest.mark.parametrize(
    ("state", "failsafe", "due"),
    [row[1:] for row in PROBE_DUE_ROWS],
    ids=[row[0] for row in PROBE_DUE_ROWS],
)
def test_probe_due(state: NodeState, failsafe: bool, due: bool) -> None:
    assert policy.probe_due(state, failsafe) is due


# (id, reported state, local DNS healthy, fail-safe just flipped, next step)
AFTER_PROBE_ROWS = [
    ("failsafe-flipped", NodeState.MIGRATED, False, True, ProbeStep.RECONCILE),
    ("failsafe-recovered", NodeState.REVERTED, True, True, ProbeStep.RECONCILE),
    (
        "local-dns-answers-at-last",
        NodeState.WAITING_FOR_LOCAL_DNS,
        True,
        False,
        ProbeStep.RECONCILE,
    ),
    ("still-waiting", NodeState.WAITING_FOR_LOCAL_DNS, False, False, ProbeStep.NOTHING),
    ("migrated-counts-stale-pods", NodeState.MIGRATED, True, False, ProbeStep.STALE_PODS),
    ("migrated-dns-down-not-yet-flipped", NodeState.MIGRATED, False, False, ProbeStep.STALE_PODS),
    ("failsafe-reverted-not-yet-recovered", NodeState.REVERTED, True, False, ProbeStep.NOTHING),
]


@pytest.mark.parametrize(
    ("state", "healthy", "flipped", "step"),
    [row[1:] for row in AFTER_PROBE_ROWS],
    ids=[row[0] for row in AFTER_PROBE_ROWS],
)
def test_after_probe(state: NodeState, healthy: bool, flipped: bool, step: ProbeStep) -> None:
    assert policy.after_probe(state, healthy, flipped) is step


# ---------------------------------------------------------------- stale pods
def step(state: NodeState, at: float) -> dict[str, object]:
    return {"at": at, "state": state.value}


@pytest.mark.parametrize(
    ("history", "switched"),
    [
        ([], None),
        ([step(NodeState.FAILED, 1)], None),
        ([step(NodeState.MIGRATED, 1)], 1),
        # the fallback nameserver toggled (or a local IPv6 added): still local since 1
        ([step(NodeState.MIGRATED, 1), step(NodeState.MIGRATED, 5)], 1),
        # a toggle rolled back, then made: still local since 1
        ([step(NodeState.MIGRATED, 1), step(NodeState.FAILED, 3), step(NodeState.MIGRATED, 5)], 1),
        # a first migration rolled back, then made
        ([step(NodeState.FAILED, 1), step(NodeState.MIGRATED, 2)], 2),
        # reverted (fail-safe or mode), migrated again: the new switch counts
        (
            [step(NodeState.MIGRATED, 1), step(NodeState.REVERTED, 3), step(NodeState.MIGRATED, 5)],
            5,
        ),
    ],
)
def test_switched_at(history: list[dict[str, object]], switched: float | None) -> None:
    assert policy.switched_at(history) == switched
