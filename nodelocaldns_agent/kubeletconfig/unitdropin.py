"""The agent's own drop-in for ``kubelet.service``, for a ``--cluster-dns`` that a unit's
``Environment=`` carries or ``ExecStart=`` holds literally.

Unit files belong to the distribution or the administrator; the agent never edits them. It
adds one drop-in in :data:`DROPIN_DIR` that overrides exactly what carries the flag, with
only the DNS value changed (:func:`render`):

- a variable set by ``Environment=`` (the ``KUBELET_DNS_ARGS`` of kubeadm 1.10's and ACK's
  ``10-kubeadm.conf``, the ``KUBELET_EXTRA_ARGS`` of EKS AL2's
  ``30-kubelet-extra-args.conf``): ``Environment="NAME=<the whole value>"``; a later
  assignment of a variable replaces the earlier ones (systemd.exec(5), ``Environment=``);
- ``--cluster-dns`` written in ``ExecStart=`` (hand-written units): an empty
  ``ExecStart=``, which resets the list (systemd.service(5)), then the original command
  line again, as written.

A variable that an ``EnvironmentFile=`` also sets is not overridden by ``Environment=``:
"settings from these files override settings made with Environment=" (systemd.exec(5)).
Then the file is edited instead (:class:`EnvFileCarrier`, format ``env``).

Drop-ins apply in lexical order of their *file names*, whatever unit directory holds them
(systemd.unit(5); ``conf_files_list`` of src/basic/conf-files.c sorts by file name), so
``99-x.conf`` sorts *before* ``override.conf`` from ``systemctl edit``. The drop-in's name
is the first of :data:`OUR_NAMES` that sorts after every other drop-in of the unit; when
none does the agent refuses (:func:`choose_name`).

Pure functions: nothing here touches the disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.flags import (
    CLUSTER_DNS_FLAG,
    mentions,
    parse_kubelet_flags,
    replace_flag_value,
)
from nodelocaldns_agent.kubeletconfig.unitfile import UNIT_NAME, KubeletUnit, read_service

#: where the agent writes its drop-in: the administrator's directory, the highest priority
#: of the unit search path, so no vendor drop-in of the same name can mask it
DROPIN_DIR = f"/etc/systemd/system/{UNIT_NAME}.d"
#: the agent's drop-in names, in order of preference ("99-" is the convention; "zz-" also
#: sorts after ``override.conf`` and any name starting with a digit or a capital)
OUR_NAMES = ("99-nodelocaldns-agent.conf", "zz-nodelocaldns-agent.conf")
#: how a character of a value is written inside ``"..."`` of a unit file: a backslash
#: escapes (``extract_first_word`` with EXTRACT_CUNESCAPE), and ``%`` starts a specifier,
#: resolved after the escapes are removed, so it is doubled, never escaped
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "%": "%%"}
_HEADER = (
    "# Written by nodelocaldns-agent: points kubelet's cluster DNS at NodeLocal DNSCache.\n"
    "# It repeats {what} of {source} with only the {flag} value changed.\n"
    "# To revert: delete this file, run 'systemctl daemon-reload' and restart kubelet.\n"
)


@dataclass(frozen=True)
class Override:
    """What the agent's drop-in overrides."""

    kind: Literal["Environment", "ExecStart"]
    #: the variable (``Environment``); "" for ``ExecStart``
    variable: str
    #: the variable's value as systemd sees it, or ``ExecStart=`` as written (prefixes
    #: included, continuation lines joined)
    text: str
    #: host path of the unit file or drop-in that sets it
    source_path: str


@dataclass(frozen=True)
class EnvFileCarrier:
    """The flag comes from a variable an ``EnvironmentFile=`` sets: edit that file."""

    variable: str
    path: str


def is_ours(host_path: str) -> bool:
    """``host_path`` is (one of the names of) the agent's drop-in."""
    return host_path in {f"{DROPIN_DIR}/{name}" for name in OUR_NAMES}


