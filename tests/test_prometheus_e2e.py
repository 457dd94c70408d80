"""A real Prometheus (Debian package) on loopback scrapes a running agent inside a sandbox
node (against the fake API server), and the per-node migration state is read back through
Prometheus' HTTP API. The ``node`` label is added by the scrape configuration, exactly
as the chart's ServiceMonitor/PodMonitor relabeling does (docs/metrics.md)."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.sandbox.cluster import SandboxCluster
from testing.sandbox.prometheus import Prometheus

pytestmark = pytest.mark.netns


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SandboxCluster]:
    with SandboxCluster(tmp_path / "cluster") as c:
        yield c


def test_prometheus_reads_the_per_node_state(cluster: SandboxCluster, tmp_path: Path) -> None:
    cluster.add_node("node-1", layout="tke")
    cluster.start_agent("node-1", "migrate", "--probe-interval", "1")
    cluster.wait("node-1 migrating", lambda: cluster.states().get("node-1") == "migrated", 60)
    port = cluster.expose_metrics("node-1")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read()
    assert b"nodelocaldns_agent_migration_state" in body

    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == b"" and lint.stderr.strip() == b""

    with Prometheus(tmp_path, {"node-1": port}) as prom:
        result = prom.wait_for('nodelocaldns_agent_migration_state{state="migrated"} == 1')
        assert [(r["metric"]["node"], r["metric"]["job"]) for r in result] == [
            ("node-1", "nodelocaldns-agent")
        ]
        healthy = prom.wait_for("sum by (node) (nodelocaldns_agent_local_dns_healthy)")
        assert healthy[0]["value"][1] == "1"
        assert (
            prom.query('nodelocaldns_agent_migration_state{node="node-1",state="failed"}')[0][
                "value"
            ][1]
            == "0"
        )
