"""A recording ``systemctl`` for a sandbox node, managing ``kubelet.service`` and the units
that host an embedded kubelet (``k3s``, ``k3s-agent``, ``rke2-server``, ``rke2-agent``,
``snap.microk8s.daemon-kubelite``) when their unit file is in the fake host root.

Bind-mounted over ``/usr/bin/systemctl`` inside the node's mount namespace (through the
wrapper ``<workdir>/bin/systemctl``). Every invocation is appended to
``<workdir>/systemctl.log`` as a JSON line. ``start``/``restart kubelet`` start the kubelet
stand-in the way systemd would: the unit and its drop-ins are read from the fake host root
(at the first start and on ``daemon-reload``, like systemd: a drop-in written since is not
seen before it), ``Environment=`` is applied (an empty one resets the list; ``%%`` is ``%``
in its words and ``ExecStart=``'s, the only unit specifier resolved here),
then every ``EnvironmentFile=`` is read the way systemd's ``parse_env_file`` reads it
(:func:`parse_env_file`: ``-`` means optional; an unquoted value may hold blanks, as
nodeadm's and AKS's files have) and handed to bash as assignments, and ``ExecStart=`` is
expanded by bash (``${X}`` one argument, ``$X`` split at whitespace). The project's own
parsers are deliberately not used.

Like systemd with ``Type=simple``, ``start`` returns as soon as the process is spawned;
whether kubelet comes up is for the caller to check (healthz). ``show`` answers in
systemd's format (``MainPID`` is the stand-in's pid in the node's pid namespace,
``FragmentPath``, ``DropInPaths``, ``Environment``, ``EnvironmentFiles`` and ``ExecStart`` as
loaded), so the
agent's own ``systemctl show`` reaches it through ``nsenter --target 1`` like a host's.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testing.sandbox.nodefiles import NODE_DIR_ENV, NodeConfig, NodeFiles, reroot, write_json

UNIT = "kubelet.service"
#: ExecStart= program -> (the stand-in's name in <workdir>/bin, its script, its first
#: argument): an embedded kubelet runs testing/sandbox/embedded_standin.py; ``snap run
#: microk8s.daemon-kubelite`` ends up as ``kubelite`` (snap's run script execs it)
PROGRAMS = {
    "kubelet": ("kubelet", "kubelet_standin.py", ()),
    "k3s": ("k3s", "embedded_standin.py", ("k3s",)),
    "rke2": ("rke2", "embedded_standin.py", ("rke2",)),
    "snap": ("kubelite", "embedded_standin.py", ("microk8s",)),
}
#: systemd's unit search path, highest priority first.
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
#: units that host an embedded kubelet (detect/embedded.py of the product names the same)
HOSTING_UNITS = (
    "k3s",
    "k3s-agent",
    "rke2-server",
    "rke2-agent",
    "snap.microk8s.daemon-kubelite",
)
#: Set by the rig for its own calls (boot, teardown), which are not logged.
QUIET_ENV = "SANDBOX_SYSTEMCTL_QUIET"
STOP_TIMEOUT = 10.0
EXIT_NOT_ACTIVE = 3
EXIT_NO_UNIT = 5
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT
_CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_WHOLE_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_BRACED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class StubError(Exception):
    """A systemctl failure: message for stderr and exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class ServiceUnit:
    """The ``[Service]`` settings of kubelet.service that matter for starting it."""

    def __init__(
        self,
        sources: list[str] | None = None,
        exec_start: list[str] | None = None,
        environment: list[list[str]] | None = None,
        environment_files: list[list[Any]] | None = None,
    ) -> None:
        #: host paths of the unit file and its drop-ins, in the order they were applied
        self.sources = sources or []
        self.exec_start = exec_start or []
        #: [name, value] of every Environment= assignment, in order
        self.environment = environment or []
        #: [host path, optional] of every EnvironmentFile=, in order
        self.environment_files: list[tuple[str, bool]] = [
            (str(path), bool(optional)) for path, optional in environment_files or []
        ]

    def apply(self, key: str, value: str) -> None:
        if key == "ExecStart":
            self.exec_start = [_percent(w) for w in shlex.split(value)] if value else []
            if self.exec_start:
                self.exec_start[0] = self.exec_start[0].lstrip("-@:+!")
        elif key == "Environment":
            if not value:
                self.environment = []
            words = [_percent(w) for w in shlex.split(value)]
            self.environment += [list(a.split("=", 1)) for a in words if "=" in a]
        elif key == "EnvironmentFile":
            if not value:
                self.environment_files = []
            else:
                self.environment_files.append((value.lstrip("-"), value.startswith("-")))


