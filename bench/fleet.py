"""Fleet rollout: N real ``Daemon`` loops against one fake API server (not a test).

Each simulated node is a real :class:`nodelocaldns_agent.daemon.Daemon` (its real reconcile loop,
node watch, restart-slot Leases, status reporting and Events) running in threads, with its own
temporary TKE host root and the real engine, file writes and journal. Only the host probes are
in-process stand-ins (``testing/fakes.py``): the local DNS answers, kube-proxy says ``ipvs``,
kubelet's healthz says ``ok``, and the restart command is a stand-in that sleeps
``--restart-seconds`` real seconds and then "starts" a new kubelet process. All nodes talk to ONE
fake kube-apiserver (``testing/fake_apiserver``, in its own process) over real HTTP through the real
``kubernetes`` client, one ``ApiClient`` per node.

The nodes are spread over ``--workers`` forked processes (each with its own GIL; in a
cluster every agent is its own process too). A restart counter in shared memory sees every
restart stand-in of every worker, so ``max_concurrent_restarts`` is exact.

Phase 1 (rollout): every node starts at once; measured until every Node annotation says
``migrated``. Phase 2 (steady): every daemon is restarted with a short resync (the node
watch's timeout follows it); the requests in a window are counted and the node watches are
scaled back to the default resync (600 s). See ``docs/benchmarks.md``.

    python bench/fleet.py --nodes 1000 --concurrency 50 --restart-seconds 20 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import JSON, ServerProcess, add_node, emit, machine, request_kind, verdict
from nodelocaldns_agent.daemon import Daemon
from nodelocaldns_agent.engine import NodeEngine
from nodelocaldns_agent.host.files import FileJournal
from nodelocaldns_agent.host.probes import HttpResult, SystemClock
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kube.api import KubeApi
from nodelocaldns_agent.kube.lock import RestartLock
from nodelocaldns_agent.kube.status import NodeStatus
from nodelocaldns_agent.kube.types import NodeView
from nodelocaldns_agent.kubeletconfig.envfile import find_cluster_dns
from nodelocaldns_agent.metrics import Health, Metrics
from nodelocaldns_agent.settings import NodeSettings, RunSettings
from nodelocaldns_agent.state import STATE_ANNOTATION
from testing.fakenode import TKE_ENV, TKE_STATUS, TKE_UNIT
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

NAMESPACE = "nodelocaldns"
LOCAL = "169.254.20.10"
HEALTHZ = "http://127.0.0.1:10248/healthz"
#: longest wait for every restarted daemon's first pass before the steady window
STEADY_START_TIMEOUT = 600.0
PROXY = "http://127.0.0.1:10249/proxyMode"
#: the product's default resync (and node-watch timeout), seconds
DEFAULT_RESYNC = 600.0
#: targets from the issue
TARGET_RATIO = 1.10
TARGET_STEADY_PER_NODE_HOUR = 6.0
#: each thread's stack (Python frames live on the heap; 512 KiB is ample)
THREAD_STACK = 512 * 1024
#: requests the fake server's log keeps (its CLI default is 100 000)
LOG_SIZE = 400_000
NODES_PER_WORKER = 250


# ---------------------------------------------------------------- shared counters
class Shared:
    """Counters in shared memory, seen by every worker process."""

    def __init__(self, ctx: Any) -> None:
        self.in_flight = ctx.Value("i", 0)
        self.max_in_flight = ctx.Value("i", 0)
        self.migrated = ctx.Value("i", 0)
        self.go = ctx.Event()

    @contextmanager
    def restart(self) -> Iterator[None]:
        with self.in_flight.get_lock():
            self.in_flight.value += 1
            self.max_in_flight.value = max(self.max_in_flight.value, self.in_flight.value)
        try:
            yield
        finally:
            with self.in_flight.get_lock():
                self.in_flight.value -= 1


class Tally:
    """One worker's timeline: restarts, slot holds, when each node reported migrated."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.lock = threading.Lock()
        self.restarts: list[tuple[float, float, str]] = []
        #: (slot, acquired, released, node) per restart-slot hold
        self.holds: list[tuple[str, float, float, str]] = []
        self.migrated_at: dict[str, float] = {}

    @contextmanager
    def restart(self, node: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            with self.shared.restart():
                yield
        finally:
            with self.lock:
                self.restarts.append((start, time.monotonic(), node))

    def migrated(self, node: str) -> None:
        with self.lock:
            if node in self.migrated_at:
                return
            self.migrated_at[node] = time.monotonic()
        with self.shared.migrated.get_lock():
            self.shared.migrated.value += 1


class TimedLock(RestartLock):
    """The real restart lock; notes when each slot was taken and given back."""

    def __init__(self, *args: Any, tally: Tally, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tally = tally
        self._acquired = 0.0

    def try_acquire(self) -> bool:
        got = super().try_acquire()
        if got:
            self._acquired = time.monotonic()
        return got

    def release(self) -> None:
        held = self.held
        super().release()
        if held is not None:
            with self.tally.lock:
                self.tally.holds.append((held.name, self._acquired, time.monotonic(), self.holder))


class RecordingApi(KubeApi):
    """The real API wrapper; notes when this node's state annotation became ``migrated``."""

    def __init__(self, client: Any, tally: Tally) -> None:
        super().__init__(client)
        self.tally = tally

    def patch_node_metadata(
        self, name: str, annotations: dict[str, str | None], labels: dict[str, str | None]
    ) -> NodeView:
        view = super().patch_node_metadata(name, annotations, labels)
        if annotations.get(STATE_ANNOTATION) == "migrated":
            self.tally.migrated(name)
        return view


class CountingHandler(logging.Handler):
    """Counts the agent's warnings and errors (INFO is not even formatted), keeping the
    first error text of each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.levelname.lower()}: {record.getMessage()}"
        self.counts[key] += 1
        if key not in self.samples:
            fields = getattr(record, "fields", None) or {}
            self.samples[key] = str(fields.get("error", ""))[:200]


# ---------------------------------------------------------------- one simulated node
class SimNode:
    """A temporary TKE host root, in-process host probes and a sleeping restart stand-in."""

    def __init__(self, name: str, workdir: Path, tally: Tally, restart_seconds: float) -> None:
        self.name = name
        self.root = workdir / name
        self.tally = tally
        self.restart_seconds = restart_seconds
        self.restarts = 0
        for path, data in (
            ("etc/kubernetes/kubelet", TKE_ENV),
            ("usr/lib/systemd/system/kubelet.service", TKE_UNIT.encode()),
        ):
            real = self.root / path
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_bytes(data)
        self.processes = FakeProcesses()
        self.systemd = FakeSystemd(TKE_STATUS)
        self.pid = 100
        self.start_kubelet()
        http = FakeHttp({HEALTHZ: HttpResult(200, "ok"), PROXY: HttpResult(200, "ipvs")})
        interfaces = FakeInterfaces(
            {"lo": ("127.0.0.1",), "nodelocaldns": (LOCAL,), "kube-ipvs0": ("10.96.0.10",)}
        )
        settings = NodeSettings(
            host_root=self.root, restart_command=("restart-kubelet",), verify_timeout=30.0
        )
        host = HostRoot(self.root)
        self.engine = NodeEngine(
            settings,
            host,
            interfaces,
            http,
            FakeProber(),
            self.processes,
            self.systemd,
            FakeRunner(on_run=self._restart),
            SystemClock(),
            FileJournal(host, settings.state_dir),
            FakeIptables(),
        )

    def start_kubelet(self) -> None:
        env = self.root / "etc/kubernetes/kubelet"
        occ = find_cluster_dns(env.read_bytes(), "env")
        argv = ["/usr/bin/kubelet", "--node-ip=10.0.0.5"]
        if occ is not None:
            argv.append("--cluster-dns=" + ",".join(occ.values))
        self.pid += 1
        self.processes.running = [host_process(self.pid, time.time(), tuple(argv))]
        self.systemd.started(self.pid)

    def _restart(self, argv: tuple[str, ...]) -> None:
        with self.tally.restart(self.name):
            self.restarts += 1
            time.sleep(self.restart_seconds)
            self.start_kubelet()


@dataclasses.dataclass
class Agent:
    node: SimNode
    daemon: Daemon
    thread: threading.Thread


def build_fleet(
    nodes: list[SimNode], clients: list[Any], tally: Tally, cfg: JSON, resync: float
) -> list[Agent]:
    """One Daemon per node, wired as ``nodelocaldns_agent.cli.root.run`` wires it (threads not
    started)."""
    from prometheus_client import CollectorRegistry

    stop = threading.Event()
    agents: list[Agent] = []
    for node, client in zip(nodes, clients, strict=True):
        rs = RunSettings(
            node_name=node.name,
            namespace=NAMESPACE,
            max_concurrent_restarts=cfg["concurrency"],
            resync_interval=resync,
            lease_duration=cfg["lease_duration"],
        )
        api = RecordingApi(client, tally)
        clock = node.engine.clock
        daemon = Daemon(
            rs,
            node.engine,
            api,
            TimedLock(
                api,
                NAMESPACE,
                node.name,
                rs.max_concurrent_restarts,
                clock,
                duration=rs.lease_duration,
                tally=tally,
            ),
            NodeStatus(api, node.name),
            Metrics(CollectorRegistry(), version="bench"),
            Health(),
            clock,
            stop,
        )
        thread = threading.Thread(target=daemon.run, name=f"agent-{node.name}", daemon=True)
        agents.append(Agent(node, daemon, thread))
    return agents


def stop_fleet(agents: list[Agent], timeout: float = 60.0) -> None:
    for agent in agents:
        agent.daemon.stop.set()
        agent.daemon.wake()
    deadline = time.monotonic() + timeout
    for agent in agents:
        agent.thread.join(timeout=max(deadline - time.monotonic(), 0.1))


def make_clients(url: str, names: list[str]) -> list[Any]:
    """One ApiClient (one urllib3 pool) per node, User-Agent = the node's name."""
    from kubernetes.client import ApiClient, Configuration

    config = Configuration()
    config.host = url
    config.verify_ssl = False
    config.retries = 0
    clients = []
    for name in names:
        client = ApiClient(config)
        client.user_agent = name
        clients.append(client)
    return clients


# ---------------------------------------------------------------- a worker process
def worker_main(conn: Connection, names: list[str], cfg: JSON, shared: Shared) -> None:
    """Build the nodes, start them on ``shared.go``, then obey the parent's commands."""
    threading.stack_size(THREAD_STACK)
    handler = CountingHandler()
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.WARNING)
    tally = Tally(shared)
    workdir = Path(cfg["workdir"])
    nodes = [SimNode(name, workdir, tally, cfg["restart_seconds"]) for name in names]
    clients = make_clients(cfg["url"], names)
    agents = build_fleet(nodes, clients, tally, cfg, DEFAULT_RESYNC)
    conn.send("ready")
    shared.go.wait()
    for agent in agents:
        agent.thread.start()
    while True:
        cmd, arg = conn.recv()
        if cmd == "report":
            conn.send(
                {
                    "migrated_at": tally.migrated_at,
                    "restarts": tally.restarts,
                    "holds": tally.holds,
                    "restarts_per_node": [n.restarts for n in nodes],
                    "warnings": dict(handler.counts),
                    "samples": handler.samples,
                    "ready": sum(agent.daemon.health.ready()[0] for agent in agents),
                }
            )
        elif cmd == "halt":
            stop_fleet(agents)
            conn.send("halted")
        elif cmd == "start":
            agents = build_fleet(nodes, clients, tally, cfg, float(arg))
            for agent in agents:
                agent.thread.start()
            conn.send("started")
        elif cmd == "exit":
            stop_fleet(agents, timeout=10)
            conn.send("bye")
            conn.close()
            os._exit(0)  # daemon threads may sit in socket reads: no interpreter teardown


class Workers:
    def __init__(self, names: list[str], count: int, cfg: JSON) -> None:
        ctx = mp.get_context("fork")
        self.shared = Shared(ctx)
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        size = math.ceil(len(names) / count)
        for i in range(count):
            part = names[i * size : (i + 1) * size]
            if not part:
                break
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(child, part, cfg, self.shared),
                name=f"fleet-worker-{i}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "ready":
                raise RuntimeError("a fleet worker did not start")

    def ask(self, cmd: str, arg: Any = None) -> list[Any]:
        for conn in self.conns:
            conn.send((cmd, arg))
        return [conn.recv() for conn in self.conns]

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("exit", None))
                conn.recv()
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
                proc.join()


