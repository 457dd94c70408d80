"""Flags, their NODELOCALDNS_AGENT_* environment fallbacks, and exit codes for bad input
(no traceback, a message naming the flag or variable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodelocaldns_agent.cli import build_parser, env_name, main, node_settings, run_settings


def test_every_flag_has_an_environment_variable() -> None:
    assert env_name("--max-concurrent-restarts") == "NODELOCALDNS_AGENT_MAX_CONCURRENT_RESTARTS"


def test_environment_fallback_and_flag_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODELOCALDNS_AGENT_LOCAL_DNS", "169.254.0.53")
    monkeypatch.setenv("NODELOCALDNS_AGENT_MAX_CONCURRENT_RESTARTS", "3")
    monkeypatch.setenv("NODELOCALDNS_AGENT_NO_FAILSAFE", "true")
    monkeypatch.setenv("NODE_NAME", "n1")
    monkeypatch.setenv("POD_NAMESPACE", "kube-system")
    args = build_parser().parse_args(["run", "--verify-timeout", "30"])
    ns, rs = node_settings(args), run_settings(args)
    assert ns.local_dns == "169.254.0.53" and ns.verify_timeout == 30.0
    assert rs.max_concurrent_restarts == 3 and rs.failsafe is False
    assert (rs.node_name, rs.namespace) == ("n1", "kube-system")
    args = build_parser().parse_args(["run", "--local-dns", "169.254.20.10"])
    assert node_settings(args).local_dns == "169.254.20.10"  # the flag beats the variable


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["check", "--local-dns", "nope"], {}, "--local-dns"),
        (["check", "--probe-timeout", "0"], {}, "--probe-timeout"),
        (["check", "--restart-command", "'unbalanced"], {}, "--restart-command"),
        (["check"], {"NODELOCALDNS_AGENT_LOG_LEVEL": "loud"}, "NODELOCALDNS_AGENT_LOG_LEVEL"),
        (["check"], {"NODELOCALDNS_AGENT_FORCE": "maybe"}, "NODELOCALDNS_AGENT_FORCE"),
        (["migrate"], {}, "--once"),
        (["run", "--mode", "sideways"], {}, "--mode"),
        (["run", "--namespace", "x"], {}, "--node-name"),
        (
            ["run", "--node-name", "n", "--namespace", "x", "--max-concurrent-restarts", "0"],
            {},
            "--max-concurrent-restarts",
        ),
        (["revert-fleet"], {}, "--daemonset"),
    ],
)
def test_bad_input_exits_2_with_a_named_field(
    argv: list[str],
    env: dict[str, str],
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for key in ("NODE_NAME", "POD_NAMESPACE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main([*argv, *(["--host-root", str(tmp_path)] if argv[0] == "check" else [])]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_missing_host_root_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--host-root", "/nonexistent/host"]) == 2
    assert "--host-root" in capsys.readouterr().err
