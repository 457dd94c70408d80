"""In-memory object storage with etcd-like resourceVersions and a watch-cache-like history.

* One global, monotonically increasing resourceVersion (like an etcd revision), rendered as a
  string in ``metadata.resourceVersion``. Every write that changes an object bumps it; a write
  that leaves the object byte-for-byte identical is a no-op (no new resourceVersion, no watch
  event), exactly like kube-apiserver.
* Per storage, the events of the last ``history_window`` seconds (75 s by default, the watch
  cache's ``eventFreshDuration``) are kept, at most ``history_size`` of them, so a watch can
  resume from a resourceVersion; anything older is gone and a watch from it gets 410.
* Like etcd under kube-apiserver's compactor, revisions older than the last compaction are
  gone: a ``continue`` token issued before it gets 410 (see ``api``).
* Objects are stored in one schema per storage; ``events.k8s.io/v1`` Events are stored as
  core/v1 Events and converted on the way in and out (``conversion``).
* Pods are deleted gracefully (``deletionTimestamp`` + grace period), then removed when the
  grace period is over (what kubelet's final delete does), by :meth:`Store.reap_terminations`.
* All reads return deep copies; stored dicts are never mutated in place, so watch threads can
  serialise history entries without holding the lock.
"""

from __future__ import annotations

import bisect
import builtins
import copy
import dataclasses
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import validation
from .conversion import from_storage, to_storage
from .resources import RESOURCES, ResourceType
from .selectors import Predicate
from .status import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    conflict_on_kind,
    expired,
    not_found,
)

JSON = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"

#: the watch cache keeps events at least this long (cacher's DefaultEventFreshDuration:
#: defaultBookmarkFrequency + 15 s; staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go)
DEFAULT_HISTORY_WINDOW = 75.0
#: and at most this many per resource (watch_cache.go, defaultUpperBoundCapacity)
DEFAULT_HISTORY_SIZE = 100 * 1024
#: pods without spec.terminationGracePeriodSeconds get this (the v1 defaulting,
#: DefaultTerminationGracePeriodSeconds in staging/src/k8s.io/api/core/v1/types.go)
DEFAULT_TERMINATION_GRACE_PERIOD = 30

