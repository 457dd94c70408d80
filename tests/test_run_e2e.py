"""The real ``run`` command in sandboxed nodes against the fake API server: graceful
shutdown in the middle of a kubelet restart, and the cluster-wide restart limit across
several real agents.

The limit is judged by what it protects, the kubelet restarts (the systemctl stub's
records and the kubelet stand-ins' serving times), and by the restart-slot Leases, never
by the state labels: a node gives its slot back as soon as its kubelet is verified, before
its label moves from ``migrating`` to ``migrated`` (see ``Daemon._change_holding_slot``),
so two labels may say ``migrating`` while only one restart is in flight."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from testing.sandbox.cluster import LEASES, METRICS_PORT_IN_NODE, SandboxCluster
from testing.sandbox.constants import LOCAL_DNS
from tests.tooling import ROOT, tool

pytestmark = pytest.mark.netns


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
    assert cluster.lease_holders() == ["node-1"], "the slot is held while migrating"
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0
    assert cluster.states()["node-1"] == "migrated"  # the step was finished, not abandoned
    assert cluster.http("GET", LEASES)["items"] == []  # and the slot released
    assert node.kubelet_dns() == [LOCAL_DNS]
    log = (node.workdir / "agent.log").read_text()
    assert "signal received" in log and '"msg": "stopped"' in log


def test_restart_limit_holds_across_real_agents(cluster: SandboxCluster) -> None:
    names = [f"node-{i}" for i in range(1, 4)]
    for name in names:
        cluster.add_node(name, layout="tke", healthz_delay=1.0)
    for name in names:
        cluster.start_agent(name, "migrate", "--max-concurrent-restarts", "1")
    holders_max = 0  # the Leases, sampled: never more holders than the limit
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        holders_max = max(holders_max, len(cluster.lease_holders()))
        if all(cluster.states().get(n) == "migrated" for n in names):
            break
        time.sleep(0.05)
    states = cluster.states()
    logs = {n: cluster.nodes[n].log_tail("agent", 3) for n in names}
    assert all(states[n] == "migrated" for n in names), (states, logs)
    assert holders_max == 1
    # what the limit protects: no two kubelet restarts overlapped in time, each one
    # counted from the systemctl call to its new kubelet serving /healthz
    spans = {name: cluster.nodes[name].restart_spans() for name in names}
    assert all(len(s) == 1 for s in spans.values()), spans
    ordered = sorted(span for s in spans.values() for span in s)
    assert all(end is not None for _, end in ordered), json.dumps(spans)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert end is not None and start >= end, json.dumps(spans)


def test_node_events_from_real_agents_are_what_a_real_api_server_accepts(
    cluster: SandboxCluster,
) -> None:
    """Agents in the chart's namespace (kube-system) record Events about their Node where
    kube-apiserver accepts them (the fake server enforces legacyValidateEvent), and a real
    kubectl finds them the way the docs tell operators to look."""
    names = ["node-1", "node-2"]
    for name in names:
        cluster.add_node(name, layout="tke")
        cluster.start_agent(name, "migrate")
    cluster.wait(
        "both nodes migrated",
        lambda: all(cluster.states().get(n) == "migrated" for n in names),
        90,
    )
    kubectl = tool("kubectl", ROOT / ".tools" / "bin" / "kubectl")
    out = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(cluster.workdir / "kubeconfig-host"),
            "get",
            "events",
            "-A",
            "--field-selector",
            "involvedObject.kind=Node",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    events = json.loads(out.stdout)["items"]
    migrated = {e["involvedObject"]["name"]: e for e in events if e["reason"] == "Migrated"}
    assert sorted(migrated) == names, events
    for event in migrated.values():
        assert event["metadata"]["namespace"] == "default"
        assert event["source"]["component"] == "nodelocaldns-agent"
        assert event["count"] == 1 and event["type"] == "Normal"


#: run in the node: hold N idle connections to the agent's metrics port, then time a
#: probe of /healthz as kubelet's liveness probe would send it (issue 13, finding 4)
_HOLD_IDLE_AND_PROBE = """
import json, socket, sys, time, urllib.request
port, count = int(sys.argv[1]), int(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
time.sleep(1.0)
start = time.monotonic()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
    status = resp.status
print(json.dumps({"status": status, "seconds": time.monotonic() - start}), flush=True)
time.sleep(3.0)  # hold them while the test counts the agent's threads
"""


def test_idle_connections_cost_the_real_agent_no_threads_and_probes_get_through(
    cluster: SandboxCluster,
) -> None:
    """600 idle connections to a real agent's metrics port (a tenant pod can reach it on the
    node's IP): before the fix, one thread each (602 threads) and no timeout."""
    node = cluster.add_node("node-1", layout="tke")
    agent = cluster.start_agent("node-1", "observe")
    cluster.wait("the agent's first pass", lambda: cluster.states().get("node-1") == "pending", 30)
    pid = agent.inner_pid()
    assert pid is not None
    before = psutil.Process(pid).num_threads()
    holder = node.spawn_python(
        "idle-connections",
        ["-c", _HOLD_IDLE_AND_PROBE, str(METRICS_PORT_IN_NODE), "600"],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    probe = json.loads(holder.stdout.readline())
    during = psutil.Process(pid).num_threads()
    assert holder.wait(timeout=30) == 0
    assert probe["status"] == 200 and probe["seconds"] < 3, probe
    assert during <= before + 1, (before, during)
