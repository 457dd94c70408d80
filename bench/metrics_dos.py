"""The metrics server under idle connections (issue 13, finding 4; not a test).

Starts the agent's metrics server (``nodelocaldns_agent.metrics.serve`` with its default
limits, a fresh registry of the agent's metrics) in a child process on 127.0.0.1, then for
each count N opens N TCP connections that never send a byte, and measures the child's
threads and RSS before, right after the connections are open ("during"), after holding
them ``--hold`` seconds, and after closing them; plus how long ``/healthz`` and
``/metrics`` take while they are held and how many of them the server has closed.
``--baseline DIR`` measures a second source tree the same way (e.g. the code before the
fix: ``git worktree add /tmp/before <commit>``). Prints one JSON object:

    python bench/metrics_dos.py [--connections 600 3000] [--hold 5] [--baseline DIR] [--json]

Safety: loopback only; every connection and the child are closed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import JSON, REPO_ROOT, emit, machine

#: the child: the agent's metrics server on a free loopback port until stdin closes
SERVER = (
    "import sys\n"
    "from prometheus_client import CollectorRegistry\n"
    "from nodelocaldns_agent.metrics import Health, Metrics, serve\n"
    "registry = CollectorRegistry()\n"
    "Metrics(registry, version='bench')\n"
    "server = serve('127.0.0.1:0', registry, Health())\n"
    "print(server.port, flush=True)\n"
    "sys.stdin.read()\n"
    "server.close()\n"
)
MIB = 1024 * 1024


def sample(proc: psutil.Process) -> JSON:
    return {"threads": proc.num_threads(), "rss_mib": round(proc.memory_info().rss / MIB, 1)}


def request_seconds(port: int, path: str) -> float | str:
    """Seconds for one GET (a probe's budget: 5 s), or why it failed."""
    t0 = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    if resp.status != 200:
        return f"HTTP {resp.status}"
    return round(time.monotonic() - t0, 4)


def closed_by_server(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has closed (readable at EOF: they never get data)."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN | select.POLLHUP)
    return len(poller.poll(0))


def open_idle(port: int, count: int, socks: list[socket.socket], timeout: float) -> int:
    """Start ``count`` connections at once (as an attacker would: a full listen backlog
    then delays each connect by SYN retries, not the whole series); how many are
    established within ``timeout`` seconds."""
    poller = select.poll()
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
        poller.register(sock, select.POLLOUT)
    pending = {sock.fileno() for sock in socks}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            pending.discard(fd)
            poller.unregister(fd)
    return sum(
        1
        for sock in socks
        if sock.fileno() not in pending and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    )


def attack(port: int, count: int, hold: float, proc: psutil.Process) -> JSON:
    before = sample(proc)
    socks: list[socket.socket] = []
    t0 = time.monotonic()
    try:
        established = open_idle(port, count, socks, timeout=30)
        opened = time.monotonic() - t0
        time.sleep(1.0)
        during = {
            **sample(proc),
            "closed_by_server": closed_by_server(socks),
            "healthz_seconds": request_seconds(port, "/healthz"),
            "metrics_seconds": request_seconds(port, "/metrics"),
        }
        time.sleep(max(0.0, hold - 1.0))
        held = {
            **sample(proc),
            "closed_by_server": closed_by_server(socks),
            "healthz_seconds": request_seconds(port, "/healthz"),
        }
    finally:
        for sock in socks:
            sock.close()
    time.sleep(1.0)
    after = {**sample(proc), "healthz_seconds": request_seconds(port, "/healthz")}
    return {
        "connections": count,
        "established": established,
        "open_seconds": round(opened, 2),
        "before": before,
        "during": during,
        f"after_{hold:g}s": held,
        "after_close": after,
    }


def measure(
    source: Path, counts: list[int], hold: float, progress: Callable[[str], None]
) -> list[JSON]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=source,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        port = int(child.stdout.readline())
        proc = psutil.Process(child.pid)
        request_seconds(port, "/metrics")  # warm up
        out = []
        for count in counts:
            progress(f"{source}: {count} idle connections")
            out.append(attack(port, count, hold, proc))
        child.stdin.close()
        child.wait(timeout=10)
        return out
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, nargs="+", default=[600, 3000])
    p.add_argument("--hold", type=float, default=5.0, help="seconds the idle connections are held")
    p.add_argument(
        "--baseline", type=Path, help="another source tree to measure the same way (before)"
    )
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)

    def progress(text: str) -> None:
        if not args.quiet:
            print(f"metrics_dos: {text}", file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "benchmark": "metrics_dos",
        "runs": measure(REPO_ROOT, args.connections, args.hold, progress),
    }
    if args.baseline is not None:
        result["baseline"] = measure(args.baseline, args.connections, args.hold, progress)
    result["machine"] = machine()
    emit(result, args.json)


if __name__ == "__main__":
    main()
