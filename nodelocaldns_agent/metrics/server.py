"""The HTTP endpoints: ``/metrics`` (the exposition of the registry), ``/healthz`` and
``/readyz`` (from :class:`~nodelocaldns_agent.metrics.health.Health`).

The port is on the host network, open to every pod and host process that can reach the
node, so what a client can hold is bounded (:class:`Limits`): one thread serves every
connection, a request head must be complete within a deadline counted from the accept
(a slowloris trickling a byte a second is cut like an idle client) and within a size,
each connection carries one request (no keep-alive), and a connection over the cap pushes
the oldest one out, so a probe or a scrape is answered even while others hold the cap.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.metrics.health import Health
from nodelocaldns_agent.settings import DEFAULT_METRICS_PORT

log = logging.getLogger(__name__)

#: a new connection gets this many rounds of the server loop to send its request before a
#: flood of newer connections can push it out (each round accepts max_connections / this)
EVICTION_ROUNDS = 8
#: at most one warning about the connection cap per this many seconds
WARN_EVERY = 60.0
#: unread input read away before closing an answered connection
DRAIN_BYTES = 65536


def _plain(status: HTTPStatus, text: str) -> bytes:
    body = text.encode() + b"\n"
    head = f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: text/plain; charset=utf-8"
    return f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


#: the answer to a request head over Limits.max_header_bytes
HEAD_TOO_LARGE = _plain(
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request line and headers too large"
)
#: the answer when rendering one failed (the error is logged)
ANSWER_FAILED = _plain(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error, see the agent's log")


@dataclass(frozen=True)
class Limits:
    """What the clients of the endpoints can hold. Kubelet's probes (timeout 5 s in the
    chart) and Prometheus send their whole request at once and are answered in
    milliseconds, far inside every limit."""

    #: connections open at once; one more pushes the oldest out (an attacker holding the
    #: cap loses its oldest connection to each new client instead of locking clients out)
    max_connections: int = 64
    #: seconds from the accept to the end of the request head: a total, not per read
    header_timeout: float = 3.0
    #: seconds from the accept to the last byte of the answer
    request_timeout: float = 10.0
    #: bytes of request line and headers (the stdlib alone reads 100 x 64 KiB): 431 above
    max_header_bytes: int = 8192

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_header_bytes < 64:
            raise ConfigError(
                f"metrics limits: expected max_connections >= 1 and max_header_bytes >= 64, "
                f"got {self.max_connections} and {self.max_header_bytes}"
            )
        if not 0 < self.header_timeout <= self.request_timeout:
            raise ConfigError(
                f"metrics limits: expected 0 < header_timeout <= request_timeout, "
                f"got {self.header_timeout} and {self.request_timeout}"
            )


#: the limits of the agent's server
LIMITS = Limits()


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``: an IPv4 address or a host name as it is, an IPv6 address in brackets;
    an empty host means every IPv4 address. Any IP address may be in brackets, so that
    ``[$(HOST_IP)]:PORT`` binds the node's IP from the downward API (``status.hostIP``)
    whichever its family."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"--metrics-address: expected HOST:PORT (e.g. 0.0.0.0:{DEFAULT_METRICS_PORT} "
            f"or [::]:{DEFAULT_METRICS_PORT}), got {address!r}: {why}"
        )

    host, sep, port_text = address.strip().rpartition(":")
    if not sep:
        raise bad("no port")
    if host.startswith("["):
        if not host.endswith("]"):
            raise bad("unclosed [")
        host = host[1:-1]
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise bad(f"{host!r} is not an IP address") from exc
    elif ":" in host:
        raise bad("put an IPv6 address in brackets")
    elif host and not _valid_hostname(host):
        raise bad(f"{host!r} is neither an IP address nor a host name")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise bad(f"port {port_text!r} is not a number from 0 to 65535")
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - the agent serves the cluster


def _valid_hostname(host: str) -> bool:
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(
        0 < len(lab) <= 63
        and lab.replace("-", "").isalnum()
        and lab.isascii()
        and not lab.startswith("-")
        and not lab.endswith("-")
        for lab in labels
    )


class _NoCreated:
    """The registry without client_python's ``*_created`` samples: in the text format they
    become one extra gauge series per counter and histogram that no query uses."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            created = family.name + "_created"
            if any(s.name == created for s in family.samples):
                copy = Metric(family.name, family.documentation, family.type, family.unit)
                copy.samples = [s for s in family.samples if s.name != created]
                yield copy
            else:
                yield family


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry`` (what ``/metrics`` answers)."""
    return generate_latest(_NoCreated(registry))


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request, parsed by the stdlib from its head already read into memory; the
    answer is collected in :attr:`wfile` (no socket: the server loop sends it)."""

    server_version = "nodelocaldns-agent"
    sys_version = ""

    def __init__(self, head: bytes, peer: tuple[str, int], endpoints: _Endpoints) -> None:
        # Not BaseRequestHandler.__init__: it would read from and answer on a socket.
        self.client_address = peer
        self.endpoints = endpoints
        self.rfile = io.BytesIO(head)
        self.wfile = self.out = io.BytesIO()
        self.handle_one_request()  # one request per connection: HTTP/1.0, no keep-alive

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        headers: dict[str, str] = {}
        if path == "/metrics":
            status, ctype = 200, CONTENT_TYPE_PLAIN_0_0_4
            data = render(self.endpoints.registry)
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                data = gzip.compress(data, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        elif path in ("/healthz", "/readyz"):
            health = self.endpoints.health
            ok, text = health.live() if path == "/healthz" else health.ready()
            status = 200 if ok else (500 if path == "/healthz" else 503)
            ctype, data = "text/plain; charset=utf-8", (text + "\n").encode()
        else:
            status, ctype = 404, "text/plain; charset=utf-8"
            data = b"not found: try /metrics, /healthz or /readyz\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


@dataclass(frozen=True)
class _Endpoints:
    registry: CollectorRegistry
    health: Health

    def answer(self, head: bytes, peer: tuple[str, int]) -> bytes:
        """The whole answer (status line, headers, body) to one request head."""
        handler = _Handler(head, peer, self)
        return handler.out.getvalue()


def _head_end(data: bytearray, start: int) -> int:
    """The offset just past the blank line that ends the request head, -1 before it
    (searched from ``start``; the stdlib's parser also takes bare LF line ends)."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep, start)) >= 0]
    return min(ends, default=-1)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: tuple[str, int]
    #: monotonic seconds when accepted: the deadlines count from here
    opened: float
    head: bytearray = field(default_factory=bytearray)
    #: what is left to send; None while the request head is still being read
    answer: memoryview | None = None


class _Server:
    """Every connection of the endpoints, served from one thread (a selector loop): an
    idle or slow client holds a socket and at most ``max_header_bytes`` of buffer, never a
    thread. Connections are kept oldest first; one over the cap pushes the oldest out."""

    def __init__(
        self,
        listener: socket.socket,
        endpoints: _Endpoints,
        limits: Limits,
    ) -> None:
        self.listener = listener
        self._endpoints = endpoints
        self._limits = limits
        # Each round accepts at most this many, so a new connection has EVICTION_ROUNDS
        # rounds to send its request before a flood of newer ones can push it out.
        self._accept_batch = max(1, limits.max_connections // EVICTION_ROUNDS)
        self._conns: dict[socket.socket, _Conn] = {}
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        # stop() writes a byte here: the loop sleeps until a socket or a deadline needs it,
        # never on a timer (an idle agent's server thread costs no CPU)
        self._wakeup, self._waker = socket.socketpair()
        self._pushed_out = 0
        self._warned_at: float | None = None

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # already woken, or already closed
            self._waker.send(b"x")

    def run(self) -> None:
        self.listener.setblocking(False)
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._selector.register(self._wakeup, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                incoming = False
                for key, _ in self._selector.select(self._wait()):
                    if key.fileobj is self._wakeup:
                        continue
                    if key.fileobj is self.listener:
                        incoming = True
                    elif key.data.answer is None:
                        self._read(key.data)
                    else:
                        self._send(key.data, key.data.answer)
                if incoming:
                    self._accept()
                self._expire()
        finally:
            for conn in list(self._conns.values()):
                self._drop(conn)
            self._selector.close()
            self.listener.close()
            self._wakeup.close()
            self._waker.close()

    def _deadline(self, conn: _Conn) -> float:
        limits = self._limits
        timeout = limits.header_timeout if conn.answer is None else limits.request_timeout
        return conn.opened + timeout

    def _wait(self) -> float | None:
        """Until the first connection's deadline; None (no timeout) without connections."""
        if not self._conns:
            return None
        first = min(self._deadline(c) for c in self._conns.values())
        return max(0.0, first - time.monotonic())

    def _accept(self) -> None:
        for _ in range(self._accept_batch):
            try:
                sock, peer = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. out of file descriptors: try again next round
                log.debug("metrics accept failed: %s", exc)
                return
            sock.setblocking(False)
            if len(self._conns) >= self._limits.max_connections:
                self._push_out_oldest()
            conn = _Conn(sock, peer, time.monotonic())
            self._conns[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _push_out_oldest(self) -> None:
        self._drop(next(iter(self._conns.values())))
        self._pushed_out += 1
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
            event(
                log,
                "metrics server at its connection cap: closing the oldest connections",
                logging.WARNING,
                max_connections=self._limits.max_connections,
                closed=self._pushed_out,
            )
            self._warned_at, self._pushed_out = now, 0

    def _read(self, conn: _Conn) -> None:
        limit = self._limits.max_header_bytes
        try:
            data = conn.sock.recv(limit + 1 - len(conn.head))
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        start = max(0, len(conn.head) - 3)
        conn.head += data
        end = _head_end(conn.head, start)
        if end < 0 and len(conn.head) <= limit:
            return
        if not 0 <= end <= limit:
            answer = HEAD_TOO_LARGE
        else:
            try:
                answer = self._endpoints.answer(bytes(conn.head[:end]), conn.peer)
            except Exception:  # a failing collector must not stop the server loop
                log.exception("metrics: answering %s failed", conn.peer[0])
                answer = ANSWER_FAILED
        conn.answer = memoryview(answer)
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._send(conn, conn.answer)

    def _send(self, conn: _Conn, answer: memoryview) -> None:
        try:
            sent = conn.sock.send(answer)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        conn.answer = answer[sent:]
        if not conn.answer:
            self._drop(conn)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns.values() if self._deadline(c) <= now]:
            log.debug("metrics connection from %s timed out", conn.peer[0])
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        del self._conns[conn.sock]
        self._selector.unregister(conn.sock)
        if conn.answer is not None:
            # Input left unread (a pipelined request) would turn the close into a reset
            # that can destroy the answer in the client's buffer.
            with contextlib.suppress(OSError):
                conn.sock.recv(DRAIN_BYTES)
        conn.sock.close()


@dataclass
class MetricsServer:
    """A running ``/metrics`` server; ``close()`` stops it, closes its connections and
    frees the port."""

    host: str
    port: int
    _server: _Server
    _thread: threading.Thread

    def close(self) -> None:
        self._server.stop()
        self._thread.join(timeout=5)
        self._server.listener.close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    address: str,
    registry: CollectorRegistry,
    health: Health,
    *,
    limits: Limits = LIMITS,
) -> MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``address`` (``HOST:PORT``; port 0
    picks a free one) from a background thread, within ``limits``."""
    host, port = parse_address(address)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, sockaddr = info[0][0], info[0][4]
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((str(sockaddr[0]), port))
            listener.listen()
        except OSError:
            listener.close()
            raise
    except OSError as exc:
        raise ConfigError(f"--metrics-address: cannot listen on {address}: {exc}") from exc
    server = _Server(listener, _Endpoints(registry, health), limits)
    thread = threading.Thread(target=server.run, name="metrics-http", daemon=True)
    thread.start()
    bound_port = int(listener.getsockname()[1])
    event(log, "serving /metrics, /healthz and /readyz", address=f"{host}:{bound_port}")
    return MetricsServer(host, bound_port, server, thread)
