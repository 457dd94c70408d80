"""Cluster-wide views and actions over the Node annotations: ``status`` and
``revert-fleet`` (the chart's pre-delete hook)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any, Protocol

from nodelocaldns_agent.host.probes import Clock
from nodelocaldns_agent.logs import event
from nodelocaldns_agent.state import (
    DETAIL_ANNOTATION,
    REVERT_DONE,
    STATE_ANNOTATION,
    Detail,
    NodeState,
)

log = logging.getLogger(__name__)
MODE_ENV = "NODELOCALDNS_AGENT_MODE"


class FleetApi(Protocol):
    def list_nodes(self) -> list[dict[str, Any]]: ...
    def get_daemonset(self, namespace: str, name: str) -> dict[str, Any]: ...
    def json_patch_daemonset(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None: ...


def node_rows(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for obj in nodes:
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        detail = Detail.from_json(annotations.get(DETAIL_ANNOTATION, "{}"))
        rows.append(
            {
                "node": str(meta.get("name", "")),
                "state": str(annotations.get(STATE_ANNOTATION, "")) or "-",
                "cluster_dns": ",".join(detail.cluster_dns) or "-",
                "since": detail.since or "-",
                "stale_pods": "-" if detail.stale_pods is None else detail.stale_pods,
                "error": detail.error,
                "reason": detail.reason,
                "mode": detail.mode or "-",
            }
        )
    return sorted(rows, key=lambda r: r["node"])


def _cut(text: str, width: int = 63) -> str:
    return (text[: width - 3] + "...") if len(text) > width else text or "-"


def render_status(nodes: list[dict[str, Any]], output: str) -> tuple[str, bool]:
    """The fleet table (``wide``: with each node's mode and reason; or JSON) and whether
    any node is ``failed``."""
    rows = node_rows(nodes)
    counts = Counter(r["state"] for r in rows)
    failed = counts.get(NodeState.FAILED, 0) > 0
    if output == "json":
        return json.dumps({"nodes": rows, "summary": dict(counts)}, indent=2), failed
    wide = output == "wide"
    header = ("NODE", "STATE", "KUBELET DNS", "SINCE", "STALE PODS", "LAST ERROR") + (
        ("MODE", "REASON") if wide else ()
    )
    table = [header] + [
        (
            r["node"],
            r["state"],
            r["cluster_dns"],
            r["since"],
            str(r["stale_pods"]),
            _cut(r["error"]),
        )
        + ((r["mode"], _cut(r["reason"], 100)) if wide else ())
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no nodes"
    lines.append(f"{len(rows)} nodes: {summary}")
    return "\n".join(lines), failed


def mode_patch(daemonset: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    """A JSON patch setting ``NODELOCALDNS_AGENT_MODE`` on the agent container, guarded by
    ``test`` operations so it fails (409/422) rather than edit a DaemonSet that changed."""
    containers = (((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    for ci, container in enumerate(containers):
        env = container.get("env") or []
        for ei, var in enumerate(env):
            if var.get("name") == MODE_ENV:
                path = f"/spec/template/spec/containers/{ci}/env/{ei}"
                return [
                    {"op": "test", "path": f"{path}/name", "value": MODE_ENV},
                    {"op": "replace", "path": path, "value": {"name": MODE_ENV, "value": mode}},
                ]
    if not containers:
        raise ValueError("the DaemonSet has no containers")
    base = "/spec/template/spec/containers/0"
    if containers[0].get("env"):
        return [{"op": "add", "path": f"{base}/env/-", "value": {"name": MODE_ENV, "value": mode}}]
    return [{"op": "add", "path": f"{base}/env", "value": [{"name": MODE_ENV, "value": mode}]}]


def pending_nodes(nodes: list[dict[str, Any]]) -> list[str]:
    """Nodes the agent changed that are not reverted yet (no annotation: never touched)."""
    out = []
    for obj in nodes:
        meta = obj.get("metadata") or {}
        state = (meta.get("annotations") or {}).get(STATE_ANNOTATION)
        if state is not None and state not in REVERT_DONE:
            out.append(f"{meta.get('name')}={state}")
    return sorted(out)


def revert_fleet(
    api: FleetApi, namespace: str, daemonset: str, timeout: float, poll: float, clock: Clock
) -> tuple[bool, str]:
    ds = api.get_daemonset(namespace, daemonset)
    try:
        ops = mode_patch(ds, "revert")
    except ValueError as exc:
        return False, f"daemonset {namespace}/{daemonset}: {exc}"
    api.json_patch_daemonset(namespace, daemonset, ops)
    event(log, "agents switched to revert", daemonset=f"{namespace}/{daemonset}")
    deadline = clock.monotonic() + timeout
    while True:
        waiting = pending_nodes(api.list_nodes())
        if not waiting:
            return True, "every node is reverted (or was never changed)"
        if clock.monotonic() >= deadline:
            shown = ", ".join(waiting[:20]) + (" ..." if len(waiting) > 20 else "")
            return False, (
                f"timed out after {timeout:g}s: {len(waiting)} node(s) not reverted yet: "
                f"{shown}. node-cache was NOT removed. Check `nodelocaldns-agent status` and "
                "the agent logs; to remove the release anyway, revert those nodes by hand "
                "and run `helm uninstall --no-hooks` (docs/operations.md)."
            )
        event(log, "waiting for nodes to revert", waiting=len(waiting))
        clock.sleep(poll)
