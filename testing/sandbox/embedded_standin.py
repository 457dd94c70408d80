"""Stand-ins for the programs that embed kubelet: ``k3s``, ``rke2`` and MicroK8s's
``kubelite``, started by the systemctl stub as
``<workdir>/bin/<k3s|rke2|kubelite> embedded_standin.py <k3s|rke2|microk8s> ARGS...``
(the binaries are symlinks to Python, so the process is named ``k3s``, ``rke2`` or
``kubelite``, as the real main processes of their units are).

Each works out the kubelet command line the real program would run, from the fake host's
files, with parsers of its own (the product's are deliberately not used):

* ``k3s`` (in-process kubelet, like k3s's pkg/daemons/agent): merges
  ``/etc/rancher/k3s/config.yaml`` and ``config.yaml.d/*.yaml|*.yml`` (file-name order, a
  key replaces, ``key+`` appends: k3s's pkg/configfilearg/parser.go), rewrites
  ``00-k3s-defaults.conf`` in its kubelet.conf.d from the server-wide ``cluster-dns`` at
  every start (as k3s >= 1.32 does; an agent has no such key and gets the server's, here
  the value the file already holds), and runs the kubelet stand-in's logic in this very
  process with ``--config-dir=<kubelet.conf.d>`` plus one ``--<kubelet-arg item>`` each
  (k3s's GetArgs).
* ``rke2``: the same merge of ``/etc/rancher/rke2/config.yaml``, then the kubelet
  stand-in as a **child process** named ``kubelet`` (rke2's pkg/podexecutor execs
  kubelet), waited for.
* ``microk8s``: one flag per line of ``/var/snap/microk8s/current/args/kubelet``
  (``#`` comments and blank lines skipped), in-process like ``kubelite``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from testing.sandbox.kubelet_standin import run_kubelet
from testing.sandbox.layouts import (
    K3S_CONFIG,
    K3S_CONFIG_DIR,
    MICROK8S_ARGS,
    RKE2_CONFIG,
    RKE2_CONFIG_DIR,
    k3s_defaults,
)
from testing.sandbox.nodefiles import NodeFiles, reroot


def merged_config(root: Path, host_path: str) -> dict[str, Any]:
    """config.yaml and its .d files merged the way k3s's config loader merges them."""
    base = reroot(root, host_path)
    dotd = reroot(root, host_path + ".d")
    files = [base] if base.is_file() else []
    if dotd.is_dir():
        files += [
            dotd / name
            for name in sorted(os.listdir(dotd))
            if name.lower().endswith((".yaml", ".yml")) and (dotd / name).is_file()
        ]
    merged: dict[str, Any] = {}
    for path in files:
        doc = yaml.safe_load(path.read_text()) or {}
        for key, value in doc.items():
            name = str(key).removesuffix("+")
            items = value if isinstance(value, list) else [value]
            if str(key).endswith("+") and name in merged:
                old = merged[name] if isinstance(merged[name], list) else [merged[name]]
                merged[name] = old + items
            else:
                merged[name] = value
    return merged


def kubelet_argv(root: Path, config_file: str, config_dir: str) -> list[str]:
    """``--config-dir=... --<item>...`` for the kubelet-arg items in effect."""
    merged = merged_config(root, config_file)
    items = merged.get("kubelet-arg") or []
    items = items if isinstance(items, list) else [items]
    return [f"--config-dir={config_dir}"] + ["--" + str(item).removeprefix("--") for item in items]


def k3s(files: NodeFiles) -> int:
    root = Path(files.load_config().root)
    defaults = reroot(root, f"{K3S_CONFIG_DIR}/00-k3s-defaults.conf")
    # a server's own cluster-dns; an agent gets the server's (here: what it got before)
    handed = yaml.safe_load(defaults.read_text())["clusterDNS"][0] if defaults.exists() else ""
    server_dns = str(merged_config(root, K3S_CONFIG).get("cluster-dns", handed or "10.43.0.10"))
    defaults.parent.mkdir(parents=True, exist_ok=True)
    defaults.write_text(k3s_defaults(server_dns))
    return run_kubelet(files, kubelet_argv(root, K3S_CONFIG, K3S_CONFIG_DIR))


def rke2(files: NodeFiles) -> int:
    root = Path(files.load_config().root)
    argv = kubelet_argv(root, RKE2_CONFIG, RKE2_CONFIG_DIR)
    standin = str(Path(__file__).with_name("kubelet_standin.py"))
    child = subprocess.Popen([str(files.bin / "kubelet"), standin, *argv])

    def stop(signum: int, _frame: object) -> None:
        child.terminate()

    signal.signal(signal.SIGTERM, stop)
    return child.wait()


def microk8s(files: NodeFiles) -> int:
    root = Path(files.load_config().root)
    lines = reroot(root, MICROK8S_ARGS).read_text().splitlines()
    flags = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return run_kubelet(files, flags)


def main(argv: list[str]) -> int:
    files = NodeFiles.from_env()
    programs = {"k3s": k3s, "rke2": rke2, "microk8s": microk8s}
    return programs[argv[0]](files)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
