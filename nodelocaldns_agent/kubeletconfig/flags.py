"""kubelet command-line flags that matter to the agent, and the cluster-DNS value rules.

Shared by every format module: where a ``--cluster-dns`` value sits in a list of words,
how a value splits into addresses, which new addresses are acceptable, and the error for
a setting that appears more than once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from nodelocaldns_agent.errors import ConfigError

CLUSTER_DNS_FLAG = "--cluster-dns"
CONFIG_FLAG = "--config"
CONFIG_DIR_FLAG = "--config-dir"
_TOKEN = re.compile(r"[^ \t\n\r]+")
#: a flag value that can be replaced in place: no quotes, escapes, variables or specifiers
_PLAIN_VALUE = re.compile(r"[^\\'\"$%]*")


@dataclass(frozen=True)
class FlagValue:
    """Where one occurrence of a flag's value sits in a list of words."""

    #: index of the word naming the flag
    flag_word: int
    #: index of the word holding the value (``flag_word`` for ``--x=v``, the next word for
    #: ``--x v``); ``None`` when the flag is the last word and has no value
    word: int | None
    #: offset of the value inside ``words[word]``
    start: int


def normalized(name: str) -> str:
    """A flag name as kubelet's flag set sees it: ``_`` is ``-``.

    kubelet sets ``cliflag.WordSepNormalizeFunc`` on its flag set (cmd/kubelet/app/server.go,
    k8s.io/component-base/cli/flag/flags.go), so ``--cluster_dns`` and ``--cluster-dns``
    are one flag, and so are ``--config_dir`` and ``--config-dir``.
    """
    return name.replace("_", "-")


def find_flag(words: Sequence[str], flag: str) -> list[FlagValue]:
    """Every occurrence of ``flag`` (``--name``) in ``words``, as kubelet's pflag set would
    parse it.

    Both ``--name=v`` and ``--name v`` count, in any ``_``/``-`` spelling of the name
    (:func:`normalized`); a bare ``--`` ends the flags.
    """
    found: list[FlagValue] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            break
        name, eq, _ = word.partition("=")
        if not word.startswith("--") or normalized(name) != flag:
            i += 1
            continue
        if eq:
            found.append(FlagValue(i, i, len(name) + 1))
        elif i + 1 < len(words):
            found.append(FlagValue(i, i + 1, 0))
            i += 1
        else:
            found.append(FlagValue(i, None, 0))
        i += 1
    return found


def mentions(text: str, flag: str) -> bool:
    """``text`` (a command line or a variable's value, split at blanks) sets ``flag``."""
    return bool(find_flag(text.split(), flag))


def replace_flag_value(text: str, flag: str, values: Sequence[str], where: str) -> str:
    """``text`` (a command line or a variable's value) with the value of its one ``flag``
    replaced by ``values`` comma-joined; every other character stays as it was.

    Raises :class:`ConfigError` naming ``where`` when ``flag`` is not there exactly once as
    a blank-separated word, has no value, or its value is written with quotes, escapes,
    variables or specifiers (it cannot be replaced in place then).
    """
    tokens = list(_TOKEN.finditer(text))
    hits = find_flag([token.group() for token in tokens], flag)
    if len(hits) != 1:
        raise ConfigError(
            f"{where}: {flag} appears {len(hits)} times as a plain word in {text[:200]!r}; "
            "expected exactly once"
        )
    hit = hits[0]
    if hit.word is None:
        raise ConfigError(f"{where}: {flag} has no value; expected {flag}=<ip>[,<ip>...]")
    token = tokens[hit.word]
    start, end = token.start() + hit.start, token.end()
    if not _PLAIN_VALUE.fullmatch(text[start:end]):
        raise ConfigError(
            f"{where}: the {flag} value {text[start:end]!r} is written with quotes, escapes, "
            "variables or specifiers; expected plain addresses"
        )
    return text[:start] + ",".join(check_addresses(values, where)) + text[end:]


def split_addresses(value: str) -> tuple[str, ...]:
    """A ``--cluster-dns`` value as its comma-separated items; ``()`` for an empty value."""
    return tuple(value.split(",")) if value else ()


def check_addresses(new: Sequence[str], where: str) -> tuple[str, ...]:
    """``new`` as a tuple after checking it is a non-empty list of IP addresses.

    Raises :class:`ConfigError` naming ``where`` otherwise. Zone suffixes (``%eth0``) are
    refused: kubelet's ``net.ParseIP`` does not accept them.
    """
    if isinstance(new, str | bytes):
        raise ConfigError(f"{where}: expected a list of cluster DNS addresses, got {new!r}")
    values = tuple(new)
    if not values:
        raise ConfigError(f"{where}: expected at least one cluster DNS address")
    for value in values:
        if not isinstance(value, str) or "%" in value:
            raise ConfigError(f"{where}: {value!r} is not an IP address; expected IPv4 or IPv6")
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ConfigError(
                f"{where}: {value!r} is not an IP address; expected IPv4 or IPv6"
            ) from None
    return values


def repeated(where: str, what: str, lines: Sequence[int]) -> ConfigError:
    """The error for ``what`` set on several ``lines`` of ``where`` (at most ten shown)."""
    distinct = [str(line) for line in dict.fromkeys(lines)]
    shown = ", ".join(distinct[:10]) + (", ..." if len(distinct) > 10 else "")
    return ConfigError(
        f"{where} line {lines[-1]}: {what} appears {len(lines)} times (lines {shown}); "
        "expected exactly one"
    )


@dataclass(frozen=True)
class KubeletFlags:
    """The flags of one kubelet command line that locate its cluster DNS."""

    #: ``--config`` (the last occurrence wins, as with pflag)
    config: str | None
    #: ``--config-dir`` (the last occurrence wins)
    config_dir: str | None
    #: every ``--cluster-dns`` item in order (pflag string slices append across
    #: occurrences); ``None`` when the flag is absent
    cluster_dns: tuple[str, ...] | None
    #: how many times ``--cluster-dns`` was given
    cluster_dns_count: int


def parse_kubelet_flags(argv: Sequence[str], where: str = "kubelet command line") -> KubeletFlags:
    """The locating flags of ``argv`` (``argv[0]`` is the program and is skipped).

    Raises :class:`ConfigError` when one of these flags is last and has no value.
    """
    words = list(argv[1:])

    def values(flag: str) -> list[str]:
        out = []
        for hit in find_flag(words, flag):
            if hit.word is None:
                raise ConfigError(f"{where}: {flag} is the last argument; expected a value")
            out.append(words[hit.word][hit.start :])
        return out

    config = values(CONFIG_FLAG)
    config_dir = values(CONFIG_DIR_FLAG)
    dns = values(CLUSTER_DNS_FLAG)
    return KubeletFlags(
        config=config[-1] if config else None,
        config_dir=config_dir[-1] if config_dir else None,
        cluster_dns=tuple(item for value in dns for item in split_addresses(value))
        if dns
        else None,
        cluster_dns_count=len(dns),
    )
