"""A node-cache surge update, measured with the real node-cache (not a test).

In a network and mount namespace of its own (``unshare --net --mount``; never the
machine's), with the Corefile and arguments rendered from the chart (``helm template``):

1. the ``nodelocaldns`` interface (``ifb``: this kernel has no ``dummy``) holding
   169.254.20.10, and dnsmasq on 10.96.0.53 as the stand-in for CoreDNS behind
   ``kube-dns-upstream`` (``--local=/cluster.local/``: NXDOMAIN for unknown cluster names,
   so a glibc search-list walk goes on to the next name);
2. node-cache #1, ``KUBE_DNS_UPSTREAM_SERVICE_HOST=10.96.0.53``; the seconds until its
   NOTRACK rules exist are recorded (``-pidfile``: at once; without it: the 60 s sync);
3. a "pod": a process with its own /etc/resolv.conf (``nameserver 169.254.20.10``, the
   search list and ``ndots:5`` kubelet writes) resolving names through glibc
   ``getaddrinfo`` every 10 ms;
4. node-cache #2 (the surge pod), started and ready (its pidfile and /health), then
   SIGTERM to #1, as the DaemonSet controller does once #2 has been Ready for
   minReadySeconds; the loop runs on and counts failed lookups.

Each run is done with the chart's arguments and with its old ones (no ``-skipteardown``,
no ``-pidfile``), and printed as one JSON object.

    python bench/nodecache_surge.py --json

``--check`` only starts node-cache #1 with the rendered Corefile (``-f`` values files of
the chart) and resolves a cluster and an outside name through it: the chart's Corefile,
parsed and served by the real program (tests/test_chart.py).

The binary: ``NODE_CACHE_BIN``, else ``../shared/tools/node-cache/node-cache-linux-amd64.xz``
checked against its ``SHA256SUMS`` and unpacked to ``.tools/node-cache/``. Needs root,
``unshare``, ``ip``, ``dnsmasq``, ``iptables`` (Debian package) and helm in ``.tools/bin``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import JSON, REPO_ROOT, emit, machine
from testing.sandbox.node_cache import NodeCacheMissing, find_binary

HELM = REPO_ROOT / ".tools" / "bin" / "helm"

LOCAL_IP = "169.254.20.10"
UPSTREAM_IP = "10.96.0.53"
HEALTH_PORT = 8080
POD_RESOLV_CONF = (
    f"nameserver {LOCAL_IP}\n"
    "search default.svc.cluster.local svc.cluster.local cluster.local\n"
    "options ndots:5\n"
)
#: (name the pod asks, what dnsmasq answers): a cluster name through the search list
#: and an outside name after it
NAMES = (("kubernetes.default", "10.96.0.1"), ("example.org", "192.0.2.10"))
HOST_RECORDS = (
    ("kubernetes.default.svc.cluster.local", "10.96.0.1"),
    ("example.org", "192.0.2.10"),
)


class BenchError(Exception):
    """The benchmark cannot run here; the message says what is missing."""


# ----------------------------------------------------------------------------- chart
def render(values_files: Sequence[str]) -> tuple[str, list[str]]:
    """The node-cache ConfigMap's Corefile and the node-cache container's args."""
    import yaml

    argv = [
        str(HELM),
        "template",
        "nlda",
        str(REPO_ROOT / "chart"),
        "--namespace",
        "kube-system",
        "--set",
        "agent.image.repository=registry.example.com/platform/nodelocaldns-agent",
        "--set",
        "agent.nodeAdmissionPolicy=never",
        "--set",
        f"nodeLocalDNS.localIP={LOCAL_IP}",
        "--set",
        f"nodeLocalDNS.healthPort={HEALTH_PORT}",
        "--set-json",
        f"nodeLocalDNS.upstreamServers={json.dumps([UPSTREAM_IP])}",
    ]
    for f in values_files:
        argv += ["-f", f]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode:
        raise BenchError(f"helm template failed: {proc.stderr.strip()}")
    corefile, args = "", []
    for doc in yaml.safe_load_all(proc.stdout):
        if not doc:
            continue
        comp = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if comp != "node-cache":
            continue
        if doc["kind"] == "ConfigMap":
            corefile = doc["data"]["Corefile"]
        elif doc["kind"] == "DaemonSet":
            args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
    if not corefile or not args:
        raise BenchError("the chart rendered no node-cache ConfigMap/DaemonSet")
    return corefile, args


def old_args(args: list[str]) -> list[str]:
    """The chart's arguments before the surge update: no -skipteardown, no -pidfile."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "-pidfile":
            skip = True
            continue
        if arg.startswith("-skipteardown"):
            continue
        out.append(arg)
    return out


def local_args(args: list[str], workdir: Path, index: int) -> list[str]:
    """The rendered args with the container's paths moved into ``workdir`` (one set per
    process: each pod has its own root filesystem)."""
    out = list(args)
    for flag, path in (
        ("-conf", workdir / f"Corefile.{index}"),
        ("-pidfile", workdir / f"coredns.{index}.pid"),
    ):
        if flag in out:
            out[out.index(flag) + 1] = str(path)
    return [*out, "-basecorefile", str(workdir / "base" / "Corefile.base")]


