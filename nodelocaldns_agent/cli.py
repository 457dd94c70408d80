"""Composition root: flags (each with a NODELOCALDNS_AGENT_<FLAG> environment fallback),
typed settings validated once, logging, and the wiring of real host objects.

Exit codes: ``migrate --once`` / ``revert --once``: 0 the node is in the desired state, 1
the change failed (rolled back), 2 bad input or configuration (nothing changed), 3 blocked
by a precondition such as a local DNS that does not answer (nothing changed). ``check``: 0
analysed (whatever it would do), 2 could not analyse. ``status``: 1 when a node is failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nodelocaldns_agent import __version__
from nodelocaldns_agent.errors import AgentError, ConfigError
from nodelocaldns_agent.logs import event, setup
from nodelocaldns_agent.settings import (
    DEFAULT_LOCAL_DNS,
    DEFAULT_METRICS_PORT,
    DEFAULT_PROBE_NAME,
    DEFAULT_RESTART_COMMAND,
    STATE_DIR,
    NodeSettings,
    RunSettings,
    parse_restart_command,
)
from nodelocaldns_agent.state import DEFAULT_OPT_OUT_LABEL

log = logging.getLogger("agent")
ENV_PREFIX = "NODELOCALDNS_AGENT_"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_BLOCKED = 0, 1, 2, 3
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, and whose every flag falls
    back to ``NODELOCALDNS_AGENT_<FLAG>`` (help texts name the variable)."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{self.prog}: {message}")

    def add_flag(self, flag: str, *, env: tuple[str, ...] = (), **kwargs: Any) -> None:
        names = (env_name(flag), *env)
        kind: Callable[[str], Any] = kwargs.get("type", str)
        for name in names:
            raw = os.environ.get(name)
            if raw is None:
                continue
            if kwargs.get("action") == "store_true":
                low = raw.strip().lower()
                if low not in _TRUE | _FALSE:
                    raise ConfigError(f"${name}={raw!r}: expected true or false")
                kwargs["default"] = low in _TRUE
            else:
                try:
                    kwargs["default"] = kind(raw)
                except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                    raise ConfigError(f"${name}={raw!r}: {exc}") from exc
                choices = kwargs.get("choices")
                if choices and kwargs["default"] not in choices:
                    raise ConfigError(f"${name}={raw!r}: expected one of {', '.join(choices)}")
            break
        kwargs["help"] = f"{kwargs.get('help', '')} [env {', '.join('$' + n for n in names)}]"
        self.add_argument(flag, **kwargs)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _node_flags(p: _Parser) -> None:
    p.add_flag("--host-root", default="/host", help="where the host's / is mounted")
    p.add_flag("--local-dns", default=DEFAULT_LOCAL_DNS, help="node-local DNS address")
    p.add_flag(
        "--probe-name",
        default=DEFAULT_PROBE_NAME,
        help="name queried (type A) to check that the local DNS answers",
    )
    p.add_flag("--probe-timeout", type=_positive, default=2.0, help="seconds per DNS probe")
    p.add_flag(
        "--restart-command",
        default=DEFAULT_RESTART_COMMAND,
        help="command that restarts kubelet (split like a shell, run without one)",
    )
    p.add_flag(
        "--restart-timeout",
        type=_positive,
        default=90.0,
        help="seconds the restart command may run before it is killed",
    )
    p.add_flag(
        "--verify-timeout",
        type=_positive,
        default=120.0,
        help="seconds kubelet has to be healthy again after a restart",
    )
    p.add_flag(
        "--kubelet-healthz-url",
        default="http://127.0.0.1:10248/healthz",
        help="kubelet health endpoint",
    )
    p.add_flag(
        "--kube-proxy-url",
        default="http://127.0.0.1:10249/proxyMode",
        help="kube-proxy's proxy mode endpoint",
    )
    p.add_flag(
        "--state-dir",
        default=STATE_DIR,
        help="host directory for the journal and the copies of original files",
    )
    p.add_flag(
        "--force",
        action="store_true",
        default=False,
        help="migrate even when kube-proxy is not known to run in IPVS mode",
    )
    p.add_flag("--log-format", choices=("text", "json"), default="text", help="log format")
    p.add_flag(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level",
    )


def _kube_flags(p: _Parser) -> None:
    p.add_flag(
        "--kubeconfig",
        env=("KUBECONFIG",),
        default="",
        help="kubeconfig file (default: the in-cluster service account)",
    )


def build_parser() -> _Parser:
    parser = _Parser(prog="nodelocaldns-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="read-only preflight of this node")
    _node_flags(check)
    check.add_flag("--json", action="store_true", default=False, help="print JSON")
    check.add_flag(
        "--goal", choices=("migrate", "revert"), default="migrate", help="plan towards this goal"
    )

    for name, what in (
        ("migrate", "point kubelet at the local DNS"),
        ("revert", "put the original cluster DNS back"),
    ):
        cmd = sub.add_parser(name, help=f"{what} on this node")
        _node_flags(cmd)
        cmd.add_argument(
            "--once",
            action="store_true",
            required=True,
            help="one reconcile, then exit (required; `run` is the daemon)",
        )
        cmd.add_flag("--json", action="store_true", default=False, help="print the outcome as JSON")

    run = sub.add_parser("run", help="the DaemonSet agent: reconcile this node forever")
    _node_flags(run)
    _kube_flags(run)
    run.add_flag("--node-name", env=("NODE_NAME",), default="", help="this node's name")
    run.add_flag(
        "--namespace",
        env=("POD_NAMESPACE",),
        default="",
        help="namespace of the restart-slot Leases (the agent's own)",
    )
    run.add_flag(
        "--mode",
        choices=("migrate", "revert", "observe"),
        default="migrate",
        help="migrate nodes, revert them (before uninstall), or only observe",
    )
    run.add_flag(
        "--max-concurrent-restarts",
        type=int,
        default=1,
        help="kubelet restarts in flight across the whole cluster",
    )
    run.add_flag(
        "--failsafe-after",
        type=_positive,
        default=300.0,
        help="seconds the local DNS may fail on a migrated node before reverting it",
    )
    run.add_flag(
        "--recover-after",
        type=_positive,
        default=600.0,
        help="seconds the local DNS must be healthy before migrating again",
    )
    run.add_flag(
        "--failsafe-max-flips-per-hour",
        type=int,
        default=2,
        help="fail-safe reverts + re-migrations allowed per hour",
    )
    run.add_flag(
        "--no-failsafe",
        action="store_true",
        default=False,
        help="never revert a migrated node by itself",
    )
    run.add_flag(
        "--opt-out-label",
        default=DEFAULT_OPT_OUT_LABEL,
        help="nodes labelled <key>=true are left alone",
    )
    run.add_flag(
        "--restart-stale-pods",
        action="store_true",
        default=False,
        help="evict controller-owned pods still using the old DNS, one at a time",
    )
    run.add_flag(
        "--stale-pod-interval",
        type=_positive,
        default=30.0,
        help="seconds between two stale-pod evictions",
    )
    run.add_flag(
        "--resync-interval",
        type=_positive,
        default=600.0,
        help="seconds between full re-detections (host drift)",
    )
    run.add_flag(
        "--probe-interval",
        type=_positive,
        default=10.0,
        help="seconds between local DNS probes while the node depends on it",
    )
    run.add_flag(
        "--retry-failed-after",
        type=_positive,
        default=3600.0,
        help="seconds before a failed node is tried again",
    )
    run.add_flag(
        "--lease-duration",
        type=int,
        default=60,
        help="seconds a restart-slot Lease lasts without renewal",
    )
    run.add_flag(
        "--lock-wait",
        type=_positive,
        default=60.0,
        help="longest single wait for a restart slot before the node is looked at again",
    )
    run.add_flag(
        "--metrics-address",
        default=f"0.0.0.0:{DEFAULT_METRICS_PORT}",
        help="HOST:PORT serving /metrics, /healthz and /readyz",
    )

    status = sub.add_parser("status", help="fleet view from the Node annotations")
    _kube_flags(status)
    status.add_flag("--output", choices=("table", "json"), default="table", help="format")
    status.add_flag("--log-format", choices=("text", "json"), default="text", help="log format")
    status.add_flag(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="log level",
    )

    fleet = sub.add_parser(
        "revert-fleet",
        help="switch every agent to revert and wait "
        "until every node is reverted (the chart's pre-delete hook)",
    )
    _kube_flags(fleet)
    fleet.add_flag("--daemonset", required=False, default="", help="the agent DaemonSet")
    fleet.add_flag(
        "--namespace", env=("POD_NAMESPACE",), default="", help="the agent DaemonSet's namespace"
    )
    fleet.add_flag(
        "--timeout", type=_positive, default=900.0, help="seconds to wait for every node"
    )
    fleet.add_flag("--poll-interval", type=_positive, default=5.0, help="seconds between checks")
    fleet.add_flag("--log-format", choices=("text", "json"), default="text", help="log format")
    fleet.add_flag(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level",
    )

    return parser


def node_settings(args: argparse.Namespace) -> NodeSettings:
    return NodeSettings(
        host_root=Path(args.host_root),
        local_dns=args.local_dns,
        probe_name=args.probe_name,
        probe_timeout=args.probe_timeout,
        restart_command=parse_restart_command(args.restart_command),
        restart_timeout=args.restart_timeout,
        verify_timeout=args.verify_timeout,
        kubelet_healthz_url=args.kubelet_healthz_url,
        kube_proxy_mode_url=args.kube_proxy_url,
        force=args.force,
        state_dir=args.state_dir,
    )


def build_engine(settings: NodeSettings) -> Any:
    """Wire the real host objects into a NodeEngine (the only place they are built)."""
    from nodelocaldns_agent.engine import NodeEngine
    from nodelocaldns_agent.host.commands import SubprocessRunner
    from nodelocaldns_agent.host.files import FileJournal
    from nodelocaldns_agent.host.probes import (
        DnspythonProber,
        PsutilInterfaces,
        PsutilProcessTable,
        SystemClock,
        UrllibGetter,
    )
    from nodelocaldns_agent.hostpaths import HostRoot

    if not settings.host_root.is_dir():
        raise ConfigError(f"--host-root {settings.host_root}: expected a directory")
    host = HostRoot(settings.host_root.resolve())
    return NodeEngine(
        settings=settings,
        host=host,
        interfaces=PsutilInterfaces(),
        http=UrllibGetter(),
        prober=DnspythonProber(),
        processes=PsutilProcessTable(),
        runner=SubprocessRunner(),
        clock=SystemClock(),
        journal=FileJournal(host, settings.state_dir),
    )


def _print_check(rep: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    dns = rep["local_dns"]
    kubelet = rep["kubelet"]
    latency = dns["latency_seconds"]
    rows = [
        ("kube-proxy mode", f"{rep['proxy_mode']} ({rep['proxy_mode_source']})"),
        ("network mode", rep["network_mode"]),
        (
            "local DNS",
            f"{dns['address']} bound={dns['bound']} healthy={dns['healthy']}"
            + (f" latency={latency * 1000:.1f}ms" if latency is not None else "")
            + (f" ({dns['error']})" if dns["error"] else ""),
        ),
        (
            "kubelet config",
            f"{kubelet['source'] or '-'} [{kubelet['format'] or '-'}] "
            f"cluster DNS {','.join(kubelet['cluster_dns']) or '-'}"
            + (f" ({kubelet['found_by']})" if kubelet["found_by"] else ""),
        ),
    ]
    if kubelet["error"]:
        rows.append(("kubelet error", kubelet["error"]))
    rows.append(("action", f"{rep['action']}: {rep['reason']}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if rep["diff"]:
        print()
        print(rep["diff"], end="" if rep["diff"].endswith("\n") else "\n")


def cmd_check(args: argparse.Namespace) -> int:
    from nodelocaldns_agent.plan import Goal

    engine = build_engine(node_settings(args))
    rep = engine.check(Goal(args.goal))
    _print_check(rep, args.json)
    if rep["kubelet"]["error"]:
        print(f"error: {rep['kubelet']['error']}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    from nodelocaldns_agent.plan import Goal

    engine = build_engine(node_settings(args))
    outcome = engine.reconcile(Goal(args.command))
    summary = {
        "state": outcome.state,
        "action": outcome.plan.action.value,
        "reason": outcome.plan.reason,
        "restarted": outcome.restarted,
        "rolled_back": outcome.rolled_back,
        "error": outcome.error,
        "cluster_dns": list(outcome.plan.target),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{outcome.state}: {outcome.error or outcome.plan.reason}")
    return int(outcome.exit_code)


def run_settings(args: argparse.Namespace) -> RunSettings:
    return RunSettings(
        node_name=args.node_name,
        namespace=args.namespace,
        kubeconfig=args.kubeconfig or None,
        mode=args.mode,
        max_concurrent_restarts=args.max_concurrent_restarts,
        failsafe=not args.no_failsafe,
        failsafe_after=args.failsafe_after,
        recover_after=args.recover_after,
        failsafe_max_flips_per_hour=args.failsafe_max_flips_per_hour,
        opt_out_label=args.opt_out_label,
        restart_stale_pods=args.restart_stale_pods,
        stale_pod_interval=args.stale_pod_interval,
        resync_interval=args.resync_interval,
        probe_interval=args.probe_interval,
        retry_failed_after=args.retry_failed_after,
        lease_duration=args.lease_duration,
        lock_wait=args.lock_wait,
        metrics_address=args.metrics_address,
    )


def cmd_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from prometheus_client import CollectorRegistry

    from nodelocaldns_agent.daemon import Daemon
    from nodelocaldns_agent.kube.api import KubeApi, load_config
    from nodelocaldns_agent.kube.lock import RestartLock
    from nodelocaldns_agent.kube.status import NodeStatus
    from nodelocaldns_agent.metrics import Health, Metrics, serve

    ns, rs = node_settings(args), run_settings(args)
    engine = build_engine(ns)
    registry = CollectorRegistry()
    metrics = Metrics(registry, version=__version__)
    api = KubeApi(load_config(rs.kubeconfig), on_request=metrics.api_request)
    stop = threading.Event()
    lock = RestartLock(
        api,
        rs.namespace,
        rs.node_name,
        rs.max_concurrent_restarts,
        engine.clock,
        duration=rs.lease_duration,
    )
    # The longest step without a heartbeat: a lock wait, then a restart, its verification
    # and a rollback with its own restart and verification.
    longest = rs.lock_wait + 2 * (ns.restart_timeout + ns.verify_timeout) + 60
    health = Health(stall_after=longest)
    server = serve(rs.metrics_address, registry, health)
    daemon = Daemon(
        rs,
        engine,
        api,
        lock,
        NodeStatus(api, rs.node_name, rs.namespace),
        metrics,
        health,
        engine.clock,
        stop,
    )

    def on_signal(signum: int, _frame: object) -> None:
        event(log, "signal received; finishing the current step", signal=signum)
        stop.set()
        daemon.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return daemon.run()
    finally:
        server.close()


def cmd_status(args: argparse.Namespace) -> int:
    from nodelocaldns_agent.fleet import render_status
    from nodelocaldns_agent.kube.api import KubeApi, load_config

    api = KubeApi(load_config(args.kubeconfig or None))
    text, failed = render_status(api.list_nodes(), args.output)
    print(text)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_revert_fleet(args: argparse.Namespace) -> int:
    from nodelocaldns_agent.fleet import revert_fleet
    from nodelocaldns_agent.host.probes import SystemClock
    from nodelocaldns_agent.kube.api import KubeApi, load_config

    if not args.daemonset or not args.namespace:
        raise ConfigError("revert-fleet: --daemonset and --namespace are required")
    api = KubeApi(load_config(args.kubeconfig or None))
    ok, message = revert_fleet(
        api, args.namespace, args.daemonset, args.timeout, args.poll_interval, SystemClock()
    )
    print(message, file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": cmd_check,
    "migrate": cmd_once,
    "revert": cmd_once,
    "run": cmd_run,
    "status": cmd_status,
    "revert-fleet": cmd_revert_fleet,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        setup(args.log_format, args.log_level)
        event(
            log,
            "starting",
            command=args.command,
            version=__version__,
            settings={k: v for k, v in vars(args).items() if k != "command"},
        )
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
