"""The agent against a real systemd: a TKE-like node booted with systemd-nspawn.

Opt-in (marker ``systemd``; ``pytest -m systemd``), root only. The node, how it is built
and why the agent runs inside it are described in :mod:`testing.systemd_node`: the agent
runs in the node's pid, mount and network namespaces with ``--host-root /`` and its
*default* restart command ``nsenter --target 1 ... systemctl restart kubelet``, so every
restart below is done by the node's systemd, and systemd's own view (``systemctl show``,
``/proc/<MainPID>/cmdline``) is what the tests check.

The first run builds the root file system with debootstrap (about a minute, cached under
``/var/cache/nodelocaldns-agent-tests``); afterwards each test boots a fresh node on an
overlay of the cache in well under a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from testing.sandbox.constants import BAD_DNS, CLUSTER_DNS, LOCAL_DNS
from testing.sandbox.layouts import AGENT_UNIT_DROPIN
from testing.sandbox.layouts import TKE_ENV_FILE as ENV_FILE
from testing.sandbox.layouts import TKE_UNIT_FILE as UNIT_FILE
from testing.sandbox.node import RunResult
from testing.systemd_node import (
    BUILD_TIMEOUT,
    NspawnNode,
    cached_rootfs,
    missing_tools,
    mounts_under,
)

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(BUILD_TIMEOUT + 120)]

log = logging.getLogger(__name__)
#: systemd's view of kubelet (the monotonic start time has microseconds; the wall-clock
#: ExecMainStartTimestamp only whole seconds, so two starts can look the same)
PROPS = ("MainPID", "ActiveState", "ExecMainStartTimestamp", "ExecMainStartTimestampMonotonic")
OLD_FLAG = f"--cluster-dns={CLUSTER_DNS}"
NEW_FLAG = f"--cluster-dns={LOCAL_DNS}"


@pytest.fixture(scope="session")
def systemd_rootfs() -> Path:
    """The cached Debian root file system, built on first use."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts an overlay and boots systemd-nspawn")
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)} (scripts/setup.sh installs them)")
    rootfs, seconds = cached_rootfs()
    if seconds:
        log.warning("built %s in %.1fs", rootfs, seconds)
    return rootfs


@pytest.fixture
def node(systemd_rootfs: Path, tmp_path: Path) -> Iterator[NspawnNode]:
    """A freshly booted node, powered off and deleted afterwards (checked)."""
    booted = NspawnNode(tmp_path / "node", systemd_rootfs).start()
    try:
        yield booted
    finally:
        booted.close()  # raises when a process, cgroup or mount is left
        assert not mounts_under(tmp_path)


def migrate(node: NspawnNode, *extra: str) -> RunResult:
    return node.agent("migrate", "--once", "--json", *extra)


def revert(node: NspawnNode, *extra: str) -> RunResult:
    return node.agent("revert", "--once", "--json", *extra)


def kubelet(node: NspawnNode) -> dict[str, str]:
    return node.unit(*PROPS)


def running_argv(node: NspawnNode, unit: dict[str, str]) -> list[str]:
    """argv of kubelet's MainPID, read from /proc inside the node."""
    return node.cmdline(int(unit["MainPID"]))


def restarted(before: dict[str, str], after: dict[str, str]) -> bool:
    return after["MainPID"] != before["MainPID"] and int(
        after["ExecMainStartTimestampMonotonic"]
    ) > int(before["ExecMainStartTimestampMonotonic"])


def journal(node: NspawnNode) -> dict[str, object]:
    data = node.journal()
    assert data is not None, "no journal"
    return data


def test_check_finds_kubelet_through_its_process_and_unit(node: NspawnNode) -> None:
    before = kubelet(node)
    pid = int(before["MainPID"])

    run = node.agent("check", "--json")

    assert run.returncode == 0, run
    rep = run.json()
    assert (rep["proxy_mode"], rep["proxy_mode_source"]) == ("ipvs", "interface kube-ipvs0")
    dns = rep["local_dns"]
    assert (dns["address"], dns["bound"], dns["interface"]) == (LOCAL_DNS, True, "nodelocaldns")
    assert dns["healthy"] is True, dns
    kc = rep["kubelet"]
    assert kc["source"] == ENV_FILE
    assert (kc["format"], kc["variable"]) == ("env", "CLUSTER_DNS")
    assert kc["cluster_dns"] == kc["running_cluster_dns"] == [CLUSTER_DNS]
    # the pid is the node's MainPID: the agent saw the node's processes, found kubelet's,
    # then its unit (as systemd reads it), then the unit's EnvironmentFile
    assert kc["pid"] == pid
    assert kc["found_by"] == f"kubelet process {pid} -> {UNIT_FILE} -> EnvironmentFile"
    assert not kc["error"]
    assert rep["action"] == "migrate", rep["reason"]
    assert f'-CLUSTER_DNS="{OLD_FLAG}"' in rep["diff"].splitlines()
    assert f'+CLUSTER_DNS="{NEW_FLAG}"' in rep["diff"].splitlines()
    # read-only
    assert node.read_bytes(ENV_FILE) == node.original
    assert kubelet(node) == before
    assert node.journal() is None


