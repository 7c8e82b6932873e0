#!/usr/bin/env bash
# Finds a Docker engine with BuildKit for Pants, or starts a private one.
#
#   docker-engine.sh env    print the `export` lines the `pants` wrapper evals (fast when nothing to do)
#   docker-engine.sh cli    print the path of the Docker CLI Pants uses
#   docker-engine.sh stop   stop the private engine, if this script started one
#
# Order: $DOCKER_HOST as given; a private engine this script started earlier; the default socket;
# else start a private engine (installing Debian's docker.io when root on Debian). The private engine
# keeps its images in the user cache, so clones of the repo share them, as with a system engine.
set -euo pipefail
buildroot="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$buildroot/build-support/bootstrap/common.sh"

state="$(cache_dir)/docker"
data_root="$state/data"
# Unix socket paths are limited to 108 bytes, so the run-time files live under /tmp, keyed by data root.
run_dir="/tmp/chromadb-lambda-docker-$(id -u)-$(printf '%s' "$data_root" | sha256sum | cut -c1-8)"
socket="$run_dir/docker.sock"
pidfile="$run_dir/docker.pid"

# A CLI that builds with BuildKit: one with the buildx plugin, or an engine-era CLI (< 23) that uses
# the daemon's embedded BuildKit under DOCKER_BUILDKIT=1.
cli_works_with_buildkit() {
  local cli="$1" version
  "$cli" buildx version >/dev/null 2>&1 && return 0
  version="$("$cli" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')"
  [[ -n "$version" && "$version" -lt 23 ]]
}

find_cli() {
  local cached="$state/cli" cli
  if [[ -f "$cached" ]] && cli="$(cat "$cached")" && [[ -x "$cli" ]]; then
    printf '%s' "$cli"; return 0
  fi
  local candidates
  candidates="$(type -ap docker 2>/dev/null; echo /usr/bin/docker)"
  for cli in $candidates; do
    if [[ -x "$cli" ]] && cli_works_with_buildkit "$cli"; then
      mkdir -p "$state"; printf '%s' "$cli" > "$cached"; printf '%s' "$cli"; return 0
    fi
  done
  return 1
}

engine_answers() { DOCKER_HOST="$1" "$cli" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Asks the engine itself: a pid file can outlive its dockerd (and its pid be reused) after a reboot
# or a killed session.
private_engine_running() {
  [[ -S "$socket" ]] && engine_answers "unix://$socket"
}

# The pid of a dockerd serving our data root, if one runs (e.g. still starting up).
private_engine_pid() {
  local pid
  [[ -f "$pidfile" ]] && pid="$(cat "$pidfile")" && [[ -r "/proc/$pid/cmdline" ]] \
    && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--data-root $data_root " && printf '%s' "$pid"
}

start_private_engine() {
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  is_root || die "no Docker engine reachable and starting one needs root: start Docker or set DOCKER_HOST."
  mkdir -p "$data_root" "$run_dir"
  if [[ -z "$(private_engine_pid)" ]]; then
    # Left by an engine that is gone: dockerd refuses to start over a pid file whose pid now runs.
    rm -f "$pidfile" "$socket"
  else
    log "waiting for the private Docker engine that is already starting"
    wait_for_engine && return 0
  fi
  # No iptables/masquerading: containers reach only this host (there is no route out anyway), and the
  # machine's firewall stays untouched. The default bridge stays: RUN steps need a network.
  setsid dockerd --data-root "$data_root" --exec-root "$run_dir/exec" -H "unix://$socket" \
    --pidfile "$pidfile" --iptables=false --ip-masq=false >"$state/dockerd.log" 2>&1 < /dev/null &
  wait_for_engine || die "the private Docker engine did not start within 30 s; see $state/dockerd.log"
}

wait_for_engine() {
  local i
  for i in $(seq 1 120); do
    engine_answers "unix://$socket" && return 0
    sleep 0.25
  done
  return 1
}

ensure_cli() {
  if ! cli="$(find_cli)"; then
    apt_install docker.io
    cli="$(find_cli)" || die "no Docker CLI that can build with BuildKit (buildx plugin, or a 20.10 CLI)."
  fi
}

cmd_env() {
  ensure_cli
  echo "export PANTS_DOCKER_EXECUTABLE_SEARCH_PATHS='[\"$(dirname "$cli")\"]'"
  if [[ -n "${DOCKER_HOST:-}" ]]; then
    # Said here, before Pants starts, rather than as a failed process in the middle of a build.
    engine_answers "$DOCKER_HOST" \
      || die "DOCKER_HOST=$DOCKER_HOST does not answer (\`docker version\` failed): start that engine, or unset DOCKER_HOST to let ./pants use the default socket or start its own engine."
    return 0
  fi
  if private_engine_running; then
    echo "export DOCKER_HOST='unix://$socket'"
    return 0
  fi
  if [[ -S /var/run/docker.sock ]] && engine_answers unix:///var/run/docker.sock; then
    return 0
  fi
  start_private_engine
  log "started a private Docker engine with BuildKit at unix://$socket (data in $data_root)"
  echo "export DOCKER_HOST='unix://$socket'"
}

cmd_stop() {
  local pid
  pid="$(private_engine_pid)" || true
  if [[ -n "$pid" ]]; then
    kill "$pid"
    log "stopped the private Docker engine at unix://$socket"
  fi
}

case "${1:-}" in
  env) cmd_env ;;
  cli) ensure_cli; printf '%s\n' "$cli" ;;
  stop) cmd_stop ;;
  *) die "usage: $0 env|cli|stop" ;;
esac
