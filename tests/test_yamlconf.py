"""KubeletConfiguration YAML: locating and editing ``clusterDNS`` in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.yamlconf import FORMAT, find_cluster_dns, render_item

DATA = Path(__file__).parent / "data" / "kubelet"
PATH = "/var/lib/kubelet/config.yaml"
NEW = ["169.254.20.10"]


def test_kubeadm_config():
    data = (DATA / "kubeadm-config.yaml").read_bytes()
    assert FORMAT.name == "yaml"
    assert FORMAT.read(data, PATH) == ("10.96.0.10",)
    site = find_cluster_dns(data, PATH)
    assert site is not None and (site.line, site.style) == (16, "block")
    out = FORMAT.edit(data, NEW, PATH)
    assert out == data.replace(b"- 10.96.0.10\n", b"- 169.254.20.10\n")
    assert FORMAT.edit(out, ["10.96.0.10"], PATH) == data


EDITS = [
    # (name, file, what read gives, new, file after the edit)
    ("block", b"a: 1\nclusterDNS:\n- 10.96.0.10\nb: 2\n", ("10.96.0.10",), NEW,
     b"a: 1\nclusterDNS:\n- 169.254.20.10\nb: 2\n"),
    ("indented block with comments", b"clusterDNS:   # dns\n  - 10.96.0.10  # old\n# end\n",
     ("10.96.0.10",), NEW, b"clusterDNS:   # dns\n  - 169.254.20.10  # old\n# end\n"),
    ("flow", b"clusterDNS: [10.96.0.10]\n", ("10.96.0.10",), NEW, b"clusterDNS: [169.254.20.10]\n"),
    ("single quotes", b"clusterDNS: ['10.96.0.10']\n", ("10.96.0.10",), NEW,
     b"clusterDNS: ['169.254.20.10']\n"),
    ("double quotes", b'clusterDNS:\n- "10.96.0.10"\n', ("10.96.0.10",), NEW,
     b'clusterDNS:\n- "169.254.20.10"\n'),
    ("crlf", b"kind: KubeletConfiguration\r\nclusterDNS:\r\n- 10.96.0.10\r\n", ("10.96.0.10",), NEW,
     b"kind: KubeletConfiguration\r\nclusterDNS:\r\n- 169.254.20.10\r\n"),
    ("bom", b"\xef\xbb\xbfclusterDNS:\n- 10.96.0.10\n", ("10.96.0.10",), NEW,
     b"\xef\xbb\xbfclusterDNS:\n- 169.254.20.10\n"),
    ("no trailing newline", b"clusterDNS:\n- 10.96.0.10", ("10.96.0.10",), NEW,
     b"clusterDNS:\n- 169.254.20.10"),
    ("quoted key, tag and anchor", b'"clusterDNS": &d\n- !!str 10.96.0.10\n', ("10.96.0.10",), NEW,
     b'"clusterDNS": &d\n- !!str 169.254.20.10\n'),
    ("flow mapping", b"{clusterDNS: [10.96.0.10], kind: KubeletConfiguration}",
     ("10.96.0.10",), NEW,
     b"{clusterDNS: [169.254.20.10], kind: KubeletConfiguration}"),
    ("unicode elsewhere", "# caf\u00e9 \u2603\nclusterDNS: [10.96.0.10]\n".encode(),
     ("10.96.0.10",), NEW,
     "# caf\u00e9 \u2603\nclusterDNS: [169.254.20.10]\n".encode()),
    ("insert block", b"clusterDNS:\r\n  - 10.96.0.10  # one\r\nb: 2\r\n", ("10.96.0.10",),
     ["169.254.20.10", "10.96.0.10"],
     b"clusterDNS:\r\n  - 169.254.20.10  # one\r\n  - 10.96.0.10\r\nb: 2\r\n"),
    ("insert block at eof", b"clusterDNS:\n- '10.96.0.10'", ("10.96.0.10",), ["1.1.1.1", "2.2.2.2"],
     b"clusterDNS:\n- '1.1.1.1'\n- '2.2.2.2'"),
    ("insert flow", b"clusterDNS: [10.96.0.10,10.0.0.1]\n", ("10.96.0.10", "10.0.0.1"),
     ["1.1.1.1", "2.2.2.2", "3.3.3.3"], b"clusterDNS: [1.1.1.1,2.2.2.2,3.3.3.3]\n"),
    ("insert multi-line flow", b"clusterDNS: [\n    10.96.0.10\n]\n", ("10.96.0.10",),
     ["1.1.1.1", "2.2.2.2"],
     b"clusterDNS: [\n    1.1.1.1,\n    2.2.2.2\n]\n"),
    ("insert into empty flow", b"clusterDNS: []\n", (), ["1.1.1.1", "2.2.2.2"],
     b"clusterDNS: [1.1.1.1, 2.2.2.2]\n"),
    ("delete block", b"clusterDNS:\n- 10.96.0.10  # a\n# about b\n- 10.0.0.1  # b\nz: 1\n",
     ("10.96.0.10", "10.0.0.1"), NEW, b"clusterDNS:\n- 169.254.20.10  # a\nz: 1\n"),
    ("delete flow", b'clusterDNS: ["10.96.0.10", "10.0.0.1"]\n', ("10.96.0.10", "10.0.0.1"), NEW,
     b"clusterDNS: [\"169.254.20.10\"]\n"),
    ("ipv6 plain when safe", b"clusterDNS: [10.96.0.10]\n", ("10.96.0.10",), ["fd00::a"],
     b"clusterDNS: [fd00::a]\n"),
    ("ipv6 quoted when not", b"clusterDNS:\n- 10.96.0.10\n", ("10.96.0.10",), ["fd00::", "::1"],
     b'clusterDNS:\n- "fd00::"\n- ::1\n'),
    ("sexagesimal-looking ipv6 quoted", b"clusterDNS: [10.96.0.10]\n", ("10.96.0.10",),
     ["1:2:3:4:5:6:7:8"], b'clusterDNS: ["1:2:3:4:5:6:7:8"]\n'),
    ("escaped item rewritten whole", b'clusterDNS: ["10.96.0.\\x31"]\n', ("10.96.0.1",), NEW,
     b'clusterDNS: ["169.254.20.10"]\n'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "values", "new", "edited"), [c[1:] for c in EDITS], ids=[c[0] for c in EDITS]
)
def test_edit(data: bytes, values: tuple[str, ...], new: list[str], edited: bytes):
    assert FORMAT.read(data, "/f") == values
    assert FORMAT.edit(data, new, "/f") == edited
    assert FORMAT.read(edited, "/f") == tuple(new)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"# only a comment\n",
        b"kind: KubeletConfiguration\n",
        b"nested:\n  clusterDNS: [1.1.1.1]\n",
    ],
)
def test_no_cluster_dns(data: bytes):
    assert FORMAT.read(data, "/f") == ()
    assert find_cluster_dns(data, "/f") is None
    with pytest.raises(ConfigError, match=r"^/f: no clusterDNS to edit"):
        FORMAT.edit(data, NEW, "/f")


@pytest.mark.parametrize("data", [b"clusterDNS:\n", b"clusterDNS: null\n", b"clusterDNS: ~\n"])
def test_null_cluster_dns_reads_empty_but_is_not_edited(data: bytes):
    assert FORMAT.read(data, "/f") == ()
    with pytest.raises(ConfigError, match=r"^/f line 1: clusterDNS is null; expected a list"):
        FORMAT.edit(data, NEW, "/f")


ERRORS = [
    (b"- 10.96.0.10\n", r"^/f: the document is a list; expected a mapping"),
    (b"just text\n", r"^/f: the document is a scalar; expected a mapping"),
    (b"clusterDNS: [1.1.1.1]\nx: 1\nclusterDNS: [2.2.2.2]\n",
     r"^/f line 3: clusterDNS appears 2 times \(lines 1, 3\); expected exactly one$"),
    (b"clusterDNS: 10.96.0.10\n", r"^/f line 1: clusterDNS is not a list"),
    (b"clusterDNS: {a: b}\n", r"^/f line 1: clusterDNS is not a list"),
    (b"clusterDNS:\n- 10\n", r"^/f line 2: a clusterDNS item is not a string"),
    (b"clusterDNS:\n- [1.1.1.1]\n", r"^/f line 2: a clusterDNS item is not a string"),
    (b"clusterDNS: [null]\n", r"^/f line 1: a clusterDNS item is not a string"),
    (b"x: &d [1.1.1.1]\nclusterDNS: *d\n", r"^/f line 2: clusterDNS is an alias"),
    (b"x: &a 1.1.1.1\nclusterDNS: [*a]\n", r"^/f line 2: a clusterDNS item is an alias"),
    (b"base: &b {clusterDNS: [1.1.1.1]}\n<<: *b\n", r"^/f line 2: a top-level merge key"),
    (b"clusterDNS: [1.1.1.1\n", r"^/f line 2: expected KubeletConfiguration YAML"),
    (b"a: b\n---\nc: d\n", r"^/f line 2: expected KubeletConfiguration YAML: .*single document"),
    (b"clusterDNS: \x00\n", r"^/f: expected KubeletConfiguration YAML"),
    (b"clusterDNS: [caf\xe9]\n", r"^/f: byte 16 is not valid UTF-8; expected a UTF-8 file$"),
    (b"\xff\xfec\x00", r"^/f: byte 0 is not valid UTF-8"),
    (b"[" * 800, r"^/f: nested too deeply"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "pattern"), ERRORS, ids=[p for _, p in ERRORS])
def test_malformed(data: bytes, pattern: str):
    with pytest.raises(ConfigError, match=pattern):
        FORMAT.read(data, "/f")
    with pytest.raises(ConfigError, match=pattern):
        FORMAT.edit(data, NEW, "/f")


def test_block_scalar_item_is_read_but_not_edited():
    data = b"clusterDNS:\n- |-\n  10.96.0.10\n"
    assert FORMAT.read(data, "/f") == ("10.96.0.10",)
    with pytest.raises(ConfigError, match=r"^/f line 2: a clusterDNS item is a block scalar"):
        FORMAT.edit(data, NEW, "/f")


@pytest.mark.parametrize("new", [[], ["dns.local"], ["10.0.0.1 "], ["fe80::1%eth0"]])
def test_new_values_must_be_ip_addresses(new: list[str]):
    with pytest.raises(ConfigError, match=r"^/f: "):
        FORMAT.edit(b"clusterDNS: [10.96.0.10]\n", new, "/f")


@pytest.mark.parametrize(
    ("value", "flow", "written"),
    [
        ("10.96.0.10", False, "10.96.0.10"),
        ("fd00::a", True, "fd00::a"),
        ("fd00::", False, '"fd00::"'),
        ("::1", False, "::1"),
        ("::1", True, '"::1"'),
        ("1:2:3:4:5:6:7:8", False, '"1:2:3:4:5:6:7:8"'),
    ],
)
def test_render_item_quotes_only_when_needed(value: str, flow: bool, written: str):
    assert render_item(value, flow=flow) == written


def test_large_document():
    data = b"# comment\n" * 50_000 + b"clusterDNS: [10.96.0.10]\n"
    assert FORMAT.edit(data, NEW, "/f") == data.replace(b"10.96.0.10", b"169.254.20.10")
