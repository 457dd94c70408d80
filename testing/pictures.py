"""``python -m testing.pictures`` (``bash scripts/pictures.sh``): the pictures in
``docs/img``, made from a real demo run, never drawn by hand.

It runs the demo (:mod:`testing.demo`) with a real Prometheus scraping every agent and
every node-cache, and before the sandbox is torn down:

- ``dashboard.png``: the chart's Grafana dashboard (``chart/files/dashboard.json``): every
  panel's PromQL, read from the JSON, evaluated by that Prometheus over the demo's time
  range, drawn where the dashboard places it (``gridPos``) as its panel type would
  (stat, table, state-timeline, time series), "now" being the moment Prometheus saw the
  whole fleet migrated;
- ``rollout-node.png``: node-3's migration, step by step (gate -> lock -> write -> restart
  -> verify -> release) from its agent's structured log (:mod:`testing.timeline`);
- ``rollout-fleet.png``: every node's migration and revert on one time axis: one kubelet
  restart at a time, node-3 held back until its node-cache came up.

Needs the ``docs`` extra (matplotlib); the demo itself does not.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testing import timeline
from testing.demo import Demo, run_demo

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from testing.sandbox.prometheus import Prometheus

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "chart/files/dashboard.json"
OUT = REPO / "docs/img"
#: Grafana's columns of a dashboard row (gridPos.x + gridPos.w <= 24)
GRID_COLUMNS = 24
#: ``$__rate_interval`` at the demo's 1 s scrape interval: four scrapes, Grafana's rule
RATE_INTERVAL = "4s"
STEP = 1.0
DPI = 72
#: one colour per step of a change (and the same state colours as the dashboard's)
STEP_COLOURS = {
    "gate": "#b0b7c3",
    "lock": "#f2cc0c",
    "write": "#5794f2",
    "restart": "#e02f44",
    "verify": "#8f3bb8",
    "release": "#73bf69",
}


@dataclass
class Series:
    label: str
    #: (seconds since the range's start, value)
    points: list[tuple[float, float]]
    metric: dict[str, str] = field(default_factory=dict)


@dataclass
class Panel:
    title: str
    type: str
    grid: dict[str, int]
    exprs: list[str]
    series: list[Series] = field(default_factory=list)


# ---------------------------------------------------------------- the dashboard's queries
def dashboard_panels(path: Path = DASHBOARD) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each panel of the dashboard with its targets (``expr``, ``legendFormat``)."""
    board = json.loads(path.read_text(encoding="utf-8"))
    return [(p, [t for t in p.get("targets") or [] if t.get("expr")]) for p in board["panels"]]


def promql(expr: str, range_seconds: float) -> str:
    """The panel's PromQL with Grafana's variables as Grafana would fill them in."""
    text = expr.replace("$__range", f"{math.ceil(range_seconds)}s")
    text = text.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", f"{STEP:g}s")
    if "$" in text:
        raise ValueError(f"{expr!r} in {DASHBOARD}: a variable the pictures do not fill in")
    return text


def legend(fmt: str, metric: dict[str, str], fallback: str) -> str:
    """Grafana's ``legendFormat``: ``{{label}}`` replaced by the series' label value."""
    if not fmt:
        return fallback
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def evaluate(prom: Prometheus, start: float, now: float) -> list[Panel]:
    """Every panel's queries from ``start`` until ``now``: a range query for the panels
    that draw time, an instant query at ``now`` for the rest (stat, table)."""
    panels = []
    for spec, targets in dashboard_panels():
        panel = Panel(
            title=spec["title"],
            type=spec["type"],
            grid=spec["gridPos"],
            exprs=[promql(t["expr"], now - start) for t in targets],
        )
        over_time = panel.type in ("timeseries", "state-timeline")
        for target, query in zip(targets, panel.exprs, strict=True):
            fmt = str(target.get("legendFormat") or "")
            if over_time:
                result = prom.query_range(query, start, now, STEP)
                for r in result:
                    points = [(float(t) - start, float(v)) for t, v in r["values"]]
                    label = legend(fmt, r["metric"], query)
                    panel.series.append(Series(label, points, r["metric"]))
            else:
                for r in prom.query(query, at=now):
                    point = [(now - start, float(r["value"][1]))]
                    panel.series.append(Series(legend(fmt, r["metric"], ""), point, r["metric"]))
        panels.append(panel)
    return panels


# ---------------------------------------------------------------- drawing
def _stat(ax: Axes, panel: Panel) -> None:
    ax.axis("off")
    shown = sorted(panel.series, key=lambda s: s.label) or [Series("no data", [(0, math.nan)])]
    for i, s in enumerate(shown):
        x = (i + 0.5) / len(shown)
        value = s.points[-1][1]
        ax.text(x, 0.45, "-" if math.isnan(value) else f"{value:g}", ha="center", fontsize=26)
        ax.text(x, 0.1, s.label, ha="center", fontsize=10, color="#555555")


