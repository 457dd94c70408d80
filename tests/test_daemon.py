"""The daemon against the fake API server, through the real ``kubernetes`` client.

Each test drives ``Daemon.tick()`` by hand (no background loop), with a jump clock so that
minutes of fail-safe timing pass instantly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nodelocaldns_agent.daemon import Daemon
from nodelocaldns_agent.host.probes import DnsAnswer
from nodelocaldns_agent.kube.api import EVENT_NAMESPACE, KubeApi
from nodelocaldns_agent.kube.lock import RestartLock
from nodelocaldns_agent.kube.status import NodeStatus
from nodelocaldns_agent.metrics import Health, Metrics
from nodelocaldns_agent.settings import RunSettings
from nodelocaldns_agent.state import DETAIL_ANNOTATION, STATE_ANNOTATION, STATE_LABEL
from testing.fake_apiserver import FakeApiServer
from testing.fakenode import TKE_ENV, FakeNode, tke_node

NS = "nodelocaldns"
DOWN = DnsAnswer(False, None, "timeout", "no answer")
UP = DnsAnswer(True, 0.001, "ok")


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        yield srv


class Harness:
    def __init__(
        self,
        server: FakeApiServer,
        node: FakeNode,
        name: str = "node-a",
        node_settings: dict[str, object] | None = None,
        **settings: object,
    ) -> None:
        self.server = server
        self.fake = node
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, version="test")
        self.client = server.api_client()
        self.api = KubeApi(self.client, on_request=self.metrics.api_request)
        rs = RunSettings(node_name=name, namespace=NS, lock_wait=0.5, **settings)  # type: ignore[arg-type]
        self.stop = threading.Event()
        engine = node.engine(**(node_settings or {}))
        self.daemon = Daemon(
            rs,
            engine,
            self.api,
            RestartLock(
                self.api,
                NS,
                name,
                rs.max_concurrent_restarts,
                node.clock,
                duration=rs.lease_duration,
                jitter=0.0,
            ),
            NodeStatus(self.api, name),
            self.metrics,
            Health(),
            node.clock,
            self.stop,
            rng=lambda: 0.5,
        )
        self.daemon._first_node()

    def tick(self, *, full: bool = True) -> None:
        if full:
            self.daemon.wake()
        self.daemon.tick()

    def node(self) -> dict:  # type: ignore[type-arg]
        obj = self.server.get("nodes", self.daemon.settings.node_name)
        assert obj is not None
        return obj

    def state(self) -> str:
        return str(self.node()["metadata"]["annotations"].get(STATE_ANNOTATION))

    def detail(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.node()["metadata"]["annotations"][DETAIL_ANNOTATION])

    def events(self) -> list[str]:
        return [e["reason"] for e in self.server.objects("events", EVENT_NAMESPACE)]

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(f"nodelocaldns_agent_{name}", labels)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def harness(server: FakeApiServer, tmp_path: Path) -> Iterator[Harness]:
    server.add_node("node-a", annotations={"other.io/keep": "yes"})
    h = Harness(server, tke_node(tmp_path))
    yield h
    h.close()


def test_new_node_is_migrated_and_reported(harness: Harness) -> None:
    harness.tick()
    assert harness.state() == "migrated"
    meta = harness.node()["metadata"]
    assert meta["labels"][STATE_LABEL] == "migrated"
    assert meta["annotations"]["other.io/keep"] == "yes"
    detail = harness.detail()
    assert detail["source"] == "/etc/kubernetes/kubelet"
    assert detail["cluster_dns"] == ["169.254.20.10"]
    assert detail["original_cluster_dns"] == ["10.96.0.10"]
    assert "Migrated" in harness.events()
    event = next(
        e for e in harness.server.objects("events", EVENT_NAMESPACE) if e["reason"] == "Migrated"
    )
    assert event["involvedObject"]["uid"] == meta["uid"]  # what kubectl describe node uses
    assert event["involvedObject"]["kind"] == "Node" and event["type"] == "Normal"
    assert harness.server.objects("leases", NS) == []  # the slot was released
    assert harness.fake.runner.calls == [("restart-kubelet",)]
    assert harness.gauge("migration_state", state="migrated") == 1
    assert harness.gauge("kubelet_restarts_total") == 1


def test_steady_node_costs_no_requests(harness: Harness) -> None:
    harness.tick()
    harness.tick()  # the reason settles from "migrating ..." to "already uses ..."
    before = len(harness.server.requests.records())
    for _ in range(5):
        harness.tick()
    assert harness.server.requests.records()[before:] == []
    assert len(harness.fake.runner.calls) == 1


def test_opt_out_label_skips_the_node(server: FakeApiServer, tmp_path: Path) -> None:
    server.add_node("node-a", labels={"nodelocaldns-agent.io/opt-out": "true"})
    h = Harness(server, tke_node(tmp_path))
    h.tick()
    assert h.state() == "skipped"
    assert h.fake.runner.calls == []
    assert h.fake.read("/etc/kubernetes/kubelet") == TKE_ENV
    h.close()


def test_revert_mode_puts_the_original_back(server: FakeApiServer, tmp_path: Path) -> None:
    node = migrated_tke_node(server, tmp_path)
    r = Harness(server, node, mode="revert")
    r.tick()
    assert r.state() == "reverted"
    assert node.read("/etc/kubernetes/kubelet") == TKE_ENV
    assert "Reverted" in r.events()
    r.close()


def test_failsafe_reverts_and_recovers(server: FakeApiServer, tmp_path: Path) -> None:
    server.add_node("node-a")
    node = tke_node(tmp_path)
    h = Harness(server, node, failsafe_after=300.0, recover_after=600.0)
    h.tick()
    assert h.state() == "migrated"
    node.prober.answer = DOWN
    h.tick(full=False)
    node.clock.sleep(301)
    h.tick(full=False)
    assert h.state() == "reverted"
    assert node.read("/etc/kubernetes/kubelet") == TKE_ENV
    assert "FailSafeRevert" in h.events()
    assert h.detail()["failsafe"] is True
    assert h.gauge("failsafe_reverts_total") == 1
    node.prober.answer = UP
    h.tick(full=False)
    node.clock.sleep(601)
    h.tick(full=False)
    assert h.state() == "migrated"
    assert len(node.runner.calls) == 3
    # the fail-safe's flips are no drift, whatever the file held in between
    assert [h.gauge("drifts_total", to=d) for d in ("original", "other", "none")] == [0, 0, 0]
    assert "Drifted" not in h.events()
    h.close()


KUBELET = "/etc/kubernetes/kubelet"


def rewritten_by_the_platform(node: FakeNode, data: bytes) -> None:
    """What a platform's boot step does (nodeadm, GCE's configure-helper): it writes
    kubelet's configuration afresh and kubelet starts on it."""
    node.write(KUBELET, data)
    node.start_kubelet()


