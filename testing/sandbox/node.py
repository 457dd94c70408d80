"""SandboxNode: a fake Kubernetes node on this machine, in namespaces of its own.

One ``unshare --pid --mount --uts --ipc --net`` namespace set per node. Its init (PID 1
of the node) is a bash loop that reaps orphans, so restarted kubelets leave no zombies.
Inside: ``lo``, ``nodelocaldns`` (169.254.20.10/32) and ``kube-ipvs0`` (10.96.0.10/32)
links, a real dnsmasq on 169.254.20.10:53, a kube-proxy stand-in on 127.0.0.1:10249, a
kubelet stand-in on 127.0.0.1:10248 started through a recording ``systemctl`` that is
bind-mounted over ``/usr/bin/systemctl`` in the node's mount namespace only. The node's
network namespace has no route off the node, so nothing probed inside can leave it.

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
from typing import IO, Any

import psutil

from testing.sandbox.layouts import DEFAULT_CLUSTER_DNS, Layout, Quirks, write_layout
from testing.sandbox.nodefiles import NODE_DIR_ENV, NodeConfig, NodeFiles
from testing.sandbox.systemctl_stub import QUIET_ENV, parse_argv

SANDBOX_DIR = Path(__file__).resolve().parent
#: The repository root (holds the ``agent`` package); on PYTHONPATH of everything run.
REPO_ROOT = SANDBOX_DIR.parents[1]
LOCAL_DNS = "169.254.20.10"
CLUSTER_DNS_IP = DEFAULT_CLUSTER_DNS
KUBERNETES_NAME = "kubernetes.default.svc.cluster.local"
KUBERNETES_IP = "10.96.0.1"
HEALTHZ_PORT = 10248
PROXY_PORT = 10249
SYSTEMCTL = "/usr/bin/systemctl"
PROXY_MODES = ("ipvs", "iptables")
LOCAL_DNS_STATES = ("up", "down", "unbound")
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


@functools.cache
def link_type() -> str:
    """``dummy`` when the kernel has it, else ``ifb`` (checked in a throwaway netns)."""
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "add", "probe0", "type", "dummy"],
        capture_output=True,
        check=False,
    )
    return "dummy" if probe.returncode == 0 else "ifb"


def _socket_id(address: str, port: int) -> str:
    """``address:port`` as /proc/net/{tcp,udp} writes it (little-endian hex)."""
    packed = int.from_bytes(socket.inet_aton(address), "little")
    return f"{packed:08X}:{port:04X}"


def _python_path() -> str:
    """PYTHONPATH reproducing this interpreter's imports, for ``python -S`` stand-ins."""
    entries = [str(REPO_ROOT)] + [p for p in sys.path if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(entries))


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


_LIVE: dict[int, SandboxNode] = {}


