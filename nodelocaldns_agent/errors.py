"""The agent's own error hierarchy.

Every error message says what was expected and where (file, field, command), so that a
user reading one log line knows what to fix. Exit codes of the one-shot commands map
onto these classes (see ``nodelocaldns_agent.cli``).
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """Bad input: a malformed, missing, oversized or unsupported file, flag or value.

    Nothing was changed on the host. Exit code 2.
    """


class HostError(AgentError):
    """A host side effect failed: a write, a command, a restart. Exit code 1."""


class UnsafeWriteError(HostError):
    """A write or removal of a host file was refused before anything changed: the path
    leaves the writable directories, a directory on it is not root's alone, or the file is
    not the one the agent read or wrote."""


class CommandError(HostError):
    """A command exited non-zero, timed out or could not be started."""

    def __init__(self, argv: list[str], message: str, output: str = "") -> None:
        self.argv = argv
        self.output = output
        detail = f": {output.strip()[-2000:]}" if output.strip() else ""
        super().__init__(f"command {argv!r} {message}{detail}")


class SystemdError(HostError):
    """The host's systemd could not be asked, or answered something the agent cannot read."""


class FirewallError(HostError):
    """The host's firewall rules could not be read (``iptables-save``)."""


class VerifyError(HostError):
    """kubelet did not come back healthy after a restart."""


class TransientError(AgentError):
    """Worth retrying later (API unavailable, lease held by another node, ...)."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay
