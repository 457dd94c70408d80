"""``check`` shows node-cache's readiness beside the DNS answer: ``/health`` on each local
address (nodelocaldns_agent/detect/localdns.py ``node_cache_health``), reported only.

node-cache serves CoreDNS's health plugin on ``<-localip>:<-health-port>`` (kubernetes/dns
cmd/node-cache/app/cache_app.go sets ``health <localip>:<health-port>`` in the Corefile it
generates; the chart's liveness/readiness probes GET ``/health`` there). The plugin answers
200 ``OK`` while CoreDNS serves and 503 during ``lameduck`` (coredns plugin/health
README: "it will return 503 when lameduck is enabled and CoreDNS is shutting down")."""

from __future__ import annotations

import pytest

from nodelocaldns_agent.detect.localdns import (
    Listener,
    NodeCacheHealth,
    health_url,
    node_cache_health,
)
from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.host.probes import HttpResult
from nodelocaldns_agent.settings import NodeSettings
from testing.fakes import FakeHttp

V4 = "169.254.20.10"
V6 = "fd00::a"


def _listener(address: str, bound: bool = True) -> Listener:
    return Listener(address, bound, "nodelocaldns" if bound else "", bound, None, "ok", "")


URL4 = f"http://{V4}:8080/health"
URL6 = f"http://[{V6}]:8080/health"


@pytest.mark.parametrize(
    ("bound", "answer", "expected"),
    [
        (True, HttpResult(200, "OK"), NodeCacheHealth(V4, URL4, True, 200, "")),
        (
            True,
            HttpResult(503, "shutting\n down"),
            NodeCacheHealth(V4, URL4, False, 503, f"GET {URL4}: HTTP 503 shutting down"),
        ),
        (
            True,
            OSError(f"GET {URL4}: connection refused"),
            NodeCacheHealth(V4, URL4, False, None, f"GET {URL4}: connection refused"),
        ),
        # never asked: an unbound link-local address would route the request off the node
        (False, None, NodeCacheHealth(V4, "", False, None, f"{V4} is not bound: not asked")),
    ],
    ids=["ok", "lameduck", "nothing-listens", "not-bound"],
)
def test_health_of_one_address(
    bound: bool, answer: HttpResult | OSError | None, expected: NodeCacheHealth
) -> None:
    http = FakeHttp({URL4: answer} if answer is not None else {})
    assert node_cache_health((_listener(V4, bound),), http, 8080, 2.0) == (expected,)
    assert http.calls == ([URL4] if bound else [])


def test_each_address_of_a_dual_stack_node_is_asked_ipv6_in_brackets() -> None:
    http = FakeHttp({URL4: HttpResult(200, "OK"), URL6: HttpResult(200, "OK")})
    found = node_cache_health((_listener(V4), _listener(V6)), http, 8080, 2.0)
    assert [(one.address, one.ready) for one in found] == [(V4, True), (V6, True)]
    assert http.calls == [URL4, URL6]
    assert health_url(V6, 9090) == f"http://[{V6}]:9090/health"


def test_port_zero_asks_nothing() -> None:
    http = FakeHttp()
    assert node_cache_health((_listener(V4),), http, 0, 2.0) == ()
    assert http.calls == []


def test_the_port_setting_is_the_charts_default_and_checked() -> None:
    assert NodeSettings().node_cache_health_port == 8080
    assert NodeSettings(node_cache_health_port=0).node_cache_health_port == 0
    with pytest.raises(ConfigError, match="--node-cache-health-port: expected a TCP port"):
        NodeSettings(node_cache_health_port=70000)
