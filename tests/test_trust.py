"""Which kubelet the agent trusts (issue 13, finding 1): the host's systemd's answer
(``systemctl show``), the trust test of its main process, and the configuration paths it
refuses. Pure decisions table-tested; the engine through :class:`testing.fakenode.FakeNode`;
the real CLI against decoys on sandbox nodes in ``tests/test_cli_sandbox.py``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from nodelocaldns_agent.detect.kubelet import (
    MAX_CONFIG_DIR_BYTES,
    MAX_CONFIG_DIR_FILES,
    check_config_path,
    host_kubelet,
    locate_kubelet,
)
from nodelocaldns_agent.detect.trust import pod_cgroup, untrusted
from nodelocaldns_agent.errors import ConfigError, SystemdError
from nodelocaldns_agent.host.probes import ProcessInfo, PsutilProcessTable
from nodelocaldns_agent.host.systemd import (
    PROPERTIES,
    EnvironmentFile,
    ExecCommand,
    Systemctl,
    UnitStatus,
    parse_show,
    split_strv,
)
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.settings import HOST_SYSTEMCTL, NodeSettings
from nodelocaldns_agent.state import Result
from testing.fakenode import TKE_ENV, TKE_STATUS, FakeNode, tke_node
from testing.fakes import HOST_MNT_NS, HOST_PID_NS, FakeRunner, host_process
from testing.sandbox import layouts

ENV_FILE = layouts.TKE_ENV_FILE
UNIT_FILE = layouts.TKE_UNIT_FILE
#: a pod's emptyDir on the host (kubelet's getPodVolumeDir: pods/<uid>/volumes/<plugin>/<name>)
POD_UID = "0c6d2f5e-8d3b-4c1e-9a57-3f0e2b1c4d5a"
POD_VOLUME = f"/var/lib/kubelet/pods/{POD_UID}/volumes/kubernetes.io~empty-dir/x"

# ------------------------------------------------------------------- systemctl show
#: ``systemctl show kubelet.service -p ...`` of systemd 252 (Debian bookworm) on a TKE-like
#: node booted by testing/systemd_node.py: properties in systemd's order, not the asked one
SHOW_RUNNING = """\
MainPID=60
ExecStart={ path=/usr/bin/kubelet ; argv[]=/usr/bin/kubelet ${AUTHORIZATION_MODE} ${CLUSTER_DNS} \
${V} ; ignore_errors=no ; start_time=[Thu 2026-12-03 13:39:05 UTC] ; stop_time=[n/a] ; pid=60 ; \
code=(null) ; status=0/0 }
EnvironmentFiles=/etc/kubernetes/kubelet (ignore_errors=yes)
LoadState=loaded
ActiveState=active
FragmentPath=/lib/systemd/system/kubelet.service
DropInPaths=
"""
#: the same after two drop-ins (one with a blank in its name, one setting
#: ``Environment="A=a b" "B=x\\y \"q\" $z 10%%" C=plain``) and a daemon-reload,
#: stopped; the Environment= line as systemd 252 printed it under systemd-nspawn
SHOW_STOPPED = """\
MainPID=0
Environment="A=a b" "B=x\\\\y \\"q\\" \\$z 10%" C=plain
ExecStart={ path=/usr/bin/kubelet ; argv[]=/usr/bin/kubelet ${V} ; ignore_errors=no ; \
start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
EnvironmentFiles=/etc/kubernetes/kubelet (ignore_errors=yes)
EnvironmentFiles=/etc/x* (ignore_errors=no)
LoadState=loaded
ActiveState=inactive
FragmentPath=/lib/systemd/system/kubelet.service
DropInPaths=/etc/systemd/system/kubelet.service.d/10-a.conf \
"/etc/systemd/system/kubelet.service.d/20 x.conf"
"""
#: no such unit: systemctl still exits 0
SHOW_NOT_FOUND = """\
MainPID=0
LoadState=not-found
ActiveState=inactive
FragmentPath=
DropInPaths=
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SHOW_RUNNING,
            UnitStatus(
                "kubelet.service",
                "loaded",
                "active",
                60,
                "/lib/systemd/system/kubelet.service",
                (),
                (EnvironmentFile("/etc/kubernetes/kubelet", True),),
                (
                    ExecCommand(
                        "/usr/bin/kubelet",
                        "/usr/bin/kubelet ${AUTHORIZATION_MODE} ${CLUSTER_DNS} ${V}",
                    ),
                ),
            ),
        ),
        (
            SHOW_STOPPED,
            UnitStatus(
                "kubelet.service",
                "loaded",
                "inactive",
                0,
                "/lib/systemd/system/kubelet.service",
                (
                    "/etc/systemd/system/kubelet.service.d/10-a.conf",
                    "/etc/systemd/system/kubelet.service.d/20 x.conf",
                ),
                (
                    EnvironmentFile("/etc/kubernetes/kubelet", True),
                    EnvironmentFile("/etc/x*", False),
                ),
                (ExecCommand("/usr/bin/kubelet", "/usr/bin/kubelet ${V}"),),
                ("A=a b", 'B=x\\y "q" $z 10%', "C=plain"),
            ),
        ),
        (SHOW_NOT_FOUND, UnitStatus("kubelet.service", "not-found", "inactive", 0)),
        # an older systemd leaves out empty strings it was asked for
        (
            "LoadState=loaded\nActiveState=failed\nMainPID=0\n",
            UnitStatus("kubelet.service", "loaded", "failed", 0),
        ),
    ],
    ids=["running", "stopped-with-dropins", "not-found", "no-empty-strings"],
)
def test_parse_show_reads_what_systemd_prints(text: str, expected: UnitStatus) -> None:
    assert parse_show(text, "kubelet.service") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no LoadState, ActiveState, MainPID"),
        ("Failed to connect to bus: Host is down\n", "expected Name=value"),
        (SHOW_NOT_FOUND + "Id=kubelet.service\n", "'Id=kubelet.service'"),
        (SHOW_NOT_FOUND + "MainPID=1\n", "MainPID= appears twice"),
        (SHOW_NOT_FOUND.replace("MainPID=0", "MainPID=-1"), "MainPID='-1'"),
        (SHOW_NOT_FOUND.replace("MainPID=0", "MainPID=007"), "MainPID='007'"),
        (SHOW_NOT_FOUND.replace("inactive", "sleepy"), "ActiveState='sleepy'"),
        (SHOW_NOT_FOUND.replace("not-found", "lost"), "LoadState='lost'"),
        (SHOW_NOT_FOUND.replace("FragmentPath=", "FragmentPath=kubelet"), "absolute path"),
        (SHOW_NOT_FOUND + "EnvironmentFiles=/etc/k\n", "ignore_errors=yes|no"),
        (SHOW_NOT_FOUND + "ExecStart=/usr/bin/kubelet\n", "{ path=/... ;"),
        (SHOW_NOT_FOUND.replace("DropInPaths=", 'DropInPaths="/a'), "unterminated quote"),
        (SHOW_NOT_FOUND + "MainPID" * 10_000, "characters of output"),
    ],
)
def test_parse_show_refuses_what_systemd_does_not_print(text: str, message: str) -> None:
    with pytest.raises(SystemdError, match=r"systemctl show kubelet\.service") as err:
        parse_show(text, "kubelet.service")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("", ()),
        ("/a.conf", ("/a.conf",)),
        ("/a.conf /b.conf", ("/a.conf", "/b.conf")),
        ('"/d/20 x.conf" /e', ("/d/20 x.conf", "/e")),
        (r'"/d/\"q\" \$x \\ \`"', ('/d/"q" $x \\ `',)),
        ("/a$b", SystemdError),
        ('"/a"b', SystemdError),
    ],
)
def test_split_strv_undoes_shell_maybe_quote(
    value: str, items: tuple[str, ...] | type[Exception]
) -> None:
    if isinstance(items, tuple):
        assert split_strv(value, "DropInPaths") == items
    else:
        with pytest.raises(items, match="DropInPaths"):
            split_strv(value, "DropInPaths")


