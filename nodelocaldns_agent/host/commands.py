"""Running host commands: argv lists, a timeout, output captured into the error."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nodelocaldns_agent.errors import CommandError

#: Bytes of command output kept for error messages and logs.
_MAX_OUTPUT = 8192


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    output: str


class CommandRunner(Protocol):
    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run ``argv``; raise :class:`CommandError` unless it exits 0 in time."""
        ...


class SubprocessRunner:
    """``keep``: characters of output kept (the last ones), in the result and the error."""

    def __init__(self, keep: int = _MAX_OUTPUT) -> None:
        self._keep = keep

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        args = list(argv)
        try:
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = _text(exc.stdout, self._keep)
            raise CommandError(args, f"did not finish within {timeout:g}s", out) from exc
        except OSError as exc:
            raise CommandError(args, f"could not be started: {exc.strerror or exc}") from exc
        out = _text(proc.stdout, self._keep)
        if proc.returncode != 0:
            raise CommandError(args, f"exited with status {proc.returncode}", out)
        return CommandResult(tuple(args), proc.returncode, out)


def _text(data: bytes | str | None, keep: int) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data[-keep:]
    return data[-keep:].decode("utf-8", "replace")
