"""A sandbox node with a real systemd, booted with ``systemd-nspawn``, for the agent's tests.

:class:`NspawnNode` is a :class:`testing.sandbox.node.SandboxNode` whose init is a real
systemd instead of a bash loop with a recording ``systemctl``: the layout, the links, the
local DNS, the kubelet stand-in, waiting, running commands and the agent, and the checks on
cleanup are the sandbox node's. Only how the node boots and stops is its own.

Root file system: ``debootstrap --variant=minbase`` of Debian bookworm with systemd, dbus,
python3 and the agent's runtime modules as Debian packages (``python3-yaml``,
``python3-psutil``, ``python3-dnspython``, ``python3-prometheus-client``) and
``dnsmasq-base``, so the agent runs *inside* the node with the node's own interpreter
and no site-packages of this machine. Built once, into a temporary directory renamed into
place when complete, under ``$NODELOCALDNS_AGENT_TEST_CACHE`` (default
``/var/cache/nodelocaldns-agent-tests``) as ``rootfs-<hash of the debootstrap
arguments>``; an interrupted build is never reused.

Each node mounts an overlay (the cached root file system read-only below, a fresh upper
directory above; ``cp -a`` when overlayfs is unavailable) at ``<workdir>/root``, writes the
sandbox layout there (TKE by default: ``/usr/lib/systemd/system/kubelet.service`` with
``ExecStart=/usr/bin/kubelet ... ${CLUSTER_DNS} ...`` and ``EnvironmentFile=-/etc/kubernetes/
kubelet``), and boots it with ``systemd-nspawn -b --register=no --keep-unit
--private-network --console=passive``:

* ``/usr/bin/kubelet``: the sandbox's kubelet stand-in
  (:mod:`testing.sandbox.kubelet_standin`, run by the node's python3, comm ``kubelet``):
  it logs every start, serves ``ok`` on ``127.0.0.1:10248/healthz`` in the node's private
  network, and exits 1 when started with ``--cluster-dns=192.0.2.1`` (``BAD_DNS``, the
  "bad value" of rollback tests); its files are in ``/var/lib/sandbox-node``;
* the repository's ``nodelocaldns_agent/`` and ``testing/`` bind-mounted read-only under
  ``/opt/nodelocaldns-agent``.

In the node's network namespace (only loopback otherwise): ``nodelocaldns`` holding
169.254.20.10/32 and 192.0.2.1/32, ``kube-ipvs0`` holding 10.96.0.10/32, and a real
``dnsmasq`` (Debian's ``dnsmasq-base`` in the node, run by the node's systemd as
``node-local-dns.service``, so it lives and dies with the node) answering
``kubernetes.default.svc.cluster.local A 10.96.0.1`` on both addresses. Nothing is sent
from this machine's own network namespace.

How the agent runs (:meth:`SandboxNode.agent`): ``nsenter --target <node PID 1> --mount
--uts --ipc --net --pid -- /usr/bin/python3 -m nodelocaldns_agent ... --host-root /``. It
thus sees the node's processes, interfaces and files exactly as a ``hostPID`` pod with the
host's ``/`` would, and the *production default* restart command ``nsenter --target 1
--mount --uts --ipc --net --pid -- systemctl restart kubelet``, unchanged, reaches the
node's systemd (PID 1 of the pid namespace the agent runs in). No flag of the agent is
overridden except where a test says so.

Cleanup (:meth:`SandboxNode.close`, also after failures and at interpreter exit): whatever
still runs in the node through ``nsenter`` is killed first (see :meth:`NspawnNode._shutdown`),
nspawn gets SIGTERM (the node powers off), then SIGKILL for nspawn *and* the node's PID 1
(killing nspawn alone leaves the node running); then every process left in the node's own
cgroup is killed, the cgroup (nspawn's ``payload``/``supervisor`` are created inside it,
never at the root of the hierarchy) is removed, the overlay unmounted and the work
directory deleted. The node's ``DefaultTimeoutStopSec=3s`` bounds its power-off (processes
entered with nsenter are not systemd's children; its final kill would otherwise wait 90 s
for them). nspawn and every ``nsenter`` into the node run under ``setpriv --pdeathsig``, so
a test process killed outright still powers its nodes off; whatever such a run leaves (a
hung node, cgroups, overlay mounts) is swept when the next node starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from testing.sandbox.constants import BAD_DNS, LOCAL_DNS
from testing.sandbox.node import (
    REPO_ROOT,
    SandboxError,
    SandboxNode,
    dnsmasq_argv,
)
from testing.sandbox.nodefiles import NODE_DIR_ENV, NodeConfig, NodeFiles

log = logging.getLogger(__name__)

CACHE_DIR = Path(
    os.environ.get("NODELOCALDNS_AGENT_TEST_CACHE", "/var/cache/nodelocaldns-agent-tests")
)
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "iproute2",
    "python3-yaml",
    "python3-psutil",
    "python3-dnspython",
    "python3-prometheus-client",
    "dnsmasq-base",
)
#: bump when the post-processing of a built root file system changes
ROOTFS_REVISION = 1
BUILD_TIMEOUT = 600.0

#: where the repository's packages are bind-mounted in the node (its PYTHONPATH)
AGENT_DIR = "/opt/nodelocaldns-agent"
#: the repository's packages bind-mounted there
BOUND_PACKAGES = ("nodelocaldns_agent", "testing")
#: the node's own files (:class:`testing.sandbox.nodefiles.NodeFiles`), inside the node
NODE_DIR = "/var/lib/sandbox-node"
#: what ``ExecStart=`` of the layouts' kubelet.service runs
KUBELET = "/usr/bin/kubelet"
#: prefix of the nodes' machine names and cgroups
NAME_PREFIX = "nla-test-"
#: file next to a node's root naming the test process that owns it ("PID CREATE_TIME")
OWNER_FILE = "owner"
BOOT_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
#: the node's DefaultTimeoutStopSec=, which bounds its power-off
STOP_GRACE = 3.0
#: systemd-nspawn's runtime directory on this machine
NSPAWN_RUN = Path("/run/systemd/nspawn")
#: seconds a node cgroup must exist before a sweep may take it as stale
CGROUP_GRACE = 10.0
_POLL = 0.02
#: the environment of commands run in the node
NODE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}

#: commands this machine needs for the nodes (besides debootstrap for the first build)
REQUIRED_TOOLS = ("systemd-nspawn", "nsenter", "setpriv", "unshare", "ip", "mount", "umount")

#: the sandbox's kubelet stand-in, run by the node's systemd and python3
KUBELET_STANDIN = f'''\
#!/usr/bin/python3
"""kubelet stand-in of a node under a real systemd (testing/systemd_node.py)."""
import os
import sys

os.environ.setdefault("{NODE_DIR_ENV}", "{NODE_DIR}")
sys.path.insert(0, "{AGENT_DIR}")
from testing.sandbox.kubelet_standin import main

sys.exit(main(sys.argv[1:]))
'''
#: the node-local DNS: a unit of the node's systemd, so it lives and dies with the node
DNS_UNIT = "node-local-dns.service"
#: where the layouts' units run kubelet from (EKS, kubeadm, TKE; Kubernetes The Hard Way)
KUBELET_PATHS = (KUBELET, "/usr/local/bin/kubelet")
#: units the layouts' kubelet.service requires (EKS: containerd and sandbox-image; the hard
#: way: containerd), as do-nothing stand-ins, and the command EKS's ``ExecStartPre=`` runs
REQUIRED_UNITS = ("containerd.service", "sandbox-image.service")
EXEC_START_PRE = "/sbin/iptables"


class NodeError(SandboxError):
    """The node could not be built, booted or cleaned up."""


# --------------------------------------------------------------------- prerequisites


def missing_tools(extra: Sequence[str] = ()) -> list[str]:
    return [tool for tool in (*REQUIRED_TOOLS, *extra) if shutil.which(tool) is None]


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 ``.sources`` or ``sources.list``)."""
    override = os.environ.get("NODELOCALDNS_AGENT_TEST_MIRROR")
    if override:
        return override
    apt = Path("/etc/apt")
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            fields: dict[str, str] = dict(
                (key.strip().lower(), value.strip())
                for key, sep, value in (line.partition(":") for line in stanza.splitlines())
                if sep and not key.lstrip().startswith("#")
            )
            uris = fields.get("uris", "").split()
            if (
                uris
                and SUITE in fields.get("suites", "").split()
                and "deb" in fields.get("types", "").split()
            ):
                return uris[0]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb" and SUITE in words[1:]:
                uri = next(w for w in words[1:] if not w.startswith("["))
                return uri
    return DEFAULT_MIRROR


