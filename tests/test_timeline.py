"""testing/timeline.py: one node's change read back from its agent's JSON log, as the
agent writes it (messages of engine.py, kube/lock.py, kube/status.py, metrics/server.py;
the records below are lines of a demo run's node-3 agent.log, ``ts`` shortened)."""

from __future__ import annotations

import json
from pathlib import Path

from testing import timeline


def rec(ts: float, msg: str, **context: object) -> dict[str, object]:
    return {"ts": ts, "level": "info", "logger": "x", "msg": msg, **context}


MIGRATE = [
    rec(0.0, "starting", command="run"),
    rec(2.5, "serving /metrics, /healthz and /readyz"),
    rec(5.0, "node status written", state="waiting-for-local-dns"),
    rec(5.1, "event", reason="Blocked"),
    rec(9.6, "restart slot acquired", slot="nodelocaldns-agent-slot-0"),
    rec(9.7, "node status written", state="migrating"),
    rec(10.0, "decided", action="migrate", cluster_dns=["10.96.0.10"]),
    rec(10.1, "original kept", step="backup"),
    rec(10.2, "kubelet configuration written", step="written", cluster_dns=["169.254.20.10"]),
    rec(10.2, "restarting kubelet", step="restart"),
    rec(10.4, "restart command done; verifying", step="restarted"),
    rec(10.7, "kubelet healthy", step="verified"),
    rec(10.72, "node migrated", step="done"),
    rec(10.75, "restart slot released"),
    rec(11.0, "node status written", state="migrated"),
    rec(12.0, "signal received; finishing the current step", signal=15),
]
REVERT = [
    rec(13.0, "starting", command="run"),
    rec(15.0, "serving /metrics, /healthz and /readyz"),
    rec(15.5, "node status written", state="waiting-for-lock"),
    rec(17.0, "restart slot acquired"),
    rec(17.2, "decided", action="revert", cluster_dns=["169.254.20.10"]),
    rec(17.3, "kubelet configuration written", cluster_dns=["10.96.0.10"]),
    rec(17.3, "restarting kubelet"),
    rec(17.5, "restart command done; verifying"),
    rec(17.8, "kubelet healthy"),
    rec(17.9, "restart slot released"),
]


def test_a_held_back_migration_then_a_revert_that_waited_for_the_lock() -> None:
    migrate, revert = timeline.changes("node-3", MIGRATE + REVERT)
    assert (migrate.action, migrate.old_dns, migrate.new_dns) == (
        "migrate",
        ["10.96.0.10"],
        ["169.254.20.10"],
    )
    assert migrate.held_back and not revert.held_back
    assert migrate.steps == {
        "gate": (2.5, 9.6),  # ready until the DNS answered and the slot was taken
        "lock": (9.6, 9.6),  # a free slot: no wait
        "write": (9.6, 10.2),
        "restart": (10.2, 10.4),
        "verify": (10.4, 10.7),
        "release": (10.7, 10.75),
    }
    assert revert.steps["gate"] == (15.0, 15.5)
    assert revert.steps["lock"] == (15.5, 17.0)  # waiting-for-lock until acquired
    assert round(revert.held, 3) == 2.0 and round(revert.changing, 3) == 0.9


def test_a_change_cut_short_is_not_reported() -> None:
    """An agent stopped mid-change (no release logged), then a new run: only complete
    changes count."""
    cut = [r for r in MIGRATE if r["msg"] not in ("kubelet healthy", "restart slot released")]
    assert [c.action for c in timeline.changes("n", cut + REVERT)] == ["revert"]


def test_fleet_reads_every_log_skipping_what_is_not_json(tmp_path: Path) -> None:
    logs = {}
    for node, records in (("node-1", REVERT), ("node-3", MIGRATE)):
        path = tmp_path / f"{node}.log"
        lines = ["Traceback (most recent call last):", *(json.dumps(r) for r in records)]
        path.write_text("\n".join(lines) + "\n")
        logs[node] = path
    assert [(c.node, c.action) for c in timeline.fleet(logs)] == [
        ("node-3", "migrate"),
        ("node-1", "revert"),
    ]
