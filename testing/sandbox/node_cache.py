"""The real node-cache (NodeLocal DNSCache) for the sandbox nodes: found, and configured
from the chart.

The binary, in this order (:func:`find_binary`):

1. ``NODE_CACHE_BIN``: a node-cache executable (nothing else is tried when it is set);
2. ``../shared/tools/node-cache/`` beside the repository: ``node-cache-linux-amd64.xz``,
   checked against its ``SHA256SUMS``, unpacked once into ``.tools/node-cache/``
   (gitignored) and the unpacked binary checked too;
3. ``skopeo`` (Debian package ``skopeo``) on a machine with internet: the chart's own image
   (``registry.k8s.io/dns/k8s-dns-node-cache:<the chart's tag>``) copied into an OCI layout
   under ``.tools/node-cache/`` and its ``/node-cache`` taken from the layers.

When none works :class:`NodeCacheMissing` says how to provide one; the tests that need
node-cache fail with it (they never skip).

The configuration is the chart's, not a copy (:func:`chart_node_cache`): ``helm template``
of ``chart/`` with its default values (the IPVS form), rendered once per process; the
node-cache ConfigMap's ``Corefile`` and the node-cache DaemonSet container's args and plain
env. :func:`node_cache_launch` turns them into what runs in a sandbox node: node-cache in
a mount namespace of its own where ``/etc`` is the machine's overlaid with a directory of
the node's work directory and ``/run`` is such a directory (so ``-conf /etc/Corefile``, a
``-pidfile`` and ``/run/xtables.lock`` stay in the node); ``/etc/coredns/Corefile.base``
is the rendered Corefile, ``/etc/resolv.conf`` names the upstream stand-in (node-cache
fills ``__PILLAR__UPSTREAM__SERVERS__`` from it; never 169.254.20.10, or CoreDNS's
``loop`` plugin stops node-cache), and ``<UPSTREAMSVC>_SERVICE_HOST`` (the env kubelet's
service links give the pod; node-cache fills ``__PILLAR__CLUSTER__DNS__`` from it) points
at the same stand-in. The rendered env and args are used as they are, so a chart that adds
flags (``-skipteardown``, ``-pidfile``) or env is run with them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import platform
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "NODE_CACHE_BIN"
#: the shared tools directory (``../shared/tools/node-cache/`` from the repository root)
SHARED_DIR = REPO_ROOT.parent / "shared" / "tools" / "node-cache"
SHARED_XZ = "node-cache-linux-amd64.xz"
SHARED_BINARY = "node-cache-linux-amd64"
#: where the unpacked or extracted binaries are kept (gitignored)
CACHE_DIR = REPO_ROOT / ".tools" / "node-cache"
CHART = REPO_ROOT / "chart"
#: the container of the chart's node-cache DaemonSet that serves the IPv4 local address
CONTAINER = "node-cache"
#: the release namespace of the render: where the chart's kube-dns-upstream Service works
NAMESPACE = "kube-system"
#: the values the chart requires that do not concern node-cache
RENDER_SET = (
    "--set",
    "agent.image.repository=sandbox.invalid/nodelocaldns-agent",
    "--set",
    "agent.nodeAdmissionPolicy=never",
)
HOW_TO_PROVIDE = (
    f"set {ENV_VAR}=/path/to/node-cache, or put {SHARED_XZ} and SHA256SUMS in "
    f"{SHARED_DIR}, or install skopeo (Debian package `skopeo`) on a machine that can "
    "pull the chart's node-cache image"
)


class NodeCacheMissing(RuntimeError):
    """No node-cache binary could be found or obtained."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sums(path: Path) -> dict[str, str]:
    """``SHA256SUMS`` (``<hex>  <name>`` lines) as name -> hex."""
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.strip().partition(" ")
        if digest and name:
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def from_env(environ: Mapping[str, str]) -> Path | None:
    """``NODE_CACHE_BIN`` when set (an executable file, else an error naming it)."""
    value = environ.get(ENV_VAR, "")
    if not value:
        return None
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise NodeCacheMissing(f"{ENV_VAR}={value}: not an executable file")
    return path


