"""The real CLI on sandboxed nodes: real namespaces, interfaces, dnsmasq, a kubelet
stand-in found through psutil, and the restart through real ``nsenter --target 1`` into a
mount namespace where ``systemctl`` is a recording stand-in (see ``testing.sandbox``)."""

from __future__ import annotations

import json

import pytest

from testing.sandbox.constants import LOCAL_DNS as LOCAL
from testing.sandbox.node import RunResult, SandboxNode
from tests.conftest import NodeFactory

pytestmark = pytest.mark.netns


def agent(node: SandboxNode, *args: str) -> RunResult:
    return node.agent(*args, "--verify-timeout", "10")


def restarts(node: SandboxNode) -> int:
    return len(node.restarts())


LAYOUTS = [
    ("tke", {}, "env"),
    ("kubeadm", {}, "yaml"),
    ("kubeadm_flag", {}, "env"),
    ("eks", {}, "json"),
    ("config_dir", {}, "config-dir"),
    ("sysconfig", {}, "env"),
    ("tke", {"symlink": True}, "env"),
    ("tke", {"crlf": True, "no_trailing_newline": True, "non_utf8": True}, "env"),
    ("kubeadm", {"symlink": True, "crlf": True}, "yaml"),
]


@pytest.mark.parametrize(
    ("layout", "quirks", "fmt"),
    LAYOUTS,
    ids=[f"{lay}-{'-'.join(q) or 'plain'}" for lay, q, _ in LAYOUTS],
)
def test_check_migrate_idempotent_revert(
    sandbox_node: NodeFactory, layout: str, quirks: dict[str, bool], fmt: str
) -> None:
    node = sandbox_node(layout=layout, **quirks)
    assert node.layout is not None
    check = agent(node, "check", "--json")
    assert check.returncode == 0, check.stderr
    rep = json.loads(check.stdout)
    assert rep["proxy_mode"] == "ipvs"
    assert rep["local_dns"]["bound"] and rep["local_dns"]["healthy"]
    assert rep["local_dns"]["latency_seconds"] > 0
    assert rep["kubelet"]["format"] == fmt
    assert rep["kubelet"]["cluster_dns"] == ["10.96.0.10"]
    assert rep["action"] == "migrate" and LOCAL in rep["diff"]
    assert restarts(node) == 0

    migrate = agent(node, "migrate", "--once")
    assert migrate.returncode == 0, migrate.stderr
    assert (node.kubelet() or {})["cluster_dns"] == [LOCAL]
    assert restarts(node) == 1
    if node.layout.symlinks:
        link = node.root / node.layout.dns_file.lstrip("/")
        assert link.is_symlink()

    again = agent(node, "migrate", "--once")
    assert again.returncode == 0 and restarts(node) == 1

    revert = agent(node, "revert", "--once")
    assert revert.returncode == 0, revert.stderr
    assert (node.kubelet() or {})["cluster_dns"] == ["10.96.0.10"]
    assert restarts(node) == 2
    if fmt == "config-dir":
        assert not (node.root / "etc/kubernetes/kubelet.conf.d/99-nodelocaldns-agent.conf").exists()
    else:
        assert node.dns_file.read_bytes() == node.original


def test_iptables_mode_is_not_needed(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="tke", proxy_mode="iptables")
    rep = json.loads(agent(node, "check", "--json").stdout)
    assert rep["proxy_mode"] == "iptables" and rep["action"] == "none"
    result = agent(node, "migrate", "--once")
    assert result.returncode == 0 and "not-needed" in result.stdout
    assert restarts(node) == 0 and node.dns_file.read_bytes() == node.original


@pytest.mark.parametrize("local_dns", ["down", "unbound"])
def test_local_dns_not_answering_blocks(sandbox_node: NodeFactory, local_dns: str) -> None:
    node = sandbox_node(layout="tke", local_dns=local_dns)
    rep = json.loads(agent(node, "check", "--json").stdout)
    assert rep["local_dns"]["healthy"] is False
    assert rep["local_dns"]["bound"] is (local_dns == "down")
    result = agent(node, "migrate", "--once")
    assert result.returncode == 3, result.stdout + result.stderr
    assert restarts(node) == 0 and node.dns_file.read_bytes() == node.original
    node.set_local_dns("up")
    assert agent(node, "migrate", "--once").returncode == 0


def test_kubelet_not_coming_back_is_rolled_back(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="tke")
    node.set_kubelet_fault()
    result = agent(node, "migrate", "--once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rolling back" in result.stderr
    assert node.dns_file.read_bytes() == node.original
    assert restarts(node) == 2


def test_malformed_config_exits_2_naming_the_file(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="kubeadm", kubelet=False)
    (node.root / "var/lib/kubelet/config.yaml").write_bytes(b"clusterDNS: [10.96.0.10\n")
    check = agent(node, "check")
    assert check.returncode == 2
    assert "/var/lib/kubelet/config.yaml" in check.stderr
    assert "Traceback" not in check.stderr
    result = agent(node, "migrate", "--once")
    assert result.returncode == 2 and restarts(node) == 0


def test_missing_config_exits_2(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout=None, kubelet=False)
    result = agent(node, "check")
    assert result.returncode == 2
    assert "no kubelet configuration found" in result.stderr


def test_bad_flags_and_env_exit_2(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="tke", kubelet=False)
    bad = agent(node, "migrate", "--once", "--local-dns", "not-an-ip")
    assert bad.returncode == 2 and "--local-dns" in bad.stderr
    env = node.run_agent(
        ["check", "--host-root", str(node.root)], env={"NODELOCALDNS_AGENT_PROBE_TIMEOUT": "soon"}
    )
    assert env.returncode == 2 and "NODELOCALDNS_AGENT_PROBE_TIMEOUT" in env.stderr
