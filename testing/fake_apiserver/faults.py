"""Thread-safe fault injection: failures, latency, conflicts, watch drops and expiries.

Rules match a request on any combination of HTTP ``method`` (exact, case-insensitive),
``path`` (regex searched in the URL path, no query), ``verb`` (get, list, watch, create,
update, patch, delete, evict, ...) and ``user_agent`` (regex searched in ``User-Agent``).
Requests to the control API (``/_fake/...``) are never faulted.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .status import REASONS, ApiError

_ids = itertools.count(1)


@dataclass(frozen=True)
class RequestInfo:
    method: str
    path: str
    verb: str
    user_agent: str
    resource: str = ""  # storage key, e.g. "nodes" or "leases.coordination.k8s.io"
    namespace: str = ""
    name: str = ""


@dataclass
class Match:
    method: str | None = None
    path: str | None = None
    verb: str | None = None
    user_agent: str | None = None

    def __post_init__(self) -> None:
        for pattern in (self.path, self.user_agent):
            if pattern is not None:
                re.compile(pattern)

    def matches(self, req: RequestInfo) -> bool:
        return (
            (self.method is None or self.method.upper() == req.method)
            and (self.verb is None or self.verb.lower() == req.verb)
            and (self.path is None or re.search(self.path, req.path) is not None)
            and (self.user_agent is None or re.search(self.user_agent, req.user_agent) is not None)
        )


@dataclass
class FailRule:
    id: int
    status: int
    match: Match
    remaining: int | None  # None: every matching request
    reason: str | None = None
    message: str | None = None
    retry_after: int | None = None
    # True: perform the request, then answer the error anyway (a lost response).
    after_commit: bool = False
    hits: int = 0

    def error(self) -> ApiError:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return ApiError(
            self.status,
            self.message or f"fake apiserver: injected {self.status}",
            self.reason or REASONS.get(self.status, "InternalError"),
            headers=headers,
        )


@dataclass
class DelayRule:
    id: int
    seconds: float
    match: Match
    remaining: int | None
    hits: int = 0


@dataclass
class _ConflictFirstWrite:
    enabled: bool = False
    resources: frozenset[str] | None = None  # storage keys; None: all
    seen: set[tuple[str, str, str]] = field(default_factory=set)


class Faults:
    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Lock()
        self._on_change = on_change
        self._fail: list[FailRule] = []
        self._delay: list[DelayRule] = []
        self._conflict = _ConflictFirstWrite()
        self._cancel = threading.Event()
        self._drop_epoch = 0
        self._drop_graceful = False
        self._expire_next = 0
        self._expire_resume_only = True

    # --- configuring -----------------------------------------------------------------------

    def fail(
        self,
        status: int = 500,
        *,
        count: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        verb: str | None = None,
        user_agent: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        after_commit: bool = False,
    ) -> int:
        """Fail the next ``count`` matching requests (``None``: all of them) with ``status``.

        The answer is a proper Status (reason from ``status`` unless given). With
        ``after_commit`` the request takes effect first and only the response is an error.
        Returns a rule id for :meth:`remove`.
        """
        rule = FailRule(
            next(_ids),
            status,
            Match(method, path, verb, user_agent),
            count,
            reason,
            message,
            retry_after,
            after_commit,
        )
        with self._lock:
            self._fail.append(rule)
        return rule.id

    def delay(
        self,
        seconds: float,
        *,
        count: int | None = None,
        method: str | None = None,
        path: str | None = None,
        verb: str | None = None,
        user_agent: str | None = None,
    ) -> int:
        """Stall matching requests ``seconds`` before handling them (``count=None``: all).

        Stalls are interruptible: :meth:`clear` and server stop end them at once.
        """
        rule = DelayRule(next(_ids), seconds, Match(method, path, verb, user_agent), count)
        with self._lock:
            self._delay.append(rule)
        return rule.id

    def conflict_on_first_write(
        self, enabled: bool = True, resources: Iterable[str] | None = None
    ) -> None:
        """Answer 409 Conflict to the first update (PUT/PATCH) of each distinct object.

        ``resources`` limits it to storage keys such as ``"nodes"`` or
        ``"leases.coordination.k8s.io"``. Re-enabling forgets which objects were seen.
        """
        with self._lock:
            self._conflict = _ConflictFirstWrite(
                enabled, frozenset(resources) if resources is not None else None
            )

    def drop_watches(self, graceful: bool = False) -> None:
        """End every open watch stream now.

        ``graceful=False`` closes the TCP connection mid-stream (the client sees a broken
        chunked response, ``urllib3.exceptions.ProtocolError``); ``graceful=True`` ends the
        chunked body properly, as when a server-side watch timeout expires.
        """
        with self._lock:
            self._drop_epoch += 1
            self._drop_graceful = graceful
        self._on_change()

    def expire_next_watch(self, count: int = 1, resume_only: bool = True) -> None:
        """The next ``count`` watches get an ERROR 410 Expired event instead of events.

        With ``resume_only`` only watches that pass a resourceVersion other than ""/"0"
        (i.e. resumes) are affected.
        """
        with self._lock:
            self._expire_next = count
            self._expire_resume_only = resume_only

    def remove(self, rule_id: int) -> None:
        with self._lock:
            self._fail = [r for r in self._fail if r.id != rule_id]
            self._delay = [r for r in self._delay if r.id != rule_id]

    def clear(self) -> None:
        """Remove every fault and wake requests currently stalled by a delay."""
        with self._lock:
            self._fail.clear()
            self._delay.clear()
            self._conflict = _ConflictFirstWrite()
            self._expire_next = 0
            self._cancel.set()
            self._cancel = threading.Event()

    def cancel_sleeps(self) -> None:
        """End current stalls and skip future ones until :meth:`rearm` (server stopping)."""
        with self._lock:
            self._cancel.set()

    def rearm(self) -> None:
        """Let delay rules stall again (server starting)."""
        with self._lock:
            if self._cancel.is_set():
                self._cancel = threading.Event()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "fail": [asdict(r) for r in self._fail],
                "delay": [asdict(r) for r in self._delay],
                "conflictOnFirstWrite": {
                    "enabled": self._conflict.enabled,
                    "resources": sorted(self._conflict.resources)
                    if self._conflict.resources is not None
                    else None,
                    "seen": len(self._conflict.seen),
                },
                "dropEpoch": self._drop_epoch,
                "expireNextWatch": self._expire_next,
            }

    # --- consulted by the request handler --------------------------------------------------

    def take_failure(self, req: RequestInfo) -> FailRule | None:
        with self._lock:
            for rule in self._fail:
                if rule.match.matches(req):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._fail.remove(rule)
                    return rule
        return None

    def stall(self, req: RequestInfo) -> float:
        """Sleep for the matching delay rules (interruptibly); returns the seconds asked."""
        total = 0.0
        with self._lock:
            for rule in list(self._delay):
                if rule.match.matches(req):
                    rule.hits += 1
                    total += rule.seconds
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._delay.remove(rule)
            cancel = self._cancel
        if total > 0:
            cancel.wait(total)
        return total

    def take_first_write_conflict(self, req: RequestInfo) -> bool:
        with self._lock:
            state = self._conflict
            if not state.enabled:
                return False
            if state.resources is not None and req.resource not in state.resources:
                return False
            key = (req.resource, req.namespace, req.name)
            if key in state.seen:
                return False
            state.seen.add(key)
            return True

    def take_watch_expiry(self, is_resume: bool) -> bool:
        with self._lock:
            if self._expire_next <= 0 or (self._expire_resume_only and not is_resume):
                return False
            self._expire_next -= 1
            return True

    def drop_state(self) -> tuple[int, bool]:
        with self._lock:
            return self._drop_epoch, self._drop_graceful
