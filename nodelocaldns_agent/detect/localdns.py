"""Is the node-local DNS address bound, and does it answer a real query?"""

from __future__ import annotations

from dataclasses import dataclass

from nodelocaldns_agent.host.probes import DnsProber


@dataclass(frozen=True)
class LocalDns:
    address: str
    bound: bool
    #: interface holding the address, "" when not bound
    interface: str
    healthy: bool
    latency_seconds: float | None
    #: bounded reason when not healthy: not-bound, timeout, refused, rcode, no-answer, error
    reason: str
    error: str


def detect_local_dns(
    interfaces: dict[str, tuple[str, ...]],
    prober: DnsProber,
    address: str,
    name: str,
    timeout: float,
) -> LocalDns:
    """Probe only when the address is bound: an unbound link-local address would send the
    query off the node through the default route."""
    owner = next((ifname for ifname, addrs in interfaces.items() if address in addrs), "")
    if not owner:
        return LocalDns(
            address,
            False,
            "",
            False,
            None,
            "not-bound",
            f"{address} is not bound on any interface (is node-cache running?)",
        )
    answer = prober.probe(address, name, timeout)
    error = "" if answer.ok else f"{name} A @{address}: {answer.reason} {answer.detail}".strip()
    return LocalDns(
        address,
        True,
        owner,
        answer.ok,
        answer.latency_seconds,
        "ok" if answer.ok else answer.reason,
        error,
    )
