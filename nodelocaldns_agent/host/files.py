"""The agent's journal and the byte copies of originals, under ``<host root><state dir>``.

Written through :class:`HostRoot` confined to the state directory: atomic, through held
directory descriptors, never outside that directory. The directory and every directory
below it are the agent's alone: mode 0700 (a 0755 one left by an older version is
tightened), files 0600.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.hostpaths import HostRoot, plain_path_problem, sha256

#: mode of the journal and of the byte copies
PRIVATE_FILE_MODE = 0o600


@dataclass
class Record:
    """What the agent remembers about one node, in ``<state dir>/state.json``.

    ``original_*`` describe the file before the agent's first change and never change
    afterwards; ``pending`` is set before a write and cleared after kubelet was verified,
    so a run that was killed in between knows that a restart is still owed.
    """

    source: str
    format: str
    original_cluster_dns: list[str]
    #: sha256 of the original bytes; "" when the file did not exist (a drop-in we add)
    original_sha256: str
    #: host path of the byte copy of the original ("" when there was no file)
    backup: str
    pending: str | None = None
    state: str = "pending"
    last_error: str = ""
    updated: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    VERSION = 1


class FileJournal:
    """The journal and the byte copies of originals, under ``<host root><state dir>``."""

    def __init__(self, host: HostRoot, state_dir: str) -> None:
        self._state_dir = state_dir.rstrip("/")
        #: the journal writes into its own directory and nowhere else
        self._host = host.confined_to(self._state_dir)

    @property
    def path(self) -> str:
        return f"{self._state_dir}/state.json"

    def load(self) -> Record | None:
        if not self._host.exists(self.path):
            return None
        data = self._host.read_bytes(self.path)
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.pop("version", None) != Record.VERSION:
                raise ValueError("unknown version")
            return Record(**raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{self.path}: the agent's journal is corrupt ({exc}); the original kubelet "
                f"file copy is under {self._state_dir}/original/ — inspect, then remove the "
                "journal to start over"
            ) from exc

    def save(self, record: Record) -> None:
        self._host.make_private_dir(self._state_dir)
        body = {"version": Record.VERSION, **asdict(record)}
        body["history"] = body["history"][-20:]
        data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
        self._host.write_file(self.path, data, expect=None, mode=PRIVATE_FILE_MODE)

    def keep_original(self, source: str, data: bytes | None) -> str:
        """Keep a byte copy of ``source``'s pre-image; return its host path.

        Copies are named by content hash, so every distinct original is kept once and
        never overwritten (``""`` when there was no file, e.g. a drop-in the agent adds).
        The copy's path embeds ``source``: a source that is not a plain absolute path
        (``..``, control characters) is refused, so no copy lands outside the state
        directory.
        """
        if data is None:
            return ""
        problem = plain_path_problem(source)
        if problem:
            raise ConfigError(
                f"kubelet configuration path {source!r}: {problem}; refusing to name the "
                f"copy of its original under {self._state_dir}/original after it"
            )
        host_copy = f"{self._state_dir}/original{source}.{sha256(data)[:16]}"
        if self._host.is_file(host_copy) and self._host.read_bytes(host_copy) == data:
            return host_copy
        self._host.make_private_dir(host_copy.rsplit("/", 1)[0])
        self._host.write_file(host_copy, data, expect=None, mode=PRIVATE_FILE_MODE)
        return host_copy
