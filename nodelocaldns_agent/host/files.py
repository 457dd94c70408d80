"""Atomic, owner- and mode-preserving writes of host files, and the agent's journal.

A write goes to a temporary file in the target's own directory, is fsynced, renamed over
the target and the directory is fsynced, so that a crash at any instant leaves either the
old or the new bytes, never a mix. Symlinks are resolved by :class:`HostRoot` first, so the
link's target is written and the link itself is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodelocaldns_agent.errors import ConfigError, HostError
from nodelocaldns_agent.hostpaths import HostRoot


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(real: Path, data: bytes, *, default_mode: int = 0o644) -> None:
    """Replace ``real`` (an already-resolved path) with ``data`` atomically.

    Mode and owner of an existing file are kept; a new file gets ``default_mode``.
    """
    directory = real.parent
    try:
        st: os.stat_result | None = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise HostError(f"{real}: cannot stat: {exc.strerror}") from exc
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{real}: expected a regular file")
    # A run killed between mkstemp and the rename leaves its temporary file behind: ours
    # only (same prefix and suffix), removed before the next write.
    for stale in directory.glob(f".{real.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise HostError(f"{directory}: cannot create a temporary file: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if st is not None:
                os.fchmod(fh.fileno(), stat.S_IMODE(st.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(fh.fileno(), st.st_uid, st.st_gid)
            else:
                os.fchmod(fh.fileno(), default_mode)
            os.fsync(fh.fileno())
        os.replace(tmp, real)
        _fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise HostError(f"{real}: atomic write failed: {exc.strerror or exc}") from exc


def remove_file(real: Path) -> None:
    """Remove ``real`` durably; a missing file is fine."""
    try:
        os.unlink(real)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise HostError(f"{real}: cannot remove: {exc.strerror}") from exc
    _fsync_dir(real.parent)


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
        self._host = host
        self._state_dir = state_dir.rstrip("/")

    @property
    def path(self) -> str:
        return f"{self._state_dir}/state.json"

    def _ensure_dir(self, host_dir: str) -> Path:
        real = self._host.resolve(host_dir)
        try:
            real.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise HostError(f"{host_dir}: cannot create state directory: {exc.strerror}") from exc
        return real

    def load(self) -> Record | None:
        real = self._host.resolve(self.path)
        if not real.exists():
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
        self._ensure_dir(self._state_dir)
        body = {"version": Record.VERSION, **asdict(record)}
        body["history"] = body["history"][-20:]
        data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(self._host.resolve(self.path), data, default_mode=0o600)

    def keep_original(self, source: str, data: bytes | None) -> str:
        """Keep a byte copy of ``source``'s pre-image; return its host path.

        Copies are named by content hash, so every distinct original is kept once and
        never overwritten (``""`` when there was no file, e.g. a drop-in the agent adds).
        """
        if data is None:
            return ""
        host_copy = f"{self._state_dir}/original{source}.{sha256(data)[:16]}"
        real = self._host.resolve(host_copy)
        if real.exists():
            return host_copy
        self._ensure_dir(host_copy.rsplit("/", 1)[0])
        atomic_write(real, data, default_mode=0o600)
        return host_copy
