"""The metrics server under attack (issue 13, finding 4): idle connections, a slowloris,
oversized requests, keep-alive, and a connection flood that holds the cap.

The port is on the host network and reachable by every pod, so it must stay cheap whatever
a client does: before the fix, ``http.server.ThreadingHTTPServer`` gave each connection a
thread with no timeout (600 idle connections: 602 threads, never reclaimed). The reference
servers bound the same things: Go's ``net/http`` (``Server.ReadHeaderTimeout``,
``WriteTimeout``, ``MaxHeaderBytes``; node_exporter and the exporter-toolkit set
``ReadHeaderTimeout`` against slowloris, prometheus/exporter-toolkit#421), nginx
(``client_header_timeout``, ``large_client_header_buffers``). prometheus client_python's
own ``start_http_server`` (0.26, ``exposition.ThreadingWSGIServer``) has neither a timeout
nor a cap. Memory and thread figures are in bench/metrics_dos.py, not here.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from nodelocaldns_agent.metrics import Health, MetricsServer, serve
from nodelocaldns_agent.metrics.server import LIMITS, Limits

ATTACKERS = 600


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def fetch(handle: MetricsServer, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """A GET as kubelet's probe or Prometheus sends it, with the probe's budget."""
    url = f"http://127.0.0.1:{handle.port}{path}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def connect(handle: MetricsServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True once the server closed ``sock`` (EOF or reset) within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


@pytest.fixture
def handle() -> Iterator[MetricsServer]:
    with serve("127.0.0.1:0", CollectorRegistry(), Health()) as h:
        yield h


@pytest.fixture
def attackers() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def test_idle_connections_cost_no_thread_and_are_reclaimed(
    handle: MetricsServer, attackers: list[socket.socket]
) -> None:
    baseline = threading.active_count()
    for _ in range(ATTACKERS):
        attackers.append(connect(handle))
    time.sleep(0.5)  # let the server accept them all
    assert threading.active_count() <= baseline + 2, threading.active_count()
    # The probes and a scrape still get through, well within kubelet's 5 s probe timeout.
    t0 = time.monotonic()
    assert fetch(handle, "/healthz")[0] == 200
    assert fetch(handle, "/metrics")[0] == 200
    assert time.monotonic() - t0 < 3
    assert threading.active_count() <= baseline + 2
    # Every idle connection is closed by the server within its header deadline.
    assert all(closed_by_server(s, LIMITS.header_timeout + 2) for s in attackers[-5:])
    for sock in attackers:
        sock.close()
    assert wait_for(lambda: threading.active_count() <= baseline, 5)


def test_a_slowloris_is_cut_at_the_header_deadline(handle: MetricsServer) -> None:
    """A byte every 0.2 s keeps a per-read timeout happy forever: the deadline is total."""
    with connect(handle) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        cut = None
        while time.monotonic() - t0 < LIMITS.header_timeout + 3:
            try:
                sock.sendall(b"X")
            except OSError:
                cut = time.monotonic() - t0
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(1) == b"":
                    cut = time.monotonic() - t0
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                cut = time.monotonic() - t0
                break
        assert cut is not None, "the server kept a trickling connection open"
        assert LIMITS.header_timeout - 0.5 <= cut <= LIMITS.header_timeout + 1.5, cut


def test_an_oversized_request_head_is_refused(handle: MetricsServer) -> None:
    """The stdlib alone reads 100 header lines of 64 KiB each (6.4 MiB per request)."""
    with connect(handle) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n")
        sock.settimeout(5)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 431 "), reply[:80]


def test_one_request_per_connection(handle: MetricsServer) -> None:
    """No keep-alive: a pipelined second request is not answered and the connection ends
    (a regression guard: the stdlib's HTTP/1.0 handler already closed)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    with connect(handle) as sock:
        sock.sendall(request * 2)
        sock.settimeout(5)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.count(b"HTTP/1.0 200 ") == 1, reply


def test_a_legitimate_request_gets_through_while_attackers_hold_the_cap(
    attackers: list[socket.socket],
) -> None:
    """Attackers hold the whole cap, far within their deadline, and fill it again after
    every request: each new connection pushes the oldest idle one out instead of being
    refused, so every probe is answered."""
    cap = 8
    limits = Limits(max_connections=cap, header_timeout=30.0, request_timeout=30.0)
    with serve("127.0.0.1:0", CollectorRegistry(), Health(), limits=limits) as h:
        for _ in range(cap):
            attackers.append(connect(h))
        for _ in range(20):
            time.sleep(0.05)
            assert fetch(h, "/healthz", timeout=2)[0] == 200
            attackers.append(connect(h))  # the cap is full again
        assert all(closed_by_server(s, 0.5) for s in attackers[:20])
        assert not any(closed_by_server(s, 0.1) for s in attackers[20:])


class Broken:
    def collect(self) -> list[object]:
        raise RuntimeError("collector broke")


def test_a_failing_collector_gets_500_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    with serve("127.0.0.1:0", registry, Health()) as h:
        registry.register(Broken())  # type: ignore[arg-type]
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(h, "/metrics")
        err.value.close()
        assert err.value.code == 500
        assert fetch(h, "/healthz")[0] == 200
    assert "collector broke" in caplog.text
