"""The host's systemd, asked what it runs as a unit (``systemctl show UNIT -p ...``) and told
to reload its unit files (``systemctl daemon-reload``).

``systemctl`` runs through the same route as the restart (``--systemctl-command``, by
default ``nsenter --target 1 ... -- systemctl``), so the answer comes from the systemd that
will restart kubelet, in the host's pid namespace (the agent runs with ``hostPID``, so a
``MainPID`` is a pid the agent sees as is).

The output is parsed strictly, as systemd writes it (``src/systemctl/systemctl-show.c`` and
``src/shared/bus-print-properties.c``): one ``Name=value`` line per property, values
unquoted; a string array (``DropInPaths``, ``Environment``) on one line, its items
separated by blanks and each item quoted like a shell word when it needs it
(``shell_maybe_quote``); a list of structures (``EnvironmentFiles``, ``ExecStart``) as one
line per item, none when empty; an explicitly requested empty string shown as ``Name=``.
Anything else is refused: an answer the agent cannot read is an answer it does not trust.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from nodelocaldns_agent.errors import CommandError, SystemdError
from nodelocaldns_agent.host.commands import CommandRunner

#: what the agent asks about a unit (one ``-p`` each)
PROPERTIES = (
    "LoadState",
    "ActiveState",
    "MainPID",
    "FragmentPath",
    "DropInPaths",
    "Environment",
    "EnvironmentFiles",
    "ExecStart",
)
#: shown once per item, none when the list is empty
_LISTS = ("EnvironmentFiles", "ExecStart")
#: always shown (systemd prints them even when not asked with ``-p``)
_REQUIRED = ("LoadState", "ActiveState", "MainPID")
#: ``unit_load_state_table`` of src/basic/unit-def.c
LOAD_STATES = frozenset({"stub", "loaded", "not-found", "bad-setting", "error", "merged", "masked"})
#: ``unit_active_state_table`` of src/basic/unit-def.c
ACTIVE_STATES = frozenset(
    {
        "active",
        "reloading",
        "inactive",
        "failed",
        "activating",
        "deactivating",
        "maintenance",
        "refreshing",
    }
)
#: bytes of ``systemctl show`` output the agent reads (a few hundred are expected)
MAX_OUTPUT = 64 * 1024
_ENV_FILE = re.compile(r"(?P<path>/.*) \(ignore_errors=(?P<ignore>yes|no)\)")
#: ``{ path=%s ; argv[]=%s ; ignore_errors=%s ; start_time=[%s] ; stop_time=[%s] ; pid=%u ;
#: code=%s ; status=%i%s%s }`` (argv[] is the words joined by blanks, not re-splittable)
_EXEC = re.compile(
    r"\{ path=(?P<path>/[^;]*) ; argv\[\]=(?P<argv>.*) ; ignore_errors=(?:yes|no) ; "
    r"start_time=\[[^\]]*\] ; stop_time=\[[^\]]*\] ; pid=\d+ ; code=\S+ ; status=\S+ \}"
)
_PID = re.compile(r"0|[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class EnvironmentFile:
    """One ``EnvironmentFile=`` of the unit as systemd loaded it."""

    #: as written (a glob stays a glob)
    path: str
    #: written with a ``-`` prefix: a missing file is no error
    optional: bool


@dataclass(frozen=True)
class ExecCommand:
    """One ``ExecStart=`` as systemd loaded it."""

    #: the executable systemd runs
    path: str
    #: the words as written, joined by blanks (variables not expanded)
    argv: str


@dataclass(frozen=True)
class UnitStatus:
    """What the host's systemd says about one unit."""

    unit: str
    load_state: str
    active_state: str
    #: 0 when the unit has no main process
    main_pid: int
    #: the unit file systemd loaded ("" when none)
    fragment_path: str = ""
    dropin_paths: tuple[str, ...] = ()
    environment_files: tuple[EnvironmentFile, ...] = ()
    exec_start: tuple[ExecCommand, ...] = ()
    #: ``NAME=value`` of every ``Environment=`` assignment in effect (not those of the
    #: environment files, which systemd reads when it starts the unit)
    environment: tuple[str, ...] = ()


class HostSystemd(Protocol):
    def show(self, unit: str) -> UnitStatus:
        """What the host's systemd says about ``unit``; :class:`SystemdError` when it
        cannot be asked or its answer cannot be read."""
        ...

    def daemon_reload(self) -> None:
        """Make the host's systemd read the unit files again; :class:`SystemdError` when
        it fails."""
        ...


