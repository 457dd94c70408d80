"""The real agent's probe and fail-safe on a migrated node whose real node-cache is updated
or restarted as kubelet does it with the chart's DaemonSet.

- A surge update (the chart's ``maxSurge``): the new node-cache serves beside the old one
  (SO_REUSEPORT) before the old one gets SIGTERM; with ``-skipteardown`` (the chart's
  IPVS form) nothing the new one needs is removed. The probe must not see one failure.
- A single restart: SIGKILL (an OOM kill), then kubelet's restart back-off (10 s: the
  first delay of kubelet's CrashLoopBackOff, doubling up to 5 min; kubernetes.io "Pod
  Lifecycle", "Container restarts"), then node-cache again. The address stays bound, so
  the probe is refused at once; the node depends on node-cache for those seconds whatever
  the agent does, and reverting kubelet would only cost a kubelet restart and help no
  existing pod (their resolv.conf keeps 169.254.20.10). The fail-safe must not flip.

The agent probes every second here (``--probe-interval 1``) so that it samples the
outage densely; everything else is the default, and a fail-safe tighter than the outage
(``--failsafe-after 4``) is shown to flip, so the default's margin is measured, not assumed.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodelocaldns_agent.settings import RunSettings
from nodelocaldns_agent.state import DETAIL_ANNOTATION
from testing.sandbox.cluster import SandboxCluster
from testing.sandbox.constants import LOCAL_DNS
from testing.sandbox.node import SandboxNode
from testing.sandbox.rollout import NodeCacheLifecycle

pytestmark = pytest.mark.netns

NODE = "node-1"
#: kubelet's first restart delay of a crashed container
BACK_OFF = 10.0
PROBE_INTERVAL = 1.0
#: the new node-cache serves beside the old one this long before the old one's SIGTERM
#: (short of the chart's minReadySeconds: the old one's exit is what is tested)
OVERLAP = 1.0
DEFAULTS = {f.name: f.default for f in fields(RunSettings)}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SandboxCluster]:
    with SandboxCluster(tmp_path / "cluster") as c:
        yield c


class Watch:
    """The agent's own view, from its /metrics: the local DNS probes, how many failed, the
    fail-safe's reverts, and when the last probe said unhealthy."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.unhealthy: list[float] = []

    def sample(self) -> dict[str, float]:
        with self.opener.open(self.url, timeout=5) as answer:
            text = answer.read().decode()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for one in family.samples:
                values[one.name] = values.get(one.name, 0.0) + one.value
                if "reason" in one.labels:
                    key = f"{one.name}:{one.labels['reason']}"
                    values[key] = values.get(key, 0.0) + one.value
        if values.get("nodelocaldns_agent_local_dns_healthy") == 0:
            self.unhealthy.append(time.monotonic())
        return values

    def during(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sample()
            time.sleep(0.2)

    def while_running(self, action: Callable[[], object]) -> None:
        """Sample every 0.2 s while ``action`` runs (in a thread); its error is raised."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            done = pool.submit(action)
            while not done.done():
                self.sample()
                time.sleep(0.2)
            done.result()
        self.sample()

    @property
    def window(self) -> float:
        """Seconds between the first and the last unhealthy sample."""
        return self.unhealthy[-1] - self.unhealthy[0] if self.unhealthy else 0.0


def migrated_node(cluster: SandboxCluster, *agent_args: str) -> tuple[SandboxNode, Watch]:
    node = cluster.add_node(NODE, layout="tke")
    assert node.chart is not None and "-skipteardown=true" in node.chart.args
    port = cluster.expose_metrics(NODE)
    cluster.start_agent(NODE, "migrate", "--probe-interval", str(PROBE_INTERVAL), *agent_args)
    cluster.wait("the node migrated", lambda: cluster.states().get(NODE) == "migrated", 90)
    assert node.kubelet_dns() == [LOCAL_DNS]
    watch = Watch(port)
    watch.during(3 * PROBE_INTERVAL)
    assert watch.unhealthy == [], "node-cache must answer before the disruption"
    return node, watch


def detail(cluster: SandboxCluster) -> dict[str, object]:
    [node] = cluster.node_objects()
    parsed: dict[str, object] = json.loads(node["metadata"]["annotations"][DETAIL_ANNOTATION])
    return parsed


def restart(node: SandboxNode, watch: Watch) -> None:
    """SIGKILL, kubelet's back-off, start again (returns once node-cache serves)."""
    watch.while_running(lambda: NodeCacheLifecycle(node).kill(BACK_OFF))


FAILURES = "nodelocaldns_agent_local_dns_probe_failures_total"
PROBES = "nodelocaldns_agent_local_dns_probes_total"
REVERTS = "nodelocaldns_agent_failsafe_reverts_total"


def test_a_surge_update_is_never_seen_by_the_probe(cluster: SandboxCluster) -> None:
    node, watch = migrated_node(cluster)
    restarts = len(node.restarts())
    before = watch.sample()
    watch.while_running(lambda: NodeCacheLifecycle(node).surge(OVERLAP))
    watch.during(5 * PROBE_INTERVAL)
    after = watch.sample()
    assert after[PROBES] - before[PROBES] >= 4, "the agent probed during the update"
    assert after.get(FAILURES, 0) - before.get(FAILURES, 0) == 0, node.diagnostics()
    assert watch.unhealthy == []
    assert after.get(REVERTS, 0) == 0 and cluster.states()[NODE] == "migrated"
    assert len(node.restarts()) == restarts and node.kubelet_dns() == [LOCAL_DNS]


def test_a_single_node_cache_restart_never_flips_the_node(cluster: SandboxCluster) -> None:
    node, watch = migrated_node(cluster)
    restarts = len(node.restarts())
    before = watch.sample()
    restart(node, watch)
    watch.during(5 * PROBE_INTERVAL)
    after = watch.sample()
    failed = after.get(FAILURES, 0) - before.get(FAILURES, 0)
    refused = after.get(f"{FAILURES}:refused", 0) - before.get(f"{FAILURES}:refused", 0)
    # the probe saw the outage as pods do (refused at once: the address stays bound), and
    # for far less than the default fail-safe delay
    assert failed >= BACK_OFF / PROBE_INTERVAL / 2, (failed, node.diagnostics())
    assert refused == failed, after
    assert BACK_OFF - 2 * PROBE_INTERVAL <= watch.window < BACK_OFF + 10, watch.window
    assert watch.window * 10 < DEFAULTS["failsafe_after"]
    assert watch.unhealthy[-1] < time.monotonic() - 3 * PROBE_INTERVAL, "healthy again"
    assert after.get(REVERTS, 0) == 0 and not detail(cluster).get("failsafe")
    assert cluster.states()[NODE] == "migrated"
    assert len(node.restarts()) == restarts and node.kubelet_dns() == [LOCAL_DNS]


def test_a_failsafe_tighter_than_the_restart_flips_the_node(cluster: SandboxCluster) -> None:
    """The same restart with ``--failsafe-after 4``: the probe's view is enough to flip,
    so the test above would catch a default shorter than node-cache's restart."""
    node, watch = migrated_node(cluster, "--failsafe-after", "4")
    restart(node, watch)
    cluster.wait("the fail-safe revert", lambda: cluster.states().get(NODE) == "reverted", 60)
    assert watch.sample()[REVERTS] == 1 and detail(cluster)["failsafe"] is True
    assert node.kubelet_dns() == ["10.96.0.10"]
