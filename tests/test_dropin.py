"""kubelet ``--config-dir`` drop-ins: the agent's own file and which drop-in wins."""

from __future__ import annotations

import pytest
import yaml

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig import dropin, yamlconf

DIR = "/etc/kubernetes/kubelet.conf.d"


def test_render():
    data = dropin.render(["169.254.20.10", "fd00::"])
    assert data == (
        b"# Written by nodelocaldns-agent: points kubelet's cluster DNS at NodeLocal DNSCache.\n"
        b"# Delete this file and restart kubelet to revert to the cluster DNS set elsewhere.\n"
        b"apiVersion: kubelet.config.k8s.io/v1beta1\n"
        b"kind: KubeletConfiguration\n"
        b"clusterDNS:\n"
        b"- 169.254.20.10\n"
        b'- "fd00::"\n'
    )
    assert yaml.safe_load(data) == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "clusterDNS": ["169.254.20.10", "fd00::"],
    }
    assert yamlconf.FORMAT.read(data, "/f") == ("169.254.20.10", "fd00::")
    assert dropin.OUR_DROPIN == "99-nodelocaldns-agent.conf"


@pytest.mark.parametrize("values", [[], ["dns.local"], "169.254.20.10"])
def test_render_refuses_bad_values(values: list[str]):
    with pytest.raises(ConfigError, match=dropin.OUR_DROPIN):
        dropin.render(values)


YAML_A = (
    b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
    b"clusterDNS: [10.0.0.1]\n"
)
JSON_B = (
    b'\xef\xbb\xbf\n{"apiVersion": "kubelet.config.k8s.io/v1beta1", "clusterDNS": ["10.0.0.2"]}'
)
OTHER = b"kind: KubeletConfiguration\nmaxPods: 110\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([], ((), None)),
        ([("10-a.conf", YAML_A)], (("10.0.0.1",), "10-a.conf")),
        ([("20-b.conf", JSON_B), ("10-a.conf", YAML_A)], (("10.0.0.2",), "20-b.conf")),
        ([("10-a.conf", YAML_A), ("20-other.conf", OTHER)], (("10.0.0.1",), "10-a.conf")),
        ([("10-a.conf", YAML_A), ("30-null.conf", b"clusterDNS: null\n")], ((), "30-null.conf")),
        ([("10-a.conf", YAML_A), ("30-empty.conf", b'{"clusterDNS": []}')], ((), "30-empty.conf")),
        ([("10-a.conf", YAML_A), ("90-b.yaml", JSON_B), ("99-c.conf.bak", JSON_B)],
         (("10.0.0.1",), "10-a.conf")),
        ([("10-a.conf", YAML_A), ("10-a.conf~", b"\xff")], (("10.0.0.1",), "10-a.conf")),
        ([("A.conf", JSON_B), ("a.conf", YAML_A), ("B.conf", OTHER)], (("10.0.0.1",), "a.conf")),
        ([(dropin.OUR_DROPIN, dropin.render(["169.254.20.10"])), ("10-a.conf", YAML_A)],
         (("169.254.20.10",), dropin.OUR_DROPIN)),
    ],
)  # fmt: skip
def test_effective(files: list[tuple[str, bytes]], expected: tuple[tuple[str, ...], str | None]):
    assert dropin.effective(files, DIR) == expected


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (
            b"clusterDNS: [1.1.1.1",
            rf"^{DIR}/50-bad.conf line 1: expected KubeletConfiguration YAML",
        ),
        (b'{"clusterDNS": [1]}', rf"^{DIR}/50-bad.conf line 1: expected clusterDNS items"),
        (b"clusterDNS: \xff", rf"^{DIR}/50-bad.conf: byte 12 is not valid UTF-8"),
    ],
)
def test_effective_names_the_malformed_file(data: bytes, pattern: str):
    with pytest.raises(ConfigError, match=pattern):
        dropin.effective([("10-a.conf", YAML_A), ("50-bad.conf", data)], DIR + "/")


def test_format_edits_yaml_and_json_dropins():
    fmt = dropin.FORMAT
    assert fmt.name == "config-dir"
    assert fmt.read(YAML_A, "/f") == ("10.0.0.1",)
    assert fmt.read(JSON_B, "/f") == ("10.0.0.2",)
    assert fmt.edit(YAML_A, ["169.254.20.10"], "/f") == YAML_A.replace(
        b"10.0.0.1", b"169.254.20.10"
    )
    assert fmt.edit(JSON_B, ["169.254.20.10"], "/f") == JSON_B.replace(
        b"10.0.0.2", b"169.254.20.10"
    )
    ours = dropin.render(["169.254.20.10"])
    assert fmt.edit(ours, ["10.96.0.10"], "/f") == dropin.render(["10.96.0.10"])
    with pytest.raises(ConfigError, match=r"^/f: no clusterDNS to edit"):
        fmt.edit(OTHER, ["169.254.20.10"], "/f")
