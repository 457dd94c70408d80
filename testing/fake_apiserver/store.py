"""In-memory object storage with etcd-like resourceVersions and a bounded watch history.

* One global, monotonically increasing resourceVersion (like an etcd revision), rendered as a
  string in ``metadata.resourceVersion``. Every write that changes an object bumps it; a write
  that leaves the object byte-for-byte identical is a no-op (no new resourceVersion, no watch
  event), exactly like kube-apiserver.
* Per resource type, the last ``history_size`` events are kept so a watch can resume from a
  resourceVersion; anything older than that window is "compacted" and a watch from it gets 410.
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
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .resources import RESOURCES, ResourceType
from .selectors import Predicate
from .status import ApiError, already_exists, bad_request, conflict, expired, invalid, not_found

JSON = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """One change, as kept in the watch history (``old`` is the previous state)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: JSON
    old: JSON | None
    _lines: dict[str, bytes] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def line(self, kind: str) -> bytes:
        """The watch event ``{"type": kind, "object": obj}`` as one JSON line, encoded once
        however many watches send it (kube-apiserver's watch cache does the same)."""
        data = self._lines.get(kind)
        if data is None:
            data = json.dumps({"type": kind, "object": self.obj}, separators=(",", ":"))
            data = self._lines.setdefault(kind, data.encode() + b"\n")
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


def _without_rv(obj: JSON) -> JSON:
    stripped = dict(obj)
    stripped["metadata"] = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"
    }
    return stripped