# ----------------------------------------------------------------------------- inside the namespace
def run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode:
        raise BenchError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def healthy() -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOCAL_IP}:{HEALTH_PORT}/health", timeout=0.5):
            return True
    except OSError:
        return False


def nodecache_rules() -> int:
    rules = run(["iptables-save"])
    return sum(1 for line in rules.splitlines() if "NodeLocal DNS Cache" in line)


def wait(predicate: Any, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return round(time.monotonic() - start, 2)
        time.sleep(0.05)
    return None


class Inside:
    """Everything run in the namespace; its children die with it (``stop``)."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[str, Path] = {}

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def network(self) -> None:
        run(["ip", "link", "set", "lo", "up"])
        for link, address in (("nodelocaldns", LOCAL_IP), ("kdnsup", UPSTREAM_IP)):
            run(["ip", "link", "add", link, "type", "ifb"])
            run(["ip", "addr", "add", f"{address}/32", "dev", link])
            run(["ip", "link", "set", link, "up"])

    def dnsmasq(self) -> None:
        argv = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--listen-address={UPSTREAM_IP}",
            "--bind-interfaces",
            "--local=/cluster.local/",
            "--local=/example.org/",
            "--pid-file=",
            "--user=root",
        ]
        argv += [f"--host-record={name},{ip}" for name, ip in HOST_RECORDS]
        self.spawn("dnsmasq", argv)

    def node_cache(self, index: int, args: list[str]) -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        env["KUBE_DNS_UPSTREAM_SERVICE_HOST"] = UPSTREAM_IP
        return self.spawn(
            f"node-cache-{index}",
            [str(self.binary), *local_args(args, self.workdir, index)],
            env,
        )

    def pod(self, seconds: float) -> subprocess.Popen[bytes]:
        """The resolver loop, with a pod's resolv.conf bind-mounted in a mount namespace of
        its own (node-cache's upstream must not be 169.254.20.10: the loop plugin)."""
        conf = self.workdir / "pod-resolv.conf"
        conf.write_text(POD_RESOLV_CONF)
        script = (
            f"mount --bind {conf} /etc/resolv.conf && exec {sys.executable} "
            f"{Path(__file__).resolve()} --resolver-loop {seconds}"
        )
        self.spawn("pod", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        return self.procs[-1]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def tail(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-2000:] if path and path.exists() else ""


def pod_result(inside: Inside, proc: subprocess.Popen[bytes], timeout: float) -> JSON:
    proc.wait(timeout=timeout)
    lines = inside.logs["pod"].read_text().strip().splitlines()
    if proc.returncode or not lines:
        raise BenchError(f"the resolver loop failed: {inside.tail('pod')}")
    result: JSON = json.loads(lines[-1])
    return result


def start_first(inside: Inside, args: list[str]) -> tuple[subprocess.Popen[bytes], JSON]:
    started = time.monotonic()
    proc = inside.node_cache(1, args)
    ready = wait(healthy, 15)
    if ready is None:
        raise BenchError(f"node-cache #1 never answered /health: {inside.tail('node-cache-1')}")
    rules = wait(lambda: nodecache_rules() > 0, 5)
    return proc, {
        "ready_s": ready,
        # -pidfile: the rules follow CoreDNS's start; without: the first 60 s sync
        "iptables_rules_s": None if rules is None else round(time.monotonic() - started, 2),
    }


def surge(inside: Inside, args: list[str], before: float, overlap: float, after: float) -> JSON:
    first_proc, first = start_first(inside, args)
    pod = inside.pod(before + overlap + after + 60)
    pod_started = time.monotonic()
    time.sleep(before)
    second = inside.node_cache(2, args)
    # #2 ready: its own CoreDNS servers listen (caddy writes the pidfile after Start),
    # the node answers /health; then minReadySeconds
    pidfile = inside.workdir / "coredns.2.pid"
    if "-pidfile" in args and wait(pidfile.exists, 15) is None:
        raise BenchError(f"node-cache #2 never wrote its pidfile: {inside.tail('node-cache-2')}")
    time.sleep(overlap)
    if second.poll() is not None:
        raise BenchError(f"node-cache #2 exited: {inside.tail('node-cache-2')}")
    sigterm_at = time.monotonic()
    first_proc.send_signal(signal.SIGTERM)
    first_proc.wait(timeout=30)
    exited_s = round(time.monotonic() - sigterm_at, 2)
    interface_kept = (
        subprocess.run(
            ["ip", "link", "show", "nodelocaldns"], capture_output=True, check=False
        ).returncode
        == 0
    )
    rules_kept = nodecache_rules()
    time.sleep(after)
    pod.send_signal(signal.SIGTERM)
    result = pod_result(inside, pod, 30)
    return {
        "first_start": first,
        "sigterm_s": round(sigterm_at - pod_started, 2),
        "first_exit_s": exited_s,
        "interface_kept": interface_kept,
        "iptables_rules_kept": rules_kept,
        # kubernetes/dns#667: #2 cannot have :9353 (no SO_REUSEPORT) and serves on
        "second_metrics_bind_error": "Failed to start metrics handler"
        in inside.logs["node-cache-2"].read_text(errors="replace"),
        **result,
    }


def inside_main(opts: argparse.Namespace) -> JSON:
    binary = Path(opts.binary)
    args: list[str] = json.loads(opts.args_json)
    with tempfile.TemporaryDirectory(prefix="nodecache-surge-") as tmp:
        workdir = Path(tmp)
        (workdir / "base").mkdir()
        (workdir / "base" / "Corefile.base").write_text(opts.corefile)
        inside = Inside(binary, workdir)
        try:
            inside.network()
            inside.dnsmasq()
            if opts.check:
                _, first = start_first(inside, args)
                result = pod_result(inside, inside.pod(1.5), 30)
                return {"corefile_served": result["failed"] == 0, "first_start": first, **result}
            return surge(inside, args, opts.before, opts.overlap, opts.after)
        finally:
            inside.stop()


# ----------------------------------------------------------------------------- the pod
def resolver_loop(seconds: float) -> JSON:
    """getaddrinfo (glibc, /etc/resolv.conf) every 10 ms for ``seconds`` or until SIGTERM;
    one JSON line."""
    latencies: list[float] = []
    failures: list[float] = []
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
    start = time.monotonic()
    i = 0
    while not stopped and time.monotonic() - start < seconds:
        name, want = NAMES[i % len(NAMES)]
        i += 1
        t0 = time.monotonic()
        try:
            got = {
                a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
            }
            ok = want in got
        except OSError:
            ok = False
        took = time.monotonic() - t0
        latencies.append(took)
        if not ok:
            failures.append(round(t0 - start, 3))
        time.sleep(max(0.0, 0.01 - took))
    ordered = sorted(latencies)
    return {
        "lookups": len(latencies),
        "failed": len(failures),
        "first_failure_s": failures[0] if failures else None,
        "last_failure_s": failures[-1] if failures else None,
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2) if ordered else None,
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
    }


# ----------------------------------------------------------------------------- outside
def in_namespace(
    binary: Path, corefile: str, args: list[str], opts: argparse.Namespace, check: bool
) -> JSON:
    argv = [
        "unshare",
        "--net",
        "--mount",
        "--propagation",
        "private",
        sys.executable,
        str(Path(__file__).resolve()),
        "--inside",
        "--binary",
        str(binary),
        "--corefile",
        corefile,
        "--args-json",
        json.dumps(args),
        "--before",
        str(opts.before),
        "--overlap",
        str(opts.overlap),
        "--after",
        str(opts.after),
    ]
    if check:
        argv.append("--check")
    timeout = opts.before + opts.overlap + opts.after + 120
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode:
        raise BenchError(f"the run in the namespace failed:\n{proc.stderr.strip()[-3000:]}")
    result: JSON = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (network namespaces, interfaces, iptables)")
    for tool in ("unshare", "ip", "dnsmasq", "iptables", "iptables-save"):
        if not shutil.which(tool):
            package = {"unshare": "util-linux", "ip": "iproute2"}.get(tool, tool.split("-")[0])
            raise BenchError(f"{tool} not found: apt-get install {package}")
    if not HELM.is_file():
        raise BenchError(f"{HELM} not found (scripts/setup.sh installs helm there)")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("-f", "--values", action="append", default=[], help="chart values file")
    p.add_argument("--before", type=float, default=3.0, help="seconds of lookups before #2")
    p.add_argument("--overlap", type=float, default=2.0, help="seconds #1 and #2 both run")
    p.add_argument("--after", type=float, default=8.0, help="seconds of lookups after SIGTERM")
    p.add_argument("--check", action="store_true", help="serve the rendered Corefile once")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--binary", help=argparse.SUPPRESS)
    p.add_argument("--corefile", help=argparse.SUPPRESS)
    p.add_argument("--args-json", help=argparse.SUPPRESS)
    p.add_argument("--resolver-loop", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    opts = parse(argv)
    try:
        if opts.resolver_loop is not None:
            print(json.dumps(resolver_loop(opts.resolver_loop)), flush=True)
            return 0
        if opts.inside:
            print(json.dumps(inside_main(opts)), flush=True)
            return 0
        preflight()
        try:
            binary = find_binary()
        except NodeCacheMissing as exc:
            raise BenchError(str(exc)) from exc
        corefile, args = render(opts.values)
        if opts.check:
            emit(in_namespace(binary, corefile, args, opts, check=True), opts.json)
            return 0
        runs = {}
        for name, run_args in (("chart", args), ("old", old_args(args))):
            if not opts.quiet:
                print(f"nodecache_surge: {name} arguments: {' '.join(run_args)}", file=sys.stderr)
            runs[name] = in_namespace(binary, corefile, run_args, opts, check=False)
        emit(
            {
                "benchmark": "nodecache_surge",
                "machine": machine(),
                "args": {"chart": args, "old": old_args(args)},
                "runs": runs,
            },
            opts.json,
        )
    except BenchError as e:
        print(f"nodecache_surge: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
