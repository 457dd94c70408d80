"""Embedded kubelets (issue 14, part 3): which layout a host is, k3s's config merge and the
``kubelet-arg`` edit, MicroK8s's arguments file, the trust test with the hosting unit's
program names, and the engine over fake hosts. The real CLI on sandbox nodes is in
``tests/test_cli_sandbox.py``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from nodelocaldns_agent.detect import embedded
from nodelocaldns_agent.detect.embedded import K3S, MICROK8S, RKE2, choose_layout
from nodelocaldns_agent.detect.kubelet import MAX_CONFIG_DIR_BYTES, MAX_CONFIG_DIR_FILES
from nodelocaldns_agent.detect.trust import untrusted
from nodelocaldns_agent.engine import NodeEngine
from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.host.files import FileJournal
from nodelocaldns_agent.host.systemd import UnitStatus
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig import argsfile, k3sconfig
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.settings import HOST_SYSTEMCTL, NodeSettings
from nodelocaldns_agent.state import Result
from testing.fakenode import FakeNode
from testing.fakes import FakeProcesses, host_process


def status(unit: str, load: str = "loaded", active: str = "active", pid: int = 0) -> UnitStatus:
    return UnitStatus(unit, load, active, pid)


# ---------------------------------------------------------------- which layout
@pytest.mark.parametrize(
    ("units", "expected"),
    [
        ({}, None),
        ({"k3s.service": status("k3s.service", "not-found", "inactive")}, None),
        ({"k3s.service": status("k3s.service")}, ("k3s", "k3s.service")),
        ({"k3s-agent.service": status("k3s-agent.service")}, ("k3s", "k3s-agent.service")),
        ({"rke2-agent.service": status("rke2-agent.service")}, ("rke2", "rke2-agent.service")),
        (
            {"snap.microk8s.daemon-kubelite.service": status("snap.microk8s.daemon-kubelite")},
            ("microk8s", "snap.microk8s.daemon-kubelite"),
        ),
        # an agent converted from a server: both units installed, one runs
        (
            {
                "k3s.service": status("k3s.service", active="inactive"),
                "k3s-agent.service": status("k3s-agent.service"),
            },
            ("k3s", "k3s-agent.service"),
        ),
        # installed, not running: chosen (the locate step then says it is not running)
        (
            {"rke2-server.service": status("rke2-server.service", active="failed")},
            ("rke2", "rke2-server.service"),
        ),
    ],
)
def test_choose_layout(units: dict[str, UnitStatus], expected: tuple[str, str] | None) -> None:
    found = choose_layout(units)
    assert (None if found is None else (found[0].name, found[1].unit)) == expected


@pytest.mark.parametrize(
    "units",
    [
        {"k3s.service": status("k3s.service"), "rke2-agent.service": status("rke2-agent.service")},
        {
            "k3s.service": status("k3s.service", active="inactive"),
            "k3s-agent.service": status("k3s-agent.service", active="inactive"),
        },
    ],
)
def test_choose_layout_refuses_several(units: dict[str, UnitStatus]) -> None:
    with pytest.raises(ConfigError, match="several units that run kubelet"):
        choose_layout(units)


# ---------------------------------------------------------------- trust
@pytest.mark.parametrize(
    ("argv", "names", "trusted"),
    [
        # k3s rewrites argv[0] to "/usr/local/bin/k3s server" (systemctl status shows it
        # quoted as one word); its kernel name is k3s-server
        (("/usr/local/bin/k3s server",), K3S.programs, True),
        (("/usr/local/bin/k3s", "agent"), K3S.programs, True),
        (("/usr/local/bin/rke2", "agent"), RKE2.programs, True),
        (("/snap/microk8s/7394/kubelite", "--kubelet-args-file=x"), MICROK8S.programs, True),
        (("/bin/sh", "-c", "k3s server"), K3S.programs, False),
        (("/usr/local/bin/k3s server",), ("kubelet",), False),
    ],
)
def test_untrusted_with_hosting_names(
    argv: tuple[str, ...], names: tuple[str, ...], trusted: bool
) -> None:
    proc = host_process(40, 1.0, argv)
    init = FakeProcesses().init
    assert (untrusted(proc, init, names) == "") is trusted


# ---------------------------------------------------------------- k3s config merge
def merge(*files: tuple[str, str]) -> k3sconfig.MergedConfig:
    return k3sconfig.merge([(path, text.encode()) for path, text in files])


def values(merged: k3sconfig.MergedConfig) -> list[str]:
    return [item.value for item in merged.kubelet_args]


def test_merge_follows_k3s_loader() -> None:
    # k3s pkg/configfilearg/parser.go readConfigFile: a key replaces, "key+" appends
    merged = merge(
        ("/c.yaml", "kubelet-arg:\n- max-pods=110\n- cluster-dns=10.43.0.10\n"),
        ("/c.yaml.d/10-a.yaml", "kubelet-arg+: [v=2]\n"),
    )
    assert values(merged) == ["max-pods=110", "cluster-dns=10.43.0.10", "v=2"]
    replaced = merge(
        ("/c.yaml", "kubelet-arg: [cluster-dns=10.43.0.10]\n"),
        ("/c.yaml.d/10-a.yaml", 'kubelet-arg: "cluster-dns=10.43.0.20"\n'),
    )
    assert values(replaced) == ["cluster-dns=10.43.0.20"]
    assert [i.path for i in replaced.kubelet_args] == ["/c.yaml.d/10-a.yaml"]
    assert merge(("/c.yaml", "kubelet-arg:\n")).kubelet_args == ()
    assert "cluster-dns" in merge(("/c.yaml", "cluster-dns: 10.43.0.10\n")).keys


def test_dotd_names_in_k3s_order() -> None:
    # dotDFiles: os.ReadDir order, *.yaml/*.yml in any case, other files ignored
    names = ["20-b.yml", "10-a.YAML", "README", "05-c.yaml.bak", "30-d.yaml"]
    assert k3sconfig.dotd_names(names) == ["10-a.YAML", "20-b.yml", "30-d.yaml"]


def test_cluster_dns_items_any_spelling() -> None:
    items = merge(("/c", "kubelet-arg: [cluster_dns=10.0.0.1, max-pods=9, --cluster-dns=1.1.1.1]"))
    assert [i.value for i in k3sconfig.cluster_dns_items(items.kubelet_args)] == [
        "cluster_dns=10.0.0.1",
        "--cluster-dns=1.1.1.1",
    ]


# ---------------------------------------------------------------- k3s-arg edit
K3S_BLOCK = """\
# /etc/rancher/k3s/config.yaml
write-kubeconfig-mode: "0644"
cluster-dns: 10.43.0.10
kubelet-arg:
  - "max-pods=110"
  - cluster-dns=10.43.0.10   # node-local override
