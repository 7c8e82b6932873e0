# Shared helpers for the bootstrap scripts. Sourced, never run.

PANTS_VERSION="2.17.1"
PEX_VERSION="2.1.137"
# What the Pants venv holds; boto3 is the chromadb_lambda plugin's one requirement (`pants publish`
# authenticates to Amazon ECR with it). A change here updates existing venvs on the next run.
PANTS_VENV_REQUIREMENTS="pantsbuild.pants==$PANTS_VERSION pex==$PEX_VERSION boto3>=1.28,<2"

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

# Plain assignments (no subshell) so that the `pants` wrapper's warm path forks nothing for them.
CACHE_DIR="${CHROMADB_LAMBDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chromadb-lambda}"
PANTS_VENV_DIR="$CACHE_DIR/pants-$PANTS_VERSION-py39"
BOOTSTRAP_ENV_FILE="$CACHE_DIR/pants-$PANTS_VERSION.env"
# Pants' native (Rust) client; the wheel installs it without its execute bit (pants-venv.sh sets it).
PANTS_NATIVE_CLIENT="$PANTS_VENV_DIR/lib/python3.9/site-packages/pants/bin/native_client"

cache_dir() {
  mkdir -p "$CACHE_DIR"
  printf '%s' "$CACHE_DIR"
}

bootstrap_env_file() { cache_dir >/dev/null; printf '%s' "$BOOTSTRAP_ENV_FILE"; }

pants_venv_dir() { cache_dir >/dev/null; printf '%s' "$PANTS_VENV_DIR"; }

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

# ensure_venv DIR STAMP PYTHON PIP-ARGS...: a venv in DIR holding PIP-ARGS, made anew when STAMP (what
# it should hold) differs from the one written when it was last completed. pip ignores the machine's
# pip config (its find-links and constraints break installs here) and trusts the system CA bundle
# (a TLS-intercepting gateway). Fails with `die` naming what could not be installed.
ensure_venv() {
  local dir="$1" stamp="$2" python="$3"
  shift 3
  [[ "$(cat "$dir/.complete" 2>/dev/null)" == "$stamp" ]] && return 0
  rm -rf "$dir"
  "$python" -m venv "$dir" || die "$python could not create a venv in $dir."
  local cert=()
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && cert=(--cert /etc/ssl/certs/ca-certificates.crt)
  PIP_CONFIG_FILE=/dev/null "$dir/bin/pip" install --quiet --disable-pip-version-check "${cert[@]}" "$@" \
    || die "pip could not install $*; is PyPI reachable?"
  printf '%s' "$stamp" > "$dir/.complete"
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

# --- What the `pants` wrapper checks on every call, forking nothing (see docs/wrapper.md) ---

# True when a server listens on the unix socket at $1 in this network namespace. A dockerd killed
# with -9 leaves its socket file behind; /proc/net/unix lists only sockets a process still holds.
unix_socket_listens() {
  local _num _refs _proto flags _type st _inode path
  [[ -r /proc/net/unix ]] || return 1
  while read -r _num _refs _proto flags _type st _inode path; do
    # 00010000: accepting connections (listening); 01: unconnected.
    [[ "$path" == "$1" && "$flags" == 00010000 && "$st" == 01 ]] && return 0
  done < /proc/net/unix
  return 1
}

# True when the engine state file $1 (written by engine-state.sh for the build root $2) still holds:
# the same DOCKER_HOST asked for; the engine's socket still listening and not recreated since it was
# written (a restarted or another engine makes a new one); the Docker CLI still there; the upstream
# image's config still on disk and, if the engine's tag store changed since, its name still pointing
# at it; pants.toml and the bootstrap scripts not edited since. The file also defines
# `engine_state_exports`, which exports what the engine check chose (DOCKER_HOST, the CLI's directory).
# Every test is a bash builtin (but one grep when some image was tagged since): no engine round trip.
# Where the `pants` wrapper remembers the engine and the upstream image it found (engine-state.sh).
engine_state_file() { printf '%s' "$1/.pants.d/chromadb-lambda-wrapper/engine-state.sh"; }

# ensure_engine ROOT: find (or start) the Docker engine and ensure the upstream image, as the `pants`
# wrapper does on a call that cannot reuse what it remembered; exports DOCKER_HOST (and the engine's
# other variables) into this shell, and sets `state_cli` to the docker CLI to use.
ensure_engine() {
  local state; state="$(engine_state_file "$1")"
  "$1/build-support/bootstrap/engine-state.sh" refresh "$state"
  # shellcheck disable=SC1090
  source "$state"
  engine_state_exports
}

engine_state_fresh() {
  local file="$1" root="$2" script
  [[ -f "$file" && ! "$root/pants.toml" -nt "$file" ]] || return 1
  for script in common.sh engine-state.sh docker-engine.sh upstream-image.sh; do
    [[ ! "$root/build-support/bootstrap/$script" -nt "$file" ]] || return 1
  done
  local state_version="" state_docker_host="" state_socket="" state_cli="" state_tags_file="" \
    state_tag_entry="" state_image_file="" state_image_unchecked=""
  # shellcheck disable=SC1090
  source "$file" || return 1
  [[ "$state_version" == 1 && "${DOCKER_HOST:-}" == "$state_docker_host" && -x "$state_cli" ]] || return 1
  # Only engines behind a local unix socket are remembered; others (tcp://, ssh://) are asked each time.
  [[ -n "$state_socket" && -S "$state_socket" && ! "$state_socket" -nt "$file" ]] || return 1
  unix_socket_listens "$state_socket" || return 1
  if [[ -n "$state_tags_file" ]]; then
    [[ -f "$state_image_file" ]] || return 1
    if [[ "$state_tags_file" -nt "$file" ]]; then
      # Some image was tagged or removed since (the engine may be shared): is ours still named so?
      grep -qF -- "$state_tag_entry" "$state_tags_file" || return 1
    fi
  fi
  ENGINE_STATE_IMAGE_UNCHECKED="$state_image_unchecked"
}
