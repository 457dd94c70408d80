"""KubeletConfiguration JSON (EKS ``/etc/kubernetes/kubelet/kubelet-config.json``).

The whole document is validated with :func:`json.loads`; the top-level ``clusterDNS``
array is then located by a small exact scanner over the top-level object (every token
read with :meth:`json.JSONDecoder.raw_decode`, blanks skipped by hand) and edited
with the YAML list editor, a JSON array being a YAML flow sequence.
"""

from __future__ import annotations

import json
import re

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.flags import repeated
from nodelocaldns_agent.kubeletconfig.yamlconf import (
    KEY,
    Item,
    ListFileFormat,
    ListSite,
    decode_utf8,
    line_of,
)

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _validate(text: str, start: int, where: str) -> None:
    try:
        json.loads(text[start:], parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where} line {exc.lineno}: expected KubeletConfiguration JSON: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{where}: expected KubeletConfiguration JSON: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{where}: nested too deeply; expected KubeletConfiguration JSON"
        ) from None


def _expect(text: str, pos: int, char: str, where: str, what: str) -> int:
    if not text.startswith(char, pos):
        raise ConfigError(f"{where} line {line_of(text, pos)}: expected {what}")
    return pos + 1


def _string(text: str, pos: int, where: str, what: str) -> tuple[str, int]:
    """The JSON string starting at ``pos`` and the index after its closing quote."""
    _expect(text, pos, '"', where, what)
    value, end = _DECODER.raw_decode(text, pos)
    if not isinstance(value, str):  # cannot happen: the token starts with a quote
        raise ConfigError(f"{where} line {line_of(text, pos)}: expected {what}")
    return value, end


def _array(text: str, pos: int, line: int, where: str) -> tuple[ListSite, int]:
    """The ``clusterDNS`` value starting at ``pos``, and the index after it."""
    if text.startswith("null", pos):
        return ListSite(line, (), "null", breaks="\r\n"), pos + 4
    open_end = _expect(text, pos, "[", where, f"{KEY} to be an array of strings")
    items: list[Item] = []
    values: list[str] = []
    pos = _skip(text, open_end)
    while not text.startswith("]", pos):
        if items:
            pos = _skip(text, _expect(text, pos, ",", where, "',' or ']'"))
        value, end = _string(text, pos, where, f"{KEY} items to be strings")
        inner = (pos + 1, end - 1) if text[pos + 1 : end - 1] == value else None
        items.append(Item((pos, end), inner, '"'))
        values.append(value)
        pos = _skip(text, end)
    site = ListSite(
        line,
        tuple(values),
        "flow",
        tuple(items),
        open_end=open_end,
        default_quote='"',
        breaks="\r\n",
    )
    return site, pos + 1


def find_list(text: str, where: str) -> ListSite | None:
    """Where the JSON document ``text`` sets ``clusterDNS``; ``None`` when it does not.

    Raises :class:`ConfigError` when ``text`` is not JSON, its top level is not an object,
    ``clusterDNS`` repeats, or it is not an array of strings (or null).
    """
    start = 1 if text.startswith("\ufeff") else 0
    _validate(text, start, where)
    pos = _expect(text, _skip(text, start), "{", where, "a JSON object at the top level")
    found: list[ListSite] = []
    line, counted = 1, 0
    pos = _skip(text, pos)
    while not text.startswith("}", pos):
        line += text.count("\n", counted, pos)  # keys come in order: linear overall
        counted = pos
        key, pos = _string(text, pos, where, "a key")
        pos = _skip(text, _expect(text, _skip(text, pos), ":", where, "':'"))
        if key == KEY:
            site, pos = _array(text, pos, line, where)
            found.append(site)
        else:
            pos = _DECODER.raw_decode(text, pos)[1]
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
    if len(found) > 1:
        raise repeated(where, KEY, [site.line for site in found])
    return found[0] if found else None


def find_cluster_dns(data: bytes, where: str) -> ListSite | None:
    """:func:`find_list` over the bytes of a JSON file."""
    return find_list(decode_utf8(data, where), where)


FORMAT = ListFileFormat("json", find_list, "array")