"""


@pytest.mark.parametrize(
    ("text", "edited"),
    [
        (K3S_BLOCK, K3S_BLOCK.replace("cluster-dns=10.43.0.10", "cluster-dns=169.254.20.10")),
        (
            "kubelet-arg: [max-pods=110, 'cluster-dns=10.43.0.10']\r\n",
            "kubelet-arg: [max-pods=110, 'cluster-dns=169.254.20.10']\r\n",
        ),
        ('kubelet-arg+: "cluster-dns=10.43.0.10"', 'kubelet-arg+: "cluster-dns=169.254.20.10"'),
    ],
)
def test_k3s_arg_edits_only_the_item(text: str, edited: str) -> None:
    fmt = k3sconfig.FORMAT
    assert fmt.read(text.encode(), "/c") == ("10.43.0.10",)
    out = fmt.edit(text.encode(), ["169.254.20.10"], "/c")
    assert out == edited.encode()
    assert fmt.read(out, "/c") == ("169.254.20.10",)


def test_server_wide_cluster_dns_key_is_never_edited() -> None:
    out = k3sconfig.FORMAT.edit(K3S_BLOCK.encode(), ["169.254.20.10"], "/c").decode()
    assert "\ncluster-dns: 10.43.0.10\n" in out
    with pytest.raises(ConfigError, match="no kubelet-arg item cluster-dns"):
        k3sconfig.FORMAT.edit(b"cluster-dns: 10.43.0.10\n", ["169.254.20.10"], "/c")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("kubelet-arg: [cluster-dns=1.1.1.1, cluster-dns=2.2.2.2]", "2 kubelet-arg items"),
        ("kubelet-arg: [cluster-dns+=1.1.1.1]", "adds to k3s's own cluster DNS"),
        ('kubelet-arg: ["cluster-dns=\\x31.1.1.1"]', "escapes"),
        ("kubelet-arg: [cluster-dns=$DNS]", "not a plain list"),
        ("kubelet-arg: [cluster-dns]", "has no value"),
        ("- a\n", "not a mapping"),
        ("kubelet-arg: [1]", "not a string"),
    ],
)
def test_k3s_arg_refusals(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        k3sconfig.FORMAT.read(text.encode(), "/c")


# ---------------------------------------------------------------- MicroK8s args file
#: /var/snap/microk8s/current/args/kubelet of MicroK8s 1.29 with the dns addon enabled
#: (microk8s/microk8s-resources/default-args/kubelet, plus the two lines 'microk8s
#: enable dns' adds)
MICROK8S_ARGS = """\
--kubeconfig=${SNAP_DATA}/credentials/kubelet.config
--cert-dir=${SNAP_DATA}/certs
--client-ca-file=${SNAP_DATA}/certs/ca.crt
--anonymous-auth=false
--root-dir=${SNAP_COMMON}/var/lib/kubelet
--fail-swap-on=false
--eviction-hard="memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi"
--container-runtime-endpoint=${SNAP_COMMON}/run/containerd.sock
--containerd=${SNAP_COMMON}/run/containerd.sock
--node-labels="microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane"
--authentication-token-webhook=true
--read-only-port=0
--serialize-image-pulls=false
--cluster-domain=cluster.local
--cluster-dns=10.152.183.10
"""


def test_args_file_edit() -> None:
    fmt = argsfile.FORMAT
    data = MICROK8S_ARGS.encode()
    assert fmt.read(data, "/a") == ("10.152.183.10",)
    out = fmt.edit(data, ["169.254.20.10"], "/a")
    assert out == data.replace(b"=10.152.183.10", b"=169.254.20.10")
    assert fmt.read(b"# --cluster-dns=1.1.1.1\n--cluster_dns 1.1.1.2\n", "/a") == ("1.1.1.2",)
    assert fmt.read(b"--v=2", "/a") == ()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("--cluster-dns=1.1.1.1\n--cluster-dns=2.2.2.2\n", "appears 2 times"),
        ('--cluster-dns="1.1.1.1"\n', "quotes"),
    ],
)
def test_args_file_refusals(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        argsfile.FORMAT.edit(text.encode(), ["169.254.20.10"], "/a")


# ---------------------------------------------------------------- locate on fake hosts
@dataclass
class Units:
    """The host's systemd, one status per unit (not-found for the others)."""

    units: dict[str, UnitStatus] = field(default_factory=dict)

    def show(self, unit: str) -> UnitStatus:
        return self.units.get(unit, UnitStatus(unit, "not-found", "inactive", 0))

    def daemon_reload(self) -> None:
        raise AssertionError("no reload for embedded kubelets")


