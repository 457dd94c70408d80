"""The real CLI on sandboxed nodes: real namespaces, interfaces, the real node-cache, a kubelet
stand-in found as kubelet.service's MainPID (``systemctl show``), and the restart through
real ``nsenter --target 1`` into a mount namespace where ``systemctl`` is a recording
stand-in (see ``testing.sandbox``)."""

from __future__ import annotations

import contextlib
import json
import os
import time

import psutil
import pytest

from nodelocaldns_agent.hostpaths import DEFAULT_WRITABLE_DIRS
from testing.sandbox.constants import CLUSTER_DNS
from testing.sandbox.constants import LOCAL_DNS as LOCAL
from testing.sandbox.layouts import (
    AGENT_UNIT_DROPIN,
    K3S_CONFIG,
    K3S_CONFIG_DIR,
    MICROK8S_ARGS,
    NODEADM_CONFIG_DIR,
    RKE2_CONFIG,
    RKE2_CONFIG_DIR,
)
from testing.sandbox.node import RunResult, SandboxNode
from tests.conftest import NodeFactory

pytestmark = pytest.mark.netns


def agent(node: SandboxNode, *args: str) -> RunResult:
    return node.agent(*args, "--verify-timeout", "10")


def restarts(node: SandboxNode) -> int:
    return len(node.restarts())


def argv(node: SandboxNode) -> list[str]:
    """The running kubelet's arguments (the stand-in's own script path left out)."""
    return list(node.kubelet_starts()[-1]["argv"])


def layout_files(node: SandboxNode) -> dict[str, bytes]:
    """Every file the layout wrote, as it is now."""
    assert node.layout is not None
    return {path: node.read_bytes(path) for path in node.layout.files}


def server_wide(config: bytes) -> list[str]:
    """The ``cluster-dns:`` lines of a k3s config.yaml (k3s's server-wide setting)."""
    return [line for line in config.decode().splitlines() if line.startswith("cluster-dns:")]


