"""``run``: the agent's loop on one node, forever.

Reconciles on start (so a newly joined node needs no human step), on every relevant change
of its own Node (a field-selected watch, resumed from the last resourceVersion, re-listed
on 410), and on a slow resync for host drift. Between full passes it only probes the local
DNS, which feeds the fail-safe and lets a node waiting for the local DNS migrate as soon as
it answers. Kubelet restarts happen only while holding a cluster-wide restart slot.

What to do and what to report is decided by :mod:`nodelocaldns_agent.policy` (pure,
table-tested); the daemon gathers its inputs and performs what it returns.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from nodelocaldns_agent import policy
from nodelocaldns_agent.engine import Facts, NodeEngine, Outcome
from nodelocaldns_agent.errors import AgentError, ConfigError, TransientError
from nodelocaldns_agent.host.files import Record
from nodelocaldns_agent.host.probes import Clock
from nodelocaldns_agent.kube.api import ApiError
from nodelocaldns_agent.kube.lock import RestartLock
from nodelocaldns_agent.kube.status import NodeStatus
from nodelocaldns_agent.kube.types import NodeView, PodView, WatchEvent
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.metrics import Health, Metrics
from nodelocaldns_agent.plan import Goal, Plan
from nodelocaldns_agent.settings import RunSettings
from nodelocaldns_agent.stalepods import StalePods
from nodelocaldns_agent.state import (
    DETAIL_ANNOTATION,
    MODE_LABEL,
    STATE_ANNOTATION,
    Detail,
    FailSafe,
    NodeState,
    Stage,
    effective_mode,
    opted_out,
)

log = logging.getLogger(__name__)
#: the ``since`` of the detail annotation, as :meth:`Daemon._report` writes it
SINCE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
#: a stale-pod count taken over from the Node is believed up to this (a node's pods)
MAX_STALE_PODS = 10_000
#: seconds before a pass retries after an API error (doubles up to MAX_BACKOFF, jittered)
MIN_BACKOFF, MAX_BACKOFF = 1.0, 60.0


@dataclass
class Backoff:
    """Jittered exponential back-off: ``MIN_BACKOFF`` doubling up to ``MAX_BACKOFF``,
    each delay times a random factor from 0.5 to 1.5."""

    rng: Callable[[], float]
    current: float = MIN_BACKOFF

    def next(self, at_least: float = 0.0) -> float:
        delay = max(at_least, self.current) * (0.5 + self.rng())
        self.current = min(self.current * 2, MAX_BACKOFF)
        return delay

    def reset(self) -> None:
        self.current = MIN_BACKOFF


class NodeApi(Protocol):
    """The API calls the daemon makes (``KubeApi`` in production); ``ApiError`` on failure."""

    def list_own_node(self, name: str) -> tuple[NodeView, str]: ...
    def watch_node(self, name: str, rv: str, timeout_seconds: int) -> Iterator[WatchEvent]: ...
    def list_pods_on_node(self, node: str) -> list[PodView]: ...
    def evict_pod(self, namespace: str, name: str) -> None: ...


def journal_entry(record: Record | None, where: str) -> policy.JournalEntry | None:
    """The policy's view of the journal (its JSON keeps plain strings)."""
    if record is None:
        return None
    try:
        state = NodeState(record.state)
    except ValueError as exc:
        raise ConfigError(
            f"{where}: the agent's journal holds the unknown state {record.state!r}; "
            f"expected one of {', '.join(NodeState)}"
        ) from exc
    return policy.JournalEntry(
        state,
        record.pending is not None,
        record.updated,
        record.last_error,
        tuple(record.original_cluster_dns),
    )


