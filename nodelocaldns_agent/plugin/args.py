"""The plugin's command line: kubectl's connection flags, then a command.

kubectl hands a plugin its arguments as typed (it does not parse or strip its own
flags: ``HandlePluginCommand`` in kubectl's ``pkg/cmd/cmd.go`` passes everything after
the plugin name), so the usual ``--kubeconfig``, ``--context`` and ``-n/--namespace`` are
accepted here, before or after the command.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from nodelocaldns_agent import __version__
from nodelocaldns_agent.errors import ConfigError

PROG = "kubectl nodelocaldns"
OUTPUTS = ("table", "wide", "json", "yaml")
SWITCHES = {
    "revert": "switch every agent to revert: each node gets its original cluster DNS back "
    "(what the chart's uninstall hook does)",
    "pause": "switch every agent to observe: no node is changed any more; each reports what "
    "it would do (a restart in flight finishes first)",
    "resume": "switch every agent back to migrate",
}
EXAMPLES = """examples:
  kubectl nodelocaldns status -w               # the rollout, live
  kubectl nodelocaldns status -o json          # for scripts (exit 1 when a node failed)
  kubectl nodelocaldns preflight               # before the first migration
  kubectl nodelocaldns pause --dry-run         # what would change
  kubectl nodelocaldns -n kube-system --context prod revert --yes
"""


@dataclass(frozen=True)
class Args:
    command: str
    kubeconfig: str | None
    context: str | None
    namespace: str | None
    daemonset: str | None
    output: str = "table"
    watch: bool = False
    interval: float = 5.0
    dry_run: bool = False
    yes: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def _connection(parser: argparse.ArgumentParser, default: object) -> None:
    """kubectl's flags; on the command too (``argparse.SUPPRESS`` keeps a value given
    before the command when it is not given again after it)."""
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="the kubeconfig file (default: $KUBECONFIG, files joined by ':', merged as "
        "kubectl merges them; else ~/.kube/config)",
    )
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="the agent's namespace (default: the context's namespace, else kube-system)",
    )
    parser.add_argument(
        "--daemonset",
        default=default,
        help="the agent DaemonSet (default: the one labelled app.kubernetes.io/component=agent)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Watch and steer the nodelocaldns-agent rollout (kubectl plugin).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _connection(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    status = sub.add_parser("status", help="the fleet: every node's state; -w: live")
    _connection(status, argparse.SUPPRESS)
    status.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    status.add_argument(
        "-w", "--watch", action="store_true", help="a live view that updates in place"
    )
    status.add_argument(
        "--interval", type=float, default=5.0, help="seconds between two reads with -w"
    )
    for name, text in SWITCHES.items():
        cmd = sub.add_parser(name, help=text, description=text)
        _connection(cmd, argparse.SUPPRESS)
        cmd.add_argument("--dry-run", action="store_true", help="print the patch, change nothing")
        cmd.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    preflight = sub.add_parser("preflight", help="check the cluster before the first migration")
    _connection(preflight, argparse.SUPPRESS)
    return parser


def parse(argv: Sequence[str] | None = None) -> Args:
    ns = build_parser().parse_args(argv)
    if ns.command == "status" and ns.interval <= 0:
        raise ConfigError(f"--interval {ns.interval}: expected a positive number of seconds")
    if ns.command == "status" and ns.watch and ns.output != "table":
        raise ConfigError(f"-w draws the live view; -o {ns.output} is for one read (drop -w)")
    return Args(
        command=ns.command,
        kubeconfig=ns.kubeconfig,
        context=ns.context,
        namespace=ns.namespace,
        daemonset=ns.daemonset,
        output=getattr(ns, "output", "table"),
        watch=getattr(ns, "watch", False),
        interval=getattr(ns, "interval", 5.0),
        dry_run=getattr(ns, "dry_run", False),
        yes=getattr(ns, "yes", False),
    )
