"""A real Prometheus server (Debian package) on the machine's loopback, scraping agents
inside sandboxed nodes through :meth:`SandboxCluster.expose_metrics` relays. The ``node``
label is added by the scrape configuration, as the chart's ServiceMonitor relabeling does.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from testing.sandbox.cluster import free_port

#: the job of the agents' targets, as the chart's ServiceMonitor names it
AGENT_JOB = "nodelocaldns-agent"


class Prometheus:
    def __init__(
        self, workdir: Path, targets: dict[str, int], jobs: dict[str, dict[str, int]] | None = None
    ) -> None:
        """``targets``: node name -> machine-loopback port of that node's agent /metrics;
        ``jobs``: more jobs, each node name -> port (e.g. node-cache's metrics)."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (scripts/setup.sh installs it)")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": job,
                            "static_configs": [
                                {"targets": [f"127.0.0.1:{port}"], "labels": {"node": name}}
                                for name, port in ports.items()
                            ],
                        }
                        for job, ports in {AGENT_JOB: targets, **(jobs or {})}.items()
                    ],
                }
            )
        )
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or at epoch ``at``); [] when Prometheus is not ready or
        has no data yet."""
        url = f"{self.url}/api/v1/query?query={urllib.parse.quote(promql)}"
        url += "" if at is None else f"&time={at:.3f}"
        try:
            with self._opener.open(url, timeout=5) as resp:
                result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
                return result
        except (OSError, ValueError, KeyError):
            return []

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """A range query (``/api/v1/query_range``): each series' ``values`` as
        ``[[t, "v"], ...]``; [] when there is no data."""
        params = urllib.parse.urlencode(
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        try:
            with self._opener.open(f"{self.url}/api/v1/query_range?{params}", timeout=10) as resp:
                result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
                return result
        except (OSError, ValueError, KeyError):
            return []

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``promql`` until it returns series (the first scrape takes a few seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := self.query(promql):
                return result
            time.sleep(0.5)
        raise RuntimeError(f"no result for {promql} within {timeout:g}s; see {self.log}")

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
