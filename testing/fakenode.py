"""A node for engine and daemon tests: a temporary host root plus the doubles of
``testing/fakes.py`` wired to behave like a kubelet under systemd.

In process, no namespaces: the in-process double of :class:`testing.sandbox.SandboxNode`.
Its host files come from the same layouts (:mod:`testing.sandbox.layouts`) and its
addresses from the same constants (:mod:`testing.sandbox.constants`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nodelocaldns_agent.engine import NodeEngine
from nodelocaldns_agent.host.files import FileJournal
from nodelocaldns_agent.host.probes import HttpResult, ProcessInfo
from nodelocaldns_agent.host.systemd import EnvironmentFile, UnitStatus
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig.envfile import find_cluster_dns
from nodelocaldns_agent.settings import NodeSettings
from testing.fakes import (
    FakeHttp,
    FakeInterfaces,
    FakeIptables,
    FakeProber,
    FakeProcesses,
    FakeRunner,
    FakeSystemd,
    host_process,
)
from testing.sandbox import layouts
from testing.sandbox.constants import (
    CLUSTER_DNS,
    HEALTHZ_URL,
    IPVS_LINK,
    LOCAL_DNS,
    LOCAL_DNS_LINK,
    PROXY_MODE_URL,
)

LOCAL = LOCAL_DNS
#: node-cache's /health on the local address (CoreDNS's health plugin, the chart's port)
NODE_CACHE_HEALTH_URL = f"http://{LOCAL_DNS}:8080/health"
HEALTHZ = HEALTHZ_URL
#: a TKE node's /etc/kubernetes/kubelet with a Latin-1 byte and no final newline, whose
#: bytes the agent must keep
TKE_ENV = layouts.apply_quirks(
    layouts.tke_env().encode(), "env", layouts.Quirks(non_utf8=True, no_trailing_newline=True)
)
TKE_UNIT = layouts.tke_unit()
#: what the host's systemd shows of a TKE node's kubelet.service (before it starts)
TKE_STATUS = UnitStatus(
    "kubelet.service",
    "loaded",
    "inactive",
    0,
    fragment_path=layouts.TKE_UNIT_FILE,
    environment_files=(EnvironmentFile(layouts.TKE_ENV_FILE, optional=True),),
)


class FakeNode:
    """A temporary host root plus doubles that behave like a kubelet under systemd."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.http = FakeHttp(
            {
                HEALTHZ: HttpResult(200, "ok"),
                PROXY_MODE_URL: HttpResult(200, "ipvs"),
                NODE_CACHE_HEALTH_URL: HttpResult(200, "OK"),
            }
        )
        self.interfaces = FakeInterfaces(
            {"lo": ("127.0.0.1",), LOCAL_DNS_LINK: (LOCAL,), IPVS_LINK: (CLUSTER_DNS,)}
        )
        self.prober = FakeProber()
        self.processes = FakeProcesses()
        #: kubelet.service without a unit file under the root (set ``status`` for one)
        self.systemd = FakeSystemd(UnitStatus("kubelet.service", "loaded", "inactive", 0))
        self.clock = JumpClock()
        self.runner = FakeRunner(on_run=self._restart)
        self.iptables = FakeIptables()
        self.kubelet_comes_back = True
        self.pid = 100

    def write(self, path: str, data: bytes | str) -> Path:
        real = self.root / path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(data.encode() if isinstance(data, str) else data)
        return real

    def read(self, path: str) -> bytes:
        return (self.root / path.lstrip("/")).read_bytes()

    def start_kubelet(self) -> None:
        env = self.root / layouts.TKE_ENV_FILE.lstrip("/")
        occ = find_cluster_dns(env.read_bytes(), "env") if env.is_file() else None
        argv = ["/usr/bin/kubelet", "--node-ip=10.0.0.5"]
        if occ is not None:
            argv.append("--cluster-dns=" + ",".join(occ.values))
        self.run_kubelet(*argv)

    def run_kubelet(self, *argv: str) -> ProcessInfo:
        """A new kubelet process with ``argv``, kubelet.service's main process."""
        self.pid += 1
        proc = host_process(self.pid, self.clock.now, argv)
        self.processes.running = [proc]
        self.systemd.started(self.pid)
        return proc

    def stop_kubelet(self) -> None:
        self.processes.running = []
        self.systemd.stopped()

    def _restart(self, argv: tuple[str, ...]) -> None:
        self.clock.now += 1
        if self.kubelet_comes_back:
            self.start_kubelet()
            self.http.routes[HEALTHZ] = HttpResult(200, "ok")
        else:
            self.stop_kubelet()
            self.http.routes[HEALTHZ] = OSError("connection refused")
            self.kubelet_comes_back = True  # the rollback's restart works

    def engine(self, **settings: Any) -> NodeEngine:
        s = NodeSettings(
            host_root=self.root,
            restart_command=("restart-kubelet",),
            verify_timeout=5.0,
            **settings,
        )
        host = HostRoot(self.root)
        return NodeEngine(
            s,
            host,
            self.interfaces,
            self.http,
            self.prober,
            self.processes,
            self.systemd,
            self.runner,
            self.clock,
            FileJournal(host, s.state_dir),
            self.iptables,
        )


class JumpClock:
    """Real monotonic time plus an offset: sleeps are instant jumps, threads still run."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        self.offset += max(seconds, 0.0)

    @property
    def now(self) -> float:
        return self.monotonic()

    @now.setter
    def now(self, value: float) -> None:
        self.offset += value - self.monotonic()


def tke_node(root: Path) -> FakeNode:
    node = FakeNode(root)
    node.write(layouts.TKE_ENV_FILE, TKE_ENV)
    node.write(layouts.TKE_UNIT_FILE, TKE_UNIT)
    node.systemd.status = TKE_STATUS
    node.start_kubelet()
    return node
