"""A node for engine and daemon tests: a temporary host root plus the doubles of
``testing/fakes.py`` wired to behave like a kubelet under systemd."""

from __future__ import annotations

import time
from pathlib import Path

from nodelocaldns_agent.engine import NodeEngine
from nodelocaldns_agent.host.files import FileJournal
from nodelocaldns_agent.host.probes import HttpResult, ProcessInfo
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig.envfile import find_cluster_dns
from nodelocaldns_agent.settings import NodeSettings
from testing.fakes import FakeHttp, FakeInterfaces, FakeProber, FakeProcesses, FakeRunner

LOCAL = "169.254.20.10"
HEALTHZ = "http://127.0.0.1:10248/healthz"
TKE_ENV = (
    b"# managed by TKE\n"
    b'ANONYMOUS_AUTH="--anonymous-auth=false"\n'
    b'CLUSTER_DNS="--cluster-dns=10.96.0.10"\n'
    b"MAX_PODS='--max-pods=61'\n"
    b"# caf\xe9 (latin-1 byte kept)\n"
    b'NODE_IP="--node-ip=10.0.0.5"'
)
TKE_UNIT = (
    "[Unit]\nDescription=kubelet\n[Service]\nEnvironmentFile=-/etc/kubernetes/kubelet\n"
    "ExecStart=/usr/bin/kubelet ${ANONYMOUS_AUTH} ${CLUSTER_DNS} ${MAX_PODS} ${NODE_IP}\n"
)


class FakeNode:
    """A temporary host root plus doubles that behave like a kubelet under systemd."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.http = FakeHttp(
            {
                HEALTHZ: HttpResult(200, "ok"),
                "http://127.0.0.1:10249/proxyMode": HttpResult(200, "ipvs"),
            }
        )
        self.interfaces = FakeInterfaces(
            {"lo": ("127.0.0.1",), "nodelocaldns": (LOCAL,), "kube-ipvs0": ("10.96.0.10",)}
        )
        self.prober = FakeProber()
        self.processes = FakeProcesses()
        self.clock = JumpClock()
        self.runner = FakeRunner(on_run=self._restart)
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
        env = self.root / "etc/kubernetes/kubelet"
        occ = find_cluster_dns(env.read_bytes(), "env") if env.is_file() else None
        argv = ["/usr/bin/kubelet", "--node-ip=10.0.0.5"]
        if occ is not None:
            argv.append("--cluster-dns=" + ",".join(occ.values))
        self.pid += 1
        self.processes.running = [ProcessInfo(self.pid, self.clock.now, tuple(argv))]

    def _restart(self, argv: tuple[str, ...]) -> None:
        self.clock.now += 1
        if self.kubelet_comes_back:
            self.start_kubelet()
            self.http.routes[HEALTHZ] = HttpResult(200, "ok")
        else:
            self.processes.running = []
            self.http.routes[HEALTHZ] = OSError("connection refused")
            self.kubelet_comes_back = True  # the rollback's restart works

    def engine(self, **settings: object) -> NodeEngine:
        s = NodeSettings(
            host_root=self.root,
            restart_command=("restart-kubelet",),
            verify_timeout=5.0,
            **settings,
        )  # type: ignore[arg-type]
        host = HostRoot(self.root)
        return NodeEngine(
            s,
            host,
            self.interfaces,
            self.http,
            self.prober,
            self.processes,
            self.runner,
            self.clock,
            FileJournal(host, s.state_dir),
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
    node.write("/etc/kubernetes/kubelet", TKE_ENV)
    node.write("/usr/lib/systemd/system/kubelet.service", TKE_UNIT)
    node.start_kubelet()
    return node
