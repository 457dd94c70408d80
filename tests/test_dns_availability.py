"""What pods see while node-cache is updated or killed, with the real node-cache (issue 15).

A sandbox node runs the real node-cache with the chart's rendered Corefile and arguments; a
pod on it (testing/sandbox/pod.py: own network namespace behind a veth pair, kubelet's
resolv.conf) resolves through glibc and musl every 10 ms. The short CI form of
``bench/dns_availability.py`` (its figures: docs/availability.md). Needs the node-cache
binary (``NODE_CACHE_BIN`` or ``../shared/tools/node-cache``), iptables, gcc with libc6-dev
and musl-tools: without them the tests fail saying what to install; they do not skip.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from testing.sandbox.constants import LOCAL_DNS, LOCAL_DNS_LINK
from testing.sandbox.node import SandboxNode
from testing.sandbox.pod import (
    RECORDS,
    WRONG_ADDRESS,
    Lookup,
    Pod,
    parse_lookups,
    resolv_conf,
    summarize,
)
from testing.sandbox.rollout import NodeCacheLifecycle

#: the resolver's timeout (resolv.conf(5): ``timeout:5``, glibc and musl): a lookup that
#: took this long waited for an answer that never came
RESOLVER_TIMEOUT = 5.0


# -- the pure parts -----------------------------------------------------------------------
def test_resolv_conf_is_what_kubelet_writes_for_cluster_first() -> None:
    assert resolv_conf([LOCAL_DNS], "team-a") == (
        "nameserver 169.254.20.10\n"
        "search team-a.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )
    assert resolv_conf([LOCAL_DNS, "10.96.0.10"]).splitlines()[:2] == [
        "nameserver 169.254.20.10",
        "nameserver 10.96.0.10",
    ]


def test_lookup_lines_parse_to_seconds_and_named_errors() -> None:
    found = parse_lookups("1500000000 2000000 0\n2500000000 5004000000 -3\n3000000000 1000 1\n")
    assert found == [
        Lookup(1.5, 0.002, 0),
        Lookup(2.5, 5.004, -3),
        Lookup(3.0, 0.000001, WRONG_ADDRESS),
    ]
    assert [lk.error for lk in found] == ["", "EAI_AGAIN", "wrong address"]


@pytest.mark.parametrize(
    ("lookups", "expected"),
    [
        ([], {"lookups": 0, "failed": 0, "p50_ms": None, "max_ms": None, "over_1s": 0}),
        (
            [Lookup(float(i), 0.001 * (i + 1), 0) for i in range(100)],
            {"lookups": 100, "failed": 0, "p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0},
        ),
        (
            [Lookup(1.0, 0.002, 0), Lookup(2.0, 5.0, -3), Lookup(7.0, 0.001, -3)],
            {
                "failed": 2,
                "over_1s": 1,
                "stalled_s": 5.0,
                "errors": {"EAI_AGAIN": 2},
                "first_failure": 2.0,
                "last_failure": 7.0,
            },
        ),
    ],
)
def test_summarize(lookups: list[Lookup], expected: dict[str, object]) -> None:
    got = summarize(lookups)
    assert {key: got[key] for key in expected} == expected


# -- with the real node-cache ---------------------------------------------------------------
def _node(tmp_path: Path) -> SandboxNode:
    return SandboxNode(tmp_path / "node", kubelet=False, kube_proxy=False, dns_records=RECORDS)


@pytest.mark.netns
def test_a_surge_update_loses_no_lookup_of_either_libc(tmp_path: Path) -> None:
    """The chart's update: the new node-cache serves beside the old one, then the old one
    gets SIGTERM and (``-skipteardown``) leaves the address to the new one. Rendered with
    ``nodeLocalDNS.skipTeardown=false`` the old one deletes the interface on its way out
    and every lookup after that fails or waits out the 5 s timeout (docs/availability.md)."""
    with _node(tmp_path) as node, Pod(node) as pod:
        time.sleep(1.0)
        lifecycle = NodeCacheLifecycle(node)
        events = lifecycle.surge(overlap=1.0)
        time.sleep(2.0)
        end = time.monotonic()
        assert pod.settle(end) == {"glibc": None, "musl": None}
        summary = pod.summary(until=end)
        assert lifecycle.link_kept is True and LOCAL_DNS_LINK in node.links()
    for libc, got in summary.items():
        assert got["failed"] == 0, (libc, got)
        # A query the old process had received but not answered when it exited is lost
        # (it leaves with its SO_REUSEPORT socket's queue): that lookup waits for its
        # resolver's retry (glibc 5 s, musl 2.5 s) and then gets its answer from the new
        # one. Nothing else waits.
        slow = [lk for lk in pod.lookups(libc) if lk.start < end and lk.seconds >= 1.0]
        assert len(slow) <= 1 and all(lk.start < events["exited"] for lk in slow), slow
        after = [lk for lk in pod.lookups(libc) if events["exited"] <= lk.start < end]
        # ~4 s of 10 ms lookups, ~2 s of them after the old one exited (unless it waited)
        assert got["lookups"] > 100 and (len(after) > 60 or slow), (libc, got, len(after))


@pytest.mark.netns
def test_after_a_sigkill_the_bound_address_refuses_at_once(tmp_path: Path) -> None:
    """SIGKILL (an OOM kill): no teardown runs, 169.254.20.10 stays bound, so a query
    meets ICMP port unreachable and glibc gives up at once (ECONNREFUSED: glibc
    ``resolv/res_send.c`` tries the next server, there is none) instead of waiting out
    the 5 s timeout; once the restarted node-cache serves, failures end within 1 s.

    Two things the chart cannot change, hence this test's scope (measured in
    docs/availability.md): the query node-cache had received but not answered when it
    was killed is lost (that one lookup waits the 5 s; it began before the exit); and
    the kernel rate-limits ICMP destination unreachable per destination (net.ipv4.
    icmp_ratelimit 1 s, icmp_ratemask), so a busy pod gets the refusal for only a few
    queries a second: this node lifts that limit (``icmp_ratemask`` without type 3).
    musl sends from an unconnected socket, sees no refusal and retries every 2.5 s
    (musl ``src/network/res_msend.c``): it recovers within one retry."""
    with _node(tmp_path) as node:
        assert node.exec(["sysctl", "-w", "net.ipv4.icmp_ratemask=6160"]).returncode == 0
        with Pod(node) as pod:
            time.sleep(1.0)
            lifecycle = NodeCacheLifecycle(node)
            events = lifecycle.kill(backoff=6.0)
            time.sleep(1.5)
            end = time.monotonic()
            assert pod.settle(end) == {"glibc": None, "musl": None}
            assert lifecycle.link_kept is True
    glibc = [lk for lk in pod.lookups("glibc") if lk.start < end]
    # from the exit until the restart is spawned (it may answer before its pidfile)
    during = [lk for lk in glibc if events["exited"] <= lk.start < events["new_started"]]
    assert len(during) > 50, during[:5]  # it kept asking, and was refused each time
    assert all(not lk.ok and lk.seconds < 1.0 for lk in during), during
    slow = [lk for lk in glibc if lk.seconds >= RESOLVER_TIMEOUT]
    assert all(lk.start < events["exited"] for lk in slow), (events, slow)
    serving = events["new_serving"]
    for libc, limit in (("glibc", 1.0), ("musl", 3.0)):
        lookups = [lk for lk in pod.lookups(libc) if lk.start < end]
        ends = [lk.start + lk.seconds for lk in lookups if lk.ok]
        first_ok = min(t for t in ends if t >= serving)
        failures_end = max((lk.start + lk.seconds for lk in lookups if not lk.ok), default=0.0)
        assert first_ok - serving < limit, (libc, first_ok - serving)
        assert failures_end - serving < limit, (libc, failures_end - serving)
