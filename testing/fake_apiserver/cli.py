"""``python -m testing.fake_apiserver``: serve a fake kube-apiserver until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import FakeApiServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testing.fake_apiserver", description=__doc__.split(":", 1)[-1].strip()
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--kubeconfig-out", metavar="FILE", help="write a kubeconfig here")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--history-size", type=int, default=1000, metavar="EVENTS")
    parser.add_argument(
        "--watch-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="server-side end of watches that give no timeoutSeconds",
    )
    parser.add_argument(
        "--request-log-size",
        type=int,
        default=100_000,
        metavar="REQUESTS",
        help="requests kept for /_fake/requests",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    server = FakeApiServer(
        args.port,
        bookmark_interval=args.bookmark_interval,
        history_size=args.history_size,
        watch_timeout=args.watch_timeout,
        request_log_size=args.request_log_size,
    )
    with server:
        if args.kubeconfig_out:
            server.write_kubeconfig(args.kubeconfig_out)
        print(f"fake apiserver listening on {server.url}", flush=True)
        if args.kubeconfig_out:
            print(f"kubeconfig written to {args.kubeconfig_out}", flush=True)
        while not stop.wait(0.5):
            pass
    print("fake apiserver stopped", file=sys.stderr, flush=True)
    return 0
