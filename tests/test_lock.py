"""The restart-slot lock against the fake API server (real client, real HTTP)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from nodelocaldns_agent.errors import TransientError
from nodelocaldns_agent.host.probes import SystemClock
from nodelocaldns_agent.kube.api import SLOT_LABEL, ApiError, KubeApi
from nodelocaldns_agent.kube.lock import (
    WATCHED,
    RestartLock,
    attempt_level,
    holder_level,
    slot_order,
    spacing,
)
from nodelocaldns_agent.kube.types import LeaseView
from testing.fake_apiserver import FakeApiServer
from testing.fakenode import JumpClock

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


@pytest.mark.parametrize(
    ("rank", "ours", "level"),
    [(0, False, 0), (1, False, 1), (2, False, 2), (3, False, 3), (7, False, 3), (5, True, 0)],
)
def test_attempt_level(rank: int, ours: bool, level: int) -> None:
    assert attempt_level(rank, ours) == level


def test_slot_order_is_stable_and_spreads_first_choices() -> None:
    slots = [f"s-{i}" for i in range(10)]
    assert slot_order("node-a", slots) == slot_order("node-a", list(reversed(slots)))
    assert sorted(slot_order("node-a", slots)) == sorted(slots)
    firsts = Counter(slot_order(f"node-{i}", slots)[0] for i in range(2000))
    assert set(firsts) == set(slots)
    # each slot is the first choice of ~200 nodes (binomial: sd ~13)
    assert all(120 < n < 280 for n in firsts.values()), firsts
    # second choices are independent of first choices
    pairs = Counter(tuple(slot_order(f"node-{i}", slots)[:2]) for i in range(2000))
    assert len(pairs) > 80


def test_a_freed_slot_is_raced_only_by_its_first_choice_waiters(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    """The herd fix, over real HTTP: 30 waiters, 3 slots held; when one is freed, only the
    waiters whose first choice it is send a create within their jitter; everyone else waits
    at least ``step`` seconds and by then sees it taken (no request at all)."""
    server, kube = api
    slots = [f"nodelocaldns-agent-slot-{i}" for i in range(3)]
    for name in slots:  # each held by a node whose first choice it is (floor 0)
        busy = next(f"busy-{i}" for i in range(1000) if slot_order(f"busy-{i}", slots)[0] == name)
        kube.create_lease(NS, name, busy, 60)
    clock = SystemClock()  # real time: the test is about who writes when
    creates: list[str] = []

    class Recording(KubeApi):
        """The real API wrapper (shared client), noting who sent a Lease create."""

        def __init__(self, holder: str) -> None:
            self.__dict__.update(kube.__dict__)
            self.holder = holder

        def create_lease(self, namespace: str, name: str, holder: str, duration: int) -> LeaseView:
            creates.append(self.holder)
            return super().create_lease(namespace, name, holder, duration)

    locks = [
        RestartLock(Recording(f"n{i}"), NS, f"n{i}", 3, clock, duration=60, jitter=0.2, step=2.0)
        for i in range(30)
    ]
    stop = threading.Event()
    results: dict[str, bool] = {}

    def wait(lock: RestartLock) -> None:
        results[lock.holder] = lock.acquire(stop, 6.0, lambda: None)
        if lock.held is not None:
            stop.set()  # the others give up at their next wake-up

    threads = [threading.Thread(target=wait, args=(lock,)) for lock in locks]
    for t in threads:
        t.start()
    server.wait_for(lambda: all(lock._watching for lock in locks), timeout=10)
    kube.delete_lease(NS, slots[1], None)
    for t in threads:
        t.join(timeout=20)
    winners = [lock for lock in locks if lock.held is not None]
    assert len(winners) == 1 and winners[0].held is not None
    assert winners[0].held.name == slots[1]
    first_choice = {lock.holder for lock in locks if lock.names[0] == slots[1]}
    assert creates and set(creates) <= first_choice, (creates, first_choice)


def test_ensure_fresh_renews_only_an_old_write(api: tuple[FakeApiServer, KubeApi]) -> None:
    server, kube = api
    clock = JumpClock()
    lock = RestartLock(kube, NS, "node-a", 1, clock, duration=30, jitter=0.0)
    assert lock.acquire(threading.Event(), 1.0, lambda: None)
    renewals = lambda: [r for r in server.requests.records() if r.method == "PATCH"]  # noqa: E731
    lock.ensure_fresh()  # written just now: no request
    assert renewals() == []
    clock.sleep(11)  # more than a third of the duration
    lock.ensure_fresh()
    assert [r.status for r in renewals()] == [200]
    lock.ensure_fresh()
    assert len(renewals()) == 1


@pytest.mark.parametrize(
    ("rank", "floor", "level"),
    [(0, 1, 0), (1, 1, 0), (2, 1, 1), (3, 1, 2), (9, 2, 1), (2, 2, 0), (1, 2, 0)],
)
def test_attempt_level_after_a_holder_of_a_later_level(rank: int, floor: int, level: int) -> None:
    assert attempt_level(rank, False, floor) == level


def test_holder_level_never_reaches_the_last_level() -> None:
    slots = [f"s-{i}" for i in range(20)]
    for holder in ("a", "b", "c"):
        order = slot_order(holder, slots)
        assert [holder_level(holder, name, tuple(slots)) for name in order[:5]] == [0, 1, 2, 2, 2]


def test_waiters_follow_the_level_of_the_slots_last_holder(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    """A slot last taken by a level-2 holder: a level-2 waiter tries it without waiting
    two steps for level-0/1 waiters that were not there."""
    _, kube = api
    slots = [f"nodelocaldns-agent-slot-{i}" for i in range(4)]
    clock = JumpClock()
    waiter = RestartLock(kube, NS, "w", 4, clock, duration=60, jitter=0.0, step=1.0)
    target = waiter.names[2]  # the waiter's level 2
    holder = next(f"h{i}" for i in range(1000) if slot_order(f"h{i}", slots)[2] == target)
    for name in slots:
        kube.create_lease(NS, name, holder if name == target else f"busy-{name}", 60)
    waiter._refresh()
    kube.delete_lease(NS, target, None)
    waiter._refresh()
    before = clock.monotonic()
    assert waiter.try_acquire() is True
    assert clock.monotonic() - before < 0.5  # level 2 - floor 2: no step waited


@pytest.mark.parametrize(
    ("base", "latency", "expected"),
    [(0.3, 0.0, 0.3), (0.3, 0.1, 0.3), (0.3, 0.2, 0.4), (0.3, 2.5, 5.0)],
)
def test_spacing_stretches_with_a_slow_api(base: float, latency: float, expected: float) -> None:
    assert spacing(base, latency) == pytest.approx(expected)


def test_spacing_doubles_per_lost_race_up_to_a_cap() -> None:
    assert [spacing(0.3, 0.0, lost) for lost in (0, 1, 2, 4, 9)] == pytest.approx(
        [0.3, 0.6, 1.2, 1.2, 1.2]
    )


def test_a_lost_race_widens_the_waiters_jitter(api: tuple[FakeApiServer, KubeApi]) -> None:
    _, kube = api
    draws: list[float] = []
    clock = JumpClock()
    lock = RestartLock(kube, NS, "b", 1, clock, duration=30, jitter=0.3, rng=lambda: 1.0)
    lock._refresh()
    kube.create_lease(NS, "nodelocaldns-agent-slot-0", "a", 30)  # "a" wins the race
    start = clock.monotonic()
    assert lock.try_acquire() is False and lock.lost == 1
    draws.append(clock.monotonic() - start)
    kube.delete_lease(NS, "nodelocaldns-agent-slot-0", None)
    lock._refresh()
    start = clock.monotonic()
    assert lock.try_acquire() is True and lock.lost == 0
    draws.append(clock.monotonic() - start)
    assert draws[0] == pytest.approx(0.3, abs=0.05)
    assert draws[1] == pytest.approx(0.6, abs=0.05)  # one lost race: twice the jitter


def test_a_waiter_watches_and_tries_only_its_first_slots(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    server, kube = api
    lock = RestartLock(kube, NS, "w", 20, JumpClock(), duration=30, jitter=0.0)
    assert len(lock.watched) == WATCHED and lock.watched == lock.names[:WATCHED]
    others = [name for name in lock.names if name not in lock.watched]
    kube.create_lease(NS, others[0], "x", 30)  # a slot this waiter never takes
    leases, _ = lock._refresh()
    assert leases == []  # an unwatched slot is not part of the waiter's view
    assert lock.try_acquire() is True
    assert lock.held is not None and lock.held.name == lock.watched[0]
    stored = server.get("leases", lock.watched[0], NS)
    assert stored is not None
    assert stored["metadata"]["labels"][SLOT_LABEL] == lock.watched[0]


def test_a_release_after_a_renewal_with_a_lost_answer_still_frees_the_slot(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    """The renewal is applied but its answer is a 500: the holder's resourceVersion is
    stale, the DELETE gets 409; the slot must still be freed, not left to expire."""
    server, kube = api
    lock = RestartLock(kube, NS, "node-a", 1, JumpClock(), duration=30, jitter=0.0)
    assert lock.acquire(threading.Event(), 1.0, lambda: None)
    server.faults.fail(500, count=1, method="PATCH", after_commit=True)
    with pytest.raises(ApiError):
        lock.renew()
    assert lock.held is not None  # still ours, at a version the server no longer has
    lock.release()
    assert lock.held is None
    assert server.objects("leases", NS) == []
    deletes = [r.status for r in server.requests.records() if r.method == "DELETE"]
    assert deletes == [409, 200]


def test_a_release_during_a_slow_renewal_waits_for_it(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    server, kube = api
    lock = RestartLock(kube, NS, "node-a", 1, JumpClock(), duration=30, jitter=0.0)
    assert lock.acquire(threading.Event(), 1.0, lambda: None)
    server.faults.delay(1.0, count=1, method="PATCH")
    renewal = threading.Thread(target=lock.renew)
    renewal.start()
    server.wait_for(lock._renewal.locked, timeout=2)
    lock.release()  # waits for the renewal, then deletes at the renewed version
    renewal.join(timeout=5)
    assert lock.held is None
    assert server.objects("leases", NS) == []
    writes = [(r.method, r.status) for r in server.requests.records() if r.method != "GET"]
    # without the serialization the DELETE overtakes the stalled renewal, which then gets 404
    assert writes[-2:] == [("PATCH", 200), ("DELETE", 200)]


def test_a_renewal_that_lands_after_the_delete_does_not_bring_the_slot_back(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    """A PUT of a missing Lease creates it (kube-apiserver's Lease strategy allows
    create-on-update), so a renewal sent by PUT after the Lease was deleted would leave
    an orphan slot held for a whole lease duration. The renewal is a patch: 404, gone."""
    server, kube = api
    lock = RestartLock(kube, NS, "node-a", 1, JumpClock(), duration=30, jitter=0.0)
    assert lock.acquire(threading.Event(), 1.0, lambda: None)
    assert lock.held is not None
    kube.delete_lease(NS, lock.held.name, None)  # e.g. released by an earlier run
    with pytest.raises(TransientError):
        lock.renew()
    assert lock.held is None
    assert server.objects("leases", NS) == []
    (renewal,) = [r for r in server.requests.records() if r.method == "PATCH"]
    assert renewal.status == 404


def test_a_free_slot_the_waiter_does_not_watch_is_tried_once_after_a_list(
    api: tuple[FakeApiServer, KubeApi],
) -> None:
    """Every watched slot is held; a slot outside the watched ones is free: the list at the
    start of a wait (and at each new watch) makes it a one-shot candidate."""
    _, kube = api
    lock = RestartLock(kube, NS, "w", 20, JumpClock(), duration=30, jitter=0.0)
    for name in lock.names:
        if name != lock.names[-1]:
            kube.create_lease(NS, name, f"busy-{name[-2:]}", 30)
    lock._refresh()
    assert lock.try_acquire() is True
    assert lock.held is not None and lock.held.name == lock.names[-1]
    lock.release()
    kube.create_lease(NS, lock.names[-1], "busy-last", 30)
    lock._refresh()  # nothing free at all
    kube.delete_lease(NS, lock.names[-1], None)  # freed, but this waiter does not watch it
    assert lock.try_acquire() is False  # its spare list is empty until the next list
    lock._refresh()
    assert lock.try_acquire() is True


@pytest.mark.parametrize(("slots", "watched"), [(1, 1), (6, 6), (12, 12), (13, 6), (50, 6)])
def test_how_many_slots_a_waiter_watches(slots: int, watched: int) -> None:
    lock = RestartLock(None, NS, "w", slots, JumpClock())  # type: ignore[arg-type]
    assert len(lock.watched) == watched
    assert ("in (" in lock.selector) == (watched < slots)


@pytest.mark.parametrize(("slots", "lists"), [(1, 1), (13, 3)])
def test_only_a_waiter_that_watches_a_subset_relists_at_every_new_watch(
    api: tuple[FakeApiServer, KubeApi], slots: int, lists: int
) -> None:
    """Every slot held; 1 s watches for 2.5 s: a waiter that watches every slot lists once
    (when its wait starts), one that watches a subset also at each of its 2 new watches."""
    server, kube = api
    for i in range(slots):
        kube.create_lease(NS, f"nodelocaldns-agent-slot-{i}", f"busy-{i}", 60)
    lock = RestartLock(
        kube, NS, "w", slots, SystemClock(), duration=60, watch_seconds=1, rng=lambda: 0.0
    )
    assert lock.partial is (slots > 12)
    assert lock.acquire(threading.Event(), 5.0, lambda: None) is False  # ends after 2.5 s
    got = [r for r in server.requests.records() if r.verb == "list"]
    assert len(got) == lists, [r.path for r in got]
