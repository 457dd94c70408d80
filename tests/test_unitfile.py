"""kubelet's systemd unit read as systemd reads it, and kubelet's locating flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig.flags import KubeletFlags, parse_kubelet_flags
from nodelocaldns_agent.kubeletconfig.unitfile import (
    EnvVar,
    expand_words,
    load_kubelet_unit,
    split_words,
)

DATA = Path(__file__).parent / "data" / "kubelet"
LIB = "/usr/lib/systemd/system"
ETC = "/etc/systemd/system"


def put(root: Path, host_path: str, data: bytes | str) -> None:
    real = root / host_path.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_bytes(data.encode() if isinstance(data, str) else data)


def link(root: Path, host_path: str, target: str) -> None:
    real = root / host_path.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, real)


def unit(root: Path, service: str, path: str = f"{LIB}/kubelet.service") -> None:
    put(root, path, f"[Unit]\nDescription=kubelet\n\n[Service]\n{service}\n")


def load(root: Path):  # type: ignore[no-untyped-def]
    loaded = load_kubelet_unit(HostRoot(root))
    assert loaded is not None
    return loaded


def test_tke_unit(tmp_path: Path):
    put(tmp_path, f"{LIB}/kubelet.service", (DATA / "tke-kubelet.service").read_bytes())
    put(tmp_path, "/etc/kubernetes/kubelet", (DATA / "tke-kubelet.env").read_bytes())
    kubelet = load(tmp_path)
    assert kubelet.unit_path == f"{LIB}/kubelet.service"
    assert kubelet.dropins == ()
    assert kubelet.environment_files == ("/etc/kubernetes/kubelet",)
    assert kubelet.environment["CLUSTER_DNS"] == EnvVar(
        "--cluster-dns=10.96.0.10", "/etc/kubernetes/kubelet", "EnvironmentFile"
    )
    assert kubelet.argv[:3] == ["/usr/bin/kubelet", "--anonymous-auth=false",
                                "--authentication-token-webhook=true"]  # fmt: skip
    assert "--cluster-dns=10.96.0.10" in kubelet.argv
    assert kubelet.argv[-1] == "--v=2"
    assert len(kubelet.argv) == 23
    assert "${CLUSTER_DNS}" in kubelet.exec_start
    assert parse_kubelet_flags(kubelet.argv).cluster_dns == ("10.96.0.10",)


def _kubeadm(root: Path, extra: bool = True) -> None:
    put(root, f"{LIB}/kubelet.service", (DATA / "kubeadm-kubelet.service").read_bytes())
    put(root, f"{LIB}/kubelet.service.d/10-kubeadm.conf", (DATA / "10-kubeadm.conf").read_bytes())
    put(root, "/var/lib/kubelet/kubeadm-flags.env", (DATA / "kubeadm-flags.env").read_bytes())
    if extra:
        put(root, "/etc/default/kubelet", (DATA / "default-kubelet").read_bytes())


def test_kubeadm_unit_with_dropin(tmp_path: Path):
    _kubeadm(tmp_path)
    kubelet = load(tmp_path)
    assert kubelet.dropins == (f"{LIB}/kubelet.service.d/10-kubeadm.conf",)
    assert kubelet.environment_files == (
        "/var/lib/kubelet/kubeadm-flags.env",
        "/etc/default/kubelet",
    )
    assert kubelet.exec_start == (
        "/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS "
        "$KUBELET_EXTRA_ARGS"
    )
    assert kubelet.argv == [
        "/usr/bin/kubelet",
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--config=/var/lib/kubelet/config.yaml",
        "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
        "--pod-infra-container-image=registry.k8s.io/pause:3.9",
        "--cluster-dns=10.96.0.10",
        "--node-ip=192.168.10.21",
    ]
    assert kubelet.environment["KUBELET_CONFIG_ARGS"] == EnvVar(
        "--config=/var/lib/kubelet/config.yaml", f"{LIB}/kubelet.service.d/10-kubeadm.conf",
        "Environment",
    )  # fmt: skip
    flags = parse_kubelet_flags(kubelet.argv)
    assert flags == KubeletFlags("/var/lib/kubelet/config.yaml", None, ("10.96.0.10",), 1)


def test_missing_optional_environment_file_is_skipped(tmp_path: Path):
    _kubeadm(tmp_path, extra=False)
    kubelet = load(tmp_path)
    assert "KUBELET_EXTRA_ARGS" not in kubelet.environment
    assert kubelet.environment_files == ("/var/lib/kubelet/kubeadm-flags.env",)
    assert kubelet.argv[-1] == "--pod-infra-container-image=registry.k8s.io/pause:3.9"


def test_missing_required_environment_file_is_a_config_error(tmp_path: Path):
    unit(tmp_path, "EnvironmentFile=/etc/kubernetes/kubelet\nExecStart=/usr/bin/kubelet")
    with pytest.raises(ConfigError) as info:
        load_kubelet_unit(HostRoot(tmp_path))
    assert str(info.value) == (
        f"{LIB}/kubelet.service line 5: EnvironmentFile=/etc/kubernetes/kubelet does not exist; "
        "expected the file (or a '-' prefix to make it optional)"
    )


def test_absolute_symlinks_resolve_inside_the_host_root(tmp_path: Path):
    # /etc/passwd exists in the test's own container: it must not be the one read
    put(tmp_path, "/opt/kube/kubelet.service", (DATA / "tke-kubelet.service").read_bytes())
    link(tmp_path, f"{ETC}/kubelet.service", "/opt/kube/kubelet.service")
    put(tmp_path, "/etc/passwd", 'CLUSTER_DNS="--cluster-dns=10.1.0.10"\n')
    link(tmp_path, "/etc/kubernetes/kubelet", "/etc/passwd")
    link(tmp_path, f"{ETC}/kubelet.service.d/20-x.conf", "../../../../opt/kube/20-x.conf")
    put(tmp_path, "/opt/kube/20-x.conf", "[Service]\nEnvironment=X=1\n")
    kubelet = load(tmp_path)
    assert kubelet.unit_path == f"{ETC}/kubelet.service"
    assert kubelet.dropins == (f"{ETC}/kubelet.service.d/20-x.conf",)
    assert kubelet.environment["X"].value == "1"
    assert "--cluster-dns=10.1.0.10" in kubelet.argv


def test_unit_in_etc_overrides_lib(tmp_path: Path):
    unit(tmp_path, "ExecStart=/usr/bin/kubelet --v=1")
    unit(tmp_path, "ExecStart=/usr/local/bin/kubelet --v=5", f"{ETC}/kubelet.service")
    kubelet = load(tmp_path)
    assert kubelet.unit_path == f"{ETC}/kubelet.service"
    assert kubelet.argv == ["/usr/local/bin/kubelet", "--v=5"]


def test_dropins_masking_and_order(tmp_path: Path):
    unit(tmp_path, "ExecStart=/usr/bin/kubelet $A $B $C")
    put(tmp_path, f"{LIB}/kubelet.service.d/10-a.conf", "[Service]\nEnvironment=A=lib-a\n")
    put(tmp_path, f"{ETC}/kubelet.service.d/10-a.conf", "[Service]\nEnvironment=A=etc-a\n")
    put(tmp_path, f"{LIB}/kubelet.service.d/20-b.conf", "[Service]\nEnvironment=B=lib-b\n")
    link(tmp_path, "/run/systemd/system/kubelet.service.d/20-b.conf", "/dev/null")
    put(tmp_path, f"{LIB}/kubelet.service.d/05-c.conf", "[Service]\nEnvironment=C=c A=early\n")
    put(tmp_path, f"{LIB}/kubelet.service.d/30-c.conf.disabled", "[Service]\nEnvironment=C=no\n")
    put(tmp_path, f"{LIB}/kubelet.service.d/90-c.conf", "[Service]\nEnvironment=C=late\n")
    kubelet = load(tmp_path)
    assert kubelet.dropins == (
        f"{LIB}/kubelet.service.d/05-c.conf",
        f"{ETC}/kubelet.service.d/10-a.conf",
        f"{LIB}/kubelet.service.d/90-c.conf",
    )
    assert kubelet.argv == ["/usr/bin/kubelet", "etc-a", "late"]


def test_exec_start_reset_and_last_wins(tmp_path: Path):
    unit(tmp_path, "ExecStart=/usr/bin/kubelet --v=1")
    put(tmp_path, f"{LIB}/kubelet.service.d/10.conf", "[Service]\nExecStart=\nExecStart=/k --v=2\n")
    put(tmp_path, f"{ETC}/kubelet.service.d/20.conf", "[Service]\nExecStart=/k --v=3\n")
    assert load(tmp_path).argv == ["/k", "--v=3"]
    put(tmp_path, f"{ETC}/kubelet.service.d/30.conf", "[Service]\nExecStart=\n")
    with pytest.raises(ConfigError, match=rf"^{LIB}/kubelet.service: no ExecStart="):
        load_kubelet_unit(HostRoot(tmp_path))


def test_environment_assignments(tmp_path: Path):
    unit(
        tmp_path,
        "Environment=\"A=one two\" B=b 'C=c d' bad D=\\x41\n"
        "Environment=OLD=gone\nEnvironment=\nEnvironment=E=e F=from-unit\n"
        "EnvironmentFile=/etc/kubelet.env\n"
        "ExecStart=/usr/bin/kubelet $A $B $E $F $OLD",
    )
    put(tmp_path, "/etc/kubelet.env", "F=from-file\n")
    kubelet = load(tmp_path)
    assert kubelet.argv == ["/usr/bin/kubelet", "e", "from-file"]
    assert set(kubelet.environment) == {"E", "F"}
    assert kubelet.environment["F"] == EnvVar("from-file", "/etc/kubelet.env", "EnvironmentFile")
    assert kubelet.environment["E"] == EnvVar("e", f"{LIB}/kubelet.service", "Environment")


def test_environment_quoting(tmp_path: Path):
    unit(
        tmp_path,
        "Environment=\"A=one two\" B=b 'C=c d' bad D=\\x41\n"
        "ExecStart=/usr/bin/kubelet ${A} $A $B ${C} $D",
    )
    kubelet = load(tmp_path)
    assert kubelet.argv == ["/usr/bin/kubelet", "one two", "one", "two", "b", "c d", "A"]
    assert set(kubelet.environment) == {"A", "B", "C", "D"}


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("/k $NOPE ${NOPE} --x=${NOPE}y", ["/k", "", "--x=y"]),
        ("/k $$HOME --x=$A ${A:-d} $A.b", ["/k", "$HOME", "--x=$A", "${A:-d}"]),
        ('/k "${A}" "$A" \'--y=${Q}\'', ["/k", "a 'b c'", "a", "b c", "--y=q u"]),
        ("-/k --v=2", ["/k", "--v=2"]),
        ("@/usr/bin/kubelet kubelet --v=2", ["kubelet", "--v=2"]),
        ("!!/k --v=2", ["/k", "--v=2"]),
        ("/k \\\n  --a=1 \\\n# a comment inside\n  --b=2", ["/k", "--a=1", "--b=2"]),
        ('/k "--label=a b" --t=\\t', ["/k", "--label=a b", "--t=\t"]),
    ],
)
def test_exec_start_expansion(tmp_path: Path, command: str, argv: list[str]):
    unit(tmp_path, f'Environment="A=a \'b c\'" "Q=q u"\nExecStart={command}')
    assert load(tmp_path).argv == argv


def test_only_the_service_section_counts(tmp_path: Path):
    put(
        tmp_path,
        f"{LIB}/kubelet.service",
        "Environment=A=top\n[Unit]\nEnvironment=A=unit\nExecStart=/nope\n"
        "[Service]\n  ; comment\n# comment\nExecStart = /k $A\n[Install]\nExecStart=/nope\n",
    )
    assert load(tmp_path).argv == ["/k"]


def test_crlf_unit(tmp_path: Path):
    put(tmp_path, f"{LIB}/kubelet.service", b"[Service]\r\nExecStart=/k \\\r\n  --v=2\r\n")
    assert load(tmp_path).argv == ["/k", "--v=2"]


def test_glob_environment_file(tmp_path: Path):
    unit(tmp_path, "EnvironmentFile=/etc/kubelet.d/*.env\nExecStart=/k $A $B")
    put(tmp_path, "/etc/kubelet.d/b.env", "B=2\nA=override\n")
    put(tmp_path, "/etc/kubelet.d/a.env", "A=1\n")
    put(tmp_path, "/etc/kubelet.d/.hidden.env", "A=hidden\n")
    kubelet = load(tmp_path)
    assert kubelet.argv == ["/k", "override", "2"]
    assert kubelet.environment_files == ("/etc/kubelet.d/a.env", "/etc/kubelet.d/b.env")


def test_empty_environment_file_setting_resets(tmp_path: Path):
    unit(tmp_path, "EnvironmentFile=/missing\nEnvironmentFile=\nEnvironmentFile=-/also-missing\n"
                   "EnvironmentFile=relative\nExecStart=/k")  # fmt: skip
    assert load(tmp_path).environment_files == ()


def test_no_unit(tmp_path: Path):
    assert load_kubelet_unit(HostRoot(tmp_path)) is None


def test_masked_unit(tmp_path: Path):
    unit(tmp_path, "ExecStart=/k")
    link(tmp_path, f"{ETC}/kubelet.service", "/dev/null")
    with pytest.raises(ConfigError, match=rf"^{ETC}/kubelet.service: kubelet.service is masked"):
        load_kubelet_unit(HostRoot(tmp_path))


def test_empty_unit_is_masked(tmp_path: Path):
    put(tmp_path, f"{LIB}/kubelet.service", b"")
    with pytest.raises(ConfigError, match=r"is empty, which masks it"):
        load_kubelet_unit(HostRoot(tmp_path))


@pytest.mark.parametrize(
    ("service", "pattern"),
    [
        ('ExecStart=/k "--a=b', rf"^{LIB}/kubelet.service line 5: ExecStart= has an unterminated"),
        ("[Broken\nExecStart=/k", rf"^{LIB}/kubelet.service line 5: expected a \[Section\] header"),
    ],
)
def test_malformed_unit(tmp_path: Path, service: str, pattern: str):
    unit(tmp_path, service)
    with pytest.raises(ConfigError, match=pattern):
        load_kubelet_unit(HostRoot(tmp_path))


def test_environment_assignment_with_unterminated_quote_is_ignored(tmp_path: Path):
    unit(tmp_path, 'Environment=A=1 "B=2\nExecStart=/k $A')
    assert load(tmp_path).argv == ["/k"]


def test_split_and_expand_words():
    assert split_words(' a  \'b c\'d"e\\"f" \\x41\\101 ', cunescape=True) == ["a", 'b cde"f', "AA"]
    assert split_words("a\\nb", cunescape=False) == ["anb"]
    assert split_words("'open", cunescape=False, relax=True) == ["open"]
    with pytest.raises(ValueError, match="unterminated"):
        split_words("'open", cunescape=False)
    assert expand_words(["$A", "${A}", "x${A}y", "$", "$$"], {"A": " 1  2 "}) == [
        "1", "2", " 1  2 ", "x 1  2 y", "$",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["kubelet"], KubeletFlags(None, None, None, 0)),
        (["kubelet", "--config=/a", "--config", "/b", "--config-dir", "/d"],
         KubeletFlags("/b", "/d", None, 0)),
        (["kubelet", "--cluster-dns=1.1.1.1,2.2.2.2", "--cluster-dns", "3.3.3.3"],
         KubeletFlags(None, None, ("1.1.1.1", "2.2.2.2", "3.3.3.3"), 2)),
        (["kubelet", "--cluster-dns="], KubeletFlags(None, None, (), 1)),
        (["kubelet", "--cluster-dnsx=1", "--", "--cluster-dns=1.1.1.1"],
         KubeletFlags(None, None, None, 0)),
        (["--config=/ignored-argv0", "--v=2"], KubeletFlags(None, None, None, 0)),
        # kubelet's flag set normalizes "_" to "-" (cliflag.WordSepNormalizeFunc, set in
        # cmd/kubelet/app/server.go): every spelling is the same flag, in either form
        (["kubelet", "--cluster_dns=1.1.1.1", "--config_dir", "/d", "--config_dir=/e"],
         KubeletFlags(None, "/e", ("1.1.1.1",), 1)),
        (["kubelet", "--cluster-dns", "1.1.1.1", "--cluster_dns", "2.2.2.2", "--config=/c"],
         KubeletFlags("/c", None, ("1.1.1.1", "2.2.2.2"), 2)),
        # a single dash is not a long flag to pflag; "--cluster-dns-x" is another flag
        (["kubelet", "-cluster-dns=1.1.1.1", "--cluster-dns-x=1", "--cluster_dnsx", "v"],
         KubeletFlags(None, None, None, 0)),
    ],
)  # fmt: skip
def test_parse_kubelet_flags(argv: list[str], expected: KubeletFlags):
    assert parse_kubelet_flags(argv) == expected


def test_flag_without_value():
    with pytest.raises(ConfigError, match=r"^kubelet 42: --config is the last argument"):
        parse_kubelet_flags(["kubelet", "--config"], "kubelet 42")
