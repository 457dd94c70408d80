"""Are node-cache's NOTRACK and ACCEPT rules in the host's firewall (``check`` only)?

What node-cache installs, for each ``-localip`` address (kubernetes/dns
``cmd/node-cache/app/cache_app.go``, ``initIptables``; the same list since the health port
rules of 2020, with ``-m comment`` since 1.22.19), with ``LocalPort`` 53 (``-dns.port``)
and ``HealthPort`` (``-health-port``, the chart's ``nodeLocalDNS.healthPort``):

- raw PREROUTING: ``-p tcp|udp -d IP --dport 53 -j NOTRACK`` (pods' queries skip conntrack);
- filter INPUT: ``-p tcp|udp -d IP --dport 53 -j ACCEPT`` (untracked packets would miss
  the usual ``ESTABLISHED`` accept rules);
- raw OUTPUT: ``-p tcp|udp -s IP --sport 53 -j NOTRACK`` (the answers);
- filter OUTPUT: ``-p tcp|udp -s IP --sport 53 -j ACCEPT``;
- raw OUTPUT: ``-p tcp|udp -d IP --dport 53 -j NOTRACK`` (queries of hostNetwork pods);
- raw OUTPUT: ``-p tcp -d IP --dport HEALTH -j NOTRACK`` and ``-p tcp -s IP --sport
  HEALTH -j NOTRACK`` (kubelet's probes of ``/health``).

node-cache inserts them (``EnsureRule(Prepend, ...)``) with ``-setupiptables`` (default
true; the chart does not turn it off) once CoreDNS runs (at the ``-pidfile``, else at the
first ``-syncinterval`` of 60 s), puts back any that disappeared every sync, and deletes
them when it exits unless ``-skipteardown`` (the chart's default in IPVS mode). In IPVS
mode the address is only the link-local one: nothing of kube-proxy rewrites it, so the
rules only keep DNS out of conntrack (its races and table size are what NodeLocal
DNSCache exists for) and accept the untracked packets; DNS works without them. One
node-cache process serves one IP family (``-localip`` addresses must share it), through
``iptables`` or ``ip6tables``.

How ``iptables-save`` prints a rule (checked with iptables 1.8.9, both backends):
``-A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment
"NodeLocal DNS Cache: skip conntrack" -j NOTRACK``; the nft backend prints ``-j NOTRACK``
rules the same way and ``-j CT --notrack`` (the same action) as written. The parser
therefore reads each rule's parts in any order, ignores comments and the implicit
``-m tcp|udp``, and counts a rule with anything more (an interface, a negation, another
match) as a different rule.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from nodelocaldns_agent.errors import FirewallError
from nodelocaldns_agent.host.iptables import HostIptables

#: node-cache's ``LocalPort`` (``-dns.port``, which the chart leaves at 53)
DNS_PORT = 53
TABLES = ("raw", "filter")
#: what ``iptables-nft-save`` prints (on stderr) when legacy tables exist beside its own
LEGACY_WARNING = "# Warning: iptables-legacy tables present"


@dataclass(frozen=True, order=True)
class Rule:
    """One rule as node-cache writes it (addresses in one spelling, without a prefix)."""

    table: str
    chain: str
    protocol: str
    source: str
    sport: str
    destination: str
    dport: str
    target: str

    def __str__(self) -> str:
        parts = [self.table, self.chain, "-p", self.protocol]
        if self.source:
            parts += ["-s", self.source, "--sport", self.sport]
        if self.destination:
            parts += ["-d", self.destination, "--dport", self.dport]
        return " ".join([*parts, "-j", self.target])


def expected_rules(address: str, health_port: int) -> frozenset[Rule]:
    """The rules node-cache installs for ``address`` (the two health port rules only when
    ``health_port`` is known, i.e. not 0)."""
    ip = _canonical(address)
    dns = str(DNS_PORT)
    rules = set()
    for proto in ("tcp", "udp"):
        rules |= {
            Rule("raw", "PREROUTING", proto, "", "", ip, dns, "NOTRACK"),
            Rule("filter", "INPUT", proto, "", "", ip, dns, "ACCEPT"),
            Rule("raw", "OUTPUT", proto, ip, dns, "", "", "NOTRACK"),
            Rule("filter", "OUTPUT", proto, ip, dns, "", "", "ACCEPT"),
            Rule("raw", "OUTPUT", proto, "", "", ip, dns, "NOTRACK"),
        }
    if health_port:
        port = str(health_port)
        rules |= {
            Rule("raw", "OUTPUT", "tcp", "", "", ip, port, "NOTRACK"),
            Rule("raw", "OUTPUT", "tcp", ip, port, "", "", "NOTRACK"),
        }
    return frozenset(rules)


def parse_save(text: str) -> frozenset[Rule]:
    """The rules of ``iptables-save`` output that have the shape of node-cache's; every
    other line (comments, chains, ``COMMIT``, other rules) is skipped."""
    table = ""
    rules = set()
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A ") and table:
            rule = _rule(table, line)
            if rule is not None:
                rules.add(rule)
    return frozenset(rules)


def missing(saved: str, address: str, health_port: int) -> tuple[Rule, ...]:
    """node-cache's rules for ``address`` that ``saved`` (``iptables-save`` output of the
    raw and filter tables) lacks, in a stable order."""
    return tuple(sorted(expected_rules(address, health_port) - parse_save(saved)))


_VALUED = {
    "-A": "chain",
    "-p": "protocol",
    "--protocol": "protocol",
    "-s": "source",
    "--source": "source",
    "-d": "destination",
    "--destination": "destination",
    "--sport": "sport",
    "--source-port": "sport",
    "--dport": "dport",
    "--destination-port": "dport",
    "-j": "target",
    "--jump": "target",
}


def _rule(table: str, line: str) -> Rule | None:
    """One ``-A`` line, or None when it is not a rule of node-cache's shape."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    parts: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else ""
        if word == "--notrack" and parts.get("target") == "CT":
            parts["target"] = "NOTRACK"
            i += 1
            continue
        if word in _VALUED and value and _VALUED[word] not in parts:
            parts[_VALUED[word]] = value
        elif not (
            (word in ("-m", "--match") and value in ("tcp", "udp", "comment"))
            or (word == "--comment" and value)
        ):
            return None  # a negation, an interface, another match or option, twice one
        i += 2
    if not {"chain", "protocol", "target"} <= parts.keys():
        return None
    return Rule(
        table,
        parts["chain"],
        parts["protocol"],
        _host(parts.get("source", "")),
        parts.get("sport", ""),
        _host(parts.get("destination", "")),
        parts.get("dport", ""),
        parts["target"],
    )


