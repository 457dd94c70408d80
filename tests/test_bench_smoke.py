"""The benchmarks (``bench/``) in a short smoke form: they run, print the documented JSON,
and their safety figures hold. Timings are not asserted (see docs/benchmarks.md for them).

The benchmarks start together (they mostly wait on sleeps and child processes), so
the whole module takes about as long as the slowest one (~30 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
COMMANDS = {
    "fleet": [
        "bench/fleet.py",
        "--nodes",
        "5",
        "--concurrency",
        "2",
        "--restart-seconds",
        "0.5",
        "--steady-resync",
        "10",
        "--steady-window",
        "10",
    ],
    "faults": [
        "bench/faults.py",
        "--runs",
        "8",
        "--restart-delay",
        "0.2",
        "--verify-timeout",
        "1.5",
    ],
    "footprint": [
        "bench/footprint.py",
        "--seconds",
        "5",
        "--settle",
        "1",
        "--probe-interval",
        "1",
        "--check-runs",
        "1",
    ],
    "metrics_dos": ["bench/metrics_dos.py", "--connections", "50", "--hold", "1"],
    "dns_availability": [
        "bench/dns_availability.py",
        "--scenario",
        "surge",
        "--scenario",
        "upstream-update",
        "--before",
        "1",
        "--overlap",
        "1",
        "--gap",
        "1",
        "--after",
        "2",
    ],
}
NEEDS_ROOT = {"faults", "footprint", "dns_availability"}


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, Any]]:
    """Start every benchmark at once; their parsed JSON (or the failure text) by name."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, *argv, "--json", "--quiet"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in COMMANDS.items()
        if IS_ROOT or name not in NEEDS_ROOT
    }
    out: dict[str, Any] = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=110)
            lines = stdout.strip().splitlines()
            try:
                parsed = [json.loads(line) for line in lines]
                out[name] = parsed[-1] if len(parsed) == 1 else parsed
            except (IndexError, ValueError):
                out[name] = f"exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-4000:]}"
        yield out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def result(results: dict[str, Any], name: str) -> dict[str, Any]:
    got = results[name]
    assert isinstance(got, dict), got
    return got


def test_fleet(results: dict[str, Any]) -> None:
    r = result(results, "fleet")
    for key in (
        "nodes",
        "migrated",
        "concurrency",
        "max_concurrent_restarts",
        "rollout_seconds",
        "ideal_seconds",
        "ratio",
        "requests_per_node",
        "steady_requests_per_node_hour",
    ):
        assert key in r, key
    assert r["nodes"] == r["migrated"] == 5
    assert 1 <= r["max_concurrent_restarts"] <= r["concurrency"] == 2
    detail = r["detail"]
    assert detail["restarts_per_node"] == {"1": 5}
    assert detail["leases_left"] == 0
    assert not detail["agent_warnings"], detail["agent_warnings"]
    steady = detail["steady"]
    assert steady["restarts_during_steady"] == 0
    # a migrated node's only steady request is its node watch
    assert set(steady["requests"]) <= {"watch nodes"}, steady["requests"]


@pytest.mark.netns
def test_faults(results: dict[str, Any]) -> None:
    r = result(results, "faults")
    for key in ("runs", "bad_states", "kill_points", "max_restarts_to_converge"):
        assert key in r, key
    assert r["runs"] == 8
    assert r["bad_states"] == 0, r["problems"]
    assert r["max_restarts_to_converge"] <= 1
    assert r["killed"] >= 4
    assert sum(r["kill_points"].values()) == 8


@pytest.mark.netns
def test_footprint(results: dict[str, Any]) -> None:
    r = result(results, "footprint")
    for key in (
        "idle_millicores",
        "run_steady_rss_mib",
        "run_peak_rss_mib",
        "check_rss_mib",
        "start_to_decided_seconds",
        "healthy_seen_to_restart_seconds",
        "kubelet_healthy_to_state_reported_seconds",
    ):
        assert isinstance(r[key], (int, float)), key
    run = r["detail"]["run"]
    assert run["restarted"] is True
    assert run["check"]["exit_codes"] == [0]
    assert run["idle_api_requests"] == 0


def test_metrics_dos(results: dict[str, Any]) -> None:
    (run,) = result(results, "metrics_dos")["runs"]
    assert run["established"] == run["connections"] == 50
    # idle connections cost the server no thread, and it answers while they are open
    threads = run["before"]["threads"]
    assert run["during"]["threads"] == run["after_close"]["threads"] == threads
    for phase in ("during", "after_1s", "after_close"):
        assert isinstance(run[phase]["healthz_seconds"], float), phase


@pytest.mark.netns
def test_dns_availability(results: dict[str, Any]) -> None:
    """One JSON line per scenario (real node-cache, the chart's rendered Corefile and
    arguments): the chart's surge update loses no lookup of either libc and keeps the
    interface; the upstream manifest's update (no -skipteardown) deletes it. Needs the
    node-cache binary, iptables, gcc, libc6-dev and musl-tools: fails, saying so, without."""
    got = results["dns_availability"]
    assert isinstance(got, list), got
    surge, upstream = got
    assert (surge["scenario"], upstream["scenario"]) == ("surge", "upstream-update")
    for run in (surge, upstream):
        for key in ("upstream_qps", "events_s", "interface_kept", "iptables_rules"):
            assert key in run, key
        for libc in ("glibc", "musl"):
            for key in ("lookups", "failed", "p50_ms", "p99_ms", "max_ms", "over_1s"):
                assert key in run[libc], (libc, key)
            assert run[libc]["lookups"] > 100, run[libc]
    assert surge["glibc"]["failed"] == surge["musl"]["failed"] == 0, surge
    assert surge["interface_kept"] is True and surge["iptables_rules"] > 0
    assert upstream["interface_kept"] is False
