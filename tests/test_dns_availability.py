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
def _node(tmp_path: Path, *values: str) -> SandboxNode:
    """A node running the chart's node-cache, rendered with the helm arguments ``values``."""
    return SandboxNode(
        tmp_path / "node",
        kubelet=False,
        kube_proxy=False,
        dns_records=RECORDS,
        node_cache_values=values,
    )


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


#: the chart's option that lifts the host's ICMP rate limit for destination unreachable
FAST_REFUSAL = ("--set", "nodeLocalDNS.fastRefusal.enabled=true")
#: net.ipv4.icmp_ratemask as a path; a new network namespace starts with the kernel's
#: default, 6168 (types 3, 4, 11, 12), not with the machine's value
RATEMASK = Path("/proc/sys/net/ipv4/icmp_ratemask")


def _killed_and_restarted(tmp_path: Path, *values: str) -> tuple[str, dict[str, float], Pod, float]:
    """A node of the chart rendered with ``values``; its node-cache SIGKILLed (an OOM
    kill) and restarted after a 6 s back-off. (the node's icmp_ratemask, the lifecycle's
    events, the pod, when the window ended)."""
    with _node(tmp_path, *values) as node:
        ratemask = node.exec(["cat", str(RATEMASK)]).stdout.strip()
        with Pod(node) as pod:
            time.sleep(1.0)
            lifecycle = NodeCacheLifecycle(node)
            events = lifecycle.kill(backoff=6.0)
            time.sleep(1.5)
            end = time.monotonic()
            assert pod.settle(end) == {"glibc": None, "musl": None}
            assert lifecycle.link_kept is True  # SIGKILL: no teardown, the address stays
    return ratemask, events, pod, end


@pytest.mark.netns
def test_after_a_sigkill_the_bound_address_refuses_at_once(tmp_path: Path) -> None:
    """SIGKILL (an OOM kill): no teardown runs, 169.254.20.10 stays bound, so a query
    meets ICMP port unreachable and glibc gives up at once (ECONNREFUSED: glibc
    ``resolv/res_send.c`` tries the next server, there is none) instead of waiting out
    the 5 s timeout; once the restarted node-cache serves, failures end within 1 s.

    The kernel rate-limits ICMP destination unreachable (net.ipv4.icmp_ratelimit 1 s
    per destination and icmp_msgs_per_sec, for the types in icmp_ratemask): the chart's
    ``nodeLocalDNS.fastRefusal`` lifts that for type 3 with an init container, which the
    node runs in its network namespace (its "host" one) before node-cache starts. One
    thing no option changes: the query node-cache had received but not answered when it
    was killed is lost (that one lookup waits the 5 s; it began before the exit). musl
    sends from an unconnected socket, sees no refusal and retries every 2.5 s (musl
    ``src/network/res_msend.c``): it recovers within one retry."""
    machine = RATEMASK.read_text()
    ratemask, events, pod, end = _killed_and_restarted(tmp_path, *FAST_REFUSAL)
    assert ratemask == "6160"  # 6168 without bit 3, done by the chart's init container
    assert RATEMASK.read_text() == machine  # the node's namespace, not the machine's
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


@pytest.mark.netns
def test_after_a_sigkill_the_default_render_leaves_glibc_waiting(tmp_path: Path) -> None:
    """The same kill with the chart's defaults: the kernel's rate limit lets a few
    refusals through and drops the rest, so glibc lookups begun after the kill wait out
    the 5 s timeout (docs/availability.md: 15 of 16 s stalled), and it keeps few lookups
    going where the fast-refusal node had hundreds."""
    ratemask, events, pod, end = _killed_and_restarted(tmp_path)
    assert ratemask == "6168"
    glibc = [lk for lk in pod.lookups("glibc") if lk.start < end]
    during = [lk for lk in glibc if events["exited"] <= lk.start < events["new_started"]]
    hung = [lk for lk in during if lk.seconds >= RESOLVER_TIMEOUT]
    assert hung, during  # the claim "no lookup hangs 5 s" does not hold here
    assert len(during) < 20, len(during)
