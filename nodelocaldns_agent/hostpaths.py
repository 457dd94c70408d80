"""Every host path the agent touches is derived from one root (``--host-root``).

The agent runs in a container with the host's file system mounted at ``/host``. A host
path such as ``/etc/kubernetes/kubelet`` lives at ``<root>/etc/kubernetes/kubelet``, and a
symlink on the host whose target is absolute (``/etc/kubernetes/x.yaml``) must be followed
*inside the root*, never into the container's own ``/etc``. :class:`HostRoot` resolves
paths component by component, the way the host's kernel would, with the root as ``/``.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nodelocaldns_agent.errors import ConfigError

#: Files larger than this are refused (kubelet configs are a few KiB; a huge file is a
#: mistake or an attack, and the agent never loads it into memory).
MAX_FILE_BYTES = 1024 * 1024
#: Symlink hops allowed while resolving one path (Linux allows 40).
MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class HostRoot:
    """The host file system as seen from inside the agent's container."""

    root: Path

    def resolve(self, host_path: str | PurePosixPath) -> Path:
        """Return the real location of ``host_path`` under the root, symlinks followed.

        Absolute link targets are re-rooted; ``..`` never climbs above the root. The final
        component need not exist (so that a file can be created there). Raises
        :class:`ConfigError` on a symlink loop or a relative ``host_path``.
        """
        path = PurePosixPath(host_path)
        if not path.is_absolute():
            raise ConfigError(f"host path {str(host_path)!r}: expected an absolute path")
        parts = list(path.parts[1:])
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.root.joinpath(*resolved, part)
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                resolved.append(part)
                continue
            except OSError as exc:
                raise ConfigError(f"host path {str(path)!r}: cannot inspect: {exc}") from exc
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise ConfigError(
                        f"host path {str(path)!r}: too many levels of symbolic links "
                        "(a symlink loop?)"
                    )
                target = PurePosixPath(os.readlink(candidate))
                if target.is_absolute():
                    resolved = []
                    parts = list(target.parts[1:]) + parts
                else:
                    parts = list(target.parts) + parts
                continue
            resolved.append(part)
        return self.root.joinpath(*resolved)

    def read_bytes(self, host_path: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """Read a regular host file whole, refusing directories, devices and huge files."""
        real = self.resolve(host_path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{host_path}: symlink changed while reading") from exc
            raise ConfigError(f"{host_path}: cannot open: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise ConfigError(f"{host_path}: expected a regular file, found {kind}")
            if st.st_size > limit:
                raise ConfigError(
                    f"{host_path}: {st.st_size} bytes is larger than the {limit}-byte limit "
                    "for a kubelet configuration file"
                )
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"{host_path}: cannot read: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        if len(data) > limit:
            raise ConfigError(f"{host_path}: larger than the {limit}-byte limit")
        return data

    def exists(self, host_path: str) -> bool:
        return self.resolve(host_path).exists()

    def is_dir(self, host_path: str) -> bool:
        return self.resolve(host_path).is_dir()

    def is_file(self, host_path: str) -> bool:
        return self.resolve(host_path).is_file()

    def listdir(self, host_path: str) -> list[str]:
        """Names in a host directory, sorted; empty when it does not exist."""
        real = self.resolve(host_path)
        try:
            return sorted(os.listdir(real))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise ConfigError(f"{host_path}: cannot list directory: {exc.strerror}") from exc
