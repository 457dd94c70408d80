"""Tests of the sandbox rig itself: the fake node, its stand-ins and its layouts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from testing.sandbox import layouts
from testing.sandbox import node as node_module
from testing.sandbox.constants import (
    BAD_DNS,
    CLUSTER_DNS,
    DEFAULT_RESTART,
    KUBERNETES_IP,
    LOCAL_DNS,
)
from testing.sandbox.kubelet_standin import (
    KubeletFailure,
    effective_cluster_dns,
    parse_flags,
)
from testing.sandbox.node import (
    REPO_ROOT,
    SandboxError,
    SandboxNode,
    close_all,
)
from testing.sandbox.nodefiles import reroot
from testing.sandbox.systemctl_stub import inside_node, load_unit
from tests.conftest import NodeFactory


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _node_pids(node: SandboxNode) -> list[int]:
    return [p.pid for p in node.processes()]


# --- without namespaces -----------------------------------------------------------------


def test_reroot_follows_absolute_symlinks_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc/real").mkdir(parents=True)
    (tmp_path / "etc/real/f").write_text("x")
    (tmp_path / "etc/link").symlink_to("/etc/real/f")
    (tmp_path / "etc/rel").symlink_to("real/f")
    (tmp_path / "etc/loop").symlink_to("/etc/loop")
    assert reroot(tmp_path, "/etc/link") == tmp_path / "etc/real/f"
    assert reroot(tmp_path, "/etc/rel") == tmp_path / "etc/real/f"
    assert reroot(tmp_path, "/../../etc/link") == tmp_path / "etc/real/f"
    assert reroot(tmp_path, "/etc/missing") == tmp_path / "etc/missing"
    with pytest.raises(OSError, match="symbolic links"):
        reroot(tmp_path, "/etc/loop")


def _config(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}"
    )


def test_standin_cluster_dns_precedence(tmp_path: Path) -> None:
    _config(tmp_path / "c.yaml", "clusterDNS: [10.0.0.1]\n")
    _config(tmp_path / "d/20-b.conf", "clusterDNS: [10.0.0.3]\n")
    _config(tmp_path / "d/10-a.conf", "clusterDNS: [10.0.0.2]\n")
    _config(tmp_path / "d/30-c.conf", "maxPods: 5\n")
    (tmp_path / "d/99-ignored.yaml").write_text("not: [a, kubelet, drop-in\n")

    def dns(*argv: str) -> list[str]:
        return effective_cluster_dns(tmp_path, parse_flags(argv))

    assert dns() == []
    assert dns("--config", "/c.yaml") == ["10.0.0.1"]
    assert dns("--config=/c.yaml", "--config-dir=/d") == ["10.0.0.3"]
    assert dns("--config=/c.yaml", "--cluster-dns=10.0.0.9,10.0.0.8") == ["10.0.0.9", "10.0.0.8"]
    assert dns("--cluster-dns=10.0.0.9", "--cluster_dns", "10.0.0.7") == ["10.0.0.9", "10.0.0.7"]
    assert dns("--config=/c.yaml", "--cluster-dns=") == []
    assert dns("--kubeconfig", "/k", "positional", "--", "--cluster-dns=10.0.0.5") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cluster-dns=kube-dns"], "invalid configuration"),
        (["--config=/missing.yaml"], "failed to load"),
        (["--config=/bad.yaml"], "failed to load"),
        (["--config=/pod.yaml"], "expected kind KubeletConfiguration"),
        (["--config=/str.yaml"], "must be a list"),
        (["--config-dir=/nodir"], "not a directory"),
        (["--config"], "needs an argument"),
    ],
)
def test_standin_refuses_what_kubelet_refuses(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"kind: KubeletConfiguration\n# caf\xe9\n")
    (tmp_path / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\n")
    _config(tmp_path / "str.yaml", "clusterDNS: 10.0.0.1\n")
    with pytest.raises(KubeletFailure, match=message):
        effective_cluster_dns(tmp_path, parse_flags(argv))


@pytest.mark.parametrize("name", sorted(layouts.LAYOUTS))
def test_layout_writes_what_it_returns(tmp_path: Path, name: str) -> None:
    layout = layouts.write_layout(tmp_path, name)
    for host_path, data in layout.files.items():
        assert (tmp_path / host_path.lstrip("/")).read_bytes() == data
    assert layout.dns_file in layout.files
    assert layout.cluster_dns == ("10.96.0.10",)
    assert layout.cni is not None
    assert any(p.startswith("/etc/cni/net.d/") for p in layout.files)
    unit = load_unit(tmp_path, f"{layout.service}.service")
    assert unit.sources[0] == layout.unit
    # the hard way installs kubelet under /usr/local/bin; k3s and RKE2 in /usr/local/bin
    # too, MicroK8s's kubelite runs through `snap run`; GCE's kubelet is in
    # /home/kubernetes/bin, Flatcar's in /opt/bin, Magnum's runs in podman through bash
    assert unit.exec_start[0] in (
        "/usr/bin/kubelet",
        "/usr/local/bin/kubelet",
        "/home/kubernetes/bin/kubelet",
        "/opt/bin/kubelet",
        "/bin/bash",
        "/usr/local/bin/k3s",
        "/usr/local/bin/rke2",
        "/usr/bin/snap",
    )


def test_layout_quirks_change_only_the_deciding_file(tmp_path: Path) -> None:
    plain = layouts.write_layout(tmp_path / "plain", "tke")
    odd = layouts.write_layout(
        tmp_path / "odd",
        "tke",
        symlink=True,
        crlf=True,
        no_trailing_newline=True,
        non_utf8=True,
    )
    target = odd.symlinks["/etc/kubernetes/kubelet"]
    assert target == "/etc/kubernetes/real/kubelet.env"
    assert os.readlink(tmp_path / "odd/etc/kubernetes/kubelet") == target
    assert not Path(target).exists()  # only the root has it
    data = odd.real_path(odd.dns_file).read_bytes()
    assert data.startswith(b"# edited by Jos\xe9")
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert not data.endswith(b"\n")
    assert plain.files[plain.unit] == odd.files[odd.unit]
    with pytest.raises(ValueError, match="non_utf8 applies to env files"):
        layouts.write_layout(tmp_path / "yaml", "kubeadm", non_utf8=True)


def test_unit_dropins_merge_like_systemd(tmp_path: Path) -> None:
    layouts.write_layout(tmp_path, "kubeadm")
    unit = load_unit(tmp_path)
    assert unit.exec_start == [
        "/usr/bin/kubelet",
        "$KUBELET_KUBECONFIG_ARGS",
        "$KUBELET_CONFIG_ARGS",
        "$KUBELET_KUBEADM_ARGS",
        "$KUBELET_EXTRA_ARGS",
    ]
    assert ["KUBELET_CONFIG_ARGS", "--config=/var/lib/kubelet/config.yaml"] in unit.environment
    assert unit.environment_files == [
        ("/var/lib/kubelet/kubeadm-flags.env", True),
        ("/etc/default/kubelet", True),
    ]
    # a drop-in of the same name under /etc replaces the packaged one
    override = tmp_path / "etc/systemd/system/kubelet.service.d/20-x.conf"
    override.write_text("[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --v=4\n")
    packaged = tmp_path / "usr/lib/systemd/system/kubelet.service.d/20-x.conf"
    packaged.parent.mkdir(parents=True)
    packaged.write_text("[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --v=9\n")
    assert load_unit(tmp_path).exec_start == ["/usr/bin/kubelet", "--v=4"]


# --- in a node --------------------------------------------------------------------------


@pytest.mark.netns
def test_dns_answers_inside_the_node_and_follows_start_stop(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(kube_proxy=False, kubelet=False)
    answer = node.resolve()
    assert answer.addresses == (KUBERNETES_IP,) and answer.error == ""
    assert answer.latency is not None and answer.latency < 0.1
    node.stop_dns()
    assert node.resolve(timeout=0.3).error in ("refused", "timeout")
    node.start_dns()
    assert node.resolve().addresses == (KUBERNETES_IP,)
    node.set_local_dns("unbound")
    assert LOCAL_DNS not in node.exec(["ip", "-o", "addr"]).stdout
    node.start_dns()
    assert node.resolve().addresses == (KUBERNETES_IP,)


@pytest.mark.netns
def test_node_links_hostname_and_endpoints(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(name="worker-1")
    code = (
        "import json, socket, psutil\n"
        "addrs = {n: [a.address for a in v if a.family == socket.AF_INET]"
        " for n, v in psutil.net_if_addrs().items()}\n"
        "procs = {p.info['name']: p.pid for p in psutil.process_iter(['name'])}\n"
        "print(json.dumps([socket.gethostname(), addrs, procs]))\n"
    )
    hostname, addrs, procs = json.loads(node.python(["-c", code]).stdout)
    assert hostname == "worker-1"
    assert addrs["nodelocaldns"] == [LOCAL_DNS]
    assert addrs["kube-ipvs0"] == ["10.96.0.10"]
    assert procs["kubelet"] == node.kubelet_pid()
    assert {"kube-proxy", "node-cache", "dnsmasq"} <= set(procs)  # dnsmasq: its upstream
    assert node.http_get("http://127.0.0.1:10248/healthz") == (200, "ok")
    assert node.http_get("http://127.0.0.1:10249/proxyMode") == (200, "ipvs")
    flags = node.exec(["ip", "-o", "link", "show", "kube-ipvs0"]).stdout
    assert ",UP" not in flags  # kube-proxy leaves it down


@pytest.mark.netns
def test_iptables_mode_without_kube_proxy(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(proxy_mode="iptables", kube_proxy=False, local_dns="down")
    links = node.exec(["ip", "-o", "addr"]).stdout
    assert "kube-ipvs0" not in links and LOCAL_DNS in links
    assert node.http_get("http://127.0.0.1:10249/proxyMode", timeout=0.5)[0] == 0
    assert node.resolve(timeout=0.3).error in ("refused", "timeout")
    with SandboxNode(
        node.workdir.parent / "other",
        proxy_mode="iptables",
        layout="eks",
        local_dns="unbound",
        kubelet=False,
    ) as other:
        assert other.http_get("http://127.0.0.1:10249/proxyMode") == (200, "iptables")


@pytest.mark.netns
def test_restart_from_inside_the_node_follows_the_env_file(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(kube_proxy=False)
    assert node.layout is not None
    before = node.kubelet()
    assert before is not None and before["cluster_dns"] == ["10.96.0.10"]
    env = node.layout.real_path(node.layout.dns_file)
    env.write_text(env.read_text().replace("=10.96.0.10", f"={LOCAL_DNS}"))
    started = time.perf_counter()
    result = node.exec(DEFAULT_RESTART)
    assert result.returncode == 0, result.stderr
    after = node.wait_kubelet(previous_pid=before["pid"])
    assert time.perf_counter() - started < 3
    assert after["cluster_dns"] == [LOCAL_DNS]
    assert node.kubelet_pid() == after["pid"] != before["pid"]
    assert [c["argv"] for c in node.restarts()] == [["restart", "kubelet"]]
    assert node.http_get("http://127.0.0.1:10248/healthz") == (200, "ok")
    # every start is logged; the restart lasted from the systemctl call to the new healthz
    starts = node.kubelet_starts()
    assert [s["pid"] for s in starts] == [before["pid"], after["pid"]]
    assert all("serving" in s and s["serving"] >= s["time"] for s in starts)
    [(called, served)] = node.restart_spans()
    assert served == after["serving"] and called <= starts[1]["time"] <= served
    # the old kubelet was reaped, not left as a zombie
    zombies = [
        p
        for p in psutil.Process(node.init_pid).children(recursive=True)
        if p.status() == psutil.STATUS_ZOMBIE
    ]
    assert zombies == []


@pytest.mark.netns
def test_flag_beats_config_file(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(layout="kubeadm_flag", kube_proxy=False, local_dns="unbound")
    config = node.root / "var/lib/kubelet/config.yaml"
    config.write_text(config.read_text().replace("- 10.96.0.10", "- 10.0.0.99"))
    pid = node.kubelet_pid()
    node.systemctl("restart", "kubelet", check=True)
    assert node.wait_kubelet(previous_pid=pid)["cluster_dns"] == ["10.96.0.10"]
    extra = node.root / "etc/default/kubelet"
    extra.write_text(extra.read_text().replace("10.96.0.10", LOCAL_DNS))
    pid = node.kubelet_pid()
    node.systemctl("restart", "kubelet", check=True)
    assert node.wait_kubelet(previous_pid=pid)["cluster_dns"] == [LOCAL_DNS]


@pytest.mark.netns
def test_unit_changes_need_daemon_reload(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(kube_proxy=False, local_dns="unbound")
    dropin = node.root / "etc/systemd/system/kubelet.service.d/99-test.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --cluster-dns=10.0.0.53\n")
    for reload, expected in ((False, ["10.96.0.10"]), (True, ["10.0.0.53"])):
        if reload:
            node.systemctl("daemon-reload", check=True)
        pid = node.kubelet_pid()
        node.systemctl("restart", "kubelet", check=True)
        assert node.wait_kubelet(previous_pid=pid)["cluster_dns"] == expected


LAYOUT_CASES = [
    *((name, {}) for name in sorted(layouts.LAYOUTS) if name not in layouts.CONTAINERIZED_KUBELET),
    ("tke", {"symlink": True, "crlf": True, "no_trailing_newline": True, "non_utf8": True}),
    ("kubeadm", {"symlink": True, "crlf": True}),
    ("eks", {"symlink": True, "no_trailing_newline": True}),
    ("config_dir", {"symlink": True}),
    ("sysconfig", {"crlf": True, "non_utf8": True}),
]


@pytest.mark.netns
@pytest.mark.parametrize(("name", "quirks"), LAYOUT_CASES, ids=lambda v: str(v or "plain"))
def test_every_layout_gives_the_expected_cluster_dns(
    sandbox_node: NodeFactory, name: str, quirks: dict[str, bool]
) -> None:
    node = sandbox_node(
        layout=name, cluster_dns="10.96.0.10", kube_proxy=False, local_dns="unbound", **quirks
    )
    report = node.kubelet()
    assert report is not None and report["cluster_dns"] == ["10.96.0.10"]
    if name == "eks":
        assert report["config"] == "/etc/kubernetes/kubelet/kubelet-config.json"
    if name == "config_dir":
        assert report["config_dir"] == "/etc/kubernetes/kubelet.conf.d"


@pytest.mark.netns
def test_kubelet_that_does_not_come_back(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(kube_proxy=False, local_dns="unbound")
    node.set_kubelet_fault()
    assert node.systemctl("restart", "kubelet").returncode == 0  # Type=simple: no wait
    deadline = time.monotonic() + 5
    while node.systemctl("is-active", "kubelet").stdout != "failed\n":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert node.kubelet_pid() is None
    assert node.http_get("http://127.0.0.1:10248/healthz", timeout=0.5)[0] == 0
    assert "fault injected" in node.log_tail("kubelet")
    node.set_kubelet_fault(False)
    node.systemctl("restart", "kubelet", check=True)
    assert node.wait_kubelet()["healthz"]
    # a cluster DNS the node refuses (BAD_DNS by default) is a kubelet that does not come back
    env = node.dns_file
    env.write_text(env.read_text().replace(f"={CLUSTER_DNS}", f"={BAD_DNS}"))
    pid = node.kubelet_pid()
    node.systemctl("restart", "kubelet", check=True)
    refused = re.escape(f"refusing to start with --cluster-dns={BAD_DNS}")
    with pytest.raises(SandboxError, match=refused):
        node.wait_kubelet(previous_pid=pid, timeout=2)
    assert f"--cluster-dns={BAD_DNS}" in node.kubelet_starts()[-1]["argv"]


@pytest.mark.netns
def test_healthz_delay(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(kube_proxy=False, local_dns="unbound", healthz_delay=0.5)
    pid = node.kubelet_pid()
    started = time.monotonic()
    node.systemctl("restart", "kubelet", check=True)
    assert node.http_get("http://127.0.0.1:10248/healthz", timeout=0.2)[0] == 0
    node.wait_kubelet(previous_pid=pid)
    assert time.monotonic() - started >= 0.5


@pytest.mark.netns
def test_systemctl_stub_verbs_and_log(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(kube_proxy=False, local_dns="unbound")
    assert node.systemctl_calls() == []  # the rig's own boot call is not logged
    active = node.systemctl("is-active", "kubelet")
    assert (active.returncode, active.stdout) == (0, "active\n")
    main_pid = node.systemctl("show", "kubelet", "-p", "MainPID", "--value").stdout
    assert int(main_pid) == node.kubelet_pid()
    unknown = node.systemctl("frobnicate", "kubelet")
    assert unknown.returncode == 1 and "Unknown command verb" in unknown.stderr
    assert node.systemctl("restart", "containerd").returncode == 5
    node.systemctl("stop", "kubelet", check=True)
    stopped = node.systemctl("is-active", "kubelet.service")
    assert (stopped.returncode, stopped.stdout) == (3, "inactive\n")
    assert [c["argv"][0] for c in node.systemctl_calls()] == [
        "is-active",
        "show",
        "frobnicate",
        "restart",
        "stop",
        "is-active",
    ]
    assert node.restarts() == []
    # the stub refuses to act outside its node (it would start a kubelet on the machine)
    assert not inside_node(node.files)
    code = (
        "import sys; from pathlib import Path\n"
        "from testing.sandbox.nodefiles import NodeFiles\n"
        "from testing.sandbox.systemctl_stub import inside_node\n"
        "print(inside_node(NodeFiles(Path(sys.argv[1]))))\n"
    )
    assert node.python(["-c", code, str(node.workdir)]).stdout == "True\n"


@pytest.mark.netns
def test_exec_timeout_kills_the_process_inside(sandbox_node: NodeFactory) -> None:
    node = sandbox_node(kube_proxy=False, kubelet=False, local_dns="unbound")
    with pytest.raises(subprocess.TimeoutExpired):
        node.exec(["sleep", "30"], timeout=0.3)
    assert "sleep 30" not in node.exec(["ps", "-eo", "args"]).stdout
    code = "import nodelocaldns_agent as a, os; print(a.__file__, os.getcwd())"
    out = node.python(["-c", code]).stdout
    assert out.split() == [str(REPO_ROOT / "nodelocaldns_agent/__init__.py"), str(REPO_ROOT)]


@pytest.mark.netns
def test_close_leaves_nothing(tmp_path: Path) -> None:
    node = SandboxNode(tmp_path / "n").start()
    pids = _node_pids(node)
    names = sorted(p.name() for p in node.processes())
    # the upstream dnsmasq forks a child per TCP connection (node-cache's force_tcp)
    assert [n for n in names if n != "dnsmasq"] == [
        "bash",  # init
        "kube-proxy",
        "kubelet",
        "node-cache",
        "sleep",  # init's
        "unshare",
    ]
    assert "dnsmasq" in names
    node.close()
    node.close()
    assert _pids_alive(pids) == []
    assert "/usr/bin/systemctl" not in Path("/proc/self/mountinfo").read_text()
    # a node left open is closed at exit by the registry
    leaked = SandboxNode(tmp_path / "leaked", kubelet=False).start()
    pids = _node_pids(leaked)
    close_all()
    assert _pids_alive(pids) == []


@pytest.mark.netns
def test_a_killed_test_process_takes_its_node_with_it(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from testing.sandbox.node import SandboxNode\n"
        f"node = SandboxNode({str(tmp_path / 'n')!r}, kube_proxy=False).start()\n"
        "print(node.init_pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    init_pid = int(result.stdout)
    deadline = time.monotonic() + 5
    while _pids_alive([init_pid]):
        assert time.monotonic() < deadline, "the node outlived its creator"
        time.sleep(0.02)


@pytest.mark.netns
def test_stub_laid_over_usr_bin_when_the_machine_has_no_systemctl(
    sandbox_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_module, "SYSTEMCTL", "/usr/bin/no-such-systemctl")
    node = sandbox_node(kube_proxy=False, local_dns="unbound")
    assert "overlay" in node.exec(["findmnt", "-n", "-o", "FSTYPE", "/usr/bin"]).stdout
    pid = node.kubelet_pid()
    node.systemctl("restart", "kubelet", check=True)
    assert node.wait_kubelet(previous_pid=pid)["healthz"]
