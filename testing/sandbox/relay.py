"""A byte relay between a TCP port and a Unix socket, for sandboxed nodes.

Each sandbox node has its own network namespace holding only loopback (and the
``nodelocaldns``/``kube-ipvs0`` links). To let an agent inside reach the fake API server on
the machine's loopback — or let a Prometheus on the machine scrape an agent inside — two
relays meet at a Unix socket (Unix sockets are not confined by network namespaces)::

    node ns: tcp:127.0.0.1:6443 -> unix:/tmp/x/api.sock -> machine: tcp:127.0.0.1:P

No traffic ever uses a non-loopback address. ``python -m testing.sandbox.relay LISTEN CONNECT``
with ``tcp:HOST:PORT`` or ``unix:PATH`` for each; prints ``ready`` once listening.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading


def _open(spec: str, listen: bool) -> socket.socket:
    kind, _, rest = spec.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if listen:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(rest)
            sock.bind(rest)
        else:
            sock.connect(rest)
    elif kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"relay: {spec}: only loopback addresses are allowed")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if listen:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
        else:
            sock.connect((host, int(port)))
    else:
        raise SystemExit(f"relay: {spec}: expected tcp:HOST:PORT or unix:PATH")
    if listen:
        sock.listen(64)
    return sock


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, target: str) -> None:
    try:
        upstream = _open(target, listen=False)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    listen, target = argv
    server = _open(listen, listen=True)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
