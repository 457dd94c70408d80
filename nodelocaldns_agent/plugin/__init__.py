"""``kubectl nodelocaldns``: the operator's side of the rollout, from a laptop.

Installed with the package as the ``kubectl-nodelocaldns`` console script; kubectl finds
any executable named ``kubectl-<name>`` on ``PATH`` and runs it with the rest of the
command line unchanged (kubectl's own flags included, so this module parses
``--kubeconfig``, ``--context`` and ``-n`` itself, after the plugin name:
``kubectl nodelocaldns -n kube-system status``). ``$KUBECONFIG`` (files joined by ``:``)
and ``~/.kube/config`` are read as kubectl reads them.

``args``: the command line; ``commands``: what each command does (the composition
root); ``rollout`` and ``preflight``: pure views over what was read.

Exit codes: 0 fine; 1 ``status``: a node is failed, ``preflight``: a check failed, a
switch: the API refused; 2 bad input or configuration, or a switch not confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodelocaldns_agent.exits import guarded
from nodelocaldns_agent.plugin.args import parse
from nodelocaldns_agent.plugin.commands import run


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(lambda: run(parse(argv)))
