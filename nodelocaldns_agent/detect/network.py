"""The node's network mode, reported only (it does not change what the agent does)."""

from __future__ import annotations

import json

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.hostpaths import HostRoot

CNI_DIR = "/etc/cni/net.d"
_CNI_SUFFIXES = (".conf", ".conflist", ".json")
#: TKE's CNI plugins for VPC-CNI (ENI) networking.
_TKE_ENI_PLUGINS = frozenset(
    {"tke-route-eni", "tke-eni", "tke-direct-eni", "tke-eni-agent", "tke-eni-ipamd"}
)
_GLOBALROUTER_PLUGINS = frozenset({"tke-bridge"})
#: CNI directories nest at most this deep (e.g. multus/); guards against link loops.
_MAX_DEPTH = 3


def cni_plugin_types(host: HostRoot, directory: str = CNI_DIR, depth: int = 0) -> list[str]:
    """Plugin ``type``s named in the CNI configs under ``directory`` (subfolders too)."""
    found: list[str] = []
    for name in host.listdir(directory):
        path = f"{directory}/{name}"
        if host.is_dir(path):
            if depth < _MAX_DEPTH:
                found += cni_plugin_types(host, path, depth + 1)
            continue
        if not name.endswith(_CNI_SUFFIXES):
            continue
        try:
            doc = json.loads(host.read_bytes(path))
        except (ConfigError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        listed = doc.get("plugins")
        plugins: list[object] = listed if isinstance(listed, list) else [doc]
        for plugin in plugins:
            if isinstance(plugin, dict) and isinstance(plugin.get("type"), str):
                found.append(plugin["type"][:64])
    return found


def classify_network(plugin_types: list[str], interface_names: set[str]) -> str:
    """``globalrouter``, ``vpc-cni``, another CNI plugin's name, or ``unknown``."""
    types = set(plugin_types)
    if types & _GLOBALROUTER_PLUGINS or "cbr0" in interface_names:
        return "globalrouter"
    if types & _TKE_ENI_PLUGINS:
        return "vpc-cni"
    return plugin_types[0] if plugin_types else "unknown"
