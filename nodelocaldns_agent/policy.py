"""The daemon's policy: pure, over plain data, table-tested (``tests/test_policy.py``).

:class:`~nodelocaldns_agent.daemon.Daemon` gathers the inputs (the node's mode and
labels, the agent's journal, the fail-safe, the clock, the engine's plan and outcome),
calls these functions and performs what they return: the state to report and why, the
Event to send, the metrics to count, and whether to change the node, run a full pass or
count stale pods. Nothing here does I/O or keeps state.

Drift: platforms rewrite the file the agent edited (EKS nodeadm and GCE's configure-helper
at every boot, ``kubeadm upgrade node``, a kubespray re-run). :func:`drift` notices it at
the full passes (every resync, never more often), :func:`after_plan` migrates again
through the restart slot when the file holds the original value again, and leaves the
node alone when it holds anything else: a value that is neither the agent's nor the
original one was chosen by someone, and undoing it at every resync would fight them with
a kubelet restart each time. The fail-safe never looks like drift: it reverts with the
goal ``revert`` and the journal then says ``reverted``, and drift is only ever seen
on the way to ``migrate`` on a node the journal says is migrated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from nodelocaldns_agent.plan import Action, Blocker, Goal, Plan, on_local_dns
from nodelocaldns_agent.state import Mode, NodeState, Result, Stage


class EventReason(StrEnum):
    """The ``reason`` of the Events the agent sends on its Node."""

    MIGRATED = "Migrated"
    REVERTED = "Reverted"
    FAILSAFE_REVERT = "FailSafeRevert"
    ROLLED_BACK = "RolledBack"
    BLOCKED = "Blocked"
    DRIFTED = "Drifted"


class Drift(StrEnum):
    """What kubelet's cluster DNS was changed to on a node the agent had migrated (the
    ``to`` label of ``drifts_total``)."""

    #: the value from before the migration: a platform rewrote the file (migrate again)
    ORIGINAL = "original"
    #: a value that is neither the original nor the local DNS (left alone)
    OTHER = "other"
    #: no cluster DNS at all (left alone)
    NONE = "none"


class StalePods(StrEnum):
    """What to do about pods still on the old cluster DNS once the state is reported."""

    LEAVE = "leave"
    #: count them now, unless the last count found none
    COUNT = "count"
    #: forget the last count and count them now (kubelet has just been switched)
    RECOUNT = "recount"


class ProbeStep(StrEnum):
    """What follows a local DNS probe between two full passes."""

    NOTHING = "nothing"
    #: run a full pass now
    RECONCILE = "reconcile"
    #: count (and maybe evict) stale pods, at their own pace
    STALE_PODS = "stale-pods"


@dataclass(frozen=True)
class Notice:
    """An Event on the Node."""

    reason: EventReason
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Verdict:
    """What to report: the node's state, why, and what follows from it."""

    state: NodeState
    reason: str
    error: str = ""
    notice: Notice | None = None
    stale_pods: StalePods = StalePods.LEAVE
    #: the stage the pass failed at, for the reconcile metrics (None: it did not fail)
    failed_stage: Stage | None = None


@dataclass(frozen=True)
class Change:
    """Take a restart slot and reconcile the node towards ``goal``."""

    goal: Goal


@dataclass(frozen=True)
class Counts:
    """The metrics one change attempt counts (None: not counted)."""

    #: the kubelet configuration was to be written: whether the write succeeded
    rewrite_ok: bool | None = None
    #: kubelet was restarted: whether the change succeeded
    restart_ok: bool | None = None
    #: the change was rolled back: whether kubelet is healthy again
    rollback_ok: bool | None = None


@dataclass(frozen=True)
class AfterChange:
    """What a change attempt counts and reports."""

    counts: Counts
    #: what to report; None: detect the node again and report :func:`settled`
    verdict: Verdict | None


@dataclass(frozen=True)
class JournalEntry:
    """What the policy reads of the agent's journal on the node."""

    state: NodeState
    #: a write was made and not verified yet (a restart is owed)
    pending: bool
    #: wall-clock seconds of the entry's last change
    updated: float
    last_error: str
    #: the cluster DNS before the agent's first change
    original_cluster_dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Drifted:
    """kubelet's cluster DNS is no longer the local DNS on a node the agent migrated."""

    to: Drift
    #: the Event that tells it; its message is also the reason reported while left alone
    notice: Notice
    #: first seen now (the Node still says migrated): send the Event and count it
    announce: bool


@dataclass(frozen=True)
class Planned:
    """A full pass's inputs once the node has been detected and planned."""

    mode: Mode
    goal: Goal
    plan: Plan
    #: the node's state when nothing has to be done towards ``goal``
    steady: NodeState
    journal: JournalEntry | None
    #: wall-clock seconds
    now: float
    #: seconds a failed node waits before it is tried again
    retry_failed_after: float
    #: what :func:`drift` found (None: no drift)
    drift: Drifted | None = None