def _percent(word: str) -> str:
    """``%%`` -> ``%`` (systemd resolves specifiers in each word after unquoting)."""
    return word.replace("%%", "%")


def _unit_lines(text: str) -> Iterator[tuple[str, str]]:
    """(section, line) of a unit file, continuation lines joined, comments dropped."""
    section = ""
    pending = ""
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not pending and line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line:
            yield section, line


def unit_dir(root: Path, name: str) -> str | None:
    """The directory of unit ``name`` under the root (highest priority first), or None."""
    return next((d for d in UNIT_DIRS if reroot(root, f"{d}/{name}").is_file()), None)


def load_unit(root: Path, name: str = UNIT) -> ServiceUnit:
    """Unit ``name`` and its drop-ins from the root, merged the way systemd does."""
    unit_path = unit_dir(root, name)
    if unit_path is None:
        raise StubError(f"Unit {name} not found.", EXIT_NO_UNIT)
    dropins: dict[str, str] = {}
    for directory in reversed(UNIT_DIRS):
        real = reroot(root, f"{directory}/{name}.d")
        if real.is_dir():
            dropins.update(
                {n: f"{directory}/{name}.d/{n}" for n in os.listdir(real) if n.endswith(".conf")}
            )
    unit = ServiceUnit()
    for host_path in [f"{unit_path}/{name}"] + [dropins[n] for n in sorted(dropins)]:
        unit.sources.append(host_path)
        text = reroot(root, host_path).read_bytes().decode("utf-8", "replace")
        for section, line in _unit_lines(text):
            key, sep, value = line.partition("=")
            if section == "Service" and sep:
                unit.apply(key.strip(), value.strip())
    return unit


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEWLINES = "\n\r"
_BLANKS = " \t"


def parse_env_file(text: str) -> list[tuple[str, str]]:
    """``(name, value)`` of every assignment, as systemd's ``parse_env_file``
    (src/basic/env-file.c) reads an ``EnvironmentFile=``: ``#``/``;`` comment lines; a
    value unquoted (blanks inside kept, trailing ones dropped, ``\\`` escapes the next
    character, ``\\`` + newline continues), ``'single'`` or ``"double"`` quoted (in double
    quotes ``\\`` escapes only ``"\\`$`` and the newline), quoted parts glued to what
    follows; CR and LF both end a line. Names that are not valid are dropped."""
    found: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in _BLANKS + _NEWLINES:
            i += 1
        if i < n and text[i] in "#;":
            while i < n and text[i] not in _NEWLINES:
                i += 1
            continue
        start = i
        while i < n and text[i] not in "=" + _NEWLINES:
            i += 1
        if i >= n or text[i] != "=":
            continue
        name = text[start:i].strip()
        i += 1
        value, keep = "", 0  # keep: length of value without trailing unquoted blanks
        while i < n and text[i] not in _NEWLINES:
            c = text[i]
            if c in "'\"":
                end = i + 1
                while end < n and text[end] != c:
                    if c == '"' and text[end] == "\\" and end + 1 < n:
                        nxt = text[end + 1]
                        value += nxt if nxt in '"\\`$' else ("" if nxt in _NEWLINES else "\\" + nxt)
                        end += 2
                        continue
                    value += text[end]
                    end += 1
                i, keep = end + 1, len(value)
                continue
            if c == "\\" and i + 1 < n:
                if text[i + 1] not in _NEWLINES:
                    value += text[i + 1]
                    keep = len(value)
                i += 2
                continue
            if not value and c in _BLANKS:
                i += 1
                continue
            value += c
            keep = len(value) if c not in _BLANKS else keep
            i += 1
        if _ENV_NAME.fullmatch(name):
            found.append((name, value[:keep]))
    return found


