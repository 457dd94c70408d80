#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian 12 machine (root).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in dnsmasq-base iproute2 util-linux prometheus curl debootstrap systemd-container; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: the `dnsmasq` service package is never pulled in (only the
  # binary, which the tests start inside their own network namespaces).
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import nodelocaldns_agent, pytest, hypothesis, kubernetes, dns" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: pip install -e '.[test]' into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi

bash .ci/install-tools.sh
