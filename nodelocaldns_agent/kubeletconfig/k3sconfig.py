"""k3s and RKE2 configuration files: ``kubelet-arg`` items, merged as k3s merges them.

k3s and RKE2 read ``/etc/rancher/<k3s|rke2>/config.yaml`` and then every ``*.yaml`` /
``*.yml`` file (any case) of ``config.yaml.d`` in file-name order (``dotDFiles`` and
``readConfigFile`` of k3s's pkg/configfilearg/parser.go; RKE2 uses the same loader). Each
file is a YAML mapping; a key replaces the value the earlier files gave it, and a key
written with a trailing ``+`` (``kubelet-arg+:``) appends to it. A list value gives one
``--kubelet-arg=<item>`` per item, a scalar one. The command line's ``--kubelet-arg``
flags come after those of the files.

k3s then merges the ``kubelet-arg`` items into its own kubelet arguments (``GetArgs`` of
k3s's pkg/util/args.go): ``name=value`` replaces k3s's default for ``name``, repeated items
each add ``--name=value``, and ``name+=value`` / ``name-=value`` append / prepend to k3s's
default. ``cluster-dns`` is a list flag of kubelet, so two items give kubelet both lists.

The agent edits one ``cluster-dns=`` item in place (only the addresses change) with the
``k3s-arg`` :class:`Format`; it never edits ``cluster-dns:`` itself, which is k3s's
server-wide setting (the CoreDNS Service address, handed to every agent).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import yaml

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.kubeletconfig.flags import check_addresses, normalized, split_addresses
from nodelocaldns_agent.kubeletconfig.yamlconf import compose, decode_utf8, scalar_item

KUBELET_ARG = "kubelet-arg"
#: the kubelet flag, as a ``kubelet-arg`` item names it (without ``--``)
CLUSTER_DNS = "cluster-dns"
#: kubelet flags a ``kubelet-arg`` item may give that move kubelet's configuration files
#: elsewhere (k3s copies them into its ``--config-dir``): not modelled, refused
RELOCATING = ("config", "config-dir")
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_DOTD_SUFFIXES = (".yaml", ".yml")
#: addresses as written in a value that can be replaced in place
_PLAIN_ADDRESSES = re.compile(r"[0-9A-Fa-f.:,]*")

EXPECTED = "a k3s/RKE2 config.yaml (a YAML mapping of flag names)"


@dataclass(frozen=True)
class ArgItem:
    """One ``kubelet-arg`` item in effect."""

    #: host path of the file that holds it
    path: str
    #: 1-based line
    line: int
    #: the item as k3s reads it (``cluster-dns=10.43.0.10``)
    value: str

    @property
    def name(self) -> str:
        """The kubelet flag it sets as written, ``+``/``-`` suffix included."""
        return self.value.removeprefix("--").split("=", 1)[0]


@dataclass(frozen=True)
class MergedConfig:
    """What the files give, merged."""

    #: ``kubelet-arg`` items in effect, in k3s's order
    kubelet_args: tuple[ArgItem, ...]
    #: every top-level key any file sets (``+`` removed)
    keys: frozenset[str]


def dotd_names(names: Iterable[str]) -> list[str]:
    """The file names of a ``config.yaml.d`` directory that k3s reads, in its order."""
    return sorted(n for n in names if n.lower().endswith(_DOTD_SUFFIXES))


def _items(text: str, node: yaml.Node, path: str) -> list[ArgItem]:
    """The ``kubelet-arg`` items one value gives (a list, a scalar, or none for null)."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return []
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    items = []
    for child in nodes:
        scalar_item(text, child, path, KUBELET_ARG)  # a string, or ConfigError
        items.append(ArgItem(path, child.start_mark.line + 1, str(child.value)))
    return items


def _pairs(text: str, path: str) -> list[tuple[yaml.Node, yaml.Node]]:
    root = compose(text, path, EXPECTED)
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: the document is not a mapping; expected {EXPECTED}")
    for key, _ in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag != _STR_TAG:
            raise ConfigError(
                f"{path} line {key.start_mark.line + 1}: a key is not a string; expected {EXPECTED}"
            )
    return list(root.value)


