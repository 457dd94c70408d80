"""Are the node-local DNS addresses bound, does each answer a real query, and does
node-cache say it is ready on each (``check`` only)?"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nodelocaldns_agent.host.probes import DnsProber, HttpGetter


@dataclass(frozen=True)
class Listener:
    """One local DNS address."""

    address: str
    bound: bool
    #: interface holding the address, "" when not bound
    interface: str
    healthy: bool
    latency_seconds: float | None
    #: bounded reason when not healthy: not-bound, timeout, refused, rcode, no-answer, error
    reason: str
    error: str


@dataclass(frozen=True)
class LocalDns:
    """Every local DNS address together (one on a single-stack node, the IPv4 and the
    IPv6 one on a dual-stack node): bound and healthy only when each of them is; the
    reason and error of the first that is not; the slowest answer."""

    #: the addresses, comma-separated
    address: str
    bound: bool
    #: the interfaces holding them, comma-separated ("" when none is bound)
    interface: str
    healthy: bool
    latency_seconds: float | None
    reason: str
    error: str
    #: each address on its own
    listeners: tuple[Listener, ...] = ()


def detect_local_dns(
    interfaces: dict[str, tuple[str, ...]],
    prober: DnsProber,
    addresses: tuple[str, ...],
    name: str,
    timeout: float,
) -> LocalDns:
    """Probe each address (``name`` A over the address's own family)."""
    listeners = tuple(_listener(interfaces, prober, a, name, timeout) for a in addresses)
    failing = next((one for one in listeners if not one.healthy), None)
    latencies = [one.latency_seconds for one in listeners if one.latency_seconds is not None]
    owners = dict.fromkeys(one.interface for one in listeners if one.interface)
    return LocalDns(
        ",".join(addresses),
        all(one.bound for one in listeners),
        ",".join(owners),
        failing is None,
        max(latencies, default=None),
        "ok" if failing is None else failing.reason,
        "; ".join(one.error for one in listeners if one.error),
        listeners,
    )


def _listener(
    interfaces: dict[str, tuple[str, ...]],
    prober: DnsProber,
    address: str,
    name: str,
    timeout: float,
) -> Listener:
    """Probe only when the address is bound: an unbound link-local address would send the
    query off the node through the default route."""
    wanted = _canonical(address)
    owner = next(
        (ifname for ifname, addrs in interfaces.items() if wanted in map(_canonical, addrs)), ""
    )
    if not owner:
        return Listener(
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
    return Listener(
        address,
        True,
        owner,
        answer.ok,
        answer.latency_seconds,
        "ok" if answer.ok else answer.reason,
        error,
    )


@dataclass(frozen=True)
class NodeCacheHealth:
    """node-cache's ``/health`` on one local address: CoreDNS's health plugin, which
    node-cache serves on ``<localip>:<-health-port>`` (the chart's liveness and readiness
    probes) and answers 200 ``OK`` while it serves (503 in lameduck, while shutting down)."""

    address: str
    #: "" when not asked (the address is not bound)
    url: str
    ready: bool
    #: the HTTP status, None when nothing answered or it was not asked
    status: int | None
    error: str


def health_url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/health"


def node_cache_health(
    listeners: tuple[Listener, ...], http: HttpGetter, port: int, timeout: float
) -> tuple[NodeCacheHealth, ...]:
    """``/health`` on each bound local address (none when ``port`` is 0)."""
    if not port:
        return ()
    return tuple(_health(one, http, port, timeout) for one in listeners)


def _health(listener: Listener, http: HttpGetter, port: int, timeout: float) -> NodeCacheHealth:
    """Asked only when the address is bound: an unbound link-local address would send the
    request off the node through the default route."""
    address = listener.address
    if not listener.bound:
        return NodeCacheHealth(address, "", False, None, f"{address} is not bound: not asked")
    url = health_url(address, port)
    try:
        answer = http.get(url, timeout)
    except OSError as exc:
        return NodeCacheHealth(address, url, False, None, str(exc))
    if answer.status == 200:
        return NodeCacheHealth(address, url, True, 200, "")
    body = " ".join(answer.body.split())[:100]
    return NodeCacheHealth(
        address, url, False, answer.status, f"GET {url}: HTTP {answer.status} {body}".strip()
    )


def _canonical(address: str) -> str:
    """One spelling per address (``FD00:0::A`` is ``fd00::a``)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address
