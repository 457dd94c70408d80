"""Exit codes of the agent's command line and of ``kubectl nodelocaldns``, and the one
place where the project's errors become them."""

from __future__ import annotations

import sys
from collections.abc import Callable

from nodelocaldns_agent.errors import AgentError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
#: the shell's code for a command ended by Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130


def guarded(command: Callable[[], int]) -> int:
    """``command()``'s exit code; bad input or configuration -> 2, any other agent error
    -> 1 (each printed as ``error: ...`` on stderr), Ctrl-C -> 130."""
    try:
        return command()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