def test_systemctl_goes_through_the_restart_route_and_reports_failures() -> None:
    settings = NodeSettings()
    assert settings.systemctl_command == HOST_SYSTEMCTL
    # one source of truth: the restart is the same systemctl, verb restart
    assert settings.restart_command == (*HOST_SYSTEMCTL, "restart", "kubelet")
    runner = FakeRunner(output=SHOW_RUNNING)
    systemctl = Systemctl(runner, settings.systemctl_command, 7.0)
    assert systemctl.show("kubelet.service").main_pid == 60
    properties = [a for p in PROPERTIES for a in ("-p", p)]
    assert runner.calls == [(*HOST_SYSTEMCTL, "show", "kubelet.service", *properties)]
    runner.fail_with = "System has not been booted with systemd as init system (PID 1)."
    with pytest.raises(SystemdError, match=r"could not be asked: .*not been booted") as err:
        systemctl.show("kubelet.service")
    assert err.value.__cause__ is not None


# ------------------------------------------------------------------- the trust test
INIT = host_process(1, 0.0, ("/sbin/init",), ("0::/init.scope",))
KUBELET = host_process(4242, 10.0, ("/usr/bin/kubelet", "--v=2"))
#: /proc/<pid>/cgroup of kubelet and of pods' processes, cgroup v1 (one line per hierarchy)
#: and v2 (0::), cgroupfs and systemd drivers, seen from the host or from a cgroup namespace
V1_KUBELET = (
    "12:pids:/system.slice/kubelet.service",
    "4:memory:/system.slice/kubelet.service",
    "1:name=systemd:/system.slice/kubelet.service",
)
V1_POD_CGROUPFS = (
    f"4:memory:/kubepods/burstable/pod{POD_UID}/" + "a" * 64,
    "1:name=systemd:/kubepods/burstable/pod" + POD_UID + "/" + "a" * 64,
)
V2_POD_SYSTEMD = (
    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
    + POD_UID.replace("-", "_")
    + ".slice/cri-containerd-"
    + "b" * 64
    + ".scope",
)
#: a guaranteed pod (no QoS level) seen from the agent's own cgroup namespace: the
#: ``kubepods`` level is above the namespace's root, only ``pod<uid>`` is left
V2_POD_FROM_CGROUPNS = ("0::/../../pod" + POD_UID + "/" + "c" * 64,)
V2_STATIC_POD = ("0::/kubepods/pod" + "d" * 32 + "/" + "e" * 64,)
V2_CRIO_SCOPE = ("0::/../../crio-" + "f" * 64 + ".scope",)
#: kubelet seen from the agent's cgroup namespace; kind's kubelet inside a docker container
V2_KUBELET_FROM_CGROUPNS = ("0::/../../../system.slice/kubelet.service",)
V1_KIND_NODE = ("1:name=systemd:/docker/" + "9" * 64 + "/system.slice/kubelet.service",)


