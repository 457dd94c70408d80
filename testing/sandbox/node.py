"""SandboxNode: a fake Kubernetes node on this machine, in namespaces of its own.

The one sandbox node type of the harness: the tests, the demo and the benchmarks use it
directly, the crash harness (``bench/faults.py``) configures it, and the node with a real
systemd (:class:`testing.systemd_node.NspawnNode`) replaces only how it boots and stops.

One ``unshare --pid --mount --uts --ipc --net`` namespace set per node. Its init (PID 1
of the node) is a bash loop that reaps orphans, so restarted kubelets leave no zombies.
Inside: ``lo``, ``nodelocaldns`` (169.254.20.10/32) and ``kube-ipvs0`` (10.96.0.10/32)
links, the local DNS on 169.254.20.10:53, a kube-proxy stand-in on 127.0.0.1:10249, a
kubelet stand-in on 127.0.0.1:10248 started through a recording ``systemctl`` that is
bind-mounted over ``/usr/bin/systemctl`` in the node's mount namespace only. The node's
network namespace has no route off the node, so nothing probed inside can leave it.

The local DNS (``local_dns_server``):

- ``node-cache`` (the default): the real node-cache (:mod:`testing.sandbox.node_cache`
  finds it) with the Corefile and arguments of the chart's render, serving 169.254.20.10
  (DNS, ``/health`` on the chart's health port, metrics), setting up its iptables rules in
  the node; behind it a dnsmasq on ``kube-dns-up`` (10.96.0.53/32) standing in for the
  cluster's CoreDNS (the ``kube-dns-upstream`` Service): ``dns_records``, NXDOMAIN for other
  ``cluster.local`` names. Stopping it (``set_local_dns("down")``) is a SIGTERM, as kubelet
  stops a pod; when node-cache's teardown removed ``nodelocaldns`` (no ``-skipteardown``),
  the node puts the link back, since ``down`` means "bound, nothing answers".
- ``dnsmasq``: dnsmasq itself on the local addresses (no upstream). Kept where node-cache
  cannot be the local DNS: the dual-stack nodes (``tests/test_dual_stack_sandbox.py``: one
  dnsmasq answers on both families, node-cache serves one family per process and the
  chart's IPv6 process is a second container) and the nodes with a real systemd
  (:class:`testing.systemd_node.NspawnNode`: the node's own systemd runs dnsmasq from the
  node's root filesystem, and its ``nodelocaldns`` also holds ``BAD_DNS``).

What a subclass may replace (the hooks): :meth:`~SandboxNode._install_standins` (files
besides the layout), :meth:`~SandboxNode._boot` and :meth:`~SandboxNode._shutdown`,
:meth:`~SandboxNode._start_dns_server` and :meth:`~SandboxNode._stop_dns_server`,
:meth:`~SandboxNode.python_env` with :attr:`~SandboxNode.python_binary` (the Python that
runs the agent in the node), :attr:`~SandboxNode.host_root` and
:meth:`~SandboxNode.diagnostics`. Everything else (layout, links, local DNS, waiting,
running commands and the agent, the kubelet stand-in's reports, cleanup) is shared.

Cleanup: :meth:`SandboxNode.close` (also on ``with`` exit and at interpreter exit for
nodes still open) SIGKILLs ``unshare``, whose ``--kill-child`` ends the node's init and
with it every process in the node's pid namespace; mounts and links go with the
namespaces. ``unshare`` runs under ``setpriv --pdeathsig KILL``, so even a test process
killed outright takes its nodes with it (PR_SET_PDEATHSIG fires when the *thread* that
started the node exits: start nodes from a thread that outlives them).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import psutil

from testing.sandbox.constants import (
    BAD_DNS,
    CLUSTER_DNS,
    CLUSTER_DOMAIN,
    IPVS_LINK,
    JOURNAL,
    KUBERNETES_IP,
    KUBERNETES_NAME,
    LOCAL_DNS,
    LOCAL_DNS_LINK,
    PROXY_PORT,
    UPSTREAM_DNS,
    UPSTREAM_DNS_LINK,
)
from testing.sandbox.layouts import DEFAULT_CLUSTER_DNS, Layout, Quirks, write_layout
from testing.sandbox.node_cache import (
    ChartNodeCache,
    NodeCacheMissing,
    chart_node_cache,
    find_binary,
    node_cache_launch,
    require_iptables,
)
from testing.sandbox.nodefiles import NODE_DIR_ENV, NodeConfig, NodeFiles
from testing.sandbox.systemctl_stub import QUIET_ENV, parse_argv

__all__ = [
    "REPO_ROOT",
    "DnsResult",
    "NodeProcess",
    "RunResult",
    "SandboxError",
    "SandboxNode",
    "close_all",
    "dnsmasq_argv",
    "python_env",
]

T = TypeVar("T")
SANDBOX_DIR = Path(__file__).resolve().parent
#: The repository root (holds ``nodelocaldns_agent`` and ``testing``); on PYTHONPATH of
#: everything run in a node.
REPO_ROOT = SANDBOX_DIR.parents[1]
SYSTEMCTL = "/usr/bin/systemctl"
PROXY_MODES = ("ipvs", "iptables")
LOCAL_DNS_STATES = ("up", "down", "unbound")
LOCAL_DNS_SERVERS = ("node-cache", "dnsmasq")
#: Seconds to wait for a daemon of the node to listen.
READY_TIMEOUT = 10.0
_POLL = 0.005


class SandboxError(RuntimeError):
    """The sandbox could not be set up, or did not clean up completely."""


@dataclass(frozen=True)
class DnsResult:
    """One query made from inside the node."""

    addresses: tuple[str, ...]
    #: seconds from sending the query to the answer, measured inside the node
    latency: float | None
    #: "" on success, else ``timeout``, ``refused``, ``rcode ...`` or the error text
    error: str


class RunResult(subprocess.CompletedProcess[str]):
    """A command run to completion in a node (e.g. the agent): its output and duration."""

    def __init__(
        self, args: Sequence[str], returncode: int, stdout: str, stderr: str, seconds: float
    ) -> None:
        super().__init__(list(args), returncode, stdout, stderr)
        self.seconds = seconds

    def json(self) -> Any:
        """stdout parsed as JSON (an assertion error naming the run when it is not)."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"not JSON: {exc}\n{self}") from exc

    def __str__(self) -> str:
        return (
            f"{shlex.join(self.args)} -> exit {self.returncode} in {self.seconds:.2f}s\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


@functools.cache
def link_type() -> str:
    """``dummy`` when the kernel has it, else ``ifb`` (checked in a throwaway netns)."""
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "add", "probe0", "type", "dummy"],
        capture_output=True,
        check=False,
    )
    return "dummy" if probe.returncode == 0 else "ifb"


