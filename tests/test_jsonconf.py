"""KubeletConfiguration JSON: locating and editing ``clusterDNS`` in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.jsonconf import FORMAT, find_cluster_dns

DATA = Path(__file__).parent / "data" / "kubelet"
PATH = "/etc/kubernetes/kubelet/kubelet-config.json"
NEW = ["169.254.20.10"]


def test_eks_config():
    data = (DATA / "eks-kubelet-config.json").read_bytes()
    assert FORMAT.name == "json"
    assert FORMAT.read(data, PATH) == ("172.20.0.10",)
    site = find_cluster_dns(data, PATH)
    assert site is not None and site.line == 40
    out = FORMAT.edit(data, NEW, PATH)
    assert out == data.replace(b'"172.20.0.10"', b'"169.254.20.10"')
    assert FORMAT.edit(out, ["172.20.0.10"], PATH) == data
    two = FORMAT.edit(data, ["169.254.20.10", "172.20.0.10"], PATH)
    assert two == data.replace(b'"172.20.0.10"', b'"169.254.20.10",\n    "172.20.0.10"')
    assert json.loads(two)["tlsCipherSuites"] == json.loads(data)["tlsCipherSuites"]


EDITS = [
    ("compact", b'{"clusterDNS":["10.100.0.10"],"maxPods":17}', ("10.100.0.10",), NEW,
     b'{"clusterDNS":["169.254.20.10"],"maxPods":17}'),
    ("crlf and bom", b'\xef\xbb\xbf{\r\n  "clusterDNS": [\r\n    "10.100.0.10"\r\n  ]\r\n}\r\n',
     ("10.100.0.10",), NEW,
     b'\xef\xbb\xbf{\r\n  "clusterDNS": [\r\n    "169.254.20.10"\r\n  ]\r\n}\r\n'),
    ("no trailing newline", b'{"clusterDNS": ["10.100.0.10"]}', ("10.100.0.10",), NEW,
     b'{"clusterDNS": ["169.254.20.10"]}'),
    ("insert keeps separator", b'{"clusterDNS": ["1.1.1.1" ,  "2.2.2.2"]}', ("1.1.1.1", "2.2.2.2"),
     ["3.3.3.3", "4.4.4.4", "5.5.5.5"], b'{"clusterDNS": ["3.3.3.3" ,  "4.4.4.4" ,  "5.5.5.5"]}'),
    ("insert one-line", b'{"clusterDNS": ["1.1.1.1"]}', ("1.1.1.1",), ["3.3.3.3", "fd00::a"],
     b'{"clusterDNS": ["3.3.3.3", "fd00::a"]}'),
    ("insert into empty", b'{"clusterDNS": [ ]}', (), ["3.3.3.3", "4.4.4.4"],
     b'{"clusterDNS": ["3.3.3.3", "4.4.4.4" ]}'),
    ("delete", b'{"clusterDNS": [\n  "1.1.1.1",\n  "2.2.2.2"\n]}', ("1.1.1.1", "2.2.2.2"), NEW,
     b'{"clusterDNS": [\n  "169.254.20.10"\n]}'),
    ("escaped item rewritten whole", b'{"clusterDNS": ["10.0.0.\\u0031"]}', ("10.0.0.1",), NEW,
     b'{"clusterDNS": ["169.254.20.10"]}'),
    ("nested keys ignored",
     b'{"a": {"clusterDNS": ["9.9.9.9"]}, "clusterDNS": ["1.1.1.1"], "b": ["clusterDNS"]}',
     ("1.1.1.1",), NEW,
     b'{"a": {"clusterDNS": ["9.9.9.9"]}, "clusterDNS": ["169.254.20.10"], "b": ["clusterDNS"]}'),
    ("escaped key", b'{"cluster\\u0044NS": ["1.1.1.1"]}', ("1.1.1.1",), NEW,
     b'{"cluster\\u0044NS": ["169.254.20.10"]}'),
    ("unicode elsewhere", '{"x": "caf\u00e9", "clusterDNS": ["1.1.1.1"]}'.encode(),
     ("1.1.1.1",), NEW,
     '{"x": "caf\u00e9", "clusterDNS": ["169.254.20.10"]}'.encode()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "values", "new", "edited"), [c[1:] for c in EDITS], ids=[c[0] for c in EDITS]
)
def test_edit(data: bytes, values: tuple[str, ...], new: list[str], edited: bytes):
    assert FORMAT.read(data, "/f") == values
    assert FORMAT.edit(data, new, "/f") == edited
    assert FORMAT.read(edited, "/f") == tuple(new)


@pytest.mark.parametrize("data", [b"{}", b' {"kind": "KubeletConfiguration"} \n'])
def test_no_cluster_dns(data: bytes):
    assert FORMAT.read(data, "/f") == ()
    with pytest.raises(ConfigError, match=r"^/f: no clusterDNS to edit"):
        FORMAT.edit(data, NEW, "/f")


def test_null_cluster_dns_reads_empty_but_is_not_edited():
    data = b'{"clusterDNS": null}'
    assert FORMAT.read(data, "/f") == ()
    with pytest.raises(ConfigError, match=r"^/f line 1: clusterDNS is null"):
        FORMAT.edit(data, NEW, "/f")


ERRORS = [
    (b"", r"^/f line 1: expected KubeletConfiguration JSON: Expecting value"),
    (b'["1.1.1.1"]', r"^/f line 1: expected a JSON object at the top level"),
    (b'{"clusterDNS": ["1.1.1.1"],\n "clusterDNS": []}',
     r"^/f line 2: clusterDNS appears 2 times \(lines 1, 2\); expected exactly one$"),
    (b'{"clusterDNS": "1.1.1.1"}', r"^/f line 1: expected clusterDNS to be an array of strings"),
    (b'{"clusterDNS": ["1.1.1.1", 2]}', r"^/f line 1: expected clusterDNS items to be strings"),
    (b'{"clusterDNS": ["1.1.1.1",]}', r"^/f line 1: expected KubeletConfiguration JSON"),
    (b'{"clusterDNS": ["1.1.1.1"]}\n{}',
     r"^/f line 2: expected KubeletConfiguration JSON: Extra data"),
    (b'{"maxPods": NaN}', r"^/f: expected KubeletConfiguration JSON: NaN is not JSON"),
    (b'{"a": "caf\xe9"}', r"^/f: byte 10 is not valid UTF-8"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", r"^/f: nested too deeply"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "pattern"), ERRORS, ids=[p for _, p in ERRORS])
def test_malformed(data: bytes, pattern: str):
    with pytest.raises(ConfigError, match=pattern):
        FORMAT.read(data, "/f")
    with pytest.raises(ConfigError, match=pattern):
        FORMAT.edit(data, NEW, "/f")


@pytest.mark.parametrize("new", [[], ["dns.local"], ['1.1.1.1"'], ["fe80::1%eth0"]])
def test_new_values_must_be_ip_addresses(new: list[str]):
    with pytest.raises(ConfigError, match=r"^/f: "):
        FORMAT.edit(b'{"clusterDNS": ["1.1.1.1"]}', new, "/f")


def test_large_document():
    data = b'{"k": [' + b'"x", ' * 150_000 + b'"y"], "clusterDNS": ["1.1.1.1"]}'
    assert FORMAT.edit(data, NEW, "/f") == data.replace(b"1.1.1.1", b"169.254.20.10")