def _table(ax: Axes, panel: Panel) -> None:
    """The State per node table: node, state, last change (the second query's value)."""
    ax.axis("off")
    changed = {
        s.metric.get("node"): s.points[-1][1] for s in panel.series if "state" not in s.metric
    }
    rows = []
    for s in sorted(panel.series, key=lambda s: s.metric.get("node", "")):
        if "state" in s.metric:
            node = s.metric.get("node", "?")
            at = changed.get(node)
            when = "-" if at is None else time.strftime("%H:%M:%S", time.gmtime(at / 1000))
            rows.append([node, s.metric["state"], when])
    if rows:
        table = ax.table(
            cellText=rows, colLabels=["node", "state", "last change (UTC)"], loc="upper center"
        )
        table.scale(1, 1.6)


def _state_timeline(ax: Axes, panel: Panel) -> None:
    shown = sorted(panel.series, key=lambda s: s.label, reverse=True)
    for row, s in enumerate(shown):
        for (t, v), nxt in zip(s.points, [*s.points[1:], None], strict=True):
            width = (nxt[0] - t) if nxt else STEP
            ax.barh(row, width, left=t, color="#73bf69" if v >= 1 else "#e02f44", height=0.7)
    ax.set_yticks(range(len(shown)), [s.label for s in shown])
    ax.set_xlabel("s since the agents started (green: healthy, red: not)")


def _timeseries(ax: Axes, panel: Panel) -> None:
    for s in sorted(panel.series, key=lambda s: s.label):
        ax.step([t for t, _ in s.points], [v for _, v in s.points], where="post", label=s.label)
    if panel.series:
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("s since the agents started")
    ax.grid(alpha=0.3)


DRAW = {"stat": _stat, "table": _table, "state-timeline": _state_timeline}


#: inches around each panel's plot inside its grid cell: for the title, tick labels, legend
PAD_TOP, PAD_BOTTOM, PAD_LEFT, PAD_RIGHT = 0.45, 0.55, 0.9, 0.2
#: inches per grid unit (Grafana's rows are 30 px, its columns a 24th of the width)
UNIT_HEIGHT, WIDTH = 0.42, 14.0


def draw_dashboard(panels: list[Panel], title: str, span: float, out: Path) -> None:
    """Each panel in its ``gridPos`` cell; time axes over the same ``span`` seconds."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = max(p.grid["y"] + p.grid["h"] for p in panels)
    height = rows * UNIT_HEIGHT + PAD_TOP
    fig = plt.figure(figsize=(WIDTH, height))
    for panel in panels:
        g = panel.grid
        left = g["x"] / GRID_COLUMNS * WIDTH + PAD_LEFT
        width = g["w"] / GRID_COLUMNS * WIDTH - PAD_LEFT - PAD_RIGHT
        top = height - PAD_TOP - g["y"] * UNIT_HEIGHT
        bottom = top - g["h"] * UNIT_HEIGHT
        rect = (
            left / WIDTH,
            (bottom + PAD_BOTTOM) / height,
            width / WIDTH,
            (g["h"] * UNIT_HEIGHT - PAD_TOP - PAD_BOTTOM) / height,
        )
        ax = fig.add_axes(rect)
        draw = DRAW.get(panel.type, _timeseries)
        draw(ax, panel)
        if draw in (_timeseries, _state_timeline):
            ax.set_xlim(0, span)
        ax.set_title(panel.title, loc="left", fontsize=11, fontweight="bold")
    fig.text(0.01, 1 - 0.3 / height, title, fontsize=12)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def _steps(ax: Axes, row: float, change: timeline.Change, origin: float) -> None:
    for step in timeline.STEPS:
        begin, end = change.steps[step]
        ax.barh(row, end - begin, left=begin - origin, color=STEP_COLOURS[step], height=0.6)


def _legend(fig: Figure) -> None:
    """The steps' colours, in their order, under the plots."""
    from matplotlib.patches import Patch

    handles = [Patch(color=STEP_COLOURS[s], label=s) for s in timeline.STEPS]
    fig.legend(handles=handles, ncol=len(handles), fontsize=9, loc="lower center")
    fig.tight_layout(rect=(0, 0.07, 1, 1))


