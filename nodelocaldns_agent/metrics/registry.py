"""The agent's metric set (:class:`Metrics`) on an injected registry, every series
created up front from the values of :mod:`.labels`, :class:`NodeState`, :class:`Stage` and
:class:`~nodelocaldns_agent.policy.Drift`."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nodelocaldns_agent.metrics.labels import (
    API_ERROR_CLASSES,
    BUILD_LABELS,
    CLUSTER_DNS_KINDS,
    NETWORK_MODES,
    PROBE_FAILURE_REASONS,
    PROXY_MODES,
    api_error_class,
    cluster_dns_kind,
    network_mode_label,
    probe_failure_label,
    proxy_mode_label,
)
from nodelocaldns_agent.policy import Drift
from nodelocaldns_agent.state import NodeState, Stage

PREFIX = "nodelocaldns_agent_"

#: A node-local cache answers from memory in well under a millisecond; a miss forwarded
#: upstream takes a few ms; the probe gives up after --probe-timeout (2 s by default).
PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
#: A pass without a change takes milliseconds (two local probes); one with a kubelet
#: restart, its verification and possibly a rollback takes up to several minutes.
RECONCILE_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)


class Metrics:
    """The agent's metrics. The daemon calls one small method per event.

    ``clock`` returns wall-clock seconds (for the ``_timestamp_seconds`` gauges).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        p, r = PREFIX, registry

        self.build_info = Gauge(
            p + "build_info",
            "Always 1; labels carry the agent and Python versions.",
            list(BUILD_LABELS),
            registry=r,
        )
        # -- migration state
        self.migration_state = Gauge(
            p + "migration_state",
            "1 for the node's current migration state, 0 for every other state.",
            ["state"],
            registry=r,
        )
        self.last_state_change = Gauge(
            p + "last_state_change_timestamp_seconds",
            "Unix time of the last change of migration_state (the agent's start until then).",
            registry=r,
        )
        # -- local DNS (node-cache)
        self.local_dns_bound = Gauge(
            p + "local_dns_bound",
            "1 when the local DNS address is bound on a node interface.",
            registry=r,
        )
        self.local_dns_healthy = Gauge(
            p + "local_dns_healthy",
            "1 when the last probe of the local DNS got an answer.",
            registry=r,
        )
        self.probe_duration = Histogram(
            p + "local_dns_probe_duration_seconds",
            "Time for the local DNS to answer a probe (probes that got a reply).",
            buckets=PROBE_BUCKETS,
            registry=r,
        )
        self.probes = Counter(
            p + "local_dns_probes_total",
            "Checks of the local DNS (an unbound address counts as a failed check).",
            registry=r,
        )
        self.probe_failures = Counter(
            p + "local_dns_probe_failures_total",
            "Checks of the local DNS that failed, by reason.",
            ["reason"],
            registry=r,
        )
        # -- host changes
        self.config_rewrites = Counter(
            p + "config_rewrites_total",
            "Writes of the kubelet configuration.",
            registry=r,
        )
        self.config_rewrite_failures = Counter(
            p + "config_rewrite_failures_total",
            "Writes of the kubelet configuration that failed.",
            registry=r,
        )
        self.kubelet_restarts = Counter(
            p + "kubelet_restarts_total",
            "kubelet restarts by the agent (each followed by a health check).",
            registry=r,
        )
        self.kubelet_restart_failures = Counter(
            p + "kubelet_restart_failures_total",
            "kubelet restarts after which kubelet did not come back healthy in time.",
            registry=r,
        )
        self.rollbacks = Counter(
            p + "rollbacks_total",
            "Rollbacks to the previous kubelet configuration after a failed change.",
            registry=r,
        )
        self.rollback_failures = Counter(
            p + "rollback_failures_total",
            "Rollbacks after which kubelet was still not healthy.",
            registry=r,
        )
        self.failsafe_reverts = Counter(
            p + "failsafe_reverts_total",
            "Reverts to the original cluster DNS because the local DNS failed on a migrated node.",
            registry=r,
        )
        self.drifts = Counter(
            p + "drifts_total",
            "Times kubelet's cluster DNS was found changed away from the local DNS on a node "
            "the agent had migrated, by what it was changed to (original: migrated again; "
            "other, none: left alone).",
            ["to"],
            registry=r,
        )
        # -- what the node is
        self.kube_proxy_mode = Gauge(
            p + "kube_proxy_mode",
            "1 for the detected kube-proxy mode, 0 for the others.",
            ["mode"],
            registry=r,
        )
        self.network_mode = Gauge(
            p + "network_mode_info",
            "1 for the detected network mode (any other CNI is 'other'), 0 for the others.",
            ["mode"],
            registry=r,
        )
        self.kubelet_cluster_dns = Gauge(
            p + "kubelet_cluster_dns",
            "1 for what kubelet's configured cluster DNS points at; all 0 when unknown.",
            ["kind"],
            registry=r,
        )
        self.stale_pods = Gauge(
            p + "stale_pods",
            "Pods on this node whose resolv.conf still names the old cluster DNS.",
            registry=r,
        )
        # -- the cluster-wide lock
        self.lease_waits = Counter(
            p + "lease_waits_total",
            "Attempts to take the migration lease that found it held by another node.",
            registry=r,
        )
        self.lease_wait_seconds = Counter(
            p + "lease_wait_seconds_total",
            "Seconds spent waiting for the migration lease.",
            registry=r,
        )
        self.lease_acquisitions = Counter(
            p + "lease_acquisitions_total",
            "Times the migration lease was taken.",
            registry=r,
        )
        # -- the loop
        self.reconciles = Counter(
            p + "reconciles_total",
            "Reconcile passes, successful or not.",
            registry=r,
        )
        self.reconcile_errors = Counter(
            p + "reconcile_errors_total",
            "Reconcile passes that failed, by the stage that failed.",
            ["stage"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            p + "reconcile_duration_seconds",
            "Duration of one reconcile pass.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            p + "last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile pass without error (0: none yet).",
            registry=r,
        )
        # -- Kubernetes API
        self.api_requests = Counter(
            p + "api_requests_total",
            "Requests to the Kubernetes API.",
            registry=r,
        )
        self.api_errors = Counter(
            p + "api_errors_total",
            "Kubernetes API requests that failed, by status class (network: no answer).",
            ["code_class"],
            registry=r,
        )

        # Every series up front (the one-hot gauges below, by setting their first value).
        self.build_info.labels(version=version, python=platform.python_version()).set(1)
        for kind in CLUSTER_DNS_KINDS:
            self.kubelet_cluster_dns.labels(kind=kind)
        for reason in PROBE_FAILURE_REASONS:
            self.probe_failures.labels(reason=reason)
        for stage in Stage:
            self.reconcile_errors.labels(stage=stage)
        for drift in Drift:
            self.drifts.labels(to=drift)
        for code_class in API_ERROR_CLASSES:
            self.api_errors.labels(code_class=code_class)
        self._state: NodeState | None = None
        self.set_state(NodeState.PENDING)
        self.set_proxy_mode("unknown")
        self.set_network_mode("unknown")

    # ------------------------------------------------------------ state
    def set_state(self, state: NodeState) -> None:
        """Move to ``state``; the timestamp moves only on a change. A string that is not a
        NodeState value raises ValueError (no series outside the set)."""
        state = NodeState(state)
        with self._lock:
            if state == self._state:
                return
            _one_hot(self.migration_state, "state", NodeState, state)
            self._state = state
            self.last_state_change.set(self._clock())

    # ------------------------------------------------------------ facts
    def set_proxy_mode(self, mode: str) -> None:
        _one_hot(self.kube_proxy_mode, "mode", PROXY_MODES, proxy_mode_label(mode))

    def set_network_mode(self, mode: str) -> None:
        _one_hot(self.network_mode, "mode", NETWORK_MODES, network_mode_label(mode))

    def set_kubelet_cluster_dns(
        self,
        cluster_dns: Sequence[str] | None,
        *,
        local: tuple[str, ...],
        original: Sequence[str] | None,
    ) -> None:
        """What kubelet's configuration points at; ``cluster_dns=None``: could not be read
        (every ``kind`` series goes to 0)."""
        kind = (
            None
            if cluster_dns is None
            else cluster_dns_kind(cluster_dns, local=local, original=original)
        )
        _one_hot(self.kubelet_cluster_dns, "kind", CLUSTER_DNS_KINDS, kind)

    def set_stale_pods(self, count: int) -> None:
        self.stale_pods.set(max(count, 0))

    def local_dns_checked(
        self, *, bound: bool, healthy: bool, reason: str = "", latency_seconds: float | None
    ) -> None:
        """One check of the local DNS. ``reason`` (when not healthy) is one of
        PROBE_FAILURE_REASONS (anything else counts as ``error``); ``latency_seconds`` is
        observed when a reply came back."""
        self.local_dns_bound.set(1 if bound else 0)
        self.local_dns_healthy.set(1 if healthy else 0)
        self.probes.inc()
        if not healthy:
            label = probe_failure_label(bound=bound, reason=reason)
            self.probe_failures.labels(reason=label).inc()
        if latency_seconds is not None:
            self.probe_duration.observe(latency_seconds)

    # ------------------------------------------------------------ host changes
    def config_rewritten(self, *, ok: bool) -> None:
        """After each write of the kubelet configuration (including a rollback's)."""
        self.config_rewrites.inc()
        if not ok:
            self.config_rewrite_failures.inc()

    def kubelet_restarted(self, *, ok: bool) -> None:
        """After each kubelet restart and its verification: ``ok`` if kubelet came back."""
        self.kubelet_restarts.inc()
        if not ok:
            self.kubelet_restart_failures.inc()

    def rolled_back(self, *, ok: bool) -> None:
        """After a rollback: ``ok`` if kubelet is healthy on the previous configuration."""
        self.rollbacks.inc()
        if not ok:
            self.rollback_failures.inc()

    def failsafe_reverted(self) -> None:
        """When a revert starts because the local DNS failed on a migrated node."""
        self.failsafe_reverts.inc()

    def drifted(self, to: Drift) -> None:
        """When drift is first seen on a migrated node (a string that is not a Drift value
        raises ValueError)."""
        self.drifts.labels(to=Drift(to)).inc()

    # ------------------------------------------------------------ lease
    def lease_waited(self, seconds: float) -> None:
        """The lease was held by another node; the agent then waited ``seconds``."""
        self.lease_waits.inc()
        self.lease_wait_seconds.inc(max(seconds, 0.0))

    def lease_acquired(self) -> None:
        self.lease_acquisitions.inc()

    # ------------------------------------------------------------ loop
    def reconciled(self, duration_seconds: float, *, error_stage: Stage | None = None) -> None:
        """After each reconcile pass; ``error_stage`` if it failed (a string that is not a
        Stage value raises ValueError)."""
        self.reconciles.inc()
        self.reconcile_duration.observe(max(duration_seconds, 0.0))
        if error_stage is None:
            self.last_success.set(self._clock())
            return
        self.reconcile_errors.labels(stage=Stage(error_stage)).inc()

    def api_request(self, status: int | None) -> None:
        """After each Kubernetes API request: its HTTP status, None if nothing answered."""
        self.api_requests.inc()
        code_class = api_error_class(status)
        if code_class is not None:
            self.api_errors.labels(code_class=code_class).inc()


def _one_hot(gauge: Gauge, label: str, values: Iterable[str], current: str | None) -> None:
    for value in values:
        gauge.labels(**{label: value}).set(1 if value == current else 0)