@dataclass
class Daemon:
    settings: RunSettings
    engine: NodeEngine
    api: NodeApi
    lock: RestartLock
    status: NodeStatus
    metrics: Metrics
    health: Health
    clock: Clock
    stop: threading.Event
    rng: Callable[[], float] = random.random
    node: NodeView | None = None
    failsafe: FailSafe = field(init=False)
    _wake: threading.Event = field(default_factory=threading.Event)
    _next_full: float = 0.0
    _retry_at: float | None = None
    _backoff: Backoff = field(init=False)
    #: where the Node watch starts: the first list's resourceVersion
    _watch_from: str = ""
    _since: str = ""
    stale: StalePods = field(init=False)
    _detail: Detail = field(default_factory=Detail)
    #: stage where the last full pass's change failed (for the reconcile metrics)
    _failed_stage: Stage | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.failsafe = FailSafe(
            s.failsafe_after, s.recover_after, s.failsafe_max_flips_per_hour, enabled=s.failsafe
        )
        self._backoff = Backoff(self.rng)
        self.stale = StalePods(
            self.api,
            s.node_name,
            self.clock,
            evict=s.restart_stale_pods,
            evict_interval=s.stale_pod_interval,
            count_interval=s.resync_interval,
            on_count=self._stale_counted,
        )

    # ---------------------------------------------------------------- loop
    @property
    def current(self) -> NodeView:
        """The latest view of this node (read before the loop starts)."""
        if self.node is None:
            raise AgentError("the daemon has not read its Node yet")
        return self.node

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> int:
        self._first_node()
        if self.node is None:
            return 0
        watcher = threading.Thread(target=self._watch_loop, name="node-watch", daemon=True)
        watcher.start()
        try:
            while not self.stop.is_set():
                self.health.beat()
                self.tick()
                self._wake.wait(timeout=self._sleep_for())
        finally:
            self.lock.release()
            event(log, "stopped")
        return 0

    def tick(self) -> None:
        """One loop iteration: a full pass when due, else a local DNS probe."""
        now = self.clock.monotonic()
        due = (
            self._wake.is_set()
            or now >= self._next_full
            or (self._retry_at is not None and now >= self._retry_at)
        )
        self._wake.clear()
        start = now
        try:
            if due:
                self._retry_at = None
                self._next_full = now + self.settings.resync_interval
                self._failed_stage = None
                self.full_pass()
                self.metrics.reconciled(
                    self.clock.monotonic() - start, error_stage=self._failed_stage
                )
                self.health.mark_ready()
            else:
                self.probe_pass()
            self.status.flush()
            self._backoff.reset()
        except TransientError as exc:
            stage = Stage.API if isinstance(exc, ApiError) else Stage.REPORT
            self._retry_later(start, stage, str(exc), exc.delay)
        except AgentError as exc:
            # Bad input on the host (e.g. an unreadable kubelet config or journal): report
            # it and look again at the next resync; restarting the agent would not help.
            self._retry_later(start, Stage.DETECT, str(exc), self.settings.resync_interval)
            with contextlib.suppress(AgentError):
                self._report(NodeState.FAILED, reason="cannot analyse this node", error=str(exc))
        except Exception as exc:  # a bug: keep the loop (and the fail-safe) alive, loudly
            log.exception("unexpected error in a reconcile pass")
            self._retry_later(start, Stage.PLAN, f"{type(exc).__name__}: {exc}", MAX_BACKOFF)

    def _retry_later(self, start: float, stage: Stage, error: str, delay: float) -> None:
        self.metrics.reconciled(self.clock.monotonic() - start, error_stage=stage)
        delay = self._backoff.next(at_least=delay)
        self._retry_at = self.clock.monotonic() + delay
        event(log, "pass failed; retrying", logging.WARNING, error=error, retry_in=round(delay, 1))

    def _sleep_for(self) -> float:
        now = self.clock.monotonic()
        until = [self._next_full, now + self.settings.probe_interval]
        if self._retry_at is not None:
            until.append(self._retry_at)
        return max(min(until) - now, 0.05)

    def _first_node(self) -> None:
        """Read the Node by a list, whose resourceVersion the watch starts from: the
        object's own is usually older than the API server's watch cache window (75 s of
        events), so a watch from it would start with a 410 and a second list."""
        while not self.stop.is_set():
            try:
                self.node, self._watch_from = self.api.list_own_node(self.settings.node_name)
                shown = self.status.adopt(self.node)
                if shown is not None:
                    self._resume(shown)
                return
            except ApiError as exc:
                self._wait_after(exc, "cannot read own Node yet", self._backoff)
                self.health.beat()

    def _resume(self, shown: Detail) -> None:
        """Carry on from what the Node shows after an agent restart: since when its state
        holds and the last stale-pod count (so the first report changes nothing). Values
        that are not what this agent writes are dropped (they are then written afresh)."""
        if SINCE.fullmatch(shown.since):
            self._since = shown.since
        if isinstance(shown.stale_pods, int) and 0 <= shown.stale_pods <= MAX_STALE_PODS:
            self.stale.count = shown.stale_pods

    def _wait_after(self, exc: ApiError, what: str, backoff: Backoff) -> None:
        delay = backoff.next()
        event(log, what, logging.WARNING, error=str(exc), retry_in=round(delay, 1))
        self.stop.wait(delay)

    def _watch_loop(self) -> None:
        rv = self._watch_from
        backoff = Backoff(self.rng)
        timeout = max(int(self.settings.resync_interval), 10)
        while not self.stop.is_set():
            try:
                for ev in self.api.watch_node(self.settings.node_name, rv, timeout):
                    rv = ev.node.resource_version or rv
                    if ev.type in ("ADDED", "MODIFIED"):
                        self._node_changed(ev.node)
                backoff.reset()
            except ApiError as exc:
                if exc.status == 410:
                    try:
                        # Resume from the list's resourceVersion, not the object's (which
                        # may be as old as the expired one).
                        node, rv = self.api.list_own_node(self.settings.node_name)
                        self._node_changed(node)
                        continue
                    except ApiError as again:
                        exc = again
                self._wait_after(exc, "node watch failed; retrying", backoff)

    def _node_changed(self, node: NodeView) -> None:
        old, self.node = self.node, node
        keys = (self.settings.opt_out_label, MODE_LABEL)
        relevant = old is None or any(old.labels.get(k) != node.labels.get(k) for k in keys)
        ours = (node.annotations.get(STATE_ANNOTATION), node.annotations.get(DETAIL_ANNOTATION))
        if self.status.written is not None and ours != self.status.written:
            # Someone removed or changed our keys: write them again.
            self.status.written = None
            relevant = True
        if relevant:
            self._wake.set()

    # ---------------------------------------------------------------- passes
    def full_pass(self) -> None:
        node = self.current
        mode = effective_mode(self.settings.mode, node.labels)
        self._detail.mode = mode
        label = self.settings.opt_out_label
        out = opted_out(node.labels, label)
        # Only an opted-out node needs the journal before detection.
        journal = self._journal(self.engine.journal.load()) if out else None
        skipped = policy.skip(mode, out, journal, label)
        if skipped is not None:
            self._perform(skipped)
            return
        facts = self.engine.facts()
        self._observe(facts)
        goal = policy.goal_for(mode, self.failsafe.active)
        plan = self.engine.plan(facts, goal)
        journal = self._journal(facts.record)
        drift = self._drift(facts, goal, journal)
        step = policy.after_plan(
            policy.Planned(
                mode=mode,
                goal=goal,
                plan=plan,
                steady=self.engine.steady_state(facts, goal),
                journal=journal,
                now=self.clock.time(),
                retry_failed_after=self.settings.retry_failed_after,
                drift=drift,
            )
        )
        if isinstance(step, policy.Change):
            self._change(step.goal, plan)
        else:
            self._perform(step)

    def _drift(
        self, facts: Facts, goal: Goal, journal: policy.JournalEntry | None
    ) -> policy.Drifted | None:
        """Drift of the file the agent edited; its Event and count when first seen."""
        kc = facts.kubelet
        drift = policy.drift(
            self.status.state,
            journal,
            goal,
            kc.cluster_dns if kc else None,
            self.engine.local_addresses,
            kc.source if kc else "",
        )
        if drift is not None and drift.announce:
            notice = drift.notice
            self.status.emit(self.current, notice.reason, notice.message, warning=notice.warning)
            self.metrics.drifted(drift.to)  # after the Event: a failed send is retried whole
            event(log, "drift", logging.WARNING, to=drift.to.value, text=notice.message)
        return drift

    def _journal(self, record: Record | None) -> policy.JournalEntry | None:
        return journal_entry(record, self.engine.journal.path)

    def _change(self, goal: Goal, plan: Plan) -> None:
        waited_from = self.clock.monotonic()
        waited = False

        def on_wait() -> None:
            nonlocal waited
            waited = True
            self._report(NodeState.WAITING_FOR_LOCK, reason="another node holds every restart slot")
            self.status.flush()

        if not self.lock.acquire(self.stop, self.settings.lock_wait, on_wait):
            self.metrics.lease_waited(self.clock.monotonic() - waited_from)
            self._retry_at = self.clock.monotonic() + 1.0 + self.rng() * 2
            return
        if waited:
            self.metrics.lease_waited(self.clock.monotonic() - waited_from)
        self.metrics.lease_acquired()
        try:
            outcome = self._change_holding_slot(goal, plan)
        finally:
            self.lock.release()
        if outcome is not None:
            self._record_outcome(goal, outcome)

    def _change_holding_slot(self, goal: Goal, plan: Plan) -> Outcome | None:
        """Report, then change and verify while the slot is renewed; the slot is given back
        by the caller as soon as kubelet is verified (or rolled back), before the outcome
        is reported, so the next node's restart does not wait for our API calls."""
        renewing = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(renewing,), daemon=True, name="lease-renew"
        )
        renewer.start()
        try:
            # API errors here end the pass before anything changed (retried later).
            self._report(goal.changing, reason=plan.reason)
            self.status.flush()
            # Start the change only with a fresh slot: a holder that could not renew for
            # a whole lease duration may already have been replaced.
            self.lock.ensure_fresh()
            try:
                return self.engine.reconcile(goal)
            except AgentError as exc:
                # bad kubelet configuration, or e.g. the journal could not be written:
                # nothing was changed
                bad_config = isinstance(exc, ConfigError)
                self._perform(policy.not_made(str(exc), bad_config=bad_config))
        finally:
            renewing.set()
            renewer.join(timeout=5)
        return None

    def _renew(self, done: threading.Event) -> None:
        period = self.settings.lease_duration / 3
        while not done.wait(period):
            try:
                self.lock.renew()
            except AgentError as exc:
                event(log, "lease renewal failed", logging.WARNING, error=str(exc))

    def _record_outcome(self, goal: Goal, outcome: Outcome) -> None:
        after = policy.after_change(outcome)
        counts, m = after.counts, self.metrics
        if counts.rewrite_ok is not None:
            m.config_rewritten(ok=counts.rewrite_ok)
        if counts.restart_ok is not None:
            m.kubelet_restarted(ok=counts.restart_ok)
        if counts.rollback_ok is not None:
            m.rolled_back(ok=counts.rollback_ok)
        verdict = after.verdict
        if verdict is None:  # changed: report the node as it is now
            facts = self.engine.facts()
            self._observe(facts)
            steady = self.engine.steady_state(facts, goal)
            verdict = policy.settled(goal, outcome, steady, self.failsafe.active)
        self._perform(verdict)

    def probe_pass(self) -> None:
        """Between full passes: probe the local DNS when the node depends on or waits for it."""
        state = self.status.state
        if not policy.probe_due(state, self.failsafe.active):
            return
        local = self.engine.probe_local_dns()
        self.metrics.local_dns_checked(
            bound=local.bound,
            healthy=local.healthy,
            reason=local.reason,
            latency_seconds=local.latency_seconds,
        )
        flipped = self._feed_failsafe(local.healthy, local.error)
        step = policy.after_probe(state, local.healthy, flipped)
        if step is policy.ProbeStep.RECONCILE:
            self.full_pass()
        elif step is policy.ProbeStep.STALE_PODS:
            self._stale_pass()

    def _feed_failsafe(self, healthy: bool, error: str) -> bool:
        """One local DNS observation for the fail-safe; True when it just flipped."""
        flip = self.failsafe.observe(
            self.clock.monotonic(), healthy, self.status.state is NodeState.MIGRATED
        )
        if flip == "revert":
            self.metrics.failsafe_reverted()
            event(
                log, "fail-safe: local DNS down too long; reverting", logging.WARNING, error=error
            )
        elif flip == "recover":
            event(log, "fail-safe: local DNS healthy again; migrating")
        self._detail.failsafe = self.failsafe.active
        return flip is not None

    # ---------------------------------------------------------------- stale pods
    def _stale_pass(self, force: bool = False) -> None:
        """Count (and optionally evict) pods that still use the old cluster DNS."""
        if self.status.state is not NodeState.MIGRATED:
            return
        record = self.engine.journal.load()
        self.stale.run(policy.switched_at(record.history if record else []), force=force)

    def _stale_counted(self, count: int) -> None:
        self.metrics.set_stale_pods(count)
        self._report(self.status.state, reason=self._detail.reason)

    # ---------------------------------------------------------------- reporting
    def _observe(self, facts: Facts) -> None:
        m = self.metrics
        m.set_proxy_mode(facts.proxy.mode)
        m.set_network_mode(facts.network_mode)
        local = facts.local_dns
        m.local_dns_checked(
            bound=local.bound,
            healthy=local.healthy,
            reason=local.reason,
            latency_seconds=local.latency_seconds,
        )
        self._feed_failsafe(local.healthy, local.error)
        kc = facts.kubelet
        original = facts.record.original_cluster_dns if facts.record else None
        m.set_kubelet_cluster_dns(
            kc.cluster_dns if kc else None, local=self.engine.local_addresses, original=original
        )
        d = self._detail
        d.source = kc.source if kc else ""
        d.format = kc.format if kc else ""
        d.cluster_dns = list(kc.cluster_dns) if kc else []
        d.original_cluster_dns = list(original or [])

    def _perform(self, verdict: policy.Verdict) -> None:
        """Report what the policy decided, send its Event, count stale pods if it says so."""
        if verdict.failed_stage is not None:
            self._failed_stage = verdict.failed_stage
        self._report(verdict.state, reason=verdict.reason, error=verdict.error)
        notice = verdict.notice
        if notice is not None:
            self.status.emit(self.current, notice.reason, notice.message, warning=notice.warning)
        if verdict.stale_pods is policy.StalePods.RECOUNT:
            self.stale.forget()
        if verdict.stale_pods is not policy.StalePods.LEAVE:
            self._stale_pass(force=True)

    def _report(self, state: NodeState, *, reason: str, error: str = "") -> None:
        if state != self.status.state or not self._since:
            self._since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock.time()))
        d = self._detail
        d.since = self._since
        d.reason = reason[:300]
        d.error = error[:500]
        d.stale_pods = self.stale.count
        self.metrics.set_state(state)
        self.status.set(state, Detail(**vars(d)))
