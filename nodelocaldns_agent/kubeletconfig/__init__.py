"""Parsers and in-place editors for every on-disk format that can hold kubelet's cluster DNS.

One module per format. Each exposes a :class:`Format` object with two pure functions over
bytes: ``read`` (which cluster DNS values the file holds) and ``edit`` (the same bytes with
only the cluster-DNS value changed). Nothing here touches the file system except
:mod:`nodelocaldns_agent.kubeletconfig.unitfile`, which reads through
:class:`nodelocaldns_agent.hostpaths.HostRoot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Format(Protocol):
    """An on-disk format holding the cluster DNS."""

    #: short name shown by ``check`` (``env``, ``yaml``, ``json``, ``config-dir``)
    name: str

    def read(self, data: bytes, where: str) -> tuple[str, ...]:
        """The cluster DNS addresses ``data`` sets; empty when it sets none.

        Raises :class:`nodelocaldns_agent.errors.ConfigError` naming ``where`` (the host path)
        and what was expected when ``data`` is malformed or ambiguous.
        """
        ...

    def edit(self, data: bytes, new: Sequence[str], where: str) -> bytes:
        """``data`` with only the cluster-DNS value replaced by ``new``.

        Every other byte (comments, quoting, line endings, trailing newline, non-UTF-8
        bytes) stays as it was. Raises :class:`nodelocaldns_agent.errors.ConfigError` when ``data``
        holds no cluster DNS to edit or is malformed.
        """
        ...
