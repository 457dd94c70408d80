"""``python -m nodelocaldns_agent``: the same as the ``nodelocaldns-agent`` command."""

from nodelocaldns_agent.cli import main

raise SystemExit(main())