def draw_node(change: timeline.Change, out: Path) -> None:
    """One node's change: the whole of it, and the steps while it held the restart slot."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (whole, slot) = plt.subplots(2, 1, figsize=(11, 4.6), height_ratios=[1, 1.4])
    origin = change.start
    _steps(whole, 0, change, origin)
    whole.set_yticks([0], [change.node])
    whole.set_xlabel("s since its agent was ready")
    held = "held back: its local DNS did not answer" if change.held_back else "gate passed"
    whole.set_title(
        f"{change.node}: {change.action} {','.join(change.old_dns)} -> "
        f"{','.join(change.new_dns)} ({held} for {change.seconds('gate'):.1f} s)",
        loc="left",
        fontsize=11,
    )
    locked = change.steps["lock"][1]
    for i, step in enumerate(timeline.STEPS[2:]):
        begin, end = change.steps[step]
        slot.barh(-i, (end - begin) * 1000, left=(begin - locked) * 1000, color=STEP_COLOURS[step])
        slot.text((end - locked) * 1000 + 5, -i, f"{(end - begin) * 1000:.0f} ms", va="center")
    slot.set_yticks([-i for i in range(4)], list(timeline.STEPS[2:]))
    slot.set_xlabel("ms since the restart slot (lock) was acquired")
    slot.set_title(
        "holding the restart slot: write the kubelet config, restart kubelet, verify, release",
        loc="left",
        fontsize=10,
    )
    slot.grid(axis="x", alpha=0.3)
    _legend(fig)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def draw_fleet(changes: list[timeline.Change], marks: dict[str, float], out: Path) -> None:
    """Every change of every node on one axis (seconds since the agents started)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    origin = marks["the agents start"]
    nodes = sorted({c.node for c in changes}, reverse=True)
    fig, ax = plt.subplots(figsize=(11, 3.9))
    for change in changes:
        _steps(ax, nodes.index(change.node), change, origin)
    for i, (what, at) in enumerate(sorted(marks.items(), key=lambda m: m[1])):
        ax.axvline(at - origin, color="#333333", linestyle="--", linewidth=1)
        ax.text(at - origin + 0.1, len(nodes) - 0.45 + 0.25 * (i % 2), what, fontsize=9)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylim(-0.6, len(nodes) + 0.1)
    ax.set_xlabel("s since the agents started")
    ax.set_title(
        "the fleet: migrate, then revert; at most one kubelet restart (a held slot) at a time",
        loc="left",
        fontsize=11,
    )
    ax.grid(axis="x", alpha=0.3)
    _legend(fig)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


# ---------------------------------------------------------------- the run
@dataclass
class Pictures:
    """What the pictures show: the dashboard's panels evaluated, every change read from
    the agents' logs, and the demo's moments (epoch seconds)."""

    panels: list[Panel] = field(default_factory=list)
    changes: list[timeline.Change] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    def collect(self, story: Demo) -> None:
        """Called by the demo before its sandbox goes: query Prometheus, read the logs."""
        assert story.prom is not None
        self.times = dict(story.times)
        self.panels = evaluate(story.prom, self.times["agents"], self.times["prom_seen"])
        self.changes = story.changes

    def draw(self, out: Path) -> list[Path]:
        t = self.times
        out.mkdir(parents=True, exist_ok=True)
        span = t["prom_seen"] - t["agents"]
        draw_dashboard(
            self.panels,
            "chart/files/dashboard.json, every panel's PromQL on the demo's real Prometheus "
            f"({span:.0f} s after the agents started)",
            span,
            out / "dashboard.png",
        )
        held = [c for c in self.changes if c.action == "migrate" and c.held_back]
        draw_node(held[0] if held else self.changes[0], out / "rollout-node.png")
        marks = {
            "the agents start": t["agents"],
            "node-3's node-cache up": t["dns_up"],
            "revert": t["revert"],
        }
        draw_fleet(self.changes, marks, out / "rollout-fleet.png")
        return [out / n for n in ("dashboard.png", "rollout-node.png", "rollout-fleet.png")]

    def data(self) -> dict[str, Any]:
        return {
            "panels": [asdict(p) for p in self.panels],
            "changes": [asdict(c) for c in self.changes],
            "times": self.times,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Pictures:
        panels = [
            Panel(**{**p, "series": [Series(**s) for s in p["series"]]}) for p in data["panels"]
        ]
        changes = [
            timeline.Change(**{**c, "steps": {k: tuple(v) for k, v in c["steps"].items()}})
            for c in data["changes"]
        ]
        return cls(panels, changes, data["times"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testing.pictures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default=str(OUT), help="where the PNGs go (default: docs/img)")
    parser.add_argument("--data", default="", help="also write what was drawn, as JSON, here")
    parser.add_argument(
        "--from-data", default="", help="no demo: draw again what --data wrote earlier"
    )
    parser.add_argument("--workdir", default="", help="keep the demo's sandbox here")
    args = parser.parse_args(argv)
    if args.from_data:
        pictures = Pictures.from_data(json.loads(Path(args.from_data).read_text("utf-8")))
    else:
        pictures = Pictures()
        code = run_demo(args.workdir or None, prometheus=True, collect=pictures.collect)
        if code != 0:
            return code
    if args.data:
        Path(args.data).write_text(json.dumps(pictures.data(), indent=1), encoding="utf-8")
    made = pictures.draw(Path(args.out))
    print("pictures: " + ", ".join(f"{p} ({p.stat().st_size // 1024} KiB)" for p in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