LAYOUTS = [
    ("tke", {}, "env"),
    ("kubeadm", {}, "yaml"),
    ("kubeadm_flag", {}, "env"),
    ("kubeadm_flag_underscore", {}, "env"),
    ("eks", {}, "json"),
    ("config_dir", {}, "config-dir"),
    ("sysconfig", {}, "env"),
    ("ack_kubeadm", {}, "unit"),
    ("eks_extra_args", {}, "unit"),
    ("hardway", {}, "unit"),
    ("ack_kubeadm", {"crlf": True, "no_trailing_newline": True}, "unit"),
    ("tke", {"symlink": True}, "env"),
    ("tke", {"crlf": True, "no_trailing_newline": True, "non_utf8": True}, "env"),
    ("kubeadm", {"symlink": True, "crlf": True}, "yaml"),
    ("k3s_kubelet_arg", {}, "k3s-arg"),
    ("k3s_agent_flow", {}, "k3s-arg"),
    ("k3s_dotd", {}, "k3s-arg"),
    ("k3s_config_dir", {}, "config-dir"),
    ("k3s_kubelet_arg", {"crlf": True, "no_trailing_newline": True}, "k3s-arg"),
    ("rke2_agent", {}, "config-dir"),
    ("rke2_server_kubelet_arg", {}, "k3s-arg"),
    ("microk8s", {}, "args-file"),
    # issue 14's distributions (testing/sandbox/layouts.py says where each shape is from)
    ("kubespray", {}, "yaml"),
    ("eks_nodeadm", {}, "config-dir"),
    ("aks", {}, "json"),
    ("aks_flags", {}, "env"),
    ("gce", {}, "yaml"),
    ("kops", {}, "env"),
    ("kops_config", {}, "yaml"),
    ("flatcar_kubeadm", {}, "yaml"),
]
#: the agent's flags a layout needs: GCE's kubelet configuration is under /home/kubernetes,
#: outside the default writable directories (the chart's agent.hostPaths adds it)
LAYOUT_ARGS = {
    "gce": ("--writable-dirs", ",".join((*DEFAULT_WRITABLE_DIRS, "/home/kubernetes"))),
}
#: the agent's drop-in in kubelet's --config-dir (kubeadm's, k3s's, RKE2's)
CONFIG_DIR_DROPINS = [
    f"{directory}/99-nodelocaldns-agent.conf"
    for directory in (
        "/etc/kubernetes/kubelet.conf.d",
        K3S_CONFIG_DIR,
        RKE2_CONFIG_DIR,
        NODEADM_CONFIG_DIR,
    )
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
    own = LAYOUT_ARGS.get(layout, ())
    check = agent(node, "check", "--json", *own)
    assert check.returncode == 0, check.stderr
    rep = json.loads(check.stdout)
    assert rep["proxy_mode"] == "ipvs"
    assert rep["local_dns"]["bound"] and rep["local_dns"]["healthy"]
    assert rep["local_dns"]["latency_seconds"] > 0
    assert rep["kubelet"]["format"] == fmt
    assert rep["kubelet"]["cluster_dns"] == ["10.96.0.10"]
    assert rep["action"] == "migrate" and LOCAL in rep["diff"]
    assert rep["kubelet"]["restart_unit"] == f"{node.service}.service"
    assert restarts(node) == 0
    before = argv(node)
    embedded_pid = node.kubelet_pid()

    migrate = agent(node, "migrate", "--once", *own)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert (node.kubelet() or {})["cluster_dns"] == [LOCAL]
    assert restarts(node) == 1
    # nothing else of kubelet's command line changed
    assert argv(node) == [word.replace(CLUSTER_DNS, LOCAL) for word in before]
    if fmt == "unit":  # the layout's own files are untouched: the agent's drop-in decides
        assert layout_files(node) == node.layout.files
        assert node.path(AGENT_UNIT_DROPIN).is_file()
        assert ["daemon-reload"] in [call["argv"] for call in node.systemctl_calls()]
    if node.layout.symlinks:
        link = node.root / node.layout.dns_file.lstrip("/")
        assert link.is_symlink()
    if node.service != "kubelet":  # the hosting unit was restarted: a new kubelet
        assert node.kubelet_pid() != embedded_pid
    if fmt == "k3s-arg":  # the server-wide setting is never edited
        config = K3S_CONFIG if node.service.startswith("k3s") else RKE2_CONFIG
        assert server_wide(node.read_bytes(config)) == server_wide(node.layout.files[config])
    if fmt == "args-file":  # snapd's `current` symlink is kept, its target edited
        assert node.path("/var/snap/microk8s/current").is_symlink()
        assert f"--cluster-dns={LOCAL}" in node.read_bytes(MICROK8S_ARGS).decode()

    again = agent(node, "migrate", "--once", *own)
    assert again.returncode == 0 and restarts(node) == 1

    revert = agent(node, "revert", "--once", *own)
    assert revert.returncode == 0, revert.stderr
    assert (node.kubelet() or {})["cluster_dns"] == [CLUSTER_DNS]
    assert restarts(node) == 2
    assert argv(node) == before
    assert layout_files(node) == node.layout.files  # byte-exact
    assert not any(node.path(path).exists() for path in CONFIG_DIR_DROPINS)
    assert not node.path(AGENT_UNIT_DROPIN).exists()


#: one layout per format that holds kubelet's cluster DNS
FALLBACK_LAYOUTS = [
    ("tke", {"crlf": True, "no_trailing_newline": True, "non_utf8": True}),
    ("kubeadm", {}),
    ("eks", {}),
    ("config_dir", {}),
    ("ack_kubeadm", {}),
    ("k3s_kubelet_arg", {}),
    ("microk8s", {}),
    ("kops", {}),
]


@pytest.mark.parametrize(
    ("layout", "quirks"),
    FALLBACK_LAYOUTS,
    ids=[f"{lay}-{'-'.join(q) or 'plain'}" for lay, q in FALLBACK_LAYOUTS],
)
def test_fallback_nameserver_in_every_format_and_revert_byte_exact(
    sandbox_node: NodeFactory, layout: str, quirks: dict[str, bool]
) -> None:
    """``--fallback-nameserver``: kubelet runs with the local DNS, then the original (the
    order kubelet writes into each pod's resolv.conf: kubernetes/kubernetes
    pkg/kubelet/network/dns/dns.go); ``check`` calls that migrated; the revert puts every
    byte back."""
    node = sandbox_node(layout=layout, **quirks)
    assert node.layout is not None
    migrate = agent(node, "migrate", "--once", "--fallback-nameserver")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert node.kubelet_dns() == [LOCAL, CLUSTER_DNS]
    assert (node.journal() or {})["original_cluster_dns"] == [CLUSTER_DNS]
    check = json.loads(agent(node, "check", "--json", "--fallback-nameserver").stdout)
    assert check["action"] == "none" and check["kubelet"]["cluster_dns"] == [LOCAL, CLUSTER_DNS]
    again = agent(node, "migrate", "--once", "--json", "--fallback-nameserver")
    assert again.json()["state"] == "migrated" and restarts(node) == 1

    revert = agent(node, "revert", "--once")
    assert revert.returncode == 0, revert.stderr
    assert node.kubelet_dns() == [CLUSTER_DNS] and restarts(node) == 2
    assert layout_files(node) == node.layout.files  # byte-exact
    assert not any(node.path(path).exists() for path in CONFIG_DIR_DROPINS)
    assert not node.path(AGENT_UNIT_DROPIN).exists()


def test_fallback_nameserver_toggled_on_a_migrated_node(sandbox_node: NodeFactory) -> None:
    """On, then off: each a normal change with one restart, the journal's original kept."""
    node = sandbox_node(layout="kubeadm")
    assert agent(node, "migrate", "--once").returncode == 0
    on = agent(node, "migrate", "--once", "--json", "--fallback-nameserver")
    assert on.json()["state"] == "migrated" and on.json()["restarted"] is True, on
    assert node.kubelet_dns() == [LOCAL, CLUSTER_DNS]
    off = agent(node, "migrate", "--once", "--json")
    assert off.json()["state"] == "migrated" and off.json()["restarted"] is True, off
    assert node.kubelet_dns() == [LOCAL] and restarts(node) == 3
    assert (node.journal() or {})["original_cluster_dns"] == [CLUSTER_DNS]


def test_embedded_restart_unit_and_user_restart_command(sandbox_node: NodeFactory) -> None:
    """The default restart command restarts the unit that hosts an embedded kubelet; a
    restart command the user sets is run as given (here: try-restart instead of restart)."""
    node = sandbox_node(layout="microk8s")
    rep = json.loads(agent(node, "check", "--json").stdout)
    assert rep["kubelet"]["restart_unit"] == "snap.microk8s.daemon-kubelite.service"
    assert "control-plane" in rep["reason"] and "API server" in rep["kubelet"]["note"]
    own = "nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl try-restart "
    result = agent(node, "migrate", "--once", "--restart-command", own + node.service)
    assert result.returncode == 0, result.stderr
    [call] = node.restarts()
    assert call["argv"] == ["try-restart", node.service]
    assert node.kubelet_dns() == [LOCAL]


@pytest.mark.parametrize("layout", ["tke", "k3s_kubelet_arg", "rke2_server_kubelet_arg"])
def test_kubelet_not_coming_back_is_rolled_back(sandbox_node: NodeFactory, layout: str) -> None:
    node = sandbox_node(layout=layout)
    node.set_kubelet_fault()
    result = agent(node, "migrate", "--once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rolling back" in result.stderr
    assert node.dns_file.read_bytes() == node.original
    assert restarts(node) == 2


def test_k3s_killed_after_the_write_is_finished_by_the_next_run(
    sandbox_node: NodeFactory,
) -> None:
    """The journal's pending change owes a restart of k3s (k3s's kubelet has no command
    line of its own to show the old value): the next run restarts it, once at most."""
    node = sandbox_node(layout="k3s_dotd")
    assert node.layout is not None
    node.agent_killed_at("written", "migrate", "--once", "--verify-timeout", "10")
    restarted = restarts(node)  # the kill may leave the restart command running to its end
    done = agent(node, "migrate", "--once", "--json")
    assert done.returncode == 0, done
    assert done.json()["state"] == "migrated" and restarts(node) - restarted <= 1
    assert node.kubelet_dns() == [LOCAL]
    assert agent(node, "migrate", "--once", "--json").json()["restarted"] is False


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


def test_check_shows_node_cache_readiness_beside_the_dns_answer(
    sandbox_node: NodeFactory,
) -> None:
    """The real node-cache (the chart's Corefile and args): /health on 169.254.20.10:8080
    says ready; stopped (SIGTERM, as kubelet stops the pod) or killed (SIGKILL, an OOM
    kill), nothing answers there any more while the address stays bound."""
    node = sandbox_node(layout="tke")
    table = agent(node, "check").stdout.splitlines()
    assert f"node-cache       ready=True {LOCAL} /health ok" in table, table
    rep = agent(node, "check", "--json").json()["local_dns"]
    assert rep["healthy"] is True and rep["node_cache_ready"] is True
    health = rep["addresses"][0]["node_cache"]
    assert health == {
        "url": f"http://{LOCAL}:8080/health",
        "ready": True,
        "status": 200,
        "error": "",
    }
    node.stop_dns()
    rep = agent(node, "check", "--json", "--probe-timeout", "0.5").json()["local_dns"]
    assert rep["bound"] is True and rep["healthy"] is False
    assert rep["node_cache_ready"] is False
    health = rep["addresses"][0]["node_cache"]
    assert health["status"] is None and "refused" in health["error"], health
    node.start_dns()
    process = node.local_dns_process
    assert process is not None
    process.kill()
    process.wait(timeout=10)
    rep = agent(node, "check", "--json", "--probe-timeout", "0.5").json()["local_dns"]
    assert rep["bound"] is True and rep["node_cache_ready"] is False


SKIP_CONNTRACK = "NodeLocal DNS Cache: skip conntrack"
ALLOW_DNS = "NodeLocal DNS Cache: allow DNS traffic"


def test_check_shows_node_cache_notrack_rules(sandbox_node: NodeFactory) -> None:
    """The real node-cache (-setupiptables, the default the chart keeps) inserts its 12
    NOTRACK/ACCEPT rules for 169.254.20.10 in the node's raw and filter tables once CoreDNS
    runs (-pidfile); check reads them with the node's own iptables-save through nsenter
    into PID 1 (kubernetes/dns cmd/node-cache/app/cache_app.go initIptables); deleted
    ones are named; a route that fails is said so, not reported as missing rules."""
    node = sandbox_node(layout="tke")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        saved = node.exec(["iptables-save", "-t", "filter"]).stdout
        if saved.count(ALLOW_DNS) == 4:
            break
        time.sleep(0.2)
    table = agent(node, "check").stdout.splitlines()
    assert f"NOTRACK rules    {LOCAL} 12/12" in table, table
    rules = agent(node, "check", "--json").json()["local_dns"]["addresses"][0]["notrack_rules"]
    assert rules == {"expected": 12, "present": 12, "missing": [], "error": "", "warning": ""}

    # deleted inside the node's network namespace (node-cache puts them back at its next
    # 60 s sync)
    for table_name, chain, target, comment in (
        ("raw", "PREROUTING", "NOTRACK", SKIP_CONNTRACK),
        ("filter", "INPUT", "ACCEPT", ALLOW_DNS),
    ):
        rule = ["-p", "udp", "-d", LOCAL, "--dport", "53", "-j", target]
        deleted = node.exec(
            [
                "iptables",
                "-t",
                table_name,
                "-D",
                chain,
                *rule,
                "-m",
                "comment",
                "--comment",
                comment,
            ]
        )
        assert deleted.returncode == 0, deleted.stderr
    table = agent(node, "check").stdout.splitlines()
    assert (
        f"NOTRACK rules    {LOCAL} 10/12 missing: "
        f"filter INPUT -p udp -d {LOCAL} --dport 53 -j ACCEPT; "
        f"raw PREROUTING -p udp -d {LOCAL} --dport 53 -j NOTRACK"
    ) in table, table

    failing = agent(node, "check", "--iptables-save-prefix", "false")
    assert failing.returncode == 0, failing.stderr
    row = next(line for line in failing.stdout.splitlines() if line.startswith("NOTRACK"))
    assert row.startswith(f"NOTRACK rules    {LOCAL} not read (the host's firewall rules"), row
    assert "exited with status 1" in row, row
    rules = agent(node, "check", "--json", "--iptables-save-prefix", "false").json()
    rules = rules["local_dns"]["addresses"][0]["notrack_rules"]
    assert rules["present"] is None and rules["missing"] == []
    assert "['false', 'iptables-save', '-t', 'raw'] exited with status 1" in rules["error"]

    # a container without CAP_NET_ADMIN and CAP_NET_RAW (the chart adds both to the agent's)
    check = ["-m", "nodelocaldns_agent", *node.agent_argv("check", "--json")]
    capped = node.exec(
        ["setpriv", "--bounding-set", "-net_admin,-net_raw", node.python_binary, *check],
        env=node.python_env(),
        cwd=node.python_cwd,
    )
    assert capped.returncode == 0, capped.stderr
    rules = json.loads(capped.stdout)["local_dns"]["addresses"][0]["notrack_rules"]
    assert rules["present"] is None
    assert "iptables-save needs CAP_NET_ADMIN" in rules["error"], rules
    assert "Permission denied (you must be root)" in rules["error"], rules


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


# ----------------------------------------------------------- decoys (issue 13, finding 1)
#: a pod's emptyDir on the node (kubelet's getPodVolumeDir: pods/<uid>/volumes/<plugin>/<name>)
POD_VOLUME = (
    "/var/lib/kubelet/pods/0c6d2f5e-8d3b-4c1e-9a57-3f0e2b1c4d5a/volumes/kubernetes.io~empty-dir/x"
)
DECOY_CONFIG = f"{POD_VOLUME}/config.yaml"
#: what a tenant puts in its emptyDir for the agent to "migrate"
DECOY_BYTES = b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" + (
    b"clusterDNS:\n- 10.96.0.10\nauthentication:\n  anonymous:\n    enabled: true\n"
)


def decoy(node: SandboxNode, *flags: str) -> psutil.Process:
    """A pod's process called kubelet: started after the node's kubelet (so it is the
    newest), in a mount namespace of its own, as a container's process is."""
    kubelet = str(node.files.bin / "kubelet")  # a link to Python: comm "kubelet"
    proc = node.spawn(
        "decoy", ["unshare", "--mount", "--", kubelet, "-c", "import time; time.sleep(600)", *flags]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        inner = proc.inner_pid()
        with contextlib.suppress(psutil.NoSuchProcess):
            if inner is not None and psutil.Process(inner).name() == "kubelet":
                found = psutil.Process(inner)
                real = node.host_pid(node.kubelet_pid() or 0)
                assert (
                    real is not None and found.create_time() >= psutil.Process(real).create_time()
                )
                assert os.readlink(f"/proc/{inner}/ns/mnt") != os.readlink(f"/proc/{real}/ns/mnt")
                return found
        time.sleep(0.01)
    raise AssertionError("the decoy kubelet did not start")


def write(node: SandboxNode, host_path: str, data: bytes) -> None:
    path = node.path(host_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_decoy_kubelet_with_a_config_in_a_pod_volume_is_ignored(
    sandbox_node: NodeFactory,
) -> None:
    node = sandbox_node(layout="tke")
    write(node, DECOY_CONFIG, DECOY_BYTES)
    decoy(node, f"--config={DECOY_CONFIG}")
    check = agent(node, "check", "--json")
    assert check.returncode == 0, check
    kubelet = check.json()["kubelet"]
    assert (kubelet["source"], kubelet["pid"]) == ("/etc/kubernetes/kubelet", node.kubelet_pid())
    migrate = agent(node, "migrate", "--once", "--json")
    assert migrate.returncode == 0, migrate
    assert migrate.json()["state"] == "migrated"
    assert node.kubelet_dns() == [LOCAL]
    assert node.read_bytes(DECOY_CONFIG) == DECOY_BYTES
    assert restarts(node) == 1


def test_the_newest_decoy_with_cluster_dns_is_ignored(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="tke")
    decoy(node, "--cluster-dns=10.0.0.53")
    rep = agent(node, "check", "--json").json()
    kubelet = rep["kubelet"]
    assert kubelet["pid"] == node.kubelet_pid()
    assert kubelet["running_cluster_dns"] == kubelet["cluster_dns"] == ["10.96.0.10"]
    assert rep["action"] == "migrate"


def test_a_config_path_with_dotdot_is_refused(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="kubeadm", kubelet=False)
    dropin = node.path("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")
    dropin.write_text(
        dropin.read_text().replace(
            "--config=/var/lib/kubelet/config.yaml",
            "--config=/etc/kubernetes/../../var/lib/kubelet/config.yaml",
        )
    )
    node.systemctl("start", "kubelet", quiet=True, check=True)
    node.wait_kubelet()
    before = node.dns_file.read_bytes()
    result = agent(node, "migrate", "--once")
    assert result.returncode == 2, result
    assert "kubelet --config '/etc/kubernetes/../../var/lib/kubelet/config.yaml'" in result.stderr
    assert "'..' component" in result.stderr
    assert node.dns_file.read_bytes() == before
    assert restarts(node) == 0 and node.journal() is None


def test_a_flooded_config_dir_is_refused(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="config_dir")
    padding = b"# padding\n" * 6_500  # 65 KB, a valid (empty) drop-in
    for i in range(200):
        write(node, f"/etc/kubernetes/kubelet.conf.d/{i:03d}-flood.conf", padding)
    result = agent(node, "migrate", "--once")
    assert result.returncode == 2, result
    assert "holds 201 *.conf files; expected at most 64" in result.stderr
    assert "Traceback" not in result.stderr
    assert restarts(node) == 0 and node.journal() is None


def test_systemd_unreachable_the_unit_files_decide(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="tke")
    write(node, DECOY_CONFIG, DECOY_BYTES)
    decoy(node, f"--config={DECOY_CONFIG}")
    unreachable = ("--systemctl-command", "false")
    check = agent(node, "check", "--json", *unreachable)
    assert check.returncode == 0, check
    kubelet = check.json()["kubelet"]
    assert kubelet["source"] == "/etc/kubernetes/kubelet"
    assert kubelet["found_by"] == (
        "unit /usr/lib/systemd/system/kubelet.service -> EnvironmentFile"
    )
    assert kubelet["pid"] is None
    assert "could not be asked" in kubelet["systemd_error"]
    # and without a unit, nothing trustworthy says how kubelet runs: failed, not edited
    node.path("/usr/lib/systemd/system/kubelet.service").unlink()
    result = agent(node, "migrate", "--once", *unreachable)
    assert result.returncode == 2, result
    assert "could not be asked" in result.stderr
    assert "no kubelet.service was found" in result.stderr
    assert node.read_bytes(DECOY_CONFIG) == DECOY_BYTES
    assert node.dns_file.read_bytes() == node.original
    assert restarts(node) == 0


# ------------------------------------------- crash at any point, the agent's unit drop-in
#: the steps the agent logs on its way through the unit drop-in (bench/faults.py kills at
#: the same ones on the TKE layout): a drop-in written but not reloaded, reloaded but
#: kubelet not restarted, restarted but not verified ...
UNIT_STEPS = {
    "migrate": ["backup", "journal", "written", "reload", "reloaded", "restart", "restarted",
                "verified"],
    "revert": ["journal", "written", "reload", "reloaded", "restart", "restarted", "verified"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("goal", "step"), [(goal, step) for goal, steps in UNIT_STEPS.items() for step in steps]
)
def test_unit_dropin_converges_after_a_kill_at_any_step(
    sandbox_node: NodeFactory, goal: str, step: str
) -> None:
    node = sandbox_node(layout="ack_kubeadm")
    assert node.layout is not None
    before = argv(node)
    if goal == "revert":
        assert agent(node, "migrate", "--once").returncode == 0
    node.agent_killed_at(step, goal, "--once", "--verify-timeout", "10")
    restarted = restarts(node)

    done = agent(node, goal, "--once", "--json")

    assert done.returncode == 0, done
    assert done.json()["state"] == ("migrated" if goal == "migrate" else "reverted")
    assert restarts(node) - restarted <= 1
    assert layout_files(node) == node.layout.files
    if goal == "migrate":
        assert node.path(AGENT_UNIT_DROPIN).is_file()
        assert argv(node) == [word.replace(CLUSTER_DNS, LOCAL) for word in before]
    else:
        assert not node.path(AGENT_UNIT_DROPIN).exists()
        assert argv(node) == before
    again = agent(node, goal, "--once", "--json")
    assert again.json()["restarted"] is False, again


# ------------------------------------------------- issue 14: platforms and refusals by layout
def test_nodeadm_rewriting_config_json_at_boot_keeps_the_migration(
    sandbox_node: NodeFactory,
) -> None:
    """EKS AL2023: nodeadm writes config.json afresh at every boot (nodeadm/internal/
    kubelet/config.go). The agent leaves it alone and adds its drop-in to config.json.d,
    which nodeadm does not clear, so after a boot kubelet still starts with the local DNS."""
    node = sandbox_node(layout="eks_nodeadm")
    assert node.layout is not None
    result = agent(node, "migrate", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert layout_files(node) == node.layout.files  # config.json and 40-nodeadm.conf as written
    assert node.path(f"{NODEADM_CONFIG_DIR}/99-nodelocaldns-agent.conf").is_file()
    # the boot: nodeadm writes its files again, then systemd starts kubelet
    for path, data in node.layout.files.items():
        node.path(path).write_bytes(data)
    pid = node.kubelet_pid()
    node.systemctl("restart", "kubelet", quiet=True, check=True)
    node.wait_kubelet(previous_pid=pid)
    assert node.kubelet_dns() == [LOCAL]
    check = agent(node, "check", "--json")
    assert check.json()["action"] == "none", check
    assert restarts(node) == 1


def test_magnum_kubelet_in_a_podman_container_is_refused(sandbox_node: NodeFactory) -> None:
    """OpenStack Magnum (Fedora CoreOS): kubelet.service runs ``bash -c 'podman run ...
    kubelet $KUBELET_ARGS'``. The sandbox's systemctl cannot run podman, so kubelet is not
    started and the unit decides; on a real node the unit's main process is podman, which
    fails the trust test (detect/trust.py) and is refused as well. Nothing is written."""
    node = sandbox_node(layout="magnum_fcos", kubelet=False)
    assert node.layout is not None
    for command in ("check", "migrate"):
        result = agent(node, command, *(("--once",) if command == "migrate" else ()))
        assert result.returncode == 2, result
        assert "it runs /bin/bash, not kubelet" in result.stderr
        assert "Traceback" not in result.stderr
    assert layout_files(node) == node.layout.files
    assert restarts(node) == 0 and node.journal() is None
