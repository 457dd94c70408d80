"""Test doubles for the host objects of ``nodelocaldns_agent.host`` (one per real implementation).

They keep state in plain attributes so a test can arrange a node and read back what the
engine did. The real objects are exercised through the sandbox integration tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nodelocaldns_agent.errors import CommandError
from nodelocaldns_agent.host.commands import CommandResult
from nodelocaldns_agent.host.probes import DnsAnswer, HttpResult, ProcessInfo


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


@dataclass
class FakeProcesses:
    running: list[ProcessInfo] = field(default_factory=list)

    def find(self, name: str) -> list[ProcessInfo]:
        return [p for p in self.running if p.argv and p.argv[0].rsplit("/", 1)[-1] == name]


@dataclass
class FakeRunner:
    """Records argv; ``on_run`` simulates the command's effect (e.g. a new kubelet)."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    on_run: Callable[[tuple[str, ...]], None] | None = None
    fail_with: str = ""

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        if self.fail_with:
            raise CommandError(list(args), "exited with status 1", self.fail_with)
        if self.on_run:
            self.on_run(args)
        return CommandResult(args, 0, "")


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
