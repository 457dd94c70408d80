"""``fast-refusal``: ICMP destination unreachable out of the host's rate limit (the init
container of the chart's node-cache with ``nodeLocalDNS.fastRefusal.enabled``).

The kernel rate-limits an ICMP type only when its bit is set in ``net.ipv4.icmp_ratemask``
(Linux ``net/ipv4/icmp.c``: ``icmpv4_mask_allow`` returns true for a type outside the mask,
and then neither ``icmpv4_global_allow`` nor ``icmpv4_xrlim_allow`` limits it; the default
mask 6168 = 0x1818 holds types 3, 4, 11 and 12, Documentation/networking/ip-sysctl.rst).
Only bit 3 may change: the host's other choices stay.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from nodelocaldns_agent.cli import main
from nodelocaldns_agent.errors import ConfigError, HostError
from nodelocaldns_agent.host.sysctl import (
    RATEMASK,
    ProcSysctl,
    RatemaskChange,
    allow_unlimited,
    without_type,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6168\n", 6160),  # the kernel's default: types 3, 4, 11, 12 -> 4, 11, 12
        ("6160", 6160),  # already without type 3
        ("0", 0),  # nothing limited
        ("8", 0),  # only type 3
        ("4294967295", 4294967295 - 8),  # every bit: only bit 3 goes
        (" 6168 ", 6160),
    ],
)
def test_only_bit_3_is_cleared(text: str, expected: int) -> None:
    assert without_type(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "net/ipv4/icmp_ratemask: expected an integer bit mask, got ''"),
        ("0x1818", "expected an integer bit mask, got '0x1818'"),
        ("6168 1", "expected an integer bit mask"),
        ("-1", "expected 0..4294967295, got -1"),
        ("4294967296", "expected 0..4294967295, got 4294967296"),
    ],
)
def test_a_bad_mask_is_refused_naming_the_sysctl(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        without_type(text)


def _proc(tmp_path: Path, value: str) -> ProcSysctl:
    path = tmp_path / RATEMASK
    path.parent.mkdir(parents=True)
    path.write_text(value)
    return ProcSysctl(tmp_path)


class MemorySysctl:
    """The test implementation: values in a dict, writes recorded."""

    def __init__(self, value: str) -> None:
        self.values = {RATEMASK: value}
        self.writes: list[tuple[str, str]] = []

    def read(self, name: str) -> str:
        return self.values[name]

    def write(self, name: str, value: str) -> None:
        self.writes.append((name, value))
        self.values[name] = value


def test_the_mask_is_written_once_and_old_and_new_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sysctl = MemorySysctl("6168\n")
    with caplog.at_level(logging.INFO):
        assert allow_unlimited(sysctl) == RatemaskChange(6168, 6160)
    assert sysctl.writes == [(RATEMASK, "6160")]
    (record,) = [r for r in caplog.records if r.name == "nodelocaldns_agent.host.sysctl"]
    assert (record.fields["old"], record.fields["new"]) == (6168, 6160)  # type: ignore[attr-defined]
    # a second run (a surge update's new pod, a restart) writes nothing
    assert allow_unlimited(sysctl) == RatemaskChange(6160, 6160)
    assert sysctl.writes == [(RATEMASK, "6160")]


def test_a_bad_mask_is_never_written() -> None:
    sysctl = MemorySysctl("")
    with pytest.raises(ConfigError):
        allow_unlimited(sysctl)
    assert sysctl.writes == []


def test_proc_sys_errors_name_the_file(tmp_path: Path) -> None:
    proc = ProcSysctl(tmp_path / "absent")
    with pytest.raises(HostError, match=re.escape(f"cannot read {tmp_path}/absent/{RATEMASK}")):
        proc.read(RATEMASK)
    with pytest.raises(HostError, match=r"cannot write .*privileged"):
        proc.write(RATEMASK, "6160")


@pytest.mark.parametrize(
    ("value", "code", "after"),
    [("6168\n", 0, "6160\n"), ("6160\n", 0, "6160\n"), ("lots\n", 2, "lots\n")],
)
def test_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, code: int, after: str
) -> None:
    _proc(tmp_path, value)
    assert main(["fast-refusal", "--proc-sys", str(tmp_path)]) == code
    assert (tmp_path / RATEMASK).read_text() == after
    if code:
        assert "icmp_ratemask: expected an integer bit mask" in capsys.readouterr().err
