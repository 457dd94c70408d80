"""Pods that still use the old cluster DNS after kubelet was switched, and their eviction.

A pod's ``resolv.conf`` is written when its sandbox starts, so pods started before the
switch keep the old nameserver until they are recreated. :class:`StalePods` counts them
(for the detail annotation and the ``stale_pods`` gauge) and, with
``--restart-stale-pods``, evicts controller-owned ones, one per interval, honouring
disruption budgets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nodelocaldns_agent.host.probes import Clock
from nodelocaldns_agent.kube.api import ApiError
from nodelocaldns_agent.kube.types import PodView
from nodelocaldns_agent.logs import event

log = logging.getLogger(__name__)
#: controllers whose pods are never evicted (nothing would recreate them elsewhere)
_NEVER_EVICT = frozenset({"", "DaemonSet", "Node"})


class PodApi(Protocol):
    def list_pods_on_node(self, node: str) -> list[PodView]: ...
    def evict_pod(self, namespace: str, name: str) -> None: ...


def uses_cluster_dns(pod: PodView) -> bool:
    """Pods whose resolv.conf points at the cluster DNS (``dnsPolicy`` rules)."""
    if pod.dns_policy == "ClusterFirstWithHostNet":
        return True
    return pod.dns_policy == "ClusterFirst" and not pod.host_network


def stale_pods(pods: list[PodView], switched_at: float) -> list[PodView]:
    """Running pods on the cluster DNS whose sandbox predates the kubelet switch. Pods
    being deleted go by themselves, and completed ones (a finished Job's) will never
    resolve a name again: neither is counted nor evicted."""
    return [
        p
        for p in pods
        if p.phase == "Running"
        and not p.deleting
        and uses_cluster_dns(p)
        and 0 < p.started < switched_at
    ]


def evictable(pod: PodView) -> bool:
    return not pod.mirror and pod.controller_kind not in _NEVER_EVICT


@dataclass
class StalePods:
    """Counts (and optionally evicts) the stale pods of one node, at its own pace."""

    api: PodApi
    node_name: str
    clock: Clock
    #: evict, not only count
    evict: bool
    #: seconds between two evictions (and between two counts when evicting)
    evict_interval: float
    #: seconds between two counts when only counting
    count_interval: float
    #: called with the new count
    on_count: Callable[[int], None]
    #: the last count (None: not counted since the last switch)
    count: int | None = None
    _checked: float = float("-inf")
    _last_eviction: float = float("-inf")
    #: the pod list is forbidden (RBAC grants it only with --restart-stale-pods)
    _forbidden: bool = False

    def forget(self) -> None:
        """kubelet was just switched: the last count no longer holds."""
        self.count = None

    def run(self, switched_at: float | None, *, force: bool = False) -> None:
        """Count the node's stale pods (``switched_at``: wall-clock time of the last
        migration; None: never migrated) and evict one when due. ApiError propagates,
        except 403 on the list (stop counting) and 404/429 on an eviction."""
        if switched_at is None or self.count == 0:
            return
        now = self.clock.monotonic()
        interval = self.evict_interval if self.evict else self.count_interval
        if not force and now - self._checked < interval:
            return
        self._checked = now
        if self._forbidden:
            return
        try:
            pods = self.api.list_pods_on_node(self.node_name)
        except ApiError as exc:
            if exc.status != 403:
                raise
            # RBAC grants pods list only with --restart-stale-pods: count nothing, quietly.
            self._forbidden = True
            event(log, "not counting stale pods: listing pods is forbidden", error=str(exc))
            return
        stale = stale_pods(pods, switched_at)
        self.count = len(stale)
        self.on_count(self.count)
        candidates = [p for p in stale if evictable(p)]
        if self.evict and candidates and now - self._last_eviction >= self.evict_interval:
            self._last_eviction = now
            self._evict_one(candidates)

    def _evict_one(self, candidates: list[PodView]) -> None:
        for pod in candidates:
            name = f"{pod.namespace}/{pod.name}"
            try:
                self.api.evict_pod(pod.namespace, pod.name)
            except ApiError as exc:
                if exc.status == 429:
                    event(log, "eviction refused by a disruption budget; later", pod=name)
                    continue
                if exc.status == 404:
                    continue
                raise
            event(log, "evicted a pod still on the old DNS", pod=name)
            return
