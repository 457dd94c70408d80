"""What the platform under the agent does, through the real CLI on sandboxed nodes
(issue 14, parts 4 and 5): an appliance OS is refused with nothing written, and a file a
platform rewrites is migrated again at the next resync, with a ``Drifted`` Event and
``drifts_total``."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodelocaldns_agent.kube.api import EVENT_NAMESPACE
from testing.sandbox.cluster import SandboxCluster
from testing.sandbox.constants import CLUSTER_DNS, LOCAL_DNS
from tests.conftest import NodeFactory
from tests.test_hostos import BOTTLEROCKET, RHCOS, TALOS

pytestmark = pytest.mark.netns


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SandboxCluster]:
    with SandboxCluster(tmp_path / "cluster") as c:
        yield c


@pytest.mark.parametrize(
    ("os_release", "way"),
    [
        (BOTTLEROCKET, f"apiclient set settings.kubernetes.cluster-dns-ip={LOCAL_DNS}"),
        (TALOS, f'machine.kubelet.clusterDNS: ["{LOCAL_DNS}"]'),
        # OpenShift: RHCOS nodes, kubelet.service from the Machine Config Operator with a
        # KubeletConfiguration file like EKS's; the DNS Operator's way is named instead
        (RHCOS, "dns.operator.openshift.io/default"),
    ],
    ids=["bottlerocket", "talos", "openshift-rhcos"],
)
def test_an_appliance_os_is_refused_by_check_and_migrate(
    sandbox_node: NodeFactory, os_release: str, way: str
) -> None:
    """The os-release is the distribution's; the kubelet files are EKS-shaped (a
    KubeletConfiguration JSON through ``--config``), which the agent edited before."""
    node = sandbox_node(layout="eks")
    node.path("/etc/os-release").write_text(os_release)
    before = node.dns_file.read_bytes()
    check = node.agent("check", "--json")
    assert check.returncode == 0, check.stderr
    rep = json.loads(check.stdout)
    assert rep["action"] == "blocked" and rep["diff"] == ""
    assert way in rep["reason"] and rep["appliance_os"] in rep["reason"]
    migrate = node.agent("migrate", "--once")
    assert migrate.returncode == 3, migrate
    assert migrate.stdout.startswith("blocked: ") and way in migrate.stdout
    assert node.dns_file.read_bytes() == before
    assert node.restarts() == [] and node.journal() is None
    assert node.kubelet_dns() == [CLUSTER_DNS]


def metric(port: int, name: str, **labels: str) -> float | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"nodelocaldns_agent_{name}" + (f"{{{wanted}}}" if wanted else "")
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_a_file_the_platform_rewrites_is_migrated_again(cluster: SandboxCluster) -> None:
    """The platform puts its own bytes back and restarts kubelet on them (nodeadm or GCE's
    configure-helper at boot, ``kubeadm upgrade node``); the next resync migrates again
    through the restart slot, byte for byte as the first time."""
    node = cluster.add_node("node-1", layout="tke")
    cluster.start_agent("node-1", "migrate", "--resync-interval", "2")
    port = cluster.expose_metrics("node-1")
    cluster.wait("migrated", lambda: node.kubelet_dns() == [LOCAL_DNS], 60)
    cluster.wait("reported", lambda: cluster.states().get("node-1") == "migrated", 30)
    migrated = node.dns_file.read_bytes()
    assert len(node.restarts()) == 1

    starts = len(node.kubelet_starts())
    node.dns_file.write_bytes(node.original)
    node.systemctl("restart", "kubelet", check=True)  # the platform's own restart
    cluster.wait("kubelet on the original", lambda: len(node.kubelet_starts()) > starts, 30)
    assert f"--cluster-dns={CLUSTER_DNS}" in node.kubelet_starts()[starts]["argv"]
    cluster.wait("migrated again", lambda: len(node.restarts()) == 3, 60)
    cluster.wait("on the local DNS", lambda: node.kubelet_dns() == [LOCAL_DNS], 30)
    cluster.wait("counted", lambda: metric(port, "drifts_total", to="original") == 1, 30)
    assert node.dns_file.read_bytes() == migrated
    # the agent's, the platform's, the agent's again
    time.sleep(5)  # two more resyncs: settled, no loop
    assert len(node.restarts()) == 3
    assert metric(port, "drifts_total", to="original") == 1
    assert cluster.states()["node-1"] == "migrated"
    events = cluster.http("GET", f"/api/v1/namespaces/{EVENT_NAMESPACE}/events")["items"]
    drifted = [e for e in events if e["reason"] == "Drifted"]
    assert len(drifted) == 1, events
    assert drifted[0]["type"] == "Normal" and drifted[0]["count"] == 1
    assert drifted[0]["involvedObject"]["name"] == "node-1"
    assert f"the original {CLUSTER_DNS} again" in drifted[0]["message"]
