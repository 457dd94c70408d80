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
    #: seconds between BOOKMARK events (allowWatchBookmarks); kube-apiserver: about a minute
    #: (cacher.go, defaultBookmarkFrequency), plus one 2 s before the watch's deadline
    bookmark_interval: float = 60.0
    watch_timeout: float | None = 1800.0  # server-side cap when a watch gives no timeoutSeconds
    #: how long a read or a watch with sendInitialEvents waits for a resourceVersion the
    #: server has not reached before "Too large resource version" (watch_cache.go, 3 s)
    too_large_wait: float = 3.0
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