def test_migrate_restarts_kubelet_through_systemd_once(node: NspawnNode) -> None:
    before = kubelet(node)
    assert OLD_FLAG in running_argv(node, before)

    run = migrate(node)

    assert run.returncode == 0, f"{run}\n{node.diagnostics()}"
    out = run.json()
    assert (out["state"], out["restarted"], out["cluster_dns"]) == ("migrated", True, [LOCAL_DNS])
    after = kubelet(node)
    assert after["ActiveState"] == "active"
    assert restarted(before, after), (before, after)
    argv = running_argv(node, after)
    assert NEW_FLAG in argv, argv
    assert OLD_FLAG not in argv
    starts = node.kubelet_starts()
    assert len(starts) == 2, starts
    assert starts[-1]["pid"] == int(after["MainPID"])
    assert NEW_FLAG in starts[-1]["argv"]
    # only the value changed, every other byte of the env file is as it was
    expected = node.original.replace(OLD_FLAG.encode(), NEW_FLAG.encode())
    assert node.read_bytes(ENV_FILE) == expected
    assert journal(node)["state"] == "migrated"

    again = migrate(node)

    assert again.returncode == 0, again
    assert (again.json()["state"], again.json()["restarted"]) == ("migrated", False)
    assert kubelet(node) == after
    assert len(node.kubelet_starts()) == 2


def test_revert_restores_the_original_file_and_flag(node: NspawnNode) -> None:
    first = migrate(node)
    assert first.returncode == 0, f"{first}\n{node.diagnostics()}"
    migrated = kubelet(node)

    run = revert(node)

    assert run.returncode == 0, f"{run}\n{node.diagnostics()}"
    out = run.json()
    assert (out["state"], out["restarted"], out["cluster_dns"]) == ("reverted", True, [CLUSTER_DNS])
    assert node.read_bytes(ENV_FILE) == node.original
    assert node.path(ENV_FILE).stat().st_mode & 0o7777 == 0o644
    after = kubelet(node)
    assert after["ActiveState"] == "active"
    assert restarted(migrated, after), (migrated, after)
    argv = running_argv(node, after)
    assert OLD_FLAG in argv, argv
    assert NEW_FLAG not in argv
    assert node.kubelet_starts()[-1]["pid"] == int(after["MainPID"])
    assert journal(node)["state"] == "reverted"

    again = revert(node)

    assert again.returncode == 0, again
    assert again.json()["restarted"] is False
    assert kubelet(node) == after


def test_kubelet_that_does_not_come_back_is_rolled_back(node: NspawnNode) -> None:
    """The node's kubelet refuses --cluster-dns=192.0.2.1 (exits 1; systemd restarts it
    every 10 s, as TKE's unit says): the agent must put the file back and bring kubelet
    back with its original flag, through systemd."""
    before = kubelet(node)

    run = migrate(node, "--local-dns", BAD_DNS, "--verify-timeout", "10")

    assert run.returncode == 1, f"{run}\n{node.diagnostics()}"
    out = run.json()
    assert (out["state"], out["rolled_back"]) == ("failed", True), out
    assert "not healthy within 10s" in out["error"], out["error"]
    assert run.seconds < 25, run.seconds
    assert node.read_bytes(ENV_FILE) == node.original
    after = kubelet(node)
    assert after["ActiveState"] == "active", node.diagnostics()
    assert restarted(before, after)
    argv = running_argv(node, after)
    assert OLD_FLAG in argv, argv
    assert f"--cluster-dns={BAD_DNS}" not in argv
    starts = node.kubelet_starts()
    bad = [s for s in starts if f"--cluster-dns={BAD_DNS}" in s["argv"]]
    assert bad, starts  # systemd did start kubelet with the bad value ...
    assert starts[-1]["pid"] == int(after["MainPID"])  # ... and the original one last
    assert OLD_FLAG in starts[-1]["argv"]
    state = journal(node)
    assert state["state"] == "failed"
    assert state["pending"] is None


def _named(pid: int | None, name: str) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return pid is not None and psutil.Process(pid).name() == name
    return False


