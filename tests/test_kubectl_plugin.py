"""``kubectl nodelocaldns``: through a real kubectl that finds ``kubectl-nodelocaldns`` on
PATH, against the fake API server; the rollout and preflight views table-tested; the
live view drawn on a fake terminal and its plain fallback off a terminal.

How kubectl runs a plugin (kubernetes/website content/en/docs/tasks/extend-kubectl/
kubectl-plugins.md; kubectl's pkg/cmd/cmd.go ``HandlePluginCommand``): any executable
``kubectl-<name>`` on PATH, listed by ``kubectl plugin list``, run with every argument
after the plugin name unchanged; kubectl's own flags go after the name (kubectl refuses
them before it: "flags cannot be placed before plugin name").
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from nodelocaldns_agent.fleet import MODE_ENV
from nodelocaldns_agent.kube.api import LEASE_LABEL, LEASE_LABEL_VALUE, SLOT_LABEL, now_rfc3339
from nodelocaldns_agent.kube.types import LeaseView
from nodelocaldns_agent.plugin import main as plugin_main
from nodelocaldns_agent.plugin import preflight, rollout
from nodelocaldns_agent.plugin.commands import (
    LIMIT_ENV,
    LineViewer,
    LiveViewer,
    Snapshot,
    viewer_for,
    watch,
)
from nodelocaldns_agent.state import DETAIL_ANNOTATION, MODE_LABEL, STATE_ANNOTATION
from testing.fake_apiserver import FakeApiServer
from tests.tooling import ROOT, tool

NS = "nodelocaldns"
APP_LABELS = {"app.kubernetes.io/name": "nodelocaldns-agent"}


# ---------------------------------------------------------------- a cluster
def annotate(server: FakeApiServer, name: str, state: str, **detail: object) -> None:
    server.add_node(
        name, annotations={STATE_ANNOTATION: state, DETAIL_ANNOTATION: json.dumps(detail)}
    )


def agent_daemonset(mode: str = "migrate") -> dict[str, Any]:
    """As the chart renders it: the mode in the pod spec, the rest in a ConfigMap."""
    labels = {**APP_LABELS, "app.kubernetes.io/component": "agent"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "nla", "namespace": NS, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "agent",
                            "image": "x",
                            "args": ["run"],
                            "envFrom": [{"configMapRef": {"name": "nla"}}],
                            "env": [{"name": MODE_ENV, "value": mode}],
                        }
                    ]
                },
            },
        },
    }


def install(server: FakeApiServer, limit: int = 2) -> None:
    server.put_object(agent_daemonset())
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "nla", "namespace": NS},
            "data": {LIMIT_ENV: str(limit)},
        }
    )


def hold_slot(server: FakeApiServer, slot: int, node: str) -> None:
    name = f"nodelocaldns-agent-slot-{slot}"
    now = now_rfc3339()
    server.put_object(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": {LEASE_LABEL: LEASE_LABEL_VALUE, SLOT_LABEL: name},
            },
            "spec": {
                "holderIdentity": node,
                "leaseDurationSeconds": 3600,
                "acquireTime": now,
                "renewTime": now,
            },
        }
    )


def healthy_cluster(server: FakeApiServer, nodes: tuple[str, ...] = ("n1", "n2")) -> None:
    """What preflight wants to see: IPVS, kube-dns, upstream endpoints, node-cache and
    agent pods ready on every node, the admission policy, a privileged namespace."""
    install(server)
    for node in nodes:
        server.add_node(node)
        for component in ("agent", "node-cache"):
            server.add_pod(
                f"{component}-{node}",
                NS,
                node_name=node,
                labels={**APP_LABELS, "app.kubernetes.io/component": component},
            )
    proxy = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration"}
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "data": {"config.conf": yaml.safe_dump({**proxy, "mode": "ipvs"})},
        }
    )
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53}]},
        }
    )
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "kube-dns-upstream", "namespace": NS},
            "subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 53}]}],
        }
    )
    server.put_object(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "nla-own-node", "labels": APP_LABELS},
            "spec": {"validations": [{"expression": "true"}]},
        }
    )
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NS,
                "labels": {preflight.ENFORCE_LABEL: "privileged"},
            },
        }
    )


# ---------------------------------------------------------------- kubectl
@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        yield srv


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A directory with ``kubectl-nodelocaldns`` as pip's console script makes it (the
    entry point of pyproject.toml, run by this interpreter, this checkout importable)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    module, func = entry_points()["kubectl-nodelocaldns"].split(":")
    script = bin_dir / "kubectl-nodelocaldns"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        f"from {module} import {func}\nraise SystemExit({func}())\n"
    )
    script.chmod(0o755)
    return bin_dir


def entry_points() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        scripts: dict[str, str] = tomllib.load(f)["project"]["scripts"]
    return scripts


def kubectl(
    plugin_path: Path, *argv: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    binary = tool("kubectl", ROOT / ".tools" / "bin" / "kubectl")
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    environ.update(PATH=f"{plugin_path}{os.pathsep}{environ.get('PATH', '')}", HOME="/nonexistent")
    environ.update(env or {})
    return subprocess.run(
        [binary, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ,
        input=stdin,
    )


def test_the_console_script_is_the_plugin() -> None:
    assert entry_points()["kubectl-nodelocaldns"] == "nodelocaldns_agent.plugin:main"
    # the live view's library is the plugin's extra, never the agent image's
    lock = (ROOT / "requirements.lock").read_text()
    assert not any(line.startswith("rich") for line in lock.splitlines())


def test_kubectl_finds_the_plugin_and_its_help(plugin_path: Path) -> None:
    listed = kubectl(plugin_path, "plugin", "list")
    assert str(plugin_path / "kubectl-nodelocaldns") in listed.stdout, listed.stderr
    helped = kubectl(plugin_path, "nodelocaldns", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: kubectl nodelocaldns")
    for command in ("status", "preflight", "revert", "pause", "resume", "--context", "-n"):
        assert command in helped.stdout


def test_status_through_kubectl(server: FakeApiServer, tmp_path: Path, plugin_path: Path) -> None:
    kc = str(server.write_kubeconfig(tmp_path / "kc", namespace=NS))
    install(server, limit=2)
    annotate(server, "a", "migrated", cluster_dns=["169.254.20.10"], since="2026-01-01T00:00:00Z")
    annotate(server, "b", "migrating", since="2026-01-01T00:01:00Z")
    annotate(server, "c", "not-needed", reason="not needed: kube-proxy runs in iptables mode")
    server.add_node("d")
    hold_slot(server, 0, "b")
    ok = kubectl(plugin_path, "nodelocaldns", "status", "--kubeconfig", kc)
    assert ok.returncode == 0, ok.stderr
    assert "migrated 1/3 | restarts 1/2" in ok.stdout
    rows = {line.split()[0]: line.split() for line in ok.stdout.splitlines()[1:5]}
    assert rows["a"][1:3] == ["migrated", "169.254.20.10"]

    annotate(server, "e", "failed", error="kubelet did not come back")
    as_json = kubectl(plugin_path, "nodelocaldns", "status", "-o", "json", "--kubeconfig", kc)
    assert as_json.returncode == 1  # a failed node
    doc = json.loads(as_json.stdout)
    assert doc["rollout"]["restartsInFlight"] == ["b"]
    assert doc["rollout"]["restartLimit"] == 2
    assert doc["rollout"]["failed"] == [{"node": "e", "error": "kubelet did not come back"}]
    assert (doc["rollout"]["migrated"], doc["rollout"]["eligible"]) == (1, 4)
    as_yaml = kubectl(plugin_path, "nodelocaldns", "status", "-o", "yaml", "--kubeconfig", kc)
    assert yaml.safe_load(as_yaml.stdout)["summary"] == doc["summary"]
    wide = kubectl(plugin_path, "nodelocaldns", "status", "-o", "wide", "--kubeconfig", kc)
    assert "MODE" in wide.stdout and "kube-proxy runs in iptables mode" in wide.stdout


def test_kubeconfig_context_and_namespace_as_kubectl_reads_them(
    server: FakeApiServer, tmp_path: Path, plugin_path: Path
) -> None:
    """``$KUBECONFIG`` is a ':'-separated list (missing files skipped, as kubectl does);
    ``--context`` picks a context; the agent's namespace comes from ``-n``, else the
    context's; kubectl's flags go after the plugin name."""
    install(server)
    annotate(server, "a", "migrated")
    good = server.kubeconfig(namespace=NS)
    other = good.replace("name: fake", "name: elsewhere").replace(
        "current-context: fake", "current-context: elsewhere"
    )
    other = other.replace(f"namespace: {NS}", "namespace: default").replace(
        "cluster: fake", "cluster: elsewhere"
    )
    other = other.replace(server.url, "http://127.0.0.1:9")  # nothing listens there
    (tmp_path / "other").write_text(other)
    (tmp_path / "good").write_text(good)
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{tmp_path / 'other'}:{tmp_path / 'good'}"}
    chosen = kubectl(plugin_path, "nodelocaldns", "--context", "fake", "status", env=env)
    assert chosen.returncode == 0, chosen.stderr
    assert "restarts 0/2" in chosen.stdout  # the DaemonSet found in the context's namespace
    current = kubectl(plugin_path, "nodelocaldns", "status", env=env)
    assert current.returncode == 1 and "port=9" in current.stderr  # the first file wins
    named = kubectl(plugin_path, "nodelocaldns", "status", "-n", "default", "--context", "fake")
    assert named.returncode == 2 and "/nonexistent/.kube/config" in named.stderr  # none at all
    elsewhere = kubectl(
        plugin_path, "nodelocaldns", "-n", "default", "--context", "fake", "status", env=env
    )
    assert "restarts 0/?" in elsewhere.stdout and "in default" in elsewhere.stderr
    before = kubectl(plugin_path, "--context", "fake", "nodelocaldns", "status", env=env)
    assert before.returncode != 0 and "before plugin name" in before.stderr


def test_revert_pause_resume_through_kubectl(
    server: FakeApiServer, tmp_path: Path, plugin_path: Path
) -> None:
    kc = str(server.write_kubeconfig(tmp_path / "kc", namespace=NS))
    install(server)

    def mode() -> str:
        ds = server.get("daemonsets", "nla", NS)
        assert ds is not None
        env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
        return str(next(v["value"] for v in env if v["name"] == MODE_ENV))

    dry = kubectl(plugin_path, "nodelocaldns", "revert", "--dry-run", "--kubeconfig", kc)
    assert dry.returncode == 0, dry.stderr
    assert "mode migrate -> revert (dry run" in dry.stdout and '"op": "test"' in dry.stdout
    assert mode() == "migrate"
    unconfirmed = kubectl(plugin_path, "nodelocaldns", "revert", "--kubeconfig", kc)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert mode() == "migrate"
    done = kubectl(plugin_path, "nodelocaldns", "revert", "--yes", "--kubeconfig", kc)
    assert done.returncode == 0, done.stderr
    assert mode() == "revert"
    again = kubectl(plugin_path, "nodelocaldns", "revert", "--yes", "--kubeconfig", kc)
    assert again.returncode == 0 and "already in revert mode" in again.stdout
    server.add_node("held", labels={MODE_LABEL: "migrate"})
    paused = kubectl(plugin_path, "nodelocaldns", "pause", "-y", "--kubeconfig", kc)
    assert paused.returncode == 0 and mode() == "observe"
    assert f"carry {MODE_LABEL}" in paused.stderr and "held" in paused.stderr
    resumed = kubectl(plugin_path, "nodelocaldns", "resume", "-y", "--kubeconfig", kc)
    assert resumed.returncode == 0 and mode() == "migrate"


def test_preflight_through_kubectl(
    server: FakeApiServer, tmp_path: Path, plugin_path: Path
) -> None:
    kc = str(server.write_kubeconfig(tmp_path / "kc", namespace=NS))
    healthy_cluster(server)
    ok = kubectl(plugin_path, "nodelocaldns", "preflight", "--kubeconfig", kc)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert len(lines) == 8 and all(line.startswith("ok ") for line in lines), ok.stdout

    server.add_node("n3")  # no node-cache or agent pod there
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "labels": {preflight.ENFORCE_LABEL: "baseline"}},
        }
    )
    bad = kubectl(plugin_path, "nodelocaldns", "preflight", "--kubeconfig", kc)
    assert bad.returncode == 1
    by_check = {line.split("  ")[1].strip(): line for line in bad.stdout.splitlines()}
    assert by_check["node-cache pods"].startswith("failed")
    assert "not ready on 1/3 nodes: n3" in by_check["node-cache pods"]
    assert by_check["Pod Security"].startswith("failed")
    assert "pod-security.kubernetes.io/enforce=privileged" in by_check["Pod Security"]


# ---------------------------------------------------------------- the views, pure
def row(node: str, state: str, since: str = "-", error: str = "") -> dict[str, Any]:
    return {"node": node, "state": state, "since": since, "error": error}


def lease(holder: str, renewed: float, duration: int = 60) -> LeaseView:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(renewed, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return LeaseView("slot", holder, "1", duration, stamp)


@pytest.mark.parametrize(
    ("leases", "now", "held"),
    [
        ([], 1000.0, []),
        ([lease("a", 990.0)], 1000.0, ["a"]),
        ([lease("a", 900.0)], 1000.0, []),  # expired: its holder crashed
        ([lease("", 990.0)], 1000.0, []),  # released
        ([lease("b", 995.0), lease("a", 999.0)], 1000.0, ["a", "b"]),
    ],
)
def test_restarts_in_flight(leases: list[LeaseView], now: float, held: list[str]) -> None:
    assert rollout.in_flight(leases, now) == held


@pytest.mark.parametrize(
    ("remaining", "limit", "mean", "expected"),
    [
        (10, 2, None, None),  # no restart seen yet
        (0, 2, 30.0, 0.0),
        (10, 2, 30.0, 150.0),
        (11, 2, 30.0, 180.0),  # a last round for one node
        (3, None, 20.0, 60.0),  # limit unknown: one at a time
    ],
)
def test_eta(remaining: int, limit: int | None, mean: float | None, expected: float | None) -> None:
    assert rollout.eta(remaining, limit, mean) == expected


def test_restart_timer_measures_migrating_to_settled() -> None:
    timer = rollout.RestartTimer()
    timer.observe([row("a", "migrating", "2026-01-01T00:00:00Z"), row("b", "pending")])
    timer.observe([row("a", "migrating", "2026-01-01T00:00:00Z")])
    assert timer.mean is None
    timer.observe(
        [
            row("a", "migrated", "2026-01-01T00:00:40Z"),
            row("b", "migrating", "2026-01-01T00:00:40Z"),
        ]
    )
    timer.observe([row("b", "failed", "2026-01-01T00:01:00Z")])
    assert timer.durations == [40.0, 20.0] and timer.mean == 30.0


def test_summary_counts_progress_and_failures() -> None:
    rows = [
        row("a", "migrated"),
        row("b", "failed", error="kubelet did not come back"),
        row("c", "not-needed"),
        row("d", "skipped"),
        row("e", "waiting-for-local-dns"),
        row("f", "-"),
    ]
    r = rollout.summarize(rows, [lease("e", 100.0)], 1, 100.0, mean_restart=30.0)
    assert (r.migrated, r.eligible, r.remaining) == (1, 4, 2)
    assert r.failed == [("b", "kubelet did not come back")] and r.in_flight == ["e"]
    assert r.eta == 60.0
    assert rollout.plain_line(r) == (
        "migrated 1/4 | restarts 1/1 | eta 1m00s | 1 -, 1 failed, 1 migrated, "
        "1 not-needed, 1 skipped, 1 waiting-for-local-dns | failed: b: kubelet did not come back"
    )


# ---------------------------------------------------------------- the live view
def snapshots() -> list[Snapshot]:
    def node(name: str, state: str, since: str, error: str = "") -> dict[str, Any]:
        detail = json.dumps({"since": since, "error": error})
        return {
            "metadata": {
                "name": name,
                "annotations": {STATE_ANNOTATION: state, DETAIL_ANNOTATION: detail},
            }
        }

    t0, t1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z"
    return [
        Snapshot([node("a", "migrating", t0), node("b", "pending", t0)], [], 1),
        Snapshot([node("a", "migrated", t1), node("b", "migrating", t1)], [], 1),
        Snapshot(
            [node("a", "migrated", t1), node("b", "failed", t1, "kubelet did not come back")],
            [],
            1,
        ),
    ]


def play(viewer: Any, frames: list[Snapshot]) -> int:
    feed = iter(frames)
    return watch(lambda: next(feed), viewer, 1.0, sleep=lambda _: None, rounds=len(frames))


def test_live_view_redraws_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, record=True)
    code = play(LiveViewer(console, "nodelocaldns-agent nodelocaldns/nla"), snapshots())
    assert code == 1  # the last view shows a failed node
    raw = out.getvalue()
    # rich.live moves the cursor up over the last frame and erases it: one view in place
    assert raw.count("\x1b[1A") >= 2 * 5 and "\x1b[2K" in raw
    frames = console.export_text().split("nodelocaldns-agent nodelocaldns/nla")
    assert "ETA unknown" in frames[1]  # no restart seen yet
    assert "ETA 0m30s" in frames[2]  # a: 30 s; b left, one at a time
    last = frames[-1]
    assert "1/2" in last and "ETA 0m00s" in last
    assert "restarts in flight 0/1" in last
    assert "failed nodes" in last and "kubelet did not come back" in last


def test_plain_lines_off_a_terminal_one_per_change() -> None:
    out = io.StringIO()
    frames = snapshots()
    assert viewer_for(out, "t").__class__ is LineViewer  # StringIO is no terminal
    code = play(LineViewer(out), [frames[0], frames[0], frames[1], frames[2]])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in out.getvalue()
    assert lines[1].endswith("migrated 1/2 | restarts 0/1 | eta 0m30s | 1 migrated, 1 migrating")
    assert code == 1


def test_footer_lines_under_the_view_read_on_every_redraw() -> None:
    """The footer (the demo's per-node states and pod-lookup counter): joined onto each
    plain line, and a new value is a change of its own; drawn under the live view."""
    counter = iter(["pod lookups failed: 0", "pod lookups failed: 0", "pod lookups failed: 2"])
    frame = snapshots()[0]
    out = io.StringIO()
    play(LineViewer(out, lambda: [next(counter)]), [frame, frame, frame])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("| pod lookups failed: 0")
    assert lines[1].endswith("| pod lookups failed: 2")
    console = Console(file=io.StringIO(), force_terminal=True, width=100, record=True)
    play(LiveViewer(console, "t", lambda: ["node-3 waiting-for-local-dns"]), [frame])
    assert console.export_text().rstrip().endswith("node-3 waiting-for-local-dns")


def test_watch_exits_0_without_failed_nodes() -> None:
    assert play(LineViewer(io.StringIO()), snapshots()[:2]) == 0


# ---------------------------------------------------------------- preflight, pure
def facts(**overrides: Any) -> preflight.ClusterFacts:
    base: dict[str, Any] = {
        "namespace": NS,
        "app": "nodelocaldns-agent",
        "nodes": [],
        "rows": [],
        "kube_proxy": None,
        "kube_dns": None,
        "upstream_name": "kube-dns-upstream",
        "upstream_endpoints": None,
        "node_cache_pods": [],
        "agent_pods": [],
        "admission_policies": [],
        "version": {"major": "1", "minor": "30"},
        "namespace_object": None,
    }
    return preflight.ClusterFacts(**{**base, **overrides})


def proxy_cm(mode: str) -> dict[str, Any]:
    text = yaml.safe_dump({"kind": "KubeProxyConfiguration", "mode": mode})
    return {"data": {"config.conf": text}}


@pytest.mark.parametrize(
    ("configmap", "rows", "level", "words"),
    [
        (proxy_cm("ipvs"), [], preflight.Level.OK, "ipvs"),
        (proxy_cm(""), [], preflight.Level.WARNING, "iptables (default)"),
        (proxy_cm("nftables"), [], preflight.Level.WARNING, "nftables"),
        (None, [], preflight.Level.WARNING, "no ConfigMap"),
        (
            None,
            [{"node": "x", "reason": "not needed: kube-proxy runs in nftables mode"}],
            preflight.Level.WARNING,
            "no ConfigMap kube-system/kube-proxy (a managed or kube-proxy-less cluster?); 1",
        ),
        (
            proxy_cm("ipvs"),
            [{"node": "x", "reason": "not needed: kube-proxy runs in iptables mode"}],
            preflight.Level.WARNING,
            "1 node(s) report no kube-ipvs0: x",
        ),
        (
            None,
            [{"node": "y", "reason": "", "error": "kube-proxy mode is unknown (no kube-ipvs0"}],
            preflight.Level.FAILED,
            "1 node(s) show neither kube-ipvs0 nor kube-proxy's /proxyMode: y",
        ),
    ],
)
def test_proxy_mode_check(
    configmap: dict[str, Any] | None,
    rows: list[dict[str, Any]],
    level: preflight.Level,
    words: str,
) -> None:
    check = preflight.check_proxy_mode(facts(kube_proxy=configmap, rows=rows))
    assert check.level is level and words in check.message


@pytest.mark.parametrize(
    ("version", "policies", "level"),
    [
        ({"major": "1", "minor": "29"}, [], preflight.Level.WARNING),
        ({"major": "1", "minor": "31+"}, [], preflight.Level.FAILED),  # EKS/GKE style minor
        ({"major": "1", "minor": "30"}, [{"metadata": {"name": "p", "labels": APP_LABELS}}], "ok"),
        ({"major": "1", "minor": "30"}, [{"metadata": {"name": "other"}}], preflight.Level.FAILED),
    ],
)
def test_admission_check(version: dict[str, str], policies: list[Any], level: str) -> None:
    check = preflight.check_admission(facts(version=version, admission_policies=policies))
    assert check.level == level


def test_observe_check_names_the_nodes_that_would_be_blocked() -> None:
    rows = [
        {"node": "a", "state": "pending", "mode": "observe", "error": "",
         "reason": "observe: cluster DNS 10.96.0.10 -> 169.254.20.10 (kube-proxy ipvs, ...)"},
        {"node": "b", "state": "waiting-for-local-dns", "mode": "observe", "error": "",
         "reason": "observe: local DNS 169.254.20.10 does not answer"},
        {"node": "c", "state": "pending", "mode": "observe", "error": "",
         "reason": "observe: kubelet has no cluster DNS configured; nothing to replace"},
        {"node": "d", "state": "migrated", "mode": "migrate", "error": "", "reason": ""},
    ]  # fmt: skip
    check = preflight.check_observe(facts(rows=rows))
    assert check.level is preflight.Level.WARNING
    assert check.message.startswith("2/3 observed node(s) would be blocked: b: observe: local")
    assert "c: observe: kubelet has no cluster DNS" in check.message
    assert preflight.check_observe(facts(rows=rows[:1] + rows[3:])).level is preflight.Level.OK


@pytest.mark.parametrize(
    ("labels", "level"),
    [
        ({preflight.ENFORCE_LABEL: "privileged"}, preflight.Level.OK),
        ({}, preflight.Level.WARNING),
        ({preflight.ENFORCE_LABEL: "restricted"}, preflight.Level.FAILED),
    ],
)
def test_pod_security_check(labels: dict[str, str], level: preflight.Level) -> None:
    ns = {"metadata": {"name": NS, "labels": labels}}
    assert preflight.check_pod_security(facts(namespace_object=ns)).level is level


def test_live_status_through_kubectl_off_a_terminal_ends_on_ctrl_c(
    server: FakeApiServer, tmp_path: Path, plugin_path: Path
) -> None:
    """kubectl execs the plugin (the same process), so Ctrl-C reaches it: the view ends
    with the exit code of its last read."""
    kc = str(server.write_kubeconfig(tmp_path / "kc", namespace=NS))
    install(server)
    annotate(server, "a", "migrating", since="2026-01-01T00:00:00Z")
    binary = tool("kubectl", ROOT / ".tools" / "bin" / "kubectl")
    environ = {**os.environ, "PATH": f"{plugin_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [binary, "nodelocaldns", "status", "-w", "--interval", "0.2", "--kubeconfig", kc]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert "migrated 0/1 | restarts 0/2" in first and "1 migrating" in first
            annotate(server, "a", "failed", since="2026-01-01T00:00:40Z", error="no kubelet")
            second = proc.stdout.readline()
            assert "failed: a: no kubelet" in second and "\x1b" not in first + second
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 1
        finally:
            proc.kill()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["status", "-w", "--interval", "0"], "--interval 0.0: expected a positive"),
        (["status", "-w", "-o", "json"], "-w draws the live view"),
        (["status", "-o", "csv"], "invalid choice: 'csv'"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_bad_command_lines_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plugin_main(argv) == 2
    assert words in capsys.readouterr().err


def test_long_lists_are_cut_in_the_views() -> None:
    rows = [row(f"n{i:02d}", "failed", error="x") for i in range(12)]
    r = rollout.summarize(rows, [], 1, 0.0)
    assert rollout.plain_line(r).endswith("n09: x; and 2 more")
    out = io.StringIO()
    Console(file=out, width=100).print(rollout.renderable(r, "t"))
    assert "n09" in out.getvalue() and "n10" not in out.getvalue()
    assert "and 2 more" in out.getvalue()
