"""The real ``run`` command in sandboxed nodes against the fake API server: graceful
shutdown in the middle of a kubelet restart, and the cluster-wide restart limit across
several real agents."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.sandbox.cluster import NAMESPACE, SandboxCluster

pytestmark = pytest.mark.netns
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SandboxCluster]:
    with SandboxCluster(tmp_path / "cluster") as c:
        yield c


def test_sigterm_mid_restart_finishes_the_step_and_releases_the_slot(
    cluster: SandboxCluster,
) -> None:
    node = cluster.add_node("node-1", layout="tke", healthz_delay=3.0)
    agent = cluster.start_agent("node-1", "migrate", "--verify-timeout", "30")
    cluster.wait("a restart in flight", lambda: cluster.states().get("node-1") == "migrating", 30)
    assert cluster.http("GET", LEASES)["items"], "the slot is held while migrating"
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0
    assert cluster.states()["node-1"] == "migrated"  # the step was finished, not abandoned
    assert cluster.http("GET", LEASES)["items"] == []  # and the slot released
    assert (node.kubelet() or {})["cluster_dns"] == ["169.254.20.10"]
    log = (node.workdir / "agent.log").read_text()
    assert "signal received" in log and '"msg": "stopped"' in log


def test_restart_limit_holds_across_real_agents(cluster: SandboxCluster) -> None:
    names = [f"node-{i}" for i in range(1, 4)]
    for name in names:
        cluster.add_node(name, layout="tke", healthz_delay=1.0)
    for name in names:
        cluster.start_agent(name, "migrate", "--max-concurrent-restarts", "1")
    in_flight_max = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        states = cluster.states()
        in_flight_max = max(in_flight_max, sum(s == "migrating" for s in states.values()))
        if all(states.get(n) == "migrated" for n in names):
            break
        time.sleep(0.05)
    assert all(cluster.states()[n] == "migrated" for n in names)
    assert in_flight_max == 1
    # the systemctl logs agree: no two kubelet restarts overlapped in time
    spans = []
    for name in names:
        calls = cluster.nodes[name].restarts()
        assert len(calls) == 1
        started = calls[0]["ts"]
        kubelet = cluster.nodes[name].kubelet() or {}
        spans.append((started, kubelet.get("serving", started)))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.05, json.dumps(spans)
