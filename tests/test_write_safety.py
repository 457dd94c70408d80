"""Where the root-owned writes may land (issue 13, finding 2): a path component swapped for
a symlink between read and write or between write and rollback, locations outside the
writable directories or inside never-writable ones, directories that are not root's alone,
backup copies named after odd sources, and the state directory's mode.

The attacks through the real CLI run on sandbox nodes; a ``--restart-command`` script does
the swap at a known point (after the agent's write, before its rollback).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from pathlib import Path

import pytest

from nodelocaldns_agent import hostpaths
from nodelocaldns_agent.errors import ConfigError, UnsafeWriteError
from nodelocaldns_agent.host.files import FileJournal, Record
from nodelocaldns_agent.hostpaths import Expected, HostRoot
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.state import Result, Stage
from testing.fakenode import TKE_ENV, tke_node
from testing.sandbox.constants import DEFAULT_RESTART, STATE_DIR
from testing.sandbox.node import SandboxNode
from tests.conftest import NodeFactory
from tests.test_engine import killed_after_the_write

KUBELET = "/etc/kubernetes/kubelet"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def host(tmp_path: Path) -> HostRoot:
    for directory in ("etc/kubernetes/manifests", "var/lib/kubelet/pods/uid/volumes", "opt"):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / "etc/kubernetes/kubelet").write_bytes(b"A=1\n")
    return HostRoot(tmp_path)


# ------------------------------------------------------------------ swapped between read and write
class SwapOnFirstSave(FileJournal):
    """The journal save that precedes the engine's first write, plus a swap of a path
    component at exactly that moment (what a racing attacker would do)."""

    def __init__(self, host: HostRoot, state_dir: str, swap: Path, target: str) -> None:
        super().__init__(host, state_dir)
        self.swap, self.target, self.done = swap, target, False

    def save(self, record: Record) -> None:
        super().save(record)
        if not self.done:
            self.done = True
            self.swap.rename(self.swap.with_name(self.swap.name + ".moved"))
            self.swap.symlink_to(self.target)


@pytest.mark.parametrize(
    ("decoy_dir", "decoy", "refusal"),
    [
        # same bytes elsewhere: only the writable directories stop it
        ("/opt/elsewhere", TKE_ENV, "not inside a writable directory"),
        # a writable directory, but not the file that was read
        ("/var/lib/kubelet", b"KUBELET_OWN=1\n", "content is not what the agent read"),
    ],
)
def test_component_swapped_between_read_and_write_is_refused(
    tmp_path: Path, decoy_dir: str, decoy: bytes, refusal: str
) -> None:
    tke = tke_node(tmp_path)
    tke.write(f"{decoy_dir}/kubelet", decoy)
    engine = tke.engine()
    engine.journal = SwapOnFirstSave(
        engine.host, engine.settings.state_dir, tmp_path / "etc/kubernetes", decoy_dir
    )
    out = engine.reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED and out.stage is Stage.WRITE, out
    assert refusal in out.error and not out.restarted
    assert tke.read(f"{decoy_dir}/kubelet") == decoy
    assert tke.read("/etc/kubernetes.moved/kubelet") == TKE_ENV
    assert tke.runner.calls == []


def test_resumed_rollback_expects_what_this_run_read(tmp_path: Path) -> None:
    """A run killed after its write leaves a restart owed; the next run's rollback restores
    the journal's copy of the original only over the bytes this run read at detect."""
    tke = tke_node(tmp_path)
    killed_after_the_write(tke)
    tke.kubelet_comes_back = False
    changed = b"# changed by someone else meanwhile\n"
    restart = tke.runner.on_run
    assert restart is not None

    def change_then_restart(argv: tuple[str, ...]) -> None:
        tke.write(KUBELET, changed)
        restart(argv)

    tke.runner.on_run = change_then_restart
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED and not out.rolled_back, out
    assert "rollback:" in out.error and "content is not what the agent read" in out.error
    assert tke.read(KUBELET) == changed
    assert len(tke.runner.calls) == 1  # no restart on a file the agent did not restore