def test_only_the_main_pid_systemd_names_is_trusted(node: NspawnNode) -> None:
    """A pod's process called kubelet (its own mount namespace, newer, its --config in a
    pod volume) next to the node's real kubelet: the agent asks the node's systemd through
    its default route, trusts only kubelet.service's MainPID and never reads the decoy's
    file (issue 13)."""
    volume = "/var/lib/kubelet/pods/0c6d2f5e-8d3b-4c1e-9a57-3f0e2b1c4d5a/volumes/x"
    decoy_bytes = b"clusterDNS:\n- 10.96.0.10\n"
    node.path(volume).mkdir(parents=True)
    node.path(f"{volume}/config.yaml").write_bytes(decoy_bytes)
    node.path("/opt/decoy").mkdir()
    node.path("/opt/decoy/kubelet").symlink_to("/usr/bin/python3")  # comm "kubelet"
    sleep = "import time; time.sleep(600)"
    flags = [f"--config={volume}/config.yaml", "--cluster-dns=10.0.0.53"]
    proc = node.spawn(
        "decoy", ["unshare", "--mount", "--", "/opt/decoy/kubelet", "-c", sleep, *flags]
    )
    deadline = time.monotonic() + 10
    while not _named(proc.inner_pid(), "kubelet"):
        assert time.monotonic() < deadline, "the decoy did not start"
        time.sleep(0.05)
    before = kubelet(node)

    check = node.agent("check", "--json")

    assert check.returncode == 0, check
    kc = check.json()["kubelet"]
    assert (kc["pid"], kc["source"]) == (int(before["MainPID"]), ENV_FILE)
    assert kc["running_cluster_dns"] == [CLUSTER_DNS]
    assert kc["systemd_error"] == ""
    run = migrate(node)
    assert run.returncode == 0, f"{run}\n{node.diagnostics()}"
    assert run.json()["state"] == "migrated"
    assert NEW_FLAG in running_argv(node, kubelet(node))
    assert node.read_bytes(f"{volume}/config.yaml") == decoy_bytes


# --------------------------------- --cluster-dns in a unit: the agent's drop-in (issue 14)
DROPIN = AGENT_UNIT_DROPIN
DROPIN_DIR = DROPIN.rsplit("/", 1)[0]
SHOWN = ("DropInPaths", "Environment", "ExecStart", "MainPID", "ExecMainStartTimestampMonotonic")


@pytest.fixture
def make_node(systemd_rootfs: Path, tmp_path: Path) -> Iterator[Callable[..., NspawnNode]]:
    """Booted nodes of a given layout, powered off and deleted afterwards (checked)."""
    nodes: list[NspawnNode] = []

    def make(**options: Any) -> NspawnNode:
        nodes.append(NspawnNode(tmp_path / f"node{len(nodes)}", systemd_rootfs, **options))
        return nodes[-1].start()

    yield make
    for made in nodes:
        made.close()
    assert not mounts_under(tmp_path)


def layout_files(node: NspawnNode) -> dict[str, bytes]:
    assert node.layout is not None
    return {path: node.read_bytes(path) for path in node.layout.files}


def dns_of(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[1] for a in argv if a.startswith(("--cluster-dns=", "--cluster_dns="))]


@pytest.mark.parametrize("layout", ["ack_kubeadm", "eks_extra_args", "hardway"])
def test_unit_dropin_migrates_and_reverts_through_the_real_systemd(
    make_node: Callable[..., NspawnNode], layout: str
) -> None:
    """ACK's Environment="KUBELET_DNS_ARGS=..." (the value holds %% too), EKS AL2's
    Environment='KUBELET_EXTRA_ARGS=...' and a hand-written continued ExecStart=: the
    agent's drop-in, daemon-reload, the node's systemd's own view, kubelet's argv with only
    the DNS changed; revert removes the drop-in and is byte-exact."""
    node = make_node(layout=layout)
    before = node.unit(*SHOWN)
    argv = running_argv(node, before)
    assert dns_of(argv) == [CLUSTER_DNS], argv

    run = migrate(node)

    assert run.returncode == 0, f"{run}\n{node.diagnostics()}"
    assert run.json()["state"] == "migrated"
    after = node.unit(*SHOWN)
    assert DROPIN in after["DropInPaths"].split(), after  # systemd loaded it ...
    assert restarted(before, after)
    assert running_argv(node, after) == [a.replace(CLUSTER_DNS, LOCAL_DNS) for a in argv]
    assert layout_files(node) == node.layout.files  # ... and nothing else was edited
    assert node.systemctl("show", "kubelet", "-p", "NeedDaemonReload").stdout.strip() == (
        "NeedDaemonReload=no"
    )
    again = migrate(node)
    assert again.returncode == 0 and again.json()["restarted"] is False, again

    back = revert(node)

    assert back.returncode == 0, f"{back}\n{node.diagnostics()}"
    final = node.unit(*SHOWN)
    assert DROPIN not in final["DropInPaths"], final
    assert running_argv(node, final) == argv
    assert not node.path(DROPIN).exists()
    assert layout_files(node) == node.layout.files


