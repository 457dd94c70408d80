"""Node states, the keys the agent owns on Node objects, and the pure rules between them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PREFIX = "nodelocaldns-agent.io"
STATE_ANNOTATION = f"{PREFIX}/state"
DETAIL_ANNOTATION = f"{PREFIX}/detail"
STATE_LABEL = f"{PREFIX}/state"
#: ``<key>=true`` on a Node: the agent leaves it alone (state ``skipped``)
DEFAULT_OPT_OUT_LABEL = f"{PREFIX}/opt-out"
#: ``<key>=migrate|revert|observe`` on a Node overrides ``--mode`` for that node
MODE_LABEL = f"{PREFIX}/mode"


class NodeState(StrEnum):
    """A node's state, as the label, the annotation and the metrics spell it."""

    PENDING = "pending"
    WAITING_FOR_LOCAL_DNS = "waiting-for-local-dns"
    WAITING_FOR_LOCK = "waiting-for-lock"
    MIGRATING = "migrating"
    MIGRATED = "migrated"
    FAILED = "failed"
    REVERTING = "reverting"
    REVERTED = "reverted"
    NOT_NEEDED = "not-needed"
    SKIPPED = "skipped"


class Mode(StrEnum):
    """What the agent does on a node (``--mode``, or the node's mode label)."""

    MIGRATE = "migrate"
    REVERT = "revert"
    OBSERVE = "observe"


class Stage(StrEnum):
    """Where a reconcile pass failed (the ``stage`` label of the reconcile metrics)."""

    DETECT = "detect"
    PLAN = "plan"
    WRITE = "write"
    RESTART = "restart"
    VERIFY = "verify"
    ROLLBACK = "rollback"
    REPORT = "report"
    API = "api"


class Result(StrEnum):
    """What one engine reconcile ended in (``once``'s output and exit code).

    A settled result has the value of the :class:`NodeState` of the same name, so
    ``Result(state)`` converts a settled state; ``blocked`` is no node state: the daemon
    reports a blocked node as waiting or failed, depending on the blocker."""

    MIGRATED = "migrated"
    REVERTED = "reverted"
    NOT_NEEDED = "not-needed"
    BLOCKED = "blocked"
    FAILED = "failed"


#: states in which a fleet-wide revert counts as finished for a node
REVERT_DONE = frozenset({NodeState.REVERTED, NodeState.NOT_NEEDED, NodeState.SKIPPED})


def effective_mode(default: Mode, labels: dict[str, str]) -> Mode:
    """The node label overrides ``--mode``, except that a fleet-wide ``revert`` (before
    uninstall) always wins: no label may keep a node on a local DNS that goes away.
    A label value that is no mode is ignored."""
    if default is Mode.REVERT:
        return default
    try:
        return Mode(labels.get(MODE_LABEL, "").strip().lower())
    except ValueError:
        return default


def opted_out(labels: dict[str, str], key: str) -> bool:
    return labels.get(key, "").strip().lower() in ("true", "1", "yes")


@dataclass
class Detail:
    """The JSON kept in the detail annotation (small: a few hundred bytes)."""

    source: str = ""
    format: str = ""
    original_cluster_dns: list[str] = field(default_factory=list)
    cluster_dns: list[str] = field(default_factory=list)
    since: str = ""
    error: str = ""
    reason: str = ""
    stale_pods: int | None = None
    failsafe: bool = False
    mode: str = ""

    def to_json(self) -> str:
        body: dict[str, Any] = {k: v for k, v in vars(self).items() if v not in ("", None, [])}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Detail:
        try:
            raw = json.loads(text)
        except ValueError:
            return cls(error=f"unreadable detail annotation: {text[:80]!r}")
        if not isinstance(raw, dict):
            return cls(error="detail annotation is not a JSON object")
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError:
            return cls(error="detail annotation has unexpected fields")


@dataclass
class FailSafe:
    """When to revert a migrated node whose local DNS stopped answering, and when to go
    back. Pure: the daemon feeds it observations with a monotonic ``now``."""

    after: float
    recover_after: float
    max_flips_per_hour: int
    enabled: bool = True
    active: bool = False
    unhealthy_since: float | None = None
    healthy_since: float | None = None
    flips: list[float] = field(default_factory=list)

    def _budget(self, now: float) -> bool:
        self.flips = [t for t in self.flips if now - t < 3600]
        return len(self.flips) < self.max_flips_per_hour

    def observe(self, now: float, healthy: bool, migrated: bool) -> str | None:
        """Feed one DNS observation; returns ``"revert"`` or ``"recover"`` when a flip is
        due now, else None."""
        if not self.enabled:
            return None
        if healthy:
            self.unhealthy_since = None
            self.healthy_since = self.healthy_since if self.healthy_since is not None else now
        else:
            self.healthy_since = None
            self.unhealthy_since = self.unhealthy_since if self.unhealthy_since is not None else now
        if (
            not self.active
            and migrated
            and self.unhealthy_since is not None
            and now - self.unhealthy_since >= self.after
            and self._budget(now)
        ):
            self.active = True
            self.flips.append(now)
            return "revert"
        if (
            self.active
            and self.healthy_since is not None
            and now - self.healthy_since >= self.recover_after
            and self._budget(now)
        ):
            self.active = False
            self.flips.append(now)
            return "recover"
        return None
