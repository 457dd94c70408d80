"""Every host path the agent touches is derived from one root (``--host-root``).

The agent runs in a container with the host's file system mounted at ``/host``. A host
path such as ``/etc/kubernetes/kubelet`` lives at ``<root>/etc/kubernetes/kubelet``, and a
symlink on the host whose target is absolute (``/etc/kubernetes/x.yaml``) must be followed
*inside the root*, never into the container's own ``/etc``. :class:`HostRoot` resolves
paths component by component, the way the host's kernel would, with the root as ``/``:
each directory is opened relative to the one before with ``O_NOFOLLOW`` and held open, a
symlink is read (never followed by the kernel) and its target walked the same way,
absolute targets from the root, ``..`` never above it.

Writes never go by path. :meth:`HostRoot.write_file` and :meth:`HostRoot.remove_file`
resolve once and then read the file, create the temporary file, check and rename (or
unlink) inside the one directory descriptor they hold, so a path component swapped for a
symlink after the resolution cannot send the write elsewhere. Right before the rename the
target is checked again: still the inode that was read, holding the bytes the caller
expects (:class:`Expected`). A write is refused (:class:`UnsafeWriteError`, nothing
changed) when its resolved location is not inside one of the writable directories or is
inside a never-writable one (:data:`NEVER_WRITABLE_DIRS`), or when a directory on the way,
symlink detours included, is not owned by root or is writable by group or others.

``openat2(RESOLVE_IN_ROOT)`` would do the re-rooting in the kernel; the walk is kept on
every kernel because it has to look at each directory on the way anyway (owner and mode),
and one code path is the one the tests run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from nodelocaldns_agent.errors import AgentError, ConfigError, HostError, UnsafeWriteError

#: Files larger than this are refused (kubelet configs are a few KiB; a huge file is a
#: mistake or an attack, and the agent never loads it into memory).
MAX_FILE_BYTES = 1024 * 1024
#: Symlink hops allowed while resolving one path (Linux allows 40).
MAX_SYMLINK_HOPS = 40
#: Where the kubelet files of the supported layouts live (``--writable-dirs``), and the
#: directory of the agent's own kubelet.service drop-in (only that one: never the rest of
#: /etc/systemd/system).
DEFAULT_WRITABLE_DIRS = (
    "/etc/kubernetes",
    "/var/lib/kubelet",
    "/etc/default",
    "/etc/sysconfig",
    "/etc/systemd/system/kubelet.service.d",
)
#: The same for the embedded kubelets (:mod:`nodelocaldns_agent.detect.embedded`): k3s's
#: and RKE2's config.yaml(.d) and kubelet.conf.d, MicroK8s's snap data (its ``current``
#: symlink leads to ``/var/snap/microk8s/<revision>``; ``common`` below it is never
#: written). The chart's ``k3s``, ``rke2`` and ``microk8s`` layouts mount these.
EMBEDDED_WRITABLE_DIRS = (
    "/etc/rancher/k3s",
    "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d",
    "/etc/rancher/rke2",
    "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d",
    "/var/snap/microk8s",
)
#: Host directories where pods can write, directory -> what writes there: a kubelet
#: configuration path in one of them is never trusted (:mod:`nodelocaldns_agent.detect.
#: kubelet`) and never written. Under kubelet's root directory (``/var/lib/kubelet``,
#: pkg/kubelet/config/defaults.go of kubernetes/kubernetes): ``pods`` holds every pod's
#: volumes, ``plugins``, ``plugins_registry`` and ``plugin-containers`` are written by CSI
#: driver pods, ``device-plugins`` by device plugin pods (``DevicePluginPath``,
#: k8s.io/kubelet/pkg/apis/deviceplugin), ``pod-resources`` is mounted into monitoring
#: pods. Elsewhere: container logs (lines a pod prints) and the runtimes' container root
#: file systems (a container's writable layer is a host directory).
POD_WRITABLE_DIRS = {
    "/var/lib/kubelet/pods": "pod volumes",
    "/var/lib/kubelet/plugins": "node plugins' files",
    "/var/lib/kubelet/plugins_registry": "node plugins' registration sockets",
    "/var/lib/kubelet/plugin-containers": "node plugins' files",
    "/var/lib/kubelet/device-plugins": "device plugins' sockets",
    "/var/lib/kubelet/pod-resources": "the pod-resources API socket",
    "/var/log/pods": "container logs",
    "/var/log/containers": "container logs",
    "/var/lib/containerd": "containers' file systems",
    "/run/containerd": "containers' file systems",
    "/var/lib/docker": "containers' file systems",
    "/var/lib/containers": "containers' file systems",
    "/run/containers": "containers' file systems",
    # k3s's and RKE2's containerd (``<data-dir>/agent/containerd``, k3s's
    # pkg/agent/config); MicroK8s keeps kubelet's root, containerd and logs under
    # $SNAP_COMMON (microk8s-resources/default-args: --root-dir=${SNAP_COMMON}/var/lib/kubelet)
    "/var/lib/rancher/k3s/agent/containerd": "containers' file systems",
    "/var/lib/rancher/rke2/agent/containerd": "containers' file systems",
    "/run/k3s/containerd": "containers' file systems",
    "/var/snap/microk8s/common": "MicroK8s's kubelet root, containers and logs",
}
#: Never written, whatever ``--writable-dirs`` says: directory -> why. Pod-writable
#: directories, plus kubelet's checkpoints and its ``--cert-dir`` default, and the
#: control plane's certificates and static pods.
NEVER_WRITABLE_DIRS = {
    **POD_WRITABLE_DIRS,
    "/var/lib/kubelet/checkpoints": "container checkpoints",
    "/var/lib/kubelet/pki": "kubelet's certificates",
    "/etc/kubernetes/pki": "the cluster's certificates",
    "/etc/kubernetes/manifests": "static pods: a file there runs as a pod",
}

_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: new files (a drop-in the agent adds) when the caller names no mode
DEFAULT_FILE_MODE = 0o644
#: the directories the agent creates for itself
PRIVATE_DIR_MODE = 0o700


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plain_path_problem(host_path: str) -> str:
    """Why ``host_path`` is not a plain absolute path ("" when it is): the agent writes
    only to paths without ``.``, ``..``, empty components or control characters."""
    if not host_path.startswith("/"):
        return "expected an absolute path"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in host_path):
        return "contains a control character"
    if any(part in ("", ".", "..") for part in host_path[1:].split("/")):
        return "expected a normalized path (no '.', '..' or empty components)"
    return ""


def _host_path(names: tuple[str, ...]) -> str:
    return "/" + "/".join(names)


def _names(host_path: str) -> tuple[str, ...]:
    return PurePosixPath(host_path).parts[1:]


def _within(names: tuple[str, ...], directory: tuple[str, ...]) -> bool:
    """``names`` is ``directory`` or inside it."""
    return names[: len(directory)] == directory


@dataclass(frozen=True)
class FileId:
    """One inode: the file a write created, so that a later write can tell it is still
    that file and not another one put at the same path."""

    device: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileId:
        return cls(st.st_dev, st.st_ino)


@dataclass(frozen=True)
class Expected:
    """What a host file must be right before the agent replaces or removes it."""

    #: sha256 of the bytes it must hold; None: there must be no file
    sha256: str | None
    #: the inode it must be (a file the agent wrote itself); None: any holding the bytes
    file: FileId | None = None

    @classmethod
    def of(cls, data: bytes | None, file: FileId | None = None) -> Expected:
        """The file holding ``data`` (no file when None), optionally that very inode."""
        return cls(None if data is None else sha256(data), file)


@dataclass
class _Walk:
    """A host path resolved through held directory descriptors (``close`` releases them)."""

    host_path: str
    #: (descriptor, name) of every directory held, the root first (its name is "")
    dirs: list[tuple[int, str]]
    #: the last component when it is not a directory (it may not exist); None: the path is
    #: a directory, the last one held
    leaf: str | None = None
    #: names after a directory that does not exist, resolved lexically
    dangling: list[str] = field(default_factory=list)

    @property
    def fd(self) -> int:
        return self.dirs[-1][0]

    @property
    def names(self) -> tuple[str, ...]:
        """The resolved host path of the last directory held, as names."""
        return tuple(name for _, name in self.dirs[1:])

    def where(self, name: str | None = None) -> str:
        return _host_path((*self.names, name) if name else self.names)

    def pop(self) -> None:
        os.close(self.dirs.pop()[0])

    def close(self) -> None:
        while self.dirs:
            self.pop()


@dataclass(frozen=True)
class _Current:
    """The file a write replaces, held open: its descriptor and status."""

    fd: int
    st: os.stat_result


@dataclass(frozen=True)
class HostRoot:
    """The host file system as seen from inside the agent's container."""

    root: Path
    #: host directories the agent may write files into (compared after symlinks)
    writable_dirs: tuple[str, ...] = DEFAULT_WRITABLE_DIRS

    def confined_to(self, *directories: str) -> HostRoot:
        """The same root, writable only inside ``directories`` (e.g. the state directory)."""
        return replace(self, writable_dirs=directories)

    # ------------------------------------------------------------------ resolving
    def _walk(
        self,
        host_path: str | PurePosixPath,
        error: type[AgentError] = ConfigError,
        inspect: Callable[[_Walk, os.stat_result], None] | None = None,
        create: Callable[[tuple[str, ...]], bool] | None = None,
    ) -> _Walk:
        """Resolve ``host_path`` through held descriptors. ``inspect`` sees every directory
        opened below the root; ``create(names)`` says whether a missing directory may be
        created (mode 0700). Failures raise ``error`` naming the path."""
        path = PurePosixPath(host_path)
        if not path.is_absolute():
            raise error(f"host path {str(host_path)!r}: expected an absolute path")
        try:
            walk = _Walk(str(path), [(os.open(self.root, _ROOT_FLAGS), "")])
        except OSError as exc:
            raise error(f"host root {self.root}: cannot open: {exc.strerror}") from exc
        try:
            self._resolve_parts(walk, deque(path.parts[1:]), error, inspect, create)
        except BaseException:
            walk.close()
            raise
        return walk

    def _resolve_parts(
        self,
        walk: _Walk,
        parts: deque[str],
        error: type[AgentError],
        inspect: Callable[[_Walk, os.stat_result], None] | None,
        create: Callable[[tuple[str, ...]], bool] | None,
    ) -> None:
        hops = 0
        while parts:
            part = parts.popleft()
            if part in ("", "."):
                continue
            if walk.dangling:  # below a missing directory: lexical, as the old resolve did
                if part == "..":
                    walk.dangling.pop()
                else:
                    walk.dangling.append(part)
                continue
            if walk.leaf is not None:
                raise error(
                    f"host path {walk.host_path!r}: {walk.where(walk.leaf)} is not a directory"
                )
            if part == "..":
                if len(walk.dirs) > 1:
                    walk.pop()
                continue
            try:
                st = _lookup(walk, part, create)
                if st is None:
                    if parts:
                        walk.dangling.append(part)
                    else:
                        walk.leaf = part
                    continue
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > MAX_SYMLINK_HOPS:
                        raise error(
                            f"host path {walk.host_path!r}: too many levels of symbolic links "
                            "(a symlink loop?)"
                        )
                    _splice(walk, parts, PurePosixPath(os.readlink(part, dir_fd=walk.fd)))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    walk.leaf = part
                    continue
                walk.dirs.append((os.open(part, _DIR_FLAGS, dir_fd=walk.fd), part))
                held = os.fstat(walk.fd)
            except OSError as exc:
                why = "it changed while resolving" if exc.errno == errno.ELOOP else exc.strerror
                raise error(
                    f"host path {walk.host_path!r}: cannot resolve {walk.where(part)}: {why}"
                ) from exc
            if inspect is not None:
                inspect(walk, held)

    def resolve(self, host_path: str | PurePosixPath) -> Path:
        """Return the real location of ``host_path`` under the root, symlinks followed.

        Absolute link targets are re-rooted; ``..`` never climbs above the root. The final
        component need not exist (so that a file can be created there). Raises
        :class:`ConfigError` on a symlink loop or a relative ``host_path``.
        """
        walk = self._walk(host_path)
        try:
            leaf = [walk.leaf] if walk.leaf is not None else []
            return self.root.joinpath(*walk.names, *leaf, *walk.dangling)
        finally:
            walk.close()

    def _resolved_names(self, host_path: str) -> tuple[str, ...]:
        """``host_path`` resolved, as names; lexical when it cannot be resolved."""
        try:
            return self.resolve(host_path).relative_to(self.root).parts
        except AgentError:
            return _names(host_path)

    # ------------------------------------------------------------------ reading
    def read_bytes(self, host_path: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """Read a regular host file whole, refusing directories, devices and huge files."""
        walk = self._walk(host_path)
        try:
            if walk.dangling:
                raise ConfigError(f"{host_path}: cannot open: {os.strerror(errno.ENOENT)}")
            if walk.leaf is None:
                raise ConfigError(f"{host_path}: expected a regular file, found a directory")
            try:
                fd = os.open(walk.leaf, _FILE_FLAGS, dir_fd=walk.fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise ConfigError(f"{host_path}: symlink changed while reading") from exc
                raise ConfigError(f"{host_path}: cannot open: {exc.strerror}") from exc
        finally:
            walk.close()
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
            data = _read_whole(fd, limit)
        except OSError as exc:
            raise ConfigError(f"{host_path}: cannot read: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        if data is None:
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

    # ------------------------------------------------------------------ writing
    def write_file(
        self, host_path: str, data: bytes, *, expect: Expected | None, mode: int | None = None
    ) -> FileId:
        """Replace the file at ``host_path`` (a final symlink's target; the link is kept)
        with ``data`` atomically, if it is still what ``expect`` says; return the new
        file's id. ``expect`` None: the agent's private state, any regular file or none.

        Mode and owner of an existing file are kept unless ``mode`` is given; a new file
        gets ``mode`` or 0644. A temporary file left by a killed write (ours, by name) is
        removed first. Raises :class:`UnsafeWriteError` when the write is refused and
        :class:`HostError` when it fails; either way the file is as it was.
        """
        with self._target(host_path, "write") as (walk, name), self._current(walk, name) as cur:
            tmp = f".{name}.{secrets.token_hex(6)}.tmp"
            created = False
            try:
                _remove_stale_temps(walk.fd, name)
                fd = os.open(tmp, _TEMP_FLAGS, 0o600, dir_fd=walk.fd)
                created = True
                try:
                    _write_all(fd, data)
                    if cur is not None:
                        with contextlib.suppress(PermissionError):
                            os.fchown(fd, cur.st.st_uid, cur.st.st_gid)
                    keep = stat.S_IMODE(cur.st.st_mode) if cur is not None else DEFAULT_FILE_MODE
                    os.fchmod(fd, keep if mode is None else mode)
                    os.fsync(fd)
                    written = FileId.of(os.fstat(fd))
                finally:
                    os.close(fd)
                _verify(walk, name, cur, expect, "write")
                os.rename(tmp, name, src_dir_fd=walk.fd, dst_dir_fd=walk.fd)
                created = False
                os.fsync(walk.fd)
            except OSError as exc:
                raise HostError(
                    f"{host_path}: atomic write of {walk.where(name)} failed: {exc.strerror or exc}"
                ) from exc
            finally:
                if created:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=walk.fd)
        return written

    def remove_file(self, host_path: str, *, expect: Expected) -> None:
        """Remove the file at ``host_path`` durably if it is still what ``expect`` says; a
        missing file is fine. Refusals and failures as for :meth:`write_file`."""
        with self._target(host_path, "remove") as (walk, name), self._current(walk, name) as cur:
            if cur is None:
                return
            _verify(walk, name, cur, expect, "remove")
            try:
                os.unlink(name, dir_fd=walk.fd)
                os.fsync(walk.fd)
            except OSError as exc:
                raise HostError(f"{host_path}: cannot remove: {exc.strerror}") from exc

    def make_private_dir(self, host_path: str) -> None:
        """Create the directory ``host_path`` and its missing parents (mode 0700, each
        created inside the one before it), and bring every directory at or below a writable
        directory on the way to mode 0700 (the agent's own state, e.g. one made 0755 by an
        older version). Refusals as for :meth:`write_file`."""
        writable = [_names(d) for d in self.writable_dirs]

        def may_create(names: tuple[str, ...]) -> bool:
            on_the_way = any(_within(w, names) or _within(names, w) for w in writable)
            return on_the_way and not self._never_writable(names)

        walk = self._walk(host_path, UnsafeWriteError, self._require_root_only, may_create)
        try:
            if walk.leaf is not None or walk.dangling:
                raise UnsafeWriteError(
                    f"{host_path}: refusing to create {walk.where(walk.leaf)}: expected a "
                    "directory inside the writable directories "
                    f"({', '.join(self.writable_dirs)})"
                )
            self._require_writable(host_path, walk.names, "create", inclusive=True)
            for depth, (fd, _) in enumerate(walk.dirs):
                names = walk.names[:depth]
                private = depth and any(_within(names, w) for w in writable)
                if private and stat.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_DIR_MODE:
                    os.fchmod(fd, PRIVATE_DIR_MODE)
        except OSError as exc:
            raise HostError(f"{host_path}: cannot make it private: {exc.strerror}") from exc
        finally:
            walk.close()

    @contextlib.contextmanager
    def _target(self, host_path: str, verb: str) -> Iterator[tuple[_Walk, str]]:
        """The held directory of the file ``host_path`` and the file's name, once the path
        passed every check (plain, root-only directories, writable location)."""
        problem = plain_path_problem(host_path)
        if problem:
            raise UnsafeWriteError(f"host path {host_path!r}: refusing to {verb}: {problem}")
        walk = self._walk(host_path, UnsafeWriteError, self._require_root_only)
        try:
            if walk.dangling:
                raise UnsafeWriteError(
                    f"{host_path}: no such directory {walk.where(walk.dangling[0])}"
                )
            if walk.leaf is None:
                raise UnsafeWriteError(
                    f"{host_path}: expected a regular file, found a directory at {walk.where()}"
                )
            self._require_writable(host_path, (*walk.names, walk.leaf), verb)
            yield walk, walk.leaf
        finally:
            walk.close()

    @contextlib.contextmanager
    def _current(self, walk: _Walk, name: str) -> Iterator[_Current | None]:
        """The existing regular file ``name`` of the held directory, open (None: none)."""
        try:
            before = os.stat(name, dir_fd=walk.fd, follow_symlinks=False)
            if not stat.S_ISREG(before.st_mode):
                kind = "a directory" if stat.S_ISDIR(before.st_mode) else "not a regular file"
                raise UnsafeWriteError(
                    f"{walk.host_path}: expected a regular file, found {kind} at {walk.where(name)}"
                )
            fd = os.open(name, _FILE_FLAGS, dir_fd=walk.fd)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            raise UnsafeWriteError(
                f"{walk.host_path}: cannot open {walk.where(name)}: {exc.strerror}"
            ) from exc
        try:
            yield _Current(fd, os.fstat(fd))
        finally:
            os.close(fd)

    def _require_root_only(self, walk: _Walk, st: os.stat_result) -> None:
        """A directory on a write's way is root's alone: owned by root (or by the agent's
        own user, which is root in a real deployment) and writable by no group or other
        user, sticky or not — anyone else who could rename entries in it could redirect
        the write."""
        if st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return
        raise UnsafeWriteError(
            f"{walk.host_path}: refusing to write through {walk.where()}: owned by uid "
            f"{st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}; expected a directory "
            "owned by root and writable by no one else"
        )

    def _never_writable(self, names: tuple[str, ...]) -> str:
        """The never-writable directory ``names`` is in, "" when none: by its path, or by
        where it leads (``/var/lib/kubelet`` a symlink to ``/data/kubelet``)."""
        for directory in NEVER_WRITABLE_DIRS:
            if _within(names, _names(directory)) or _within(names, self._resolved_names(directory)):
                return directory
        return ""

    def _require_writable(
        self, host_path: str, names: tuple[str, ...], verb: str, *, inclusive: bool = False
    ) -> None:
        """``names`` (a resolved location) is inside a writable directory (or is one, when
        ``inclusive``) and in no never-writable one. Writable directories are taken as
        written, not resolved: swapping one for a symlink must not move the allowance."""
        where = _host_path(names)
        never = self._never_writable(names)
        if never:
            raise UnsafeWriteError(
                f"{host_path}: refusing to {verb} {where}: inside {never} "
                f"({NEVER_WRITABLE_DIRS[never]}), which the agent never writes"
            )
        for directory in self.writable_dirs:
            allowed = _names(directory)
            if _within(names, allowed) and (inclusive or len(names) > len(allowed)):
                return
        raise UnsafeWriteError(
            f"{host_path}: refusing to {verb} {where}: not inside a writable directory "
            f"({', '.join(self.writable_dirs) or 'none'}; see --writable-dirs)"
        )


def _lookup(
    walk: _Walk, part: str, create: Callable[[tuple[str, ...]], bool] | None
) -> os.stat_result | None:
    """``part`` of the held directory, not followed; a missing directory is created when
    ``create`` says so (mode 0700), else None."""
    try:
        return os.stat(part, dir_fd=walk.fd, follow_symlinks=False)
    except FileNotFoundError:
        if create is None or not create((*walk.names, part)):
            return None
    os.mkdir(part, PRIVATE_DIR_MODE, dir_fd=walk.fd)
    return os.stat(part, dir_fd=walk.fd, follow_symlinks=False)


def _splice(walk: _Walk, parts: deque[str], target: PurePosixPath) -> None:
    """Continue with a symlink's target: from the root when it is absolute, else from
    the directory holding the link."""
    if target.is_absolute():
        while len(walk.dirs) > 1:
            walk.pop()
        parts.extendleft(reversed(target.parts[1:]))
    else:
        parts.extendleft(reversed(target.parts))


def _verify(
    walk: _Walk, name: str, cur: _Current | None, expect: Expected | None, verb: str
) -> None:
    """Right before the rename or unlink: ``name`` is still the file opened before (or
    still absent), and it is what ``expect`` says."""

    def refuse(why: str) -> UnsafeWriteError:
        return UnsafeWriteError(
            f"{walk.host_path}: refusing to {verb} {walk.where(name)}: {why}; nothing was changed"
        )

    try:
        now: FileId | None = FileId.of(os.stat(name, dir_fd=walk.fd, follow_symlinks=False))
    except FileNotFoundError:
        now = None
    if cur is None:
        if now is not None:
            raise refuse("a file appeared there while the new one was written")
        if expect is not None and expect.sha256 is not None:
            raise refuse(
                f"expected the file the agent read (sha256 {expect.sha256[:12]}), found none"
            )
        return
    held = FileId.of(cur.st)
    if now != held:
        raise refuse("the file was replaced while the new one was written")
    if expect is None:
        return
    if expect.sha256 is None:
        raise refuse("expected no file there, found one")
    if expect.file is not None and expect.file != held:
        raise refuse(
            f"it is not the file the agent wrote (inode {held.inode} on device {held.device}, "
            f"expected inode {expect.file.inode} on device {expect.file.device})"
        )
    data = _read_whole(cur.fd, MAX_FILE_BYTES)
    if data is None:
        raise refuse(f"it is larger than {MAX_FILE_BYTES} bytes, not the file the agent read")
    digest = sha256(data)
    if digest != expect.sha256:
        raise refuse(
            f"its content is not what the agent read or wrote (sha256 {digest[:12]}, "
            f"expected {expect.sha256[:12]})"
        )


def _read_whole(fd: int, limit: int) -> bytes | None:
    """All bytes of the open file ``fd`` from its start; None when more than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := os.pread(fd, limit + 1 - size, size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _remove_stale_temps(dir_fd: int, name: str) -> None:
    """A run killed between creating its temporary file and the rename leaves it behind:
    ours only (``.<name>.<random>.tmp``, regular files), removed before the next write."""
    ours = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]+\.tmp")
    for entry in os.listdir(dir_fd):
        if ours.fullmatch(entry):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.stat(entry, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    os.unlink(entry, dir_fd=dir_fd)