def test_override_conf_sorts_after_99_so_the_agent_uses_zz(
    make_node: Callable[..., NspawnNode],
) -> None:
    """``systemctl edit kubelet`` leaves override.conf, which sorts after any "99-" name
    (drop-ins apply in lexical order of their names): first proven on the node's systemd
    with a probe drop-in, then the agent must pick a name after it."""
    node = make_node(layout="ack_kubeadm")
    override = f"{DROPIN_DIR}/override.conf"
    node._put(override, '[Service]\nEnvironment="KUBELET_DNS_ARGS=--cluster-dns=10.96.0.10"\n')
    node._put(f"{DROPIN_DIR}/99-probe.conf", '[Service]\nEnvironment="KUBELET_DNS_ARGS=--v=9"\n')
    node.systemctl("daemon-reload", check=True)
    shown = node.unit("Environment", "DropInPaths")
    assert "KUBELET_DNS_ARGS=--cluster-dns=10.96.0.10" in shown["Environment"], shown
    assert shown["DropInPaths"].split()[-1] == override
    node.path(f"{DROPIN_DIR}/99-probe.conf").unlink()
    node.systemctl("daemon-reload", check=True)
    node.systemctl("restart", "kubelet", check=True)
    node.wait_kubelet()

    check = node.agent("check", "--json")
    assert check.returncode == 0, check
    kc = check.json()["kubelet"]
    ours = f"{DROPIN_DIR}/zz-nodelocaldns-agent.conf"
    assert (kc["source"], kc["format"], kc["variable"]) == (ours, "unit", "KUBELET_DNS_ARGS")
    assert kc["found_by"].endswith(f"Environment= of {override}")
    run = migrate(node)
    assert run.returncode == 0, f"{run}\n{node.diagnostics()}"
    after = node.unit(*SHOWN)
    assert after["DropInPaths"].split()[-1] == ours
    assert dns_of(running_argv(node, after)) == [LOCAL_DNS]
    assert not node.path(DROPIN).exists()
    back = revert(node)
    assert back.returncode == 0, back
    assert not node.path(ours).exists()
    assert dns_of(running_argv(node, node.unit(*SHOWN))) == [CLUSTER_DNS]


def test_environment_file_beats_environment_so_the_file_is_edited(
    make_node: Callable[..., NspawnNode],
) -> None:
    """kubeadm's packages ship an EnvironmentFile for KUBELET_EXTRA_ARGS; a variable it
    sets is not overridden by any Environment= (proven on the node's systemd with a probe
    drop-in sorting last), so the agent edits the file and writes no drop-in."""
    node = make_node(layout="ack_kubeadm")
    env_file = "/etc/default/kubelet"
    text = b"KUBELET_DNS_ARGS=--cluster-dns=10.96.0.10 --cluster-domain=cluster.local\n"
    node.path(env_file).write_bytes(text)
    node._put(f"{DROPIN_DIR}/20-env.conf", f"[Service]\nEnvironmentFile=-{env_file}\n")
    node._put(f"{DROPIN_DIR}/zz-probe.conf", '[Service]\nEnvironment="KUBELET_DNS_ARGS=--v=9"\n')
    node.systemctl("daemon-reload", check=True)
    node.systemctl("restart", "kubelet", check=True)
    node.wait_kubelet()
    assert dns_of(running_argv(node, node.unit(*SHOWN))) == [CLUSTER_DNS]  # the file won
    node.path(f"{DROPIN_DIR}/zz-probe.conf").unlink()
    node.systemctl("daemon-reload", check=True)

    run = migrate(node)

    assert run.returncode == 0, f"{run}\n{node.diagnostics()}"
    assert node.read_bytes(env_file) == text.replace(b"10.96.0.10", LOCAL_DNS.encode())
    assert not node.path(DROPIN).exists()
    assert dns_of(running_argv(node, node.unit(*SHOWN))) == [LOCAL_DNS]
    assert journal(node)["source"] == env_file


@pytest.mark.parametrize("step", ["written", "reloaded"])
def test_a_killed_run_is_finished_by_the_next_on_the_real_systemd(
    make_node: Callable[..., NspawnNode], step: str
) -> None:
    """Killed right after writing the drop-in (before or during the daemon-reload) or after
    the daemon-reload (before or during the restart): the next run reloads and restarts as
    owed (the kill lands as soon as the step is logged; the agent may be a little further)."""
    node = make_node(layout="ack_kubeadm")
    node.agent_killed_at(step, "migrate", "--once")
    assert node.path(DROPIN).is_file()

    run = migrate(node)

    assert run.returncode == 0, f"{run}\n{node.diagnostics()}"
    assert run.json()["restarted"] is True
    after = node.unit(*SHOWN)
    assert DROPIN in after["DropInPaths"].split()
    assert dns_of(running_argv(node, after)) == [LOCAL_DNS]