def debootstrap_argv(target: Path, mirror: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        mirror,
    ]


def rootfs_key(mirror: str) -> str:
    args = debootstrap_argv(Path("TARGET"), mirror)
    text = json.dumps({"argv": args, "revision": ROOTFS_REVISION})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------- mounts and trees


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount whatever is mounted below ``path``, then delete it; refuses while anything
    is still mounted there (deleting through a bind mount would delete its source)."""
    if not path.exists() and not path.is_symlink():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    left = mounts_under(path)
    if left:
        raise NodeError(f"{path}: still mounted below it, not deleting: {left}")
    shutil.rmtree(path)


# --------------------------------------------------------------------- root file system


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_rootfs(cache_dir: Path = CACHE_DIR) -> tuple[Path, float]:
    """The cached Debian root file system (built when missing) and the seconds spent
    building it (0.0 when it was cached)."""
    mirror = debian_mirror()
    final = cache_dir / f"rootfs-{rootfs_key(mirror)}"
    if final.is_dir():
        return final, 0.0
    if shutil.which("debootstrap") is None:
        raise NodeError(f"{final} is not cached and debootstrap is not installed")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        if final.is_dir():  # built by a concurrent run meanwhile
            return final, 0.0
        for stale in cache_dir.glob(".build-*"):  # interrupted builds (we hold the lock)
            log.warning("removing the interrupted build %s", stale)
            remove_tree(stale)
        build = cache_dir / f".build-{final.name}-{os.getpid()}"
        start = time.monotonic()
        log.warning("building %s with debootstrap from %s (once)", final, mirror)
        try:
            proc = subprocess.run(
                debootstrap_argv(build, mirror),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr)[-3000:]
                raise NodeError(f"debootstrap failed ({proc.returncode}):\n{tail}")
            if mounts_under(build):
                raise NodeError(f"debootstrap left mounts under {build}")
            for deb in (build / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            os.rename(build, final)
        finally:
            remove_tree(build)
        return final, time.monotonic() - start


# --------------------------------------------------------------------- cgroups


@dataclass(frozen=True)
class Hierarchy:
    """A cgroup hierarchy nspawn creates ``payload``/``supervisor`` in."""

    mount_point: Path
    #: this process's cgroup in it, as in /proc/self/cgroup
    own: str

    def path(self, name: str) -> Path:
        return self.mount_point / self.own.lstrip("/") / name


def nspawn_hierarchies() -> list[Hierarchy]:
    """The unified (cgroup2) hierarchy and the named ``systemd`` v1 one, when mounted."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers] = path
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            point = Path(left.split()[4])
            fstype, _, options = right.split()[:3]
            if fstype == "cgroup2" and "" in own:
                found.append(Hierarchy(point, own[""]))
            elif (
                fstype == "cgroup"
                and "name=systemd" in options.split(",")
                and "name=systemd" in own
            ):
                found.append(Hierarchy(point, own["name=systemd"]))
    return found