class Systemctl:
    """``<command> show UNIT -p ...`` and ``<command> daemon-reload`` through a
    :class:`CommandRunner`."""

    def __init__(
        self,
        runner: CommandRunner,
        command: tuple[str, ...],
        timeout: float,
        reload_timeout: float | None = None,
    ) -> None:
        self._runner = runner
        self._command = command
        self._timeout = timeout
        self._reload_timeout = timeout if reload_timeout is None else reload_timeout

    def daemon_reload(self) -> None:
        argv = [*self._command, "daemon-reload"]
        try:
            self._runner.run(argv, timeout=self._reload_timeout)
        except CommandError as exc:
            raise SystemdError(f"the host's systemd could not reload its units: {exc}") from exc

    def argv(self, unit: str) -> list[str]:
        return [*self._command, "show", unit, *(a for p in PROPERTIES for a in ("-p", p))]

    def show(self, unit: str) -> UnitStatus:
        argv = self.argv(unit)
        try:
            result = self._runner.run(argv, timeout=self._timeout)
        except CommandError as exc:
            raise SystemdError(f"the host's systemd could not be asked: {exc}") from exc
        return parse_show(result.output, unit)


def parse_show(text: str, unit: str) -> UnitStatus:
    """The output of ``systemctl show UNIT -p <each of PROPERTIES>``."""
    where = f"systemctl show {unit}"
    if len(text) > MAX_OUTPUT:
        raise SystemdError(f"{where}: {len(text)} characters of output; expected a few hundred")
    values: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        name, sep, value = line.partition("=")
        if not sep or name not in PROPERTIES:
            raise SystemdError(
                f"{where} line {lineno}: {line[:200]!r}; expected Name=value for one of "
                f"{', '.join(PROPERTIES)}"
            )
        if name in values and name not in _LISTS:
            raise SystemdError(f"{where} line {lineno}: {name}= appears twice; expected once")
        values.setdefault(name, []).append(value)
    missing = [name for name in _REQUIRED if name not in values]
    if missing:
        raise SystemdError(f"{where}: no {', '.join(missing)} in the output; expected each")

    def one(name: str) -> str:
        return values.get(name, [""])[0]

    load, active, pid = one("LoadState"), one("ActiveState"), one("MainPID")
    if load not in LOAD_STATES:
        raise SystemdError(f"{where}: LoadState={load!r}; expected one of {sorted(LOAD_STATES)}")
    if active not in ACTIVE_STATES:
        raise SystemdError(
            f"{where}: ActiveState={active!r}; expected one of {sorted(ACTIVE_STATES)}"
        )
    if not _PID.fullmatch(pid):
        raise SystemdError(f"{where}: MainPID={pid!r}; expected a process id (0 for none)")
    fragment = one("FragmentPath")
    dropins = split_strv(one("DropInPaths"), f"{where}: DropInPaths")
    for path in (fragment, *dropins):
        if path and not path.startswith("/"):
            raise SystemdError(f"{where}: unit path {path!r}; expected an absolute path")
    return UnitStatus(
        unit=unit,
        load_state=load,
        active_state=active,
        main_pid=int(pid),
        fragment_path=fragment,
        dropin_paths=dropins,
        environment_files=tuple(
            _environment_file(v, where) for v in values.get("EnvironmentFiles", [])
        ),
        exec_start=tuple(_exec_command(v, where) for v in values.get("ExecStart", [])),
        environment=split_strv(one("Environment"), f"{where}: Environment"),
    )


def _environment_file(value: str, where: str) -> EnvironmentFile:
    match = _ENV_FILE.fullmatch(value)
    if match is None:
        raise SystemdError(
            f"{where}: EnvironmentFiles={value[:200]!r}; expected '/path (ignore_errors=yes|no)'"
        )
    return EnvironmentFile(match["path"], match["ignore"] == "yes")


def _exec_command(value: str, where: str) -> ExecCommand:
    match = _EXEC.fullmatch(value)
    if match is None:
        raise SystemdError(
            f"{where}: ExecStart={value[:200]!r}; expected "
            "'{ path=/... ; argv[]=... ; ignore_errors=... ; ... }'"
        )
    return ExecCommand(match["path"], match["argv"])


def split_strv(value: str, where: str) -> tuple[str, ...]:
    """A string array as systemd shows it: items separated by one blank, an item with
    special characters in double quotes with ``\\``, ``"``, ``$`` and ````` escaped
    (``shell_maybe_quote`` of src/basic/escape.c)."""
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] != '"':
            end = value.find(" ", i)
            end = n if end < 0 else end
            item = value[i:end]
            if any(c in item for c in "\"'\\$`"):
                raise SystemdError(f"{where}: {item!r} has unquoted special characters")
        else:
            chars: list[str] = []
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(value[i])
                i += 1
            if i >= n:
                raise SystemdError(f"{where}: unterminated quote in {value[:200]!r}")
            end = i + 1
            item = "".join(chars)
        items.append(item)
        if end < n and value[end] != " ":
            raise SystemdError(f"{where}: expected a blank after {item!r} in {value[:200]!r}")
        i = end + 1
    return tuple(items)
