"""Every metric of the agent, on an injected registry; ``/metrics``, ``/healthz``, ``/readyz``.

Naming follows Prometheus conventions: one prefix (``nodelocaldns_agent_``), base units,
counters ending in ``_total`` with a failure counter next to each attempt counter,
enum-style gauges (one series per state, 1 for the current one), timestamps rather than
"time since", and label values from small fixed sets. Every series exists from the start,
so a query never sees one appear or go missing.

There is no ``node`` label: the node name is added at scrape time by the chart's
ServiceMonitor/PodMonitor (``__meta_kubernetes_pod_node_name`` -> ``node``), see
``docs/metrics.md``.

This module imports neither ``kubernetes`` nor any host probe: a scrape only renders the
registry, and the one-shot commands stay light.
"""

from __future__ import annotations

import gzip
import http.server
import ipaddress
import logging
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.settings import DEFAULT_METRICS_PORT
from nodelocaldns_agent.state import STATES

log = logging.getLogger(__name__)

PREFIX = "nodelocaldns_agent_"
#: Not 8080, 9253 or 9353 (node-cache), nor 10248-10259 (kubelet, kube-proxy, control plane).
DEFAULT_METRICS_ADDRESS = f"0.0.0.0:{DEFAULT_METRICS_PORT}"
#: /healthz fails after this many of the loop's longest sleeps without an iteration.
STALL_FACTOR = 5

#: every node state (nodelocaldns_agent.state.STATES), one series each
MIGRATION_STATES = STATES
PROXY_MODES = ("ipvs", "iptables", "nftables", "kernelspace", "unknown")
NETWORK_MODES = ("globalrouter", "vpc-cni", "other", "unknown")
CLUSTER_DNS_KINDS = ("local", "original", "other", "none")
PROBE_FAILURE_REASONS = ("not-bound", "timeout", "refused", "rcode", "no-answer", "error")
RECONCILE_STAGES = ("detect", "plan", "write", "restart", "verify", "rollback", "report", "api")
API_ERROR_CLASSES = ("3xx", "4xx", "5xx", "network")

#: A node-local cache answers from memory in well under a millisecond; a miss forwarded
#: upstream takes a few ms; the probe gives up after --probe-timeout (2 s by default).
PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
#: A pass without a change takes milliseconds (two local probes); one with a kubelet
#: restart, its verification and possibly a rollback takes up to several minutes.
RECONCILE_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

#: Labels whose value is not from a fixed set but fixed for the life of the process.
_BUILD_LABELS = {"version": "the agent's version", "python": "the Python version"}


def _enum_label(value: str, allowed: Sequence[str], fallback: str) -> str:
    return value if value in allowed else fallback


def network_mode_label(mode: str) -> str:
    """``globalrouter``, ``vpc-cni`` or ``unknown`` as they are; any other CNI: ``other``."""
    return _enum_label(mode, NETWORK_MODES, "other")


def proxy_mode_label(mode: str) -> str:
    return _enum_label(mode, PROXY_MODES, "unknown")


def cluster_dns_kind(
    cluster_dns: Sequence[str], *, local: str, original: Sequence[str] | None
) -> str:
    """What kubelet's cluster DNS points at, as a bounded label value (never the IP).

    ``original`` is the value before the agent's first change (from its journal); None
    when the agent never changed this node, in which case any value other than the local
    DNS is the original one.
    """
    current = tuple(cluster_dns)
    if not current:
        return "none"
    if current == (local,):
        return "local"
    if original is None or current == tuple(original):
        return "original"
    return "other"


def api_error_class(status: int | None) -> str | None:
    """The ``code_class`` of an API answer that is an error (None: not an error)."""
    if status is None:
        return "network"
    if status < 300:
        return None
    return f"{min(status // 100, 5)}xx"


