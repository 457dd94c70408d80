"""A TKE-like node with a real systemd, booted with ``systemd-nspawn``, for the agent's tests.

Root file system: ``debootstrap --variant=minbase`` of Debian bookworm with systemd, dbus,
python3 and the agent's runtime modules as Debian packages (``python3-yaml``,
``python3-psutil``, ``python3-dnspython``, ``python3-prometheus-client``) and
``dnsmasq-base``, so the agent runs *inside* the node with the node's own interpreter
and no site-packages of this machine. Built once, into a temporary directory renamed into
place when complete, under ``$NODELOCALDNS_AGENT_TEST_CACHE`` (default
``/var/cache/nodelocaldns-agent-tests``) as ``rootfs-<hash of the debootstrap
arguments>``; an interrupted build is never reused.

Each :class:`NspawnNode` mounts an overlay (the cached root file system read-only below, a
fresh upper directory above; ``cp -a`` when overlayfs is unavailable), adds the kubelet
pieces, and boots it with ``systemd-nspawn -b --register=no --keep-unit
--private-network --console=passive``:

* ``/etc/systemd/system/kubelet.service``: TKE's unit (``tests/data/kubelet/``) with
  ``ExecStart=/usr/local/bin/kubelet ${ANONYMOUS_AUTH} ... ${CLUSTER_DNS} ...`` and
  ``EnvironmentFile=-/etc/kubernetes/kubelet``, enabled in ``multi-user.target.wants``;
* ``/etc/kubernetes/kubelet``: TKE's env file, ``CLUSTER_DNS="--cluster-dns=10.96.0.10"``;
* ``/usr/local/bin/kubelet``: a python3 stand-in (comm ``kubelet``) that appends its pid
  and argv as one JSON line per start to ``/var/log/kubelet-args.log``, serves ``ok`` on
  ``127.0.0.1:10248/healthz`` in the node's private network, and exits 1 when started
  with ``--cluster-dns=192.0.2.1`` (:data:`BAD_DNS`, the "bad value" of rollback tests);
* the repository's ``nodelocaldns_agent/`` bind-mounted read-only at
  ``/opt/nodelocaldns-agent/nodelocaldns_agent``.

In the node's network namespace (only loopback otherwise): ``nodelocaldns`` (``dummy``,
else ``ifb``) holding 169.254.20.10/32 and 192.0.2.1/32, ``kube-ipvs0`` holding
10.96.0.10/32, and a real ``dnsmasq`` (Debian's ``dnsmasq-base`` in the node, run by the
node's systemd as ``node-local-dns.service``) answering
``kubernetes.default.svc.cluster.local A 10.96.0.1`` on both addresses. Nothing is sent
from this machine's own network namespace.

How the agent runs (:meth:`NspawnNode.agent`): ``nsenter --target <node PID 1> --mount --uts --ipc
--net --pid -- /usr/bin/python3 -m nodelocaldns_agent ... --host-root /``. It thus sees the node's
processes, interfaces and files exactly as a ``hostPID`` pod with the host's ``/`` would, and the
*production default* restart command ``nsenter --target 1 --mount --uts
--ipc --net --pid -- systemctl restart kubelet``, unchanged, reaches the node's systemd
(PID 1 of the pid namespace the agent runs in). No flag of the agent is overridden except
where a test says so.

Cleanup (:meth:`NspawnNode.close`, also after failures and at interpreter exit): agent
runs interrupted by an exception lose their ``nsenter`` wrapper (see
:func:`_kill_wrapper`), nspawn gets SIGTERM (the node powers off), then SIGKILL for nspawn
*and* the node's PID 1 (killing nspawn alone leaves the node running); then every process
left in the node's own cgroup is killed, the cgroup (nspawn's ``payload``/``supervisor``
are created inside it, never at the root of the hierarchy) is removed, the overlay
unmounted and the work directory deleted. The node's ``DefaultTimeoutStopSec=3s`` bounds
its power-off (processes entered with nsenter are not systemd's children; its final kill
would otherwise wait 90 s for them). nspawn runs under ``setpriv --pdeathsig TERM``, so a
test process killed outright still powers its nodes off; whatever such a run leaves
(a hung node, cgroups, overlay mounts) is swept when the next node starts.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

log = logging.getLogger(__name__)
T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "tests" / "data" / "kubelet"
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

LOCAL_DNS = "169.254.20.10"
CLUSTER_DNS = "10.96.0.10"
#: a cluster DNS the kubelet stand-in refuses to start with (TEST-NET-1)
BAD_DNS = "192.0.2.1"
KUBERNETES_NAME = "kubernetes.default.svc.cluster.local"
KUBERNETES_IP = "10.96.0.1"
HEALTHZ_PORT = 10248
ENV_FILE = "/etc/kubernetes/kubelet"
UNIT_FILE = "/etc/systemd/system/kubelet.service"
ARGS_LOG = "/var/log/kubelet-args.log"
AGENT_DIR = "/opt/nodelocaldns-agent"
#: prefix of the nodes' machine names and cgroups
NAME_PREFIX = "nla-test-"
#: file next to a node's root naming the test process that owns it ("PID CREATE_TIME")
OWNER_FILE = "owner"
BOOT_TIMEOUT = 20.0
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
#: the node's DefaultTimeoutStopSec=, which bounds its power-off
STOP_GRACE = 3.0
#: systemd-nspawn's runtime directory on this machine
NSPAWN_RUN = Path("/run/systemd/nspawn")
#: seconds a node cgroup must exist before a sweep may take it as stale
CGROUP_GRACE = 10.0
_POLL = 0.02

#: commands this machine needs for the nodes (besides debootstrap for the first build)
REQUIRED_TOOLS = ("systemd-nspawn", "nsenter", "setpriv", "ip", "ss", "mount", "umount")

KUBELET_STANDIN = f'''\
#!/usr/bin/python3
"""kubelet stand-in (testing/systemd_node.py): logs each start, serves /healthz."""
import http.server
import json
import os
import sys
import time

args = sys.argv[1:]
with open("{ARGS_LOG}", "a", encoding="utf-8") as log:
    log.write(json.dumps({{"pid": os.getpid(), "time": time.time(), "argv": args}}) + "\\n")
if "--cluster-dns={BAD_DNS}" in args:
    print("kubelet: refusing to start with --cluster-dns={BAD_DNS}", file=sys.stderr)
    sys.exit(1)


class Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz"
        body = b"ok" if ok else b"404 page not found\\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", {HEALTHZ_PORT}), Healthz).serve_forever()
'''


#: the node-local DNS: a unit of the node's systemd (started once its addresses exist), so
#: it lives and dies with the node
DNS_UNIT = "node-local-dns.service"
DNS_UNIT_TEXT = f"""\
[Unit]
Description=node-local DNS stand-in (dnsmasq) for testing/systemd_node.py

