"""``python -m testing.demo`` (``bash scripts/demo.sh``): the whole system on this machine;
nothing leaves it.

The fake API server, three sandboxed nodes — each its own network namespace with the real
node-cache on 169.254.20.10 (the chart's Corefile and arguments; a dnsmasq behind it as the
cluster's CoreDNS), its own host root, and a kubelet stand-in under a recording
``systemctl`` — and the real agent ``run`` on each with ``--max-concurrent-restarts 1``.
node-3's local DNS is down at first. The demo prints the fleet table as nodes migrate one
at a time, brings node-3's DNS up, then reverts the fleet like the chart's uninstall hook,
and cleans up everything it created, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nodelocaldns_agent.fleet import render_status
from testing.sandbox.cluster import SandboxCluster
from testing.sandbox.prometheus import Prometheus

NODES = (("node-1", "tke", "up"), ("node-2", "kubeadm", "up"), ("node-3", "tke", "down"))
AGENT_FLAGS = ("--max-concurrent-restarts", "1", "--probe-interval", "1", "--verify-timeout", "20")
STEP_TIMEOUT = 90.0


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


class Table:
    """Prints the fleet table whenever it changes."""

    def __init__(self, cluster: SandboxCluster) -> None:
        self.cluster = cluster
        self.last = ""

    def __call__(self) -> None:
        table, _ = render_status(self.cluster.node_objects(), "table")
        if table != self.last:
            print(f"\n[{time.strftime('%H:%M:%S')}] nodelocaldns-agent status\n{table}", flush=True)
            self.last = table


def _kubelet_dns(cluster: SandboxCluster, name: str) -> str:
    return ",".join(cluster.nodes[name].kubelet_dns())


def show_prometheus(cluster: SandboxCluster) -> None:
    """A real Prometheus scrapes every agent; print the per-node state it recorded."""
    _say("a real Prometheus on loopback scrapes the three agents")
    targets = {name: cluster.expose_metrics(name) for name, _, _ in NODES}
    with Prometheus(cluster.workdir, targets) as prom:
        query = "nodelocaldns_agent_migration_state == 1"
        result = prom.wait_for(f"count({query})", timeout=40)
        deadline = time.monotonic() + 30
        while float(result[0]["value"][1]) < len(NODES) and time.monotonic() < deadline:
            time.sleep(0.5)
            result = prom.query(f"count({query})")
        print(f"PromQL: {query}")
        for series in sorted(prom.query(query), key=lambda r: r["metric"]["node"]):
            print(f"  node={series['metric']['node']}  state={series['metric']['state']}")


def demo(cluster: SandboxCluster, prometheus: bool) -> None:
    show = Table(cluster)
    _say("fake API server started on the machine's loopback")
    _say("building three sandboxed nodes (network namespaces, real node-cache on 169.254.20.10)")
    for name, layout, dns in NODES:
        node = cluster.add_node(name, layout=layout, local_dns=dns)
        where = node.layout.dns_file if node.layout else "?"
        print(f"{name}: {layout} layout, kubelet config {where}, local DNS {dns}")
    _say("starting the agent on every node (at most 1 kubelet restart at a time)")
    for name, _, _ in NODES:
        cluster.start_agent(name, "migrate", *AGENT_FLAGS)
    cluster.wait(
        "node-1 and node-2 migrating",
        lambda: all(cluster.states().get(n) == "migrated" for n in ("node-1", "node-2")),
        STEP_TIMEOUT,
        show,
    )
    print("node-3 waits: its local DNS does not answer, so its kubelet is left alone.")
    _say("bringing node-3's local DNS up")
    cluster.nodes["node-3"].set_local_dns("up")
    cluster.wait(
        "node-3 migrating", lambda: cluster.states().get("node-3") == "migrated", STEP_TIMEOUT, show
    )
    for name, _, _ in NODES:
        print(f"{name}: kubelet now runs with --cluster-dns={_kubelet_dns(cluster, name)}")
    if prometheus:
        show_prometheus(cluster)
    _say("fleet-wide revert (what `helm uninstall` does first): agents rolled to --mode revert")
    for name, _, _ in NODES:
        cluster.start_agent(name, "revert", *AGENT_FLAGS)
    cluster.wait(
        "every node reverting",
        lambda: all(s == "reverted" for s in cluster.states().values()),
        STEP_TIMEOUT,
        show,
    )
    for name, _, _ in NODES:
        print(
            f"{name}: kubelet back on --cluster-dns={_kubelet_dns(cluster, name)}; "
            f"{len(cluster.nodes[name].restarts())} systemctl calls recorded"
        )
    _say("done: every namespace, process and file of the demo is removed now")


def run_demo(workdir: str | None, prometheus: bool = False) -> int:
    keep = workdir is not None
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="nodelocaldns-demo-"))
    try:
        with SandboxCluster(root) as cluster:
            demo(cluster, prometheus)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bash scripts/demo.sh", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also start a real Prometheus on loopback and print the per-node state it saw",
    )
    parser.add_argument("--workdir", default="", help="keep the sandbox here (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_demo(args.workdir or None, prometheus=args.prometheus)


if __name__ == "__main__":
    sys.exit(main())
