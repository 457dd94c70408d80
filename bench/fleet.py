"""Fleet rollout: N real ``Daemon`` loops against one fake API server (not a test).

Each simulated node is a real :class:`agent.daemon.Daemon` (its real reconcile loop, node
watch, restart-slot Leases, status reporting) in threads of this process, with its own
temporary TKE host root and the real engine, file writes and journal. Only the host probes
are in-process stand-ins (``tests/fakes.py``): the local DNS answers, kube-proxy says
``ipvs``, and the restart command is a stand-in that sleeps ``--restart-seconds`` real
seconds and then "starts" a new kubelet process. All nodes talk to ONE fake kube-apiserver
(``tests/fake_apiserver``) over real HTTP through the real ``kubernetes`` client.

Phase 1 (rollout): every node starts at once; measured until every Node annotation says
``migrated``. Phase 2 (steady): the daemons are restarted with a short resync (the watch
timeout follows it) and the API requests over a window are counted and scaled back to the
default resync; see ``--steady-resync`` and ``docs/benchmarks.md``.

    python bench/fleet.py --nodes 1000 --concurrency 50 --restart-seconds 2 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import itertools

from agent.daemon import Daemon
from agent.engine import NodeEngine
from agent.host.files import FileJournal
from agent.host.probes import HttpResult, ProcessInfo, SystemClock
from agent.hostpaths import HostRoot
from agent.kube.api import KubeApi
from agent.kube.lock import RestartLock
from agent.kube.status import NodeStatus
from agent.kube.types import NodeView
from agent.kubeletconfig.envfile import find_cluster_dns
from agent.metrics import Health, Metrics
from agent.settings import NodeSettings, RunSettings
from agent.state import STATE_ANNOTATION
from bench.common import (
    JSON,
    ServerProcess,
    add_node,
    emit,
    machine,
    request_kind,
    tune_fake_server,
    verdict,
)
from tests.fakenode import TKE_ENV, TKE_UNIT
from tests.fakes import FakeHttp, FakeInterfaces, FakeProber, FakeProcesses, FakeRunner

NAMESPACE = "nodelocaldns"
LOCAL = "169.254.20.10"
HEALTHZ = "http://127.0.0.1:10248/healthz"
PROXY = "http://127.0.0.1:10249/proxyMode"
#: the product's default resync (and node-watch timeout), seconds
DEFAULT_RESYNC = 600.0
#: targets from the issue
TARGET_RATIO = 1.10
TARGET_STEADY_PER_NODE_HOUR = 6.0
#: each thread's stack (Python frames are on the heap; 512 KiB is ample)
THREAD_STACK = 512 * 1024
#: requests the fake server's log keeps (its CLI default)
LOG_SIZE = 100_000

log = logging.getLogger("bench.fleet")


# ---------------------------------------------------------------- measurements
class Tally:
    """Shared counters of the whole fleet (one lock, touched a few times per node)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.restarts: list[tuple[float, float, str]] = []
        #: (slot, acquired, released, node) per restart-slot hold
        self.holds: list[tuple[str, float, float, str]] = []
        self.migrated_at: dict[str, float] = {}
        self.all_migrated = threading.Event()
        self.expected = 0

    @contextmanager
    def restart(self, node: str) -> Iterator[None]:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        start = time.monotonic()
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1
                self.restarts.append((start, time.monotonic(), node))

    def migrated(self, node: str) -> None:
        with self.lock:
            self.migrated_at.setdefault(node, time.monotonic())
            if len(self.migrated_at) >= self.expected:
                self.all_migrated.set()


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
                self.tally.holds.append((held.name, self._acquired, time.monotonic(),
                                         self.holder))


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

    def summary(self) -> dict[str, JSON]:
        return {k: {"count": n, "first_error": self.samples.get(k, "")}
                for k, n in self.counts.most_common(10)}


