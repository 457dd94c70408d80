"""A log of API requests with counters per (method, path template, User-Agent)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    time: float  # time.monotonic() when the response started
    method: str
    path: str
    query: str
    template: str  # e.g. /api/v1/nodes/{name}
    verb: str  # get, list, watch, create, update, patch, delete, evict, discovery, ...
    user_agent: str
    status: int
    duration: float  # seconds until the response started (for watches: until headers)
    content_type: str = ""  # of the request body (tells merge/strategic/json patches apart)


CounterKey = tuple[str, str, str]  # (method, template, user agent)


class RequestLog:
    """Keeps the last ``maxlen`` records and unbounded counters."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self._counts: Counter[CounterKey] = Counter()
        self._by_agent: Counter[str] = Counter()
        self._total = 0

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._records.append(rec)
            self._counts[(rec.method, rec.template, rec.user_agent)] += 1
            self._by_agent[rec.user_agent] += 1
            self._total += 1

    @property
    def total(self) -> int:
        with self._lock:
            return self._total

    def counts(self) -> dict[CounterKey, int]:
        """Requests per (method, path template, User-Agent) since the last clear."""
        with self._lock:
            return dict(self._counts)

    def by_user_agent(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_agent)

    def records(
        self,
        *,
        method: str | None = None,
        template: str | None = None,
        path: str | None = None,
        verb: str | None = None,
        user_agent: str | None = None,
        status: int | None = None,
        since: float | None = None,
    ) -> list[RequestRecord]:
        """Kept records matching all given filters (``path``/``user_agent`` are regexes)."""
        with self._lock:
            records = list(self._records)
        return [
            r
            for r in records
            if (method is None or r.method == method.upper())
            and (template is None or r.template == template)
            and (path is None or re.search(path, r.path))
            and (verb is None or r.verb == verb)
            and (user_agent is None or re.search(user_agent, r.user_agent))
            and (status is None or r.status == status)
            and (since is None or r.time >= since)
        ]

    def count(self, **filters: Any) -> int:
        """``len(records(**filters))``, e.g. ``count(verb="patch", user_agent="^agent/")``."""
        return len(self.records(**filters))

    def rate(self, window: float, **filters: Any) -> float:
        """Matching requests per second over the last ``window`` seconds."""
        since = time.monotonic() - window
        return self.count(since=since, **filters) / window

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._counts.clear()
            self._by_agent.clear()
            self._total = 0

    def snapshot(self, recent: int = 100) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "byUserAgent": dict(self._by_agent),
                "counts": [
                    {"method": m, "template": t, "userAgent": ua, "count": n}
                    for (m, t, ua), n in sorted(self._counts.items())
                ],
                "recent": [asdict(r) for r in list(self._records)[-recent:]] if recent else [],
            }
