"""Realistic kubelet host trees under a fake host root, one function per distribution.

Each function writes the files a real node of that kind has (systemd unit and drop-ins,
environment files, KubeletConfiguration, CNI config) and returns a :class:`Layout` saying
what it wrote and which file decides kubelet's cluster DNS. The *quirks* (symlink, CRLF,
missing trailing newline, a non-UTF-8 byte) apply to that deciding file only.

A symlinked deciding file points at an absolute path under ``/etc/kubernetes/real/``,
which exists only inside the root: anything that follows the link outside the root fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from testing.sandbox.constants import CLUSTER_DNS

DEFAULT_CLUSTER_DNS = CLUSTER_DNS
#: the drop-in the agent writes for the ``unit`` layouts (the first of its names: none of
#: the layouts has a drop-in sorting after it)
AGENT_UNIT_DROPIN = "/etc/systemd/system/kubelet.service.d/99-nodelocaldns-agent.conf"
#: Where a symlinked deciding file really lives (a host path that only the root has).
SYMLINK_TARGET_DIR = "/etc/kubernetes/real"


@dataclass(frozen=True)
class Quirks:
    """Byte-level oddities of the file that decides the cluster DNS."""

    #: the file is a symlink with an absolute target under SYMLINK_TARGET_DIR
    symlink: bool = False
    #: CRLF line endings
    crlf: bool = False
    #: the last line has no newline
    no_trailing_newline: bool = False
    #: a comment line holds a Latin-1 byte (env files only: kubelet refuses such YAML/JSON)
    non_utf8: bool = False


@dataclass(frozen=True)
class Layout:
    """What a layout function wrote under ``root``."""

    name: str
    root: Path
    #: host path of the file that decides the cluster DNS (the symlink when ``symlink``)
    dns_file: str
    #: ``env``, ``yaml``, ``json``, ``config-dir`` or ``unit`` (the unit or drop-in whose
    #: ``Environment=`` or ``ExecStart=`` holds ``--cluster-dns``: the agent adds its own
    #: drop-in, :data:`AGENT_UNIT_DROPIN`)
    dns_format: str
    #: the cluster DNS kubelet ends up with
    cluster_dns: tuple[str, ...]
    #: host path of kubelet.service
    unit: str
    #: env variable carrying ``--cluster-dns`` (env format), else ""
    variable: str = ""
    #: CNI plugin the CNI config names, None when none was written
    cni: str | None = None
    #: host path -> bytes of every regular file written
    files: dict[str, bytes] = field(default_factory=dict)
    #: host path -> absolute target of every symlink written
    symlinks: dict[str, str] = field(default_factory=dict)
    #: the unit that runs kubelet (started at boot, restarted by the agent): kubelet, or
    #: the unit of an embedded kubelet (k3s, k3s-agent, rke2-agent, ...)
    service: str = "kubelet"

    def real_path(self, host_path: str) -> Path:
        """Where a host path written by this layout lives, symlinks followed."""
        return self.root / self.symlinks.get(host_path, host_path).lstrip("/")

    @property
    def original(self) -> bytes:
        """The bytes of the deciding file as written (the symlink's target when a link)."""
        return self.files[self.symlinks.get(self.dns_file, self.dns_file)]


def apply_quirks(data: bytes, fmt: str, quirks: Quirks, where: str = "the file") -> bytes:
    """``data`` of a deciding file in format ``fmt`` with the byte-level quirks applied
    (all but ``symlink``, which is about where the bytes are written)."""
    if quirks.non_utf8:
        if fmt != "env":
            raise ValueError(
                f"non_utf8 applies to env files; {where} is {fmt} and a real kubelet "
                "refuses a configuration that is not UTF-8"
            )
        data = b"# edited by Jos\xe9 (Latin-1)\n" + data
    if quirks.no_trailing_newline:
        data = data.rstrip(b"\n")
    if quirks.crlf:
        data = data.replace(b"\n", b"\r\n")
    return data


class _Tree:
    """Writes host files under a root and records what it wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, bytes] = {}
        self.symlinks: dict[str, str] = {}

    def write(self, host_path: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        real = self.root / host_path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(raw)
        self.files[host_path] = raw

    def write_deciding(self, host_path: str, text: str, fmt: str, quirks: Quirks) -> None:
        """Write the file that decides the cluster DNS, with the quirks applied."""
        data = apply_quirks(text.encode(), fmt, quirks, host_path)
        if not quirks.symlink:
            self.write(host_path, data)
            return
        name = PurePosixPath(host_path).name
        target = f"{SYMLINK_TARGET_DIR}/{name}{'.env' if fmt == 'env' and '.' not in name else ''}"
        self.write(target, data)
        link = self.root / host_path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        self.symlinks[host_path] = target

    def layout(self, name: str, **info: Any) -> Layout:
        return Layout(name, self.root, files=self.files, symlinks=self.symlinks, **info)


def _unit(description: str, service: str) -> str:
    return (
        f"[Unit]\nDescription={description}\nWants=network-online.target\n"
        f"After=network-online.target containerd.service\n\n[Service]\n{service}"
        "Restart=always\nStartLimitInterval=0\nRestartSec=10\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


# --- CNI ------------------------------------------------------------------------------


def _multus(delegate: str, conf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "/etc/cni/net.d/00-multus.conf": {
            "cniVersion": "0.3.1",
            "name": "multus-cni",
            "type": "multus",
            "kubeconfig": "/etc/kubernetes/tke-cni-kubeconfig",
            "logLevel": "info",
            "defaultDelegates": delegate,
            "capabilities": {"bandwidth": True, "portMappings": True},
        },
        f"/etc/cni/net.d/multus/{delegate}.conf": {
            "cniVersion": "0.3.1",
            "name": delegate,
            "type": delegate,
            **conf,
        },
    }


def _conflist(name: str, *plugins: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"/etc/cni/net.d/10-{name}.conflist": {
            "cniVersion": "0.3.1",
            "name": name,
            "plugins": list(plugins),
        }
    }


#: CNI plugin -> the files a node using it has under /etc/cni/net.d.
CNI_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "tke-bridge": _multus(
        "tke-bridge",
        {
            "bridge": "cbr0",
            "mtu": 1500,
            "addIf": "eth0",
            "isGateway": True,
            "forceAddress": True,
            "hairpinMode": False,
            "ipam": {"type": "host-local", "subnet": "172.16.0.0/26", "gateway": "172.16.0.1"},
        },
    ),
    "tke-route-eni": _multus("tke-route-eni", {"eni": "eth1", "routeTable": 1}),
    "flannel": _conflist(
        "flannel",
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ),
    "calico": _conflist(
        "calico",
        {
            "type": "calico",
            "datastore_type": "kubernetes",
            "ipam": {"type": "calico-ipam"},
            "policy": {"type": "k8s"},
            "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
        },
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
    ),
    "aws-cni": _conflist(
        "aws",
        {"name": "aws-cni", "type": "aws-cni", "vethPrefix": "eni", "mtu": "9001"},
        {"name": "egress-cni", "type": "egress-cni", "mtu": "9001"},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
    ),
}


def write_cni(root: Path, plugin: str) -> dict[str, bytes]:
    """Write the CNI config of ``plugin`` (a key of :data:`CNI_CONFIGS`); return the files."""
    tree = _Tree(root)
    for path, doc in CNI_CONFIGS[plugin].items():
        tree.write(path, json.dumps(doc, indent=2) + "\n")
    return tree.files


# --- TKE --------------------------------------------------------------------------------

#: A TKE node's /etc/kubernetes/kubelet besides CLUSTER_DNS: one flag per variable.
TKE_FLAGS = {
    "AUTHORIZATION_MODE": "--authorization-mode=Webhook",
    "CLIENT_CA_FILE": "--client-ca-file=/etc/kubernetes/cluster-ca.crt",
    "CLOUD_CONFIG": "--cloud-config=/etc/kubernetes/qcloud.conf",
    "CLOUD_PROVIDER": "--cloud-provider=qcloud",
    "CLUSTER_DOMAIN": "--cluster-domain=cluster.local",
    "EVICTION_HARD": "--eviction-hard=nodefs.available<10%,nodefs.inodesFree<5%,"
    "memory.available<100Mi",
    "FAIL_SWAP_ON": "--fail-swap-on=false",
    "HOSTNAME_OVERRIDE": "--hostname-override=10.0.0.3",
    "KUBECONFIG": "--kubeconfig=/etc/kubernetes/kubelet-kubeconfig",
    "KUBE_RESERVED": "--kube-reserved=cpu=80m,memory=1294Mi",
    "MAX_PODS": "--max-pods=61",
    "NON_MASQUERADE_CIDR": "--non-masquerade-cidr=0.0.0.0/0",
    "POD_INFRA_CONTAINER_IMAGE": "--pod-infra-container-image="
    "ccr.ccs.tencentyun.com/library/pause:latest",
    "V": "--v=2",
}


#: where TKE keeps kubelet's flags and its unit
TKE_ENV_FILE = "/etc/kubernetes/kubelet"
TKE_UNIT_FILE = "/usr/lib/systemd/system/kubelet.service"


def _tke_flags(cluster_dns: str) -> dict[str, str]:
    return dict(sorted({"CLUSTER_DNS": f"--cluster-dns={cluster_dns}", **TKE_FLAGS}.items()))


def tke_env(cluster_dns: str = DEFAULT_CLUSTER_DNS) -> str:
    """The text of a TKE node's ``/etc/kubernetes/kubelet``."""
    return "".join(f'{name}="{value}"\n' for name, value in _tke_flags(cluster_dns).items())


def tke_unit() -> str:
    """The text of a TKE node's kubelet.service."""
    args = " ".join(f"${{{name}}}" for name in _tke_flags(DEFAULT_CLUSTER_DNS))
    return _unit("kubelet", f"EnvironmentFile=-{TKE_ENV_FILE}\nExecStart=/usr/bin/kubelet {args}\n")


def tke(root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()) -> Layout:
    """TKE: flags as ``NAME="--flag=value"`` lines in ``/etc/kubernetes/kubelet``, each
    referenced as ``${NAME}`` by ``ExecStart=`` of ``/usr/lib/systemd/system/kubelet.service``.
    """
    tree = _Tree(root)
    tree.write_deciding(TKE_ENV_FILE, tke_env(cluster_dns), "env", quirks)
    tree.write(TKE_UNIT_FILE, tke_unit())
    return tree.layout(
        "tke",
        dns_file=TKE_ENV_FILE,
        dns_format="env",
        cluster_dns=(cluster_dns,),
        unit=TKE_UNIT_FILE,
        variable="CLUSTER_DNS",
    )


# --- kubeadm and its variants -----------------------------------------------------------

KUBEADM_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- {dns}
clusterDomain: cluster.local
containerRuntimeEndpoint: ""
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMinimumGCAge: 0s
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
  verbosity: 0
memorySwap: {{}}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
resolvConf: /run/systemd/resolve/resolv.conf
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
"""

KUBEADM_DROPIN = """\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the \
KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. \
Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. \
KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-{extra_args_file}
ExecStart=
ExecStart={kubelet} $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS \
$KUBELET_EXTRA_ARGS
"""

KUBEADM_FLAGS = (
    "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock "
    "--pod-infra-container-image=registry.k8s.io/pause:3.9"
)
CONFIG_YAML = "/var/lib/kubelet/config.yaml"
CONFIG_DIR = "/etc/kubernetes/kubelet.conf.d"


@dataclass(frozen=True)
class _Kubeadm:
    """Where a kubeadm-style install keeps its files (deb and rpm packages differ)."""

    unit_dir: str = "/lib/systemd/system"
    dropin_dir: str = "/etc/systemd/system/kubelet.service.d"
    extra_args_file: str = "/etc/default/kubelet"
    extra_args: str = ""
    kubeadm_flags: str = KUBEADM_FLAGS
    #: how the extra args file spells the flag and its value's separator
    cluster_dns_flag: str = "--cluster-dns="
    #: where the kubelet binary is
    kubelet: str = "/usr/bin/kubelet"


def _kubeadm(tree: _Tree, cluster_dns: str, files: _Kubeadm, quirks: Quirks | None) -> str:
    """Write a kubeadm node; ``quirks`` go to config.yaml when given. Returns the unit path."""
    unit = f"{files.unit_dir}/kubelet.service"
    tree.write(unit, _unit("kubelet: The Kubernetes Node Agent", f"ExecStart={files.kubelet}\n"))
    tree.write(
        f"{files.dropin_dir}/10-kubeadm.conf",
        KUBEADM_DROPIN.format(extra_args_file=files.extra_args_file, kubelet=files.kubelet),
    )
    tree.write(
        "/var/lib/kubelet/kubeadm-flags.env", f'KUBELET_KUBEADM_ARGS="{files.kubeadm_flags}"\n'
    )
    config = KUBEADM_CONFIG.format(dns=cluster_dns)
    if quirks is None:
        tree.write(CONFIG_YAML, config)
    else:
        tree.write_deciding(CONFIG_YAML, config, "yaml", quirks)
    return unit


def kubeadm(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """kubeadm (deb): ``clusterDNS`` in ``/var/lib/kubelet/config.yaml``, the standard
    ``10-kubeadm.conf`` drop-in, ``kubeadm-flags.env`` and an empty ``/etc/default/kubelet``.
    """
    tree = _Tree(root)
    files = _Kubeadm()
    unit = _kubeadm(tree, cluster_dns, files, quirks)
    tree.write(files.extra_args_file, "KUBELET_EXTRA_ARGS=\n")
    return tree.layout(
        "kubeadm", dns_file=CONFIG_YAML, dns_format="yaml", cluster_dns=(cluster_dns,), unit=unit
    )


def _kubeadm_with_flag(
    name: str, root: Path, cluster_dns: str, quirks: Quirks, files: _Kubeadm
) -> Layout:
    tree = _Tree(root)
    unit = _kubeadm(tree, cluster_dns, files, None)
    env = f'KUBELET_EXTRA_ARGS="{files.cluster_dns_flag}{cluster_dns} {files.extra_args}"\n'
    tree.write_deciding(files.extra_args_file, env, "env", quirks)
    return tree.layout(
        name,
        dns_file=files.extra_args_file,
        dns_format="env",
        cluster_dns=(cluster_dns,),
        unit=unit,
        variable="KUBELET_EXTRA_ARGS",
    )


def kubeadm_flag(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """kubeadm (deb) whose ``/etc/default/kubelet`` sets ``--cluster-dns`` in
    ``KUBELET_EXTRA_ARGS``: the flag overrides ``clusterDNS`` of config.yaml."""
    files = _Kubeadm(extra_args="--node-ip=10.0.0.3 --max-pods=110")
    return _kubeadm_with_flag("kubeadm_flag", root, cluster_dns, quirks, files)


def kubeadm_flag_underscore(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """:func:`kubeadm_flag` with the flag spelt ``--cluster_dns <ip>``: kubelet's flag set
    normalizes ``_`` to ``-`` (``cliflag.WordSepNormalizeFunc``, set in
    cmd/kubelet/app/server.go) and pflag takes the next word as the value, so this too
    overrides ``clusterDNS`` of config.yaml (an old spelling still found in hand-written
    ``/etc/default/kubelet`` files)."""
    files = _Kubeadm(extra_args="--node-ip=10.0.0.3", cluster_dns_flag="--cluster_dns ")
    return _kubeadm_with_flag("kubeadm_flag_underscore", root, cluster_dns, quirks, files)


def sysconfig(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """kubeadm from RPM packages: units under ``/usr/lib/systemd/system`` and
    ``--cluster-dns`` in ``KUBELET_EXTRA_ARGS`` of ``/etc/sysconfig/kubelet``."""
    files = _Kubeadm(
        unit_dir="/usr/lib/systemd/system",
        dropin_dir="/usr/lib/systemd/system/kubelet.service.d",
        extra_args_file="/etc/sysconfig/kubelet",
        extra_args="--node-labels=node.kubernetes.io/pool=default",
    )
    return _kubeadm_with_flag("sysconfig", root, cluster_dns, quirks, files)


def config_dir(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """kubeadm plus ``--config-dir=/etc/kubernetes/kubelet.conf.d`` (in kubeadm-flags.env)
    whose ``10-base.conf`` drop-in sets ``clusterDNS`` over config.yaml's."""
    tree = _Tree(root)
    files = _Kubeadm(kubeadm_flags=f"--config-dir={CONFIG_DIR} {KUBEADM_FLAGS}")
    unit = _kubeadm(tree, cluster_dns, files, None)
    tree.write(files.extra_args_file, "KUBELET_EXTRA_ARGS=\n")
    dropin = f"{CONFIG_DIR}/10-base.conf"
    tree.write_deciding(
        dropin,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        f"clusterDNS:\n- {cluster_dns}\nmaxPods: 110\nserializeImagePulls: false\n",
        "yaml",
        quirks,
    )
    return tree.layout(
        "config_dir",
        dns_file=dropin,
        dns_format="config-dir",
        cluster_dns=(cluster_dns,),
        unit=unit,
    )


# --- EKS --------------------------------------------------------------------------------

EKS_CONFIG_JSON = "/etc/kubernetes/kubelet/kubelet-config.json"
EKS_UNIT = """\
[Unit]
Description=Kubernetes Kubelet
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service sandbox-image.service
Requires=containerd.service sandbox-image.service

[Service]
Slice=runtime.slice
ExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5
ExecStart=/usr/bin/kubelet \\
    --config /etc/kubernetes/kubelet/kubelet-config.json \\
    --kubeconfig /var/lib/kubelet/kubeconfig \\
    --container-runtime-endpoint unix:///run/containerd/containerd.sock \\
    --image-credential-provider-config /etc/eks/image-credential-provider/config.json \\
    --image-credential-provider-bin-dir /etc/eks/image-credential-provider \\
    $KUBELET_ARGS \\
    $KUBELET_EXTRA_ARGS

Restart=on-failure
RestartForceExitStatus=SIGPIPE
RestartSec=5
KillMode=process
CPUAccounting=true
MemoryAccounting=true

[Install]
WantedBy=multi-user.target
"""
EKS_ARGS = """\
[Service]
Environment='KUBELET_ARGS=--node-ip=192.168.12.34 \
--pod-infra-container-image=602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.5 --v=2 \
--hostname-override=ip-192-168-12-34.us-west-2.compute.internal --cloud-provider=external'
"""


def eks(root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()) -> Layout:
    """Amazon EKS (AL2): ``clusterDNS`` in ``/etc/kubernetes/kubelet/kubelet-config.json``
    (``/etc/kubernetes/kubelet`` is a directory); the unit passes ``--config PATH``."""
    tree = _Tree(root)
    config = {
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "address": "0.0.0.0",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"cacheTTL": "2m0s", "enabled": True},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"},
        },
        "clusterDomain": "cluster.local",
        "hairpinMode": "hairpin-veth",
        "readOnlyPort": 0,
        "cgroupDriver": "systemd",
        "cgroupRoot": "/",
        "featureGates": {"RotateKubeletServerCertificate": True},
        "protectKernelDefaults": True,
        "serializeImagePulls": False,
        "serverTLSBootstrap": True,
        "clusterDNS": [cluster_dns],
        "maxPods": 29,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "10%"},
        "kubeReserved": {"cpu": "70m", "ephemeral-storage": "1Gi", "memory": "442Mi"},
    }
    tree.write_deciding(EKS_CONFIG_JSON, json.dumps(config, indent=4) + "\n", "json", quirks)
    unit = "/etc/systemd/system/kubelet.service"
    tree.write(unit, EKS_UNIT)
    tree.write("/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf", EKS_ARGS)
    return tree.layout(
        "eks", dns_file=EKS_CONFIG_JSON, dns_format="json", cluster_dns=(cluster_dns,), unit=unit
    )


