"""Test doubles for the host objects of ``nodelocaldns_agent.host`` (one per real implementation).

They keep state in plain attributes so a test can arrange a node and read back what the
engine did. The real objects are exercised through the sandbox integration tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from nodelocaldns_agent.errors import CommandError, FirewallError, SystemdError
from nodelocaldns_agent.host.commands import CommandResult
from nodelocaldns_agent.host.probes import DnsAnswer, HttpResult, ProcessInfo
from nodelocaldns_agent.host.systemd import UnitStatus

#: PID 1's namespaces on the fake host
HOST_MNT_NS = "mnt:[4026531841]"
HOST_PID_NS = "pid:[4026531836]"
#: kubelet.service's cgroup (cgroup v2, systemd)
KUBELET_CGROUP = ("0::/system.slice/kubelet.service",)


@dataclass
class FakeInterfaces:
    table: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def addresses(self) -> dict[str, tuple[str, ...]]:
        return dict(self.table)


@dataclass
class FakeHttp:
    """URL -> result, or an OSError instance to raise."""

    routes: dict[str, HttpResult | OSError] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def get(self, url: str, timeout: float) -> HttpResult:
        self.calls.append(url)
        answer = self.routes.get(url, OSError(f"GET {url}: connection refused"))
        if isinstance(answer, OSError):
            raise answer
        return answer


@dataclass
class FakeProber:
    answer: DnsAnswer = field(default_factory=lambda: DnsAnswer(True, 0.002, "ok"))
    calls: list[tuple[str, str]] = field(default_factory=list)

    def probe(self, server: str, name: str, timeout: float) -> DnsAnswer:
        self.calls.append((server, name))
        return self.answer


def host_process(
    pid: int, create_time: float, argv: tuple[str, ...], cgroup: tuple[str, ...] = KUBELET_CGROUP
) -> ProcessInfo:
    """A process of the host itself: PID 1's namespaces, outside any pod."""
    name = argv[0].rsplit("/", 1)[-1][:15] if argv else ""
    return ProcessInfo(pid, create_time, argv, name, HOST_MNT_NS, HOST_PID_NS, cgroup)


@dataclass
class FakeProcesses:
    """The process table: ``running`` plus the host's PID 1."""

    running: list[ProcessInfo] = field(default_factory=list)
    init: ProcessInfo = field(
        default_factory=lambda: host_process(1, 0.0, ("/sbin/init",), ("0::/init.scope",))
    )

    #: child pid -> parent pid
    parents: dict[int, int] = field(default_factory=dict)

    def get(self, pid: int) -> ProcessInfo | None:
        if pid == 1:
            return self.init
        return next((p for p in self.running if p.pid == pid), None)

    def children(self, pid: int) -> tuple[int, ...]:
        return tuple(p.pid for p in self.running if self.parents.get(p.pid) == pid)


@dataclass
class FakeSystemd:
    """The host's systemd: ``status`` is what ``show`` answers; ``error`` makes it
    unreachable (raised as a :class:`SystemdError`)."""

    status: UnitStatus = field(
        default_factory=lambda: UnitStatus("kubelet.service", "not-found", "inactive", 0)
    )
    error: str = ""
    calls: list[str] = field(default_factory=list)
    #: what a ``daemon-reload`` does (e.g. the status it makes ``show`` answer next)
    on_reload: Callable[[], None] | None = None

    def show(self, unit: str) -> UnitStatus:
        self.calls.append(unit)
        if self.error:
            raise SystemdError(self.error)
        return replace(self.status, unit=unit)

    def daemon_reload(self) -> None:
        self.calls.append("daemon-reload")
        if self.error:
            raise SystemdError(self.error)
        if self.on_reload:
            self.on_reload()

    def started(self, pid: int) -> None:
        self.status = replace(self.status, active_state="active", main_pid=pid)

    def stopped(self) -> None:
        self.status = replace(self.status, active_state="failed", main_pid=0)


@dataclass
class FakeRunner:
    """Records argv; ``on_run`` simulates the command's effect (e.g. a new kubelet)."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    on_run: Callable[[tuple[str, ...]], None] | None = None
    fail_with: str = ""
    #: what every successful command prints
    output: str = ""

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        if self.fail_with:
            raise CommandError(list(args), "exited with status 1", self.fail_with)
        if self.on_run:
            self.on_run(args)
        return CommandResult(args, 0, self.output)


@dataclass
class FakeIptables:
    """The host's ``iptables-save``: ``saved[(version, table)]`` (no rules when absent),
    or ``error`` raised."""

    saved: dict[tuple[int, str], str] = field(default_factory=dict)
    error: str = ""
    calls: list[tuple[int, str]] = field(default_factory=list)

    def save(self, version: int, table: str) -> str:
        self.calls.append((version, table))
        if self.error:
            raise FirewallError(self.error)
        return self.saved.get((version, table), f"*{table}\nCOMMIT\n")


@dataclass
class FakeClock:
    now: float = 1000.0
    wall: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
