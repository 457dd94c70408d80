"""The host's firewall rules, read with the host's own ``iptables-save`` (``check`` only).

It runs through ``--iptables-save-prefix`` (by default ``nsenter --target 1 --mount --uts
--ipc --net --pid --``, the route of ``systemctl``), so the binary, and with it the
backend (``iptables-legacy`` or ``iptables-nft``, chosen by the host's alternatives), is
the host's: the one kubelet, kube-proxy and node-cache (whose image's iptables-wrapper
picks the backend that holds kubelet's rules) write with. ``iptables-save`` only reads.
Reading needs ``CAP_NET_ADMIN`` (both backends) and ``CAP_NET_RAW`` (legacy); without
them it fails with ``Permission denied (you must be root)``.
"""

from __future__ import annotations

from typing import Protocol

from nodelocaldns_agent.errors import CommandError, FirewallError
from nodelocaldns_agent.host.commands import CommandRunner

#: seconds one ``iptables-save`` may run (a few milliseconds are usual)
SAVE_TIMEOUT = 10.0
#: characters of ``iptables-save`` output kept (the raw and filter tables of a node with
#: a CNI's policy rules are tens of kilobytes)
MAX_SAVE_OUTPUT = 16 * 1024 * 1024


_PERMISSION_HINT = " (iptables-save needs CAP_NET_ADMIN, and CAP_NET_RAW with iptables-legacy)"


class HostIptables(Protocol):
    def save(self, version: int, table: str) -> str:
        """``iptables-save -t TABLE`` of the host (``ip6tables-save`` for ``version`` 6);
        :class:`FirewallError` when it cannot be run."""
        ...


class IptablesSave:
    """``<prefix> iptables-save -t TABLE`` through a :class:`CommandRunner`."""

    def __init__(
        self, runner: CommandRunner, prefix: tuple[str, ...], timeout: float = SAVE_TIMEOUT
    ) -> None:
        self._runner = runner
        self._prefix = prefix
        self._timeout = timeout

    def argv(self, version: int, table: str) -> list[str]:
        program = "ip6tables-save" if version == 6 else "iptables-save"
        return [*self._prefix, program, "-t", table]

    def save(self, version: int, table: str) -> str:
        try:
            return self._runner.run(self.argv(version, table), timeout=self._timeout).output
        except CommandError as exc:
            hint = _PERMISSION_HINT if "Permission denied" in exc.output else ""
            raise FirewallError(
                f"the host's firewall rules could not be read{hint}: {exc}"
            ) from exc
