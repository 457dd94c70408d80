#!/usr/bin/env bash
# The README's first command: a local demo of the agent migrating sandboxed nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'TXT'
usage: bash scripts/demo.sh [--prometheus] [--workdir DIR]

Runs nodelocaldns-agent on three sandboxed nodes on this machine (root, Debian 12): a fake
Kubernetes API server on loopback, each node its own network namespace with a real dnsmasq
on 169.254.20.10 and a kubelet stand-in. The agents move every kubelet's --cluster-dns to
169.254.20.10, at most one kubelet restart at a time; node-3 is held back until its local
DNS answers; then the fleet is reverted. Nothing leaves the machine.

How long: the first run installs what it needs (Debian packages, a .venv: about 1 min on
a stock Debian 12), then the demo itself takes about 15 s (--prometheus adds the seconds
its first scrapes take); later runs start at once. It ends by itself and removes every
namespace, process and file it made; Ctrl-C stops it early and cleans up the same way.

What to look at: the fleet table after each change (node-3 stays behind while its DNS is
down), the kubelet's new --cluster-dns per node, and the revert at the end.

  --prometheus   also start a real Prometheus on loopback and print the per-node state it saw
  --workdir DIR  keep the sandbox's files in DIR (default: a temporary directory)
TXT
}
for arg in "$@"; do
  case "$arg" in -h|--help) usage; exit 0 ;; esac
done

bash scripts/setup.sh demo
exec .venv/bin/python -m testing.demo "$@"
