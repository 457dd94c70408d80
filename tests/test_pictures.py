"""The pictures in docs/img (``python -m testing.pictures``, issue 16 part 4) come from a
real demo run: the Grafana dashboard's own PromQL on the demo's real Prometheus, and the
rollout timelines from the agents' structured logs. One run of the generator (a demo with
Prometheus, ~35 s), then assertions on what it drew and on the PNGs."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testing import pictures
from testing.demo import NODES

ROOT = Path(__file__).resolve().parents[1]
PNGS = ("dashboard.png", "rollout-node.png", "rollout-fleet.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    tmp = tmp_path_factory.mktemp("pictures")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "testing.pictures",
            "--out",
            str(tmp / "img"),
            "--data",
            str(tmp / "data.json"),
            "--workdir",
            str(tmp / "demo"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return tmp / "img", json.loads((tmp / "data.json").read_text()), proc.stdout


def _panels(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in data["panels"]}


@pytest.mark.netns
@pytest.mark.timeout(300)
def test_dashboard_panels_are_the_dashboards_queries_on_real_data(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    _, data, out = run
    assert "[5/7] A real Prometheus scraped every agent all along" in out
    board = pictures.dashboard_panels()
    # every panel of the dashboard, in its order, with its own PromQL (read, not retyped)
    assert [p["title"] for p in data["panels"]] == [spec["title"] for spec, _ in board]
    for drawn, (spec, targets) in zip(data["panels"], board, strict=True):
        filled_in = [re.sub(r"\[\d+s\]", "[$__range]", e) for e in drawn["exprs"]]
        assert filled_in == [t["expr"] for t in targets], drawn["title"]
        assert drawn["grid"] == spec["gridPos"]
    panels = _panels(data)
    nodes = {name for name, _, _ in NODES}

    def last(series: dict[str, Any]) -> float:
        return float(series["points"][-1][1])

    by_state = {s["label"]: last(s) for s in panels["Nodes by state"]["series"]}
    assert by_state == {"migrated": 3.0}  # "now": Prometheus saw the fleet migrated
    assert sorted(last(s) for s in panels["Agents up"]["series"]) == [3.0, 3.0]
    assert [last(s) for s in panels["Fail-safe reverts (range)"]["series"]] == [0.0]
    table = panels["State per node"]["series"]
    assert {s["metric"]["node"] for s in table if "state" in s["metric"]} == nodes
    healthy = {
        s["label"]: [v for _, v in s["points"]]
        for s in panels["Local DNS healthy per node"]["series"]
    }
    assert set(healthy) == nodes
    # node-3's local DNS: down, then up; the others up all along
    assert healthy["node-3"][0] == 0 and healthy["node-3"][-1] == 1
    assert all(v == 1 for node in ("node-1", "node-2") for v in healthy[node])
    over_time = {s["label"] for s in panels["Nodes by state over time"]["series"]}
    assert {"migrated", "waiting-for-local-dns"} <= over_time
    qps = panels["node-cache queries per second"]["series"]
    assert {s["label"] for s in qps} == nodes  # node-cache scraped as job node-local-dns
    # node-1's and node-2's node-cache answered the agents' probes all along; node-3's came
    # up a few seconds before the picture's moment: its rate may still be 0 there
    assert all(last(s) > 0 for s in qps if s["label"] != "node-3"), qps


@pytest.mark.netns
@pytest.mark.timeout(300)
def test_rollout_timelines_from_the_agents_logs(run: tuple[Path, dict[str, Any], str]) -> None:
    _, data, _ = run
    changes = data["changes"]
    assert sorted((c["node"], c["action"]) for c in changes) == sorted(
        (name, action) for name, _, _ in NODES for action in ("migrate", "revert")
    )
    for change in changes:
        assert list(change["steps"]) == list(pictures.timeline.STEPS)
        bounds = [b for step in pictures.timeline.STEPS for b in change["steps"][step]]
        assert bounds == sorted(bounds), change  # gate -> lock -> ... -> release, in order
    held = [c["node"] for c in changes if c["held_back"]]
    assert held == ["node-3"]
    # the restart limit (1): no two nodes held the restart slot at the same time
    slots = sorted((c["steps"]["lock"][1], c["steps"]["release"][1]) for c in changes)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(slots))


@pytest.mark.netns
@pytest.mark.timeout(300)
def test_pngs_are_small_and_not_blank(run: tuple[Path, dict[str, Any], str]) -> None:
    from matplotlib import image

    img, _, _ = run
    for name in PNGS:
        path = img / name
        assert 5_000 < path.stat().st_size < 200_000, name
        pixels = image.imread(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 600, name
        assert pixels.std() > 0.05, name  # drawn on, not one colour


def test_promql_fills_in_grafanas_variables() -> None:
    assert pictures.promql("increase(x[$__range])", 41.2) == "increase(x[42s])"
    assert pictures.promql("rate(x[$__rate_interval])", 10) == "rate(x[4s])"
    with pytest.raises(ValueError, match=r"\$node"):
        pictures.promql('x{node="$node"}', 10)


def test_legend_format_as_grafana_fills_it() -> None:
    assert pictures.legend("{{state}}", {"state": "migrated"}, "q") == "migrated"
    assert pictures.legend("{{ node }} up", {"node": "n1"}, "q") == "n1 up"
    assert pictures.legend("", {"node": "n1"}, "q") == "q"
