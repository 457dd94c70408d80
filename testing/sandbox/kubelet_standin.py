"""A kubelet stand-in: works out its cluster DNS like kubelet, reports it, serves /healthz.

Started by the systemctl stub as ``<workdir>/bin/kubelet kubelet_standin.py FLAGS...``
(``kubelet`` is a symlink to Python, so ``/proc/PID/comm`` and psutil say ``kubelet``).

Effective cluster DNS, as kubelet computes it: ``clusterDNS`` of the ``--config`` file,
overridden by ``*.conf`` drop-ins of ``--config-dir`` in lexical order, overridden by
``--cluster-dns`` flags (repeatable, comma-separated). Host paths are resolved under the
node's fake root. It then writes ``<workdir>/kubelet.json`` and serves
``GET http://127.0.0.1:10248/healthz`` -> ``ok`` in the node's network namespace.

Every start is logged first as one JSON line (pid, time, argv) in
``<workdir>/kubelet-starts.jsonl``, and again (pid, serving) once /healthz is served.
Like a kubelet that does not come back, it exits 1 without serving when a config file is
missing or malformed, a cluster DNS address is not an IP or is one the node refuses
(``NodeConfig.refuse_cluster_dns``), or ``<workdir>/kubelet.fail`` exists. The project's
own parsers are deliberately not used.

The same stand-in runs in both kinds of sandbox node: started by the systemctl stub, or by a
real systemd (:mod:`testing.systemd_node`, where the node's root is ``/``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testing.sandbox.constants import HEALTHZ_PORT
from testing.sandbox.nodefiles import NodeFiles, reroot, write_json
from testing.sandbox.standins import serve

_VALUE_FLAGS = ("cluster-dns", "config", "config-dir")
_API_VERSIONS = ("kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1")


class KubeletFailure(Exception):
    """kubelet would refuse to start; the message is what it would log."""


@dataclass
class Flags:
    #: None when no --cluster-dns flag was given (an empty flag value clears the list)
    cluster_dns: list[str] | None = None
    config: str | None = None
    config_dir: str | None = None


def parse_flags(argv: Iterable[str]) -> Flags:
    """The flags that decide the cluster DNS, pflag-style (``--f=v`` or ``--f v``)."""
    flags = Flags()
    args = iter(argv)
    for arg in args:
        if arg == "--":
            break
        name, eq, value = arg.removeprefix("--").partition("=")
        name = name.replace("_", "-")
        if not arg.startswith("--") or name not in _VALUE_FLAGS:
            continue
        if not eq:
            following = next(args, None)
            if following is None:
                raise KubeletFailure(f"flag needs an argument: --{name}")
            value = following
        if name == "cluster-dns":
            flags.cluster_dns = (flags.cluster_dns or []) + [v for v in value.split(",") if v]
        elif name == "config":
            flags.config = value
        else:
            flags.config_dir = value
    return flags


def load_config(root: Path, host_path: str) -> dict[str, Any]:
    """A KubeletConfiguration document (YAML or JSON) from the fake host."""
    try:
        doc = yaml.safe_load(reroot(root, host_path).read_bytes())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeletFailure(f"failed to load kubelet config file {host_path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeletFailure(f"{host_path}: expected a KubeletConfiguration mapping")
    if doc.get("kind") != "KubeletConfiguration" or doc.get("apiVersion") not in _API_VERSIONS:
        raise KubeletFailure(
            f"{host_path}: expected kind KubeletConfiguration, apiVersion kubelet.config.k8s.io/"
            f"v1beta1; got {doc.get('kind')!r}, {doc.get('apiVersion')!r}"
        )
    dns = doc.get("clusterDNS", [])
    if not isinstance(dns, list) or not all(isinstance(v, str) for v in dns):
        raise KubeletFailure(f"{host_path}: clusterDNS must be a list of strings, got {dns!r}")
    return doc


def effective_cluster_dns(root: Path, flags: Flags) -> list[str]:
    """The cluster DNS kubelet would use: flags > config-dir drop-ins > config file."""
    dns: list[str] = []
    sources = [flags.config] if flags.config else []
    if flags.config_dir:
        directory = reroot(root, flags.config_dir)
        if not directory.is_dir():
            raise KubeletFailure(f"--config-dir {flags.config_dir}: not a directory")
        names = sorted(n for n in os.listdir(directory) if n.endswith(".conf"))
        sources += [f"{flags.config_dir.rstrip('/')}/{n}" for n in names]
    for source in sources:
        dns = load_config(root, source).get("clusterDNS", dns)
    if flags.cluster_dns is not None:
        dns = flags.cluster_dns
    for value in dns:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise KubeletFailure(
                f"invalid configuration: option {value!r} specified for clusterDNS; "
                "valid values are IPv4 or IPv6 addresses"
            ) from exc
    return dns


def main(argv: list[str]) -> int:
    return run_kubelet(NodeFiles.from_env(), argv)


def run_kubelet(files: NodeFiles, argv: list[str]) -> int:
    """kubelet with the flags ``argv``, in this process (an embedded kubelet runs it inside
    the program that embeds it, see embedded_standin.py)."""
    config = files.load_config()
    start = {"pid": os.getpid(), "time": time.time(), "argv": argv}
    with open(files.kubelet_starts, "a", encoding="utf-8") as starts:
        starts.write(json.dumps(start) + "\n")
    try:
        if files.kubelet_fail.exists():
            raise KubeletFailure(f"fault injected: {files.kubelet_fail} exists")
        flags = parse_flags(argv)
        dns = effective_cluster_dns(Path(config.root), flags)
        refused = [value for value in dns if value in config.refuse_cluster_dns]
        if refused:
            raise KubeletFailure(f"refusing to start with --cluster-dns={','.join(refused)}")
    except KubeletFailure as exc:
        print(f"kubelet[{os.getpid()}]: {exc}", file=sys.stderr)
        return 1
    report: dict[str, Any] = {
        "pid": os.getpid(),
        "argv": argv,
        "cluster_dns": dns,
        "started": time.time(),
        "config": flags.config,
        "config_dir": flags.config_dir,
        "healthz": False,
    }
    write_json(files.kubelet_json, report)
    print(f"kubelet[{os.getpid()}]: cluster DNS {dns}", file=sys.stderr)
    time.sleep(config.healthz_delay)

    def listening() -> None:
        serving = time.time()
        write_json(files.kubelet_json, {**report, "healthz": True, "serving": serving})
        with open(files.kubelet_starts, "a", encoding="utf-8") as starts:
            starts.write(json.dumps({"pid": os.getpid(), "serving": serving}) + "\n")

    serve(HEALTHZ_PORT, {"/healthz": "ok"}, listening)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
