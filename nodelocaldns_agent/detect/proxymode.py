"""Which mode kube-proxy runs in."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from nodelocaldns_agent.host.probes import HttpGetter

IPVS_INTERFACE = "kube-ipvs0"
KNOWN_MODES = ("ipvs", "iptables", "nftables", "kernelspace")


@dataclass(frozen=True)
class ProxyMode:
    #: ipvs, iptables, nftables, kernelspace or unknown
    mode: str
    #: how it was found: the interface, kube-proxy's endpoint, or why it is unknown
    source: str


def detect_proxy_mode(interfaces: Collection[str], http: HttpGetter, url: str) -> ProxyMode:
    """``ipvs`` when ``kube-ipvs0`` is among the node's ``interfaces`` (names; any link
    type), else ask kube-proxy at ``url``."""
    if IPVS_INTERFACE in interfaces:
        return ProxyMode("ipvs", f"interface {IPVS_INTERFACE}")
    try:
        result = http.get(url, timeout=2.0)
    except OSError as exc:
        return ProxyMode("unknown", f"no {IPVS_INTERFACE} interface and {exc}")
    text = result.body.strip().lower()
    if result.status == 200 and text in KNOWN_MODES:
        return ProxyMode(text, url)
    return ProxyMode(
        "unknown", f"no {IPVS_INTERFACE} interface and {url} answered {result.status} {text[:40]!r}"
    )
