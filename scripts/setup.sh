#!/usr/bin/env bash
# Installs what one of the README's two commands needs on a Debian 12 machine (root), from a
# stock system on: `setup.sh demo` for scripts/demo.sh, `setup.sh test` (the default) for
# scripts/test.sh. One line per step on stderr. Idempotent: a second run only checks.
#
#   demo  Debian packages: python3-venv (stock Debian lacks it: `python3 -m venv` fails with
#         "ensurepip is not available"), dnsmasq-base (the nodes' local DNS), iproute2 and
#         util-linux (namespaces), prometheus (`demo.sh --prometheus`);
#         .venv with the package, its runtime dependencies and rich for the live view
#         (`pip install -e '.[plugin]'`).
#   test  all of the above, plus debootstrap and systemd-container (the real-systemd suite),
#         git (the fresh-Debian check); `pip install -e '.[test,docs]'` (pytest, ruff, mypy,
#         ...; matplotlib for the pictures in docs/img, `python -m testing.pictures`);
#         .ci/install-tools.sh: helm, kubectl, checkov, cel-python, promtool (the demo:
#         helm and kubectl only).
#
# A .venv without a working python and pip (say, left half-made by a failed
# `python3 -m venv`) is deleted and made anew.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-test}
# iptables: the real node-cache sets up its NOTRACK rules inside the nodes (-setupiptables);
# gcc libc6-dev musl-tools: the pods' resolver loops (testing/sandbox/resolver.c), built
# against glibc and, static, against musl
demo_apt=(python3-venv dnsmasq-base iproute2 util-linux iptables prometheus gcc libc6-dev musl-tools)
test_apt=("${demo_apt[@]}" debootstrap systemd-container git)
case "$what" in
  demo) apt_pkgs=("${demo_apt[@]}") extra='[plugin]' ;;
  test) apt_pkgs=("${test_apt[@]}") extra='[test,docs]' ;;
  *) echo "usage: scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac

step() { printf 'setup: %s\n' "$*" >&2; }
# Runs a command quietly; shows its output only when it fails.
quiet() {
  local out
  out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; step "failed: $*"; return 1; }
}

# 1. Debian packages
need_apt=()
for pkg in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  quiet apt-get update -qq
  # --no-install-recommends: the `dnsmasq` service package is never pulled in (only the
  # binary, which the demo and the tests start inside their own network namespaces).
  quiet apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
else
  step "Debian packages present (${apt_pkgs[*]})"
fi

# 2. the virtual environment: rebuilt when its python or pip does not run
if [ -e .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  step ".venv has no working python/pip (a failed earlier setup?): deleting it"
  rm -rf .venv
fi
if [ ! -e .venv ]; then
  step "python3 -m venv .venv"
  python3 -m venv .venv
  quiet .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
else
  step ".venv present ($(.venv/bin/python --version))"
fi

# 3. the package (editable) with what this command needs
# (what the tests installed covers the demo too)
stamp=".venv/.installed-$what"
fresh=no
for s in "$stamp" .venv/.installed-test; do
  [ -e "$s" ] && [ ! pyproject.toml -nt "$s" ] && fresh=yes
done
if [ "$fresh" = no ] || ! .venv/bin/python -c "import nodelocaldns_agent" 2>/dev/null; then
  step "pip install -e '.$extra' into .venv"
  quiet .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extra"
  touch "$stamp"
else
  step "pip: .venv up to date for $what"
fi

# 4. the chart/image test tools; the demo needs helm alone (its nodes run node-cache with
# the Corefile and arguments rendered from the chart)
if [ "$what" = test ]; then
  step "test tools (.ci/install-tools.sh)"
  PYTHON="$PWD/.venv/bin/python" bash .ci/install-tools.sh
else
  step "helm, to render the chart's node-cache (.ci/install-tools.sh helm)"
  PYTHON="$PWD/.venv/bin/python" bash .ci/install-tools.sh helm
fi
