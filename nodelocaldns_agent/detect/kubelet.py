"""Which file really decides kubelet's ``--cluster-dns`` on this host, and what it holds.

Found the way systemd and kubelet do it: the running kubelet's command line first (psutil),
then the kubelet unit with its drop-ins and environment files, then well-known paths. A
``--cluster-dns`` flag beats the config file; ``--config-dir`` drop-ins beat ``--config``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.host.probes import ProcessInfo, ProcessTable
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig import Format, dropin, envfile, jsonconf, yamlconf
from nodelocaldns_agent.kubeletconfig.flags import parse_kubelet_flags
from nodelocaldns_agent.kubeletconfig.unitfile import UNIT_DIRS, KubeletUnit, load_kubelet_unit

CLUSTER_DNS_FLAG = "--cluster-dns"

#: Env files that hold kubelet flags on common distributions, in the order they are tried
#: when neither a running kubelet nor its unit says where the flags come from.
WELL_KNOWN_ENV_FILES = (
    "/etc/kubernetes/kubelet",  # TKE
    "/etc/default/kubelet",  # Debian/Ubuntu packages
    "/etc/sysconfig/kubelet",  # RPM packages
    "/var/lib/kubelet/kubeadm-flags.env",  # kubeadm
)
#: KubeletConfiguration files, tried after the env files (a flag beats the file).
WELL_KNOWN_CONFIG_FILES = (
    "/etc/kubernetes/kubelet/kubelet-config.json",  # EKS
    "/var/lib/kubelet/config.yaml",  # kubeadm
)


@dataclass(frozen=True)
class KubeletConfig:
    #: host path of the file the agent edits (for a config dir: the agent's own drop-in)
    source: str
    #: env, yaml, json or config-dir
    format: str
    #: what the configuration on disk makes kubelet use
    cluster_dns: tuple[str, ...]
    #: current bytes of ``source``; None when it does not exist (drop-in not yet written)
    data: bytes | None
    #: how the source was found (for the report)
    found_by: str
    #: env var holding the flag (env format), "" otherwise
    variable: str = ""
    #: --cluster-dns of the running kubelet; None when not running or set in a file
    running_cluster_dns: tuple[str, ...] | None = None
    kubelet_pid: int | None = None
    kubelet_started: float | None = None


def format_named(name: str) -> Format:
    formats: dict[str, Format] = {
        "env": envfile.FORMAT,
        "yaml": yamlconf.FORMAT,
        "json": jsonconf.FORMAT,
        "config-dir": dropin.FORMAT,
    }
    return formats[name]


def config_file_format(path: str, data: bytes) -> str:
    """``json`` for a .json file or a document starting with ``{``, else ``yaml``."""
    if path.endswith(".json") or data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "json"
    return "yaml"


def newest_kubelet(processes: ProcessTable) -> ProcessInfo | None:
    found = processes.find("kubelet")
    return max(found, key=lambda p: p.create_time) if found else None


def locate_kubelet(host: HostRoot, processes: ProcessTable) -> KubeletConfig:
    """Find the file that decides the cluster DNS. Raises ConfigError naming what failed."""
    proc = newest_kubelet(processes)
    unit = load_kubelet_unit(host)
    if proc is not None:
        argv: Sequence[str] = proc.argv
        found_by = f"kubelet process {proc.pid}"
    elif unit is not None:
        argv = unit.argv
        found_by = f"unit {unit.unit_path}"
    else:
        argv = ()
        found_by = "well-known path"
    flags = parse_kubelet_flags(list(argv))
    running = tuple(flags.cluster_dns) if flags.cluster_dns is not None and proc else None
    pid = proc.pid if proc else None
    started = proc.create_time if proc else None

    def done(found: KubeletConfig) -> KubeletConfig:
        _require_addresses(found.cluster_dns, found.source)
        return KubeletConfig(
            found.source,
            found.format,
            found.cluster_dns,
            found.data,
            found.found_by,
            found.variable,
            running,
            pid,
            started,
        )

    if flags.cluster_dns is not None:
        return done(_from_flag_source(host, unit, found_by))
    if flags.config_dir:
        return done(_from_config_dir(host, flags.config_dir, flags.config, found_by))
    if flags.config:
        return done(_from_config_file(host, flags.config, f"--config of {found_by}"))
    if argv:
        # The process or the unit is authoritative: a file it does not read must not be
        # edited just because it sits at a well-known path.
        what = "the running kubelet" if proc is not None else "kubelet's unit"
        raise ConfigError(
            f"{what} ({found_by}) has neither {CLUSTER_DNS_FLAG} nor --config on its command "
            "line; expected one of them to set the cluster DNS"
        )
    return done(_from_well_known(host))


def _from_flag_source(host: HostRoot, unit: KubeletUnit | None, found_by: str) -> KubeletConfig:
    if unit is None:
        raise ConfigError(
            f"kubelet ({found_by}) runs with {CLUSTER_DNS_FLAG} but no kubelet.service unit "
            f"was found under {', '.join(UNIT_DIRS)}; expected the flag to come from the "
            "unit's EnvironmentFile"
        )
    carriers = [
        (name, var)
        for name, var in unit.environment.items()
        if CLUSTER_DNS_FLAG in var.value and _referenced(unit.exec_start, name)
    ]
    if not carriers:
        where = unit.unit_path if CLUSTER_DNS_FLAG in unit.exec_start else None
        detail = (
            f"it is written literally in ExecStart= of {where}"
            if where
            else "no variable referenced by ExecStart= carries it"
        )
        raise ConfigError(
            f"kubelet ({found_by}) runs with {CLUSTER_DNS_FLAG} but {detail}; expected it in "
            "an EnvironmentFile= of the kubelet unit (the agent edits env files, not units)"
        )
    if len(carriers) > 1:
        names = ", ".join(sorted(name for name, _ in carriers))
        raise ConfigError(
            f"{CLUSTER_DNS_FLAG} is set by several variables of {unit.unit_path} ({names}); "
            "expected exactly one"
        )
    name, var = carriers[0]
    if var.source_kind != "EnvironmentFile":
        raise ConfigError(
            f"{CLUSTER_DNS_FLAG} is set by Environment={name}=... in {var.source_path}; "
            "expected it in an EnvironmentFile= (the agent edits env files, not units)"
        )
    data = host.read_bytes(var.source_path)
    occurrence = envfile.find_cluster_dns(data, var.source_path)
    if occurrence is None:
        raise ConfigError(
            f"{var.source_path}: variable {name} carries {CLUSTER_DNS_FLAG} when systemd "
            "expands it, but the file holds no such flag"
        )
    chain = found_by if found_by.startswith("unit ") else f"{found_by} -> {unit.unit_path}"
    return KubeletConfig(
        var.source_path,
        "env",
        tuple(occurrence.values),
        data,
        f"{chain} -> EnvironmentFile",
        occurrence.name,
    )


def _referenced(exec_start: str, name: str) -> bool:
    return f"${{{name}}}" in exec_start or f"${name}" in exec_start


def _from_config_file(host: HostRoot, path: str, found_by: str) -> KubeletConfig:
    _require_absolute(path, "--config")
    data = host.read_bytes(path)
    fmt = config_file_format(path, data)
    values = format_named(fmt).read(data, path)
    return KubeletConfig(path, fmt, values, data, found_by)


def _from_config_dir(
    host: HostRoot, directory: str, config: str | None, found_by: str
) -> KubeletConfig:
    _require_absolute(directory, "--config-dir")
    if not host.is_dir(directory):
        raise ConfigError(f"{directory}: kubelet's --config-dir is not a directory")
    files = [
        (name, host.read_bytes(f"{directory}/{name}"))
        for name in host.listdir(directory)
        if name.endswith(".conf")
    ]
    values, winner = dropin.effective(files, directory)
    ours = f"{directory}/{dropin.OUR_DROPIN}"
    if winner is not None and winner > dropin.OUR_DROPIN:
        raise ConfigError(
            f"{directory}/{winner} sorts after {dropin.OUR_DROPIN} and sets clusterDNS, so "
            "the agent's drop-in could not take effect; expected no drop-in after it"
        )
    if winner is None and config:
        values = _from_config_file(host, config, found_by).cluster_dns
    current = dict(files).get(dropin.OUR_DROPIN)
    return KubeletConfig(ours, "config-dir", tuple(values), current, f"--config-dir of {found_by}")


def _from_well_known(host: HostRoot) -> KubeletConfig:
    for path in WELL_KNOWN_ENV_FILES:
        if not host.is_file(path):
            continue
        data = host.read_bytes(path)
        occurrence = envfile.find_cluster_dns(data, path)
        if occurrence is not None:
            return KubeletConfig(
                path, "env", tuple(occurrence.values), data, "well-known path", occurrence.name
            )
    for path in WELL_KNOWN_CONFIG_FILES:
        if host.is_file(path):
            return _from_config_file(host, path, "well-known path")
    tried = ", ".join(WELL_KNOWN_ENV_FILES + WELL_KNOWN_CONFIG_FILES)
    raise ConfigError(
        "no kubelet configuration found: no running kubelet process, no kubelet.service "
        f"unit, and none of {tried} sets the cluster DNS"
    )


def _require_addresses(values: tuple[str, ...], source: str) -> None:
    """kubelet itself refuses a cluster DNS that is not an IP; so does the agent."""
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ConfigError(
                f"{source}: cluster DNS {value!r} is not an IP address; expected a "
                "comma-separated list of IPs"
            ) from exc


def _require_absolute(path: str, flag: str) -> None:
    if not path.startswith("/"):
        raise ConfigError(f"kubelet {flag}={path!r}: expected an absolute path")