@pytest.mark.parametrize(
    ("cgroup", "pod"),
    [
        (V1_KUBELET, ""),
        (V2_KUBELET_FROM_CGROUPNS, ""),
        (V1_KIND_NODE, ""),
        (("0::/",), ""),
        (("0::/system.slice/podman.service",), ""),
        (V1_POD_CGROUPFS, V1_POD_CGROUPFS[0].split(":", 2)[2]),
        (V2_POD_SYSTEMD, V2_POD_SYSTEMD[0][3:]),
        (V2_POD_FROM_CGROUPNS, V2_POD_FROM_CGROUPNS[0][3:]),
        (V2_STATIC_POD, V2_STATIC_POD[0][3:]),
        (V2_CRIO_SCOPE, V2_CRIO_SCOPE[0][3:]),
        # one pod hierarchy is enough, wherever it is
        ((*V1_KUBELET, "3:cpu:/kubepods.slice"), "/kubepods.slice"),
    ],
)
def test_pod_cgroup(cgroup: tuple[str, ...], pod: str) -> None:
    assert pod_cgroup(cgroup) == pod


@pytest.mark.parametrize(
    ("proc", "why"),
    [
        (KUBELET, ""),
        (replace(KUBELET, cgroup=V1_KUBELET), ""),
        (replace(KUBELET, name="kubelet", argv=("/opt/k8s/bin/kubelet-v1.30",)), ""),
        (replace(KUBELET, name="bash", argv=("/bin/bash", "/run-kubelet")), "it is 'bash'"),
        (
            replace(KUBELET, mnt_ns="mnt:[4026532999]"),
            f"mount namespace mnt:[4026532999], not in PID 1's {HOST_MNT_NS}",
        ),
        (
            replace(KUBELET, pid_ns="pid:[4026532998]"),
            f"pid namespace pid:[4026532998], not in PID 1's {HOST_PID_NS}",
        ),
        (replace(KUBELET, mnt_ns=""), "its mount namespace or PID 1's could not be read"),
        (replace(KUBELET, cgroup=V2_POD_SYSTEMD), "it runs in a pod's cgroup /kubepods.slice/"),
        (replace(KUBELET, cgroup=V2_POD_FROM_CGROUPNS), "it runs in a pod's cgroup /../../pod"),
        (replace(KUBELET, cgroup=()), "its cgroup could not be read"),
    ],
    ids=[
        "host-kubelet",
        "cgroup-v1",
        "renamed-binary",
        "wrapper",
        "other-mount-ns",
        "other-pid-ns",
        "unreadable-ns",
        "pod-cgroup",
        "pod-cgroup-from-cgroupns",
        "unreadable-cgroup",
    ],
)
def test_untrusted(proc: ProcessInfo, why: str) -> None:
    found = untrusted(proc, INIT)
    assert (why in found) if why else found == ""


