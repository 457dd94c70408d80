"""node-cache's lifecycle on a sandbox node, the way Kubernetes drives its DaemonSet pod.

:class:`NodeCacheLifecycle` acts on the node's running node-cache
(:attr:`SandboxNode.local_dns_process`) and returns when each step happened
(``time.monotonic()``, the clock of :class:`testing.sandbox.pod.Lookup`):

- :meth:`~NodeCacheLifecycle.surge`: the chart's update (``maxSurge``, ``maxUnavailable:
  0``): a new node-cache starts beside the old one, serves, stays ``overlap`` seconds
  (``minReadySeconds``), then the old one gets SIGTERM;
- :meth:`~NodeCacheLifecycle.replace`: the upstream manifest's update (``maxUnavailable``,
  no surge): SIGTERM to the old one, ``gap`` seconds (the DaemonSet controller creating the
  new pod, kubelet starting it), then the new one;
- :meth:`~NodeCacheLifecycle.kill`: SIGKILL (an OOM kill), kubelet's back-off, a restart.

A node-cache "serves" once its ``-pidfile`` exists (CoreDNS writes it after its servers
listen: coredns ``core/dnsserver`` via caddy's ``-pidfile``), or, for a render without
``-pidfile``, once a socket listens on the local address's port 53.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from testing.sandbox.constants import LOCAL_DNS_LINK
from testing.sandbox.node import READY_TIMEOUT, NodeProcess, SandboxError, SandboxNode

_POLL = 0.005


class NodeCacheLifecycle:
    """Update, stop and kill the node-cache of ``node`` (a node whose local DNS is the
    real node-cache, running)."""

    def __init__(self, node: SandboxNode) -> None:
        if node.chart is None or node.local_dns_process is None:
            raise SandboxError(f"{node.workdir}: no node-cache running in the node")
        self.node = node
        self.chart = node.chart
        self._started = 1
        #: whether the ``nodelocaldns`` link was still there when the last stopped
        #: node-cache had exited (its teardown deletes it without ``-skipteardown``)
        self.link_kept: bool | None = None

    def _pidfile(self, name: str) -> Path | None:
        path = self.chart.flag("pidfile")
        for mount in ("/etc/", "/run/"):
            if path.startswith(mount):
                return self.node.workdir / name / mount.strip("/") / path.removeprefix(mount)
        return None

    def start(self) -> tuple[NodeProcess, float]:
        """Start one more node-cache; returns it and when it served."""
        self._started += 1
        name = f"node-cache-{self._started}"
        self.node.bind_local_addresses()
        proc = self.node.spawn_node_cache(name)
        pidfile = self._pidfile(name)
        deadline = time.monotonic() + READY_TIMEOUT
        while not (
            pidfile.exists()
            if pidfile is not None
            else all(self.node.listening("udp", ip, 53) for ip in self.node.local_addresses)
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SandboxError(
                    f"{name} did not serve within {READY_TIMEOUT:g}s: {self.node.log_tail(name)}"
                )
            time.sleep(_POLL)
        return proc, time.monotonic()

    def _stop(self, sig: int) -> tuple[float, float]:
        """Signal the running node-cache; (when, when it had exited)."""
        old = self.node.local_dns_process
        if old is None:
            raise SandboxError(f"{self.node.workdir}: no node-cache running in the node")
        sent = time.monotonic()
        old.send_signal(sig)
        old.wait(timeout=30)
        exited = time.monotonic()
        self.node.local_dns_process = None
        self.link_kept = LOCAL_DNS_LINK in self.node.links()
        return sent, exited

    def surge(self, overlap: float) -> dict[str, float]:
        """The chart's update: new one serving, ``overlap`` s together, old one SIGTERM."""
        started = time.monotonic()
        new, served = self.start()
        time.sleep(overlap)
        if new.poll() is not None:
            raise SandboxError(f"the new node-cache exited: {self.node.diagnostics()}")
        sent, exited = self._stop(signal.SIGTERM)
        self.node.local_dns_process = new
        return {"new_started": started, "new_serving": served, "sigterm": sent, "exited": exited}

    def replace(self, gap: float) -> dict[str, float]:
        """The upstream update: SIGTERM to the old one, ``gap`` s, then the new one."""
        sent, exited = self._stop(signal.SIGTERM)
        time.sleep(max(0.0, gap - (time.monotonic() - sent)))
        started = time.monotonic()
        self.node.local_dns_process, served = self.start()
        return {"sigterm": sent, "exited": exited, "new_started": started, "new_serving": served}

    def kill(self, backoff: float) -> dict[str, float]:
        """SIGKILL (as an OOM kill), kubelet's ``backoff`` s, then a restart."""
        sent, exited = self._stop(signal.SIGKILL)
        time.sleep(max(0.0, backoff - (time.monotonic() - sent)))
        started = time.monotonic()
        self.node.local_dns_process, served = self.start()
        return {"sigkill": sent, "exited": exited, "new_started": started, "new_serving": served}