def _bash_word(token: str) -> str:
    """``token`` of ExecStart= as a bash word with systemd's variable expansion."""
    whole = _WHOLE_VAR.fullmatch(token)
    if whole:
        return f"${whole[1]}"
    parts: list[str] = []
    pos = 0
    for ref in _BRACED_VAR.finditer(token):
        parts += [shlex.quote(token[pos : ref.start()]), f'"${{{ref[1]}}}"']
        pos = ref.end()
    parts.append(shlex.quote(token[pos:]))
    return "".join(parts)


class Systemd:
    """One unit (kubelet.service by default) of one sandbox node."""

    def __init__(self, files: NodeFiles, name: str = UNIT) -> None:
        self.files = files
        self.name = name
        self.config: NodeConfig = files.load_config()
        self.root = Path(self.config.root)
        # kubelet.service keeps the file names it always had
        stem = "" if name == UNIT else f"{name}."
        self.unit_json = files.systemd / f"{stem}unit.json"
        self.state_json = files.systemd / (
            "kubelet.state.json" if not stem else f"{stem}state.json"
        )

    # -- state ----------------------------------------------------------------------------
    def unit(self, reload: bool = False) -> ServiceUnit:
        if reload or not self.unit_json.exists():
            write_json(self.unit_json, vars(load_unit(self.root, self.name)))
        return ServiceUnit(**json.loads(self.unit_json.read_text()))

    def state(self) -> dict[str, object]:
        if not self.state_json.exists():
            return {"main_pid": 0, "wanted": False, "since": 0.0}
        loaded: dict[str, object] = json.loads(self.state_json.read_text())
        return loaded

    def main_pid(self) -> int:
        pid = self.state()["main_pid"]
        return pid if isinstance(pid, int) and _alive(pid) else 0

    def active_state(self) -> str:
        if self.main_pid():
            return "active"
        return "failed" if self.state()["wanted"] else "inactive"

    # -- actions --------------------------------------------------------------------------
    def launch_script(self) -> str:
        """The bash script that starts kubelet the way systemd would."""
        unit = self.unit()
        if not unit.exec_start:
            raise StubError(f"{self.name} has no ExecStart= (read {', '.join(unit.sources)})")
        lines = ["set -efa"]
        lines += [f"{name}={shlex.quote(value)}" for name, value in unit.environment]
        for host_path, optional in unit.environment_files:
            real = reroot(self.root, host_path)
            if not real.is_file():
                if optional:
                    continue
                raise StubError(
                    f"Job for {self.name} failed because EnvironmentFile={host_path} is missing."
                )
            text = real.read_bytes().decode("utf-8", "surrogateescape")
            lines += [f"{name}={shlex.quote(value)}" for name, value in parse_env_file(text)]
        program = unit.exec_start[0].rsplit("/", 1)[-1]
        if program not in PROGRAMS:
            raise StubError(f"{self.name}: this stub cannot run {unit.exec_start[0]}")
        binary, script, first = PROGRAMS[program]
        standin = [str(self.files.bin / binary), str(Path(__file__).with_name(script)), *first]
        words = [shlex.quote(w) for w in standin] + [_bash_word(t) for t in unit.exec_start[1:]]
        lines.append("exec " + " ".join(words))
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        if self.main_pid():
            return
        script = self.launch_script()
        env = {
            "PATH": _CLEAN_PATH,
            "LANG": "C.UTF-8",
            "PYTHONPATH": self.config.pythonpath,
            NODE_DIR_ENV: str(self.files.workdir),
        }
        log = str(self.files.log(self.name.removesuffix(".service")))
        # posix_spawn, not Popen: the process outlives this stub (the node's init reaps it).
        pid = os.posix_spawn(
            "/bin/bash",
            ["bash", "-c", "cd /\n" + script],
            env,
            setsid=True,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, _APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
        )
        write_json(self.state_json, {"main_pid": pid, "wanted": True, "since": time.time()})

    def stop(self) -> None:
        pid = self.main_pid()
        if pid:
            _terminate(pid)
        write_json(self.state_json, {**self.state(), "main_pid": 0, "wanted": False})


