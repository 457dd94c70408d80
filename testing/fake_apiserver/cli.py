"""``python -m testing.fake_apiserver``: serve a fake kube-apiserver until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import DEFAULT_COMPACTION_INTERVAL, FakeApiServer
from .store import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_WINDOW


def _seconds_or_none(text: str) -> float | None:
    """A number of seconds; "none" (or a negative number) turns the feature off."""
    if text.lower() in ("none", "off"):
        return None
    value = float(text)
    return None if value < 0 else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testing.fake_apiserver", description=__doc__.split(":", 1)[-1].strip()
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--kubeconfig-out", metavar="FILE", help="write a kubeconfig here")
    parser.add_argument(
        "--bookmark-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="between watch BOOKMARKs (kube-apiserver: about a minute)",
    )
    parser.add_argument(
        "--history-size",
        type=int,
        default=DEFAULT_HISTORY_SIZE,
        metavar="EVENTS",
        help="watch history kept per resource, at most",
    )
    parser.add_argument(
        "--history-window",
        type=_seconds_or_none,
        default=DEFAULT_HISTORY_WINDOW,
        metavar="SECONDS",
        help="watch history kept this long (kube-apiserver: 75 s); 'none': by size only",
    )
    parser.add_argument(
        "--compaction-interval",
        type=_seconds_or_none,
        default=DEFAULT_COMPACTION_INTERVAL,
        metavar="SECONDS",
        help="etcd compaction period: older continue tokens expire (410); 'none': never",
    )
    parser.add_argument(
        "--grace-period-scale",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="real seconds per second of a pod's termination grace period",
    )
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
        history_window=args.history_window,
        compaction_interval=args.compaction_interval,
        grace_period_scale=args.grace_period_scale,
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