def test_the_real_process_table_reads_namespaces_and_cgroup() -> None:
    table = PsutilProcessTable()
    me = table.get(os.getpid())
    assert me is not None
    assert me.mnt_ns == os.readlink("/proc/self/ns/mnt").strip()
    assert me.pid_ns.startswith("pid:[")
    assert me.cgroup == tuple(Path("/proc/self/cgroup").read_text().splitlines())
    assert me.argv and me.name
    assert table.get(2**22 + 1) is None  # above pid_max: never a process


# ------------------------------------------------------------------- locating kubelet
def decoy(node: FakeNode, *argv: str, **changes: object) -> ProcessInfo:
    """A pod's process called kubelet, newer than the host's: another mount and pid
    namespace, a pod's cgroup (override with ``changes``)."""
    node.pid += 1
    proc = replace(
        host_process(node.pid, node.clock.now + 100, ("/kubelet", *argv)),
        mnt_ns="mnt:[4026532500]",
        pid_ns="pid:[4026532501]",
        cgroup=V2_POD_SYSTEMD,
    )
    node.processes.running.append(replace(proc, **changes))
    return proc


def test_a_newer_decoy_kubelet_is_never_read(tmp_path: Path) -> None:
    node = tke_node(tmp_path)
    host = node.processes.running[0]
    node.write(f"{POD_VOLUME}/config.yaml", "clusterDNS: [10.0.0.99]\n")
    decoy(node, f"--config={POD_VOLUME}/config.yaml", "--cluster-dns=10.0.0.99")
    kc = locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)
    assert (kc.source, kc.kubelet_pid) == (ENV_FILE, host.pid)
    assert kc.running_cluster_dns == ("10.96.0.10",)
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    assert node.read(f"{POD_VOLUME}/config.yaml") == b"clusterDNS: [10.0.0.99]\n"


