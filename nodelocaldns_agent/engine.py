"""One node: detect -> decide -> write -> restart -> verify -> roll back.

:class:`NodeEngine` receives every host object from the composition root
(``nodelocaldns_agent.cli``) and never builds one itself, so tests and the sandbox can swap any of
them.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, replace
from typing import Any

from nodelocaldns_agent.detect import embedded
from nodelocaldns_agent.detect.hostos import Appliance, detect_appliance
from nodelocaldns_agent.detect.kubelet import (
    KubeletConfig,
    format_named,
    host_kubelet,
    systemd_cluster_dns,
)
from nodelocaldns_agent.detect.localdns import (
    LocalDns,
    NodeCacheHealth,
    detect_local_dns,
    node_cache_health,
)
from nodelocaldns_agent.detect.network import classify_network, cni_plugin_types
from nodelocaldns_agent.detect.notrack import NotrackRules, notrack_rules
from nodelocaldns_agent.detect.proxymode import ProxyMode, detect_proxy_mode
from nodelocaldns_agent.errors import AgentError, ConfigError, HostError, VerifyError
from nodelocaldns_agent.host.commands import CommandRunner
from nodelocaldns_agent.host.files import FileJournal, Record
from nodelocaldns_agent.host.iptables import HostIptables
from nodelocaldns_agent.host.probes import Clock, DnsProber, HttpGetter, Interfaces, ProcessTable
from nodelocaldns_agent.host.systemd import HostSystemd
from nodelocaldns_agent.hostpaths import Expected, FileId, HostRoot, sha256
from nodelocaldns_agent.kubeletconfig import dropin, unitdropin
from nodelocaldns_agent.kubeletconfig.flags import parse_kubelet_flags
from nodelocaldns_agent.kubeletconfig.unitfile import UNIT_NAME
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.plan import (
    Action,
    Blocker,
    Goal,
    Inputs,
    Plan,
    decide,
    local_addresses,
    on_appliance,
    on_local_dns,
)
from nodelocaldns_agent.settings import DEFAULT_RESTART_COMMAND, NodeSettings
from nodelocaldns_agent.state import NodeState, Result, Stage

log = logging.getLogger(__name__)

#: seconds between two kubelet health polls while verifying a restart
VERIFY_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Facts:
    proxy: ProxyMode
    network_mode: str
    local_dns: LocalDns
    kubelet: KubeletConfig | None
    #: why the kubelet configuration could not be analysed ("" when it could)
    kubelet_error: str
    record: Record | None
    #: an OS that renders kubelet's configuration itself (None: an ordinary one)
    appliance: Appliance | None = None


@dataclass(frozen=True)
class Outcome:
    state: Result
    plan: Plan
    facts: Facts
    restarted: bool = False
    rolled_back: bool = False
    error: str = ""
    #: where a failure happened: write, restart or verify (None when none)
    stage: Stage | None = None

    @property
    def exit_code(self) -> int:
        if self.state is Result.FAILED:
            return 1
        if self.state is Result.BLOCKED:
            return 3
        return 0


@dataclass
class NodeEngine:
    settings: NodeSettings
    host: HostRoot
    interfaces: Interfaces
    http: HttpGetter
    prober: DnsProber
    processes: ProcessTable
    systemd: HostSystemd
    runner: CommandRunner
    clock: Clock
    journal: FileJournal
    #: read by ``check`` only
    iptables: HostIptables

    # ---------------------------------------------------------------- detect
    def facts(self) -> Facts:
        """Every fact, also when a later one fails (the kubelet error is reported)."""
        addrs = self.interfaces.addresses()
        proxy = detect_proxy_mode(addrs, self.http, self.settings.kube_proxy_mode_url)
        try:
            network = classify_network(cni_plugin_types(self.host), set(addrs))
        except ConfigError as exc:  # reported only: never blocks anything
            log.warning("network mode unknown: %s", exc)
            network = "unknown"
        local = detect_local_dns(
            addrs,
            self.prober,
            self.local_addresses,
            self.settings.probe_name,
            self.settings.probe_timeout,
        )
        kubelet: KubeletConfig | None = None
        error = ""
        try:
            kubelet = embedded.locate(self.host, self.processes, self.systemd)
        except ConfigError as exc:
            error = str(exc)
        record = self.journal.load()
        return Facts(proxy, network, local, kubelet, error, record, detect_appliance(self.host))

    @property
    def local_addresses(self) -> tuple[str, ...]:
        """Every local DNS address: each is probed, kubelet may be pointed at each. All of
        them gate a migration and feed the fail-safe, whatever family the node's kubelet
        uses: setting a local IPv6 address says node-cache listens on both on every node."""
        return local_addresses(self.settings.local_dns, self.settings.local_dns_ipv6)

    def probe_local_dns(self) -> LocalDns:
        """Only the local DNS check (the daemon's cheap periodic probe)."""
        return detect_local_dns(
            self.interfaces.addresses(),
            self.prober,
            self.local_addresses,
            self.settings.probe_name,
            self.settings.probe_timeout,
        )

    def plan(self, facts: Facts, goal: Goal) -> Plan:
        plan = self._decide(facts, goal)
        if facts.appliance is None:
            return plan
        return on_appliance(plan, goal, facts.appliance.refusal(self.settings.local_dns))

    def _decide(self, facts: Facts, goal: Goal) -> Plan:
        if facts.kubelet is None:
            return Plan(
                Action.BLOCKED,
                f"kubelet configuration: {facts.kubelet_error}",
                blocker=Blocker.CONFIG,
            )
        record = facts.record if _same_source(facts.record, facts.kubelet) else None
        return decide(
            Inputs(
                goal=goal,
                local_dns=self.settings.local_dns,
                proxy_mode=facts.proxy.mode,
                local_dns_bound=facts.local_dns.bound,
                local_dns_healthy=facts.local_dns.healthy,
                local_dns_error=facts.local_dns.error,
                cluster_dns=facts.kubelet.cluster_dns,
                running_cluster_dns=facts.kubelet.running_cluster_dns,
                original_cluster_dns=tuple(record.original_cluster_dns) if record else None,
                pending=record.pending if record else None,
                force=self.settings.force,
                local_dns_ipv6=self.settings.local_dns_ipv6,
                fallback=self.settings.fallback_nameserver,
            )
        )

    def check(self, goal: Goal = Goal.MIGRATE) -> dict[str, Any]:
        """The read-only preflight report (``check --json``)."""
        facts = self.facts()
        plan = self.plan(facts, goal)
        diff = ""
        if plan.write and facts.kubelet is not None:
            try:
                diff = _diff(facts.kubelet, self._render(facts.kubelet, plan.target, facts.record))
            except ConfigError as exc:
                plan = Plan(Action.BLOCKED, str(exc), blocker=Blocker.CONFIG)
        if (
            plan.action not in (Action.NONE, Action.BLOCKED)
            and facts.kubelet
            and facts.kubelet.note
        ):
            plan = replace(plan, reason=f"{plan.reason}; note: {facts.kubelet.note}")
        health = node_cache_health(
            facts.local_dns.listeners,
            self.http,
            self.settings.node_cache_health_port,
            self.settings.probe_timeout,
        )
        rules = notrack_rules(
            self.iptables, self.local_addresses, self.settings.node_cache_health_port
        )
        return report(facts, plan, diff, health, rules)

    # ---------------------------------------------------------------- act
    def reconcile(self, goal: Goal) -> Outcome:
        """One pass towards ``goal``. Raises ConfigError on bad input (nothing changed)."""
        facts = self.facts()
        kc = facts.kubelet
        if kc is None and facts.appliance is None:
            raise ConfigError(facts.kubelet_error)
        plan = self.plan(facts, goal)
        event(
            log,
            "decided",
            action=plan.action.value,
            reason=plan.reason,
            source=kc.source if kc else "",
            cluster_dns=list(kc.cluster_dns) if kc else [],
        )
        if plan.action is Action.BLOCKED:
            return Outcome(Result.BLOCKED, plan, facts)
        if plan.action is Action.NONE:
            return Outcome(Result(self.steady_state(facts, goal)), plan, facts)
        if kc is None:  # on_appliance() plans no change without a kubelet configuration
            raise ConfigError(facts.kubelet_error)
        return self._apply(facts, kc, plan, goal)

    def steady_state(self, facts: Facts, goal: Goal) -> NodeState:
        """The node state when nothing had to be done."""
        uses_local = facts.kubelet is not None and on_local_dns(
            facts.kubelet.cluster_dns, self.local_addresses, _original(facts.record, facts.kubelet)
        )
        if goal is Goal.MIGRATE:
            return NodeState.MIGRATED if uses_local else NodeState.NOT_NEEDED
        return NodeState.REVERTED if facts.record is not None else NodeState.NOT_NEEDED

    def _apply(self, facts: Facts, kc: KubeletConfig, plan: Plan, goal: Goal) -> Outcome:
        record = self._record_for(facts.record, kc, goal)
        new = self._render(kc, plan.target, record) if plan.write else kc.data
        record.pending = goal.value
        record.state = goal.changing
        record.updated = self.clock.time()
        self.journal.save(record)
        event(
            log,
            "journal saved",
            step="journal",
            pending=goal.value,
            backup=record.backup or "(no file before)",
        )
        # what the file is now: a write replaces it, a rollback puts the pre-image back,
        # only if it is still that (the bytes read at detect, or the very file written)
        current = Expected.of(kc.data)
        if plan.write:
            try:
                written = self._write(kc.source, new, current)
            except HostError as exc:
                # Nothing changed on disk (atomic write): record and report, no restart.
                self._fail(record, f"writing {kc.source}: {exc}")
                return Outcome(Result.FAILED, plan, facts, error=str(exc), stage=Stage.WRITE)
            current = Expected.of(new, written)
            event(
                log,
                "kubelet configuration written",
                step="written",
                source=kc.source,
                cluster_dns=list(plan.target),
            )
        try:
            self._reload(kc, plan.target)
        except HostError as exc:
            # the host's systemd would not start kubelet with the target: never restarted
            event(
                log,
                "systemd does not see the change; rolling back",
                logging.ERROR,
                step="rollback",
                error=str(exc),
            )
            rolled, error = self._roll_back(
                kc, plan, record, goal, str(exc), current, restart=False
            )
            return Outcome(
                Result.FAILED, plan, facts, rolled_back=rolled, error=error, stage=Stage.VERIFY
            )
        try:
            self._restart_and_verify(kc, plan.target)
        except HostError as exc:
            stage = Stage.VERIFY if isinstance(exc, VerifyError) else Stage.RESTART
            event(
                log,
                "kubelet did not come back; rolling back",
                logging.ERROR,
                step="rollback",
                error=str(exc),
            )
            rolled, error = self._roll_back(kc, plan, record, goal, str(exc), current)
            return Outcome(
                Result.FAILED,
                plan,
                facts,
                restarted=True,
                rolled_back=rolled,
                error=error,
                stage=stage,
            )
        done = goal.done
        record.pending = None
        record.state = done
        record.last_error = ""
        record.updated = self.clock.time()
        record.history.append(
            {"at": record.updated, "state": done, "cluster_dns": list(plan.target)}
        )
        self.journal.save(record)
        event(log, f"node {done}", step="done", cluster_dns=list(plan.target))
        return Outcome(Result(done), plan, facts, restarted=True)

    def _record_for(self, record: Record | None, kc: KubeletConfig, goal: Goal) -> Record:
        """The journal entry for this change; a fresh original is kept before a migration
        from a value that is not the local DNS (first run, or after someone reset it); a
        node on the local DNS with the original as its fallback keeps the journal's."""
        if (
            goal is Goal.MIGRATE
            and not on_local_dns(kc.cluster_dns, self.local_addresses, _original(record, kc))
            and (
                record is None
                or not _same_source(record, kc)
                or tuple(record.original_cluster_dns) != kc.cluster_dns
                or record.original_sha256 != (sha256(kc.data) if kc.data is not None else "")
            )
        ):
            backup = self.journal.keep_original(kc.source, kc.data)
            event(
                log,
                "original kept",
                step="backup",
                source=kc.source,
                backup=backup or "(no file before)",
            )
            history = record.history if record else []
            return Record(
                source=kc.source,
                format=kc.format,
                original_cluster_dns=list(kc.cluster_dns),
                original_sha256=sha256(kc.data) if kc.data is not None else "",
                backup=backup,
                history=history,
            )
        if record is None:
            raise ConfigError(f"{self.journal.path}: no journal entry for {kc.source}")
        return record

    def _render(
        self, kc: KubeletConfig, target: tuple[str, ...], record: Record | None
    ) -> bytes | None:
        """The new bytes of ``kc.source`` (None: remove the agent's own drop-in)."""
        if kc.format in ("config-dir", "unit"):
            original = record.original_cluster_dns if record else None
            if (
                record is not None
                and record.original_sha256 == ""
                and original is not None
                and tuple(original) == target
            ):
                return None
            if kc.format == "config-dir":
                return dropin.render(target)
            if kc.override is None:
                raise ConfigError(f"{kc.source}: nothing known to override")
            new = unitdropin.render(kc.override, target)
            if unitdropin.read(new, kc.override, kc.source) != target:
                raise ConfigError(f"{kc.source}: the drop-in did not read back as {target}")
            return new
        if kc.data is None:
            raise ConfigError(f"{kc.source}: file disappeared")
        new = format_named(kc.format).edit(kc.data, target, kc.source)
        if format_named(kc.format).read(new, kc.source) != target:
            raise ConfigError(f"{kc.source}: the edit did not produce {','.join(target)}")
        return new

    def _write(self, host_path: str, data: bytes | None, expect: Expected) -> FileId | None:
        """Replace ``host_path`` with ``data`` (remove it when None) if it is still what
        ``expect`` says; the new file's id. Refused (UnsafeWriteError) or failed: unchanged."""
        if data is None:
            self.host.remove_file(host_path, expect=expect)
            return None
        return self.host.write_file(host_path, data, expect=expect)

    def _reload(self, kc: KubeletConfig, target: tuple[str, ...]) -> None:
        """For the agent's unit drop-in (format ``unit``): make the host's systemd read the
        unit files again, then check its own view before kubelet is restarted: the drop-in
        is loaded exactly when it exists, and the unit would start kubelet with ``target``.
        Idempotent, so a run that was killed before or after it just does it again."""
        if kc.format != "unit":
            return
        event(log, "reloading systemd", step="reload", dropin=kc.source)
        self.systemd.daemon_reload()
        status = self.systemd.show(UNIT_NAME)
        present = self.host.exists(kc.source)
        if (kc.source in status.dropin_paths) != present:
            raise VerifyError(
                f"after daemon-reload the host's systemd shows the drop-ins "
                f"[{', '.join(status.dropin_paths)}]; expected {kc.source} "
                f"{'among' if present else 'not among'} them"
            )
        try:
            effective = systemd_cluster_dns(self.host, status) or ()
        except ConfigError as exc:
            raise VerifyError(f"after daemon-reload: {exc}") from exc
        if effective != target:
            raise VerifyError(
                f"after daemon-reload the host's systemd would start kubelet with "
                f"--cluster-dns={','.join(effective)}, expected {','.join(target)} (a drop-in "
                f"or an EnvironmentFile= beats {kc.source}?)"
            )
        event(log, "systemd reloaded", step="reloaded", cluster_dns=list(effective))

    def restart_argv(self, kc: KubeletConfig) -> tuple[str, ...]:
        """The restart command: the user's when set; by default ``systemctl restart`` of the
        unit that hosts an embedded kubelet, or of kubelet."""
        command = self.settings.restart_command
        if kc.service and command == DEFAULT_RESTART_COMMAND:
            return (*self.settings.systemctl_command, "restart", kc.service)
        return command

    def _restart_and_verify(self, kc: KubeletConfig, target: tuple[str, ...]) -> None:
        argv = self.restart_argv(kc)
        event(log, "restarting kubelet", step="restart", argv=list(argv), unit=kc.service)
        self.runner.run(argv, timeout=self.settings.restart_timeout)
        event(log, "restart command done; verifying", step="restarted")
        self._verify(kc, target)
        event(log, "kubelet healthy", step="verified")

    def _verify(self, before: KubeletConfig, target: tuple[str, ...]) -> None:
        deadline = self.clock.monotonic() + self.settings.verify_timeout
        why = "not checked yet"
        while True:
            why = self._kubelet_problem(before, target)
            if not why:
                return
            if self.clock.monotonic() >= deadline:
                raise VerifyError(
                    f"kubelet not healthy within {self.settings.verify_timeout:g}s "
                    f"after the restart: {why}"
                )
            self.clock.sleep(VERIFY_POLL_SECONDS)

    def _kubelet_problem(self, before: KubeletConfig, target: tuple[str, ...]) -> str:
        """Why kubelet is not (yet) back, or "" when it is: the main process of the host's
        kubelet.service is a new one, passes the trust test, and runs with ``target``.
        An embedded kubelet: see :meth:`_embedded_problem`."""
        if before.service:
            return self._embedded_problem(before, target)
        try:
            running = host_kubelet(self.systemd, self.processes)
        except ConfigError as exc:
            return str(exc)
        now = running.process
        if running.service is None:
            return running.systemd_error
        if now is None:
            return f"{UNIT_NAME} has no main process (ActiveState={running.service.active_state})"
        if now.pid == before.kubelet_pid and now.create_time <= (before.kubelet_started or 0):
            return f"kubelet process {now.pid} is still the one from before the restart"
        flagged = parse_kubelet_flags(list(now.argv)).cluster_dns
        if flagged is not None and tuple(flagged) != target:
            return (
                f"kubelet {now.pid} runs with --cluster-dns={','.join(flagged)}, "
                f"expected {','.join(target)}"
            )
        return self._healthz_problem()

    def _embedded_problem(self, before: KubeletConfig, target: tuple[str, ...]) -> str:
        """For an embedded kubelet: the unit that hosts it has a new trusted main process
        (RKE2: a new trusted kubelet child), the configuration on disk makes kubelet use
        ``target`` (k3s's merged kubelet-arg items or its ``--config-dir``; MicroK8s's
        arguments file), a kubelet command line (RKE2) has ``target``, and healthz answers.
        kubelet inside k3s or kubelite has no command line of its own to check."""
        try:
            now = embedded.locate(self.host, self.processes, self.systemd)
        except ConfigError as exc:
            return str(exc)
        if now.service != before.service:
            return f"kubelet now runs in {now.service or UNIT_NAME}, expected {before.service}"
        if now.kubelet_pid == before.kubelet_pid and (now.kubelet_started or 0) <= (
            before.kubelet_started or 0
        ):
            return f"{before.service} process {now.kubelet_pid} is still the one from before"
        if now.cluster_dns != target:
            return (
                f"{now.source} now gives kubelet {','.join(now.cluster_dns)}, expected "
                f"{','.join(target)}"
            )
        if now.running_cluster_dns is not None and now.running_cluster_dns != target:
            return (
                f"kubelet {now.kubelet_pid} runs with "
                f"--cluster-dns={','.join(now.running_cluster_dns)}, expected {','.join(target)}"
            )
        return self._healthz_problem()

    def _healthz_problem(self) -> str:
        url = self.settings.kubelet_healthz_url
        try:
            result = self.http.get(url, timeout=2.0)
        except OSError as exc:
            return str(exc)
        if result.status != 200 or result.body.strip() != "ok":
            return f"{url} answered {result.status} {result.body.strip()[:80]!r}"
        return ""

    def _pre_image(
        self, kc: KubeletConfig, plan: Plan, record: Record, goal: Goal
    ) -> tuple[bool, bytes | None, tuple[str, ...]]:
        """What to put back: (restore?, bytes or None to remove, the values they hold).

        After a write, the bytes read before it. When only a restart was owed (a run killed
        after writing), the migration's original from the journal's byte copy."""
        if plan.write:
            return True, kc.data, kc.cluster_dns
        original = tuple(record.original_cluster_dns)
        if goal is Goal.MIGRATE and original:
            if record.original_sha256 == "":
                return True, None, original
            data = self.host.read_bytes(record.backup)
            if sha256(data) == record.original_sha256:
                return True, data, original
        return False, kc.data, kc.cluster_dns

    def _roll_back(
        self,
        kc: KubeletConfig,
        plan: Plan,
        record: Record,
        goal: Goal,
        error: str,
        current: Expected,
        *,
        restart: bool = True,
    ) -> tuple[bool, str]:
        """Put the pre-image back over ``current`` (what this run wrote, else what it read),
        reload systemd (unit format), restart unless ``restart`` is False (kubelet was not
        restarted yet), and record the failure. Returns whether kubelet is healthy again on
        the old configuration (with ``restart`` False: whether systemd sees it again), and
        the full error. A file that is no longer ``current`` (a path component swapped for
        a symlink since) is left alone: the rollback fails."""
        healthy = False
        try:
            restore, data, values = self._pre_image(kc, plan, record, goal)
            if restore:
                self._write(kc.source, data, current)
                event(log, "pre-image restored", step="restored", source=kc.source)
            self._reload(kc, values)
            if restart:
                self._restart_and_verify(kc, values)
            healthy = True
        except AgentError as exc:
            error = f"{error}; rollback: {exc}"
            event(log, "kubelet unhealthy after rollback too", logging.ERROR, error=str(exc))
        self._fail(record, error)
        return healthy, error

    def _fail(self, record: Record, error: str) -> None:
        record.pending = None
        record.state = NodeState.FAILED
        record.last_error = error
        record.updated = self.clock.time()
        record.history.append(
            {"at": record.updated, "state": NodeState.FAILED, "error": error[:500]}
        )
        self.journal.save(record)


def _same_source(record: Record | None, kc: KubeletConfig) -> bool:
    return record is not None and record.source == kc.source


def _original(record: Record | None, kc: KubeletConfig) -> tuple[str, ...] | None:
    """The journal's original cluster DNS of ``kc``'s file (None: no journal for it)."""
    if record is None or not _same_source(record, kc):
        return None
    return tuple(record.original_cluster_dns)


def _diff(kc: KubeletConfig, new: bytes | None) -> str:
    def lines(data: bytes | None) -> list[str]:
        return [] if data is None else data.decode("utf-8", "surrogateescape").splitlines(True)

    old_name = kc.source if kc.data is not None else "/dev/null"
    new_name = kc.source if new is not None else "/dev/null"
    text = "".join(difflib.unified_diff(lines(kc.data), lines(new), old_name, new_name))
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def report(
    facts: Facts,
    plan: Plan,
    diff: str,
    health: tuple[NodeCacheHealth, ...],
    rules: tuple[NotrackRules, ...],
) -> dict[str, Any]:
    """The JSON shape of ``check`` (a user-facing contract). ``health``: node-cache's
    ``/health`` per local address, ``rules``: its NOTRACK/ACCEPT rules per local address
    (both reported only; the plan never depends on them)."""
    kc = facts.kubelet
    ready = {one.address: one for one in health}
    installed = {one.address: one for one in rules}
    return {
        "proxy_mode": facts.proxy.mode,
        "proxy_mode_source": facts.proxy.source,
        "network_mode": facts.network_mode,
        "local_dns": {
            "address": facts.local_dns.address,
            "bound": facts.local_dns.bound,
            "interface": facts.local_dns.interface,
            "healthy": facts.local_dns.healthy,
            "latency_seconds": facts.local_dns.latency_seconds,
            "error": facts.local_dns.error,
            "addresses": [
                {
                    "address": one.address,
                    "bound": one.bound,
                    "interface": one.interface,
                    "healthy": one.healthy,
                    "latency_seconds": one.latency_seconds,
                    "error": one.error,
                    "node_cache": _health_report(ready.get(one.address)),
                    "notrack_rules": _rules_report(installed[one.address]),
                }
                for one in facts.local_dns.listeners
            ],
            # every address's /health says ready (None: not asked)
            "node_cache_ready": all(one.ready for one in health) if health else None,
        },
        "kubelet": {
            "source": kc.source if kc else "",
            "format": kc.format if kc else "",
            "cluster_dns": list(kc.cluster_dns) if kc else [],
            "running_cluster_dns": (
                list(kc.running_cluster_dns) if kc and kc.running_cluster_dns is not None else None
            ),
            "found_by": kc.found_by if kc else "",
            "variable": kc.variable if kc else "",
            "pid": kc.kubelet_pid if kc else None,
            "systemd_error": kc.systemd_error if kc else "",
            "layout": kc.layout if kc else "",
            "restart_unit": (kc.service or UNIT_NAME) if kc else "",
            "note": kc.note if kc else "",
            "error": facts.kubelet_error,
        },
        "journal": {
            "state": facts.record.state if facts.record else "",
            "pending": facts.record.pending if facts.record else None,
            "original_cluster_dns": facts.record.original_cluster_dns if facts.record else [],
        },
        "appliance_os": facts.appliance.name if facts.appliance else "",
        "action": plan.action.value,
        "reason": plan.reason,
        "diff": diff,
    }


def _health_report(health: NodeCacheHealth | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {
        "url": health.url,
        "ready": health.ready,
        "status": health.status,
        "error": health.error,
    }


def _rules_report(rules: NotrackRules) -> dict[str, Any]:
    return {
        "expected": rules.expected,
        # None when not read
        "present": None if rules.error else rules.present,
        "missing": [str(rule) for rule in rules.missing],
        "error": rules.error,
        "warning": rules.warning,
    }
