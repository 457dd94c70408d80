"""Dual-stack nodes through the real CLI on sandboxed nodes: kubelet's clusterDNS holds an
IPv4 and an IPv6 ClusterIP, node-cache (dnsmasq here) listens on a local address of each
family, each inside the node's own network namespace.

Why both families: kubelet writes every clusterDNS entry into each pod's resolv.conf, in
order (kubernetes/kubernetes pkg/kubelet/network/dns/dns.go), so dropping the IPv6 entry
takes the pods' IPv6 nameserver away. Upstream node-cache listens on one family per
process (kubernetes/dns cmd/node-cache/main.go validates that every -localip has the
family of the first), so the IPv6 local address is served by a second listener.
"""

from __future__ import annotations

import json

import pytest

from testing.sandbox.constants import CLUSTER_DNS, IPVS_LINK
from testing.sandbox.constants import LOCAL_DNS as LOCAL
from testing.sandbox.layouts import CONFIG_YAML
from testing.sandbox.node import RunResult, SandboxNode
from tests.conftest import NodeFactory

pytestmark = pytest.mark.netns

LOCAL6 = "fd00::a"
CLUSTER_DNS6 = "fd00:10:96::a"


def agent(node: SandboxNode, *args: str) -> RunResult:
    return node.agent(*args, "--verify-timeout", "10")


def dual_stack_node(sandbox_node: NodeFactory, *local: str) -> tuple[SandboxNode, bytes]:
    """A kubeadm node whose config.yaml lists both ClusterIPs (a dual-stack kubeadm
    cluster: ``clusterDNS`` is the kube-dns Service's ``clusterIPs``), kube-ipvs0 holding
    both (kube-proxy's IPVS proxier of each family binds its ClusterIPs there), and
    dnsmasq on ``local`` (one server on both families; node-cache serves one family per
    process). Returns the node and its config.yaml."""
    node = sandbox_node(
        layout="kubeadm", local_addresses=local, local_dns_server="dnsmasq", kubelet=False
    )
    path = node.path(CONFIG_YAML)
    single = path.read_bytes()
    one = f"clusterDNS:\n- {CLUSTER_DNS}\n".encode()
    assert one in single
    dual = single.replace(one, f"clusterDNS:\n- {CLUSTER_DNS}\n- {CLUSTER_DNS6}\n".encode())
    path.write_bytes(dual)
    node.exec(["ip", "addr", "add", f"{CLUSTER_DNS6}/128", "dev", IPVS_LINK, "nodad"])
    node.systemctl("start", "kubelet", quiet=True, check=True)
    node.wait_kubelet()
    assert (node.kubelet() or {})["cluster_dns"] == [CLUSTER_DNS, CLUSTER_DNS6]
    return node, dual


def test_dual_stack_migrates_to_both_local_addresses_and_reverts_byte_exact(
    sandbox_node: NodeFactory,
) -> None:
    node, dual = dual_stack_node(sandbox_node, LOCAL, LOCAL6)
    assert node.resolve(server=LOCAL6).addresses  # dnsmasq answers over IPv6 in the node
    check = agent(node, "check", "--json", "--local-dns-ipv6", LOCAL6)
    assert check.returncode == 0, check
    rep = json.loads(check.stdout)
    assert rep["local_dns"]["address"] == f"{LOCAL},{LOCAL6}"
    assert [(one["address"], one["healthy"]) for one in rep["local_dns"]["addresses"]] == [
        (LOCAL, True),
        (LOCAL6, True),
    ]
    assert rep["action"] == "migrate"
    assert f"+- {LOCAL}\n+- {LOCAL6}\n" in rep["diff"]

    migrate = agent(node, "migrate", "--once", "--local-dns-ipv6", LOCAL6)
    assert migrate.returncode == 0, migrate
    assert (node.kubelet() or {})["cluster_dns"] == [LOCAL, LOCAL6]
    assert node.read_bytes(CONFIG_YAML) == dual.replace(
        f"- {CLUSTER_DNS}\n- {CLUSTER_DNS6}\n".encode(), f"- {LOCAL}\n- {LOCAL6}\n".encode()
    )
    assert len(node.restarts()) == 1
    again = agent(node, "migrate", "--once", "--local-dns-ipv6", LOCAL6)
    assert again.returncode == 0 and len(node.restarts()) == 1

    revert = agent(node, "revert", "--once", "--local-dns-ipv6", LOCAL6)
    assert revert.returncode == 0, revert
    assert (node.kubelet() or {})["cluster_dns"] == [CLUSTER_DNS, CLUSTER_DNS6]
    assert node.read_bytes(CONFIG_YAML) == dual
    assert len(node.restarts()) == 2


def test_dual_stack_without_a_local_ipv6_is_refused(sandbox_node: NodeFactory) -> None:
    node, dual = dual_stack_node(sandbox_node, LOCAL)
    result = agent(node, "migrate", "--once", "--json")
    assert result.returncode == 3, result
    reason = json.loads(result.stdout)["reason"]
    assert f"IPv6 entry {CLUSTER_DNS6}" in reason and "--local-dns-ipv6" in reason
    assert node.read_bytes(CONFIG_YAML) == dual
    assert node.restarts() == []


def test_dual_stack_waits_for_the_ipv6_listener(sandbox_node: NodeFactory) -> None:
    """The local IPv6 address configured but not bound (node-cache's IPv6 listener not up):
    nothing is probed off the node, nothing changes."""
    node, dual = dual_stack_node(sandbox_node, LOCAL)
    result = agent(node, "migrate", "--once", "--json", "--local-dns-ipv6", LOCAL6)
    assert result.returncode == 3, result
    assert f"{LOCAL6} is not bound" in json.loads(result.stdout)["reason"]
    assert node.read_bytes(CONFIG_YAML) == dual and node.restarts() == []
