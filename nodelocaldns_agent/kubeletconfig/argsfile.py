"""MicroK8s's kubelet arguments file, ``/var/snap/microk8s/current/args/kubelet``.

One kubelet flag per line (``--cluster-dns=10.152.183.10``), ``#`` comment lines and blank
lines; kubelite reads it at every start (``--kubelet-args-file``). The agent edits the
one ``--cluster-dns`` line in place (only its addresses change), with the same flag rules
as everywhere (``_`` is ``-``, ``--flag=v`` or ``--flag v``). A value in quotes or with
``${SNAP_DATA}``-style variables is refused: it cannot be replaced in place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.flags import (
    CLUSTER_DNS_FLAG,
    mentions,
    parse_kubelet_flags,
    repeated,
    replace_flag_value,
)
from nodelocaldns_agent.kubeletconfig.yamlconf import decode_utf8

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")


def _lines(text: str) -> list[tuple[int, str]]:
    """(1-based number, line with its ending) of ``text``."""
    return [(n, m.group()) for n, m in enumerate(_LINE.finditer(text), 1) if m.group()]


def _dns_lines(text: str, where: str) -> list[tuple[int, str]]:
    found = [
        (n, line)
        for n, line in _lines(text)
        if not line.lstrip().startswith("#") and mentions(line, CLUSTER_DNS_FLAG)
    ]
    if len(found) > 1:
        raise repeated(where, CLUSTER_DNS_FLAG, [n for n, _ in found])
    return found


class ArgsFileFormat:
    """The ``args-file`` format."""

    name = "args-file"

    def read(self, data: bytes, where: str) -> tuple[str, ...]:
        """The addresses of the ``--cluster-dns`` line; ``()`` when there is none."""
        text = decode_utf8(data, where)
        found = _dns_lines(text, where)
        if not found:
            return ()
        number, line = found[0]
        flags = parse_kubelet_flags(["kubelite", *line.split()], f"{where} line {number}")
        return flags.cluster_dns or ()

    def edit(self, data: bytes, new: Sequence[str], where: str) -> bytes:
        """``data`` with only the addresses of the ``--cluster-dns`` line replaced."""
        text = decode_utf8(data, where)
        found = _dns_lines(text, where)
        if not found:
            raise ConfigError(f"{where}: no {CLUSTER_DNS_FLAG} line to edit; expected one")
        number, line = found[0]
        edited = replace_flag_value(line, CLUSTER_DNS_FLAG, new, f"{where} line {number}")
        out = [edited if n == number else raw for n, raw in _lines(text)]
        return "".join(out).encode("utf-8")


FORMAT = ArgsFileFormat()
