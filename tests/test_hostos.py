"""Appliance operating systems (issue 14, part 4): recognised from the host's os-release,
refused with the OS's own way to set the cluster DNS, nothing written.

The os-release texts are the distributions' own (see :mod:`nodelocaldns_agent.detect.hostos`
for where each comes from)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodelocaldns_agent.detect.hostos import (
    APPLIANCES,
    Appliance,
    classify,
    detect_appliance,
    parse_os_release,
)
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.plan import Action, Blocker, Goal, Plan, on_appliance
from nodelocaldns_agent.state import Result
from testing.fakenode import TKE_ENV, FakeNode, tke_node

LOCAL = "169.254.20.10"

#: siderolabs/talos pkg/machinery/version/os-release (v1.13.10), byte for byte
TALOS = (
    'NAME="Talos"\nID=talos\nVERSION_ID=v1.13.10\nPRETTY_NAME="Talos (v1.13.10)"\n'
    'HOME_URL="https://www.talos.dev/"\n'
    'BUG_REPORT_URL="https://github.com/siderolabs/talos/issues"\n'
    'VENDOR_NAME="Sidero Labs"\nVENDOR_URL="https://www.siderolabs.com/"\n'
)
#: a Bottlerocket host's /etc/os-release (bottlerocket-os/bottlerocket QUICKSTART-EKS.md;
#: NAME and ID from packages/release/release.spec)
BOTTLEROCKET = (
    "NAME=Bottlerocket\nID=bottlerocket\n"
    'VERSION="1.47.0 (aws-k8s-1.34)"\nPRETTY_NAME="Bottlerocket OS 1.47.0 (aws-k8s-1.34)"\n'
    "VARIANT_ID=aws-k8s-1.34\nVERSION_ID=1.47.0\nBUILD_ID=6154605b\n"
)
#: rancher/k3os overlay/lib/os-release, with a version filled in
K3OS = (
    'NAME="k3OS"\nVERSION="k3OS v0.21.5-k3s2r1"\nID=k3os\nID_LIKE=alpine\n'
    'PRETTY_NAME="k3OS v0.21.5-k3s2r1"\nVERSION_ID="v0.21.5-k3s2r1"\n'
)
RHCOS = (
    'NAME="Red Hat Enterprise Linux CoreOS"\nID="rhcos"\nID_LIKE="rhel fedora"\n'
    'VERSION="413.90.202212151724-0"\nVARIANT="CoreOS"\nVARIANT_ID=coreos\n'
)
#: fedora-release.spec appends VARIANT_ID=coreos to Fedora's own: ID stays fedora
FEDORA_COREOS = (
    'NAME="Fedora Linux"\nVERSION="41.20241109.3.0 (CoreOS)"\nID=fedora\n'
    'VARIANT="CoreOS"\nVARIANT_ID=coreos\n'
)
FLATCAR = 'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nID_LIKE=coreos\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n'


# ---------------------------------------------------------------- parsing
PARSE_ROWS = [
    ("talos", TALOS, {"NAME": "Talos", "ID": "talos", "PRETTY_NAME": "Talos (v1.13.10)"}),
    ("bottlerocket", BOTTLEROCKET, {"ID": "bottlerocket", "VARIANT_ID": "aws-k8s-1.34"}),
    ("single-quotes", "ID='k3os'\n", {"ID": "k3os"}),
    ("double-quote-escapes", 'NAME="a \\"b\\" \\$c \\\\d"\n', {"NAME": 'a "b" $c \\d'}),
    ("comments-blanks-junk", "# c\n\n  ID=talos  \nnot an assignment\n", {"ID": "talos"}),
    ("crlf", "ID=rhcos\r\nVARIANT_ID=coreos\r\n", {"ID": "rhcos", "VARIANT_ID": "coreos"}),
    ("last-wins", "ID=ubuntu\nID=talos\n", {"ID": "talos"}),
    ("empty", "", {}),
]


@pytest.mark.parametrize(
    ("text", "subset"), [r[1:] for r in PARSE_ROWS], ids=[r[0] for r in PARSE_ROWS]
)
def test_parse_os_release(text: str, subset: dict[str, str]) -> None:
    fields = parse_os_release(text)
    assert {k: fields.get(k) for k in subset} == subset


# ---------------------------------------------------------------- the decision
CLASSIFY_ROWS = [
    ("bottlerocket", BOTTLEROCKET, "Bottlerocket"),
    ("talos", TALOS, "Talos"),
    ("k3os", K3OS, "k3OS"),
    ("rhcos", RHCOS, "Red Hat Enterprise Linux CoreOS"),
    ("id-case-and-quotes", 'ID="Talos"\n', "Talos"),
    # systemd-based, /etc written once by Ignition and kept: ordinary files
    ("fedora-coreos-is-ordinary", FEDORA_COREOS, None),
    ("flatcar-is-ordinary", FLATCAR, None),
    ("ubuntu", UBUNTU, None),
    ("no-id", 'NAME="Talos"\n', None),
]


@pytest.mark.parametrize(
    ("text", "name"), [r[1:] for r in CLASSIFY_ROWS], ids=[r[0] for r in CLASSIFY_ROWS]
)
def test_classify(text: str, name: str | None) -> None:
    found = classify(parse_os_release(text))
    assert (found.name if found else None) == name


@pytest.mark.parametrize("appliance", APPLIANCES, ids=[a.os_id for a in APPLIANCES])
def test_every_refusal_names_the_os_and_its_own_way_with_the_local_dns(
    appliance: Appliance,
) -> None:
    text = appliance.refusal(LOCAL)
    assert text.startswith(f"{appliance.name} (os-release ID={appliance.os_id}): ")
    assert ", so the agent does not edit it. " in text
    if appliance.os_id != "rhcos":  # OpenShift has no per-node knob (see hostos)
        assert LOCAL in text


REFUSAL = "Talos (os-release ID=talos): ..."
MIGRATE = Plan(Action.MIGRATE, "cluster DNS 10.96.0.10 -> 169.254.20.10", (LOCAL,), write=True)
OWED = Plan(Action.MIGRATE, "restart owed", (LOCAL,))
ALREADY = Plan(Action.NONE, f"kubelet already uses the local DNS {LOCAL}")
WAITING = Plan(Action.BLOCKED, "local DNS does not answer", blocker=Blocker.LOCAL_DNS)
NO_KUBELET = Plan(Action.BLOCKED, "kubelet configuration: none", blocker=Blocker.CONFIG)
REVERT = Plan(Action.REVERT, "cluster DNS 169.254.20.10 -> original 10.96.0.10", ("10.96.0.10",))
NO_ORIGINAL = Plan(Action.BLOCKED, "no original", blocker=Blocker.NO_ORIGINAL)
REFUSED = Plan(Action.BLOCKED, REFUSAL, blocker=Blocker.APPLIANCE_OS)
NOTHING_TO_REVERT = Plan(Action.NONE, f"nothing to revert: {REFUSAL}")
# (id, goal, the plan on an ordinary OS, the plan on an appliance)
APPLIANCE_ROWS = [
    ("migration-refused", Goal.MIGRATE, MIGRATE, REFUSED),
    ("owed-restart-refused", Goal.MIGRATE, OWED, REFUSED),
    # the node waits for nothing: the agent will never migrate it
    ("waiting-for-local-dns-refused", Goal.MIGRATE, WAITING, REFUSED),
    ("no-kubelet-config-refused", Goal.MIGRATE, NO_KUBELET, REFUSED),
    # set the OS's way: nothing to do, the node is migrated
    ("already-local-is-kept", Goal.MIGRATE, ALREADY, ALREADY),
    # undoes the agent's own edit, made before it knew the OS
    ("revert-of-our-edit-is-made", Goal.REVERT, REVERT, REVERT),
    ("revert-without-kubelet-config", Goal.REVERT, NO_KUBELET, NOTHING_TO_REVERT),
    ("revert-without-original", Goal.REVERT, NO_ORIGINAL, NOTHING_TO_REVERT),
    ("revert-nothing", Goal.REVERT, ALREADY, NOTHING_TO_REVERT),
]


@pytest.mark.parametrize(
    ("goal", "plan", "decision"),
    [r[1:] for r in APPLIANCE_ROWS],
    ids=[r[0] for r in APPLIANCE_ROWS],
)
def test_on_appliance(goal: Goal, plan: Plan, decision: Plan) -> None:
    assert on_appliance(plan, goal, REFUSAL) == decision


# ---------------------------------------------------------------- the host's files
def host_with(tmp_path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    for path, text in files.items():
        real = tmp_path / path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text(text)
    for path, target in (links or {}).items():
        real = tmp_path / path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, real)
    return tmp_path


def test_etc_os_release_symlink_is_followed_inside_the_host_root(tmp_path: Path) -> None:
    # the usual layout (os-release(5)): /etc/os-release -> ../usr/lib/os-release; an
    # absolute target is the host's, never the agent container's own /usr/lib
    root = host_with(
        tmp_path, {"/usr/lib/os-release": TALOS}, {"/etc/os-release": "/usr/lib/os-release"}
    )
    found = detect_appliance(HostRoot(root))
    assert found is not None and found.os_id == "talos"


def test_usr_lib_os_release_when_etc_has_none(tmp_path: Path) -> None:
    root = host_with(tmp_path, {"/usr/lib/os-release": BOTTLEROCKET})
    found = detect_appliance(HostRoot(root))
    assert found is not None and found.os_id == "bottlerocket"


def test_etc_wins_over_usr_lib(tmp_path: Path) -> None:
    root = host_with(tmp_path, {"/etc/os-release": UBUNTU, "/usr/lib/os-release": TALOS})
    assert detect_appliance(HostRoot(root)) is None


def test_no_os_release_is_no_appliance(tmp_path: Path) -> None:
    assert detect_appliance(HostRoot(host_with(tmp_path, {}))) is None


# ---------------------------------------------------------------- the engine
#: kubelet's configuration as Bottlerocket renders it (bottlerocket-os/bottlerocket
#: packages/kubernetes-1.28/kubelet-config, head of the template with cluster-dns-ip set)
BOTTLEROCKET_KUBELET = """---
kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
address: 0.0.0.0
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 2m0s
    enabled: true
  x509:
    clientCAFile: "/etc/kubernetes/pki/ca.crt"
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS:
- {dns}
resolvConf: "/run/netdog/resolv.conf"
cgroupDriver: systemd
maxPods: 110
staticPodPath: "/etc/kubernetes/static-pods/"
"""
BOTTLEROCKET_CONFIG = "/etc/kubernetes/kubelet/config"


def bottlerocket_node(tmp_path: Path, dns: str = "10.96.0.10") -> FakeNode:
    node = FakeNode(tmp_path)
    node.write(BOTTLEROCKET_CONFIG, BOTTLEROCKET_KUBELET.format(dns=dns))
    node.write("/usr/lib/os-release", BOTTLEROCKET)
    os.symlink("../usr/lib/os-release", tmp_path / "etc/os-release")
    node.run_kubelet(
        "/usr/bin/kubelet",
        "--kubeconfig",
        "/etc/kubernetes/kubelet/kubeconfig",
        "--config",
        BOTTLEROCKET_CONFIG,
        "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
    )
    return node


def test_bottlerocket_is_refused_not_edited(tmp_path: Path) -> None:
    """Before: the rendered file was edited, kubelet restarted and ``migrated`` reported
    (lost at the next boot). Now: blocked with Bottlerocket's own way, nothing written."""
    node = bottlerocket_node(tmp_path)
    before = node.read(BOTTLEROCKET_CONFIG)
    rep = node.engine().check()
    assert rep["appliance_os"] == "Bottlerocket"
    assert rep["action"] == "blocked" and rep["diff"] == ""
    assert f"apiclient set settings.kubernetes.cluster-dns-ip={LOCAL}" in rep["reason"]
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.BLOCKED and out.exit_code == 3
    assert out.plan.blocker is Blocker.APPLIANCE_OS
    assert node.read(BOTTLEROCKET_CONFIG) == before
    assert node.runner.calls == []
    assert not (tmp_path / "var/lib/nodelocaldns-agent").exists()  # no journal either


