#!/usr/bin/env bash
# The test command (README quick start; CI runs exactly this): lint, types, layering,
# then every test, including the real-systemd suite (pytest -m systemd).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PWD/.tools/bin:$PATH"
ruff check nodelocaldns_agent testing tests bench
ruff format --check nodelocaldns_agent testing tests bench
mypy nodelocaldns_agent
lint-imports
python -m pytest -m "systemd or not systemd" "$@"
