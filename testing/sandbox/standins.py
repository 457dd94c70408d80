"""Stand-in node daemons: a tiny local HTTP server, and kube-proxy built on it.

Run as ``<workdir>/bin/kube-proxy standins.py --proxy-mode=ipvs`` (``kube-proxy`` is a
symlink to Python, so the process is named ``kube-proxy``); it answers
``GET http://127.0.0.1:10249/proxyMode`` in the node's network namespace, as the real
kube-proxy does on its metrics port. Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testing.sandbox.constants import PROXY_PORT


def serve(
    port: int, routes: Mapping[str, str], on_listening: Callable[[], None] | None = None
) -> None:
    """Answer ``GET path`` with ``routes[path]`` (text, 200) on 127.0.0.1:port, forever."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path.partition("?")[0])
            data = (body if body is not None else "404 page not found\n").encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the stand-ins' logs hold only what matters."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if on_listening is not None:
        on_listening()
    server.serve_forever()


def kube_proxy(argv: list[str]) -> None:
    """kube-proxy stand-in: ``/proxyMode`` answers ``--proxy-mode``."""
    parser = argparse.ArgumentParser(prog="kube-proxy")
    parser.add_argument("--proxy-mode", default="iptables")
    parser.add_argument("--metrics-bind-address", default=f"127.0.0.1:{PROXY_PORT}")
    args, _ = parser.parse_known_args(argv)
    port = int(args.metrics_bind_address.rpartition(":")[2])
    serve(port, {"/proxyMode": args.proxy_mode, "/healthz": "ok"})


if __name__ == "__main__":
    kube_proxy(sys.argv[1:])