# ---------------------------------------------------------------- resources
class Sampler(threading.Thread):
    """Peak threads and memory (PSS: shared pages counted once) of the workers and the
    server, every ``period`` seconds."""

    def __init__(self, workers: list[int], server: int, period: float = 1.0) -> None:
        super().__init__(name="sampler", daemon=True)
        self.workers = [psutil.Process(p) for p in workers]
        self.server = psutil.Process(server)
        self.period = period
        self.halt = threading.Event()
        self.peak_threads = 0
        self.peak_pss = 0
        self.peak_server_rss = 0
        self.peak_server_threads = 0

    def run(self) -> None:
        while not self.halt.wait(self.period):
            self.sample()

    def sample(self) -> None:
        try:
            self.peak_threads = max(self.peak_threads, sum(p.num_threads() for p in self.workers))
            self.peak_pss = max(self.peak_pss, sum(p.memory_full_info().pss for p in self.workers))
            self.peak_server_rss = max(self.peak_server_rss, self.server.memory_info().rss)
            self.peak_server_threads = max(self.peak_server_threads, self.server.num_threads())
        except psutil.Error:
            pass


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# ---------------------------------------------------------------- analysis
def breakdown(records: list[JSON]) -> dict[str, int]:
    return dict(sorted(Counter(request_kind(r) for r in records).items()))


