"""What pods see of DNS while node-cache is updated, killed, or its upstream is unreachable.

Each scenario builds a sandbox node (``testing.sandbox.SandboxNode``: its own namespaces,
the real node-cache with the Corefile and arguments of ``helm template`` of chart/, a
dnsmasq on 10.96.0.53 standing in for the cluster's CoreDNS behind ``kube-dns-upstream``,
logging every query it gets) and a pod on it (``testing.sandbox.pod.Pod``: its own network
namespace behind a veth pair, kubelet's resolv.conf, a glibc and a musl ``getaddrinfo``
loop every 10 ms), waits ``--before`` s, does the scenario's action
(``testing.sandbox.rollout.NodeCacheLifecycle``), waits ``--after`` s and prints one JSON
line: per libc the lookups, failed lookups, p50/p99/max latency, lookups of 1 s or more,
errors, the first and last failure and (after a restart) the seconds from node-cache
serving again to the first success; the queries per second that reached the upstream
stand-in; when each event happened (seconds from the action's start).

Scenarios (``--scenario``, default all):

- ``steady-glibc``, ``steady-musl``: nothing happens; the upstream queries/s a pod of
  that libc causes (the price of ``--fallback``);
- ``surge``: the chart's update: a second node-cache serves, ``--overlap`` s later the
  first gets SIGTERM (the chart's ``-skipteardown``);
- ``upstream-update``: the upstream manifest's: SIGTERM (no ``-skipteardown``: it deletes
  the interface) and ``--gap`` s later the new one;
- ``sigkill``, ``sigkill-no-skipteardown``: SIGKILL (an OOM kill), kubelet's ``--backoff``
  (10 s) and a restart, rendered with and without ``-skipteardown``;
- ``sigkill-fast-refusal``: ``sigkill`` rendered with ``nodeLocalDNS.fastRefusal.enabled``:
  its init container takes ICMP destination unreachable out of the node's rate limit
  (``net.ipv4.icmp_ratemask`` 6168 -> 6160), so the refusal of the still-bound address
  reaches every query;
- ``upstream-unreachable``, ``upstream-unreachable-serve-stale``: the upstream stand-in
  stopped (SIGSTOP: it receives queries and never answers) for ``--outage`` s, with the
  chart's default (no ``serve_stale``) and with ``nodeLocalDNS.cache.serveStale.enabled``.

``--fallback`` runs every scenario a second time with the pod's resolv.conf holding a
second nameserver, the upstream stand-in (as ``clusterDNS: [169.254.20.10, <kube-dns>]``
would: the cluster DNS reached directly).

    python bench/dns_availability.py [--scenario NAME ...] [--fallback] [--json]

Needs root (namespaces), dnsmasq, iptables, helm (``.tools/bin``), the node-cache binary
(``NODE_CACHE_BIN`` or ``../shared/tools/node-cache``; testing/sandbox/node_cache.py),
gcc with libc6-dev and musl-tools (the pod's loops). Nothing is sent from the machine's own
network namespace.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import JSON, emit, machine
from testing.sandbox.constants import LOCAL_DNS, UPSTREAM_DNS
from testing.sandbox.node import SandboxError, SandboxNode
from testing.sandbox.pod import LIBCS, RECORDS, Lookup, Pod
from testing.sandbox.rollout import NodeCacheLifecycle

NO_SKIPTEARDOWN = ("--set", "nodeLocalDNS.skipTeardown=false")
SERVE_STALE = ("--set", "nodeLocalDNS.cache.serveStale.enabled=true")
FAST_REFUSAL = ("--set", "nodeLocalDNS.fastRefusal.enabled=true")


@dataclass(frozen=True)
class Scenario:
    """What one run does between ``--before`` and ``--after``."""

    #: the action: (lifecycle, node, options) -> events (monotonic times)
    action: Callable[[NodeCacheLifecycle, SandboxNode, argparse.Namespace], dict[str, float]]
    values: tuple[str, ...] = ()
    libcs: tuple[str, ...] = LIBCS


def _steady(_lc: NodeCacheLifecycle, _node: SandboxNode, opts: argparse.Namespace) -> JSON:
    start = time.monotonic()
    time.sleep(opts.steady)
    return {"steady_start": start}


def _surge(lc: NodeCacheLifecycle, _node: SandboxNode, opts: argparse.Namespace) -> JSON:
    return lc.surge(opts.overlap)


def _replace(lc: NodeCacheLifecycle, _node: SandboxNode, opts: argparse.Namespace) -> JSON:
    return lc.replace(opts.gap)


def _kill(lc: NodeCacheLifecycle, _node: SandboxNode, opts: argparse.Namespace) -> JSON:
    return lc.kill(opts.backoff)


def _upstream_unreachable(
    _lc: NodeCacheLifecycle, node: SandboxNode, opts: argparse.Namespace
) -> JSON:
    upstream = node.upstream_dns_process
    if upstream is None:
        raise SandboxError("the node has no upstream DNS stand-in")
    stopped = time.monotonic()
    upstream.send_signal(signal.SIGSTOP)
    time.sleep(opts.outage)
    upstream.send_signal(signal.SIGCONT)
    # nsenter stops itself when its child stops (util-linux nsenter: continue_as_child)
    subprocess.Popen.send_signal(upstream, signal.SIGCONT)
    return {"upstream_stopped": stopped, "upstream_continued": time.monotonic()}


SCENARIOS: dict[str, Scenario] = {
    "steady-glibc": Scenario(_steady, libcs=("glibc",)),
    "steady-musl": Scenario(_steady, libcs=("musl",)),
    "surge": Scenario(_surge),
    "upstream-update": Scenario(_replace, values=NO_SKIPTEARDOWN),
    "sigkill": Scenario(_kill),
    "sigkill-no-skipteardown": Scenario(_kill, values=NO_SKIPTEARDOWN),
    "sigkill-fast-refusal": Scenario(_kill, values=FAST_REFUSAL),
    "upstream-unreachable": Scenario(_upstream_unreachable),
    "upstream-unreachable-serve-stale": Scenario(_upstream_unreachable, values=SERVE_STALE),
}


def upstream_queries(node: SandboxNode) -> int:
    """Queries the upstream stand-in logged so far (``--log-queries``: ``query[...]``,
    ``auth[...]`` for its authoritative zones)."""
    path = node.files.log("upstream-dns")
    text = path.read_text(errors="replace") if path.exists() else ""
    return text.count(": query[") + text.count(": auth[")


def recovery(lookups: Sequence[Lookup], serving: float) -> JSON:
    """After node-cache serves again (``serving``): seconds to the end of the first
    successful lookup, and the end of the last failed one (negative: before serving)."""
    ok = [lk.start + lk.seconds for lk in lookups if lk.ok and lk.start + lk.seconds >= serving]
    failed = [lk.start + lk.seconds for lk in lookups if not lk.ok]
    return {
        "serving_to_first_success_s": round(ok[0] - serving, 3) if ok else None,
        "last_failure_end_after_serving_s": round(failed[-1] - serving, 3) if failed else None,
    }


def iptables_rules(node: SandboxNode) -> int:
    """node-cache's iptables rules in the node (their comments name NodeLocal DNS Cache)."""
    return node.exec(["iptables-save"]).stdout.count("NodeLocal DNS Cache")