class Attempt(Protocol):
    """What the engine reports about one change (``engine.Outcome``)."""

    @property
    def state(self) -> Result: ...
    @property
    def plan(self) -> Plan: ...
    @property
    def restarted(self) -> bool: ...
    @property
    def rolled_back(self) -> bool: ...
    @property
    def error(self) -> str: ...
    @property
    def stage(self) -> Stage | None: ...


# ---------------------------------------------------------------- a full pass
def skip(mode: Mode, opted_out: bool, journal: JournalEntry | None, label: str) -> Verdict | None:
    """An opted-out node is left alone, except by a fleet-wide revert (before uninstall)
    when the journal says the agent changed it: that node is put back even though opted out
    since, or it would be left on a local DNS that goes away. None: go on with the pass."""
    if not opted_out:
        return None
    changed_by_us = journal is not None and journal.state in (NodeState.MIGRATED, NodeState.FAILED)
    if mode is Mode.REVERT and changed_by_us:
        return None
    return Verdict(NodeState.SKIPPED, f"label {label}=true")


def goal_for(mode: Mode, failsafe_active: bool) -> Goal:
    """Revert in revert mode and while the fail-safe is active; observe mode plans a
    migration (and never makes it), whatever the fail-safe says."""
    if mode is Mode.REVERT or (mode is Mode.MIGRATE and failsafe_active):
        return Goal.REVERT
    return Goal.MIGRATE


def drift(
    reported: NodeState,
    journal: JournalEntry | None,
    goal: Goal,
    cluster_dns: tuple[str, ...] | None,
    local: tuple[str, ...],
    where: str,
) -> Drifted | None:
    """Drift: on the way to ``migrate``, the journal says the agent migrated the node (no
    change in flight), and the configuration on disk (``cluster_dns``, None: unreadable)
    no longer holds what a migration writes (``local``: one address per IP family, alone or
    followed by the original as the fallback nameserver, :func:`~.plan.on_local_dns`; a
    node migrated with the other fallback setting is no drift: the plan converges it to the
    configured one through the restart slot). Announced once,
    while the Node still says ``migrated``; after that the state reported says what became
    of it."""
    if (
        goal is not Goal.MIGRATE
        or journal is None
        or journal.state is not NodeState.MIGRATED
        or journal.pending
        or cluster_dns is None
        or on_local_dns(cluster_dns, local, journal.original_cluster_dns)
    ):
        return None
    agents = ",".join(local)
    original = ",".join(journal.original_cluster_dns) or "(none)"
    if cluster_dns == journal.original_cluster_dns:
        to = Drift.ORIGINAL
        message = (
            f"{where}: kubelet's cluster DNS is the original {original} again, not {agents} as "
            "the agent set it: something rewrote the file (a platform's boot or upgrade "
            "step); migrating it again"
        )
    else:
        to = Drift.OTHER if cluster_dns else Drift.NONE
        now = ",".join(cluster_dns) or "no cluster DNS"
        message = (
            f"{where}: kubelet's cluster DNS was changed to {now} after the agent set {agents} "
            f"(original {original}): someone else's choice, left alone. To hand the node back, "
            f"put {original} back, or run 'nodelocaldns-agent migrate --once' on the node "
            f"(it keeps {now} as the original)"
        )
    notice = Notice(EventReason.DRIFTED, message, warning=to is not Drift.ORIGINAL)
    return Drifted(to, notice, announce=reported is NodeState.MIGRATED)


def after_plan(p: Planned) -> Verdict | Change:
    """Report what observe mode would do, a node with nothing to do, a node someone else
    moved off the local DNS, a blocked node or a failed node that is not due for another
    try; else change the node."""
    plan = p.plan
    if p.mode is Mode.OBSERVE:
        return Verdict(_observed(plan, p.steady), f"observe: {plan.reason}")
    if plan.action is Action.NONE:
        return Verdict(p.steady, plan.reason, stale_pods=_stale_if_migrated(p.steady))
    if p.drift is not None and p.drift.to is not Drift.ORIGINAL:
        message = p.drift.notice.message
        return Verdict(NodeState.FAILED, message, error=message)
    if plan.action is Action.BLOCKED:
        return blocked(plan)
    entry = p.journal
    if entry is not None and entry.state is NodeState.FAILED and not entry.pending:
        left = p.retry_failed_after - (p.now - entry.updated)
        if left > 0:
            return Verdict(
                NodeState.FAILED,
                f"last attempt failed; next try in {left:.0f}s",
                error=entry.last_error,
            )
    return Change(p.goal)


def _observed(plan: Plan, steady: NodeState) -> NodeState:
    if plan.action is Action.NONE:
        return steady
    if plan.blocker is Blocker.LOCAL_DNS:
        return NodeState.WAITING_FOR_LOCAL_DNS
    return NodeState.PENDING


