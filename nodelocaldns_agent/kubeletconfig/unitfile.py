"""kubelet's systemd unit, read the way systemd reads it, through :class:`HostRoot`.

``kubelet.service`` is the first one found in :data:`UNIT_DIRS`; its drop-ins are the
``kubelet.service.d/*.conf`` files of all those directories (a name in a higher-priority
directory masks the same name below), applied in file-name order. From ``[Service]`` this
module takes ``Environment=``, ``EnvironmentFile=`` and ``ExecStart=`` and expands the
command line as systemd does at start-up.

Unit specifiers are resolved in each word after quotes and escapes are removed, as
``config_parse_environ`` and ``config_parse_exec`` of systemd's src/core/load-fragment.c
do: ``%%`` is ``%`` and the unit-name ones (``%n``, ``%N``, ``%p``, ``%P``, ``%j``,
``%J``, ``%i``, ``%I``) are those of ``kubelet.service``. Any other specifier (``%H``,
``%m``...) depends on the host and is kept as written; a value holding one is marked
(:attr:`EnvVar.specifiers`) so that nothing is re-rendered from it.

Not modelled: type-wide and prefix drop-ins (``service.d``, ``kube-.service.d``; the host's
systemd lists them in ``DropInPaths``, which the agent compares with what it read),
``PassEnvironment=`` and the manager's own environment.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.hostpaths import HostRoot
from nodelocaldns_agent.kubeletconfig import envfile

UNIT_NAME = "kubelet.service"
#: system unit directories, highest priority first
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BLANKS = " \t\n\r"
_PLAIN_RUN = re.compile(r"[^\\'\" \t\n\r]+")
_QUOTED_RUN = {"'": re.compile(r"[^\\']+"), '"': re.compile(r'[^\\"]+')}
_VARIABLE = re.compile(r"\$\$|\$\{([^}:]*)\}")
_EXEC_PREFIXES = "-@:+!|"
_C_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "s": " ",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_HEX = re.compile(r"[0-9a-fA-F]+")
_OCTAL = re.compile(r"[0-7]{3}")
_SPECIFIER = re.compile(r"%(.?)", re.DOTALL)
#: the specifiers that depend only on the unit's name (``kubelet.service``), resolved;
#: ``%%`` is a literal ``%`` (src/shared/specifier.c, src/core/unit-printf.c)
_UNIT_SPECIFIERS = {
    "%": "%", "n": UNIT_NAME, "N": "kubelet", "p": "kubelet", "P": "kubelet",
    "j": "kubelet", "J": "kubelet", "i": "", "I": "",
}  # fmt: skip

SourceKind = Literal["Environment", "EnvironmentFile"]


@dataclass(frozen=True)
class EnvVar:
    """One variable of kubelet's service environment and where it was set."""

    value: str
    #: host path of the unit, drop-in or environment file that set it
    source_path: str
    source_kind: SourceKind
    #: the value holds a specifier the agent does not resolve (kept as written)
    specifiers: bool = False


@dataclass(frozen=True)
class KubeletUnit:
    """kubelet's unit as systemd would run it."""

    #: host path of ``kubelet.service``
    unit_path: str
    #: host paths of the drop-ins applied, in order
    dropins: tuple[str, ...]
    #: the service environment (``EnvironmentFile=`` settings override ``Environment=``)
    environment: dict[str, EnvVar]
    #: the winning ``ExecStart=`` command line as written, prefixes removed
    exec_start: str
    #: ``exec_start`` split into words with the variables expanded
    argv: list[str]
    #: host paths of the environment files read, in order
    environment_files: tuple[str, ...] = ()
    #: the winning ``ExecStart=`` as written, prefixes included (continuations joined)
    exec_start_line: str = ""
    #: host path of the unit or drop-in that set it
    exec_start_path: str = ""


def _unescape(text: str, i: int) -> tuple[str, int]:
    """The C escape starting at ``text[i]`` (just after the backslash) and its length."""
    c = text[i]
    if c in _C_ESCAPES:
        return _C_ESCAPES[c], 1
    if c in _HEX_ESCAPES:
        width = _HEX_ESCAPES[c]
        digits = text[i + 1 : i + 1 + width]
        if _HEX.fullmatch(digits) and len(digits) == width and 0 < int(digits, 16) <= 0x10FFFF:
            return chr(int(digits, 16)), 1 + width
    elif _OCTAL.fullmatch(text[i : i + 3]) and int(text[i : i + 3], 8):
        return chr(int(text[i : i + 3], 8)), 3
    return c, 1  # other escapes keep the character