def dnsmasq_argv(
    addresses: Sequence[str],
    records: Mapping[str, str],
    binary: str = "dnsmasq",
    local_domains: Sequence[str] = (),
) -> list[str]:
    """A dnsmasq serving ``records`` (name -> IPv4) on ``addresses``:53, in the foreground,
    nothing read from the machine (no resolv.conf, no hosts file), log on stderr; NXDOMAIN
    for other names under ``local_domains`` (a cluster DNS does that for its domain, and a
    glibc lookup through a search list goes on to the next name only then)."""
    return [
        binary,
        "--conf-file=/dev/null",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        *(f"--listen-address={address}" for address in addresses),
        "--port=53",
        "--user=root",
        "--pid-file=",
        "--log-facility=-",
        *(f"--address=/{name}/{ip}" for name, ip in records.items()),
        *(f"--local=/{domain}/" for domain in local_domains),
    ]


def cluster_dns_argv(
    address: str, records: Mapping[str, str], cluster_domain: str, binary: str = "dnsmasq"
) -> list[str]:
    """A dnsmasq on ``address``:53 answering as the cluster's CoreDNS does: authoritative
    for ``cluster_domain`` and for each other record's name, A records with a TTL of 5 s
    and NXDOMAIN with the zone's SOA whose minimum is 5 s (the kubernetes plugin's default
    ``ttl``, used for both: coredns plugin/kubernetes), so node-cache caches positive and
    negative answers as it would CoreDNS's; every query logged (``query[``/``auth[``)."""
    zones = {cluster_domain, *(n for n in records if not n.endswith("." + cluster_domain))}
    return [
        *dnsmasq_argv((address,), {}, binary),
        f"--auth-server=ns.{cluster_domain},{address}",
        *(f"--auth-zone={zone}" for zone in sorted(zones)),
        *(f"--host-record={name},{ip}" for name, ip in records.items()),
        "--auth-ttl=5",
        "--log-queries",
    ]


def _socket_id(address: str, port: int) -> str:
    """``address:port`` as /proc/net/{tcp,udp}[6] writes it: each 32-bit word of the
    address in host (little-endian) order, in hex."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    packed = socket.inet_pton(family, address)
    words = (packed[i : i + 4] for i in range(0, len(packed), 4))
    return "".join(f"{int.from_bytes(word, 'little'):08X}" for word in words) + f":{port:04X}"


def python_path() -> str:
    """PYTHONPATH reproducing this interpreter's imports, for ``python -S`` stand-ins."""
    entries = [str(REPO_ROOT)] + [p for p in sys.path if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(entries))


def python_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH (for a Python
    subprocess that imports ``nodelocaldns_agent`` and ``testing``), plus ``env``."""
    inherited = os.environ.get("PYTHONPATH")
    path = f"{REPO_ROOT}{os.pathsep}{inherited}" if inherited else str(REPO_ROOT)
    return {**os.environ, "PYTHONPATH": path, **(env or {})}


class NodeProcess(subprocess.Popen[str]):
    """A process started in the node by ``nsenter``, which forks to enter the pid namespace.

    Signals (``terminate()``, ``kill()``, ``send_signal()``) go to the process inside the
    node, not to the ``nsenter`` that waits for it and passes on its exit status.
    """

    def inner_pid(self) -> int | None:
        """Host pid of the process inside the node (None before the fork or after exit)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.pid).children()
            return children[0].pid if children else None
        return None

    def send_signal(self, sig: int) -> None:
        deadline = time.monotonic() + 1.0
        while self.poll() is None:
            inner = self.inner_pid()
            if inner is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(inner, sig)
                return
            if time.monotonic() > deadline:
                super().send_signal(sig)
                return
            time.sleep(_POLL)

    def end(self) -> None:
        """SIGKILL the process inside the node, then (should it still wait) the wrapper;
        reaped. A live ``nsenter --pid`` wrapper must not outlive its node's shutdown (see
        :meth:`testing.systemd_node.NspawnNode._shutdown`)."""
        self.kill()
        try:
            self.wait(timeout=5)
        except subprocess.TimeoutExpired:
            subprocess.Popen.kill(self)
            self.wait()


_LIVE: dict[int, SandboxNode] = {}


def close_all() -> None:
    """Close every node still open, the newest first (registered with :mod:`atexit`)."""
    for node in reversed(list(_LIVE.values())):
        try:
            node.close()
        except Exception as exc:  # report every node, then go on
            print(f"sandbox: closing {node.workdir}: {exc}", file=sys.stderr)


atexit.register(close_all)


def _close_pipes(proc: subprocess.Popen[Any]) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (a zombie counts as exited); the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(_POLL)


