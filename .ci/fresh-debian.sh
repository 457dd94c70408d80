#!/usr/bin/env bash
# The README's two commands on a fresh Debian 12, from a clean clone of the commit under test:
#
#   bash .ci/fresh-debian.sh [PYTEST ARGS...]
#
# 1. A stock Debian 12 root file system: `debootstrap --include=python3 bookworm` (the
#    default variant: what a Debian 12 install has, no python3-venv, no pip), built once and
#    cached as $NODELOCALDNS_AGENT_TEST_CACHE/fresh-debian-<hash of the arguments> (default
#    /var/cache/nodelocaldns-agent-tests, beside the real-systemd suite's root file system;
#    built in a temporary directory renamed into place when complete, so an interrupted
#    build is never reused).
# 2. A throw-away copy of it (`cp -a`: the tests inside mount overlays of their own, which an
#    overlay below cannot carry) with `git clone` of this repository's HEAD in
#    /root/nodelocaldns-agent. Uncommitted changes are not in it.
# 3. systemd-nspawn runs, in that copy, as root: `python3 -m venv .venv`, which must fail as
#    on a stock Debian 12 and leave a half-made .venv (scripts/setup.sh must rebuild it);
#    `bash scripts/demo.sh`, then
#    `bash scripts/test.sh PYTEST ARGS` (the real-systemd suite boots its nodes with a nested
#    systemd-nspawn: hence --capability=all). The machine's network is shared, so apt and pip
#    reach the registries as this machine does; this machine's CA bundle is copied in for
#    pip (PIP_CERT) when it has one (a TLS-inspecting proxy), nothing else of it but
#    ../shared, read-only beside the clone when it exists (as CI lays it out).
#    The real-systemd suite's cache directory is bound in, so its own debootstrap is shared
#    with this machine's runs.
# The copy is deleted afterwards, also on failure or Ctrl-C. (nspawn's closing "Attempted to
# remove disk file system under /run/systemd/nspawn/propagate/..." is harmless: nothing is
# left there.) Needs root, debootstrap,
# systemd-nspawn (systemd-container) and git: `bash scripts/setup.sh test` installs them.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${NODELOCALDNS_AGENT_TEST_CACHE:-/var/cache/nodelocaldns-agent-tests}
limit=${FRESH_DEBIAN_TIMEOUT:-1800}
suite=bookworm

step() { printf 'fresh-debian: %s\n' "$*" >&2; }
fail() { step "$*"; exit 1; }
now() { date +%s; }

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn git flock; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run 'bash scripts/setup.sh test'"
done
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  step "note: uncommitted changes in $repo are not tested (the clone is of HEAD)"
fi

# The Debian mirror apt uses here, read as the real-systemd suite reads it.
py=python3; [ -x "$repo/.venv/bin/python" ] && py="$repo/.venv/bin/python"
mirror=$(cd "$repo" && "$py" -c 'from testing.systemd_node import debian_mirror; print(debian_mirror())' 2>/dev/null) \
  || mirror=http://deb.debian.org/debian
debootstrap_args=(--include=python3 "$suite")
key=$(printf '%s\n' "${debootstrap_args[@]}" "$mirror" revision=1 | sha256sum | cut -c1-16)
rootfs="$cache/fresh-debian-$key"

# 1. the cached stock root file system
if [ -d "$rootfs" ]; then
  step "stock Debian 12 root file system cached: $rootfs"
