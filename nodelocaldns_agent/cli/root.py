"""The composition root: the only place where real host objects and API clients are built,
and what each command does with them. Heavy imports stay inside the commands that need
them, so that ``check`` and ``--once`` never load ``kubernetes`` or ``prometheus_client``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from nodelocaldns_agent import __version__
from nodelocaldns_agent.cli import output
from nodelocaldns_agent.cli.parser import Invocation
from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.settings import (
    ApiSettings,
    CheckSettings,
    FastRefusalSettings,
    NodeSettings,
    ReportSettings,
    RevertFleetSettings,
    RunSettings,
    StatusSettings,
)

if TYPE_CHECKING:
    from nodelocaldns_agent.engine import NodeEngine

log = logging.getLogger(__name__)


def build_engine(settings: NodeSettings) -> NodeEngine:
    """Wire the real host objects into a NodeEngine."""
    from nodelocaldns_agent.engine import NodeEngine
    from nodelocaldns_agent.host.commands import SubprocessRunner
    from nodelocaldns_agent.host.files import FileJournal
    from nodelocaldns_agent.host.iptables import MAX_SAVE_OUTPUT, IptablesSave
    from nodelocaldns_agent.host.probes import (
        DnspythonProber,
        PsutilInterfaces,
        PsutilProcessTable,
        SystemClock,
        UrllibGetter,
    )
    from nodelocaldns_agent.host.systemd import Systemctl
    from nodelocaldns_agent.hostpaths import HostRoot

    if not settings.host_root.is_dir():
        raise ConfigError(f"--host-root {settings.host_root}: expected a directory")
    host = HostRoot(settings.host_root.resolve(), settings.writable_dirs)
    runner = SubprocessRunner()
    return NodeEngine(
        settings=settings,
        host=host,
        interfaces=PsutilInterfaces(),
        http=UrllibGetter(),
        prober=DnspythonProber(),
        processes=PsutilProcessTable(),
        systemd=Systemctl(
            runner,
            settings.systemctl_command,
            settings.systemctl_timeout,
            settings.daemon_reload_timeout,
        ),
        runner=runner,
        clock=SystemClock(),
        journal=FileJournal(host, settings.state_dir),
        iptables=IptablesSave(SubprocessRunner(MAX_SAVE_OUTPUT), settings.iptables_save_prefix),
    )


def check(inv: Invocation) -> int:
    rep = build_engine(inv.get(NodeSettings)).check(inv.get(CheckSettings).goal)
    print(output.as_json(rep) if inv.get(ReportSettings).json else output.check_table(rep))
    if rep["kubelet"]["error"] and not rep["appliance_os"]:  # an appliance is refused: analysed
        print(f"error: {rep['kubelet']['error']}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def once(inv: Invocation) -> int:
    """``migrate --once`` and ``revert --once``."""
    outcome = build_engine(inv.get(NodeSettings)).reconcile(Goal(inv.command))
    if inv.get(ReportSettings).json:
        print(output.as_json(output.once_summary(outcome)))
    else:
        print(output.once_line(outcome))
    return outcome.exit_code


def run(inv: Invocation) -> int:
    import signal
    import threading

    from prometheus_client import CollectorRegistry

    from nodelocaldns_agent.daemon import Daemon
    from nodelocaldns_agent.kube.api import KubeApi, load_config
    from nodelocaldns_agent.kube.lock import RestartLock
    from nodelocaldns_agent.kube.status import NodeStatus
    from nodelocaldns_agent.metrics import Health, Metrics, serve

    ns, rs = inv.get(NodeSettings), inv.get(RunSettings)
    engine = build_engine(ns)
    registry = CollectorRegistry()
    metrics = Metrics(registry, version=__version__)
    api = KubeApi(load_config(inv.get(ApiSettings).kubeconfig), on_request=metrics.api_request)
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
        NodeStatus(api, rs.node_name),
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


def status(inv: Invocation) -> int:
    from nodelocaldns_agent.fleet import render_status
    from nodelocaldns_agent.kube.api import KubeApi, load_config

    api = KubeApi(load_config(inv.get(ApiSettings).kubeconfig))
    text, failed = render_status(api.list_nodes(), inv.get(StatusSettings).output)
    print(text)
    return EXIT_FAILED if failed else EXIT_OK


def revert_fleet(inv: Invocation) -> int:
    from nodelocaldns_agent.fleet import revert_fleet
    from nodelocaldns_agent.host.probes import SystemClock
    from nodelocaldns_agent.kube.api import KubeApi, load_config

    rf = inv.get(RevertFleetSettings)
    api = KubeApi(load_config(inv.get(ApiSettings).kubeconfig))
    ok, message = revert_fleet(
        api, rf.namespace, rf.daemonset, rf.timeout, rf.poll_interval, SystemClock()
    )
    print(message, file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


def fast_refusal(inv: Invocation) -> int:
    from nodelocaldns_agent.host.sysctl import ProcSysctl, allow_unlimited

    allow_unlimited(ProcSysctl(inv.get(FastRefusalSettings).proc_sys))
    return EXIT_OK


#: what each command of ``parser.COMMANDS`` does
HANDLERS: dict[str, Callable[[Invocation], int]] = {
    "check": check,
    "migrate": once,
    "revert": once,
    "run": run,
    "status": status,
    "revert-fleet": revert_fleet,
    "fast-refusal": fast_refusal,
}