def referenced(exec_start: str, name: str) -> bool:
    """``ExecStart=`` refers to variable ``name`` (``$NAME`` or ``${NAME}``)."""
    return f"${{{name}}}" in exec_start or f"${name}" in exec_start


def choose_mechanism(unit: KubeletUnit) -> Override | EnvFileCarrier:
    """How to change the ``--cluster-dns`` that ``unit`` (without the agent's drop-in)
    passes to kubelet. Raises :class:`ConfigError` saying why when there is no safe way."""
    carriers = [
        (name, var)
        for name, var in unit.environment.items()
        if mentions(var.value, CLUSTER_DNS_FLAG) and referenced(unit.exec_start, name)
    ]
    if len(carriers) > 1:
        names = ", ".join(sorted(name for name, _ in carriers))
        raise ConfigError(
            f"{CLUSTER_DNS_FLAG} is set by several variables of {unit.unit_path} ({names}); "
            "expected exactly one"
        )
    if carriers:
        name, var = carriers[0]
        if var.source_kind == "EnvironmentFile":
            return EnvFileCarrier(name, var.source_path)
        if var.specifiers:
            raise ConfigError(
                f"{var.source_path}: Environment={name}=... holds a unit specifier that "
                "depends on the host (such as %H); expected a value without one, so that "
                "the agent can repeat it exactly in its drop-in"
            )
        return Override("Environment", name, var.value, var.source_path)
    if mentions(unit.exec_start, CLUSTER_DNS_FLAG):
        return Override("ExecStart", "", unit.exec_start_line, unit.exec_start_path)
    raise ConfigError(
        f"kubelet runs with {CLUSTER_DNS_FLAG} but neither ExecStart= of {unit.unit_path} "
        "(drop-ins included) nor a variable it refers to carries it; expected one of them to"
    )


def choose_name(others: Iterable[str], current: str | None = None) -> str:
    """The file name of the agent's drop-in: ``current`` (the one present) when given,
    else the first of :data:`OUR_NAMES` that sorts after every name in ``others`` (the
    file names of the unit's other drop-ins, in any directory).

    Raises :class:`ConfigError` when none sorts after them: the drop-in could not take
    effect, a later one would override it.
    """
    if current is not None:
        return current
    last = max(others, default="")
    for name in OUR_NAMES:
        if name > last:
            return name
    raise ConfigError(
        f"the drop-in {last} of {UNIT_NAME} sorts after {' and '.join(OUR_NAMES)} (drop-ins "
        "apply in lexical order of their file names), so the agent's drop-in could not take "
        f"effect; expected no drop-in name to sort after {OUR_NAMES[-1]}"
    )


def quote_assignment(name: str, value: str) -> str:
    """``"NAME=value"`` as ``Environment=`` reads back exactly ``value``."""
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:
            raise ConfigError(f"variable {name}: its value is not UTF-8; expected UTF-8 text")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return f'"{name}={"".join(out)}"'


def render(override: Override, values: Sequence[str]) -> bytes:
    """The agent's drop-in: ``override`` with the ``--cluster-dns`` value set to
    ``values``. Raises :class:`ConfigError` when that value cannot be replaced in place."""
    where = f"{override.kind}= of {override.source_path}"
    text = replace_flag_value(override.text, CLUSTER_DNS_FLAG, values, where)
    if override.kind == "Environment":
        body = f"Environment={quote_assignment(override.variable, text)}\n"
        what = f"Environment={override.variable}"
    else:
        body = f"ExecStart=\nExecStart={text}\n"
        what = "ExecStart="
    header = _HEADER.format(what=what, source=override.source_path, flag=CLUSTER_DNS_FLAG)
    return f"{header}[Service]\n{body}".encode("utf-8", "surrogateescape")


def read(data: bytes, override: Override, where: str) -> tuple[str, ...]:
    """The cluster DNS the drop-in ``data`` sets for ``override`` (``()`` when none)."""
    environment, words = read_service(data, where)
    if override.kind == "Environment":
        argv = ["", *environment.get(override.variable, "").split()]
    else:
        argv = words or []
    return parse_kubelet_flags(argv, where).cluster_dns or ()
