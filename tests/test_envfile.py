"""systemd EnvironmentFile parsing and in-place ``--cluster-dns`` edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.envfile import FORMAT, Occurrence, find_cluster_dns, parse_env

DATA = Path(__file__).parent / "data" / "kubelet"
NEW = ["169.254.20.10"]


def test_tke_env_file():
    data = (DATA / "tke-kubelet.env").read_bytes()
    assert FORMAT.name == "env"
    assert FORMAT.read(data, "/etc/kubernetes/kubelet") == ("10.96.0.10",)
    occurrence = find_cluster_dns(data, "/etc/kubernetes/kubelet")
    assert occurrence is not None
    assert (occurrence.name, occurrence.line) == ("CLUSTER_DNS", 9)
    out = FORMAT.edit(data, NEW, "/etc/kubernetes/kubelet")
    assert out == data.replace(b"--cluster-dns=10.96.0.10", b"--cluster-dns=169.254.20.10")
    names = [a.name for a in parse_env(data, "/etc/kubernetes/kubelet")]
    assert names[:2] == ["ANONYMOUS_AUTH", "AUTHENTICATION_TOKEN_WEBHOOK"]
    assert len(names) == 22


def test_default_kubelet_extra_args():
    data = (DATA / "default-kubelet").read_bytes()
    occurrence = find_cluster_dns(data, "/etc/default/kubelet")
    assert occurrence == Occurrence("KUBELET_EXTRA_ARGS", 1, (33, 43), ("10.96.0.10",))
    out = FORMAT.edit(data, ["169.254.20.10", "10.96.0.10"], "/etc/default/kubelet")
    assert out == (
        b"KUBELET_EXTRA_ARGS=--cluster-dns=169.254.20.10,10.96.0.10 --node-ip=192.168.10.21\n"
    )


@pytest.mark.parametrize(
    ("line", "edited"),
    [
        # kubelet normalizes "_" to "-" in flag names (cliflag.WordSepNormalizeFunc): the
        # edit keeps how the file spells the flag and changes only the value
        (b"A=--cluster_dns=10.96.0.10 --v=2\n", b"A=--cluster_dns=169.254.20.10 --v=2\n"),
        (b'A="--v=2 --cluster_dns 10.96.0.10"\n', b'A="--v=2 --cluster_dns 169.254.20.10"\n'),
    ],
)
def test_every_spelling_of_the_flag_is_found_and_kept(line: bytes, edited: bytes):
    assert FORMAT.read(line, "/etc/default/kubelet") == ("10.96.0.10",)
    assert FORMAT.edit(line, NEW, "/etc/default/kubelet") == edited


def test_two_spellings_are_one_flag_set_twice():
    data = b"A=--cluster-dns=10.96.0.10\nB=--cluster_dns=10.96.0.11\n"
    with pytest.raises(ConfigError, match="appears 2 times"):
        FORMAT.read(data, "/etc/default/kubelet")


def test_kubeadm_flags_env_has_no_cluster_dns():
    data = (DATA / "kubeadm-flags.env").read_bytes()
    path = "/var/lib/kubelet/kubeadm-flags.env"
    assert FORMAT.read(data, path) == ()
    assert find_cluster_dns(data, path) is None
    [assignment] = parse_env(data, path)
    assert assignment.name == "KUBELET_KUBEADM_ARGS"
    assert assignment.value.split() == [
        "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
        "--pod-infra-container-image=registry.k8s.io/pause:3.9",
    ]
    with pytest.raises(ConfigError, match=r"^/var/lib/kubelet/kubeadm-flags.env: no --cluster-dns"):
        FORMAT.edit(data, NEW, path)


EDITS = [
    # (name, file, what read gives, file after editing to 169.254.20.10)
    ("double quotes", b'CLUSTER_DNS="--cluster-dns=10.96.0.10"\n', ("10.96.0.10",),
     b'CLUSTER_DNS="--cluster-dns=169.254.20.10"\n'),
    ("single quotes", b"CLUSTER_DNS='--cluster-dns=10.96.0.10'\n", ("10.96.0.10",),
     b"CLUSTER_DNS='--cluster-dns=169.254.20.10'\n"),
    ("unquoted", b"CLUSTER_DNS=--cluster-dns=10.96.0.10\n", ("10.96.0.10",),
     b"CLUSTER_DNS=--cluster-dns=169.254.20.10\n"),
    ("space form", b'ARGS="--v=2 --cluster-dns 10.96.0.10 --max-pods=61"\n', ("10.96.0.10",),
     b'ARGS="--v=2 --cluster-dns 169.254.20.10 --max-pods=61"\n'),
    ("several values", b'A="--node-ip=1.2.3.4 --cluster-dns=10.96.0.10,fd00::a"',
     ("10.96.0.10", "fd00::a"),
     b'A="--node-ip=1.2.3.4 --cluster-dns=169.254.20.10"'),
    ("export", b"export CLUSTER_DNS='--cluster-dns=10.96.0.10'\n", ("10.96.0.10",),
     b"export CLUSTER_DNS='--cluster-dns=169.254.20.10'\n"),
    ("crlf", b'A="--v=2"\r\nCLUSTER_DNS="--cluster-dns=10.96.0.10"\r\nB=1\r\n', ("10.96.0.10",),
     b'A="--v=2"\r\nCLUSTER_DNS="--cluster-dns=169.254.20.10"\r\nB=1\r\n'),
    ("no trailing newline", b"X=1\nCLUSTER_DNS=--cluster-dns=10.96.0.10", ("10.96.0.10",),
     b"X=1\nCLUSTER_DNS=--cluster-dns=169.254.20.10"),
    ("trailing blanks kept", b"A=--cluster-dns=10.96.0.10   \n", ("10.96.0.10",),
     b"A=--cluster-dns=169.254.20.10   \n"),
    ("bom line 2", b"\xef\xbb\xbf# kubelet\nA=--cluster-dns=10.96.0.10\n", ("10.96.0.10",),
     b"\xef\xbb\xbf# kubelet\nA=--cluster-dns=169.254.20.10\n"),
    ("non-utf8 elsewhere", b"LABEL=caf\xe9\xff\nA='--cluster-dns=10.96.0.10'\n# \xfe\n",
     ("10.96.0.10",),
     b"LABEL=caf\xe9\xff\nA='--cluster-dns=169.254.20.10'\n# \xfe\n"),
    ("comments ignored",
     b"#A=--cluster-dns=1.1.1.1\n  ; B=--cluster-dns=2.2.2.2\nC=--cluster-dns=10.96.0.10\n",
     ("10.96.0.10",),
     b"#A=--cluster-dns=1.1.1.1\n  ; B=--cluster-dns=2.2.2.2\nC=--cluster-dns=169.254.20.10\n"),
    ("continued double quotes", b'ARGS="--v=2 \\\n  --cluster-dns=10.96.0.10"\n', ("10.96.0.10",),
     b'ARGS="--v=2 \\\n  --cluster-dns=169.254.20.10"\n'),
    ("glued quoted parts", b"A='--v=2 '\"--cluster-dns=10.96.0.10\"\n", ("10.96.0.10",),
     b"A='--v=2 '\"--cluster-dns=169.254.20.10\"\n"),
    ("invalid name ignored",
     b"1A=--cluster-dns=1.1.1.1\nA-B=--cluster-dns=2.2.2.2\nOK=--cluster-dns=10.96.0.10\n",
     ("10.96.0.10",),
     b"1A=--cluster-dns=1.1.1.1\nA-B=--cluster-dns=2.2.2.2\nOK=--cluster-dns=169.254.20.10\n"),
    ("after a NUL is dead", b"A=--cluster-dns=10.96.0.10\n\0B=--cluster-dns=1.1.1.1\n",
     ("10.96.0.10",),
     b"A=--cluster-dns=169.254.20.10\n\0B=--cluster-dns=1.1.1.1\n"),
    ("empty value", b"A=--cluster-dns=\n", (), b"A=--cluster-dns=169.254.20.10\n"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "values", "edited"), [c[1:] for c in EDITS], ids=[c[0] for c in EDITS]
)
def test_edit_changes_only_the_value(data: bytes, values: tuple[str, ...], edited: bytes):
    assert FORMAT.read(data, "/f") == values
    assert FORMAT.edit(data, NEW, "/f") == edited
    assert FORMAT.read(edited, "/f") == tuple(NEW)
    if values:
        assert FORMAT.edit(edited, values, "/f") == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"A=--cluster-dns=1.1.1.1\n# x\nB=1\nC=2\nD=3\nE=4\nF='--cluster-dns=2.2.2.2'\n",
         "/f line 7: --cluster-dns appears 2 times (lines 1, 7); expected exactly one"),
        (b'A="--cluster-dns=1.1.1.1 --cluster-dns=2.2.2.2"\n',
         "/f line 1: --cluster-dns appears 2 times (lines 1); expected exactly one"),
        (b"A=--cluster-dns=1.1.1.1\nA=--cluster-dns=2.2.2.2\n",
         "/f line 2: --cluster-dns appears 2 times (lines 1, 2); expected exactly one"),
        (b'A="--v=2 --cluster-dns"\n',
         "/f line 1: --cluster-dns in A has no value; expected --cluster-dns=<ip>[,<ip>...]"),
    ],
)  # fmt: skip
def test_ambiguous_or_incomplete_flag_is_a_config_error(data: bytes, message: str):
    with pytest.raises(ConfigError) as info:
        FORMAT.read(data, "/f")
    assert str(info.value) == message
    with pytest.raises(ConfigError):
        FORMAT.edit(data, NEW, "/f")


def test_value_written_with_escapes_is_read_but_not_edited():
    data = b"A=--cluster-dns=10.0.0.1\\,10.0.0.2\n"
    assert FORMAT.read(data, "/f") == ("10.0.0.1", "10.0.0.2")
    occurrence = find_cluster_dns(data, "/f")
    assert occurrence is not None and occurrence.span is None
    with pytest.raises(ConfigError, match=r"^/f line 1: .* contains quotes or escapes"):
        FORMAT.edit(data, NEW, "/f")


@pytest.mark.parametrize(
    "new",
    [[], ["dns.local"], [""], ["10.0.0.1,10.0.0.2"], ["fe80::1%eth0"], ["010.0.0.1"], "10.0.0.1"],
)
def test_new_values_must_be_ip_addresses(new: list[str]):
    data = b"A=--cluster-dns=10.96.0.10\n"
    with pytest.raises(ConfigError, match=r"^/etc/kubernetes/kubelet: "):
        FORMAT.edit(data, new, "/etc/kubernetes/kubelet")


PARSES = [
    # (file, [(name, value, line)])
    (b"A=1\nB = 2 \n  C=\t3\t\n", [("A", "1", 1), ("B", "2", 2), ("C", "3", 3)]),
    (b'A="x\\"y\\\\z\\$\\`\\n"\n', [("A", 'x"y\\z$`\\n', 1)]),
    (b"A='a\\b \"c\"'\n", [("A", 'a\\b "c"', 1)]),
    (b'A="one\ntwo"\nB=3\n', [("A", "one\ntwo", 1), ("B", "3", 3)]),
    (b"A=one\\\ntwo\nB=x\\ \n", [("A", "onetwo", 1), ("B", "x ", 3)]),
    (b'A="x" y\n', [("A", "xy", 1)]),
    (b"A=x # not a comment\n", [("A", "x # not a comment", 1)]),
    (b"A\nB=1\n=2\nexport C=3\n", [("B", "1", 2), ("C", "3", 4)]),
    (b"A=caf\xc3\xa9 \xff\n", [("A", "caf\u00e9 \udcff", 1)]),
    (b"A=1\rB=2\r\n", [("A", "1", 1), ("B", "2", 1)]),
    (b"A='open\nB=2", [("A", "open\nB=2", 1)]),
    (b"A=\nB=", [("A", "", 1), ("B", "", 2)]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), PARSES)
def test_parse_env_follows_systemd(data: bytes, expected: list[tuple[str, str, int]]):
    assignments = parse_env(data, "/f")
    assert [(a.name, a.value, a.line) for a in assignments] == expected
    for a in assignments:
        assert a.raw_value.decode("utf-8", "surrogateescape") == a.value


def test_parse_env_spans_cover_the_written_value():
    data = b"A=\"--x=1\"\nexport B = 'y'z  \nC=\n"
    spans = {a.name: data[a.span[0] : a.span[1]] for a in parse_env(data, "/f")}
    assert spans == {"A": b'"--x=1"', "B": b"'y'z", "C": b""}


def test_large_file_is_linear():
    data = b'X="--a=b"\n' * 30_000 + b'A="--cluster-dns=10.0.0.1"\n'
    assert FORMAT.read(data, "/f") == ("10.0.0.1",)
    assert FORMAT.edit(data, NEW, "/f").endswith(b'A="--cluster-dns=169.254.20.10"\n')


def test_many_occurrences_are_summarised():
    data = b"".join(b"A%d=--cluster-dns=1.1.1.1\n" % i for i in range(30))
    with pytest.raises(ConfigError) as info:
        FORMAT.read(data, "/f")
    assert str(info.value) == (
        "/f line 30: --cluster-dns appears 30 times (lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...); "
        "expected exactly one"
    )
