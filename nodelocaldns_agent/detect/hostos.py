"""Appliance operating systems: kubelet's configuration is the platform's, never the agent's.

On these systems the file kubelet reads is rendered by the OS from its own configuration
(an API, a machine config, a boot-time config), so an edit is lost at the next render or
fights the OS; the cluster DNS has a supported knob of its own. The agent recognises them
from the host's ``os-release`` (os-release(5): ``/etc/os-release``, else
``/usr/lib/os-release``) and refuses to migrate them, naming that knob
(:func:`nodelocaldns_agent.plan.on_appliance`).

The identification fields, as each distribution writes them:

- Bottlerocket: ``NAME=Bottlerocket``, ``ID=bottlerocket`` (packages/release/release.spec of
  bottlerocket-os/bottlerocket; QUICKSTART-EKS.md shows the host's ``/etc/os-release``
  with ``VARIANT_ID=aws-k8s-1.25``). kubelet's ``/etc/kubernetes/kubelet/config`` is
  rendered from ``settings.kubernetes.*`` at every boot and on every settings change.
- Talos: ``NAME="Talos"``, ``ID=talos`` (pkg/machinery/version/os-release of
  siderolabs/talos). No systemd; machined builds kubelet's configuration from the machine
  config (``machine.kubelet.clusterDNS``, pkg/machinery/config/types/v1alpha1).
- k3OS: ``NAME="k3OS"``, ``ID=k3os`` (overlay/lib/os-release of rancher/k3os). ``/etc`` is
  ephemeral (README "File System Structure"); kubelet runs inside k3s, whose arguments come
  from ``k3os.k3s_args`` in the persistent config.
- Red Hat Enterprise Linux CoreOS (OpenShift): ``ID="rhcos"``, ``VARIANT_ID=coreos``. The
  Machine Config Operator renders kubelet's configuration and refuses ``clusterDNS`` in a
  KubeletConfig (openshift/machine-config-operator, pkg/controller/kubelet-config); the DNS
  Operator already runs CoreDNS as a DaemonSet on every node.

Not refused, because kubelet's files there are ordinary, persistent ``/etc`` files written
once by the provisioning step: Flatcar (``ID=flatcar``) and Fedora CoreOS (``ID=fedora``,
``VARIANT_ID=coreos``): both are systemd-based; Ignition runs only at the first boot, and
``/etc`` is writable and kept across reboots and updates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.hostpaths import HostRoot

#: where os-release(5) says to look, in this order
OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
#: an os-release file is a few hundred bytes
OS_RELEASE_LIMIT = 64 * 1024
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_ESCAPED = re.compile(r"\\([\\$\"`])")


@dataclass(frozen=True)
class Appliance:
    """An operating system whose kubelet configuration the agent does not edit."""

    #: the os-release ``ID`` it is recognised by
    os_id: str
    #: as users call it
    name: str
    #: what owns kubelet's configuration there, and why an edit is wrong
    owner: str
    #: the supported way to set the cluster DNS, a sentence; ``{local}`` is the local DNS
    supported: str

    def refusal(self, local_dns: str) -> str:
        """Why the agent does not migrate this node, and what to do instead."""
        return (
            f"{self.name} (os-release ID={self.os_id}): {self.owner}, so the agent does not "
            "edit it. " + self.supported.format(local=local_dns)
        )


APPLIANCES = (
    Appliance(
        "bottlerocket",
        "Bottlerocket",
        "kubelet's /etc/kubernetes/kubelet/config is rendered from the settings API at every boot",
        "Set it through the settings API: apiclient set "
        'settings.kubernetes.cluster-dns-ip={local} (or cluster-dns-ip = "{local}" under '
        "[settings.kubernetes] in the user data)",
    ),
    Appliance(
        "talos",
        "Talos",
        "there is no systemd, and kubelet's configuration is built from the machine config",
        'Set machine.kubelet.clusterDNS: ["{local}"] in the machine config '
        "(talosctl patch machineconfig)",
    ),
    Appliance(
        "k3os",
        "k3OS",
        "/etc is rebuilt at every boot and kubelet runs inside k3s",
        "Add --kubelet-arg=cluster-dns={local} to k3os.k3s_args in "
        "/var/lib/rancher/k3os/config.yaml; it applies at the next boot",
    ),
    Appliance(
        "rhcos",
        "Red Hat Enterprise Linux CoreOS",
        "OpenShift's Machine Config Operator renders kubelet's configuration and refuses "
        "clusterDNS in a KubeletConfig",
        "OpenShift's DNS Operator already runs CoreDNS on every node (DaemonSet dns-default "
        "in openshift-dns); configure DNS through dns.operator.openshift.io/default",
    ),
)


def parse_os_release(text: str) -> dict[str, str]:
    """The fields of an os-release file: ``KEY=value`` lines, the value optionally in
    single or double quotes (in double quotes, ``\\`` escapes ``\\ $ " ```), comments and
    blank lines ignored. A line that is not an assignment is skipped, as systemd does."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(line)
        if match is None:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _ESCAPED.sub(r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        fields[key] = value
    return fields


def classify(fields: Mapping[str, str]) -> Appliance | None:
    """The appliance OS these os-release fields name (None: an ordinary distribution)."""
    os_id = fields.get("ID", "").strip().lower()
    return next((a for a in APPLIANCES if a.os_id == os_id), None)


def detect_appliance(host: HostRoot) -> Appliance | None:
    """The host's appliance OS, from the first os-release file it has. No readable
    os-release (a minimal or unusual host) is no appliance: the agent then goes by the
    kubelet configuration it finds."""
    for path in OS_RELEASE_PATHS:
        try:
            data = host.read_bytes(path, limit=OS_RELEASE_LIMIT)
        except ConfigError:
            continue
        return classify(parse_os_release(data.decode("utf-8", "replace")))
    return None
