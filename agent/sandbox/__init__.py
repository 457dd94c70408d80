"""A sandboxed fake Kubernetes node on this machine, for integration tests, benchmarks and
the ``demo`` command.

- :mod:`agent.sandbox.node`: :class:`SandboxNode`, namespaces + links + dnsmasq + stand-ins
- :mod:`agent.sandbox.layouts`: realistic host-root layouts (TKE, kubeadm, EKS, ...)
- :mod:`agent.sandbox.systemctl_stub`: the recording ``systemctl`` inside the node
- :mod:`agent.sandbox.kubelet_standin`, :mod:`agent.sandbox.standins`: kubelet, kube-proxy
- :mod:`agent.sandbox.nodefiles`: the node's work directory, shared by all of them

The stand-ins import only :mod:`agent.sandbox.nodefiles` and the standard library (plus
PyYAML for the kubelet), never the agent's own parsers, so this package stays cheap to
import: :class:`SandboxNode` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.sandbox.node import SandboxNode

__all__ = ["SandboxNode"]


def __getattr__(name: str) -> object:
    if name == "SandboxNode":
        from agent.sandbox.node import SandboxNode

        return SandboxNode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
