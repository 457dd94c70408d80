"""The rollout at a glance (``kubectl nodelocaldns status``): pure, over plain data.

:func:`summarize` turns the Node rows (``fleet.node_rows``) and the restart-slot Leases
into a :class:`Rollout`: counts per state, migrated/eligible, restarts in flight against
the limit, an ETA from the restart durations seen so far (:class:`RestartTimer`) and the
failed nodes with their reason. :func:`plain_line` is the one-line form (a pipe, a log);
:func:`renderable` the live view's (``rich``, imported only when it is drawn).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodelocaldns_agent.kube.api import parse_time
from nodelocaldns_agent.kube.types import LeaseView
from nodelocaldns_agent.state import NodeState

if TYPE_CHECKING:
    from rich.console import RenderableType

#: states of nodes the rollout does not move (they count as neither done nor to do)
NOT_ELIGIBLE = frozenset({NodeState.NOT_NEEDED, NodeState.SKIPPED})
#: states in which a node is on its way: it counts towards the ETA
TO_DO = frozenset(
    {
        "-",
        NodeState.PENDING,
        NodeState.WAITING_FOR_LOCAL_DNS,
        NodeState.WAITING_FOR_LOCK,
        NodeState.MIGRATING,
    }
)


@dataclass
class RestartTimer:
    """Restart durations seen while watching: a node seen ``migrating`` (its ``since``)
    and later ``migrated`` or ``failed`` (the new ``since``) took the difference."""

    started: dict[str, float] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)

    def observe(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            name, state, since = row["node"], row["state"], parse_time(row["since"])
            if state == NodeState.MIGRATING and since:
                self.started.setdefault(name, since)
            elif name in self.started:
                begun = self.started.pop(name)
                if state in (NodeState.MIGRATED, NodeState.FAILED) and since >= begun:
                    self.durations.append(since - begun)

    @property
    def mean(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None


@dataclass(frozen=True)
class Rollout:
    total: int
    counts: dict[str, int]
    migrated: int
    eligible: int
    remaining: int
    in_flight: list[str]
    #: restarts allowed at once (None: the agents' setting could not be read)
    limit: int | None
    #: seconds, None until a restart was seen
    eta: float | None
    #: (node, last error) of every failed node
    failed: list[tuple[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "counts": self.counts,
            "migrated": self.migrated,
            "eligible": self.eligible,
            "remaining": self.remaining,
            "restartsInFlight": self.in_flight,
            "restartLimit": self.limit,
            "etaSeconds": None if self.eta is None else round(self.eta),
            "failed": [{"node": n, "error": e} for n, e in self.failed],
        }


def in_flight(leases: list[LeaseView], now: float) -> list[str]:
    """The nodes holding a restart slot: a held Lease not yet expired by its own renewal
    time (the agents' restart limit, ``kube/lock.py``)."""
    held = [
        lease
        for lease in leases
        if lease.holder and parse_time(lease.renew_time) + lease.duration_seconds >= now
    ]
    return sorted(lease.holder for lease in held)


def eta(remaining: int, limit: int | None, mean: float | None) -> float | None:
    """Rounds of ``limit`` restarts at a time, each as long as the mean one so far."""
    if mean is None:
        return None
    if remaining == 0:
        return 0.0
    return math.ceil(remaining / max(limit or 1, 1)) * mean


def summarize(
    rows: list[dict[str, Any]],
    leases: list[LeaseView],
    limit: int | None,
    now: float,
    mean_restart: float | None = None,
) -> Rollout:
    counts = Counter(r["state"] for r in rows)
    eligible = len(rows) - sum(counts.get(s, 0) for s in NOT_ELIGIBLE)
    remaining = sum(counts.get(s, 0) for s in TO_DO)
    return Rollout(
        total=len(rows),
        counts=dict(sorted(counts.items())),
        migrated=counts.get(NodeState.MIGRATED, 0),
        eligible=eligible,
        remaining=remaining,
        in_flight=in_flight(leases, now),
        limit=limit,
        eta=eta(remaining, limit, mean_restart),
        failed=[(r["node"], r["error"] or "-") for r in rows if r["state"] == NodeState.FAILED],
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


#: failed nodes (and holders) named at most in one view; the rest are counted
SHOWN = 10


def some(items: list[str], limit: int = SHOWN) -> str:
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def plain_line(r: Rollout) -> str:
    """One line: what a pipe or a log gets for every change of the live view."""
    counts = ", ".join(f"{n} {s}" for s, n in r.counts.items()) or "no nodes"
    limit = "?" if r.limit is None else str(r.limit)
    failed = "; ".join(f"{n}: {e}" for n, e in r.failed[:SHOWN]) + (
        f"; and {len(r.failed) - SHOWN} more" if len(r.failed) > SHOWN else ""
    )
    return (
        f"migrated {r.migrated}/{r.eligible} | restarts {len(r.in_flight)}/{limit}"
        f" | eta {duration(r.eta)} | {counts}" + (f" | failed: {failed}" if failed else "")
    )


def renderable(r: Rollout, title: str) -> RenderableType:
    """The live view: title, progress bar, counts, restarts in flight, failed nodes."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        Text("migrated", style="bold"),
        ProgressBar(total=max(r.eligible, 1), completed=r.migrated, width=40),
        Text(f"{r.migrated}/{r.eligible}"),
    )
    limit = "?" if r.limit is None else str(r.limit)
    flying = some(r.in_flight) or "none"
    facts = Text.assemble(
        ("restarts in flight ", "bold"),
        f"{len(r.in_flight)}/{limit} ({flying})   ",
        ("ETA ", "bold"),
        duration(r.eta),
    )
    counts = Table(title=None, box=None, show_header=True, header_style="bold")
    for state in r.counts:
        counts.add_column(state, justify="right")
    counts.add_row(*(str(n) for n in r.counts.values()))
    parts: list[RenderableType] = [Text(title, style="bold"), bar, facts, counts]
    if r.failed:
        failed = Table(title="failed nodes", box=None, header_style="bold red")
        failed.add_column("NODE")
        failed.add_column("REASON", overflow="fold")
        for node, error in r.failed[:SHOWN]:
            failed.add_row(node, error)
        if len(r.failed) > SHOWN:
            failed.add_row("...", f"and {len(r.failed) - SHOWN} more: status -o wide")
        parts.append(failed)
    return Group(*parts)
