"""detect_proxy_mode: the kube-ipvs0 interface first, then kube-proxy's /proxyMode."""

from __future__ import annotations

import pytest

from nodelocaldns_agent.detect.proxymode import ProxyMode, detect_proxy_mode
from nodelocaldns_agent.host.probes import HttpResult
from testing.fakes import FakeHttp

URL = "http://127.0.0.1:10249/proxyMode"
NO_IPVS = {"lo": ("127.0.0.1",), "eth0": ("10.0.1.11",)}


@pytest.mark.parametrize(
    ("interfaces", "answer", "expected"),
    [
        # kube-ipvs0 decides without asking kube-proxy (it holds no address when down)
        ({**NO_IPVS, "kube-ipvs0": ()}, None, ProxyMode("ipvs", "interface kube-ipvs0")),
        (NO_IPVS, HttpResult(200, "iptables\n"), ProxyMode("iptables", URL)),
        (NO_IPVS, HttpResult(200, "NFTables"), ProxyMode("nftables", URL)),
        (NO_IPVS, HttpResult(200, "ipvs"), ProxyMode("ipvs", URL)),
        (
            NO_IPVS,
            HttpResult(200, "userspace"),
            ProxyMode("unknown", f"no kube-ipvs0 interface and {URL} answered 200 'userspace'"),
        ),
        (
            NO_IPVS,
            HttpResult(404, "404 page not found"),
            ProxyMode(
                "unknown", f"no kube-ipvs0 interface and {URL} answered 404 '404 page not found'"
            ),
        ),
        (
            NO_IPVS,
            OSError("connection refused"),
            ProxyMode("unknown", "no kube-ipvs0 interface and connection refused"),
        ),
    ],
)
def test_detect_proxy_mode(
    interfaces: dict[str, tuple[str, ...]],
    answer: HttpResult | OSError | None,
    expected: ProxyMode,
) -> None:
    http = FakeHttp({URL: answer} if answer is not None else {})
    assert detect_proxy_mode(interfaces, http, URL) == expected
    assert http.calls == ([] if answer is None else [URL])
