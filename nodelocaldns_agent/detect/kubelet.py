"""Which file really decides kubelet's ``--cluster-dns`` on this host, and what it holds.

Found the way systemd and kubelet do it: the command line of the host's kubelet first (the
main process of ``kubelet.service`` as the host's systemd names it, when it passes the
trust test of :mod:`nodelocaldns_agent.detect.trust`), then the kubelet unit with its
drop-ins and environment files, then well-known paths. A ``--cluster-dns`` flag beats the
config file; ``--config-dir`` drop-ins beat ``--config``. A flag that the unit's
``Environment=`` carries or its ``ExecStart=`` holds is changed by the agent's own unit
drop-in (:mod:`nodelocaldns_agent.kubeletconfig.unitdropin`).

No other process is ever trusted: when the host's systemd cannot be asked, the unit files
under the host root decide (and without them nothing does). The unit files must be the
ones systemd loaded, and no configuration path may lie where pods can write.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from nodelocaldns_agent.detect.trust import KUBELET, untrusted
from nodelocaldns_agent.errors import ConfigError, HostError, SystemdError
from nodelocaldns_agent.host.probes import ProcessInfo, ProcessTable
from nodelocaldns_agent.host.systemd import HostSystemd, UnitStatus
from nodelocaldns_agent.hostpaths import POD_WRITABLE_DIRS, HostRoot
from nodelocaldns_agent.kubeletconfig import (
    Format,
    argsfile,
    dropin,
    envfile,
    jsonconf,
    k3sconfig,
    unitdropin,
    yamlconf,
)
from nodelocaldns_agent.kubeletconfig.flags import CLUSTER_DNS_FLAG, parse_kubelet_flags
from nodelocaldns_agent.kubeletconfig.unitdropin import EnvFileCarrier, Override
from nodelocaldns_agent.kubeletconfig.unitfile import (
    UNIT_DIRS,
    UNIT_NAME,
    KubeletUnit,
    env_file_paths,
    expand_words,
    load_kubelet_unit,
)

log = logging.getLogger(__name__)

#: ``*.conf`` files the agent reads from a ``--config-dir``: real drop-in directories hold
#: a handful (kubeadm none, EKS's nodeadm one or two); a few dozen is already unusual.
MAX_CONFIG_DIR_FILES = 64
#: bytes of those files in all: as much as one configuration file may have
#: (:data:`nodelocaldns_agent.hostpaths.MAX_FILE_BYTES`), so a flooded directory costs the
#: agent no more memory than one large file (its limit is 128 MiB).
MAX_CONFIG_DIR_BYTES = 1024 * 1024

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
    #: env, yaml, json, config-dir, unit; k3s-arg or args-file (embedded kubelets)
    format: str
    #: what the configuration on disk makes kubelet use
    cluster_dns: tuple[str, ...]
    #: current bytes of ``source``; None when it does not exist (drop-in not yet written)
    data: bytes | None
    #: how the source was found (for the report)
    found_by: str
    #: env var holding the flag (env format, and unit format overriding a variable), ""
    #: otherwise
    variable: str = ""
    #: --cluster-dns of the running kubelet; None when not running or set in a file
    running_cluster_dns: tuple[str, ...] | None = None
    kubelet_pid: int | None = None
    kubelet_started: float | None = None
    #: why the host's systemd could not be asked ("" when it answered)
    systemd_error: str = ""
    #: what the agent's unit drop-in overrides (unit format), None otherwise
    override: Override | None = None
    #: an embedded kubelet (:mod:`nodelocaldns_agent.detect.embedded`): the layout (k3s,
    #: rke2, microk8s) and the unit that hosts kubelet, restarted instead of
    #: kubelet.service; "" for kubelet.service
    layout: str = ""
    service: str = ""
    #: kubelet runs inside ``service``'s main process (k3s, MicroK8s): there is no kubelet
    #: command line to check after the restart
    in_process: bool = False
    #: what the user must know about the restart ("" when nothing)
    note: str = ""


@dataclass(frozen=True)
class HostKubelet:
    """kubelet as the host shows it."""

    #: the host's systemd's view of kubelet.service; None when it could not be asked
    service: UnitStatus | None
    #: the trusted main process of kubelet.service; None when it has none or systemd was
    #: not asked
    process: ProcessInfo | None
    #: why the host's systemd could not be asked ("" when it answered)
    systemd_error: str = ""


def format_named(name: str) -> Format:
    formats: dict[str, Format] = {
        "env": envfile.FORMAT,
        "yaml": yamlconf.FORMAT,
        "json": jsonconf.FORMAT,
        "config-dir": dropin.FORMAT,
        "k3s-arg": k3sconfig.FORMAT,
        "args-file": argsfile.FORMAT,
    }
    return formats[name]


def config_file_format(path: str, data: bytes) -> str:
    """``json`` for a .json file or a document starting with ``{``, else ``yaml``."""
    if path.endswith(".json") or data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "json"
    return "yaml"


def host_kubelet(systemd: HostSystemd, processes: ProcessTable) -> HostKubelet:
    """The main process of the host's kubelet.service, when the host's systemd answers.

    Raises :class:`ConfigError` when that process fails the trust test (it is never used,
    and nothing else is): kubelet.service runs something that is not the host's kubelet.
    """
    try:
        service = systemd.show(UNIT_NAME)
    except SystemdError as exc:
        return HostKubelet(None, None, str(exc))
    if service.main_pid == 0:
        return HostKubelet(service, None)
    what = f"{UNIT_NAME}'s MainPID {service.main_pid}"
    return HostKubelet(service, trusted_process(processes, service.main_pid, what))


def trusted_process(
    processes: ProcessTable, pid: int, what: str, names: tuple[str, ...] = (KUBELET,)
) -> ProcessInfo:
    """Process ``pid`` (``what`` names it), when it passes the trust test of
    :func:`nodelocaldns_agent.detect.trust.untrusted` with ``names``; :class:`ConfigError`
    otherwise (it is never used, and nothing else is)."""
    try:
        proc = processes.get(pid)
        init = processes.get(1)
    except HostError as exc:
        raise ConfigError(f"{what}: {exc}; expected to read it and PID 1") from exc
    if proc is None or init is None:
        gone = "PID 1" if proc is not None else f"process {pid}"
        raise ConfigError(
            f"{what}: {gone} is not running or not visible; expected the agent to see the "
            "host's processes (hostPID) and kubelet to stay up while it looks"
        )
    why = untrusted(proc, init, names)
    if why:
        raise ConfigError(
            f"{what} is not the host's kubelet: {why}; expected {' or '.join(names)} itself, "
            "in PID 1's mount and pid namespaces and outside any pod's cgroup"
        )
    return proc


def locate_kubelet(host: HostRoot, processes: ProcessTable, systemd: HostSystemd) -> KubeletConfig:
    """Find the file that decides the cluster DNS. Raises ConfigError naming what failed."""
    running = host_kubelet(systemd, processes)
    unit = load_kubelet_unit(host)
    if running.service is None:
        log.warning("%s; the unit files under the host root decide", running.systemd_error)
        if unit is None:
            raise ConfigError(
                f"{running.systemd_error}, and no {UNIT_NAME} was found under "
                f"{', '.join(UNIT_DIRS)}; expected one of them to say how kubelet runs"
            )
    else:
        _check_unit_loaded(host, running.service, unit)
    if unit is not None:
        for path, what in (
            (unit.unit_path, UNIT_NAME),
            *((p, f"drop-in of {UNIT_NAME}") for p in unit.dropins),
            *((p, f"EnvironmentFile= of {UNIT_NAME}") for p in unit.environment_files),
        ):
            check_config_path(host, path, what)
    proc = running.process
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
    running_dns = tuple(flags.cluster_dns) if flags.cluster_dns is not None and proc else None

    def done(found: KubeletConfig) -> KubeletConfig:
        require_addresses(found.cluster_dns, found.source)
        return replace(
            found,
            running_cluster_dns=running_dns,
            kubelet_pid=proc.pid if proc else None,
            kubelet_started=proc.create_time if proc else None,
            systemd_error=running.systemd_error,
        )

    if flags.cluster_dns_count > 1:
        # a list flag: kubelet appends every occurrence's addresses (pflag StringSlice,
        # kubelet's --cluster-dns in cmd/kubelet/app/options); editing one would leave
        # the others' addresses in every pod's resolv.conf
        raise ConfigError(
            f"kubelet ({found_by}) has {CLUSTER_DNS_FLAG} {flags.cluster_dns_count} times "
            f"({','.join(flags.cluster_dns or ())} in all: kubelet adds them up); expected "
            "exactly one"
        )
    if flags.cluster_dns is not None:
        return done(_from_flag_source(host, unit, found_by, running.service))
    if flags.config_dir:
        return done(from_config_dir(host, flags.config_dir, flags.config, found_by))
    if flags.config:
        return done(_from_config_file(host, flags.config, f"--config of {found_by}"))
    if argv:
        # The process or the unit is authoritative: a file it does not read must not be
        # edited just because it sits at a well-known path.
        what = "the running kubelet" if proc is not None else "kubelet's unit"
        program = argv[0].rsplit("/", 1)[-1]
        runs = (
            ""
            if program == KUBELET
            else f" (it runs {argv[0]}, not kubelet: a kubelet started inside a container, "
            "as OpenStack Magnum's podman unit does, is not supported)"
        )
        raise ConfigError(
            f"{what} ({found_by}) has neither {CLUSTER_DNS_FLAG} nor --config on its command "
            f"line{runs}; expected one of them to set the cluster DNS"
        )
    return done(_from_well_known(host))


def _check_unit_loaded(host: HostRoot, service: UnitStatus, unit: KubeletUnit | None) -> None:
    """The unit files under the host root are the ones the host's systemd loaded."""
    if service.load_state not in ("loaded", "not-found"):
        raise ConfigError(
            f"the host's systemd shows {UNIT_NAME} with LoadState={service.load_state}; "
            "expected loaded (or not-found when kubelet runs without a unit)"
        )
    if unit is None:
        return  # nothing of a unit is read; the main process (or a well-known path) decides
    if service.load_state == "not-found":
        raise ConfigError(
            f"{unit.unit_path} exists but the host's systemd has not loaded {UNIT_NAME}; "
            "expected 'systemctl daemon-reload' after installing it"
        )

    def real(paths: Sequence[str]) -> dict[str, str]:
        return {str(host.resolve(p)): p for p in paths}

    if (
        not service.fragment_path
        or real([service.fragment_path]).keys() != real([unit.unit_path]).keys()
    ):
        raise _mismatch(f"unit file {service.fragment_path or '(none)'}", unit.unit_path)
    # the agent's own drop-in may be written and not yet loaded, or removed and still
    # loaded: a run killed before its daemon-reload; the next one reloads (a restart is owed)
    theirs = real(
        [p for p in service.dropin_paths if f"/{UNIT_NAME}.d/" in p and not unitdropin.is_ours(p)]
    )
    ours = real([p for p in unit.dropins if not unitdropin.is_ours(p)])
    if theirs.keys() != ours.keys():
        raise _mismatch(f"drop-ins [{', '.join(theirs.values())}]", f"[{', '.join(ours.values())}]")
    patterns = [f.path for f in service.environment_files]
    for path in unit.environment_files:
        if not any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            raise _mismatch(f"EnvironmentFiles [{', '.join(patterns)}]", f"{path}")
    for pattern in patterns:
        plain = not any(c in pattern for c in "*?[")
        if plain and host.exists(pattern) and pattern not in unit.environment_files:
            raise _mismatch(f"EnvironmentFile {pattern}", "no such EnvironmentFile=")


def _mismatch(theirs: str, ours: str) -> ConfigError:
    return ConfigError(
        f"the host's systemd loaded {UNIT_NAME} with {theirs}, but the unit files under the "
        f"host root give {ours}; expected the same (run 'systemctl daemon-reload' if the "
        "files changed, or check --host-root)"
    )


def check_config_path(host: HostRoot, path: str, what: str) -> None:
    """``path`` (and where its symlinks lead) is absolute, has no ``..`` and is outside
    :data:`POD_WRITABLE_DIRS`; :class:`ConfigError` naming ``what`` otherwise."""
    if not path.startswith("/"):
        raise ConfigError(f"{what} {path!r}: expected an absolute path")
    parts = path.split("/")
    if ".." in parts:
        raise ConfigError(f"{what} {path!r}: has a '..' component; expected a path without")
    plain = "/" + "/".join(p for p in parts if p not in ("", "."))
    inside = host.resolve(path).relative_to(host.root).as_posix()
    real = "/" if inside == "." else "/" + inside
    for candidate in dict.fromkeys((plain, real)):
        for directory in POD_WRITABLE_DIRS:
            if candidate == directory or candidate.startswith(directory + "/"):
                via = "" if candidate == plain else f" (a symlink to {candidate})"
                raise ConfigError(
                    f"{what} {path!r}{via} is under {directory}, where pods can write; "
                    "expected kubelet's configuration where only the host's root writes"
                )


def _from_flag_source(
    host: HostRoot, unit: KubeletUnit | None, found_by: str, service: UnitStatus | None
) -> KubeletConfig:
    if unit is None:
        raise ConfigError(
            f"kubelet ({found_by}) runs with {CLUSTER_DNS_FLAG} but no kubelet.service unit "
            f"was found under {', '.join(UNIT_DIRS)}; expected the flag to come from the "
            "unit"
        )
    ours = [path for path in unit.dropins if unitdropin.is_ours(path)]
    if len(ours) > 1:
        raise ConfigError(
            f"the agent's drop-in is there twice ({', '.join(ours)}); expected one: remove "
            "the one the journal does not name"
        )
    base = load_kubelet_unit(host, skip=ours) if ours else unit
    if base is None:  # the unit file went away since it was read
        raise ConfigError(f"{unit.unit_path}: disappeared while it was read")
    mechanism = unitdropin.choose_mechanism(base)
    chain = found_by if found_by.startswith("unit ") else f"{found_by} -> {unit.unit_path}"
    if isinstance(mechanism, EnvFileCarrier):
        if ours:
            raise ConfigError(
                f"the agent's drop-in {ours[0]} overrides kubelet's unit, but "
                f"{mechanism.variable} now comes from EnvironmentFile {mechanism.path}, which "
                "beats Environment=; expected the drop-in gone (revert, or delete it and run "
                "'systemctl daemon-reload')"
            )
        return _from_env_file(host, mechanism, f"{chain} -> EnvironmentFile")
    loaded = service.dropin_paths if service is not None else ()
    others = {
        path.rsplit("/", 1)[-1] for path in (*base.dropins, *loaded) if not unitdropin.is_ours(path)
    }
    name = unitdropin.choose_name(others, ours[0].rsplit("/", 1)[-1] if ours else None)
    source = f"{unitdropin.DROPIN_DIR}/{name}"
    if not host.is_dir(unitdropin.DROPIN_DIR):
        raise ConfigError(
            f"{unitdropin.DROPIN_DIR} does not exist; expected the directory for the agent's "
            f"drop-in of {UNIT_NAME} (the chart mounts it, creating it when missing)"
        )
    values = parse_kubelet_flags(unit.argv, f"{UNIT_NAME} as systemd would run it").cluster_dns
    return KubeletConfig(
        source,
        "unit",
        values or (),
        host.read_bytes(source) if ours else None,
        f"{chain} -> {mechanism.kind}= of {mechanism.source_path}",
        mechanism.variable,
        override=mechanism,
    )


def _from_env_file(host: HostRoot, carrier: EnvFileCarrier, found_by: str) -> KubeletConfig:
    check_config_path(host, carrier.path, f"EnvironmentFile= of {UNIT_NAME}")
    data = host.read_bytes(carrier.path)
    occurrence = envfile.find_cluster_dns(data, carrier.path)
    if occurrence is None:
        raise ConfigError(
            f"{carrier.path}: variable {carrier.variable} carries {CLUSTER_DNS_FLAG} when "
            "systemd expands it, but the file holds no such flag"
        )
    return KubeletConfig(
        carrier.path, "env", tuple(occurrence.values), data, found_by, occurrence.name
    )


def unit_environment(host: HostRoot, status: UnitStatus) -> dict[str, str]:
    """The environment systemd will start the unit with: its ``Environment=``, overridden
    by the environment files it names, read now as systemd will read them at the start."""
    environment = dict(item.partition("=")[::2] for item in status.environment)
    for env_file in status.environment_files:
        for path in env_file_paths(host, env_file.path):
            if env_file.optional and not host.is_file(path):
                continue
            for assignment in envfile.parse_env(host.read_bytes(path), path):
                environment[assignment.name] = assignment.value
    return environment


def systemd_cluster_dns(host: HostRoot, status: UnitStatus) -> tuple[str, ...] | None:
    """The ``--cluster-dns`` kubelet would start with, from the host's systemd's own view
    of the unit: its ``ExecStart=`` words (``argv[]``, shown joined by blanks) expanded with
    its ``Environment=`` and the environment files it names, read now as systemd will read
    them at the start (they override ``Environment=``). ``None`` when there is no flag.

    Raises :class:`ConfigError` when systemd shows no single ``ExecStart=``.
    """
    if len(status.exec_start) != 1:
        raise ConfigError(
            f"the host's systemd shows {len(status.exec_start)} ExecStart= for "
            f"{status.unit}; expected exactly one"
        )
    environment = unit_environment(host, status)
    words = status.exec_start[0].argv.split(" ")
    where = f"{status.unit} as the host's systemd will start it"
    return parse_kubelet_flags(expand_words(words, environment), where).cluster_dns


def _from_config_file(host: HostRoot, path: str, found_by: str) -> KubeletConfig:
    check_config_path(host, path, "kubelet --config")
    data = host.read_bytes(path)
    fmt = config_file_format(path, data)
    values = format_named(fmt).read(data, path)
    return KubeletConfig(path, fmt, values, data, found_by)


def read_capped(
    host: HostRoot, directory: str, names: Sequence[str], what: str, kind: str
) -> list[tuple[str, bytes]]:
    """``names`` in ``directory``, read in order: at most :data:`MAX_CONFIG_DIR_FILES`
    files and :data:`MAX_CONFIG_DIR_BYTES` bytes in all (a hostile directory cannot make
    the agent read without end), each one checked by :func:`check_config_path` (a symlink
    into a pod-writable directory is refused). Raises :class:`ConfigError` naming
    ``what``."""
    if len(names) > MAX_CONFIG_DIR_FILES:
        raise ConfigError(
            f"{directory}: {what} holds {len(names)} {kind}; expected "
            f"at most {MAX_CONFIG_DIR_FILES}"
        )
    files: list[tuple[str, bytes]] = []
    total = 0
    for name in names:
        check_config_path(host, f"{directory}/{name}", f"a file of {what}")
        try:
            data = host.read_bytes(f"{directory}/{name}", limit=MAX_CONFIG_DIR_BYTES - total)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} ({what} {directory}: its {kind} may hold "
                f"{MAX_CONFIG_DIR_BYTES} bytes in all, {total} read before {name})"
            ) from exc
        total += len(data)
        files.append((name, data))
    return files


def from_config_dir(
    host: HostRoot, directory: str, config: str | None, found_by: str
) -> KubeletConfig:
    check_config_path(host, directory, "kubelet --config-dir")
    if not host.is_dir(directory):
        raise ConfigError(f"{directory}: kubelet's --config-dir is not a directory")
    names = [name for name in host.listdir(directory) if name.endswith(".conf")]
    files = read_capped(host, directory, names, "kubelet's --config-dir", "*.conf files")
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


def require_addresses(values: tuple[str, ...], source: str) -> None:
    """kubelet itself refuses a cluster DNS that is not an IP; so does the agent."""
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ConfigError(
                f"{source}: cluster DNS {value!r} is not an IP address; expected a "
                "comma-separated list of IPs"
            ) from exc
