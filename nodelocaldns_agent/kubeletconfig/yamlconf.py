"""KubeletConfiguration YAML (kubeadm's ``/var/lib/kubelet/config.yaml``).

The top-level ``clusterDNS`` list is located with PyYAML's composer (``SafeLoader``), whose
marks give every item's position, and edited as text: only the item characters change,
so comments, quoting and line endings stay. UTF-8 decoding and encoding round-trip
exactly, BOM included. The list editor is shared with
:mod:`nodelocaldns_agent.kubeletconfig.jsonconf` (a JSON array is a YAML flow sequence).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import yaml

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.flags import check_addresses, repeated

KEY = "clusterDNS"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: characters YAML 1.1 (PyYAML) counts as line breaks
YAML_BREAKS = "\r\n\x85\u2028\u2029"
_FLOW_SEPARATOR = re.compile(r"[ \t\r\n]*,[ \t\r\n]*")
_BLANKS = re.compile(r"[ \t\r\n]*")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")

Style = Literal["flow", "block", "null"]


@dataclass(frozen=True)
class Item:
    """One list item as written."""

    #: the whole item (anchor, tag and quotes included)
    token: tuple[int, int]
    #: the characters that read exactly as the item's value; ``None`` when escapes or
    #: folding make them differ
    value: tuple[int, int] | None
    #: ``""`` plain, ``"'"`` or ``'"'`` quoted, ``"|"`` block scalar
    quote: str


@dataclass(frozen=True)
class ListSite:
    """Where a document sets ``clusterDNS``; offsets are character indexes."""

    #: 1-based line of the ``clusterDNS`` key
    line: int
    values: tuple[str, ...]
    #: ``null`` when the key is present with no list (``clusterDNS:`` or ``null``)
    style: Style
    items: tuple[Item, ...] = ()
    #: flow lists: the index just after ``[``
    open_end: int = -1
    #: block lists: the number of characters before the first ``-`` on its line
    indent: int = 0
    #: the quote given to items added to an empty list
    default_quote: str = ""
    #: characters that end a line in this format
    breaks: str = YAML_BREAKS


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as text; re-encoding the result as UTF-8 gives ``data`` back exactly."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: byte {exc.start} is not valid UTF-8; expected a UTF-8 file"
        ) from None


def line_of(text: str, index: int) -> int:
    """The 1-based line of character ``index``."""
    return text.count("\n", 0, index) + 1


def compose(text: str, where: str, expected: str = "KubeletConfiguration YAML") -> yaml.Node | None:
    """The YAML document ``text`` as PyYAML's node tree (marks give positions); None when
    empty. :class:`ConfigError` naming ``where`` and ``expected`` when it is not YAML."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "malformed"
        raise ConfigError(f"{where}{at}: expected {expected}: {problem}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{where}: expected {expected}: {detail}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply; expected {expected}") from None


def scalar_item(text: str, node: yaml.Node, where: str, key: str = KEY) -> Item:
    """Where the string scalar ``node`` (an item of ``key``) is written in ``text``."""
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.ScalarNode) or node.tag != _STR_TAG:
        raise ConfigError(
            f"{where} line {line}: a {key} item is not a string; expected a list of strings"
        )
    start, end = node.start_mark.index, node.end_mark.index
    value = str(node.value)
    style = node.style or ""
    if style in ("|", ">"):
        return Item((start, end), None, "|")
    written = style + value + style
    prefix = text[start : end - len(written)]
    if text[start:end].endswith(written) and (not prefix or prefix[-1] in " \t"):
        inner = end - len(style) - len(value)
        return Item((start, end), (inner, inner + len(value)), style)
    return Item((start, end), None, style)


def _site(text: str, key: yaml.Node, node: yaml.Node, where: str) -> ListSite:
    line = key.start_mark.line + 1
    if node.start_mark.index < key.end_mark.index:
        raise ConfigError(f"{where} line {line}: {KEY} is an alias; expected the list itself")
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return ListSite(line, (), "null")
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(f"{where} line {line}: {KEY} is not a list; expected a list of strings")
    items: list[Item] = []
    previous = node.start_mark.index
    for child in node.value:
        item = scalar_item(text, child, where)
        if item.token[0] < previous:  # an alias: its marks are those of the anchor
            raise ConfigError(
                f"{where} line {line}: a {KEY} item is an alias; expected the address itself"
            )
        previous = item.token[1]
        items.append(item)
    values = tuple(str(child.value) for child in node.value)
    if node.flow_style:
        open_end = text.index("[", node.start_mark.index) + 1
        return ListSite(line, values, "flow", tuple(items), open_end=open_end)
    dash = items[0].token[0]
    while dash > 0 and text[dash - 1] in " \t":
        dash -= 1
    dash = dash - 1 if dash > 0 and text[dash - 1] == "-" else node.start_mark.index
    line_start = max(text.rfind(c, 0, dash) for c in YAML_BREAKS) + 1
    return ListSite(line, values, "block", tuple(items), indent=dash - line_start)


def find_list(text: str, where: str) -> ListSite | None:
    """Where the YAML document ``text`` sets ``clusterDNS``; ``None`` when it does not.

    Raises :class:`ConfigError` when ``text`` is not YAML, its top level is not a mapping,
    ``clusterDNS`` repeats, or it is not a list of strings.
    """
    root = compose(text, where)
    if root is None:
        return None
    if not isinstance(root, yaml.MappingNode):
        kind = "list" if isinstance(root, yaml.SequenceNode) else "scalar"
        raise ConfigError(
            f"{where}: the document is a {kind}; expected a mapping (a KubeletConfiguration)"
        )
    found = []
    for key, node in root.value:
        if key.tag == _MERGE_TAG:
            raise ConfigError(
                f"{where} line {key.start_mark.line + 1}: a top-level merge key (<<); "
                "expected plain keys"
            )
        if isinstance(key, yaml.ScalarNode) and key.tag == _STR_TAG and key.value == KEY:
            found.append((key, node))
    if len(found) > 1:
        raise repeated(where, KEY, [key.start_mark.line + 1 for key, _ in found])
    return _site(text, *found[0], where) if found else None


