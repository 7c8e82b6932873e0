# Shared helpers for the bootstrap scripts. Sourced, never run.

PANTS_VERSION="2.17.1"
PEX_VERSION="2.1.137"
# What the Pants venv holds; boto3 is the chromadb_lambda plugin's one requirement (`pants publish`
# authenticates to Amazon ECR with it). A change here updates existing venvs on the next run.
PANTS_VENV_REQUIREMENTS="pantsbuild.pants==$PANTS_VERSION pex==$PEX_VERSION boto3>=1.28,<2"

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

cache_dir() {
  local dir="${CHROMADB_LAMBDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chromadb-lambda}"
  mkdir -p "$dir"
  printf '%s' "$dir"
}

bootstrap_env_file() { printf '%s/pants-%s.env' "$(cache_dir)" "$PANTS_VERSION"; }

pants_venv_dir() { printf '%s/pants-%s-py39' "$(cache_dir)" "$PANTS_VERSION"; }

# Prints the path of a working Python 3.9 interpreter, or fails with what to do.
find_python39() {
  local candidates=()
  [[ -n "${PYTHON39:-}" ]] && candidates+=("$PYTHON39")
  # A pyenv shim named python3.9 may be on PATH and fail when 3.9 is not the active version,
  # so every candidate is run, not just found.
  candidates+=("$(command -v python3.9 || true)")
  if command -v pyenv >/dev/null 2>&1; then
    local root; root="$(pyenv root)"
    candidates+=("$root"/versions/3.9.*/bin/python3.9)
  fi
  candidates+=(/usr/bin/python3.9 /usr/local/bin/python3.9)
  local c
  for c in "${candidates[@]}"; do
    [[ -n "$c" && -x "$c" ]] || continue
    if "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 9)' >/dev/null 2>&1; then
      printf '%s' "$c"
      return 0
    fi
  done
  [[ -n "${PYTHON39:-}" ]] && die "PYTHON39=$PYTHON39 is not a working Python 3.9 with the venv module."
  die "no Python 3.9 found (Pants $PANTS_VERSION needs 3.7-3.9); install it (e.g. \`pyenv install 3.9\`) or set PYTHON39=/path/to/python3.9."
}

is_root() { [[ "$(id -u)" == "0" ]]; }

apt_install() {
  is_root || die "cannot install $* without root; install the Debian packages $* and rerun."
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install $* by hand and rerun."
  log "installing Debian packages: $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
      || die "apt-get install $* failed."
  fi
}

# What the end-to-end tests start on loopback: a registry (Debian's docker-registry) and its htpasswd
# file (apache2-utils' `htpasswd`, for the ECR-authenticated registry of `pants publish` tests).
ensure_test_tools() {
  local missing=()
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
  if (( ${#missing[@]} )); then apt_install "${missing[@]}"; fi
}