def _stale_if_migrated(state: NodeState, how: StalePods = StalePods.COUNT) -> StalePods:
    """Stale pods exist only on a migrated node."""
    return how if state is NodeState.MIGRATED else StalePods.LEAVE


def blocked(plan: Plan) -> Verdict:
    """A node waiting for its local DNS is no failure (it migrates once the DNS answers);
    any other blocker needs a human and is reported as failed, with a warning."""
    waiting = plan.blocker is Blocker.LOCAL_DNS
    return Verdict(
        NodeState.WAITING_FOR_LOCAL_DNS if waiting else NodeState.FAILED,
        plan.reason,
        error="" if waiting else plan.reason,
        notice=Notice(EventReason.BLOCKED, plan.reason, warning=not waiting),
    )


# ---------------------------------------------------------------- after a change
def after_change(outcome: Attempt) -> AfterChange:
    """The metrics of a change, and the failure or blocker to report (a success is
    reported by :func:`settled`, on the node as it is after the change)."""
    rewrite_ok = outcome.stage is not Stage.WRITE if outcome.plan.write else None
    restart_ok = outcome.state is not Result.FAILED if outcome.restarted else None
    if outcome.state is Result.FAILED:
        if outcome.stage is Stage.WRITE:
            return AfterChange(
                Counts(rewrite_ok, restart_ok),
                _failed(
                    "the configuration could not be written",
                    outcome.error,
                    EventReason.BLOCKED,
                    Stage.WRITE,
                ),
            )
        return AfterChange(
            Counts(rewrite_ok, restart_ok, rollback_ok=outcome.rolled_back),
            _failed(
                "kubelet did not come back; rolled back",
                outcome.error,
                EventReason.ROLLED_BACK,
                outcome.stage or Stage.VERIFY,
            ),
        )
    counts = Counts(rewrite_ok, restart_ok)
    if outcome.state is Result.BLOCKED:
        return AfterChange(counts, blocked(outcome.plan))
    return AfterChange(counts, None)


def not_made(error: str, *, bad_config: bool) -> Verdict:
    """The engine refused the change before changing anything: the kubelet configuration
    is bad (a ConfigError; the pass does not count as failed), or e.g. the journal could not
    be written (a failed write)."""
    if bad_config:
        return _failed("bad kubelet configuration", error, EventReason.BLOCKED, None)
    return _failed("the change could not be made", error, EventReason.BLOCKED, Stage.WRITE)


def settled(goal: Goal, outcome: Attempt, steady: NodeState, failsafe_active: bool) -> Verdict:
    """After a successful change: the state the node settled in, an Event when kubelet was
    restarted (a fail-safe revert is a warning), and a fresh count of stale pods."""
    reason = outcome.plan.reason
    notice = None
    if outcome.restarted:
        if goal is Goal.MIGRATE:
            notice = Notice(EventReason.MIGRATED, reason)
        elif failsafe_active:
            notice = Notice(EventReason.FAILSAFE_REVERT, reason, warning=True)
        else:
            notice = Notice(EventReason.REVERTED, reason)
    return Verdict(
        steady, reason, notice=notice, stale_pods=_stale_if_migrated(steady, StalePods.RECOUNT)
    )


def _failed(reason: str, error: str, event: EventReason, stage: Stage | None) -> Verdict:
    return Verdict(
        NodeState.FAILED,
        reason,
        error=error,
        notice=Notice(event, error, warning=True),
        failed_stage=stage,
    )


# ---------------------------------------------------------------- between full passes
def probe_due(state: NodeState, failsafe_active: bool) -> bool:
    """The local DNS is probed only on a node that depends on it (migrated), waits for
    it, or was reverted by the fail-safe (which watches for its recovery)."""
    return state in (NodeState.MIGRATED, NodeState.WAITING_FOR_LOCAL_DNS) or failsafe_active


def switched_at(history: Sequence[Mapping[str, Any]]) -> float | None:
    """When kubelet last moved from the original to the local DNS, from the journal's
    history (oldest first): the first ``migrated`` entry of the latest stretch of them.
    A later ``migrated`` entry of the same stretch is a change between local forms (the
    fallback nameserver turned on or off, a local IPv6 address added), and a ``failed``
    one a change rolled back to what was there: pods started in between use the local
    DNS already and are not stale. None: never migrated."""
    first = None
    for entry in reversed(history):
        state = entry.get("state")
        if state == NodeState.MIGRATED:
            first = entry.get("at")
        elif state != NodeState.FAILED:
            break
    return first if isinstance(first, int | float) else None


def after_probe(state: NodeState, healthy: bool, flipped: bool) -> ProbeStep:
    """A fail-safe flip, or the local DNS answering a node that waits for it, calls for a
    full pass now; a migrated node counts its stale pods."""
    if flipped or (state is NodeState.WAITING_FOR_LOCAL_DNS and healthy):
        return ProbeStep.RECONCILE
    if state is NodeState.MIGRATED:
        return ProbeStep.STALE_PODS
    return ProbeStep.NOTHING
