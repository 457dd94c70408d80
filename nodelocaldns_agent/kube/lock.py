"""The cluster-wide restart limit: at most ``slots`` kubelet restarts in flight.

One ``coordination.k8s.io/v1`` Lease per slot (``<prefix>-<i>``) in the agent's namespace,
holder = node name. A slot is taken by *creating* its Lease (409 when someone else did) or
by *replacing* an expired one with the resourceVersion that was seen (409 when someone
renewed or took it first), so two holders can never both succeed. Expiry is judged by the
local clock from when this agent first saw a Lease unchanged (like client-go's leader
election), so clock skew between nodes cannot make a live holder look expired. A holder
renews while it works and deletes its Lease (with a resourceVersion precondition) after
kubelet was verified; a crashed holder's Lease expires after ``duration`` seconds.

Waiters do not poll: they watch the slot Leases and try only when one is free or expired.
Not every waiter tries at once: each node ranks the slots in its own order (rendezvous
hashing of node and slot name, so every slot is the first choice of about N/K nodes),
watches only its first ``WATCHED`` slots when there are many (a label selector on the
slot label) and tries a freed slot after ``level * step`` seconds plus a random jitter,
level = min(rank, LEVELS) lowered by the level at which the slot's last holder took it. A
slot freed while its first-choice nodes still wait is raced by those ~N/K nodes only, not
by every waiter in the cluster (failed creates per hand-over would grow with the number of
waiters); the later levels keep every slot busy once its first-choice nodes are done.
Step and jitter stretch with the API's answer time, and a waiter's jitter doubles with
every race it lost.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from nodelocaldns_agent.errors import TransientError
from nodelocaldns_agent.host.probes import Clock
from nodelocaldns_agent.kube.api import LEASE_LABEL, LEASE_LABEL_VALUE, SLOT_LABEL, ApiError
from nodelocaldns_agent.kube.types import LeaseView
from nodelocaldns_agent.logs import event

log = logging.getLogger(__name__)


class LeaseApi(Protocol):
    def list_leases(self, namespace: str, selector: str) -> tuple[list[LeaseView], str]: ...
    def watch_leases(
        self, namespace: str, selector: str, rv: str, timeout_seconds: int
    ) -> Iterator[tuple[str, LeaseView]]: ...
    def create_lease(self, namespace: str, name: str, holder: str, duration: int) -> LeaseView: ...
    def replace_lease(
        self, namespace: str, name: str, holder: str, duration: int, resource_version: str
    ) -> LeaseView: ...
    def renew_lease(
        self, namespace: str, name: str, holder: str, duration: int, resource_version: str
    ) -> LeaseView: ...
    def delete_lease(self, namespace: str, name: str, resource_version: str | None) -> None: ...
    def get_lease(self, namespace: str, name: str) -> LeaseView | None: ...


#: ranks from this one on share the last (longest) delay before a waiter tries a slot
LEVELS = 3
#: step and jitter are at least this many times the API's recent answer time: the
#: winner's create must be seen by the next level's waiters before they try
LATENCY_FACTOR = 2.0
MAX_LATENCY_SAMPLE = 2.5


#: with more than WATCH_ALL slots a waiter watches, and tries, only its first WATCHED
#: slots: a Lease change then reaches about WATCHED/K of the waiters instead of every one
#: (the API server's watch fan-out). With fewer slots that saves little, and a subset can
#: leave a slot idle that none of the remaining waiters watches: watching them all keeps
#: every slot busy.
WATCHED = 6
WATCH_ALL = 12
#: shortest lease watch (each one lasts between this and twice this, at random)
WATCH_SECONDS = 30
#: a waiter's jitter doubles with each create it lost (409), up to 2**MAX_BACKOFF times
MAX_BACKOFF = 2


def spacing(base: float, latency: float, lost: int = 0) -> float:
    """The step (or, with ``lost``, the jitter) to use: ``base``, stretched when the API
    answers slowly, and doubled for every race this waiter lost: the waiters of a busy
    slot spread out until about one of them tries at a time, however many there are."""
    return max(base, LATENCY_FACTOR * latency) * float(2 ** min(lost, MAX_BACKOFF))


def slot_order(holder: str, names: list[str]) -> list[str]:
    """``holder``'s preference order of the slots: rendezvous hashing, so each slot is the
    first choice of an equal share of the nodes and the shares are independent per rank."""
    return sorted(names, key=lambda n: hashlib.sha256(f"{holder}/{n}".encode()).digest())


def attempt_level(rank: int, ours: bool, floor: int = 0) -> int:
    """How many ``step`` delays a waiter lets pass before it tries a free slot.

    ``floor`` is the level at which the slot's last holder took it: when that was level
    2, no waiter of level 0 or 1 was left for it then, so the waiters of level 2 need not
    wait for them again (a level below the floor, e.g. a node that joined since, goes at
    once too).
    """
    return 0 if ours else max(min(rank, LEVELS) - floor, 0)


@functools.lru_cache(maxsize=4096)
def holder_level(holder: str, name: str, names: tuple[str, ...]) -> int:
    """The floor that ``holder`` holding slot ``name`` sets: the level at which it would
    have tried the slot, but never the last level, so the waiters of the last level (all
    the others) never lose their step over the waiters of the level before."""
    return min(attempt_level(slot_order(holder, list(names)).index(name), False), LEVELS - 1)


@dataclass
class _Seen:
    lease: LeaseView
    since: float


class RestartLock:
    def __init__(
        self,
        api: LeaseApi,
        namespace: str,
        holder: str,
        slots: int,
        clock: Clock,
        *,
        duration: int = 60,
        prefix: str = "nodelocaldns-agent-slot",
        jitter: float = 0.3,
        step: float = 0.3,
        watch_seconds: int = WATCH_SECONDS,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.holder = holder
        self.slots = slots
        self.clock = clock
        self.duration = duration
        self.names = tuple(slot_order(holder, [f"{prefix}-{i}" for i in range(slots)]))
        self._rank = {name: i for i, name in enumerate(self.names)}
        #: the slot names in one order for every node (the cache key of holder_level)
        self._canonical = tuple(sorted(self.names))
        self.watched = self.names if slots <= WATCH_ALL else self.names[:WATCHED]
        self.jitter = jitter
        self.step = step
        self.watch_seconds = watch_seconds
        self.rng = rng
        self.all_selector = f"{LEASE_LABEL}={LEASE_LABEL_VALUE}"
        self.selector = self.all_selector
        if self.partial:
            self.selector += f",{SLOT_LABEL} in ({','.join(sorted(self.watched))})"
        #: unwatched slots the last list showed free (each worth one attempt)
        self._spare: list[str] = []
        self.held: LeaseView | None = None
        #: local monotonic time when the request that last wrote ``held`` was sent
        self.held_since = 0.0
        self._seen: dict[str, _Seen] = {}
        #: per slot, the level at which its latest holder took it (see attempt_level)
        self._floor: dict[str, int] = {}
        self._changed = threading.Event()
        self._guard = threading.Lock()
        self._renewal = threading.Lock()
        #: moving average of the answer time of this lock's writes (seconds)
        self.latency = 0.0
        #: creates/replaces this waiter lost to another node (409) while waiting
        self.lost = 0
        self._watching = False

    @property
    def partial(self) -> bool:
        """True when this waiter watches only some of the slots."""
        return len(self.watched) < len(self.names)

    # ---------------------------------------------------------------- view
    def _observe(self, lease: LeaseView) -> None:
        with self._guard:
            old = self._seen.get(lease.name)
            if old is None or old.lease.resource_version != lease.resource_version:
                self._seen[lease.name] = _Seen(lease, self.clock.monotonic())
            if lease.holder and (old is None or old.lease.holder != lease.holder):
                self._floor[lease.name] = holder_level(lease.holder, lease.name, self._canonical)
        self._changed.set()

    def _forget(self, name: str) -> None:
        with self._guard:
            self._seen.pop(name, None)
        self._changed.set()

    def _candidates(self) -> list[tuple[str, LeaseView | None]]:
        """Slots worth trying, in this holder's order: free, expired (by local
        observation), or already ours."""
        now = self.clock.monotonic()
        out: list[tuple[str, LeaseView | None]] = []
        with self._guard:
            for name in self.watched:
                seen = self._seen.get(name)
                if seen is None:
                    out.append((name, None))
                elif not seen.lease.resource_version:
                    # A placeholder after a 409: held by someone, version unknown. Never
                    # "expired" (an update needs the real resourceVersion); the watch or
                    # the next list brings the real Lease.
                    continue
                elif seen.lease.holder in ("", self.holder) or now - seen.since > max(
                    seen.lease.duration_seconds, 1
                ):
                    out.append((name, seen.lease))
            out += [(name, None) for name in self._spare]
        return out

    def next_expiry(self) -> float:
        """Seconds until the earliest held slot would count as expired."""
        now = self.clock.monotonic()
        with self._guard:
            waits = [
                s.since + max(s.lease.duration_seconds, 1) - now
                for n, s in self._seen.items()
                if n in self.watched
            ]
        return max(min(waits, default=self.duration), 0.0)

    # ---------------------------------------------------------------- acquire
    def _answered(self, seconds: float) -> None:
        # one unanswered request (up to the 30 s timeout) must not park a waiter for minutes
        self.latency = 0.7 * self.latency + 0.3 * min(seconds, MAX_LATENCY_SAMPLE)

    def _level(self, name: str, lease: LeaseView | None) -> int:
        ours = lease is not None and lease.holder == self.holder
        return attempt_level(self._rank[name], ours, self._floor.get(name, 0))

    def try_acquire(self) -> bool:
        """One attempt over the current view; True when a slot is now ours.

        Waits for the level of the best candidate (see the module docstring) plus jitter,
        then tries, in this holder's order, the slots that are still candidates and whose
        level has passed.
        """
        candidates = self._candidates()
        if not candidates:
            return False
        level = min(self._level(name, lease) for name, lease in candidates)
        step = spacing(self.step, self.latency)
        jitter = spacing(self.jitter, self.latency, self.lost)
        self.clock.sleep(level * step + self.rng() * jitter)
        candidates = [
            (name, lease) for name, lease in self._candidates() if self._level(name, lease) <= level
        ]
        with self._guard:
            if self._spare:
                self._spare = []  # seen free by one list: worth one attempt, not more
        for name, lease in candidates:
            sent = self.clock.monotonic()
            try:
                try:
                    if lease is None:
                        got = self.api.create_lease(
                            self.namespace, name, self.holder, self.duration
                        )
                    else:
                        got = self.api.replace_lease(
                            self.namespace, name, self.holder, self.duration, lease.resource_version
                        )
                finally:
                    self._answered(self.clock.monotonic() - sent)
            except ApiError as exc:
                if exc.status == 409:
                    # Someone else was faster: count the slot as held (fresh) until the
                    # watch brings the real Lease, and spread out more next time.
                    self.lost += 1
                    placeholder = LeaseView(name, "?", "", self.duration, "")
                    with self._guard:
                        self._seen[name] = _Seen(placeholder, self.clock.monotonic())
                    continue
                if exc.status == 404:
                    self._forget(name)
                    continue
                raise
            self.held_since = sent
            self.lost = 0
            self._observe(got)
            self.held = got
            taken = (
                "took over expired"
                if lease is not None and lease.holder not in ("", self.holder)
                else "acquired"
            )
            event(log, f"restart slot {taken}", slot=name, previous=lease.holder if lease else "")
            return True
        return False

    def acquire(self, stop: threading.Event, max_wait: float, on_wait: Callable[[], None]) -> bool:
        """Wait up to ``max_wait`` seconds for a slot; False when none was free by then.

        The wait ends at a random point of its second half, and each lease watch lasts
        30-60 s: waiters that started together must not re-list and re-watch together
        (their requests would reach the API server as one burst)."""
        _, rv = self._refresh()
        if self.try_acquire():
            return True
        on_wait()
        deadline = self.clock.monotonic() + max_wait * (0.5 + 0.5 * self.rng())
        watcher = threading.Thread(
            target=self._watch, args=(rv, stop), daemon=True, name="lease-watch"
        )
        self._watching = True
        watcher.start()
        try:
            while not stop.is_set() and self.clock.monotonic() < deadline:
                left = deadline - self.clock.monotonic()
                self._changed.wait(timeout=max(min(self.next_expiry() + 0.05, left, 5.0), 0.0))
                self._changed.clear()
                if self.try_acquire():
                    return True
            return False
        finally:
            self._watching = False

    def _refresh(self) -> tuple[list[LeaseView], str]:
        """List the slot Leases; keeps when each was first seen unchanged (expiry).

        A waiter that watches only some slots lists all of them here (when a wait starts
        and at every new watch, every 30-60 s): a slot it does not watch that is free right
        now becomes a one-shot candidate of the last level. Near the end of a rollout no
        slot then stays idle just because none of the remaining waiters watches it.
        """
        leases, rv = self.api.list_leases(self.namespace, self.all_selector)
        watched = [lease for lease in leases if lease.name in self.watched]
        present = {lease.name for lease in leases}
        with self._guard:
            for name in list(self._seen):
                if name not in present:
                    del self._seen[name]
            self._spare = [n for n in self.names[len(self.watched) :] if n not in present]
        for lease in watched:
            self._observe(lease)
        self._changed.set()
        return watched, rv

    def _watch(self, rv: str, stop: threading.Event) -> None:
        while self._watching and not stop.is_set():
            try:
                timeout = int(self.watch_seconds * (1 + self.rng()))
                for kind, lease in self.api.watch_leases(
                    self.namespace, self.selector, rv, timeout
                ):
                    if not self._watching:
                        return
                    rv = lease.resource_version or rv
                    if kind == "DELETED":
                        self._forget(lease.name)
                    elif kind in ("ADDED", "MODIFIED"):
                        self._observe(lease)
                if self.partial and self._watching:
                    _, rv = self._refresh()  # a look at the slots this waiter does not watch
            except ApiError as exc:
                if exc.status == 410:
                    _, rv = self._refresh()
                    continue
                event(log, "lease watch failed; retrying", logging.WARNING, error=str(exc))
                stop.wait(1.0 + self.rng())

    # ---------------------------------------------------------------- hold
    def renew(self) -> None:
        """Refresh the held Lease so others do not take it over. Renewals and the release
        run one at a time (the renewal thread, :meth:`ensure_fresh` and :meth:`release`
        would otherwise race each other into 409s with stale resourceVersions)."""
        with self._renewal:
            held = self.held
            if held is None:
                return
            sent = self.clock.monotonic()
            try:
                # never a PUT: it would re-create a Lease deleted meanwhile (see renew_lease)
                self.held = self.api.renew_lease(
                    self.namespace, held.name, self.holder, self.duration, held.resource_version
                )
                self.held_since = sent
            except ApiError as exc:
                if exc.status in (404, 409):
                    event(log, "restart slot lost to another holder", logging.ERROR, slot=held.name)
                    self.held = None
                    raise TransientError(f"restart slot lost: {exc}") from exc
                raise

    def ensure_fresh(self) -> None:
        """Renew unless the held Lease was written within the last third of its duration.

        Others count a Lease as expired only ``duration`` seconds after they first saw it
        unchanged, which is after the server applied our write, which is after we sent it:
        a write sent less than ``duration / 3`` ago leaves at least two thirds of the
        duration before anyone may take the slot over.
        """
        if self.held is not None and self.clock.monotonic() - self.held_since > self.duration / 3:
            self.renew()

    def release(self) -> None:
        with self._renewal:
            held, self.held = self.held, None
        if held is None:
            return
        try:
            try:
                self.api.delete_lease(self.namespace, held.name, held.resource_version)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                # Our last renewal may have been applied without us seeing the answer
                # (e.g. a 5xx after commit): delete what is still ours, at its version.
                current = self.api.get_lease(self.namespace, held.name)
                if current is None or current.holder != self.holder:
                    raise
                self.api.delete_lease(self.namespace, held.name, current.resource_version)
            event(log, "restart slot released", slot=held.name)
        except ApiError as exc:
            # 404/409: already gone or taken over; anything else: it expires by itself.
            event(
                log,
                "restart slot not released; it will expire",
                logging.WARNING,
                slot=held.name,
                error=str(exc),
            )
