"""The settings: one dataclass field per setting, the flags and variables generated from the
fields, the checks in ``__post_init__``, and the chart's defaults against the fields'."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import pytest

from nodelocaldns_agent.cli.parser import COMMANDS, build_parser, parse
from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.logs import LogFormat, LogLevel
from nodelocaldns_agent.plan import Goal
from nodelocaldns_agent.settings import (
    NodeSettings,
    RevertFleetSettings,
    RunSettings,
    Settings,
    Spec,
    StatusOutput,
    StatusSettings,
    env_name,
    specs,
)
from nodelocaldns_agent.state import Mode
from tests.test_chart import (
    CHART,
    DEFAULT_ARGS,
    Doc,
    agent_config,
    agent_ds,
    container,
    one,
    render,
)
from tests.tooling import ROOT, tool

P = "NODELOCALDNS_AGENT_"
#: what `run` needs from the environment to build its settings at all
RUN_ENV = {"NODE_NAME": "n1", "POD_NAMESPACE": "ns"}


def value(argv: list[str], env: dict[str, str], name: str) -> Any:
    return parse(argv, env).values()[name]


# ----------------------------------------------------------------------------- sources
@pytest.mark.parametrize(
    ("argv", "env", "name", "expected"),
    [
        # default < variable < flag
        (["check"], {}, "verify_timeout", 120.0),
        (["check"], {P + "VERIFY_TIMEOUT": "30"}, "verify_timeout", 30.0),
        (["check", "--verify-timeout", "45"], {P + "VERIFY_TIMEOUT": "30"}, "verify_timeout", 45.0),
        # an alias is read after the variable of the flag
        (["run"], RUN_ENV, "node_name", "n1"),
        (["run"], {**RUN_ENV, P + "NODE_NAME": "n2"}, "node_name", "n2"),
        (["status"], {"KUBECONFIG": "/kc"}, "kubeconfig", "/kc"),
        # a flag whose name is not the field's; a parser of its own
        (["check", "--kube-proxy-url", "http://x/"], {}, "kube_proxy_mode_url", "http://x/"),
        (["check", "--restart-command", "a 'b c'"], {}, "restart_command", ("a", "b c")),
        # a comma-separated list
        (
            ["check"],
            {},
            "writable_dirs",
            (
                "/etc/kubernetes",
                "/var/lib/kubelet",
                "/etc/default",
                "/etc/sysconfig",
                "/etc/systemd/system/kubelet.service.d",
                "/etc/rancher/k3s",
                "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d",
                "/etc/rancher/rke2",
                "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d",
                "/var/snap/microk8s",
            ),
        ),
        (["check", "--writable-dirs", "/a, /b,"], {}, "writable_dirs", ("/a", "/b")),
        (
            ["check"],
            {P + "WRITABLE_DIRS": "/etc/kubernetes"},
            "writable_dirs",
            ("/etc/kubernetes",),
        ),
        (
            ["check", "--systemctl-command", "chroot /host systemctl"],
            {},
            "systemctl_command",
            ("chroot", "/host", "systemctl"),
        ),
        (["check"], {P + "SYSTEMCTL_TIMEOUT": "3"}, "systemctl_timeout", 3.0),
        # a switch turns its setting away from the default; its variable says if it is on
        (["run"], RUN_ENV, "failsafe", True),
        (["run", "--no-failsafe"], RUN_ENV, "failsafe", False),
        (["run"], {**RUN_ENV, P + "NO_FAILSAFE": "yes"}, "failsafe", False),
        (["run"], {**RUN_ENV, P + "NO_FAILSAFE": "off"}, "failsafe", True),
        (["check", "--force"], {P + "FORCE": "false"}, "force", True),
        (["check"], {}, "local_dns_ipv6", ""),
        (["run"], {**RUN_ENV, P + "LOCAL_DNS_IPV6": "fd00::a"}, "local_dns_ipv6", "fd00::a"),
        # enums: the member, from a flag or a variable
        (["run", "--mode", "observe"], RUN_ENV, "mode", Mode.OBSERVE),
        (["run"], {**RUN_ENV, P + "MODE": "revert"}, "mode", Mode.REVERT),
        # a command's own default; the variable still beats it
        (["status"], {}, "log_level", LogLevel.WARNING),
        (["check"], {}, "log_level", LogLevel.INFO),
        (["status"], {P + "LOG_LEVEL": "debug"}, "log_level", LogLevel.DEBUG),
        # a command reads only its own variables: a bad one of `run` does not stop `check`
        (["check"], {P + "MODE": "sideways"}, "force", False),
    ],
)
def test_flag_beats_variable_beats_default(
    argv: list[str], env: dict[str, str], name: str, expected: object
) -> None:
    got = value(argv, env, name)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "on"),
    [
        *((t, True) for t in ("true", "1", "yes", "on", "TRUE", " On ")),
        *((t, False) for t in ("false", "0", "no", "off", "", "False")),
    ],
)
def test_boolean_spellings(text: str, on: bool) -> None:
    assert value(["check"], {P + "FORCE": text}, "force") is on


@pytest.mark.parametrize(
    ("command", "variable", "text", "why"),
    [
        ("check", P + "PROBE_TIMEOUT", "soon", "expected a number"),
        ("check", P + "PROBE_TIMEOUT", "0", "expected seconds > 0"),
        ("check", P + "FORCE", "maybe", "expected true or false"),
        ("check", P + "LOG_LEVEL", "loud", "expected one of debug, info, warning, error"),
        ("check", P + "LOCAL_DNS", "x", "'x' is not an IP address"),
        ("check", P + "LOCAL_DNS_IPV6", "10.0.0.1", "expected an IPv6 address"),
        ("check", P + "RESTART_COMMAND", "", "expected a command"),
        ("check", P + "RESTART_COMMAND", "'x", "cannot split"),
        ("run", P + "LEASE_DURATION", "1.5", "expected an integer"),
        ("run", P + "LEASE_DURATION", "5", "expected an integer >= 10"),
        ("run", "NODE_NAME", "", "required"),
        ("run", "POD_NAMESPACE", "", "required"),
    ],
)
def test_a_bad_variable_is_named(command: str, variable: str, text: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse([command], {**RUN_ENV, variable: text})
    assert f"${variable}={text!r}: {why}" in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "--probe-timeout", "0"], "argument --probe-timeout: expected seconds > 0"),
        (["run", "--mode", "x"], "argument --mode: expected one of migrate, revert, observe"),
        (["status", "--output", "yaml"], "argument --output: expected one of table, json"),
        (["run", "--namespace", "ns"], "--node-name: required (or $NODELOCALDNS_AGENT_NODE_NAME"),
        (["revert-fleet", "--namespace", "ns"], "--daemonset: required"),
        (["migrate"], "the following arguments are required: --once"),
    ],
)
def test_a_bad_flag_is_named(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(argv, {})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("command", "flag", "enum"),
    [
        ("run", "--mode", Mode),
        ("check", "--goal", Goal),
        ("status", "--output", StatusOutput),
        ("revert-fleet", "--log-format", LogFormat),
        ("migrate", "--log-level", LogLevel),
    ],
)
def test_choices_come_from_the_enums(command: str, flag: str, enum: type[StrEnum]) -> None:
    (action,) = (a for a in subparser(command)._actions if flag in a.option_strings)
    assert [str(c) for c in action.choices or ()] == [m.value for m in enum]


def subparser(command: str) -> argparse.ArgumentParser:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[command]
    return parser


#: flags that are no setting: help, and `--once`, which only marks the one-shot commands
#: (no variable, so that the environment never turns `migrate` into a one-shot run)
NOT_SETTINGS = {"-h", "--help", "--once"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_is_a_field_and_every_field_a_flag(command: str) -> None:
    flags = {
        flag: action.dest
        for action in subparser(command)._actions
        for flag in action.option_strings
        if flag not in NOT_SETTINGS
    }
    settings = [s for kind in COMMANDS[command].groups for s in specs(kind)]
    assert flags == {s.flag: s.name for s in settings}
    variables = [name for s in settings for name in s.env]
    assert len(variables) == len(set(variables)), "two settings read one variable"


def test_every_settings_class_is_on_the_command_line() -> None:
    used = {kind for command in COMMANDS.values() for kind in command.groups}
    assert set(Settings.__subclasses__()) == used


@pytest.mark.parametrize(
    ("flag", "variable"),
    [
        ("--max-concurrent-restarts", "NODELOCALDNS_AGENT_MAX_CONCURRENT_RESTARTS"),
        ("--no-failsafe", "NODELOCALDNS_AGENT_NO_FAILSAFE"),
        ("--kube-proxy-url", "NODELOCALDNS_AGENT_KUBE_PROXY_URL"),
    ],
)
def test_variable_names(flag: str, variable: str) -> None:
    assert env_name(flag) == variable


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: NodeSettings(local_dns="nope"), "--local-dns: 'nope' is not an IP address"),
        (
            lambda: NodeSettings(local_dns_ipv6="169.254.20.11"),
            "--local-dns-ipv6: expected an IPv6 address, got '169.254.20.11'",
        ),
        (
            lambda: NodeSettings(local_dns_ipv6="fe80::a"),
            "--local-dns-ipv6: fe80::a is link-local (fe80::/10): pods cannot reach it",
        ),
        (lambda: NodeSettings(local_dns_ipv6="fd00::a%eth0"), "has a zone"),
        (
            lambda: NodeSettings(local_dns="fd00::b", local_dns_ipv6="fd00::a"),
            "--local-dns-ipv6: needs --local-dns to be the IPv4 address, got --local-dns=fd00::b",
        ),
        (lambda: NodeSettings(probe_timeout=0), "--probe-timeout: expected seconds > 0, got 0"),
        (
            lambda: NodeSettings(verify_timeout=float("nan")),
            "--verify-timeout: expected seconds > 0",
        ),
        (lambda: NodeSettings(restart_command=()), "--restart-command: expected a command"),
        (
            lambda: NodeSettings(writable_dirs=("/etc/kubernetes", "etc")),
            "--writable-dirs: 'etc': expected an absolute path",
        ),
        (
            lambda: NodeSettings(writable_dirs=("/etc/kubernetes/../..",)),
            "--writable-dirs: '/etc/kubernetes/../..': expected a normalized path",
        ),
        (lambda: NodeSettings(systemctl_command=()), "--systemctl-command: expected a command"),
        (lambda: NodeSettings(probe_name="x" * 254), "--probe-name: "),
        (lambda: RunSettings(namespace="ns"), "--node-name: required"),
        (
            lambda: RunSettings(node_name="n"),
            "--namespace: required (or $NODELOCALDNS_AGENT_NAMESPACE or $POD_NAMESPACE)",
        ),
        (
            lambda: RunSettings(node_name="n", namespace="ns", mode="sideways"),  # type: ignore[arg-type]
            "--mode: expected one of migrate, revert, observe, got 'sideways'",
        ),
        (
            lambda: RunSettings(node_name="n", namespace="ns", max_concurrent_restarts=0),
            "--max-concurrent-restarts: expected an integer >= 1",
        ),
        (
            lambda: RunSettings(node_name="n", namespace="ns", failsafe_max_flips_per_hour=-1),
            "--failsafe-max-flips-per-hour: expected an integer >= 0",
        ),
        (
            lambda: RunSettings(node_name="n", namespace="ns", lease_duration=5),
            "--lease-duration: expected an integer >= 10",
        ),
        (
            lambda: RunSettings(node_name="n", namespace="ns", lock_wait=-1),
            "--lock-wait: expected seconds > 0",
        ),
        (lambda: RevertFleetSettings(namespace="ns"), "--daemonset: required"),
        (lambda: StatusSettings(output="yaml"), "--output: expected one of table, json"),  # type: ignore[arg-type]
    ],
)
def test_checks_name_the_flag(build: Callable[[], Settings], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert message in str(caught.value)


def test_an_enum_value_becomes_its_member() -> None:
    rs = RunSettings(node_name="n", namespace="ns", mode="revert")  # type: ignore[arg-type]
    assert rs.mode is Mode.REVERT


# ----------------------------------------------------------------------------- chart
#: chart defaults that differ from the agent's on purpose: where -> why
DELIBERATE = {
    "$NODELOCALDNS_AGENT_LOG_FORMAT": "json: a pod's logs go to a log collector; text is for a "
    "terminal",
    "$NODELOCALDNS_AGENT_WRITABLE_DIRS": "the chart's default layout `all` mounts the classic "
    "layouts' directories; the embedded kubelets' (k3s, RKE2, MicroK8s) only with their own "
    "layout, which would otherwise create them on every node. The CLI covers every layout",
    "revert-fleet --timeout": "the uninstall hook (agent.uninstall.timeoutSeconds, 1800 s) waits "
    "for a whole fleet reverted one kubelet restart at a time, unattended; `helm uninstall "
    "--timeout` bounds it. A revert-fleet run by hand returns sooner and can be run again",
}
#: variables the pod fills from the downward API: no default to compare with
FROM_THE_POD = {"NODE_NAME", "POD_NAMESPACE"}


@pytest.fixture(scope="module")
def chart() -> list[Doc]:
    helm = tool("helm", ROOT / ".tools" / "bin" / "helm")
    return render(helm, *DEFAULT_ARGS)


def spec_of(command: str, *, variable: str = "", flag: str = "") -> tuple[Spec, object]:
    """The setting of ``command`` a variable or a flag gives, and its default there."""
    for kind in COMMANDS[command].groups:
        for spec in specs(kind):
            if variable in spec.env or flag == spec.flag:
                return spec, COMMANDS[command].defaults.get(spec.name, spec.default)
    raise AssertionError(f"`{command}` has no setting {variable or flag}")


def chart_settings(docs: list[Doc]) -> dict[str, tuple[str, Spec, object]]:
    """Every setting the chart gives the agent by default: where -> (text, spec, default)."""
    out: dict[str, tuple[str, Spec, object]] = {}
    agent = container(agent_ds(docs))
    pod_env = {e["name"]: e for e in agent["env"]}
    assert {n for n, e in pod_env.items() if "valueFrom" in e} == FROM_THE_POD
    variables = {
        **agent_config(docs),
        **{n: e["value"] for n, e in pod_env.items() if "value" in e},
    }
    for name, text in variables.items():
        out[f"${name}"] = (text, *spec_of("run", variable=name))
    (hook,) = one(docs, "Job")["spec"]["template"]["spec"]["containers"]
    command, *args = hook["args"]
    for flag, text in zip(args[::2], args[1::2], strict=True):
        spec, default = spec_of(command, flag=flag)
        if not spec.option.required:  # names of this release: no default
            out[f"{command} {flag}"] = (text, spec, default)
    return out


def test_chart_defaults_are_the_agents(chart: list[Doc]) -> None:
    settings = chart_settings(chart)
    assert len(settings) >= 15, sorted(settings)
    differ = {
        where: f"chart {text!r}, agent {default!r}"
        for where, (text, spec, default) in settings.items()
        if spec.convert(text) != default
    }
    assert set(differ) == set(DELIBERATE), differ


def test_chart_values_the_agent_reads_implicitly(chart: list[Doc]) -> None:
    """Chart values that copy an agent default without passing it as a setting."""
    node = NodeSettings()
    pod = agent_ds(chart)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["agent-state"]["hostPath"]["path"] == node.state_dir
    # an in-flight change and its rollback finish before SIGKILL (restart + verify, twice)
    grace = 2 * (node.restart_timeout + node.verify_timeout) + 60
    assert pod["terminationGracePeriodSeconds"] == grace


@pytest.mark.parametrize(
    ("key", "enum"), [("mode", Mode), ("logFormat", LogFormat), ("logLevel", LogLevel)]
)
def test_chart_schema_choices_are_the_enums(key: str, enum: type[StrEnum]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["agent"]["properties"][key]["enum"] == [m.value for m in enum]
