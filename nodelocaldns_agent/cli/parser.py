"""The command line, generated from the settings dataclasses (``nodelocaldns_agent.settings``).

Each command is a list of settings groups; each field of a group is one flag. A value comes
from the flag, else from the first of its variables that is set, else from the default:
the dataclass default, or the command's own (``status`` logs warnings only). Bad text
fails naming the flag or the variable; nothing here exits: errors are ``ConfigError``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from nodelocaldns_agent import __doc__ as about
from nodelocaldns_agent import __version__
from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.logs import LogLevel
from nodelocaldns_agent.settings import (
    ENV_PREFIX,
    ApiSettings,
    CheckSettings,
    FastRefusalSettings,
    LogSettings,
    NodeSettings,
    ReportSettings,
    RevertFleetSettings,
    RunSettings,
    Settings,
    Spec,
    StatusSettings,
    specs,
)

PROG = "nodelocaldns-agent"
S = TypeVar("S", bound=Settings)


@dataclass(frozen=True)
class Command:
    help: str
    #: its settings groups, one flag per field (every command also has :class:`LogSettings`)
    settings: tuple[type[Settings], ...]
    #: defaults of this command that differ from the dataclasses': field name -> value
    defaults: Mapping[str, object] = field(default_factory=dict)
    #: a one-shot command: ``--once`` is required, so that it is never taken for ``run``
    once: bool = False

    @property
    def groups(self) -> tuple[type[Settings], ...]:
        return (*self.settings, LogSettings)


COMMANDS: dict[str, Command] = {
    "check": Command(
        "read-only preflight of this node", (NodeSettings, CheckSettings, ReportSettings)
    ),
    "migrate": Command(
        "point kubelet at the local DNS on this node", (NodeSettings, ReportSettings), once=True
    ),
    "revert": Command(
        "put the original cluster DNS back on this node", (NodeSettings, ReportSettings), once=True
    ),
    "run": Command(
        "the DaemonSet agent: reconcile this node forever",
        (NodeSettings, ApiSettings, RunSettings),
    ),
    "status": Command(
        "fleet view from the Node annotations",
        (ApiSettings, StatusSettings),
        defaults={"log_level": LogLevel.WARNING},
    ),
    "revert-fleet": Command(
        "switch every agent to revert and wait until every node is reverted "
        "(the chart's pre-delete hook)",
        (ApiSettings, RevertFleetSettings),
    ),
    "fast-refusal": Command(
        "take ICMP destination unreachable out of this host's net.ipv4.icmp_ratemask, so "
        "pods get a dead node-cache's refusal at once (the node-cache init container of "
        "nodeLocalDNS.fastRefusal)",
        (FastRefusalSettings,),
    ),
}


@dataclass(frozen=True)
class Invocation:
    """A command line, parsed: the command and its settings, built and checked."""

    command: str
    settings: tuple[Settings, ...]

    def get(self, kind: type[S]) -> S:
        for group in self.settings:
            if isinstance(group, kind):
                return group
        raise LookupError(f"{self.command} has no {kind.__name__}")

    def values(self) -> dict[str, object]:
        """Every setting's effective value (logged at start)."""
        return {name: value for group in self.settings for name, value in vars(group).items()}


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def _argument_type(spec: Spec) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return spec.convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _add_flag(parser: argparse.ArgumentParser, spec: Spec) -> None:
    """The flag of one setting; unset it stays None, so that a variable can fill it."""
    text = f"{spec.option.help} [env {', '.join('$' + name for name in spec.env)}]"
    if spec.switch:
        parser.add_argument(
            spec.flag, dest=spec.name, action="store_const", const=not spec.default, help=text
        )
        return
    metavar = (spec.option.unit or spec.flag.removeprefix("--").replace("-", "_")).upper()
    parser.add_argument(
        spec.flag,
        dest=spec.name,
        type=_argument_type(spec),
        choices=spec.choices or None,
        metavar=None if spec.choices else metavar,
        help=text,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=about,
        epilog=f"Every option also reads ${ENV_PREFIX}<OPTION> (see each command's --help); "
        "an option given on the command line wins.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        cmd = sub.add_parser(name, help=command.help)
        for kind in command.groups:
            for spec in specs(kind):
                _add_flag(cmd, spec)
        if command.once:
            cmd.add_argument(
                "--once",
                action="store_true",
                required=True,
                help="one reconcile, then exit (required; `run` is the daemon)",
            )
    return parser


def _from_environment(spec: Spec, environ: Mapping[str, str], default: object) -> object:
    for name in spec.env:
        raw = environ.get(name)
        if raw is not None:
            try:
                return spec.convert(raw)
            except ValueError as exc:
                raise ConfigError(f"${name}={raw!r}: {exc}") from exc
    return default


def _build(
    kind: type[S],
    flags: argparse.Namespace,
    environ: Mapping[str, str],
    defaults: Mapping[str, object],
) -> S:
    """One settings group: each field from its flag, else its variables, else the default."""
    values: dict[str, object] = {}
    for spec in specs(kind):
        given = getattr(flags, spec.name)
        values[spec.name] = (
            given
            if given is not None
            else _from_environment(spec, environ, defaults.get(spec.name, spec.default))
        )
    return kind(**values)


def parse(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Invocation:
    """The command line (``sys.argv[1:]`` by default) and the environment (``os.environ``)
    -> the command and its checked settings; ConfigError on bad input."""
    flags = build_parser().parse_args(argv)
    command = COMMANDS[flags.command]
    env = os.environ if environ is None else environ
    return Invocation(
        flags.command,
        tuple(_build(kind, flags, env, command.defaults) for kind in command.groups),
    )