# --- --cluster-dns in a unit: Environment= or ExecStart= --------------------------------

#: kubeadm 1.10's ``10-kubeadm.conf`` (kubernetes/release, debian/xenial/kubeadm/channel/
#: stable/etc/systemd/system/kubelet.service.d/10-kubeadm.conf, before kubeadm moved the
#: flags to config.yaml in 1.11), as Alibaba Cloud ACK nodes still have it: every flag group
#: in an ``Environment=`` of the drop-in, the DNS in ``KUBELET_DNS_ARGS``.
ACK_DROPIN = """\
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_SYSTEM_PODS_ARGS=--pod-manifest-path=/etc/kubernetes/manifests"
Environment="KUBELET_NETWORK_ARGS=--network-plugin=cni --cni-conf-dir=/etc/cni/net.d \
--cni-bin-dir=/opt/cni/bin"
Environment="KUBELET_DNS_ARGS=--cluster-dns={dns} --cluster-domain=cluster.local"
Environment="KUBELET_AUTHZ_ARGS=--authorization-mode=Webhook \
--client-ca-file=/etc/kubernetes/pki/ca.crt"
Environment="KUBELET_CGROUP_ARGS=--cgroup-driver=systemd"
Environment="KUBELET_CERTIFICATE_ARGS=--anonymous-auth=false --rotate-certificates=true \
--cert-dir=/var/lib/kubelet/pki"
Environment="KUBELET_EXTRA_ARGS=--node-labels=alibabacloud.com/nodepool-id=np0 \
--eviction-hard=memory.available<5%%,nodefs.available<10%% \
--pod-infra-container-image=registry-vpc.cn-hangzhou.aliyuncs.com/acs/pause:3.5"
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_SYSTEM_PODS_ARGS \
$KUBELET_NETWORK_ARGS $KUBELET_DNS_ARGS $KUBELET_AUTHZ_ARGS $KUBELET_CGROUP_ARGS \
$KUBELET_CERTIFICATE_ARGS $KUBELET_EXTRA_ARGS
"""
ACK_DROPIN_FILE = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"


