"""The daemon's ``run`` loop (real threads, real HTTP) under API faults: 5xx storms,
dropped watches, 409 on every first write, stalls, 410 Gone. The node stays safe (no
kubelet restart without a restart slot and a reported state), the agent keeps reporting
when the API returns, and it never busy-loops (request rate measured)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nodelocaldns_agent.daemon import Daemon
from nodelocaldns_agent.kube.api import KubeApi
from nodelocaldns_agent.kube.lock import RestartLock
from nodelocaldns_agent.kube.status import NodeStatus
from nodelocaldns_agent.metrics import Health, Metrics
from nodelocaldns_agent.settings import RunSettings
from nodelocaldns_agent.state import MODE_LABEL, STATE_ANNOTATION
from testing.fake_apiserver import FakeApiServer
from testing.fakenode import FakeNode, tke_node

NS = "nodelocaldns"
NODE = "node-a"


class Running:
    """A Daemon.run() in a thread against the fake API server."""

    def __init__(
        self,
        server: FakeApiServer,
        fake: FakeNode,
        request_timeout: float = 5.0,
        **settings: object,
    ) -> None:
        self.server = server
        self.fake = fake
        self.client = server.api_client()
        self.api = KubeApi(self.client, request_timeout=request_timeout)
        rs = RunSettings(
            node_name=NODE,
            namespace=NS,
            probe_interval=0.2,
            resync_interval=30,
            lock_wait=0.5,
            lease_duration=10,
            **settings,
        )  # type: ignore[arg-type]
        self.stop = threading.Event()
        self.health = Health(stall_after=30)
        self.daemon = Daemon(
            rs,
            fake.engine(),
            self.api,
            RestartLock(self.api, NS, NODE, 1, fake.clock, duration=rs.lease_duration),
            NodeStatus(self.api, NODE),
            Metrics(CollectorRegistry(), version="t"),
            self.health,
            fake.clock,
            self.stop,
        )
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.daemon.wake()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the daemon did not stop"
        self.client.close()

    def state(self) -> str | None:
        obj = self.server.get("nodes", NODE) or {}
        return (obj.get("metadata", {}).get("annotations") or {}).get(STATE_ANNOTATION)

    def wait_state(self, state: str, timeout: float = 10.0) -> None:
        self.server.wait_for(lambda: self.state() == state, timeout=timeout)

    def relabel(self, **labels: str) -> None:
        node = self.server.get("nodes", NODE)
        assert node is not None
        node["metadata"]["labels"].update(labels)
        self.server.put_object(node)


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        srv.add_node(NODE)
        yield srv


@pytest.fixture
def fake(tmp_path: Path) -> FakeNode:
    return tke_node(tmp_path)


def test_watch_wakes_the_loop_and_survives_410_and_drops(
    server: FakeApiServer, fake: FakeNode
) -> None:
    with Running(server, fake) as run:
        run.wait_state("migrated")
        run.relabel(**{"nodelocaldns-agent.io/opt-out": "true"})
        run.wait_state("skipped", timeout=5)  # resync is 30 s: only the watch can do this
        server.faults.drop_watches()
        server.compact()  # the resumed watch gets 410 Gone and re-reads the Node
        run.relabel(**{"nodelocaldns-agent.io/opt-out": "false", MODE_LABEL: "revert"})
        run.wait_state("reverted", timeout=8)
    assert len(fake.runner.calls) == 2


def test_5xx_storm_no_restart_bounded_rate_then_recovers(
    server: FakeApiServer, fake: FakeNode
) -> None:
    server.faults.fail(503, count=None)
    with Running(server, fake) as run:
        start = len(server.requests.records())
        time.sleep(4.0)
        storm = len(server.requests.records()) - start
        assert fake.runner.calls == []
        assert run.health.live()[0]
        # first node read + watch retries with doubling, jittered backoff: a handful
        assert storm <= 12, f"{storm} requests in 4 s during a 503 storm"
        server.faults.clear()
        run.wait_state("migrated", timeout=40)
    assert fake.runner.calls == [("restart-kubelet",)]


def test_conflict_on_every_first_write(server: FakeApiServer, fake: FakeNode) -> None:
    server.faults.conflict_on_first_write()
    with Running(server, fake) as run:
        run.wait_state("migrated", timeout=20)
    assert fake.runner.calls == [("restart-kubelet",)]
    assert server.objects("leases", NS) == []


def test_stalled_api_means_no_restart_and_a_live_agent(
    server: FakeApiServer, fake: FakeNode
) -> None:
    with Running(server, fake, request_timeout=0.5) as run:
        run.wait_state("migrated")
        fake.runner.calls.clear()
        run.relabel(**{MODE_LABEL: "revert"})
        server.faults.delay(30.0, method="POST")  # lease creation stalls for 30 s
        time.sleep(3.0)
        assert fake.runner.calls == []  # no restart without a restart slot
        assert run.health.live()[0]
        server.faults.clear()
        run.wait_state("reverted", timeout=40)
    assert fake.runner.calls == [("restart-kubelet",)]
