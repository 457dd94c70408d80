"""``status`` and ``revert-fleet`` through the real CLI and client against the fake API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodelocaldns_agent.cli import main
from nodelocaldns_agent.fleet import MODE_ENV, mode_patch, pending_nodes
from nodelocaldns_agent.state import DETAIL_ANNOTATION, STATE_ANNOTATION
from testing.fake_apiserver import FakeApiServer

NS = "nodelocaldns"


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        yield srv


def annotate(server: FakeApiServer, name: str, state: str, **detail: object) -> None:
    server.add_node(
        name, annotations={STATE_ANNOTATION: state, DETAIL_ANNOTATION: json.dumps(detail)}
    )


def daemonset() -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {
                    "containers": [
                        {
                            "name": "agent",
                            "image": "x",
                            "env": [
                                {"name": "NODE_NAME", "value": "x"},
                                {"name": MODE_ENV, "value": "migrate"},
                            ],
                        }
                    ]
                },
            },
        },
    }


def revert_fleet(kubeconfig: Path, timeout: float) -> int:
    return main(
        [
            "revert-fleet",
            "--kubeconfig",
            str(kubeconfig),
            "--daemonset",
            "agent",
            "--namespace",
            NS,
            "--timeout",
            str(timeout),
            "--poll-interval",
            "0.1",
        ]
    )


def test_status_table_and_exit_code(
    server: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kc")
    annotate(
        server,
        "a",
        "migrated",
        cluster_dns=["169.254.20.10"],
        since="2026-01-01T00:00:00Z",
        stale_pods=2,
    )
    annotate(server, "b", "waiting-for-local-dns", cluster_dns=["10.96.0.10"])
    server.add_node("c")
    assert main(["status", "--kubeconfig", str(kubeconfig)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert rows["a"][1:5] == ["migrated", "169.254.20.10", "2026-01-01T00:00:00Z", "2"]
    assert rows["b"][1:3] == ["waiting-for-local-dns", "10.96.0.10"]
    assert rows["c"][1] == "-"
    assert "3 nodes: 1 -, 1 migrated, 1 waiting-for-local-dns" in out
    annotate(server, "d", "failed", error="kubelet did not come back")
    assert main(["status", "--kubeconfig", str(kubeconfig), "--output", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["failed"] == 1
    assert {r["node"]: r["stale_pods"] for r in doc["nodes"]}["a"] == 2


def test_revert_fleet_patches_the_daemonset_and_waits(
    server: FakeApiServer, tmp_path: Path
) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kc")
    server.put_object(daemonset())
    annotate(server, "a", "migrated")
    annotate(server, "b", "not-needed")
    server.add_node("never-touched")

    def agent_reverts() -> None:
        server.wait_for(
            lambda: (
                (server.get("daemonsets", "agent", NS) or {})["spec"]["template"]["spec"][
                    "containers"
                ][0]["env"][1]["value"]
                == "revert"
            ),
            timeout=10,
        )
        node = server.get("nodes", "a")
        assert node is not None
        node["metadata"]["annotations"][STATE_ANNOTATION] = "reverted"
        server.put_object(node)

    worker = threading.Thread(target=agent_reverts)
    worker.start()
    code = revert_fleet(kubeconfig, timeout=20)
    worker.join()
    assert code == 0


def test_revert_fleet_times_out_with_a_clear_message(
    server: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kc")
    server.put_object(daemonset())
    annotate(server, "stuck", "failed")
    code = revert_fleet(kubeconfig, timeout=0.3)
    assert code == 1
    err = capsys.readouterr().err
    assert "stuck=failed" in err and "node-cache was NOT removed" in err


@pytest.mark.parametrize(
    ("env", "ops"),
    [
        (
            [{"name": MODE_ENV, "value": "migrate"}],
            [
                {
                    "op": "test",
                    "path": "/spec/template/spec/containers/0/env/0/name",
                    "value": MODE_ENV,
                },
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/env/0",
                    "value": {"name": MODE_ENV, "value": "revert"},
                },
            ],
        ),
        (
            [{"name": "X", "value": "1"}],
            [
                {
                    "op": "add",
                    "path": "/spec/template/spec/containers/0/env/-",
                    "value": {"name": MODE_ENV, "value": "revert"},
                }
            ],
        ),
        (
            [],
            [
                {
                    "op": "add",
                    "path": "/spec/template/spec/containers/0/env",
                    "value": [{"name": MODE_ENV, "value": "revert"}],
                }
            ],
        ),
    ],
)
def test_mode_patch(env: list[dict[str, str]], ops: list[dict[str, object]]) -> None:
    ds = {"spec": {"template": {"spec": {"containers": [{"name": "agent", "env": env}]}}}}
    assert mode_patch(ds, "revert") == ops


def test_pending_nodes() -> None:
    nodes = [
        {"metadata": {"name": n, "annotations": {STATE_ANNOTATION: s}}}
        for n, s in (("a", "reverted"), ("b", "migrating"), ("c", "skipped"))
    ]
    nodes.append({"metadata": {"name": "d"}})
    assert pending_nodes(nodes) == ["b=migrating"]
