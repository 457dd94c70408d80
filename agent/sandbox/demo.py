"""``nodelocaldns-agent demo``: the whole system on this machine, nothing leaves it.

The fake API server (``tests/fake_apiserver``, from the repository checkout), three
sandboxed nodes — each its own network namespace with a real dnsmasq on 169.254.20.10, its
own host root and a kubelet stand-in under a recording ``systemctl`` — and the real agent
``run`` on each with ``--max-concurrent-restarts 1``. node-3's local DNS is down at first.
The demo prints the fleet table as nodes migrate one at a time, brings node-3's DNS up,
then reverts the fleet like the chart's uninstall hook, and cleans up, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.fleet import render_status
from agent.sandbox.node import REPO_ROOT, NodeProcess, SandboxNode

NAMESPACE = "nodelocaldns"
NODES = (("node-1", "tke", "up"), ("node-2", "kubeadm", "up"), ("node-3", "tke", "down"))
API_PORT_IN_NODE = 6443
STEP_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nodes: list[SandboxNode] = []
        self.agents: dict[str, NodeProcess] = {}
        self.last_table = ""

    # ------------------------------------------------------------ plumbing
    def _start(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.workdir / f"{log}.log").open("wb")
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def _http(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.api + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")

    def _wait(self, what: str, done: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.show()
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo: {what} did not happen within {timeout:g}s; "
                                   f"logs are under {self.workdir}")
            time.sleep(0.5)
        self.show()

    def states(self) -> dict[str, str]:
        items = self._http("GET", "/api/v1/nodes").get("items", [])
        return {n["metadata"]["name"]: (n["metadata"].get("annotations") or {}).get(
            "nodelocaldns-agent.io/state", "-") for n in items}

    def show(self) -> None:
        table, _ = render_status(self._http("GET", "/api/v1/nodes").get("items", []), "table")
        if table != self.last_table:
            print(f"\n[{time.strftime('%H:%M:%S')}] nodelocaldns-agent status\n{table}",
                  flush=True)
            self.last_table = table

    # ------------------------------------------------------------ steps
    def start_api(self) -> None:
        kubeconfig = self.workdir / "kubeconfig-host"
        self._start([sys.executable, "-m", "tests.fake_apiserver", "--port", str(self.port),
                     "--kubeconfig-out", str(kubeconfig)], "apiserver")
        sock = self.workdir / "api.sock"
        relay = self._start([sys.executable, "-m", "agent.sandbox.relay", f"unix:{sock}",
                             f"tcp:127.0.0.1:{self.port}"], "relay-host")

        def up() -> bool:
            try:
                self._http("GET", "/api/v1/nodes")
                return sock.exists() and relay.poll() is None
            except OSError:
                return False
        deadline = time.monotonic() + 20
        while not up():
            if time.monotonic() > deadline:
                raise RuntimeError("demo: the fake API server did not start")
            time.sleep(0.1)
        (self.workdir / "kubeconfig").write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "demo",
            "clusters": [{"name": "demo", "cluster": {
                "server": f"http://127.0.0.1:{API_PORT_IN_NODE}"}}],
            "users": [{"name": "demo", "user": {}}],
            "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}],
        }))
        print(f"fake API server on 127.0.0.1:{self.port} (relayed into every node at "
              f"127.0.0.1:{API_PORT_IN_NODE})")

    def start_nodes(self) -> None:
        for name, layout, dns in NODES:
            self._http("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                 "metadata": {"name": name}})
            node = SandboxNode(self.workdir / name, name=name, layout=layout, local_dns=dns)
            self.nodes.append(node)
            node.start()
            node.spawn_python("relay", ["-m", "agent.sandbox.relay",
                                        f"tcp:127.0.0.1:{API_PORT_IN_NODE}",
                                        f"unix:{self.workdir / 'api.sock'}"])
            where = node.layout.dns_file if node.layout else "?"
            print(f"{name}: {layout} layout, kubelet config {where}, local DNS {dns}")

    def start_agents(self, mode: str) -> None:
        for node in self.nodes:
            old = self.agents.pop(node.name, None)
            if old is not None:
                old.terminate()
                old.wait(timeout=30)
            self.agents[node.name] = node.spawn_agent([
                "run", "--node-name", node.name, "--namespace", NAMESPACE,
                "--kubeconfig", str(self.workdir / "kubeconfig"),
                "--host-root", str(node.root), "--mode", mode,
                "--max-concurrent-restarts", "1", "--probe-interval", "1",
                "--metrics-address", "127.0.0.1:9779", "--verify-timeout", "20",
                "--log-format", "json",
            ])

    def run(self) -> int:
        _say("starting the fake API server")
        self.start_api()
        _say("building three sandboxed nodes (network namespaces, dnsmasq on 169.254.20.10)")
        self.start_nodes()
        _say("starting the agent on every node (max 1 kubelet restart at a time)")
        self.start_agents("migrate")
        self._wait("node-1 and node-2 migrating",
                   lambda: all(self.states().get(n) == "migrated" for n in ("node-1", "node-2")))
        print("node-3 waits: its local DNS does not answer, so kubelet is left alone.")
        _say("bringing node-3's local DNS up")
        self.nodes[2].set_local_dns("up")
        self._wait("node-3 migrating", lambda: self.states().get("node-3") == "migrated")
        for node in self.nodes:
            print(f"{node.name}: kubelet now runs with --cluster-dns="
                  f"{','.join((node.kubelet() or {}).get('cluster_dns', []))}")
        _say("fleet-wide revert (what `helm uninstall` does first): agents rolled to --mode "
             "revert")
        self.start_agents("revert")
        self._wait("every node reverting",
                   lambda: all(s == "reverted" for s in self.states().values()))
        for node in self.nodes:
            print(f"{node.name}: kubelet back on --cluster-dns="
                  f"{','.join((node.kubelet() or {}).get('cluster_dns', []))}; "
                  f"{len(node.restarts())} systemctl calls recorded")
        _say("done")
        return 0

    def close(self) -> None:
        for agent in self.agents.values():
            with contextlib.suppress(OSError):
                agent.terminate()
        for node in reversed(self.nodes):
            node.close()
        for proc in reversed(self.procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_demo(workdir: str | None) -> int:
    keep = workdir is not None
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="nodelocaldns-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    demo = Demo(root.resolve())
    try:
        return demo.run()
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
