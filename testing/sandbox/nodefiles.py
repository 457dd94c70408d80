"""Where a sandbox node keeps its state, shared by the rig and its stand-in processes.

Standard library only: the systemctl stub and the kubelet stand-in import this module on
every start, so it stays small and cheap. Nothing here imports the agent's own code.

Layout of a node's work directory::

    <workdir>/node.json        NodeConfig (written by SandboxNode, read by the stand-ins)
    <workdir>/init.sh          what the node's PID 1 runs
    <workdir>/root/            the fake host's file system (see testing.sandbox.layouts)
    <workdir>/bin/             kubelet, kube-proxy (symlinks to Python), systemctl (wrapper)
    <workdir>/kubelet.json     written by every kubelet stand-in that starts
    <workdir>/kubelet-starts.jsonl  per kubelet start: pid, time, argv; then pid, serving
    <workdir>/kubelet.fail     fault switch: when present, the kubelet stand-in exits 1
    <workdir>/systemctl.log    one JSON line per systemctl invocation
    <workdir>/systemd/         the stub's unit snapshot and kubelet.service state
    <workdir>/*.log            output of kubelet, kube-proxy, node-cache, the DNS stand-ins
    <workdir>/node-cache/      node-cache's /etc overlay (Corefile.base, resolv.conf, the
                               Corefile it writes) and its /run
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

#: Environment variable naming the node's work directory, set for every stand-in.
NODE_DIR_ENV = "SANDBOX_NODE_DIR"
#: Symlink hops allowed while re-rooting one host path (Linux allows 40).
_MAX_HOPS = 40


class NodeConfig(NamedTuple):
    """What the stand-ins need to know about their node (``<workdir>/node.json``).

    (Not a dataclass: importing dataclasses costs the stub ~15 ms on every call.)
    """

    name: str
    #: the fake host's ``/``
    root: str
    #: real interpreter binary the ``kubelet``/``kube-proxy`` symlinks point to
    python: str
    #: PYTHONPATH for the stand-ins (they run with ``python -S``)
    pythonpath: str
    #: seconds the kubelet stand-in waits before serving /healthz
    healthz_delay: float = 0.0
    #: cluster DNS addresses the kubelet stand-in refuses to start with
    refuse_cluster_dns: tuple[str, ...] = ()


class NodeFiles:
    """Every path of one node's work directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    @property
    def config(self) -> Path:
        return self.workdir / "node.json"

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def bin(self) -> Path:
        return self.workdir / "bin"

    @property
    def init_script(self) -> Path:
        """The script the node's PID 1 runs (how the stub knows it is inside its node)."""
        return self.workdir / "init.sh"

    @property
    def kubelet_json(self) -> Path:
        return self.workdir / "kubelet.json"

    @property
    def kubelet_starts(self) -> Path:
        return self.workdir / "kubelet-starts.jsonl"

    @property
    def kubelet_fail(self) -> Path:
        return self.workdir / "kubelet.fail"

    @property
    def systemctl_log(self) -> Path:
        return self.workdir / "systemctl.log"

    @property
    def systemd(self) -> Path:
        return self.workdir / "systemd"

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def load_config(self) -> NodeConfig:
        data = json.loads(self.config.read_text())
        data["refuse_cluster_dns"] = tuple(data.get("refuse_cluster_dns", ()))
        return NodeConfig(**data)

    def save_config(self, config: NodeConfig) -> None:
        write_json(self.config, config._asdict())

    @classmethod
    def from_env(cls) -> NodeFiles:
        """The node a stand-in process belongs to (from ``$SANDBOX_NODE_DIR``)."""
        value = os.environ.get(NODE_DIR_ENV)
        if not value:
            raise SystemExit(f"{NODE_DIR_ENV} is not set: run this inside a sandbox node")
        return cls(Path(value))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` atomically, so that a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def reroot(root: Path, host_path: str) -> Path:
    """Where ``host_path`` of the fake host lives under ``root``, symlinks followed.

    An absolute link target is taken relative to ``root`` (as the host's kernel would see it), and
    ``..`` never climbs above ``root``. Deliberately independent of
    :mod:`nodelocaldns_agent.hostpaths`, so that the rig checks the agent instead of sharing its
    bugs.
    """
    pending = list(PurePosixPath(host_path).parts[1:])
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        candidate = root.joinpath(*done, part)
        if not candidate.is_symlink():
            done.append(part)
            continue
        hops += 1
        if hops > _MAX_HOPS:
            raise OSError(f"{host_path}: too many levels of symbolic links under {root}")
        target = PurePosixPath(os.readlink(candidate))
        if target.is_absolute():
            done = []
            pending = list(target.parts[1:]) + pending
        else:
            pending = list(target.parts) + pending
    return root.joinpath(*done)