def split_words(text: str, *, cunescape: bool, relax: bool = False) -> list[str]:
    """``text`` split like systemd's ``extract_first_word`` with quote removal.

    Words are separated by blanks; ``'...'`` and ``"..."`` quote anywhere in a word; a
    backslash escapes the next character (C escapes such as ``\\n`` when ``cunescape``).
    Raises ``ValueError`` on an unterminated quote, unless ``relax``.
    """
    words: list[str] = []
    n = len(text)
    i = 0
    while True:
        while i < n and text[i] in _BLANKS:
            i += 1
        if i >= n:
            return words
        parts: list[str] = []
        quote = ""
        while i < n:
            c = text[i]
            if c == "\\":
                if i + 1 >= n:
                    parts.append("\\")
                    i += 1
                elif cunescape:
                    char, used = _unescape(text, i + 1)
                    parts.append(char)
                    i += 1 + used
                else:
                    parts.append(text[i + 1])
                    i += 2
            elif quote:
                if c == quote:
                    quote = ""
                    i += 1
                else:
                    run = _QUOTED_RUN[quote].match(text, i)
                    end = run.end() if run else i + 1
                    parts.append(text[i:end])
                    i = end
            elif c in "'\"":
                quote = c
                i += 1
            elif c in _BLANKS:
                break
            else:
                run = _PLAIN_RUN.match(text, i)
                end = run.end() if run else i + 1
                parts.append(text[i:end])
                i = end
        if quote and not relax:
            raise ValueError(f"unterminated {quote} quote")
        words.append("".join(parts))


def resolve_specifiers(word: str) -> tuple[str, bool]:
    """``word`` with its unit specifiers resolved, and whether it holds one the agent does
    not resolve (kept as written)."""
    unknown = False

    def one(match: re.Match[str]) -> str:
        nonlocal unknown
        if match.group(1) in _UNIT_SPECIFIERS:
            return _UNIT_SPECIFIERS[match.group(1)]
        unknown = True
        return match.group()

    return _SPECIFIER.sub(one, word), unknown


def expand_words(words: list[str], env: Mapping[str, str]) -> list[str]:
    """systemd's ``ExecStart=`` variable expansion.

    A word that is exactly ``$NAME`` becomes the value split into words (none when unset);
    ``${NAME}`` inside a word is replaced by the value as is (an unset one by nothing, so a
    lone ``${UNSET}`` leaves an empty argument); ``$$`` is a literal ``$``.
    """
    out: list[str] = []
    for word in words:
        if word.startswith("$") and word[1:2] not in ("{", "$"):
            value = env.get(word[1:])
            if value is not None:
                out.extend(split_words(value, cunescape=False, relax=True))
            continue
        out.append(
            _VARIABLE.sub(lambda m: "$" if m.group() == "$$" else env.get(m.group(1), ""), word)
        )
    return out


@dataclass(frozen=True)
class _Setting:
    key: str
    value: str
    path: str
    line: int