def _alive(pid: int) -> bool:
    """A running (not zombie) stand-in of a unit's program, or the bash about to exec it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return state != "Z" and comm in ("kubelet", "bash", *(p[0] for p in PROGRAMS.values()))


def _terminate(pid: int) -> None:
    """SIGTERM the process group like systemd's stop, SIGKILL after STOP_TIMEOUT."""
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.005)


def _show(systemd: Systemd, properties: list[str], value_only: bool) -> str:
    """What ``systemctl show kubelet`` prints, in systemd's format (src/systemctl/
    systemctl-show.c, src/shared/bus-print-properties.c): an asked-for empty string as
    ``Name=``, a string array on one line (items shell-quoted when needed), a list of
    structures (``EnvironmentFiles``, ``ExecStart``) as one line per item."""
    state = systemd.state()
    active = systemd.active_state()
    main_pid = systemd.main_pid()
    try:
        unit: ServiceUnit | None = systemd.unit()
    except StubError:  # no such unit: systemd still answers
        unit = None
    sources = unit.sources if unit else []
    since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(float(str(state["since"]))))
    values: dict[str, list[str]] = {
        "Id": [systemd.name],
        "LoadState": ["loaded" if unit else "not-found"],
        "MainPID": [str(main_pid)],
        "ActiveState": [active],
        "SubState": [{"active": "running", "failed": "failed"}.get(active, "dead")],
        "ExecMainStartTimestamp": [str(state["since"])],
        "FragmentPath": [sources[0] if sources else ""],
        "DropInPaths": [" ".join(_shell_maybe_quote(p) for p in sources[1:])],
        "Environment": [
            " ".join(
                _shell_maybe_quote(f"{name}={value}")
                for name, value in dict(unit.environment if unit else []).items()
            )
        ],
        "EnvironmentFiles": [
            f"{path} (ignore_errors={'yes' if optional else 'no'})"
            for path, optional in (unit.environment_files if unit else [])
        ],
        "ExecStart": [
            f"{{ path={unit.exec_start[0]} ; argv[]={' '.join(unit.exec_start)} ; "
            f"ignore_errors=no ; start_time=[{since if main_pid else 'n/a'}] ; "
            f"stop_time=[n/a] ; pid={main_pid} ; code=(null) ; status=0/0 }}"
        ]
        if unit and unit.exec_start
        else [],
    }
    names = properties or list(values)
    return "".join(
        f"{value}\n" if value_only else f"{name}={value}\n"
        for name in names
        for value in values.get(name, [""])
    )


def _shell_maybe_quote(text: str) -> str:
    """systemd's ``shell_maybe_quote`` (src/basic/escape.c) without flags."""
    if text and not any(c.isspace() or c in "\"\\`$*?[]'()<>|&;!" for c in text):
        return text
    return '"' + "".join("\\" + c if c in '"\\`$' else c for c in text) + '"'


