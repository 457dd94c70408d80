"""What the one-shot commands print: the ``check`` table, the ``--once`` summary, JSON.

Pure: each function returns the text (without its final newline); the caller prints it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodelocaldns_agent.engine import Outcome


def as_json(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2)


def check_table(rep: dict[str, Any]) -> str:
    """``check``'s report (``engine.report``) as aligned rows, then the diff it would write."""
    dns = rep["local_dns"]
    kubelet = rep["kubelet"]
    latency = dns["latency_seconds"]
    rows = [
        ("kube-proxy mode", f"{rep['proxy_mode']} ({rep['proxy_mode_source']})"),
        ("network mode", rep["network_mode"]),
        (
            "local DNS",
            f"{dns['address']} bound={dns['bound']} healthy={dns['healthy']}"
            + (f" latency={latency * 1000:.1f}ms" if latency is not None else "")
            + (f" ({dns['error']})" if dns["error"] else ""),
        ),
        *_node_cache_rows(dns),
        *(("NOTRACK rules", _rules(one)) for one in dns["addresses"]),
        (
            "kubelet config",
            f"{kubelet['source'] or '-'} [{kubelet['format'] or '-'}] "
            f"cluster DNS {','.join(kubelet['cluster_dns']) or '-'}"
            + (f" ({kubelet['found_by']})" if kubelet["found_by"] else ""),
        ),
    ]
    if kubelet["error"]:
        rows.append(("kubelet error", kubelet["error"]))
    rows.append(("action", f"{rep['action']}: {rep['reason']}"))
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    if rep["diff"]:
        lines += ["", rep["diff"].removesuffix("\n")]
    return "\n".join(lines)


def _node_cache_rows(dns: dict[str, Any]) -> list[tuple[str, str]]:
    """node-cache's readiness beside the DNS answer (no row when it was not asked)."""
    if dns.get("node_cache_ready") is None:
        return []
    each = []
    for one in dns["addresses"]:
        health = one.get("node_cache")
        if health is not None:
            answer = "ok" if health["ready"] else f"not ready ({health['error']})"
            each.append(f"{one['address']} /health {answer}")
    return [("node-cache", f"ready={dns['node_cache_ready']} " + "; ".join(each))]


def _rules(address: dict[str, Any]) -> str:
    """node-cache's NOTRACK/ACCEPT rules of one local address: how many are there, which
    are missing, or why they could not be read."""
    rules = address["notrack_rules"]
    head = f"{address['address']} "
    if rules["error"]:
        return head + f"not read ({rules['error']})"
    text = head + f"{rules['present']}/{rules['expected']}"
    if rules["missing"]:
        text += " missing: " + "; ".join(rules["missing"])
    if rules["warning"]:
        text += f" ({rules['warning'].lstrip('# ')})"
    return text


def once_summary(outcome: Outcome) -> dict[str, Any]:
    """``migrate --once --json`` / ``revert --once --json``."""
    return {
        "state": outcome.state,
        "action": outcome.plan.action.value,
        "reason": outcome.plan.reason,
        "restarted": outcome.restarted,
        "rolled_back": outcome.rolled_back,
        "error": outcome.error,
        "cluster_dns": list(outcome.plan.target),
    }


def once_line(outcome: Outcome) -> str:
    """``migrate --once`` / ``revert --once``: the state and why."""
    return f"{outcome.state}: {outcome.error or outcome.plan.reason}"