def test_a_platform_rewrite_is_migrated_again_at_the_next_resync(harness: Harness) -> None:
    """Before: migrated again with a ``Migrated`` Event only, nothing said it was drift and
    nothing counted it."""
    harness.tick()
    harness.tick()
    migrated = harness.fake.read(KUBELET)
    assert harness.state() == "migrated" and migrated != TKE_ENV
    rewritten_by_the_platform(harness.fake, TKE_ENV)  # byte-exact, as the platform wrote it
    harness.tick(full=False)  # a local DNS probe between resyncs never looks at the file
    assert harness.fake.runner.calls == [("restart-kubelet",)]
    assert harness.gauge("drifts_total", to="original") == 0
    harness.fake.clock.sleep(harness.daemon.settings.resync_interval)
    harness.tick(full=False)  # the resync
    assert harness.state() == "migrated"
    assert harness.fake.read(KUBELET) == migrated
    assert harness.fake.runner.calls == [("restart-kubelet",)] * 2  # through the slot again
    assert harness.server.objects("leases", NS) == []
    drifted = [
        e for e in harness.server.objects("events", EVENT_NAMESPACE) if e["reason"] == "Drifted"
    ]
    assert len(drifted) == 1 and drifted[0]["type"] == "Normal"
    assert "the original 10.96.0.10 again" in drifted[0]["message"]
    assert KUBELET in drifted[0]["message"]
    assert harness.gauge("drifts_total", to="original") == 1
    journal = json.loads(harness.fake.read("/var/lib/nodelocaldns-agent/state.json"))
    assert journal["original_cluster_dns"] == ["10.96.0.10"]
    assert harness.fake.read(journal["backup"]) == TKE_ENV
    for _ in range(3):  # settled: no more Events, counts or restarts
        harness.tick()
    assert harness.gauge("drifts_total", to="original") == 1
    assert len(harness.fake.runner.calls) == 2


