"""nodelocaldns_agent.metrics: series up front, bounded labels, the HTTP endpoints, and the
generated doc.

Set ``UPDATE_DOCS=1`` to rewrite the generated table in docs/metrics.md from the code.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.metrics import Health, Metrics, MetricsServer, describe, render, serve
from nodelocaldns_agent.metrics.labels import (
    API_ERROR_CLASSES,
    CLUSTER_DNS_KINDS,
    NETWORK_MODES,
    PROBE_FAILURE_REASONS,
    PROXY_MODES,
    api_error_class,
    cluster_dns_kind,
)
from nodelocaldns_agent.metrics.server import parse_address
from nodelocaldns_agent.policy import Drift
from nodelocaldns_agent.settings import DEFAULT_METRICS_PORT
from nodelocaldns_agent.state import NodeState, Stage
from tests.tooling import tool

P = "nodelocaldns_agent_"
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "metrics.md"
BEGIN, END = "<!-- BEGIN GENERATED: describe() -->\n", "<!-- END GENERATED -->\n"
LOCAL = "169.254.20.10"
LOCAL6 = "fd00::a"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: FakeClock) -> Metrics:
    return Metrics(registry, version="1.2.3", clock=clock)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(P + name, labels)


def one_hot(
    registry: CollectorRegistry, name: str, label: str, values: tuple[str, ...]
) -> dict[str, float | None]:
    return {v: value(registry, name, **{label: v}) for v in values}


# ---------------------------------------------------------------- series up front
EXPECTED_UP_FRONT: list[tuple[str, dict[str, str], float]] = [
    ("local_dns_bound", {}, 0),
    ("local_dns_healthy", {}, 0),
    ("local_dns_probes_total", {}, 0),
    ("local_dns_probe_duration_seconds_count", {}, 0),
    ("local_dns_probe_duration_seconds_bucket", {"le": "0.0005"}, 0),
    ("local_dns_probe_duration_seconds_bucket", {"le": "2.0"}, 0),
    ("kubelet_restarts_total", {}, 0),
    ("kubelet_restart_failures_total", {}, 0),
    ("config_rewrites_total", {}, 0),
    ("config_rewrite_failures_total", {}, 0),
    ("rollbacks_total", {}, 0),
    ("rollback_failures_total", {}, 0),
    ("failsafe_reverts_total", {}, 0),
    ("stale_pods", {}, 0),
    ("lease_waits_total", {}, 0),
    ("lease_wait_seconds_total", {}, 0),
    ("lease_acquisitions_total", {}, 0),
    ("reconciles_total", {}, 0),
    ("reconcile_duration_seconds_count", {}, 0),
    ("last_successful_reconcile_timestamp_seconds", {}, 0),
    ("last_state_change_timestamp_seconds", {}, 1_700_000_000.0),
    ("api_requests_total", {}, 0),
    *[
        ("migration_state", {"state": s.value}, 1 if s is NodeState.PENDING else 0)
        for s in NodeState
    ],
    *[("kube_proxy_mode", {"mode": m}, 1 if m == "unknown" else 0) for m in PROXY_MODES],
    *[("network_mode_info", {"mode": m}, 1 if m == "unknown" else 0) for m in NETWORK_MODES],
    *[("kubelet_cluster_dns", {"kind": k}, 0) for k in CLUSTER_DNS_KINDS],
    *[("local_dns_probe_failures_total", {"reason": r}, 0) for r in PROBE_FAILURE_REASONS],
    *[("reconcile_errors_total", {"stage": s.value}, 0) for s in Stage],
    *[("drifts_total", {"to": d.value}, 0) for d in Drift],
    *[("api_errors_total", {"code_class": c}, 0) for c in API_ERROR_CLASSES],
]


@pytest.mark.parametrize(("name", "labels", "expected"), EXPECTED_UP_FRONT)
def test_every_series_exists_before_any_event(
    metrics: Metrics,
    registry: CollectorRegistry,
    name: str,
    labels: dict[str, str],
    expected: float,
) -> None:
    assert value(registry, name, **labels) == expected


def test_build_info(metrics: Metrics, registry: CollectorRegistry) -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert value(registry, "build_info", version="1.2.3", python=python) == 1


def test_every_family_has_the_prefix_and_no_node_label(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    families = list(registry.collect())
    assert len(families) >= 28
    for family in families:
        assert family.name.startswith(P), family.name
        for sample in family.samples:
            assert "node" not in sample.labels


# ---------------------------------------------------------------- state
def test_state_transitions_set_exactly_one_state(
    metrics: Metrics, registry: CollectorRegistry, clock: FakeClock
) -> None:
    for i, state in enumerate(
        (
            NodeState.WAITING_FOR_LOCAL_DNS,
            NodeState.WAITING_FOR_LOCK,
            NodeState.MIGRATING,
            NodeState.MIGRATED,
            NodeState.REVERTING,
            NodeState.REVERTED,
            NodeState.FAILED,
        )
    ):
        clock.now += 10
        metrics.set_state(state)
        states = one_hot(registry, "migration_state", "state", tuple(NodeState))
        assert states == {s: (1.0 if s == state else 0.0) for s in NodeState}, i
        assert value(registry, "last_state_change_timestamp_seconds") == clock.now


def test_state_timestamp_moves_only_on_a_change(
    metrics: Metrics, registry: CollectorRegistry, clock: FakeClock
) -> None:
    metrics.set_state(NodeState.MIGRATED)
    changed = clock.now
    clock.now += 300
    metrics.set_state(NodeState.MIGRATED)
    assert value(registry, "last_state_change_timestamp_seconds") == changed


def test_unknown_state_is_refused(metrics: Metrics, registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="blocked"):
        metrics.set_state("blocked")  # type: ignore[arg-type]
    assert value(registry, "migration_state", state="pending") == 1


# ---------------------------------------------------------------- bounded labels
@pytest.mark.parametrize(
    ("mode", "label"),
    [
        ("globalrouter", "globalrouter"),
        ("vpc-cni", "vpc-cni"),
        ("unknown", "unknown"),
        ("calico", "other"),
        ("cilium", "other"),
        ("x" * 64, "other"),
    ],
)
def test_network_mode_is_bounded(
    metrics: Metrics, registry: CollectorRegistry, mode: str, label: str
) -> None:
    metrics.set_network_mode(mode)
    modes = one_hot(registry, "network_mode_info", "mode", NETWORK_MODES)
    assert modes == {m: (1.0 if m == label else 0.0) for m in NETWORK_MODES}
    assert value(registry, "network_mode_info", mode=mode) is None or mode == label


@pytest.mark.parametrize(
    ("mode", "label"),
    [
        ("ipvs", "ipvs"),
        ("iptables", "iptables"),
        ("nftables", "nftables"),
        ("kernelspace", "kernelspace"),
        ("userspace", "unknown"),
        ("", "unknown"),
    ],
)
def test_proxy_mode_is_bounded(
    metrics: Metrics, registry: CollectorRegistry, mode: str, label: str
) -> None:
    metrics.set_proxy_mode(mode)
    assert one_hot(registry, "kube_proxy_mode", "mode", PROXY_MODES) == {
        m: (1.0 if m == label else 0.0) for m in PROXY_MODES
    }


@pytest.mark.parametrize(
    ("current", "original", "kind"),
    [
        ((LOCAL,), ("10.0.0.10",), "local"),
        ((LOCAL,), None, "local"),
        (("10.0.0.10",), ("10.0.0.10",), "original"),
        (("10.0.0.10",), None, "original"),
        (("10.0.0.53",), ("10.0.0.10",), "other"),
        # the local DNS followed by the original as the fallback (--fallback-nameserver)
        ((LOCAL, "10.0.0.10"), ("10.0.0.10",), "local"),
        ((LOCAL, "10.0.0.53"), ("10.0.0.10",), "other"),
        ((LOCAL, "10.0.0.10"), None, "original"),
        # dual-stack: both local addresses
        ((LOCAL, LOCAL6), ("10.0.0.10", "fd00:10:96::a"), "local"),
        ((LOCAL6,), None, "local"),
        ((), ("10.0.0.10",), "none"),
        ((), None, "none"),
    ],
)
def test_cluster_dns_kind(
    current: tuple[str, ...], original: tuple[str, ...] | None, kind: str
) -> None:
    assert cluster_dns_kind(current, local=(LOCAL, LOCAL6), original=original) == kind


def test_kubelet_cluster_dns_never_carries_the_ip(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.set_kubelet_cluster_dns(("10.0.0.53",), local=(LOCAL,), original=("10.0.0.10",))
    assert one_hot(registry, "kubelet_cluster_dns", "kind", CLUSTER_DNS_KINDS) == {
        "local": 0,
        "original": 0,
        "other": 1,
        "none": 0,
    }
    assert b"10.0.0.53" not in render(registry)
    metrics.set_kubelet_cluster_dns(None, local=(LOCAL,), original=None)  # unreadable
    assert set(one_hot(registry, "kubelet_cluster_dns", "kind", CLUSTER_DNS_KINDS).values()) == {0}


# ---------------------------------------------------------------- events
def test_local_dns_checks(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.local_dns_checked(bound=True, healthy=True, reason="ok", latency_seconds=0.0004)
    metrics.local_dns_checked(bound=False, healthy=False, reason="", latency_seconds=None)
    metrics.local_dns_checked(bound=True, healthy=False, reason="timeout", latency_seconds=None)
    metrics.local_dns_checked(bound=True, healthy=False, reason="rcode", latency_seconds=0.003)
    metrics.local_dns_checked(
        bound=True, healthy=False, reason="EHOSTUNREACH", latency_seconds=None
    )
    assert value(registry, "local_dns_probes_total") == 5
    assert one_hot(registry, "local_dns_probe_failures_total", "reason", PROBE_FAILURE_REASONS) == {
        "not-bound": 1,
        "timeout": 1,
        "refused": 0,
        "rcode": 1,
        "no-answer": 0,
        "error": 1,
    }
    assert value(registry, "local_dns_probe_failures_total", reason="EHOSTUNREACH") is None
    assert value(registry, "local_dns_probe_duration_seconds_count") == 2
    assert value(registry, "local_dns_probe_duration_seconds_bucket", le="0.0005") == 1
    assert value(registry, "local_dns_probe_duration_seconds_bucket", le="0.005") == 2
    assert value(registry, "local_dns_bound") == 1
    assert value(registry, "local_dns_healthy") == 0


def test_attempts_and_failures(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.config_rewritten(ok=True)
    metrics.config_rewritten(ok=False)
    metrics.kubelet_restarted(ok=True)
    metrics.kubelet_restarted(ok=False)
    metrics.kubelet_restarted(ok=True)
    metrics.rolled_back(ok=True)
    metrics.failsafe_reverted()
    assert value(registry, "config_rewrites_total") == 2
    assert value(registry, "config_rewrite_failures_total") == 1
    assert value(registry, "kubelet_restarts_total") == 3
    assert value(registry, "kubelet_restart_failures_total") == 1
    assert value(registry, "rollbacks_total") == 1
    assert value(registry, "rollback_failures_total") == 0
    assert value(registry, "failsafe_reverts_total") == 1


def test_drifts_by_what_the_value_became(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.drifted(Drift.ORIGINAL)
    metrics.drifted(Drift.ORIGINAL)
    metrics.drifted(Drift.OTHER)
    assert value(registry, "drifts_total", to="original") == 2
    assert value(registry, "drifts_total", to="other") == 1
    assert value(registry, "drifts_total", to="none") == 0
    with pytest.raises(ValueError):
        metrics.drifted("10.96.0.10")  # type: ignore[arg-type]  # never an IP as a label


def test_lease(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.lease_waited(5.0)
    metrics.lease_waited(7.5)
    metrics.lease_acquired()
    assert value(registry, "lease_waits_total") == 2
    assert value(registry, "lease_wait_seconds_total") == 12.5
    assert value(registry, "lease_acquisitions_total") == 1


def test_reconciles(metrics: Metrics, registry: CollectorRegistry, clock: FakeClock) -> None:
    metrics.reconciled(0.02)
    ok_at = clock.now
    clock.now += 60
    metrics.reconciled(95.0, error_stage=Stage.VERIFY)
    metrics.reconciled(0.5, error_stage=Stage.API)
    assert value(registry, "reconciles_total") == 3
    assert value(registry, "reconcile_errors_total", stage="verify") == 1
    assert value(registry, "reconcile_errors_total", stage="api") == 1
    assert value(registry, "reconcile_duration_seconds_bucket", le="0.05") == 1
    assert value(registry, "reconcile_duration_seconds_bucket", le="120.0") == 3
    assert value(registry, "last_successful_reconcile_timestamp_seconds") == ok_at
    with pytest.raises(ValueError, match="lock"):
        metrics.reconciled(1.0, error_stage="lock")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code_class"),
    [
        (200, None),
        (201, None),
        (304, "3xx"),
        (404, "4xx"),
        (409, "4xx"),
        (503, "5xx"),
        (None, "network"),
    ],
)
def test_api_errors(
    metrics: Metrics, registry: CollectorRegistry, status: int | None, code_class: str | None
) -> None:
    assert api_error_class(status) == code_class
    metrics.api_request(status)
    assert value(registry, "api_requests_total") == 1
    errors = one_hot(registry, "api_errors_total", "code_class", API_ERROR_CLASSES)
    assert errors == {c: (1.0 if c == code_class else 0.0) for c in API_ERROR_CLASSES}


def test_no_created_series_in_the_exposition(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.reconciled(1.0)
    text = render(registry).decode()
    assert "_created" not in text
    assert f"{P}reconciles_total 1.0" in text


# ---------------------------------------------------------------- health
def test_health_live_until_the_loop_stalls() -> None:
    clock = FakeClock(100.0)
    health = Health(max_sleep=30, clock=clock)
    assert health.stall_after == 150
    assert health.live() == (True, "ok")
    clock.now += 149
    health.beat()
    clock.now += 150
    assert health.live()[0]
    clock.now += 1
    ok, why = health.live()
    assert not ok
    assert "151s" in why and "150s" in why


def test_health_ready_after_the_first_reconcile() -> None:
    health = Health(stall_after=10, clock=FakeClock())
    assert health.ready()[0] is False
    health.mark_ready()
    assert health.ready() == (True, "ok")


def test_health_refuses_a_nonpositive_limit() -> None:
    with pytest.raises(ConfigError):
        Health(stall_after=0)


# ---------------------------------------------------------------- address
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9779", ("0.0.0.0", 9779)),
        (":9779", ("0.0.0.0", 9779)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::]:9779", ("::", 9779)),
        ("[::1]:65535", ("::1", 65535)),
        ("localhost:9779", ("localhost", 9779)),
        # the node's IP from the downward API, as the chart renders [$(HOST_IP)]:PORT
        ("10.0.0.5:9779", ("10.0.0.5", 9779)),
        ("[10.0.0.5]:9779", ("10.0.0.5", 9779)),
        ("[fd00:1::5]:9779", ("fd00:1::5", 9779)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "9779",
        "0.0.0.0",
        "0.0.0.0:",
        "0.0.0.0:http",
        "0.0.0.0:65536",
        "0.0.0.0:-1",
        "::1:9779",
        "[::1:9779",
        "[nope]:9779",
        "[localhost]:9779",
        "fd00:1::5:9779",
        "bad_host:9779",
        "-x:9779",
    ],
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--metrics-address"):
        parse_address(text)


def test_default_port_avoids_node_cache_and_kubelet() -> None:
    assert DEFAULT_METRICS_PORT not in {8080, 9253, 9353, *range(10248, 10260)}


def test_serve_refuses_a_port_in_use(registry: CollectorRegistry) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match="--metrics-address: cannot listen"):
            serve(f"127.0.0.1:{port}", registry, Health())


# ---------------------------------------------------------------- HTTP
@pytest.fixture
def server(
    metrics: Metrics, registry: CollectorRegistry
) -> Iterator[tuple[MetricsServer, Health, FakeClock]]:
    clock = FakeClock(0.0)
    health = Health(max_sleep=10, clock=clock)
    with serve("127.0.0.1:0", registry, health) as handle:
        yield handle, health, clock


def _wakeups(handle: MetricsServer) -> int:
    """How often the server thread has gone to sleep and woken (voluntary context switches,
    /proc/self/task/<tid>/status)."""
    status = Path(f"/proc/self/task/{handle._thread.native_id}/status").read_text()
    [line] = [ln for ln in status.splitlines() if ln.startswith("voluntary_ctxt_switches:")]
    return int(line.split()[1])


def test_an_idle_server_sleeps_until_a_client_or_close_wakes_it(
    registry: CollectorRegistry,
) -> None:
    """The idle agent's target (<= 1 millicore, docs/benchmarks.md section 3): the server
    thread waits on its sockets without a timer (it used to wake every 0.5 s), and close()
    still ends it at once."""
    handle = serve("127.0.0.1:0", registry, Health())
    assert get(handle, "/healthz")[0] == 200
    time.sleep(0.2)  # the answered connection is closed and dropped
    before = _wakeups(handle)
    time.sleep(1.5)
    assert _wakeups(handle) - before == 0
    started = time.monotonic()
    handle.close()
    assert not handle._thread.is_alive() and time.monotonic() - started < 1.0


def get(
    handle: MetricsServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{handle.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - http to loopback
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def populate(metrics: Metrics) -> None:
    metrics.set_proxy_mode("ipvs")
    metrics.set_network_mode("calico")
    metrics.set_kubelet_cluster_dns((LOCAL,), local=(LOCAL,), original=("10.0.0.10",))
    metrics.local_dns_checked(bound=True, healthy=True, latency_seconds=0.0007)
    metrics.lease_waited(3)
    metrics.lease_acquired()
    metrics.set_state(NodeState.MIGRATING)
    metrics.config_rewritten(ok=True)
    metrics.kubelet_restarted(ok=True)
    metrics.set_state(NodeState.MIGRATED)
    metrics.reconciled(42.0)
    metrics.api_request(200)
    metrics.api_request(409)
    metrics.set_stale_pods(3)


def test_promtool_check_metrics_is_clean_on_a_real_scrape(
    server: tuple[MetricsServer, Health, FakeClock], metrics: Metrics
) -> None:
    handle, _, _ = server
    populate(metrics)
    status, headers, body = get(handle, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert f'{P}migration_state{{state="migrated"}} 1.0'.encode() in body
    lint = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=body,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b"")


def test_metrics_gzip(
    server: tuple[MetricsServer, Health, FakeClock], registry: CollectorRegistry
) -> None:
    handle, _, _ = server
    status, headers, body = get(handle, "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b"# HELP " + P.encode())


def test_healthz_then_stalled(
    server: tuple[MetricsServer, Health, FakeClock], metrics: Metrics
) -> None:
    handle, health, clock = server
    assert get(handle, "/healthz")[::2] == (200, b"ok\n")
    # A failing local DNS never affects liveness.
    metrics.local_dns_checked(bound=False, healthy=False, latency_seconds=None)
    metrics.set_state(NodeState.FAILED)
    clock.now += 49
    assert get(handle, "/healthz")[0] == 200
    health.beat()
    clock.now += 51
    status, _, body = get(handle, "/healthz")
    assert status == 500
    assert body.startswith(b"stalled: no loop iteration for 51s (limit 50s)")
    health.beat()
    assert get(handle, "/healthz")[0] == 200


def test_readyz(server: tuple[MetricsServer, Health, FakeClock]) -> None:
    handle, health, _ = server
    status, _, body = get(handle, "/readyz")
    assert (status, body) == (503, b"not ready: no reconcile completed yet\n")
    health.mark_ready()
    assert get(handle, "/readyz")[::2] == (200, b"ok\n")


@pytest.mark.parametrize("path", ["/", "/metricsx", "/metrics/", "/healthz/x", "/favicon.ico"])
def test_unknown_path_is_404(server: tuple[MetricsServer, Health, FakeClock], path: str) -> None:
    assert get(server[0], path)[0] == 404


def test_query_string_is_ignored(server: tuple[MetricsServer, Health, FakeClock]) -> None:
    assert get(server[0], "/metrics?name[]=x")[0] == 200


def test_head(server: tuple[MetricsServer, Health, FakeClock]) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{server[0].port}/healthz", method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - http to loopback
        assert resp.status == 200
        assert resp.read() == b""


def test_close_frees_the_port(registry: CollectorRegistry) -> None:
    handle = serve("127.0.0.1:0", registry, Health())
    port = handle.port
    handle.close()
    again = serve(f"127.0.0.1:{port}", registry, Health())
    again.close()


# ---------------------------------------------------------------- light import
def test_importable_without_kubernetes() -> None:
    code = (
        "import sys; import nodelocaldns_agent.metrics; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'dns', 'psutil')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# ---------------------------------------------------------------- generated doc
def generated_table() -> str:
    return describe(Metrics(CollectorRegistry(), version="x").registry)


def test_doc_table_is_generated_from_the_code() -> None:
    text = DOC.read_text()
    head, sep, rest = text.partition(BEGIN)
    table, sep2, tail = rest.partition(END)
    assert sep and sep2, f"{DOC}: markers {BEGIN.strip()} / {END.strip()} missing"
    fresh = generated_table()
    if os.environ.get("UPDATE_DOCS") == "1" and table != fresh:
        DOC.write_text(head + BEGIN + fresh + END + tail)
        table = fresh
    assert table == fresh, (
        "docs/metrics.md is stale: run UPDATE_DOCS=1 pytest tests/test_metrics.py -k doc"
    )


def test_doc_lists_every_label_value() -> None:
    table = generated_table()
    for values in (
        tuple(NodeState),
        PROXY_MODES,
        NETWORK_MODES,
        CLUSTER_DNS_KINDS,
        PROBE_FAILURE_REASONS,
        tuple(Stage),
        API_ERROR_CLASSES,
    ):
        for v in values:
            assert f"`{v}`" in table
    assert "`version` (the agent's version)" in table