def _cgroup_pids(directory: Path) -> list[int]:
    pids: list[int] = []
    for procs in directory.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def _remove_cgroup(directory: Path) -> bool:
    """rmdir ``directory`` and its children, deepest first; True when it is gone."""
    if not directory.is_dir():
        return True
    dirs = sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for sub in [*dirs, directory]:
        with contextlib.suppress(OSError):
            sub.rmdir()
    return not directory.exists()


def _owner_token() -> str:
    me = psutil.Process()
    return f"{me.pid} {me.create_time()!r}"


def _owner_alive(token: str) -> bool:
    try:
        pid, created = token.split()
        return round(psutil.Process(int(pid)).create_time(), 2) == round(float(created), 2)
    except (ValueError, psutil.Error):
        return False


def _stale_node(directory: Path) -> bool:
    """True when the node of cgroup ``directory`` belongs to no live test process."""
    for pid in _cgroup_pids(directory):
        with contextlib.suppress(psutil.Error, ValueError, IndexError):
            argv = psutil.Process(pid).cmdline()
            if argv and argv[0].endswith("systemd-nspawn"):
                root = Path(argv[argv.index("--directory") + 1])
                try:
                    token = (root.parent / OWNER_FILE).read_text(encoding="utf-8")
                except OSError:
                    return False  # cannot tell: leave it alone
                return not _owner_alive(token)
    # empty, or a node whose nspawn is gone, unless it is a node being started right now
    try:
        return time.time() - directory.stat().st_mtime > CGROUP_GRACE
    except OSError:
        return False


