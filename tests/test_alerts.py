"""chart/files/alerts.yaml: valid rules, promtool unit tests, and only metrics that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from nodelocaldns_agent.metrics import Metrics
from tests.tooling import tool

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "chart" / "files" / "alerts.yaml"
TESTS = Path(__file__).resolve().parent / "data" / "alerts-tests.yaml"
EXPECTED_ALERTS = {
    "NodeLocalDNSAgentMigrationFailed",
    "NodeLocalDNSAgentStuckWaitingForLocalDNS",
    "NodeLocalDNSAgentStuckWaitingForLock",
    "NodeLocalDNSAgentLocalDNSUnhealthyOnMigratedNode",
    "NodeLocalDNSAgentFailSafeRevert",
    "NodeLocalDNSAgentDown",
    "NodeLocalDNSAgentRolloutNotProgressing",
}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(ALERTS), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests() -> None:
    # rule_files in the test file are relative to it: run from its directory.
    result = promtool("test", "rules", TESTS.name, cwd=TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_expected_alerts_exist() -> None:
    names = {rule["alert"] for rule in rules() if "alert" in rule}
    assert names >= EXPECTED_ALERTS


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in rules() if "alert" in rule}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"


def test_alerts_use_only_metrics_the_agent_exports() -> None:
    registry = CollectorRegistry()
    Metrics(registry, version="test")
    exported = {sample.name for family in registry.collect() for sample in family.samples}
    for rule in rules():
        for name in re.findall(r"\bnodelocaldns_agent_[a-z0-9_]+", rule["expr"]):
            assert name in exported, f"{rule.get('alert') or rule.get('record')}: {name}"


def test_alert_labels_and_annotations() -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