def test_a_value_someone_else_chose_is_left_alone(harness: Harness) -> None:
    harness.tick()
    harness.tick()
    chosen = TKE_ENV.replace(b"=10.96.0.10", b"=10.96.0.20")
    rewritten_by_the_platform(harness.fake, chosen)
    harness.tick()
    assert harness.state() == "failed"
    assert "changed to 10.96.0.20" in harness.detail()["error"]
    assert harness.fake.read(KUBELET) == chosen
    assert harness.fake.runner.calls == [("restart-kubelet",)]
    event = harness.server.objects("events", EVENT_NAMESPACE)[-1]
    assert (event["reason"], event["type"]) == ("Drifted", "Warning")
    assert harness.gauge("drifts_total", to="other") == 1
    harness.fake.clock.sleep(harness.daemon.settings.resync_interval)
    harness.tick(full=False)
    harness.tick()
    assert harness.gauge("drifts_total", to="other") == 1  # announced once
    assert harness.fake.read(KUBELET) == chosen and len(harness.fake.runner.calls) == 1
    rewritten_by_the_platform(harness.fake, TKE_ENV)  # the original is put back: hand back
    harness.tick()
    assert harness.state() == "migrated" and len(harness.fake.runner.calls) == 2


def test_api_outage_means_no_restart_and_no_crash(harness: Harness) -> None:
    harness.server.faults.fail(503, count=None)
    harness.tick()
    assert harness.fake.runner.calls == []
    assert harness.daemon._retry_at is not None
    harness.server.faults.clear()
    harness.tick()
    assert harness.state() == "migrated"
    assert harness.fake.runner.calls == [("restart-kubelet",)]


def test_held_slot_means_waiting_then_takeover_after_expiry(harness: Harness) -> None:
    coord = harness.api
    coord.create_lease(NS, "nodelocaldns-agent-slot-0", "node-crashed", 30)
    harness.tick()
    assert harness.state() == "waiting-for-lock"
    assert harness.fake.runner.calls == []
    harness.fake.clock.sleep(31)
    harness.tick()
    assert harness.state() == "migrated"
    assert harness.fake.runner.calls == [("restart-kubelet",)]