def find_cluster_dns(data: bytes, where: str) -> ListSite | None:
    """:func:`find_list` over the bytes of a YAML file."""
    return find_list(decode_utf8(data, where), where)


@functools.lru_cache(maxsize=256)
def _plain_ok(value: str, flow: bool) -> bool:
    """Whether ``value`` written unquoted reads back as the same string."""
    document = f"[{value}]" if flow else f"- {value}\n"
    try:
        return bool(yaml.safe_load(document) == [value])
    except (yaml.YAMLError, RecursionError):
        return False


def render_item(value: str, quote: str = "", flow: bool = False) -> str:
    """``value`` as a list item: in ``quote`` (``'`` or ``"``), else plain when it reads
    back as the same string, else double-quoted."""
    if quote in ("'", '"'):
        return quote + value + quote
    return value if _plain_ok(value, flow) else f'"{value}"'


def _line_end(text: str, index: int, breaks: str) -> int:
    """The index of the line break ending the line of ``index`` (or the end of text)."""
    ends = [i for i in (text.find(c, index) for c in breaks) if i >= 0]
    return min(ends, default=len(text))


def _newline(text: str, at: int) -> str:
    """The line ending at ``at``, else the file's first one, else ``\\n``."""
    match = _LINE_BREAK.match(text, at) or _LINE_BREAK.search(text)
    return match.group() if match else "\n"


def _flow_separator(text: str, site: ListSite) -> str:
    """The separator between items in this list's own style (``", "`` by default)."""
    items = site.items
    if len(items) >= 2:
        sep = text[items[0].token[1] : items[1].token[0]]
        if _FLOW_SEPARATOR.fullmatch(sep):
            return sep
    elif len(items) == 1:
        lead = text[site.open_end : items[0].token[0]]
        if _BLANKS.fullmatch(lead) and ("\n" in lead or "\r" in lead):
            return "," + lead
    return ", "


def edit_list(text: str, site: ListSite, new: Sequence[str], where: str) -> str:
    """``text`` with the list at ``site`` holding ``new`` instead.

    Items are replaced pairwise; surplus items are deleted (block lists: whole lines);
    missing ones are added after the last item in the list's style. An address that
    would not read back as a plain string is double-quoted.
    """
    values = check_addresses(new, where)
    if site.style == "null":
        raise ConfigError(f"{where} line {site.line}: {KEY} is null; expected a list to edit")
    flow = site.style == "flow"
    edits: list[tuple[int, int, str]] = []
    for item, value in zip(site.items, values, strict=False):
        if item.quote == "|":
            raise ConfigError(
                f"{where} line {line_of(text, item.token[0])}: a {KEY} item is a block "
                "scalar; expected a plain or quoted address"
            )
        if item.value is None:
            edits.append((*item.token, render_item(value, item.quote or '"', flow)))
        else:
            inside = value if item.quote else render_item(value, "", flow)
            edits.append((*item.value, inside))
    kept = len(values)
    if kept < len(site.items):
        last_kept, last_old = site.items[kept - 1].token[1], site.items[-1].token[1]
        if not flow:
            last_kept = _line_end(text, last_kept, site.breaks)
            last_old = _line_end(text, last_old, site.breaks)
        edits.append((last_kept, last_old, ""))
    elif kept > len(site.items):
        extra = values[len(site.items) :]
        quote = site.items[-1].quote if site.items else site.default_quote
        if not flow:
            at = _line_end(text, site.items[-1].token[1], site.breaks)
            lead = _newline(text, at) + " " * site.indent + "- "
            added = "".join(lead + render_item(v, quote, False) for v in extra)
        elif site.items:
            at = site.items[-1].token[1]
            sep = _flow_separator(text, site)
            added = "".join(sep + render_item(v, quote, True) for v in extra)
        else:
            at = site.open_end
            added = ", ".join(render_item(v, quote, True) for v in extra)
        edits.append((at, at, added))
    out: list[str] = []
    done = 0
    for start, end, replacement in edits:
        out += (text[done:start], replacement)
        done = end
    out.append(text[done:])
    return "".join(out)


class ListFileFormat:
    """A KubeletConfiguration file whose top-level ``clusterDNS`` is a list (``yaml``) or
    an array (``json``); the two differ only in how the list is found."""

    def __init__(self, name: str, find: Callable[[str, str], ListSite | None], kind: str) -> None:
        self.name = name
        self._find = find
        self._kind = kind

    def read(self, data: bytes, where: str) -> tuple[str, ...]:
        """The top-level ``clusterDNS`` values; ``()`` when absent, null or empty."""
        site = self._find(decode_utf8(data, where), where)
        return site.values if site else ()

    def edit(self, data: bytes, new: Sequence[str], where: str) -> bytes:
        """``data`` with the ``clusterDNS`` items replaced by ``new``."""
        text = decode_utf8(data, where)
        site = self._find(text, where)
        if site is None:
            raise ConfigError(f"{where}: no {KEY} to edit; expected a top-level {KEY} {self._kind}")
        return edit_list(text, site, new, where).encode("utf-8")


FORMAT = ListFileFormat("yaml", find_list, "list")
