"""A sandboxed cluster on this machine: the fake API server, sandbox nodes, relays, and the
real agent ``run`` on each node. Used by the demo and by the end-to-end tests.

The fake API server runs on the machine's loopback; every node is its own network
namespace. They meet through :mod:`testing.sandbox.relay` at Unix sockets, so no traffic
uses a non-loopback address.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nodelocaldns_agent.state import STATE_ANNOTATION
from testing.sandbox.node import REPO_ROOT, NodeProcess, SandboxNode

#: where the agents in the nodes find the API (a relay to the machine's fake API server)
API_PORT_IN_NODE = 6443
#: the agents' /metrics port inside their nodes
METRICS_PORT_IN_NODE = 9779
#: node-cache's ``prometheus`` port (the chart's nodeLocalDNS.metricsPort) inside the nodes
NODE_CACHE_METRICS_PORT_IN_NODE = 9253
#: the chart installs into kube-system, as the README says
NAMESPACE = "kube-system"
#: the agents' restart-slot Leases
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SandboxCluster:
    """``with SandboxCluster(workdir) as cluster: cluster.add_node(...)``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nodes: dict[str, SandboxNode] = {}
        self.agents: dict[str, NodeProcess] = {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __enter__(self) -> SandboxCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def _spawn(self, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{log}.log").open("wb") as out:
            proc = subprocess.Popen(list(argv), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def _relay(self, listen: str, connect: str, log: str) -> None:
        self._spawn([sys.executable, "-m", "testing.sandbox.relay", listen, connect], log)

    def http(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A request to the fake API server (loopback)."""
        req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.api + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        with self._opener.open(req, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")

    def wait(
        self,
        what: str,
        done: Callable[[], bool],
        timeout: float,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            tick()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} did not happen within {timeout:g}s; logs are under {self.workdir}"
                )
            time.sleep(0.2)
        tick()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._spawn(
            [
                sys.executable,
                "-m",
                "testing.fake_apiserver",
                "--port",
                str(self.port),
                "--kubeconfig-out",
                str(self.workdir / "kubeconfig-host"),
            ],
            "apiserver",
        )
        sock = self.workdir / "api.sock"
        self._relay(f"unix:{sock}", f"tcp:127.0.0.1:{self.port}", "relay-api")

        def up() -> bool:
            try:
                self.http("GET", "/api/v1/nodes")
            except OSError:
                return False
            return sock.exists()

        self.wait("the fake API server starting", up, 20)
        (self.workdir / "kubeconfig").write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "sandbox",
                    "clusters": [
                        {
                            "name": "sandbox",
                            "cluster": {"server": f"http://127.0.0.1:{API_PORT_IN_NODE}"},
                        }
                    ],
                    "users": [{"name": "sandbox", "user": {}}],
                    "contexts": [
                        {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox"}}
                    ],
                }
            )
        )

    def add_node(self, name: str, **options: Any) -> SandboxNode:
        """A Node object in the API and a started sandbox node with the API relayed in."""
        self.http(
            "POST",
            "/api/v1/nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}},
        )
        node = SandboxNode(self.workdir / name, name=name, **options)
        self.nodes[name] = node
        node.start()
        node.spawn_python(
            "relay-api",
            [
                "-m",
                "testing.sandbox.relay",
                f"tcp:127.0.0.1:{API_PORT_IN_NODE}",
                f"unix:{self.workdir / 'api.sock'}",
            ],
        )
        return node

    def expose_metrics(self, name: str, port_in_node: int = METRICS_PORT_IN_NODE) -> int:
        """A machine-loopback port that reaches ``port_in_node`` on the node's loopback
        (by default the agent's /metrics) inside node ``name``."""
        node = self.nodes[name]
        tag = "" if port_in_node == METRICS_PORT_IN_NODE else f"-{port_in_node}"
        sock = self.workdir / f"metrics-{name}{tag}.sock"
        node.spawn_python(
            f"relay-metrics{tag}",
            [
                "-m",
                "testing.sandbox.relay",
                f"unix:{sock}",
                f"tcp:127.0.0.1:{port_in_node}",
            ],
        )
        port = free_port()
        self.wait(f"the metrics relay of {name}", sock.exists, 10)
        self._relay(f"tcp:127.0.0.1:{port}", f"unix:{sock}", f"relay-metrics-{name}{tag}")

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        self.wait(f"the machine-side metrics relay of {name}", listening, 10)
        return port

    def start_agent(self, name: str, mode: str = "migrate", *extra: str) -> NodeProcess:
        """(Re)start the real ``run`` on node ``name``, like a DaemonSet pod rollout."""
        node = self.nodes[name]
        old = self.agents.pop(name, None)
        if old is not None:
            old.terminate()
            old.wait(timeout=60)
        self.agents[name] = node.spawn_agent(
            node.agent_argv(
                "run",
                "--node-name",
                name,
                "--namespace",
                NAMESPACE,
                "--kubeconfig",
                str(self.workdir / "kubeconfig"),
                "--mode",
                mode,
                "--metrics-address",
                f"127.0.0.1:{METRICS_PORT_IN_NODE}",
                "--log-format",
                "json",
                *extra,
            )
        )
        return self.agents[name]

    def node_objects(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.http("GET", "/api/v1/nodes").get("items", [])
        return items

    def lease_holders(self) -> list[str]:
        """The holders of the restart-slot Leases now: the restarts the cluster-wide
        limit lets run (never more than ``--max-concurrent-restarts``)."""
        leases = self.http("GET", LEASES).get("items", [])
        holders = [(lease.get("spec") or {}).get("holderIdentity") for lease in leases]
        return [holder for holder in holders if holder]

    def states(self) -> dict[str, str]:
        return {
            n["metadata"]["name"]: (n["metadata"].get("annotations") or {}).get(
                STATE_ANNOTATION, "-"
            )
            for n in self.node_objects()
        }

    def close(self) -> None:
        for agent in self.agents.values():
            with contextlib.suppress(OSError):
                agent.terminate()
        for node in reversed(list(self.nodes.values())):
            node.close()
        for proc in reversed(self.procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
