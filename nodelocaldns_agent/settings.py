"""Typed settings: frozen dataclasses, one field per setting, validated once where built.

A field is the one source of truth of its setting: the dataclass default is the default,
and the field's :class:`Option` (``metadata=option(...)``) says how it is given.
``nodelocaldns_agent.cli.parser`` generates every flag from these: ``--<field-name>``
(unless ``Option.flag`` names another), read from ``$NODELOCALDNS_AGENT_<FLAG>`` and then
from the ``Option.env`` aliases when the flag is not given. A flag beats a variable, a
variable beats the default. A ``bool`` field is a switch: its flag turns the setting away
from its default (``failsafe`` is on, ``--no-failsafe`` turns it off), and its variable
says whether the switch is on. A ``StrEnum`` field takes the enum's values as choices.

``__post_init__`` checks every field (and turns an enum field's value into the member);
the messages name the flag. Durations are in seconds (``Option.unit``).
"""

from __future__ import annotations

import ipaddress
import shlex
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.hostpaths import (
    DEFAULT_WRITABLE_DIRS,
    EMBEDDED_WRITABLE_DIRS,
    plain_path_problem,
)
from nodelocaldns_agent.logs import LogFormat, LogLevel
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.state import DEFAULT_OPT_OUT_LABEL, Mode

#: every flag ``--some-flag`` is also read from ``$NODELOCALDNS_AGENT_SOME_FLAG``
ENV_PREFIX = "NODELOCALDNS_AGENT_"
#: default port of /metrics, /healthz and /readyz: clear of node-cache (8080, 9253, 9353)
#: and of kubelet and kube-proxy (10248-10259)
DEFAULT_METRICS_PORT = 9779
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_OPTION = "nodelocaldns_agent.option"


def env_name(flag: str) -> str:
    """``--max-concurrent-restarts`` -> ``NODELOCALDNS_AGENT_MAX_CONCURRENT_RESTARTS``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


@dataclass(frozen=True)
class Option:
    """How one setting is given: the metadata of its dataclass field."""

    help: str
    #: the flag, when it is not ``--<field-name>``
    flag: str = ""
    #: variables read after ``$NODELOCALDNS_AGENT_<FLAG>`` (e.g. the downward API's)
    env: tuple[str, ...] = ()
    #: the value's unit (the flag's metavar)
    unit: str = ""
    #: text -> value, ``ValueError`` saying what was expected; default: by the field's type
    parse: Callable[[str], Any] | None = None
    #: ``ValueError`` saying what was expected when a value is out of range
    check: Callable[[Any], None] | None = None
    #: an empty value is an error
    required: bool = False


def option(
    help: str,
    *,
    flag: str = "",
    env: tuple[str, ...] = (),
    unit: str = "",
    parse: Callable[[str], Any] | None = None,
    check: Callable[[Any], None] | None = None,
    required: bool = False,
) -> dict[str, Option]:
    """The metadata of a settings field: how the setting is given (see :class:`Option`)."""
    return {_OPTION: Option(help, flag, env, unit, parse, check, required)}


# ----------------------------------------------------------------------------- values
def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _boolean(text: str) -> bool:
    low = text.strip().lower()
    if low not in _TRUE | _FALSE:
        raise ValueError("expected true or false (also 1/0, yes/no, on/off)")
    return low in _TRUE


def _command(text: str) -> tuple[str, ...]:
    """Split like a shell would (no shell runs it)."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"cannot split {text!r}: {exc}") from None
    return argv


