"""kubelet ``--config-dir``: a directory of ``*.conf`` KubeletConfiguration drop-ins.

kubelet applies the drop-ins in lexical file-name order on top of ``--config``, each as a
JSON merge patch, so the last file that mentions ``clusterDNS`` decides it (``null`` or
``[]`` included). The agent writes its own drop-in, :data:`OUR_DROPIN`, sorted last.
Nothing here touches the disk.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodelocaldns_agent.kubeletconfig import jsonconf, yamlconf
from nodelocaldns_agent.kubeletconfig.flags import check_addresses
from nodelocaldns_agent.kubeletconfig.yamlconf import ListSite

#: the agent's drop-in; ``99-`` makes it sort after the usual ones
OUR_DROPIN = "99-nodelocaldns-agent.conf"
#: kubelet reads only files with this suffix
DROPIN_SUFFIX = ".conf"


def render(values: Sequence[str]) -> bytes:
    """The agent's drop-in setting ``clusterDNS`` to ``values``."""
    addresses = check_addresses(values, OUR_DROPIN)
    lines = [
        "# Written by nodelocaldns-agent: points kubelet's cluster DNS at NodeLocal DNSCache.",
        "# Delete this file and restart kubelet to revert to the cluster DNS set elsewhere.",
        "apiVersion: kubelet.config.k8s.io/v1beta1",
        "kind: KubeletConfiguration",
        "clusterDNS:",
        *(f"- {yamlconf.render_item(value)}" for value in addresses),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _is_json(data: bytes) -> bool:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def find_cluster_dns(data: bytes, where: str) -> ListSite | None:
    """Where one drop-in sets ``clusterDNS`` (JSON when it starts with ``{``, else YAML)."""
    if _is_json(data):
        return jsonconf.find_cluster_dns(data, where)
    return yamlconf.find_cluster_dns(data, where)


def effective(
    files: Sequence[tuple[str, bytes]], directory: str = ""
) -> tuple[tuple[str, ...], str | None]:
    """The ``clusterDNS`` the drop-ins leave in effect and the name of the file that set
    it; ``((), None)`` when none sets it.

    ``files`` are ``(file name, content)`` pairs of ``directory`` (used in messages); names
    not ending in ``.conf`` are ignored, as kubelet ignores them.
    """
    values: tuple[str, ...] = ()
    winner: str | None = None
    for name, data in sorted(files, key=lambda file: file[0]):
        if not name.endswith(DROPIN_SUFFIX):
            continue
        where = f"{directory.rstrip('/')}/{name}" if directory else name
        site = find_cluster_dns(data, where)
        if site is not None:
            values, winner = site.values, name
    return values, winner


class DropinFormat:
    """The ``config-dir`` format: one drop-in file, YAML or JSON."""

    name = "config-dir"

    def read(self, data: bytes, where: str) -> tuple[str, ...]:
        """The drop-in's ``clusterDNS``; ``()`` when it sets none."""
        site = find_cluster_dns(data, where)
        return site.values if site else ()

    def edit(self, data: bytes, new: Sequence[str], where: str) -> bytes:
        """``data`` with its ``clusterDNS`` items replaced by ``new``."""
        return (jsonconf.FORMAT if _is_json(data) else yamlconf.FORMAT).edit(data, new, where)


FORMAT = DropinFormat()
