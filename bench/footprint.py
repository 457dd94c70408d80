"""Footprint of the agent: RSS and CPU of ``run`` at steady state, ``check`` (not a test).

Everything runs on sandbox nodes (``testing.sandbox.SandboxNode``: own pid/mount/network
namespaces with 169.254.20.10 on an ifb link served by the real node-cache (the chart's
Corefile and arguments; a dnsmasq behind it as the cluster DNS), a kubelet stand-in
serving /healthz on 127.0.0.1:10248, a kube-proxy stand-in on 127.0.0.1:10249, and a
recording ``systemctl`` that the restart command reaches through ``nsenter --target 1``).
The fake API server (``testing/fake_apiserver``) runs in the node's network namespace, so
nothing here sends a packet from the machine's own namespace to a non-loopback address.

Node A, local DNS up from the start: ``run`` starts, migrates (measured: process start ->
``decided``, peak RSS, kubelet healthy again -> state reported), then idles for
``--seconds`` (CPU in millicores, RSS). Node B, local DNS down at the start: ``run``
waits; the benchmark starts node-cache and measures until the restart command starts.
``check`` is run a few times on node A for its peak RSS and wall time.

    python bench/footprint.py --seconds 600 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import JSON, ServerProcess, add_node, emit, machine, verdict
from testing.sandbox.node import REPO_ROOT, NodeProcess, SandboxNode

NAMESPACE = "nodelocaldns"
RESTART = "nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart kubelet"
TARGETS = {
    "idle_millicores": 1.0,
    "run_rss_mib": 64.0,
    "check_rss_mib": 32.0,
    "overhead_seconds": 2.0,
}
#: peak RSS and time of a child, measured by the parent that waits for it
MEASURE = (
    "import json, os, subprocess, sys, time\n"
    "t = time.monotonic()\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "_, status, ru = os.wait4(p.pid, 0)\n"
    "print(json.dumps({'maxrss_kib': ru.ru_maxrss, 'seconds': time.monotonic() - t,\n"
    "                  'cpu_seconds': ru.ru_utime + ru.ru_stime,\n"
    "                  'exit': os.waitstatus_to_exitcode(status)}))\n"
)
#: RSS after each import, in a fresh interpreter (what the agent's imports cost)
IMPORTS = (
    "import json, resource, sys, time, importlib\n"
    "def rss():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmRSS:'):\n"
    "            return int(line.split()[1]) / 1024\n"
    "out = [('python', 0.0, rss())]\n"
    "for name in sys.argv[1:]:\n"
    "    t = time.perf_counter()\n"
    "    importlib.import_module(name)\n"
    "    out.append((name, time.perf_counter() - t, rss()))\n"
    "print(json.dumps(out))\n"
)
IMPORT_ORDER = [
    "nodelocaldns_agent.cli",
    "psutil",
    "yaml",
    "dns.message",
    "dns.query",
    "nodelocaldns_agent.engine",
    "prometheus_client",
    "nodelocaldns_agent.metrics",
    "urllib3",
    "kubernetes",
    "nodelocaldns_agent.kube.api",
    "nodelocaldns_agent.daemon",
]


class AgentRun:
    """``python -m nodelocaldns_agent run`` on a node, its JSON log lines collected with
    timestamps."""

    def __init__(self, node: SandboxNode, kubeconfig: Path, probe_interval: float) -> None:
        self.node = node
        self.started_wall = time.time()
        self.proc: NodeProcess = node.spawn_agent(
            [
                "run",
                "--node-name",
                node.name,
                "--namespace",
                NAMESPACE,
                "--kubeconfig",
                str(kubeconfig),
                "--host-root",
                str(node.root),
                "--restart-command",
                RESTART,
                "--metrics-address",
                "127.0.0.1:9779",
                "--probe-interval",
                str(probe_interval),
                "--log-format",
                "json",
            ],
            stdout=subprocess.PIPE,
        )
        self.events: list[JSON] = []
        self._new: queue.Queue[JSON] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ps = self._inner()

    def _inner(self) -> psutil.Process:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self.proc.inner_pid()
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(pid)
                    if "python" in proc.name() or "agent" in " ".join(proc.cmdline()):
                        return proc
            time.sleep(0.005)
        raise RuntimeError("the agent process did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, ""):
            try:
                body = json.loads(line)
            except ValueError:
                continue
            if isinstance(body, dict):
                self.events.append(body)
                self._new.put(body)

    def wait_for(self, timeout: float, **match: Any) -> JSON:
        """The first log event (seen so far or next) whose fields equal ``match``."""

        def hit(ev: JSON) -> bool:
            return all(ev.get(k) == v for k, v in match.items())

        for ev in list(self.events):
            if hit(ev):
                return ev
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = self._new.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if hit(ev):
                return ev
        raise TimeoutError(
            f"no log event {match} within {timeout:g}s; last: "
            f"{[e.get('msg') for e in self.events[-5:]]}"
        )

    def hwm_kib(self) -> int:
        """Peak RSS so far (VmHWM)."""
        for line in Path(f"/proc/{self.ps.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def started_at(pid: int) -> float:
    """When ``pid`` started, as time.time(), to the clock tick (psutil's create_time() rests
    on /proc/stat's whole-second boot time, so it can be off by up to a second)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    start_ticks = int(stat.rpartition(")")[2].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def start_server(node: SandboxNode, workdir: Path) -> ServerProcess:
    """The fake API server inside the node's network namespace, with its realistic watch
    cache (bookmarks about once a minute, 75 s of history, as kube-apiserver)."""
    into = ["nsenter", f"--target={node.init_pid}", "--net", "--"]
    server = ServerProcess(workdir / "kubeconfig", prefix=into, control_prefix=into)
    add_node(server, node.name)
    return server


def api_records(server: ServerProcess) -> list[JSON]:
    return list(server.control("GET", "/_fake/requests?recent=10000")["recent"])


def wall_of(mono: float) -> float:
    """A time.monotonic() value (the fake server logs those) as time.time()."""
    return mono + (time.time() - time.monotonic())


def node_a(args: argparse.Namespace, workdir: Path, progress: Any) -> JSON:
    node = SandboxNode(workdir / "a", name="footprint-a", layout="tke").start()
    server = start_server(node, workdir / "a")
    run: AgentRun | None = None
    try:
        before = node.kubelet() or {}
        run = AgentRun(node, server.kubeconfig, args.probe_interval)
        created = started_at(run.ps.pid)
        decided = run.wait_for(60, msg="decided")
        migrated = run.wait_for(120, msg="node status written", state="migrated")
        verified = run.wait_for(5, step="verified")
        kubelet = node.kubelet() or {}
        peak_migration = run.hwm_kib()
        progress(f"node A migrated; settling {args.settle:g}s, then {args.seconds:g}s idle")
        time.sleep(args.settle)
        cpu0, t0 = run.ps.cpu_times(), time.monotonic()
        rss: list[int] = []
        while time.monotonic() - t0 < args.seconds:
            rss.append(run.ps.memory_info().rss)
            time.sleep(min(1.0, max(args.seconds - (time.monotonic() - t0), 0.01)))
        cpu1, t1 = run.ps.cpu_times(), time.monotonic()
        busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        threads = run.ps.num_threads()
        uss = run.ps.memory_full_info().uss
        steady_requests = [r for r in api_records(server) if t0 <= r["time"] <= t1]
        check = measure_check(node, args.check_runs)
        imports = import_costs(node)
        timeline = []
        for ev in run.events:
            timeline.append(
                f"{ev['ts'] - created:7.3f} {ev.get('msg')}"
                + (f" ({ev['state']})" if "state" in ev else "")
            )
            if ev is decided:
                break
        return {
            "start_to_decided_seconds": round(decided["ts"] - created, 3),
            "start_to_decided_timeline": timeline,
            "kubelet_healthy_to_state_reported_seconds": round(
                migrated["ts"] - kubelet.get("serving", migrated["ts"]), 3
            ),
            "verified_to_state_reported_seconds": round(migrated["ts"] - verified["ts"], 3),
            "restarted": kubelet.get("pid") != before.get("pid"),
            "peak_rss_mib_through_migration": round(peak_migration / 1024, 1),
            "idle_window_seconds": round(t1 - t0, 1),
            "idle_cpu_seconds": round(busy, 3),
            "idle_millicores": round(busy / (t1 - t0) * 1000, 3),
            "steady_rss_mib": {
                "mean": round(statistics.mean(rss) / 2**20, 1),
                "max": round(max(rss) / 2**20, 1),
            },
            "uss_mib_at_end": round(uss / 2**20, 1),
            "threads": threads,
            "idle_api_requests": len(steady_requests),
            "idle_api_requests_by_kind": sorted(
                f"{r['verb']} {r['template']} {r['status']}" for r in steady_requests
            ),
            "check": check,
            "imports": imports,
        }
    finally:
        if run is not None:
            run.stop()
        server.close()
        node.close()


def node_b(args: argparse.Namespace, workdir: Path, progress: Any) -> JSON:
    node = SandboxNode(workdir / "b", name="footprint-b", layout="tke", local_dns="down").start()
    server = start_server(node, workdir / "b")
    run: AgentRun | None = None
    try:
        run = AgentRun(node, server.kubeconfig, args.probe_interval)
        run.wait_for(60, msg="node status written", state="waiting-for-local-dns")
        time.sleep(min(args.probe_interval / 2, 3.0))  # start node-cache mid-interval
        mark = time.monotonic()
        node.start_dns()  # returns once node-cache serves 169.254.20.10:53 and /health
        dns_up = time.time()
        progress("node B: local DNS up; waiting for the restart")
        restart = run.wait_for(args.probe_interval + 60, step="restart")
        later = [r for r in api_records(server) if r["time"] >= mark]
        first = min((wall_of(r["time"]) for r in later), default=None)
        return {
            "probe_interval_seconds": args.probe_interval,
            "dns_up_to_restart_seconds": round(restart["ts"] - dns_up, 3),
            "healthy_seen_to_restart_seconds": round(restart["ts"] - first, 3)
            if first is not None
            else None,
            "first_request_after_dns_up": f"{later[0]['verb']} {later[0]['template']}"
            if later
            else "",
        }
    finally:
        if run is not None:
            run.stop()
        server.close()
        node.close()


def measure_check(node: SandboxNode, runs: int) -> JSON:
    argv = [
        sys.executable,
        "-c",
        MEASURE,
        sys.executable,
        "-m",
        "nodelocaldns_agent",
        "check",
        "--host-root",
        str(node.root),
        "--json",
    ]
    results = []
    for _ in range(runs):
        out = node.exec(argv, env=node.python_env(), cwd=REPO_ROOT, timeout=60)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "runs": runs,
        "exit_codes": sorted({r["exit"] for r in results}),
        "peak_rss_mib": round(statistics.median(r["maxrss_kib"] for r in results) / 1024, 1),
        "wall_seconds": round(statistics.median(r["seconds"] for r in results), 3),
        "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in results), 3),
    }


