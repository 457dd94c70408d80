"""A TKE-like node with a real systemd, booted with ``systemd-nspawn``, for the agent's tests.

Root file system: ``debootstrap --variant=minbase`` of Debian bookworm with systemd, dbus,
python3 and the agent's runtime modules as Debian packages (``python3-yaml``,
``python3-psutil``, ``python3-dnspython``, ``python3-prometheus-client``), so the agent
runs *inside* the node with the node's own interpreter and no site-packages of this
machine. Built once, into a temporary directory renamed into place when complete, under
``$NODELOCALDNS_AGENT_TEST_CACHE`` (default ``/var/cache/nodelocaldns-agent-tests``) as
``rootfs-<hash of the debootstrap arguments>``; an interrupted build is never reused.

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
* the repository's ``agent/`` bind-mounted read-only at ``/opt/nodelocaldns-agent/agent``.

In the node's network namespace (only loopback otherwise): ``nodelocaldns`` (``dummy``,
else ``ifb``) holding 169.254.20.10/32 and 192.0.2.1/32, ``kube-ipvs0`` holding
10.96.0.10/32, and this machine's ``dnsmasq`` (entered with ``nsenter --net`` only)
answering ``kubernetes.default.svc.cluster.local A 10.96.0.1`` on both addresses. Nothing
is sent from this machine's own network namespace.

How the agent runs (:meth:`NspawnNode.agent`): ``nsenter --target <node PID 1> --mount
--uts --ipc --net --pid -- /usr/bin/python3 -m agent ... --host-root /``. It thus sees the
node's processes, interfaces and files exactly as a ``hostPID`` pod with the host's ``/``
would, and the *production default* restart command ``nsenter --target 1 --mount --uts
--ipc --net --pid -- systemctl restart kubelet``, unchanged, reaches the node's systemd
(PID 1 of the pid namespace the agent runs in). No flag of the agent is overridden except
where a test says so.

Cleanup (:meth:`NspawnNode.close`, also after failures and at interpreter exit): dnsmasq
is stopped, nspawn gets SIGTERM (the node powers off), then SIGKILL for nspawn *and* the
node's PID 1 (killing nspawn alone leaves the node running); then every process left in
the node's own cgroup is killed, the cgroup (nspawn's ``payload``/``supervisor`` are
created inside it, never at the root of the hierarchy) is removed, the overlay unmounted
and the work directory deleted. nspawn runs under ``setpriv --pdeathsig TERM``, so a test
process killed outright still powers its nodes off; stale empty cgroups of such runs are
swept when the next node starts.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

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
#: prefix of machine names, cgroups and work directories of the nodes
NAME_PREFIX = "nla-test-"
BOOT_TIMEOUT = 20.0
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_POLL = 0.02

#: commands this machine needs for the nodes (besides debootstrap for the first build)
REQUIRED_TOOLS = ("systemd-nspawn", "nsenter", "setpriv", "ip", "ss", "dnsmasq", "mount")

KUBELET_STANDIN = f'''\
#!/usr/bin/python3
"""kubelet stand-in (tests/systemd_node.py): logs each start, serves /healthz."""
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
            fields = dict(
                (key.strip().lower(), value.strip())
                for key, sep, value in (line.partition(":") for line in stanza.splitlines())
                if sep and not key.lstrip().startswith("#")
            )
            if SUITE in fields.get("suites", "").split() and "deb" in fields.get("types", ""):
                return fields.get("uris", "").split()[0]
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
            elif fstype == "cgroup" and "name=systemd" in options.split(","):
                if "name=systemd" in own:
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


def sweep_stale_cgroups() -> None:
    """Remove empty node cgroups left by a test process that was killed outright."""
    for hierarchy in nspawn_hierarchies():
        base = hierarchy.path("")
        for directory in base.glob(NAME_PREFIX + "*"):
            if not _cgroup_pids(directory):
                _remove_cgroup(directory)


# --------------------------------------------------------------------- the node