class Metrics:
    """The agent's metrics. The daemon calls one small method per event.

    ``clock`` returns wall-clock seconds (for the ``_timestamp_seconds`` gauges).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        p, r = PREFIX, registry

        self.build_info = Gauge(
            p + "build_info",
            "Always 1; labels carry the agent and Python versions.",
            ["version", "python"],
            registry=r,
        )
        # -- migration state
        self.migration_state = Gauge(
            p + "migration_state",
            "1 for the node's current migration state, 0 for every other state.",
            ["state"],
            registry=r,
        )
        self.last_state_change = Gauge(
            p + "last_state_change_timestamp_seconds",
            "Unix time of the last change of migration_state (the agent's start until then).",
            registry=r,
        )
        # -- local DNS (node-cache)
        self.local_dns_bound = Gauge(
            p + "local_dns_bound",
            "1 when the local DNS address is bound on a node interface.",
            registry=r,
        )
        self.local_dns_healthy = Gauge(
            p + "local_dns_healthy",
            "1 when the last probe of the local DNS got an answer.",
            registry=r,
        )
        self.probe_duration = Histogram(
            p + "local_dns_probe_duration_seconds",
            "Time for the local DNS to answer a probe (probes that got a reply).",
            buckets=PROBE_BUCKETS,
            registry=r,
        )
        self.probes = Counter(
            p + "local_dns_probes_total",
            "Checks of the local DNS (an unbound address counts as a failed check).",
            registry=r,
        )
        self.probe_failures = Counter(
            p + "local_dns_probe_failures_total",
            "Checks of the local DNS that failed, by reason.",
            ["reason"],
            registry=r,
        )
        # -- host changes
        self.config_rewrites = Counter(
            p + "config_rewrites_total",
            "Writes of the kubelet configuration.",
            registry=r,
        )
        self.config_rewrite_failures = Counter(
            p + "config_rewrite_failures_total",
            "Writes of the kubelet configuration that failed.",
            registry=r,
        )
        self.kubelet_restarts = Counter(
            p + "kubelet_restarts_total",
            "kubelet restarts by the agent (each followed by a health check).",
            registry=r,
        )
        self.kubelet_restart_failures = Counter(
            p + "kubelet_restart_failures_total",
            "kubelet restarts after which kubelet did not come back healthy in time.",
            registry=r,
        )
        self.rollbacks = Counter(
            p + "rollbacks_total",
            "Rollbacks to the previous kubelet configuration after a failed change.",
            registry=r,
        )
        self.rollback_failures = Counter(
            p + "rollback_failures_total",
            "Rollbacks after which kubelet was still not healthy.",
            registry=r,
        )
        self.failsafe_reverts = Counter(
            p + "failsafe_reverts_total",
            "Reverts to the original cluster DNS because the local DNS failed on a migrated node.",
            registry=r,
        )
        # -- what the node is
        self.kube_proxy_mode = Gauge(
            p + "kube_proxy_mode",
            "1 for the detected kube-proxy mode, 0 for the others.",
            ["mode"],
            registry=r,
        )
        self.network_mode = Gauge(
            p + "network_mode_info",
            "1 for the detected network mode (any other CNI is 'other'), 0 for the others.",
            ["mode"],
            registry=r,
        )
        self.kubelet_cluster_dns = Gauge(
            p + "kubelet_cluster_dns",
            "1 for what kubelet's configured cluster DNS points at; all 0 when unknown.",
            ["kind"],
            registry=r,
        )
        self.stale_pods = Gauge(
            p + "stale_pods",
            "Pods on this node whose resolv.conf still names the old cluster DNS.",
            registry=r,
        )
        # -- the cluster-wide lock
        self.lease_waits = Counter(
            p + "lease_waits_total",
            "Attempts to take the migration lease that found it held by another node.",
            registry=r,
        )
        self.lease_wait_seconds = Counter(
            p + "lease_wait_seconds_total",
            "Seconds spent waiting for the migration lease.",
            registry=r,
        )
        self.lease_acquisitions = Counter(
            p + "lease_acquisitions_total",
            "Times the migration lease was taken.",
            registry=r,
        )
        # -- the loop
        self.reconciles = Counter(
            p + "reconciles_total",
            "Reconcile passes, successful or not.",
            registry=r,
        )
        self.reconcile_errors = Counter(
            p + "reconcile_errors_total",
            "Reconcile passes that failed, by the stage that failed.",
            ["stage"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            p + "reconcile_duration_seconds",
            "Duration of one reconcile pass.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            p + "last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile pass without error (0: none yet).",
            registry=r,
        )
        # -- Kubernetes API
        self.api_requests = Counter(
            p + "api_requests_total",
            "Requests to the Kubernetes API.",
            registry=r,
        )
        self.api_errors = Counter(
            p + "api_errors_total",
            "Kubernetes API requests that failed, by status class (network: no answer).",
            ["code_class"],
            registry=r,
        )

        # Every series up front.
        self.build_info.labels(version=version, python=platform.python_version()).set(1)
        for state in MIGRATION_STATES:
            self.migration_state.labels(state=state)
        for mode in PROXY_MODES:
            self.kube_proxy_mode.labels(mode=mode)
        for mode in NETWORK_MODES:
            self.network_mode.labels(mode=mode)
        for kind in CLUSTER_DNS_KINDS:
            self.kubelet_cluster_dns.labels(kind=kind)
        for reason in PROBE_FAILURE_REASONS:
            self.probe_failures.labels(reason=reason)
        for stage in RECONCILE_STAGES:
            self.reconcile_errors.labels(stage=stage)
        for code_class in API_ERROR_CLASSES:
            self.api_errors.labels(code_class=code_class)
        self._state = ""
        self.set_state("pending")
        self.set_proxy_mode("unknown")
        self.set_network_mode("unknown")

    # ------------------------------------------------------------ state
    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str) -> None:
        """Move to ``state`` (one of MIGRATION_STATES); the timestamp moves only on a change."""
        if state not in MIGRATION_STATES:
            raise ValueError(f"migration state {state!r} is not one of {MIGRATION_STATES}")
        with self._lock:
            if state == self._state:
                return
            for each in MIGRATION_STATES:
                self.migration_state.labels(state=each).set(1 if each == state else 0)
            self._state = state
            self.last_state_change.set(self._clock())

    # ------------------------------------------------------------ facts
    def set_proxy_mode(self, mode: str) -> None:
        _one_hot(self.kube_proxy_mode, "mode", PROXY_MODES, proxy_mode_label(mode))

    def set_network_mode(self, mode: str) -> None:
        _one_hot(self.network_mode, "mode", NETWORK_MODES, network_mode_label(mode))

    def set_kubelet_cluster_dns(
        self, cluster_dns: Sequence[str] | None, *, local: str, original: Sequence[str] | None
    ) -> None:
        """What kubelet's configuration points at; ``cluster_dns=None``: could not be read
        (every ``kind`` series goes to 0)."""
        kind = (
            None
            if cluster_dns is None
            else cluster_dns_kind(cluster_dns, local=local, original=original)
        )
        _one_hot(self.kubelet_cluster_dns, "kind", CLUSTER_DNS_KINDS, kind)

    def set_stale_pods(self, count: int) -> None:
        self.stale_pods.set(max(count, 0))

    def local_dns_checked(
        self, *, bound: bool, healthy: bool, reason: str = "", latency_seconds: float | None
    ) -> None:
        """One check of the local DNS. ``reason`` (when not healthy) is one of
        PROBE_FAILURE_REASONS (anything else counts as ``error``); ``latency_seconds`` is
        observed when a reply came back."""
        self.local_dns_bound.set(1 if bound else 0)
        self.local_dns_healthy.set(1 if healthy else 0)
        self.probes.inc()
        if not healthy:
            label = (
                "not-bound" if not bound else _enum_label(reason, PROBE_FAILURE_REASONS, "error")
            )
            self.probe_failures.labels(reason=label).inc()
        if latency_seconds is not None:
            self.probe_duration.observe(latency_seconds)

    # ------------------------------------------------------------ host changes
    def config_rewritten(self, *, ok: bool) -> None:
        """After each write of the kubelet configuration (including a rollback's)."""
        self.config_rewrites.inc()
        if not ok:
            self.config_rewrite_failures.inc()

    def kubelet_restarted(self, *, ok: bool) -> None:
        """After each kubelet restart and its verification: ``ok`` if kubelet came back."""
        self.kubelet_restarts.inc()
        if not ok:
            self.kubelet_restart_failures.inc()

    def rolled_back(self, *, ok: bool) -> None:
        """After a rollback: ``ok`` if kubelet is healthy on the previous configuration."""
        self.rollbacks.inc()
        if not ok:
            self.rollback_failures.inc()

    def failsafe_reverted(self) -> None:
        """When a revert starts because the local DNS failed on a migrated node."""
        self.failsafe_reverts.inc()

    # ------------------------------------------------------------ lease
    def lease_waited(self, seconds: float) -> None:
        """The lease was held by another node; the agent then waited ``seconds``."""
        self.lease_waits.inc()
        self.lease_wait_seconds.inc(max(seconds, 0.0))

    def lease_acquired(self) -> None:
        self.lease_acquisitions.inc()

    # ------------------------------------------------------------ loop
    def reconciled(self, duration_seconds: float, *, error_stage: str | None = None) -> None:
        """After each reconcile pass; ``error_stage`` (one of RECONCILE_STAGES) if it failed."""
        self.reconciles.inc()
        self.reconcile_duration.observe(max(duration_seconds, 0.0))
        if error_stage is None:
            self.last_success.set(self._clock())
            return
        if error_stage not in RECONCILE_STAGES:
            raise ValueError(f"reconcile stage {error_stage!r} is not one of {RECONCILE_STAGES}")
        self.reconcile_errors.labels(stage=error_stage).inc()

    def api_request(self, status: int | None) -> None:
        """After each Kubernetes API request: its HTTP status, None if nothing answered."""
        self.api_requests.inc()
        code_class = api_error_class(status)
        if code_class is not None:
            self.api_errors.labels(code_class=code_class).inc()


def _one_hot(gauge: Gauge, label: str, values: Sequence[str], current: str | None) -> None:
    for value in values:
        gauge.labels(**{label: value}).set(1 if value == current else 0)


# ---------------------------------------------------------------- documentation
_TYPE_NAMES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def describe(registry: CollectorRegistry) -> str:
    """A markdown table of every metric family in ``registry``: the exposed name, type,
    labels with the values they take (every series exists up front, so the values present
    are the allowed ones) and help. docs/metrics.md embeds it; a test keeps it current."""
    rows = ["| Metric | Type | Labels | Help |", "| --- | --- | --- | --- |"]
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: dict[str, list[str]] = {}
        for sample in family.samples:
            for key, value in sample.labels.items():
                if key == "le":
                    continue
                seen = labels.setdefault(key, [])
                if value not in seen:
                    seen.append(value)
        cells = []
        for key, values in labels.items():
            if key in _BUILD_LABELS:
                cells.append(f"`{key}` ({_BUILD_LABELS[key]})")
            else:
                cells.append(f"`{key}`: " + ", ".join(f"`{v}`" for v in values))
        kind = _TYPE_NAMES.get(family.type, family.type)
        if family.type == "histogram":
            buckets = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
            kind += f" (buckets {', '.join(buckets[:-1])} s)"
        rows.append(f"| `{name}` | {kind} | {'<br>'.join(cells) or '-'} | {family.documentation} |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- health
class Health:
    """Liveness and readiness of the daemon loop, independent of the local DNS.

    The loop calls :meth:`beat` every iteration and :meth:`mark_ready` after its first
    completed reconcile. ``/healthz`` fails once no beat came for ``stall_after`` seconds
    (default STALL_FACTOR x ``max_sleep``, the loop's longest sleep); make it longer than
    the longest step done without a beat (a restart with its verification and rollback).
    ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        *,
        max_sleep: float = 60.0,
        stall_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after = STALL_FACTOR * max_sleep if stall_after is None else stall_after
        if not self.stall_after > 0:
            raise ConfigError(f"health stall_after: expected seconds > 0, got {self.stall_after}")
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()
        self._ready = False

    def beat(self) -> None:
        with self._lock:
            self._last_beat = self._clock()

    def mark_ready(self) -> None:
        with self._lock:
            self._ready = True

    def live(self) -> tuple[bool, str]:
        with self._lock:
            age = self._clock() - self._last_beat
        if age > self.stall_after:
            return False, (
                f"stalled: no loop iteration for {age:.0f}s (limit {self.stall_after:g}s)"
            )
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            ready = self._ready
        return (True, "ok") if ready else (False, "not ready: no reconcile completed yet")


# ---------------------------------------------------------------- HTTP
def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; an empty host means every IPv4 address)."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"--metrics-address: expected HOST:PORT (e.g. 0.0.0.0:{DEFAULT_METRICS_PORT} "
            f"or [::]:{DEFAULT_METRICS_PORT}), got {address!r}: {why}"
        )

    host, sep, port_text = address.strip().rpartition(":")
    if not sep:
        raise bad("no port")
    if host.startswith("["):
        if not host.endswith("]"):
            raise bad("unclosed [")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise bad(f"{host!r} is not an IPv6 address") from exc
    elif ":" in host:
        raise bad("put an IPv6 address in brackets")
    elif host and not _valid_hostname(host):
        raise bad(f"{host!r} is neither an IP address nor a host name")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise bad(f"port {port_text!r} is not a number from 0 to 65535")
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - the agent serves the cluster


def _valid_hostname(host: str) -> bool:
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(
        0 < len(lab) <= 63
        and lab.replace("-", "").isalnum()
        and lab.isascii()
        and not lab.startswith("-")
        and not lab.endswith("-")
        for lab in labels
    )


class _NoCreated:
    """The registry without client_python's ``*_created`` samples: in the text format they
    become one extra gauge series per counter and histogram that no query uses."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            created = family.name + "_created"
            if any(s.name == created for s in family.samples):
                copy = Metric(family.name, family.documentation, family.type, family.unit)
                copy.samples = [s for s in family.samples if s.name != created]
                yield copy
            else:
                yield family


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry`` (what ``/metrics`` answers)."""
    return generate_latest(_NoCreated(registry))


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "nodelocaldns-agent"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        headers: dict[str, str] = {}
        if path == "/metrics":
            status, ctype = 200, CONTENT_TYPE_PLAIN_0_0_4
            data = render(self.server.registry)
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                data = gzip.compress(data, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        elif path in ("/healthz", "/readyz"):
            check = self.server.health.live if path == "/healthz" else self.server.health.ready
            ok, text = check()
            status = 200 if ok else (500 if path == "/healthz" else 503)
            ctype, data = "text/plain; charset=utf-8", (text + "\n").encode()
        else:
            status, ctype = 404, "text/plain; charset=utf-8"
            data = b"not found: try /metrics, /healthz or /readyz\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        registry: CollectorRegistry,
        health: Health,
    ) -> None:
        self.address_family = family
        self.registry = registry
        self.health = health
        super().__init__(address, _Handler)


@dataclass
class MetricsServer:
    """A running ``/metrics`` server; ``close()`` stops it and frees the port."""

    host: str
    port: int
    _server: _Server
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    address: str, registry: CollectorRegistry, health: Health, *, poll_interval: float = 0.5
) -> MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``address`` (``HOST:PORT``; port 0
    picks a free one) from a background thread. ``close()`` may take up to
    ``poll_interval`` seconds."""
    host, port = parse_address(address)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, sockaddr = info[0][0], info[0][4]
        server = _Server((str(sockaddr[0]), port), family, registry, health)
    except OSError as exc:
        raise ConfigError(f"--metrics-address: cannot listen on {address}: {exc}") from exc
    thread = threading.Thread(
        target=server.serve_forever, args=(poll_interval,), name="metrics-http", daemon=True
    )
    thread.start()
    bound_port = int(server.server_address[1])
    event(log, "serving /metrics, /healthz and /readyz", address=f"{host}:{bound_port}")
    return MetricsServer(host, bound_port, server, thread)