@pytest.mark.parametrize(
    "changes",
    [
        {"mnt_ns": "mnt:[4026532500]"},
        {"pid_ns": "pid:[4026532501]"},
        {"cgroup": V2_POD_SYSTEMD},
        {"name": "sh", "argv": ("/bin/sh", "-c", "exec kubelet")},
    ],
    ids=["mount-ns", "pid-ns", "pod-cgroup", "not-kubelet"],
)
def test_a_main_pid_failing_the_trust_test_fails_the_node(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    node = tke_node(tmp_path)
    node.processes.running = [replace(node.processes.running[0], **changes)]
    with pytest.raises(ConfigError, match=r"kubelet\.service's MainPID 101 is not the host's"):
        host_kubelet(node.systemd, node.processes)
    out = node.engine().check()
    assert out["kubelet"]["source"] == "" and out["action"] == "blocked"
    assert "is not the host's kubelet" in out["kubelet"]["error"]
    before = node.read(ENV_FILE)
    with pytest.raises(ConfigError, match="is not the host's kubelet"):
        node.engine().reconcile(Goal.MIGRATE)
    assert node.read(ENV_FILE) == before
    assert node.runner.calls == []


def test_systemd_unreachable_the_unit_files_decide_and_no_process_is_trusted(
    tmp_path: Path,
) -> None:
    node = tke_node(tmp_path)
    node.systemd.error = "the host's systemd could not be asked: command ['x'] timed out"
    decoy(node, f"--config={POD_VOLUME}/config.yaml", mnt_ns=HOST_MNT_NS, pid_ns=HOST_PID_NS)
    rep = node.engine().check()
    kubelet = rep["kubelet"]
    assert (kubelet["source"], kubelet["pid"], kubelet["error"]) == (ENV_FILE, None, "")
    assert kubelet["found_by"] == f"unit {UNIT_FILE} -> EnvironmentFile"
    assert "timed out" in kubelet["systemd_error"]
    # no unit either: nothing says how kubelet runs, the node is failed, not edited
    (tmp_path / UNIT_FILE.lstrip("/")).unlink()
    rep = node.engine().check()
    assert rep["action"] == "blocked"
    assert "could not be asked" in rep["kubelet"]["error"]
    assert "no kubelet.service was found" in rep["kubelet"]["error"]


def test_main_pid_zero_the_unit_files_decide(tmp_path: Path) -> None:
    node = tke_node(tmp_path)
    node.stop_kubelet()
    decoy(node, f"--config={POD_VOLUME}/config.yaml")
    kc = locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)
    assert (kc.source, kc.kubelet_pid, kc.found_by) == (
        ENV_FILE,
        None,
        f"unit {UNIT_FILE} -> EnvironmentFile",
    )


K2 = EnvironmentFile("/etc/k2", False)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (replace(TKE_STATUS, load_state="not-found", fragment_path=""), "has not loaded"),
        (replace(TKE_STATUS, load_state="masked"), "LoadState=masked"),
        (replace(TKE_STATUS, fragment_path="/etc/systemd/system/kubelet.service"), "unit file"),
        (replace(TKE_STATUS, fragment_path=""), "unit file (none)"),
        (
            replace(TKE_STATUS, dropin_paths=("/run/systemd/system/kubelet.service.d/x.conf",)),
            "drop-ins",
        ),
        (replace(TKE_STATUS, environment_files=()), "EnvironmentFiles []"),
        (replace(TKE_STATUS, environment_files=(*TKE_STATUS.environment_files, K2)), "/etc/k2"),
    ],
    ids=[
        "not-loaded",
        "masked",
        "other-fragment",
        "no-fragment",
        "other-dropins",
        "env-file-not-loaded",
        "env-file-not-read",
    ],
)
def test_unit_files_must_be_the_ones_systemd_loaded(
    tmp_path: Path, status: UnitStatus, message: str
) -> None:
    node = tke_node(tmp_path)
    node.write("/etc/k2", "A=1\n")
    node.systemd.status = replace(status, main_pid=node.systemd.status.main_pid)
    with pytest.raises(ConfigError, match="host's systemd") as err:
        locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)
    assert message in str(err.value)


def test_unit_paths_systemd_shows_through_other_names_are_the_same(tmp_path: Path) -> None:
    """Debian's systemd shows /lib/systemd/system/... where /lib is a link to usr/lib."""
    node = tke_node(tmp_path)
    (tmp_path / "lib").symlink_to("usr/lib")
    node.systemd.status = replace(
        node.systemd.status,
        fragment_path="/lib/systemd/system/kubelet.service",
        dropin_paths=("/usr/lib/systemd/system/service.d/10-timeout-abort.conf",),
    )
    kc = locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)
    assert kc.source == ENV_FILE


