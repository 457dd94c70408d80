"""How the harness finds the real node-cache and runs it as the chart says
(testing/sandbox/node_cache.py): the finder's order and checks, the skopeo route's argv and
extraction, the chart's render as node-cache reads it (no namespaces, no network); and
that a test failing with a node-cache running leaves neither it nor its interface."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import socket
import tarfile
from pathlib import Path

import psutil
import pytest

from testing.sandbox import node_cache
from testing.sandbox.constants import LOCAL_DNS, LOCAL_DNS_LINK
from testing.sandbox.node import SandboxError, SandboxNode
from testing.sandbox.node_cache import (
    ChartNodeCache,
    NodeCacheMissing,
    chart_node_cache,
    extract_from_oci,
    locate,
    node_cache_launch,
    parse_render,
    require_iptables,
    skopeo_argv,
)

BINARY = b"\x7fELF pretend node-cache\n"


def _shared(tmp_path: Path, *, packed: bytes = BINARY, unpacked: bytes = BINARY) -> Path:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "node-cache-linux-amd64.xz").write_bytes(lzma.compress(packed))
    sums = {
        "node-cache-linux-amd64.xz": (shared / "node-cache-linux-amd64.xz").read_bytes(),
        "node-cache-linux-amd64": unpacked,
    }
    (shared / "SHA256SUMS").write_text(
        "".join(f"{hashlib.sha256(body).hexdigest()}  {name}\n" for name, body in sums.items())
    )
    return shared


def _no_image() -> str:
    raise AssertionError("the image is asked for only when nothing before it works")


def test_node_cache_bin_wins_and_must_be_executable(tmp_path: Path) -> None:
    binary = tmp_path / "nc"
    binary.write_bytes(BINARY)
    binary.chmod(0o755)
    shared = _shared(tmp_path)
    assert locate({"NODE_CACHE_BIN": str(binary)}, shared, tmp_path / "c", _no_image) == binary
    binary.chmod(0o644)
    with pytest.raises(NodeCacheMissing, match=r"NODE_CACHE_BIN=.*not an executable file"):
        locate({"NODE_CACHE_BIN": str(binary)}, shared, tmp_path / "c", _no_image)


def test_shared_xz_is_checked_unpacked_once_and_reused(tmp_path: Path) -> None:
    shared, cache = _shared(tmp_path), tmp_path / "cache"
    found = locate({}, shared, cache, _no_image)
    assert found == cache / "node-cache" and found.read_bytes() == BINARY
    assert found.stat().st_mode & 0o111
    (shared / "node-cache-linux-amd64.xz").write_bytes(b"not read again")
    assert locate({}, shared, cache, _no_image) == found


def test_shared_xz_with_a_wrong_checksum_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no skopeo
    shared = _shared(tmp_path, unpacked=b"something else")
    with pytest.raises(NodeCacheMissing) as info:
        locate({}, shared, tmp_path / "cache", lambda: "registry.invalid/nc:1")
    assert "unpacked: SHA-256 differs" in str(info.value)
    assert not (tmp_path / "cache" / "node-cache").exists()


def test_nothing_found_says_how_to_provide_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no skopeo
    with pytest.raises(NodeCacheMissing) as info:
        locate({}, tmp_path / "none", tmp_path / "cache", lambda: "registry.invalid/nc:1")
    message = str(info.value)
    assert "NODE_CACHE_BIN" in message and "SHA256SUMS" in message and "skopeo" in message


def test_a_node_without_node_cache_fails_instead_of_skipping(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NODE_CACHE_BIN", str(tmp_path / "missing"))
    node_cache.find_binary.cache_clear()
    try:
        with pytest.raises(SandboxError, match=r"real node-cache.*NODE_CACHE_BIN=.*skopeo"):
            SandboxNode(tmp_path / "n").start()
    finally:
        node_cache.find_binary.cache_clear()
    assert not (tmp_path / "n" / "node-cache").exists()


def test_skopeo_copies_the_image_for_linux_and_the_arch_into_an_oci_layout() -> None:
    image = "registry.k8s.io/dns/k8s-dns-node-cache:1.25.0"
    assert skopeo_argv("/usr/bin/skopeo", image, Path("/c/oci"), "amd64") == [
        "/usr/bin/skopeo",
        "--override-os",
        "linux",
        "--override-arch",
        "amd64",
        "copy",
        "--retry-times",
        "2",
        "docker://registry.k8s.io/dns/k8s-dns-node-cache:1.25.0",
        "oci:/c/oci:node-cache",
    ]


def _layer(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _blob(layout: Path, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    return f"sha256:{digest}"


def test_the_last_layer_holding_node_cache_wins(tmp_path: Path) -> None:
    layout = tmp_path / "oci"
    layers = [
        _layer({"node-cache": b"old", "etc/x": b"x"}),
        _layer({"./node-cache": BINARY}),
        _layer({"usr/bin/other": b"y"}),
    ]
    manifest = {"layers": [{"digest": _blob(layout, body)} for body in layers]}
    index = {"manifests": [{"digest": _blob(layout, json.dumps(manifest).encode())}]}
    (layout / "index.json").write_text(json.dumps(index))
    extract_from_oci(layout, tmp_path / "node-cache")
    assert (tmp_path / "node-cache").read_bytes() == BINARY
    manifest = {"layers": [{"digest": _blob(layout, layers[2])}]}
    index = {"manifests": [{"digest": _blob(layout, json.dumps(manifest).encode())}]}
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(NodeCacheMissing, match="no /node-cache in the image"):
        extract_from_oci(layout, tmp_path / "again")


def _render(args: list[str], env: list[dict[str, str]] | None = None) -> list[object]:
    container = {"name": "node-cache", "image": "nc:1", "args": args, "env": env or []}
    container["volumeMounts"] = [{"name": "config", "mountPath": "/etc/coredns"}]
    daemonset = {
        "kind": "DaemonSet",
        "metadata": {"name": "nld-node-cache"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "agent"}, container],
                    "volumes": [{"name": "config", "configMap": {"name": "nld-node-cache"}}],
                }
            }
        },
    }
    configmap = {
        "kind": "ConfigMap",
        "metadata": {"name": "nld-node-cache"},
        "data": {"Corefile": ".:53 {}\n"},
    }
    other = {"kind": "ConfigMap", "metadata": {"name": "other"}, "data": {"Corefile": "no"}}
    return [None, other, daemonset, configmap]


@pytest.mark.parametrize(
    ("args", "upstream_env", "iptables", "health"),
    [
        (["-localip", "169.254.20.10"], "KUBE_DNS_SERVICE_HOST", True, 8080),
        (
            ["-upstreamsvc", "kube-dns-upstream", "-health-port", "8081", "-skipteardown=true"],
            "KUBE_DNS_UPSTREAM_SERVICE_HOST",
            True,
            8081,
        ),
        (["--upstreamsvc=my-dns", "-setupiptables=false"], "MY_DNS_SERVICE_HOST", False, 8080),
    ],
)
def test_the_rendered_args_as_node_cache_parses_them(
    args: list[str], upstream_env: str, iptables: bool, health: int
) -> None:
    chart = parse_render(_render(args, [{"name": "A", "value": "1"}, {"name": "B"}]))
    assert chart.corefile == ".:53 {}\n" and chart.args == tuple(args)
    assert chart.env == {"A": "1"} and chart.image == "nc:1"
    assert chart.service_env == upstream_env
    assert chart.sets_up_iptables is iptables and chart.health_port == health


def _with_init(image: str, command: list[str] | None = None) -> list[object]:
    docs = _render([])
    agent = {
        "kind": "DaemonSet",
        "metadata": {"name": "nld-agent"},
        "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "ag:1"}]}}},
    }
    init = {"name": "fast-refusal", "image": image, "args": ["fast-refusal"]}
    if command:
        init["command"] = command
    pod = docs[2]["spec"]["template"]["spec"]  # type: ignore[index]
    pod["containers"] = pod["containers"][1:]
    pod["initContainers"] = [init]
    return [agent, *docs]


def test_init_containers_are_agent_commands() -> None:
    assert parse_render(_render([])).init == ()
    assert parse_render(_with_init("ag:1")).init == (("fast-refusal",),)
    for bad in (_with_init("busybox"), _with_init("ag:1", ["sh", "-c"])):
        with pytest.raises(ValueError, match=r"'fast-refusal' runs .*only the agent image"):
            parse_render(bad)


def test_the_chart_renders_fast_refusal_as_an_init_command() -> None:
    enabled = chart_node_cache(("--set", "nodeLocalDNS.fastRefusal.enabled=true"))
    assert enabled.init == (("fast-refusal",),)
    assert chart_node_cache().init == ()


def test_a_render_without_node_cache_is_an_error() -> None:
    with pytest.raises(ValueError, match="no DaemonSet with a 'node-cache' container"):
        parse_render([{"kind": "ConfigMap", "metadata": {"name": "x"}}])


def test_launch_points_the_upstream_service_env_and_resolv_conf_at_the_stand_in(
    tmp_path: Path,
) -> None:
    chart = ChartNodeCache("x:53 {}\n", ("-upstreamsvc", "kube-dns-upstream"), {"E": "v"})
    launch = node_cache_launch(chart, Path("/b/nc"), tmp_path, "10.96.0.53", {"PATH": "/p"})
    assert launch.argv[-3:] == ["/b/nc", "-upstreamsvc", "kube-dns-upstream"]
    assert launch.argv[:2] == ["unshare", "--mount"]
    assert launch.env == {
        "PATH": "/p",
        "E": "v",
        "KUBE_DNS_UPSTREAM_SERVICE_HOST": "10.96.0.53",
        "KUBE_DNS_UPSTREAM_SERVICE_PORT": "53",
    }
    assert (tmp_path / "etc/resolv.conf").read_text() == "nameserver 10.96.0.53\n"
    assert (tmp_path / "etc/coredns/Corefile.base").read_text() == "x:53 {}\n"


def test_the_chart_renders_a_node_cache_on_the_local_address() -> None:
    chart = chart_node_cache()
    assert chart.local_ips == (LOCAL_DNS,)
    assert "__PILLAR__CLUSTER__DNS__" in chart.corefile  # filled in by node-cache
    assert chart.image.startswith("registry.k8s.io/dns/k8s-dns-node-cache")


def test_missing_iptables_names_the_debian_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no iptables
    with pytest.raises(NodeCacheMissing, match="install the Debian package `iptables`"):
        require_iptables(ChartNodeCache("", ("-localip", LOCAL_DNS)))
    require_iptables(ChartNodeCache("", ("-setupiptables=false",)))  # not needed then


@pytest.mark.netns
def test_a_failing_test_leaves_no_node_cache_and_no_interface(tmp_path: Path) -> None:
    def machine_has_link() -> bool:  # the machine's own links, only read
        return LOCAL_DNS_LINK in {name for _, name in socket.if_nameindex()}

    before = machine_has_link()
    with (
        pytest.raises(RuntimeError, match="the test failed"),
        SandboxNode(tmp_path / "n", kube_proxy=False, kubelet=False) as node,
    ):
        process = node.local_dns_process
        assert process is not None
        inner = process.inner_pid()
        assert inner is not None and psutil.Process(inner).name() == "node-cache"
        assert node.http_get(f"http://{LOCAL_DNS}:8080/health") == (200, "OK")
        raise RuntimeError("the test failed")
    assert not psutil.pid_exists(inner) or psutil.Process(inner).name() != "node-cache"
    assert node.processes() == []
    assert machine_has_link() == before