STORAGE_KEYS: tuple[str, ...] = tuple(sorted({rt.storage for rt in RESOURCES}))
#: the type whose schema each storage keeps (the one that does not borrow another's)
STORAGE_TYPES: dict[str, ResourceType] = {
    rt.storage: rt for rt in RESOURCES if not rt.shares_storage_of
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """One change, as kept in the watch history (``old`` is the previous state); objects
    are in the stored schema, ``time`` is when it happened (the store's clock)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: JSON
    old: JSON | None
    time: float = 0.0
    _lines: dict[tuple[str, str], bytes] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    def line(self, kind: str, rt: ResourceType | None = None) -> bytes:
        """The watch event ``{"type": kind, "object": obj}`` (as ``rt`` serves it) as one
        JSON line, encoded once however many watches send it (kube-apiserver's watch cache
        does the same)."""
        cache_key = (kind, rt.api_version if rt is not None else "")
        data = self._lines.get(cache_key)
        if data is None:
            obj = from_storage(rt, self.obj) if rt is not None else self.obj
            text = json.dumps({"type": kind, "object": obj}, separators=(",", ":"))
            data = self._lines.setdefault(cache_key, text.encode() + b"\n")
        return data


@dataclass(eq=False)
class Subscription:
    """One watch waiting for events (see :meth:`Store.subscribe`)."""

    cond: threading.Condition
    interested: Callable[[Event], bool]


def _meta(obj: JSON) -> JSON:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be a JSON object")
    return meta


def _label_value_ok(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None


def _should_delete_during_update(new: JSON, old: JSON) -> bool:
    """ShouldDeleteDuringUpdate (generic registry store.go): the update removed the last
    finalizer of an object whose deletion is pending with no grace period left."""
    old_meta = old["metadata"]
    if new["metadata"].get("finalizers") or not old_meta.get("deletionTimestamp"):
        return False
    return not old_meta.get("deletionGracePeriodSeconds")


class Store:
    def __init__(
        self,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_window: float | None = DEFAULT_HISTORY_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        grace_period_scale: float = 1.0,
    ) -> None:
        # One lock for everything; ``cond`` wakes on any change. Watches subscribe instead
        # and are woken only by changes they can see, like kube-apiserver's watch cache,
        # which filters each event for each watcher before it wakes anything (with a
        # thousand single-node watches, waking every watch on every Node patch cost more
        # than the requests themselves).
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)
        self._subscriptions: dict[str, set[Subscription]] = {k: set() for k in STORAGE_KEYS}
        self._named: dict[tuple[str, str], set[Subscription]] = {}
        self.history_size = history_size
        self.history_window = history_window
        self.clock = clock
        #: real seconds per second of a pod's grace period (tests shorten it)
        self.grace_period_scale = grace_period_scale
        self._rv = 0
        self._objects: dict[str, dict[Key, JSON]] = {k: {} for k in STORAGE_KEYS}
        self._history: dict[str, deque[Event]] = {k: deque() for k in STORAGE_KEYS}
        self._floor: dict[str, int] = dict.fromkeys(STORAGE_KEYS, 0)
        self._compacted = 0  # revisions before this one are compacted away (etcd)
        self._last_compaction_mark = 0
        # graceful deletions in progress: (storage, key) -> (due on the clock, uid)
        self._terminating: dict[tuple[str, Key], tuple[float, str]] = {}

    # --- reads ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self.cond:
            return self._rv

    @property
    def compacted_revision(self) -> int:
        with self.cond:
            return self._compacted

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> JSON:
        with self.cond:
            obj = self._objects[rt.storage].get(self._key(rt, namespace, name))
            if obj is None:
                raise not_found(rt, name)
            return self._out(rt, obj)

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> JSON | None:
        try:
            return self.get(rt, namespace, name)
        except ApiError:
            return None

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        predicate: Predicate | None = None,
    ) -> tuple[list[JSON], int]:
        """Matching objects sorted by (namespace, name), and the list's resourceVersion.

        ``predicate`` sees objects in the stored schema (field selectors are mapped onto it).
        """
        with self.cond:
            items = [
                self._out(rt, obj)
                for key, obj in sorted(self._objects[rt.storage].items())
                if (namespace is None or key[0] == namespace)
                and (predicate is None or predicate(obj))
            ]
            return items, self._rv

    def wait_until_fresh(self, resource_version: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the store to reach ``resource_version``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self._rv < resource_version:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    # --- writes --------------------------------------------------------------------------------

    def create(self, rt: ResourceType, body: JSON, namespace: str | None = None) -> JSON:
        obj = copy.deepcopy(body)
        self._check_type(rt, obj)
        meta = _meta(obj)
        if rt.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(_GENERATE_CHARS, k=5))  # noqa: S311 - not crypto
            meta["name"] = f"{meta['generateName']}{suffix}"
        name = meta.get("name") or ""
        if not name:
            raise validation.invalid_error(
                *self._kind(rt),
                name,
                [validation.required("metadata.name", "name or generateName is required")],
            )
        if meta.get("resourceVersion"):
            # kube-apiserver answers this with a 500 too.
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        stored = to_storage(rt, obj)
        validation.check_decodable(rt, obj, stored)
        self._validate(rt, stored, None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        with self.cond:
            key = self._key(rt, meta.get("namespace"), name)
            if key in self._objects[rt.storage]:
                raise already_exists(rt, name)
            return self._out(rt, self._commit(rt, key, stored, None))

    def replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: JSON,
        *,
        subresource: str | None = None,
    ) -> tuple[JSON, bool]:
        """PUT: update, or create when the object is missing and the type allows it
        (AllowCreateOnUpdate; generic registry ``Store.Update``). Returns (object, created)."""
        with self.cond:
            missing = self._key(rt, namespace, name) not in self._objects[rt.storage]
            if not (missing and rt.allow_create_on_update and not subresource):
                updated = self.update(rt, namespace, name, lambda _: body, subresource=subresource)
                return updated, False
            obj = copy.deepcopy(body)
            meta = _meta(obj)
            if meta.get("name") != name:  # handlers/update.go checkName: "" is no match
                raise bad_request(
                    f"the name of the object ({meta.get('name') or ''}) does not match the name "
                    f"on the URL ({name})"
                )
            if meta.get("uid"):
                # The storage precondition from the body's uid, checked against the empty
                # object that stands for "missing": it cannot match.
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {meta['uid']}, UID in object "
                    "meta: ",
                )
            # The create flow ignores the body's resourceVersion: a PUT carrying a stale one
            # re-creates a deleted object.
            meta.pop("resourceVersion", None)
            meta["name"] = name
            return self.create(rt, obj, namespace), True

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        mutate: Callable[[JSON], JSON],
        *,
        subresource: str | None = None,
    ) -> JSON:
        """Read-modify-write under the lock, with kube-apiserver's update rules.

        ``mutate`` gets a copy of the stored object (as ``rt`` serves it) and returns the
        desired object; a ``metadata.resourceVersion`` in it must match the stored one (409
        otherwise), and an absent one means an unconditional update where the type allows
        it (422 where not). Without ``subresource="status"`` the ``status`` of types that
        have a status subresource is kept as stored, and with it only ``status`` changes.
        """
        with self.cond:
            key = self._key(rt, namespace, name)
            old = self._objects[rt.storage].get(key)
            if old is None:
                raise not_found(rt, name)
            served = mutate(self._out(rt, old))
            if not isinstance(served, dict):
                raise bad_request("the object must be a JSON object")
            served = copy.deepcopy(served)
            self._check_type(rt, served)
            meta = _meta(served)
            old_meta = old["metadata"]
            if meta.get("name") != name:  # handlers/update.go checkName: "" is no match
                raise bad_request(
                    f"the name of the object ({meta.get('name') or ''}) does not match the name "
                    f"on the URL ({name})"
                )
            if (
                rt.namespaced
                and meta.get("namespace", old_meta["namespace"]) != old_meta["namespace"]
            ):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            new = to_storage(rt, served)
            validation.check_decodable(rt, served, new)
            given_rv = meta.get("resourceVersion")
            if not given_rv and not rt.allow_unconditional_update:
                raise validation.invalid_error(
                    rt.plural,
                    rt.group,
                    name,
                    [
                        validation.invalid_value(
                            "metadata.resourceVersion",
                            validation.Literal("0x0"),
                            "must be specified for an update",
                        )
                    ],
                )
            if given_rv and given_rv != old_meta["resourceVersion"]:
                raise conflict(rt, name)
            given_uid = meta.get("uid")
            if given_uid and given_uid != old_meta["uid"]:
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {given_uid}, UID in object "
                    f"meta: {old_meta['uid']}",
                )
            for field in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            if rt.has_status:
                if subresource == "status":
                    status = new.get("status")
                    new = copy.deepcopy(old)
                    new["status"] = status
                    if status is None:
                        del new["status"]
                elif "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            self._validate(rt, new, old)
            generation = old_meta.get("generation", 1)
            new["metadata"]["generation"] = generation + (new.get("spec") != old.get("spec"))
            if new == old:
                return self._out(rt, old)  # no-op: no new resourceVersion, no watch event
            if _should_delete_during_update(new, old):
                return self._out(rt, self._remove(rt, key, new))
            return self._out(rt, self._commit(rt, key, new, old))

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: JSON | None = None,
    ) -> JSON:
        """DELETE with ``DeleteOptions`` (``preconditions``, ``gracePeriodSeconds``).

        Returns the last state of the object: gone, or still there with a
        ``deletionTimestamp`` (pending finalizers, or a pod's grace period).
        """
        options = options or {}
        preconditions = options.get("preconditions") or {}
        grace = options.get("gracePeriodSeconds")
        if grace is not None and not isinstance(grace, int):
            raise bad_request(f"gracePeriodSeconds must be an integer, not {grace!r}")
        if grace is not None and grace < 0:
            grace = 1  # rest.BeforeDelete: negative values mean 1 s
        with self.cond:
            key = self._key(rt, namespace, name)
            old = self._objects[rt.storage].get(key)
            if old is None:
                raise not_found(rt, name)
            self.check_preconditions(rt, name, old["metadata"], preconditions)
            if rt.graceful_delete:
                return self._out(rt, self._delete_gracefully(rt, key, old, grace))
            return self._out(rt, self._delete_now(rt, key, old))

    def put(self, rt: ResourceType, body: JSON) -> JSON:
        """Create or overwrite an object as given (status included), skipping API rules.

        For tests and the control API: fills in the system metadata, bumps the
        resourceVersion and emits ADDED/MODIFIED to watchers. Only the structural checks
        (type, name, labels) apply.
        """
        obj = copy.deepcopy(body)
        self._check_type(rt, obj)
        meta = _meta(obj)
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            raise validation.invalid_error(
                *self._kind(rt), "", [validation.required("metadata.name", "name is required")]
            )
        stored = to_storage(rt, obj)
        self._validate_meta(rt, stored, creating=True)
        with self.cond:
            key = self._key(rt, meta.get("namespace"), meta["name"])
            old = self._objects[rt.storage].get(key)
            old_meta = old["metadata"] if old else {}
            meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp") or now())
            meta.setdefault("generation", old_meta.get("generation", 1))
            return self._out(rt, self._commit(rt, key, stored, old))

    # --- graceful deletion ---------------------------------------------------------------------

    def check_preconditions(
        self, rt: ResourceType, name: str, meta: JSON, preconditions: JSON
    ) -> None:
        """rest.BeforeDelete: a precondition that is present is compared, even when it is
        the empty string (the Go field is a pointer: only JSON null or absence is "unset")."""
        uid = preconditions.get("uid")
        if uid is not None and uid != meta.get("uid"):
            raise conflict_on_kind(
                rt,
                name,
                f"the UID in the precondition ({uid}) does not match the UID in record "
                f"({meta.get('uid')}). The object might have been deleted and then recreated",
            )
        rv = preconditions.get("resourceVersion")
        if rv is not None and rv != meta.get("resourceVersion"):
            raise conflict_on_kind(
                rt,
                name,
                f"the ResourceVersion in the precondition ({rv}) does not match the "
                f"ResourceVersion in record ({meta.get('resourceVersion')}). The object might "
                "have been modified",
            )

    def _delete_now(self, rt: ResourceType, key: Key, obj: JSON) -> JSON:
        """Remove ``obj``, or with finalizers mark it deleted (deletionTimestamp now, grace 0)
        and keep it until they are gone (``markAsDeleting``)."""
        self._terminating.pop((rt.storage, key), None)
        meta = obj["metadata"]
        if not meta.get("finalizers"):
            return self._remove(rt, key, obj)
        new = copy.deepcopy(obj)
        new_meta = new["metadata"]
        stamp = now()
        if not new_meta.get("deletionTimestamp") or new_meta["deletionTimestamp"] > stamp:
            if not new_meta.get("deletionTimestamp"):
                new_meta["generation"] = new_meta.get("generation", 1) + 1
            new_meta["deletionTimestamp"] = stamp
        new_meta["deletionGracePeriodSeconds"] = 0
        if new == obj:
            return copy.deepcopy(obj)
        return self._commit(rt, key, new, obj)

    def _delete_gracefully(self, rt: ResourceType, key: Key, old: JSON, grace: int | None) -> JSON:
        """A pod's DELETE: ``rest.BeforeDelete`` with the pod strategy's CheckGracefulDelete
        (``pkg/registry/core/pod/strategy.go``)."""
        meta = old["metadata"]
        if meta.get("deletionTimestamp"):
            pending = meta.get("deletionGracePeriodSeconds")
            if not pending:
                return self._delete_now(rt, key, old)
            if grace is None or grace >= pending:
                return copy.deepcopy(old)  # already terminating: only a shorter grace counts
            new = copy.deepcopy(old)
            moment = _parse_time(meta["deletionTimestamp"]) + timedelta(seconds=grace - pending)
            new["metadata"]["deletionTimestamp"] = _format_time(moment)
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            committed = self._commit(rt, key, new, old)
        else:
            spec = old.get("spec") or {}
            phase = (old.get("status") or {}).get("phase")
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds")
                if grace is None:
                    grace = DEFAULT_TERMINATION_GRACE_PERIOD
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0  # never scheduled, or already terminated: nothing to wait for
            new = copy.deepcopy(old)
            new_meta = new["metadata"]
            new_meta["deletionTimestamp"] = _format_time(
                datetime.now(UTC) + timedelta(seconds=grace)
            )
            new_meta["deletionGracePeriodSeconds"] = grace
            if new_meta.get("generation", 0) > 0:
                new_meta["generation"] += 1
            committed = self._commit(rt, key, new, old)
        if grace == 0:
            return self._delete_now(rt, key, committed)
        due = self.clock() + grace * self.grace_period_scale
        self._terminating[(rt.storage, key)] = (due, committed["metadata"]["uid"])
        return committed

    def reap_terminations(
        self,
        *,
        force: bool = False,
        namespace: str | None = None,
        name: str | None = None,
    ) -> int:
        """Finish graceful deletions whose grace period is over (all matching ones with
        ``force``), as kubelet's final delete does; returns how many objects it touched."""
        done = 0
        with self.cond:
            moment = self.clock()
            for (storage, key), (due, uid) in list(self._terminating.items()):
                if not force and due > moment:
                    continue
                if (namespace is not None and key[0] != namespace) or (
                    name is not None and key[1] != name
                ):
                    continue
                del self._terminating[(storage, key)]
                obj = self._objects[storage].get(key)
                if obj is None or obj["metadata"].get("uid") != uid:
                    continue
                self._delete_now(STORAGE_TYPES[storage], key, obj)
                done += 1
        return done

    @property
    def terminating(self) -> int:
        with self.cond:
            return len(self._terminating)

    # --- watch support -------------------------------------------------------------------------

    def events_since(self, rt: ResourceType, rv: int) -> builtins.list[Event]:
        """History events of ``rt`` newer than ``rv``; a 410 if ``rv`` was dropped from it."""
        with self.cond:
            self._trim(rt.storage)
            floor = self._floor[rt.storage]
            if rv < floor:
                raise expired(f"too old resource version: {rv} ({floor})")
            history = self._history[rt.storage]
            if not history or history[-1].rv <= rv:
                return []
            start = bisect.bisect_right(history, rv, key=lambda event: event.rv)
            return list(itertools.islice(history, start, None))

    def compact(self) -> int:
        """Forget all history and compact all revisions: every resourceVersion up to now
        becomes too old (410) for watches and for ``continue`` tokens."""
        with self.cond:
            for key in STORAGE_KEYS:
                self._history[key].clear()
                self._floor[key] = self._rv
            self._compacted = self._rv + 1  # no revision handed out so far is readable
            self._notify_all()
            return self._rv

    def compaction_tick(self) -> int:
        """One round of kube-apiserver's etcd compactor: compact up to the revision seen at
        the previous round (``staging/src/k8s.io/apiserver/pkg/storage/etcd3/compact.go``:
        after a compaction only the revisions of the last interval are left)."""
        with self.cond:
            self._compacted = max(self._compacted, self._last_compaction_mark)
            self._last_compaction_mark = self._rv
            return self._compacted

    def reset(self) -> None:
        """Drop every object and the history; resourceVersions keep increasing."""
        with self.cond:
            for key in STORAGE_KEYS:
                self._objects[key].clear()
            self._terminating.clear()
            self.compact()

    def notify(self) -> None:
        """Wake every waiter (a fault or a shutdown that every watch must see)."""
        with self.cond:
            self._notify_all()

    def subscribe(
        self, rt: ResourceType, interested: Callable[[Event], bool], name: str | None = None
    ) -> Subscription:
        """Register a watch: woken by the events of ``rt`` it is ``interested`` in (with
        ``name``: only events of the object of that name are even looked at)."""
        with self.cond:
            sub = Subscription(threading.Condition(self._lock), interested)
            if name is None:
                self._subscriptions[rt.storage].add(sub)
            else:
                self._named.setdefault((rt.storage, name), set()).add(sub)
            return sub

    def unsubscribe(self, rt: ResourceType, sub: Subscription, name: str | None = None) -> None:
        with self.cond:
            if name is None:
                self._subscriptions[rt.storage].discard(sub)
                return
            named = self._named.get((rt.storage, name), set())
            named.discard(sub)
            if not named:
                self._named.pop((rt.storage, name), None)

    @staticmethod
    def wait_for_change(sub: Subscription, timeout: float) -> None:
        """Wait (holding ``cond``) for an event ``sub`` can see, :meth:`notify`, or
        ``timeout``."""
        sub.cond.wait(timeout)

    def dump(self) -> JSON:
        with self.cond:
            return {
                "resourceVersion": str(self._rv),
                "compactedRevision": str(self._compacted),
                "objects": {
                    rt.key: [self._out(rt, o) for _, o in sorted(self._objects[rt.storage].items())]
                    for rt in RESOURCES
                },
                "history": {
                    key: {"events": len(self._history[key]), "floor": self._floor[key]}
                    for key in STORAGE_KEYS
                },
                "terminating": len(self._terminating),
            }

    # --- internals -----------------------------------------------------------------------------

    @staticmethod
    def _out(rt: ResourceType, obj: JSON) -> JSON:
        return copy.deepcopy(from_storage(rt, obj))

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return ((namespace or "default") if rt.namespaced else "", name)

    @staticmethod
    def _kind(rt: ResourceType) -> tuple[str, str]:
        """Kind and group an Invalid Status names: the stored (internal) type's."""
        owner = STORAGE_TYPES[rt.storage]
        return owner.kind, owner.group

    @staticmethod
    def _check_type(rt: ResourceType, obj: JSON) -> None:
        api_version = obj.setdefault("apiVersion", rt.api_version)
        kind = obj.setdefault("kind", rt.kind)
        if api_version != rt.api_version or kind != rt.kind:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version}), or the kind ({kind}) is not {rt.kind}"
            )

    def _validate(self, rt: ResourceType, obj: JSON, old: JSON | None) -> None:
        """The metadata rules, then the type's own (``validation``), as one 422."""
        self._validate_meta(rt, obj, creating=old is None)
        errors: list[validation.FieldError] = []
        if rt.plural == "leases":
            errors += validation.lease_errors(obj)
        elif rt.storage == "events":
            if old is None:
                errors += validation.event_create_errors(obj, rt)
            else:
                errors += validation.event_update_errors(obj, old, rt)
        if errors:
            raise validation.invalid_error(*self._kind(rt), obj["metadata"]["name"], errors)

    def _validate_meta(self, rt: ResourceType, obj: JSON, *, creating: bool) -> None:
        meta = obj["metadata"]
        name = meta.get("name", "")
        if not isinstance(name, str):
            raise bad_request("metadata.name must be a string")
        owner = STORAGE_TYPES[rt.storage]
        if creating and (errors := validation.name_errors(owner.name_rule, name)):
            raise validation.invalid_error(*self._kind(rt), name, errors)
        for field in ("labels", "annotations"):
            values = meta.get(field)
            if values is None:
                continue
            if not isinstance(values, dict):
                raise bad_request(f"metadata.{field} must be a map of string to string")
            for k, v in values.items():
                if not isinstance(v, str):
                    raise bad_request(
                        f"json: cannot unmarshal {type(v).__name__} into Go struct field "
                        f"ObjectMeta.metadata.{field} of type string (key {k!r})"
                    )
                if field == "labels" and not _label_value_ok(v):
                    raise validation.invalid_error(
                        *self._kind(rt),
                        name,
                        [
                            validation.invalid_value(
                                "metadata.labels",
                                v,
                                "a valid label must be an empty string or consist of "
                                "alphanumeric characters, '-', '_' or '.', and must start and "
                                "end with an alphanumeric character",
                            )
                        ],
                    )

    def _commit(self, rt: ResourceType, key: Key, obj: JSON, old: JSON | None) -> JSON:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[rt.storage][key] = obj
        kind = "MODIFIED" if old else "ADDED"
        self._record(rt.storage, Event(self._rv, kind, obj, old, self.clock()))
        return obj

    def _remove(self, rt: ResourceType, key: Key, last: JSON) -> JSON:
        old = self._objects[rt.storage].pop(key)
        self._terminating.pop((rt.storage, key), None)
        self._rv += 1
        deleted = copy.deepcopy(last)
        deleted["metadata"]["resourceVersion"] = str(self._rv)
        self._record(rt.storage, Event(self._rv, "DELETED", deleted, old, self.clock()))
        return deleted

    def _trim(self, storage: str) -> None:
        """Drop history events beyond the size cap or older than the time window."""
        history = self._history[storage]
        oldest = None if self.history_window is None else self.clock() - self.history_window
        while history and (
            len(history) > self.history_size or (oldest is not None and history[0].time < oldest)
        ):
            self._floor[storage] = history.popleft().rv

    def _record(self, storage: str, event: Event) -> None:
        history = self._history[storage]
        history.append(event)
        self._trim(storage)
        self.cond.notify_all()
        name = event.obj["metadata"].get("name", "")
        for sub in (*self._subscriptions[storage], *self._named.get((storage, name), ())):
            if sub.interested(event):
                sub.cond.notify()

    def _notify_all(self) -> None:
        self.cond.notify_all()
        for subs in (*self._subscriptions.values(), *self._named.values()):
            for sub in subs:
                sub.cond.notify()