[Service]
ExecStart=/usr/sbin/dnsmasq --conf-file=/dev/null --keep-in-foreground --no-resolv \\
    --no-hosts --bind-interfaces --listen-address={LOCAL_DNS} --listen-address={BAD_DNS} \\
    --port=53 --user=root --pid-file= --address=/{KUBERNETES_NAME}/{KUBERNETES_IP}
"""


class NodeError(RuntimeError):
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


def _kill_stale_node(name: str) -> None:
    """SIGKILL a stale node: the nsenter wrappers into it first (a live one would keep its
    pid namespace from ending, see :func:`_kill_wrapper`), then its cgroup's processes."""
    hierarchies = nspawn_hierarchies()
    pids = {pid for h in hierarchies for pid in _cgroup_pids(h.path(name))}
    for proc in psutil.process_iter(["name", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if (
            proc.info["name"] == "nsenter"
            and argv[1:2] == ["--target"]
            and argv[2:3]
            and argv[2].isdigit()
            and int(argv[2]) in pids
        ):
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


#: nodes not closed yet (closed at interpreter exit at the latest)
_OPEN: list[NspawnNode] = []


def close_all() -> None:
    for node in reversed(list(_OPEN)):
        with contextlib.suppress(Exception):
            node.close()


atexit.register(close_all)


@dataclass(frozen=True)
class AgentRun:
    """One run of the agent's CLI inside the node."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"not JSON: {exc}\n{self}") from exc

    def __str__(self) -> str:
        return (
            f"agent {' '.join(self.argv)} -> exit {self.returncode} in {self.seconds:.2f}s\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class NspawnNode:
    """One booted node (see the module docstring). ``start()`` it, ``close()`` it."""

    def __init__(self, workdir: Path, rootfs: Path, *, name: str = "") -> None:
        self.workdir = workdir
        self.rootfs = rootfs
        self.name = name or NAME_PREFIX + uuid.uuid4().hex[:12]
        #: where the node's / is mounted on this machine
        self.root = workdir / "root"
        #: bytes of /etc/kubernetes/kubelet as the node was set up
        self.original_env_file = b""
        #: seconds per start-up step: root, boot, network, kubelet
        self.timings: dict[str, float] = {}
        self._init: psutil.Process | None = None
        self._nspawn: subprocess.Popen[bytes] | None = None
        #: ``nsenter --pid`` wrappers of agent runs still going
        self._running: set[subprocess.Popen[str]] = set()
        self._overlay = False
        self._cgroups: list[Path] = []
        #: nspawn's lock on the root directory (``inode-DEV:INO``)
        self._nspawn_lock: Path | None = None
        self._closed = False

    def __enter__(self) -> NspawnNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- start

    def start(self) -> NspawnNode:
        _OPEN.append(self)
        try:
            step = time.monotonic()
            for name, action in (
                ("root", self._make_root),
                ("boot", self._boot),
                ("network", self._network),
                ("kubelet", self.wait_kubelet),
            ):
                action()
                now = time.monotonic()
                self.timings[name] = now - step
                step = now
        except BaseException as exc:
            try:
                self.close()
            except NodeError as cleanup:
                exc.add_note(f"and cleaning up: {cleanup}")
            raise
        log.info("node %s up: %s", self.name, self.timings)
        return self

    def _make_root(self) -> None:
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
        self._install_kubelet()

    def _put(self, node_path: str, data: bytes, mode: int = 0o644) -> None:
        real = self.root / node_path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(data)
        real.chmod(mode)

    def _install_kubelet(self) -> None:
        """TKE's kubelet unit and env file (tests/data/kubelet), the stand-in binary."""
        self._put("/usr/local/bin/kubelet", KUBELET_STANDIN.encode(), 0o755)
        unit = (DATA_DIR / "tke-kubelet.service").read_text(encoding="utf-8")
        unit = unit.replace("ExecStart=/usr/bin/kubelet ", "ExecStart=/usr/local/bin/kubelet ")
        # no container runtime in the node
        unit = "".join(line for line in unit.splitlines(True) if "containerd" not in line)
        if "ExecStart=/usr/local/bin/kubelet ${" not in unit:
            raise NodeError(f"unexpected {DATA_DIR / 'tke-kubelet.service'}:\n{unit}")
        self._put(UNIT_FILE, unit.encode())
        wants = self.root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "kubelet.service").symlink_to(UNIT_FILE)
        env = (DATA_DIR / "tke-kubelet.env").read_bytes()
        if f'CLUSTER_DNS="--cluster-dns={CLUSTER_DNS}"'.encode() not in env:
            raise NodeError(f"unexpected {DATA_DIR / 'tke-kubelet.env'}")
        self._put(ENV_FILE, env)
        self.original_env_file = env
        (self.root / AGENT_DIR.lstrip("/") / "nodelocaldns_agent").mkdir(
            parents=True, exist_ok=True
        )
        self._put(f"/etc/systemd/system/{DNS_UNIT}", DNS_UNIT_TEXT.encode())
        # processes systemd did not start (the agent, entered with nsenter) delay the final
        # kill of a powering-off node by this much, not by 90 s
        self._put(
            "/etc/systemd/system.conf.d/nodelocaldns-agent-tests.conf",
            f"[Manager]\nDefaultTimeoutStopSec={STOP_GRACE:g}s\n".encode(),
        )

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
            f"--bind-ro={REPO_ROOT / 'nodelocaldns_agent'}:{AGENT_DIR}/nodelocaldns_agent",
        ]  # fmt: skip
        # enter the node's cgroups, then (pdeathsig TERM: powered off if we die) nspawn
        enter = 'for procs in $NODE_CGROUPS; do echo $$ > "$procs" || exit 125; done; exec "$@"'
        argv = ["sh", "-c", enter, "sh", "setpriv", "--pdeathsig", "TERM", "--", *nspawn]
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NODE_CGROUPS": " ".join(str(c / "cgroup.procs") for c in self._cgroups),
        }
        with open(self.workdir / "nspawn.log", "wb") as out:
            self._nspawn = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        self._init = self._wait_for("the node's systemd", self._find_init, BOOT_TIMEOUT)
        self._wait_for("the node to boot", self._booted, BOOT_TIMEOUT)

    def _find_init(self) -> psutil.Process | None:
        assert self._nspawn is not None
        if self._nspawn.poll() is not None:
            raise NodeError(
                f"systemd-nspawn exited {self._nspawn.returncode}:\n{self.nspawn_log()}"
            )
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self._nspawn.pid).children():
                if child.name() == "systemd":
                    return child
        return None

    def _booted(self) -> bool:
        state = self.systemctl("is-system-running", check=False).stdout.strip()
        if state == "degraded":
            failed = self.systemctl("--failed", "--no-legend", check=False).stdout
            log.warning("node %s is degraded: %s", self.name, failed.strip())
        return state in ("running", "degraded")

    def _network(self) -> None:
        """``nodelocaldns`` and ``kube-ipvs0`` links, dnsmasq on the local DNS addresses."""
        links = (
            ("nodelocaldns", (LOCAL_DNS, BAD_DNS), True),
            ("kube-ipvs0", (CLUSTER_DNS,), False),
        )
        for link, addresses, up in links:
            added = self.run(["ip", "link", "add", link, "type", "dummy"], ns=("net",), check=False)
            if added.returncode != 0:  # no dummy driver here: ifb looks the same to the agent
                self.run(["ip", "link", "add", link, "type", "ifb"], ns=("net",))
            for address in addresses:
                self.run(["ip", "addr", "add", f"{address}/32", "dev", link], ns=("net",))
            if up:  # kube-proxy leaves kube-ipvs0 down
                self.run(["ip", "link", "set", link, "up"], ns=("net",))
        self.systemctl("start", DNS_UNIT)
        for address in (LOCAL_DNS, BAD_DNS):
            self._wait_for(
                f"dnsmasq on {address}:53", functools.partial(self.listening, "udp", address, 53),
                READY_TIMEOUT,
            )  # fmt: skip

    def wait_kubelet(self, timeout: float = READY_TIMEOUT) -> int:
        """Wait until systemd runs kubelet and it serves /healthz; return its MainPID."""

        def ready() -> int | None:
            unit = self.unit("ActiveState", "MainPID")
            pid = int(unit["MainPID"])
            if unit["ActiveState"] != "active" or not pid:
                return None
            if not any(s["pid"] == pid for s in self.kubelet_starts()):
                return None
            return pid if self.listening("tcp", "127.0.0.1", HEALTHZ_PORT) else None

        return self._wait_for("kubelet to be active and listening", ready, timeout)

    def _wait_for(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Poll ``probe`` until it returns something true; return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise NodeError(
                    f"node {self.name}: timed out after {timeout:g}s waiting for {what}\n"
                    f"{self.diagnostics()}"
                )
            time.sleep(_POLL)

    # ---------------------------------------------------------------- use

    @property
    def init_pid(self) -> int:
        """Host pid of the node's systemd (PID 1 inside)."""
        if self._init is None:
            raise NodeError(f"node {self.name} is not running")
        return self._init.pid

    def nsenter(self, *namespaces: str) -> list[str]:
        return ["nsenter", "--target", str(self.init_pid), *(f"--{n}" for n in namespaces), "--"]

    def run(
        self,
        argv: Sequence[str],
        *,
        ns: Sequence[str] = ("mount",),
        timeout: float = 30.0,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the node's namespaces ``ns`` (the node's binaries with mount;
        the node's /proc shows its pid namespace). Without ``pid``, so nsenter does not
        fork: see :func:`_kill_wrapper` for why that matters."""
        proc = subprocess.run(
            [*self.nsenter(*ns), *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env or {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        if check and proc.returncode != 0:
            raise NodeError(
                f"node {self.name}: {' '.join(argv)} exited {proc.returncode}:\n"
                f"{proc.stdout}{proc.stderr}"
            )
        return proc

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # in the node's pid namespace too: the node's manager drops a client whose pid it
        # cannot see ("Transport endpoint is not connected" with --mount alone)
        return self.run(["systemctl", *args], ns=("mount", "pid"), check=check)

    def unit(self, *props: str, unit: str = "kubelet.service") -> dict[str, str]:
        """``systemctl show UNIT -p ...`` of the node's systemd."""
        args = [arg for prop in props for arg in ("-p", prop)]
        out = self.systemctl("show", unit, *args).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cmdline(self, pid: int) -> list[str]:
        """argv of process ``pid`` of the node (a pid as the node sees it)."""
        raw = self.run(["cat", f"/proc/{pid}/cmdline"]).stdout
        return raw.rstrip("\0").split("\0") if raw else []

    def path(self, node_path: str) -> Path:
        """Where ``node_path`` of the running node is, seen from here."""
        return Path(f"/proc/{self.init_pid}/root") / node_path.lstrip("/")

    def read_bytes(self, node_path: str) -> bytes:
        return self.path(node_path).read_bytes()

    def kubelet_starts(self) -> list[dict[str, Any]]:
        """One entry per start of the kubelet stand-in: pid (in the node), time, argv."""
        try:
            text = self.path(ARGS_LOG).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def listening(self, proto: str, address: str, port: int) -> bool:
        flag = "-lnu" if proto == "udp" else "-lnt"
        out = self.run(["ss", "-H", flag], ns=("net",)).stdout
        return any(f"{address}:{port}" in line.split() for line in out.splitlines())

    def agent(self, *args: str, timeout: float = 120.0) -> AgentRun:
        """``python3 -m nodelocaldns_agent ARGS`` inside the node: its pid, mount, net, uts and ipc
        namespaces, the node's python3 and Debian packages, the repository's ``agent``
        package (bind-mounted read-only), a clean environment."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": AGENT_DIR,
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
        }
        # the wrapper dies with this process (see _kill_wrapper for why it must not outlive it)
        argv = ["setpriv", "--pdeathsig", "KILL", "--",
                *self.nsenter("mount", "uts", "ipc", "net", "pid"),
                "/usr/bin/python3", "-m", "nodelocaldns_agent", *args]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self._running.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            _kill_wrapper(proc)
            raise
        finally:
            self._running.discard(proc)
        return AgentRun(tuple(args), proc.returncode, out, err, time.monotonic() - start)

    def nspawn_log(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "nspawn.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def diagnostics(self) -> str:
        """kubelet's unit status and journal, for assertion messages."""
        parts = [f"--- nspawn.log\n{self.nspawn_log()}"]
        if self._init is not None and self._init.is_running():
            for argv in (
                ["systemctl", "status", "--no-pager", "kubelet"],
                ["journalctl", "--no-pager", "-n", "30", "-u", "kubelet"],
            ):
                with contextlib.suppress(Exception):
                    proc = self.run(argv, ns=("mount", "pid"), check=False, timeout=10)
                    parts.append(f"--- {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)

    # ---------------------------------------------------------------- stop

    def close(self) -> None:
        """Stop everything the node started and delete it; raise if something is left."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError):
            _OPEN.remove(self)
        problems: list[str] = []
        for wrapper in list(self._running):  # an agent run interrupted by an exception
            _kill_wrapper(wrapper)
        if self._nspawn is not None and self._nspawn.poll() is None:
            self._nspawn.send_signal(signal.SIGTERM)  # the node powers off
            try:
                self._nspawn.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"nspawn ignored SIGTERM for {STOP_TIMEOUT:g}s; killed")
                with contextlib.suppress(psutil.Error):
                    if self._init is not None:
                        self._init.kill()  # ends the node's whole pid namespace
                _stop(self._nspawn, signal.SIGKILL, 5.0)
        if self._init is not None:
            with contextlib.suppress(psutil.Error):
                self._init.kill()
                self._init.wait(5.0)
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
        if problems:
            raise NodeError(f"node {self.name}: " + "; ".join(problems))


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _kill_wrapper(proc: subprocess.Popen[str]) -> None:
    """SIGKILL an ``nsenter --pid`` wrapper; its child in the node is then reparented to
    this machine's init (the wrapper's reaper), which reaps it when the node kills it.
    (A *live* wrapper would deadlock the node's power-off: systemd-shutdown SIGSTOPs every
    process of the node, nsenter then stops itself to mirror its child, nobody continues
    it to reap the child, and the node's pid namespace never ends.)"""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _kill_cgroup(directory: Path) -> None:
    """SIGKILL whatever is still in ``directory`` (only nspawn's tree ever is)."""
    deadline = time.monotonic() + 5.0
    while (pids := _cgroup_pids(directory)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(_POLL)
