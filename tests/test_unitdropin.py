"""The agent's kubelet.service drop-in: which mechanism, which name, how it is rendered
(read back by the unit reader exactly as written), and the engine around it.

systemd's rules these tables encode: drop-ins apply in lexical order of their file names
across the unit directories (systemd.unit(5), "Configuration Directories and Precedence" of
systemd's man/standard-conf.xml); ``EnvironmentFile=`` settings override ``Environment=``
(systemd.exec(5)); an empty ``ExecStart=`` resets the list (systemd.service(5)); in
``Environment=`` and ``ExecStart=`` each word is unquoted and unescaped first, then its
specifiers are resolved (``config_parse_environ``/``config_parse_exec`` of
src/core/load-fragment.c), so a literal ``%`` is written ``%%``. The real systemd proves
them in tests/test_systemd_node.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from nodelocaldns_agent.detect.kubelet import systemd_cluster_dns
from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.host.systemd import EnvironmentFile, ExecCommand, UnitStatus
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig import unitdropin
from nodelocaldns_agent.kubeletconfig.flags import replace_flag_value
from nodelocaldns_agent.kubeletconfig.unitdropin import EnvFileCarrier, Override
from nodelocaldns_agent.kubeletconfig.unitfile import (
    KubeletUnit,
    load_kubelet_unit,
    resolve_specifiers,
)
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.state import Result
from testing.fakenode import FakeNode
from testing.sandbox import layouts
from testing.sandbox.constants import CLUSTER_DNS, LOCAL_DNS

UNIT = "/etc/systemd/system/kubelet.service"
OURS = layouts.AGENT_UNIT_DROPIN


def write(root: Path, files: dict[str, str | bytes]) -> HostRoot:
    for path, text in files.items():
        real = root / path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(text.encode() if isinstance(text, str) else text)
    return HostRoot(root)


def unit_of(root: Path, files: dict[str, str | bytes]) -> KubeletUnit:
    unit = load_kubelet_unit(write(root, files))
    assert unit is not None
    return unit


# ------------------------------------------------------------------ which mechanism
MECHANISMS = [
    (
        "environment-in-dropin",
        {
            UNIT: "[Service]\nExecStart=/usr/bin/kubelet\n",
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf": (
                '[Service]\nEnvironment="DNS=--cluster-dns=10.96.0.10 --cluster-domain=x"\n'
                "ExecStart=\nExecStart=/usr/bin/kubelet $DNS\n"
            ),
        },
        Override(
            "Environment",
            "DNS",
            "--cluster-dns=10.96.0.10 --cluster-domain=x",
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        ),
    ),
    (
        # the file wins over Environment= (systemd.exec(5)): the file is edited
        "environment-file-beats-environment",
        {
            UNIT: (
                "[Service]\nEnvironment=KUBELET_EXTRA_ARGS=--cluster-dns=10.0.0.1\n"
                "EnvironmentFile=-/etc/default/kubelet\n"
                "ExecStart=/usr/bin/kubelet $KUBELET_EXTRA_ARGS\n"
            ),
            "/etc/default/kubelet": "KUBELET_EXTRA_ARGS=--cluster-dns=10.96.0.10\n",
        },
        EnvFileCarrier("KUBELET_EXTRA_ARGS", "/etc/default/kubelet"),
    ),
    (
        # ... also when the file's value does not carry the flag: then no variable does
        "environment-file-empties-the-variable",
        {
            UNIT: (
                "[Service]\nEnvironment=KUBELET_EXTRA_ARGS=--cluster-dns=10.0.0.1\n"
                "EnvironmentFile=-/etc/default/kubelet\n"
                "ExecStart=/usr/bin/kubelet $KUBELET_EXTRA_ARGS\n"
            ),
            "/etc/default/kubelet": "KUBELET_EXTRA_ARGS=\n",
        },
        "nor a variable it refers to carries it",
    ),
    (
        "literal-in-continued-exec-start",
        {
            UNIT: "[Service]\nExecStart=-/usr/bin/kubelet \\\n  --cluster-dns=10.96.0.10 \\\n"
            "  --v=2\n",
        },
        Override("ExecStart", "", "-/usr/bin/kubelet  --cluster-dns=10.96.0.10  --v=2", UNIT),
    ),
    (
        "two-variables",
        {
            UNIT: '[Service]\nEnvironment="A=--cluster-dns=1.1.1.1" "B=--cluster-dns=2.2.2.2"\n'
            "ExecStart=/usr/bin/kubelet $A $B\n",
        },
        "set by several variables",
    ),
    (
        "host-specifier",
        {
            UNIT: '[Service]\nEnvironment="A=--cluster-dns=10.96.0.10 --hostname-override=%H"\n'
            "ExecStart=/usr/bin/kubelet $A\n",
        },
        "holds a unit specifier that depends on the host",
    ),
    (
        "not-referenced",
        {
            UNIT: '[Service]\nEnvironment="A=--cluster-dns=10.96.0.10"\n'
            "ExecStart=/usr/bin/kubelet --v=2\n",
        },
        "nor a variable it refers to carries it",
    ),
]


@pytest.mark.parametrize(
    ("files", "expected"), [m[1:] for m in MECHANISMS], ids=[m[0] for m in MECHANISMS]
)
def test_choose_mechanism(tmp_path: Path, files: dict[str, str | bytes], expected: object) -> None:
    unit = unit_of(tmp_path, files)
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            unitdropin.choose_mechanism(unit)
    else:
        assert unitdropin.choose_mechanism(unit) == expected


# ------------------------------------------------------------------ which name
NAMES = [
    ([], None, "99-nodelocaldns-agent.conf"),
    (["10-kubeadm.conf", "30-kubelet-extra-args.conf"], None, "99-nodelocaldns-agent.conf"),
    # "99-" sorts before "override.conf" of `systemctl edit`: the next name does not
    (["10-kubeadm.conf", "override.conf"], None, "zz-nodelocaldns-agent.conf"),
    (["90-local.conf"], None, "99-nodelocaldns-agent.conf"),
    (["Z-local.conf"], None, "zz-nodelocaldns-agent.conf"),  # "Z" sorts after "9"
    (["a.conf"], None, "zz-nodelocaldns-agent.conf"),
    # someone else's file of that name (a lower directory): it must not be masked
    (["99-nodelocaldns-agent.conf"], None, "zz-nodelocaldns-agent.conf"),
    (["zzz.conf"], None, "sorts after 99-nodelocaldns-agent.conf and zz-nodelocaldns-agent"),
    (["~local.conf"], None, "~local.conf of kubelet.service sorts after"),
    # the agent's drop-in keeps its name
    (["override.conf"], "99-nodelocaldns-agent.conf", "99-nodelocaldns-agent.conf"),
]


@pytest.mark.parametrize(("others", "current", "expected"), NAMES)
def test_choose_name(others: list[str], current: str | None, expected: str) -> None:
    if expected.endswith(".conf"):
        assert unitdropin.choose_name(others, current) == expected
        assert all(expected > other for other in others) or current
    else:
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            unitdropin.choose_name(others, current)


# ------------------------------------------------------------------ rendering
NASTY = [
    "--v=2",
    "--node-labels=a=b c",
    '--x="quoted" --y=it\'s',
    "--reserved=$HOME ${HOME} $$",
    "--eviction-hard=memory.available<5%,nodefs.available<10%",
    "--literal=%%n %n %H",
    "--path=C:\\dir\\ --end=\\",
    "--tab=a\tb",
    "--newline=a\nb",
    "--utf8=é€ --comment=#x ;y",
]


@pytest.mark.parametrize("other", NASTY)
def test_environment_override_reads_back_exactly(tmp_path: Path, other: str) -> None:
    """render -> the unit reader: the variable is the original value, only the DNS
    changed, whatever else it holds."""
    value = f"--cluster-dns={CLUSTER_DNS} {other}"
    override = Override("Environment", "KUBELET_DNS_ARGS", value, "/x/10-kubeadm.conf")
    data = unitdropin.render(override, [LOCAL_DNS])
    unit = unit_of(
        tmp_path,
        {
            UNIT: "[Service]\nExecStart=/usr/bin/kubelet ${KUBELET_DNS_ARGS}\n",
            OURS: data,
        },
    )
    assert unit.environment["KUBELET_DNS_ARGS"].value == f"--cluster-dns={LOCAL_DNS} {other}"
    assert unit.environment["KUBELET_DNS_ARGS"].source_path == OURS
    assert unitdropin.read(data, override, OURS) == (LOCAL_DNS,)


@pytest.mark.parametrize(
    "line",
    [
        "/usr/local/bin/kubelet    --cluster-dns=10.96.0.10    --v=2",
        '-@/usr/bin/kubelet kubelet --cluster-dns 10.96.0.10 --node-labels="a=b c" $X ${Y}',
        "/usr/bin/kubelet --eviction-hard=memory.available<5%% --root-dir=/var/lib/%N "
        "--cluster_dns=10.96.0.10,10.96.0.11 --v=2",
    ],
)
def test_exec_start_override_repeats_the_line(tmp_path: Path, line: str) -> None:
    original = unit_of(tmp_path / "a", {UNIT: f"[Service]\nExecStart={line}\n"})
    override = unitdropin.choose_mechanism(original)
    assert isinstance(override, Override) and override.text == line
    data = unitdropin.render(override, [LOCAL_DNS])
    assert data.count(b"\nExecStart=\n") == 1
    unit = unit_of(tmp_path / "b", {UNIT: f"[Service]\nExecStart={line}\n", OURS: data})
    assert unit.exec_start_path == OURS
    changed = [w if "10.96.0." not in w else w.split("10.96")[0] + LOCAL_DNS for w in original.argv]
    assert unit.argv == changed
    assert unitdropin.read(data, override, OURS) == (LOCAL_DNS,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('--cluster-dns="10.96.0.10"', "written with quotes"),
        ("--cluster-dns=${DNS}", "written with quotes, escapes, variables"),
        ("--cluster-dns=10.96.0.%%", "written with quotes, escapes, variables or specifiers"),
        ("--cluster-dns", "has no value"),
        ("--v=2", "appears 0 times"),
    ],
)
def test_a_value_that_cannot_be_replaced_in_place_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace_flag_value(text, "--cluster-dns", [LOCAL_DNS], "ExecStart= of x")


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("10%%", ("10%", False)),
        ("%n %N %p %i", ("kubelet.service kubelet kubelet ", False)),
        ("--hostname-override=%H", ("--hostname-override=%H", True)),
        ("%%H", ("%H", False)),
    ],
)
def test_resolve_specifiers(word: str, expected: tuple[str, bool]) -> None:
    assert resolve_specifiers(word) == expected


# ------------------------------------------------------------------ systemd's own view
def test_systemd_view_environment_files_beat_environment(tmp_path: Path) -> None:
    host = write(tmp_path, {"/etc/default/kubelet": "EXTRA=--cluster-dns=10.0.0.9\n"})
    status = UnitStatus(
        "kubelet.service",
        "loaded",
        "active",
        1,
        environment_files=(
            EnvironmentFile("/etc/default/kubelet", True),
            EnvironmentFile("/etc/missing", True),
        ),
        exec_start=(ExecCommand("/usr/bin/kubelet", "/usr/bin/kubelet $EXTRA $DNS"),),
        environment=("EXTRA=--cluster-dns=10.0.0.1", "DNS=--v=2"),
    )
    assert systemd_cluster_dns(host, status) == ("10.0.0.9",)
    no_file = replace(status, environment_files=())
    assert systemd_cluster_dns(host, no_file) == ("10.0.0.1",)


# ------------------------------------------------------------------ the engine
def ack_node(root: Path) -> FakeNode:
    """An ACK-style node whose fake systemd loads the unit files on daemon-reload (read by
    the unit reader; the real systemd's reading is proven in test_systemd_node.py)."""
    node = FakeNode(root)
    layouts.ack_kubeadm(root)
    (root / layouts.AGENT_UNIT_DROPIN.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    loaded: list[str] = []

    def load() -> None:
        unit = load_kubelet_unit(HostRoot(root))
        assert unit is not None
        node.systemd.status = UnitStatus(
            "kubelet.service",
            "loaded",
            node.systemd.status.active_state,
            node.systemd.status.main_pid,
            fragment_path=unit.unit_path,
            dropin_paths=unit.dropins,
            exec_start=(ExecCommand("/usr/bin/kubelet", unit.exec_start),),
            environment=tuple(f"{k}={v.value}" for k, v in unit.environment.items()),
        )
        loaded[:] = unit.argv

    node.systemd.on_reload = load
    load()
    node.start_kubelet = lambda: node.run_kubelet(*loaded)  # type: ignore[method-assign]
    node.start_kubelet()
    return node


def test_engine_migrates_through_its_dropin_and_reverts_by_removing_it(tmp_path: Path) -> None:
    node = ack_node(tmp_path)
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    assert f"--cluster-dns={LOCAL_DNS}" in node.processes.running[0].argv
    assert (tmp_path / OURS.lstrip("/")).is_file()
    assert node.systemd.calls.count("daemon-reload") == 1
    assert node.runner.calls == [("restart-kubelet",)]
    journal = json.loads(node.read("/var/lib/nodelocaldns-agent/state.json"))
    assert (journal["source"], journal["format"], journal["original_sha256"]) == (OURS, "unit", "")

    back = node.engine().reconcile(Goal.REVERT)
    assert back.state is Result.REVERTED, back.error
    assert not (tmp_path / OURS.lstrip("/")).exists()
    assert f"--cluster-dns={CLUSTER_DNS}" in node.processes.running[0].argv
    assert node.systemd.calls.count("daemon-reload") == 2


def test_engine_rolls_back_without_restart_when_systemd_does_not_see_it(tmp_path: Path) -> None:
    """A drop-in the agent does not model (say ``service.d/``) still overrides the
    variable: systemd's own view after the reload is not the target, so the drop-in is
    removed again and kubelet is never restarted."""
    node = ack_node(tmp_path)
    load = node.systemd.on_reload
    assert load is not None

    def stale() -> None:
        load()
        old = f"KUBELET_DNS_ARGS=--cluster-dns={CLUSTER_DNS}"
        node.systemd.status = replace(node.systemd.status, environment=(old,))

    node.systemd.on_reload = stale
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED and out.rolled_back and not out.restarted
    assert "would start kubelet with --cluster-dns=10.96.0.10" in out.error
    assert node.runner.calls == []
    assert not (tmp_path / OURS.lstrip("/")).exists()
    assert node.systemd.calls.count("daemon-reload") == 2
