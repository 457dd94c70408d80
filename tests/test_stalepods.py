"""StalePods: which pods still use the old cluster DNS, and the pace and limits of their
eviction, against an in-process PodApi double (the HTTP path is in test_daemon.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from nodelocaldns_agent.kube.api import ApiError
from nodelocaldns_agent.kube.types import PodView
from nodelocaldns_agent.stalepods import StalePods, evictable, stale_pods
from testing.fakes import FakeClock

SWITCH = 200.0


def pod(name: str, started: float = 100.0, kind: str = "ReplicaSet", **kw: object) -> PodView:
    fields: dict[str, object] = {
        "namespace": "ns",
        "name": name,
        "dns_policy": "ClusterFirst",
        "host_network": False,
        "started": started,
        "controller_kind": kind,
        "mirror": False,
        "phase": "Running",
        "deleting": False,
    }
    fields.update(kw)
    return PodView(**fields)  # type: ignore[arg-type]


@dataclass
class Pods:
    pods: list[PodView]
    list_error: int | None = None
    evict_errors: dict[str, int] = field(default_factory=dict)
    lists: int = 0
    evicted: list[str] = field(default_factory=list)

    def list_pods_on_node(self, node: str) -> list[PodView]:
        self.lists += 1
        if self.list_error is not None:
            raise ApiError("list pods", self.list_error, "refused")
        return list(self.pods)

    def evict_pod(self, namespace: str, name: str) -> None:
        status = self.evict_errors.get(name)
        if status is not None:
            raise ApiError(f"evict {name}", status, "refused")
        self.evicted.append(name)
        self.pods = [p for p in self.pods if p.name != name]


def make(api: Pods, *, evict: bool = True) -> tuple[StalePods, FakeClock, list[int]]:
    clock, counts = FakeClock(), []
    stale = StalePods(
        api, "node-a", clock, evict=evict, evict_interval=30.0, count_interval=600.0,
        on_count=counts.append,
    )  # fmt: skip
    return stale, clock, counts


@pytest.mark.parametrize(
    ("dns_policy", "host_network", "started", "phase", "deleting", "counted"),
    [
        ("ClusterFirst", False, 100.0, "Running", False, True),
        ("ClusterFirst", True, 100.0, "Running", False, False),  # hostNetwork: the host's
        ("Default", False, 100.0, "Running", False, False),
        ("ClusterFirstWithHostNet", True, 100.0, "Running", False, True),
        ("None", False, 100.0, "Running", False, False),
        ("ClusterFirst", False, 300.0, "Running", False, False),  # started after the switch
        ("ClusterFirst", False, 0.0, "Running", False, False),  # start time unknown
        ("ClusterFirst", False, 100.0, "Running", True, False),  # terminating
        ("ClusterFirst", False, 100.0, "Succeeded", False, False),  # a finished Job's pod
        ("ClusterFirst", False, 100.0, "Failed", False, False),
        ("ClusterFirst", False, 100.0, "Pending", False, False),
    ],
)
def test_which_pods_are_stale(
    dns_policy: str, host_network: bool, started: float, phase: str, deleting: bool, counted: bool
) -> None:
    p = pod(
        "p", started, dns_policy=dns_policy, host_network=host_network, phase=phase,
        deleting=deleting,
    )  # fmt: skip
    assert (stale_pods([p], SWITCH) == [p]) is counted


@pytest.mark.parametrize(
    ("kind", "mirror", "ok"),
    [("ReplicaSet", False, True), ("StatefulSet", False, True), ("Job", False, True),
     ("DaemonSet", False, False), ("", False, False), ("Node", True, False),
     ("ReplicaSet", True, False)],
)  # fmt: skip
def test_which_stale_pods_may_be_evicted(kind: str, mirror: bool, ok: bool) -> None:
    assert evictable(pod("p", kind=kind, mirror=mirror)) is ok


def test_one_eviction_per_interval_and_the_count_follows() -> None:
    api = Pods([pod("a"), pod("b"), pod("c", kind="DaemonSet")])
    stale, clock, counts = make(api)
    stale.run(SWITCH, force=True)
    assert (api.evicted, counts, stale.count) == (["a"], [3], 3)
    clock.now += 10
    stale.run(SWITCH)  # not due: nothing listed
    assert (api.lists, api.evicted) == (1, ["a"])
    clock.now += 30
    stale.run(SWITCH)
    assert (api.evicted, counts) == (["a", "b"], [3, 2])
    clock.now += 30
    stale.run(SWITCH)  # only the DaemonSet pod is left: counted, never evicted
    assert (api.evicted, counts) == (["a", "b"], [3, 2, 1])


def test_budget_refusal_tries_the_next_pod_and_a_gone_pod_is_skipped() -> None:
    api = Pods([pod("a"), pod("b"), pod("c")], evict_errors={"a": 429, "b": 404})
    stale, _, _ = make(api)
    stale.run(SWITCH, force=True)
    assert api.evicted == ["c"]


def test_other_eviction_errors_propagate() -> None:
    api = Pods([pod("a")], evict_errors={"a": 500})
    stale, _, _ = make(api)
    with pytest.raises(ApiError):
        stale.run(SWITCH, force=True)


def test_counting_only_never_evicts_and_waits_for_the_count_interval() -> None:
    api = Pods([pod("a")])
    stale, clock, counts = make(api, evict=False)
    stale.run(SWITCH, force=True)
    clock.now += 300
    stale.run(SWITCH)
    assert (api.evicted, counts, api.lists) == ([], [1], 1)
    clock.now += 300
    stale.run(SWITCH)
    assert (counts, api.lists) == ([1, 1], 2)


def test_forbidden_list_stops_counting_quietly() -> None:
    api = Pods([pod("a")], list_error=403)
    stale, clock, counts = make(api)
    stale.run(SWITCH, force=True)
    clock.now += 1000
    stale.run(SWITCH, force=True)
    assert (api.lists, counts, stale.count) == (1, [], None)


def test_other_list_errors_propagate() -> None:
    stale, _, _ = make(Pods([], list_error=503))
    with pytest.raises(ApiError):
        stale.run(SWITCH, force=True)


def test_none_left_stops_listing_until_the_next_switch() -> None:
    api = Pods([])
    stale, _, counts = make(api)
    stale.run(SWITCH, force=True)
    stale.run(SWITCH, force=True)
    assert (api.lists, counts) == (1, [0])
    stale.forget()
    stale.run(SWITCH, force=True)
    assert api.lists == 2


def test_never_migrated_lists_nothing() -> None:
    api = Pods([pod("a")])
    stale, _, counts = make(api)
    stale.run(None, force=True)
    assert (api.lists, counts) == (0, [])
