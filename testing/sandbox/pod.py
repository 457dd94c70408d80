"""A "pod" in a sandbox node, resolving names all the time: what pods see of node-cache.

``with Pod(node) as pod: ...`` gives the node a pod the way a CNI and kubelet do:

- a network namespace of its own (and a pid and mount namespace: the pod's processes end
  with it), joined to the node by a veth pair: ``eth0`` (10.244.N.2/24, default route
  via the node's end, ``vpodN`` 10.244.N.1), so 169.254.20.10 is reached through the node
  as from a real pod;
- its own ``/etc/resolv.conf`` as kubelet writes it with ``clusterDNS`` (``nameserver``
  lines in order, ``search <ns>.svc.cluster.local svc.cluster.local cluster.local``,
  ``options ndots:5``), bind-mounted in its mount namespace only (never on the node: the
  node's node-cache must not forward to 169.254.20.10, CoreDNS's ``loop`` plugin);
- a resolver loop per libc (``resolver.c`` beside this file, built on first use into
  ``.tools/resolver/``: gcc for glibc, ``musl-gcc -static`` for musl, Debian packages
  ``libc6-dev`` and ``musl-tools``): ``getaddrinfo`` of each name in turn every 10 ms, one
  line per lookup in ``<node workdir>/pods/<name>/<libc>.lookups``.

What the two libcs do with more than one nameserver (why both are measured): glibc asks
them one after the other, each with ``timeout:5 attempts:2`` by default (resolv.conf(5);
glibc ``resolv/res_send.c``), musl asks all of them at once and takes the first answer
(musl ``src/network/res_msend.c``, "Queries all nameservers in parallel").

Reading it while it runs: :meth:`Pod.counts` (lookups and failures so far, per libc: a
demo's live "failed lookups" counter), :meth:`Pod.lookups` (every finished lookup with
its start on ``time.monotonic()``'s clock) and :meth:`Pod.summary` (:func:`summarize`
over a time window).
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from testing.sandbox.constants import LOCAL_DNS
from testing.sandbox.node import NodeProcess, SandboxError, SandboxNode

SOURCE = Path(__file__).resolve().with_name("resolver.c")
BUILD_DIR = Path(__file__).resolve().parents[2] / ".tools" / "resolver"
#: libc -> (compiler, its flags, the Debian package it comes with)
COMPILERS: Mapping[str, tuple[str, tuple[str, ...], str]] = {
    "glibc": ("gcc", (), "gcc and libc6-dev"),
    "musl": ("musl-gcc", ("-static",), "musl-tools"),
}
LIBCS = tuple(COMPILERS)
#: what a pod resolves by default (name as the pod asks -> the address it must get): a
#: Service through the search list and a name outside the cluster after it (ndots:5)
NAMES: Mapping[str, str] = {"kubernetes.default": "10.96.0.1", "example.org": "192.0.2.10"}
#: the records the node's cluster DNS stand-in needs for :data:`NAMES`
RECORDS: Mapping[str, str] = {
    "kubernetes.default.svc.cluster.local": "10.96.0.1",
    "example.org": "192.0.2.10",
}
INTERVAL_MS = 10
#: status of a lookup answered without the expected address (others: 0 or an EAI_* code)
WRONG_ADDRESS = 1
_EAI_NAMES = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}
_WAIT = 10.0


def build_resolver(libc: str, cache: Path = BUILD_DIR) -> Path:
    """The resolver loop for ``libc`` (``glibc`` or ``musl``), compiled once per source."""
    compiler, flags, package = COMPILERS[libc]
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = cache / f"resolver-{libc}-{digest}"
    if binary.is_file():
        return binary
    found = shutil.which(compiler)
    if found is None:
        raise SandboxError(
            f"{compiler} not found: the pod's {libc} resolver loop ({SOURCE}) is built with "
            f"it; install the Debian package(s) {package}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{binary.name}.{time.monotonic_ns()}"
    argv = [found, *flags, "-O2", "-Wall", "-o", str(partial), str(SOURCE)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SandboxError(
            f"{shlex.join(argv)} failed ({package} installed?): {result.stderr.strip()}"
        )
    partial.replace(binary)
    return binary


def resolv_conf(nameservers: Sequence[str], namespace: str = "default") -> str:
    """A pod's resolv.conf as kubelet writes it for ``dnsPolicy: ClusterFirst``."""
    search = f"{namespace}.svc.cluster.local svc.cluster.local cluster.local"
    lines = [*(f"nameserver {ns}" for ns in nameservers), f"search {search}", "options ndots:5"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Lookup:
    """One getaddrinfo call of a pod."""

    #: when it began, on ``time.monotonic()``'s clock
    start: float
    seconds: float
    #: 0: answered with the expected address; :data:`WRONG_ADDRESS`; else an EAI_* code
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def error(self) -> str:
        if self.status == WRONG_ADDRESS:
            return "wrong address"
        return _EAI_NAMES.get(self.status, f"status {self.status}") if self.status else ""


def parse_lookups(text: str) -> list[Lookup]:
    """``START_NS SECONDS_NS STATUS`` lines of ``resolver.c`` (complete lines only)."""
    found = []
    for line in text.splitlines():
        start, seconds, status = line.split()
        found.append(Lookup(int(start) / 1e9, int(seconds) / 1e9, int(status)))
    return found


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values."""
    index = max(0, min(len(ordered) - 1, int(len(ordered) * fraction + 0.999999) - 1))
    return ordered[index]


def summarize(lookups: Sequence[Lookup], slow: float = 1.0) -> dict[str, Any]:
    """Lookups, failures, latency (ms: p50, p99, max), lookups that took ``slow`` seconds
    or more, the seconds spent in those and in failed ones (the loop's time without an
    answer), errors by name, and when the first and last failure began (monotonic s)."""
    failed = [lookup for lookup in lookups if not lookup.ok]
    ordered = sorted(lookup.seconds for lookup in lookups)
    errors: dict[str, int] = {}
    for lookup in failed:
        errors[lookup.error] = errors.get(lookup.error, 0) + 1

    def ms(value: float) -> float:
        return round(value * 1000, 2)

    return {
        "lookups": len(lookups),
        "failed": len(failed),
        "p50_ms": ms(_percentile(ordered, 0.5)) if ordered else None,
        "p99_ms": ms(_percentile(ordered, 0.99)) if ordered else None,
        "max_ms": ms(ordered[-1]) if ordered else None,
        f"over_{slow:g}s": sum(1 for s in ordered if s >= slow),
        "stalled_s": round(sum(lk.seconds for lk in lookups if not lk.ok or lk.seconds >= slow), 2),
        "errors": dict(sorted(errors.items())),
        "first_failure": failed[0].start if failed else None,
        "last_failure": failed[-1].start if failed else None,
    }


class _Records:
    """A lookups file read as it grows (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lookups: list[Lookup] = []
        self.failed = 0

    def read(self) -> list[Lookup]:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as stream:
            stream.seek(self.offset)
            chunk = stream.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offset += len(complete)
            new = parse_lookups(complete.decode())
            self.lookups.extend(new)
            self.failed += sum(1 for lookup in new if not lookup.ok)
        return self.lookups


def _free_index(node: SandboxNode) -> int:
    links = set(node.links())
    return next(i for i in range(1, 250) if f"vpod{i}" not in links)


class Pod:
    """A pod on ``node`` resolving ``names`` through ``nameservers`` with each of ``libcs``.

    ``name`` names its directory ``<node workdir>/pods/<name>/`` and its log
    ``<node workdir>/pod-<name>.log``. :meth:`start` returns once every libc's loop has
    resolved once; :meth:`close` (also on ``with`` exit, and with the node) ends it.
    """

    def __init__(
        self,
        node: SandboxNode,
        name: str = "pod",
        *,
        nameservers: Sequence[str] = (LOCAL_DNS,),
        namespace: str = "default",
        names: Mapping[str, str] = NAMES,
        libcs: Sequence[str] = LIBCS,
        interval_ms: int = INTERVAL_MS,
    ) -> None:
        unknown = set(libcs) - set(LIBCS)
        if unknown or not libcs:
            raise ValueError(f"libcs {list(libcs)}: expected some of {LIBCS}")
        self.node = node
        self.name = name
        self.nameservers = tuple(nameservers)
        self.namespace = namespace
        self.names = dict(names)
        self.libcs = tuple(libcs)
        self.interval_ms = interval_ms
        self.dir = node.workdir / "pods" / name
        self._records = {libc: _Records(self.dir / f"{libc}.lookups") for libc in self.libcs}
        self._proc: NodeProcess | None = None
        #: the pod's IP (set by :meth:`start`)
        self.address = ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        """Build the pod and start its loops; on failure nothing of it is left."""
        binaries = {libc: build_resolver(libc) for libc in self.libcs}
        self.dir.mkdir(parents=True, exist_ok=False)
        try:
            self._start(binaries)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, binaries: Mapping[str, Path]) -> None:
        conf, ready, go = self.dir / "resolv.conf", self.dir / "ready", self.dir / "go"
        conf.write_text(resolv_conf(self.nameservers, self.namespace))
        targets = [f"{name}={ip}" for name, ip in self.names.items()]
        loops = "".join(
            f"{shlex.join([str(binaries[libc]), str(self.interval_ms), *targets])}"
            f" > {shlex.quote(str(self._records[libc].path))} &\n"
            for libc in self.libcs
        )
        script = self.dir / "pod.sh"
        script.write_text(
            "set -e\n"
            f"mount --bind {shlex.quote(str(conf))} /etc/resolv.conf\n"
            "ip link set lo up\n"
            f": > {shlex.quote(str(ready))}\n"
            f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.01; done\n"
            f"{loops}"
            "wait\n"
        )
        # a pid namespace too: killing unshare (--kill-child) ends its init, hence the loops
        self._proc = self.node.spawn(
            f"pod-{self.name}",
            [
                "unshare",
                "--net",
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "sh",
                str(script),
            ],
        )
        self._wait("its namespaces", ready.exists)
        pid = self._proc.inner_pid()
        if pid is None:
            raise SandboxError(f"pod {self.name}: gone; {self.node.log_tail('pod-' + self.name)}")
        self._wire(f"/proc/{pid}/ns/net")
        go.touch()
        self._wait("a first lookup of every libc", self._answered)

    def _wire(self, pod_net: str) -> None:
        """The veth pair: ``vpodN`` in the node, ``eth0`` in the pod, and the routes."""
        index = _free_index(self.node)
        node_net = f"/proc/{self.node.init_pid}/ns/net"
        node_ip, pod_ip, link = f"10.244.{index}.1", f"10.244.{index}.2", f"vpod{index}"
        for net, args in (
            (node_net, ["link", "add", link, "type", "veth", *("peer", "name", "eth0")]),
            (node_net, ["link", "set", "eth0", "netns", pod_net]),
            (node_net, ["addr", "add", f"{node_ip}/24", "dev", link]),
            (node_net, ["link", "set", link, "up"]),
            (pod_net, ["addr", "add", f"{pod_ip}/24", "dev", "eth0"]),
            (pod_net, ["link", "set", "eth0", "up"]),
            (pod_net, ["route", "add", "default", "via", node_ip]),
        ):
            argv = ["nsenter", f"--net={net}", "--", "ip", *args]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            if result.returncode != 0:
                raise SandboxError(f"pod {self.name}: {shlex.join(argv)}: {result.stderr.strip()}")
        self.address = pod_ip

    def _answered(self) -> bool:
        return all(any(lk.ok for lk in self.lookups(libc)) for libc in self.libcs)

    def _wait(self, what: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _WAIT
        while not probe():
            if self._proc is not None and self._proc.poll() is not None:
                raise SandboxError(
                    f"pod {self.name} exited: {self.node.log_tail('pod-' + self.name)}"
                )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"pod {self.name}: {what} not there after {_WAIT:g}s; "
                    f"{self.counts()}; {self.node.log_tail('pod-' + self.name)}; "
                    f"{self.node.diagnostics()}"
                )
            time.sleep(0.01)

    def close(self) -> None:
        """End the pod (its namespaces, the veth pair and the loops go with its init)."""
        if self._proc is not None:
            self._proc.end()
            self._proc = None

    # -- what it saw ----------------------------------------------------------------------
    def lookups(self, libc: str) -> list[Lookup]:
        """Every lookup of ``libc``'s loop finished so far, in order."""
        return list(self._records[libc].read())

    def counts(self) -> dict[str, dict[str, int]]:
        """Lookups and failed lookups so far: ``{"glibc": {"lookups": N, "failed": M},
        "musl": {...}, "all": {...}}``; cheap (reads only what was added since the last
        call), so a live display may call it every 200 ms."""
        out = {}
        for libc in self.libcs:
            records = self._records[libc]
            out[libc] = {"lookups": len(records.read()), "failed": records.failed}
        out["all"] = {key: sum(c[key] for c in out.values()) for key in ("lookups", "failed")}
        return out

    def settle(self, until: float, timeout: float = 45.0) -> dict[str, float | None]:
        """Wait until every lookup that began before ``until`` has finished (one still
        waiting for its resolver's timeouts is in no file yet); per libc, when the lookup
        still unfinished at ``timeout`` began (None: all finished)."""
        deadline = time.monotonic() + timeout

        def unfinished() -> dict[str, float | None]:
            out: dict[str, float | None] = {}
            for libc in self.libcs:
                found = self._records[libc].read()
                last = found[-1] if found else None
                done = last is not None and last.start + last.seconds >= until
                out[libc] = None if done else (last.start + last.seconds if last else until)
            return out

        while True:
            left = unfinished()
            if all(value is None for value in left.values()) or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def summary(
        self, since: float | None = None, until: float | None = None, slow: float = 1.0
    ) -> dict[str, dict[str, Any]]:
        """:func:`summarize` per libc over the lookups that began in [since, until)."""
        low, high = since if since is not None else float("-inf"), until or float("inf")
        return {
            libc: summarize([lk for lk in self.lookups(libc) if low <= lk.start < high], slow)
            for libc in self.libcs
        }