def test_bottlerocket_set_through_its_settings_is_migrated(tmp_path: Path) -> None:
    node = bottlerocket_node(tmp_path, dns=LOCAL)
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED and out.plan.action is Action.NONE
    assert node.runner.calls == []


def test_talos_without_systemd_is_refused_not_a_config_error(tmp_path: Path) -> None:
    """Before: no kubelet.service, so a ConfigError about kubelet (or, with a file found,
    an edit that failed verification and was rolled back). Now: Talos' own way."""
    node = FakeNode(tmp_path)
    node.write("/etc/os-release", TALOS)
    node.systemd.error = "System has not been booted with systemd as init system (PID 1)"
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.BLOCKED
    assert out.plan.reason.startswith("Talos (os-release ID=talos): there is no systemd")
    assert "so the agent does not edit it" in out.plan.reason
    assert f'machine.kubelet.clusterDNS: ["{LOCAL}"]' in out.plan.reason
    back = node.engine().reconcile(Goal.REVERT)
    assert back.state is Result.NOT_NEEDED and back.plan.reason.startswith("nothing to revert")
    assert node.runner.calls == []


def test_a_revert_still_undoes_what_an_older_agent_wrote(tmp_path: Path) -> None:
    """A node migrated by an agent that did not know the OS: the revert puts the rendered
    bytes back (the journal's original), the way it would anywhere."""
    node = tke_node(tmp_path)
    assert node.engine().reconcile(Goal.MIGRATE).state is Result.MIGRATED
    node.write("/etc/os-release", BOTTLEROCKET)
    again = node.engine().reconcile(Goal.MIGRATE)
    assert again.state is Result.MIGRATED and again.plan.action is Action.NONE
    back = node.engine().reconcile(Goal.REVERT)
    assert back.state is Result.REVERTED
    assert node.read("/etc/kubernetes/kubelet") == TKE_ENV
    journal = json.loads(node.read("/var/lib/nodelocaldns-agent/state.json"))
    assert journal["state"] == "reverted"
