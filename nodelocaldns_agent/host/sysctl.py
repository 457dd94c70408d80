"""The host's ICMP rate limit for destination unreachable (``fast-refusal``, the chart's
``nodeLocalDNS.fastRefusal``).

After node-cache is killed (SIGKILL, OOM) its address stays bound, so the kernel answers a
pod's DNS query with ICMP port unreachable and glibc gives up at once instead of waiting
out its 5 s timeout. The kernel rate-limits that ICMP type per destination
(``net.ipv4.icmp_ratelimit``, 1000 ms) and globally (``icmp_msgs_per_sec``), but only for
the types whose bit is set in ``net.ipv4.icmp_ratemask`` (default 6168: types 3, 4, 11,
12); Linux ``net/ipv4/icmp.c``: ``icmpv4_mask_allow`` lets a type outside the mask skip
both ``icmpv4_global_allow`` and ``icmpv4_xrlim_allow``. Clearing bit 3 (and only it)
lets every refusal through; docs/availability.md measured it, docs/security.md weighs it.

:func:`without_type` is the decision (pure); :class:`ProcSysctl` reads and writes
``/proc/sys`` (of the network namespace of the process: the host's in a hostNetwork pod);
:func:`allow_unlimited` applies the one to the other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nodelocaldns_agent.errors import ConfigError, HostError
from nodelocaldns_agent.logs import event

log = logging.getLogger(__name__)

#: the sysctl, as a path under /proc/sys
RATEMASK = "net/ipv4/icmp_ratemask"
#: ICMP destination unreachable (RFC 792), which carries "port unreachable"
DEST_UNREACH = 3
#: the kernel's ratemask is an int (``proc_dointvec``: 32 bits)
_MASK_BITS = 32


def without_type(text: str, icmp_type: int = DEST_UNREACH, name: str = RATEMASK) -> int:
    """The ratemask ``text`` (as read from ``/proc/sys``) with the bit of ``icmp_type``
    cleared and every other bit kept; ConfigError naming ``name`` when it is no mask."""
    try:
        mask = int(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected an integer bit mask, got {text!r}") from None
    if not 0 <= mask < 1 << _MASK_BITS:
        raise ConfigError(f"{name}: expected 0..{(1 << _MASK_BITS) - 1}, got {mask}")
    return mask & ~(1 << icmp_type)


class Sysctl(Protocol):
    def read(self, name: str) -> str: ...

    def write(self, name: str, value: str) -> None: ...


@dataclass(frozen=True)
class ProcSysctl:
    """Sysctls through ``root`` (``/proc/sys``; a directory in tests)."""

    root: Path = Path("/proc/sys")

    def read(self, name: str) -> str:
        path = self.root / name
        try:
            return path.read_text()
        except OSError as exc:
            raise HostError(f"cannot read {path}: {exc}") from exc

    def write(self, name: str, value: str) -> None:
        path = self.root / name
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            raise HostError(
                f"cannot write {path}: {exc} (a container needs privileged: /proc/sys is "
                "read-only in any other)"
            ) from exc


@dataclass(frozen=True)
class RatemaskChange:
    old: int
    new: int

    @property
    def changed(self) -> bool:
        return self.old != self.new


def allow_unlimited(sysctl: Sysctl, icmp_type: int = DEST_UNREACH) -> RatemaskChange:
    """Take ``icmp_type`` out of the host's ICMP rate limit; writes only when it is in it
    (a second run, e.g. a surge update's new pod, changes nothing). Logs old -> new."""
    raw = sysctl.read(RATEMASK)
    new = without_type(raw, icmp_type)
    change = RatemaskChange(int(raw.strip()), new)
    if change.changed:
        sysctl.write(RATEMASK, str(new))
    event(
        log,
        "icmp_ratemask set" if change.changed else "icmp_ratemask already without the type",
        sysctl="net.ipv4.icmp_ratemask",
        old=change.old,
        new=change.new,
        icmp_type=icmp_type,
    )
    return change
