"""The cluster-wide restart limit: at most ``slots`` kubelet restarts in flight.

One ``coordination.k8s.io/v1`` Lease per slot (``<prefix>-<i>``) in the agent's namespace,
holder = node name. A slot is taken by *creating* its Lease (409 when someone else did) or
by *replacing* an expired one with the resourceVersion that was seen (409 when someone
renewed or took it first), so two holders can never both succeed. Expiry is judged by the
local clock from when this agent first saw a Lease unchanged (like client-go's leader
election), so clock skew between nodes cannot make a live holder look expired. A holder
renews while it works and deletes its Lease (with a resourceVersion precondition) after
kubelet was verified; a crashed holder's Lease expires after ``duration`` seconds.

Waiters do not poll: they watch the slot Leases and try only when one is free or expired,
after a random jitter, so a freed slot is taken within milliseconds at a cost of about one
request per hand-over, not one per waiter.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from agent.errors import TransientError
from agent.host.probes import Clock
from agent.kube.api import LEASE_LABEL, LEASE_LABEL_VALUE, ApiError
from agent.kube.types import LeaseView
from agent.logs import event

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
    def delete_lease(self, namespace: str, name: str, resource_version: str) -> None: ...


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
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.holder = holder
        self.slots = slots
        self.clock = clock
        self.duration = duration
        self.names = [f"{prefix}-{i}" for i in range(slots)]
        self.jitter = jitter
        self.rng = rng
        self.selector = f"{LEASE_LABEL}={LEASE_LABEL_VALUE}"
        self.held: LeaseView | None = None
        self._seen: dict[str, _Seen] = {}
        self._changed = threading.Event()
        self._guard = threading.Lock()
        self._watching = False

    # ---------------------------------------------------------------- view
    def _observe(self, lease: LeaseView) -> None:
        with self._guard:
            old = self._seen.get(lease.name)
            if old is None or old.lease.resource_version != lease.resource_version:
                self._seen[lease.name] = _Seen(lease, self.clock.monotonic())
        self._changed.set()

    def _forget(self, name: str) -> None:
        with self._guard:
            self._seen.pop(name, None)
        self._changed.set()

    def _candidates(self) -> list[tuple[str, LeaseView | None]]:
        """Slots worth trying: free, expired (by local observation), or already ours."""
        now = self.clock.monotonic()
        out: list[tuple[str, LeaseView | None]] = []
        with self._guard:
            for name in self.names:
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
        return out

    def next_expiry(self) -> float:
        """Seconds until the earliest held slot would count as expired."""
        now = self.clock.monotonic()
        with self._guard:
            waits = [
                s.since + max(s.lease.duration_seconds, 1) - now
                for n, s in self._seen.items()
                if n in self.names
            ]
        return max(min(waits, default=self.duration), 0.0)

    # ---------------------------------------------------------------- acquire
    def try_acquire(self) -> bool:
        """One attempt over the current view; True when a slot is now ours."""
        candidates = self._candidates()
        if candidates:
            self.clock.sleep(self.rng() * self.jitter)
            candidates = self._candidates()
        for name, lease in candidates:
            try:
                if lease is None:
                    got = self.api.create_lease(self.namespace, name, self.holder, self.duration)
                else:
                    got = self.api.replace_lease(
                        self.namespace, name, self.holder, self.duration, lease.resource_version
                    )
            except ApiError as exc:
                if exc.status == 409:
                    # Someone else was faster: count the slot as held (fresh) until the
                    # watch brings the real Lease.
                    placeholder = LeaseView(name, "?", "", self.duration, "")
                    with self._guard:
                        self._seen[name] = _Seen(placeholder, self.clock.monotonic())
                    continue
                if exc.status == 404:
                    self._forget(name)
                    continue
                raise
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
        """Wait up to ``max_wait`` seconds for a slot; False when none was free by then."""
        _, rv = self._refresh()
        if self.try_acquire():
            return True
        on_wait()
        deadline = self.clock.monotonic() + max_wait
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
        """List the slot Leases; keeps when each was first seen unchanged (expiry)."""
        leases, rv = self.api.list_leases(self.namespace, self.selector)
        present = {lease.name for lease in leases}
        with self._guard:
            for name in list(self._seen):
                if name not in present:
                    del self._seen[name]
        for lease in leases:
            self._observe(lease)
        return leases, rv

    def _watch(self, rv: str, stop: threading.Event) -> None:
        while self._watching and not stop.is_set():
            try:
                for kind, lease in self.api.watch_leases(self.namespace, self.selector, rv, 30):
                    if not self._watching:
                        return
                    rv = lease.resource_version or rv
                    if kind == "DELETED":
                        self._forget(lease.name)
                    elif kind in ("ADDED", "MODIFIED"):
                        self._observe(lease)
            except ApiError as exc:
                if exc.status == 410:
                    _, rv = self._refresh()
                    continue
                event(log, "lease watch failed; retrying", logging.WARNING, error=str(exc))
                stop.wait(1.0 + self.rng())

    # ---------------------------------------------------------------- hold
    def renew(self) -> None:
        """Refresh the held Lease so others do not take it over."""
        if self.held is None:
            return
        try:
            self.held = self.api.replace_lease(
                self.namespace,
                self.held.name,
                self.holder,
                self.duration,
                self.held.resource_version,
            )
        except ApiError as exc:
            if exc.status == 409:
                event(
                    log, "restart slot lost to another holder", logging.ERROR, slot=self.held.name
                )
                self.held = None
                raise TransientError(f"restart slot lost: {exc}") from exc
            raise

    def release(self) -> None:
        if self.held is None:
            return
        held, self.held = self.held, None
        try:
            self.api.delete_lease(self.namespace, held.name, held.resource_version)
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