def host(tmp_path: Path, files: dict[str, str]) -> HostRoot:
    for path, text in files.items():
        real = tmp_path / path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text(text)
    return HostRoot(tmp_path)


K3S_DEFAULTS = (
    "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
    "clusterDNS:\n- 10.43.0.10\nclusterDomain: cluster.local\n"
)


def k3s_node(tmp_path: Path, files: dict[str, str]) -> tuple[HostRoot, FakeProcesses, Units]:
    procs = FakeProcesses([host_process(40, 5.0, ("/usr/local/bin/k3s server",))])
    units = Units({"k3s.service": status("k3s.service", pid=40)})
    return host(tmp_path, files), procs, units


def test_locate_k3s_kubelet_arg_in_dotd(tmp_path: Path) -> None:
    root, procs, units = k3s_node(
        tmp_path,
        {
            "/etc/rancher/k3s/config.yaml": "cluster-dns: 10.43.0.10\nkubelet-arg: [v=2]\n",
            "/etc/rancher/k3s/config.yaml.d/50-dns.yaml": "kubelet-arg+: [cluster-dns=10.43.0.10]",
            f"{K3S.config_dir}/00-k3s-defaults.conf": K3S_DEFAULTS,
        },
    )
    kc = embedded.locate(root, procs, units)
    assert (kc.source, kc.format) == ("/etc/rancher/k3s/config.yaml.d/50-dns.yaml", "k3s-arg")
    assert (kc.layout, kc.service, kc.in_process) == ("k3s", "k3s.service", True)
    assert kc.cluster_dns == ("10.43.0.10",) and kc.kubelet_pid == 40


def test_locate_k3s_config_dir(tmp_path: Path) -> None:
    root, procs, units = k3s_node(
        tmp_path,
        {
            "/etc/rancher/k3s/config.yaml": "cluster-dns: 10.43.0.10\n",
            f"{K3S.config_dir}/00-k3s-defaults.conf": K3S_DEFAULTS,
        },
    )
    kc = embedded.locate(root, procs, units)
    assert (kc.source, kc.format) == (f"{K3S.config_dir}/99-nodelocaldns-agent.conf", "config-dir")
    assert kc.cluster_dns == ("10.43.0.10",) and kc.data is None


