"""Pure state rules: the fail-safe state machine, per-node mode and opt-out, the detail
annotation, and the daemon's stale-pod rules."""

from __future__ import annotations

import pytest

from nodelocaldns_agent.state import (
    MODE_LABEL,
    Detail,
    FailSafe,
    Mode,
    NodeState,
    Result,
    effective_mode,
    opted_out,
)

# Each row: a sequence of (seconds since start, local DNS healthy, node migrated) and the
# flip expected after each observation.
FAILSAFE_ROWS = [
    (
        "short-blip-no-flip",
        [(0, False, True), (100, False, True), (200, True, True)],
        [None, None, None],
    ),
    (
        "down-too-long-reverts",
        [(0, False, True), (299, False, True), (300, False, True)],
        [None, None, "revert"],
    ),
    ("not-migrated-never-reverts", [(0, False, False), (1000, False, False)], [None, None]),
    (
        "recovers-after-healthy-long-enough",
        [
            (0, False, True),
            (300, False, True),
            (310, True, False),
            (909, True, False),
            (910, True, False),
        ],
        [None, "revert", None, None, "recover"],
    ),
    (
        "flapping-dns-resets-recovery",
        [
            (0, False, True),
            (300, False, True),
            (310, True, False),
            (600, False, False),
            (700, True, False),
            (1299, True, False),
            (1300, True, False),
        ],
        [None, "revert", None, None, None, None, "recover"],
    ),
]


@pytest.mark.parametrize(
    ("steps", "flips"), [r[1:] for r in FAILSAFE_ROWS], ids=[r[0] for r in FAILSAFE_ROWS]
)
def test_failsafe(steps: list[tuple[float, bool, bool]], flips: list[str | None]) -> None:
    fs = FailSafe(after=300, recover_after=600, max_flips_per_hour=4)
    got = [fs.observe(t, healthy, migrated) for t, healthy, migrated in steps]
    assert got == flips


def test_failsafe_budget_limits_flips_per_hour() -> None:
    fs = FailSafe(after=10, recover_after=10, max_flips_per_hour=2)
    assert fs.observe(0, False, True) is None
    assert fs.observe(10, False, True) == "revert"
    assert fs.observe(11, True, False) is None
    assert fs.observe(21, True, False) == "recover"
    assert fs.observe(22, False, True) is None
    assert fs.observe(40, False, True) is None  # budget used up: stays migrated
    assert fs.observe(3611, False, True) == "revert"  # an hour later it may flip again


def test_failsafe_disabled_never_flips() -> None:
    fs = FailSafe(after=1, recover_after=1, max_flips_per_hour=9, enabled=False)
    assert [fs.observe(t, False, True) for t in range(5)] == [None] * 5


@pytest.mark.parametrize(
    ("labels", "default", "mode"),
    [
        ({}, Mode.MIGRATE, Mode.MIGRATE),
        ({MODE_LABEL: "revert"}, Mode.MIGRATE, Mode.REVERT),
        ({MODE_LABEL: " Observe "}, Mode.MIGRATE, Mode.OBSERVE),
        ({MODE_LABEL: "bogus"}, Mode.OBSERVE, Mode.OBSERVE),
        ({MODE_LABEL: "bogus"}, Mode.REVERT, Mode.REVERT),
        ({MODE_LABEL: "migrate"}, Mode.REVERT, Mode.REVERT),  # a fleet-wide revert always wins
    ],
)
def test_effective_mode(labels: dict[str, str], default: Mode, mode: Mode) -> None:
    assert effective_mode(default, labels) is mode


@pytest.mark.parametrize(
    ("value", "out"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("", False), ("no", False)],
)
def test_opt_out(value: str, out: bool) -> None:
    assert opted_out({"k": value}, "k") is out


def test_detail_round_trip_and_bad_json() -> None:
    d = Detail(source="/etc/kubernetes/kubelet", cluster_dns=["169.254.20.10"], stale_pods=0)
    assert Detail.from_json(d.to_json()) == d
    assert "source" in d.to_json() and "error" not in d.to_json()
    assert Detail.from_json("{not json").error.startswith("unreadable")
    assert Detail.from_json("[1]").error == "detail annotation is not a JSON object"
    assert Detail.from_json('{"source": "x", "future": 1}').source == "x"


def test_a_settled_result_is_the_node_state_of_the_same_name() -> None:
    """The engine converts a settled state with ``Result(state)``; blocked is no state."""
    settled = [r for r in Result if r is not Result.BLOCKED]
    assert [NodeState[r.name].value for r in settled] == [r.value for r in settled]
    assert [Result(NodeState[r.name]) for r in settled] == settled
    assert Result.BLOCKED.value not in {s.value for s in NodeState}