def from_shared(shared: Path = SHARED_DIR, cache: Path = CACHE_DIR) -> Path | None:
    """The shared ``.xz``, checked and unpacked once into ``cache``; None when absent."""
    packed, sums_file = shared / SHARED_XZ, shared / "SHA256SUMS"
    if not packed.is_file():
        return None
    if not sums_file.is_file():
        raise NodeCacheMissing(f"{sums_file}: missing (needed to check {packed})")
    sums = _sums(sums_file)
    expected = sums.get(SHARED_BINARY)
    if expected is None or SHARED_XZ not in sums:
        raise NodeCacheMissing(f"{sums_file}: expected lines for {SHARED_XZ} and {SHARED_BINARY}")
    binary = cache / "node-cache"
    if binary.is_file() and _sha256(binary) == expected:
        return binary
    if _sha256(packed) != sums[SHARED_XZ]:
        raise NodeCacheMissing(f"{packed}: SHA-256 differs from {sums_file}")
    cache.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".node-cache.{os.getpid()}")
    with lzma.open(packed) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    if _sha256(partial) != expected:
        partial.unlink()
        raise NodeCacheMissing(f"{packed} unpacked: SHA-256 differs from {sums_file}")
    partial.chmod(0o755)
    partial.replace(binary)
    return binary


def skopeo_argv(skopeo: str, image: str, layout: Path, arch: str) -> list[str]:
    """``skopeo copy`` of ``image`` (``repo:tag`` or ``repo@sha256:...``) for linux/arch
    into the OCI layout directory ``layout`` (tag ``node-cache``)."""
    return [
        skopeo,
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        "copy",
        "--retry-times",
        "2",
        f"docker://{image}",
        f"oci:{layout}:node-cache",
    ]


