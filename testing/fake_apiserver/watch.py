"""WATCH: turning the store's event history into a stream of watch events.

The HTTP layer supplies a :class:`WatchSink` (a chunked response); :func:`run_watch` writes
``{"type": ..., "object": ...}`` events to it until the client goes away, the watch times
out, the server stops, or a fault drops it.

Semantics follow kube-apiserver:

* ``resourceVersion`` unset, ``""`` or ``"0"``: synthetic ``ADDED`` events for the current
  objects, then changes. ``sendInitialEvents=true`` does the same whatever the
  resourceVersion and, with bookmarks allowed, ends the initial burst with a ``BOOKMARK``
  annotated ``k8s.io/initial-events-end: "true"``.
* Any other resourceVersion: replay the history newer than it, then follow. A version older
  than the kept history (or a forced expiry) gets one ``ERROR`` event carrying a Status
  ``410 Expired`` and the stream ends; HTTP status stays 200, as on a real cluster.
* A resourceVersion newer than the server's: the watch is accepted and stays silent until
  the server gets there (the cache watcher only sends events newer than the watch's
  resourceVersion, ``cache_watcher.go``; "Watch requests for an unrecognized resource
  version may wait indefinitely (until the request timeout)", API concepts, "Unavailable
  resource versions"). With ``sendInitialEvents=true`` the server waits up to 3 s and then
  sends one ``ERROR`` event with the 504 "Too large resource version" Status
  (``Cacher.Watch`` -> ``waitUntilFreshAndBlock`` -> ``newErrWatcher``).
* With selectors, an object that starts matching arrives as ``ADDED`` and one that stops
  matching as ``DELETED``.
* ``allowWatchBookmarks=true``: a ``BOOKMARK`` (only ``metadata.resourceVersion`` set) every
  ``bookmark_interval`` seconds (a minute by default) and one 2 s before the watch's deadline,
  never after it (``cacheWatcher.nextBookmarkTime``), and only with a resourceVersion the
  watch has not passed (the first one may repeat the watch's own).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .faults import Faults
from .resources import ResourceType
from .selectors import Predicate, object_predicate
from .status import ApiError, bad_request, expired, too_large_resource_version
from .store import Event, Store, Subscription

JSON = dict[str, Any]
#: how often an idle watch checks for client loss (stop, drop and changes wake it at once)
POLL_SECONDS = 1.0
#: the deadline bookmark comes this long before the watch's end (cache_watcher.go)
PRE_DEADLINE_BOOKMARK = 2.0


class WatchSink(Protocol):
    def send(self, event: JSON) -> None:
        """Write one event; raises OSError once the client is gone."""

    def send_line(self, data: bytes) -> None:
        """Write one event already encoded as a JSON line."""

    def client_gone(self) -> bool: ...


class Outcome(enum.Enum):
    ENDED = "ended"  # end the chunked body properly
    ABORTED = "aborted"  # cut the connection mid-stream
    CLIENT_GONE = "client-gone"


@dataclass
class WatchParams:
    rt: ResourceType
    namespace: str | None
    predicate: Predicate
    resource_version: str | None
    send_initial_events: bool
    allow_bookmarks: bool
    timeout: float | None
    #: the object name a ``metadata.name=`` field selector pins the watch to
    name: str | None = None

    @property
    def is_resume(self) -> bool:
        return self.resource_version not in (None, "", "0")

    @classmethod
    def from_query(
        cls,
        rt: ResourceType,
        namespace: str | None,
        query: Mapping[str, str],
        default_timeout: float | None,
    ) -> WatchParams:
        """Validate the query (before any response header is sent; errors are a 400)."""
        rv = query.get("resourceVersion")
        if rv not in (None, "") and not str(rv).isdigit():
            raise bad_request(f"invalid resource version: {rv!r}")
        timeout: float | None = default_timeout
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError as e:
                raise bad_request(f"invalid timeoutSeconds: {query['timeoutSeconds']!r}") from e
        return cls(
            rt=rt,
            namespace=namespace,
            predicate=object_predicate(rt, query.get("labelSelector"), query.get("fieldSelector")),
            resource_version=rv,
            send_initial_events=_flag(query.get("sendInitialEvents")),
            allow_bookmarks=_flag(query.get("allowWatchBookmarks")),
            timeout=timeout,
            name=_pinned_name(query.get("fieldSelector")),
        )


def _pinned_name(field_selector: str | None) -> str | None:
    """``X`` of a ``metadata.name=X`` (or ``==``) term of a field selector, else None."""
    for term in (field_selector or "").split(","):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and not key.endswith("!") and key.strip() == "metadata.name":
            return value.strip()
    return None


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _visible(obj: JSON | None, params: WatchParams) -> bool:
    if obj is None:
        return False
    if params.namespace is not None and obj["metadata"].get("namespace") != params.namespace:
        return False
    return params.predicate(obj)


def translate(event: Event, params: WatchParams) -> str | None:
    """The event type this watcher sees (selector transitions become ADDED/DELETED), or
    None when it sees nothing."""
    new_ok = _visible(event.obj, params)
    old_ok = _visible(event.old, params)
    if event.type == "ADDED":
        return "ADDED" if new_ok else None
    if event.type == "DELETED":
        return "DELETED" if (old_ok or new_ok) else None
    if new_ok:
        return "MODIFIED" if old_ok else "ADDED"
    return "DELETED" if old_ok else None


def _bookmark(rt: ResourceType, rv: int, initial_end: bool = False) -> JSON:
    metadata: JSON = {"resourceVersion": str(rv)}
    if initial_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata},
    }


def _error(err: ApiError) -> JSON:
    return {"type": "ERROR", "object": err.to_status()}


def run_watch(
    store: Store,
    faults: Faults,
    params: WatchParams,
    sink: WatchSink,
    *,
    bookmark_interval: float,
    closing: threading.Event,
    too_large_wait: float = 3.0,
) -> Outcome:
    started = time.monotonic()
    deadline = started + params.timeout if params.timeout is not None else None
    drop_epoch, _ = faults.drop_state()

    if faults.take_watch_expiry(params.is_resume):
        sink.send(_error(expired(f"too old resource version: {params.resource_version} (forced)")))
        return Outcome.ENDED

    requested = int(params.resource_version or 0) if params.is_resume else 0
    if (
        params.send_initial_events
        and requested
        and not store.wait_until_fresh(requested, too_large_wait)
    ):
        sink.send(_error(too_large_resource_version(requested, store.resource_version)))
        return Outcome.ENDED

    with store.cond:
        initial: list[JSON] = []
        if not params.is_resume or params.send_initial_events:
            initial, last = store.list(params.rt, params.namespace, params.predicate)
        else:
            last = requested
            try:
                store.events_since(params.rt, last)
            except ApiError as err:
                sink.send(_error(err))
                return Outcome.ENDED
    for obj in initial:
        sink.send({"type": "ADDED", "object": obj})
    if params.send_initial_events and params.allow_bookmarks:
        sink.send(_bookmark(params.rt, last, initial_end=True))

    name = params.name
    sub = store.subscribe(params.rt, lambda event: translate(event, params) is not None, name)
    try:
        return _follow(
            store,
            faults,
            params,
            sink,
            sub,
            last,
            drop_epoch,
            (started, deadline),
            bookmark_interval,
            closing,
        )
    finally:
        store.unsubscribe(params.rt, sub, name)


def next_bookmark(now: float, interval: float, deadline: float | None) -> float | None:
    """When the next BOOKMARK is due: ``interval`` from now, or 2 s before the deadline if
    that is sooner; None once that moment has passed (``cacheWatcher.nextBookmarkTime``)."""
    due = now + interval
    if deadline is not None:
        due = min(due, deadline - PRE_DEADLINE_BOOKMARK)
    return None if due < now else due


def _follow(
    store: Store,
    faults: Faults,
    params: WatchParams,
    sink: WatchSink,
    sub: Subscription,
    last: int,
    drop_epoch: int,
    window: tuple[float, float | None],
    bookmark_interval: float,
    closing: threading.Event,
) -> Outcome:
    started, deadline = window
    start_rv = last
    sent_start_bookmark = False
    bookmark_due = next_bookmark(started, bookmark_interval, deadline)
    while True:
        failure: ApiError | None = None
        events: list[Event] = []
        with store.cond:
            try:
                events = store.events_since(params.rt, last)
                if not events:
                    waits = [POLL_SECONDS]
                    if deadline is not None:
                        waits.append(deadline - time.monotonic())
                    if params.allow_bookmarks and bookmark_due is not None:
                        waits.append(bookmark_due - time.monotonic())
                    store.wait_for_change(sub, max(0.0, min(waits)))
                    events = store.events_since(params.rt, last)
                current = store.resource_version
                last = max(last, current)
            except ApiError as err:
                failure = err
        if failure is not None:
            sink.send(_error(failure))
            return Outcome.ENDED
        for event in events:
            kind = translate(event, params)
            if kind is not None:
                sink.send_line(event.line(kind, params.rt))

        epoch, graceful = faults.drop_state()
        if epoch != drop_epoch:
            return Outcome.ENDED if graceful else Outcome.ABORTED
        if closing.is_set():
            return Outcome.ENDED
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return Outcome.ENDED
        if params.allow_bookmarks and bookmark_due is not None and now >= bookmark_due:
            # The bookmark carries what the server has reached; a watch still waiting for a
            # resourceVersion it has not reached gets none.
            mark = min(last, current)
            if mark > start_rv or (mark == start_rv and not sent_start_bookmark):
                sink.send(_bookmark(params.rt, mark))
                sent_start_bookmark = sent_start_bookmark or mark == start_rv
            bookmark_due = next_bookmark(now, bookmark_interval, deadline)
        if sink.client_gone():
            return Outcome.CLIENT_GONE