def _ends_escaped(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _service_settings(text: str, path: str) -> list[_Setting]:
    """The ``Key=value`` settings of ``[Service]``, continuation lines joined."""
    settings: list[_Setting] = []
    section = ""
    pending: list[str] | None = None  # the parts of a continued line
    start = 0

    def take(line: str, lineno: int) -> None:
        nonlocal section
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(f"{path} line {lineno}: expected a [Section] header")
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            settings.append(_Setting(key.strip(_BLANKS), value.strip(_BLANKS), path, lineno))

    for lineno, raw in enumerate(_LINE_BREAK.split(text), 1):
        line = raw.strip(_BLANKS)
        if line[:1] in ("#", ";") or (pending is None and not line):
            continue  # comments are skipped inside continuations too
        if pending is None:
            pending, start = [], lineno
        if _ends_escaped(line):
            pending += (line[:-1], " ")  # the backslash becomes a blank
            continue
        take("".join(pending) + line, start)
        pending = None
    if pending is not None:
        take("".join(pending).rstrip(_BLANKS), start)
    return settings


def _masked(host: HostRoot, path: str) -> bool:
    return host.resolve(path) == host.resolve("/dev/null")


def _read_text(host: HostRoot, path: str) -> str:
    return host.read_bytes(path).decode("utf-8", "surrogateescape")


def _find_unit(host: HostRoot) -> str | None:
    for directory in UNIT_DIRS:
        path = f"{directory}/{UNIT_NAME}"
        if _masked(host, path):
            raise ConfigError(f"{path}: {UNIT_NAME} is masked (linked to /dev/null)")
        if host.is_file(path):
            return path
    return None


def find_dropins(host: HostRoot) -> list[str]:
    """Host paths of the drop-ins of kubelet.service, in the order systemd applies them."""
    chosen: dict[str, str] = {}
    for directory in UNIT_DIRS:
        dropin_dir = f"{directory}/{UNIT_NAME}.d"
        for name in host.listdir(dropin_dir):
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = f"{dropin_dir}/{name}"
    return [
        chosen[name]
        for name in sorted(chosen)
        if not _masked(host, chosen[name]) and host.is_file(chosen[name])
    ]


def env_file_paths(host: HostRoot, pattern: str) -> list[str]:
    """``pattern`` itself, or the files its last component's glob matches."""
    if not any(c in pattern for c in "*?["):
        return [pattern]
    directory, _, glob = pattern.rpartition("/")
    names = [
        name
        for name in fnmatch.filter(host.listdir(directory or "/"), glob)
        if glob.startswith(".") or not name.startswith(".")
    ]
    return [f"{directory}/{name}" for name in sorted(names)]


@dataclass
class _Service:
    """The ``[Service]`` settings that matter, merged over the unit and its drop-ins."""

    #: (name, value, path, holds an unresolved specifier)
    assignments: list[tuple[str, str, str, bool]] = field(default_factory=list)
    env_files: list[tuple[str, bool, _Setting]] = field(default_factory=list)
    exec_start: _Setting | None = None

    def apply(self, setting: _Setting) -> None:
        """Apply one setting; an empty assignment resets the list it belongs to."""
        if setting.key == "Environment":
            if not setting.value:
                self.assignments.clear()
                return
            try:
                words = split_words(setting.value, cunescape=True)
            except ValueError:
                return  # systemd ignores the whole line
            for word in words:
                resolved, unknown = resolve_specifiers(word)
                name, sep, value = resolved.partition("=")
                if sep and _NAME.fullmatch(name):
                    self.assignments.append((name, value, setting.path, unknown))
        elif setting.key == "EnvironmentFile":
            if not setting.value:
                self.env_files.clear()
                return
            optional = setting.value.startswith("-")
            path = setting.value[1:] if optional else setting.value
            if path.startswith("/"):  # systemd ignores relative paths
                self.env_files.append((path, optional, setting))
        elif setting.key == "ExecStart":
            self.exec_start = setting if setting.value else None


def _environment(host: HostRoot, service: _Service) -> tuple[dict[str, EnvVar], list[str]]:
    """The service environment and the environment files read."""
    environment = {
        name: EnvVar(value, path, "Environment", unknown)
        for name, value, path, unknown in service.assignments
    }
    read: list[str] = []
    for pattern, optional, setting in service.env_files:
        paths = env_file_paths(host, pattern)
        if not optional and not (paths and all(host.exists(p) for p in paths)):
            raise ConfigError(
                f"{setting.path} line {setting.line}: EnvironmentFile={pattern} does not "
                "exist; expected the file (or a '-' prefix to make it optional)"
            )
        for path in paths:
            try:
                data = host.read_bytes(path)
            except ConfigError:
                if optional:  # systemd skips an optional file it cannot load
                    continue
                raise
            read.append(path)
            for assignment in envfile.parse_env(data, path):
                environment[assignment.name] = EnvVar(assignment.value, path, "EnvironmentFile")
    return environment, read


def _command(setting: _Setting) -> tuple[str, list[str]]:
    """The command line without its prefixes, and its words before expansion."""
    command = setting.value.lstrip(_EXEC_PREFIXES)
    prefixes = setting.value[: len(setting.value) - len(command)]
    try:
        words = split_words(command, cunescape=True)
    except ValueError as exc:
        raise ConfigError(
            f"{setting.path} line {setting.line}: ExecStart= has an {exc}; "
            "expected a complete command line"
        ) from None
    if "@" in prefixes:
        words = words[1:]  # "@path argv0 ...": the first word is only the executable
    return command, [resolve_specifiers(word)[0] for word in words]


def read_service(data: bytes, path: str) -> tuple[dict[str, str], list[str] | None]:
    """What one unit file or drop-in sets on its own: its ``Environment=`` variables and
    its ``ExecStart=`` words (specifiers resolved, variables not expanded; ``None`` when it
    sets no command line)."""
    service = _Service()
    for setting in _service_settings(data.decode("utf-8", "surrogateescape"), path):
        service.apply(setting)
    environment = {name: value for name, value, _, _ in service.assignments}
    if service.exec_start is None:
        return environment, None
    return environment, _command(service.exec_start)[1]


def load_kubelet_unit(host: HostRoot, skip: Collection[str] = ()) -> KubeletUnit | None:
    """kubelet's unit, drop-ins applied and environment loaded; ``None`` when no
    ``kubelet.service`` exists. Drop-ins whose host path is in ``skip`` are left out (the
    unit as it is without the agent's own drop-in).

    Raises :class:`ConfigError` when the unit is masked, has no ``ExecStart=``, its
    command line has an unterminated quote, or a required ``EnvironmentFile=`` is missing.
    """
    unit_path = _find_unit(host)
    if unit_path is None:
        return None
    dropins = [path for path in find_dropins(host) if path not in skip]
    service = _Service()
    for path in (unit_path, *dropins):
        text = _read_text(host, path)
        if path == unit_path and not text:
            raise ConfigError(f"{path}: {UNIT_NAME} is empty, which masks it")
        for setting in _service_settings(text, path):
            service.apply(setting)
    environment, read = _environment(host, service)
    if service.exec_start is None:
        raise ConfigError(
            f"{unit_path}: no ExecStart= in [Service] (drop-ins included); expected "
            "kubelet's command line"
        )
    command, words = _command(service.exec_start)
    argv = expand_words(words, {name: var.value for name, var in environment.items()})
    return KubeletUnit(
        unit_path=unit_path,
        dropins=tuple(dropins),
        environment=environment,
        exec_start=command,
        argv=argv,
        environment_files=tuple(read),
        exec_start_line=service.exec_start.value,
        exec_start_path=service.exec_start.path,
    )
