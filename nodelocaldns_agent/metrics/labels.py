"""The label values of the metrics: small fixed sets, and the mappings of facts into them.

The ``state``, ``stage`` and ``to`` labels take the values of
:class:`~nodelocaldns_agent.state.NodeState`, :class:`~nodelocaldns_agent.state.Stage` and
:class:`~nodelocaldns_agent.policy.Drift`; the other sets are here. Values outside a set
are mapped to a catch-all value of that set (``other``, ``unknown``, ``error``), never
exported as they are: the number of series stays bounded whatever the node reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodelocaldns_agent.plan import on_local_dns

PROXY_MODES = ("ipvs", "iptables", "nftables", "kernelspace", "unknown")
NETWORK_MODES = ("globalrouter", "vpc-cni", "other", "unknown")
CLUSTER_DNS_KINDS = ("local", "original", "other", "none")
PROBE_FAILURE_REASONS = ("not-bound", "timeout", "refused", "rcode", "no-answer", "error")
API_ERROR_CLASSES = ("3xx", "4xx", "5xx", "network")

#: Labels whose value is not from a fixed set but fixed for the life of the process.
BUILD_LABELS = {"version": "the agent's version", "python": "the Python version"}


def _bounded(value: str, allowed: Sequence[str], fallback: str) -> str:
    return value if value in allowed else fallback


def network_mode_label(mode: str) -> str:
    """``globalrouter``, ``vpc-cni`` or ``unknown`` as they are; any other CNI: ``other``."""
    return _bounded(mode, NETWORK_MODES, "other")


def proxy_mode_label(mode: str) -> str:
    return _bounded(mode, PROXY_MODES, "unknown")


def probe_failure_label(*, bound: bool, reason: str) -> str:
    """``not-bound`` when the local DNS address is not bound, else ``reason`` if it is one
    of PROBE_FAILURE_REASONS, else ``error``."""
    return "not-bound" if not bound else _bounded(reason, PROBE_FAILURE_REASONS, "error")


def cluster_dns_kind(
    cluster_dns: Sequence[str], *, local: tuple[str, ...], original: Sequence[str] | None
) -> str:
    """What kubelet's cluster DNS points at, as a bounded label value (never the IP).

    ``original`` is the value before the agent's first change (from its journal); None
    when the agent never changed this node, in which case any value other than the local
    DNS is the original one. ``local``: every local DNS address (IPv4 and IPv6 on a
    dual-stack node); a value made of them only is ``local``, and so is one followed by
    the original as the fallback nameserver (``--fallback-nameserver``).
    """
    current = tuple(cluster_dns)
    if not current:
        return "none"
    if on_local_dns(current, local, None if original is None else tuple(original)):
        return "local"
    if original is None or current == tuple(original):
        return "original"
    return "other"


def api_error_class(status: int | None) -> str | None:
    """The ``code_class`` of an API answer that is an error (None: not an error)."""
    if status is None:
        return "network"
    if status < 300:
        return None
    return f"{min(status // 100, 5)}xx"