class Sampler(threading.Thread):
    """Peak threads and RSS of this process (and the server's), every ``period`` s."""

    def __init__(self, server_pid: int | None, period: float = 0.5) -> None:
        super().__init__(name="sampler", daemon=True)
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid) if server_pid else None
        self.period = period
        self.halt = threading.Event()
        self.peak_threads = 0
        self.peak_rss = 0
        self.peak_server_rss = 0
        self.peak_server_threads = 0

    def run(self) -> None:
        while not self.halt.wait(self.period):
            self.sample()

    def sample(self) -> None:
        self.peak_threads = max(self.peak_threads, self.me.num_threads())
        self.peak_rss = max(self.peak_rss, self.me.memory_info().rss)
        if self.server is not None:
            self.peak_server_rss = max(self.peak_server_rss, self.server.memory_info().rss)
            self.peak_server_threads = max(self.peak_server_threads, self.server.num_threads())


def cpu_seconds(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    t = proc.cpu_times()
    return float(t.user + t.system)


# ---------------------------------------------------------------- the fake API server
class Server:
    """The fake API server, in this process (``thread``) or a subprocess (``process``)."""

    def __init__(self, mode: str, workdir: Path, bookmark_interval: float,
                 history_size: int) -> None:
        self.mode = mode
        self.proc: ServerProcess | None = None
        self.inproc: Any = None
        if mode == "process":
            self.proc = ServerProcess(workdir / "kubeconfig", bookmark_interval=bookmark_interval,
                                      history_size=history_size)
            self.url = self.proc.url
        else:
            from tests.fake_apiserver import FakeApiServer

            tune_fake_server()
            self.inproc = FakeApiServer(bookmark_interval=bookmark_interval,
                                        history_size=history_size,
                                        request_log_size=LOG_SIZE).start()
            self.url = self.inproc.url

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def add_node(self, name: str) -> None:
        if self.proc:
            add_node(self.proc, name)
        else:
            self.inproc.add_node(name)

    def records(self, since: float, until: float = float("inf")) -> tuple[list[JSON], bool]:
        """Logged requests in [since, until) (monotonic time, shared by all processes here),
        and whether the log had already dropped some of them."""
        if self.proc:
            snap = self.proc.control("GET", f"/_fake/requests?recent={LOG_SIZE}")
            kept, total = snap["recent"], int(snap["total"])
        else:
            kept = [dataclasses.asdict(r) for r in self.inproc.requests.records()]
            total = self.inproc.requests.total
        lost = total > len(kept) and bool(kept) and kept[0]["time"] > since
        return [r for r in kept if since <= r["time"] < until], lost

    def node_states(self) -> dict[str, str]:
        if self.proc:
            items = self.proc.control("GET", "/_fake/objects/nodes")["items"]
        else:
            items = self.inproc.objects("nodes")
        return {o["metadata"]["name"]: (o["metadata"].get("annotations") or {}).get(
            STATE_ANNOTATION, "") for o in items}

    def leases(self) -> int:
        if self.proc:
            return len(self.proc.control("GET", f"/_fake/objects/leases?namespace={NAMESPACE}")
                       ["items"])
        return len(self.inproc.objects("leases", NAMESPACE))

    def drop_watches(self) -> None:
        if self.proc:
            self.proc.control("POST", "/_fake/watches/drop", {"graceful": True})
        else:
            self.inproc.faults.drop_watches(graceful=True)

    def close(self) -> None:
        if self.proc:
            self.proc.close()
        else:
            self.inproc.stop(grace=1.0)


def breakdown(records: list[JSON]) -> dict[str, int]:
    counts = Counter(request_kind(r) for r in records)
    return dict(sorted(counts.items()))


def per_node(records: list[JSON], nodes: int) -> JSON:
    """Requests per node (by User-Agent = node name): mean, median, max."""
    by_agent = Counter(r["user_agent"] for r in records if r["user_agent"].startswith("node-"))
    values = sorted(by_agent.values()) + [0] * max(nodes - len(by_agent), 0)
    values.sort()
    if not values:
        return {}
    return {"mean": round(sum(values) / len(values), 2), "median": values[len(values) // 2],
            "max": values[-1]}


# ---------------------------------------------------------------- one simulated node
class RecordingApi(KubeApi):
    """The real API wrapper; notes when this node's state annotation became ``migrated``."""

    def __init__(self, client: Any, tally: Tally) -> None:
        super().__init__(client)
        self.tally = tally

    def patch_node_metadata(self, name: str, annotations: dict[str, str | None],
                            labels: dict[str, str | None]) -> NodeView:
        view = super().patch_node_metadata(name, annotations, labels)
        if annotations.get(STATE_ANNOTATION) == "migrated":
            self.tally.migrated(name)
        return view


class SimNode:
    """A temporary TKE host root, in-process host probes and a sleeping restart stand-in."""

    def __init__(self, index: int, workdir: Path, tally: Tally, restart_seconds: float) -> None:
        self.name = f"node-{index:04d}"
        self.root = workdir / self.name
        self.tally = tally
        self.restart_seconds = restart_seconds
        self.restarts = 0
        for path, data in (("etc/kubernetes/kubelet", TKE_ENV),
                           ("usr/lib/systemd/system/kubelet.service", TKE_UNIT.encode())):
            real = self.root / path
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_bytes(data)
        self.processes = FakeProcesses()
        self.pid = 100
        self.start_kubelet()
        self.http = FakeHttp({HEALTHZ: HttpResult(200, "ok"), PROXY: HttpResult(200, "ipvs")})
        self.interfaces = FakeInterfaces({"lo": ("127.0.0.1",), "nodelocaldns": (LOCAL,),
                                          "kube-ipvs0": ("10.96.0.10",)})
        settings = NodeSettings(host_root=self.root, restart_command=("restart-kubelet",),
                                verify_timeout=30.0)
        host = HostRoot(self.root)
        self.engine = NodeEngine(settings, host, self.interfaces, self.http, FakeProber(),
                                 self.processes, FakeRunner(on_run=self._restart), SystemClock(),
                                 FileJournal(host, settings.state_dir))

    def start_kubelet(self) -> None:
        env = self.root / "etc/kubernetes/kubelet"
        occ = find_cluster_dns(env.read_bytes(), "env")
        argv = ["/usr/bin/kubelet", "--node-ip=10.0.0.5"]
        if occ is not None:
            argv.append("--cluster-dns=" + ",".join(occ.values))
        self.pid += 1
        self.processes.running = [ProcessInfo(self.pid, time.time(), tuple(argv))]

    def _restart(self, argv: tuple[str, ...]) -> None:
        with self.tally.restart(self.name):
            self.restarts += 1
            time.sleep(self.restart_seconds)
            self.start_kubelet()


@dataclasses.dataclass
class Agent:
    node: SimNode
    daemon: Any
    thread: threading.Thread


def build_fleet(nodes: list[SimNode], clients: list[Any], tally: Tally, concurrency: int,
                resync: float, lease_duration: int, stop: threading.Event) -> list[Agent]:
    """One Daemon per node, wired as ``agent.cli.cmd_run`` wires it (threads not started)."""
    agents: list[Agent] = []
    for node, client in zip(nodes, clients, strict=True):


        rs = RunSettings(node_name=node.name, namespace=NAMESPACE,
                         max_concurrent_restarts=concurrency, resync_interval=resync,
                         lease_duration=lease_duration)
        api = RecordingApi(client, tally)
        clock = node.engine.clock
        metrics = Metrics(_registry(), version="bench")
        daemon = Daemon(rs, node.engine, api,
                        TimedLock(api, NAMESPACE, node.name, concurrency, clock,
                                  duration=lease_duration, tally=tally),
                        NodeStatus(api, node.name, NAMESPACE), metrics, Health(), clock, stop)
        thread = threading.Thread(target=daemon.run, name=f"agent-{node.name}", daemon=True)
        agents.append(Agent(node, daemon, thread))
    return agents


def start_fleet(agents: list[Agent]) -> None:
    for agent in agents:
        agent.thread.start()


def _registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


def stop_fleet(agents: list[Agent], stop: threading.Event, timeout: float = 30.0) -> None:
    stop.set()
    for agent in agents:
        agent.daemon.wake()
    deadline = time.monotonic() + timeout
    for agent in agents:
        agent.thread.join(timeout=max(deadline - time.monotonic(), 0.1))


def make_clients(url: str, names: list[str], shared: bool) -> list[Any]:
    """One ApiClient per node (User-Agent: the node name), or one shared by all."""
    from kubernetes.client import ApiClient, Configuration

    config = Configuration()
    config.host = url
    config.verify_ssl = False
    config.retries = 0
    if shared:
        # every node's requests and watches through one urllib3 pool
        config.connection_pool_maxsize = 3 * len(names) + 10
        client = ApiClient(config)
        client.user_agent = "fleet-shared"
        return [client] * len(names)
    clients = []
    for name in names:
        client = ApiClient(config)
        client.user_agent = name
        clients.append(client)
    return clients


# ---------------------------------------------------------------- the benchmark
@dataclasses.dataclass
class Rollout:
    t0: float
    t_last: float
    started_seconds: float
    cpu_seconds: float
    server_cpu_seconds: float


def roll_out(args: argparse.Namespace, agents: list[Agent], tally: Tally, me: psutil.Process,
             server_proc: psutil.Process | None) -> Rollout:
    """Start every daemon at once; wait until every node reported ``migrated``."""
    n, k, s = args.nodes, args.concurrency, args.restart_seconds
    ideal = math.ceil(n / k) * s
    timeout = args.timeout or (3 * ideal + 60 + n * 0.05)
    cpu0, scpu0 = cpu_seconds(me), cpu_seconds(server_proc)
    t0 = time.monotonic()
    start_fleet(agents)
    started = time.monotonic() - t0
    tally.all_migrated.wait(timeout=timeout)
    t_last = max(tally.migrated_at.values(), default=time.monotonic())
    return Rollout(t0, t_last, started, cpu_seconds(me) - cpu0,
                   cpu_seconds(server_proc) - scpu0)


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> JSON:
    threading.stack_size(THREAD_STACK)
    n, k, s = args.nodes, args.concurrency, args.restart_seconds
    handler = CountingHandler()
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    server = Server(args.server, workdir, args.bookmark_interval, args.history_size)
    tally = Tally()
    tally.expected = n
    me = psutil.Process()
    server_proc = psutil.Process(server.pid) if server.pid else None
    sampler = Sampler(server.pid)
    try:
        rss_base = me.memory_info().rss
        names = [f"node-{i:04d}" for i in range(n)]
        for name in names:
            server.add_node(name)
        nodes = [SimNode(i, workdir, tally, s) for i in range(n)]
        clients = make_clients(server.url, names, args.shared_client)
        agents = build_fleet(nodes, clients, tally, k, DEFAULT_RESYNC, args.lease_duration,
                             threading.Event())
        rss_built = me.memory_info().rss
        progress(f"{n} nodes built; rolling out (K={k}, S={s}s)")
        sampler.start()
        ro = roll_out(args, agents, tally, me, server_proc)
        time.sleep(args.settle)  # trailing requests of the last nodes (event, lease delete)
        records, lost = server.records(ro.t0)
        states = server.node_states()
        migrated = sum(1 for v in states.values() if v == "migrated")
        rollout = ro.t_last - ro.t0
        ideal = math.ceil(n / k) * s
        busy = sum(e - b for b, e, _ in tally.restarts)
        sampler.sample()
        progress(f"rollout {rollout:.1f}s (ideal {ideal:g}s), {migrated}/{n} migrated, "
                 f"{len(records)} requests")
        detail: JSON = {
            "server": args.server,
            "client": "shared" if args.shared_client else "per-node",
            "lease_duration": args.lease_duration,
            "bookmark_interval": args.bookmark_interval,
            "threads_started_seconds": round(ro.started_seconds, 2),
            "first_migrated_seconds": round(min(tally.migrated_at.values()) - ro.t0, 2)
            if tally.migrated_at else None,
            "restarts": len(tally.restarts),
            "restarts_per_node": dict(sorted(Counter(str(a.node.restarts)
                                                     for a in agents).items())),
            "slot_busy_fraction": round(busy / (k * rollout), 3) if rollout else None,
            "overhead_per_restart_seconds": round(k * rollout / n - s, 3),
            "slot_seconds": slot_timeline(tally),
            "leases_left": server.leases(),
            "rollout_requests": breakdown(records),
            "rollout_requests_per_node": per_node(records, n),
            "request_log_incomplete": lost,
            "bench_cpu_seconds": round(ro.cpu_seconds, 1),
            "server_cpu_seconds": round(ro.server_cpu_seconds, 1),
            "cpu_busy_fraction": round((ro.cpu_seconds + ro.server_cpu_seconds)
                                       / (rollout * (psutil.cpu_count() or 1)), 2)
            if rollout else None,
            "peak_threads": sampler.peak_threads,
            "server_peak_threads": sampler.peak_server_threads,
            "rss_mib": {
                "before_nodes": mib(rss_base),
                "fleet_built": mib(rss_built),
                "peak": mib(sampler.peak_rss),
                "server_peak": mib(sampler.peak_server_rss),
            },
            "agent_warnings": handler.summary(),
        }
        steady: JSON = {}
        if args.steady_window > 0:
            steady = measure_steady(args, server, nodes, clients, tally, agents, progress)
            detail["steady"] = steady
        else:
            stop_fleet(agents, agents[0].daemon.stop if agents else threading.Event())
            server.drop_watches()
        per_hour = steady.get("per_node_hour")
        return {
            "benchmark": "fleet",
            "nodes": n,
            "migrated": migrated,
            "concurrency": k,
            "restart_seconds": s,
            "max_concurrent_restarts": tally.max_in_flight,
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
                "max_concurrent_restarts": verdict(tally.max_in_flight, k),
                "ratio": verdict(rollout / ideal, TARGET_RATIO),
                "steady_requests_per_node_hour": verdict(per_hour, TARGET_STEADY_PER_NODE_HOUR),
            },
            "detail": detail,
            "machine": machine(),
        }
    finally:
        sampler.halt.set()
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)