def parse_argv(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """(positional args, --property names, --value) of a systemctl command line."""
    positional: list[str] = []
    properties: list[str] = []
    value_only = False
    args = iter(argv)
    for arg in args:
        if arg in ("-p", "--property"):
            properties += next(args, "").split(",")
        elif arg.startswith("--property="):
            properties += arg.partition("=")[2].split(",")
        elif arg == "--value":
            value_only = True
        elif not arg.startswith("-"):
            positional.append(arg)
    return positional, properties, value_only


def run(files: NodeFiles, argv: list[str]) -> tuple[int, str]:
    """Execute one systemctl command line; returns (exit code, stdout)."""
    if "--version" in argv:
        return 0, "systemd 252 (252.sandbox)\n"
    positional, properties, value_only = parse_argv(argv)
    if not positional:
        raise StubError("this stub needs a command verb (start, stop, restart, ...)")
    verb, units = positional[0], [_unit_name(u) for u in positional[1:]]
    if verb == "daemon-reload":
        for name in _managed(files):
            Systemd(files, name).unit(reload=True)
        return 0, ""
    if verb not in ("start", "stop", "restart", "try-restart", "is-active", "status", "show"):
        raise StubError(f"Unknown command verb '{verb}'.")
    if not units:
        raise StubError(f"Too few arguments: '{verb}' needs a unit.")
    managed = _managed(files)
    if verb == "is-active":
        states = [Systemd(files, u).active_state() if u in managed else "inactive" for u in units]
        ok = all(s == "active" for s in states)
        return (0 if ok else EXIT_NOT_ACTIVE), "".join(f"{s}\n" for s in states)
    if verb == "show":  # systemd answers for any unit name (LoadState=not-found)
        return 0, _show(Systemd(files, units[0]), properties, value_only)
    unknown = [u for u in units if u not in managed]
    if unknown:
        raise StubError(f"Unit {unknown[0]} not found.", EXIT_NO_UNIT)
    systemd = Systemd(files, units[0])
    if verb == "status":
        active = systemd.active_state()
        text = f"* {systemd.name}\n   Active: {active}\n Main PID: {systemd.main_pid()}\n"
        return (0 if active == "active" else EXIT_NOT_ACTIVE), text
    running = bool(systemd.main_pid())
    if verb in ("stop", "restart") or (verb == "try-restart" and running):
        systemd.stop()
    if verb in ("start", "restart") or (verb == "try-restart" and running):
        systemd.start()
    return 0, ""


def _unit_name(name: str) -> str:
    return name if name.endswith(".service") else f"{name}.service"


def _managed(files: NodeFiles) -> set[str]:
    """kubelet.service (always: a node without it gets "not found" when it is started)
    and every hosting unit whose unit file the root has."""
    root = Path(files.load_config().root)
    hosting = {f"{name}.service" for name in HOSTING_UNITS}
    return {UNIT} | {name for name in hosting if unit_dir(root, name) is not None}


@contextmanager
def _locked(files: NodeFiles) -> Iterator[None]:
    files.systemd.mkdir(exist_ok=True)
    with open(files.systemd / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _record(files: NodeFiles, argv: list[str]) -> None:
    line = json.dumps({"argv": argv, "ts": time.time(), "pid": os.getpid()}) + "\n"
    fd = os.open(files.systemctl_log, _APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def inside_node(files: NodeFiles) -> bool:
    """Whether PID 1 of this process's pid namespace is the node's init.

    Guards the machine: run from the machine's own namespaces, the stub would start a
    kubelet stand-in there.
    """
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(files.init_script).encode() in cmdline


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = NodeFiles.from_env()
    if not inside_node(files):
        sys.stderr.write(
            f"this systemctl stub serves only the sandbox node {files.workdir}; run it "
            "inside that node's namespaces (nsenter --target <node init> ...)\n"
        )
        return 1
    if not os.environ.get(QUIET_ENV):
        _record(files, args)
    try:
        with _locked(files):
            code, out = run(files, args)
    except (StubError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.code if isinstance(exc, StubError) else 1
    sys.stdout.write(out)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
