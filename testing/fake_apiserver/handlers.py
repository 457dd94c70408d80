"""HTTP plumbing: the request handler, chunked watch responses and the threaded server."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import control
from .api import Request, Route, check_acceptable, perform, route
from .backend import Backend
from .requestlog import RequestRecord
from .status import ApiError
from .watch import Outcome, WatchParams, run_watch

JSON = dict[str, Any]


class FakeHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that can close every connection and join every thread."""

    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True
    allow_reuse_address = True
    # A burst of a thousand agents connecting at once: with socketserver's default of 5,
    # SYNs are dropped and clients wait 1-7 s for retransmits.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, ApiHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection (wakes handlers idling on keep-alive reads)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request is normal here (timeouts, dropped watches).
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _ChunkedSink:
    """A :class:`watch.WatchSink` writing JSON lines as HTTP/1.1 chunks."""

    def __init__(self, handler: ApiHandler) -> None:
        self._handler = handler

    def send(self, event: JSON) -> None:
        self.send_line(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    def send_line(self, data: bytes) -> None:
        self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> None:
        self._handler.wfile.write(b"0\r\n\r\n")

    def client_gone(self) -> bool:
        conn = self._handler.connection
        try:
            # poll(), not select(): select() fails for descriptors >= 1024, which a fake
            # server with a thousand watch connections has.
            poller = select.poll()
            poller.register(conn, select.POLLIN)
            if not poller.poll(0):
                return False
            peeked: bytes = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return peeked == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver/0.1"
    timeout = 60  # seconds an idle keep-alive connection is kept
    # http.server writes headers and body separately; without TCP_NODELAY each response
    # waits ~40 ms for the client's delayed ACK (kube-apiserver, in Go, sets it).
    disable_nagle_algorithm = True
    server: FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: use the request log (``FakeApiServer.requests``) instead."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # --- dispatch ----------------------------------------------------------------------------

    def _read_request(self) -> Request:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        return Request(
            method=self.command,
            path=url.path,
            query=query,
            body=body,
            content_type=self.headers.get("Content-Type", ""),
            user_agent=self.headers.get("User-Agent", ""),
            accept=self.headers.get("Accept", ""),
        )

    def _handle(self) -> None:
        started = time.monotonic()
        backend = self.server.backend
        req = self._read_request()
        if req.path == "/_fake" or req.path.startswith("/_fake/"):
            try:
                status, body = control.handle(backend, req)
            except ApiError as err:
                status, body = err.code, err.to_status()
            except (TypeError, ValueError, re.error) as err:
                status, body = 400, ApiError(400, f"bad control request: {err}").to_status()
            self._send_json(status, body)
            return
        rt_route: Route | None = None
        try:
            rt_route = route(req, backend.server_address)
            info = rt_route.info(req)
            backend.faults.stall(info)
            if backend.closing.is_set():
                raise ApiError(503, "the fake apiserver is shutting down")
            rule = backend.faults.take_failure(info)
            if rule is not None and not rule.after_commit:
                raise rule.error()
            if rt_route.verb == "watch":
                check_acceptable(req)
                self._serve_watch(req, rt_route, started)
                return
            status, body = perform(backend, req, rt_route)
            if rule is not None:
                raise rule.error()
            headers: dict[str, str] = {}
        except ApiError as err:
            status, body, headers = err.code, err.to_status(), err.headers
        except Exception as err:  # a bug in the fake: answer it like the apiserver would
            traceback.print_exc(file=sys.stderr)
            status, body, headers = 500, ApiError(500, f"fake apiserver: {err!r}").to_status(), {}
        self._record(req, rt_route, status, started)
        if status == 200 and rt_route is not None and rt_route.verb == "openapi":
            self._send(status, b"", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        elif status == 200 and rt_route is not None and rt_route.verb == "health":
            self._send(status, str(body).encode(), "text/plain; charset=utf-8", headers)
        else:
            self._send_json(status, body, headers)

    def _record(self, req: Request, rt_route: Route | None, status: int, started: float) -> None:
        self.server.backend.requests.record(
            RequestRecord(
                time=time.monotonic(),
                method=req.method,
                path=req.path,
                query="&".join(f"{k}={v}" for k, v in req.query.items()),
                template=rt_route.template if rt_route else req.path,
                verb=rt_route.verb if rt_route else "unknown",
                user_agent=req.user_agent,
                status=status,
                duration=time.monotonic() - started,
                content_type=req.content_type,
            )
        )

    # --- responses ---------------------------------------------------------------------------

    def _send(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _serve_watch(self, req: Request, rt_route: Route, started: float) -> None:
        backend = self.server.backend
        assert rt_route.rt is not None
        params = WatchParams.from_query(
            rt_route.rt, rt_route.namespace, req.query, backend.watch_timeout
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self._record(req, rt_route, 200, started)
        sink = _ChunkedSink(self)
        backend.watch_started()
        try:
            outcome = run_watch(
                backend.store,
                backend.faults,
                params,
                sink,
                bookmark_interval=backend.bookmark_interval,
                closing=backend.closing,
                too_large_wait=backend.too_large_wait,
            )
            if outcome is Outcome.ENDED:
                sink.end()
        except OSError:
            outcome = Outcome.CLIENT_GONE
        except Exception:  # a bug in the fake: headers are out, so cut the stream
            traceback.print_exc(file=sys.stderr)
            outcome = Outcome.ABORTED
        finally:
            backend.watch_finished()
        if outcome is not Outcome.ENDED:
            self.close_connection = True
        if outcome is Outcome.ABORTED:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