def _nsenter_target(argv: Sequence[str]) -> int | None:
    """The ``--target`` pid of an ``nsenter`` command line (None when it has none)."""
    for arg, following in zip(argv, [*argv[1:], ""], strict=True):
        value = arg.removeprefix("--target=") if arg.startswith("--target=") else None
        if arg == "--target":
            value = following
        if value is not None:
            return int(value) if value.isdigit() else None
    return None


def _kill_stale_node(name: str) -> None:
    """SIGKILL a stale node: the nsenter wrappers into it first (a live one would keep its
    pid namespace from ending, see :meth:`NspawnNode._shutdown`), then its cgroup's
    processes."""
    hierarchies = nspawn_hierarchies()
    pids = {pid for h in hierarchies for pid in _cgroup_pids(h.path(name))}
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "nsenter" and _nsenter_target(proc.info["cmdline"] or []) in pids:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    for hierarchy in hierarchies:
        _kill_cgroup(hierarchy.path(name))
        _remove_cgroup(hierarchy.path(name))


def sweep_stale() -> None:
    """Undo what a test process that was killed outright left: nodes still running
    (nspawn got SIGTERM from its parent-death signal, but the node may hang), node
    cgroups, and overlay mounts whose ``owner`` process is gone."""
    for hierarchy in nspawn_hierarchies()[:1]:
        for directory in hierarchy.path("").glob(NAME_PREFIX + "*"):
            if _stale_node(directory):
                log.warning("removing the stale node %s", directory.name)
                _kill_stale_node(directory.name)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        mounts = [line.partition(" - ") for line in fh]
    for left, _, right in mounts:
        fstype, _, options = [*right.split(), "", "", ""][:3]
        if fstype != "overlay" or f"lowerdir={CACHE_DIR}/rootfs-" not in options:
            continue
        point = Path(left.split()[4].encode().decode("unicode_escape"))
        try:
            token = (point.parent / OWNER_FILE).read_text(encoding="utf-8")
        except OSError:
            continue  # not one of ours
        if not _owner_alive(token):
            log.warning("unmounting %s, left by a test process that is gone", point)
            subprocess.run(["umount", "--lazy", str(point)], check=False, capture_output=True)


# --------------------------------------------------------------------- the node