def _go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def extract_from_oci(layout: Path, target: Path, member: str = "node-cache") -> None:
    """Write the file ``/member`` of the image in OCI ``layout`` to ``target`` (the last
    layer holding it wins, as in the image's filesystem)."""

    def blob(digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return layout / "blobs" / algorithm / hexdigest

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    found = False
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"])) as tar:
            for info in tar:
                if info.name.lstrip("./") == member and info.isfile():
                    source = tar.extractfile(info)
                    if source is not None:
                        target.write_bytes(source.read())
                        found = True
    if not found:
        raise NodeCacheMissing(f"no /{member} in the image copied to {layout}")
    target.chmod(0o755)


def from_image(image: str, cache: Path = CACHE_DIR) -> Path | None:
    """The image's ``/node-cache`` through skopeo (None when skopeo is not installed)."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        return None
    name = image.replace("/", "_").replace(":", "_").replace("@", "_")
    binary = cache / name / "node-cache"
    if binary.is_file():
        return binary
    layout = cache / name / "oci"
    layout.parent.mkdir(parents=True, exist_ok=True)
    argv = skopeo_argv(skopeo, image, layout, _go_arch())
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise NodeCacheMissing(f"{shlex.join(argv)}: {result.stderr.strip()}")
    extract_from_oci(layout, binary)
    return binary


def locate(
    environ: Mapping[str, str],
    shared: Path,
    cache: Path,
    image: Callable[[], str],
) -> Path:
    """The first of ``NODE_CACHE_BIN``, the shared ``.xz`` and the ``image()`` through
    skopeo that works; :class:`NodeCacheMissing` saying what failed and how to provide one."""
    problems = []
    try:
        found = from_env(environ)
    except NodeCacheMissing as exc:
        raise NodeCacheMissing(f"{exc}: {HOW_TO_PROVIDE}") from exc
    if found is not None:
        return found
    sources = (lambda: from_shared(shared, cache), lambda: from_image(image(), cache))
    for source in sources:
        try:
            found = source()
        except (NodeCacheMissing, OSError, subprocess.SubprocessError) as exc:
            problems.append(str(exc))
            continue
        if found is not None:
            return found
    why = f" ({'; '.join(problems)})" if problems else ""
    raise NodeCacheMissing(f"no node-cache binary{why}: {HOW_TO_PROVIDE}")


@functools.cache
def find_binary() -> Path:
    """The node-cache binary (see the module docstring for the order), once per process."""
    return locate(os.environ, SHARED_DIR, CACHE_DIR, lambda: chart_node_cache().image)


# -- the chart's node-cache ------------------------------------------------------------------
@dataclass(frozen=True)
class ChartNodeCache:
    """What the chart gives node-cache: its Corefile and its container."""

    corefile: str
    args: tuple[str, ...]
    #: the container's plain ``env`` values (``valueFrom`` ones are not the harness's)
    env: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    #: the args of each init container of the pod, in order: agent commands (the init
    #: containers run the agent's image, e.g. ``fast-refusal`` of nodeLocalDNS.fastRefusal)
    init: tuple[tuple[str, ...], ...] = ()

    def flag(self, name: str, default: str = "") -> str:
        """The value of ``-name VALUE`` / ``-name=VALUE`` in the args (Go flag syntax)."""
        args = list(self.args)
        for i, arg in enumerate(args):
            key, eq, value = arg.lstrip("-").partition("=")
            if arg.startswith("-") and key == name:
                if eq:
                    return value
                if i + 1 < len(args) and not args[i + 1].startswith("-"):
                    return args[i + 1]
                return "true"
        return default

    @property
    def local_ips(self) -> tuple[str, ...]:
        return tuple(filter(None, self.flag("localip").split(",")))

    @property
    def health_port(self) -> int:
        return int(self.flag("health-port", "8080"))

    @property
    def service_env(self) -> str:
        """The env var node-cache reads the upstream Service's IP from (upstream
        cmd/node-cache/app/cache_app.go ``toSvcEnv``: dashes to underscores, upper case,
        ``_SERVICE_HOST``; ``-upstreamsvc`` defaults to ``kube-dns``)."""
        return self.flag("upstreamsvc", "kube-dns").replace("-", "_").upper() + "_SERVICE_HOST"

    @property
    def sets_up_iptables(self) -> bool:
        return self.flag("setupiptables", "true").lower() in ("true", "1", "t")


def _agent_image(docs: Sequence[dict[str, Any]]) -> str | None:
    """The image of the DaemonSet whose container is named ``agent``."""
    for doc in docs:
        if doc.get("kind") == "DaemonSet":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["name"] == "agent":
                    return str(c.get("image", ""))
    return None


def _init_commands(pod: Mapping[str, Any], agent_image: str | None) -> tuple[tuple[str, ...], ...]:
    """The args of the pod's init containers, each an agent command (the harness runs
    them with the agent of this checkout; an init container of another image it cannot)."""
    commands = []
    for c in pod.get("initContainers", []):
        if c.get("image") != agent_image or c.get("command"):
            raise ValueError(
                f"init container {c['name']!r} runs {c.get('image')!r} "
                f"{c.get('command', '')}: the sandbox runs only the agent image's entry point "
                f"({agent_image!r})"
            )
        commands.append(tuple(str(a) for a in c.get("args", [])))
    return tuple(commands)


def parse_render(documents: Sequence[Any]) -> ChartNodeCache:
    """The node-cache DaemonSet's ``node-cache`` container, its init containers and the
    ConfigMap it mounts."""
    docs = [d for d in documents if isinstance(d, dict)]
    for doc in docs:
        if doc.get("kind") != "DaemonSet":
            continue
        pod = doc["spec"]["template"]["spec"]
        container = next((c for c in pod["containers"] if c["name"] == CONTAINER), None)
        if container is None:
            continue
        maps = {
            v["name"]: v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v
        }
        names = {maps[m["name"]] for m in container.get("volumeMounts", []) if m["name"] in maps}
        corefile = next(
            (
                d["data"]["Corefile"]
                for d in docs
                if d.get("kind") == "ConfigMap"
                and d["metadata"]["name"] in names
                and "Corefile" in d.get("data", {})
            ),
            None,
        )
        if corefile is None:
            raise ValueError(f"no ConfigMap with a Corefile mounted by {doc['metadata']['name']}")
        env = {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
        return ChartNodeCache(
            corefile,
            tuple(str(a) for a in [*container.get("command", [])[1:], *container.get("args", [])]),
            env,
            container.get("image", ""),
            _init_commands(pod, _agent_image(docs)),
        )
    raise ValueError(f"no DaemonSet with a {CONTAINER!r} container in the render")


def helm_binary() -> str:
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    found = str(local) if local.is_file() else shutil.which("helm")
    if found is None:
        raise NodeCacheMissing(
            f"helm not found ({local} or PATH): run `bash scripts/setup.sh` to render the chart"
        )
    return found


@functools.cache
def chart_node_cache(values: tuple[str, ...] = ()) -> ChartNodeCache:
    """``helm template`` of ``chart/`` with its default values and then ``values`` (helm
    arguments, e.g. ``("--set", "nodeLocalDNS.skipTeardown=false")``), rendered once per
    process and ``values``."""
    argv = [
        helm_binary(),
        "template",
        "nld",
        str(CHART),
        "--namespace",
        NAMESPACE,
        *RENDER_SET,
        *values,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise NodeCacheMissing(f"{shlex.join(argv)}: {result.stderr.strip()}")
    return parse_render(list(yaml.safe_load_all(result.stdout)))


# -- running it in a node ----------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """How to start node-cache in a node: argv (run with ``nsenter`` into the node) and env."""

    argv: list[str]
    env: dict[str, str]


def node_cache_launch(
    chart: ChartNodeCache, binary: Path, home: Path, upstream: str, environ: Mapping[str, str]
) -> Launch:
    """node-cache as the chart runs it, in a mount namespace whose ``/etc`` is overlaid with
    ``home/etc`` and whose ``/run`` is ``home/run`` (written here), forwarding to the DNS stand-in
    ``upstream`` for the cluster's Service and for the node's resolv.conf."""
    upper, work, run = home / "etc", home / "etc-work", home / "run"
    for directory in (upper / "coredns", upper / "kube-dns", work, run):
        directory.mkdir(parents=True, exist_ok=True)
    (upper / "coredns" / "Corefile.base").write_text(chart.corefile)
    (upper / "resolv.conf").write_text(f"nameserver {upstream}\n")
    # /etc: the machine's, overlaid (node-cache's writes and our files stay in `home`;
    # iptables still finds its libraries and /etc/protocols); /run: the node's own.
    overlay = f"lowerdir=/etc,upperdir={upper},workdir={work}"
    script = (
        f"mount --bind {shlex.quote(str(run))} /run && "
        f"mount -t overlay node-cache -o {shlex.quote(overlay)} /etc && "
        'exec "$0" "$@"'
    )
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    return Launch(
        [*argv, str(binary), *chart.args],
        {
            **environ,
            **chart.env,
            chart.service_env: upstream,
            chart.service_env.removesuffix("HOST") + "PORT": "53",
        },
    )


def require_iptables(chart: ChartNodeCache) -> None:
    """node-cache's ``-setupiptables`` (on unless the chart turns it off) runs iptables."""
    if chart.sets_up_iptables and shutil.which("iptables") is None:
        raise NodeCacheMissing(
            "iptables not found: node-cache (-setupiptables) adds its NOTRACK rules in the "
            "sandbox node; install the Debian package `iptables`"
        )