def merge(files: Sequence[tuple[str, bytes]]) -> MergedConfig:
    """``files`` (host path, bytes), config.yaml first, then the ``.d`` files in order,
    merged as k3s merges them."""
    args: list[ArgItem] = []
    keys: set[str] = set()
    for path, data in files:
        text = decode_utf8(data, path)
        for key, node in _pairs(text, path):
            name = str(key.value)
            base = name.removesuffix("+")
            keys.add(base)
            if base != KUBELET_ARG:
                continue
            items = _items(text, node, path)
            args = args + items if name.endswith("+") else items
    return MergedConfig(tuple(args), frozenset(keys))


def cluster_dns_items(items: Sequence[ArgItem]) -> list[ArgItem]:
    """The items that give kubelet ``--cluster-dns`` (any ``_``/``-`` spelling)."""
    return [i for i in items if normalized(i.name.rstrip("+-")) == CLUSTER_DNS]


def _value_span(text: str, where: str) -> tuple[int, int, str]:
    """(start, end, flag) of the addresses of the one ``cluster-dns`` item in ``text``."""
    spans = []
    for key, node in _pairs(text, where):
        if str(key.value).removesuffix("+") != KUBELET_ARG:
            continue
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for child in nodes:
            if isinstance(child, yaml.ScalarNode) and child.tag == _NULL_TAG:
                continue
            item = scalar_item(text, child, where, KUBELET_ARG)
            arg = ArgItem(where, child.start_mark.line + 1, str(child.value))
            if not cluster_dns_items([arg]):
                continue
            if item.value is None:
                raise ConfigError(
                    f"{where} line {arg.line}: the {KUBELET_ARG} item {arg.value!r} is written "
                    "with escapes or folded; expected a plain or quoted string"
                )
            if "=" not in arg.value:
                raise ConfigError(
                    f"{where} line {arg.line}: {KUBELET_ARG} item {arg.value!r} has no value; "
                    f"expected {CLUSTER_DNS}=<ip>[,<ip>...]"
                )
            start = item.value[0] + arg.value.index("=") + 1
            spans.append((start, item.value[1], arg.name, arg.line))
    if len(spans) > 1:
        lines = ", ".join(str(s[3]) for s in spans)
        raise ConfigError(
            f"{where}: {len(spans)} {KUBELET_ARG} items set {CLUSTER_DNS} (lines {lines}); "
            "expected exactly one (kubelet adds the lists up)"
        )
    if not spans:
        return -1, -1, ""
    start, end, name, line = spans[0]
    if name != name.rstrip("+-"):
        raise ConfigError(
            f"{where} line {line}: {KUBELET_ARG} item {name}=... adds to k3s's own cluster DNS; "
            f"expected {CLUSTER_DNS}=<ip>[,<ip>...]"
        )
    if not _PLAIN_ADDRESSES.fullmatch(text[start:end]):
        raise ConfigError(
            f"{where} line {line}: the {CLUSTER_DNS} value {text[start:end]!r} is not a plain "
            "list of addresses; expected <ip>[,<ip>...]"
        )
    return start, end, name


class K3sArgFormat:
    """The ``k3s-arg`` format: the ``cluster-dns=`` item of a file's ``kubelet-arg``."""

    name = "k3s-arg"

    def read(self, data: bytes, where: str) -> tuple[str, ...]:
        """The addresses of the file's ``cluster-dns`` item; ``()`` when it has none."""
        text = decode_utf8(data, where)
        start, end, _ = _value_span(text, where)
        return split_addresses(text[start:end]) if start >= 0 else ()

    def edit(self, data: bytes, new: Sequence[str], where: str) -> bytes:
        """``data`` with only the addresses of that item replaced by ``new``."""
        text = decode_utf8(data, where)
        start, end, _ = _value_span(text, where)
        if start < 0:
            raise ConfigError(
                f"{where}: no {KUBELET_ARG} item {CLUSTER_DNS}=... to edit; expected one"
            )
        value = ",".join(check_addresses(new, where))
        return (text[:start] + value + text[end:]).encode("utf-8")


FORMAT = K3sArgFormat()
