"""One node's change, step by step, read back from its agent's structured log
(``--log-format json``: one object per line with ``ts``, ``logger``, ``msg`` and the
context keys). The demo's closing summary and the rollout pictures
(:mod:`testing.pictures`) both use it.

The steps, as the agent logs them (``nodelocaldns_agent/engine.py``, ``kube/lock.py``,
``kube/status.py``, ``metrics/server.py``):

- gate: from the agent serving ``/readyz`` until the local DNS answered — the end is the
  first ``waiting-for-lock`` status or, with a free slot, the restart slot acquired; a
  ``waiting-for-local-dns`` status in between means the gate held the node back
- lock: waiting for a restart slot (a Lease) until ``restart slot acquired``
- write: decided, original kept, journal saved, until ``kubelet configuration written``
- restart: ``restarting kubelet`` until ``restart command done; verifying``
- verify: until ``kubelet healthy``
- release: until ``restart slot released``
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodelocaldns_agent.state import NodeState

STEPS = ("gate", "lock", "write", "restart", "verify", "release")

#: the log message that ends each step (after ``gate``, whose end is found otherwise)
ENDS = {
    "lock": "restart slot acquired",
    "write": "kubelet configuration written",
    "restart": "restart command done; verifying",
    "verify": "kubelet healthy",
    "release": "restart slot released",
}
READY = "serving /metrics, /healthz and /readyz"
RESTARTING = "restarting kubelet"
DECIDED = "decided"
STATUS = "node status written"


@dataclass
class Change:
    """One migration or revert of one node: when each step began and ended (epoch s)."""

    node: str
    action: str = ""
    #: the kubelet's cluster DNS before and after, as the agent logged them
    old_dns: list[str] = field(default_factory=list)
    new_dns: list[str] = field(default_factory=list)
    #: the gate saw the local DNS not answer (a ``waiting-for-local-dns`` status)
    held_back: bool = False
    #: step name -> (start, end)
    steps: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def start(self) -> float:
        return min(begin for begin, _ in self.steps.values())

    @property
    def end(self) -> float:
        return max(end for _, end in self.steps.values())

    @property
    def held(self) -> float:
        """Seconds between the agent being ready and holding a restart slot."""
        return sum(self.seconds(s) for s in ("gate", "lock"))

    @property
    def changing(self) -> float:
        """Seconds holding the restart slot: write, restart, verify, release."""
        return sum(self.seconds(s) for s in STEPS[2:])

    def seconds(self, step: str) -> float:
        begin, end = self.steps.get(step, (0.0, 0.0))
        return end - begin

    @property
    def complete(self) -> bool:
        return all(step in self.steps for step in STEPS)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of an agent's log (anything else in it, e.g. a traceback, skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "ts" in record and "msg" in record:
            records.append(record)
    return records


def changes(node: str, records: Iterable[dict[str, Any]]) -> list[Change]:
    """Every completed change in one agent's log (several agent runs may share the log:
    the demo restarts them in ``revert`` mode), in order."""
    found: list[Change] = []
    change = Change(node)
    ready = gate_end = restarting = None
    for r in records:
        msg, ts = r["msg"], float(r["ts"])
        if msg == READY:
            change, ready, gate_end, restarting = Change(node), ts, None, None
        elif ready is None:
            continue
        elif msg == STATUS and r.get("state") == NodeState.WAITING_FOR_LOCAL_DNS:
            change.held_back = True
        elif msg == STATUS and r.get("state") == NodeState.WAITING_FOR_LOCK and gate_end is None:
            gate_end = ts
        elif msg == ENDS["lock"]:
            gate_end = ts if gate_end is None else gate_end
            change.steps["gate"] = (ready, gate_end)
            change.steps["lock"] = (gate_end, ts)
        elif msg == DECIDED:
            change.action = str(r.get("action", ""))
            change.old_dns = [str(d) for d in r.get("cluster_dns") or []]
        elif msg == ENDS["write"] and "lock" in change.steps:
            change.new_dns = [str(d) for d in r.get("cluster_dns") or []]
            change.steps["write"] = (change.steps["lock"][1], ts)
        elif msg == RESTARTING:
            restarting = ts
        elif msg == ENDS["restart"] and restarting is not None:
            change.steps["restart"] = (restarting, ts)
        elif msg == ENDS["verify"] and "restart" in change.steps:
            change.steps["verify"] = (change.steps["restart"][1], ts)
        elif msg == ENDS["release"] and "verify" in change.steps:
            change.steps["release"] = (change.steps["verify"][1], ts)
            if change.complete:
                found.append(change)
            change, ready, gate_end, restarting = Change(node), ts, None, None
    return found


def fleet(logs: dict[str, Path]) -> list[Change]:
    """Every node's changes, in the order they began."""
    every = [c for node, path in logs.items() for c in changes(node, read_log(path))]
    return sorted(every, key=lambda c: c.start)