def test_a_file_replaced_during_the_write_is_refused(
    host: HostRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-check right before the rename: another inode put at the name meanwhile (same
    bytes) is not overwritten."""
    real_write_all = hostpaths._write_all

    def write_all(fd: int, data: bytes) -> None:
        other = host.root / "etc/kubernetes/other"
        other.write_bytes(b"A=1\n")
        other.rename(host.root / "etc/kubernetes/kubelet")
        real_write_all(fd, data)

    monkeypatch.setattr(hostpaths, "_write_all", write_all)
    with pytest.raises(UnsafeWriteError, match="replaced while the new one was written"):
        host.write_file(KUBELET, b"A=2\n", expect=Expected.of(b"A=1\n"))
    assert (host.root / "etc/kubernetes/kubelet").read_bytes() == b"A=1\n"
    assert sorted(p.name for p in (host.root / "etc/kubernetes").iterdir()) == [
        "kubelet",
        "manifests",
    ]


def test_expectations_absent_digest_and_inode(host: HostRoot) -> None:
    target = host.root / "etc/kubernetes/kubelet"
    with pytest.raises(UnsafeWriteError, match="expected no file there, found one"):
        host.write_file(KUBELET, b"x", expect=Expected.of(None))
    with pytest.raises(UnsafeWriteError, match="content is not what the agent read"):
        host.write_file(KUBELET, b"x", expect=Expected.of(b"A=2\n"))
    with pytest.raises(UnsafeWriteError, match="found none"):
        host.write_file("/etc/kubernetes/new", b"x", expect=Expected.of(b"A=1\n"))
    written = host.write_file(KUBELET, b"B=1\n", expect=Expected.of(b"A=1\n"))
    assert written == hostpaths.FileId.of(target.stat())
    # same bytes, another inode: not the file the agent wrote
    copy = target.with_name("copy")
    copy.write_bytes(b"B=1\n")
    copy.rename(target)
    with pytest.raises(UnsafeWriteError, match="not the file the agent wrote"):
        host.write_file(KUBELET, b"A=1\n", expect=Expected.of(b"B=1\n", written))
    with pytest.raises(UnsafeWriteError, match="not the file the agent wrote"):
        host.remove_file(KUBELET, expect=Expected.of(b"B=1\n", written))
    assert target.read_bytes() == b"B=1\n"
    host.remove_file(KUBELET, expect=Expected.of(b"B=1\n"))
    host.remove_file(KUBELET, expect=Expected.of(b"B=1\n"))  # already gone: fine
    assert not target.exists()


# ------------------------------------------------------------------ where writes may land
@pytest.mark.parametrize(
    ("path", "refusal"),
    [
        ("/opt/kubelet", "not inside a writable directory"),
        ("/etc/kubernetes", "expected a regular file, found a directory"),
        ("/etc/kubernetes/manifests/evil.yaml", "inside /etc/kubernetes/manifests (static pods"),
        ("/var/lib/kubelet/pods/uid/volumes/x", "inside /var/lib/kubelet/pods (pod volumes)"),
        ("/etc/kubernetes/../../opt/kubelet", "expected a normalized path"),
        ("/etc/kubernetes/./kubelet", "expected a normalized path"),
        ("/etc/kubernetes/new\nline", "control character"),
        ("etc/kubernetes/kubelet", "expected an absolute path"),
        ("/etc/kubernetes/missing/kubelet", "no such directory"),
    ],
)
def test_writes_only_inside_the_writable_directories(
    host: HostRoot, path: str, refusal: str
) -> None:
    with pytest.raises(UnsafeWriteError, match=re.escape(refusal)):
        host.write_file(path, b"x", expect=None)
    assert not (host.root / "opt/kubelet").exists()
    assert os.listdir(host.root / "etc/kubernetes/manifests") == []


def test_never_writable_whatever_the_list_says(host: HostRoot) -> None:
    wide = HostRoot(host.root, ("/", "/var/lib/kubelet/pods"))
    with pytest.raises(UnsafeWriteError, match="never writes"):
        wide.write_file("/var/lib/kubelet/pods/uid/volumes/x", b"x", expect=None)
    wide.write_file("/opt/x", b"x", expect=None)  # "/" allows the rest
    assert (host.root / "opt/x").read_bytes() == b"x"


def test_the_resolved_location_decides(host: HostRoot) -> None:
    """A symlink out of the writable directories is refused; a symlinked never-writable
    directory is still never written; a writable directory reached through a symlink is."""
    (host.root / "opt/real.env").write_bytes(b"A=1\n")
    (host.root / "etc/kubernetes/out").symlink_to("/opt/real.env")
    with pytest.raises(UnsafeWriteError, match=r"refusing to write /opt/real\.env"):
        host.write_file("/etc/kubernetes/out", b"x", expect=Expected.of(b"A=1\n"))
    (host.root / "etc/kubernetes/static").symlink_to("manifests")
    with pytest.raises(UnsafeWriteError, match="never writes"):
        host.write_file("/etc/kubernetes/static/pod.yaml", b"x", expect=None)
    (host.root / "etc/default").symlink_to("/etc/kubernetes")
    host.write_file("/etc/default/kubelet", b"B=1\n", expect=Expected.of(b"A=1\n"))
    assert (host.root / "etc/kubernetes/kubelet").read_bytes() == b"B=1\n"
    assert (host.root / "opt/real.env").read_bytes() == b"A=1\n"


@pytest.mark.parametrize(
    ("owner", "perm", "shown"),
    [
        (0, 0o775, "owned by uid 0 with mode 0775"),
        (0, 0o757, "owned by uid 0 with mode 0757"),
        (0, 0o1777, "owned by uid 0 with mode 1777"),  # sticky: no exception
        (65534, 0o755, "owned by uid 65534 with mode 0755"),
    ],
)
def test_a_directory_not_roots_alone_is_refused(
    host: HostRoot, owner: int, perm: int, shown: str
) -> None:
    directory = host.root / "etc/kubernetes"
    os.chown(directory, owner, 0)
    os.chmod(directory, perm)
    with pytest.raises(UnsafeWriteError) as caught:
        host.write_file(KUBELET, b"x", expect=Expected.of(b"A=1\n"))
    assert f"through /etc/kubernetes: {shown}" in str(caught.value)
    assert (directory / "kubelet").read_bytes() == b"A=1\n"


def test_a_symlink_detour_through_an_open_directory_is_refused(host: HostRoot) -> None:
    (host.root / "tmp").mkdir(mode=0o1777)
    os.chmod(host.root / "tmp", 0o1777)  # noqa: S103 - the open directory under test
    (host.root / "etc/kubernetes/conf").symlink_to("/tmp/../etc/kubernetes/kubelet")
    with pytest.raises(UnsafeWriteError, match="through /tmp: owned by uid 0 with mode 1777"):
        host.write_file("/etc/kubernetes/conf", b"x", expect=Expected.of(b"A=1\n"))


# ------------------------------------------------------------------ the journal
def test_state_dir_and_original_parents_are_private(host: HostRoot) -> None:
    journal = FileJournal(host, STATE_DIR)
    copy = journal.keep_original(KUBELET, b"A=1\n")
    journal.save(Record(KUBELET, "env", ["10.96.0.10"], "abc", copy))
    state = host.root / STATE_DIR.lstrip("/")
    for directory in (state, state / "original", state / "original/etc/kubernetes"):
        assert mode(directory) == 0o700, directory
    assert mode(state / "state.json") == 0o600
    assert mode(host.root / copy.lstrip("/")) == 0o600
    assert mode(host.root / "var/lib") == 0o755  # above the state dir: as it was


def test_a_0755_state_dir_of_an_older_version_is_tightened(host: HostRoot) -> None:
    state = host.root / STATE_DIR.lstrip("/")
    (state / "original/etc").mkdir(parents=True, mode=0o755)
    os.chmod(state, 0o755)  # noqa: S103 - what an older version left
    (state / "state.json").write_text("{}")
    os.chmod(state / "state.json", 0o644)
    journal = FileJournal(host, STATE_DIR)
    journal.keep_original(KUBELET, b"A=1\n")
    journal.save(Record(KUBELET, "env", ["10.96.0.10"], "abc", ""))
    assert mode(state) == mode(state / "original") == mode(state / "original/etc") == 0o700
    assert mode(state / "state.json") == 0o600


def test_a_state_dir_writable_by_others_is_refused(host: HostRoot) -> None:
    state = host.root / STATE_DIR.lstrip("/")
    state.mkdir(parents=True)
    os.chmod(state, 0o777)  # noqa: S103 - the open directory under test
    with pytest.raises(UnsafeWriteError, match="owned by uid 0 with mode 0777"):
        FileJournal(host, STATE_DIR).save(Record(KUBELET, "env", [], "", ""))
    assert os.listdir(state) == []


@pytest.mark.parametrize(
    "source",
    [
        "/../../../../etc/kubernetes/kubelet",
        "/etc/kubernetes/../../../../../../etc/cron.d/x",
        "etc/kubernetes/kubelet",
        "/etc/kubernetes//kubelet",
        "/etc/kubernetes/kubelet\n",
    ],
)
def test_a_backup_copy_never_leaves_the_state_dir(host: HostRoot, source: str) -> None:
    with pytest.raises(ConfigError, match="refusing to name the copy"):
        FileJournal(host, STATE_DIR).keep_original(source, b"A=1\n")
    assert not (host.root / "var/lib/nodelocaldns-agent").exists()
    assert sorted(p.name for p in (host.root / "etc/kubernetes").iterdir()) == [
        "kubelet",
        "manifests",
    ]


def test_the_journal_writes_only_into_its_directory(host: HostRoot) -> None:
    journal = FileJournal(host, STATE_DIR)
    state = host.root / STATE_DIR.lstrip("/")
    state.mkdir(parents=True)
    (state / "original").symlink_to("/etc/kubernetes")
    with pytest.raises(UnsafeWriteError, match="not inside a writable directory"):
        journal.keep_original("/x", b"A=2\n")
    assert sorted(os.listdir(host.root / "etc/kubernetes")) == ["kubelet", "manifests"]


# ------------------------------------------------------------------ through the real CLI
def restart_script(node: SandboxNode, body: str) -> str:
    """A --restart-command that runs ``body`` (shell, in the node) on its first call and
    fails, and restarts kubelet the normal way afterwards: the agent's rollback must write
    after whatever ``body`` did."""
    script = node.workdir / "restart.sh"
    marker = node.workdir / "restart.done"
    script.write_text(
        "set -e\n"
        f"if [ ! -e {marker} ]; then touch {marker}\n{body}\n"
        "echo 'restart failed (injected)' >&2; exit 1; fi\n"
        f"exec {shlex.join(DEFAULT_RESTART)}\n"
    )
    script.chmod(0o700)
    return f"sh {script}"


@pytest.mark.netns
def test_rollback_redirect_to_kubelets_real_config_is_refused(
    sandbox_node: NodeFactory,
) -> None:
    """Issue 13's sequence: the agent edits a config whose directory is then swapped for a
    symlink to /var/lib/kubelet, and its rollback would write that config's bytes (anonymous
    auth, AlwaysAllow) over kubelet's real config.yaml."""
    node = sandbox_node(layout="kubeadm", kubelet=False)
    real = node.path("/var/lib/kubelet/config.yaml")
    kubelets_own = real.read_bytes()
    tenant = kubelets_own.replace(
        b"anonymous:\n    enabled: false", b"anonymous:\n    enabled: true"
    ).replace(b"mode: Webhook", b"mode: AlwaysAllow")
    assert tenant != kubelets_own
    node.path("/etc/kubernetes/node").mkdir(parents=True)
    node.path("/etc/kubernetes/node/config.yaml").write_bytes(tenant)
    dropin = node.path("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf")
    dropin.write_text(
        dropin.read_text().replace(
            "--config=/var/lib/kubelet/config.yaml", "--config=/etc/kubernetes/node/config.yaml"
        )
    )
    node.systemctl("start", "kubelet", quiet=True, check=True)
    node.wait_kubelet()
    swap = (
        f"mv {node.path('/etc/kubernetes/node')} {node.path('/etc/kubernetes/node.moved')}\n"
        f"ln -s /var/lib/kubelet {node.path('/etc/kubernetes/node')}"
    )
    result = node.agent(
        "migrate",
        "--once",
        "--json",
        "--verify-timeout",
        "5",
        "--restart-command",
        restart_script(node, swap),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert real.read_bytes() == kubelets_own
    summary = json.loads(result.stdout)
    assert "not the file the agent wrote" in json.dumps(summary), summary
    assert b"169.254.20.10" in node.read_bytes("/etc/kubernetes/node.moved/config.yaml")


@pytest.mark.netns
def test_rollback_through_a_symlink_out_of_the_writable_dirs_is_refused(
    sandbox_node: NodeFactory,
) -> None:
    node = sandbox_node(layout="tke")
    evil = node.path("/opt/evil")
    evil.mkdir(parents=True)
    (evil / "kubelet").write_bytes(b"# not kubelet's\n")
    swap = (
        f"mv {node.path('/etc/kubernetes')} {node.path('/etc/kubernetes.moved')}\n"
        f"ln -s /opt/evil {node.path('/etc/kubernetes')}"
    )
    result = node.agent(
        "migrate",
        "--once",
        "--verify-timeout",
        "5",
        "--restart-command",
        restart_script(node, swap),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refusing to write /opt/evil/kubelet: not inside a writable directory" in (
        result.stdout + result.stderr
    )
    assert (evil / "kubelet").read_bytes() == b"# not kubelet's\n"
    assert node.read_bytes("/etc/kubernetes.moved/kubelet") == node.original.replace(
        b"=10.96.0.10", b"=169.254.20.10"
    )


@pytest.mark.netns
def test_cli_writes_only_where_writable_dirs_allow_and_keeps_its_state_private(
    sandbox_node: NodeFactory,
) -> None:
    node = sandbox_node(layout="tke")
    refused = node.agent("migrate", "--once", "--writable-dirs", "/etc/default,/etc/sysconfig")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not inside a writable directory (/etc/default, /etc/sysconfig" in refused.stdout
    assert node.dns_file.read_bytes() == node.original and node.restarts() == []
    done = node.agent("migrate", "--once", "--verify-timeout", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    state = node.path(STATE_DIR)
    for directory in (state, state / "original", state / "original/etc/kubernetes"):
        assert mode(directory) == 0o700, directory
    assert mode(state / "state.json") == 0o600