def close_all() -> None:
    """Close every node still open (registered with :mod:`atexit`)."""
    for node in list(_LIVE.values()):
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
      local_dns: ``up`` (169.254.20.10 bound, dnsmasq answering), ``down`` (bound, no
        server) or ``unbound`` (no nodelocaldns link).
      kube_proxy: run the kube-proxy stand-in (``/proxyMode``).
      kubelet: start kubelet at boot (through the stub) and wait for its healthz.
      healthz_delay: seconds every kubelet stand-in waits before serving /healthz.
      dns_records: name -> IPv4 answered by dnsmasq (default: kubernetes.default -> 10.96.0.1).
    """

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
        kube_proxy: bool = True,
        kubelet: bool = True,
        healthz_delay: float = 0.0,
        dns_records: Mapping[str, str] | None = None,
        **quirks: bool,
    ) -> None:
        if proxy_mode not in PROXY_MODES:
            raise ValueError(f"proxy_mode {proxy_mode!r}: expected one of {PROXY_MODES}")
        if local_dns not in LOCAL_DNS_STATES:
            raise ValueError(f"local_dns {local_dns!r}: expected one of {LOCAL_DNS_STATES}")
        Quirks(**quirks)  # unknown quirk names fail here, not halfway through start()
        self.workdir = Path(workdir).resolve()
        self.files = NodeFiles(self.workdir)
        self.name = name
        self.proxy_mode = proxy_mode
        self.options: dict[str, Any] = {
            "layout": layout,
            "cluster_dns": cluster_dns,
            "cni": cni,
            "quirks": quirks,
            "local_dns": local_dns,
            "kube_proxy": kube_proxy,
            "kubelet": kubelet,
            "healthz_delay": healthz_delay,
        }
        self.dns_records = dict(dns_records or {KUBERNETES_NAME: KUBERNETES_IP})
        self.layout: Layout | None = None
        self.local_dns = "unbound"
        self._unshare: subprocess.Popen[bytes] | None = None
        self._init_pid = 0
        self._procs: list[NodeProcess] = []
        self._dnsmasq: NodeProcess | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> SandboxNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> SandboxNode:
        """Build the node; on any failure everything already created is removed again."""
        if self._unshare is not None:
            raise SandboxError(f"{self.workdir}: node already started")
        _LIVE[id(self)] = self
        try:
            self._write_files()
            self._start_namespaces()
            if self.proxy_mode == "ipvs":
                self._add_link("kube-ipvs0", CLUSTER_DNS_IP, up=False)
            self.set_local_dns(self.options["local_dns"], wait=False)
            if self.options["kube_proxy"]:
                self._spawn(
                    "kube-proxy",
                    [
                        str(self.files.bin / "kube-proxy"),
                        str(SANDBOX_DIR / "standins.py"),
                        f"--proxy-mode={self.proxy_mode}",
                        f"--metrics-bind-address=127.0.0.1:{PROXY_PORT}",
                    ],
                    env=self._standin_env(),
                )
            if self.options["kubelet"]:
                self.systemctl("start", "kubelet", quiet=True, check=True)
            if self.local_dns == "up":
                self._wait_listening("udp", LOCAL_DNS, 53, "dnsmasq")
            if self.options["kube_proxy"]:
                self._wait_listening("tcp", "127.0.0.1", PROXY_PORT, "kube-proxy")
            if self.options["kubelet"]:
                self.wait_kubelet()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill everything of the node and check that nothing is left. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _LIVE.pop(id(self), None)
        victims = self.processes()
        if self._init_pid:
            # Killing the node's init makes the kernel kill its whole pid namespace, and
            # unshare (its parent) reaps it, so no zombie is handed to the machine's init.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._init_pid, signal.SIGKILL)
        if self._unshare is not None:
            try:
                self._unshare.wait(timeout=READY_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._unshare.kill()  # SIGKILL: unshare ignores SIGTERM
                self._unshare.wait()
            _close_pipes(self._unshare)
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
            raise SandboxError(f"{self.workdir}: processes survived teardown: {survivors}")

    def processes(self) -> list[psutil.Process]:
        """Every process of the node: all of its pid namespace, plus ``unshare``."""
        found = []
        if self._unshare is not None and self._unshare.poll() is None:
            found.append(psutil.Process(self._unshare.pid))
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
    def _write_files(self) -> None:
        self.files.bin.mkdir(parents=True, exist_ok=True)
        self.files.systemd.mkdir(exist_ok=True)
        self.files.root.mkdir(exist_ok=True)
        if self.options["layout"] is not None:
            self.layout = write_layout(
                self.files.root,
                self.options["layout"],
                cluster_dns=self.options["cluster_dns"],
                cni=self.options["cni"],
                **self.options["quirks"],
            )
        python = os.path.realpath(sys.executable)
        self.files.save_config(
            NodeConfig(
                name=self.name,
                root=str(self.files.root),
                python=python,
                pythonpath=_python_path(),
                healthz_delay=float(self.options["healthz_delay"]),
            )
        )
        for daemon in ("kubelet", "kube-proxy"):
            link = self.files.bin / daemon
            link.unlink(missing_ok=True)
            link.symlink_to(python)
        stub = self.files.bin / "systemctl"
        stub.write_text(
            "#!/bin/sh\n"
            f"{NODE_DIR_ENV}={shlex.quote(str(self.workdir))} "
            f"PYTHONPATH={shlex.quote(_python_path())} "
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

    def _start_namespaces(self) -> None:
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
        self._unshare = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out = self._read_until_ready(self._unshare)
        if out != b"ready\n":
            self._unshare.kill()
            err = self._unshare.stderr.read() if self._unshare.stderr else b""
            raise SandboxError(f"node namespaces did not start: {(out + err).decode().strip()}")
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._init_pid:
            children = psutil.Process(self._unshare.pid).children()
            if children:
                self._init_pid = children[0].pid
            elif time.monotonic() > deadline:
                raise SandboxError("unshare has no child process")

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

    def _add_link(self, name: str, address: str, *, up: bool) -> None:
        self._run(["ip", "link", "add", name, "type", link_type()])
        self._run(["ip", "addr", "add", f"{address}/32", "dev", name])
        if up:
            self._run(["ip", "link", "set", name, "up"])

    def _standin_env(self) -> dict[str, str]:
        return {
            **os.environ,
            NODE_DIR_ENV: str(self.workdir),
            "PYTHONPATH": _python_path(),
        }

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
                env=env,
                text=True,
            )
        self._procs.append(proc)
        return proc

    def _nsenter(self, cwd: Path | None = None) -> list[str]:
        """``nsenter`` into all of the node's namespaces, up to and including ``--``."""
        if not self._init_pid:
            raise SandboxError(f"{self.workdir}: node not started")
        argv = [
            "nsenter",
            f"--target={self._init_pid}",
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
        wanted = _socket_id(address, port)
        listen_state = "0A" if proto == "tcp" else "07"
        with open(f"/proc/{self._init_pid}/net/{proto}") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[1] == wanted and fields[3] == listen_state:
                    return True
        return False

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise SandboxError(f"{self.workdir}: {what} not ready after {timeout:g}s")
            time.sleep(_POLL)

    def _wait_listening(self, proto: str, address: str, port: int, what: str) -> None:
        self._wait(
            f"{what} on {proto} {address}:{port}",
            lambda: self.listening(proto, address, port),
            READY_TIMEOUT,
        )

    def wait_kubelet(
        self, previous_pid: int | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait until a kubelet other than ``previous_pid`` serves /healthz; its report."""
        limit = READY_TIMEOUT + float(self.options["healthz_delay"]) if timeout is None else timeout

        def ready() -> bool:
            report = self.kubelet()
            return (
                report is not None
                and report["pid"] != previous_pid
                and report["healthz"]
                and self.host_pid(report["pid"]) is not None
            )

        try:
            self._wait("kubelet", ready, limit)
        except SandboxError as exc:
            raise SandboxError(f"{exc}; kubelet.log: {self.log_tail('kubelet')}") from None
        return self.kubelet() or {}

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines of ``<workdir>/<name>.log``."""
        path = self.files.log(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    # -- local DNS ------------------------------------------------------------------------
    def set_local_dns(self, state: str, *, wait: bool = True) -> None:
        """``up``, ``down`` (address bound, no server) or ``unbound`` (no nodelocaldns)."""
        if state not in LOCAL_DNS_STATES:
            raise ValueError(f"local_dns {state!r}: expected one of {LOCAL_DNS_STATES}")
        if state != "up" and self._dnsmasq is not None:
            self._dnsmasq.terminate()
            self._dnsmasq.wait(timeout=READY_TIMEOUT)
            self._dnsmasq = None
        if state == "unbound" and self.local_dns != "unbound":
            self._run(["ip", "link", "del", "nodelocaldns"])
        if state != "unbound" and self.local_dns == "unbound":
            self._add_link("nodelocaldns", LOCAL_DNS, up=True)
        if state == "up" and self._dnsmasq is None:
            self._dnsmasq = self._spawn(
                "dnsmasq",
                [
                    "dnsmasq",
                    "--conf-file=/dev/null",
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    f"--listen-address={LOCAL_DNS}",
                    "--port=53",
                    "--user=root",
                    "--pid-file=",
                    "--log-facility=-",
                    *(f"--address=/{name}/{ip}" for name, ip in self.dns_records.items()),
                ],
            )
            if wait:
                self._wait_listening("udp", LOCAL_DNS, 53, "dnsmasq")
        self.local_dns = state

    def start_dns(self) -> None:
        """Bind 169.254.20.10 if needed and start dnsmasq on it; returns once it listens."""
        self.set_local_dns("up")

    def stop_dns(self) -> None:
        """Stop dnsmasq; the address stays bound, so queries are refused."""
        self.set_local_dns("down")

    # -- running things in the node -------------------------------------------------------
    def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in all of the node's namespaces; output captured as text."""
        args = [*self._nsenter(cwd), *argv]
        with NodeProcess(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        ) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

    def python_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for Python run in the node: the repository on PYTHONPATH."""
        inherited = os.environ.get("PYTHONPATH")
        path = f"{REPO_ROOT}{os.pathsep}{inherited}" if inherited else str(REPO_ROOT)
        return {**os.environ, "PYTHONPATH": path, **(env or {})}

    def python(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``python ARGS`` in the node, cwd the repository root."""
        return self.exec(
            [sys.executable, *args], env=self.python_env(env), timeout=timeout, cwd=REPO_ROOT
        )

    def run_agent(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``python -m nodelocaldns_agent ARGS`` in the node, so ``nsenter --target 1``
        reaches the stub."""
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

    def spawn_python(
        self,
        log: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        stdout: int | IO[Any] | None = None,
    ) -> NodeProcess:
        """Start ``python ARGS`` in the node (cwd the repository root, output to
        ``<workdir>/<log>.log`` unless ``stdout`` is given); it is killed by :meth:`close`."""
        return self._spawn(
            log, [sys.executable, *args], env=self.python_env(env), stdout=stdout, cwd=REPO_ROOT
        )

    def systemctl(
        self, *args: str, quiet: bool = False, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``systemctl ARGS`` in the node (the stub); ``quiet`` calls are not logged."""
        env = {**os.environ, QUIET_ENV: "1"} if quiet else None
        result = self.exec(["systemctl", *args], env=env)
        if check and result.returncode != 0:
            raise SandboxError(
                f"systemctl {' '.join(args)}: {result.stderr.strip()}; "
                f"kubelet.log: {self.log_tail('kubelet')}"
            )
        return result

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
        out = self.exec([sys.executable, "-S", "-c", code, *argv]).stdout
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
        result = self.exec(
            [sys.executable, "-c", code, name, server, str(timeout)], timeout=timeout + 30
        )
        if result.returncode != 0:
            raise SandboxError(f"DNS probe failed in the node: {result.stderr.strip()}")
        data = json.loads(result.stdout)
        return DnsResult(tuple(data["addresses"]), data["latency"], data["error"])

    # -- what happened --------------------------------------------------------------------
    @property
    def init_pid(self) -> int:
        """Host pid of the node's init (PID 1 inside): ``nsenter --target`` it."""
        return self._init_pid

    @property
    def root(self) -> Path:
        return self.files.root

    def host_pid(self, node_pid: int) -> int | None:
        """The host pid of a live process the node knows as ``node_pid``."""
        with contextlib.suppress(psutil.NoSuchProcess):
            init = psutil.Process(self._init_pid)
            for proc in [init, *init.children(recursive=True)]:
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{proc.pid}/status").read_text()
                    nspid = next(ln for ln in status.splitlines() if ln.startswith("NSpid:"))
                    state = next(ln for ln in status.splitlines() if ln.startswith("State:"))
                    if int(nspid.split()[-1]) == node_pid and "zombie" not in state:
                        return proc.pid
        return None

    def systemctl_calls(self) -> list[dict[str, Any]]:
        """Every logged systemctl invocation: ``{"argv": [...], "ts": ..., "pid": ...}``."""
        path = self.files.systemctl_log
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def restarts(self) -> list[dict[str, Any]]:
        """The logged ``systemctl restart|try-restart kubelet`` invocations."""
        found = []
        for call in self.systemctl_calls():
            positional = parse_argv(call["argv"])[0]
            units = {u.removesuffix(".service") for u in positional[1:]}
            if positional[:1] in (["restart"], ["try-restart"]) and "kubelet" in units:
                found.append(call)
        return found

    def kubelet(self) -> dict[str, Any] | None:
        """The last kubelet stand-in's report (``<workdir>/kubelet.json``), None before any."""
        path = self.files.kubelet_json
        if not path.exists():
            return None
        report: dict[str, Any] = json.loads(path.read_text())
        return report

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