# ------------------------------------------------------------------- paths refused
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/var/lib/kubelet/config.yaml", ""),
        ("/etc/kubernetes/kubelet.conf.d", ""),
        ("/var/lib/kubelet/podsx/config.yaml", ""),
        ("relative/config.yaml", "expected an absolute path"),
        ("/etc/kubernetes/../../var/lib/kubelet/config.yaml", "'..' component"),
        (f"{POD_VOLUME}/config.yaml", "under /var/lib/kubelet/pods, where pods can write"),
        ("//var/lib/kubelet/./pods/x", "under /var/lib/kubelet/pods"),
        ("/var/lib/kubelet/pods", "under /var/lib/kubelet/pods"),
        ("/var/lib/kubelet/plugins/csi.example.com/c.yaml", "under /var/lib/kubelet/plugins,"),
        ("/var/lib/kubelet/plugins_registry/c.yaml", "under /var/lib/kubelet/plugins_registry"),
        ("/var/lib/kubelet/device-plugins/c.yaml", "under /var/lib/kubelet/device-plugins"),
        ("/var/log/pods/ns_pod_uid/c/0.log", "under /var/log/pods"),
        ("/var/lib/containerd/snapshots/9/fs/c.yaml", "under /var/lib/containerd"),
        ("/etc/kubernetes/linked.yaml", "(a symlink to /var/lib/kubelet/pods/"),
    ],
)
def test_check_config_path(tmp_path: Path, path: str, message: str) -> None:
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    (tmp_path / "etc/kubernetes/linked.yaml").symlink_to(f"{POD_VOLUME}/config.yaml")
    host = HostRoot(tmp_path)
    if not message:
        check_config_path(host, path, "kubelet --config")
        return
    with pytest.raises(ConfigError, match=r"^kubelet --config ") as err:
        check_config_path(host, path, "kubelet --config")
    assert message in str(err.value)


def yaml_node(tmp_path: Path, *argv: str) -> FakeNode:
    node = FakeNode(tmp_path)
    node.write("/var/lib/kubelet/config.yaml", "clusterDNS:\n- 10.96.0.10\n")
    node.run_kubelet("/usr/bin/kubelet", *argv)
    return node


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((f"--config={POD_VOLUME}/config.yaml",), "kubelet --config '/var/lib/kubelet/pods/"),
        (("--config=/var/lib/kubelet/../kubelet/config.yaml",), "'..' component"),
        ((f"--config-dir={POD_VOLUME}",), "kubelet --config-dir '/var/lib/kubelet/pods/"),
        (("--config-dir=/etc/kubernetes/../kubernetes/d",), "--config-dir '/etc/kubernetes/../"),
    ],
)
def test_the_host_kubelet_with_a_pod_path_is_refused_and_nothing_written(
    tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    node = yaml_node(tmp_path, *argv)
    node.write(f"{POD_VOLUME}/config.yaml", "clusterDNS:\n- 10.96.0.10\n")
    with pytest.raises(ConfigError) as err:
        node.engine().reconcile(Goal.MIGRATE)
    assert message in str(err.value)
    assert node.runner.calls == []
    assert not (tmp_path / "var/lib/nodelocaldns-agent").exists()


def test_an_environment_file_where_pods_write_is_refused(tmp_path: Path) -> None:
    node = tke_node(tmp_path)
    unit = node.read(UNIT_FILE).replace(ENV_FILE.encode(), f"{POD_VOLUME}/kubelet".encode())
    node.write(UNIT_FILE, unit)
    node.write(f"{POD_VOLUME}/kubelet", TKE_ENV)
    node.systemd.status = replace(
        node.systemd.status, environment_files=(EnvironmentFile(f"{POD_VOLUME}/kubelet", True),)
    )
    with pytest.raises(ConfigError, match=r"EnvironmentFile= of kubelet\.service '/var/lib/kub"):
        locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)