def per_node(records: list[JSON], nodes: int) -> JSON:
    """Requests per node (by User-Agent = node name): mean, median, max."""
    by_agent = Counter(r["user_agent"] for r in records if r["user_agent"].startswith("node-"))
    values = sorted([*by_agent.values(), *[0] * max(nodes - len(by_agent), 0)])
    if not values:
        return {}
    return {
        "mean": round(sum(values) / len(values), 2),
        "median": values[len(values) // 2],
        "max": values[-1],
    }


def stats(values: list[float]) -> JSON:
    if not values:
        return {}
    v = sorted(values)
    return {
        "mean": round(sum(v) / len(v), 3),
        "p50": round(v[len(v) // 2], 3),
        "p95": round(v[min(len(v) - 1, int(len(v) * 0.95))], 3),
        "max": round(v[-1], 3),
    }


def slot_timeline(restarts: list[Any], holds: list[Any]) -> JSON:
    """Where a slot's time goes: before the restart, after it, and between two holders
    (a hold is matched to the restart that ran inside it; holds that ended without a
    restart, e.g. a pass that failed, count only for the hand-over)."""
    by_node: dict[str, list[tuple[float, float]]] = {}
    for b, e, node in restarts:
        by_node.setdefault(node, []).append((b, e))
    before, after, handoff = [], [], []
    by_slot: dict[str, list[tuple[float, float]]] = {}
    for slot, acquired, released, node in holds:
        by_slot.setdefault(slot, []).append((acquired, released))
        for b, e in by_node.get(node, []):
            if acquired <= b <= released:
                before.append(b - acquired)
                after.append(released - e)
    for spans in by_slot.values():
        spans.sort()
        handoff += [nxt[0] - cur[1] for cur, nxt in itertools.pairwise(spans)]
    per_slot = [len(spans) for spans in by_slot.values()]
    return {
        "acquired_to_restart": stats(before),
        "restart_to_released": stats(after),
        "released_to_next_acquired": stats(handoff),
        "holds_without_restart": len(holds) - len(before),
        # an even rollout gives every slot ceil(N/K) holds; the busiest slot sets the end
        "holds_per_slot": {"min": min(per_slot, default=0), "max": max(per_slot, default=0)},
    }


def records_between(
    server: ServerProcess, since: float, until: float = math.inf
) -> tuple[list[JSON], bool]:
    """Logged requests in [since, until) (monotonic time: one clock for every process
    here), and whether the log had already dropped some of them."""
    snap = server.control("GET", f"/_fake/requests?recent={LOG_SIZE}")
    kept, total = snap["recent"], int(snap["total"])
    lost = total > len(kept) and bool(kept) and kept[0]["time"] > since
    return [r for r in kept if since <= r["time"] < until], lost


def node_states(server: ServerProcess) -> dict[str, str]:
    items = server.control("GET", "/_fake/objects/nodes")["items"]
    return {
        o["metadata"]["name"]: (o["metadata"].get("annotations") or {}).get(STATE_ANNOTATION, "")
        for o in items
    }


def start_workers(
    args: argparse.Namespace, server: ServerProcess, workdir: Path, count: int
) -> Workers:
    """Add the Node objects, then fork the workers that build the simulated nodes."""
    names = [f"node-{i:04d}" for i in range(args.nodes)]
    for name in names:
        add_node(server, name)
    cfg = {
        "workdir": str(workdir),
        "url": server.url,
        "concurrency": args.concurrency,
        "restart_seconds": args.restart_seconds,
        "lease_duration": args.lease_duration,
    }
    return Workers(names, count, cfg)


def merged(reports: list[JSON]) -> tuple[dict[str, float], list[Any], list[Any]]:
    """Every worker's (migrated_at, restarts, holds), merged."""
    migrated_at = {k: v for r in reports for k, v in r["migrated_at"].items()}
    return (
        migrated_at,
        [x for r in reports for x in r["restarts"]],
        [x for r in reports for x in r["holds"]],
    )


def agent_warnings(reports: list[JSON]) -> JSON:
    counts: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for r in reports:
        counts.update(r["warnings"])
        samples.update(r["samples"])
    return {
        key: {"count": c, "first_error": samples.get(key, "")} for key, c in counts.most_common(10)
    }


def mib(value: float) -> float:
    return round(value / 2**20, 1)


# ---------------------------------------------------------------- the benchmark
def watch_cache_args(args: argparse.Namespace) -> list[str]:
    """Fake-server flags for what was asked; none: its realistic defaults."""
    out: list[str] = []
    if args.bookmark_interval is not None:
        out += ["--bookmark-interval", str(args.bookmark_interval)]
    if args.history_window is not None:
        out += ["--history-window", str(args.history_window)]
    return out


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> JSON:
    n, k, s = args.nodes, args.concurrency, args.restart_seconds
    workers_n = args.workers or max(1, math.ceil(n / NODES_PER_WORKER))
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    server = ServerProcess(
        workdir / "kubeconfig",
        server_args=watch_cache_args(args),
        request_log_size=LOG_SIZE,
    )
    workers: Workers | None = None
    sampler: Sampler | None = None
    try:
        workers = start_workers(args, server, workdir, workers_n)
        procs = [psutil.Process(p.pid) for p in workers.procs]
        server_ps = psutil.Process(server.pid)
        built_pss = sum(p.memory_full_info().pss for p in procs)
        sampler = Sampler([p.pid for p in workers.procs], server.pid)
        sampler.start()
        progress(f"{n} nodes built in {len(procs)} worker(s); rolling out (K={k}, S={s:g}s)")
        ideal = math.ceil(n / k) * s
        timeout = args.timeout or (3 * ideal + 120)
        cpu0, scpu0 = cpu_seconds(procs), cpu_seconds([server_ps])
        t0 = time.monotonic()
        workers.shared.go.set()
        while workers.shared.migrated.value < n and time.monotonic() - t0 < timeout:
            time.sleep(0.05)
        cpu1, scpu1 = cpu_seconds(procs), cpu_seconds([server_ps])
        t_end = time.monotonic()
        time.sleep(args.settle)  # trailing requests of the last nodes (event, lease delete)
        reports = workers.ask("report")
        records, lost = records_between(server, t0)
        migrated_at, restarts, holds = merged(reports)
        t_last = max(migrated_at.values(), default=t_end)
        rollout = t_last - t0
        states = node_states(server)
        migrated = sum(1 for v in states.values() if v == "migrated")
        leases_left = len(
            server.control("GET", f"/_fake/objects/leases?namespace={NAMESPACE}")["items"]
        )
        sampler.sample()
        progress(
            f"rollout {rollout:.1f}s (ideal {ideal:g}s), {migrated}/{n} migrated, "
            f"{len(records)} requests"
        )
        busy = sum(e - b for b, e, _ in restarts)
        max_in_flight = workers.shared.max_in_flight.value
        detail: JSON = {
            "workers": len(procs),
            "lease_duration": args.lease_duration,
            "fake_server_args": watch_cache_args(args),
            "first_migrated_seconds": round(min(migrated_at.values()) - t0, 2)
            if migrated_at
            else None,
            "restarts": len(restarts),
            "restarts_per_node": dict(
                sorted(Counter(str(x) for r in reports for x in r["restarts_per_node"]).items())
            ),
            "slot_busy_fraction": round(busy / (k * rollout), 3) if rollout > 0 else None,
            "overhead_per_restart_seconds": round(k * rollout / n - s, 3),
            "slot_seconds": slot_timeline(restarts, holds),
            "leases_left": leases_left,
            "rollout_requests": breakdown(records),
            "rollout_requests_per_node": per_node(records, n),
            "request_log_incomplete": lost,
            "cpu_seconds": {"workers": round(cpu1 - cpu0, 1), "server": round(scpu1 - scpu0, 1)},
            "cpu_busy_fraction": round(
                ((cpu1 - cpu0) + (scpu1 - scpu0)) / ((t_end - t0) * (psutil.cpu_count() or 1)), 2
            ),
            "peak_threads": {
                "workers": sampler.peak_threads,
                "server": sampler.peak_server_threads,
            },
            "memory_mib": {
                "workers_pss_built": mib(built_pss),
                "workers_pss_peak": mib(sampler.peak_pss),
                "per_node_pss_kib": round(sampler.peak_pss / n / 2**10, 1),
                "server_rss_peak": mib(sampler.peak_server_rss),
            },
            "agent_warnings": agent_warnings(reports),
        }
        if args.steady_window > 0:
            detail["steady"] = measure_steady(args, server, workers, n, progress)
        else:
            workers.ask("halt")
        per_hour = detail.get("steady", {}).get("per_node_hour")
        return {
            "benchmark": "fleet",
            "nodes": n,
            "migrated": migrated,
            "concurrency": k,
            "restart_seconds": s,
            "max_concurrent_restarts": max_in_flight,
            "rollout_seconds": round(rollout, 2),
            "ideal_seconds": ideal,
            "ratio": round(rollout / ideal, 3),
            "requests_per_node": round(len(records) / n, 2),
            "steady_requests_per_node_hour": per_hour,
            "targets": {
                "max_concurrent_restarts": f"<= {k}",
                "ratio": f"<= {TARGET_RATIO} (at N = 1000)",
                "steady_requests_per_node_hour": f"<= {TARGET_STEADY_PER_NODE_HOUR:g}",
            },
            "verdict": {
                "max_concurrent_restarts": verdict(max_in_flight, k),
                "ratio": verdict(rollout / ideal, TARGET_RATIO),
                "steady_requests_per_node_hour": verdict(per_hour, TARGET_STEADY_PER_NODE_HOUR),
            },
            "detail": detail,
            "machine": machine(),
        }
    finally:
        if sampler is not None:
            sampler.halt.set()
        if workers is not None:
            workers.close()
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)


def measure_steady(
    args: argparse.Namespace,
    server: ServerProcess,
    workers: Workers,
    n: int,
    progress: Callable[[str], None],
) -> JSON:
    """Requests of migrated nodes over a window, scaled back to the default resync.

    Every daemon of phase 1 is stopped and a new one started (an agent restart on every
    node) with ``resync_interval = R``; the node watch's timeout follows it
    (``max(int(R), 10)`` s, see ``Daemon._watch_loop``). Node watches are the only requests
    whose rate follows the resync: their count is scaled by that timeout / 600 s. Any other
    request in the window is counted as it is (not scaled), so the figure can only err high.
    """
    resync = args.steady_resync
    period = max(int(resync), 10)  # the node watch's timeoutSeconds
    workers.ask("halt")
    server.control("POST", "/_fake/watches/drop", {"graceful": True})  # phase 1's watches
    restarts_before = sum(len(r["restarts"]) for r in workers.ask("report"))
    workers.ask("start", resync)
    # The window opens only once every restarted daemon has finished its first pass (its
    # start-up requests are a restart's cost, not the steady rate), plus half a resync.
    started = time.monotonic()
    while sum(r["ready"] for r in workers.ask("report")) < n:
        if time.monotonic() - started > STEADY_START_TIMEOUT:
            raise RuntimeError(f"not every daemon was ready {STEADY_START_TIMEOUT:g}s after start")
        time.sleep(0.5)
    ready_after = time.monotonic() - started
    settle = max(resync / 2, 2.0)
    progress(
        f"steady: restarted every daemon with resync {resync:g}s; all ready after "
        f"{ready_after:.1f}s, then {settle:g}s settle, window {args.steady_window:g}s"
    )
    time.sleep(settle)
    warmup = time.monotonic() - started
    t_a = time.monotonic()
    time.sleep(args.steady_window)
    t_b = time.monotonic()
    records, lost = records_between(server, t_a, t_b)
    restarts_after = sum(len(r["restarts"]) for r in workers.ask("report"))
    workers.ask("halt")
    w = t_b - t_a
    watches = sum(1 for r in records if r["verb"] == "watch" and r["template"] == "/api/v1/nodes")
    other = len(records) - watches
    return {
        "resync_seconds": resync,
        "window_seconds": round(w, 1),
        "warmup_seconds": round(warmup, 1),
        "all_ready_after_seconds": round(ready_after, 1),
        "requests": breakdown(records),
        "request_log_incomplete": lost,
        "measured_per_node_hour": round(len(records) / n / w * 3600, 2),
        "scale": f"node watches x {period}/{DEFAULT_RESYNC:g}; other requests unscaled",
        "per_node_hour": round(
            watches / n / w * 3600 * (period / DEFAULT_RESYNC) + other / n / w * 3600, 2
        ),
        "restarts_during_steady": restarts_after - restarts_before,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument(
        "--concurrency", type=int, default=10, help="--max-concurrent-restarts of every agent (K)"
    )
    p.add_argument(
        "--restart-seconds", type=float, default=2.0, help="seconds the restart stand-in takes (S)"
    )
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help=f"worker processes (0: one per {NODES_PER_WORKER} nodes)",
    )
    p.add_argument("--lease-duration", type=int, default=60)
    p.add_argument(
        "--bookmark-interval",
        type=float,
        default=None,
        help="seconds between watch BOOKMARKs of the fake server (default: its own, "
        "kube-apiserver's ~60 s)",
    )
    p.add_argument(
        "--history-window",
        type=float,
        default=None,
        help="seconds of watch history the fake server keeps (default: its own, "
        "kube-apiserver's 75 s)",
    )
    p.add_argument(
        "--steady-resync",
        type=float,
        default=30.0,
        help="resync (and node-watch timeout) of the steady phase, seconds",
    )
    p.add_argument(
        "--steady-window",
        type=float,
        default=120.0,
        help="seconds of the steady-state window (0: skip the steady phase)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds after the last node migrated still counted to the rollout",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="give up the rollout after this many seconds (0: 3 x ideal + 120)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def progress(text: str) -> None:
        if not args.quiet:
            print(f"fleet: {text}", file=sys.stderr, flush=True)

    result = run(args, progress)
    emit(result, args.json)
    ok = (
        result["migrated"] == result["nodes"]
        and result["max_concurrent_restarts"] <= result["concurrency"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
