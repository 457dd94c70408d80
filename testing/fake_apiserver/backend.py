"""The state shared by the HTTP handlers, the control API and the Python API."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .evictions import EvictionPolicy
from .faults import Faults
from .requestlog import RequestLog
from .store import Store


@dataclass
class Backend:
    store: Store
    faults: Faults
    requests: RequestLog
    evictions: EvictionPolicy
    bookmark_interval: float = 1.0  # seconds between BOOKMARK events (allowWatchBookmarks)
    watch_timeout: float | None = 1800.0  # server-side cap when a watch gives no timeoutSeconds
    server_address: str = ""  # host:port, for /api discovery
    closing: threading.Event = field(default_factory=threading.Event)
    _watch_lock: threading.Lock = field(default_factory=threading.Lock)
    _watches: int = 0

    def watch_started(self) -> None:
        with self._watch_lock:
            self._watches += 1

    def watch_finished(self) -> None:
        with self._watch_lock:
            self._watches -= 1

    @property
    def active_watches(self) -> int:
        with self._watch_lock:
            return self._watches

    def reset(self) -> None:
        self.store.reset()
        self.faults.clear()
        self.requests.clear()
        self.evictions.clear()