def test_stale_pods_are_evicted_one_by_one_respecting_budgets(
    server: FakeApiServer, tmp_path: Path
) -> None:
    server.add_node("node-a")
    owner = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "rs",
            "uid": "u",
            "controller": True,
        }
    ]
    ds_owner = [{**owner[0], "kind": "DaemonSet"}]
    for name, owners, labels in (
        ("web-1", owner, {"app": "web"}),
        ("db-1", owner, {"app": "db"}),
        ("agent-1", ds_owner, {}),
    ):
        pod = server.add_pod(name, "apps", node_name="node-a", labels=labels)
        pod["metadata"]["ownerReferences"] = owners
        pod["status"]["startTime"] = "2020-01-01T00:00:00Z"
        server.put_object(pod)
    server.block_evictions("apps", {"app": "db"})
    h = Harness(server, tke_node(tmp_path), restart_stale_pods=True, stale_pod_interval=30.0)
    h.tick()
    assert h.detail()["stale_pods"] == 3

    def terminating() -> set[str]:
        pods = server.objects("pods", "apps")
        return {p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")}

    assert terminating() == {"web-1"}  # evicted first; graceful deletion keeps it listed
    h.fake.clock.sleep(31)
    h.tick(full=False)
    # web-1 is going by itself: no longer counted; db-1's budget refuses; agent-1 is a
    # DaemonSet's pod: counted, never evicted
    assert terminating() == {"web-1"}
    assert h.gauge("stale_pods") == 2
    h.close()


def test_unreadable_kubelet_config_is_reported_not_fatal(harness: Harness) -> None:
    (harness.fake.root / "etc/kubernetes/kubelet").write_bytes(b"CLUSTER_DNS='--cluster-dns=x")
    harness.fake.stop_kubelet()
    harness.tick()
    assert harness.state() == "failed"
    assert "/etc/kubernetes/kubelet" in harness.detail()["error"]
    assert harness.fake.runner.calls == []
    assert harness.daemon._retry_at is not None or "Blocked" in harness.events()


@pytest.mark.parametrize("mode", ["migrate", "revert"])
def test_an_untrusted_kubelet_fails_the_node_with_the_reason(
    server: FakeApiServer, tmp_path: Path, mode: str
) -> None:
    """kubelet.service's main process in a container's mount namespace: nothing trustworthy
    says how kubelet runs, so the node is failed (never migrated or reverted), not edited."""
    server.add_node("node-a")
    node = tke_node(tmp_path)
    node.processes.running = [replace(node.processes.running[0], mnt_ns="mnt:[4026532500]")]
    h = Harness(server, node, mode=mode)
    h.tick()
    assert h.state() == "failed"
    assert "MainPID 101 is not the host's kubelet" in h.detail()["error"]
    assert node.runner.calls == []
    assert node.read("/etc/kubernetes/kubelet") == TKE_ENV
    h.close()


def migrated_tke_node(server: FakeApiServer, tmp_path: Path) -> FakeNode:
    """node-a, a TKE node the agent has migrated (its agent since stopped)."""
    server.add_node("node-a")
    node = tke_node(tmp_path)
    h = Harness(server, node)
    h.tick()
    assert h.state() == "migrated"
    h.close()
    return node


def test_opted_out_node_the_agent_migrated_is_still_reverted_before_uninstall(
    server: FakeApiServer, tmp_path: Path
) -> None:
    node = migrated_tke_node(server, tmp_path)
    obj = server.get("nodes", "node-a")
    assert obj is not None
    obj["metadata"]["labels"]["nodelocaldns-agent.io/opt-out"] = "true"
    obj["metadata"]["labels"]["nodelocaldns-agent.io/mode"] = "migrate"  # revert still wins
    server.put_object(obj)
    r = Harness(server, node, mode="revert")
    r.tick()
    assert r.state() == "reverted"
    assert node.read("/etc/kubernetes/kubelet") == TKE_ENV
    r.close()


def test_unknown_proxy_mode_is_failed_with_a_warning_not_waiting(harness: Harness) -> None:
    harness.fake.interfaces.table.pop("kube-ipvs0")
    harness.fake.http.routes.pop("http://127.0.0.1:10249/proxyMode")
    harness.fake.prober.answer = DOWN
    harness.tick()
    assert harness.state() == "failed"
    assert "kube-proxy mode is unknown" in harness.detail()["error"]
    event = harness.server.objects("events", EVENT_NAMESPACE)[-1]
    assert (event["reason"], event["type"]) == ("Blocked", "Warning")


def test_forbidden_pod_list_only_disables_the_stale_count(harness: Harness) -> None:
    harness.server.faults.fail(403, count=None, path="/api/v1/pods")
    harness.tick()
    harness.tick()
    assert harness.state() == "migrated"
    assert "stale_pods" not in harness.detail()
    assert harness.gauge("reconcile_errors_total", stage="api") == 0
    pod_lists = [r for r in harness.server.requests.records() if r.path == "/api/v1/pods"]
    assert len(pod_lists) == 1  # tried once, then left alone


def test_unknown_state_in_the_journal_is_reported_not_guessed(harness: Harness) -> None:
    harness.tick()
    journal = harness.fake.root / "var/lib/nodelocaldns-agent/state.json"
    raw = json.loads(journal.read_text())
    journal.write_text(json.dumps({**raw, "state": "half-migrated"}))
    harness.tick()
    assert harness.state() == "failed"
    error = harness.detail()["error"]
    assert "/var/lib/nodelocaldns-agent/state.json" in error
    assert "unknown state 'half-migrated'" in error
    assert harness.fake.runner.calls == [("restart-kubelet",)]  # nothing changed since


def test_an_agent_restart_on_a_settled_node_writes_nothing(harness: Harness) -> None:
    """A DaemonSet rollout restarts the agent on every node: on a node that is already
    migrated, the new agent must not patch the Node again (the state, its ``since`` and
    the stale-pod count are what the Node already shows)."""
    harness.tick()
    harness.tick()  # the stale-pod count settles (the pod list is forbidden or empty)
    assert harness.state() == "migrated"
    before = harness.detail()
    harness.server.requests.clear()
    again = Harness(harness.server, harness.fake)  # the same node, a new agent process
    again.tick()
    again.tick()
    patches = harness.server.requests.records(verb="patch", path="/api/v1/nodes/")
    assert patches == [], [r.path for r in patches]
    assert again.detail() == before
    again.close()


def test_an_agent_restart_does_not_take_over_what_it_would_not_write(harness: Harness) -> None:
    """The annotations are writable by anyone with node patch rights: a ``since`` or a
    stale-pod count the agent would not write is replaced, not carried on."""
    harness.tick()
    harness.tick()
    detail = harness.detail()
    forged = {**detail, "since": "x" * 5000, "stale_pods": 10**9}
    harness.server.put_object(
        {
            **harness.node(),
            "metadata": {
                **harness.node()["metadata"],
                "annotations": {
                    **harness.node()["metadata"]["annotations"],
                    DETAIL_ANNOTATION: json.dumps(forged, sort_keys=True, separators=(",", ":")),
                },
            },
        }
    )
    again = Harness(harness.server, harness.fake)
    again.tick()
    again.tick()
    rewritten = again.detail()
    assert rewritten["since"] != forged["since"] and len(rewritten["since"]) == 20
    assert rewritten.get("stale_pods") != 10**9
    again.close()


@pytest.mark.parametrize(("mode", "state"), [("migrate", "failed"), ("revert", "not-needed")])
def test_an_appliance_os_is_reported_with_its_own_way_and_never_edited(
    server: FakeApiServer, tmp_path: Path, mode: str, state: str
) -> None:
    """Bottlerocket renders kubelet's configuration at every boot (issue 14, part 4)."""
    server.add_node("node-a")
    node = tke_node(tmp_path)
    node.write("/etc/os-release", "NAME=Bottlerocket\nID=bottlerocket\n")
    h = Harness(server, node, mode=mode)
    h.tick()
    assert h.state() == state
    assert "apiclient set settings.kubernetes.cluster-dns-ip=169.254.20.10" in h.detail()["reason"]
    if mode == "migrate":
        event = h.server.objects("events", EVENT_NAMESPACE)[-1]
        assert (event["reason"], event["type"]) == ("Blocked", "Warning")
        assert event["message"].startswith("Bottlerocket (os-release ID=bottlerocket): ")
    assert node.runner.calls == []
    assert node.read("/etc/kubernetes/kubelet") == TKE_ENV
    h.close()


def test_fallback_toggled_converges_through_the_slot_and_is_no_drift(
    server: FakeApiServer, tmp_path: Path
) -> None:
    node = migrated_tke_node(server, tmp_path)
    on = Harness(server, node, node_settings={"fallback_nameserver": True})
    on.tick()
    assert on.state() == "migrated", on.detail()
    assert on.detail()["cluster_dns"] == ["169.254.20.10", "10.96.0.10"]
    assert on.detail()["original_cluster_dns"] == ["10.96.0.10"]
    assert on.gauge("kubelet_cluster_dns", kind="local") == 1
    on.tick()
    assert len(node.runner.calls) == 2  # one restart for the change, none once there
    on.close()
    off = Harness(server, node)
    off.tick()
    assert off.state() == "migrated" and off.detail()["cluster_dns"] == ["169.254.20.10"]
    assert len(node.runner.calls) == 3
    assert "Drifted" not in off.events() and off.gauge("drifts_total", to="other") in (None, 0)
    off.close()
