"""The command line (``nodelocaldns-agent``, ``python -m nodelocaldns_agent``).

``parser``: the flags, generated from the settings dataclasses, each with its
``NODELOCALDNS_AGENT_<FLAG>`` variable; ``root``: the composition root, where real host
objects and API clients are built; ``output``: what the one-shot commands print.

Exit codes: ``migrate --once`` / ``revert --once``: 0 the node is in the desired state, 1
the change failed (rolled back), 2 bad input or configuration (nothing changed), 3 blocked
by a precondition such as a local DNS that does not answer (nothing changed). ``check``: 0
analysed (whatever it would do), 2 could not analyse. ``status``: 1 when a node is failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nodelocaldns_agent import __version__
from nodelocaldns_agent.cli.parser import parse
from nodelocaldns_agent.cli.root import HANDLERS
from nodelocaldns_agent.exits import guarded
from nodelocaldns_agent.logs import event, setup
from nodelocaldns_agent.settings import LogSettings

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    def command() -> int:
        inv = parse(argv)
        logs = inv.get(LogSettings)
        setup(logs.log_format, logs.log_level)
        event(log, "starting", command=inv.command, version=__version__, settings=inv.values())
        return HANDLERS[inv.command](inv)

    return guarded(command)
