"""The command line end to end (``main``): exit codes and messages for bad input, the
wiring of every command, what the one-shot commands print, and what they never import.
The flag/variable machinery itself is tested in tests/test_settings.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nodelocaldns_agent import __version__
from nodelocaldns_agent.cli import main, output
from nodelocaldns_agent.cli.parser import COMMANDS
from nodelocaldns_agent.cli.root import HANDLERS
from nodelocaldns_agent.plan import Goal
from testing.fakenode import tke_node
from testing.sandbox.constants import LOCAL_DNS
from tests.tooling import ROOT


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
        (["sideways"], {}, "invalid choice"),
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


def test_every_command_has_a_handler() -> None:
    assert set(HANDLERS) == set(COMMANDS)


def test_python_dash_m_and_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nodelocaldns_agent", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["nodelocaldns-agent", __version__]


def test_one_shot_commands_never_import_the_api_client_or_metrics(tmp_path: Path) -> None:
    """``check`` and ``--once`` run on a node without loading ``kubernetes`` (its memory and
    start-up time) or ``prometheus_client``."""
    script = (
        "import sys\n"
        "from nodelocaldns_agent.cli import main\n"
        "fast = ['--host-root', sys.argv[1], '--probe-timeout', '0.1',\n"
        "        '--kube-proxy-url', 'http://127.0.0.1:1/', '--kubelet-healthz-url',\n"
        "        'http://127.0.0.1:1/']\n"
        "codes = [main(['check', *fast]), main(['migrate', '--once', *fast])]\n"
        "heavy = ('kubernetes', 'prometheus_client')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "print(codes, loaded)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # exit 2 on an empty host root (no kubelet configuration), after the whole detection
    assert proc.stdout.splitlines()[-1] == "[2, 2] []", proc.stdout + proc.stderr


def test_check_table_and_its_diff(tmp_path: Path) -> None:
    rep = tke_node(tmp_path).engine().check(Goal.MIGRATE)
    lines = output.check_table(rep).splitlines()
    # keys padded to the longest one, then two spaces, then the value
    assert [line[:17].rstrip() for line in lines[:7]] == [
        "kube-proxy mode",
        "network mode",
        "local DNS",
        "node-cache",
        "NOTRACK rules",
        "kubelet config",
        "action",
    ]
    assert all(line[17] != " " for line in lines[:7])
    assert lines[3] == f"node-cache       ready=True {LOCAL_DNS} /health ok"
    # the fake host's firewall has none of node-cache's rules
    assert lines[4].startswith(
        f"NOTRACK rules    {LOCAL_DNS} 0/12 missing: filter INPUT -p tcp -d {LOCAL_DNS} "
        "--dport 53 -j ACCEPT; "
    )
    assert lines[6].startswith("action           migrate: ")
    assert lines[7] == "" and lines[8].startswith("--- ")
    assert any(line.startswith("+") and LOCAL_DNS in line for line in lines[8:])
    assert json.loads(output.as_json(rep)) == rep


def test_once_summary(tmp_path: Path) -> None:
    outcome = tke_node(tmp_path).engine().reconcile(Goal.MIGRATE)
    summary = json.loads(output.as_json(output.once_summary(outcome)))
    assert summary == {
        "state": "migrated",
        "action": "migrate",
        "reason": outcome.plan.reason,
        "restarted": True,
        "rolled_back": False,
        "error": "",
        "cluster_dns": [LOCAL_DNS],
    }
    assert output.once_line(outcome) == f"migrated: {outcome.plan.reason}"
