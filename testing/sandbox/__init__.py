"""A sandboxed fake Kubernetes node on this machine, for integration tests, benchmarks and
the demo (:mod:`testing.demo`).

- :mod:`testing.sandbox.node`: :class:`SandboxNode`, namespaces + links + the local DNS
  (the real node-cache, or dnsmasq) + stand-ins;
  the one sandbox node type (:mod:`testing.systemd_node` and ``bench/faults.py`` build on it)
- :mod:`testing.sandbox.node_cache`: the real node-cache binary (found, checked) and the
  chart's Corefile and arguments for it (``helm template``)
- :mod:`testing.sandbox.pod`: a pod on a node (own network namespace behind a veth pair,
  kubelet's resolv.conf) resolving through glibc and musl all the time (``resolver.c``)
- :mod:`testing.sandbox.rollout`: node-cache's surge update, upstream update and SIGKILL
  restart on a node, as Kubernetes drives them
- :mod:`testing.sandbox.constants`: the addresses, ports and paths every node agrees on
- :mod:`testing.sandbox.layouts`: realistic host-root layouts (TKE, kubeadm, EKS, ...)
- :mod:`testing.sandbox.systemctl_stub`: the recording ``systemctl`` inside the node
- :mod:`testing.sandbox.kubelet_standin`, :mod:`testing.sandbox.standins`: kubelet, kube-proxy
- :mod:`testing.sandbox.nodefiles`: the node's work directory, shared by all of them

The stand-ins import only :mod:`testing.sandbox.nodefiles` and the standard library (plus
PyYAML for the kubelet), never the agent's own parsers, so this package stays cheap to
import: :class:`SandboxNode` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testing.sandbox.node import SandboxNode

__all__ = ["SandboxNode"]


def __getattr__(name: str) -> object:
    if name == "SandboxNode":
        from testing.sandbox.node import SandboxNode

        return SandboxNode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
