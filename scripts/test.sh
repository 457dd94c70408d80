#!/usr/bin/env bash
# The README's second command (CI runs exactly this): lint, types, layering, then every
# test, including the real-systemd suite (pytest -m systemd). Extra arguments go to pytest.
# The tests run in TEST_WORKERS pytest-xdist processes (default 4; 0: in this process, for
# debugging): most of a test's time is spent waiting for sandbox nodes, agents and kubelet
# stand-ins, so on 2 cores 4 workers took 5 min 6 s where one took 13 min 30 s (the whole
# suite, 1546 tests, with other work beside it; every test is independent of the others:
# own temporary directory, namespaces, ports from the kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PWD/.tools/bin:$PATH"
step() { printf 'test: %s\n' "$*" >&2; }
step "ruff check"
ruff check nodelocaldns_agent testing tests bench
step "ruff format --check"
ruff format --check nodelocaldns_agent testing tests bench
step "mypy"
mypy nodelocaldns_agent
step "lint-imports"
lint-imports
if [ $# -eq 0 ]; then
  step "pytest (every test, the real-systemd suite included)"
else
  step "pytest -m 'systemd or not systemd' $*"
fi
python -m pytest -m "systemd or not systemd" -n "${TEST_WORKERS:-4}" "$@"
