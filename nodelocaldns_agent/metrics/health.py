"""Liveness and readiness of the daemon loop (``/healthz``, ``/readyz``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from nodelocaldns_agent.errors import ConfigError

#: /healthz fails after this many of the loop's longest sleeps without an iteration.
STALL_FACTOR = 5


class Health:
    """Liveness and readiness of the daemon loop, independent of the local DNS.

    The loop calls :meth:`beat` every iteration and :meth:`mark_ready` after its first
    completed reconcile. ``/healthz`` fails once no beat came for ``stall_after`` seconds
    (default STALL_FACTOR x ``max_sleep``, the loop's longest sleep); make it longer than
    the longest step done without a beat (a restart with its verification and rollback).
    ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        *,
        max_sleep: float = 60.0,
        stall_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after = STALL_FACTOR * max_sleep if stall_after is None else stall_after
        if not self.stall_after > 0:
            raise ConfigError(f"health stall_after: expected seconds > 0, got {self.stall_after}")
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()
        self._ready = False

    def beat(self) -> None:
        with self._lock:
            self._last_beat = self._clock()

    def mark_ready(self) -> None:
        with self._lock:
            self._ready = True

    def live(self) -> tuple[bool, str]:
        with self._lock:
            age = self._clock() - self._last_beat
        if age > self.stall_after:
            return False, (
                f"stalled: no loop iteration for {age:.0f}s (limit {self.stall_after:g}s)"
            )
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            ready = self._ready
        return (True, "ok") if ready else (False, "not ready: no reconcile completed yet")