def run(name: str, fallback: bool, opts: argparse.Namespace, workdir: Path) -> JSON:
    """One scenario on a fresh node and pod; its JSON line."""
    scenario = SCENARIOS[name]
    values = (*scenario.values, *(arg for path in opts.values for arg in ("-f", path)))
    nameservers = (LOCAL_DNS, UPSTREAM_DNS) if fallback else (LOCAL_DNS,)
    with SandboxNode(
        workdir,
        kube_proxy=False,
        kubelet=False,
        dns_records=RECORDS,
        node_cache_values=values,
    ) as node:
        assert node.chart is not None
        ratemask = node.exec(["cat", "/proc/sys/net/ipv4/icmp_ratemask"]).stdout.strip()
        lifecycle = NodeCacheLifecycle(node)
        with Pod(node, nameservers=nameservers, libcs=scenario.libcs) as pod:
            time.sleep(opts.before)
            begin, queries = time.monotonic(), upstream_queries(node)
            events = scenario.action(lifecycle, node, opts)
            time.sleep(opts.after)
            end, queries = time.monotonic(), upstream_queries(node) - queries
            unfinished = pod.settle(end)
            rules = iptables_rules(node)
            per_libc = pod.summary(begin - opts.before, end)
            for libc, summary in per_libc.items():
                for key in ("first_failure", "last_failure"):
                    if summary[key] is not None:
                        summary[key] = round(summary[key] - begin, 3)
                began = unfinished[libc]
                summary["unfinished_since_s"] = None if began is None else round(began - begin, 3)
                if "new_serving" in events:
                    summary.update(recovery(pod.lookups(libc), events["new_serving"]))
        return {
            "benchmark": "dns_availability",
            "scenario": name,
            "resolv_conf": list(nameservers),
            "chart_values": list(values),
            "node_cache_args": list(node.chart.args),
            "icmp_ratemask": ratemask,
            "events_s": {key: round(value - begin, 3) for key, value in events.items()},
            "window_s": round(end - begin, 2),
            "interface_kept": lifecycle.link_kept,
            "iptables_rules": rules,
            "upstream_qps": round(queries / (end - begin), 1),
            **per_libc,
        }


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    p.add_argument("--fallback", action="store_true", help="also with a second nameserver")
    p.add_argument("--before", type=float, default=2.0, help="s of lookups before the action")
    p.add_argument("--after", type=float, default=6.0, help="s of lookups after it")
    p.add_argument("--steady", type=float, default=10.0, help="s of the steady scenarios")
    p.add_argument("--overlap", type=float, default=2.0, help="surge: s both run")
    p.add_argument("--gap", type=float, default=2.0, help="upstream-update: s without one")
    p.add_argument("--backoff", type=float, default=10.0, help="sigkill: kubelet's back-off")
    p.add_argument("--outage", type=float, default=20.0, help="s the upstream is stopped")
    p.add_argument(
        "-f",
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="a values file for the chart's render (helm -f), for every scenario",
    )
    p.add_argument("--json", action="store_true", help="one line per scenario")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    opts = parse(argv)
    if os.geteuid() != 0:
        print("dns_availability: needs root (namespaces)", file=sys.stderr)
        return 2
    host = {**machine(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="dns-availability-") as tmp:
        for index, name in enumerate(opts.scenario or SCENARIOS):
            for fallback in (False, True) if opts.fallback else (False,):
                if not opts.quiet:
                    print(f"dns_availability: {name} fallback={fallback}", file=sys.stderr)
                try:
                    line = run(name, fallback, opts, Path(tmp) / f"{index}-{int(fallback)}")
                except SandboxError as exc:
                    print(f"dns_availability: {name}: {exc}", file=sys.stderr)
                    return 2
                emit({**line, "machine": host}, opts.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
