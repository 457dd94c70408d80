"""Shared helpers of the benchmarks (``bench/*.py``): machine facts, output, the fake API
server as a subprocess, and its control API. (Each benchmark puts the repository on
``sys.path`` before it imports this module.)

Not a test module and not part of the agent; the benchmarks are run by hand (see
``bench/README.md``) and, in a short smoke form, by ``tests/test_bench_smoke.py``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testing.sandbox.node import python_env

REPO_ROOT = Path(__file__).resolve().parent.parent

JSON = dict[str, Any]


def machine() -> JSON:
    """The facts a reader needs to compare figures across machines."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        meminfo = Path("/proc/meminfo").read_text()
        match = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
        mem = int(match.group(1)) if match else 0
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def emit(result: Mapping[str, Any], as_json: bool) -> None:
    """One JSON object on stdout: a single line with ``--json``, indented otherwise."""
    if as_json:
        print(json.dumps(result, sort_keys=False, separators=(",", ":")))
    else:
        print(json.dumps(result, sort_keys=False, indent=2))


def verdict(value: float | None, limit: float, *, at_most: bool = True) -> str:
    if value is None:
        return "n/a"
    ok = value <= limit if at_most else value >= limit
    return "pass" if ok else "FAIL"


class ServerProcess:
    """``python -m testing.fake_apiserver`` in a subprocess (its own interpreter and GIL).

    ``prefix`` runs it elsewhere, e.g. ``["nsenter", "--target=PID", "--net", "--"]`` to put
    it in a node's network namespace; then :meth:`control` must run there too, which
    ``control_prefix`` does (a ``python -S -c`` in that namespace per call).
    """

    def __init__(
        self,
        kubeconfig: Path,
        *,
        port: int = 0,
        server_args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        control_prefix: Sequence[str] = (),
        request_log_size: int = 100_000,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.control_prefix = list(control_prefix)
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "testing.fake_apiserver",
            "--port",
            str(port),
            "--kubeconfig-out",
            str(kubeconfig),
            *server_args,
            "--request-log-size",
            str(request_log_size),
        ]
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=python_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            self.close()
            raise RuntimeError(f"fake apiserver did not start: {line!r}")
        self.url = match.group(1)
        deadline = time.monotonic() + 10
        while not kubeconfig.exists():
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("fake apiserver wrote no kubeconfig")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def control(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """Call the ``/_fake/`` control API (never logged as an API request)."""
        url = self.url + path
        data = None if body is None else json.dumps(body).encode()
        if self.control_prefix:
            code = (
                "import sys, urllib.request\n"
                "req = urllib.request.Request(sys.argv[1], data=sys.argv[3].encode() or None,"
                " method=sys.argv[2], headers={'Content-Type': 'application/json'})\n"
                "print(urllib.request.urlopen(req, timeout=60).read().decode())\n"
            )
            out = subprocess.run(
                [
                    *self.control_prefix,
                    sys.executable,
                    "-S",
                    "-c",
                    code,
                    url,
                    method,
                    (data or b"").decode(),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            )
            return json.loads(out.stdout)
        req = urllib.request.Request(  # noqa: S310 - loopback URL of our own server
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def add_node(server: ServerProcess, name: str) -> None:
    server.control(
        "POST",
        "/_fake/objects",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {},
        },
    )


def request_counts(snapshot: Mapping[str, Any]) -> dict[str, int]:
    """``{"METHOD template": count}`` from a ``/_fake/requests`` snapshot."""
    out: dict[str, int] = {}
    for row in snapshot.get("counts", []):
        key = f"{row['method']} {row['template']}"
        out[key] = out.get(key, 0) + int(row["count"])
    return out


def diff_counts(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    keys = sorted(set(after) | set(before))
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)
    }


def resource_of(template: str) -> str:
    """``/apis/g/v1/namespaces/{namespace}/leases/{name}`` -> ``leases``."""
    parts = [p for p in template.split("/") if p and not p.startswith("{")]
    return parts[-1] if parts else template


def request_kind(record: Mapping[str, Any]) -> str:
    """``verb resource`` plus the status when it is not 2xx, e.g. ``create leases 409``."""
    key = f"{record['verb']} {resource_of(record['template'])}"
    status = int(record["status"])
    return key if 200 <= status < 300 else f"{key} {status}"
