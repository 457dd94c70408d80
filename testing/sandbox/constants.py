"""What every fake node of the harness agrees on: addresses, ports, names and host paths.

The one place for them: :class:`testing.sandbox.node.SandboxNode` and the nodes built on it
(the systemd node, the crash harness), the stand-ins that run inside a node, the in-process
doubles (:mod:`testing.fakenode`) and the tests. Standard library only and no imports, so
the stand-ins can import it on every start.
"""

from __future__ import annotations

#: NodeLocal DNSCache's link-local address (bound in a node only, never probed from the
#: machine's own network namespace)
LOCAL_DNS = "169.254.20.10"
#: the kube-dns Service IP: what kubelet's cluster DNS is before a migration
CLUSTER_DNS = "10.96.0.10"
#: the cluster's CoreDNS behind node-cache (the ``kube-dns-upstream`` Service's ClusterIP):
#: a dnsmasq stand-in on a link of its own in nodes whose local DNS is the real node-cache
UPSTREAM_DNS = "10.96.0.53"
#: a cluster DNS the kubelet stand-in refuses to start with (TEST-NET-1): the "bad value"
#: of rollback tests
BAD_DNS = "192.0.2.1"
#: the name the node's local DNS answers, and its address
KUBERNETES_NAME = "kubernetes.default.svc.cluster.local"
KUBERNETES_IP = "10.96.0.1"

#: the links kube-proxy (IPVS mode) and node-local-dns create
LOCAL_DNS_LINK = "nodelocaldns"
IPVS_LINK = "kube-ipvs0"
#: the link holding UPSTREAM_DNS
UPSTREAM_DNS_LINK = "kube-dns-up"
#: the cluster domain (the upstream stand-in answers NXDOMAIN for unknown names in it)
CLUSTER_DOMAIN = "cluster.local"

#: kubelet's /healthz and kube-proxy's metrics port (``/proxyMode``), on 127.0.0.1
HEALTHZ_PORT = 10248
PROXY_PORT = 10249
HEALTHZ_URL = f"http://127.0.0.1:{HEALTHZ_PORT}/healthz"
PROXY_MODE_URL = f"http://127.0.0.1:{PROXY_PORT}/proxyMode"

#: the agent's state directory and journal on the host
STATE_DIR = "/var/lib/nodelocaldns-agent"
JOURNAL = f"{STATE_DIR}/state.json"

#: the agent's default restart command (``--restart-command``), run inside a node
DEFAULT_RESTART = (
    "nsenter",
    "--target",
    "1",
    "--mount",
    "--uts",
    "--ipc",
    "--net",
    "--pid",
    "--",
    "systemctl",
    "restart",
    "kubelet",
)