else
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -d "$rootfs" ]; then
    rm -rf "$cache"/.build-fresh-debian-*
    build="$cache/.build-fresh-debian-$key-$$"
    step "debootstrap ${debootstrap_args[*]} from $mirror (once, cached as $rootfs)"
    t=$(now)
    if ! debootstrap "${debootstrap_args[@]}" "$build" "$mirror" >"$cache/.fresh-debian.log" 2>&1; then
      tail -20 "$cache/.fresh-debian.log" >&2
      rm -rf "$build"
      fail "debootstrap failed (log: $cache/.fresh-debian.log)"
    fi
    rm -f "$build"/var/cache/apt/archives/*.deb
    mv "$build" "$rootfs"
    step "debootstrap took $(($(now) - t)) s"
  fi
  exec 9>&-
fi

# 2. a throw-away copy with a clean clone of HEAD
# (copies left by a run that was killed outright: their owner, in ./pid, is gone)
for stale in /var/tmp/nodelocaldns-fresh-debian.*; do
  [ -d "$stale" ] || continue
  owner=$(cat "$stale/pid" 2>/dev/null || true)
  if [ -z "$owner" ] || ! kill -0 "$owner" 2>/dev/null; then
    step "removing $stale (left by an earlier run)"
    grep -o " $stale/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$stale"
  fi
done
work=$(mktemp -d /var/tmp/nodelocaldns-fresh-debian.XXXXXX)
echo $$ >"$work/pid"
cleanup() {
  step "removing the copy $work"
  # nothing may stay mounted below the copy before it is deleted
  grep -o " $work/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
t=$(now)
cp -a "$rootfs" "$work/root"
src=/root/nodelocaldns-agent
if commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null); then
  git clone -q --no-local "$repo" "$work/root$src"
  git -C "$work/root$src" checkout -q --detach "$commit"
  step "copied the root file system and cloned $commit in $(($(now) - t)) s"
else  # a source tree without git: its files, less what setup makes
  mkdir -p "$work/root$src"
  tar -C "$repo" --exclude=./.venv --exclude=./.tools -cf - . | tar -C "$work/root$src" -xf -
  step "copied the root file system and $repo (not a git clone: no .git) in $(($(now) - t)) s"
fi

extra=()
cert=${PIP_CERT:-}
[ -n "$cert" ] || cert=$(python3 -m pip config get global.cert 2>/dev/null || true)
if [ -n "$cert" ] && [ -f "$cert" ]; then
  mkdir -p "$work/root/etc/ssl"
  cp "$cert" "$work/root/etc/ssl/host-ca-bundle.crt"
  extra+=(--setenv=PIP_CERT=/etc/ssl/host-ca-bundle.crt)
fi
# shared/ beside the repository (as CI lays it out), read-only, beside the clone too
if [ -d "$repo/../shared" ]; then
  extra+=(--bind-ro="$(cd "$repo/../shared" && pwd):/root/shared")
fi

# 3. the README's two commands, timed, inside the fresh Debian
quoted=''
[ $# -eq 0 ] || quoted=$(printf ' %q' "$@")
step "systemd-nspawn: bash scripts/demo.sh, then bash scripts/test.sh${quoted} (limit ${limit} s)"
t=$(now)
rc=0
timeout --kill-after=30 "$limit" systemd-nspawn --quiet --directory="$work/root" \
  --register=no --keep-unit --capability=all --console=pipe --machine="nla-fresh-$$" \
  --bind="$cache:/var/cache/nodelocaldns-agent-tests" "${extra[@]}" \
  --setenv=LANG=C.UTF-8 --chdir="$src" -- /bin/bash -c '
    set -euo pipefail
    # First what a stock Debian 12 does to a hand-made venv (no python3-venv): it fails
    # and leaves a half-made .venv behind, which scripts/setup.sh must rebuild.
    if python3 -m venv .venv >/dev/null 2>&1 || [ ! -x .venv/bin/python ]; then
      echo "fresh-debian: expected python3 -m venv to fail and leave .venv/bin/python" >&2
      exit 1
    fi
    echo "fresh-debian: inside: python3 -m venv failed as on a stock Debian 12; half-made .venv left" >&2
    t0=$(date +%s)
    bash scripts/demo.sh
    t1=$(date +%s)
    bash scripts/test.sh "$@"
    t2=$(date +%s)
    echo "fresh-debian: inside: demo (with its setup) $((t1 - t0)) s, tests (with theirs) $((t2 - t1)) s" >&2
  ' fresh-debian "$@" </dev/null || rc=$?
step "finished in $(($(now) - t)) s with exit status $rc"
exit "$rc"