def _list(text: str) -> tuple[str, ...]:
    """Comma-separated, blanks around the items ignored."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: _integer,
    float: _number,
    bool: _boolean,
    Path: Path,
}


def _seconds(value: float) -> None:
    if not value > 0:
        raise ValueError(f"expected seconds > 0, got {value}")


def duration(help: str) -> dict[str, Option]:
    """The metadata of a duration: seconds > 0."""
    return option(help, unit="seconds", check=_seconds)


def _at_least(low: int) -> Callable[[int], None]:
    def check(value: int) -> None:
        if value < low:
            raise ValueError(f"expected an integer >= {low}, got {value}")

    return check


def _port_or_zero(value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a TCP port (1-65535) or 0 (not asked), got {value}")


def _ip_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _local_ipv6(value: str) -> None:
    """Empty (no local IPv6) or an IPv6 address pods can reach on their node: not
    link-local, whose address needs an interface (kubelet's clusterDNS takes none)."""
    if not value:
        return
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    if address.version != 6:
        raise ValueError(f"expected an IPv6 address, got {value!r} (IPv4: --local-dns)")
    if address.scope_id:
        raise ValueError(f"{value!r} has a zone: kubelet's clusterDNS takes a bare address")
    if address.is_link_local:
        raise ValueError(
            f"{value} is link-local (fe80::/10): pods cannot reach it without an interface; "
            "use a unique local address (fd00::/8)"
        )


def _dns_name(value: str) -> None:
    if not value or len(value) > 253:
        raise ValueError(f"{value!r} is not a DNS name")


def _nonempty_command(value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("expected a command, got an empty string")


def _host_dirs(value: tuple[str, ...]) -> None:
    for path in value:
        problem = plain_path_problem(path)
        if problem:
            raise ValueError(f"{path!r}: {problem}")


# ----------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class Spec:
    """One setting, resolved from its field: name, type, default, :class:`Option`, and the
    parser of its text (``Option.parse``, else by type; an enum's text is checked as its
    value)."""

    name: str
    hint: Any
    default: Any
    option: Option
    parse: Callable[[str], Any]

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> tuple[str, ...]:
        """The variables read when the flag is not given, first set wins."""
        return (env_name(self.flag), *self.option.env)

    @property
    def switch(self) -> bool:
        """A flag without a value that turns the setting away from its default."""
        return self.hint is bool

    @property
    def choices(self) -> tuple[StrEnum, ...]:
        return tuple(self.hint) if _is_enum(self.hint) else ()

    def convert(self, text: str) -> Any:
        """A flag's argument or a variable's text -> the checked value."""
        if self.switch:
            return not self.default if _boolean(text) else self.default
        return self.check(self.parse(text))

    def check(self, value: Any) -> Any:
        """The value, checked (an enum's value turned into its member)."""
        if self.choices:
            try:
                value = self.hint(value)
            except ValueError:
                expected = ", ".join(self.choices)
                raise ValueError(f"expected one of {expected}, got {value!r}") from None
        if self.option.required and not value:
            raise ValueError(f"required (or {' or '.join('$' + n for n in self.env)})")
        if self.option.check is not None:
            self.option.check(value)
        return value


def _is_enum(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, StrEnum)


def specs(kind: type[Settings]) -> tuple[Spec, ...]:
    """The settings of a settings dataclass, in field order."""
    hints = typing.get_type_hints(kind)
    out = []
    for f in fields(kind):
        option, hint = f.metadata.get(_OPTION), hints[f.name]
        if not isinstance(option, Option) or f.default is MISSING:
            raise TypeError(f"{kind.__name__}.{f.name}: needs a default and metadata=option()")
        parse = option.parse or (str if _is_enum(hint) else _PARSERS.get(hint))
        if parse is None:
            raise TypeError(f"{kind.__name__}.{f.name}: needs option(parse=) for {hint}")
        out.append(Spec(f.name, hint, f.default, option, parse))
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    """Base of the settings dataclasses: every field checked once, where they are built."""

    def __post_init__(self) -> None:
        for spec in specs(type(self)):
            try:
                value = spec.check(getattr(self, spec.name))
            except ValueError as exc:
                raise ConfigError(f"{spec.flag}: {exc}") from exc
            object.__setattr__(self, spec.name, value)


#: PID 1's namespaces (the agent runs with hostPID): the host's own binaries and systemd;
#: the default of ``--iptables-save-prefix``
HOST_NSENTER = _command("nsenter --target 1 --mount --uts --ipc --net --pid --")
#: ``systemctl`` of the host, so the host's systemd answers and acts; the default of
#: ``--systemctl-command`` and the prefix of the default ``--restart-command``
HOST_SYSTEMCTL = (*HOST_NSENTER, "systemctl")
#: the default restart command; on an embedded kubelet (k3s, RKE2, MicroK8s) it restarts the
#: unit that hosts kubelet instead (a restart command set by the user is run as given)
DEFAULT_RESTART_COMMAND = (*HOST_SYSTEMCTL, "restart", "kubelet")


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class NodeSettings(Settings):
    """What one node reconcile needs (``check``, ``migrate``, ``revert``, ``run``)."""

    host_root: Path = field(default=Path("/host"), metadata=option("where the host's / is mounted"))
    local_dns: str = field(
        default="169.254.20.10", metadata=option("node-local DNS address", check=_ip_address)
    )
    #: dual-stack: kubelet's IPv6 cluster DNS entries move here (none: such a node is refused)
    local_dns_ipv6: str = field(
        default="",
        metadata=option(
            "node-local DNS IPv6 address, for dual-stack nodes (empty: none)",
            unit="IPV6",
            check=_local_ipv6,
        ),
    )
    #: kubelet's cluster DNS becomes the local addresses followed by the original (the
    #: journal's), e.g. 169.254.20.10,10.96.0.10: kubelet writes both into each new pod's
    #: resolv.conf in that order (kubernetes/kubernetes pkg/kubelet/network/dns/dns.go).
    #: glibc asks the second only after the first timed out or refused; musl asks both at
    #: once, every lookup (the trade-off: docs/availability.md)
    fallback_nameserver: bool = field(
        default=False,
        metadata=option(
            "write kubelet's cluster DNS as the local DNS followed by the original cluster "
            "DNS (e.g. 169.254.20.10,10.96.0.10), so that pods still resolve while node-cache "
            "is down"
        ),
    )
    probe_name: str = field(
        default="kubernetes.default.svc.cluster.local",
        metadata=option(
            "name queried (type A) to check that the local DNS answers", check=_dns_name
        ),
    )
    #: one DNS probe longer than this: the local DNS counts as not answering
    probe_timeout: float = field(default=2.0, metadata=duration("seconds per DNS probe"))
    #: ``check`` reports node-cache's readiness beside the DNS answer (never acted on)
    node_cache_health_port: int = field(
        default=8080,
        metadata=option(
            "port of node-cache's /health on each local DNS address (the chart's "
            "nodeLocalDNS.healthPort), reported by check; 0: not asked",
            unit="PORT",
            check=_port_or_zero,
        ),
    )
    systemctl_command: tuple[str, ...] = field(
        default=HOST_SYSTEMCTL,
        metadata=option(
            "the host's systemctl, asked which process is kubelet "
            "(split like a shell, run without one)",
            parse=_command,
            check=_nonempty_command,
        ),
    )
    systemctl_timeout: float = field(
        default=10.0,
        metadata=duration("seconds 'systemctl show' may run before it is killed"),
    )
    #: ``check`` reads node-cache's NOTRACK/ACCEPT rules with the host's own binaries
    iptables_save_prefix: tuple[str, ...] = field(
        default=HOST_NSENTER,
        metadata=option(
            "what runs the host's iptables-save and ip6tables-save (read-only, check only), "
            "put before them (split like a shell, run without one; empty: the agent's own)",
            parse=_command,
        ),
    )
    restart_command: tuple[str, ...] = field(
        default=DEFAULT_RESTART_COMMAND,
        metadata=option(
            "command that restarts kubelet (split like a shell, run without one); the default "
            "restarts the unit that hosts an embedded kubelet (k3s, RKE2, MicroK8s) instead",
            parse=_command,
            check=_nonempty_command,
        ),
    )
    restart_timeout: float = field(
        default=90.0,
        metadata=duration("seconds the restart command may run before it is killed"),
    )
    #: run before the restart when the agent adds or removes its kubelet.service drop-in
    daemon_reload_timeout: float = field(
        default=60.0,
        metadata=duration("seconds 'systemctl daemon-reload' may run before it is killed"),
    )
    verify_timeout: float = field(
        default=120.0,
        metadata=duration("seconds kubelet has to be healthy again after a restart"),
    )
    kubelet_healthz_url: str = field(
        default="http://127.0.0.1:10248/healthz", metadata=option("kubelet health endpoint")
    )
    kube_proxy_mode_url: str = field(
        default="http://127.0.0.1:10249/proxyMode",
        metadata=option("kube-proxy's proxy mode endpoint", flag="--kube-proxy-url"),
    )
    #: under the host root: the journal and the copies of original files
    state_dir: str = field(
        default="/var/lib/nodelocaldns-agent",
        metadata=option("host directory for the journal and the copies of original files"),
    )
    #: where a write lands (symlinks followed) must be inside one of these, taken as written
    #: (not resolved); the journal writes only into the state dir, listed here or not;
    #: /etc/systemd/system/kubelet.service.d is the agent's own unit drop-in
    writable_dirs: tuple[str, ...] = field(
        default=DEFAULT_WRITABLE_DIRS + EMBEDDED_WRITABLE_DIRS,
        metadata=option(
            "host directories the agent may write kubelet files into, comma-separated "
            "(kubelet's pod, plugin and certificate directories and /etc/kubernetes/manifests "
            "never are)",
            unit="DIR,...",
            parse=_list,
            check=_host_dirs,
        ),
    )
    force: bool = field(
        default=False,
        metadata=option("migrate even when kube-proxy is not known to run in IPVS mode"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.local_dns_ipv6 and ipaddress.ip_address(self.local_dns).version != 4:
            raise ConfigError(
                f"--local-dns-ipv6: needs --local-dns to be the IPv4 address, got "
                f"--local-dns={self.local_dns} (an IPv6-only node: --local-dns alone)"
            )


@dataclass(frozen=True)
class RunSettings(Settings):
    """The daemon (``run``)."""

    node_name: str = field(
        default="", metadata=option("this node's name", env=("NODE_NAME",), required=True)
    )
    namespace: str = field(
        default="",
        metadata=option(
            "namespace of the restart-slot Leases (the agent's own)",
            env=("POD_NAMESPACE",),
            required=True,
        ),
    )
    mode: Mode = field(
        default=Mode.MIGRATE,
        metadata=option("migrate nodes, revert them (before uninstall), or only observe"),
    )
    max_concurrent_restarts: int = field(
        default=1,
        metadata=option("kubelet restarts in flight across the whole cluster", check=_at_least(1)),
    )
    #: local DNS down this long on a migrated node -> revert it. Measured with the real
    #: node-cache (tests/test_failsafe_node_cache.py): a surge update fails no probe; a
    #: single restart after kubelet's first back-off (10 s) is ~10 s of refused probes,
    #: 1/30 of this; what it is worth: docs/operations.md, "When node-cache is down"
    failsafe_after: float = field(
        default=300.0,
        metadata=duration("seconds the local DNS may fail on a migrated node before reverting it"),
    )
    #: local DNS healthy this long after a fail-safe revert -> migrate again
    recover_after: float = field(
        default=600.0,
        metadata=duration("seconds the local DNS must be healthy before migrating again"),
    )
    failsafe_max_flips_per_hour: int = field(
        default=2,
        metadata=option("fail-safe reverts + re-migrations allowed per hour", check=_at_least(0)),
    )
    failsafe: bool = field(
        default=True,
        metadata=option("never revert a migrated node by itself", flag="--no-failsafe"),
    )
    opt_out_label: str = field(
        default=DEFAULT_OPT_OUT_LABEL, metadata=option("nodes labelled <key>=true are left alone")
    )
    restart_stale_pods: bool = field(
        default=False,
        metadata=option("evict controller-owned pods still using the old DNS, one at a time"),
    )
    stale_pod_interval: float = field(
        default=30.0,
        metadata=duration("seconds between two stale-pod evictions"),
    )
    #: also the node watch's timeout
    resync_interval: float = field(
        default=600.0,
        metadata=duration("seconds between full re-detections (host drift)"),
    )
    #: while the node depends on the local DNS or waits for it
    probe_interval: float = field(
        default=10.0,
        metadata=duration("seconds between local DNS probes while the node depends on it"),
    )
    retry_failed_after: float = field(
        default=3600.0,
        metadata=duration("seconds before a failed node is tried again"),
    )
    lease_duration: int = field(
        default=60,
        metadata=option(
            "seconds a restart-slot Lease lasts without renewal",
            unit="seconds",
            check=_at_least(10),
        ),
    )
    lock_wait: float = field(
        default=60.0,
        metadata=duration(
            "longest single wait for a restart slot before the node is looked at again"
        ),
    )
    metrics_address: str = field(
        default=f"0.0.0.0:{DEFAULT_METRICS_PORT}",
        metadata=option(
            "HOST:PORT serving /metrics, /healthz and /readyz; an IPv6 address in brackets "
            "(any IP may be: [$(HOST_IP)]:9779 binds the node's IP from the downward API)"
        ),
    )


@dataclass(frozen=True)
class ApiSettings(Settings):
    """How to reach the Kubernetes API (``run``, ``status``, ``revert-fleet``)."""

    kubeconfig: str = field(
        default="",
        metadata=option(
            "kubeconfig file (default: the in-cluster service account)", env=("KUBECONFIG",)
        ),
    )


@dataclass(frozen=True)
class LogSettings(Settings):
    """Every command's logs (on stderr)."""

    log_format: LogFormat = field(default=LogFormat.TEXT, metadata=option("log format"))
    log_level: LogLevel = field(default=LogLevel.INFO, metadata=option("log level"))


@dataclass(frozen=True)
class ReportSettings(Settings):
    """How ``check``, ``migrate --once`` and ``revert --once`` print their result."""

    json: bool = field(default=False, metadata=option("print the result as JSON"))


@dataclass(frozen=True)
class CheckSettings(Settings):
    """``check``."""

    goal: Goal = field(default=Goal.MIGRATE, metadata=option("plan towards this goal"))


class StatusOutput(StrEnum):
    TABLE = "table"
    JSON = "json"


@dataclass(frozen=True)
class StatusSettings(Settings):
    """``status``."""

    output: StatusOutput = field(default=StatusOutput.TABLE, metadata=option("format"))


@dataclass(frozen=True)
class RevertFleetSettings(Settings):
    """``revert-fleet`` (the chart's pre-delete hook)."""

    daemonset: str = field(default="", metadata=option("the agent DaemonSet", required=True))
    namespace: str = field(
        default="",
        metadata=option("the agent DaemonSet's namespace", env=("POD_NAMESPACE",), required=True),
    )
    timeout: float = field(default=900.0, metadata=duration("seconds to wait for every node"))
    poll_interval: float = field(default=5.0, metadata=duration("seconds between checks"))


@dataclass(frozen=True)
class FastRefusalSettings(Settings):
    """``fast-refusal`` (the init container of the chart's node-cache with
    ``nodeLocalDNS.fastRefusal.enabled``)."""

    proc_sys: Path = field(
        default=Path("/proc/sys"),
        metadata=option(
            "the sysctl tree of the host's network namespace (a hostNetwork pod's /proc/sys)",
            unit="dir",
        ),
    )
