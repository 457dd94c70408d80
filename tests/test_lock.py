"""The restart-slot lock against the fake API server (real client, real HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agent.kube.api import KubeApi
from agent.kube.lock import RestartLock
from tests.fake_apiserver import FakeApiServer
from tests.fakenode import JumpClock

NS = "nodelocaldns"


@pytest.fixture
def api() -> Iterator[tuple[FakeApiServer, KubeApi]]:
    with FakeApiServer() as server, server.api_client() as client:
        yield server, KubeApi(client)


def test_a_409_placeholder_is_never_taken_over_without_the_real_version(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    server, kube = api
    clock = JumpClock()
    lock = RestartLock(kube, NS, "node-b", 1, clock, duration=10, jitter=0.0)
    lock._refresh()  # sees no Lease yet
    kube.create_lease(NS, "nodelocaldns-agent-slot-0", "node-a", 10)  # node-a wins the race
    assert lock.try_acquire() is False  # 409: a placeholder, version unknown
    clock.sleep(60)  # far past the duration, but the placeholder is not "expired"
    assert lock.try_acquire() is False
    writes = [r for r in server.requests.records() if r.method in ("PUT", "POST")]
    assert [r.status for r in writes] == [201, 409]  # no blind replace was ever sent
    lock._refresh()  # the real Lease, seen unchanged for its duration, may be taken over
    clock.sleep(11)
    assert lock.try_acquire() is True
    assert lock.held is not None and lock.held.holder == "node-b"


def test_two_holders_never_share_a_slot(api: tuple[FakeApiServer, KubeApi]) -> None:
    _, kube = api
    clock = JumpClock()
    locks = [RestartLock(kube, NS, f"n{i}", 1, clock, duration=30, jitter=0.0) for i in range(4)]
    stop = threading.Event()
    results = [lock.acquire(stop, 0.3, lambda: None) for lock in locks]
    assert results.count(True) == 1
    winner = locks[results.index(True)]
    winner.release()
    later = [lock.acquire(stop, 2.0, lambda: None) for lock in locks if lock is not winner][:1]
    assert later == [True]