class Store:
    def __init__(self, history_size: int = 1000) -> None:
        # One lock for everything; ``cond`` wakes on any change. Watches subscribe instead
        # and are woken only by changes they can see, like kube-apiserver's watch cache,
        # which filters each event for each watcher before it wakes anything (with a
        # thousand single-node watches, waking every watch on every Node patch cost more
        # than the requests themselves).
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)
        self._subscriptions: dict[str, set[Subscription]] = {rt.key: set() for rt in RESOURCES}
        self._named: dict[tuple[str, str], set[Subscription]] = {}
        self.history_size = history_size
        self._rv = 0
        self._objects: dict[str, dict[Key, JSON]] = {rt.key: {} for rt in RESOURCES}
        self._history: dict[str, deque[Event]] = {rt.key: deque() for rt in RESOURCES}
        self._floor: dict[str, int] = {rt.key: 0 for rt in RESOURCES}

    # --- reads ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self.cond:
            return self._rv

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> JSON:
        with self.cond:
            obj = self._objects[rt.key].get(self._key(rt, namespace, name))
            if obj is None:
                raise not_found(rt, name)
            return copy.deepcopy(obj)

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
        """Matching objects sorted by (namespace, name), and the list's resourceVersion."""
        with self.cond:
            items = [
                copy.deepcopy(obj)
                for key, obj in sorted(self._objects[rt.key].items())
                if (namespace is None or key[0] == namespace)
                and (predicate is None or predicate(obj))
            ]
            return items, self._rv

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
            raise invalid(
                rt, name, "metadata.name", "Required value: name or generateName is required"
            )
        if meta.get("resourceVersion"):
            # kube-apiserver answers this with a 500 too.
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        self._validate(rt, obj)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        with self.cond:
            key = self._key(rt, meta.get("namespace"), name)
            if key in self._objects[rt.key]:
                raise already_exists(rt, name)
            return self._commit(rt, key, obj, None)

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

        ``mutate`` gets a copy of the stored object and returns the desired object; a
        ``metadata.resourceVersion`` in it must match the stored one (409 otherwise), and an
        absent one means an unconditional update. Without ``subresource="status"`` the
        ``status`` of types that have a status subresource is kept as stored, and with it only
        ``status`` changes.
        """
        with self.cond:
            key = self._key(rt, namespace, name)
            old = self._objects[rt.key].get(key)
            if old is None:
                raise not_found(rt, name)
            new = mutate(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise bad_request("the object must be a JSON object")
            self._check_type(rt, new)
            meta = _meta(new)
            old_meta = old["metadata"]
            if meta.get("name", name) != name:
                raise bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the "
                    f"URL ({name})"
                )
            if (
                rt.namespaced
                and meta.get("namespace", old_meta["namespace"]) != old_meta["namespace"]
            ):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            given_rv = meta.get("resourceVersion")
            if not given_rv and rt.plural == "leases":
                # kube-apiserver: leases do not allow unconditional updates (422)
                raise invalid(
                    rt, name, "metadata.resourceVersion", "must be specified for an update"
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
            self._validate(rt, new)
            generation = old_meta.get("generation", 1)
            new["metadata"]["generation"] = generation + (new.get("spec") != old.get("spec"))
            if new == old:
                return copy.deepcopy(old)  # no-op: no new resourceVersion, no watch event
            if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
                return self._remove(rt, key, new)
            return self._commit(rt, key, new, old)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        preconditions: JSON | None = None,
    ) -> JSON:
        """Delete (or, with finalizers, mark deleted); returns the last state of the object."""
        with self.cond:
            key = self._key(rt, namespace, name)
            old = self._objects[rt.key].get(key)
            if old is None:
                raise not_found(rt, name)
            meta = old["metadata"]
            pre = preconditions or {}
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                if pre.get(field) and pre[field] != meta.get(field):
                    raise conflict(
                        rt,
                        name,
                        f"Precondition failed: {label} in precondition: {pre[field]}, "
                        f"{label} in object meta: {meta.get(field)}",
                    )
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return copy.deepcopy(old)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._commit(rt, key, new, old)
            return self._remove(rt, key, old)

    def put(self, rt: ResourceType, body: JSON) -> JSON:
        """Create or overwrite an object as given (status included), skipping API rules.

        For tests and the control API: fills in the system metadata, bumps the
        resourceVersion and emits ADDED/MODIFIED to watchers.
        """
        obj = copy.deepcopy(body)
        self._check_type(rt, obj)
        meta = _meta(obj)
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            raise invalid(rt, "", "metadata.name", "Required value: name is required")
        self._validate(rt, obj)
        with self.cond:
            key = self._key(rt, meta.get("namespace"), meta["name"])
            old = self._objects[rt.key].get(key)
            old_meta = old["metadata"] if old else {}
            meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp") or now())
            meta.setdefault("generation", old_meta.get("generation", 1))
            return self._commit(rt, key, obj, old)

    # --- watch support -------------------------------------------------------------------------

    def events_since(self, rt: ResourceType, rv: int) -> builtins.list[Event]:
        """History events of ``rt`` newer than ``rv``; a 410 if ``rv`` was compacted away."""
        with self.cond:
            floor = self._floor[rt.key]
            if rv < floor:
                raise expired(f"too old resource version: {rv} ({floor})")
            history = self._history[rt.key]
            if not history or history[-1].rv <= rv:
                return []
            start = bisect.bisect_right(history, rv, key=lambda event: event.rv)
            return list(itertools.islice(history, start, None))

    def compact(self) -> int:
        """Forget all history: every resourceVersion up to now becomes too old (410)."""
        with self.cond:
            for rt in RESOURCES:
                self._history[rt.key].clear()
                self._floor[rt.key] = self._rv
            self._notify_all()
            return self._rv

    def reset(self) -> None:
        """Drop every object and the history; resourceVersions keep increasing."""
        with self.cond:
            for rt in RESOURCES:
                self._objects[rt.key].clear()
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
                self._subscriptions[rt.key].add(sub)
            else:
                self._named.setdefault((rt.key, name), set()).add(sub)
            return sub

    def unsubscribe(self, rt: ResourceType, sub: Subscription, name: str | None = None) -> None:
        with self.cond:
            if name is None:
                self._subscriptions[rt.key].discard(sub)
                return
            named = self._named.get((rt.key, name), set())
            named.discard(sub)
            if not named:
                self._named.pop((rt.key, name), None)

    @staticmethod
    def wait_for_change(sub: Subscription, timeout: float) -> None:
        """Wait (holding ``cond``) for an event ``sub`` can see, :meth:`notify`, or
        ``timeout``."""
        sub.cond.wait(timeout)

    def dump(self) -> JSON:
        with self.cond:
            return {
                "resourceVersion": str(self._rv),
                "objects": {
                    rt.key: [copy.deepcopy(o) for _, o in sorted(self._objects[rt.key].items())]
                    for rt in RESOURCES
                },
                "history": {
                    rt.key: {"events": len(self._history[rt.key]), "floor": self._floor[rt.key]}
                    for rt in RESOURCES
                },
            }

    # --- internals -----------------------------------------------------------------------------

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return ((namespace or "default") if rt.namespaced else "", name)

    @staticmethod
    def _check_type(rt: ResourceType, obj: JSON) -> None:
        api_version = obj.setdefault("apiVersion", rt.api_version)
        kind = obj.setdefault("kind", rt.kind)
        if api_version != rt.api_version or kind != rt.kind:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version}), or the kind ({kind}) is not {rt.kind}"
            )

    @staticmethod
    def _validate(rt: ResourceType, obj: JSON) -> None:
        meta = obj["metadata"]
        name = meta.get("name", "")
        if not isinstance(name, str) or len(name) > 253 or not _NAME.match(name):
            raise invalid(
                rt,
                str(name),
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
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
                if field == "labels" and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                    raise invalid(
                        rt, name, "metadata.labels", f'Invalid value: "{v}": a valid label value'
                    )

    def _commit(self, rt: ResourceType, key: Key, obj: JSON, old: JSON | None) -> JSON:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[rt.key][key] = obj
        self._record(rt, Event(self._rv, "MODIFIED" if old else "ADDED", obj, old))
        return copy.deepcopy(obj)

    def _remove(self, rt: ResourceType, key: Key, last: JSON) -> JSON:
        old = self._objects[rt.key].pop(key)
        self._rv += 1
        deleted = copy.deepcopy(last)
        deleted["metadata"]["resourceVersion"] = str(self._rv)
        self._record(rt, Event(self._rv, "DELETED", deleted, old))
        return copy.deepcopy(deleted)

    def _record(self, rt: ResourceType, event: Event) -> None:
        history = self._history[rt.key]
        while history and len(history) >= self.history_size:
            self._floor[rt.key] = history.popleft().rv
        history.append(event)
        self.cond.notify_all()
        name = event.obj["metadata"].get("name", "")
        for sub in (*self._subscriptions[rt.key], *self._named.get((rt.key, name), ())):
            if sub.interested(event):
                sub.cond.notify()

    def _notify_all(self) -> None:
        self.cond.notify_all()
        for subs in (*self._subscriptions.values(), *self._named.values()):
            for sub in subs:
                sub.cond.notify()
