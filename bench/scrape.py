"""Scrape latency and size of the agent's /metrics on loopback (not a test).

Serves a registry populated as after a day of the daemon loop, scrapes it N times (plain,
then gzip as Prometheus asks for it), and prints one JSON object:

    python bench/scrape.py [--scrapes 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nodelocaldns_agent.metrics import Health, Metrics, render, serve


def populate(metrics: Metrics) -> None:
    """Roughly a day of a 30 s loop on a migrated node."""
    rng = random.Random(1)  # noqa: S311 - reproducible sample data
    metrics.set_proxy_mode("ipvs")
    metrics.set_network_mode("vpc-cni")
    metrics.set_kubelet_cluster_dns(
        ("169.254.20.10",), local=("169.254.20.10",), original=("10.0.0.10",)
    )
    for _ in range(2880):
        ok = rng.random() > 0.001
        metrics.local_dns_checked(
            bound=True,
            healthy=ok,
            reason="" if ok else "timeout",
            latency_seconds=rng.lognormvariate(-7.5, 0.6) if ok else None,
        )
        metrics.reconciled(rng.uniform(0.002, 0.05))
        metrics.api_request(200)
    metrics.lease_waited(30)
    metrics.lease_acquired()
    metrics.set_state("migrating")
    metrics.config_rewritten(ok=True)
    metrics.kubelet_restarted(ok=True)
    metrics.set_state("migrated")
    metrics.api_request(409)


def scrape(port: int, n: int, gzip: bool) -> tuple[list[float], int]:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    times, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        times.append(time.perf_counter() - t0)
        assert resp.status == 200
        size = len(body)
    return times, size


def quantiles_ms(times: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49] * 1000, 3),
        "p99_ms": round(cuts[98] * 1000, 3),
        "max_ms": round(max(times) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapes", type=int, default=1000)
    args = parser.parse_args()

    registry = CollectorRegistry()
    metrics = Metrics(registry, version="bench")
    populate(metrics)
    text = render(registry)
    t0 = time.perf_counter()
    for _ in range(200):
        render(registry)
    render_ms = (time.perf_counter() - t0) / 200 * 1000

    with serve("127.0.0.1:0", registry, Health(), poll_interval=0.05) as server:
        scrape(server.port, 20, gzip=False)  # warm up
        plain, plain_size = scrape(server.port, args.scrapes, gzip=False)
        zipped, gzip_size = scrape(server.port, args.scrapes, gzip=True)

    print(
        json.dumps(
            {
                "scrapes": args.scrapes,
                "series": sum(
                    1 for line in text.splitlines() if line and not line.startswith(b"#")
                ),
                "bytes": plain_size,
                "bytes_gzip": gzip_size,
                "render_ms": round(render_ms, 3),
                "plain": quantiles_ms(plain),
                "gzip": quantiles_ms(zipped),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
