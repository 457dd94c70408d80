"""The HTTP endpoints: ``/metrics`` (the exposition of the registry), ``/healthz`` and
``/readyz`` (from :class:`~nodelocaldns_agent.metrics.health.Health`)."""

from __future__ import annotations

import gzip
import http.server
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.metrics.health import Health
from nodelocaldns_agent.settings import DEFAULT_METRICS_PORT

log = logging.getLogger(__name__)


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; an empty host means every IPv4 address)."""

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
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise bad(f"{host!r} is not an IPv6 address") from exc
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
    server: _Server
    server_version = "nodelocaldns-agent"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        headers: dict[str, str] = {}
        if path == "/metrics":
            status, ctype = 200, CONTENT_TYPE_PLAIN_0_0_4
            data = render(self.server.registry)
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                data = gzip.compress(data, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        elif path in ("/healthz", "/readyz"):
            check = self.server.health.live if path == "/healthz" else self.server.health.ready
            ok, text = check()
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


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        registry: CollectorRegistry,
        health: Health,
    ) -> None:
        self.address_family = family
        self.registry = registry
        self.health = health
        super().__init__(address, _Handler)


@dataclass
class MetricsServer:
    """A running ``/metrics`` server; ``close()`` stops it and frees the port."""

    host: str
    port: int
    _server: _Server
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    address: str, registry: CollectorRegistry, health: Health, *, poll_interval: float = 0.5
) -> MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``address`` (``HOST:PORT``; port 0
    picks a free one) from a background thread. ``close()`` may take up to
    ``poll_interval`` seconds."""
    host, port = parse_address(address)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, sockaddr = info[0][0], info[0][4]
        server = _Server((str(sockaddr[0]), port), family, registry, health)
    except OSError as exc:
        raise ConfigError(f"--metrics-address: cannot listen on {address}: {exc}") from exc
    thread = threading.Thread(
        target=server.serve_forever, args=(poll_interval,), name="metrics-http", daemon=True
    )
    thread.start()
    bound_port = int(server.server_address[1])
    event(log, "serving /metrics, /healthz and /readyz", address=f"{host}:{bound_port}")
    return MetricsServer(host, bound_port, server, thread)
