"""Which running process is the host's kubelet: pure decisions over what the host showed.

The agent runs with ``hostPID``, so it sees every pod's processes too, and any of them may
be called ``kubelet``. A process is trusted as the host's kubelet only when all of these
hold:

* it is the ``MainPID`` of the host's ``kubelet.service`` (asked from the host's systemd,
  see :mod:`nodelocaldns_agent.host.systemd`);
* it is named ``kubelet`` (a wrapper script as main process is not kubelet);

An embedded kubelet (:mod:`nodelocaldns_agent.detect.embedded`) is trusted the same way,
with the unit that hosts it and that unit's program's names: the ``MainPID`` of
``k3s.service`` named ``k3s`` (kubelet runs inside it), a ``kubelet`` child of the
``MainPID`` of ``rke2-agent.service`` named ``rke2``, and so on; each must also pass the
two namespace and cgroup tests:

* it has PID 1's mount and pid namespaces (a container's process has its own);
* none of its cgroups is a pod's (see :func:`pod_cgroup`).
"""

from __future__ import annotations

import re

from nodelocaldns_agent.host.probes import ProcessInfo

KUBELET = "kubelet"
#: A pod's pid in kubelet's cgroup names: ``"pod" + pod UID``
#: (``GetPodContainerName``, pkg/kubelet/cm/pod_container_manager_linux.go). A UID is a
#: UUID, or 32 hex digits for a static pod (pkg/kubelet/config/common.go); the systemd
#: driver writes its dashes as ``_`` (``escapeSystemdCgroupName``).
_POD_UID = r"[0-9a-f]{8}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{12}"
_POD_COMPONENTS = (
    # cgroupfs driver: /kubepods[/burstable|/besteffort]/pod<uid>/<container id>
    # ("kubepods": defaultNodeAllocatableCgroupName, pkg/kubelet/cm)
    "kubepods",
    "pod" + _POD_UID,
    # systemd driver: /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice
    # (CgroupName.ToSystemd, pkg/kubelet/cm/cgroup_manager_linux.go)
    r"kubepods[-.].*",
    # the runtimes' container scopes: cri-containerd-<id>.scope (containerd's CRI plugin),
    # crio-<id>.scope and crio-conmon-<id>.scope (CRI-O)
    r"(?:cri-containerd|crio|crio-conmon)-[0-9a-f]{64}\.scope",
)
_POD_COMPONENT = re.compile("|".join(_POD_COMPONENTS), re.IGNORECASE)


def pod_cgroup(cgroup: tuple[str, ...]) -> str:
    """The first cgroup path of ``/proc/<pid>/cgroup`` lines that is a pod's ("" when none).

    Every hierarchy counts (cgroup v1 has one line per hierarchy, v2 the ``0::`` line).
    Seen from a cgroup namespace, paths outside it start with ``/..``: only the components
    are looked at, wherever they are.
    """
    for line in cgroup:
        path = line.split(":", 2)[-1]
        if any(_POD_COMPONENT.fullmatch(part) for part in path.split("/")):
            return path
    return ""


def program_name(argv: tuple[str, ...]) -> str:
    """The program's name from ``argv[0]``: its base name up to the first blank (k3s and
    RKE2 rewrite their ``argv[0]`` to ``/usr/local/bin/k3s server``)."""
    return argv[0].rsplit("/", 1)[-1].split(" ", 1)[0] if argv else ""


def untrusted(proc: ProcessInfo, init: ProcessInfo, names: tuple[str, ...] = (KUBELET,)) -> str:
    """Why ``proc`` (the main process of the unit that hosts kubelet, or its kubelet child)
    is not what the host runs as kubelet, or "" when it is: its kernel name or program name
    must be one of ``names``. ``init`` is PID 1 as the agent sees it."""
    argv0 = program_name(proc.argv)
    if proc.name not in names and argv0 not in names:
        return f"it is {proc.name or argv0 or 'unnamed'!r}, not {' or '.join(names)}"
    for kind, mine, init_ns in (
        ("mount", proc.mnt_ns, init.mnt_ns),
        ("pid", proc.pid_ns, init.pid_ns),
    ):
        if not mine or not init_ns:
            return f"its {kind} namespace or PID 1's could not be read"
        if mine != init_ns:
            return f"it runs in {kind} namespace {mine}, not in PID 1's {init_ns}"
    pod = pod_cgroup(proc.cgroup)
    if pod:
        return f"it runs in a pod's cgroup {pod}"
    if not proc.cgroup:
        return "its cgroup could not be read"
    return ""
