"""Typed settings, validated once at start-up (see ``nodelocaldns_agent.cli`` for where they
come from)."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path

from nodelocaldns_agent.errors import ConfigError

DEFAULT_LOCAL_DNS = "169.254.20.10"
DEFAULT_PROBE_NAME = "kubernetes.default.svc.cluster.local"
DEFAULT_RESTART_COMMAND = (
    "nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart kubelet"
)
#: default port of /metrics, /healthz and /readyz: clear of node-cache (8080, 9253, 9353)
#: and of kubelet and kube-proxy (10248-10259)
DEFAULT_METRICS_PORT = 9779
#: Host directory (under the host root) where originals and the journal are kept.
STATE_DIR = "/var/lib/nodelocaldns-agent"


@dataclass(frozen=True)
class NodeSettings:
    """What one node reconcile needs. Durations are in seconds."""

    host_root: Path = Path("/host")
    local_dns: str = DEFAULT_LOCAL_DNS
    probe_name: str = DEFAULT_PROBE_NAME
    #: seconds one DNS probe may take before the local DNS counts as not answering
    probe_timeout: float = 2.0
    restart_command: tuple[str, ...] = tuple(shlex.split(DEFAULT_RESTART_COMMAND))
    #: seconds to wait for kubelet to be healthy again after a restart
    verify_timeout: float = 120.0
    #: seconds a restart command may run before it is killed
    restart_timeout: float = 90.0
    kubelet_healthz_url: str = "http://127.0.0.1:10248/healthz"
    kube_proxy_mode_url: str = "http://127.0.0.1:10249/proxyMode"
    #: migrate even when kube-proxy is not (known to be) in IPVS mode
    force: bool = False
    state_dir: str = STATE_DIR

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.local_dns)
        except ValueError as exc:
            raise ConfigError(f"--local-dns: {self.local_dns!r} is not an IP address") from exc
        for name in ("probe_timeout", "verify_timeout", "restart_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')}: expected seconds > 0, got {value}")
        if not self.restart_command:
            raise ConfigError("--restart-command: expected a command, got an empty string")
        if not self.probe_name or len(self.probe_name) > 253:
            raise ConfigError(f"--probe-name: {self.probe_name!r} is not a DNS name")


def parse_restart_command(text: str) -> tuple[str, ...]:
    """Split ``--restart-command`` like a shell would (no shell runs it)."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"--restart-command: cannot split {text!r}: {exc}") from exc
    if not argv:
        raise ConfigError("--restart-command: expected a command, got an empty string")
    return argv


@dataclass(frozen=True)
class RunSettings:
    """The daemon (``run``). Durations are in seconds."""

    node_name: str
    namespace: str
    kubeconfig: str | None = None
    #: migrate, revert or observe
    mode: str = "migrate"
    max_concurrent_restarts: int = 1
    failsafe: bool = True
    #: local DNS down this long on a migrated node -> revert it
    failsafe_after: float = 300.0
    #: local DNS healthy this long after a fail-safe revert -> migrate again
    recover_after: float = 600.0
    failsafe_max_flips_per_hour: int = 2
    opt_out_label: str = "nodelocaldns-agent.io/opt-out"
    restart_stale_pods: bool = False
    #: at most one stale-pod eviction per this many seconds
    stale_pod_interval: float = 30.0
    #: full re-detection for host drift, and the node watch's timeout
    resync_interval: float = 600.0
    #: local DNS probe period while the node depends on it or waits for it
    probe_interval: float = 10.0
    #: a failed node is tried again after this long
    retry_failed_after: float = 3600.0
    #: restart-slot Lease duration
    lease_duration: int = 60
    #: longest single wait for a restart slot before the loop re-detects
    lock_wait: float = 60.0
    metrics_address: str = f"0.0.0.0:{DEFAULT_METRICS_PORT}"

    def __post_init__(self) -> None:
        if not self.node_name:
            raise ConfigError("--node-name: required (or $NODE_NAME from the downward API)")
        if not self.namespace:
            raise ConfigError("--namespace: required (or $POD_NAMESPACE from the downward API)")
        if self.mode not in ("migrate", "revert", "observe"):
            raise ConfigError(f"--mode: expected migrate, revert or observe, got {self.mode!r}")
        if self.max_concurrent_restarts < 1:
            raise ConfigError("--max-concurrent-restarts: expected an integer >= 1")
        if self.failsafe_max_flips_per_hour < 0:
            raise ConfigError("--failsafe-max-flips-per-hour: expected an integer >= 0")
        if self.lease_duration < 10:
            raise ConfigError("--lease-duration: expected at least 10 seconds")
        for name in (
            "failsafe_after",
            "recover_after",
            "stale_pod_interval",
            "resync_interval",
            "probe_interval",
            "retry_failed_after",
            "lock_wait",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')}: expected seconds > 0")
