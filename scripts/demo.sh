#!/usr/bin/env bash
# The README's first command: a local demo of the agent migrating sandboxed nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'TXT'
usage: bash scripts/demo.sh [--prometheus] [--workdir DIR]

A short story of nodelocaldns-agent at work, on this machine (root, Debian 12), told in
6 steps of one line each: three sandboxed nodes (each its own network namespace with the
real node-cache on 169.254.20.10 and a kubelet stand-in) on a fake Kubernetes API server
on loopback; the agents move every kubelet's --cluster-dns to 169.254.20.10, one kubelet
restart at a time; node-3 is held back (waiting-for-local-dns) while its node-cache is
down, and migrates once it answers; a pod on every node resolves names every 10 ms
(glibc and musl) while node-cache is updated on each node the chart's way; then the fleet
is reverted as `helm uninstall` does. Nothing leaves the machine.

What to look at: under each step, the rollout as `kubectl nodelocaldns status -w` shows
it (redrawn in place on a terminal, one line per change otherwise): migrated/eligible,
restarts in flight against the limit (1), and each node's state, node-3 waiting for its
local DNS; during the node-cache updates, "pod lookups failed: 0". The last lines are the
summary: per node the kubelet's old -> new DNS, how long it was held back and why, how
long its change took, its kubelet restarts; the pods' failed lookups out of all they
made; the total time.

How long: the first run installs what it needs (Debian packages, a .venv: about 1 min on
a stock Debian 12); the demo itself takes 20 to 35 s (--prometheus: a few seconds more); later
runs start at once. It ends by itself and removes every namespace, process and file it
made; Ctrl-C stops it early and cleans up the same way.

  --prometheus   also run a real Prometheus on loopback, scraping every agent and
                 node-cache, and show what it saw
  --workdir DIR  keep the sandbox's files (agent logs, ...) in DIR (default: a temporary
                 directory, removed at the end)
TXT
}
for arg in "$@"; do
  case "$arg" in -h|--help) usage; exit 0 ;; esac
done

bash scripts/setup.sh demo
exec .venv/bin/python -m testing.demo "$@"
