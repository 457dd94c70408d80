"""``python -m testing.demo`` (``bash scripts/demo.sh``): the whole system on this machine;
nothing leaves it.

The fake API server, three sandboxed nodes — each its own network namespace with the real
node-cache on 169.254.20.10 (the chart's Corefile and arguments; a dnsmasq behind it as the
cluster's CoreDNS), its own host root, and a kubelet stand-in under a recording
``systemctl`` — and the real agent ``run`` on each with ``--max-concurrent-restarts 1``.

The story, one line of narration per step, each followed by the rollout as
``kubectl nodelocaldns status -w`` shows it (the plugin's own view: redrawn in place on a
terminal, one line per change otherwise) with the nodes' states under it: node-1 and
node-2 migrate one at a time; node-3 is held back (``waiting-for-local-dns``) because its
node-cache is down, until it comes up; then a pod on every node resolves names every 10 ms
through glibc and through musl while node-cache is updated on every node the chart's way
(the new one serving before the old one stops), with a running count of failed lookups;
then the fleet is reverted as the chart's uninstall hook does. The last lines are the
summary read from the agents' own logs. Everything the demo created is removed, also on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from nodelocaldns_agent.fleet import node_rows
from nodelocaldns_agent.kube.api import LEASE_LABEL, LEASE_LABEL_VALUE, KubeApi, load_config
from nodelocaldns_agent.plugin import rollout
from nodelocaldns_agent.plugin.commands import viewer_for
from nodelocaldns_agent.state import NodeState
from testing import timeline
from testing.sandbox.cluster import NAMESPACE, NODE_CACHE_METRICS_PORT_IN_NODE, SandboxCluster
from testing.sandbox.pod import RECORDS, Pod
from testing.sandbox.prometheus import Prometheus
from testing.sandbox.rollout import NodeCacheLifecycle

#: name, host layout, local DNS at the start
NODES = (("node-1", "tke", "up"), ("node-2", "kubeadm", "up"), ("node-3", "tke", "down"))
LIMIT = 1
AGENT_FLAGS = (
    "--max-concurrent-restarts",
    str(LIMIT),
    "--probe-interval",
    "1",
    "--verify-timeout",
    "20",
)
STEP_TIMEOUT = 90.0
#: how long the view keeps showing node-3 held back before its DNS comes up
HOLD = 3.0
POLL = 0.2
#: seconds the new node-cache serves beside the old one before the old one's SIGTERM (the
#: chart's minReadySeconds is 10; shortened so that the demo stays short)
SURGE_OVERLAP = 1.0
#: seconds the pods go on resolving after the last update
AFTER_UPDATE = 1.0
#: the query the Prometheus step reads (a panel of the chart's dashboard)
STATE_QUERY = "nodelocaldns_agent_migration_state == 1"

#: The pods' DNS lookups: returns (failed, made) so far; the view shows "pod lookups
#: failed: N" (a line that changes only when a lookup fails) and the summary "pod lookups
#: failed: N (of M)". :meth:`Demo.run` sets :attr:`Demo.pod_lookups` to the pods' own.
PodLookups = Callable[[], tuple[int, int]]
Rows = list[dict[str, str]]


def pod_lookup_line(lookups: PodLookups, *, made: bool = False) -> str:
    failed, total = lookups()
    return f"pod lookups failed: {failed}" + (f" (of {total})" if made else "")


def pods_lookups(pods: Sequence[Pod]) -> PodLookups:
    """(failed, made) over every libc of every pod in ``pods``."""

    def counts() -> tuple[int, int]:
        alls = [pod.counts()["all"] for pod in pods]
        return sum(c["failed"] for c in alls), sum(c["lookups"] for c in alls)

    return counts


def node_line(rows: Rows) -> str:
    return "nodes: " + ", ".join(f"{r['node']} {r['state']}" for r in rows)


def state_of(rows: Rows, node: str) -> str:
    return next((r["state"] for r in rows if r["node"] == node), "-")


def seconds(value: float) -> str:
    return f"{value:.1f} s"


@dataclass
class Demo:
    """The story on one :class:`SandboxCluster`; what it saw, for the summary."""

    cluster: SandboxCluster
    prometheus: bool = False
    out: Callable[[str], None] = print
    #: the running "pod lookups failed" counter (None: not shown)
    pod_lookups: PodLookups | None = None
    prom: Prometheus | None = None
    step: int = 0
    timer: rollout.RestartTimer = field(default_factory=rollout.RestartTimer)
    rows: Rows = field(default_factory=list)
    #: the most restart slots held at once, as the view saw them
    max_in_flight: int = 0
    #: kubelet --cluster-dns per node after the migration and after the revert
    migrated_dns: dict[str, list[str]] = field(default_factory=dict)
    reverted_dns: dict[str, list[str]] = field(default_factory=dict)
    restarts_migrate: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    changes: list[timeline.Change] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    #: node-cache updated so far / nodes to update (None: no update under way)
    updates: tuple[int, int] | None = None

    @property
    def steps(self) -> int:
        return 7 if self.prometheus else 6

    def say(self, text: str) -> None:
        self.step += 1
        self.out(f"\n[{self.step}/{self.steps}] {text}")

    # ------------------------------------------------------------ the live view
    @cached_property
    def api(self) -> KubeApi:
        """The plugin's own API client, from the kubeconfig of the machine-side API."""
        return KubeApi(load_config(str(self.cluster.workdir / "kubeconfig-host")))

    def footer(self) -> Sequence[str]:
        lines = [node_line(self.rows)]
        if self.updates is not None:
            lines.append(f"node-cache updated on {self.updates[0]}/{self.updates[1]} nodes")
            if self.pod_lookups is not None:
                lines.append(pod_lookup_line(self.pod_lookups))
        return lines

    def follow(self, what: str, done: Callable[[Rows], bool], hold: float = 0.0) -> None:
        """Show the rollout until ``done`` holds for what the view shows (and, with
        ``hold``, keeps holding that long)."""
        title = f"kubectl nodelocaldns status -w (limit {LIMIT} restart at a time); Ctrl-C ends"
        viewer = viewer_for(sys.stdout, title, self.footer)
        deadline = time.monotonic() + STEP_TIMEOUT
        held_since: float | None = None
        try:
            while True:
                nodes = self.api.list_nodes()
                leases, _ = self.api.list_leases(NAMESPACE, f"{LEASE_LABEL}={LEASE_LABEL_VALUE}")
                self.rows = node_rows(nodes)
                self.timer.observe(self.rows)
                r = rollout.summarize(self.rows, leases, LIMIT, time.time(), self.timer.mean)
                self.max_in_flight = max(self.max_in_flight, len(r.in_flight))
                viewer.show(r)
                now = time.monotonic()
                if done(self.rows):
                    held_since = now if held_since is None else held_since
                    if now - held_since >= hold:
                        return
                elif held_since is not None:
                    raise RuntimeError(f"{what} did not hold for {hold:g}s")
                if now > deadline:
                    raise RuntimeError(
                        f"{what} did not happen within {STEP_TIMEOUT:g}s; "
                        f"logs are under {self.cluster.workdir}"
                    )
                time.sleep(POLL)
        finally:
            viewer.close()

    # ------------------------------------------------------------ the story
    def run(self) -> None:
        cluster = self.cluster
        self.times["start"] = time.time()
        self.say(
            "Three sandboxed nodes on a fake API server on this machine's loopback: node-1 "
            "(TKE), node-2 (kubeadm), node-3 (TKE), each with the real node-cache on "
            "169.254.20.10; node-3's node-cache is down."
        )
        for name, layout, dns in NODES:
            cluster.add_node(name, layout=layout, local_dns=dns, dns_records=RECORDS)
        if self.prometheus:
            self.prom = self.start_prometheus()
        self.say(
            f"The agent starts on every node in migrate mode; at most {LIMIT} kubelet restart "
            f"at a time across the cluster (--max-concurrent-restarts {LIMIT})."
        )
        self.times["agents"] = time.time()
        for name, _, _ in NODES:
            cluster.start_agent(name, "migrate", *AGENT_FLAGS)
        waiting = NodeState.WAITING_FOR_LOCAL_DNS
        self.follow(
            "node-1 and node-2 migrated, node-3 waiting for its local DNS",
            lambda rows: (
                state_of(rows, "node-1") == state_of(rows, "node-2") == "migrated"
                and state_of(rows, "node-3") == waiting
            ),
        )
        self.say(
            f"node-3 is held back ({waiting}): its local DNS does not answer, so its agent "
            "leaves its kubelet alone although a restart slot is free."
        )
        self.follow("node-3 held back", lambda rows: state_of(rows, "node-3") == waiting, hold=HOLD)
        self.say(
            "node-3's node-cache comes up; its agent's next probe gets an answer, and node-3 "
            "migrates."
        )
        cluster.nodes["node-3"].set_local_dns("up")
        self.times["dns_up"] = time.time()
        self.follow("node-3 migrating", lambda rows: all(r["state"] == "migrated" for r in rows))
        self.times["migrated"] = time.time()
        for name, _, _ in NODES:
            self.migrated_dns[name] = cluster.nodes[name].kubelet_dns()
            self.restarts_migrate[name] = len(cluster.nodes[name].restarts())
        if self.prom is not None:
            self.say(f"A real Prometheus scraped every agent all along; {self.prom_states()}.")
        self.update_node_cache()
        self.say(
            "Fleet-wide revert, what `helm uninstall` does first: every agent restarts in "
            "revert mode and puts the original kubelet DNS back, one node at a time."
        )
        self.times["revert"] = time.time()
        for name, _, _ in NODES:
            cluster.start_agent(name, "revert", *AGENT_FLAGS)
        self.follow("every node reverted", lambda rows: all(r["state"] == "reverted" for r in rows))
        self.times["reverted"] = time.time()
        for name, _, _ in NODES:
            self.reverted_dns[name] = cluster.nodes[name].kubelet_dns()
            self.restarts[name] = len(cluster.nodes[name].restarts())
        self.changes = timeline.fleet(
            {name: cluster.nodes[name].workdir / "agent.log" for name, _, _ in NODES}
        )

    def update_node_cache(self) -> None:
        """Pods resolving on every node while node-cache is updated the chart's way, one
        node at a time; the view counts their failed lookups."""
        names = [name for name, _, _ in NODES]
        self.say(
            "A pod on every node resolves two names every 10 ms through glibc and through "
            "musl (nameserver 169.254.20.10, as kubelet now writes it); node-cache is "
            "updated on each node the chart's way: the new node-cache serves beside the old "
            f"one ({SURGE_OVERLAP:g} s here, minReadySeconds in the chart) before the old one "
            "stops (-skipteardown keeps the interface and rules)."
        )
        pods = [Pod(self.cluster.nodes[name], "demo-pod").start() for name in names]
        try:
            self.pod_lookups = pods_lookups(pods)
            self.updates = (0, len(names))
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                done = pool.submit(self.surge_each, names)
                self.follow("node-cache updated on every node", lambda _rows: done.done())
                done.result()
            end = time.monotonic() + AFTER_UPDATE
            self.follow("the pods' last lookups", lambda _rows: time.monotonic() >= end)
            for pod in pods:
                pod.settle(time.monotonic())
        finally:
            for pod in pods:
                pod.close()
        final = self.pod_lookups()
        self.pod_lookups = lambda: final
        self.updates = None

    def surge_each(self, names: Sequence[str]) -> None:
        for i, name in enumerate(names, 1):
            NodeCacheLifecycle(self.cluster.nodes[name]).surge(SURGE_OVERLAP)
            self.updates = (i, len(names))

    def start_prometheus(self) -> Prometheus:
        """A real Prometheus on loopback scraping every agent and every node-cache (the
        dashboard's jobs)."""
        agents = {name: self.cluster.expose_metrics(name) for name, _, _ in NODES}
        caches = {
            name: self.cluster.expose_metrics(name, NODE_CACHE_METRICS_PORT_IN_NODE)
            for name, _, _ in NODES
        }
        return Prometheus(self.cluster.workdir, agents, {"node-local-dns": caches})

    def prom_states(self) -> str:
        assert self.prom is not None
        query = 'count(nodelocaldns_agent_migration_state{state="migrated"} == 1)'
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            result = self.prom.query(query)
            if result and float(result[0]["value"][1]) >= len(NODES):
                break
            time.sleep(0.5)
        self.times["prom_seen"] = time.time()
        seen = sorted(self.prom.query(STATE_QUERY), key=lambda r: r["metric"]["node"])
        states = ", ".join(f"{s['metric']['node']} {s['metric']['state']}" for s in seen)
        return f"`{STATE_QUERY}` gives: {states or 'nothing yet'}"

    # ------------------------------------------------------------ the summary
    def summary(self, total: float) -> list[str]:
        """The closing lines (at most 30): per node old -> new DNS, how long it was held
        back and why, the change's own time, kubelet restarts; the restart limit; totals."""
        migrations = {c.node: c for c in self.changes if c.action == "migrate"}
        layouts = {name: layout for name, layout, _ in NODES}
        header = ("NODE", "LAYOUT", "KUBELET --cluster-dns", "HELD BACK", "CHANGE", "RESTARTS")
        table = [header]
        for name, _, _ in NODES:
            change = migrations.get(name)
            old = ",".join(change.old_dns) if change else "?"
            new = ",".join(self.migrated_dns.get(name, [])) or "?"
            why = []
            if change and change.held_back:
                why.append(f"{seconds(change.seconds('gate'))} for its local DNS")
            if change and change.seconds("lock") >= 0.05:
                why.append(f"{seconds(change.seconds('lock'))} for a restart slot")
            migrate = self.restarts_migrate.get(name, 0)
            table.append(
                (
                    name,
                    layouts[name],
                    f"{old} -> {new}",
                    ", ".join(why) or "-",
                    seconds(change.changing) if change else "?",
                    f"{migrate} (+{self.restarts.get(name, 0) - migrate} to revert)",
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = ["", "== summary (from each agent's log)"]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]
        lines.append(
            "CHANGE: restart slot held (write, restart kubelet, verify, release); "
            "HELD BACK: before that"
        )
        back = sorted({",".join(d) for d in self.reverted_dns.values()})
        lines.append(f"reverted: every kubelet back on --cluster-dns={' / '.join(back)}")
        lines.append(
            f"kubelet restarts at once: at most {self.max_in_flight} seen, the limit is {LIMIT}"
        )
        if self.pod_lookups is not None:
            lines.append(
                pod_lookup_line(self.pod_lookups, made=True)
                + " while node-cache was updated on every node"
            )
        t = self.times
        lines.append(
            f"total {seconds(total)}: migrated in {seconds(t['migrated'] - t['start'])}, "
            f"reverted in {seconds(t['reverted'] - t['revert'])}; every namespace, process "
            "and file of the demo is removed"
        )
        return lines


#: called with the finished :class:`Demo` before its cluster is torn down (the pictures)
Collect = Callable[[Demo], None]


def run_demo(
    workdir: str | None,
    prometheus: bool = False,
    collect: Collect | None = None,
) -> int:
    keep = workdir is not None
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="nodelocaldns-demo-"))
    started = time.time()
    try:
        with SandboxCluster(root) as cluster:
            story = Demo(cluster, prometheus)
            try:
                story.run()
                if collect is not None:
                    collect(story)
            finally:
                if story.prom is not None:
                    story.prom.close()
        for line in story.summary(time.time() - started):
            print(line)
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
        help="also run a real Prometheus on loopback and show what it saw",
    )
    parser.add_argument("--workdir", default="", help="keep the sandbox here (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_demo(args.workdir or None, prometheus=args.prometheus)


if __name__ == "__main__":
    sys.exit(main())