class SandboxNode:
    """A fake Kubernetes node: ``with SandboxNode(workdir, **options) as node: ...``.

    Options:
      name: hostname of the node.
      layout: host-root layout written to ``<workdir>/root`` (a key of
        :data:`testing.sandbox.layouts.LAYOUTS`), or None when the caller prepared the root.
      cluster_dns, cni, **quirks: passed to :func:`testing.sandbox.layouts.write_layout`
        (quirks: symlink, crlf, no_trailing_newline, non_utf8).
      proxy_mode: ``ipvs`` (kube-ipvs0 with 10.96.0.10/32, left down) or ``iptables``.
      local_dns: ``up`` (the local addresses bound, dnsmasq answering), ``down`` (bound, no
        server) or ``unbound`` (no nodelocaldns link).
      local_addresses: what the nodelocaldns link holds and the local DNS listens on.
      local_dns_server: ``node-cache`` (the real one, configured by the chart) or
        ``dnsmasq`` (see the module docstring for which nodes use which).
      kube_proxy: run the kube-proxy stand-in (``/proxyMode``).
      kubelet: start kubelet at boot (through ``systemctl``) and wait for its healthz.
      healthz_delay: seconds every kubelet stand-in waits before serving /healthz.
      refuse_cluster_dns: cluster DNS values every kubelet stand-in refuses to start with
        (a kubelet that does not come back).
      dns_records: name -> IPv4 the local DNS answers (default: kubernetes.default ->
        10.96.0.1); with node-cache, through its upstream stand-in.
      node_cache_values: helm arguments for the chart's render node-cache runs with
        (e.g. ``("--set", "nodeLocalDNS.skipTeardown=false")``).
    """

    #: the Python that runs in the node (the agent, probes); :meth:`python_env` goes with it
    python_binary: str = sys.executable
    #: its working directory in the node
    python_cwd: Path = REPO_ROOT
    #: the environment of commands run in the node when the caller gives none (None: ours)
    command_env: Mapping[str, str] | None = None

    def __init__(
        self,
        workdir: Path | str,
        *,
        name: str = "sandbox-node",
        layout: str | None = "tke",
        cluster_dns: str = DEFAULT_CLUSTER_DNS,
        cni: str | None = "",
        proxy_mode: str = "ipvs",
        local_dns: str = "up",
        local_addresses: Sequence[str] = (LOCAL_DNS,),
        local_dns_server: str = "node-cache",
        kube_proxy: bool = True,
        kubelet: bool = True,
        healthz_delay: float = 0.0,
        refuse_cluster_dns: Sequence[str] = (BAD_DNS,),
        dns_records: Mapping[str, str] | None = None,
        node_cache_values: Sequence[str] = (),
        **quirks: bool,
    ) -> None:
        if proxy_mode not in PROXY_MODES:
            raise ValueError(f"proxy_mode {proxy_mode!r}: expected one of {PROXY_MODES}")
        if local_dns not in LOCAL_DNS_STATES:
            raise ValueError(f"local_dns {local_dns!r}: expected one of {LOCAL_DNS_STATES}")
        if local_dns_server not in LOCAL_DNS_SERVERS:
            raise ValueError(
                f"local_dns_server {local_dns_server!r}: expected one of {LOCAL_DNS_SERVERS}"
            )
        Quirks(**quirks)  # unknown quirk names fail here, not halfway through start()
        self.workdir = Path(workdir).resolve()
        #: the fake host's ``/`` as seen from this machine
        self.root = self.workdir / "root"
        self.files = NodeFiles(self.workdir)
        self.name = name
        self.proxy_mode = proxy_mode
        self.local_addresses = tuple(local_addresses)
        self.local_dns_server = local_dns_server
        self.options: dict[str, Any] = {
            "layout": layout,
            "cluster_dns": cluster_dns,
            "cni": cni,
            "quirks": quirks,
            "local_dns": local_dns,
            "kube_proxy": kube_proxy,
            "kubelet": kubelet,
            "healthz_delay": healthz_delay,
            "refuse_cluster_dns": tuple(refuse_cluster_dns),
        }
        self.dns_records = dict(dns_records or {KUBERNETES_NAME: KUBERNETES_IP})
        self.node_cache_values = tuple(node_cache_values)
        self.layout: Layout | None = None
        self.local_dns = "unbound"
        #: the process that holds the node (``unshare``, ``systemd-nspawn``)
        self._boot_proc: subprocess.Popen[bytes] | None = None
        self._init_pid = 0
        self._procs: list[NodeProcess] = []
        self._dns_server: NodeProcess | None = None
        self._upstream_dns: NodeProcess | None = None
        #: the chart's node-cache, when it is the local DNS (set by start())
        self.chart: ChartNodeCache | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Self:
        """Build the node; on any failure everything already created is removed again."""
        if self._boot_proc is not None or self._closed:
            raise SandboxError(f"{self.workdir}: node already started")
        _LIVE[id(self)] = self
        try:
            self._prepare_root()
            if self.local_dns_server == "node-cache":
                self.chart = self._check_node_cache()
            self._boot()
            if self.proxy_mode == "ipvs":  # kube-proxy leaves kube-ipvs0 down
                self._add_link(IPVS_LINK, (CLUSTER_DNS,), up=False)
            if self.chart is not None:
                self._start_upstream_dns()
            self.set_local_dns(self.options["local_dns"], wait=False)
            if self.options["kube_proxy"]:
                self._start_kube_proxy()
            if self.options["kubelet"]:
                self.systemctl("start", self.service, quiet=True, check=True)
            if self.local_dns == "up":
                self._wait_dns()
            if self.chart is not None:
                self._wait_listening("udp", UPSTREAM_DNS, 53, "the upstream DNS stand-in")
            if self.options["kube_proxy"]:
                self._wait_listening("tcp", "127.0.0.1", PROXY_PORT, "kube-proxy")
            if self.options["kubelet"]:
                self.wait_kubelet()
        except BaseException as exc:
            try:
                self.close()
            except SandboxError as cleanup:
                exc.add_note(f"and cleaning up: {cleanup}")
            raise
        return self

    def close(self) -> None:
        """Kill everything of the node and check that nothing is left. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _LIVE.pop(id(self), None)
        victims = self.processes()
        problems = self._shutdown()
        for proc in self._procs:
            try:
                proc.wait(timeout=READY_TIMEOUT)
            except subprocess.TimeoutExpired:
                subprocess.Popen.kill(proc)
                proc.wait()
            _close_pipes(proc)
        survivors = _wait_gone(victims, READY_TIMEOUT)
        if survivors:
            for survivor in survivors:
                with contextlib.suppress(psutil.NoSuchProcess):
                    survivor.kill()
            problems.append(f"processes survived teardown: {survivors}")
        if problems:
            raise SandboxError(f"{self.workdir}: {'; '.join(problems)}")

    def processes(self) -> list[psutil.Process]:
        """Every process of the node: all of its pid namespace, plus what holds it."""
        found = []
        with contextlib.suppress(psutil.NoSuchProcess):
            if self._boot_proc is not None and self._boot_proc.poll() is None:
                found.append(psutil.Process(self._boot_proc.pid))
        if not self._init_pid:
            return found
        try:
            pid_ns = os.stat(f"/proc/{self._init_pid}/ns/pid").st_ino
        except FileNotFoundError:
            return found
        for pid in psutil.pids():
            with contextlib.suppress(OSError, psutil.NoSuchProcess):
                if os.stat(f"/proc/{pid}/ns/pid").st_ino == pid_ns:
                    found.append(psutil.Process(pid))
        return found

    # -- set-up ---------------------------------------------------------------------------
    def _prepare_root(self) -> None:
        """The host root (the layout), the node's configuration and its stand-ins."""
        self.files.workdir.mkdir(parents=True, exist_ok=True)
        self.files.systemd.mkdir(exist_ok=True)
        self.root.mkdir(exist_ok=True)
        if self.options["layout"] is not None:
            self.layout = write_layout(
                self.root,
                self.options["layout"],
                cluster_dns=self.options["cluster_dns"],
                cni=self.options["cni"],
                **self.options["quirks"],
            )
        self.files.save_config(self.node_config())
        self._install_standins()

    def node_config(self) -> NodeConfig:
        """What the stand-ins of this node read (``node.json``)."""
        return NodeConfig(
            name=self.name,
            root=str(self.root),
            python=os.path.realpath(sys.executable),
            pythonpath=python_path(),
            healthz_delay=float(self.options["healthz_delay"]),
            refuse_cluster_dns=self.options["refuse_cluster_dns"],
        )

    def _install_standins(self) -> None:
        """``kubelet``/``kube-proxy`` (symlinks to Python, so that is their process name)
        and the wrapper that runs the systemctl stub."""
        self.files.bin.mkdir(exist_ok=True)
        python = os.path.realpath(sys.executable)
        for daemon in ("kubelet", "kube-proxy", "k3s", "rke2", "kubelite"):
            link = self.files.bin / daemon
            link.unlink(missing_ok=True)
            link.symlink_to(python)
        stub = self.files.bin / "systemctl"
        stub.write_text(
            "#!/bin/sh\n"
            f"{NODE_DIR_ENV}={shlex.quote(str(self.workdir))} "
            f"PYTHONPATH={shlex.quote(python_path())} "
            f"exec {shlex.quote(python)} -S {shlex.quote(str(SANDBOX_DIR / 'systemctl_stub.py'))}"
            ' "$@"\n'
        )
        stub.chmod(0o755)

    def _write_init_script(self) -> Path:
        """The node's PID 1: mount the stub, set the hostname, then reap orphans forever."""
        stub = shlex.quote(str(self.files.bin / "systemctl"))
        overlay = shlex.quote(str(self.workdir / "usr-bin"))
        script = self.files.init_script
        script.write_text(
            "set -e\n"
            "ip link set lo up\n"
            f"if [ -e {SYSTEMCTL} ]; then mount --bind {stub} {SYSTEMCTL}\n"
            # no systemctl on this machine: lay a directory holding the stub over /usr/bin
            f"else mkdir -p {overlay} && cp {stub} {overlay}/ && "
            f"mount -t overlay sandbox -o lowerdir={overlay}:/usr/bin /usr/bin; fi\n"
            f"hostname {shlex.quote(self.name)}\n"
            "echo ready\n"
            "exec >/dev/null 2>&1\n"
            "set +e\n"
            "trap 'exit 0' TERM\n"
            # bash reaps every child while it waits; a bare `sleep infinity` as PID 1 would
            # collect the zombies of restarted kubelets.
            "while :; do sleep 3600 & wait $!; done\n"
        )
        return script

    def _boot(self) -> None:
        """Start the namespaces and the node's init; sets :attr:`init_pid`."""
        argv = [
            "unshare",
            "--fork",
            "--kill-child",
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--mount-proc",
            "bash",
            str(self._write_init_script()),
        ]
        if shutil.which("setpriv"):
            argv = ["setpriv", "--pdeathsig", "KILL", *argv]
        self._boot_proc = proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out = self._read_until_ready(proc)
        if out != b"ready\n":
            proc.kill()
            err = proc.stderr.read() if proc.stderr else b""
            raise SandboxError(f"node namespaces did not start: {(out + err).decode().strip()}")

        def init() -> int | None:
            children = psutil.Process(proc.pid).children()
            return children[0].pid if children else None

        self._init_pid = self._wait("unshare's child process", init, READY_TIMEOUT)

    @staticmethod
    def _read_until_ready(proc: subprocess.Popen[bytes]) -> bytes:
        if proc.stdout is None:
            raise SandboxError("unshare was started without a stdout pipe")
        out = b""
        deadline = time.monotonic() + READY_TIMEOUT
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not out.endswith(b"\n") and time.monotonic() < deadline:
                if sel.select(timeout=deadline - time.monotonic()):
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    out += chunk
        return out

    def _shutdown(self) -> list[str]:
        """Stop the node (every process in it); what could not be cleaned up."""
        if self._init_pid:
            # Killing the node's init makes the kernel kill its whole pid namespace, and
            # unshare (its parent) reaps it, so no zombie is handed to the machine's init.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._init_pid, signal.SIGKILL)
        if self._boot_proc is not None:
            try:
                self._boot_proc.wait(timeout=READY_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._boot_proc.kill()  # SIGKILL: unshare ignores SIGTERM
                self._boot_proc.wait()
            _close_pipes(self._boot_proc)
        return []

    def _add_link(self, name: str, addresses: Sequence[str], *, up: bool) -> None:
        """A ``dummy`` link (``ifb`` where the kernel has no dummy driver: the agent sees
        no difference) holding ``addresses``."""
        self._run(["ip", "link", "add", name, "type", link_type()])
        for address in addresses:
            # an IPv6 address without duplicate address detection: usable at once
            v6 = ":" in address
            prefix = ["/128", "nodad"] if v6 else ["/32"]
            self._run(["ip", "addr", "add", address + prefix[0], "dev", name, *prefix[1:]])
        if up:
            self._run(["ip", "link", "set", name, "up"])

    def _start_kube_proxy(self) -> None:
        self._spawn(
            "kube-proxy",
            [
                str(self.files.bin / "kube-proxy"),
                str(SANDBOX_DIR / "standins.py"),
                f"--proxy-mode={self.proxy_mode}",
                f"--metrics-bind-address=127.0.0.1:{PROXY_PORT}",
            ],
            env={**os.environ, NODE_DIR_ENV: str(self.workdir), "PYTHONPATH": python_path()},
        )

    def _spawn(
        self,
        log: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        stdout: int | IO[Any] | None = None,
        cwd: Path | None = None,
    ) -> NodeProcess:
        """Start a long-running process in the node; output to ``<workdir>/<log>.log``."""
        with open(self.files.log(log), "a") as logfile:
            proc = NodeProcess(
                [*self._nsenter(cwd), *argv],
                stdin=subprocess.DEVNULL,
                stdout=logfile if stdout is None else stdout,
                stderr=subprocess.STDOUT,
                env=env if env is not None else self.command_env,
                text=True,
            )
        self._procs.append(proc)
        return proc

    def _nsenter(self, cwd: Path | None = None) -> list[str]:
        """``nsenter`` into all of the node's namespaces, up to and including ``--``."""
        argv = [
            "nsenter",
            f"--target={self.init_pid}",
            "--pid",
            "--mount",
            "--net",
            "--uts",
            "--ipc",
        ]
        return [*argv, f"--wd={cwd}", "--"] if cwd else [*argv, "--"]

    def _run(self, argv: Sequence[str]) -> None:
        result = self.exec(argv)
        if result.returncode != 0:
            raise SandboxError(f"{shlex.join(argv)} in the node: {result.stderr.strip()}")

    # -- waiting --------------------------------------------------------------------------
    def listening(self, proto: str, address: str, port: int) -> bool:
        """Whether a socket of the node listens on ``address:port`` (``tcp``/``udp``)."""
        return bool(self._listeners(proto, address, port))

    def _listeners(self, proto: str, address: str, port: int) -> set[str]:
        """The node's sockets listening on ``address:port``, as their fd links name them
        (``socket:[<inode>]``)."""
        wanted = _socket_id(address, port)
        listen_state = "0A" if proto == "tcp" else "07"
        table_name = proto + ("6" if ":" in address else "")
        found = set()
        with open(f"/proc/{self.init_pid}/net/{table_name}") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[1] == wanted and fields[3] == listen_state:
                    found.add(f"socket:[{fields[9]}]")
        return found

    def _wait(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Poll ``probe`` until it returns something true; return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{self.workdir}: {what} not ready after {timeout:g}s; {self.diagnostics()}"
                )
            time.sleep(_POLL)

    def _wait_listening(self, proto: str, address: str, port: int, what: str) -> None:
        self._wait(
            f"{what} on {proto} {address}:{port}",
            functools.partial(self.listening, proto, address, port),
            READY_TIMEOUT,
        )

    def _wait_dns(self) -> None:
        for address in self.local_addresses:
            self._wait_listening("udp", address, 53, self.local_dns_server)
            if self.chart is not None:
                self._wait_listening("tcp", address, self.chart.health_port, "node-cache health")

    def wait_kubelet(
        self, previous_pid: int | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait until a kubelet other than ``previous_pid`` serves /healthz; its report."""
        limit = READY_TIMEOUT + float(self.options["healthz_delay"]) if timeout is None else timeout

        def ready() -> dict[str, Any] | None:
            report = self.kubelet()
            if (
                report is not None
                and report["pid"] != previous_pid
                and report["healthz"]
                and self.host_pid(report["pid"]) is not None
            ):
                return report
            return None

        return self._wait("kubelet", ready, limit)

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines of ``<workdir>/<name>.log``."""
        path = self.files.log(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def diagnostics(self) -> str:
        """What to show when the node misbehaves (in error and assertion messages)."""
        found = f"kubelet.log: {self.log_tail('kubelet')}"
        if self.chart is not None:
            found += f"; node-cache.log: {self.log_tail('node-cache')}"
        return found

    # -- local DNS ------------------------------------------------------------------------
    def set_local_dns(self, state: str, *, wait: bool = True) -> None:
        """``up``, ``down`` (addresses bound, no server) or ``unbound`` (no nodelocaldns)."""
        if state not in LOCAL_DNS_STATES:
            raise ValueError(f"local_dns {state!r}: expected one of {LOCAL_DNS_STATES}")
        if state != "up" and self.local_dns == "up":
            self._stop_dns_server()
        # after the stop: node-cache's teardown (no -skipteardown) deletes the link
        if state == "unbound" and LOCAL_DNS_LINK in self.links():
            self._run(["ip", "link", "del", LOCAL_DNS_LINK])
        if state != "unbound":
            self.bind_local_addresses()
        if state == "up" and self.local_dns != "up":
            self._start_dns_server()
            if wait:
                self._wait_dns()
        self.local_dns = state

    def start_dns(self) -> None:
        """Bind 169.254.20.10 if needed and start the local DNS on it; returns once it
        listens."""
        self.set_local_dns("up")

    def stop_dns(self) -> None:
        """Stop the local DNS; the address stays bound, so queries are refused."""
        self.set_local_dns("down")

    def bind_local_addresses(self) -> None:
        """Add the ``nodelocaldns`` link holding the local addresses when it is missing:
        what node-cache's ``-setupinterface`` does as it starts (it asks for ``dummy``,
        which this kernel may lack, so the harness does it)."""
        if LOCAL_DNS_LINK not in self.links():
            self._add_link(LOCAL_DNS_LINK, self.local_addresses, up=True)

    def links(self) -> list[str]:
        """The names of the node's network links (from ``/proc/<init>/net/dev``)."""
        with open(f"/proc/{self.init_pid}/net/dev") as table:
            return [line.split(":", 1)[0].strip() for line in table.readlines()[2:]]

    @property
    def local_dns_process(self) -> NodeProcess | None:
        """The running local DNS server (node-cache or dnsmasq), None when stopped."""
        return self._dns_server

    @local_dns_process.setter
    def local_dns_process(self, proc: NodeProcess | None) -> None:
        """Hand the node another local DNS process (one started by :meth:`spawn_node_cache`
        that took over, e.g. in a surge update; :mod:`testing.sandbox.rollout`)."""
        self._dns_server = proc

    @property
    def upstream_dns_process(self) -> NodeProcess | None:
        """The cluster's CoreDNS stand-in behind node-cache (None in dnsmasq nodes)."""
        return self._upstream_dns

    def _check_node_cache(self) -> ChartNodeCache:
        """The chart's node-cache, its binary and iptables: all there before the node boots."""
        try:
            chart = chart_node_cache(self.node_cache_values)
            find_binary()
            require_iptables(chart)
        except NodeCacheMissing as exc:
            raise SandboxError(f"the node's local DNS is the real node-cache: {exc}") from exc
        if set(chart.local_ips) != set(self.local_addresses):
            raise SandboxError(
                f"the chart's node-cache listens on {chart.local_ips}, the node has "
                f"{self.local_addresses}: use local_dns_server='dnsmasq' for such a node"
            )
        return chart

    def _start_upstream_dns(self) -> None:
        """The cluster's CoreDNS stand-in behind node-cache (:func:`cluster_dns_argv`); its
        log (``upstream-dns.log``) shows every query that reached the cluster DNS."""
        self._add_link(UPSTREAM_DNS_LINK, (UPSTREAM_DNS,), up=True)
        argv = cluster_dns_argv(UPSTREAM_DNS, self.dns_records, CLUSTER_DOMAIN)
        self._upstream_dns = self._spawn("upstream-dns", argv)

    def _start_dns_server(self) -> None:
        if self.chart is None:
            argv = dnsmasq_argv(self.local_addresses, self.dns_records)
            self._dns_server = self._spawn("dnsmasq", argv)
            return
        self._run_init_containers(self.chart)
        self._dns_server = self.spawn_node_cache("node-cache")

    def _run_init_containers(self, chart: ChartNodeCache) -> None:
        """What kubelet runs before node-cache: the rendered init containers' agent commands
        (e.g. ``fast-refusal``, which writes this node's net.ipv4.icmp_ratemask: the node's
        network namespace is its "host" one), in the node, each to exit 0."""
        for args in chart.init:
            result = self.run_agent(args)
            if result.returncode != 0:
                raise SandboxError(f"init container `{' '.join(args)}` failed: {result}")

    def spawn_node_cache(self, name: str) -> NodeProcess:
        """Start a node-cache as the chart runs it (:attr:`chart`), its files in
        ``<workdir>/<name>/`` (``etc/coredns.pid`` once its servers listen with the chart's
        ``-pidfile``) and its output in ``<name>.log``; without waiting. A second one beside
        the running one is a surge update's new pod (:mod:`testing.sandbox.rollout`)."""
        if self.chart is None:
            raise SandboxError(f"{self.workdir}: the local DNS of this node is not node-cache")
        launch = node_cache_launch(
            self.chart, find_binary(), self.workdir / name, UPSTREAM_DNS, os.environ
        )
        return self._spawn(name, launch.argv, env=launch.env)

    def _stop_dns_server(self) -> None:
        if self._dns_server is not None:
            self._dns_server.terminate()
            self._dns_server.wait(timeout=READY_TIMEOUT)
            self._dns_server = None

    # -- running things in the node -------------------------------------------------------
    def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> RunResult:
        """Run ``argv`` in all of the node's namespaces; output captured as text. On a
        timeout (or any interruption) the process in the node is killed."""
        start = time.monotonic()
        with NodeProcess(
            [*self._nsenter(cwd), *argv],
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env if env is not None else self.command_env,
            text=True,
        ) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except BaseException:
                proc.end()
                raise
        return RunResult(argv, proc.returncode, out, err, time.monotonic() - start)

    def python_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for :attr:`python_binary` in the node, plus ``env``."""
        return python_env(env)

    def python(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> RunResult:
        """``python ARGS`` in the node (:attr:`python_binary`, cwd :attr:`python_cwd`)."""
        return self.exec(
            [self.python_binary, *args],
            env=self.python_env(env),
            timeout=timeout,
            cwd=self.python_cwd,
        )

    @property
    def host_root(self) -> str:
        """The agent's ``--host-root`` in this node: where the fake host's ``/`` is."""
        return str(self.root)

    def agent_argv(self, *args: str) -> list[str]:
        """The agent's arguments ``ARGS`` for this node (its ``--host-root`` added)."""
        return [*args, "--host-root", self.host_root]

    def agent(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120.0
    ) -> RunResult:
        """``nodelocaldns-agent ARGS --host-root <this node's root>`` in the node."""
        return self.run_agent(self.agent_argv(*args), env=env, timeout=timeout)

    def run_agent(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> RunResult:
        """``python -m nodelocaldns_agent ARGS`` in the node, so ``nsenter --target 1``
        reaches the node's ``systemctl``."""
        return self.python(["-m", "nodelocaldns_agent", *args], env=env, timeout=timeout)

    def spawn_agent(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        stdout: int | IO[Any] | None = None,
    ) -> NodeProcess:
        """Start ``python -m nodelocaldns_agent ARGS`` in the node without waiting (output to
        ``<workdir>/agent.log`` unless ``stdout`` is given); it is killed by :meth:`close`."""
        return self.spawn_python(
            "agent", ["-m", "nodelocaldns_agent", *args], env=env, stdout=stdout
        )

    def agent_killed_at(self, step: str, *args: str, timeout: float = 60.0) -> list[str]:
        """Run the agent (``ARGS`` plus ``--log-format json``) and SIGKILL it right after
        it logs ``step=`` (the crash harness's kill, bench/faults.py); returns the steps it
        logged. Like a crash, the kill leaves a command the agent started (a restart)
        running: waits for it to finish too. An agent that ends first fails the caller."""
        proc = self.spawn_agent(
            self.agent_argv(*args, "--log-format", "json"), stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            for line in proc.stdout:
                with contextlib.suppress(ValueError, AttributeError):
                    seen.append(json.loads(line).get("step") or "")
                if seen and seen[-1] == step:
                    proc.kill()
                    proc.wait(timeout=READY_TIMEOUT)
                    self._wait_agent_commands()
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            proc.end()
            _close_pipes(proc)
        if not seen or seen[-1] != step:
            raise SandboxError(f"the agent never logged step={step} (it logged {seen})")
        return [s for s in seen if s]

    def _wait_agent_commands(self) -> None:
        """Wait until no command a killed agent started is left in the node: ``systemctl``
        (e.g. its restart), and a child it had forked but not yet exec'd at the kill (its
        command line is still the agent's): looked for again until none is found, so that
        a restart counted later is never the killed run's."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            found = []
            for proc in self.processes():
                with contextlib.suppress(psutil.Error):
                    line = " ".join(proc.cmdline())
                    if "systemctl" in line or "nodelocaldns_agent" in line:
                        found.append(proc)
            if not found:
                return
            _wait_gone(found, max(deadline - time.monotonic(), 0.0))

    def spawn(self, log: str, argv: Sequence[str]) -> NodeProcess:
        """Start ``argv`` in the node without waiting (output to ``<workdir>/<log>.log``);
        it is killed by :meth:`close`. E.g. a pod's process: ``unshare --mount ...``."""
        return self._spawn(log, argv)

    def spawn_python(
        self,
        log: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        stdout: int | IO[Any] | None = None,
    ) -> NodeProcess:
        """Start ``python ARGS`` in the node (cwd :attr:`python_cwd`, output to
        ``<workdir>/<log>.log`` unless ``stdout`` is given); it is killed by :meth:`close`."""
        return self._spawn(
            log,
            [self.python_binary, *args],
            env=self.python_env(env),
            stdout=stdout,
            cwd=self.python_cwd,
        )

    def systemctl(self, *args: str, quiet: bool = False, check: bool = False) -> RunResult:
        """``systemctl ARGS`` in the node; ``quiet`` calls are not logged by the stub."""
        env = {**(self.command_env or os.environ), QUIET_ENV: "1"} if quiet else None
        result = self.exec(["systemctl", *args], env=env)
        if check and result.returncode != 0:
            raise SandboxError(
                f"systemctl {' '.join(args)}: {result.stderr.strip()}; {self.diagnostics()}"
            )
        return result

    def unit(self, *props: str, unit: str = "kubelet.service") -> dict[str, str]:
        """``systemctl show UNIT -p ...`` in the node."""
        args = [arg for prop in props for arg in ("-p", prop)]
        out = self.systemctl("show", unit, *args, check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cmdline(self, pid: int) -> list[str]:
        """argv of process ``pid`` of the node (a pid as the node sees it)."""
        raw = self.exec(["cat", f"/proc/{pid}/cmdline"]).stdout
        return raw.rstrip("\0").split("\0") if raw else []

    def http_get(self, url: str, timeout: float = 2.0) -> tuple[int, str]:
        """GET ``http://host:port/path`` from inside the node: (status, body), or
        (0, error) when nothing answers. A raw socket: a Python start plus urllib would
        cost ~100 ms per call."""
        parts = urllib.parse.urlsplit(url)
        code = (
            "import socket, sys\n"
            "host, port, path, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], "
            "float(sys.argv[4])\n"
            "try:\n"
            "    with socket.create_connection((host, port), timeout=timeout) as conn:\n"
            "        conn.sendall(f'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n'.encode())\n"
            "        data = b''\n"
            "        while chunk := conn.recv(65536):\n"
            "            data += chunk\n"
            "    head, _, body = data.partition(b'\\r\\n\\r\\n')\n"
            "    print(head.split()[1].decode(), body.decode(errors='replace'), end='')\n"
            "except (OSError, IndexError) as exc:\n"
            "    print(0, exc, end='')\n"
        )
        argv = [parts.hostname or "", str(parts.port or 80), parts.path or "/", str(timeout)]
        out = self.exec([self.python_binary, "-S", "-c", code, *argv]).stdout
        status, _, body = out.partition(" ")
        return int(status or 0), body

    def resolve(
        self, name: str = KUBERNETES_NAME, server: str = LOCAL_DNS, timeout: float = 1.0
    ) -> DnsResult:
        """Query ``name`` A at ``server`` with dnspython from inside the node."""
        code = (
            "import json, sys, time\n"
            "import dns.exception, dns.message, dns.query, dns.rcode\n"
            "name, server, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])\n"
            "query = dns.message.make_query(name, 'A')\n"
            "start = time.perf_counter()\n"
            "try:\n"
            "    reply = dns.query.udp(query, server, timeout=timeout)\n"
            "    took, rcode = time.perf_counter() - start, reply.rcode()\n"
            "    addrs = [r.address for a in reply.answer for r in a if hasattr(r, 'address')]\n"
            "    err = '' if rcode == 0 else 'rcode ' + dns.rcode.to_text(rcode)\n"
            "    out = {'addresses': addrs, 'latency': took, 'error': err}\n"
            "except dns.exception.Timeout:\n"
            "    out = {'addresses': [], 'latency': None, 'error': 'timeout'}\n"
            "except ConnectionRefusedError:\n"
            "    out = {'addresses': [], 'latency': None, 'error': 'refused'}\n"
            "except OSError as e:\n"
            "    out = {'addresses': [], 'latency': None, 'error': str(e)}\n"
            "print(json.dumps(out))\n"
        )
        result = self.python(["-c", code, name, server, str(timeout)], timeout=timeout + 30)
        if result.returncode != 0:
            raise SandboxError(f"DNS probe failed in the node: {result.stderr.strip()}")
        data = result.json()
        return DnsResult(tuple(data["addresses"]), data["latency"], data["error"])

    # -- what happened --------------------------------------------------------------------
    @property
    def init_pid(self) -> int:
        """Host pid of the node's init (PID 1 inside): ``nsenter --target`` it."""
        if not self._init_pid:
            raise SandboxError(f"{self.workdir}: node not started")
        return self._init_pid

    def path(self, host_path: str) -> Path:
        """Where ``host_path`` of the node's host is, seen from this machine."""
        return self.root / host_path.lstrip("/")

    def read_bytes(self, host_path: str) -> bytes:
        return self.path(host_path).read_bytes()

    @property
    def dns_file(self) -> Path:
        """Where the file that decides kubelet's cluster DNS really is (links followed)."""
        if self.layout is None:
            raise SandboxError(f"{self.workdir}: no layout was written")
        return self.layout.real_path(self.layout.dns_file)

    @property
    def original(self) -> bytes:
        """The bytes of that file as the layout wrote them."""
        if self.layout is None:
            raise SandboxError(f"{self.workdir}: no layout was written")
        return self.layout.original

    def journal(self) -> dict[str, Any] | None:
        """The agent's journal on the node (None before any; ``{"corrupt": True}`` when it
        is not JSON)."""
        path = self.path(JOURNAL)
        if not path.exists():
            return None
        try:
            body: dict[str, Any] = json.loads(path.read_bytes())
        except ValueError:
            return {"corrupt": True}
        return body

    def host_pid(self, node_pid: int) -> int | None:
        """The host pid of a live process the node knows as ``node_pid``."""
        with contextlib.suppress(psutil.NoSuchProcess):
            init = psutil.Process(self.init_pid)
            for proc in [init, *init.children(recursive=True)]:
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{proc.pid}/status").read_text()
                    nspid = next(ln for ln in status.splitlines() if ln.startswith("NSpid:"))
                    state = next(ln for ln in status.splitlines() if ln.startswith("State:"))
                    if int(nspid.split()[-1]) == node_pid and "zombie" not in state:
                        return proc.pid
        return None

    def systemctl_calls(self) -> list[dict[str, Any]]:
        """Every systemctl invocation the stub logged: ``{"argv": [...], "ts": ..., "pid":
        ...}`` (none under a real systemd)."""
        path = self.files.systemctl_log
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    @property
    def service(self) -> str:
        """The unit that runs kubelet: ``kubelet``, or the one hosting an embedded kubelet."""
        return self.layout.service if self.layout is not None else "kubelet"

    def restarts(self) -> list[dict[str, Any]]:
        """The logged ``systemctl restart|try-restart`` invocations of :attr:`service`."""
        found = []
        for call in self.systemctl_calls():
            positional = parse_argv(call["argv"])[0]
            units = {u.removesuffix(".service") for u in positional[1:]}
            if positional[:1] in (["restart"], ["try-restart"]) and self.service in units:
                found.append(call)
        return found

    def kubelet(self) -> dict[str, Any] | None:
        """The last kubelet stand-in's report (``kubelet.json``), None before any."""
        path = self.files.kubelet_json
        if not path.exists():
            return None
        report: dict[str, Any] = json.loads(path.read_text())
        return report

    def kubelet_dns(self) -> list[str]:
        """The cluster DNS the last kubelet stand-in started with ([] before any)."""
        return list((self.kubelet() or {}).get("cluster_dns") or [])

    def kubelet_starts(self) -> list[dict[str, Any]]:
        """One entry per start of the kubelet stand-in, in order: ``pid`` (in the node),
        ``time``, ``argv``, and ``serving`` (when it served /healthz) once it did."""
        path = self.files.kubelet_starts
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        starts: dict[int, dict[str, Any]] = {}
        for line in filter(None, lines):
            record = json.loads(line)
            starts.setdefault(record["pid"], {}).update(record)
        return list(starts.values())

    def restart_spans(self) -> list[tuple[float, float | None]]:
        """Each logged kubelet restart as (when ``systemctl restart`` was called, when a
        kubelet started since then first served /healthz, None when none has yet)."""
        starts = self.kubelet_starts()
        spans = []
        for call in self.restarts():
            served = [s["serving"] for s in starts if "serving" in s and s["time"] >= call["ts"]]
            spans.append((float(call["ts"]), min(served, default=None)))
        return spans

    def kubelet_pid(self) -> int | None:
        """Pid (as the node sees it) of the running kubelet stand-in, None when it is down."""
        report = self.kubelet()
        if report is None or self.host_pid(report["pid"]) is None:
            return None
        pid: int = report["pid"]
        return pid

    def set_kubelet_fault(self, on: bool = True) -> None:
        """Make every kubelet started from now on exit 1 without serving (or stop that)."""
        if on:
            self.files.kubelet_fail.write_text("fault injected by the test\n")
        else:
            self.files.kubelet_fail.unlink(missing_ok=True)

    def signal_kubelet(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the running kubelet stand-in (a kubelet crash)."""
        pid = self.kubelet_pid()
        host = self.host_pid(pid) if pid is not None else None
        if host is None:
            raise SandboxError("no kubelet is running")
        os.kill(host, sig)