def import_costs(node: SandboxNode) -> list[JSON]:
    out = node.exec(
        [sys.executable, "-c", IMPORTS, *IMPORT_ORDER],
        env=node.python_env(),
        cwd=REPO_ROOT,
        timeout=60,
    )
    steps = json.loads(out.stdout)
    rows = []
    prev = steps[0][2]
    for name, seconds, rss in steps:
        rows.append(
            {
                "import": name,
                "seconds": round(seconds, 3),
                "rss_mib": round(rss, 1),
                "adds_mib": round(rss - prev, 1),
            }
        )
        prev = rss
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=600.0, help="idle window of `run`")
    p.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds after the migration before the idle window starts",
    )
    p.add_argument(
        "--probe-interval",
        type=float,
        default=10.0,
        help="--probe-interval of the agent (its default: 10)",
    )
    p.add_argument("--check-runs", type=int, default=3)
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)

    def progress(text: str) -> None:
        if not args.quiet:
            print(f"footprint: {text}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    try:
        a = node_a(args, workdir, progress)
        b = node_b(args, workdir, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    overhead = max(
        b["healthy_seen_to_restart_seconds"] or 0.0, a["kubelet_healthy_to_state_reported_seconds"]
    )
    result = {
        "benchmark": "footprint",
        "idle_millicores": a["idle_millicores"],
        "run_steady_rss_mib": a["steady_rss_mib"]["max"],
        "run_peak_rss_mib": a["peak_rss_mib_through_migration"],
        "check_rss_mib": a["check"]["peak_rss_mib"],
        "check_seconds": a["check"]["wall_seconds"],
        "start_to_decided_seconds": a["start_to_decided_seconds"],
        "healthy_seen_to_restart_seconds": b["healthy_seen_to_restart_seconds"],
        "dns_up_to_restart_seconds": b["dns_up_to_restart_seconds"],
        "kubelet_healthy_to_state_reported_seconds": a["kubelet_healthy_to_state_reported_seconds"],
        "targets": {
            "idle_millicores": "<= 1",
            "run_rss_mib": "<= 64 (steady and peak)",
            "check_rss_mib": "<= 32",
            "overhead_seconds": "<= 2",
        },
        "verdict": {
            "idle_millicores": verdict(a["idle_millicores"], TARGETS["idle_millicores"]),
            "run_rss_mib": verdict(
                max(a["steady_rss_mib"]["max"], a["peak_rss_mib_through_migration"]),
                TARGETS["run_rss_mib"],
            ),
            "check_rss_mib": verdict(a["check"]["peak_rss_mib"], TARGETS["check_rss_mib"]),
            "overhead_seconds": verdict(overhead, TARGETS["overhead_seconds"]),
        },
        "detail": {"run": a, "waiting_node": b},
        "machine": machine(),
    }
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
