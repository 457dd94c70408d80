"""A real Prometheus (Debian package) on loopback scrapes a running agent inside a sandbox
node (against the fake API server), and the per-node migration state is read back through
Prometheus' HTTP API. The ``node`` label is added by the scrape configuration, exactly
as the chart's ServiceMonitor/PodMonitor relabeling does (docs/metrics.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sandbox.cluster import SandboxCluster, free_port

pytestmark = pytest.mark.netns
PROMETHEUS = shutil.which("prometheus")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, bytes]:
    try:
        with OPENER.open(url, timeout=5) as resp:
            return resp.status, resp.read()
    except OSError:
        return 0, b""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SandboxCluster]:
    with SandboxCluster(tmp_path / "cluster") as c:
        yield c


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    assert PROMETHEUS, "prometheus is not installed (scripts/setup.sh installs it)"
    yield tmp_path / "prometheus.yml", free_port()


def test_prometheus_reads_the_per_node_state(
    cluster: SandboxCluster, prometheus: tuple[Path, int], tmp_path: Path
) -> None:
    cluster.add_node("node-1", layout="tke")
    cluster.start_agent("node-1", "migrate", "--probe-interval", "1")
    cluster.wait("node-1 migrating", lambda: cluster.states().get("node-1") == "migrated", 60)
    metrics_port = cluster.expose_metrics("node-1")
    status, body = get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200 and b"nodelocaldns_agent_migration_state" in body

    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == b"" and lint.stderr.strip() == b""

    config, port = prometheus
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "nodelocaldns-agent",
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"node": "node-1"}}
                        ],
                    }
                ],
            }
        )
    )
    with (tmp_path / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        query = 'nodelocaldns_agent_migration_state{node="node-1",state="migrated"}'
        deadline = time.monotonic() + 30
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            status, body = get(f"{base}/api/v1/query?query={urllib.parse.quote(query)}")
            if status == 200:
                result = json.loads(body)["data"]["result"]
                if result:
                    break
            time.sleep(0.5)
        assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert result[0]["value"][1] == "1"  # type: ignore[index]
        assert result[0]["metric"]["job"] == "nodelocaldns-agent"  # type: ignore[index]
        status, body = get(
            f"{base}/api/v1/query?query="
            + urllib.parse.quote("sum by (node) (nodelocaldns_agent_local_dns_healthy)")
        )
        assert json.loads(body)["data"]["result"][0]["value"][1] == "1"
    finally:
        server.terminate()
        server.wait(timeout=10)