def _host(address: str) -> str:
    """``169.254.20.10/32`` and ``FD00::A/128`` as node-cache's ``-localip`` spells them;
    a wider network stays as written (it is not node-cache's rule)."""
    if not address:
        return ""
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return address
    if net.prefixlen != net.max_prefixlen:
        return address
    return str(net.network_address)


def _canonical(address: str) -> str:
    return str(ipaddress.ip_address(address))


@dataclass(frozen=True)
class NotrackRules:
    """node-cache's rules for one local address, as the host's ``iptables-save`` shows
    them."""

    address: str
    expected: int
    #: the expected rules not found (empty when all are there, or when not read)
    missing: tuple[Rule, ...]
    #: why the rules could not be read ("" when they were)
    error: str = ""
    #: ``iptables-save``'s own warning (legacy tables beside the nft ones: the rules may
    #: be in the other backend)
    warning: str = ""

    @property
    def present(self) -> int:
        return self.expected - len(self.missing)


def notrack_rules(
    iptables: HostIptables, addresses: tuple[str, ...], health_port: int
) -> tuple[NotrackRules, ...]:
    """Each address's rules, each IP family's tables read once."""
    saved: dict[int, str | FirewallError] = {}
    result = []
    for address in addresses:
        version = ipaddress.ip_address(address).version
        if version not in saved:
            saved[version] = _save(iptables, version)
        text = saved[version]
        count = len(expected_rules(address, health_port))
        if isinstance(text, FirewallError):
            result.append(NotrackRules(address, count, (), str(text)))
            continue
        lacking = missing(text, address, health_port)
        warning = next((s.strip() for s in text.splitlines() if s.startswith(LEGACY_WARNING)), "")
        result.append(NotrackRules(address, count, lacking, "", warning))
    return tuple(result)


def _save(iptables: HostIptables, version: int) -> str | FirewallError:
    try:
        return "\n".join(iptables.save(version, table) for table in TABLES)
    except FirewallError as exc:
        return exc
