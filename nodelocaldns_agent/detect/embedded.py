"""Embedded kubelets: k3s, RKE2 and MicroK8s run kubelet without a ``kubelet.service``.

* **k3s** runs kubelet inside its own process: the main process of ``k3s.service``
  (server) or ``k3s-agent.service`` (agent), ``/usr/local/bin/k3s server|agent``. Its
  kubelet arguments are k3s's defaults merged with the ``kubelet-arg`` items of
  ``/etc/rancher/k3s/config.yaml`` and ``config.yaml.d`` (see
  :mod:`nodelocaldns_agent.kubeletconfig.k3sconfig`); from v1.32 k3s passes
  ``--config-dir=/var/lib/rancher/k3s/agent/etc/kubelet.conf.d`` and writes the cluster
  DNS into ``00-k3s-defaults.conf`` there at every start (docs.k3s.io, "Kubelet
  Configuration Files").
* **RKE2** runs kubelet as a child process of the main process of ``rke2-server.service``
  or ``rke2-agent.service`` (rke2's pkg/podexecutor/staticpod.go execs ``kubelet``), with
  ``--config-dir=/var/lib/rancher/rke2/agent/etc/kubelet.conf.d`` and the
  ``kubelet-arg`` items of ``/etc/rancher/rke2/config.yaml`` (k3s's loader).
* **MicroK8s** runs kubelet inside ``kubelite``, the main process of
  ``snap.microk8s.daemon-kubelite.service``, with the flags of
  ``/var/snap/microk8s/current/args/kubelet`` (``current`` links to the snap revision).

``cluster-dns:`` of k3s's and RKE2's config.yaml is server-wide (it also sets the CoreDNS
Service address and is handed to every agent): it is never edited. The per-node route is
kubelet's own argument: an existing ``kubelet-arg`` item ``cluster-dns=...`` edited in
place, or else the agent's own drop-in in the ``--config-dir``, which sorts after k3s's
``00-k3s-defaults.conf``.

Which layout a host is comes from the host's systemd (:func:`choose_layout`, pure).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from nodelocaldns_agent.detect.kubelet import (
    KubeletConfig,
    check_config_path,
    format_named,
    from_config_dir,
    locate_kubelet,
    read_capped,
    require_addresses,
    trusted_process,
    unit_environment,
)
from nodelocaldns_agent.detect.trust import KUBELET, program_name
from nodelocaldns_agent.errors import ConfigError, HostError, SystemdError
from nodelocaldns_agent.host.probes import ProcessInfo, ProcessTable
from nodelocaldns_agent.host.systemd import HostSystemd, UnitStatus
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig import k3sconfig
from nodelocaldns_agent.kubeletconfig.flags import CLUSTER_DNS_FLAG, parse_kubelet_flags
from nodelocaldns_agent.kubeletconfig.unitfile import UNIT_NAME

log = logging.getLogger(__name__)

#: systemd's active states in which a unit's main process runs (or is about to)
_RUNNING = ("active", "activating", "reloading")


@dataclass(frozen=True)
class Embedded:
    """One distribution that embeds kubelet."""

    name: str
    #: the units that can host kubelet (server, agent)
    units: tuple[str, ...]
    #: names of the units' main process (kernel name or program name)
    programs: tuple[str, ...]
    #: the main process runs kubelet as a child process (RKE2), not inside itself
    kubelet_child: bool
    #: k3s/RKE2: config.yaml (and its ``.d``); MicroK8s: the kubelet arguments file
    config_file: str
    #: the directory passed as kubelet's ``--config-dir`` ("" when none)
    config_dir: str = ""
    #: environment variables and flags of the main process that move the configuration
    #: elsewhere (not modelled: refused)
    relocating_env: tuple[str, ...] = ()
    relocating_flags: tuple[str, ...] = ()
    #: what the restart also restarts
    note: str = ""


#: k3s: pkg/cli/cmds (``--config``/``-c`` with K3S_CONFIG_FILE, ``--data-dir``/``-d`` with
#: K3S_DATA_DIR, ``--kubelet-arg``); the k3s binary shows as ``k3s-server``/``k3s-agent``
K3S = Embedded(
    "k3s",
    ("k3s.service", "k3s-agent.service"),
    ("k3s", "k3s-server", "k3s-agent"),
    False,
    "/etc/rancher/k3s/config.yaml",
    "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d",
    ("K3S_CONFIG_FILE", "K3S_DATA_DIR"),
    ("--config", "-c", "--data-dir", "-d", "--kubelet-arg"),
    "restarting k3s restarts kubelet, kube-proxy and, on a server, the API server and the "
    "rest of the control plane, which run inside k3s; pods keep running (KillMode=process)",
)
#: RKE2 (its CLI wraps k3s's: RKE2_CONFIG_FILE, RKE2_DATA_DIR)
RKE2 = Embedded(
    "rke2",
    ("rke2-server.service", "rke2-agent.service"),
    ("rke2",),
    True,
    "/etc/rancher/rke2/config.yaml",
    "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d",
    ("RKE2_CONFIG_FILE", "RKE2_DATA_DIR"),
    ("--config", "-c", "--data-dir", "-d", "--kubelet-arg"),
    "restarting rke2 restarts its kubelet child and, on a server, the supervisor of the "
    "control plane's static pods; pods keep running (KillMode=process)",
)
MICROK8S = Embedded(
    "microk8s",
    ("snap.microk8s.daemon-kubelite.service",),
    ("kubelite",),
    False,
    "/var/snap/microk8s/current/args/kubelet",
    note="restarting snap.microk8s.daemon-kubelite restarts kubelet and, on a control-plane "
    "node, the API server, scheduler and controller manager that run in the same process",
)
LAYOUTS = (K3S, RKE2, MICROK8S)


def candidate_units() -> tuple[str, ...]:
    return tuple(unit for layout in LAYOUTS for unit in layout.units)


def choose_layout(units: Mapping[str, UnitStatus]) -> tuple[Embedded, UnitStatus] | None:
    """Which embedded layout hosts kubelet, from the host's systemd's view of every unit
    of :func:`candidate_units` (a unit missing from ``units`` counts as not found).

    ``None`` when none is loaded. The one running unit when several are loaded (a k3s
    agent with the server's unit left installed); :class:`ConfigError` when several run,
    or several are loaded and none runs.
    """
    loaded = [
        (layout, units[unit])
        for layout in LAYOUTS
        for unit in layout.units
        if unit in units and units[unit].load_state == "loaded"
    ]
    if not loaded:
        return None
    running = [(layout, status) for layout, status in loaded if status.active_state in _RUNNING]
    chosen = running or loaded
    if len(chosen) > 1:
        names = ", ".join(status.unit for _, status in chosen)
        state = "running" if running else "loaded, none running"
        raise ConfigError(
            f"the host's systemd has several units that run kubelet ({names}: {state}); "
            "expected one"
        )
    return chosen[0]


def locate(host: HostRoot, processes: ProcessTable, systemd: HostSystemd) -> KubeletConfig:
    """The file that decides kubelet's cluster DNS, for kubelet.service or an embedded
    kubelet. Raises :class:`ConfigError` naming what failed."""
    found = detect(systemd)
    if found is None:
        return locate_kubelet(host, processes, systemd)
    layout, status = found
    what = f"{status.unit}'s MainPID {status.main_pid}"
    if status.main_pid == 0:
        raise ConfigError(
            f"{status.unit} is {status.active_state}; expected it running ({layout.name} runs "
            "kubelet, and the agent checks the running process before it edits anything)"
        )
    main = trusted_process(processes, status.main_pid, what, layout.programs)
    if layout is not MICROK8S:
        _check_relocation(host, layout, status, main)
    if layout.kubelet_child:
        found_kc = _rke2(host, processes, layout, main, what)
    else:  # kubelet runs inside the main process: a new one is a restarted kubelet
        found_kc = _microk8s(host, what) if layout is MICROK8S else _k3s(host, layout, what)
        found_kc = replace(found_kc, kubelet_pid=main.pid, kubelet_started=main.create_time)
    require_addresses(found_kc.cluster_dns, found_kc.source)
    return replace(found_kc, layout=layout.name, service=status.unit, note=layout.note)


def detect(systemd: HostSystemd) -> tuple[Embedded, UnitStatus] | None:
    """:func:`choose_layout` over what the host's systemd shows; None when kubelet.service
    is loaded or systemd cannot be asked (then :func:`locate_kubelet` decides and says
    why)."""
    try:
        if systemd.show(UNIT_NAME).load_state != "not-found":
            return None
        units = {unit: systemd.show(unit) for unit in candidate_units()}
    except SystemdError:
        return None
    return choose_layout(units)


def _check_relocation(
    host: HostRoot, layout: Embedded, status: UnitStatus, main: ProcessInfo
) -> None:
    """Refuse what moves k3s's/RKE2's configuration where the agent does not look."""
    words = [w for arg in main.argv for w in arg.split(" ")]
    for word in words[1:]:
        flag = word.split("=", 1)[0]
        if flag in layout.relocating_flags:
            raise ConfigError(
                f"{status.unit} runs {program_name(main.argv)} with {flag} on its command line; "
                f"expected its configuration in {layout.config_file} only (not modelled: "
                f"move the setting to {layout.config_file})"
            )
    environment = unit_environment(host, status)
    for name in layout.relocating_env:
        if environment.get(name):
            raise ConfigError(
                f"{status.unit} sets {name}={environment[name]}; expected the default "
                f"locations ({layout.config_file}, {layout.config_dir}): not modelled"
            )


def _k3s_config(host: HostRoot, layout: Embedded) -> k3sconfig.MergedConfig:
    """config.yaml and config.yaml.d of ``layout``, merged as k3s merges them."""
    files = []
    if host.is_file(layout.config_file):
        check_config_path(host, layout.config_file, f"{layout.name} configuration")
        files.append((layout.config_file, host.read_bytes(layout.config_file)))
    dotd = f"{layout.config_file}.d"
    names = k3sconfig.dotd_names(host.listdir(dotd))
    capped = read_capped(host, dotd, names, f"{layout.name}'s config.yaml.d", "*.yaml files")
    files += [(f"{dotd}/{name}", data) for name, data in capped]
    merged = k3sconfig.merge(files)
    if "data-dir" in merged.keys:
        raise ConfigError(
            f"{layout.config_file} (or its .d files) sets data-dir; expected the default data "
            f"directory (kubelet's --config-dir {layout.config_dir}): not modelled"
        )
    for item in merged.kubelet_args:
        if item.name.rstrip("+-") in k3sconfig.RELOCATING:
            raise ConfigError(
                f"{item.path} line {item.line}: kubelet-arg {item.value!r} gives kubelet a "
                f"configuration of its own; expected kubelet's files in {layout.config_dir} "
                "only (not modelled)"
            )
    return merged


def _from_kubelet_arg(
    host: HostRoot, merged: k3sconfig.MergedConfig, found_by: str
) -> KubeletConfig | None:
    """The one ``kubelet-arg`` item ``cluster-dns=...``; None when no item sets it."""
    items = k3sconfig.cluster_dns_items(merged.kubelet_args)
    if not items:
        return None
    if len(items) > 1:
        where = ", ".join(f"{i.path} line {i.line}" for i in items)
        raise ConfigError(
            f"{len(items)} kubelet-arg items set cluster-dns ({where}); expected exactly one "
            "(each gives kubelet a --cluster-dns, and kubelet adds the lists up)"
        )
    item = items[0]
    data = host.read_bytes(item.path)
    values = format_named(k3sconfig.FORMAT.name).read(data, item.path)
    return KubeletConfig(
        item.path,
        k3sconfig.FORMAT.name,
        values,
        data,
        f"kubelet-arg of {item.path} line {item.line} ({found_by})",
    )


def _k3s(host: HostRoot, layout: Embedded, found_by: str) -> KubeletConfig:
    merged = _k3s_config(host, layout)
    from_arg = _from_kubelet_arg(host, merged, found_by)
    if from_arg is not None:
        return replace(from_arg, in_process=True)
    defaults = f"{layout.config_dir}/00-k3s-defaults.conf"
    if not host.is_file(defaults) or not format_named("config-dir").read(
        host.read_bytes(defaults), defaults
    ):
        raise ConfigError(
            f"{defaults} does not set clusterDNS, so this k3s (older than v1.32) passes the "
            "cluster DNS to kubelet as a flag of its own, which no drop-in can override; "
            f"expected kubelet-arg: [cluster-dns=<address>] in {layout.config_file} (the agent "
            "then edits that item)"
        )
    found = from_config_dir(host, layout.config_dir, None, f"{layout.name} ({found_by})")
    return replace(found, in_process=True)


def _rke2(
    host: HostRoot, processes: ProcessTable, layout: Embedded, main: ProcessInfo, what: str
) -> KubeletConfig:
    kubelet = _kubelet_child(processes, main, what)
    found_by = f"kubelet process {kubelet.pid}, child of {what}"
    flags = parse_kubelet_flags(list(kubelet.argv), found_by)
    merged = _k3s_config(host, layout)
    running = tuple(flags.cluster_dns) if flags.cluster_dns is not None else None
    if flags.cluster_dns_count > 1:
        raise ConfigError(
            f"kubelet ({found_by}) has {CLUSTER_DNS_FLAG} {flags.cluster_dns_count} times; "
            "expected exactly one"
        )
    from_arg = _from_kubelet_arg(host, merged, found_by)
    if from_arg is not None:
        found = from_arg
    elif flags.cluster_dns is not None:
        raise ConfigError(
            f"kubelet ({found_by}) runs with {CLUSTER_DNS_FLAG} but no kubelet-arg item of "
            f"{layout.config_file} sets it ({layout.name} passes it itself); expected "
            f"kubelet-arg: [cluster-dns=<address>] in {layout.config_file}"
        )
    elif flags.config_dir:
        found = from_config_dir(host, flags.config_dir, flags.config, found_by)
    else:
        raise ConfigError(
            f"kubelet ({found_by}) has neither {CLUSTER_DNS_FLAG} nor --config-dir on its "
            "command line; expected one of them"
        )
    return replace(
        found,
        running_cluster_dns=running,
        kubelet_pid=kubelet.pid,
        kubelet_started=kubelet.create_time,
    )


def _kubelet_child(processes: ProcessTable, main: ProcessInfo, what: str) -> ProcessInfo:
    try:
        children = processes.children(main.pid)
    except HostError as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    kubelets = []
    for pid in children:
        child = processes.get(pid)
        if child is not None and KUBELET in (child.name, program_name(child.argv)):
            kubelets.append(trusted_process(processes, pid, f"kubelet child {pid} of {what}"))
    if len(kubelets) != 1:
        raise ConfigError(
            f"{what} has {len(kubelets)} kubelet child processes; expected exactly one "
            "(kubelet may be starting: the next run looks again)"
        )
    return kubelets[0]


def _microk8s(host: HostRoot, found_by: str) -> KubeletConfig:
    path = MICROK8S.config_file
    check_config_path(host, path, "MicroK8s kubelet arguments")
    data = host.read_bytes(path)
    values = format_named("args-file").read(data, path)
    if not values:
        raise ConfigError(
            f"{path} has no {CLUSTER_DNS_FLAG} line; expected one (MicroK8s adds it with "
            "'microk8s enable dns')"
        )
    return KubeletConfig(path, "args-file", values, data, f"{path} ({found_by})", in_process=True)