def ack_kubeadm(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """Alibaba Cloud ACK-style kubeadm node: ``--cluster-dns`` in
    ``Environment="KUBELET_DNS_ARGS=..."`` of ``10-kubeadm.conf`` (:data:`ACK_DROPIN`); no
    EnvironmentFile sets the variable, so the agent overrides it in its own drop-in."""
    tree = _Tree(root)
    unit = "/etc/systemd/system/kubelet.service"
    tree.write(unit, _unit("kubelet: The Kubernetes Node Agent", "ExecStart=/usr/bin/kubelet\n"))
    tree.write_deciding(ACK_DROPIN_FILE, ACK_DROPIN.format(dns=cluster_dns), "unit", quirks)
    return tree.layout(
        "ack_kubeadm",
        dns_file=ACK_DROPIN_FILE,
        dns_format="unit",
        cluster_dns=(cluster_dns,),
        unit=unit,
        variable="KUBELET_DNS_ARGS",
    )


#: what EKS AL2's bootstrap.sh writes for ``--kubelet-extra-args`` (awslabs/amazon-eks-ami,
#: files/bootstrap.sh: ``Environment='KUBELET_EXTRA_ARGS=$KUBELET_EXTRA_ARGS'`` into
#: /etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf), here with
#: ``--kubelet-extra-args '--cluster-dns=... --node-labels=...'``
EKS_EXTRA_ARGS_FILE = "/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf"
EKS_EXTRA_ARGS = """\
[Service]
Environment='KUBELET_EXTRA_ARGS=--cluster-dns={dns} --node-labels=eks.amazonaws.com/nodegroup=ng-1'
"""
#: what bootstrap.sh puts in kubelet-config.json when --dns-cluster-ip is not given (the
#: flag from --kubelet-extra-args beats it)
EKS_JSON_DNS = "10.100.0.10"


def eks_extra_args(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """Amazon EKS (AL2) bootstrapped with ``--kubelet-extra-args '--cluster-dns=...'``:
    ``30-kubelet-extra-args.conf`` sets ``KUBELET_EXTRA_ARGS`` with ``Environment=`` (single
    quotes), ``ExecStart=`` refers to ``$KUBELET_EXTRA_ARGS``; the flag beats
    ``clusterDNS`` of kubelet-config.json (:data:`EKS_JSON_DNS`)."""
    base = eks(root, EKS_JSON_DNS)
    tree = _Tree(root)
    tree.files, tree.symlinks = dict(base.files), dict(base.symlinks)
    tree.write_deciding(EKS_EXTRA_ARGS_FILE, EKS_EXTRA_ARGS.format(dns=cluster_dns), "unit", quirks)
    return tree.layout(
        "eks_extra_args",
        dns_file=EKS_EXTRA_ARGS_FILE,
        dns_format="unit",
        cluster_dns=(cluster_dns,),
        unit=base.unit,
        variable="KUBELET_EXTRA_ARGS",
    )


#: Kubernetes The Hard Way's kubelet.service (kelseyhightower/kubernetes-the-hard-way,
#: docs/09-bootstrapping-kubernetes-workers.md of 2017, Kubernetes 1.7/1.8): every flag
#: written in ``ExecStart=``, one per continued line, ``--cluster-dns`` among them
HARDWAY_UNIT = """\
[Unit]
Description=Kubernetes Kubelet
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service
Requires=containerd.service

[Service]
ExecStart=/usr/local/bin/kubelet \\
  --allow-privileged=true \\
  --anonymous-auth=false \\
  --authorization-mode=Webhook \\
  --client-ca-file=/var/lib/kubernetes/ca.pem \\
  --cloud-provider= \\
  --cluster-dns={dns} \\
  --cluster-domain=cluster.local \\
  --container-runtime=remote \\
  --container-runtime-endpoint=unix:///var/run/cri-containerd.sock \\
  --image-pull-progress-deadline=2m \\
  --kubeconfig=/var/lib/kubelet/kubeconfig \\
  --network-plugin=cni \\
  --pod-cidr=10.200.0.0/24 \\
  --register-node=true \\
  --runtime-request-timeout=15m \\
  --tls-cert-file=/var/lib/kubelet/worker-0.pem \\
  --tls-private-key-file=/var/lib/kubelet/worker-0-key.pem \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"""
HARDWAY_UNIT_FILE = "/etc/systemd/system/kubelet.service"


def hardway(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """A hand-written unit (:data:`HARDWAY_UNIT`) with ``--cluster-dns`` literal in a
    continued ``ExecStart=``. The empty ``kubelet.service.d`` stands for the chart's
    host-path mount of the agent's drop-in directory, which creates it when missing."""
    tree = _Tree(root)
    tree.write_deciding(HARDWAY_UNIT_FILE, HARDWAY_UNIT.format(dns=cluster_dns), "unit", quirks)
    (root / AGENT_UNIT_DROPIN.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    return tree.layout(
        "hardway",
        dns_file=HARDWAY_UNIT_FILE,
        dns_format="unit",
        cluster_dns=(cluster_dns,),
        unit=HARDWAY_UNIT_FILE,
    )


# --- embedded kubelets: k3s, RKE2, MicroK8s -----------------------------------------------

K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
#: kubelet's --config-dir that k3s >= 1.32 passes (docs.k3s.io "Kubelet Configuration
#: Files": k3s writes its defaults to 00-k3s-defaults.conf there at every start)
K3S_CONFIG_DIR = "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d"
RKE2_CONFIG = "/etc/rancher/rke2/config.yaml"
#: what a running rke2-agent's kubelet child shows (``kubelet ... --config-dir=
#: /var/lib/rancher/rke2/agent/etc/kubelet.conf.d ...`` in ``systemctl status
#: rke2-agent``); RKE2 shares k3s's agent code, which names the defaults file after the
#: program: 00-rke2-defaults.conf
RKE2_CONFIG_DIR = "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d"
#: MicroK8s's kubelet flags; ``current`` is snapd's symlink to the revision directory
MICROK8S_REVISION = "7394"
MICROK8S_ARGS = "/var/snap/microk8s/current/args/kubelet"

#: k3s's install.sh (get.k3s.io, create_systemd_service_file), written to
#: /etc/systemd/system/k3s.service (server) or k3s-agent.service (agent)
K3S_UNIT = """\
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type={type}
EnvironmentFile=-/etc/systemd/system/{unit}.env
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s \\
    {command} \\

"""
#: RKE2's tarball install (rancher/rke2, bundle/lib/systemd/system/rke2-{server,agent}.service)
RKE2_UNIT = """\
[Unit]
Description=Rancher Kubernetes Engine v2 ({kind})
Documentation=https://github.com/rancher/rke2#readme
Wants=network-online.target
After=network-online.target
Conflicts=rke2-{other}.service

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/usr/local/lib/systemd/system/rke2-{kind}.env
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/rke2 {kind}
"""
#: what snapd generates for the microk8s snap's kubelite daemon
MICROK8S_UNIT = f"""\
[Unit]
# Auto-generated, DO NOT EDIT
Description=Service for snap application microk8s.daemon-kubelite
Requires=snap-microk8s-{MICROK8S_REVISION}.mount
Wants=network.target
After=snap-microk8s-{MICROK8S_REVISION}.mount network.target snapd.apparmor.service
X-Snappy=yes

[Service]
EnvironmentFile=-/etc/environment
ExecStart=/usr/bin/snap run microk8s.daemon-kubelite
SyslogIdentifier=microk8s.daemon-kubelite
Restart=always
WorkingDirectory=/var/snap/microk8s/{MICROK8S_REVISION}
TimeoutStopSec=30
Type=simple

[Install]
WantedBy=multi-user.target
"""
#: microk8s/microk8s-resources/default-args/kubelet, plus the two lines that
#: ``microk8s enable dns`` appends
MICROK8S_KUBELET_ARGS = """\
--kubeconfig=${{SNAP_DATA}}/credentials/kubelet.config
--cert-dir=${{SNAP_DATA}}/certs
--client-ca-file=${{SNAP_DATA}}/certs/ca.crt
--anonymous-auth=false
--root-dir=${{SNAP_COMMON}}/var/lib/kubelet
--fail-swap-on=false
--eviction-hard="memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi"
--container-runtime-endpoint=${{SNAP_COMMON}}/run/containerd.sock
--containerd=${{SNAP_COMMON}}/run/containerd.sock
--node-labels="microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane"
--authentication-token-webhook=true
--read-only-port=0
--serialize-image-pulls=false
--cluster-domain=cluster.local
--cluster-dns={dns}
"""


def k3s_defaults(cluster_dns: str) -> str:
    """The ``00-k3s-defaults.conf`` k3s (>= 1.32) writes at every start (an excerpt: the
    fields that matter here), with the server-wide cluster DNS."""
    return (
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        "authentication:\n  anonymous:\n    enabled: false\n"
        f"clusterDNS:\n- {cluster_dns}\nclusterDomain: cluster.local\n"
        "healthzBindAddress: 127.0.0.1\nreadOnlyPort: 0\n"
        "shutdownGracePeriod: 0s\nshutdownGracePeriodCriticalPods: 0s\n"
    )


def _k3s(
    name: str, root: Path, cluster_dns: str, quirks: Quirks, config: str, dotd: str = ""
) -> Layout:
    """A k3s node whose config.yaml is ``config`` (``{dns}`` filled in), with
    ``config.yaml.d/50-nodelocal.yaml`` = ``dotd`` when given. Without a ``kubelet-arg``
    item for the DNS, the deciding file is 00-k3s-defaults.conf."""
    tree = _Tree(root)
    agent = "agent" in name
    unit_name = "k3s-agent" if agent else "k3s"
    unit = f"/etc/systemd/system/{unit_name}.service"
    tree.write(
        unit,
        K3S_UNIT.format(
            type="exec" if agent else "notify",
            unit=f"{unit_name}.service",
            command="agent" if agent else "server",
        ),
    )
    tree.write(
        f"/etc/systemd/system/{unit_name}.service.env",
        "K3S_TOKEN=K10sandbox::server:secret\n"
        + ("K3S_URL=https://10.0.0.1:6443\n" if agent else ""),
    )
    defaults = f"{K3S_CONFIG_DIR}/00-k3s-defaults.conf"
    tree.write(defaults, k3s_defaults(cluster_dns))
    dns_file, fmt = defaults, "config-dir"
    if "cluster-dns=" in config:
        dns_file, fmt = K3S_CONFIG, "k3s-arg"
    tree.write_deciding(K3S_CONFIG, config.format(dns=cluster_dns), "yaml", quirks)
    if dotd:
        dns_file = f"{K3S_CONFIG}.d/50-nodelocal.yaml"
        tree.write(dns_file, dotd.format(dns=cluster_dns))
    return tree.layout(
        name,
        dns_file=dns_file,
        dns_format=fmt,
        cluster_dns=(cluster_dns,),
        unit=unit,
        service=unit_name,
    )


#: a k3s server's config.yaml (docs.k3s.io "Configuration File"): the server-wide
#: ``cluster-dns`` and a per-node kubelet ``cluster-dns`` in a block ``kubelet-arg`` list
K3S_SERVER_CONFIG = """\
write-kubeconfig-mode: "0644"
cluster-dns: {dns}
tls-san:
  - "k3s.example.internal"
node-label:
  - "topology.kubernetes.io/zone=zone-a"
kubelet-arg:
  - "max-pods=150"
  - "cluster-dns={dns}"
  - "image-gc-high-threshold=85"
"""
#: a k3s agent's config.yaml with a flow ``kubelet-arg`` list
K3S_AGENT_CONFIG = """\
server: https://10.0.0.1:6443
node-ip: 10.0.0.21
kubelet-arg: [max-pods=150, cluster-dns={dns}, "eviction-hard=memory.available<200Mi"]
"""
#: config.yaml sets a kubelet-arg list that config.yaml.d/50-nodelocal.yaml replaces
#: (a key without ``+`` replaces the earlier files' value: k3s's readConfigFile)
K3S_DOTD_BASE = """\
cluster-dns: {dns}
kubelet-arg:
- cluster-dns=10.43.0.99
"""
K3S_DOTD_OVERRIDE = """\
# per-node kubelet arguments, managed by configuration management
kubelet-arg:
- max-pods=150
- cluster-dns={dns}
"""
#: no kubelet-arg: kubelet's cluster DNS is 00-k3s-defaults.conf's
K3S_PLAIN_CONFIG = """\
write-kubeconfig-mode: "0644"
cluster-dns: {dns}
disable:
  - traefik
"""


def k3s_kubelet_arg(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """k3s server, ``cluster-dns=`` in a block ``kubelet-arg`` list of config.yaml."""
    return _k3s("k3s_kubelet_arg", root, cluster_dns, quirks, K3S_SERVER_CONFIG)


def k3s_agent_flow(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """k3s agent (``k3s-agent.service``), ``cluster-dns=`` in a flow ``kubelet-arg`` list."""
    return _k3s("k3s_agent_flow", root, cluster_dns, quirks, K3S_AGENT_CONFIG)


def k3s_dotd(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """k3s server whose ``config.yaml.d/50-nodelocal.yaml`` replaces config.yaml's
    ``kubelet-arg`` list: the ``.d`` file's item decides."""
    return _k3s("k3s_dotd", root, cluster_dns, quirks, K3S_DOTD_BASE, K3S_DOTD_OVERRIDE)


def k3s_config_dir(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """k3s server without a kubelet ``cluster-dns``: 00-k3s-defaults.conf in
    kubelet.conf.d decides (the agent adds its own drop-in there)."""
    return _k3s("k3s_config_dir", root, cluster_dns, quirks, K3S_PLAIN_CONFIG)


def _rke2(name: str, root: Path, cluster_dns: str, quirks: Quirks, server: bool) -> Layout:
    """RKE2 from the tarball (units in /usr/local/lib/systemd/system), kubelet a child
    process with ``--config-dir`` whose 00-rke2-defaults.conf holds the cluster DNS. A
    server's config.yaml also gives kubelet ``cluster-dns=`` in ``kubelet-arg``, which
    decides then (a flag beats the config dir)."""
    tree = _Tree(root)
    kind = "server" if server else "agent"
    unit = f"/usr/local/lib/systemd/system/rke2-{kind}.service"
    tree.write(unit, RKE2_UNIT.format(kind=kind, other="agent" if server else "server"))
    config = "node-ip: 10.0.0.31\nkubelet-arg:\n- max-pods=200\n"
    if server:
        config = f"cni: canal\ncluster-dns: {cluster_dns}\n{config}- cluster-dns={cluster_dns}\n"
    else:
        config = f"server: https://10.0.0.1:9345\ntoken: K10sandbox::server:secret\n{config}"
    defaults = f"{RKE2_CONFIG_DIR}/00-rke2-defaults.conf"
    if server:
        tree.write(defaults, k3s_defaults(cluster_dns))
        tree.write_deciding(RKE2_CONFIG, config, "yaml", quirks)
    else:
        tree.write(RKE2_CONFIG, config)
        tree.write_deciding(defaults, k3s_defaults(cluster_dns), "yaml", quirks)
    return tree.layout(
        name,
        dns_file=RKE2_CONFIG if server else defaults,
        dns_format="k3s-arg" if server else "config-dir",
        cluster_dns=(cluster_dns,),
        unit=unit,
        service=f"rke2-{kind}",
    )


def rke2_agent(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """RKE2 agent: no kubelet ``cluster-dns``; the agent adds its drop-in to kubelet.conf.d."""
    return _rke2("rke2_agent", root, cluster_dns, quirks, server=False)


def rke2_server_kubelet_arg(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """RKE2 server whose config.yaml has ``kubelet-arg: [..., cluster-dns=...]``: kubelet
    runs with ``--cluster-dns``; the agent edits the item."""
    return _rke2("rke2_server_kubelet_arg", root, cluster_dns, quirks, server=True)


def microk8s(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """MicroK8s: ``--cluster-dns`` on a line of ``/var/snap/microk8s/current/args/kubelet``
    (``current`` a relative symlink to the revision, as snapd makes it)."""
    tree = _Tree(root)
    unit = "/etc/systemd/system/snap.microk8s.daemon-kubelite.service"
    tree.write(unit, MICROK8S_UNIT)
    real = MICROK8S_ARGS.replace("/current/", f"/{MICROK8S_REVISION}/")
    tree.write_deciding(real, MICROK8S_KUBELET_ARGS.format(dns=cluster_dns), "args-file", quirks)
    (root / "var/snap/microk8s/current").symlink_to(MICROK8S_REVISION)
    return tree.layout(
        "microk8s",
        dns_file=real,
        dns_format="args-file",
        cluster_dns=(cluster_dns,),
        unit=unit,
        service="snap.microk8s.daemon-kubelite",
    )


# --- more distributions: kubespray, EKS AL2023 (nodeadm), AKS, GCE, kOps, Flatcar, Magnum ----


def _kubelet_config_yaml(cluster_dns: str, extra: str = "") -> str:
    """A KubeletConfiguration YAML with ``clusterDNS`` and the fields ``extra`` adds."""
    return (
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        f"{extra}clusterDNS:\n- {cluster_dns}\nclusterDomain: cluster.local\n"
    )


#: kubespray's unit (kubernetes-sigs/kubespray, roles/kubernetes/node/templates/
#: kubelet.service.j2, rendered with bin_dir=/usr/local/bin, kube_config_dir=
#: /etc/kubernetes, container_manager=containerd; installed as /etc/systemd/system/
#: kubelet.service): every flag group a variable of /etc/kubernetes/kubelet.env
KUBESPRAY_UNIT = """\
[Unit]
Description=Kubernetes Kubelet Server
Documentation=https://github.com/GoogleCloudPlatform/kubernetes
After=containerd.service
Wants=containerd.service

[Service]
EnvironmentFile=-/etc/kubernetes/kubelet.env
ExecStart=/usr/local/bin/kubelet \\
\t\t$KUBE_LOGTOSTDERR \\
\t\t$KUBE_LOG_LEVEL \\
\t\t$KUBELET_API_SERVER \\
\t\t$KUBELET_ADDRESS \\
\t\t$KUBELET_PORT \\
\t\t$KUBELET_HOSTNAME \\
\t\t$KUBELET_ARGS \\
\t\t$DOCKER_SOCKET \\
\t\t$KUBELET_NETWORK_PLUGIN \\
\t\t$KUBELET_VOLUME_PLUGIN \\
\t\t$KUBELET_CLOUDPROVIDER
Restart=always
RestartSec=10s

[Install]
WantedBy=multi-user.target
"""
#: kubelet.env.v1beta1.j2 of the same role: KUBELET_ARGS continued with ``\\`` + newline
#: inside the double quotes (the ``{% set kubelet_args_base %}`` block), ``--config``
#: naming kubelet-config.yaml; no ``--cluster-dns`` (it is ``clusterDNS`` of that file)
KUBESPRAY_ENV = """\
KUBE_LOGTOSTDERR="--logtostderr=true"
KUBE_LOG_LEVEL="--v=2"
KUBELET_ADDRESS="--node-ip=10.0.0.41"
KUBELET_HOSTNAME="--hostname-override=node1"

KUBELET_ARGS="--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\
--config=/etc/kubernetes/kubelet-config.yaml \\
--kubeconfig=/etc/kubernetes/kubelet.conf \\
--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock \\
--runtime-cgroups=/system.slice/containerd.service \\
 --node-labels=  "
KUBELET_CLOUDPROVIDER=""

PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""
KUBESPRAY_CONFIG = "/etc/kubernetes/kubelet-config.yaml"
#: kubelet-config.v1beta1.yaml.j2 of the same role (an excerpt; kubespray's default
#: ``enable_nodelocaldns: true`` puts its own node-local cache 169.254.25.10 here, this
#: node has it off and the cluster DNS Service IP instead)
KUBESPRAY_CONFIG_FIELDS = """\
nodeStatusUpdateFrequency: "10s"
failSwapOn: True
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: True
  x509:
    clientCAFile: /etc/kubernetes/ssl/ca.crt
authorization:
  mode: Webhook
staticPodPath: /etc/kubernetes/manifests
cgroupDriver: systemd
containerLogMaxFiles: 5
containerLogMaxSize: 10Mi
maxPods: 110
podPidsLimit: -1
address: 10.0.0.41
readOnlyPort: 0
healthzPort: 10248
healthzBindAddress: 127.0.0.1
kubeletCgroups: /system.slice/kubelet.service
"""


def kubespray(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """kubespray: ``clusterDNS`` in ``/etc/kubernetes/kubelet-config.yaml``, named by
    ``--config`` in ``KUBELET_ARGS`` of ``/etc/kubernetes/kubelet.env``."""
    tree = _Tree(root)
    unit = "/etc/systemd/system/kubelet.service"
    tree.write(unit, KUBESPRAY_UNIT)
    tree.write("/etc/kubernetes/kubelet.env", KUBESPRAY_ENV)
    config = _kubelet_config_yaml(cluster_dns, KUBESPRAY_CONFIG_FIELDS)
    tree.write_deciding(KUBESPRAY_CONFIG, config, "yaml", quirks)
    return tree.layout(
        "kubespray",
        dns_file=KUBESPRAY_CONFIG,
        dns_format="yaml",
        cluster_dns=(cluster_dns,),
        unit=unit,
    )


#: EKS AL2023's unit (awslabs/amazon-eks-ami, templates/al2023/runtime/rootfs/etc/systemd/
#: system/kubelet.service): every flag in NODEADM_KUBELET_ARGS of the environment file
NODEADM_UNIT = """\
[Unit]
Description=Kubernetes Kubelet
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service
Wants=containerd.service

[Service]
Slice=runtime.slice
EnvironmentFile=/etc/eks/kubelet/environment
ExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5
ExecStart=/usr/bin/kubelet $NODEADM_KUBELET_ARGS

Restart=on-failure
RestartForceExitStatus=SIGPIPE
RestartSec=5
KillMode=process
CPUAccounting=true
MemoryAccounting=true

[Install]
WantedBy=multi-user.target
"""
NODEADM_ENV_FILE = "/etc/eks/kubelet/environment"
NODEADM_CONFIG = "/etc/kubernetes/kubelet/config.json"
NODEADM_CONFIG_DIR = "/etc/kubernetes/kubelet/config.json.d"
#: nodeadm/internal/kubelet/environment.go writes ``NAME=value`` lines, unquoted, joined
#: by newlines (no newline after the last); config.go passes --config and, for kubelet
#: >= 1.28, --config-dir (its own drop-in 40-nodeadm.conf holds the user's
#: ``spec.kubelet.config``)
NODEADM_ENV = (
    "NODEADM_KUBELET_ARGS=--node-ip=192.168.12.34 --cloud-provider=external "
    f"--config={NODEADM_CONFIG} --config-dir={NODEADM_CONFIG_DIR} "
    "--kubeconfig=/var/lib/kubelet/kubeconfig "
    "--image-credential-provider-bin-dir=/etc/eks/image-credential-provider "
    "--image-credential-provider-config=/etc/eks/image-credential-provider/config.json "
    "--hostname-override=ip-192-168-12-34.us-west-2.compute.internal "
    "--node-labels=eks.amazonaws.com/nodegroup=ng-1 --v=2"
)


def eks_nodeadm(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """Amazon EKS AL2023 (nodeadm): ``clusterDNS`` in ``config.json``, which nodeadm
    rewrites at every boot; ``--config-dir`` ``config.json.d`` holds nodeadm's
    ``40-nodeadm.conf`` (the user's settings, no ``clusterDNS``). The agent adds its own
    drop-in there instead of editing config.json, so nodeadm's rewrite does not undo it."""
    tree = _Tree(root)
    unit = "/etc/systemd/system/kubelet.service"
    tree.write(unit, NODEADM_UNIT)
    tree.write(NODEADM_ENV_FILE, NODEADM_ENV)
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "0.0.0.0",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"cacheTTL": "2m0s", "enabled": True},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDNS": [cluster_dns],
        "clusterDomain": "cluster.local",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "maxPods": 29,
        "protectKernelDefaults": True,
        "serverTLSBootstrap": True,
    }
    tree.write_deciding(NODEADM_CONFIG, json.dumps(config, indent=4), "json", quirks)
    tree.write(
        f"{NODEADM_CONFIG_DIR}/40-nodeadm.conf",
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "maxPods": 58,
                "shutdownGracePeriod": "30s",
            },
            indent=4,
        ),
    )
    return tree.layout(
        "eks_nodeadm",
        dns_file=NODEADM_CONFIG,
        dns_format="config-dir",
        cluster_dns=(cluster_dns,),
        unit=unit,
    )


#: AKS's unit (Azure/AgentBaker, parts/linux/cloud-init/artifacts/kubelet.service,
#: rendered for containerd; written to /etc/systemd/system/kubelet.service), with the
#: ``--config`` line of ``IsKubeletConfigFileEnabled`` when ``config`` is set
AKS_UNIT = """\
[Unit]
Description=Kubelet
ConditionPathExists=/usr/local/bin/kubelet

[Service]
Restart=always
EnvironmentFile=/etc/default/kubelet
SuccessExitStatus=143
ExecStartPre=/bin/bash /opt/azure/containers/kubelet.sh
ExecStartPre=/bin/mkdir -p /var/lib/kubelet
ExecStartPre=/bin/mkdir -p /var/lib/cni
ExecStartPre=/bin/mount --make-shared /var/lib/kubelet

ExecStartPre=-/sbin/ebtables -t nat --list
ExecStartPre=-/sbin/iptables -t nat --numeric --list

ExecStart=/usr/local/bin/kubelet \\
        --enable-server \\
        --node-labels="${{KUBELET_NODE_LABELS}}" \\
        --v=2 --container-runtime-endpoint=unix:///run/containerd/containerd.sock \\
        --volume-plugin-dir=/etc/kubernetes/volumeplugins \\
{config}        --kubeconfig /var/lib/kubelet/kubeconfig \\
        --bootstrap-kubeconfig /var/lib/kubelet/bootstrap-kubeconfig \\
        $KUBELET_FLAGS \\
        $KUBELET_REGISTER_NODE $KUBELET_REGISTER_WITH_TAINTS

[Install]
WantedBy=multi-user.target
"""
AKS_ENV_FILE = "/etc/default/kubelet"
AKS_CONFIG_JSON = "/etc/default/kubeletconfig.json"
#: what ensureKubelet (parts/linux/cloud-init/artifacts/cse_config.sh) writes:
#: ``echo "KUBELET_FLAGS=${KUBELET_FLAGS}"`` and friends, values unquoted
AKS_ENV = """\
KUBELET_FLAGS={flags}
KUBELET_REGISTER_SCHEDULABLE=true
NETWORK_POLICY=
KUBELET_IMAGE=
KUBELET_NODE_LABELS=agentpool=nodepool1,kubernetes.azure.com/agentpool=nodepool1,\
kubernetes.azure.com/mode=system
"""
AKS_FLAGS = (
    "--address=0.0.0.0 --anonymous-auth=false --authentication-token-webhook=true "
    "--authorization-mode=Webhook --cgroups-per-qos=true "
    "--client-ca-file=/etc/kubernetes/certs/ca.crt --cloud-config=/etc/kubernetes/azure.json "
    "--cloud-provider=external {dns}--cluster-domain=cluster.local "
    "--enforce-node-allocatable=pods --event-qps=0 "
    "--eviction-hard=memory.available<750Mi,nodefs.available<10%,nodefs.inodesFree<5% "
    "--image-gc-high-threshold=85 --image-gc-low-threshold=80 --max-pods=110 "
    "--node-status-update-frequency=10s --pod-infra-container-image="
    "mcr.microsoft.com/oss/kubernetes/pause:3.6 --pod-max-pids=-1 --protect-kernel-defaults=true "
    "--read-only-port=0 --resolv-conf=/run/systemd/resolve/resolv.conf "
    "--rotate-certificates=true --streaming-connection-idle-timeout=4h "
    "--tls-cert-file=/etc/kubernetes/certs/kubeletserver.crt "
    "--tls-private-key-file=/etc/kubernetes/certs/kubeletserver.key"
)


def _aks(name: str, root: Path, cluster_dns: str, quirks: Quirks, config_file: bool) -> Layout:
    tree = _Tree(root)
    unit = "/etc/systemd/system/kubelet.service"
    config = f"        --config {AKS_CONFIG_JSON} \\\n" if config_file else ""
    tree.write(unit, AKS_UNIT.format(config=config))
    flags = AKS_FLAGS.format(dns="" if config_file else f"--cluster-dns={cluster_dns} ")
    env = AKS_ENV.format(flags=flags)
    if not config_file:
        tree.write_deciding(AKS_ENV_FILE, env, "env", quirks)
        return tree.layout(
            name,
            dns_file=AKS_ENV_FILE,
            dns_format="env",
            cluster_dns=(cluster_dns,),
            unit=unit,
            variable="KUBELET_FLAGS",
        )
    tree.write(AKS_ENV_FILE, env)
    # AgentBaker's GetKubeletConfigFileContent: the flags that have a config field, as JSON
    doc = {
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "staticPodPath": "/etc/kubernetes/manifests",
        "address": "0.0.0.0",
        "readOnlyPort": 0,
        "authentication": {
            "x509": {"clientCAFile": "/etc/kubernetes/certs/ca.crt"},
            "webhook": {"enabled": True},
            "anonymous": {},
        },
        "authorization": {"mode": "Webhook", "webhook": {}},
        "clusterDomain": "cluster.local",
        "clusterDNS": [cluster_dns],
        "streamingConnectionIdleTimeout": "4h0m0s",
        "resolvConf": "/run/systemd/resolve/resolv.conf",
        "maxPods": 110,
        "serializeImagePulls": False,
    }
    tree.write_deciding(AKS_CONFIG_JSON, json.dumps(doc, indent=4), "json", quirks)
    return tree.layout(
        name, dns_file=AKS_CONFIG_JSON, dns_format="json", cluster_dns=(cluster_dns,), unit=unit
    )


def aks(root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()) -> Layout:
    """AKS (AgentBaker, kubelet config file enabled, the default of current node images):
    ``clusterDNS`` in ``/etc/default/kubeletconfig.json``, named by ``--config`` in the
    unit's ``ExecStart=``."""
    return _aks("aks", root, cluster_dns, quirks, config_file=True)


def aks_flags(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """AKS without the kubelet config file: ``--cluster-dns`` among the unquoted
    ``KUBELET_FLAGS=`` of ``/etc/default/kubelet``."""
    return _aks("aks_flags", root, cluster_dns, quirks, config_file=False)


#: kube-up's GCE nodes (kubernetes/kubernetes, cluster/gce/gci/configure-helper.sh,
#: start-kubelet): KUBELET_OPTS in /etc/default/kubelet, the unit written to
#: /etc/systemd/system/kubelet.service, kubelet in ${KUBE_HOME}/bin
GCE_UNIT = """\
[Unit]
Description=Kubernetes kubelet
Requires=network-online.target
After=network-online.target

[Service]
Restart=always
RestartSec=10
EnvironmentFile=/etc/default/kubelet
ExecStart=/home/kubernetes/bin/kubelet $KUBELET_OPTS

[Install]
WantedBy=multi-user.target
"""
GCE_CONFIG = "/home/kubernetes/kubelet-config.yaml"
#: ``KUBELET_OPTS="${KUBELET_ARGS} ${KUBELET_CONFIG_FILE_ARG:-} ${kubelet_cgroup_driver}"``;
#: KUBELET_CONFIG_FILE_ARG is ``--config ${KUBE_HOME}/kubelet-config.yaml``
#: (cluster/gce/gci/configure.sh)
GCE_ENV = f"""\
KUBELET_OPTS="--v=2 --cloud-provider=external --experimental-mounter-path=/home/kubernetes/\
containerized_mounter/mounter --cert-dir=/var/lib/kubelet/pki/ \
--kubeconfig=/var/lib/kubelet/kubeconfig --max-pods=110 --node-labels=cloud.google.com/\
metadata-proxy-ready=true --volume-plugin-dir=/home/kubernetes/flexvolume \
--container-runtime-endpoint=unix:///run/containerd/containerd.sock \
--config {GCE_CONFIG} --cgroup-driver=systemd"
KUBE_COVERAGE_FILE="/var/log/kubelet.cov"
"""
#: build-linux-kubelet-config (cluster/gce/util.sh), written by configure-helper from
#: the kube-env's KUBELET_CONFIG
GCE_CONFIG_FIELDS = """\
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: /etc/srv/kubernetes/pki/ca-certificates.crt
authorization:
  mode: Webhook
cgroupRoot: /
enableDebuggingHandlers: true
hairpinMode: hairpin-veth
readOnlyPort: 10255
registerNode: true
staticPodPath: /etc/kubernetes/manifests
"""


def gce(root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()) -> Layout:
    """GCE kube-up: ``clusterDNS`` in ``/home/kubernetes/kubelet-config.yaml``, named by
    ``--config PATH`` in ``KUBELET_OPTS`` of ``/etc/default/kubelet``. configure-helper
    rewrites both at every boot (the agent's drift check migrates again)."""
    tree = _Tree(root)
    unit = "/etc/systemd/system/kubelet.service"
    tree.write(unit, GCE_UNIT)
    tree.write("/etc/default/kubelet", GCE_ENV)
    config = _kubelet_config_yaml(cluster_dns, GCE_CONFIG_FIELDS)
    tree.write_deciding(GCE_CONFIG, config, "yaml", quirks)
    return tree.layout(
        "gce", dns_file=GCE_CONFIG, dns_format="yaml", cluster_dns=(cluster_dns,), unit=unit
    )


#: kOps's unit (kubernetes/kops, nodeup/pkg/model/kubelet.go, buildSystemdService; nodeup
#: installs it in /lib/systemd/system on Debian/Ubuntu): ``"$DAEMON_ARGS"`` is a word of
#: its own after unquoting, so systemd splits it at whitespace
KOPS_UNIT = """\
[Unit]
Description=Kubernetes Kubelet Server
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service

[Service]
EnvironmentFile=/etc/sysconfig/kubelet
ExecStart=/usr/local/bin/kubelet "$DAEMON_ARGS"
Restart=always
RestartSec=2s
StartLimitInterval=0
KillMode=process
User=root
CPUAccounting=true
MemoryAccounting=true

[Install]
WantedBy=multi-user.target
"""
KOPS_ENV_FILE = "/etc/sysconfig/kubelet"
KOPS_CONFIG = "/var/lib/kubelet/kubelet.conf"
#: buildSystemdEnvironmentFile: ``DAEMON_ARGS="<flags>"`` (flagbuilder, sorted by flag
#: name) and ``HOME="/root"``
KOPS_ENV = """\
DAEMON_ARGS="--anonymous-auth=false --authentication-token-webhook=true \
--authorization-mode=Webhook --cgroup-driver=systemd --cgroup-root=/ \
--client-ca-file=/srv/kubernetes/ca.crt --cloud-provider=external {dns}\
--kubeconfig=/var/lib/kubelet/kubeconfig --node-labels=node-role.kubernetes.io/node= \
--pod-infra-container-image=registry.k8s.io/pause:3.9 --v=2 \
--volume-plugin-dir=/usr/libexec/kubernetes/kubelet-plugins/volume/exec/{config}"
HOME="/root"
"""


def kops(root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()) -> Layout:
    """kOps before the kubelet config file: ``--cluster-dns`` in ``DAEMON_ARGS`` of
    ``/etc/sysconfig/kubelet`` (flagbuilder wrote it from ``spec.kubelet.clusterDNS``)."""
    tree = _Tree(root)
    unit = "/lib/systemd/system/kubelet.service"
    tree.write(unit, KOPS_UNIT)
    env = KOPS_ENV.format(
        dns=f"--cluster-dns={cluster_dns} --cluster-domain=cluster.local ", config=""
    )
    tree.write_deciding(KOPS_ENV_FILE, env, "env", quirks)
    return tree.layout(
        "kops",
        dns_file=KOPS_ENV_FILE,
        dns_format="env",
        cluster_dns=(cluster_dns,),
        unit=unit,
        variable="DAEMON_ARGS",
    )


def kops_config(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """Current kOps: ``DAEMON_ARGS`` ends in ``--config=/var/lib/kubelet/kubelet.conf``
    and ``clusterDNS`` is in that file (kubeletConfiguration in nodeup's kubelet.go)."""
    tree = _Tree(root)
    unit = "/lib/systemd/system/kubelet.service"
    tree.write(unit, KOPS_UNIT)
    tree.write(KOPS_ENV_FILE, KOPS_ENV.format(dns="", config=f" --config={KOPS_CONFIG}"))
    fields = (
        "cgroupDriver: systemd\ncgroupRoot: /\n"
        "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n"
        "tlsCertFile: /srv/kubernetes/kubelet-server.crt\n"
        "tlsPrivateKeyFile: /srv/kubernetes/kubelet-server.key\n"
    )
    tree.write_deciding(KOPS_CONFIG, _kubelet_config_yaml(cluster_dns, fields), "yaml", quirks)
    return tree.layout(
        "kops_config",
        dns_file=KOPS_CONFIG,
        dns_format="yaml",
        cluster_dns=(cluster_dns,),
        unit=unit,
    )


#: Flatcar's /etc/os-release (flatcar/scripts, the os-release of the image)
FLATCAR_OS_RELEASE = (
    'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nID_LIKE=coreos\n'
    'VERSION=3975.2.1\nVERSION_ID=3975.2.1\nPRETTY_NAME="Flatcar Container Linux by '
    'Kinvolk 3975.2.1 (Oklo)"\n'
)


def flatcar_kubeadm(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """kubeadm on Flatcar, installed "without a package manager" (kubernetes.io, Installing
    kubeadm): ``/usr`` is read-only, so kubelet is in ``/opt/bin`` and the release's
    kubelet.service and 10-kubeadm.conf (``sed "s:/usr/bin:/opt/bin:g"``) in
    ``/etc/systemd/system``; the extra args file of that drop-in is /etc/sysconfig/kubelet.
    The same decision as :func:`kubeadm`: ``clusterDNS`` of config.yaml."""
    tree = _Tree(root)
    files = _Kubeadm(
        unit_dir="/etc/systemd/system",
        extra_args_file="/etc/sysconfig/kubelet",
        kubelet="/opt/bin/kubelet",
    )
    unit = _kubeadm(tree, cluster_dns, files, quirks)
    tree.write(files.extra_args_file, "KUBELET_EXTRA_ARGS=\n")
    tree.write("/etc/os-release", FLATCAR_OS_RELEASE)
    return tree.layout(
        "flatcar_kubeadm",
        dns_file=CONFIG_YAML,
        dns_format="yaml",
        cluster_dns=(cluster_dns,),
        unit=unit,
    )


#: OpenStack Magnum's Fedora CoreOS driver (openstack/magnum, magnum/drivers/common/
#: templates/kubernetes/fragments/configure-kubernetes-minion.sh): kubelet runs in a podman
#: container started by ``bash -c '/usr/bin/podman run --name kubelet ... kubelet
#: $KUBELET_ARGS'`` (the quoted command continued over lines, as systemd loads it);
#: /etc/kubernetes/kubelet holds KUBELET_ARGS with ``--cluster_dns``
MAGNUM_UNIT = """\
[Unit]
Description=Kubelet via Hyperkube (System Container)
Wants=rpc-statd.service

[Service]
EnvironmentFile=/etc/sysconfig/heat-params
EnvironmentFile=/etc/kubernetes/config
EnvironmentFile=/etc/kubernetes/kubelet
ExecStartPre=/bin/mkdir -p /etc/kubernetes/cni/net.d
ExecStartPre=/bin/mkdir -p /etc/kubernetes/manifests
ExecStartPre=-/usr/bin/podman rm kubelet
ExecStart=/bin/bash -c '/usr/bin/podman run --name kubelet \\
    --privileged \\
    --pid host \\
    --network host \\
    --entrypoint /hyperkube \\
    --volume /:/rootfs:rslave,ro \\
    --volume /etc/kubernetes:/etc/kubernetes:ro,z \\
    --volume /var/lib/kubelet:/var/lib/kubelet:rshared,z \\
    ${HYPERKUBE_IMAGE} \\
    kubelet \\
    $KUBE_LOGTOSTDERR $KUBE_LOG_LEVEL $KUBELET_API_SERVER $KUBELET_ADDRESS $KUBELET_PORT \
$KUBELET_HOSTNAME $KUBELET_ARGS'
ExecStop=-/usr/bin/podman stop kubelet
Delegate=yes
Restart=always
RestartSec=10
TimeoutStartSec=10min

[Install]
WantedBy=multi-user.target
"""
MAGNUM_ENV_FILE = "/etc/kubernetes/kubelet"
MAGNUM_ENV = """\
KUBELET_ADDRESS="--address=0.0.0.0"
KUBELET_HOSTNAME="--hostname-override=k8s-cluster-node-0"
KUBELET_ARGS="--register-node=true --kubeconfig /etc/kubernetes/kubelet-config.yaml \
--cgroup-driver=systemd --cluster_dns={dns} --cluster_domain=cluster.local \
--node-labels=magnum.openstack.org/role=worker"
"""
FEDORA_COREOS_OS_RELEASE = (
    'NAME="Fedora Linux"\nVERSION="38.20230806.3.0 (CoreOS)"\nID=fedora\n'
    'VERSION_ID=38\nVARIANT="CoreOS"\nVARIANT_ID=coreos\n'
)


def magnum_fcos(
    root: Path, cluster_dns: str = DEFAULT_CLUSTER_DNS, quirks: Quirks = Quirks()
) -> Layout:
    """OpenStack Magnum on Fedora CoreOS: kubelet in a podman container (:data:`MAGNUM_UNIT`).
    Refused: the unit's main process is not kubelet and its command line is a shell's;
    the sandbox's systemctl cannot run it either, so the node starts without kubelet."""
    tree = _Tree(root)
    unit = "/etc/systemd/system/kubelet.service"
    tree.write(unit, MAGNUM_UNIT)
    tree.write(
        "/etc/sysconfig/heat-params",
        "HYPERKUBE_IMAGE=docker.io/openstackmagnum/hyperkube:v1.27.4\n",
    )
    tree.write(
        "/etc/kubernetes/config", 'KUBE_LOGTOSTDERR="--logtostderr=true"\nKUBE_LOG_LEVEL="--v=3"\n'
    )
    tree.write_deciding(MAGNUM_ENV_FILE, MAGNUM_ENV.format(dns=cluster_dns), "env", quirks)
    tree.write("/etc/os-release", FEDORA_COREOS_OS_RELEASE)
    return tree.layout(
        "magnum_fcos",
        dns_file=MAGNUM_ENV_FILE,
        dns_format="env",
        cluster_dns=(cluster_dns,),
        unit=unit,
        variable="KUBELET_ARGS",
    )


# --- dispatch ---------------------------------------------------------------------------

LayoutFunction = Callable[[Path, str, Quirks], Layout]

#: Layout name -> function; every function takes ``(root, cluster_dns, quirks)``.
LAYOUTS: dict[str, LayoutFunction] = {
    "tke": tke,
    "kubeadm": kubeadm,
    "kubeadm_flag": kubeadm_flag,
    "kubeadm_flag_underscore": kubeadm_flag_underscore,
    "eks": eks,
    "config_dir": config_dir,
    "sysconfig": sysconfig,
    "ack_kubeadm": ack_kubeadm,
    "eks_extra_args": eks_extra_args,
    "hardway": hardway,
    "k3s_kubelet_arg": k3s_kubelet_arg,
    "k3s_agent_flow": k3s_agent_flow,
    "k3s_dotd": k3s_dotd,
    "k3s_config_dir": k3s_config_dir,
    "rke2_agent": rke2_agent,
    "rke2_server_kubelet_arg": rke2_server_kubelet_arg,
    "microk8s": microk8s,
    "kubespray": kubespray,
    "eks_nodeadm": eks_nodeadm,
    "aks": aks,
    "aks_flags": aks_flags,
    "gce": gce,
    "kops": kops,
    "kops_config": kops_config,
    "flatcar_kubeadm": flatcar_kubeadm,
    "magnum_fcos": magnum_fcos,
}
#: Layouts whose kubelet runs in a container (the unit runs podman): the sandbox's
#: systemctl cannot start it; their nodes start with ``kubelet=False``.
CONTAINERIZED_KUBELET = frozenset({"magnum_fcos"})
#: CNI plugin each layout gets unless told otherwise.
DEFAULT_CNI: Mapping[str, str] = {
    "tke": "tke-bridge",
    "eks": "aws-cni",
    "eks_extra_args": "aws-cni",
    "eks_nodeadm": "aws-cni",
}


def write_layout(
    root: Path,
    name: str,
    *,
    cluster_dns: str = DEFAULT_CLUSTER_DNS,
    cni: str | None = "",
    **quirks: bool,
) -> Layout:
    """Write layout ``name`` and a CNI config under ``root``.

    ``cni``: a key of :data:`CNI_CONFIGS`, ``None`` for no CNI config, ``""`` for the
    layout's usual one. ``quirks``: the fields of :class:`Quirks`.
    """
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; expected one of {', '.join(LAYOUTS)}")
    layout = LAYOUTS[name](root, cluster_dns, Quirks(**quirks))
    plugin = DEFAULT_CNI.get(name, "flannel") if cni == "" else cni
    if plugin is None:
        return layout
    cni_files = write_cni(root, plugin)
    return replace(layout, cni=plugin, files={**layout.files, **cni_files})