def stats(values: list[float]) -> JSON:
    if not values:
        return {}
    v = sorted(values)
    return {"mean": round(sum(v) / len(v), 3), "p50": round(v[len(v) // 2], 3),
            "p95": round(v[min(len(v) - 1, int(len(v) * 0.95))], 3), "max": round(v[-1], 3)}


def slot_timeline(tally: Tally) -> JSON:
    """Where a slot's time goes: before the restart, after it, and between two holders."""
    restarts = {node: (b, e) for b, e, node in tally.restarts}
    before, after, handoff = [], [], []
    by_slot: dict[str, list[tuple[float, float]]] = {}
    for slot, acquired, released, node in tally.holds:
        by_slot.setdefault(slot, []).append((acquired, released))
        if node in restarts:
            b, e = restarts[node]
            before.append(b - acquired)
            after.append(released - e)
    for spans in by_slot.values():
        spans.sort()
        handoff += [nxt[0] - cur[1] for cur, nxt in itertools.pairwise(spans)]
    return {"acquired_to_restart": stats(before), "restart_to_released": stats(after),
            "released_to_next_acquired": stats(handoff)}


def mib(value: int) -> float:
    return round(value / 2**20, 1)


def measure_steady(args: argparse.Namespace, server: Server, nodes: list[SimNode],
                   clients: list[Any], tally: Tally, agents: list[Agent],
                   progress: Callable[[str], None]) -> JSON:
    """Requests of migrated nodes over a window, scaled back to the default resync.

    The daemons of phase 1 are stopped and new ones started (an agent restart on every
    node) with ``resync_interval = R`` (the node watch's timeout follows it), so that a
    window of a few R shows every periodic request several times. Node watches are the
    only requests whose rate follows the resync: they are scaled by R / 600; any other
    request in the window is counted as it is (not scaled), so the figure can only err high.
    """
    resync = args.steady_resync
    stop_fleet(agents, agents[0].daemon.stop if agents else threading.Event())
    server.drop_watches()  # end phase 1's node watches now instead of after 600 s
    restarts_before = len(tally.restarts)
    agents2 = build_fleet(nodes, clients, tally, args.concurrency, resync,
                          args.lease_duration, threading.Event())
    start_fleet(agents2)
    warmup = max(resync / 2, 5.0) + len(nodes) * 0.01
    progress(f"steady: restarted the daemons with resync {resync:g}s; warm-up {warmup:.0f}s, "
             f"window {args.steady_window:g}s")
    time.sleep(warmup)
    t_a = time.monotonic()
    time.sleep(args.steady_window)
    t_b = time.monotonic()
    records, lost = server.records(t_a, t_b)
    stop_fleet(agents2, agents2[0].daemon.stop if agents2 else threading.Event())
    n, w = len(nodes), t_b - t_a
    watches = sum(1 for r in records if r["verb"] == "watch" and r["template"] ==
                  "/api/v1/nodes")
    other = len(records) - watches
    return {
        "resync_seconds": resync,
        "window_seconds": round(w, 1),
        "warmup_seconds": round(warmup, 1),
        "requests": breakdown(records),
        "request_log_incomplete": lost,
        "measured_per_node_hour": round(len(records) / n / w * 3600, 2),
        "scale": f"node watches x {resync:g}/{DEFAULT_RESYNC:g}; other requests unscaled",
        "per_node_hour": round(watches / n / w * 3600 * (resync / DEFAULT_RESYNC)
                               + other / n / w * 3600, 2),
        "restarts_during_steady": len(tally.restarts) - restarts_before,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=10,
                   help="--max-concurrent-restarts of every agent (K)")
    p.add_argument("--restart-seconds", type=float, default=2.0,
                   help="seconds the restart stand-in takes (S)")
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument("--server", choices=("process", "thread"), default="process",
                   help="fake API server in a subprocess (own GIL; default) or in this process")
    p.add_argument("--shared-client", action="store_true",
                   help="one kubernetes ApiClient (one urllib3 pool) for all nodes")
    p.add_argument("--lease-duration", type=int, default=60)
    p.add_argument("--bookmark-interval", type=float, default=10.0,
                   help="seconds between watch BOOKMARKs of the fake server")
    p.add_argument("--history-size", type=int, default=1000,
                   help="watch history the fake server keeps per resource type")
    p.add_argument("--steady-resync", type=float, default=30.0,
                   help="resync (and node-watch timeout) of the steady phase, seconds")
    p.add_argument("--steady-window", type=float, default=120.0,
                   help="seconds of the steady-state window (0: skip the steady phase)")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds after the last node migrated still counted to the rollout")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="give up the rollout after this many seconds (0: from the ideal)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def progress(text: str) -> None:
        if not args.quiet:
            print(f"fleet: {text}", file=sys.stderr, flush=True)

    result = run(args, progress)
    emit(result, args.json)
    ok = result["migrated"] == result["nodes"] and \
        result["max_concurrent_restarts"] <= result["concurrency"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