@pytest.mark.parametrize(
    ("files", "argv", "error"),
    [
        # k3s < 1.32: no kubelet.conf.d, the cluster DNS is k3s's own kubelet flag
        ({"/etc/rancher/k3s/config.yaml": "cluster-dns: 10.43.0.10\n"}, (), "older than v1.32"),
        (
            {"/etc/rancher/k3s/config.yaml": "data-dir: /data/k3s\n"},
            (),
            "sets data-dir",
        ),
        (
            {"/etc/rancher/k3s/config.yaml": "kubelet-arg: [config=/etc/k.yaml]\n"},
            (),
            "configuration of its own",
        ),
        ({}, ("--kubelet-arg=cluster-dns=1.1.1.1",), "--kubelet-arg on its command line"),
    ],
)
def test_locate_k3s_refusals(
    tmp_path: Path, files: dict[str, str], argv: tuple[str, ...], error: str
) -> None:
    root, procs, units = k3s_node(tmp_path, files)
    procs.running[0] = replace(procs.running[0], argv=("/usr/local/bin/k3s server", *argv))
    with pytest.raises(ConfigError, match=error):
        embedded.locate(root, procs, units)


@pytest.mark.parametrize(
    ("files", "size", "message"),
    [
        (MAX_CONFIG_DIR_FILES, 100, ""),
        (MAX_CONFIG_DIR_FILES + 1, 10, f"holds {MAX_CONFIG_DIR_FILES + 1} *.yaml files"),
        (4, MAX_CONFIG_DIR_BYTES // 4, ""),
        (5, MAX_CONFIG_DIR_BYTES // 4, f"may hold {MAX_CONFIG_DIR_BYTES} bytes in all"),
    ],
)
def test_locate_k3s_dotd_is_capped(tmp_path: Path, files: int, size: int, message: str) -> None:
    # the same caps as kubelet's --config-dir: a hostile config.yaml.d cannot make the agent
    # read without end
    padding = "#" * (size - 1) + "\n"
    dotd = {f"/etc/rancher/k3s/config.yaml.d/{i:03d}.yaml": padding for i in range(files)}
    root, procs, units = k3s_node(
        tmp_path, {**dotd, f"{K3S.config_dir}/00-k3s-defaults.conf": K3S_DEFAULTS}
    )
    if not message:
        assert embedded.locate(root, procs, units).cluster_dns == ("10.43.0.10",)
        return
    with pytest.raises(ConfigError, match=r"k3s's config\.yaml\.d") as err:
        embedded.locate(root, procs, units)
    assert message in str(err.value)


def test_locate_k3s_dotd_file_linking_where_pods_write_is_refused(tmp_path: Path) -> None:
    pod_file = "/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~empty-dir/x/dns.yaml"
    root, procs, units = k3s_node(
        tmp_path,
        {
            pod_file: "kubelet-arg: [cluster-dns=6.6.6.6]\n",
            f"{K3S.config_dir}/00-k3s-defaults.conf": K3S_DEFAULTS,
        },
    )
    (tmp_path / "etc/rancher/k3s/config.yaml.d").mkdir(parents=True)
    (tmp_path / "etc/rancher/k3s/config.yaml.d/50-dns.yaml").symlink_to(pod_file)
    with pytest.raises(ConfigError, match="where pods can write"):
        embedded.locate(root, procs, units)


def test_locate_k3s_untrusted_main_process(tmp_path: Path) -> None:
    root, procs, units = k3s_node(tmp_path, {})
    procs.running[0] = host_process(40, 5.0, ("/bin/sh", "-c", "k3s server"))
    with pytest.raises(ConfigError, match="not the host's kubelet"):
        embedded.locate(root, procs, units)


def test_locate_rke2_kubelet_child(tmp_path: Path) -> None:
    kubelet_argv = (
        "kubelet",
        "--volume-plugin-dir=/var/lib/kubelet/volumeplugins",
        f"--config-dir={RKE2.config_dir}",
        "--kubeconfig=/var/lib/rancher/rke2/agent/kubelet.kubeconfig",
    )
    procs = FakeProcesses(
        [
            host_process(50, 5.0, ("/usr/local/bin/rke2", "agent")),
            host_process(51, 6.0, ("containerd",)),
            host_process(52, 7.0, kubelet_argv),
        ],
        parents={51: 50, 52: 50},
    )
    units = Units({"rke2-agent.service": status("rke2-agent.service", pid=50)})
    root = host(tmp_path, {f"{RKE2.config_dir}/00-rke2-defaults.conf": K3S_DEFAULTS})
    kc = embedded.locate(root, procs, units)
    assert (kc.format, kc.service, kc.in_process, kc.kubelet_pid) == (
        "config-dir",
        "rke2-agent.service",
        False,
        52,
    )
    procs.parents = {}
    with pytest.raises(ConfigError, match="0 kubelet child processes"):
        embedded.locate(root, procs, units)
    # a kubelet child in a pod's cgroup (a decoy a container could not start there, but
    # the trust test holds for the child too): refused, never used
    pod = (
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        "0c6d2f5e_8d3b_4c1e_9a57_3f0e2b1c4d5a.slice/cri-containerd-" + "a" * 64 + ".scope",
    )
    procs.running[2] = host_process(52, 7.0, kubelet_argv, pod)
    procs.parents = {52: 50}
    with pytest.raises(ConfigError, match="runs in a pod's cgroup"):
        embedded.locate(root, procs, units)


def test_locate_microk8s(tmp_path: Path) -> None:
    procs = FakeProcesses([host_process(60, 5.0, ("/snap/microk8s/7394/kubelite",))])
    unit = "snap.microk8s.daemon-kubelite.service"
    root = host(tmp_path, {"/var/snap/microk8s/7394/args/kubelet": MICROK8S_ARGS})
    (tmp_path / "var/snap/microk8s/current").symlink_to("7394")
    kc = embedded.locate(root, procs, Units({unit: status(unit, pid=60)}))
    assert (kc.source, kc.format, kc.service) == (MICROK8S.config_file, "args-file", unit)
    assert "control-plane" in kc.note


def test_kubelet_service_wins(tmp_path: Path) -> None:
    units = Units({"kubelet.service": status("kubelet.service"), "k3s.service": status("k3s")})
    assert embedded.detect(units) is None


# ---------------------------------------------------------------- the engine on a fake k3s
class K3sHost:
    """A k3s server: ``k3s.service`` whose main process is replaced by a restart."""

    def __init__(self, root: Path) -> None:
        self.node = FakeNode(root)
        self.node.write(K3S.config_file, K3S_BLOCK)
        self.node.write(f"{K3S.config_dir}/00-k3s-defaults.conf", K3S_DEFAULTS)
        self.units = Units()
        self.comes_back = True
        self.start()
        self.node.runner.on_run = self.restart

    def start(self) -> None:
        self.node.pid += 1
        self.node.processes.running = [
            host_process(self.node.pid, self.node.clock.now, ("/usr/local/bin/k3s server",))
        ]
        self.units.units["k3s.service"] = status("k3s.service", pid=self.node.pid)

    def restart(self, argv: tuple[str, ...]) -> None:
        self.node.clock.now += 1
        if self.comes_back:
            self.start()
        else:
            self.node.processes.running = []
            self.units.units["k3s.service"] = status("k3s.service", active="failed")
            self.comes_back = True  # the rollback's restart works

    def engine(self, **settings: Any) -> NodeEngine:
        s = NodeSettings(host_root=self.node.root, verify_timeout=5.0, **settings)
        host = HostRoot(self.node.root, s.writable_dirs)
        node = self.node
        return NodeEngine(
            s,
            host,
            node.interfaces,
            node.http,
            node.prober,
            node.processes,
            self.units,
            node.runner,
            node.clock,
            FileJournal(host, s.state_dir),
            node.iptables,
        )


def test_engine_migrates_and_reverts_k3s(tmp_path: Path) -> None:
    k3s = K3sHost(tmp_path)
    out = k3s.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    # the default restart command restarts the unit that hosts kubelet
    assert k3s.node.runner.calls == [(*HOST_SYSTEMCTL, "restart", "k3s.service")]
    migrated = k3s.node.read(K3S.config_file).decode()
    assert migrated == K3S_BLOCK.replace("cluster-dns=10.43.0.10", "cluster-dns=169.254.20.10")
    back = k3s.engine().reconcile(Goal.REVERT)
    assert back.state is Result.REVERTED, back.error
    assert k3s.node.read(K3S.config_file) == K3S_BLOCK.encode()


def test_engine_runs_the_users_restart_command_as_given(tmp_path: Path) -> None:
    k3s = K3sHost(tmp_path)
    out = k3s.engine(restart_command=("my-restart", "k3s")).reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    assert k3s.node.runner.calls == [("my-restart", "k3s")]


def test_engine_rolls_back_when_k3s_does_not_come_back(tmp_path: Path) -> None:
    k3s = K3sHost(tmp_path)
    k3s.comes_back = False
    out = k3s.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED and out.rolled_back
    assert "k3s.service is failed" in out.error
    assert k3s.node.read(K3S.config_file) == K3S_BLOCK.encode()
    assert len(k3s.node.runner.calls) == 2