@pytest.mark.parametrize(
    ("files", "size", "message"),
    [
        (MAX_CONFIG_DIR_FILES, 100, ""),
        (MAX_CONFIG_DIR_FILES + 1, 10, f"holds {MAX_CONFIG_DIR_FILES + 1} *.conf files"),
        (200, 10, "holds 200 *.conf files; expected at most 64"),
        (4, MAX_CONFIG_DIR_BYTES // 4, ""),
        (5, MAX_CONFIG_DIR_BYTES // 4, f"may hold {MAX_CONFIG_DIR_BYTES} bytes in all"),
    ],
)
def test_a_config_dir_is_capped(tmp_path: Path, files: int, size: int, message: str) -> None:
    node = yaml_node(
        tmp_path, "--config=/var/lib/kubelet/config.yaml", "--config-dir=/etc/kubernetes/d"
    )
    padding = b"#" * (size - 1) + b"\n"
    for i in range(files):
        node.write(f"/etc/kubernetes/d/{i:03d}.conf", padding)
    node.write("/etc/kubernetes/d/README", b"x" * MAX_CONFIG_DIR_BYTES)  # not a *.conf
    if not message:
        kc = locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)
        assert kc.cluster_dns == ("10.96.0.10",)
        return
    with pytest.raises(ConfigError, match="/etc/kubernetes/d") as err:
        locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)
    assert message in str(err.value)


def test_a_config_dir_file_linking_where_pods_write_is_refused(tmp_path: Path) -> None:
    # a *.conf in kubelet's --config-dir that is a symlink into a pod volume: its bytes are
    # a tenant's; the directory alone passing check_config_path is not enough
    node = yaml_node(
        tmp_path, "--config=/var/lib/kubelet/config.yaml", "--config-dir=/etc/kubernetes/d"
    )
    node.write(f"{POD_VOLUME}/50-dns.conf", b"clusterDNS: [6.6.6.6]\n")
    (tmp_path / "etc/kubernetes/d").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/kubernetes/d/50-dns.conf").symlink_to(f"{POD_VOLUME}/50-dns.conf")
    with pytest.raises(ConfigError, match=r"a file of kubelet's --config-dir .*50-dns\.conf"):
        locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)


# ------------------------------------------------------------------- verification
def test_verification_needs_the_new_main_pid_and_trusts_no_decoy(tmp_path: Path) -> None:
    node = tke_node(tmp_path)
    node.kubelet_comes_back = False
    node.runner.on_run = lambda argv: decoy(node, "--cluster-dns=169.254.20.10")
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED
    assert "kubelet process 101 is still the one from before the restart" in out.error


def test_verification_refuses_a_new_main_pid_in_a_pod(tmp_path: Path) -> None:
    node = tke_node(tmp_path)

    def restart(argv: tuple[str, ...]) -> None:
        node.start_kubelet()
        node.processes.running = [replace(node.processes.running[0], cgroup=V2_POD_SYSTEMD)]

    node.runner.on_run = restart
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED
    assert "is not the host's kubelet: it runs in a pod's cgroup" in out.error


def test_verification_without_systemd_fails(tmp_path: Path) -> None:
    node = tke_node(tmp_path)
    error = "the host's systemd could not be asked: gone"

    def restart(argv: tuple[str, ...]) -> None:
        node.systemd.error = error

    node.runner.on_run = restart
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED
    assert f"after the restart: {error}" in out.error


def test_cluster_dns_given_twice_in_any_spelling_is_refused(tmp_path: Path) -> None:
    """``--cluster-dns`` is a list flag: kubelet adds every occurrence's addresses (pflag
    StringSliceVar in cmd/kubelet/app/options/options.go), so editing one occurrence would
    leave the other's addresses in every pod's resolv.conf."""
    node = tke_node(tmp_path)
    node.run_kubelet("/usr/bin/kubelet", "--cluster-dns=10.96.0.10", "--cluster_dns", "10.0.0.9")
    with pytest.raises(ConfigError, match=r"--cluster-dns 2 times \(10\.96\.0\.10,10\.0\.0\.9"):
        locate_kubelet(HostRoot(tmp_path), node.processes, node.systemd)
