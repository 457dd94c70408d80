#!/usr/bin/env bash
# The main job (README quick start): a local demo of the agent migrating sandboxed nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec .venv/bin/python -m testing.demo "$@"
