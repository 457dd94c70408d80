"""Bad input end to end through the engine: whatever bytes the kubelet configuration holds,
a migration either makes the correct edit or stops with a ConfigError naming the file —
and then nothing was written (file byte-identical, no journal, no restart)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.state import Result
from testing.fakenode import TKE_ENV, FakeNode, tke_node

KUBEADM_YAML = (
    b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
    b"clusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\n"
)
EKS_JSON = b'{"kind": "KubeletConfiguration", "clusterDNS": ["10.96.0.10"], "maxPods": 29}\n'
LOCAL = b"169.254.20.10"


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Random edits of a realistic file: bytes inserted, deleted, replaced; CRLF; BOM;
    duplicated lines; plus pure noise."""

    def mutate(data: bytes, ops: list[tuple[int, int, bytes]]) -> bytes:
        for kind, where, chunk in ops:
            pos = where % (len(data) + 1)
            if kind == 0:
                data = data[:pos] + chunk + data[pos:]
            elif kind == 1:
                data = data[:pos] + data[pos + len(chunk) + 1 :]
            elif kind == 2:
                data = data.replace(b"\n", b"\r\n")
            elif kind == 3:
                data = b"\xef\xbb\xbf" + data
            else:
                lines = data.splitlines(keepends=True)
                if lines:
                    data = b"".join([*lines, lines[pos % len(lines)]])
        return data

    op = st.tuples(
        st.integers(0, 4),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=8)
        | st.sampled_from(
            [
                b"'",
                b'"',
                b"\\",
                b"--cluster-dns=",
                b"\n",
                b"#",
                b":",
                b"[",
                b"{",
                b"- ",
                b",",
                b"\x00",
                b"\xff",
            ]
        ),
    )
    return st.one_of(
        st.binary(max_size=300),
        st.lists(op, min_size=1, max_size=4).map(lambda ops: mutate(seed, ops)),
    )


def layout(root: Path, kind: str, data: bytes) -> FakeNode:
    if kind == "env":
        node = tke_node(root)
        node.write("/etc/kubernetes/kubelet", data)
        node.stop_kubelet()  # found through the unit and its EnvironmentFile
        return node
    node = FakeNode(root)
    path = "/var/lib/kubelet/config.yaml" if kind == "yaml" else "/etc/kubernetes/k.json"
    node.write(path, data)
    node.run_kubelet("/usr/bin/kubelet", f"--config={path}")

    def restart(argv: tuple[str, ...]) -> None:
        node.clock.now += 1
        node.run_kubelet("/usr/bin/kubelet", f"--config={path}")

    node.runner.on_run = restart
    return node


def source(kind: str) -> str:
    return {
        "env": "/etc/kubernetes/kubelet",
        "yaml": "/var/lib/kubelet/config.yaml",
        "json": "/etc/kubernetes/k.json",
    }[kind]


@pytest.mark.parametrize(
    ("kind", "seed"), [("env", TKE_ENV), ("yaml", KUBEADM_YAML), ("json", EKS_JSON)]
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_correct_edit_or_clear_error_with_nothing_written(
    kind: str, seed: bytes, data: st.DataObject
) -> None:
    content = data.draw(mutations(seed))
    with tempfile.TemporaryDirectory() as d:
        node = layout(Path(d), kind, content)
        path = source(kind)
        try:
            out = node.engine().reconcile(Goal.MIGRATE)
        except ConfigError as exc:
            assert path in str(exc) or "kubelet" in str(exc)
            assert node.read(path) == content
            assert not (Path(d) / "var/lib/nodelocaldns-agent").exists()
            assert node.runner.calls == []
            return
        after = node.read(path)
        if out.state is Result.MIGRATED and out.restarted:
            assert out.facts.kubelet is not None
            original = out.facts.kubelet.cluster_dns
            if len(original) == 1:  # exactly the value's bytes changed, nothing else
                old = original[0].encode()
                spots = [i for i in range(len(content)) if content.startswith(old, i)]
                assert any(content[:i] + LOCAL + content[i + len(old) :] == after for i in spots)
            assert node.engine().reconcile(Goal.REVERT).state is Result.REVERTED
            assert node.read(path) == content  # byte for byte back
        else:
            assert after == content
            assert out.state in (Result.BLOCKED, Result.NOT_NEEDED, Result.MIGRATED)