class NspawnNode(SandboxNode):
    """A sandbox node whose init is a real systemd (see the module docstring):
    ``NspawnNode(workdir, rootfs, **options).start()``, ``close()`` it. ``options`` are
    :class:`SandboxNode`'s, but there is no kube-proxy stand-in (the agent finds IPVS
    mode through ``kube-ipvs0``) and ``nodelocaldns`` also holds ``BAD_DNS``."""

    python_binary = "/usr/bin/python3"
    python_cwd = Path("/")
    command_env: Mapping[str, str] | None = NODE_ENV

    def __init__(self, workdir: Path, rootfs: Path, *, name: str = "", **options: Any) -> None:
        options.setdefault("local_addresses", (LOCAL_DNS, BAD_DNS))
        options.setdefault("local_dns_server", "dnsmasq")  # the node's systemd runs it
        if options.setdefault("kube_proxy", False):
            raise ValueError("NspawnNode has no kube-proxy stand-in")
        super().__init__(workdir, name=name or NAME_PREFIX + uuid.uuid4().hex[:12], **options)
        self.rootfs = rootfs
        self.files = NodeFiles(self.root / NODE_DIR.lstrip("/"))
        self._overlay = False
        self._cgroups: list[Path] = []
        #: nspawn's lock on the root directory (``inode-DEV:INO``)
        self._nspawn_lock: Path | None = None

    # ---------------------------------------------------------------- the node's view

    @property
    def host_root(self) -> str:
        return "/"

    def node_config(self) -> NodeConfig:
        return (
            super()
            .node_config()
            ._replace(root="/", python=self.python_binary, pythonpath=AGENT_DIR)
        )

    def python_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The node's python3 with the repository's packages (bind-mounted), nothing of
        this machine's environment."""
        return {
            **NODE_ENV,
            "PYTHONPATH": AGENT_DIR,
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }

    def _nsenter(self, cwd: Path | None = None) -> list[str]:
        # the wrapper dies with this process: a live one would hang the node's power-off
        return ["setpriv", "--pdeathsig", "KILL", "--", *super()._nsenter(cwd)]

    # ---------------------------------------------------------------- start

    def _prepare_root(self) -> None:
        """The overlay on the cached root file system, then the sandbox's files in it."""
        sweep_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / OWNER_FILE).write_text(_owner_token(), encoding="utf-8")
        upper, work = self.workdir / "upper", self.workdir / "work"
        for directory in (upper, work, self.root):
            directory.mkdir()
        options = f"lowerdir={self.rootfs},upperdir={upper},workdir={work}"
        mount = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if mount.returncode == 0:
            self._overlay = True
        else:
            log.warning("overlay mount failed (%s); copying the root", mount.stderr.strip())
            self.root.rmdir()
            subprocess.run(["cp", "-a", str(self.rootfs), str(self.root)], check=True)
        super()._prepare_root()

    def _put(self, node_path: str, data: str, mode: int = 0o644) -> None:
        real = self.path(node_path)
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text(data, encoding="utf-8")
        real.chmod(mode)

    def _install_standins(self) -> None:
        """The kubelet stand-in, the local DNS unit, mount points for the repository."""
        for path in KUBELET_PATHS:
            self._put(path, KUBELET_STANDIN, 0o755)
        for unit in REQUIRED_UNITS:
            self._put(
                f"/etc/systemd/system/{unit}",
                "[Unit]\nDescription=stand-in of testing/systemd_node.py\n\n"
                "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
            )
        if not self.path(EXEC_START_PRE).exists():
            self._put(EXEC_START_PRE, "#!/bin/sh\nexit 0\n", 0o755)
        argv = dnsmasq_argv(self.local_addresses, self.dns_records, "/usr/sbin/dnsmasq")
        self._put(
            f"/etc/systemd/system/{DNS_UNIT}",
            "[Unit]\nDescription=node-local DNS stand-in (dnsmasq) of testing/systemd_node.py\n"
            f"\n[Service]\nExecStart={shlex.join(argv)}\n",
        )
        # processes systemd did not start (the agent, entered with nsenter) delay the final
        # kill of a powering-off node by this much, not by 90 s
        self._put(
            "/etc/systemd/system.conf.d/nodelocaldns-agent-tests.conf",
            f"[Manager]\nDefaultTimeoutStopSec={STOP_GRACE:g}s\n",
        )
        for package in BOUND_PACKAGES:
            self.path(f"{AGENT_DIR}/{package}").mkdir(parents=True, exist_ok=True)

    def _make_cgroups(self) -> list[Path]:
        """A cgroup of the node's own in each hierarchy nspawn uses (nspawn puts its
        ``payload`` and ``supervisor`` below it, not next to the caller's processes)."""
        made = []
        for hierarchy in nspawn_hierarchies():
            directory = hierarchy.path(self.name)
            try:
                directory.mkdir()
            except OSError as exc:
                log.warning(
                    "cannot create cgroup %s (%s); nspawn uses the caller's", directory, exc
                )
                continue
            made.append(directory)
        return made

    def _boot(self) -> None:
        self._cgroups = self._make_cgroups()
        st = self.root.stat()
        self._nspawn_lock = NSPAWN_RUN / "locks" / f"inode-{st.st_dev}:{st.st_ino}"
        nspawn = [
            "systemd-nspawn",
            "--directory", str(self.root),
            "--machine", self.name,
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=passive",
            *(f"--bind-ro={REPO_ROOT / p}:{AGENT_DIR}/{p}" for p in BOUND_PACKAGES),
        ]  # fmt: skip
        # enter the node's cgroups, then (pdeathsig TERM: powered off if we die) nspawn
        enter = 'for procs in $NODE_CGROUPS; do echo $$ > "$procs" || exit 125; done; exec "$@"'
        argv = ["sh", "-c", enter, "sh", "setpriv", "--pdeathsig", "TERM", "--", *nspawn]
        env = {
            "PATH": os.environ.get("PATH", NODE_ENV["PATH"]),
            "NODE_CGROUPS": " ".join(str(c / "cgroup.procs") for c in self._cgroups),
        }
        with open(self.workdir / "nspawn.log", "wb") as out:
            self._boot_proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        self._init_pid = self._wait("the node's systemd", self._find_init, BOOT_TIMEOUT)
        self._wait("the node to boot", self._booted, BOOT_TIMEOUT)

    def _find_init(self) -> int | None:
        assert self._boot_proc is not None
        if self._boot_proc.poll() is not None:
            raise NodeError(
                f"systemd-nspawn exited {self._boot_proc.returncode}:\n{self.nspawn_log()}"
            )
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self._boot_proc.pid).children():
                if child.name() == "systemd":
                    return child.pid
        return None

    def _booted(self) -> bool:
        state = self.systemctl("is-system-running").stdout.strip()
        if state == "degraded":
            failed = self.systemctl("--failed", "--no-legend").stdout
            log.warning("node %s is degraded: %s", self.name, failed.strip())
        return state in ("running", "degraded")

    def _start_dns_server(self) -> None:
        self.systemctl("start", DNS_UNIT, check=True)

    def _stop_dns_server(self) -> None:
        self.systemctl("stop", DNS_UNIT, check=True)

    # ---------------------------------------------------------------- diagnostics

    def nspawn_log(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "nspawn.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def diagnostics(self) -> str:
        """nspawn's log, kubelet's unit status and journal, for assertion messages."""
        parts = [f"\n--- nspawn.log\n{self.nspawn_log()}"]
        if self._init_pid and psutil.pid_exists(self._init_pid):
            for argv in (
                ["systemctl", "status", "--no-pager", "kubelet"],
                ["journalctl", "--no-pager", "-n", "30", "-u", "kubelet"],
            ):
                with contextlib.suppress(Exception):
                    proc = self.exec(argv, timeout=10)
                    parts.append(f"--- {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)

    # ---------------------------------------------------------------- stop

    def _shutdown(self) -> list[str]:
        """Power the node off and delete it. Whatever runs in the node through ``nsenter``
        is killed first: a *live* ``nsenter --pid`` wrapper would deadlock the power-off
        (systemd-shutdown SIGSTOPs every process of the node, nsenter then stops itself to
        mirror its child, nobody continues it to reap the child, and the node's pid
        namespace never ends)."""
        problems: list[str] = []
        for proc in self._procs:
            if proc.poll() is None:
                proc.end()
        nspawn = self._boot_proc
        if nspawn is not None and nspawn.poll() is None:
            nspawn.send_signal(signal.SIGTERM)  # the node powers off
            try:
                nspawn.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"nspawn ignored SIGTERM for {STOP_TIMEOUT:g}s; killed")
                with contextlib.suppress(ProcessLookupError):
                    if self._init_pid:
                        os.kill(self._init_pid, signal.SIGKILL)  # ends the node's pid ns
                _stop(nspawn, signal.SIGKILL, 5.0)
        if self._init_pid:
            with contextlib.suppress(psutil.Error):
                init = psutil.Process(self._init_pid)
                init.kill()
                init.wait(5.0)
        for cgroup in self._cgroups:
            _kill_cgroup(cgroup)
            if not _remove_cgroup(cgroup):
                problems.append(f"cgroup {cgroup} could not be removed")
        # what nspawn removes itself on a clean exit, not when killed
        with contextlib.suppress(FileNotFoundError):
            if self._nspawn_lock is not None:
                self._nspawn_lock.unlink()
        try:
            remove_tree(NSPAWN_RUN / "propagate" / self.name)
        except (OSError, NodeError) as exc:
            problems.append(str(exc))
        if self._overlay:
            umount = subprocess.run(["umount", str(self.root)], capture_output=True, text=True,
                                    check=False)  # fmt: skip
            if umount.returncode != 0:
                subprocess.run(["umount", "--lazy", str(self.root)], check=False)
        try:
            for part in ("root", "upper", "work"):
                remove_tree(self.workdir / part)
        except (OSError, NodeError) as exc:
            problems.append(str(exc))
        return problems


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _kill_cgroup(directory: Path) -> None:
    """SIGKILL whatever is still in ``directory`` (only nspawn's tree ever is)."""
    deadline = time.monotonic() + 5.0
    while (pids := _cgroup_pids(directory)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(_POLL)
