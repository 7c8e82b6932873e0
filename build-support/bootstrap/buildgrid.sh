#!/usr/bin/env bash
# A REAPI cache server (BuildGrid) for Pants' remote cache: what CI runners share process results through.
#
#   buildgrid.sh ensure            install BuildGrid into a venv in the user cache (once, ~45 s)
#   buildgrid.sh start DIR [PORT]  serve an action cache + CAS on 127.0.0.1:PORT (default 50051),
#                                  storing blobs under DIR; prints the `grpc://` address for
#                                  `[GLOBAL].remote_store_address` once the port answers
#   buildgrid.sh stop DIR          stop the server started with DIR
#
# BuildGrid is the reference server here; any REAPI server (bazel-remote, BuildBuddy, NativeLink...)
# serves Pants the same way. BuildGrid 0.4 needs Python >= 3.11 (set PYTHON311 to choose one).
set -euo pipefail
buildroot="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$buildroot/build-support/bootstrap/common.sh"

BUILDGRID_VERSION="0.4.4"
venv="$(cache_dir)/buildgrid-$BUILDGRID_VERSION"

find_python311_plus() {
  local candidates=() c
  [[ -n "${PYTHON311:-}" ]] && candidates+=("$PYTHON311")
  if command -v pyenv >/dev/null 2>&1; then
    local root; root="$(pyenv root)"
    candidates+=("$root"/versions/3.1[1-9].*/bin/python3)
  fi
  candidates+=("$(command -v python3 || true)" /usr/bin/python3 /usr/local/bin/python3)
  for c in "${candidates[@]}"; do
    [[ -n "$c" && -x "$c" ]] || continue
    if "$c" -c 'import sys, venv; assert sys.version_info[:2] >= (3, 11)' >/dev/null 2>&1; then
      printf '%s' "$c"; return 0
    fi
  done
  die "BuildGrid $BUILDGRID_VERSION needs Python >= 3.11 and none was found: install one, or set PYTHON311=/path/to/python3."
}

ensure() {
  [[ "$(cat "$venv/.complete" 2>/dev/null)" == "$BUILDGRID_VERSION" ]] && return 0
  local python; python="$(find_python311_plus)"
  log "installing BuildGrid $BUILDGRID_VERSION with $python (once, ~45 s)"
  ensure_venv "$venv" "$BUILDGRID_VERSION" "$python" "buildgrid==$BUILDGRID_VERSION"
}

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local dir="${1:?usage: buildgrid.sh start DIR [PORT]}" port="${2:-50051}"
  ensure
  mkdir -p "$dir/cas"
  dir="$(cd "$dir" && pwd)"
  port_answers "$port" && die "127.0.0.1:$port is already taken: pass another PORT."
  # An action cache and a CAS on disk, no execution service, no auth, loopback only. The instance
  # name is what Pants sends as `[GLOBAL].remote_instance_name`.
  cat > "$dir/buildgrid.yml" <<EOF
description: REAPI cache for Pants (chromadb-lambda CI)
server:
  - !channel
    address: "127.0.0.1:$port"
    insecure-mode: true
authorization:
  method: none
# gRPC refuses calls beyond this many at once ("Concurrent RPC limit exceeded"); Pants opens up to
# \`[GLOBAL].remote_store_rpc_concurrency\` (128) at a time.
thread-pool-size: 128
storages:
  - !disk-storage &cas
    path: $dir/cas
caches:
  - !lru-action-cache &action-cache
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: main
    services:
      - !action-cache
        cache: *action-cache
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
EOF
  setsid "$venv/bin/bgd" server start --pid-file "$dir/bgd.pid" "$dir/buildgrid.yml" \
    >"$dir/buildgrid.log" 2>&1 < /dev/null &
  local pid=$!
  for _ in $(seq 1 150); do
    if port_answers "$port"; then
      printf '%s' "$pid" > "$dir/bgd.pid"
      printf 'grpc://127.0.0.1:%s\n' "$port"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  die "BuildGrid did not start on 127.0.0.1:$port; its log: $(tail -5 "$dir/buildgrid.log")"
}

stop() {
  local dir="${1:?usage: buildgrid.sh stop DIR}" pid
  pid="$(cat "$dir/bgd.pid" 2>/dev/null)" || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
  ensure) ensure ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: buildgrid.sh ensure | start DIR [PORT] | stop DIR" ;;
esac
